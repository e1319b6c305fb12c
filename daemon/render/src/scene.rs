//! A figure as a list of drawing primitives in pixel coordinates. Layout code builds a
//! scene once; `raster` turns it into PNG pixels and `svg` into SVG elements, so both
//! formats show the same figure and the SVG keeps its text as text.

use crate::colour::{Colour, TEXT};
use image::RgbaImage;

/// Where a text's `x` lies along it, as SVG's `text-anchor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Anchor {
    Start,
    Middle,
    End,
}

pub(crate) enum Element {
    Rect {
        x: f32,
        y: f32,
        width: f32,
        height: f32,
        fill: Colour,
    },
    /// `dash`: dashes of this length with gaps of the same length, starting with a dash
    /// at `from`; `None` for a solid line.
    Line {
        from: (f32, f32),
        to: (f32, f32),
        colour: Colour,
        width: f32,
        dash: Option<f32>,
    },
    Polyline {
        points: Vec<(f32, f32)>,
        colour: Colour,
        width: f32,
    },
    Circle {
        centre: (f32, f32),
        radius: f32,
        fill: Colour,
    },
    /// `y` is the baseline, as in SVG. `rotation` turns the text clockwise by that many
    /// degrees about (`x`, `y`), as SVG's `rotate(rotation x y)`; 0 for upright text.
    Text {
        x: f32,
        y: f32,
        text: String,
        size: f32,
        anchor: Anchor,
        colour: Colour,
        rotation: f32,
    },
    /// Raster content shown pixel for pixel at whole-pixel `x`, `y`; its alpha is kept
    /// (alpha_scaling's panel is partly transparent on purpose).
    Image {
        x: f32,
        y: f32,
        image: RgbaImage,
        label: String,
    },
}

impl Element {
    fn translate(&mut self, dx: f32, dy: f32) {
        let shift = |point: &mut (f32, f32)| {
            point.0 += dx;
            point.1 += dy;
        };
        match self {
            Element::Rect { x, y, .. } | Element::Text { x, y, .. } | Element::Image { x, y, .. } => {
                *x += dx;
                *y += dy;
            }
            Element::Line { from, to, .. } => {
                shift(from);
                shift(to);
            }
            Element::Polyline { points, .. } => points.iter_mut().for_each(shift),
            Element::Circle { centre, .. } => shift(centre),
        }
    }
}

/// Where a titled panel sits in a composed figure.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PanelBox {
    pub title: String,
    pub x: f32,
    pub y: f32,
    pub width: f32,
    pub height: f32,
}

/// A figure or a panel of one: its size, what is drawn, and the panels placed in it.
pub(crate) struct Scene {
    pub width: f32,
    pub height: f32,
    pub elements: Vec<Element>,
    pub panels: Vec<PanelBox>,
}

impl Scene {
    pub fn new(width: f32, height: f32) -> Scene {
        Scene { width, height, elements: Vec::new(), panels: Vec::new() }
    }

    pub fn push(&mut self, element: Element) {
        self.elements.push(element);
    }

    pub fn text(&mut self, x: f32, y: f32, text: impl Into<String>, size: f32, anchor: Anchor) {
        self.push(Element::Text { x, y, text: text.into(), size, anchor, colour: TEXT, rotation: 0.0 });
    }

    pub fn line(&mut self, from: (f32, f32), to: (f32, f32), colour: Colour, width: f32) {
        self.push(Element::Line { from, to, colour, width, dash: None });
    }

    pub fn dashed_line(&mut self, from: (f32, f32), to: (f32, f32), colour: Colour, width: f32, dash: f32) {
        self.push(Element::Line { from, to, colour, width, dash: Some(dash) });
    }

    /// Draws `other` with its origin at (`dx`, `dy`) of this scene.
    pub fn place(&mut self, other: Scene, dx: f32, dy: f32) {
        for mut element in other.elements {
            element.translate(dx, dy);
            self.elements.push(element);
        }
        for mut panel in other.panels {
            panel.x += dx;
            panel.y += dy;
            self.panels.push(panel);
        }
    }

    /// The first image with this label and where it lies, for tests that check pixels.
    #[cfg(test)]
    pub fn image(&self, wanted: &str) -> Option<(u32, u32, &RgbaImage)> {
        self.elements.iter().find_map(|element| match element {
            Element::Image { x, y, image, label } if label == wanted => Some((x.round() as u32, y.round() as u32, image)),
            _ => None,
        })
    }
}
