//! The Markdown hover card of one layer: type, parameters (count, shapes, mean/std),
//! output shape, the last activation statistics with anomaly flags, and a small
//! histogram of the activation (else the weight) as a data-URI SVG drawn here from
//! the daemon's histogram counts — a few hundred bytes instead of the daemon's
//! whole-model figure.

use crate::model::ModelView;
use base64::Engine;
use layerlens_proto as proto;
use std::fmt::Write;

/// Most parameter tensors listed on one card.
const MAX_TENSORS: usize = 6;

pub fn render(model: &ModelView, row_index: usize) -> String {
    let row = &model.rows[row_index];
    let mut card = String::new();
    let path = if row.path.is_empty() { "(model)" } else { &row.path };
    let _ = writeln!(card, "**{path}** · `{}`", row.type_name);
    let calls = model.call_count(&row.path);
    let call = if calls > 1 { format!(" · call {} of {calls}", row.call_index + 1) } else { String::new() };
    let _ = writeln!(card, "\nmodel `{}`{call}\n", model.display_name);

    let _ = writeln!(card, "| | |\n|---|---|");
    if let Some(shape) = row.output_shapes.first() {
        let _ = writeln!(card, "| output | `{}` |", format_shape(&shape.dims));
    }
    if let Some(shape) = row.input_shapes.first() {
        let _ = writeln!(card, "| input | `{}` |", format_shape(&shape.dims));
    }
    let _ = writeln!(card, "| parameters | {} ({:.1}%) |", format_count(row.num_params), row.params_percent);
    if row.mult_adds > 0 {
        let _ = writeln!(card, "| mult-adds | {} |", format_count(row.mult_adds));
    }
    let mut attributes: Vec<(&String, &String)> = row.attributes.iter().collect();
    attributes.sort();
    for (key, value) in attributes.iter().take(8) {
        let _ = writeln!(card, "| {key} | `{value}` |");
    }

    let tensors: Vec<&proto::ParameterStats> = model.parameters_under(&row.path).collect();
    if !tensors.is_empty() {
        let _ = writeln!(card, "\n**Parameters**\n");
        for parameter in tensors.iter().take(MAX_TENSORS) {
            let name = parameter
                .name
                .strip_prefix(&row.path)
                .map(|rest| rest.trim_start_matches('.'))
                .filter(|_| !row.path.is_empty())
                .unwrap_or(&parameter.name);
            let stats = parameter.stats.as_ref().map(|s| format!(" mean {} std {}", format_number(s.mean), format_number(s.std))).unwrap_or_default();
            let _ = writeln!(card, "- `{name}` `{}`{stats}", format_shape(&parameter.shape));
        }
        if tensors.len() > MAX_TENSORS {
            let _ = writeln!(card, "- … {} more tensors", tensors.len() - MAX_TENSORS);
        }
    }

    let layer = model.layer_stats(row);
    if let (Some(layer), Some(input)) = (layer, &model.activation_input) {
        let _ = writeln!(card, "\n**Activation** (input: {input})\n");
        if let Some(s) = &layer.stats {
            let _ = writeln!(
                card,
                "mean {} · std {} · min {} · max {} · zeros {:.1}%",
                format_number(s.mean),
                format_number(s.std),
                format_number(s.min),
                format_number(s.max),
                s.zero_fraction * 100.0
            );
            if s.nan_count > 0 || s.inf_count > 0 {
                let _ = writeln!(card, "\nNaN {} · Inf {}", s.nan_count, s.inf_count);
            }
        }
        if let (Some(dead), Some(channels)) = (layer.dead_channels, layer.channels) {
            let _ = writeln!(card, "\ndead channels {dead} of {channels}");
        }
    }
    if let Some((report, layer, findings)) = model.optimizer_of(&row.path) {
        let step = report.step.map(|step| format!(", step {step}")).unwrap_or_default();
        let _ = writeln!(card, "\n**Optimiser** ({}{step})\n", report.optimizer);
        let _ = writeln!(
            card,
            "update:weight {} · ‖update‖ {} · ‖w‖ {}",
            format_number(layer.update_weight_ratio),
            format_number(layer.update_norm),
            format_number(layer.weight_norm)
        );
        for finding in findings {
            let _ = writeln!(card, "\n⚠ **{}**: {}", finding.kind, finding.message);
        }
    }
    let anomalies: Vec<&proto::Anomaly> = model.anomalies_of(&row.path).collect();
    for anomaly in &anomalies {
        let _ = writeln!(card, "\n⚠ **{}**: {}", anomaly.kind, anomaly.message);
    }

    let histogram = layer.and_then(|layer| layer.stats.as_ref()).or_else(|| tensors.first().and_then(|p| p.stats.as_ref()));
    if let Some(stats) = histogram.filter(|s| !s.histogram_counts.is_empty()) {
        let what = if layer.is_some() { "activation" } else { "weight" };
        let _ = writeln!(card, "\n![{what} histogram]({})", histogram_data_uri(&stats.histogram_counts));
    }
    card
}

/// The card shown while the model's data is fetched from the daemon (the activation
/// report runs the model, which can take a while).
pub fn render_loading(display_name: &str) -> String {
    format!("*layerlens: loading model `{display_name}` from the daemon…*")
}

/// Several cards, separated by rules.
pub fn render_all(model: &ModelView, rows: &[usize]) -> String {
    rows.iter().map(|&row| render(model, row)).collect::<Vec<_>>().join("\n---\n\n")
}

pub fn format_shape(dims: &[i64]) -> String {
    let dims: Vec<String> = dims.iter().map(i64::to_string).collect();
    format!("[{}]", dims.join(", "))
}

/// `1234567` -> `1,234,567`.
pub fn format_count(count: u64) -> String {
    let digits = count.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn format_number(value: f64) -> String {
    if value == 0.0 || (1e-3..1e5).contains(&value.abs()) {
        format!("{value:.4}")
    } else {
        format!("{value:.3e}")
    }
}

/// A 120×32 bar chart of histogram counts as an SVG data URI.
fn histogram_data_uri(counts: &[u64]) -> String {
    let (width, height) = (120.0, 32.0);
    let highest = counts.iter().copied().max().unwrap_or(1).max(1) as f64;
    let bar = width / counts.len() as f64;
    let mut svg =
        format!("<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}'><rect width='100%' height='100%' fill='#f4f4f4'/>");
    for (i, &count) in counts.iter().enumerate() {
        let h = (count as f64 / highest * (height - 2.0)).max(if count > 0 { 1.0 } else { 0.0 });
        let _ =
            write!(svg, "<rect x='{:.1}' y='{:.1}' width='{:.1}' height='{h:.1}' fill='#3b6ea5'/>", i as f64 * bar, height - h, (bar - 0.5).max(0.5));
    }
    svg.push_str("</svg>");
    format!("data:image/svg+xml;base64,{}", base64::engine::general_purpose::STANDARD.encode(svg))
}

#[cfg(test)]
mod tests {
    #[test]
    fn counts_get_thousands_separators() {
        for (count, text) in [(0, "0"), (999, "999"), (1000, "1,000"), (2570, "2,570"), (1234567, "1,234,567")] {
            assert_eq!(super::format_count(count), text);
        }
    }
}
