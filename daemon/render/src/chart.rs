//! Charts for inputs that are not images: a bar chart of feature attributions
//! (tabular inputs) and a line plot over positions (sequences), with value axes, tick
//! labels and a zero line. Values are drawn as they are, after sign selection.

use crate::colour::{chart_colour, AXIS, GRID};
use crate::options::Sign;
use crate::scene::{Anchor, Element, Scene};

/// Room for the panel title above the plot.
pub(crate) const PANEL_TITLE_HEIGHT: f32 = 20.0;
/// Room for the value axis caption between title and plot.
const CAPTION_HEIGHT: f32 = 16.0;
pub(crate) const PLOT_HEIGHT: f32 = 220.0;
/// Room for the value tick labels, right-aligned left of the plot.
pub(crate) const AXIS_LEFT: f32 = 64.0;
pub(crate) const AXIS_RIGHT: f32 = 14.0;
/// Tick marks, tick labels and the position axis caption under the plot.
const AXIS_BOTTOM: f32 = 38.0;
pub(crate) const CHART_HEIGHT: f32 = PANEL_TITLE_HEIGHT + CAPTION_HEIGHT + PLOT_HEIGHT + AXIS_BOTTOM;
pub(crate) const LINE_PLOT_WIDTH: f32 = 640.0;
const TICK_FONT: f32 = 10.0;
const CAPTION_FONT: f32 = 11.0;

/// Plot width of a bar chart: 24 px per bar, within 240..720.
pub(crate) fn bar_plot_width(bars: usize) -> f32 {
    (bars as f32 * 24.0).clamp(240.0, 720.0)
}

/// Bars of `values` (already sign-selected) over feature indices.
pub(crate) fn bar_chart(title: &str, values: &[f32], sign: Sign) -> Scene {
    let plot_width = bar_plot_width(values.len());
    let (mut scene, axes) = axes(title, plot_width, values, sign, "feature");
    let pitch = plot_width / values.len().max(1) as f32;
    let bar_width = (pitch * 0.7).max(1.0);
    let zero = axes.y(0.0);
    for (index, &value) in values.iter().enumerate() {
        let x = AXIS_LEFT + index as f32 * pitch + (pitch - bar_width) / 2.0;
        let top = axes.y(value as f64).min(zero);
        let height = (axes.y(value as f64) - zero).abs();
        scene.push(Element::Rect { x, y: top, width: bar_width, height, fill: chart_colour(sign, value) });
    }
    // Label every k-th feature, k from 1, 2, 5, 10, ... so labels do not overlap.
    let widest = format!("{}", values.len().saturating_sub(1)).len() as f32 * 6.5 + 8.0;
    let every = nice_at_least(widest / pitch);
    for index in (0..values.len()).step_by(every) {
        let x = AXIS_LEFT + (index as f32 + 0.5) * pitch;
        x_tick(&mut scene, x, &index.to_string());
    }
    draw_zero_line(&mut scene, &axes, plot_width);
    scene
}

/// A line through `values` (already sign-selected and summed over dimensions) over
/// positions 0..len, with a marker per point when there are few.
pub(crate) fn line_plot(title: &str, values: &[f32], sign: Sign) -> Scene {
    let (mut scene, axes) = axes(title, LINE_PLOT_WIDTH, values, sign, "position");
    let last = values.len().saturating_sub(1).max(1) as f32;
    let x_of = |index: usize| AXIS_LEFT + if values.len() == 1 { LINE_PLOT_WIDTH / 2.0 } else { index as f32 / last * LINE_PLOT_WIDTH };
    draw_zero_line(&mut scene, &axes, LINE_PLOT_WIDTH);
    let colour = match sign {
        Sign::All => AXIS,
        sign => chart_colour(sign, 0.0),
    };
    let points = line_points(values, |index, value| (x_of(index), axes.y(value as f64)));
    if values.len() <= 60 {
        for (&(x, y), &value) in points.iter().zip(values) {
            scene.push(Element::Circle { centre: (x, y), radius: 2.5, fill: chart_colour(sign, value) });
        }
    }
    scene.push(Element::Polyline { points, colour, width: 1.5 });
    let ticks = nice_ticks(0.0, values.len().saturating_sub(1) as f64, 8);
    for tick in ticks.values.iter().filter(|&&tick| tick.fract() == 0.0 && tick >= 0.0 && tick <= last as f64) {
        x_tick(&mut scene, x_of(*tick as usize), &format!("{tick}"));
    }
    scene
}

/// The polyline of a line plot. Long sequences (more than two points per pixel column)
/// keep each column's first, lowest, highest and last value in order, so every peak
/// stays visible while the figure stays small and quick to draw.
fn line_points(values: &[f32], point: impl Fn(usize, f32) -> (f32, f32)) -> Vec<(f32, f32)> {
    let finite = |value: f32| if value.is_finite() { value } else { 0.0 };
    let columns = LINE_PLOT_WIDTH as usize;
    if values.len() <= 2 * columns {
        return values.iter().enumerate().map(|(index, &value)| point(index, finite(value))).collect();
    }
    let mut points = Vec::with_capacity(4 * columns);
    for column in 0..columns {
        let start = column * values.len() / columns;
        let end = ((column + 1) * values.len() / columns).max(start + 1);
        let bucket = start..end;
        let lowest = bucket.clone().min_by(|&a, &b| finite(values[a]).total_cmp(&finite(values[b]))).unwrap_or(start);
        let highest = bucket.clone().max_by(|&a, &b| finite(values[a]).total_cmp(&finite(values[b]))).unwrap_or(start);
        let mut picks = [start, lowest, highest, end - 1];
        picks.sort_unstable();
        for (position, &index) in picks.iter().enumerate() {
            if position == 0 || index != picks[position - 1] {
                points.push(point(index, finite(values[index])));
            }
        }
    }
    points
}

/// The value axis of a chart: maps values to y pixels of the plot.
struct Axes {
    low: f64,
    high: f64,
}

impl Axes {
    fn plot_top() -> f32 {
        PANEL_TITLE_HEIGHT + CAPTION_HEIGHT
    }

    fn y(&self, value: f64) -> f32 {
        Axes::plot_top() + ((self.high - value) / (self.high - self.low)) as f32 * PLOT_HEIGHT
    }
}

/// Panel, title, value axis with grid lines and tick labels, axis captions.
fn axes(title: &str, plot_width: f32, values: &[f32], sign: Sign, position_name: &str) -> (Scene, Axes) {
    let finite = || values.iter().map(|&value| value as f64).filter(|value| value.is_finite());
    let low = finite().fold(0.0, f64::min);
    let high = finite().fold(0.0, f64::max);
    let (low, high) = if high > low { (low, high) } else { (0.0, 1.0) };
    let ticks = nice_ticks(low, high, 5);
    let axes = Axes { low: ticks.low, high: ticks.high };
    let width = AXIS_LEFT + plot_width + AXIS_RIGHT;
    let mut scene = Scene::new(width, CHART_HEIGHT);
    scene.text(width / 2.0, 14.0, title, 12.0, Anchor::Middle);
    let caption = match sign {
        Sign::AbsoluteValue => "|attribution|",
        Sign::Positive => "positive attribution",
        Sign::Negative => "negative attribution",
        Sign::All => "attribution",
    };
    scene.text(AXIS_LEFT, PANEL_TITLE_HEIGHT + 11.0, caption, CAPTION_FONT, Anchor::Start);
    let labels = tick_labels(&ticks);
    for (&tick, label) in ticks.values.iter().zip(labels) {
        let y = axes.y(tick).round() + 0.5;
        scene.line((AXIS_LEFT, y), (AXIS_LEFT + plot_width, y), GRID, 1.0);
        scene.line((AXIS_LEFT - 4.0, y), (AXIS_LEFT, y), AXIS, 1.0);
        scene.text(AXIS_LEFT - 7.0, y + 3.5, label, TICK_FONT, Anchor::End);
    }
    let bottom = Axes::plot_top() + PLOT_HEIGHT;
    scene.line((AXIS_LEFT - 0.5, Axes::plot_top()), (AXIS_LEFT - 0.5, bottom), AXIS, 1.0);
    scene.text(AXIS_LEFT + plot_width / 2.0, CHART_HEIGHT - 6.0, position_name, CAPTION_FONT, Anchor::Middle);
    (scene, axes)
}

fn draw_zero_line(scene: &mut Scene, axes: &Axes, plot_width: f32) {
    let y = axes.y(0.0).round() + 0.5;
    scene.line((AXIS_LEFT, y), (AXIS_LEFT + plot_width, y), AXIS, 1.0);
}

fn x_tick(scene: &mut Scene, x: f32, label: &str) {
    let bottom = Axes::plot_top() + PLOT_HEIGHT;
    let x = x.round() + 0.5;
    scene.line((x, bottom), (x, bottom + 4.0), AXIS, 1.0);
    scene.text(x, bottom + 15.0, label, TICK_FONT, Anchor::Middle);
}

/// Tick positions at a round step (1, 2 or 5 times a power of ten), and the axis range
/// they span, which covers `low..high`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Ticks {
    pub low: f64,
    pub high: f64,
    pub step: f64,
    pub values: Vec<f64>,
}

/// Cells of a grid along one axis: `count` cells in at most `most` pixels, each at most
/// `cell` wide. Whole-pixel cells while they fit; beyond that each pixel shows the cell
/// under its centre. Answers (cell size, total size).
pub(crate) fn fit_cells(count: usize, most: f32, cell: f32) -> (f32, f32) {
    let size = (most / count as f32).floor().clamp(1.0, cell);
    if count as f32 * size <= most {
        (size, count as f32 * size)
    } else {
        (most / count as f32, most)
    }
}

pub(crate) fn nice_ticks(low: f64, high: f64, target: usize) -> Ticks {
    let (low, high) = if high > low { (low, high) } else { (low, low + 1.0) };
    let raw = (high - low) / target.max(1) as f64;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step =
        [1.0, 2.0, 5.0, 10.0].into_iter().map(|factor| factor * magnitude).find(|&step| step >= raw * (1.0 - 1e-9)).unwrap_or(10.0 * magnitude);
    // The tolerance keeps a bound that is already a multiple of the step (0, 1.0) from
    // growing by a step through rounding.
    let first = (low / step + 1e-9).floor() as i64;
    let last = (high / step - 1e-9).ceil() as i64;
    // Multiply whole step counts rather than accumulate, so 0 is exactly 0.
    let values: Vec<f64> = (first..=last).map(|count| count as f64 * step).collect();
    Ticks { low: first as f64 * step, high: last as f64 * step, step, values }
}

/// Round ticks inside `low..=high`, labelled, for an axis that spans exactly that range
/// rather than one widened to round ends (a numeric x axis, a colour bar, a fixed range).
pub(crate) fn ticks_within(low: f64, high: f64, target: usize) -> Vec<(f64, String)> {
    let ticks = nice_ticks(low, high, target);
    let tolerance = (high - low).abs() * 1e-6;
    let inside: Vec<f64> = ticks.values.iter().copied().filter(|&tick| tick >= low - tolerance && tick <= high + tolerance).collect();
    let labels = tick_labels(&Ticks { values: inside.clone(), ..ticks });
    inside.into_iter().zip(labels).collect()
}

/// Labels with as many decimals as the step needs; scientific notation for very small
/// or very large values, which attributions often are.
pub(crate) fn tick_labels(ticks: &Ticks) -> Vec<String> {
    let largest = ticks.values.iter().fold(0.0f64, |max, value| max.max(value.abs()));
    let step_exponent = ticks.step.log10().floor() as i32;
    ticks
        .values
        .iter()
        .map(|&value| {
            if value == 0.0 {
                "0".to_string()
            } else if ticks.step < 1e-3 || largest >= 1e5 {
                let digits = (largest.log10().floor() as i32 - step_exponent).clamp(0, 3) as usize;
                format!("{value:.digits$e}")
            } else {
                format!("{value:.*}", (-step_exponent).max(0) as usize)
            }
        })
        .collect()
}

/// A single value for alt text and colour-bar labels: three significant digits.
pub(crate) fn format_value(value: f32) -> String {
    let magnitude = value.abs();
    if value == 0.0 || !value.is_finite() {
        return if value.is_nan() {
            "NaN".to_string()
        } else if value == 0.0 {
            "0".to_string()
        } else {
            value.to_string()
        };
    }
    if (1e-2..1e4).contains(&magnitude) {
        let decimals = (2 - magnitude.log10().floor() as i32).max(0) as usize;
        let text = format!("{value:.decimals$}");
        if text.contains('.') {
            text.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            text
        }
    } else {
        format!("{value:.2e}")
    }
}

/// [`format_value`] without trailing zeros in the mantissa (`1e-4`, `2.5e-3`), for
/// labels of round values someone chose (a band's ends) beside tick labels.
pub(crate) fn short_value(value: f32) -> String {
    let text = format_value(value);
    match text.split_once('e') {
        Some((mantissa, exponent)) if mantissa.contains('.') => format!("{}e{exponent}", mantissa.trim_end_matches('0').trim_end_matches('.')),
        _ => text,
    }
}

/// The smallest of 1, 2, 5, 10, 20, 50, ... that is at least `at_least`.
pub(crate) fn nice_at_least(at_least: f32) -> usize {
    let mut magnitude = 1usize;
    loop {
        for factor in [1, 2, 5] {
            if (factor * magnitude) as f32 >= at_least {
                return factor * magnitude;
            }
        }
        magnitude *= 10;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        let check = |low: f64, high: f64, want_low: f64, want_high: f64, want_step: f64, labels: &[&str]| {
            let ticks = nice_ticks(low, high, 5);
            let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
            assert!(close(ticks.low, want_low) && close(ticks.high, want_high), "{low}..{high}: {ticks:?}");
            assert!((ticks.step - want_step).abs() < want_step * 1e-9, "{ticks:?}");
            assert_eq!(tick_labels(&ticks), labels, "{ticks:?}");
        };
        check(0.0, 1.0, 0.0, 1.0, 0.2, &["0", "0.2", "0.4", "0.6", "0.8", "1.0"]);
        check(-0.3, 0.45, -0.4, 0.6, 0.2, &["-0.4", "-0.2", "0", "0.2", "0.4", "0.6"]);
        check(0.0, 37.0, 0.0, 40.0, 10.0, &["0", "10", "20", "30", "40"]);
        check(-0.0021, 0.0, -0.0025, 0.0, 0.0005, &["-2.5e-3", "-2.0e-3", "-1.5e-3", "-1.0e-3", "-5.0e-4", "0"]);
    }

    #[test]
    fn long_sequences_are_thinned_but_keep_their_peaks() {
        let mut values = vec![0.0f32; 100_000];
        values[54_321] = 9.0;
        values[777] = -3.0;
        let points = line_points(&values, |index, value| (index as f32, value));
        assert!(points.len() <= 4 * LINE_PLOT_WIDTH as usize, "{} points", points.len());
        assert!(points.contains(&(54_321.0, 9.0)) && points.contains(&(777.0, -3.0)));
        assert!(points.windows(2).all(|pair| pair[0].0 < pair[1].0), "positions stay in order");
        // Short sequences are drawn point for point.
        assert_eq!(line_points(&[1.0, 2.0, 3.0], |index, value| (index as f32, value)).len(), 3);
    }

    #[test]
    fn values_keep_three_significant_digits() {
        for (value, text) in [(0.0, "0"), (0.04213, "0.0421"), (-1.5, "-1.5"), (123.456, "123"), (2.0e-5, "2.00e-5"), (12345.0, "1.23e4")] {
            assert_eq!(format_value(value), text);
        }
        assert_eq!(
            (short_value(1e-4), short_value(2.5e-3), short_value(0.01), short_value(12345.0)),
            ("1e-4".into(), "2.5e-3".into(), "0.01".into(), "1.23e4".into())
        );
        assert_eq!(nice_at_least(0.3), 1);
        assert_eq!(nice_at_least(3.0), 5);
        assert_eq!(nice_at_least(11.0), 20);
    }
}
