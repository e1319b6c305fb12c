//! Histograms of several tensors as small multiples ([`histogram_grid`]): every
//! parameter tensor of a layer, or every layer's activations, one panel each, all in
//! the same style. The daemon bins the values; this draws the bins as they are.

use crate::chart::{format_value, ticks_within};
use crate::colour::{Colour, AXIS};
use crate::figure::encode;
use crate::font::text_width;
use crate::panel::compose;
use crate::scene::{Anchor, Element, PanelBox, Scene};
use crate::small_multiples::{counted, fit_end, fit_start, ValueScale, TICK_FONT};
use crate::{Figure, Format, RenderError};

/// One tensor's histogram in a [`histogram_grid`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HistogramPanel<'a> {
    /// The panel's title, e.g. the tensor's name (`layer1.0.conv1.weight`); long ones
    /// keep their end.
    pub title: &'a str,
    /// Bin edges, ascending, one more than `counts` (bin `i` is `edges[i]..edges[i+1]`).
    pub edges: &'a [f32],
    pub counts: &'a [u64],
    /// An optional grey note under the title, e.g. `mean 0.01, std 0.2, 3% zeros`;
    /// empty for none. Long ones are cut short with an ellipsis.
    pub subtitle: &'a str,
}

const PLOT_WIDTH: f32 = 220.0;
const PLOT_HEIGHT: f32 = 120.0;
const TITLE_FONT: f32 = 12.0;
const SUBTITLE_FONT: f32 = 10.0;
/// Panels per row at most; fewer when that evens out the rows (5 panels: 3 + 2).
const MAX_COLUMNS: usize = 4;
const COLUMN_GAP: f32 = 16.0;
const ROW_GAP: f32 = 14.0;
/// Tick marks and tick labels under the plot.
const X_AXIS_HEIGHT: f32 = 20.0;
const BAR: Colour = [78, 121, 167];
/// Bins at least this wide (in pixels) are drawn with a one-pixel gap between them.
const GAPPED_BIN: i32 = 5;

/// Histograms of several tensors, one small panel each in a grid of up to four
/// columns, all in the same style: bars over the bin edges (ticks at round values, a
/// dashed line at 0 when it is inside), counts on a linear axis from 0 or, with
/// `log_counts`, a log10 axis over whole decades from half the lowest one. Empty bins
/// have no bar; any other bin is at least a pixel high. Every panel has its own value
/// and count range. Bins narrower than a pixel are merged per
/// pixel column, keeping the highest count. A panel whose counts are all zero is drawn
/// as empty axes saying so. The alt text names every panel with its range, total count,
/// fullest bin and subtitle.
///
/// Errors: [`RenderError::BadData`] for no panels, a panel without bins, edges that are
/// not one more than the counts, or edges that are not finite or not ascending.
pub fn histogram_grid(title: &str, panels: &[HistogramPanel<'_>], log_counts: bool, format: Format) -> Result<Figure, RenderError> {
    let (scene, alt_text) = histogram_scene(title, panels, log_counts)?;
    encode(&scene, format, alt_text)
}

fn validate(panels: &[HistogramPanel<'_>]) -> Result<(), RenderError> {
    if panels.is_empty() {
        return Err(RenderError::BadData("a histogram grid needs at least one panel".to_string()));
    }
    for panel in panels {
        let name = panel.title;
        if panel.counts.is_empty() {
            return Err(RenderError::BadData(format!("histogram panel {name:?} has no bins")));
        }
        if panel.edges.len() != panel.counts.len() + 1 {
            return Err(RenderError::BadData(format!(
                "histogram panel {name:?} has {} bin edges for {} counts; there must be one edge more than counts",
                panel.edges.len(),
                panel.counts.len()
            )));
        }
        if let Some((index, edge)) = panel.edges.iter().enumerate().find(|(_, edge)| !edge.is_finite()) {
            return Err(RenderError::BadData(format!("histogram panel {name:?} has a non-finite bin edge ({edge}) at index {index}")));
        }
        if let Some(index) = (1..panel.edges.len()).find(|&index| panel.edges[index] < panel.edges[index - 1]) {
            return Err(RenderError::BadData(format!(
                "histogram panel {name:?} has bin edges that are not ascending: {} at index {index} after {}",
                panel.edges[index],
                panel.edges[index - 1]
            )));
        }
    }
    Ok(())
}

/// One panel's axes: values across, counts up.
struct PanelAxes {
    low: f64,
    high: f64,
    x_ticks: Vec<(f64, String)>,
    counts: ValueScale,
    empty: bool,
    /// The edges span nothing: the axis is a unit around their one value.
    constant: bool,
}

impl PanelAxes {
    fn new(panel: &HistogramPanel<'_>, log_counts: bool) -> PanelAxes {
        let (first, last) = (panel.edges[0] as f64, panel.edges[panel.edges.len() - 1] as f64);
        // Edges that span nothing (a constant tensor) get a unit-wide axis around them.
        let (low, high) = if last > first { (first, last) } else { (first - 0.5, last + 0.5) };
        let x_ticks = ticks_within(low, high, 4);
        let highest = panel.counts.iter().copied().max().unwrap_or(0);
        let empty = highest == 0;
        let counts = if empty {
            // Empty axes: only the zero line is labelled.
            ValueScale { low: 0.0, high: 1.0, log: false, ticks: vec![(0.0, "0".to_string())] }
        } else if log_counts {
            let lowest = panel.counts.iter().copied().filter(|&count| count > 0).min().unwrap_or(1);
            let mut scale = ValueScale::log(lowest as f64, highest as f64);
            // Bars rise from half the lowest decade, so a bin of the decade's count
            // (a single value, often) still shows.
            scale.low /= 2.0;
            scale
        } else {
            ValueScale::linear(0.0, highest as f64, 4)
        };
        PanelAxes { low, high, x_ticks, counts, empty, constant: last <= first }
    }

    fn x(&self, value: f64) -> f32 {
        ((value - self.low) / (self.high - self.low)) as f32 * PLOT_WIDTH
    }

    /// How far the x tick labels reach past the plot's right end.
    fn overhang_right(&self) -> f32 {
        self.x_ticks.iter().map(|(tick, label)| self.x(*tick) + text_width(label, TICK_FONT) / 2.0 - PLOT_WIDTH).fold(0.0, f32::max)
    }
}

/// The bars of a panel as (left, right, count) in whole pixels from the plot's left
/// end, empty bins left out. When there are more bins than half the plot's pixels, the
/// bins are merged per pixel column, keeping the highest count, and runs of columns of
/// one count become one bar.
fn bars(panel: &HistogramPanel<'_>, axes: &PanelAxes) -> Vec<(i32, i32, u64)> {
    let columns = PLOT_WIDTH as i32;
    let edge_x = |index: usize| axes.x(panel.edges[index] as f64);
    if panel.counts.len() as f32 <= PLOT_WIDTH / 2.0 {
        return (0..panel.counts.len())
            .filter(|&bin| panel.counts[bin] > 0)
            .map(|bin| {
                let (mut left, mut right) = (edge_x(bin).round() as i32, edge_x(bin + 1).round() as i32);
                if right - left >= GAPPED_BIN {
                    right -= 1;
                }
                if axes.constant {
                    // Bins of no width around one value: a bar wide enough to see.
                    (left, right) = (left - 2, left + 3);
                }
                (left, right.max(left + 1).min(columns.max(left + 1)), panel.counts[bin])
            })
            .collect();
    }
    let mut column_counts = vec![0u64; columns as usize];
    for (bin, &count) in panel.counts.iter().enumerate() {
        let first = (edge_x(bin).floor() as i32).clamp(0, columns - 1);
        let last = ((edge_x(bin + 1).ceil() as i32) - 1).clamp(first, columns - 1);
        for column in first..=last {
            let entry = &mut column_counts[column as usize];
            *entry = (*entry).max(count);
        }
    }
    let mut runs: Vec<(i32, i32, u64)> = Vec::new();
    for (column, &count) in column_counts.iter().enumerate() {
        let column = column as i32;
        match runs.last_mut() {
            Some(run) if run.1 == column && run.2 == count => run.1 = column + 1,
            _ => runs.push((column, column + 1, count)),
        }
    }
    runs.retain(|run| run.2 > 0);
    runs
}

/// Room a panel's title and subtitle take above its plot.
fn header_height(any_subtitle: bool) -> f32 {
    if any_subtitle {
        34.0
    } else {
        22.0
    }
}

fn draw_panel(panel: &HistogramPanel<'_>, axes: &PanelAxes, left: f32, right: f32, header: f32) -> Scene {
    let width = left + PLOT_WIDTH + right;
    let (top, bottom) = (header, header + PLOT_HEIGHT);
    let mut scene = Scene::new(width, bottom + X_AXIS_HEIGHT);
    let centre = left + PLOT_WIDTH / 2.0;
    let room = PLOT_WIDTH + 2.0 * left.min(right).max(10.0);
    scene.text(centre, 13.0, fit_end(panel.title, TITLE_FONT, room), TITLE_FONT, Anchor::Middle);
    if !panel.subtitle.is_empty() {
        scene.push(Element::Text {
            x: centre,
            y: 27.0,
            text: fit_start(panel.subtitle, SUBTITLE_FONT, room),
            size: SUBTITLE_FONT,
            anchor: Anchor::Middle,
            colour: AXIS,
            rotation: 0.0,
        });
    }
    axes.counts.draw(&mut scene, left, top, PLOT_WIDTH, PLOT_HEIGHT);
    if axes.empty {
        scene.push(Element::Text {
            x: centre,
            y: top + PLOT_HEIGHT / 2.0 + 4.0,
            text: "all counts are zero".to_string(),
            size: 11.0,
            anchor: Anchor::Middle,
            colour: AXIS,
            rotation: 0.0,
        });
    }
    for (x0, x1, count) in bars(panel, axes) {
        let fraction = axes.counts.fraction(count as f64).clamp(0.0, 1.0) as f32;
        // A bin with any count is at least a pixel high, so sparse tails show.
        let y = (bottom - fraction * PLOT_HEIGHT).round().min(bottom - 1.0);
        scene.push(Element::Rect { x: left + x0 as f32, y, width: (x1 - x0) as f32, height: bottom - y, fill: BAR });
    }
    if axes.low < 0.0 && 0.0 < axes.high {
        let x = (left + axes.x(0.0)).round() + 0.5;
        scene.dashed_line((x, top), (x, bottom), AXIS, 1.0, 3.0);
    }
    scene.line((left - 0.5, bottom + 0.5), (left + PLOT_WIDTH, bottom + 0.5), AXIS, 1.0);
    for (tick, label) in &axes.x_ticks {
        let x = (left + axes.x(*tick)).round() + 0.5;
        scene.line((x, bottom + 1.0), (x, bottom + 5.0), AXIS, 1.0);
        scene.text(x, bottom + 16.0, label.as_str(), TICK_FONT, Anchor::Middle);
    }
    scene
}

fn histogram_scene(title: &str, panels: &[HistogramPanel<'_>], log_counts: bool) -> Result<(Scene, String), RenderError> {
    validate(panels)?;
    let axes: Vec<PanelAxes> = panels.iter().map(|panel| PanelAxes::new(panel, log_counts)).collect();
    // One left and right margin for all panels, so their plots line up.
    let left = axes.iter().map(|axes| axes.counts.widest_label() + 12.0).fold(30.0, f32::max).ceil();
    let right = axes.iter().map(|axes| axes.overhang_right() + 2.0).fold(10.0, f32::max).ceil();
    let any_subtitle = panels.iter().any(|panel| !panel.subtitle.is_empty());
    let header = header_height(any_subtitle);
    let rows = panels.len().div_ceil(MAX_COLUMNS);
    let columns = panels.len().div_ceil(rows);
    let (panel_width, panel_height) = (left + PLOT_WIDTH + right, header + PLOT_HEIGHT + X_AXIS_HEIGHT);
    let mut grid =
        Scene::new(columns as f32 * panel_width + (columns - 1) as f32 * COLUMN_GAP, rows as f32 * panel_height + (rows - 1) as f32 * ROW_GAP);
    for (index, (panel, axes)) in panels.iter().zip(&axes).enumerate() {
        let (x, y) = ((index % columns) as f32 * (panel_width + COLUMN_GAP), (index / columns) as f32 * (panel_height + ROW_GAP));
        grid.place(draw_panel(panel, axes, left, right, header), x, y);
        grid.panels.push(PanelBox { title: panel.title.to_string(), x, y, width: panel_width, height: panel_height });
    }
    let subtitle = if log_counts { "count per bin, log scale" } else { "count per bin" };
    let scene = compose(title, subtitle, vec![(title.to_string(), grid)]);
    Ok((scene, alt_text(title, panels, &axes, log_counts)))
}

fn alt_text(title: &str, panels: &[HistogramPanel<'_>], axes: &[PanelAxes], log_counts: bool) -> String {
    let each: Vec<String> = panels
        .iter()
        .zip(axes)
        .map(|(panel, axes)| {
            let (first, last) = (panel.edges[0], panel.edges[panel.edges.len() - 1]);
            let bins = counted(panel.counts.len(), "bin");
            let range = format!("{bins} from {} to {}", format_value(first), format_value(last));
            let note = if panel.subtitle.is_empty() { String::new() } else { format!(" ({})", panel.subtitle) };
            if axes.empty {
                return format!("{}{note}: {range}, all counts zero (empty axes)", panel.title);
            }
            let total: u128 = panel.counts.iter().map(|&count| count as u128).sum();
            let fullest = (0..panel.counts.len()).max_by_key(|&bin| (panel.counts[bin], std::cmp::Reverse(bin))).unwrap_or(0);
            format!(
                "{}{note}: {range}, {total} values, most ({}) in {} to {}",
                panel.title,
                panel.counts[fullest],
                format_value(panel.edges[fullest]),
                format_value(panel.edges[fullest + 1])
            )
        })
        .collect();
    let scale = if log_counts { "counts on a log scale" } else { "counts on a linear scale" };
    format!("{title}: histograms of {}, one panel each, {scale}. {}", counted(panels.len(), "tensor"), each.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn panel<'a>(edges: &'a [f32], counts: &'a [u64]) -> HistogramPanel<'a> {
        HistogramPanel { title: "w", edges, counts, subtitle: "" }
    }

    #[test]
    fn bins_become_bars_with_gaps_or_merged_columns() {
        // Four bins of 55 px: gaps of one pixel, empty bins left out.
        let edges = [0.0, 1.0, 2.0, 3.0, 4.0];
        let counts = [3, 0, 7, 1];
        let histogram = panel(&edges, &counts);
        let axes = PanelAxes::new(&histogram, false);
        assert_eq!(bars(&histogram, &axes), [(0, 54, 3), (110, 164, 7), (165, 219, 1)]);
        // 2200 bins of a tenth of a pixel: per column the highest count.
        let edges: Vec<f32> = (0..=2200).map(|edge| edge as f32).collect();
        let counts: Vec<u64> = (0..2200).map(|bin| if bin == 1234 { 50 } else { 1 }).collect();
        let histogram = panel(&edges, &counts);
        let axes = PanelAxes::new(&histogram, true);
        assert_eq!(bars(&histogram, &axes), [(0, 123, 1), (123, 124, 50), (124, 220, 1)]);
    }

    #[test]
    fn log_counts_start_below_one() {
        let edges = [0.0, 1.0, 2.0];
        let counts = [1, 2000];
        let axes = PanelAxes::new(&panel(&edges, &counts), true);
        assert_eq!((axes.counts.low, axes.counts.high), (0.5, 1e4));
        assert!(axes.counts.fraction(1.0) > 0.05, "a single value still has a bar");
        let linear = PanelAxes::new(&panel(&edges, &counts), false);
        assert_eq!((linear.counts.low, linear.counts.high), (0.0, 2000.0));
    }
}
