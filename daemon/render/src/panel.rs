//! Panels of raster content (an image method or a plain heat map) with their title and
//! colour bar, and the composition of panels side by side under a figure title.

use crate::chart::{format_value, PANEL_TITLE_HEIGHT};
use crate::colour::{colour_map, AXIS};
use crate::font::text_width;
use crate::options::Sign;
use crate::scene::{Anchor, Element, PanelBox, Scene};
use image::{Rgba, RgbaImage};

const PANEL_TITLE_FONT: f32 = 12.0;
const COLOUR_BAR_GAP: f32 = 8.0;
const COLOUR_BAR_HEIGHT: f32 = 12.0;
/// Gap, bar, tick marks, tick labels and caption.
pub(crate) const COLOUR_BAR_BLOCK: f32 = COLOUR_BAR_GAP + COLOUR_BAR_HEIGHT + 4.0 + 13.0 + 14.0;
const COLOUR_BAR_MIN_WIDTH: f32 = 160.0;
const TICK_FONT: f32 = 10.0;

pub(crate) const MARGIN: f32 = 12.0;
pub(crate) const TITLE_HEIGHT: f32 = 28.0;
pub(crate) const PANEL_GAP: f32 = 16.0;
const TITLE_FONT: f32 = 15.0;
const SUBTITLE_FONT: f32 = 11.0;

/// The colour scale a panel's colour bar shows: the sign's colour map over normalised
/// values, labelled in attribution units (normalised value × `threshold`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ColourScale {
    pub sign: Sign,
    pub threshold: f32,
}

/// A titled picture, centred, with the colour bar under it when `scale` is given.
/// `label` names the picture in the scene (tests find pixels by it; SVG labels it).
pub(crate) fn raster_panel(title: &str, picture: RgbaImage, label: &str, scale: Option<ColourScale>) -> Scene {
    let (picture_width, picture_height) = (picture.width() as f32, picture.height() as f32);
    let bar_width = picture_width.max(COLOUR_BAR_MIN_WIDTH);
    let width = picture_width.max(if scale.is_some() { bar_width } else { 0.0 }).max(text_width(title, PANEL_TITLE_FONT) + 8.0).ceil();
    let height = PANEL_TITLE_HEIGHT + picture_height + if scale.is_some() { COLOUR_BAR_BLOCK } else { 0.0 };
    let mut scene = Scene::new(width, height);
    scene.text(width / 2.0, 14.0, title, PANEL_TITLE_FONT, Anchor::Middle);
    scene.push(Element::Image { x: ((width - picture_width) / 2.0).floor(), y: PANEL_TITLE_HEIGHT, image: picture, label: label.to_string() });
    if let Some(scale) = scale {
        let bar = colour_bar(scale, bar_width);
        scene.place(bar, ((width - bar_width) / 2.0).floor(), PANEL_TITLE_HEIGHT + picture_height);
    }
    scene
}

/// A horizontal colour bar like Captum's (`show_colorbar`): the colour map over its
/// normalised range, with ticks at its ends and middle labelled in attribution units.
fn colour_bar(scale: ColourScale, width: f32) -> Scene {
    let mut scene = Scene::new(width, COLOUR_BAR_BLOCK);
    let low = if scale.sign == Sign::All { -1.0 } else { 0.0 };
    let pixels = width.round().max(2.0) as u32;
    let gradient = RgbaImage::from_fn(pixels, COLOUR_BAR_HEIGHT as u32, |x, _| {
        let normalised = low + (1.0 - low) * x as f32 / (pixels - 1) as f32;
        let [r, g, b] = colour_map(scale.sign, normalised);
        Rgba([r, g, b, 255])
    });
    let top = COLOUR_BAR_GAP;
    scene.push(Element::Image { x: 0.0, y: top, image: gradient, label: "colour bar".to_string() });
    let bottom = top + COLOUR_BAR_HEIGHT;
    // A thin frame, so the white end of a map stays visible on the white page.
    scene.line((0.5, top), (0.5, bottom), AXIS, 1.0);
    scene.line((width - 0.5, top), (width - 0.5, bottom), AXIS, 1.0);
    scene.line((0.0, top - 0.5), (width, top - 0.5), AXIS, 1.0);
    scene.line((0.0, bottom + 0.5), (width, bottom + 0.5), AXIS, 1.0);
    let ticks = [(low, Anchor::Start), ((low + 1.0) / 2.0, Anchor::Middle), (1.0, Anchor::End)];
    for (normalised, anchor) in ticks {
        let x = ((normalised - low) / (1.0 - low) * (width - 1.0)).round() + 0.5;
        scene.line((x, bottom), (x, bottom + 4.0), AXIS, 1.0);
        let label_x = match anchor {
            Anchor::Start => 0.0,
            Anchor::Middle => x,
            Anchor::End => width,
        };
        scene.text(label_x, bottom + 15.0, format_value(normalised * scale.threshold), TICK_FONT, anchor);
    }
    let caption = match scale.sign {
        Sign::AbsoluteValue => "|attribution|",
        Sign::Positive => "positive attribution",
        Sign::Negative => "negative attribution",
        Sign::All => "attribution",
    };
    scene.text(width / 2.0, COLOUR_BAR_BLOCK - 2.0, caption, TICK_FONT, Anchor::Middle);
    scene
}

/// Panels side by side, tops aligned, under a title line (the subtitle in grey after
/// the title, none when empty); each panel is recorded with its title in the figure's
/// `panels`.
pub(crate) fn compose(title: &str, subtitle: &str, panels: Vec<(String, Scene)>) -> Scene {
    let title_width = text_width(title, TITLE_FONT);
    let heading_width = if subtitle.is_empty() { title_width } else { title_width + 12.0 + text_width(subtitle, SUBTITLE_FONT) };
    let panels_width: f32 = panels.iter().map(|(_, panel)| panel.width).sum::<f32>() + PANEL_GAP * panels.len().saturating_sub(1) as f32;
    let panels_height = panels.iter().map(|(_, panel)| panel.height).fold(0.0, f32::max);
    let width = (2.0 * MARGIN + panels_width.max(heading_width)).ceil();
    let height = (2.0 * MARGIN + TITLE_HEIGHT + panels_height).ceil();
    let mut scene = Scene::new(width, height);
    scene.text(MARGIN, MARGIN + 15.0, title, TITLE_FONT, Anchor::Start);
    if !subtitle.is_empty() {
        scene.push(Element::Text {
            x: MARGIN + title_width + 12.0,
            y: MARGIN + 15.0,
            text: subtitle.to_string(),
            size: SUBTITLE_FONT,
            anchor: Anchor::Start,
            colour: AXIS,
            rotation: 0.0,
        });
    }
    let mut x = MARGIN;
    let y = MARGIN + TITLE_HEIGHT;
    for (panel_title, panel) in panels {
        let (panel_width, panel_height) = (panel.width, panel.height);
        scene.place(panel, x, y);
        scene.panels.push(PanelBox { title: panel_title, x, y, width: panel_width, height: panel_height });
        x += panel_width + PANEL_GAP;
    }
    scene
}
