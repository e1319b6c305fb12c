//! Captum's `visualize_image_attr` methods as pixels: heat map, blended heat map,
//! masked image, alpha scaling and original image, computed at the input's resolution
//! from normalised attributions, then enlarged for display.

use crate::colour::colour_map;
use crate::options::{Sign, VisualMethod};
use crate::plane::first_row;
use crate::RenderError;
use image::{imageops, Rgba, RgbaImage};

/// How the input's numbers were turned into 0..255 pixel values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum InputScaling {
    /// Values in [0, 1], multiplied by 255 as Captum does.
    UnitRange,
    /// Anything else: stretched from its min..max to 0..255. Captum uses values above 1
    /// as they are, which shows a normalised model input (about -2..2) or sklearn's
    /// 0..16 digits as near-black; the model input is all the daemon has, so it is
    /// stretched instead (a full-range 0..255 image is unchanged by that).
    Stretched { low: f32, high: f32 },
}

/// The first batch row of an image input `(batch, 1|3, height, width)` as pixel values
/// in 0..255 (not yet rounded), three per pixel; a grey input repeats its channel.
pub(crate) struct InputImage {
    pub height: usize,
    pub width: usize,
    pub pixels: Vec<[f32; 3]>,
    pub scaling: InputScaling,
}

impl InputImage {
    pub fn from_input(shape: &[i64], values: &[f32]) -> Result<InputImage, RenderError> {
        let row = first_row("input", shape, values)?;
        let (channels, height, width) = (shape[1] as usize, shape[2] as usize, shape[3] as usize);
        let finite = || row.iter().copied().filter(|value| value.is_finite());
        let low = finite().fold(f32::INFINITY, f32::min);
        let high = finite().fold(f32::NEG_INFINITY, f32::max);
        let scaling = if low >= 0.0 && high <= 1.0 { InputScaling::UnitRange } else { InputScaling::Stretched { low, high } };
        let to_pixel = |value: f32| -> f32 {
            if !value.is_finite() {
                return 0.0;
            }
            match scaling {
                // Captum's `_prepare_image(original_image * 255)`: truncate to integers.
                InputScaling::UnitRange => (value * 255.0).trunc().clamp(0.0, 255.0),
                InputScaling::Stretched { low, high } if high > low => ((value - low) / (high - low) * 255.0).trunc(),
                InputScaling::Stretched { .. } => 0.0,
            }
        };
        let plane_len = height * width;
        let pixels = (0..plane_len)
            .map(|index| {
                let at = |channel: usize| to_pixel(row[channel * plane_len + index]);
                if channels == 1 {
                    [at(0); 3]
                } else {
                    [at(0), at(1), at(2)]
                }
            })
            .collect();
        Ok(InputImage { height, width, pixels, scaling })
    }
}

impl InputImage {
    /// The input as Captum's `original_image` shows it.
    pub fn picture(&self) -> RgbaImage {
        RgbaImage::from_fn(self.width as u32, self.height as u32, |x, y| {
            let pixel = self.pixels[y as usize * self.width + x as usize];
            let [r, g, b] = pixel.map(|c| c.trunc().clamp(0.0, 255.0) as u8);
            Rgba([r, g, b, 255])
        })
    }
}

/// One method's picture at the input's resolution. `normalised` holds one value per
/// pixel (Captum's `norm_attr`). Sign `all` with masking or alpha scaling must have been
/// refused before ([`VisualMethod::check_sign`]); `Auto` is not a picture of its own and
/// shows the input.
pub(crate) fn method_picture(method: VisualMethod, image: &InputImage, normalised: &[f32], sign: Sign, alpha_overlay: f32) -> RgbaImage {
    let opaque = |rgb: [f32; 3]| Rgba([rgb[0], rgb[1], rgb[2], 255.0].map(|c| c.round().clamp(0.0, 255.0) as u8));
    // matplotlib's `imshow(grey, cmap="gray")` stretches the grey mean over its own range.
    let greys: Vec<f32> = image.pixels.iter().map(|p| (p[0] + p[1] + p[2]) / 3.0).collect();
    let grey_low = greys.iter().copied().fold(f32::INFINITY, f32::min);
    let grey_high = greys.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let pixel = |index: usize| -> Rgba<u8> {
        let input = image.pixels[index];
        let n = normalised[index];
        match method {
            VisualMethod::HeatMap => opaque(colour_map(sign, n).map(f32::from)),
            VisualMethod::BlendedHeatMap => {
                let grey = if grey_high > grey_low { (greys[index] - grey_low) / (grey_high - grey_low) * 255.0 } else { 0.0 };
                let heat = colour_map(sign, n);
                opaque([0, 1, 2].map(|c| alpha_overlay * heat[c] as f32 + (1.0 - alpha_overlay) * grey))
            }
            // Captum: `_prepare_image(original_image * norm_attr)`, truncation then clip.
            VisualMethod::MaskedImage => opaque(input.map(|c| (c * n).trunc())),
            // Captum: the image with alpha `_prepare_image(norm_attr * 255)`.
            VisualMethod::AlphaScaling => {
                let rgb = input.map(|c| c.trunc().clamp(0.0, 255.0) as u8);
                Rgba([rgb[0], rgb[1], rgb[2], (n * 255.0).trunc().clamp(0.0, 255.0) as u8])
            }
            VisualMethod::OriginalImage | VisualMethod::Auto => opaque(input.map(f32::trunc)),
        }
    };
    RgbaImage::from_fn(image.width as u32, image.height as u32, |x, y| pixel(y as usize * image.width + x as usize))
}

/// A heat map of normalised values laid out `height` × `width`, for inputs that are
/// not images.
pub(crate) fn heat_map_picture(height: usize, width: usize, normalised: &[f32], sign: Sign) -> RgbaImage {
    RgbaImage::from_fn(width as u32, height as u32, |x, y| {
        let [r, g, b] = colour_map(sign, normalised[y as usize * width + x as usize]);
        Rgba([r, g, b, 255])
    })
}

/// Smaller sides are enlarged towards this many pixels, by a whole factor.
const TARGET_SIDE: u32 = 160;
const MAX_WIDTH: u32 = 768;
const MAX_HEIGHT: u32 = 512;
const MIN_SIDE: u32 = 24;

/// The picture at display size: small inputs (8×8 digits) are enlarged by a whole
/// factor with nearest neighbours, so every input pixel is a sharp square and pixel
/// values survive unchanged; pictures too large for a figure are shrunk smoothly.
pub(crate) fn for_display(picture: &RgbaImage) -> (RgbaImage, u32) {
    let (width, height) = picture.dimensions();
    let factor = (TARGET_SIDE / width.min(height).max(1)).clamp(1, 64);
    let (display_width, display_height) = (width * factor, height * factor);
    if display_width <= MAX_WIDTH && display_height <= MAX_HEIGHT {
        let enlarged = RgbaImage::from_fn(display_width, display_height, |x, y| *picture.get_pixel(x / factor, y / factor));
        return (enlarged, factor);
    }
    let shrink = (MAX_WIDTH as f32 / width as f32).min(MAX_HEIGHT as f32 / height as f32).min(factor as f32);
    let fitted_width = ((width as f32 * shrink).round() as u32).clamp(MIN_SIDE, MAX_WIDTH);
    let fitted_height = ((height as f32 * shrink).round() as u32).clamp(MIN_SIDE, MAX_HEIGHT);
    (imageops::resize(picture, fitted_width, fitted_height, imageops::FilterType::Triangle), 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_are_scaled_like_captum_or_stretched() {
        let unit = InputImage::from_input(&[1, 1, 1, 2], &[0.5, 1.0]).unwrap();
        assert_eq!(unit.scaling, InputScaling::UnitRange);
        // 0.5 * 255 = 127.5, truncated to 127.
        assert_eq!(unit.pixels, vec![[127.0; 3], [255.0; 3]]);
        // 0..16 (sklearn digits): 8 is half way, 127.5 truncated.
        let digits = InputImage::from_input(&[1, 1, 1, 3], &[0.0, 8.0, 16.0]).unwrap();
        assert_eq!(digits.pixels, vec![[0.0; 3], [127.0; 3], [255.0; 3]]);
        let normalised = InputImage::from_input(&[1, 3, 1, 1], &[-1.0, 0.0, 1.0]).unwrap();
        assert_eq!(normalised.pixels, vec![[0.0, 127.0, 255.0]]);
    }

    #[test]
    fn small_pictures_enlarge_by_whole_factors_and_large_ones_shrink() {
        let (enlarged, factor) = for_display(&RgbaImage::new(8, 8));
        assert_eq!((enlarged.dimensions(), factor), ((160, 160), 20));
        let (same, factor) = for_display(&RgbaImage::new(224, 224));
        assert_eq!((same.dimensions(), factor), ((224, 224), 1));
        let (shrunk, _) = for_display(&RgbaImage::new(1024, 1024));
        assert_eq!(shrunk.dimensions(), (512, 512));
        // A 1×1000 strip: wide as allowed, never thinner than MIN_SIDE.
        let (strip, _) = for_display(&RgbaImage::new(1000, 1));
        assert_eq!(strip.dimensions(), (768, 24));
    }
}
