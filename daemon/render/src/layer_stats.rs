//! Per-layer statistics of activations over the forward pass ([`layer_stat_chart`]):
//! one x position per layer in call order, one small panel per statistic (mean, std,
//! fraction ≤ 0, fraction saturated, ...) stacked so they share the layer axis, and
//! red rings at the layers the daemon flagged as anomalous.

use crate::chart::format_value;
use crate::colour::{Colour, AXIS, TEXT};
use crate::figure::encode;
use crate::font::text_width;
use crate::panel::compose;
use crate::scene::{Anchor, Element, PanelBox, Scene};
use crate::small_multiples::{counted, marker, open_marker, series_colour, AxisLabels, ValueScale, TICK_FONT};
use crate::{Figure, Format, RenderError};
use std::collections::BTreeSet;

/// One statistic of a [`layer_stat_chart`]: its name (the panel's caption), one value
/// per layer, and whether its axis is log10 (values ≤ 0 are then drawn at the bottom
/// edge as open markers).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LayerStatSeries<'a> {
    pub name: &'a str,
    pub values: &'a [f32],
    pub log_scale: bool,
}

/// Plot height with one series; with several each panel is shorter.
const SINGLE_PLOT_HEIGHT: f32 = 200.0;
const PLOT_HEIGHT: f32 = 110.0;
/// The series name's line above each plot.
const CAPTION_HEIGHT: f32 = 22.0;
const PANEL_GAP: f32 = 10.0;
/// The key to the red rings, above the first panel, when any layer is flagged.
const KEY_HEIGHT: f32 = 20.0;
/// Horizontal room per layer; the plot is 400 to 960 px wide, as in the step chart.
const STEP_WIDTH: f32 = 16.0;
const MIN_PLOT_WIDTH: f32 = 400.0;
const MAX_PLOT_WIDTH: f32 = 960.0;
const MIN_AXIS_LEFT: f32 = 56.0;
const AXIS_RIGHT: f32 = 14.0;
const CAPTION_FONT: f32 = 11.0;
const LINE_WIDTH: f32 = 1.5;
const MARKER_RADIUS: f32 = 2.75;
/// Markers are drawn when layers are at least this far apart (flagged ones always).
const MIN_MARKER_PITCH: f32 = 7.0;
const FLAG: Colour = [214, 25, 28];
const FLAG_BAND: Colour = [253, 231, 231];
const RING_RADIUS: f32 = 6.5;
const RING_WIDTH: f32 = 1.75;

/// Per-layer statistics of activations over the forward pass, one panel per series,
/// stacked vertically and sharing the layer axis.
///
/// `layer_labels` (module paths, in call order) label the x positions under the last
/// panel: upright when they fit, turned by 45 degrees otherwise, every k-th when there
/// are very many (flagged layers are always labelled, in red). Each panel has its own
/// value axis, fitted to its series with round ticks, or log10 over whole decades when
/// `log_scale` is set. Layers in `flagged` (indices into `layer_labels`) get a light red
/// band across every panel and a red ring around each series' marker; the alt text
/// lists them with their values, and gives every series' range and where its lowest and
/// highest values are.
///
/// Errors: [`RenderError::BadData`] for no layers, no series, a series whose length is
/// not the number of layers, a value that is not finite, or a flagged index that is not
/// a layer.
pub fn layer_stat_chart(
    title: &str,
    layer_labels: &[String],
    series: &[LayerStatSeries<'_>],
    flagged: &[usize],
    format: Format,
) -> Result<Figure, RenderError> {
    let (scene, alt_text) = layer_stat_scene(title, layer_labels, series, flagged)?;
    encode(&scene, format, alt_text)
}

fn validate(layer_labels: &[String], series: &[LayerStatSeries<'_>], flagged: &[usize]) -> Result<(), RenderError> {
    if layer_labels.is_empty() {
        return Err(RenderError::BadData("a layer statistics chart needs at least one layer label".to_string()));
    }
    if series.is_empty() {
        return Err(RenderError::BadData("a layer statistics chart needs at least one series".to_string()));
    }
    for line in series {
        if line.values.len() != layer_labels.len() {
            return Err(RenderError::BadData(format!(
                "series {:?} has {} values for {} layer labels",
                line.name,
                line.values.len(),
                layer_labels.len()
            )));
        }
        if let Some((layer, value)) = line.values.iter().enumerate().find(|(_, value)| !value.is_finite()) {
            return Err(RenderError::BadData(format!(
                "series {:?} has a non-finite value ({value}) at layer {layer} ({:?})",
                line.name, layer_labels[layer]
            )));
        }
    }
    if let Some(index) = flagged.iter().find(|&&index| index >= layer_labels.len()) {
        return Err(RenderError::BadData(format!("flagged layer index {index} is out of range for {}", counted(layer_labels.len(), "layer"))));
    }
    Ok(())
}

/// A series' value axis: log10 over its positive values, or linear over all of them.
fn series_scale(line: &LayerStatSeries<'_>, ticks: usize) -> ValueScale {
    let values = || line.values.iter().map(|&value| value as f64);
    if line.log_scale {
        let positive = || values().filter(|&value| value > 0.0);
        let (low, high) = (positive().fold(f64::INFINITY, f64::min), positive().fold(f64::NEG_INFINITY, f64::max));
        if low.is_finite() {
            ValueScale::log(low, high)
        } else {
            ValueScale::log(0.1, 1.0)
        }
    } else {
        ValueScale::linear(values().fold(f64::INFINITY, f64::min), values().fold(f64::NEG_INFINITY, f64::max), ticks)
    }
}

/// A red ring around a flagged layer's marker, on white so it stays apart from lines.
fn ring(scene: &mut Scene, centre: (f32, f32)) {
    scene.push(Element::Circle { centre, radius: RING_RADIUS, fill: FLAG });
    scene.push(Element::Circle { centre, radius: RING_RADIUS - RING_WIDTH, fill: [255, 255, 255] });
}

fn layer_stat_scene(title: &str, layer_labels: &[String], series: &[LayerStatSeries<'_>], flagged: &[usize]) -> Result<(Scene, String), RenderError> {
    validate(layer_labels, series, flagged)?;
    let flagged: BTreeSet<usize> = flagged.iter().copied().collect();
    let layers = layer_labels.len();
    let plot_height = if series.len() == 1 { SINGLE_PLOT_HEIGHT } else { PLOT_HEIGHT };
    let scales: Vec<ValueScale> = series.iter().map(|line| series_scale(line, if series.len() == 1 { 5 } else { 3 })).collect();
    let plot_width = (layers as f32 * STEP_WIDTH).clamp(MIN_PLOT_WIDTH, MAX_PLOT_WIDTH);
    let pitch = plot_width / layers as f32;
    let labels = AxisLabels::new(layer_labels, pitch, &flagged);
    let widest_tick = scales.iter().map(ValueScale::widest_label).fold(0.0, f32::max);
    let left = MIN_AXIS_LEFT.max(widest_tick + 12.0).max(labels.overhang_left(pitch) + 2.0).ceil();
    let right = AXIS_RIGHT.max(labels.overhang_right(pitch, plot_width) + 2.0).ceil();
    let key = if flagged.is_empty() { 0.0 } else { KEY_HEIGHT };
    let panel_height = CAPTION_HEIGHT + plot_height;
    let panels_height = series.len() as f32 * panel_height + (series.len() - 1) as f32 * PANEL_GAP;
    let width = (left + plot_width + right).ceil();
    let height = (key + panels_height + labels.height()).ceil();
    let mut scene = Scene::new(width, height);
    let x_of = |layer: usize| left + (layer as f32 + 0.5) * pitch;

    if !flagged.is_empty() {
        ring(&mut scene, (left + RING_RADIUS, 9.0));
        scene.text(left + 2.0 * RING_RADIUS + 6.0, 13.0, "flagged as anomalous", CAPTION_FONT, Anchor::Start);
    }
    let mut below_axis = vec![0usize; series.len()];
    for (index, (line, scale)) in series.iter().zip(&scales).enumerate() {
        let colour = series_colour(index);
        let panel_top = key + index as f32 * (panel_height + PANEL_GAP);
        let (top, bottom) = (panel_top + CAPTION_HEIGHT, panel_top + CAPTION_HEIGHT + plot_height);
        let y_of = |value: f32| top + (1.0 - scale.fraction(value as f64).clamp(0.0, 1.0) as f32) * plot_height;

        // Caption: a swatch in the series' colour, the name, the scale in grey.
        let middle = panel_top + 10.0;
        scene.line((left, middle), (left + 16.0, middle), colour, 2.5);
        scene.text(left + 22.0, middle + 4.0, line.name, CAPTION_FONT, Anchor::Start);
        if line.log_scale {
            scene.push(Element::Text {
                x: left + 22.0 + text_width(line.name, CAPTION_FONT) + 8.0,
                y: middle + 4.0,
                text: "log scale".to_string(),
                size: TICK_FONT,
                anchor: Anchor::Start,
                colour: AXIS,
                rotation: 0.0,
            });
        }

        // Flag bands under everything, then the value axis and the layer axis.
        let band = pitch.clamp(4.0, 2.0 * RING_RADIUS + 6.0);
        for &layer in &flagged {
            scene.push(Element::Rect { x: x_of(layer) - band / 2.0, y: top, width: band, height: plot_height, fill: FLAG_BAND });
        }
        scale.draw(&mut scene, left, top, plot_width, plot_height);
        if !scale.log && scale.low < 0.0 && 0.0 < scale.high {
            let y = y_of(0.0).round() + 0.5;
            scene.dashed_line((left, y), (left + plot_width, y), AXIS, 1.0, 4.0);
        }
        scene.line((left - 0.5, bottom + 0.5), (left + plot_width, bottom + 0.5), AXIS, 1.0);
        for layer in 0..layers {
            let x = x_of(layer).round() + 0.5;
            let length = if layer % labels.every == 0 || flagged.contains(&layer) { 5.0 } else { 3.0 };
            scene.line((x, bottom + 1.0), (x, bottom + 1.0 + length), AXIS, 1.0);
        }

        // The line, broken where a log axis cannot show a value, then the markers.
        let shown = |value: f32| !line.log_scale || value > 0.0;
        let mut run: Vec<(f32, f32)> = Vec::new();
        for (layer, &value) in line.values.iter().enumerate() {
            if shown(value) {
                run.push((x_of(layer), y_of(value)));
            }
            if !shown(value) || layer + 1 == layers {
                if run.len() > 1 {
                    scene.push(Element::Polyline { points: std::mem::take(&mut run), colour, width: LINE_WIDTH });
                }
                run.clear();
            }
        }
        for (layer, &value) in line.values.iter().enumerate() {
            let centre = (x_of(layer), if shown(value) { y_of(value) } else { bottom });
            if flagged.contains(&layer) {
                ring(&mut scene, centre);
            }
            if !shown(value) {
                below_axis[index] += 1;
                open_marker(&mut scene, centre, MARKER_RADIUS, colour);
            } else if pitch >= MIN_MARKER_PITCH || flagged.contains(&layer) || layers == 1 {
                marker(&mut scene, centre, MARKER_RADIUS, colour);
            }
        }
    }

    // Layer labels under the last panel, flagged ones in red.
    let plot_bottom = key + panels_height;
    for &layer in &labels.shown {
        let colour = if flagged.contains(&layer) { FLAG } else { TEXT };
        scene.push(labels.text(layer, x_of(layer), plot_bottom, colour));
    }
    for (index, line) in series.iter().enumerate() {
        let panel_top = key + index as f32 * (panel_height + PANEL_GAP);
        scene.panels.push(PanelBox { title: line.name.to_string(), x: 0.0, y: panel_top, width, height: panel_height });
    }

    let alt_text = alt_text(title, layer_labels, series, &scales, &flagged, &below_axis);
    let figure = compose(title, "", vec![(title.to_string(), scene)]);
    Ok((figure, alt_text))
}

fn alt_text(
    title: &str,
    layer_labels: &[String],
    series: &[LayerStatSeries<'_>],
    scales: &[ValueScale],
    flagged: &BTreeSet<usize>,
    below_axis: &[usize],
) -> String {
    let layers = layer_labels.len();
    let over = if layers == 1 {
        format!("1 layer ({})", layer_labels[0])
    } else {
        format!("{layers} layers in call order, from {} to {}", layer_labels[0], layer_labels[layers - 1])
    };
    let panels = if series.len() == 1 { "one panel".to_string() } else { format!("{} panels stacked on a shared layer axis", series.len()) };
    let each: Vec<String> = series
        .iter()
        .zip(scales)
        .zip(below_axis)
        .map(|((line, scale), &below)| {
            let lowest = (0..layers).min_by(|&a, &b| line.values[a].total_cmp(&line.values[b])).unwrap_or(0);
            let highest = (0..layers).max_by(|&a, &b| line.values[a].total_cmp(&line.values[b]).then(b.cmp(&a))).unwrap_or(0);
            let below = match below {
                0 => String::new(),
                1 => "; 1 value ≤ 0 drawn at the bottom edge".to_string(),
                count => format!("; {count} values ≤ 0 drawn at the bottom edge"),
            };
            let axis =
                format!("{}axis {} to {}", if scale.log { "log " } else { "" }, format_value(scale.low as f32), format_value(scale.high as f32));
            if layers == 1 {
                return format!("{} ({axis}): {}{below}", line.name, format_value(line.values[0]));
            }
            format!(
                "{} ({axis}): lowest {} at {}, highest {} at {}{below}",
                line.name,
                format_value(line.values[lowest]),
                layer_labels[lowest],
                format_value(line.values[highest]),
                layer_labels[highest]
            )
        })
        .collect();
    const LISTED: usize = 20;
    let flags = if flagged.is_empty() {
        "No layers are flagged".to_string()
    } else {
        let listed: Vec<String> = flagged
            .iter()
            .take(LISTED)
            .map(|&layer| {
                let values: Vec<String> = series.iter().map(|line| format!("{} {}", line.name, format_value(line.values[layer]))).collect();
                format!("{} (layer {layer}: {})", layer_labels[layer], values.join(", "))
            })
            .collect();
        let more = if flagged.len() > LISTED { format!(" and {} more", flagged.len() - LISTED) } else { String::new() };
        format!("Flagged as anomalous (red rings), {}: {}{more}", counted(flagged.len(), "layer"), listed.join("; "))
    };
    format!("{title}: per-layer statistics over {over}, {panels}. {}. {flags}", each.join(". "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thinned_labels_keep_the_flagged_layers() {
        let labels: Vec<String> = (0..200).map(|layer| format!("blocks.{layer}.mlp.act")).collect();
        let pitch = MAX_PLOT_WIDTH / 200.0;
        let flagged: BTreeSet<usize> = [7, 101, 102].into_iter().collect();
        let shown = AxisLabels::new(&labels, pitch, &flagged);
        assert!(shown.turned && shown.every == 3, "{} {}", shown.turned, shown.every);
        assert!(shown.shown.contains(&7) && shown.shown.contains(&101) && shown.shown.contains(&0) && shown.shown.contains(&198));
        // Regular labels next to a flagged one make way for it.
        assert!(!shown.shown.contains(&6) && !shown.shown.contains(&9) && !shown.shown.contains(&99));
        // Of neighbouring flagged layers, the first is labelled.
        assert!(!shown.shown.contains(&102));
        assert!(shown.shown.contains(&3) && shown.shown.contains(&12) && shown.shown.contains(&105));
    }

    #[test]
    fn panels_are_stacked_in_series_order() {
        let labels: Vec<String> = ["conv1", "relu", "fc"].iter().map(|label| label.to_string()).collect();
        let (mean, std) = ([0.1f32, 0.5, -0.2], [1.0f32, 0.0, 3.0]);
        let series =
            [LayerStatSeries { name: "mean", values: &mean, log_scale: false }, LayerStatSeries { name: "std", values: &std, log_scale: true }];
        let (scene, alt) = layer_stat_scene("activations", &labels, &series, &[1]).unwrap();
        let titles: Vec<&str> = scene.panels.iter().map(|panel| panel.title.as_str()).collect();
        assert_eq!(titles, ["mean", "std", "activations"]);
        assert!(scene.panels[0].y < scene.panels[1].y);
        assert!(alt.contains("1 value ≤ 0 drawn at the bottom edge"), "{alt}");
        assert!(alt.contains("relu (layer 1: mean 0.5, std 0)"), "{alt}");
    }
}
