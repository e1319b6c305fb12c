//! A matrix of values as a grid of coloured cells ([`matrix_heat_map`]), e.g. the
//! update-to-weight ratio of every layer (rows) at every logged training step
//! (columns). With a healthy band the colour map is split at the band: cells inside
//! are pale grey, cells below blue and above red, darker the further out, so the cells
//! that need attention stand out even when there are tens of thousands of them; a bar
//! per row shows how much of the row is outside.

use crate::chart::{format_value, nice_at_least, short_value, ticks_within};
use crate::colour::{gradient_colour, viridis, Colour, AXIS, TEXT};
use crate::colour_bar::{ColourBar, MIN_BAR_HEIGHT};
use crate::figure::encode;
use crate::font::text_width;
use crate::options::{AxisScale, ColourScale};
use crate::panel::compose;
use crate::scene::{Anchor, Element, Scene};
use crate::small_multiples::{counted, fit_end, log_label, ValueScale, TICK_FONT};
use crate::{Figure, Format, RenderError};
use image::{Rgba, RgbaImage};

/// The grid is at most this wide and high; cells are whole pixels up to these sizes.
const MAX_GRID_WIDTH: f32 = 960.0;
const MAX_GRID_HEIGHT: f32 = 600.0;
const MAX_CELL_WIDTH: f32 = 28.0;
const MAX_CELL_HEIGHT: f32 = 18.0;
/// Cells at least this big in both directions get a white pixel between them.
const GAPPED_CELL: f32 = 6.0;
/// Row labels longer than this keep their end (module paths).
const MAX_ROW_LABEL: f32 = 220.0;
const MAX_COLUMN_LABEL: f32 = 100.0;
/// Row labels need this much height each; with thinner rows every k-th is labelled.
const LABEL_PITCH: f32 = 12.0;
/// The column of per-row bars: how much of each row is outside the band.
const OUTSIDE_BAR_WIDTH: f32 = 48.0;
const GAP: f32 = 10.0;
/// Room above the grid (the outside column's heading, the colour bar's top label).
const HEADER: f32 = 20.0;
const COLUMN_LABELS: f32 = 22.0;
const MISSING_KEY: f32 = 24.0;
const HATCH_DARK: Colour = [175, 175, 175];
const HATCH_LIGHT: Colour = [238, 238, 238];
/// Colours of cells below and above the band (and their share of a row).
const BELOW: colorous::Gradient = colorous::BLUES;
const ABOVE: colorous::Gradient = colorous::REDS;
const INSIDE: colorous::Gradient = colorous::GREYS;

/// A heat map of a matrix: one row per `row_labels` entry (module paths, long ones
/// keep their end), one column per `column_labels` entry (training steps; with many
/// columns every k-th is labelled), `values` row-major, `row_labels.len()` rows of
/// `column_labels.len()` values.
///
/// NaN marks a missing cell, drawn hatched grey; with [`ColourScale::Log10`] values
/// that are not positive are missing too, and colours spread over the decades present.
/// A colour bar right of the grid has round ticks and `colour_label` as its caption.
///
/// Without `band` the colour map is viridis. With `band = Some((low, high))`, a healthy
/// range such as `(1e-4, 1e-2)` for update:weight ratios, cells inside it are pale grey
/// (lighter for lower values), cells below it blue and cells above it red, darker the
/// further outside; the colour bar spans the band as well as the data, the band's ends
/// are drawn across it, and a bar beside each row shows the share of its cells below
/// (blue) and above (red) the band, with the count when the rows are tall enough to
/// label.
///
/// The alt text gives the range, the row and column of the largest and the smallest
/// value, the missing cells, and with a band how many cells fall outside it, naming the
/// rows with the most.
///
/// Errors: [`RenderError::BadData`] for no rows or columns, a value count that is not
/// rows × columns, an infinite value, or no cell with a value to draw;
/// [`RenderError::BadOptions`] for a band that is not finite with low below high, or
/// not positive on a log scale.
#[allow(clippy::too_many_arguments)]
pub fn matrix_heat_map(
    title: &str,
    row_labels: &[String],
    column_labels: &[String],
    values: &[f32],
    scale: ColourScale,
    colour_label: &str,
    band: Option<(f32, f32)>,
    format: Format,
) -> Result<Figure, RenderError> {
    let (scene, alt_text) = heat_map_scene(title, row_labels, column_labels, values, scale, colour_label, band)?;
    encode(&scene, format, alt_text)
}

fn validate(
    row_labels: &[String],
    column_labels: &[String],
    values: &[f32],
    scale: ColourScale,
    band: Option<(f32, f32)>,
) -> Result<(), RenderError> {
    let (rows, columns) = (row_labels.len(), column_labels.len());
    if rows == 0 || columns == 0 {
        return Err(RenderError::BadData(format!("a heat map needs at least one row and one column, got {rows} rows and {columns} columns")));
    }
    if values.len() != rows * columns {
        return Err(RenderError::BadData(format!(
            "a heat map of {rows} rows × {columns} columns needs {} values (row-major), got {}",
            rows * columns,
            values.len()
        )));
    }
    if let Some(index) = values.iter().position(|value| value.is_infinite()) {
        return Err(RenderError::BadData(format!(
            "the heat map has an infinite value ({}) at row {} ({:?}), column {} ({:?}); use NaN for a missing cell",
            values[index],
            index / columns,
            row_labels[index / columns],
            index % columns,
            column_labels[index % columns]
        )));
    }
    if let Some((low, high)) = band {
        if !(low.is_finite() && high.is_finite() && low < high) {
            return Err(RenderError::BadOptions(format!("the heat map's band must be finite with low below high, got ({low}, {high})")));
        }
        if scale == ColourScale::Log10 && low <= 0.0 {
            return Err(RenderError::BadOptions(format!("the heat map's band must be positive on a log scale, got ({low}, {high})")));
        }
    }
    Ok(())
}

/// From cell values to positions on the colour scale (log10 of the value on a log
/// scale) and from positions to colours.
struct ColourMapping {
    log: bool,
    /// The ends of the colour bar, as positions: the data and the band together.
    low: f64,
    high: f64,
    band: Option<(f64, f64)>,
}

impl ColourMapping {
    /// `None` for a value, and its position on the scale otherwise.
    fn position(&self, value: f32) -> Option<f64> {
        let value = value as f64;
        match (value.is_nan(), self.log) {
            (true, _) => None,
            (false, true) if value <= 0.0 => None,
            (false, true) => Some(value.log10()),
            (false, false) => Some(value),
        }
    }

    fn value_at(&self, position: f64) -> f64 {
        if self.log {
            10f64.powf(position)
        } else {
            position
        }
    }

    fn fraction(&self, position: f64) -> f64 {
        (position - self.low) / (self.high - self.low)
    }

    fn colour(&self, position: f64) -> Colour {
        let Some((band_low, band_high)) = self.band else {
            return viridis(self.fraction(position));
        };
        // Each side of the band is at least as wide as the band, so a cell just outside
        // it gets a light shade rather than the darkest one.
        let width = band_high - band_low;
        if position < band_low {
            let t = (band_low - position) / (band_low - self.low).max(width);
            gradient_colour(BELOW, 0.35 + 0.6 * t)
        } else if position > band_high {
            let t = (position - band_high) / (self.high - band_high).max(width);
            gradient_colour(ABOVE, 0.35 + 0.6 * t)
        } else {
            gradient_colour(INSIDE, 0.05 + 0.3 * (position - band_low) / width)
        }
    }

    /// Where `position` lies relative to the band: -1 below, 0 inside, 1 above.
    fn side(&self, position: f64) -> i8 {
        match self.band {
            Some((low, _)) if position < low => -1,
            Some((_, high)) if position > high => 1,
            _ => 0,
        }
    }

    /// The colour bar's ticks as (fraction, label) for a bar `height` pixels high: round
    /// values, or on a log scale every decade while they are at least 30 px apart (and 2
    /// and 5 on scales narrower than two decades); the ends when fewer than two fall
    /// inside.
    fn ticks(&self, height: f32) -> Vec<(f64, String)> {
        let decades = (self.low.ceil() as i32)..=(self.high.floor() as i32);
        let ticks: Vec<(f64, String)> = if self.log && decades.clone().count() > 2 {
            let every = (30.0 / (height as f64 / (self.high - self.low))).ceil().max(1.0) as usize;
            decades.step_by(every).map(|exponent| (self.fraction(exponent as f64), log_label(1, exponent))).collect()
        } else if self.log {
            let axis = ValueScale::fixed(AxisScale::Log10, self.value_at(self.low), self.value_at(self.high), 5);
            axis.ticks.into_iter().map(|(value, label)| (self.fraction(value.log10()), label)).collect()
        } else {
            ticks_within(self.low, self.high, 8).into_iter().map(|(value, label)| (self.fraction(value), label)).collect()
        };
        if ticks.len() >= 2 {
            return ticks;
        }
        [self.low, self.high].iter().map(|&position| (self.fraction(position), format_value(self.value_at(position) as f32))).collect()
    }
}

/// Per row: cells below and above the band.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Outside {
    below: usize,
    above: usize,
}

impl Outside {
    fn total(self) -> usize {
        self.below + self.above
    }
}

/// Where the grid's cells and labels go.
struct GridLayout {
    cell_width: f32,
    cell_height: f32,
    width: f32,
    height: f32,
    /// Every `row_every`-th row and `column_every`-th column is labelled.
    row_every: usize,
    column_every: usize,
}

impl GridLayout {
    fn new(rows: usize, columns: usize, column_labels: &[String]) -> GridLayout {
        let (cell_width, width) = crate::chart::fit_cells(columns, MAX_GRID_WIDTH, MAX_CELL_WIDTH);
        let (cell_height, height) = crate::chart::fit_cells(rows, MAX_GRID_HEIGHT, MAX_CELL_HEIGHT);
        let widest_column = column_labels.iter().map(|label| text_width(&fit_end(label, TICK_FONT, MAX_COLUMN_LABEL), TICK_FONT)).fold(0.0, f32::max);
        GridLayout {
            cell_width,
            cell_height,
            width,
            height,
            row_every: nice_at_least(LABEL_PITCH / cell_height),
            column_every: nice_at_least((widest_column + 6.0) / cell_width),
        }
    }

    fn row_centre(&self, row: usize) -> f32 {
        (row as f32 + 0.5) * self.cell_height
    }

    fn column_centre(&self, column: usize) -> f32 {
        (column as f32 + 0.5) * self.cell_width
    }
}

/// The cells as a picture, one colour per cell; missing cells hatched.
fn grid_picture(layout: &GridLayout, positions: &[Option<f64>], columns: usize, mapping: &ColourMapping) -> RgbaImage {
    let rows = positions.len() / columns;
    let colours: Vec<Option<Colour>> = positions.iter().map(|position| position.map(|position| mapping.colour(position))).collect();
    let gapped = layout.cell_width >= GAPPED_CELL && layout.cell_height >= GAPPED_CELL;
    RgbaImage::from_fn(layout.width.round() as u32, layout.height.round() as u32, |x, y| {
        let column = (((x as f32 + 0.5) / layout.cell_width) as usize).min(columns - 1);
        let row = (((y as f32 + 0.5) / layout.cell_height) as usize).min(rows - 1);
        // The last pixel of a cell is the gap, except along the grid's right and bottom edge.
        let gap_x = (x + 1) as f32 >= (column + 1) as f32 * layout.cell_width && ((x + 1) as f32) < layout.width;
        let gap_y = (y + 1) as f32 >= (row + 1) as f32 * layout.cell_height && ((y + 1) as f32) < layout.height;
        let in_gap = gapped && (gap_x || gap_y);
        let [r, g, b] =
            if in_gap { [255, 255, 255] } else { colours[row * columns + column].unwrap_or(if (x + y) % 6 < 2 { HATCH_DARK } else { HATCH_LIGHT }) };
        Rgba([r, g, b, 255])
    })
}

fn heat_map_scene(
    title: &str,
    row_labels: &[String],
    column_labels: &[String],
    values: &[f32],
    scale: ColourScale,
    colour_label: &str,
    band: Option<(f32, f32)>,
) -> Result<(Scene, String), RenderError> {
    validate(row_labels, column_labels, values, scale, band)?;
    let (rows, columns) = (row_labels.len(), column_labels.len());
    let log = scale == ColourScale::Log10;
    let placeholder = ColourMapping { log, low: 0.0, high: 1.0, band: None };
    let positions: Vec<Option<f64>> = values.iter().map(|&value| placeholder.position(value)).collect();
    let present = || positions.iter().flatten().copied();
    let (data_low, data_high) = (present().fold(f64::INFINITY, f64::min), present().fold(f64::NEG_INFINITY, f64::max));
    if !data_low.is_finite() {
        let what = if log { "all cells are NaN or not positive, and a log scale cannot show them" } else { "all cells are NaN" };
        return Err(RenderError::BadData(format!("the heat map has no value to draw: {what}")));
    }
    let band_positions = band.map(|(low, high)| (placeholder.position(low).unwrap_or(f64::NAN), placeholder.position(high).unwrap_or(f64::NAN)));
    let (mut low, mut high) = match band_positions {
        Some((band_low, band_high)) => (data_low.min(band_low), data_high.max(band_high)),
        None => (data_low, data_high),
    };
    if high <= low {
        let pad = if log {
            0.5
        } else if low == 0.0 {
            1.0
        } else {
            low.abs() * 0.1
        };
        (low, high) = (low - pad, high + pad);
    }
    let mapping = ColourMapping { log, low, high, band: band_positions };

    let outside: Vec<Outside> = positions
        .chunks(columns)
        .map(|row| {
            let sides = row.iter().flatten().map(|&position| mapping.side(position));
            Outside { below: sides.clone().filter(|&side| side < 0).count(), above: sides.filter(|&side| side > 0).count() }
        })
        .collect();

    // Layout, left to right: row labels, grid, outside bars (with a band), colour bar.
    let layout = GridLayout::new(rows, columns, column_labels);
    let shown_rows: Vec<usize> = (0..rows).step_by(layout.row_every).collect();
    let row_texts: Vec<String> = shown_rows.iter().map(|&row| fit_end(&row_labels[row], TICK_FONT, MAX_ROW_LABEL)).collect();
    let shown_columns: Vec<usize> = (0..columns).step_by(layout.column_every).collect();
    let column_texts: Vec<String> = shown_columns.iter().map(|&column| fit_end(&column_labels[column], TICK_FONT, MAX_COLUMN_LABEL)).collect();
    let first_column_overhang = column_texts.first().map_or(0.0, |text| text_width(text, TICK_FONT) / 2.0 - layout.column_centre(0));
    let left = row_texts.iter().map(|text| text_width(text, TICK_FONT) + 8.0).fold(first_column_overhang, f32::max).ceil();
    let grid_top = HEADER;
    let grid_right = left + layout.width;
    let with_counts = band.is_some() && layout.row_every == 1;
    let count_texts: Vec<String> = outside.iter().map(|row| row.total().to_string()).collect();
    let counts_width = if with_counts { count_texts.iter().map(|text| text_width(text, TICK_FONT)).fold(0.0, f32::max) + 4.0 } else { 0.0 };
    let outside_width = if band.is_some() { (OUTSIDE_BAR_WIDTH + counts_width).max(text_width("outside band", TICK_FONT)) + GAP } else { 0.0 };
    let last_column_overhang = column_texts.last().map_or(0.0, |text| {
        let centre = layout.column_centre(*shown_columns.last().unwrap_or(&0));
        centre + text_width(text, TICK_FONT) / 2.0 - layout.width
    });
    let bar_left = (grid_right + GAP + outside_width).max(grid_right + last_column_overhang + 4.0).ceil() + 6.0;
    let bar_height = layout.height.max(MIN_BAR_HEIGHT);
    let colour_at = |fraction: f64| mapping.colour(mapping.low + fraction * (mapping.high - mapping.low));
    let band_marks = band.zip(band_positions).map(|((low, high), (low_position, high_position))| {
        ((mapping.fraction(low_position), short_value(low)), (mapping.fraction(high_position), short_value(high)))
    });
    let colour_bar =
        ColourBar { colour_at: &colour_at, ticks: mapping.ticks(bar_height), band: band_marks, levels: Vec::new(), caption: colour_label };
    let missing = positions.iter().filter(|position| position.is_none()).count();
    let key_width = if missing > 0 { 20.0 + text_width("missing", TICK_FONT) } else { 0.0 };
    let width = (bar_left + colour_bar.width(bar_height).max(key_width) + 2.0).ceil();
    let height = (grid_top + layout.height + COLUMN_LABELS).max(grid_top + bar_height + 6.0 + if missing > 0 { MISSING_KEY } else { 0.0 }).ceil();
    let mut scene = Scene::new(width, height);

    scene.push(Element::Image { x: left, y: grid_top, image: grid_picture(&layout, &positions, columns, &mapping), label: "heat map".to_string() });
    let grid_bottom = grid_top + layout.height;
    scene.line((left - 0.5, grid_top - 0.5), (grid_right + 0.5, grid_top - 0.5), AXIS, 1.0);
    scene.line((left - 0.5, grid_bottom + 0.5), (grid_right + 0.5, grid_bottom + 0.5), AXIS, 1.0);
    scene.line((left - 0.5, grid_top - 0.5), (left - 0.5, grid_bottom + 0.5), AXIS, 1.0);
    scene.line((grid_right + 0.5, grid_top - 0.5), (grid_right + 0.5, grid_bottom + 0.5), AXIS, 1.0);
    for (&row, text) in shown_rows.iter().zip(row_texts) {
        scene.text(left - 6.0, grid_top + layout.row_centre(row) + 3.5, text, TICK_FONT, Anchor::End);
    }
    for (&column, text) in shown_columns.iter().zip(column_texts) {
        let x = (left + layout.column_centre(column)).round() + 0.5;
        scene.line((x, grid_bottom + 1.0), (x, grid_bottom + 5.0), AXIS, 1.0);
        scene.text(x, grid_bottom + 16.0, text, TICK_FONT, Anchor::Middle);
    }

    if band.is_some() {
        let bars_left = grid_right + GAP;
        scene.push(Element::Text {
            x: bars_left,
            y: grid_top - 6.0,
            text: "outside band".to_string(),
            size: TICK_FONT,
            anchor: Anchor::Start,
            colour: AXIS,
            rotation: 0.0,
        });
        scene.line((bars_left - 0.5, grid_top), (bars_left - 0.5, grid_bottom), AXIS, 1.0);
        let thickness = (layout.cell_height * 0.7).max(1.0);
        for (row, (counts, text)) in outside.iter().zip(&count_texts).enumerate() {
            let y = grid_top + layout.row_centre(row) - thickness / 2.0;
            let share = |count: usize| count as f32 / columns as f32 * OUTSIDE_BAR_WIDTH;
            let (below, above) = (share(counts.below), share(counts.above));
            scene.push(Element::Rect { x: bars_left, y, width: below, height: thickness, fill: gradient_colour(BELOW, 0.75) });
            scene.push(Element::Rect { x: bars_left + below, y, width: above, height: thickness, fill: gradient_colour(ABOVE, 0.75) });
            if with_counts {
                let colour = if counts.total() > 0 { TEXT } else { AXIS };
                scene.push(Element::Text {
                    x: bars_left + below + above + 4.0,
                    y: grid_top + layout.row_centre(row) + 3.5,
                    text: text.clone(),
                    size: TICK_FONT,
                    anchor: Anchor::Start,
                    colour,
                    rotation: 0.0,
                });
            }
        }
    }

    scene.place(colour_bar.draw(bar_height), bar_left, grid_top);
    if missing > 0 {
        let y = grid_top + bar_height + 12.0;
        let x = bar_left + 5.0;
        let swatch = RgbaImage::from_fn(14, 10, |sx, sy| {
            let [r, g, b] = if (sx + sy) % 6 < 2 { HATCH_DARK } else { HATCH_LIGHT };
            Rgba([r, g, b, 255])
        });
        scene.push(Element::Image { x, y, image: swatch, label: "missing".to_string() });
        scene.text(x + 19.0, y + 9.0, "missing", TICK_FONT, Anchor::Start);
    }

    let subtitle = match band {
        Some((low, high)) => {
            format!("{}healthy band {} to {}: below blue, above red", if log { "log scale, " } else { "" }, short_value(low), short_value(high))
        }
        None if log => "log scale".to_string(),
        None => String::new(),
    };
    let alt_text = alt_text(title, row_labels, column_labels, values, &positions, &mapping, colour_label, band, &outside);
    Ok((compose(title, &subtitle, vec![(title.to_string(), scene)]), alt_text))
}

#[allow(clippy::too_many_arguments)]
fn alt_text(
    title: &str,
    row_labels: &[String],
    column_labels: &[String],
    values: &[f32],
    positions: &[Option<f64>],
    mapping: &ColourMapping,
    colour_label: &str,
    band: Option<(f32, f32)>,
    outside: &[Outside],
) -> String {
    let columns = column_labels.len();
    let cells = || positions.iter().enumerate().filter_map(|(index, position)| position.map(|position| (index, position)));
    // Ties go to the first cell in reading order.
    let largest = cells().fold(None, |best: Option<(usize, f64)>, cell| if best.is_none_or(|best| cell.1 > best.1) { Some(cell) } else { best });
    let smallest = cells().fold(None, |best: Option<(usize, f64)>, cell| if best.is_none_or(|best| cell.1 < best.1) { Some(cell) } else { best });
    let at =
        |index: usize| format!("{} at row {}, column {}", format_value(values[index]), row_labels[index / columns], column_labels[index % columns]);
    let scale = if mapping.log { "log10 colour scale" } else { "linear colour scale" };
    let mut text = format!(
        "{title}: heat map of {colour_label}, {} × {}, {scale}. Largest {}; smallest {}.",
        counted(row_labels.len(), "row"),
        counted(columns, "column"),
        largest.map_or_else(String::new, |(index, _)| at(index)),
        smallest.map_or_else(String::new, |(index, _)| at(index)),
    );
    let missing = positions.iter().filter(|position| position.is_none()).count();
    if missing > 0 {
        let why = if mapping.log { "NaN or ≤ 0, hatched" } else { "NaN, hatched" };
        text.push_str(&format!(" {} missing ({why}).", counted(missing, "cell")));
    }
    if let Some((low, high)) = band {
        let (below, above) = outside.iter().fold((0, 0), |(below, above), row| (below + row.below, above + row.above));
        let band = format!("healthy band {} to {}", short_value(low), short_value(high));
        if below + above == 0 {
            text.push_str(&format!(" All cells with a value are inside the {band}."));
        } else {
            let mut worst: Vec<usize> = (0..outside.len()).filter(|&row| outside[row].total() > 0).collect();
            worst.sort_by_key(|&row| (std::cmp::Reverse(outside[row].total()), row));
            const LISTED: usize = 5;
            let listed: Vec<String> = worst
                .iter()
                .take(LISTED)
                .map(|&row| {
                    let counts = outside[row];
                    format!("{} ({} of {columns}: {} below, {} above)", row_labels[row], counts.total(), counts.below, counts.above)
                })
                .collect();
            let more = if worst.len() > LISTED { format!(", and {}", counted(worst.len() - LISTED, "more row")) } else { String::new() };
            text.push_str(&format!(
                " Outside the {band}: {} ({below} below, {above} above) in {} of {}; most in {}{more}.",
                counted(below + above, "cell"),
                counted(worst.len(), "row"),
                row_labels.len(),
                listed.join("; ")
            ));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(prefix: &str, count: usize) -> Vec<String> {
        (0..count).map(|index| format!("{prefix}{index}")).collect()
    }

    #[test]
    fn band_splits_the_colour_map() {
        let mapping = ColourMapping { log: true, low: -6.0, high: 0.0, band: Some((-4.0, -2.0)) };
        let (below, inside, above) = (mapping.colour(-5.0), mapping.colour(-3.0), mapping.colour(-1.0));
        assert!(below[2] > below[0] + 40, "blue below the band: {below:?}");
        assert!(above[0] > above[2] + 40, "red above the band: {above:?}");
        assert!(inside[0].abs_diff(inside[2]) < 8 && inside[0] > 180, "pale grey inside: {inside:?}");
        // Further out is darker.
        let sum = |colour: Colour| colour.iter().map(|&channel| channel as u32).sum::<u32>();
        assert!(sum(mapping.colour(-6.0)) < sum(mapping.colour(-4.5)));
        assert_eq!((mapping.side(-5.0), mapping.side(-3.0), mapping.side(-1.0)), (-1, 0, 1));
        // Log positions: NaN and values ≤ 0 are missing.
        assert!((mapping.position(1e-3).unwrap() + 3.0).abs() < 1e-6);
        assert_eq!((mapping.position(0.0), mapping.position(-1.0), mapping.position(f32::NAN)), (None, None, None));
    }

    #[test]
    fn many_columns_are_thinned_and_cells_stay_whole_pixels() {
        let steps: Vec<String> = (0..500).map(|step| (step * 10).to_string()).collect();
        let layout = GridLayout::new(40, 500, &steps);
        assert_eq!((layout.cell_width, layout.width), (1.0, 500.0));
        assert_eq!((layout.cell_height, layout.height), (15.0, 600.0));
        assert_eq!((layout.row_every, layout.column_every), (1, 50));
        let huge = GridLayout::new(2000, 3000, &labels("", 3000));
        assert_eq!((huge.width, huge.height), (MAX_GRID_WIDTH, MAX_GRID_HEIGHT));
        assert_eq!((huge.row_every, huge.column_every), (50, 100));
    }

    #[test]
    fn alt_text_counts_cells_outside_the_band_per_row() {
        let rows = vec!["encoder.layers.0.attn".to_string(), "encoder.layers.1.mlp".to_string(), "head".to_string()];
        #[rustfmt::skip]
        let values = [
            1e-3, 2e-3, 5e-3, f32::NAN,
            1e-5, 1e-3, 0.2, 0.5,
            1e-3, 1e-3, 1e-3, 0.0,
        ];
        let (_, alt) = heat_map_scene("update:weight", &rows, &labels("", 4), &values, ColourScale::Log10, "ratio", Some((1e-4, 1e-2))).unwrap();
        assert!(alt.contains("Largest 0.5 at row encoder.layers.1.mlp, column 3; smallest 1.00e-5 at row encoder.layers.1.mlp, column 0"), "{alt}");
        assert!(alt.contains("2 cells missing (NaN or ≤ 0, hatched)"), "{alt}");
        assert!(
            alt.contains("Outside the healthy band 1e-4 to 0.01: 3 cells (1 below, 2 above) in 1 row of 3; most in encoder.layers.1.mlp (3 of 4"),
            "{alt}"
        );
    }
}
