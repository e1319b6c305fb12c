//! The public figure API: one attribution as a figure ([`attribution_figure`]) and
//! several methods' attributions of one input side by side ([`method_grid`]). Decides
//! from the shapes what kind of input it is, draws the panels, writes the alt text and
//! encodes the result as PNG or SVG.

use crate::chart::{bar_chart, format_value, line_plot};
use crate::image_attr::{for_display, heat_map_picture, method_picture, InputImage, InputScaling};
use crate::normalize::normalise;
use crate::options::{FigureOptions, Sign, VisualMethod};
use crate::panel::{compose, raster_panel, ColourScale};
use crate::plane::{first_row, strongest, Plane};
use crate::raster::{encode_png, rasterise};
use crate::scene::Scene;
use crate::svg::to_svg;
use crate::{Figure, Format, RenderError};

/// What to draw: the input and its attribution, both row-major with their shapes, and
/// how. Only the first batch row is drawn.
pub struct AttributionFigure<'a> {
    pub input_shape: &'a [i64],
    pub input: &'a [f32],
    pub attribution_shape: &'a [i64],
    pub attribution: &'a [f32],
    /// Caption, e.g. `saliency, target 3`.
    pub title: &'a str,
    pub options: FigureOptions,
}

/// One method's attribution in a [`method_grid`].
pub struct GridPanel<'a> {
    /// The panel's title, usually the method name (`integrated_gradients`).
    pub title: &'a str,
    pub attribution_shape: &'a [i64],
    pub attribution: &'a [f32],
}

/// A 2-D attribution `(batch, n)` with at most this many values per row is drawn as a
/// bar chart of features; a longer one as a line plot over positions.
pub const MAX_BAR_FEATURES: usize = 100;

/// The figure for one attribution of one input.
///
/// Errors: [`RenderError::BadData`] when shapes and values disagree,
/// [`RenderError::BadOptions`] for out-of-range options, `masked_image` or
/// `alpha_scaling` with sign `all`, or an image method for an input that is no image.
pub fn attribution_figure(figure: &AttributionFigure<'_>, format: Format) -> Result<Figure, RenderError> {
    let (scene, alt_text) = attribution_scene(figure)?;
    encode(&scene, format, alt_text)
}

/// One input, several methods side by side (saliency | integrated_gradients |
/// occlusion), each panel titled with its method. Image inputs get the input itself as
/// the first panel and, with method `Auto`, a blended heat map per method; other inputs
/// get a chart (or heat map) per method. Each panel is normalised on its own, as each
/// method has its own scale; the alt text gives every panel's scale.
pub fn method_grid(
    input_shape: &[i64],
    input: &[f32],
    panels: &[GridPanel<'_>],
    options: &FigureOptions,
    format: Format,
) -> Result<Figure, RenderError> {
    let (scene, alt_text) = grid_scene(input_shape, input, panels, options)?;
    encode(&scene, format, alt_text)
}

pub(crate) fn encode(scene: &Scene, format: Format, alt_text: String) -> Result<Figure, RenderError> {
    match format {
        Format::Png => Ok(Figure { mime: "image/png".to_string(), data: encode_png(&rasterise(scene)?)?, alt_text }),
        Format::Svg => Ok(Figure { mime: "image/svg+xml".to_string(), data: to_svg(scene, &alt_text)?.into_bytes(), alt_text }),
    }
}

/// What the shapes say the input is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Input `(batch, 1|3, height, width)`, attribution `(batch, channels, h, w)`.
    Image,
    /// Attribution `(batch, features)`, at most [`MAX_BAR_FEATURES`] features.
    Tabular,
    /// Attribution `(batch, length)` or `(batch, length, dims)`.
    Sequence,
    Other,
}

fn is_image_input(input_shape: &[i64]) -> bool {
    input_shape.len() == 4 && matches!(input_shape[1], 1 | 3) && input_shape[2] > 0 && input_shape[3] > 0
}

fn kind_of(input_shape: &[i64], attribution_shape: &[i64]) -> Kind {
    match attribution_shape.len() {
        4 if is_image_input(input_shape) => Kind::Image,
        2 if attribution_shape[1] <= MAX_BAR_FEATURES as i64 => Kind::Tabular,
        2 | 3 => Kind::Sequence,
        _ => Kind::Other,
    }
}

/// Panels of one attribution and a sentence about them for the alt text.
struct Drawing {
    panels: Vec<(String, Scene)>,
    description: String,
}

fn attribution_scene(figure: &AttributionFigure<'_>) -> Result<(Scene, String), RenderError> {
    let options = &figure.options;
    options.validate()?;
    let kind = kind_of(figure.input_shape, figure.attribution_shape);
    let image = match kind {
        Kind::Image => Some(InputImage::from_input(figure.input_shape, figure.input)?),
        _ => None,
    };
    let drawing = draw_attribution(kind, image.as_ref(), figure.input_shape, figure.attribution_shape, figure.attribution, options, None)?;
    let scene = compose(figure.title, &subtitle(kind, options), drawing.panels);
    let alt_text = format!(
        "{}: {}. Drawn from the first batch row of input {:?} (attribution {:?}){}",
        figure.title,
        drawing.description,
        figure.input_shape,
        figure.attribution_shape,
        image.as_ref().map(input_note).unwrap_or_default(),
    );
    Ok((scene, alt_text))
}

fn grid_scene(input_shape: &[i64], input: &[f32], panels: &[GridPanel<'_>], options: &FigureOptions) -> Result<(Scene, String), RenderError> {
    options.validate()?;
    if panels.is_empty() {
        return Err(RenderError::BadData("a method grid needs at least one attribution panel".to_string()));
    }
    let kinds: Vec<Kind> = panels.iter().map(|panel| kind_of(input_shape, panel.attribution_shape)).collect();
    let image = if kinds.contains(&Kind::Image) { Some(InputImage::from_input(input_shape, input)?) } else { None };
    let mut figure_panels = Vec::new();
    if let Some(image) = &image {
        // The input once, first, so every method's panel can be compared with it.
        if options.method != VisualMethod::OriginalImage {
            figure_panels.push(("input".to_string(), raster_panel("input", for_display(&image.picture()).0, "input", None)));
        }
    }
    let mut descriptions = Vec::new();
    for (panel, &kind) in panels.iter().zip(&kinds) {
        let drawing = draw_attribution(kind, image.as_ref(), input_shape, panel.attribution_shape, panel.attribution, options, Some(panel.title))
            .map_err(|error| match error {
                RenderError::BadData(message) => RenderError::BadData(format!("panel {:?}: {message}", panel.title)),
                other => other,
            })?;
        figure_panels.extend(drawing.panels);
        descriptions.push(format!("{}: {}", panel.title, drawing.description));
    }
    let heading = match (options.method, image.is_some()) {
        (VisualMethod::Auto, true) => "blended heat map per method".to_string(),
        (VisualMethod::Auto, false) => "attribution per method".to_string(),
        (method, _) => format!("{} per method", method_title(method)),
    };
    let scene = compose(&heading, &subtitle(kinds[0], options), figure_panels);
    let alt_text = format!(
        "{heading} for {} methods, drawn from the first batch row of input {input_shape:?}{}. {}",
        panels.len(),
        if image.is_some() && options.method != VisualMethod::OriginalImage { ", input first" } else { "" },
        descriptions.join(". "),
    );
    Ok((scene, alt_text))
}

/// The grey line next to the title: the sign, and the outlier clipping where it applies.
fn subtitle(kind: Kind, options: &FigureOptions) -> String {
    let charts = options.method == VisualMethod::Auto && matches!(kind, Kind::Tabular | Kind::Sequence);
    if charts {
        format!("sign: {}", options.sign)
    } else {
        format!("sign: {} \u{b7} outliers: {}%", options.sign, options.outlier_percent)
    }
}

/// The panels of one attribution. `grid_title` is the method's name in a grid: it
/// titles the single panel, and `Auto` then means one blended heat map for images.
fn draw_attribution(
    kind: Kind,
    image: Option<&InputImage>,
    input_shape: &[i64],
    attribution_shape: &[i64],
    attribution: &[f32],
    options: &FigureOptions,
    grid_title: Option<&str>,
) -> Result<Drawing, RenderError> {
    let row = first_row("attribution", attribution_shape, attribution)?;
    // A 1-D attribution has no batch dimension: all of it is drawn.
    let row = if attribution_shape.len() == 1 { attribution } else { row };
    let sign = options.sign;
    match (kind, image) {
        (Kind::Image, Some(image)) => draw_image(image, attribution_shape, row, options, grid_title),
        _ if options.method.needs_image() => Err(RenderError::BadOptions(format!(
            "{} needs an image input of shape (batch, 1|3, height, width) with a 4-D attribution; \
             got input {input_shape:?} and attribution {attribution_shape:?}; use auto or heat_map",
            options.method
        ))),
        (Kind::Tabular, _) if options.method == VisualMethod::Auto => {
            let values: Vec<f32> = row.iter().map(|&value| if value.is_finite() { sign.select(value) } else { 0.0 }).collect();
            let title = grid_title.unwrap_or("attribution by feature");
            let description = format!(
                "bar chart of {} feature attributions; {} as it is (no outlier clipping), {}; value axis {}",
                values.len(),
                sign.phrase(),
                strongest_words(&values, sign, |index| format!("feature {index}")),
                value_range(&values),
            );
            Ok(Drawing { panels: vec![(title.to_string(), bar_chart(title, &values, sign))], description })
        }
        (Kind::Sequence, _) if options.method == VisualMethod::Auto => {
            let dims = if attribution_shape.len() == 3 { attribution_shape[2] as usize } else { 1 };
            let values: Vec<f32> = row
                .chunks_exact(dims)
                .map(|position| position.iter().filter(|value| value.is_finite()).sum::<f32>())
                .map(|value| sign.select(value))
                .collect();
            let title = grid_title.unwrap_or("attribution by position");
            let summed = if dims > 1 { format!(", summed over {dims} dimensions") } else { String::new() };
            let description = format!(
                "line plot of attribution over {} positions; {}{summed} as it is (no outlier clipping), {}; value axis {}",
                values.len(),
                sign.phrase(),
                strongest_words(&values, sign, |index| format!("position {index}")),
                value_range(&values),
            );
            Ok(Drawing { panels: vec![(title.to_string(), line_plot(title, &values, sign))], description })
        }
        _ => draw_plain_heat_map(attribution_shape, row, options, grid_title),
    }
}

/// Captum's image methods on the channel-summed attribution, resized to the input.
fn draw_image(
    image: &InputImage,
    attribution_shape: &[i64],
    row: &[f32],
    options: &FigureOptions,
    grid_title: Option<&str>,
) -> Result<Drawing, RenderError> {
    let sign = options.sign;
    let (channels, height, width) = (attribution_shape[1] as usize, attribution_shape[2] as usize, attribution_shape[3] as usize);
    let mut plane = Plane::channel_sum(row, channels, height, width);
    let resized = (height, width) != (image.height, image.width);
    if resized {
        plane = plane.resized(image.height, image.width);
    }
    let methods = match (options.method, grid_title) {
        (VisualMethod::Auto, None) => vec![VisualMethod::OriginalImage, VisualMethod::HeatMap, VisualMethod::BlendedHeatMap],
        (VisualMethod::Auto, Some(_)) => vec![VisualMethod::BlendedHeatMap],
        (method, _) => vec![method],
    };
    for method in &methods {
        method.check_sign(sign)?;
    }
    let normalised = normalise(&plane.values, sign, options.outlier_percent);
    let panels = methods
        .iter()
        .map(|&method| {
            let picture = method_picture(method, image, &normalised.values, sign, options.alpha_overlay);
            let uses_colour_map = matches!(method, VisualMethod::HeatMap | VisualMethod::BlendedHeatMap);
            let scale = (options.show_colorbar && uses_colour_map).then_some(ColourScale { sign, threshold: normalised.threshold });
            let title = grid_title.map(str::to_string).unwrap_or_else(|| method_title(method).to_string());
            let panel = raster_panel(&title, for_display(&picture).0, method.name(), scale);
            (title, panel)
        })
        .collect();
    let what = if options.method == VisualMethod::Auto && grid_title.is_none() {
        format!("input, heat map and heat map blended over the grey input (overlay alpha {})", options.alpha_overlay)
    } else {
        method_words(methods[0], options.alpha_overlay)
    };
    let summed = if channels > 1 { format!(", summed over {channels} channels") } else { String::new() };
    let resized = if resized { format!(", upsampled bilinearly from {height}\u{d7}{width}") } else { String::new() };
    let at = |index: usize| format!("row {}, column {}", index / image.width, index % image.width);
    let colours = methods.iter().any(|method| matches!(method, VisualMethod::HeatMap | VisualMethod::BlendedHeatMap));
    let description = format!(
        "{what}; {}{summed}{resized}, {}; {}",
        sign.phrase(),
        strongest_words(&plane.values, sign, at),
        scale_words(sign, normalised.threshold, options.outlier_percent, colours),
    );
    Ok(Drawing { panels, description })
}

/// A heat map of the first batch row for shapes that are neither images nor charts
/// (or when `heat_map` is asked for): `(batch, n)` as one row, `(batch, rows, columns)`
/// as a grid, `(batch, channels, height, ...)` summed over channels.
fn draw_plain_heat_map(attribution_shape: &[i64], row: &[f32], options: &FigureOptions, grid_title: Option<&str>) -> Result<Drawing, RenderError> {
    let sign = options.sign;
    let plane = match attribution_shape.len() {
        1 | 2 => Plane { height: 1, width: row.len(), values: row.to_vec() },
        3 => Plane { height: attribution_shape[1] as usize, width: attribution_shape[2] as usize, values: row.to_vec() },
        _ => {
            let (channels, height) = (attribution_shape[1] as usize, attribution_shape[2] as usize);
            Plane::channel_sum(row, channels, height, row.len() / channels / height)
        }
    };
    let normalised = normalise(&plane.values, sign, options.outlier_percent);
    let picture = heat_map_picture(plane.height, plane.width, &normalised.values, sign);
    let scale = options.show_colorbar.then_some(ColourScale { sign, threshold: normalised.threshold });
    let title = grid_title.unwrap_or("heat map");
    let panel = raster_panel(title, for_display(&picture).0, VisualMethod::HeatMap.name(), scale);
    let summed = if attribution_shape.len() >= 4 { format!(", summed over {} channels", attribution_shape[1]) } else { String::new() };
    let at = |index: usize| {
        if plane.height == 1 {
            format!("position {index}")
        } else {
            format!("row {}, column {}", index / plane.width, index % plane.width)
        }
    };
    let description = format!(
        "heat map of {}\u{d7}{} values; {}{summed}, {}; {}",
        plane.height,
        plane.width,
        sign.phrase(),
        strongest_words(&plane.values, sign, at),
        scale_words(sign, normalised.threshold, options.outlier_percent, true),
    );
    Ok(Drawing { panels: vec![(title.to_string(), panel)], description })
}

fn method_title(method: VisualMethod) -> &'static str {
    match method {
        VisualMethod::Auto => "attribution",
        VisualMethod::HeatMap => "heat map",
        VisualMethod::BlendedHeatMap => "blended heat map",
        VisualMethod::MaskedImage => "masked image",
        VisualMethod::AlphaScaling => "alpha scaling",
        VisualMethod::OriginalImage => "input",
    }
}

fn method_words(method: VisualMethod, alpha_overlay: f32) -> String {
    match method {
        VisualMethod::Auto | VisualMethod::HeatMap => "heat map".to_string(),
        VisualMethod::BlendedHeatMap => format!("heat map blended over the grey input (overlay alpha {alpha_overlay})"),
        VisualMethod::MaskedImage => "input multiplied pixel by pixel by the normalised attribution".to_string(),
        VisualMethod::AlphaScaling => "input with its opacity set to the normalised attribution".to_string(),
        VisualMethod::OriginalImage => "input image alone (the attribution is not drawn)".to_string(),
    }
}

fn strongest_words(values: &[f32], sign: Sign, at: impl Fn(usize) -> String) -> String {
    match strongest(values, sign) {
        Some(index) => format!("strongest at {} ({})", at(index), format_value(values[index])),
        None => format!("no {} attribution anywhere", if matches!(sign, Sign::Positive | Sign::Negative) { sign.name() } else { "non-zero" }),
    }
}

/// How normalised values relate to attribution values: what maps to the end of the
/// scale, and that larger ones saturate.
fn scale_words(sign: Sign, threshold: f32, outlier_percent: f32, colours: bool) -> String {
    if threshold == 0.0 {
        return "nothing to scale, every selected value is 0".to_string();
    }
    let (quantity, from, to, colour_names) = match sign {
        Sign::All => ("attribution", format_value(-threshold), format_value(threshold), "red through white to green"),
        Sign::AbsoluteValue => ("|attribution|", "0".to_string(), format_value(threshold), "white to dark blue"),
        Sign::Positive => ("positive attribution", "0".to_string(), format_value(threshold), "white to dark green"),
        Sign::Negative => ("negative attribution", "0".to_string(), format_value(threshold), "white to dark red"),
    };
    let mapping = if colours { format!("colour scale {colour_names}") } else { "factor 0 to 1".to_string() };
    format!("{mapping} for {quantity} {from} to {to}, beyond which values saturate ({outlier_percent}% outliers by cumulative sum)")
}

fn value_range(values: &[f32]) -> String {
    let low = values.iter().copied().fold(0.0f32, f32::min);
    let high = values.iter().copied().fold(0.0f32, f32::max);
    format!("{} to {}", format_value(low), format_value(high))
}

fn input_note(image: &InputImage) -> String {
    match image.scaling {
        InputScaling::Stretched { low, high } => {
            format!("; the input is shown stretched from its range {} to {}", format_value(low), format_value(high))
        }
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 4×4 grey image with values in [0, 1] and an attribution that is 0 except at a
    /// few pixels, so the normalisation can be worked out by hand. Values are chosen
    /// away from whole-number products, so truncation is not at the mercy of rounding.
    fn small_image() -> (Vec<f32>, Vec<f32>) {
        // Pixel i is 0.06 i + 0.01: (0, 0) 0.01 -> 2, (1, 2) 0.37 -> 94, (2, 3) 0.67 -> 170
        // after Captum's trunc(x * 255).
        let image: Vec<f32> = (0..16).map(|v| v as f32 * 0.06 + 0.01).collect();
        let mut attribution = vec![0.0f32; 16];
        // |values| sorted: 0 (x13), 1, 1.9, 5 with running sums 1, 2.9, 7.9; 98% of 7.9 is
        // 7.742, first reached at 5. So the threshold is 5: pixel (1, 2) normalises to
        // 1.9 / 5 = 0.38 and (2, 3) to 1.
        attribution[4 + 2] = -1.9;
        attribution[2 * 4 + 3] = 5.0;
        attribution[3 * 4] = 1.0;
        (image, attribution)
    }

    fn scene_for(method: VisualMethod, sign: Sign, image: &[f32], attribution: &[f32]) -> Result<(Scene, String), RenderError> {
        attribution_scene(&AttributionFigure {
            input_shape: &[1, 1, 4, 4],
            input: image,
            attribution_shape: &[1, 1, 4, 4],
            attribution,
            title: "saliency, target 3",
            options: FigureOptions { method, sign, ..FigureOptions::default() },
        })
    }

    /// Pixel (row, column) of the named picture in the encoded PNG.
    fn png_pixel(scene: &Scene, label: &str, method: VisualMethod, sign: Sign, row: u32, column: u32) -> [u8; 4] {
        let (x, y, picture) = scene.image(label).unwrap();
        let factor = picture.width() / 4;
        let (image, attribution) = small_image();
        let figure = AttributionFigure {
            input_shape: &[1, 1, 4, 4],
            input: &image,
            attribution_shape: &[1, 1, 4, 4],
            attribution: &attribution,
            title: "saliency, target 3",
            options: FigureOptions { method, sign, ..FigureOptions::default() },
        };
        let png = attribution_figure(&figure, Format::Png).unwrap();
        let decoded = image::load_from_memory(&png.data).unwrap().to_rgba8();
        decoded.get_pixel(x + column * factor + factor / 2, y + row * factor + factor / 2).0
    }

    #[test]
    fn masked_image_multiplies_the_input_by_the_normalised_attribution() {
        let (image, attribution) = small_image();
        let (scene, _) = scene_for(VisualMethod::MaskedImage, Sign::AbsoluteValue, &image, &attribution).unwrap();
        // Pixel (1, 2): input 94 times 0.38 = 35.72, truncated to 35.
        assert_eq!(png_pixel(&scene, "masked_image", VisualMethod::MaskedImage, Sign::AbsoluteValue, 1, 2), [35, 35, 35, 255]);
        // Pixel (2, 3): input 170 times 1.
        assert_eq!(png_pixel(&scene, "masked_image", VisualMethod::MaskedImage, Sign::AbsoluteValue, 2, 3), [170, 170, 170, 255]);
        // Sign positive drops the -1.9 at (1, 2): black there.
        let (scene, _) = scene_for(VisualMethod::MaskedImage, Sign::Positive, &image, &attribution).unwrap();
        assert_eq!(png_pixel(&scene, "masked_image", VisualMethod::MaskedImage, Sign::Positive, 1, 2), [0, 0, 0, 255]);
    }

    #[test]
    fn alpha_scaling_sets_opacity_to_the_normalised_attribution() {
        let (image, attribution) = small_image();
        let (scene, _) = scene_for(VisualMethod::AlphaScaling, Sign::AbsoluteValue, &image, &attribution).unwrap();
        // Pixel (1, 2): alpha trunc(0.38 * 255 = 96.9) = 96, colour the input's 94.
        assert_eq!(png_pixel(&scene, "alpha_scaling", VisualMethod::AlphaScaling, Sign::AbsoluteValue, 1, 2), [94, 94, 94, 96]);
        assert_eq!(png_pixel(&scene, "alpha_scaling", VisualMethod::AlphaScaling, Sign::AbsoluteValue, 2, 3)[3], 255);
        assert_eq!(png_pixel(&scene, "alpha_scaling", VisualMethod::AlphaScaling, Sign::AbsoluteValue, 0, 0)[3], 0);
        // Sign negative: only the -1.9 counts, so it is the threshold and normalises to 1.
        let (scene, _) = scene_for(VisualMethod::AlphaScaling, Sign::Negative, &image, &attribution).unwrap();
        assert_eq!(png_pixel(&scene, "alpha_scaling", VisualMethod::AlphaScaling, Sign::Negative, 1, 2)[3], 255);
        assert_eq!(png_pixel(&scene, "alpha_scaling", VisualMethod::AlphaScaling, Sign::Negative, 2, 3)[3], 0);
    }

    #[test]
    fn heat_and_blend_follow_the_colour_map() {
        let (image, attribution) = small_image();
        let (scene, alt) = scene_for(VisualMethod::Auto, Sign::All, &image, &attribution).unwrap();
        // Sign all: (2, 3) is +1 -> green. (1, 2) is -0.38, at 0.31 of the red-white-green
        // scale, 0.62 of the way from red to white: green and blue 0.62 * 255 = 158.1.
        assert_eq!(png_pixel(&scene, "heat_map", VisualMethod::Auto, Sign::All, 2, 3), [0, 128, 0, 255]);
        assert_eq!(png_pixel(&scene, "heat_map", VisualMethod::Auto, Sign::All, 1, 2), [255, 158, 158, 255]);
        // Blend at (0, 0): attribution 0 -> white heat; the grey input's minimum -> black;
        // half and half gives 127.5, rounded to 128.
        assert_eq!(png_pixel(&scene, "blended_heat_map", VisualMethod::Auto, Sign::All, 0, 0), [128, 128, 128, 255]);
        assert_eq!(png_pixel(&scene, "original_image", VisualMethod::Auto, Sign::All, 2, 3), [170, 170, 170, 255]);
        assert_eq!(scene.panels.iter().map(|panel| panel.title.as_str()).collect::<Vec<_>>(), ["input", "heat map", "blended heat map"]);
        assert!(alt.contains("strongest at row 2, column 3 (5)") && alt.contains("-5 to 5"), "{alt}");
    }

    #[test]
    fn grad_cam_maps_are_upsampled_onto_the_input() {
        let input = vec![0.5f32; 3 * 8 * 8];
        let figure = AttributionFigure {
            input_shape: &[1, 3, 8, 8],
            input: &input,
            attribution_shape: &[1, 1, 2, 2],
            attribution: &[0.0, 1.0, 0.0, 0.0],
            title: "grad_cam",
            options: FigureOptions { method: VisualMethod::HeatMap, ..FigureOptions::default() },
        };
        let (scene, alt) = attribution_scene(&figure).unwrap();
        let (_, _, picture) = scene.image("heat_map").unwrap();
        assert_eq!(picture.dimensions(), (160, 160));
        assert!(alt.contains("upsampled bilinearly from 2\u{d7}2") && alt.contains("row 0, column 6"), "{alt}");
    }

    #[test]
    fn grid_has_one_panel_per_method_after_the_input() {
        let (image, attribution) = small_image();
        let shape = [1i64, 1, 4, 4];
        let panels: Vec<GridPanel<'_>> = ["saliency", "integrated_gradients", "occlusion"]
            .iter()
            .map(|title| GridPanel { title, attribution_shape: &shape, attribution: &attribution })
            .collect();
        let (scene, alt) = grid_scene(&shape, &image, &panels, &FigureOptions::default()).unwrap();
        let titles: Vec<&str> = scene.panels.iter().map(|panel| panel.title.as_str()).collect();
        assert_eq!(titles, ["input", "saliency", "integrated_gradients", "occlusion"]);
        assert!(alt.starts_with("blended heat map per method for 3 methods"), "{alt}");
        // Non-image input: one chart per method, no input panel.
        let tabular = [1i64, 5];
        let values = [0.1f32, -0.4, 0.2, 0.0, 0.3];
        let panels = [
            GridPanel { title: "saliency", attribution_shape: &tabular, attribution: &values },
            GridPanel { title: "feature_ablation", attribution_shape: &tabular, attribution: &values },
        ];
        let (scene, _) = grid_scene(&tabular, &[0.0; 5], &panels, &FigureOptions::default()).unwrap();
        assert_eq!(scene.panels.len(), 2);
    }
}
