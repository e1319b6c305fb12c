//! A line chart of one or more series over labelled steps ([`step_chart`]), e.g. the
//! Spearman correlation between original and randomised attributions after each step of
//! a model-parameter randomisation sanity check. Steps are categories, evenly spaced,
//! each labelled with its name (module paths such as `layer4.1.conv2`); names that do
//! not fit side by side are turned by 45 degrees, and with very many steps only every
//! k-th is labelled. The value axis is linear or log10 ([`step_chart_scaled`]): per-layer
//! gradient norms after several training steps span orders of magnitude.

use crate::chart::format_value;
use crate::colour::AXIS;
use crate::options::AxisScale;
use crate::panel::compose;
use crate::scene::{Anchor, Element, Scene};
use crate::small_multiples::{legend_entry, legend_height, legend_layout, marker, open_marker, series_colour, AxisLabels, ValueScale, LEGEND_ROW};
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
const CAPTION_FONT: f32 = 11.0;
const LINE_WIDTH: f32 = 1.75;
const MARKER_RADIUS: f32 = 3.0;

/// A chart of one or more series over labelled steps, e.g. the Spearman correlation
/// after each randomisation step of a sanity check, on a linear value axis: the same
/// as [`step_chart_scaled`] with [`AxisScale::Linear`].
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
    step_chart_scaled(title, step_labels, series, y_label, y_range, AxisScale::Linear, format)
}

/// [`step_chart`] with a choice of value axis: with [`AxisScale::Log10`] the axis spans
/// whole decades (or exactly `y_range`, whose ends must then be positive), e.g. the
/// gradient norm of every layer (the steps) after several training steps (one series
/// each), which differ by orders of magnitude. A value that is not positive cannot be
/// placed on a log axis: the line breaks there and an open marker sits on the bottom
/// edge, and the alt text counts them. There is no zero line on a log axis.
///
/// Errors: as [`step_chart`], and [`RenderError::BadOptions`] for a log `y_range`
/// whose low end is not positive.
pub fn step_chart_scaled(
    title: &str,
    step_labels: &[String],
    series: &[ChartSeries<'_>],
    y_label: &str,
    y_range: Option<(f32, f32)>,
    y_scale: AxisScale,
    format: Format,
) -> Result<Figure, RenderError> {
    let (scene, alt_text) = step_scene(title, step_labels, series, y_label, y_range, y_scale)?;
    encode(&scene, format, alt_text)
}

fn validate(step_labels: &[String], series: &[ChartSeries<'_>], y_range: Option<(f32, f32)>, y_scale: AxisScale) -> Result<(), RenderError> {
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
        if y_scale == AxisScale::Log10 && low <= 0.0 {
            return Err(RenderError::BadOptions(format!("y_range must be positive on a log axis, got ({low}, {high})")));
        }
    }
    Ok(())
}

/// The value axis: `y_range` exactly, or fitted to the data (round ticks, or whole
/// decades of the positive values on a log axis); a constant series gets an axis a
/// little wider than its value.
fn value_axis(series: &[ChartSeries<'_>], y_range: Option<(f32, f32)>, y_scale: AxisScale) -> ValueScale {
    match y_range {
        Some((low, high)) => ValueScale::fixed(y_scale, low as f64, high as f64, 5),
        None => ValueScale::fitted(y_scale, series.iter().flat_map(|line| line.values.iter().map(|&value| value as f64)), 5),
    }
}

fn step_scene(
    title: &str,
    step_labels: &[String],
    series: &[ChartSeries<'_>],
    y_label: &str,
    y_range: Option<(f32, f32)>,
    y_scale: AxisScale,
) -> Result<(Scene, String), RenderError> {
    validate(step_labels, series, y_range, y_scale)?;
    let steps = step_labels.len();
    let axis = value_axis(series, y_range, y_scale);
    let plot_width = (steps as f32 * STEP_WIDTH).clamp(MIN_PLOT_WIDTH, MAX_PLOT_WIDTH);
    let pitch = plot_width / steps as f32;
    let labels = AxisLabels::new(step_labels, pitch, &BTreeSet::new());
    let left = AXIS_LEFT.max(axis.widest_label() + 12.0).max(labels.overhang_left(pitch) + 2.0).ceil();
    let right = AXIS_RIGHT.max(labels.overhang_right(pitch, plot_width) + 2.0).ceil();
    let legend = if series.len() > 1 { legend_layout(series.iter().map(|line| line.name), plot_width) } else { Vec::new() };
    let plot_top = legend_height(&legend) + CAPTION_HEIGHT;
    let plot_bottom = plot_top + PLOT_HEIGHT;
    let width = (left + plot_width + right).ceil();
    let height = (plot_bottom + labels.height()).ceil();
    let mut scene = Scene::new(width, height);
    let y_of = |value: f64| plot_top + (1.0 - axis.fraction(value)) as f32 * PLOT_HEIGHT;
    let x_of = |step: usize| left + (step as f32 + 0.5) * pitch;

    // Legend, then the value axis caption, above the plot.
    for ((line, &(x, row)), index) in series.iter().zip(&legend).zip(0..) {
        legend_entry(&mut scene, (left + x, row as f32 * LEGEND_ROW), line.name, series_colour(index), LINE_WIDTH, MARKER_RADIUS);
    }
    scene.text(left, plot_top - 9.0, y_label, CAPTION_FONT, Anchor::Start);

    // Value axis: grid lines, tick marks and labels, the axis line.
    axis.draw(&mut scene, left, plot_top, plot_width, PLOT_HEIGHT);
    scene.line((left - 0.5, plot_bottom + 0.5), (left + plot_width, plot_bottom + 0.5), AXIS, 1.0);
    if !axis.log && axis.low <= 0.0 && 0.0 <= axis.high {
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

    // The series, first one at the bottom; parts outside a fixed range are cut off, and
    // a log axis breaks the line at values it cannot show.
    let (mut cut, mut not_positive) = (0, 0);
    for (line, index) in series.iter().zip(0..) {
        let colour = series_colour(index);
        let shown = |value: f32| !axis.log || value > 0.0;
        let points: Vec<Option<(f32, f32)>> =
            line.values.iter().enumerate().map(|(step, &value)| shown(value).then(|| (x_of(step), y_of(value as f64)))).collect();
        for piece in points.split(Option::is_none) {
            let piece: Vec<(f32, f32)> = piece.iter().flatten().copied().collect();
            for run in clip_runs(&piece, plot_top, plot_bottom) {
                scene.push(Element::Polyline { points: run, colour, width: LINE_WIDTH });
            }
        }
        for (step, point) in points.iter().enumerate() {
            match point {
                None => {
                    not_positive += 1;
                    open_marker(&mut scene, (x_of(step), plot_bottom), MARKER_RADIUS, colour);
                }
                Some(point) if (plot_top - 0.01..=plot_bottom + 0.01).contains(&point.1) => marker(&mut scene, *point, MARKER_RADIUS, colour),
                Some(_) => cut += 1,
            }
        }
    }

    let alt_text = alt_text(title, step_labels, series, y_label, &axis, y_range.is_some(), cut, not_positive);
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

#[allow(clippy::too_many_arguments)]
fn alt_text(
    title: &str,
    step_labels: &[String],
    series: &[ChartSeries<'_>],
    y_label: &str,
    axis: &ValueScale,
    fixed: bool,
    cut: usize,
    not_positive: usize,
) -> String {
    let steps = step_labels.len();
    let (first, last) = (&step_labels[0], &step_labels[steps - 1]);
    let over = if steps == 1 { format!("1 step ({first})") } else { format!("{steps} steps, from {first} to {last}") };
    let lines = if series.len() == 1 { "1 series".to_string() } else { format!("{} series", series.len()) };
    let range = format!(
        "{y_label} {}axis {}from {} to {}",
        if axis.log { "log " } else { "" },
        if fixed { "fixed " } else { "" },
        format_value(axis.low as f32),
        format_value(axis.high as f32)
    );
    let cut = match cut {
        0 => String::new(),
        1 => "; 1 value outside the axis is cut off".to_string(),
        count => format!("; {count} values outside the axis are cut off"),
    };
    let not_positive = match not_positive {
        0 => String::new(),
        1 => "; 1 value ≤ 0 drawn at the bottom edge".to_string(),
        count => format!("; {count} values ≤ 0 drawn at the bottom edge"),
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
    format!("{title}: line chart of {lines} over {over}; {range}{cut}{not_positive}. {}", each.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::font::text_width;
    use crate::small_multiples::{fit_end, MAX_LABEL_WIDTH, TICK_FONT};

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
        let labels = |axis: &ValueScale| axis.ticks.iter().map(|(_, label)| label.clone()).collect::<Vec<_>>();
        let fitted = value_axis(&series, None, AxisScale::Linear);
        assert_eq!((fitted.low, fitted.high), (0.0, 1.0));
        let fixed = value_axis(&series, Some((-1.0, 1.0)), AxisScale::Linear);
        assert_eq!((fixed.low, fixed.high), (-1.0, 1.0));
        assert_eq!(labels(&fixed), ["-1.0", "-0.5", "0", "0.5", "1.0"]);
        // A range that is not a whole number of steps keeps only the ticks inside it.
        let odd = value_axis(&series, Some((-0.3, 0.93)), AxisScale::Linear);
        assert_eq!((odd.low, odd.high), (-0.3f32 as f64, 0.93f32 as f64));
        assert!(odd.ticks.iter().all(|&(tick, _)| tick >= odd.low && tick <= odd.high), "{:?}", odd.ticks);
        // A constant series gets an axis around its value.
        let flat = [2.0f32; 3];
        let axis = value_axis(&[ChartSeries { name: "flat", values: &flat }], None, AxisScale::Linear);
        assert!(axis.low < 2.0 && axis.high > 2.0, "{} {}", axis.low, axis.high);
    }

    #[test]
    fn log_axis_spans_the_decades_of_the_positive_values() {
        // Gradient norms of three layers after two steps; a frozen layer's norm is 0.
        let early = [3e-2f32, 4e-4, 0.0];
        let late = [8e-3f32, 2e-5, 0.0];
        let series = [ChartSeries { name: "step 10", values: &early }, ChartSeries { name: "step 1000", values: &late }];
        let axis = value_axis(&series, None, AxisScale::Log10);
        assert!(axis.log && (axis.low, axis.high) == (1e-5, 0.1), "{} {}", axis.low, axis.high);
        let fixed = value_axis(&series, Some((1e-6, 1.0)), AxisScale::Log10);
        assert_eq!((fixed.low, fixed.high), (1e-6f32 as f64, 1.0));
        assert!(fixed.ticks.iter().all(|&(tick, _)| (0.99e-6..=1.0).contains(&tick)), "{:?}", fixed.ticks);
        let labels: Vec<String> = ["fc", "layer4", "frozen"].iter().map(|label| label.to_string()).collect();
        let (_, alt) = step_scene("gradient norms", &labels, &series, "‖grad‖", None, AxisScale::Log10).unwrap();
        assert!(alt.contains("‖grad‖ log axis from 1.00e-5 to 0.1") && alt.contains("2 values ≤ 0 drawn at the bottom edge"), "{alt}");
    }
}
