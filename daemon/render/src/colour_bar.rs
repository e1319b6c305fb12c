//! A vertical colour bar beside a colour-mapped plot ([`crate::matrix_heat_map`],
//! [`crate::contour_plot`]): the colour map from its low end (bottom) to its high end
//! (top), tick labels right of it, optional marks across it (a healthy band's limits,
//! contour levels) and a caption turned to run up its right side. A plot that is
//! coloured by value needs the key beside it, where the eye can go from cell to bar.

use crate::colour::{luminance, Colour, AXIS, TEXT};
use crate::font::text_width;
use crate::scene::{Anchor, Element, Scene};
use crate::small_multiples::{fit_start, TICK_FONT};
use image::{Rgba, RgbaImage};

const BAR_WIDTH: f32 = 14.0;
/// Room left of the bar for the ends of band marks.
const MARK_OVERHANG: f32 = 5.0;
const CAPTION_FONT: f32 = 11.0;
/// Tick labels closer than this (in pixels) to a band label are left out.
const LABEL_CLEARANCE: f32 = 12.0;
pub(crate) const MIN_BAR_HEIGHT: f32 = 160.0;

/// What a colour bar shows. Positions along it are fractions: 0 at the bottom (the low
/// end of the map), 1 at the top.
pub(crate) struct ColourBar<'a> {
    /// The map's colour at a fraction.
    pub colour_at: &'a dyn Fn(f64) -> Colour,
    /// Labelled ticks.
    pub ticks: Vec<(f64, String)>,
    /// A range marked on the bar (a healthy band): its ends as fractions with labels,
    /// drawn as dark lines across the bar and a bracket beside it.
    pub band: Option<((f64, String), (f64, String))>,
    /// Thin unlabelled lines across the bar (contour levels).
    pub levels: Vec<f64>,
    pub caption: &'a str,
}

impl ColourBar<'_> {
    fn labels(&self) -> Vec<(f64, String, Colour)> {
        let mut labels: Vec<(f64, String, Colour)> = Vec::new();
        if let Some(((low, low_label), (high, high_label))) = &self.band {
            labels.push((*low, low_label.clone(), TEXT));
            labels.push((*high, high_label.clone(), TEXT));
        }
        labels
    }

    /// The width the bar takes with its labels and caption.
    pub fn width(&self, height: f32) -> f32 {
        let band_labels = self.labels();
        let labels = self.ticks.iter().map(|(_, label)| label).chain(band_labels.iter().map(|(_, label, _)| label));
        let widest = labels.map(|label| text_width(label, TICK_FONT)).fold(0.0, f32::max);
        let caption = if self.caption.is_empty() || height <= 0.0 { 0.0 } else { CAPTION_FONT + 8.0 };
        (MARK_OVERHANG + BAR_WIDTH + 7.0 + widest + caption + 2.0).ceil()
    }

    /// The bar `height` pixels high, its top at y = 0 of the scene. Tick labels reach
    /// about 4 px above and below it.
    pub fn draw(&self, height: f32) -> Scene {
        let width = self.width(height);
        let mut scene = Scene::new(width, height);
        let pixels = height.round().max(2.0) as u32;
        let y_of = |fraction: f64| (1.0 - fraction.clamp(0.0, 1.0)) as f32 * height;
        let gradient = RgbaImage::from_fn(BAR_WIDTH as u32, pixels, |_, y| {
            let [r, g, b] = (self.colour_at)(1.0 - (y as f64 + 0.5) / pixels as f64);
            Rgba([r, g, b, 255])
        });
        let left = MARK_OVERHANG;
        let right = left + BAR_WIDTH;
        scene.push(Element::Image { x: left, y: 0.0, image: gradient, label: "colour bar".to_string() });
        for &level in &self.levels {
            let y = y_of(level).round() + 0.5;
            let colour = if luminance((self.colour_at)(level)) > 0.5 { AXIS } else { [255, 255, 255] };
            scene.line((left, y), (right, y), colour, 1.0);
        }
        // A thin frame, so light ends of a map stay visible on the white page.
        scene.line((left - 0.5, 0.0), (left - 0.5, height), AXIS, 1.0);
        scene.line((right + 0.5, 0.0), (right + 0.5, height), AXIS, 1.0);
        scene.line((left - 0.5, -0.5), (right + 0.5, -0.5), AXIS, 1.0);
        scene.line((left - 0.5, height + 0.5), (right + 0.5, height + 0.5), AXIS, 1.0);

        let band_labels = self.labels();
        for (fraction, label) in &self.ticks {
            let y = y_of(*fraction);
            if band_labels.iter().any(|(band, _, _)| (y_of(*band) - y).abs() < LABEL_CLEARANCE) {
                continue;
            }
            let y = y.round() + 0.5;
            scene.line((right + 0.5, y), (right + 4.0, y), AXIS, 1.0);
            scene.text(right + 7.0, y + 3.5, label.as_str(), TICK_FONT, Anchor::Start);
        }
        if let Some(((low, _), (high, _))) = &self.band {
            // Dark lines across the bar at the band's ends, joined by a bracket left of it.
            let (top, bottom) = (y_of(*high).round() + 0.5, y_of(*low).round() + 0.5);
            for y in [top, bottom] {
                scene.line((0.0, y), (right + 4.0, y), TEXT, 1.5);
            }
            scene.line((0.75, top), (0.75, bottom), TEXT, 1.5);
            for (fraction, label, colour) in band_labels {
                let y = y_of(fraction).round() + 0.5;
                scene.push(Element::Text { x: right + 7.0, y: y + 3.5, text: label, size: TICK_FONT, anchor: Anchor::Start, colour, rotation: 0.0 });
            }
        }
        if !self.caption.is_empty() {
            // Turned to run upwards, its baseline at the right edge.
            let caption = fit_start(self.caption, CAPTION_FONT, height);
            scene.push(Element::Text {
                x: width - 3.0,
                y: height / 2.0,
                text: caption,
                size: CAPTION_FONT,
                anchor: Anchor::Middle,
                colour: TEXT,
                rotation: -90.0,
            });
        }
        scene
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_near_a_band_label_make_way_for_it() {
        let grey = |fraction: f64| [(fraction * 255.0) as u8; 3];
        let bar = ColourBar {
            colour_at: &grey,
            ticks: vec![(0.0, "1e-6".to_string()), (0.5, "1e-4".to_string()), (1.0, "0.01".to_string())],
            band: Some(((0.52, "1.2e-4".to_string()), (0.9, "5e-3".to_string()))),
            levels: vec![],
            caption: "update / weight",
        };
        let scene = bar.draw(200.0);
        let texts: Vec<&str> = scene
            .elements
            .iter()
            .filter_map(|element| match element {
                Element::Text { text, .. } => Some(text.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(texts, ["1e-6", "0.01", "1.2e-4", "5e-3", "update / weight"]);
        assert!(bar.width(200.0) > BAR_WIDTH + text_width("1.2e-4", TICK_FONT));
    }
}
