//! Figures of generated model inputs: a contact sheet of synthesized images
//! ([`image_grid`], what activation maximisation produced, one captioned tile each) and
//! counterfactuals beside their originals ([`counterfactual_figure`]: original,
//! counterfactual and their difference per row, or a bar chart of the change for
//! tabular rows). Both draw values that are already in a known range, so unlike
//! attribution figures nothing is stretched: a value's grey level says its value.

use crate::chart::{bar_chart, bar_plot_width, format_value, AXIS_LEFT, AXIS_RIGHT, CHART_HEIGHT, PANEL_TITLE_HEIGHT};
use crate::colour::{AXIS, GRID};
use crate::figure::encode;
use crate::font::text_width;
use crate::image_attr::heat_map_picture;
use crate::normalize::normalise;
use crate::options::Sign;
use crate::panel::compose;
use crate::plane::{strongest, Plane};
use crate::scene::{Anchor, Element, Scene};
use crate::small_multiples::{counted, fit_start, with_notes, TICK_FONT};
use crate::{Figure, Format, RenderError};
use image::{imageops, Rgba, RgbaImage};

/// One image of an [`image_grid`].
#[derive(Debug, Clone, PartialEq)]
pub struct ImageTile<'a> {
    /// 1 (grey) or 3 (RGB).
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    /// `(channels, height, width)` row-major, already mapped to [0, 1] (0 black, 1
    /// full intensity); values outside are drawn clamped.
    pub values: &'a [f32],
    /// Drawn under the tile, e.g. `class 3 · p=0.97`; empty for none.
    pub caption: String,
}

/// One input and its counterfactual in a [`counterfactual_figure`].
#[derive(Debug, Clone, PartialEq)]
pub struct CounterfactualPanel<'a> {
    /// The shape of one input row: `(channels 1|3, height, width)` for an image,
    /// `(features)` for a tabular row.
    pub shape: &'a [i64],
    /// Both row-major in `shape`, in the model's input units.
    pub original: &'a [f32],
    pub counterfactual: &'a [f32],
    /// The valid value range of an input element: images are drawn from `low` (black)
    /// to `high` (full intensity).
    pub low: f32,
    pub high: f32,
    /// Names the row, e.g. `3 → 8 · L2 1.23`; empty for none.
    pub caption: String,
}

/// At most this many tiles are drawn by [`image_grid`]; the rest are left out and
/// counted in the notes and the alt text.
pub const MAX_IMAGE_TILES: usize = 256;
/// At most this many rows are drawn by [`counterfactual_figure`]; the rest are left out
/// and counted in the notes and the alt text.
pub const MAX_COUNTERFACTUAL_ROWS: usize = 32;

/// Tiles are enlarged by a whole factor until their longer side is at least this many
/// pixels (a 28×28 digit becomes 112×112) ...
const SHEET_MIN_SIDE: u32 = 96;
/// ... counterfactual tiles a little more, as their differences are often small ...
const COUNTERFACTUAL_MIN_SIDE: u32 = 128;
/// ... and never beyond this; larger images are shrunk smoothly to it.
const MAX_DISPLAY_SIDE: u32 = 256;
/// Captions get at least this width under narrow tiles.
const MIN_CAPTION_WIDTH: f32 = 96.0;
/// Captions wrap onto at most two lines of this height; the second is cut short.
const CAPTION_LINE: f32 = 13.0;
const CAPTION_GAP: f32 = 4.0;
const COLUMN_GAP: f32 = 12.0;
const ROW_GAP: f32 = 12.0;
/// Counterfactual rows: the widest the caption column left of the tiles gets, the gap
/// after it, the column headers above the tiles and the scale line under each map.
const ROW_LABEL_MAX_WIDTH: f32 = 160.0;
const ROW_LABEL_GAP: f32 = 12.0;
const HEADER_FONT: f32 = 12.0;
const HEADER_HEIGHT: f32 = 20.0;
const SCALE_HEIGHT: f32 = 14.0;
/// Captum's default `outlier_perc`: the largest differences that together make up 2%
/// of the total saturate the difference map.
const DIFFERENCE_OUTLIER_PERCENT: f32 = 2.0;
/// Captions named in the alt text of a contact sheet.
const ALT_CAPTIONS: usize = 4;

/// A contact sheet of images, e.g. inputs synthesized by activation maximisation:
/// `columns` tiles per row (0: up to three in one row, more about the square root of
/// their count per row), each enlarged by a whole factor (nearest neighbour, so every
/// input pixel stays a sharp square) until its longer side is at least 96 px and at
/// most 256 px, larger images shrunk smoothly to 256 px, and its caption under it
/// (wrapped onto two lines, the second cut short with an ellipsis). One-channel tiles
/// are grey, three-channel tiles RGB; values are drawn as they are from 0 (black) to 1
/// (full intensity), clamped outside. At most [`MAX_IMAGE_TILES`] tiles are drawn, the
/// first ones; the notes say how many were left out. The alt text gives the title, the
/// number and size of the tiles, how they are scaled and laid out, and the first
/// captions.
///
/// Errors: [`RenderError::BadData`] for no tiles, a channel count other than 1 or 3, an
/// empty tile, tiles of different shapes, a value count that does not match the
/// shape, or a value that is not finite.
pub fn image_grid(title: &str, tiles: &[ImageTile<'_>], columns: usize, format: Format) -> Result<Figure, RenderError> {
    let (scene, alt_text) = sheet_scene(title, tiles, columns)?;
    encode(&scene, format, alt_text)
}

/// Counterfactuals beside their originals, one row each.
///
/// - Image rows, shape `(1|3, height, width)`: the caption on the left, then three
///   tiles under the headers `original`, `counterfactual` and `difference`. The first
///   two are drawn from `low` (black) to `high` (full intensity), clamped outside; the
///   difference (counterfactual − original, summed over channels as Captum sums
///   attributions) is a heat map on Captum's `all` scale, red (lower) through white to
///   green (higher), normalised per row with Captum's default 2% outliers; the value
///   where its colours saturate is written under it. Tiles are enlarged by a whole
///   factor to at least 128 px (at most 256 px).
/// - Tabular rows, shape `(features)`: a bar chart of the change per feature
///   (counterfactual − original), green up, red down, titled with the caption; each
///   chart has its own value axis.
///
/// All rows share one shape. At most [`MAX_COUNTERFACTUAL_ROWS`] rows are drawn, the
/// first ones; the notes say how many were left out. The alt text names every row's
/// caption, where its largest change is (with its value before and after for tabular
/// rows), how much changed and the scale.
///
/// Errors: [`RenderError::BadData`] for no rows, a shape that is neither
/// `(1|3, height, width)` nor `(features)` or has a dimension that is not positive,
/// rows of different shapes, a value count that does not match the shape, a value that
/// is not finite, or a range whose `low` is not below `high` or is not finite.
pub fn counterfactual_figure(title: &str, rows: &[CounterfactualPanel<'_>], format: Format) -> Result<Figure, RenderError> {
    let (scene, alt_text) = counterfactual_scene(title, rows)?;
    encode(&scene, format, alt_text)
}

/// Where value `index` of a row-major tensor of `dims` lies, in words: `channel 0, row
/// 2, column 5` for `(channels, height, width)`, `feature 7` for `(features)`.
fn position_words(dims: &[usize], index: usize) -> String {
    match *dims {
        [_, height, width] => {
            let (channel, rest) = (index / (height * width), index % (height * width));
            format!("channel {channel}, row {}, column {}", rest / width, rest % width)
        }
        _ => format!("feature {index}"),
    }
}

/// An error naming the first value of `values` that is not finite, if any.
fn check_finite(what: &str, dims: &[usize], values: &[f32]) -> Result<(), RenderError> {
    match values.iter().position(|value| !value.is_finite()) {
        Some(index) => Err(RenderError::BadData(format!("{what} has a non-finite value ({}) at {}", values[index], position_words(dims, index)))),
        None => Ok(()),
    }
}

/// An error unless `values` holds exactly the elements of `dims`.
fn check_count(what: &str, dims: &[usize], values: &[f32]) -> Result<(), RenderError> {
    let expected = dims.iter().try_fold(1usize, |product, &dim| product.checked_mul(dim));
    if expected == Some(values.len()) {
        return Ok(());
    }
    let shape: Vec<String> = dims.iter().map(usize::to_string).collect();
    Err(RenderError::BadData(format!("{what} of shape ({}) needs {} values, got {}", shape.join(", "), dims.iter().product::<usize>(), values.len())))
}

/// Values in [0, 1] laid out `(channels 1|3, height, width)` as a picture: grey for one
/// channel, RGB for three; values outside [0, 1] are clamped.
fn unit_picture(channels: usize, height: usize, width: usize, values: &[f32]) -> RgbaImage {
    let plane = height * width;
    RgbaImage::from_fn(width as u32, height as u32, |x, y| {
        let index = y as usize * width + x as usize;
        let level = |channel: usize| (values[channel * plane + index].clamp(0.0, 1.0) * 255.0).round() as u8;
        if channels == 1 {
            Rgba([level(0), level(0), level(0), 255])
        } else {
            Rgba([level(0), level(1), level(2), 255])
        }
    })
}

/// How a picture was brought to display size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scaling {
    /// Every pixel became a square of this many pixels across (1: as it is).
    Enlarged(u32),
    /// Shrunk smoothly to this width and height.
    Shrunk(u32, u32),
}

impl Scaling {
    fn words(self) -> String {
        match self {
            Scaling::Enlarged(1) => "shown at full size".to_string(),
            Scaling::Enlarged(factor) => format!("upscaled {factor}\u{d7}"),
            Scaling::Shrunk(width, height) => format!("shrunk to {width}\u{d7}{height} px"),
        }
    }
}

/// The picture at display size: enlarged by the whole factor that brings its longer
/// side to at least `min_long_side` without passing [`MAX_DISPLAY_SIDE`] (nearest
/// neighbour, so pixel values survive), or, when it is already longer than that,
/// shrunk smoothly to it.
fn to_display(picture: RgbaImage, min_long_side: u32) -> (RgbaImage, Scaling) {
    let (width, height) = picture.dimensions();
    let long = width.max(height);
    if long > MAX_DISPLAY_SIDE {
        let fit = |side: u32| ((side as f32 * MAX_DISPLAY_SIDE as f32 / long as f32).round() as u32).max(1);
        let (fitted_width, fitted_height) = (fit(width), fit(height));
        return (
            imageops::resize(&picture, fitted_width, fitted_height, imageops::FilterType::Triangle),
            Scaling::Shrunk(fitted_width, fitted_height),
        );
    }
    let factor = min_long_side.div_ceil(long).min(MAX_DISPLAY_SIDE / long).max(1);
    if factor == 1 {
        return (picture, Scaling::Enlarged(1));
    }
    let enlarged = RgbaImage::from_fn(width * factor, height * factor, |x, y| *picture.get_pixel(x / factor, y / factor));
    (enlarged, Scaling::Enlarged(factor))
}

/// `caption` on at most two lines of `max_width` at the tick font: broken after the last
/// word that fits on the first line; when even the first word is too wide (objective
/// names such as `channel:layer4.1.conv2:123`), after the last `:`, `.`, `_`, `/` or
/// `-` that fits, or else after the last character that does. The rest is cut short
/// with an ellipsis where it is still too wide. No lines for an empty caption.
fn caption_lines(caption: &str, max_width: f32) -> Vec<String> {
    let caption = caption.trim();
    if caption.is_empty() {
        return Vec::new();
    }
    if text_width(caption, TICK_FONT) <= max_width {
        return vec![caption.to_string()];
    }
    let fits = |first: &&str| !first.is_empty() && text_width(first, TICK_FONT) <= max_width;
    // The longest first line that ends before a character `breaks_before` accepts.
    let first_line = |breaks_before: &dyn Fn(usize) -> bool| {
        caption.char_indices().map(|(at, _)| at).filter(|&at| breaks_before(at)).map(|at| caption[..at].trim_end()).rev().find(fits)
    };
    let first = first_line(&|at| caption[at..].starts_with(' '))
        .or_else(|| first_line(&|at| caption[..at].ends_with([':', '.', '_', '/', '-'])))
        .or_else(|| first_line(&|_| true))
        .unwrap_or(caption);
    vec![first.to_string(), fit_start(caption[first.len()..].trim_start(), TICK_FONT, max_width)]
}

/// Draws `lines` one under the other at `x` (as `anchor` says), the first baseline at `y`.
fn draw_lines(scene: &mut Scene, lines: &[String], x: f32, y: f32, anchor: Anchor) {
    for (line, text) in lines.iter().enumerate() {
        scene.text(x, y + line as f32 * CAPTION_LINE, text.as_str(), TICK_FONT, anchor);
    }
}

/// A picture at (`x`, `y`) with a thin light frame just outside it, so light images
/// keep their edge on the white page.
fn framed_picture(scene: &mut Scene, x: f32, y: f32, picture: RgbaImage, label: String) {
    let (width, height) = (picture.width() as f32, picture.height() as f32);
    let (left, top, right, bottom) = (x - 0.5, y - 0.5, x + width + 0.5, y + height + 0.5);
    scene.line((left, top), (right, top), GRID, 1.0);
    scene.line((left, bottom), (right, bottom), GRID, 1.0);
    scene.line((left, top), (left, bottom), GRID, 1.0);
    scene.line((right, top), (right, bottom), GRID, 1.0);
    scene.push(Element::Image { x, y, image: picture, label });
}

/// Checks the tiles of a contact sheet and gives their common `(channels, height,
/// width)`.
fn validate_tiles(tiles: &[ImageTile<'_>]) -> Result<[usize; 3], RenderError> {
    let Some(first) = tiles.first() else {
        return Err(RenderError::BadData("an image grid needs at least one tile".to_string()));
    };
    let dims = [first.channels, first.height, first.width];
    for (index, tile) in tiles.iter().enumerate() {
        let what = format!("image tile {index}");
        if !matches!(tile.channels, 1 | 3) {
            return Err(RenderError::BadData(format!("{what} has {} channels; tiles need 1 (grey) or 3 (RGB)", tile.channels)));
        }
        if tile.height == 0 || tile.width == 0 {
            return Err(RenderError::BadData(format!("{what} is {}\u{d7}{}; tiles need a positive height and width", tile.height, tile.width)));
        }
        let tile_dims = [tile.channels, tile.height, tile.width];
        if tile_dims != dims {
            return Err(RenderError::BadData(format!(
                "{what} has shape {tile_dims:?} (channels, height, width) but tile 0 has {dims:?}; all tiles of a grid share one shape"
            )));
        }
        check_count(&what, &tile_dims, tile.values)?;
        check_finite(&what, &tile_dims, tile.values)?;
    }
    Ok(dims)
}

fn colour_words(channels: usize) -> &'static str {
    if channels == 1 {
        "grey"
    } else {
        "RGB"
    }
}

fn sheet_scene(title: &str, tiles: &[ImageTile<'_>], columns: usize) -> Result<(Scene, String), RenderError> {
    let [channels, height, width] = validate_tiles(tiles)?;
    let shown = &tiles[..tiles.len().min(MAX_IMAGE_TILES)];
    let columns = match columns {
        // Up to three images side by side; more in a grid about as wide as it is tall.
        0 if shown.len() <= 3 => shown.len(),
        0 => (shown.len() as f64).sqrt().ceil() as usize,
        columns => columns,
    }
    .clamp(1, shown.len());
    let rows = shown.len().div_ceil(columns);
    let pictures: Vec<(RgbaImage, Scaling)> =
        shown.iter().map(|tile| to_display(unit_picture(channels, height, width, tile.values), SHEET_MIN_SIDE)).collect();
    let scaling = pictures[0].1;
    let (tile_width, tile_height) = (pictures[0].0.width() as f32, pictures[0].0.height() as f32);
    let cell_width = tile_width.max(MIN_CAPTION_WIDTH);
    let captions: Vec<Vec<String>> = shown.iter().map(|tile| caption_lines(&tile.caption, cell_width)).collect();
    let caption_height = match captions.iter().map(Vec::len).max().unwrap_or(0) {
        0 => 0.0,
        lines => CAPTION_GAP + lines as f32 * CAPTION_LINE,
    };
    let cell_height = tile_height + caption_height;
    let mut body =
        Scene::new(columns as f32 * cell_width + (columns - 1) as f32 * COLUMN_GAP, rows as f32 * cell_height + (rows - 1) as f32 * ROW_GAP);
    for (index, ((picture, _), lines)) in pictures.into_iter().zip(&captions).enumerate() {
        let x = (index % columns) as f32 * (cell_width + COLUMN_GAP);
        let y = (index / columns) as f32 * (cell_height + ROW_GAP);
        framed_picture(&mut body, x + ((cell_width - tile_width) / 2.0).floor(), y, picture, format!("tile {index}"));
        draw_lines(&mut body, lines, x + cell_width / 2.0, y + tile_height + CAPTION_GAP + 10.0, Anchor::Middle);
    }
    let left_out = tiles.len() - shown.len();
    let notes = if left_out > 0 { vec![format!("first {} of {} images shown, {left_out} left out", shown.len(), tiles.len())] } else { Vec::new() };
    let subtitle = format!("{}, {height}\u{d7}{width} {}, {}", counted(tiles.len(), "image"), colour_words(channels), scaling.words());
    let scene = compose(title, &subtitle, vec![(title.to_string(), with_notes(&notes, body))]);
    Ok((scene, sheet_alt_text(title, tiles, shown.len(), [channels, height, width], scaling, (rows, columns))))
}

fn sheet_alt_text(
    title: &str,
    tiles: &[ImageTile<'_>],
    shown: usize,
    [channels, height, width]: [usize; 3],
    scaling: Scaling,
    (rows, columns): (usize, usize),
) -> String {
    let named: Vec<String> = tiles
        .iter()
        .take(shown.min(ALT_CAPTIONS))
        .enumerate()
        .map(|(index, tile)| if tile.caption.trim().is_empty() { format!("{index} none") } else { format!("{index} \"{}\"", tile.caption.trim()) })
        .collect();
    let more = if shown > ALT_CAPTIONS { format!(", and {} more", shown - ALT_CAPTIONS) } else { String::new() };
    let left_out = match tiles.len() - shown {
        0 => String::new(),
        count => format!(" Only the first {shown} are drawn, {count} left out."),
    };
    let clamped: usize = tiles[..shown].iter().map(|tile| tile.values.iter().filter(|value| !(0.0..=1.0).contains(*value)).count()).sum();
    let clamped = match clamped {
        0 => String::new(),
        count => format!(" {} outside [0, 1] drawn clamped.", if count == 1 { "1 value".to_string() } else { format!("{count} values") }),
    };
    let columns_words = if rows == 1 { format!("one row of {columns}") } else { format!("{rows} rows of {columns}") };
    format!(
        "{title}: a contact sheet of {} ({} {height}\u{d7}{width}, values 0 to 1 drawn black to full intensity, {}), {columns_words}, \
         each captioned under it. Captions: {}{more}.{left_out}{clamped}",
        counted(tiles.len(), "image"),
        colour_words(channels),
        scaling.words(),
        named.join(", "),
    )
}

/// What the rows of a counterfactual figure are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RowKind {
    /// `(channels, height, width)`.
    Image([usize; 3]),
    /// `(features)`.
    Tabular(usize),
}

impl RowKind {
    fn dims(&self) -> Vec<usize> {
        match *self {
            RowKind::Image(dims) => dims.to_vec(),
            RowKind::Tabular(features) => vec![features],
        }
    }
}

fn row_kind(index: usize, row: &CounterfactualPanel<'_>) -> Result<RowKind, RenderError> {
    let shape = row.shape;
    if shape.iter().any(|&dim| dim <= 0) {
        return Err(RenderError::BadData(format!("counterfactual row {index} has shape {shape:?} with a dimension that is not positive")));
    }
    let kind = match *shape {
        [channels @ (1 | 3), height, width] => RowKind::Image([channels as usize, height as usize, width as usize]),
        [features] => RowKind::Tabular(features as usize),
        _ => {
            return Err(RenderError::BadData(format!(
                "counterfactual row {index} has shape {shape:?}; a counterfactual figure draws images (channels 1|3, height, width) \
                 or tabular rows (features)"
            )))
        }
    };
    if !(row.low.is_finite() && row.high.is_finite() && row.low < row.high) {
        return Err(RenderError::BadData(format!(
            "counterfactual row {index} has value range {} to {}; low must be below high and both finite",
            row.low, row.high
        )));
    }
    let dims = kind.dims();
    for (what, values) in [("original", row.original), ("counterfactual", row.counterfactual)] {
        let what = format!("counterfactual row {index}'s {what}");
        check_count(&what, &dims, values)?;
        check_finite(&what, &dims, values)?;
    }
    Ok(kind)
}

/// Checks the rows and gives their one kind.
fn validate_rows(rows: &[CounterfactualPanel<'_>]) -> Result<RowKind, RenderError> {
    let kinds = rows.iter().enumerate().map(|(index, row)| row_kind(index, row)).collect::<Result<Vec<_>, _>>()?;
    let Some(&first) = kinds.first() else {
        return Err(RenderError::BadData("a counterfactual figure needs at least one row".to_string()));
    };
    // The rows come from one input tensor; one shape keeps the tiles and charts aligned.
    if let Some(index) = kinds.iter().position(|&kind| kind != first) {
        return Err(RenderError::BadData(format!(
            "counterfactual row {index} has shape {:?} but row 0 has {:?}; all rows of a counterfactual figure share one shape",
            rows[index].shape, rows[0].shape
        )));
    }
    Ok(first)
}

/// `value` with its sign, for changes: `+0.53`, `-1.2`.
fn signed(value: f32) -> String {
    if value > 0.0 {
        format!("+{}", format_value(value))
    } else {
        format_value(value)
    }
}

fn differences(row: &CounterfactualPanel<'_>) -> Vec<f32> {
    row.counterfactual.iter().zip(row.original).map(|(after, before)| after - before).collect()
}

fn quoted_caption(index: usize, row: &CounterfactualPanel<'_>) -> String {
    match row.caption.trim() {
        "" => format!("Row {index}"),
        caption => format!("Row {index}, \"{caption}\""),
    }
}

fn counterfactual_scene(title: &str, rows: &[CounterfactualPanel<'_>]) -> Result<(Scene, String), RenderError> {
    let kind = validate_rows(rows)?;
    let shown = &rows[..rows.len().min(MAX_COUNTERFACTUAL_ROWS)];
    let (body, mut notes, alt_text) = match kind {
        RowKind::Image(dims) => image_rows(title, shown, dims),
        RowKind::Tabular(features) => tabular_rows(title, shown, features),
    };
    let left_out = rows.len() - shown.len();
    let alt_text = if left_out > 0 {
        notes.push(format!("first {} of {} rows shown, {left_out} left out", shown.len(), rows.len()));
        format!("{alt_text} Only the first {} rows are drawn, {left_out} left out.", shown.len())
    } else {
        alt_text
    };
    let subtitle = counted(rows.len(), "input");
    Ok((compose(title, &subtitle, vec![(title.to_string(), with_notes(&notes, body))]), alt_text))
}

/// A row's values drawn from `low` (black) to `high` (full intensity), clamped outside.
fn range_picture([channels, height, width]: [usize; 3], values: &[f32], low: f32, high: f32) -> RgbaImage {
    let unit: Vec<f32> = values.iter().map(|value| (value - low) / (high - low)).collect();
    unit_picture(channels, height, width, &unit)
}

/// Image rows: a caption column, then original | counterfactual | difference under
/// column headers, the difference's scale under it.
fn image_rows(title: &str, rows: &[CounterfactualPanel<'_>], dims: [usize; 3]) -> (Scene, Vec<String>, String) {
    let [channels, height, width] = dims;
    let captions: Vec<Vec<String>> = rows.iter().map(|row| caption_lines(&row.caption, ROW_LABEL_MAX_WIDTH)).collect();
    let label_width = captions.iter().flatten().map(|line| text_width(line, TICK_FONT)).fold(0.0, f32::max).ceil();
    let left = if label_width > 0.0 { label_width + ROW_LABEL_GAP } else { 0.0 };
    let mut pictures = Vec::new();
    let mut descriptions = Vec::new();
    let mut scaling = Scaling::Enlarged(1);
    for (index, row) in rows.iter().enumerate() {
        let plane = Plane::channel_sum(&differences(row), channels, height, width);
        let normalised = normalise(&plane.values, Sign::All, DIFFERENCE_OUTLIER_PERCENT);
        let (original, _) = to_display(range_picture(dims, row.original, row.low, row.high), COUNTERFACTUAL_MIN_SIDE);
        let (counterfactual, _) = to_display(range_picture(dims, row.counterfactual, row.low, row.high), COUNTERFACTUAL_MIN_SIDE);
        let (difference, row_scaling) = to_display(heat_map_picture(height, width, &normalised.values, Sign::All), COUNTERFACTUAL_MIN_SIDE);
        scaling = row_scaling;
        let changed = plane.values.iter().filter(|&&value| value != 0.0).count();
        let largest = match strongest(&plane.values, Sign::All) {
            Some(at) => format!(
                "largest change at row {}, column {} ({}{}), {changed} of {} pixels changed, scale \u{b1}{}",
                at / width,
                at % width,
                signed(plane.values[at]),
                if channels > 1 { " summed over channels" } else { "" },
                height * width,
                format_value(normalised.threshold)
            ),
            None => "no change".to_string(),
        };
        descriptions.push(format!("{}: {largest}", quoted_caption(index, row)));
        pictures.push(([original, counterfactual, difference], normalised.threshold));
    }
    let (tile_width, tile_height) = (pictures[0].0[0].width() as f32, pictures[0].0[0].height() as f32);
    let headers = ["original", "counterfactual", "difference"];
    let column_width = headers.iter().map(|header| text_width(header, HEADER_FONT).ceil() + 4.0).fold(tile_width, f32::max);
    let row_height = tile_height + SCALE_HEIGHT;
    let mut body =
        Scene::new(left + 3.0 * column_width + 2.0 * COLUMN_GAP, HEADER_HEIGHT + rows.len() as f32 * row_height + (rows.len() - 1) as f32 * ROW_GAP);
    let column_x = |column: usize| left + column as f32 * (column_width + COLUMN_GAP);
    for (column, header) in headers.iter().enumerate() {
        body.text(column_x(column) + column_width / 2.0, 13.0, *header, HEADER_FONT, Anchor::Middle);
    }
    for (index, ((tiles, threshold), lines)) in pictures.into_iter().zip(&captions).enumerate() {
        let top = HEADER_HEIGHT + index as f32 * (row_height + ROW_GAP);
        // The caption's lines centred on the tiles' middle (baselines sit 3.5 px below it).
        let first_baseline = top + tile_height / 2.0 + 3.5 - (lines.len().saturating_sub(1)) as f32 * CAPTION_LINE / 2.0;
        draw_lines(&mut body, lines, 0.0, first_baseline, Anchor::Start);
        for (column, picture) in tiles.into_iter().enumerate() {
            let x = column_x(column) + ((column_width - tile_width) / 2.0).floor();
            framed_picture(&mut body, x, top, picture, format!("row {index} {}", headers[column]));
        }
        let scale = if threshold == 0.0 { "no change".to_string() } else { format!("\u{b1}{}", format_value(threshold)) };
        body.push(Element::Text {
            x: column_x(2) + column_width / 2.0,
            y: top + tile_height + 11.0,
            text: scale,
            size: TICK_FONT,
            anchor: Anchor::Middle,
            colour: AXIS,
            rotation: 0.0,
        });
    }
    let range = range_words(rows);
    let summed = if channels > 1 { ", summed over channels" } else { "" };
    let notes = vec![
        format!("original and counterfactual drawn from {range}"),
        format!("difference = counterfactual \u{2212} original{summed}: green higher, red lower, white unchanged"),
        format!("its colours saturate at the \u{b1} value under each map (Captum's {DIFFERENCE_OUTLIER_PERCENT}% outliers)"),
    ];
    let alt_text = format!(
        "{title}: counterfactuals of {} ({} {height}\u{d7}{width}, {}), one row each: the original and the counterfactual drawn from {range}, \
         and their difference (counterfactual \u{2212} original{summed}) as a heat map from red (lower) through white to green (higher), \
         each row on its own scale with {DIFFERENCE_OUTLIER_PERCENT}% outliers saturated. {}.",
        counted(rows.len(), "image"),
        colour_words(channels),
        scaling.words(),
        descriptions.join(". "),
    );
    (body, notes, alt_text)
}

/// The value range images are drawn from, in words: one range when all rows share it.
fn range_words(rows: &[CounterfactualPanel<'_>]) -> String {
    let (low, high) = (rows[0].low, rows[0].high);
    if rows.iter().all(|row| (row.low, row.high) == (low, high)) {
        format!("{} (black) to {} (full intensity)", format_value(low), format_value(high))
    } else {
        "each row's low (black) to high (full intensity)".to_string()
    }
}

/// The value axis caption `bar_chart` gives sign `all`, which names attributions.
const CHART_VALUE_CAPTION: &str = "attribution";

/// Tabular rows: a bar chart of the change per feature each, stacked.
fn tabular_rows(title: &str, rows: &[CounterfactualPanel<'_>], features: usize) -> (Scene, Vec<String>, String) {
    let chart_width = AXIS_LEFT + bar_plot_width(features) + AXIS_RIGHT;
    let mut body = Scene::new(chart_width, rows.len() as f32 * CHART_HEIGHT + (rows.len() - 1) as f32 * ROW_GAP);
    let mut descriptions = Vec::new();
    for (index, row) in rows.iter().enumerate() {
        let changes = differences(row);
        let caption = fit_start(row.caption.trim(), 12.0, chart_width - 8.0);
        let mut chart = bar_chart(&caption, &changes, Sign::All);
        // The chart is shared with attribution figures; here its bars are changes.
        for element in &mut chart.elements {
            if let Element::Text { x, y, text, .. } = element {
                if text == CHART_VALUE_CAPTION && *x == AXIS_LEFT && *y > PANEL_TITLE_HEIGHT {
                    *text = "counterfactual \u{2212} original".to_string();
                }
            }
        }
        body.place(chart, 0.0, index as f32 * (CHART_HEIGHT + ROW_GAP));
        let changed = changes.iter().filter(|&&change| change != 0.0).count();
        let largest = match strongest(&changes, Sign::All) {
            Some(at) => format!(
                "largest change at feature {at}, {} \u{2192} {} ({}), {changed} of {features} features changed",
                format_value(row.original[at]),
                format_value(row.counterfactual[at]),
                signed(changes[at])
            ),
            None => "no change".to_string(),
        };
        descriptions.push(format!("{}: {largest}", quoted_caption(index, row)));
    }
    let notes = vec!["bars: counterfactual \u{2212} original per feature, green higher, red lower".to_string()];
    let alt_text = format!(
        "{title}: counterfactuals of {} of {}, one bar chart each of the change per feature (counterfactual \u{2212} original), \
         green bars up where the counterfactual is higher, red bars down where it is lower. {}.",
        counted(rows.len(), "tabular input"),
        counted(features, "feature"),
        descriptions.join(". "),
    );
    (body, notes, alt_text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{png, svg};

    fn tile<'a>(channels: usize, height: usize, width: usize, values: &'a [f32], caption: &str) -> ImageTile<'a> {
        ImageTile { channels, height, width, values, caption: caption.to_string() }
    }

    fn bad_data(result: Result<Figure, RenderError>) -> String {
        match result {
            Err(RenderError::BadData(message)) => message,
            other => panic!("expected BadData, got {other:?}"),
        }
    }

    #[test]
    fn tiles_enlarge_by_whole_factors_within_the_bounds() {
        // Height, width, smallest longer side, then the display size and scaling.
        let cases = [
            (28, 28, SHEET_MIN_SIDE, (112, 112), Scaling::Enlarged(4)),
            (32, 32, SHEET_MIN_SIDE, (96, 96), Scaling::Enlarged(3)),
            (32, 32, COUNTERFACTUAL_MIN_SIDE, (128, 128), Scaling::Enlarged(4)),
            (8, 8, SHEET_MIN_SIDE, (96, 96), Scaling::Enlarged(12)),
            (1, 1, SHEET_MIN_SIDE, (96, 96), Scaling::Enlarged(96)),
            (7, 200, SHEET_MIN_SIDE, (200, 7), Scaling::Enlarged(1)),
            (224, 224, SHEET_MIN_SIDE, (224, 224), Scaling::Enlarged(1)),
            (512, 384, SHEET_MIN_SIDE, (192, 256), Scaling::Shrunk(192, 256)),
        ];
        for (height, width, min_side, size, scaling) in cases {
            let (picture, got) = to_display(RgbaImage::new(width, height), min_side);
            assert_eq!((picture.dimensions(), got), (size, scaling), "{height}×{width}");
        }
        // Enlarged pixels are sharp squares with their value unchanged.
        let values = [0.0, 1.0, 0.5, 0.25];
        let (picture, _) = to_display(unit_picture(1, 2, 2, &values), SHEET_MIN_SIDE);
        assert_eq!(picture.get_pixel(47, 47).0, [0, 0, 0, 255]);
        assert_eq!(picture.get_pixel(48, 0).0, [255, 255, 255, 255]);
        assert_eq!(picture.get_pixel(95, 95).0, [64, 64, 64, 255]);
    }

    #[test]
    fn grey_and_rgb_tiles_keep_their_values_and_clamp() {
        // (3, 1, 2): pixel 0 is red, pixel 1 out of range in every channel.
        let rgb = unit_picture(3, 1, 2, &[1.0, 2.0, 0.0, -1.0, 0.0, 0.5]);
        assert_eq!(rgb.get_pixel(0, 0).0, [255, 0, 0, 255]);
        assert_eq!(rgb.get_pixel(1, 0).0, [255, 0, 128, 255]);
        let grey = unit_picture(1, 1, 2, &[0.2, 1.5]);
        assert_eq!(grey.get_pixel(0, 0).0, [51, 51, 51, 255]);
        assert_eq!(grey.get_pixel(1, 0).0, [255, 255, 255, 255]);
    }

    #[test]
    fn contact_sheet_places_tiles_in_rows_with_captions() {
        let values: Vec<Vec<f32>> = (0..5).map(|index| vec![index as f32 / 4.0; 28 * 28]).collect();
        let tiles: Vec<ImageTile<'_>> =
            values.iter().enumerate().map(|(index, values)| tile(1, 28, 28, values, &format!("class {index} · p=0.9{index}"))).collect();
        let (scene, alt) = sheet_scene("class visualisations", &tiles, 0).unwrap();
        // Five tiles: three columns, two rows, 28 px upscaled 4× and 12 px apart.
        let (x0, y0, first) = scene.image("tile 0").unwrap();
        let (x1, _, _) = scene.image("tile 1").unwrap();
        let (x3, y3, _) = scene.image("tile 3").unwrap();
        assert_eq!(first.dimensions(), (112, 112));
        assert_eq!((x1 - x0, x3, y3 - y0), (112 + 12, x0, 112 + CAPTION_GAP as u32 + CAPTION_LINE as u32 + 12));
        assert_eq!(scene.image("tile 4").unwrap().2.get_pixel(50, 50).0, [255, 255, 255, 255]);
        assert!(
            alt.starts_with("class visualisations: a contact sheet of 5 images (grey 28×28")
                && alt.contains("upscaled 4×")
                && alt.contains("2 rows of 3")
                && alt.contains("0 \"class 0 · p=0.90\"")
                && alt.contains("3 \"class 3 · p=0.93\", and 1 more"),
            "{alt}"
        );
        // Asked-for columns are kept, more than there are tiles is one row.
        let (scene, alt) = sheet_scene("t", &tiles, 5).unwrap();
        assert_eq!(scene.image("tile 4").unwrap().1, scene.image("tile 0").unwrap().1);
        assert!(alt.contains("one row of 5"), "{alt}");
        let (_, alt) = sheet_scene("t", &tiles[..2], 7).unwrap();
        assert!(alt.contains("one row of 2"), "{alt}");
        // Chosen columns: three images side by side, four as two rows of two.
        let (_, alt) = sheet_scene("t", &tiles[..3], 0).unwrap();
        assert!(alt.contains("one row of 3"), "{alt}");
        let (_, alt) = sheet_scene("t", &tiles[..4], 0).unwrap();
        assert!(alt.contains("2 rows of 2"), "{alt}");
    }

    #[test]
    fn long_captions_wrap_then_are_cut_short() {
        assert_eq!(caption_lines("class 3 · p=0.97", 96.0), ["class 3 · p=0.97"]);
        assert!(caption_lines("  ", 96.0).is_empty());
        let lines = caption_lines("channel:layer4.1.conv2:123 and the rest of a long objective", 96.0);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines.iter().all(|line| text_width(line, TICK_FONT) <= 96.0), "{lines:?}");
        assert!(lines[1].ends_with('\u{2026}'), "{lines:?}");
        // One long word breaks inside it.
        let word = caption_lines("channel:layer4.1.conv2:123", 96.0);
        assert_eq!(word, ["channel:layer4.1.", "conv2:123"]);
        let word = caption_lines("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 96.0);
        assert!(word.len() == 2 && word[0].len() > 10 && word[1].starts_with('a'), "{word:?}");
        assert!(word.len() == 2 && word.iter().all(|line| text_width(line, TICK_FONT) <= 96.0), "{word:?}");
    }

    #[test]
    fn sheets_grow_with_the_tile_count_in_both_formats() {
        let values = vec![0.5f32; 3 * 16 * 16];
        let tiles = |count: usize| -> Vec<ImageTile<'_>> { (0..count).map(|index| tile(3, 16, 16, &values, &format!("image {index}"))).collect() };
        let small = png(&image_grid("sheet", &tiles(4), 0, Format::Png).unwrap());
        let large = png(&image_grid("sheet", &tiles(16), 0, Format::Png).unwrap());
        assert!(large.width() > small.width() && large.height() > small.height(), "{:?} vs {:?}", small.dimensions(), large.dimensions());
        let figure = image_grid("sheet", &tiles(3), 0, Format::Svg).unwrap();
        let text = svg(&figure);
        assert_eq!(text.matches("<image ").count(), 3);
        assert!(text.contains(">image 0</text>") && text.contains(">image 2</text>") && text.contains(">sheet</text>"));
        // Over the cap: the first tiles drawn, the rest counted.
        let (scene, alt) = sheet_scene("many", &tiles(MAX_IMAGE_TILES + 3), 0).unwrap();
        assert!(scene.image(&format!("tile {}", MAX_IMAGE_TILES - 1)).is_some() && scene.image(&format!("tile {MAX_IMAGE_TILES}")).is_none());
        assert!(alt.contains(&format!("Only the first {MAX_IMAGE_TILES} are drawn, 3 left out")), "{alt}");
    }

    #[test]
    fn bad_tiles_are_refused_with_what_is_wrong() {
        let values = vec![0.5f32; 12];
        let mut nan = values.clone();
        nan[7] = f32::NAN;
        let two = [0.5f32; 8];
        let cases: Vec<(Vec<ImageTile<'_>>, &str)> = vec![
            (vec![], "at least one tile"),
            (vec![tile(2, 2, 2, &two, "")], "has 2 channels; tiles need 1 (grey) or 3 (RGB)"),
            (vec![tile(3, 0, 2, &values, "")], "positive height and width"),
            (vec![tile(3, 2, 2, &values[..11], "")], "image tile 0 of shape (3, 2, 2) needs 12 values, got 11"),
            (vec![tile(3, 2, 2, &values, ""), tile(1, 3, 4, &values, "")], "image tile 1 has shape [1, 3, 4]"),
            (vec![tile(3, 2, 2, &values, ""), tile(3, 2, 2, &nan, "")], "image tile 1 has a non-finite value (NaN) at channel 1, row 1, column 1"),
        ];
        for (tiles, expected) in cases {
            let message = bad_data(image_grid("t", &tiles, 0, Format::Png));
            assert!(message.contains(expected), "{message}");
        }
    }

    /// A 1×4×4 original, all 0.5 in [0, 1], and a counterfactual that is brighter at
    /// row 1, column 2 and darker at row 3, column 0.
    fn digit() -> (Vec<f32>, Vec<f32>) {
        let original = vec![0.5f32; 16];
        let mut counterfactual = original.clone();
        counterfactual[4 + 2] = 1.0;
        counterfactual[3 * 4] = 0.3;
        (original, counterfactual)
    }

    fn image_row<'a>(shape: &'a [i64], original: &'a [f32], counterfactual: &'a [f32], caption: &str) -> CounterfactualPanel<'a> {
        CounterfactualPanel { shape, original, counterfactual, low: 0.0, high: 1.0, caption: caption.to_string() }
    }

    #[test]
    fn image_rows_show_original_counterfactual_and_their_difference() {
        let (original, counterfactual) = digit();
        let shape = [1i64, 4, 4];
        let rows = [image_row(&shape, &original, &counterfactual, "3 → 8 · L2 0.54"), image_row(&shape, &original, &original, "unchanged")];
        let (scene, alt) = counterfactual_scene("counterfactuals", &rows).unwrap();
        let (_, _, before) = scene.image("row 0 original").unwrap();
        let (_, _, after) = scene.image("row 0 counterfactual").unwrap();
        let (_, _, difference) = scene.image("row 0 difference").unwrap();
        // 4×4 upscaled 32×: pixel (row 1, column 2) at x 64..96, y 32..64.
        assert_eq!(before.dimensions(), (128, 128));
        assert_eq!(before.get_pixel(80, 48).0, [128, 128, 128, 255]);
        assert_eq!(after.get_pixel(80, 48).0, [255, 255, 255, 255]);
        // Differences +0.5 and -0.2; |values| sum 0.7, 98% first reached at 0.5, so
        // +0.5 is full green, -0.2 is -0.4 on the red-white-green scale, 0 white.
        assert_eq!(difference.get_pixel(80, 48).0, [0, 128, 0, 255]);
        assert_eq!(difference.get_pixel(16, 112).0, [255, 153, 153, 255]);
        assert_eq!(difference.get_pixel(16, 16).0, [255, 255, 255, 255]);
        let (_, _, unchanged) = scene.image("row 1 difference").unwrap();
        assert!(unchanged.pixels().all(|pixel| pixel.0 == [255, 255, 255, 255]));
        assert!(
            alt.contains("Row 0, \"3 → 8 · L2 0.54\": largest change at row 1, column 2 (+0.5), 2 of 16 pixels changed, scale ±0.5")
                && alt.contains("Row 1, \"unchanged\": no change")
                && alt.contains("counterfactuals of 2 images (grey 4×4, upscaled 32×)"),
            "{alt}"
        );
        // Columns are headed once; each row's tiles share its top.
        let svg = svg(&counterfactual_figure("counterfactuals", &rows, Format::Svg).unwrap());
        for text in
            [">original</text>", ">counterfactual</text>", ">difference</text>", ">3 → 8 · L2 0.54</text>", ">unchanged</text>", ">±0.5</text>"]
        {
            assert_eq!(svg.matches(text).count(), 1, "{text}");
        }
        assert_eq!(scene.image("row 1 original").unwrap().1, scene.image("row 1 difference").unwrap().1);
        // Over the cap: the first rows drawn, the rest counted; more rows, a taller figure.
        let many = vec![rows[0].clone(); MAX_COUNTERFACTUAL_ROWS + 2];
        let (scene, alt) = counterfactual_scene("counterfactuals", &many).unwrap();
        let last = MAX_COUNTERFACTUAL_ROWS - 1;
        assert!(scene.image(&format!("row {last} difference")).is_some() && scene.image(&format!("row {} original", last + 1)).is_none());
        assert!(alt.contains(&format!("Only the first {MAX_COUNTERFACTUAL_ROWS} rows are drawn, 2 left out")), "{alt}");
        let one = png(&counterfactual_figure("counterfactuals", &rows[..1], Format::Png).unwrap());
        let two = png(&counterfactual_figure("counterfactuals", &rows, Format::Png).unwrap());
        assert!(two.height() > one.height() && two.width() == one.width());
    }

    #[test]
    fn rgb_rows_are_mapped_from_their_range_and_summed_for_the_difference() {
        // (3, 2, 2) in [-1, 1]: the original black, the counterfactual's pixel (1, 1)
        // raised in red and green; other channels lowered at (0, 0), less in sum.
        let original = vec![-1.0f32; 12];
        let mut counterfactual = original.clone();
        counterfactual[3] = 1.0;
        counterfactual[4 + 3] = 0.0;
        counterfactual[8] = -1.5;
        let shape = [3i64, 2, 2];
        let row =
            CounterfactualPanel { shape: &shape, original: &original, counterfactual: &counterfactual, low: -1.0, high: 1.0, caption: String::new() };
        let (scene, alt) = counterfactual_scene("cf", std::slice::from_ref(&row)).unwrap();
        let (_, _, after) = scene.image("row 0 counterfactual").unwrap();
        // Red 1 → 255, green 0 → half, blue -1 → 0; -1.5 is clamped to black.
        assert_eq!(after.get_pixel(127, 127).0, [255, 128, 0, 255]);
        assert_eq!(after.get_pixel(0, 0).0, [0, 0, 0, 255]);
        assert!(alt.contains("Row 0: largest change at row 1, column 1 (+3 summed over channels)") && alt.contains("from -1 (black) to 1"), "{alt}");
        let figure = counterfactual_figure("cf", &[row], Format::Png).unwrap();
        png(&figure);
    }

    #[test]
    fn tabular_rows_are_bar_charts_of_the_change() {
        let original = [0.2f32, 0.5, 0.1, 0.9];
        let counterfactual = [0.2f32, 0.8, 0.1, 0.85];
        let shape = [4i64];
        let rows = [CounterfactualPanel {
            shape: &shape,
            original: &original,
            counterfactual: &counterfactual,
            low: 0.0,
            high: 1.0,
            caption: "1 → 0 · L2 0.3".to_string(),
        }];
        let (scene, alt) = counterfactual_scene("tabular", &rows).unwrap();
        assert!(alt.contains("Row 0, \"1 → 0 · L2 0.3\": largest change at feature 1, 0.5 → 0.8 (+0.3), 2 of 4 features changed"), "{alt}");
        let texts: Vec<&str> =
            scene.elements.iter().filter_map(|element| if let Element::Text { text, .. } = element { Some(text.as_str()) } else { None }).collect();
        assert!(texts.contains(&"counterfactual \u{2212} original") && !texts.contains(&CHART_VALUE_CAPTION), "{texts:?}");
        let one = counterfactual_figure("tabular", &rows, Format::Png).unwrap();
        let two = counterfactual_figure("tabular", &[rows[0].clone(), rows[0].clone()], Format::Png).unwrap();
        assert!(png(&two).height() > png(&one).height());
        assert!(svg(&counterfactual_figure("tabular", &rows, Format::Svg).unwrap()).contains(">1 → 0 · L2 0.3</text>"));
    }

    #[test]
    fn bad_counterfactual_rows_are_refused_with_what_is_wrong() {
        let (original, counterfactual) = digit();
        let image = [1i64, 4, 4];
        let features = [16i64];
        let mut nan = counterfactual.clone();
        nan[5] = f32::INFINITY;
        let row = |shape, counterfactual| image_row(shape, &original, counterfactual, "");
        let shapes: [&'static [i64]; 3] = [&[2, 2, 4], &[4, 4], &[1, 0, 16]];
        let mut cases: Vec<(Vec<CounterfactualPanel<'_>>, &str)> = vec![
            (vec![], "at least one row"),
            (vec![row(shapes[0], &counterfactual)], "has shape [2, 2, 4]; a counterfactual figure draws images"),
            (vec![row(shapes[1], &counterfactual)], "has shape [4, 4]; a counterfactual figure draws images"),
            (vec![row(shapes[2], &counterfactual)], "dimension that is not positive"),
            (vec![row(&[1, 4, 4], &counterfactual[..15])], "row 0's counterfactual of shape (1, 4, 4) needs 16 values, got 15"),
            (vec![row(&[1, 4, 4], &nan)], "row 0's counterfactual has a non-finite value (inf) at channel 0, row 1, column 1"),
            (vec![row(&[1, 4, 4], &counterfactual), row(&[16], &counterfactual)], "row 1 has shape [16] but row 0 has [1, 4, 4]; all rows"),
            (vec![row(&[1, 4, 4], &counterfactual), row(&[1, 2, 8], &counterfactual)], "row 1 has shape [1, 2, 8] but row 0 has [1, 4, 4]"),
        ];
        let mut backwards =
            CounterfactualPanel { shape: &image, original: &original, counterfactual: &counterfactual, low: 1.0, high: 0.0, caption: String::new() };
        cases.push((vec![backwards.clone()], "value range 1 to 0; low must be below high"));
        backwards.shape = &features;
        backwards.high = f32::NAN;
        cases.push((vec![backwards], "value range 1 to NaN"));
        for (rows, expected) in cases {
            let message = bad_data(counterfactual_figure("t", &rows, Format::Svg));
            assert!(message.contains(expected), "{message}");
        }
    }
}
