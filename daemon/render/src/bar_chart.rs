//! Horizontal bars, one per label ([`bar_chart`]), e.g. the relative change of every
//! layer's weights between two checkpoints. Bars run sideways so that long module
//! paths stay readable as row labels, however many layers there are.
//! ([`crate::layer_stat_chart`] draws lines over layers on the x axis instead; the bar
//! chart of tabular attributions in `chart.rs` has feature indices, not names.)

use crate::chart::format_value;
use crate::colour::{Colour, AXIS, GRID, TEXT};
use crate::figure::encode;
use crate::font::text_width;
use crate::options::AxisScale;
use crate::panel::compose;
use crate::scene::{Anchor, Element, Scene};
use crate::small_multiples::{counted, fit_end, open_marker, ValueScale, TICK_FONT};
use crate::{Figure, Format, RenderError};

const PLOT_WIDTH: f32 = 480.0;
/// Rows are this far apart while they fit in [`MAX_PLOT_HEIGHT`]; closer beyond that.
const ROW_PITCH: f32 = 18.0;
const MAX_PLOT_HEIGHT: f32 = 900.0;
/// Rows closer than this get every k-th label, and no value column.
const LABEL_PITCH: f32 = 12.0;
/// Labels longer than this keep their end (module paths).
const MAX_LABEL_WIDTH: f32 = 240.0;
/// The value axis caption and tick labels above the plot.
const AXIS_TOP: f32 = 40.0;
const CAPTION_FONT: f32 = 11.0;
const POSITIVE: Colour = [78, 121, 167];
const NEGATIVE: Colour = [225, 87, 89];

/// A horizontal bar chart: one bar per entry of `labels` (top to bottom, in the given
/// order), of length `values[i]`, on a value axis captioned `value_label` above the
/// plot.
///
/// With [`AxisScale::Linear`] the axis has round ticks and includes 0; bars grow from
/// 0, to the right for positive values (blue) and to the left for negative ones (red).
/// With [`AxisScale::Log10`] the axis spans the decades of the positive values and bars
/// grow from its left end; a value that is not positive has no bar but an open marker
/// at the left end. Labels longer than 240 px keep their end; with very many rows only
/// every k-th is labelled. While rows are tall enough, each row's value is written in
/// a column right of the plot. The alt text gives the axis, the largest and smallest
/// values with their labels and the values a log axis cannot show.
///
/// Errors: [`RenderError::BadData`] for no labels, a value count that is not the label
/// count, or a value that is not finite.
pub fn bar_chart(
    title: &str,
    labels: &[String],
    values: &[f64],
    value_label: &str,
    y_scale: AxisScale,
    format: Format,
) -> Result<Figure, RenderError> {
    let (scene, alt_text) = bar_chart_scene(title, labels, values, value_label, y_scale)?;
    encode(&scene, format, alt_text)
}

fn validate(labels: &[String], values: &[f64]) -> Result<(), RenderError> {
    if labels.is_empty() {
        return Err(RenderError::BadData("a bar chart needs at least one label".to_string()));
    }
    if values.len() != labels.len() {
        return Err(RenderError::BadData(format!("a bar chart has {} for {}", counted(values.len(), "value"), counted(labels.len(), "label"))));
    }
    if let Some((index, value)) = values.iter().enumerate().find(|(_, value)| !value.is_finite()) {
        return Err(RenderError::BadData(format!("the bar chart has a non-finite value ({value}) at {index} ({:?})", labels[index])));
    }
    Ok(())
}

fn bar_chart_scene(title: &str, labels: &[String], values: &[f64], value_label: &str, y_scale: AxisScale) -> Result<(Scene, String), RenderError> {
    validate(labels, values)?;
    let rows = labels.len();
    let axis = match y_scale {
        // Bars grow from 0, so 0 is on the axis.
        AxisScale::Linear => ValueScale::fitted(y_scale, values.iter().copied().chain([0.0]), 5),
        AxisScale::Log10 => ValueScale::fitted(y_scale, values.iter().copied(), 5),
    };
    let pitch = if rows as f32 * ROW_PITCH <= MAX_PLOT_HEIGHT { ROW_PITCH } else { MAX_PLOT_HEIGHT / rows as f32 };
    let plot_height = rows as f32 * pitch;
    let every = (LABEL_PITCH / pitch).ceil().max(1.0) as usize;
    let shown: Vec<usize> = (0..rows).step_by(every).collect();
    let texts: Vec<String> = shown.iter().map(|&row| fit_end(&labels[row], TICK_FONT, MAX_LABEL_WIDTH)).collect();
    let value_texts: Vec<String> = if every == 1 { values.iter().map(|&value| format_value(value as f32)).collect() } else { Vec::new() };
    let first_tick = axis.ticks.first().map_or(0.0, |(_, label)| text_width(label, TICK_FONT) / 2.0);
    let left = texts.iter().map(|text| text_width(text, TICK_FONT) + 10.0).fold(first_tick + 4.0, f32::max).ceil();
    let values_width = value_texts.iter().map(|text| text_width(text, TICK_FONT)).fold(0.0, f32::max);
    let last_tick = axis.ticks.last().map_or(0.0, |(_, label)| text_width(label, TICK_FONT) / 2.0);
    let right = (if value_texts.is_empty() { 0.0 } else { values_width + 12.0 }).max(last_tick + 4.0).max(14.0).ceil();
    let (top, bottom) = (AXIS_TOP, AXIS_TOP + plot_height);
    let width = (left + PLOT_WIDTH + right).ceil();
    let mut scene = Scene::new(width, (bottom + 8.0).ceil());
    let x_of = |value: f64| left + axis.fraction(value).clamp(0.0, 1.0) as f32 * PLOT_WIDTH;
    let y_of = |row: usize| top + (row as f32 + 0.5) * pitch;

    // Value axis above the plot: caption, tick labels, grid lines down through the plot.
    scene.text(left, 13.0, value_label, CAPTION_FONT, Anchor::Start);
    for (value, label) in &axis.ticks {
        let x = x_of(*value).round() + 0.5;
        scene.line((x, top), (x, bottom), GRID, 1.0);
        scene.line((x, top - 4.0), (x, top), AXIS, 1.0);
        scene.text(x, top - 7.0, label.as_str(), TICK_FONT, Anchor::Middle);
    }
    scene.line((left, top - 0.5), (left + PLOT_WIDTH, top - 0.5), AXIS, 1.0);

    let base = if axis.log { left } else { x_of(0.0) };
    let thickness = (pitch * 0.7).max(1.0);
    let mut not_positive = 0;
    for (row, &value) in values.iter().enumerate() {
        let y = y_of(row);
        if axis.log && value <= 0.0 {
            not_positive += 1;
            open_marker(&mut scene, (left, y), (thickness / 2.0).clamp(1.5, 3.0), POSITIVE);
            continue;
        }
        let end = x_of(value);
        let fill = if value < 0.0 { NEGATIVE } else { POSITIVE };
        // Any value off the base is at least a pixel long, so it shows.
        let (from, to) = if end >= base { (base, end.max(base + 1.0)) } else { (end.min(base - 1.0), base) };
        scene.push(Element::Rect { x: from, y: y - thickness / 2.0, width: to - from, height: thickness, fill });
    }
    // The axis line the bars grow from, over their ends.
    scene.line((base.round() - 0.5, top), (base.round() - 0.5, bottom), AXIS, 1.0);
    for (&row, text) in shown.iter().zip(texts) {
        scene.text(left - 8.0, y_of(row) + 3.5, text, TICK_FONT, Anchor::End);
    }
    for (row, text) in value_texts.into_iter().enumerate() {
        scene.push(Element::Text {
            x: width - 2.0,
            y: y_of(row) + 3.5,
            text,
            size: TICK_FONT,
            anchor: Anchor::End,
            colour: if axis.log && values[row] <= 0.0 { AXIS } else { TEXT },
            rotation: 0.0,
        });
    }

    let alt_text = alt_text(title, labels, values, value_label, &axis, not_positive);
    Ok((compose(title, "", vec![(title.to_string(), scene)]), alt_text))
}

fn alt_text(title: &str, labels: &[String], values: &[f64], value_label: &str, axis: &ValueScale, not_positive: usize) -> String {
    let rows = labels.len();
    // Ties go to the first label.
    let largest = (0..rows).fold(0, |best, row| if values[row] > values[best] { row } else { best });
    let smallest = (0..rows).fold(0, |best, row| if values[row] < values[best] { row } else { best });
    let at = |row: usize| format!("{} at {}", format_value(values[row] as f32), labels[row]);
    let scale = format!("{}axis from {} to {}", if axis.log { "log " } else { "" }, format_value(axis.low as f32), format_value(axis.high as f32));
    let not_positive = match not_positive {
        0 => String::new(),
        count => format!(" {} ≤ 0 with no bar on the log axis (open markers).", counted(count, "value")),
    };
    let body = if rows == 1 { format!("{}.", at(0)) } else { format!("Largest {}; smallest {}.", at(largest), at(smallest)) };
    format!("{title}: horizontal bar chart of {value_label} for {}, {scale}. {body}{not_positive}", counted(rows, "label"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_bars_grow_from_zero_both_ways() {
        let labels: Vec<String> = ["fc", "conv1"].iter().map(|label| label.to_string()).collect();
        let (scene, alt) = bar_chart_scene("change", &labels, &[0.5, -0.25], "relative change", AxisScale::Linear).unwrap();
        let bars: Vec<(f32, f32, Colour)> = scene
            .elements
            .iter()
            .filter_map(|element| match element {
                Element::Rect { x, width, fill, .. } => Some((*x, *width, *fill)),
                _ => None,
            })
            .collect();
        assert_eq!(bars.len(), 2);
        let (positive, negative) = (bars[0], bars[1]);
        assert_eq!((positive.2, negative.2), (POSITIVE, NEGATIVE));
        assert!((negative.0 + negative.1 - positive.0).abs() < 0.01, "both bars meet at zero: {bars:?}");
        assert!((positive.1 - 2.0 * negative.1).abs() < 0.5, "lengths follow the values: {bars:?}");
        assert!(alt.contains("Largest 0.5 at fc; smallest -0.25 at conv1"), "{alt}");
    }
}
