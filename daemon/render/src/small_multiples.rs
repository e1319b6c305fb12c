//! Pieces shared by the small-multiple figures ([`crate::histogram_grid`],
//! [`crate::filter_grid`], [`crate::layer_stat_chart`]) and the charts of training
//! runs ([`crate::line_chart`], [`crate::bar_chart`], [`crate::step_chart`]): a value
//! axis that is linear (round ticks from `chart`) or log10 (decade ticks), labels cut
//! to fit, series colours, markers, legends, and grey note lines between the title and
//! the figure's body.

use crate::chart::{nice_ticks, tick_labels, ticks_within};
use crate::colour::{Colour, AXIS, GRID};
use crate::font::text_width;
use crate::options::AxisScale;
use crate::scene::{Anchor, Element, Scene};
use std::collections::BTreeSet;

pub(crate) const TICK_FONT: f32 = 10.0;
/// Axis labels longer than this (in pixels) keep their end, after an ellipsis.
pub(crate) const MAX_LABEL_WIDTH: f32 = 130.0;
/// Turned labels need this much room between positions to stay apart.
const MIN_TURNED_PITCH: f32 = 14.0;
const TURN: f32 = -45.0;
const NOTE_FONT: f32 = 11.0;
const NOTE_LINE: f32 = 16.0;
pub(crate) const LEGEND_ROW: f32 = 18.0;
const LEGEND_SWATCH: f32 = 22.0;
const LEGEND_GAP: f32 = 16.0;
const LEGEND_FONT: f32 = 11.0;

/// A value axis: its range and labelled ticks. Log axes map log10 of the value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ValueScale {
    pub low: f64,
    pub high: f64,
    pub log: bool,
    pub ticks: Vec<(f64, String)>,
}

impl ValueScale {
    /// A linear axis over round ticks covering `low..=high`; an empty range (one value
    /// everywhere) is widened around its value first.
    pub fn linear(low: f64, high: f64, target: usize) -> ValueScale {
        let (low, high) = if high > low {
            (low, high)
        } else {
            let pad = if low == 0.0 { 1.0 } else { low.abs() * 0.1 };
            (low - pad, high + pad)
        };
        let ticks = nice_ticks(low, high, target);
        let labels = tick_labels(&ticks);
        ValueScale { low: ticks.low, high: ticks.high, log: false, ticks: ticks.values.into_iter().zip(labels).collect() }
    }

    /// A log10 axis over whole decades covering `low..=high` (both positive), at least
    /// one decade wide. Ticks at the decades (every k-th when there are more than
    /// six); axes of at most two decades also get ticks at 2 and 5 times each decade.
    pub fn log(low: f64, high: f64) -> ValueScale {
        // The tolerance keeps a value a rounding error off a power of ten (1e-5 read
        // from an f32 is 9.99999975e-6) from adding a decade.
        let first = (low.log10() + 1e-6).floor() as i32;
        let last = ((high.log10() - 1e-6).ceil() as i32).max(first + 1);
        let decades = (last - first) as usize;
        let every = decades.div_ceil(6).max(1);
        let mut ticks = Vec::new();
        for exponent in first..=last {
            if ((exponent - first) as usize).is_multiple_of(every) {
                ticks.push((10f64.powi(exponent), log_label(1, exponent)));
            }
            if decades <= 2 && exponent < last {
                for mantissa in [2, 5] {
                    ticks.push((mantissa as f64 * 10f64.powi(exponent), log_label(mantissa, exponent)));
                }
            }
        }
        ValueScale { low: 10f64.powi(first), high: 10f64.powi(last), log: true, ticks }
    }

    /// An axis fitted to `values` (non-finite ones ignored): linear over round ticks,
    /// or log10 over the decades of the positive values (0.1 to 1 when there are none).
    pub fn fitted(scale: AxisScale, values: impl Iterator<Item = f64> + Clone, target: usize) -> ValueScale {
        let finite = values.filter(|value| value.is_finite());
        match scale {
            AxisScale::Linear => {
                let (low, high) = (finite.clone().fold(f64::INFINITY, f64::min), finite.fold(f64::NEG_INFINITY, f64::max));
                if low.is_finite() {
                    ValueScale::linear(low, high, target)
                } else {
                    ValueScale::linear(0.0, 1.0, target)
                }
            }
            AxisScale::Log10 => {
                let positive = finite.filter(|&value| value > 0.0);
                let (low, high) = (positive.clone().fold(f64::INFINITY, f64::min), positive.fold(f64::NEG_INFINITY, f64::max));
                if low.is_finite() {
                    ValueScale::log(low, high)
                } else {
                    ValueScale::log(0.1, 1.0)
                }
            }
        }
    }

    /// An axis from exactly `low` to `high` (both positive on a log axis) with the
    /// ticks that fall inside.
    pub fn fixed(scale: AxisScale, low: f64, high: f64, target: usize) -> ValueScale {
        match scale {
            AxisScale::Linear => ValueScale { low, high, log: false, ticks: ticks_within(low, high, target) },
            AxisScale::Log10 => {
                let tolerance = (high / low).log10() * 1e-6;
                let inside = |value: f64| value.log10() >= low.log10() - tolerance && value.log10() <= high.log10() + tolerance;
                let ticks = ValueScale::log(low, high).ticks.into_iter().filter(|(value, _)| inside(*value)).collect();
                ValueScale { low, high, log: true, ticks }
            }
        }
    }

    /// Where `value` lies on the axis: 0 at `low`, 1 at `high` (outside for values
    /// off the axis; -inf for values that are not positive on a log axis).
    pub fn fraction(&self, value: f64) -> f64 {
        if self.log {
            if value <= 0.0 {
                return f64::NEG_INFINITY;
            }
            (value.log10() - self.low.log10()) / (self.high.log10() - self.low.log10())
        } else {
            (value - self.low) / (self.high - self.low)
        }
    }

    pub fn widest_label(&self) -> f32 {
        self.ticks.iter().map(|(_, label)| text_width(label, TICK_FONT)).fold(0.0, f32::max)
    }

    /// Grid lines across the plot, tick marks and right-aligned labels left of it, and
    /// the axis line, for a plot whose top-left corner is (`left`, `top`).
    pub fn draw(&self, scene: &mut Scene, left: f32, top: f32, plot_width: f32, plot_height: f32) {
        for (value, label) in &self.ticks {
            let y = (top + (1.0 - self.fraction(*value)) as f32 * plot_height).round() + 0.5;
            scene.line((left, y), (left + plot_width, y), GRID, 1.0);
            scene.line((left - 4.0, y), (left, y), AXIS, 1.0);
            scene.text(left - 7.0, y + 3.5, label.as_str(), TICK_FONT, Anchor::End);
        }
        scene.line((left - 0.5, top), (left - 0.5, top + plot_height), AXIS, 1.0);
    }
}

/// `mantissa` × 10^`exponent` as a tick label: plain from 0.001 to 5000, `2e-5` style
/// beyond.
pub(crate) fn log_label(mantissa: u32, exponent: i32) -> String {
    if (-3..=3).contains(&exponent) {
        let value = mantissa as f64 * 10f64.powi(exponent);
        format!("{value:.*}", (-exponent).max(0) as usize)
    } else {
        format!("{mantissa}e{exponent}")
    }
}

/// `label`, or its end after an ellipsis when it is wider than `max_width` at `size`:
/// the end of a module path (`…denselayer16.conv2`) says most about where it is.
pub(crate) fn fit_end(label: &str, size: f32, max_width: f32) -> String {
    if text_width(label, size) <= max_width {
        return label.to_string();
    }
    let characters: Vec<char> = label.chars().collect();
    (1..characters.len())
        .map(|start| format!("\u{2026}{}", characters[start..].iter().collect::<String>()))
        .find(|text| text_width(text, size) <= max_width)
        .unwrap_or_else(|| "\u{2026}".to_string())
}

/// `text`, or its start and an ellipsis when it is wider than `max_width` at `size`.
pub(crate) fn fit_start(text: &str, size: f32, max_width: f32) -> String {
    if text_width(text, size) <= max_width {
        return text.to_string();
    }
    let characters: Vec<char> = text.chars().collect();
    (1..characters.len())
        .rev()
        .map(|end| format!("{}\u{2026}", characters[..end].iter().collect::<String>().trim_end()))
        .find(|text| text_width(text, size) <= max_width)
        .unwrap_or_else(|| "\u{2026}".to_string())
}

/// The colour of series `index`: Tableau 10, repeated after ten series (as in the
/// step chart).
pub(crate) fn series_colour(index: usize) -> Colour {
    let colour = colorous::TABLEAU10[index % colorous::TABLEAU10.len()];
    [colour.r, colour.g, colour.b]
}

/// A filled marker of `radius` on a white ring, which keeps markers apart where lines
/// cross.
pub(crate) fn marker(scene: &mut Scene, centre: (f32, f32), radius: f32, colour: Colour) {
    scene.push(Element::Circle { centre, radius: radius + 1.0, fill: [255, 255, 255] });
    scene.push(Element::Circle { centre, radius, fill: colour });
}

/// An open marker: a value a log axis cannot show, drawn at its edge.
pub(crate) fn open_marker(scene: &mut Scene, centre: (f32, f32), radius: f32, colour: Colour) {
    scene.push(Element::Circle { centre, radius: radius + 0.5, fill: colour });
    scene.push(Element::Circle { centre, radius: radius - 1.0, fill: [255, 255, 255] });
}

/// Where the entries of a legend (a swatch and a name each) go, in rows no wider than
/// `max_width`: the x of each entry from the legend's left and its row.
pub(crate) fn legend_layout<'a>(names: impl IntoIterator<Item = &'a str>, max_width: f32) -> Vec<(f32, usize)> {
    let mut places = Vec::new();
    let (mut x, mut row) = (0.0, 0);
    for name in names {
        let width = LEGEND_SWATCH + 5.0 + text_width(name, LEGEND_FONT);
        if x > 0.0 && x + width > max_width {
            (x, row) = (0.0, row + 1);
        }
        places.push((x, row));
        x += width + LEGEND_GAP;
    }
    places
}

/// The height a legend laid out by [`legend_layout`] takes, 0 for none.
pub(crate) fn legend_height(places: &[(f32, usize)]) -> f32 {
    places.last().map_or(0.0, |&(_, row)| (row + 1) as f32 * LEGEND_ROW + 4.0)
}

/// A legend entry at (`x`, `top` of its row): a short line with a marker in `colour`
/// (none when `marker_radius` is 0), then `name`.
pub(crate) fn legend_entry(scene: &mut Scene, (x, top): (f32, f32), name: &str, colour: Colour, line_width: f32, marker_radius: f32) {
    let middle = top + 9.0;
    scene.push(Element::Line { from: (x, middle), to: (x + LEGEND_SWATCH, middle), colour, width: line_width, dash: None });
    if marker_radius > 0.0 {
        marker(scene, (x + LEGEND_SWATCH / 2.0, middle), marker_radius, colour);
    }
    scene.text(x + LEGEND_SWATCH + 5.0, middle + 4.0, name, LEGEND_FONT, Anchor::Start);
}

/// `body` under grey lines of notes (none when `notes` is empty), as wide as the wider.
pub(crate) fn with_notes(notes: &[String], body: Scene) -> Scene {
    let notes_width = notes.iter().map(|note| text_width(note, NOTE_FONT)).fold(0.0, f32::max);
    let notes_height = if notes.is_empty() { 0.0 } else { notes.len() as f32 * NOTE_LINE + 6.0 };
    let mut scene = Scene::new(body.width.max(notes_width).ceil(), notes_height + body.height);
    for (line, note) in notes.iter().enumerate() {
        scene.push(Element::Text {
            x: 0.0,
            y: line as f32 * NOTE_LINE + 11.0,
            text: note.clone(),
            size: NOTE_FONT,
            anchor: Anchor::Start,
            colour: AXIS,
            rotation: 0.0,
        });
    }
    scene.place(body, 0.0, notes_height);
    scene
}

/// `count` and a noun, plural after anything but one: `1 layer`, `3 layers`.
pub(crate) fn counted(count: usize, noun: &str) -> String {
    if count == 1 {
        format!("1 {noun}")
    } else {
        format!("{count} {noun}s")
    }
}

/// How labels of an x axis of evenly spaced positions (layers, steps) are set under a
/// plot: upright when they fit the pitch, else turned by 45 degrees and, when they
/// are many, every k-th; flagged positions are always labelled.
pub(crate) struct AxisLabels {
    pub texts: Vec<String>,
    widths: Vec<f32>,
    pub turned: bool,
    /// Every `every`-th layer gets a long tick mark.
    pub every: usize,
    /// The labelled layers: every `every`-th and the flagged ones, in order; others
    /// too close to a flagged one are left out, and of flagged layers closer together
    /// than `every` only the first is labelled.
    pub shown: Vec<usize>,
}

impl AxisLabels {
    pub fn new(layer_labels: &[String], pitch: f32, flagged: &BTreeSet<usize>) -> AxisLabels {
        let texts: Vec<String> = layer_labels.iter().map(|label| fit_end(label, TICK_FONT, MAX_LABEL_WIDTH)).collect();
        let widths: Vec<f32> = texts.iter().map(|text| text_width(text, TICK_FONT)).collect();
        let widest = widths.iter().copied().fold(0.0, f32::max);
        let (turned, every) = if widest + 6.0 <= pitch { (false, 1) } else { (true, (MIN_TURNED_PITCH / pitch).ceil().max(1.0) as usize) };
        // Flagged layers closer together than `every` keep the first one's label.
        let mut flagged_shown: Vec<usize> = Vec::new();
        for &layer in flagged {
            if flagged_shown.last().is_none_or(|&last| layer - last >= every) {
                flagged_shown.push(layer);
            }
        }
        let shown = (0..texts.len())
            .filter(|&layer| flagged_shown.contains(&layer) || (layer % every == 0 && !flagged.iter().any(|&flag| flag.abs_diff(layer) < every)))
            .collect();
        AxisLabels { texts, widths, turned, every, shown }
    }

    /// Room under the plot: tick marks and the labels.
    pub fn height(&self) -> f32 {
        if self.turned {
            let widest = self.shown.iter().map(|&layer| self.widths[layer]).fold(0.0, f32::max);
            12.0 + widest * std::f32::consts::FRAC_1_SQRT_2 + 10.0
        } else {
            24.0
        }
    }

    /// Where the label of the layer at `x` is anchored (its end, when turned).
    pub fn anchor(&self, x: f32, plot_bottom: f32) -> (f32, f32) {
        if self.turned {
            (x + 3.0, plot_bottom + 12.0)
        } else {
            (x, plot_bottom + 16.0)
        }
    }

    /// How far left of the plot the labels reach, at the given pitch.
    pub fn overhang_left(&self, pitch: f32) -> f32 {
        self.shown
            .iter()
            .map(|&layer| {
                let centre = (layer as f32 + 0.5) * pitch;
                if self.turned {
                    // The text runs down-left from its end; its glyphs rise up-left of
                    // the baseline by up to the ascent (about 0.75 em).
                    (self.widths[layer] + 0.75 * TICK_FONT) * std::f32::consts::FRAC_1_SQRT_2 - 3.0 - centre
                } else {
                    self.widths[layer] / 2.0 - centre
                }
            })
            .fold(0.0, f32::max)
    }

    pub fn overhang_right(&self, pitch: f32, plot_width: f32) -> f32 {
        if self.turned {
            return 3.0;
        }
        self.shown.iter().map(|&layer| (layer as f32 + 0.5) * pitch + self.widths[layer] / 2.0 - plot_width).fold(0.0, f32::max)
    }

    /// The label of position `index` at `x`, under a plot ending at `plot_bottom`.
    pub fn text(&self, index: usize, x: f32, plot_bottom: f32, colour: Colour) -> Element {
        let (x, y) = self.anchor(x, plot_bottom);
        let (anchor, rotation) = if self.turned { (Anchor::End, TURN) } else { (Anchor::Middle, 0.0) };
        Element::Text { x, y, text: self.texts[index].clone(), size: TICK_FONT, anchor, colour, rotation }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_axes_span_decades_with_readable_labels() {
        let labels = |scale: &ValueScale| scale.ticks.iter().map(|(_, label)| label.clone()).collect::<Vec<_>>();
        let counts = ValueScale::log(1.0, 5000.0);
        assert_eq!((counts.low, counts.high), (1.0, 1e4));
        assert_eq!(labels(&counts), ["1", "10", "100", "1000", "1e4"]);
        // Within one decade: 2 and 5 as well.
        let narrow = ValueScale::log(0.3, 0.8);
        assert_eq!((narrow.low, narrow.high), (0.1, 1.0));
        assert_eq!(labels(&narrow), ["0.1", "0.2", "0.5", "1"]);
        // Many decades: every other one.
        let wide = ValueScale::log(1e-6, 1e5);
        assert_eq!(labels(&wide), ["1e-6", "1e-4", "0.01", "1", "100", "1e4"]);
        assert!((wide.fraction(1e-6)).abs() < 1e-12 && (wide.fraction(1e5) - 1.0).abs() < 1e-12);
        assert_eq!(wide.fraction(0.0), f64::NEG_INFINITY);
        // Powers of ten that went through f32 stay on their decade.
        let rounded = ValueScale::log(1e-5f32 as f64, 10.0f32 as f64);
        assert_eq!((rounded.low, rounded.high), (1e-5, 10.0));
    }

    #[test]
    fn labels_are_cut_at_the_right_end() {
        assert_eq!(fit_end("conv1", 10.0, 200.0), "conv1");
        let end = fit_end("features.denseblock4.denselayer16.conv2", 10.0, 90.0);
        assert!(end.starts_with('\u{2026}') && end.ends_with("conv2") && text_width(&end, 10.0) <= 90.0, "{end}");
        let start = fit_start("mean 0.01, std 0.2, 3% zeros, 0.1% saturated", 10.0, 90.0);
        assert!(start.starts_with("mean") && start.ends_with('\u{2026}') && text_width(&start, 10.0) <= 90.0, "{start}");
        assert_eq!(counted(1, "layer"), "1 layer");
        assert_eq!(counted(0, "layer"), "0 layers");
    }
}
