//! Draws a scene into pixels and encodes them as PNG. Shapes are anti-aliased by
//! coverage (distance from the pixel centre to the shape), which is all that axes,
//! bars and line plots need.

use crate::colour::Colour;
use crate::font::draw_text;
use crate::scene::{Anchor, Element, Scene};
use crate::RenderError;
use image::{Rgba, RgbaImage};

pub(crate) fn rasterise(scene: &Scene) -> Result<RgbaImage, RenderError> {
    let width = scene.width.ceil().max(1.0) as u32;
    let height = scene.height.ceil().max(1.0) as u32;
    let mut canvas = RgbaImage::from_pixel(width, height, Rgba([255, 255, 255, 255]));
    for element in &scene.elements {
        match element {
            Element::Rect { x, y, width, height, fill } => {
                let (x0, y0) = (x.round() as i64, y.round() as i64);
                let (x1, y1) = ((x + width).round() as i64, (y + height).round() as i64);
                for py in y0.max(0)..y1.min(canvas.height() as i64) {
                    for px in x0.max(0)..x1.min(canvas.width() as i64) {
                        canvas.put_pixel(px as u32, py as u32, Rgba([fill[0], fill[1], fill[2], 255]));
                    }
                }
            }
            Element::Line { from, to, colour, width, dash: None } => stroke(&mut canvas, &[*from, *to], *colour, *width),
            Element::Line { from, to, colour, width, dash: Some(dash) } => {
                for (start, end) in dashes(*from, *to, *dash) {
                    stroke(&mut canvas, &[start, end], *colour, *width);
                }
            }
            Element::Polyline { points, colour, width } => stroke(&mut canvas, points, *colour, *width),
            Element::Circle { centre, radius, fill } => {
                cover(&mut canvas, (centre.0 - radius, centre.1 - radius, centre.0 + radius, centre.1 + radius), *fill, |px, py| {
                    radius + 0.5 - ((px - centre.0).powi(2) + (py - centre.1).powi(2)).sqrt()
                })
            }
            Element::Text { x, y, text, size, anchor, colour, rotation } => {
                let width = crate::font::text_width(text, *size);
                let along = match anchor {
                    Anchor::Start => 0.0,
                    Anchor::Middle => -width / 2.0,
                    Anchor::End => -width,
                };
                draw_text(text, *size, (*x, *y), along, *rotation, |px, py, coverage| blend(&mut canvas, px, py, *colour, coverage))?;
            }
            Element::Image { x, y, image, .. } => {
                let (x0, y0) = (x.round() as i64, y.round() as i64);
                for (px, py, pixel) in image.enumerate_pixels() {
                    let (cx, cy) = (x0 + px as i64, y0 + py as i64);
                    if cx >= 0 && cy >= 0 && (cx as u32) < canvas.width() && (cy as u32) < canvas.height() {
                        canvas.put_pixel(cx as u32, cy as u32, *pixel);
                    }
                }
            }
        }
    }
    Ok(canvas)
}

/// PNG bytes; RGB when every pixel is opaque (smaller, and what viewers expect), RGBA
/// when a panel uses transparency.
pub(crate) fn encode_png(picture: &RgbaImage) -> Result<Vec<u8>, RenderError> {
    let mut bytes = std::io::Cursor::new(Vec::new());
    let result = if picture.pixels().all(|pixel| pixel.0[3] == 255) {
        image::DynamicImage::ImageRgba8(picture.clone()).to_rgb8().write_to(&mut bytes, image::ImageFormat::Png)
    } else {
        picture.write_to(&mut bytes, image::ImageFormat::Png)
    };
    result.map_err(|error| RenderError::Encoding(error.to_string()))?;
    Ok(bytes.into_inner())
}

/// The dashes of a dashed line from `from` to `to`: `dash` long, `dash` apart, the
/// first starting at `from`, the last cut short at `to` (as SVG's `stroke-dasharray`).
fn dashes(from: (f32, f32), to: (f32, f32), dash: f32) -> Vec<((f32, f32), (f32, f32))> {
    let length = ((to.0 - from.0).powi(2) + (to.1 - from.1).powi(2)).sqrt();
    if dash <= 0.0 || length == 0.0 {
        return vec![(from, to)];
    }
    let at = |distance: f32| (from.0 + (to.0 - from.0) * distance / length, from.1 + (to.1 - from.1) * distance / length);
    let mut pieces = Vec::new();
    let mut start = 0.0;
    while start < length {
        pieces.push((at(start), at((start + dash).min(length))));
        start += 2.0 * dash;
    }
    pieces
}

/// A line of `width` pixels through `points`. Each segment only visits the pixels
/// near it; coverage is kept as the maximum over segments and blended once, so joints
/// are not painted twice.
fn stroke(canvas: &mut RgbaImage, points: &[(f32, f32)], colour: Colour, width: f32) {
    if points.is_empty() {
        return;
    }
    let half = width / 2.0;
    let (canvas_width, canvas_height) = (canvas.width() as i32, canvas.height() as i32);
    let mut coverage: std::collections::HashMap<(i32, i32), f32> = std::collections::HashMap::new();
    let segments: Vec<((f32, f32), (f32, f32))> =
        if points.len() == 1 { vec![(points[0], points[0])] } else { points.windows(2).map(|pair| (pair[0], pair[1])).collect() };
    for (a, b) in segments {
        let x0 = ((a.0.min(b.0) - half - 1.0).floor() as i32).max(0);
        let y0 = ((a.1.min(b.1) - half - 1.0).floor() as i32).max(0);
        let x1 = ((a.0.max(b.0) + half + 1.0).ceil() as i32).min(canvas_width - 1);
        let y1 = ((a.1.max(b.1) + half + 1.0).ceil() as i32).min(canvas_height - 1);
        for py in y0..=y1 {
            for px in x0..=x1 {
                let value = half + 0.5 - segment_distance((px as f32 + 0.5, py as f32 + 0.5), a, b);
                if value > 0.0 {
                    let entry = coverage.entry((px, py)).or_insert(0.0);
                    *entry = entry.max(value.min(1.0));
                }
            }
        }
    }
    for ((px, py), value) in coverage {
        blend(canvas, px, py, colour, value);
    }
}

/// Blends `colour` into every pixel of the box whose centre gets a coverage in (0, 1]
/// from `coverage_at(centre_x, centre_y)` (values above 1 are clamped).
fn cover(canvas: &mut RgbaImage, bounds: (f32, f32, f32, f32), colour: Colour, coverage_at: impl Fn(f32, f32) -> f32) {
    let (x0, y0) = ((bounds.0 - 1.0).floor().max(0.0) as i32, (bounds.1 - 1.0).floor().max(0.0) as i32);
    let (x1, y1) =
        (((bounds.2 + 1.0).ceil() as i32).min(canvas.width() as i32 - 1), ((bounds.3 + 1.0).ceil() as i32).min(canvas.height() as i32 - 1));
    for py in y0..=y1 {
        for px in x0..=x1 {
            let coverage = coverage_at(px as f32 + 0.5, py as f32 + 0.5);
            if coverage > 0.0 {
                blend(canvas, px, py, colour, coverage.min(1.0));
            }
        }
    }
}

fn segment_distance(p: (f32, f32), a: (f32, f32), b: (f32, f32)) -> f32 {
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let length_squared = dx * dx + dy * dy;
    let t = if length_squared == 0.0 { 0.0 } else { (((p.0 - a.0) * dx + (p.1 - a.1) * dy) / length_squared).clamp(0.0, 1.0) };
    let (cx, cy) = (a.0 + t * dx, a.1 + t * dy);
    ((p.0 - cx).powi(2) + (p.1 - cy).powi(2)).sqrt()
}

fn blend(canvas: &mut RgbaImage, x: i32, y: i32, colour: Colour, coverage: f32) {
    if x < 0 || y < 0 || x as u32 >= canvas.width() || y as u32 >= canvas.height() {
        return;
    }
    let pixel = canvas.get_pixel_mut(x as u32, y as u32);
    for (under, &over) in pixel.0.iter_mut().zip(&colour) {
        *under = (*under as f32 + (over as f32 - *under as f32) * coverage).round() as u8;
    }
    let alpha = pixel.0[3] as f32;
    pixel.0[3] = (alpha + (255.0 - alpha) * coverage).round() as u8;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_pixel_lines_on_half_pixels_are_crisp() {
        let mut scene = Scene::new(10.0, 10.0);
        scene.line((2.5, 1.0), (2.5, 9.0), [0, 0, 0], 1.0);
        let canvas = rasterise(&scene).unwrap();
        assert_eq!(canvas.get_pixel(2, 5).0, [0, 0, 0, 255]);
        assert_eq!(canvas.get_pixel(1, 5).0, [255, 255, 255, 255]);
        assert_eq!(canvas.get_pixel(3, 5).0, [255, 255, 255, 255]);
    }

    #[test]
    fn dashed_lines_alternate_dash_and_gap() {
        let mut scene = Scene::new(24.0, 4.0);
        scene.dashed_line((0.0, 2.5), (22.0, 2.5), [0, 0, 0], 1.0, 4.0);
        let canvas = rasterise(&scene).unwrap();
        let row: Vec<bool> = (0..24).map(|x| canvas.get_pixel(x, 2).0[0] < 128).collect();
        let dashes: String = row.iter().map(|&dark| if dark { '-' } else { ' ' }).collect();
        assert_eq!(dashes, "----    ----    ----    ");
    }
}
