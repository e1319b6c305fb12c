//! Lines over a numeric x axis ([`line_chart`]): the learning rate over training steps,
//! training and validation loss, the same curve from several runs. Unlike the
//! [`crate::step_chart`], x is a number, the series need not share their x values, and
//! a series may have many thousands of points.

use crate::chart::{format_value, ticks_within};
use crate::colour::AXIS;
use crate::figure::encode;
use crate::font::text_width;
use crate::options::AxisScale;
use crate::panel::compose;
use crate::scene::{Anchor, Element, Scene};
use crate::small_multiples::{counted, legend_entry, legend_height, legend_layout, marker, series_colour, ValueScale, LEGEND_ROW, TICK_FONT};
use crate::{Figure, Format, RenderError};

/// One line of a [`line_chart`]: its name (in the legend when there are several) and
/// its points, `xs[i]` with `ys[i]`. A point whose x or y is not finite (or whose y is
/// not positive on a log axis) is not drawn and breaks the line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LineSeries<'a> {
    pub name: &'a str,
    pub xs: &'a [f64],
    pub ys: &'a [f64],
}

const PLOT_WIDTH: f32 = 640.0;
const PLOT_HEIGHT: f32 = 280.0;
const MIN_AXIS_LEFT: f32 = 56.0;
const AXIS_RIGHT: f32 = 14.0;
/// The y axis caption's line above the plot.
const CAPTION_HEIGHT: f32 = 22.0;
/// Tick marks, tick labels and the x axis caption under the plot.
const AXIS_BOTTOM: f32 = 40.0;
const CAPTION_FONT: f32 = 11.0;
const LINE_WIDTH: f32 = 1.75;
const MARKER_RADIUS: f32 = 2.75;
/// Series with at most this many points get a marker on each.
const MAX_MARKED_POINTS: usize = 40;

/// A line chart of one or more series over a numeric x axis, e.g. the learning rate
/// or the loss over training steps, or one curve per run.
///
/// Both axes span the points that are drawn: x exactly from the lowest to the highest x
/// with round ticks inside, y with round ticks (or whole decades with
/// [`AxisScale::Log10`]) and `y_label` as its caption above the plot. Each series is a
/// line in its own colour (Tableau 10), named in a legend when there is more than one,
/// with a marker per point when it has few. Points whose x or y is not finite, and on a
/// log axis points whose y is not positive, are left out and break the line there.
/// Series of many thousands of points are thinned to the first, lowest, highest and
/// last point per pixel column, which keeps every spike. The alt text gives, per
/// series, its first, last, lowest and highest point and how many were left out.
///
/// Errors: [`RenderError::BadData`] for no series, a series with no points or with
/// `xs` and `ys` of different lengths, or no point to draw in any series.
pub fn line_chart(
    title: &str,
    series: &[LineSeries<'_>],
    x_label: &str,
    y_label: &str,
    y_scale: AxisScale,
    format: Format,
) -> Result<Figure, RenderError> {
    let (scene, alt_text) = line_chart_scene(title, series, x_label, y_label, y_scale)?;
    encode(&scene, format, alt_text)
}

fn validate(series: &[LineSeries<'_>]) -> Result<(), RenderError> {
    if series.is_empty() {
        return Err(RenderError::BadData("a line chart needs at least one series".to_string()));
    }
    for line in series {
        if line.xs.len() != line.ys.len() {
            return Err(RenderError::BadData(format!("series {:?} has {} x values for {} y values", line.name, line.xs.len(), line.ys.len())));
        }
        if line.xs.is_empty() {
            return Err(RenderError::BadData(format!("series {:?} has no points", line.name)));
        }
    }
    Ok(())
}

/// Whether a point can be drawn on the axis.
fn drawable(x: f64, y: f64, y_scale: AxisScale) -> bool {
    x.is_finite() && y.is_finite() && (y_scale == AxisScale::Linear || y > 0.0)
}

/// The polyline of a run of points in pixels. Runs longer than two points per pixel
/// column keep, per column of consecutive points, the first, lowest, highest and last
/// in their order, so spikes stay visible while the figure stays small.
fn thinned(points: &[(f32, f32)]) -> Vec<(f32, f32)> {
    if points.len() <= 2 * PLOT_WIDTH as usize {
        return points.to_vec();
    }
    let mut kept = Vec::new();
    let mut start = 0;
    while start < points.len() {
        let column = points[start].0.floor();
        let end = (start..points.len()).find(|&index| points[index].0.floor() != column).unwrap_or(points.len());
        let bucket = start..end;
        let lowest = bucket.clone().max_by(|&a, &b| points[a].1.total_cmp(&points[b].1)).unwrap_or(start);
        let highest = bucket.clone().min_by(|&a, &b| points[a].1.total_cmp(&points[b].1)).unwrap_or(start);
        let mut picks = [start, lowest, highest, end - 1];
        picks.sort_unstable();
        for (position, &index) in picks.iter().enumerate() {
            if position == 0 || index != picks[position - 1] {
                kept.push(points[index]);
            }
        }
        start = end;
    }
    kept
}

fn line_chart_scene(
    title: &str,
    series: &[LineSeries<'_>],
    x_label: &str,
    y_label: &str,
    y_scale: AxisScale,
) -> Result<(Scene, String), RenderError> {
    validate(series)?;
    let points = || series.iter().flat_map(|line| line.xs.iter().zip(line.ys).map(|(&x, &y)| (x, y))).filter(|&(x, y)| drawable(x, y, y_scale));
    if points().next().is_none() {
        let why = if y_scale == AxisScale::Log10 {
            "every point has a non-finite x or y, or y ≤ 0 on the log axis"
        } else {
            "every point has a non-finite x or y"
        };
        return Err(RenderError::BadData(format!("the line chart has no point to draw: {why}")));
    }
    let (mut x_low, mut x_high) =
        (points().map(|(x, _)| x).fold(f64::INFINITY, f64::min), points().map(|(x, _)| x).fold(f64::NEG_INFINITY, f64::max));
    if x_high <= x_low {
        let pad = if x_low == 0.0 { 0.5 } else { x_low.abs() * 0.05 };
        (x_low, x_high) = (x_low - pad, x_high + pad);
    }
    let y_axis = ValueScale::fitted(y_scale, points().map(|(_, y)| y), 5);
    let x_ticks = ticks_within(x_low, x_high, 6);

    let x_fraction = |x: f64| ((x - x_low) / (x_high - x_low)) as f32;
    let last_tick_overhang =
        x_ticks.last().map_or(0.0, |(tick, label)| x_fraction(*tick) * PLOT_WIDTH + text_width(label, TICK_FONT) / 2.0 - PLOT_WIDTH);
    let first_tick_overhang = x_ticks.first().map_or(0.0, |(tick, label)| text_width(label, TICK_FONT) / 2.0 - x_fraction(*tick) * PLOT_WIDTH);
    let left = MIN_AXIS_LEFT.max(y_axis.widest_label() + 12.0).max(first_tick_overhang + 2.0).ceil();
    let right = AXIS_RIGHT.max(last_tick_overhang + 2.0).ceil();
    let legend = if series.len() > 1 { legend_layout(series.iter().map(|line| line.name), PLOT_WIDTH) } else { Vec::new() };
    let plot_top = legend_height(&legend) + CAPTION_HEIGHT;
    let plot_bottom = plot_top + PLOT_HEIGHT;
    let width = (left + PLOT_WIDTH + right).ceil();
    let mut scene = Scene::new(width, (plot_bottom + AXIS_BOTTOM).ceil());
    let x_of = |x: f64| left + x_fraction(x) * PLOT_WIDTH;
    let y_of = |y: f64| plot_top + (1.0 - y_axis.fraction(y)) as f32 * PLOT_HEIGHT;

    for ((line, &(x, row)), index) in series.iter().zip(&legend).zip(0..) {
        let radius = if line.xs.len() <= MAX_MARKED_POINTS { MARKER_RADIUS } else { 0.0 };
        legend_entry(&mut scene, (left + x, row as f32 * LEGEND_ROW), line.name, series_colour(index), LINE_WIDTH, radius);
    }
    scene.text(left, plot_top - 9.0, y_label, CAPTION_FONT, Anchor::Start);
    y_axis.draw(&mut scene, left, plot_top, PLOT_WIDTH, PLOT_HEIGHT);
    if !y_axis.log && y_axis.low < 0.0 && 0.0 < y_axis.high {
        let y = y_of(0.0).round() + 0.5;
        scene.dashed_line((left, y), (left + PLOT_WIDTH, y), AXIS, 1.0, 4.0);
    }
    scene.line((left - 0.5, plot_bottom + 0.5), (left + PLOT_WIDTH, plot_bottom + 0.5), AXIS, 1.0);
    for (tick, label) in &x_ticks {
        let x = x_of(*tick).round() + 0.5;
        scene.line((x, plot_bottom + 1.0), (x, plot_bottom + 5.0), AXIS, 1.0);
        scene.text(x, plot_bottom + 16.0, label.as_str(), TICK_FONT, Anchor::Middle);
    }
    scene.text(left + PLOT_WIDTH / 2.0, plot_bottom + AXIS_BOTTOM - 6.0, x_label, CAPTION_FONT, Anchor::Middle);

    // The series, first one at the bottom: runs of drawable points as lines, a point
    // alone (between left-out ones) as a marker.
    for (line, index) in series.iter().zip(0..) {
        let colour = series_colour(index);
        let pixels: Vec<Option<(f32, f32)>> =
            line.xs.iter().zip(line.ys).map(|(&x, &y)| drawable(x, y, y_scale).then(|| (x_of(x), y_of(y)))).collect();
        for run in pixels.split(Option::is_none) {
            let run: Vec<(f32, f32)> = run.iter().flatten().copied().collect();
            match run.len() {
                0 => {}
                // A point alone; series with few points get their markers below.
                1 if line.xs.len() > MAX_MARKED_POINTS => marker(&mut scene, run[0], MARKER_RADIUS, colour),
                1 => {}
                _ => scene.push(Element::Polyline { points: thinned(&run), colour, width: LINE_WIDTH }),
            }
        }
        if line.xs.len() <= MAX_MARKED_POINTS {
            for &point in pixels.iter().flatten() {
                marker(&mut scene, point, MARKER_RADIUS, colour);
            }
        }
    }

    let alt_text = alt_text(title, series, x_label, y_label, &y_axis, y_scale);
    Ok((compose(title, "", vec![(title.to_string(), scene)]), alt_text))
}

/// An x value for alt text: whole numbers (training steps) as they are, others with
/// three significant digits.
fn format_x(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e12 {
        format!("{x:.0}")
    } else {
        format_value(x as f32)
    }
}

fn alt_text(title: &str, series: &[LineSeries<'_>], x_label: &str, y_label: &str, y_axis: &ValueScale, y_scale: AxisScale) -> String {
    let at = |x: f64| if x_label.is_empty() { format!("x = {}", format_x(x)) } else { format!("{x_label} {}", format_x(x)) };
    let each: Vec<String> = series
        .iter()
        .map(|line| {
            let shown: Vec<(f64, f64)> = line.xs.iter().zip(line.ys).map(|(&x, &y)| (x, y)).filter(|&(x, y)| drawable(x, y, y_scale)).collect();
            let left_out = line.xs.len() - shown.len();
            let left_out = match (left_out, y_scale) {
                (0, _) => String::new(),
                (count, AxisScale::Linear) => format!("; {} not finite, left out", counted(count, "point")),
                (count, AxisScale::Log10) => format!("; {} not finite or ≤ 0, left out", counted(count, "point")),
            };
            let (Some(&first), Some(&last)) = (shown.first(), shown.last()) else {
                return format!("{}: nothing to draw{left_out}", line.name);
            };
            // Ties go to the first point.
            let lowest = shown.iter().copied().fold(first, |best, point| if point.1 < best.1 { point } else { best });
            let highest = shown.iter().copied().fold(first, |best, point| if point.1 > best.1 { point } else { best });
            let point = |(x, y): (f64, f64)| format!("{} at {}", format_value(y as f32), at(x));
            format!(
                "{} ({}): first {}, last {}, lowest {}, highest {}{left_out}",
                line.name,
                counted(shown.len(), "point"),
                point(first),
                point(last),
                point(lowest),
                point(highest)
            )
        })
        .collect();
    // "series" is its own plural.
    let lines = format!("{} series", series.len());
    let axis = format!(
        "{y_label} {}axis from {} to {}",
        if y_axis.log { "log " } else { "" },
        format_value(y_axis.low as f32),
        format_value(y_axis.high as f32)
    );
    let over = if x_label.is_empty() { String::new() } else { format!(" over {x_label}") };
    format!("{title}: line chart of {lines}{over}; {axis}. {}", each.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_runs_are_thinned_but_keep_their_spikes() {
        let points: Vec<(f32, f32)> =
            (0..100_000).map(|index| (index as f32 * 640.0 / 100_000.0, if index == 54_321 { 5.0 } else { 100.0 })).collect();
        let kept = thinned(&points);
        assert!(kept.len() <= 4 * 640 && kept.contains(&points[54_321]), "{} points", kept.len());
        assert!(kept.windows(2).all(|pair| pair[0].0 <= pair[1].0), "x stays in order");
        assert_eq!(thinned(&points[..10]).len(), 10);
    }
}
