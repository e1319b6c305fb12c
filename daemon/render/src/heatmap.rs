//! Attribution heat maps. An input of shape `(batch, channels, height, width)` with 1
//! or 3 channels is an image: the figure shows the input, the heat map of the
//! attribution summed over channels, and the heat map blended over the input, plus a
//! colour bar. Other inputs get a plain heat map of the first batch row, laid out as
//! one row (`(batch, features)`) or as a grid (`(batch, steps, features)`).

use crate::colour::{clip_threshold, diverging, sequential};
use crate::{Figure, Format, RenderError};
use image::{imageops, Rgb, RgbImage};

/// What to draw: the input and its attribution, both row-major with their shapes.
pub struct AttributionFigure<'a> {
    pub input_shape: &'a [i64],
    pub input: &'a [f32],
    pub attribution_shape: &'a [i64],
    pub attribution: &'a [f32],
    /// Caption, e.g. `saliency, target 3`.
    pub title: &'a str,
}

const PANEL_MIN_SIDE: u32 = 160;
const GAP: u32 = 8;
const COLOUR_BAR_WIDTH: u32 = 14;

pub fn attribution_figure(figure: &AttributionFigure<'_>, format: Format) -> Result<Figure, RenderError> {
    let plane = AttributionPlane::from_figure(figure)?;
    let (picture, description) = match image_of_input(figure) {
        Some(input_image) => (plane.image_panels(&input_image), "input, heat map and heat map over the input"),
        None => (plane.heat_map_panel(), "heat map"),
    };
    let alt_text = format!(
        "{}: {} of {} attribution values (first batch row, {}), strongest at {}; colour scale 0 to {:.3e}",
        figure.title,
        description,
        plane.values.len(),
        if plane.signed { "red negative, blue positive" } else { "brighter is larger" },
        plane.strongest_position(),
        plane.scale,
    );
    let png = encode_png(&picture)?;
    match format {
        Format::Png => Ok(Figure { mime: "image/png".to_string(), data: png, alt_text }),
        Format::Svg => Ok(Figure {
            mime: "image/svg+xml".to_string(),
            data: svg_around_png(&png, picture.width(), picture.height(), figure.title, plane.scale, plane.signed, &alt_text)
                .into_bytes(),
            alt_text,
        }),
    }
}

/// The first batch row of the attribution as a 2-D plane of values.
struct AttributionPlane {
    height: u32,
    width: u32,
    values: Vec<f32>,
    /// Whether negative values occur (diverging colours) or not (sequential).
    signed: bool,
    /// |value| mapped to the end of the colour scale (after 2% outlier clipping).
    scale: f32,
}

impl AttributionPlane {
    fn from_figure(figure: &AttributionFigure<'_>) -> Result<AttributionPlane, RenderError> {
        let shape = figure.attribution_shape;
        let expected: i64 = shape.iter().product();
        if shape.is_empty() || shape.iter().any(|&dim| dim <= 0) || expected as usize != figure.attribution.len() {
            return Err(RenderError::BadData(format!(
                "attribution shape {shape:?} does not match its {} values",
                figure.attribution.len()
            )));
        }
        let row_len = (expected / shape[0]) as usize;
        let row = &figure.attribution[..row_len];
        let (height, width, values) = match shape.len() {
            1 | 2 => (1, row_len as u32, row.to_vec()),
            3 => (shape[1] as u32, shape[2] as u32, row.to_vec()),
            _ => {
                // (batch, channels, height, width, ...): sum over channels like Captum's
                // visualize_image_attr, so every pixel gets one value.
                let channels = shape[1] as usize;
                let plane_len = row_len / channels;
                let height = shape[2] as u32;
                let width = (plane_len / height as usize) as u32;
                let mut summed = vec![0.0f32; plane_len];
                for channel in 0..channels {
                    for (index, value) in summed.iter_mut().enumerate() {
                        *value += row[channel * plane_len + index];
                    }
                }
                (height, width, summed)
            }
        };
        let signed = values.iter().any(|&value| value < 0.0);
        let scale = clip_threshold(&values, 0.02);
        Ok(AttributionPlane { height, width, values, signed, scale })
    }

    fn colour_at(&self, index: usize) -> [u8; 3] {
        let scaled = if self.scale > 0.0 { self.values[index] / self.scale } else { 0.0 };
        if self.signed {
            diverging(scaled)
        } else {
            sequential(scaled)
        }
    }

    fn heat_map(&self) -> RgbImage {
        RgbImage::from_fn(self.width, self.height, |x, y| Rgb(self.colour_at((y * self.width + x) as usize)))
    }

    fn strongest_position(&self) -> String {
        let index = self
            .values
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
            .map(|(index, _)| index as u32)
            .unwrap_or(0);
        if self.height == 1 {
            format!("feature {index}")
        } else {
            format!("row {}, column {}", index / self.width, index % self.width)
        }
    }

    /// Input | heat map | blend, each upscaled so small inputs (8×8 digits) stay visible.
    fn image_panels(&self, input: &RgbImage) -> RgbImage {
        let heat = self.heat_map();
        let blend = RgbImage::from_fn(self.width, self.height, |x, y| {
            let base = input.get_pixel(x, y).0;
            let over = heat.get_pixel(x, y).0;
            Rgb([0, 1, 2].map(|c| ((base[c] as u16 + over[c] as u16) / 2) as u8))
        });
        self.compose(&[input.clone(), heat, blend])
    }

    fn heat_map_panel(&self) -> RgbImage {
        self.compose(&[self.heat_map()])
    }

    fn compose(&self, panels: &[RgbImage]) -> RgbImage {
        let factor = (PANEL_MIN_SIDE / self.width.min(self.height).max(1)).clamp(1, 64);
        // Keep very wide rows (tabular features) at a readable size.
        let panel_width = (self.width * factor).min(1600);
        let panel_height = (self.height * factor).max(40);
        let total_width = panels.len() as u32 * (panel_width + GAP) + COLOUR_BAR_WIDTH + GAP;
        let mut canvas = RgbImage::from_pixel(total_width + GAP, panel_height + 2 * GAP, Rgb([255, 255, 255]));
        for (index, panel) in panels.iter().enumerate() {
            let scaled = imageops::resize(panel, panel_width, panel_height, imageops::FilterType::Nearest);
            imageops::replace(&mut canvas, &scaled, (GAP + index as u32 * (panel_width + GAP)) as i64, GAP as i64);
        }
        let bar_x = GAP + panels.len() as u32 * (panel_width + GAP);
        for y in 0..panel_height {
            let t = 1.0 - y as f32 / (panel_height - 1).max(1) as f32;
            let colour = if self.signed { diverging(2.0 * t - 1.0) } else { sequential(t) };
            for x in 0..COLOUR_BAR_WIDTH {
                canvas.put_pixel(bar_x + x, GAP + y, Rgb(colour));
            }
        }
        canvas
    }
}

/// The input as a picture when it looks like an image batch `(N, 1|3, H, W)`, scaled
/// to its own min..max (inputs are usually normalised, not 0..255).
fn image_of_input(figure: &AttributionFigure<'_>) -> Option<RgbImage> {
    let shape = figure.input_shape;
    if shape.len() != 4 || !(shape[1] == 1 || shape[1] == 3) || shape[2] < 2 || shape[3] < 2 {
        return None;
    }
    if figure.attribution_shape != shape {
        return None;
    }
    let (channels, height, width) = (shape[1] as usize, shape[2] as usize, shape[3] as usize);
    let row = &figure.input[..channels * height * width];
    let (low, high) = row.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    let range = if high > low { high - low } else { 1.0 };
    let to_byte = |value: f32| (((value - low) / range) * 255.0).round().clamp(0.0, 255.0) as u8;
    Some(RgbImage::from_fn(width as u32, height as u32, |x, y| {
        let at = |channel: usize| row[channel * height * width + y as usize * width + x as usize];
        if channels == 1 {
            let grey = to_byte(at(0));
            Rgb([grey, grey, grey])
        } else {
            Rgb([to_byte(at(0)), to_byte(at(1)), to_byte(at(2))])
        }
    }))
}

fn encode_png(picture: &RgbImage) -> Result<Vec<u8>, RenderError> {
    let mut bytes = std::io::Cursor::new(Vec::new());
    picture
        .write_to(&mut bytes, image::ImageFormat::Png)
        .map_err(|error| RenderError::Encoding(error.to_string()))?;
    Ok(bytes.into_inner())
}

/// SVG carrying the raster panels, a caption and colour-bar labels as real text.
fn svg_around_png(png: &[u8], width: u32, height: u32, title: &str, scale: f32, signed: bool, alt_text: &str) -> String {
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(png);
    let caption_height = 24;
    let label_width = 70;
    let bottom_label = if signed { format!("{:.2e}", -scale) } else { "0".to_string() };
    format!(
        concat!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" role=\"img\" aria-label=\"{alt}\">",
            "<title>{alt}</title>",
            "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>",
            "<text x=\"8\" y=\"17\" font-family=\"sans-serif\" font-size=\"14\">{title}</text>",
            "<image x=\"0\" y=\"{ch}\" width=\"{iw}\" height=\"{ih}\" href=\"data:image/png;base64,{png}\"/>",
            "<text x=\"{lx}\" y=\"{ty}\" font-family=\"sans-serif\" font-size=\"11\">{top}</text>",
            "<text x=\"{lx}\" y=\"{by}\" font-family=\"sans-serif\" font-size=\"11\">{bottom}</text>",
            "</svg>"
        ),
        w = width + label_width,
        h = height + caption_height,
        alt = xml_escape(alt_text),
        title = xml_escape(title),
        ch = caption_height,
        iw = width,
        ih = height,
        png = encoded,
        lx = width + 4,
        ty = caption_height + GAP + 10,
        by = caption_height + height - GAP,
        top = format!("{scale:.2e}"),
        bottom = bottom_label,
    )
}

pub(crate) fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_input_gets_three_panels_and_tabular_one() {
        let input: Vec<f32> = (0..64).map(|v| v as f32).collect();
        let mut attribution = vec![0.0f32; 64];
        attribution[3 * 8 + 5] = 2.0;
        let figure = AttributionFigure { input_shape: &[1, 1, 8, 8], input: &input, attribution_shape: &[1, 1, 8, 8], attribution: &attribution, title: "saliency, target 3" };
        let png = attribution_figure(&figure, Format::Png).unwrap();
        assert_eq!(png.mime, "image/png");
        let decoded = image::load_from_memory(&png.data).unwrap();
        assert_eq!(decoded.width(), 3 * (160 + GAP) + COLOUR_BAR_WIDTH + 2 * GAP);
        assert!(png.alt_text.contains("row 3, column 5"), "{}", png.alt_text);

        let tabular = AttributionFigure { input_shape: &[2, 4], input: &[0.0; 8], attribution_shape: &[2, 4], attribution: &[1.0, -2.0, 0.5, 0.0, 9.0, 9.0, 9.0, 9.0], title: "saliency" };
        let svg = attribution_figure(&tabular, Format::Svg).unwrap();
        let text = String::from_utf8(svg.data).unwrap();
        assert!(text.starts_with("<svg") && text.contains("data:image/png;base64,"));
        assert!(svg.alt_text.contains("feature 1") && svg.alt_text.contains("red negative"), "{}", svg.alt_text);
    }

    #[test]
    fn mismatched_shape_is_an_error() {
        let figure = AttributionFigure { input_shape: &[1, 3], input: &[0.0; 3], attribution_shape: &[1, 4], attribution: &[0.0; 3], title: "x" };
        assert!(attribution_figure(&figure, Format::Png).is_err());
    }
}
