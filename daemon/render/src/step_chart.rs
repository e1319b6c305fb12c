//! A line chart of one or more series over labelled steps ([`step_chart`]), e.g. the
//! Spearman correlation between original and randomised attributions after each step of
//! a model-parameter randomisation sanity check. Steps are categories, evenly spaced,
//! each labelled with its name (module paths such as `layer4.1.conv2`); names that do
//! not fit side by side are turned by 45 degrees, and with very many steps only every
//! k-th is labelled.

use crate::chart::{format_value, nice_ticks, tick_labels, Ticks};
use crate::colour::{AXIS, GRID};
use crate::font::text_width;
use crate::panel::compose;
use crate::scene::{Anchor, Element, Scene};
use crate::small_multiples::{marker, series_colour, AxisLabels};
use crate::{figure::encode, Figure, Format, RenderError};
use std::collections::BTreeSet;

/// One line of a [`step_chart`]: its name (shown in the legend when there are several
/// series) and one value per step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChartSeries<'a> {
    pub name: &'a str,
    pub values: &'a [f32],
}

const PLOT_HEIGHT: f32 = 240.0;
/// Horizontal room per step; the plot is between [`MIN_PLOT_WIDTH`] and
/// [`MAX_PLOT_WIDTH`] wide, so up to 60 steps get 16 px each.
const STEP_WIDTH: f32 = 16.0;
const MIN_PLOT_WIDTH: f32 = 400.0;
const MAX_PLOT_WIDTH: f32 = 960.0;
/// Least room for the value tick labels left of the plot.
const AXIS_LEFT: f32 = 64.0;
const AXIS_RIGHT: f32 = 14.0;
/// The value axis caption's line above the plot.
const CAPTION_HEIGHT: f32 = 22.0;
const LEGEND_ROW: f32 = 18.0;
const LEGEND_SWATCH: f32 = 22.0;
const LEGEND_GAP: f32 = 16.0;
const TICK_FONT: f32 = 10.0;
const CAPTION_FONT: f32 = 11.0;
const LEGEND_FONT: f32 = 11.0;
const LINE_WIDTH: f32 = 1.75;
const MARKER_RADIUS: f32 = 3.0;

/// A chart of one or more series over labelled steps, e.g. the Spearman correlation
/// after each randomisation step of a sanity check.
///
/// Each series is a line with a marker per step, in its own colour (Tableau 10, repeated
/// after ten series), named in a legend when there is more than one. The x axis labels
/// every step (turned, or every k-th, when they are long or many); the y axis has round
/// ticks and `y_label` as its caption. `y_range` fixes the axis, e.g. `(-1.0, 1.0)` for
/// correlations, and parts of lines outside it are cut off; `None` fits the axis to the
/// data. A dashed line marks y = 0 when 0 is on the axis. The alt text names the title,
/// the steps and, per series, its first and last value.
///
/// Errors: [`RenderError::BadData`] for no series, no steps, a series whose length is
/// not the number of step labels, or a value that is not finite;
/// [`RenderError::BadOptions`] for a `y_range` that is not finite with low below high.
pub fn step_chart(
    title: &str,
    step_labels: &[String],
    series: &[ChartSeries<'_>],
    y_label: &str,
    y_range: Option<(f32, f32)>,
    format: Format,
) -> Result<Figure, RenderError> {
    let (scene, alt_text) = step_scene(title, step_labels, series, y_label, y_range)?;
    encode(&scene, format, alt_text)
}

fn validate(step_labels: &[String], series: &[ChartSeries<'_>], y_range: Option<(f32, f32)>) -> Result<(), RenderError> {
    if series.is_empty() {
        return Err(RenderError::BadData("a step chart needs at least one series".to_string()));
    }
    if step_labels.is_empty() {
        return Err(RenderError::BadData("a step chart needs at least one step label".to_string()));
    }
    for line in series {
        if line.values.len() != step_labels.len() {
            return Err(RenderError::BadData(format!(
                "series {:?} has {} values for {} step labels",
                line.name,
                line.values.len(),
                step_labels.len()
            )));
        }
        if let Some((step, value)) = line.values.iter().enumerate().find(|(_, value)| !value.is_finite()) {
            return Err(RenderError::BadData(format!(
                "series {:?} has a non-finite value ({value}) at step {step} ({:?})",
                line.name, step_labels[step]
            )));
        }
    }
    if let Some((low, high)) = y_range {
        if !(low.is_finite() && high.is_finite() && low < high) {
            return Err(RenderError::BadOptions(format!("y_range must be finite with low below high, got ({low}, {high})")));
        }
    }
    Ok(())
}

/// The value axis: its range and the ticks on it.
struct ValueAxis {
    low: f64,
    high: f64,
    ticks: Vec<f64>,
    labels: Vec<String>,
}

fn value_axis(series: &[ChartSeries<'_>], y_range: Option<(f32, f32)>) -> ValueAxis {
    match y_range {
        Some((low, high)) => {
            let (low, high) = (low as f64, high as f64);
            let ticks = nice_ticks(low, high, 5);
            let tolerance = (high - low) * 1e-6;
            let inside: Vec<f64> = ticks.values.iter().copied().filter(|&tick| tick >= low - tolerance && tick <= high + tolerance).collect();
            let labels = tick_labels(&Ticks { values: inside.clone(), ..ticks });
            ValueAxis { low, high, ticks: inside, labels }
        }
        None => {
            let values = || series.iter().flat_map(|line| line.values.iter().map(|&value| value as f64));
            let (mut low, mut high) = (values().fold(f64::INFINITY, f64::min), values().fold(f64::NEG_INFINITY, f64::max));
            if high <= low {
                // One value everywhere: centre it on an axis a little wider.
                let pad = if low == 0.0 { 1.0 } else { low.abs() * 0.1 };
                (low, high) = (low - pad, high + pad);
            }
            let ticks = nice_ticks(low, high, 5);
            let labels = tick_labels(&ticks);
            ValueAxis { low: ticks.low, high: ticks.high, ticks: ticks.values, labels }
        }
    }
}

/// Legend entries (swatch and name) in rows no wider than `max_width`: the x of each
/// entry and its row.
fn legend_layout(series: &[ChartSeries<'_>], max_width: f32) -> Vec<(f32, usize)> {
    let mut places = Vec::with_capacity(series.len());
    let (mut x, mut row) = (0.0, 0);
    for line in series {
        let width = LEGEND_SWATCH + 5.0 + text_width(line.name, LEGEND_FONT);
        if x > 0.0 && x + width > max_width {
            (x, row) = (0.0, row + 1);
        }
        places.push((x, row));
        x += width + LEGEND_GAP;
    }
    places
}

fn step_scene(
    title: &str,
    step_labels: &[String],
    series: &[ChartSeries<'_>],
    y_label: &str,
    y_range: Option<(f32, f32)>,
) -> Result<(Scene, String), RenderError> {
    validate(step_labels, series, y_range)?;
    let steps = step_labels.len();
    let axis = value_axis(series, y_range);
    let plot_width = (steps as f32 * STEP_WIDTH).clamp(MIN_PLOT_WIDTH, MAX_PLOT_WIDTH);
    let pitch = plot_width / steps as f32;
    let labels = AxisLabels::new(step_labels, pitch, &BTreeSet::new());
    let widest_tick = axis.labels.iter().map(|label| text_width(label, TICK_FONT)).fold(0.0, f32::max);
    let left = AXIS_LEFT.max(widest_tick + 12.0).max(labels.overhang_left(pitch) + 2.0).ceil();
    let right = AXIS_RIGHT.max(labels.overhang_right(pitch, plot_width) + 2.0).ceil();
    let legend = if series.len() > 1 { legend_layout(series, plot_width) } else { Vec::new() };
    let legend_height = legend.last().map_or(0.0, |&(_, row)| (row + 1) as f32 * LEGEND_ROW + 4.0);
    let plot_top = legend_height + CAPTION_HEIGHT;
    let plot_bottom = plot_top + PLOT_HEIGHT;
    let width = (left + plot_width + right).ceil();
    let height = (plot_bottom + labels.height()).ceil();
    let mut scene = Scene::new(width, height);
    let y_of = |value: f64| plot_top + ((axis.high - value) / (axis.high - axis.low)) as f32 * PLOT_HEIGHT;
    let x_of = |step: usize| left + (step as f32 + 0.5) * pitch;

    // Legend, then the value axis caption, above the plot.
    for ((line, &(x, row)), index) in series.iter().zip(&legend).zip(0..) {
        let (x, middle) = (left + x, row as f32 * LEGEND_ROW + 9.0);
        let colour = series_colour(index);
        scene.push(Element::Line { from: (x, middle), to: (x + LEGEND_SWATCH, middle), colour, width: LINE_WIDTH, dash: None });
        marker(&mut scene, (x + LEGEND_SWATCH / 2.0, middle), MARKER_RADIUS, colour);
        scene.text(x + LEGEND_SWATCH + 5.0, middle + 4.0, line.name, LEGEND_FONT, Anchor::Start);
    }
    scene.text(left, plot_top - 9.0, y_label, CAPTION_FONT, Anchor::Start);

    // Value axis: grid lines, tick marks and labels, the axis line.
    for (&tick, label) in axis.ticks.iter().zip(&axis.labels) {
        let y = y_of(tick).round() + 0.5;
        scene.line((left, y), (left + plot_width, y), GRID, 1.0);
        scene.line((left - 4.0, y), (left, y), AXIS, 1.0);
        scene.text(left - 7.0, y + 3.5, label.as_str(), TICK_FONT, Anchor::End);
    }
    scene.line((left - 0.5, plot_top), (left - 0.5, plot_bottom), AXIS, 1.0);
    scene.line((left - 0.5, plot_bottom + 0.5), (left + plot_width, plot_bottom + 0.5), AXIS, 1.0);
    if axis.low <= 0.0 && 0.0 <= axis.high {
        let y = y_of(0.0).round() + 0.5;
        scene.dashed_line((left, y), (left + plot_width, y), AXIS, 1.0, 4.0);
    }

    // Step axis: a tick per step, longer where a label is, labels on the shown ones.
    for step in 0..steps {
        let x = x_of(step).round() + 0.5;
        let length = if step % labels.every == 0 { 5.0 } else { 3.0 };
        scene.line((x, plot_bottom + 1.0), (x, plot_bottom + 1.0 + length), AXIS, 1.0);
    }
    for &step in &labels.shown {
        scene.push(labels.text(step, x_of(step), plot_bottom, crate::colour::TEXT));
    }

    // The series, first one at the bottom; parts outside a fixed range are cut off.
    let mut cut = 0;
    for (line, index) in series.iter().zip(0..) {
        let colour = series_colour(index);
        let points: Vec<(f32, f32)> = line.values.iter().enumerate().map(|(step, &value)| (x_of(step), y_of(value as f64))).collect();
        for run in clip_runs(&points, plot_top, plot_bottom) {
            scene.push(Element::Polyline { points: run, colour, width: LINE_WIDTH });
        }
        for &point in &points {
            if (plot_top - 0.01..=plot_bottom + 0.01).contains(&point.1) {
                marker(&mut scene, point, MARKER_RADIUS, colour);
            } else {
                cut += 1;
            }
        }
    }

    let alt_text = alt_text(title, step_labels, series, y_label, &axis, y_range.is_some(), cut);
    let figure = compose(title, "", vec![(title.to_string(), scene)]);
    Ok((figure, alt_text))
}

/// The polyline through `points` cut to the band `top..=bottom`: the runs of segments
/// (or parts of segments) inside it. A single point gives no run.
fn clip_runs(points: &[(f32, f32)], top: f32, bottom: f32) -> Vec<Vec<(f32, f32)>> {
    let mut runs: Vec<Vec<(f32, f32)>> = Vec::new();
    let mut joined = false;
    for pair in points.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        let Some((from, to)) = clip_segment(a, b, top, bottom) else {
            joined = false;
            continue;
        };
        match runs.last_mut() {
            Some(run) if joined && from == a => run.push(to),
            _ => runs.push(vec![from, to]),
        }
        // The next segment continues this run only if this one reached its end.
        joined = to == b;
    }
    runs
}

/// The part of segment `a`–`b` with `top <= y <= bottom`, if any.
fn clip_segment(a: (f32, f32), b: (f32, f32), top: f32, bottom: f32) -> Option<((f32, f32), (f32, f32))> {
    let inside = |point: (f32, f32)| (top..=bottom).contains(&point.1);
    if inside(a) && inside(b) {
        return Some((a, b));
    }
    if a.1 == b.1 {
        return None;
    }
    let at = |t: f32| (a.0 + (b.0 - a.0) * t, a.1 + (b.1 - a.1) * t);
    let t_of = |y: f32| (y - a.1) / (b.1 - a.1);
    let (t0, t1) = {
        let (first, second) = (t_of(top), t_of(bottom));
        (first.min(second).max(0.0), first.max(second).min(1.0))
    };
    if t0 >= t1 {
        return None;
    }
    let from = if t0 == 0.0 { a } else { at(t0) };
    let to = if t1 == 1.0 { b } else { at(t1) };
    Some((from, to))
}

fn alt_text(title: &str, step_labels: &[String], series: &[ChartSeries<'_>], y_label: &str, axis: &ValueAxis, fixed: bool, cut: usize) -> String {
    let steps = step_labels.len();
    let (first, last) = (&step_labels[0], &step_labels[steps - 1]);
    let over = if steps == 1 { format!("1 step ({first})") } else { format!("{steps} steps, from {first} to {last}") };
    let lines = if series.len() == 1 { "1 series".to_string() } else { format!("{} series", series.len()) };
    let range =
        format!("{y_label} axis {}from {} to {}", if fixed { "fixed " } else { "" }, format_value(axis.low as f32), format_value(axis.high as f32));
    let cut = match cut {
        0 => String::new(),
        1 => "; 1 value outside the axis is cut off".to_string(),
        count => format!("; {count} values outside the axis are cut off"),
    };
    let each: Vec<String> = series
        .iter()
        .map(|line| {
            let (start, end) = (line.values[0], line.values[steps - 1]);
            if steps == 1 {
                format!("{}: {} at {first}", line.name, format_value(start))
            } else {
                format!("{}: {} at {first} to {} at {last}", line.name, format_value(start), format_value(end))
            }
        })
        .collect();
    format!("{title}: line chart of {lines} over {over}; {range}{cut}. {}", each.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::small_multiples::{fit_end, MAX_LABEL_WIDTH};

    #[test]
    fn segments_outside_a_fixed_range_are_cut() {
        // Band 0..=10: inside, above, inside, inside.
        let points = [(0.0, 5.0), (10.0, -5.0), (20.0, 5.0), (30.0, 8.0)];
        let runs = clip_runs(&points, 0.0, 10.0);
        assert_eq!(runs, vec![vec![(0.0, 5.0), (5.0, 0.0)], vec![(15.0, 0.0), (20.0, 5.0), (30.0, 8.0)]]);
        // Wholly outside, and a segment that crosses the band from side to side.
        assert!(clip_runs(&[(0.0, -1.0), (1.0, -2.0)], 0.0, 10.0).is_empty());
        assert_eq!(clip_runs(&[(0.0, -10.0), (40.0, 30.0)], 0.0, 10.0), vec![vec![(10.0, 0.0), (20.0, 10.0)]]);
        assert!(clip_runs(&[(0.0, 1.0)], 0.0, 10.0).is_empty());
    }

    #[test]
    fn long_labels_keep_their_end() {
        assert_eq!(fit_end("layer4.1.conv2", TICK_FONT, MAX_LABEL_WIDTH), "layer4.1.conv2");
        let long = "features.denseblock4.denselayer16.conv2.weight";
        let fitted = fit_end(long, TICK_FONT, MAX_LABEL_WIDTH);
        assert!(fitted.starts_with('\u{2026}') && long.ends_with(&fitted[3..]), "{fitted}");
        assert!(text_width(&fitted, TICK_FONT) <= MAX_LABEL_WIDTH);
    }

    #[test]
    fn axis_fits_the_data_or_keeps_the_fixed_range() {
        let values = [0.12f32, 0.83, 0.4];
        let series = [ChartSeries { name: "a", values: &values }];
        let fitted = value_axis(&series, None);
        assert_eq!((fitted.low, fitted.high), (0.0, 1.0));
        let fixed = value_axis(&series, Some((-1.0, 1.0)));
        assert_eq!((fixed.low, fixed.high), (-1.0, 1.0));
        assert_eq!(fixed.labels, ["-1.0", "-0.5", "0", "0.5", "1.0"]);
        // A range that is not a whole number of steps keeps only the ticks inside it.
        let odd = value_axis(&series, Some((-0.3, 0.93)));
        assert_eq!((odd.low, odd.high), (-0.3f32 as f64, 0.93f32 as f64));
        assert!(odd.ticks.iter().all(|&tick| tick >= odd.low && tick <= odd.high), "{:?}", odd.ticks);
        // A constant series gets an axis around its value.
        let flat = [2.0f32; 3];
        let axis = value_axis(&[ChartSeries { name: "flat", values: &flat }], None);
        assert!(axis.low < 2.0 && axis.high > 2.0, "{} {}", axis.low, axis.high);
    }
}
