//! The one font of raster figures: DejaVu Sans, compiled in from the `dejavu` crate
//! and rasterised with `ab_glyph`, so PNG labels render on a daemon machine that has
//! no system fonts at all. The SVG names the same family first, so layout widths
//! measured here also fit the SVG text where the font is installed.

use crate::RenderError;
use ab_glyph::{point, Font, FontRef, Outline, OutlineCurve, OutlinedGlyph, PxScale, ScaleFont};
use std::sync::OnceLock;

/// CSS font list for SVG text.
pub(crate) const SVG_FONT_FAMILY: &str = "DejaVu Sans, Verdana, Arial, sans-serif";

fn font() -> Result<&'static FontRef<'static>, RenderError> {
    static FONT: OnceLock<Option<FontRef<'static>>> = OnceLock::new();
    FONT.get_or_init(|| FontRef::try_from_slice(dejavu::sans::regular()).ok())
        .as_ref()
        .ok_or_else(|| RenderError::Encoding("the built-in DejaVu Sans font does not parse".to_string()))
}

/// `ab_glyph` scales a font by the height from descender to ascender, CSS (and so the
/// SVG) by the em square; this converts a CSS pixel size, so both formats agree.
fn css_scale(font: &FontRef<'static>, size: f32) -> PxScale {
    let units_per_em = font.units_per_em().unwrap_or(2048.0);
    PxScale::from(size * font.height_unscaled() / units_per_em)
}

/// Whether the built-in font has a glyph for `character`. Characters it lacks (CJK,
/// emoji) would be drawn as the font's empty box, so text that may hold any character
/// (tokens of a prompt) writes them another way.
pub(crate) fn has_glyph(character: char) -> bool {
    font().is_ok_and(|font| font.glyph_id(character).0 != 0)
}

/// Width of `text` at a CSS font size of `size` pixels, with kerning.
pub(crate) fn text_width(text: &str, size: f32) -> f32 {
    let Ok(font) = font() else {
        // Only reachable with a broken font crate; keep layout going with a typical
        // average glyph width so the error surfaces when the PNG is drawn.
        return text.chars().count() as f32 * size * 0.6;
    };
    let scaled = font.as_scaled(css_scale(font, size));
    let mut width = 0.0;
    let mut previous = None;
    for character in text.chars() {
        let id = scaled.glyph_id(character);
        if let Some(previous) = previous {
            width += scaled.kern(previous, id);
        }
        width += scaled.h_advance(id);
        previous = Some(id);
    }
    width
}

/// Rasterises `text` at a CSS font size of `size` pixels, calling `plot(x, y, coverage)`
/// for every touched pixel. The baseline starts `along` pixels from (`x`, `baseline`)
/// (negative: before it, as for right-aligned text) and the whole line is turned by
/// `rotation` degrees clockwise about (`x`, `baseline`), as SVG's `rotate(rotation x y)`.
/// Rotated glyphs are rasterised from their turned outlines, so they stay as sharp as
/// upright ones.
pub(crate) fn draw_text(
    text: &str,
    size: f32,
    (x, baseline): (f32, f32),
    along: f32,
    rotation: f32,
    mut plot: impl FnMut(i32, i32, f32),
) -> Result<(), RenderError> {
    let font = font()?;
    let scale = css_scale(font, size);
    let scaled = font.as_scaled(scale);
    let (sin, cos) = rotation.to_radians().sin_cos();
    // Screen coordinates grow downwards and font units upwards: a clockwise turn on
    // screen is a counter-clockwise one in font units.
    let turn = |p: ab_glyph::Point| point(p.x * cos + p.y * sin, -p.x * sin + p.y * cos);
    let mut caret = along;
    let mut previous = None;
    for character in text.chars() {
        let id = scaled.glyph_id(character);
        if let Some(previous) = previous {
            caret += scaled.kern(previous, id);
        }
        let glyph = id.with_scale_and_position(scale, point(x + caret * cos, baseline + caret * sin));
        caret += scaled.h_advance(id);
        previous = Some(id);
        let outlined = if rotation == 0.0 {
            font.outline_glyph(glyph)
        } else {
            font.outline(id).map(|outline| {
                let corners = [
                    outline.bounds.min,
                    outline.bounds.max,
                    point(outline.bounds.min.x, outline.bounds.max.y),
                    point(outline.bounds.max.x, outline.bounds.min.y),
                ]
                .map(turn);
                // ab_glyph keeps the top (the largest y in font units) in `min.y`.
                let bounds = ab_glyph::Rect {
                    min: point(corners.iter().map(|p| p.x).fold(f32::MAX, f32::min), corners.iter().map(|p| p.y).fold(f32::MIN, f32::max)),
                    max: point(corners.iter().map(|p| p.x).fold(f32::MIN, f32::max), corners.iter().map(|p| p.y).fold(f32::MAX, f32::min)),
                };
                let curves = outline
                    .curves
                    .iter()
                    .map(|curve| match *curve {
                        OutlineCurve::Line(a, b) => OutlineCurve::Line(turn(a), turn(b)),
                        OutlineCurve::Quad(a, b, c) => OutlineCurve::Quad(turn(a), turn(b), turn(c)),
                        OutlineCurve::Cubic(a, b, c, d) => OutlineCurve::Cubic(turn(a), turn(b), turn(c), turn(d)),
                    })
                    .collect();
                OutlinedGlyph::new(glyph, Outline { bounds, curves }, scaled.scale_factor())
            })
        };
        if let Some(outlined) = outlined {
            let bounds = outlined.px_bounds();
            outlined.draw(|gx, gy, coverage| plot(bounds.min.x as i32 + gx as i32, bounds.min.y as i32 + gy as i32, coverage));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_font_measures_and_draws() {
        let narrow = text_width("ii", 12.0);
        let wide = text_width("WW", 12.0);
        assert!(narrow > 0.0 && wide > 2.0 * narrow, "{narrow} {wide}");
        let mut touched = 0;
        draw_text("saliency", 14.0, (0.0, 14.0), 0.0, 0.0, |_, _, coverage| touched += (coverage > 0.5) as usize).unwrap();
        assert!(touched > 40, "{touched} pixels drawn");
    }

    /// Pixels with coverage over one half, and their bounding box.
    fn ink(text: &str, along: f32, rotation: f32) -> (usize, (i32, i32, i32, i32)) {
        let (mut count, mut bounds) = (0, (i32::MAX, i32::MAX, i32::MIN, i32::MIN));
        draw_text(text, 12.0, (100.0, 100.0), along, rotation, |x, y, coverage| {
            if coverage > 0.5 {
                count += 1;
                bounds = (bounds.0.min(x), bounds.1.min(y), bounds.2.max(x), bounds.3.max(y));
            }
        })
        .unwrap();
        (count, bounds)
    }

    #[test]
    fn turned_text_turns_about_its_anchor() {
        let width = text_width("layer4.1.conv2", 12.0);
        let (upright, (left, top, right, bottom)) = ink("layer4.1.conv2", 0.0, 0.0);
        assert!(left >= 100 && right <= 100 + width.ceil() as i32 && top < 100 && bottom <= 103, "{left} {top} {right} {bottom}");
        // A quarter turn clockwise: the text runs down from the anchor, the tops of its
        // glyphs facing right (descenders reach a little left of the anchor).
        let (quarter, (left, top, right, bottom)) = ink("layer4.1.conv2", 0.0, 90.0);
        assert!(top >= 99 && bottom <= 100 + width.ceil() as i32 && left >= 96 && right < 115, "{left} {top} {right} {bottom}");
        assert!((quarter as f32 - upright as f32).abs() < 0.1 * upright as f32, "{quarter} vs {upright} pixels");
        // Right-aligned and turned back by 45 degrees: the text ends at the anchor and
        // runs down-left from it.
        let (_, (left, _, right, bottom)) = ink("layer4.1.conv2", -width, -45.0);
        assert!(right <= 101 && bottom > 100 + (width * 0.6) as i32 && left < 100 - (width * 0.6) as i32, "{left} {right} {bottom}");
    }
}
