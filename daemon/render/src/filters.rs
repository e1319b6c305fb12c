//! A convolution layer's filters as an image grid ([`filter_grid`]): RGB tiles for
//! filters over three input channels (first-layer filters of image models), grey tiles
//! per (filter, input channel) otherwise, upscaled so small kernels are readable.

use crate::chart::format_value;
use crate::figure::encode;
use crate::font::text_width;
use crate::panel::compose;
use crate::scene::{Anchor, Element, Scene};
use crate::small_multiples::{counted, with_notes, TICK_FONT};
use crate::{Figure, Format, RenderError};
use image::{Rgba, RgbaImage};

/// At most this many tiles are drawn; the rest are left out and counted in the notes.
pub const MAX_FILTER_TILES: usize = 64;
/// Tiles are upscaled by a whole factor until their longer side is at least this many
/// pixels (a 3×3 kernel becomes 33×33) ...
const MIN_TILE_SIDE: usize = 32;
/// ... and their shorter side at least this many, unless the longer one would then
/// be more than [`MAX_LONG_SIDE`].
const MIN_SHORT_SIDE: usize = 12;
const MAX_LONG_SIDE: usize = 256;
/// Between tiles of one filter, and between filters in a row of single tiles.
const TILE_GAP: u32 = 2;
/// Between filters when each filter is a run of tiles (one per input channel): across,
/// and between rows.
const FILTER_GAP: u32 = 8;
const FILTER_ROW_GAP: u32 = 4;
/// Grey tiles per filter at most (input channels 0..8); more filters fit then.
const MAX_CHANNEL_TILES: usize = 8;
/// Behind the tiles: the gaps.
const GAP_COLOUR: [u8; 3] = [255, 255, 255];
/// Room for the row labels (first filter of each row) left of the tiles.
const ROW_LABEL_ROOM: f32 = 34.0;
/// Room for the input channel numbers above the tiles.
const HEADER_ROOM: f32 = 16.0;

/// The filters of a convolution layer as an image grid. `weights_shape` is
/// `(out_channels, in_channels, kh, kw)` and `weights` row-major, as in PyTorch.
///
/// - Filters over 3 input channels are drawn as RGB tiles (channel 0 red, 1 green,
///   2 blue), one per filter.
/// - Other filters are drawn as grey tiles, one per (filter, input channel): a row of
///   tiles per filter over input channels 0 to 7 (several filters side by side per row
///   when they have fewer channels), or, for single-channel filters, one tile each.
///
/// Each filter is scaled on its own from its minimum (black) to its maximum (white), in
/// RGB per filter over all three channels; a constant filter is mid grey. At most
/// [`MAX_FILTER_TILES`] tiles are drawn, the first filters (and input channels) in
/// order; the notes under the title say how many were left out. Tiles are upscaled by a
/// whole factor to at least 32 px on their longer side (and, for long thin kernels such
/// as 1×7, 12 px on their shorter one) and drawn with thin gaps between them; rows
/// are labelled with their first filter's index, columns with the input channel. The
/// alt text gives the shape, what is drawn and left out, the range of the weights and
/// any constant (dead) filters.
///
/// Errors: [`RenderError::BadData`] for a shape that is not 4-D with positive
/// dimensions, a value count that does not match it, or a value that is not finite.
pub fn filter_grid(title: &str, weights_shape: &[i64], weights: &[f32], format: Format) -> Result<Figure, RenderError> {
    let (scene, alt_text) = filter_scene(title, weights_shape, weights)?;
    encode(&scene, format, alt_text)
}

/// The weight's dimensions: filters, input channels, kernel height and width.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Dims {
    filters: usize,
    channels: usize,
    height: usize,
    width: usize,
}

impl Dims {
    fn kernel(&self) -> usize {
        self.height * self.width
    }

    fn filter_len(&self) -> usize {
        self.channels * self.kernel()
    }
}

fn validate(shape: &[i64], weights: &[f32]) -> Result<Dims, RenderError> {
    let [filters, channels, height, width] = shape else {
        return Err(RenderError::BadData(format!("a filter grid needs a 4-D weight shape (out_channels, in_channels, kh, kw), got {shape:?}")));
    };
    if shape.iter().any(|&dimension| dimension <= 0) {
        return Err(RenderError::BadData(format!("weight shape {shape:?} has a dimension that is not positive")));
    }
    let dims = Dims { filters: *filters as usize, channels: *channels as usize, height: *height as usize, width: *width as usize };
    let expected = dims.filters.checked_mul(dims.filter_len());
    if expected != Some(weights.len()) {
        return Err(RenderError::BadData(format!("weight shape {shape:?} needs {} values, got {}", shape.iter().product::<i64>(), weights.len())));
    }
    if let Some((index, value)) = weights.iter().enumerate().find(|(_, value)| !value.is_finite()) {
        let (filter, rest) = (index / dims.filter_len(), index % dims.filter_len());
        let (channel, rest) = (rest / dims.kernel(), rest % dims.kernel());
        return Err(RenderError::BadData(format!(
            "weights have a non-finite value ({value}) in filter {filter}, input channel {channel}, row {}, column {}",
            rest / dims.width,
            rest % dims.width
        )));
    }
    Ok(dims)
}

/// Which tiles are drawn and how they are arranged.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Layout {
    rgb: bool,
    /// Filters 0..shown_filters are drawn.
    shown_filters: usize,
    /// Input channels 0..shown_channels of each (one RGB tile when `rgb`).
    shown_channels: usize,
    /// Filters side by side in one row of the grid.
    filters_per_row: usize,
    /// Tiles left out.
    left_out: usize,
    total: usize,
}

impl Layout {
    fn new(dims: Dims) -> Layout {
        let rgb = dims.channels == 3;
        let (shown_channels, total) = if rgb { (1, dims.filters) } else { (dims.channels.min(MAX_CHANNEL_TILES), dims.filters * dims.channels) };
        let shown_filters = dims.filters.min(MAX_FILTER_TILES / shown_channels);
        let filters_per_row = if shown_channels == 1 {
            // Single tiles: a square-ish grid.
            (shown_filters as f64).sqrt().ceil() as usize
        } else {
            (MAX_CHANNEL_TILES / shown_channels).max(1).min(shown_filters)
        };
        Layout { rgb, shown_filters, shown_channels, filters_per_row, left_out: total - shown_filters * shown_channels, total }
    }

    fn rows(&self) -> usize {
        self.shown_filters.div_ceil(self.filters_per_row)
    }

    fn tiles(&self) -> usize {
        self.shown_filters * self.shown_channels
    }

    /// The gap after each filter in a row.
    fn filter_gap(&self) -> u32 {
        if self.shown_channels == 1 {
            TILE_GAP
        } else {
            FILTER_GAP
        }
    }

    fn row_gap(&self) -> u32 {
        if self.shown_channels == 1 {
            TILE_GAP
        } else {
            FILTER_ROW_GAP
        }
    }
}

/// The whole factor tiles are upscaled by: their longer side to at least
/// [`MIN_TILE_SIDE`], and their shorter side to at least [`MIN_SHORT_SIDE`] where that
/// keeps the longer one within [`MAX_LONG_SIDE`] (1×7 kernels become 84×12).
fn upscale(dims: Dims) -> usize {
    let (short, long) = (dims.height.min(dims.width), dims.height.max(dims.width));
    let thick = MIN_SHORT_SIDE.div_ceil(short).min(MAX_LONG_SIDE / long);
    MIN_TILE_SIDE.div_ceil(long).max(thick).max(1)
}

/// Per filter, its minimum and maximum over all its input channels.
fn filter_ranges(dims: Dims, weights: &[f32]) -> Vec<(f32, f32)> {
    weights
        .chunks_exact(dims.filter_len())
        .map(|filter| filter.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(low, high), &value| (low.min(value), high.max(value))))
        .collect()
}

/// A weight as a grey level, scaled from its filter's minimum (0) to maximum (255);
/// 128 for a constant filter.
fn level(value: f32, (low, high): (f32, f32)) -> u8 {
    if high > low {
        (((value - low) / (high - low)) * 255.0).round().clamp(0.0, 255.0) as u8
    } else {
        128
    }
}

/// The tiles as one picture on the gap colour, and the pixel offset of every tile's
/// top-left corner (for the labels).
struct Mosaic {
    picture: RgbaImage,
    /// x of each tile column (filter slot × channel) in the first row, y of each row.
    column_x: Vec<u32>,
    row_y: Vec<u32>,
    tile: (u32, u32),
}

fn mosaic(dims: Dims, layout: &Layout, weights: &[f32], ranges: &[(f32, f32)]) -> Mosaic {
    let factor = upscale(dims);
    let tile = ((dims.width * factor) as u32, (dims.height * factor) as u32);
    let mut column_x = Vec::new();
    let mut x = 0;
    for _ in 0..layout.filters_per_row {
        for channel in 0..layout.shown_channels {
            column_x.push(x);
            x += tile.0 + if channel + 1 < layout.shown_channels { TILE_GAP } else { layout.filter_gap() };
        }
    }
    let width = x - layout.filter_gap();
    let row_y: Vec<u32> = (0..layout.rows() as u32).map(|row| row * (tile.1 + layout.row_gap())).collect();
    let height = row_y.last().map_or(0, |&y| y + tile.1);
    let [r, g, b] = GAP_COLOUR;
    let mut picture = RgbaImage::from_pixel(width, height, Rgba([r, g, b, 255]));
    for (filter, &range) in ranges.iter().enumerate().take(layout.shown_filters) {
        let base = filter * dims.filter_len();
        let (row, slot) = (filter / layout.filters_per_row, filter % layout.filters_per_row);
        for channel in 0..layout.shown_channels {
            let (left, top) = (column_x[slot * layout.shown_channels + channel], row_y[row]);
            for y in 0..dims.height {
                for x in 0..dims.width {
                    let at = |channel: usize| weights[base + channel * dims.kernel() + y * dims.width + x];
                    let pixel = if layout.rgb {
                        Rgba([level(at(0), range), level(at(1), range), level(at(2), range), 255])
                    } else {
                        let grey = level(at(channel), range);
                        Rgba([grey, grey, grey, 255])
                    };
                    for dy in 0..factor as u32 {
                        for dx in 0..factor as u32 {
                            picture.put_pixel(left + x as u32 * factor as u32 + dx, top + y as u32 * factor as u32 + dy, pixel);
                        }
                    }
                }
            }
        }
    }
    Mosaic { picture, column_x, row_y, tile }
}

fn filter_scene(title: &str, shape: &[i64], weights: &[f32]) -> Result<(Scene, String), RenderError> {
    let dims = validate(shape, weights)?;
    let layout = Layout::new(dims);
    let ranges = filter_ranges(dims, weights);
    let mosaic = mosaic(dims, &layout, weights, &ranges);
    let (tile_width, tile_height) = mosaic.tile;
    let channel_columns = layout.shown_channels > 1;
    let (left, top) = (ROW_LABEL_ROOM, if channel_columns { HEADER_ROOM } else { 0.0 });
    let mut body = Scene::new(left + mosaic.picture.width() as f32, top + mosaic.picture.height() as f32);
    // Input channel numbers over the tile columns, a "filter" caption over the row labels.
    if channel_columns {
        body.text(left - 6.0, top - 5.0, "filter", TICK_FONT, Anchor::End);
        for (column, &x) in mosaic.column_x.iter().enumerate() {
            let channel = column % layout.shown_channels;
            let text = if column == 0 { format!("in {channel}") } else { channel.to_string() };
            let x = left + x as f32 + tile_width as f32 / 2.0;
            let (x, anchor) =
                if column == 0 && text_width(&text, TICK_FONT) > tile_width as f32 { (left, Anchor::Start) } else { (x, Anchor::Middle) };
            body.text(x, top - 5.0, text, TICK_FONT, anchor);
        }
    }
    // Row labels where rows are tall enough to tell apart.
    let row_pitch = mosaic.row_y.get(1).map_or(u32::MAX, |&second| second);
    for (row, &y) in mosaic.row_y.iter().enumerate().filter(|_| row_pitch >= 11) {
        let first = row * layout.filters_per_row;
        body.text(left - 6.0, top + y as f32 + tile_height as f32 / 2.0 + 3.5, first.to_string(), TICK_FONT, Anchor::End);
    }
    body.push(Element::Image { x: left, y: top, image: mosaic.picture, label: "filters".to_string() });

    let notes = notes(dims, &layout);
    let scene = compose(title, "", vec![(title.to_string(), with_notes(&notes, body))]);
    Ok((scene, alt_text(title, shape, dims, &layout, weights, &ranges)))
}

/// The grey lines under the title: what a tile is, how it is scaled, what is left out.
fn notes(dims: Dims, layout: &Layout) -> Vec<String> {
    let kernel = format!("{}\u{d7}{}", dims.height, dims.width);
    let upscaled = format!("upscaled {}\u{d7}", upscale(dims));
    let mut notes = if layout.rgb {
        vec![
            format!("{} of {kernel} over 3 input channels as RGB, {upscaled}", counted(dims.filters, "filter")),
            "each filter scaled from its min to its max".to_string(),
        ]
    } else {
        vec![
            format!("{} \u{d7} {} of {kernel}, {upscaled}", counted(dims.filters, "filter"), counted(dims.channels, "input channel")),
            "black = the filter's min, white = its max".to_string(),
        ]
    };
    if layout.left_out > 0 {
        let shown = if layout.rgb || layout.shown_channels == dims.channels {
            format!("first {}", counted(layout.shown_filters, "filter"))
        } else {
            format!("first {} \u{d7} {}", counted(layout.shown_filters, "filter"), counted(layout.shown_channels, "channel"))
        };
        notes.push(format!("{shown}: {} of {} tiles shown, {} left out", layout.tiles(), layout.total, layout.left_out));
    }
    notes
}

fn alt_text(title: &str, shape: &[i64], dims: Dims, layout: &Layout, weights: &[f32], ranges: &[(f32, f32)]) -> String {
    let (low, high) = ranges.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(low, high), range| (low.min(range.0), high.max(range.1)));
    let what = if layout.rgb {
        format!("{} RGB tiles, one per filter (input channels as red, green, blue), each filter scaled from its min to its max", layout.tiles())
    } else {
        format!(
            "{} grey tiles, one per filter and input channel, {} per row, each filter scaled from its min (black) to its max (white)",
            layout.tiles(),
            layout.filters_per_row * layout.shown_channels
        )
    };
    let left_out = match layout.left_out {
        0 => "all tiles shown".to_string(),
        count => format!(
            "{count} of {} tiles left out (only the first {} filters{} are drawn)",
            layout.total,
            layout.shown_filters,
            if layout.rgb || layout.shown_channels == dims.channels {
                String::new()
            } else {
                format!(" and input channels 0 to {}", layout.shown_channels - 1)
            }
        ),
    };
    let constant: Vec<usize> = (0..dims.filters).filter(|&filter| ranges[filter].0 == ranges[filter].1).collect();
    let constant = match constant.len() {
        0 => String::new(),
        count => {
            let listed: Vec<String> =
                constant.iter().take(10).map(|&filter| format!("{filter} ({})", format_value(weights[filter * dims.filter_len()]))).collect();
            let more = if count > 10 { format!(" and {} more", count - 10) } else { String::new() };
            format!(
                " {} constant (drawn mid grey): {}{more}.",
                if count == 1 { "1 filter is".to_string() } else { format!("{count} filters are") },
                listed.join(", ")
            )
        }
    };
    format!(
        "{title}: convolution filters of weight shape {shape:?} as an image grid of {what}; \
         {}\u{d7}{} kernels upscaled {}\u{d7}; {left_out}. Weights range from {} to {}.{constant}",
        dims.height,
        dims.width,
        upscale(dims),
        format_value(low),
        format_value(high)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dims(filters: usize, channels: usize, height: usize, width: usize) -> Dims {
        Dims { filters, channels, height, width }
    }

    #[test]
    fn layouts_cap_the_tiles() {
        // Filters, channels, then: shown filters, channels per filter, filters per row, left out.
        let cases = [
            (64, 3, (64, 1, 8, 0)),
            (96, 3, (64, 1, 8, 32)),
            (6, 3, (6, 1, 3, 0)),
            (32, 1, (32, 1, 6, 0)),
            (512, 1, (64, 1, 8, 448)),
            (16, 6, (10, 6, 1, 36)),
            (8, 2, (8, 2, 4, 0)),
            (64, 64, (8, 8, 1, 4032)),
        ];
        for (filters, channels, want) in cases {
            let layout = Layout::new(dims(filters, channels, 3, 3));
            assert_eq!((layout.shown_filters, layout.shown_channels, layout.filters_per_row, layout.left_out), want, "{filters}×{channels}");
            assert!(layout.tiles() <= MAX_FILTER_TILES);
        }
        assert_eq!(upscale(dims(1, 1, 3, 3)), 11);
        assert_eq!(upscale(dims(1, 1, 7, 7)), 5);
        assert_eq!(upscale(dims(1, 1, 1, 1)), 32);
        assert_eq!(upscale(dims(1, 1, 64, 64)), 1);
        assert_eq!(upscale(dims(1, 1, 1, 7)), 12);
        assert_eq!(upscale(dims(1, 1, 1, 64)), 4);
    }

    #[test]
    fn tiles_land_where_the_labels_say() {
        // 2 filters × 2 channels of 2×2: one row, tiles at 0, 34 | 74, 108 (32 px each,
        // 2 px between channels, 8 between filters).
        let weights: Vec<f32> = (0..16).map(|value| value as f32).collect();
        let (scene, _) = filter_scene("w", &[2, 2, 2, 2], &weights).unwrap();
        let (x, y, picture) = scene.image("filters").unwrap();
        assert_eq!(picture.dimensions(), (32 * 4 + 2 + 8 + 2, 32));
        // Filter 1, channel 1, row 1, column 0: value 14 of 8..15 → 6/7 of white.
        let expected = level(14.0, (8.0, 15.0));
        assert_eq!(expected, 219);
        assert_eq!(picture.get_pixel(108 + 5, 16 + 5).0, [expected, expected, expected, 255]);
        assert_eq!(picture.get_pixel(32, 5).0[..3], GAP_COLOUR, "gap");
        assert!(x > 0 && y > 0);
    }
}
