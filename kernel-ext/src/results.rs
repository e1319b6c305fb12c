//! What the notebook shows: each answer of the daemon wrapped in a type whose
//! `evcxr_display` shows it inline (HTML tables, the daemon's PNG/SVG figures) and
//! whose fields keep the raw numbers for further work in the notebook.

use crate::display::{escape_html, img_tag, Bundle};
use crate::tensor::Tensor;
use layerlens_proto as proto;

/// The models the daemon stores.
#[derive(Clone, Debug)]
pub struct ModelList {
    pub models: Vec<proto::ModelInfo>,
}

impl ModelList {
    pub fn to_html(&self) -> String {
        let mut html = String::from("<table class=\"layerlens-models\">\n<thead><tr><th>name</th><th>id</th><th>format</th><th>input shape</th><th>bytes</th></tr></thead>\n<tbody>\n");
        for model in &self.models {
            html.push_str(&format!(
                "<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td style=\"text-align:right\">{}</td></tr>\n",
                escape_html(&model.names.join(", ")),
                escape_html(model.id.get(..12).unwrap_or(&model.id)),
                escape_html(&model.format),
                shape_text(&model.input_shape),
                thousands(model.size_bytes),
            ));
        }
        html.push_str("</tbody>\n</table>");
        html
    }

    pub fn to_text(&self) -> String {
        self.models
            .iter()
            .map(|model| format!("{} {}", &model.id.get(..12).unwrap_or(&model.id), model.names.join(",")))
            .collect::<Vec<_>>()
            .join("\n")
    }

    pub fn evcxr_display(&self) {
        Bundle::new().text("text/html", self.to_html()).text("text/plain", self.to_text()).print();
    }
}

/// torchinfo's table of every module call, as the daemon's Summary answers it.
#[derive(Clone, Debug)]
pub struct Summary {
    pub response: proto::SummaryResponse,
}

impl Summary {
    /// The rows: (dotted module path, type name), root first.
    pub fn layers(&self) -> Vec<(&str, &str)> {
        self.response.rows.iter().map(|row| (row.path.as_str(), row.type_name.as_str())).collect()
    }

    /// An HTML table: one row per module call, indented by depth, with output shape,
    /// parameters and mult-adds, then torchinfo's totals.
    pub fn to_html(&self) -> String {
        let response = &self.response;
        let mut html = String::from(
            "<table class=\"layerlens-summary\">\n<thead><tr><th style=\"text-align:left\">Layer (type)</th>\
             <th>Output shape</th><th>Param #</th><th>Mult-adds</th></tr></thead>\n<tbody>\n",
        );
        for row in &response.rows {
            let name = if row.path.is_empty() {
                escape_html(short_type(&row.type_name))
            } else {
                format!("{} <code>{}</code>", escape_html(short_type(&row.type_name)), escape_html(&row.path))
            };
            let output_shape = row.output_shapes.first().map(|shape| shape_text(&shape.dims)).unwrap_or_else(|| "--".to_string());
            html.push_str(&format!(
                "<tr title=\"{}\"><td style=\"text-align:left;padding-left:{}em\">{}</td><td>{}</td><td style=\"text-align:right\">{}</td><td style=\"text-align:right\">{}</td></tr>\n",
                escape_html(&row.type_name),
                row.depth as f32 * 1.5,
                name,
                escape_html(&output_shape),
                if row.num_params == 0 { "--".to_string() } else { thousands(row.num_params) },
                if row.mult_adds == 0 { "--".to_string() } else { thousands(row.mult_adds) },
            ));
        }
        html.push_str("</tbody>\n</table>\n<p class=\"layerlens-summary-totals\">");
        html.push_str(&format!(
            "Total params: {}<br/>Trainable params: {}<br/>Non-trainable params: {}<br/>Total mult-adds: {}",
            thousands(response.total_params),
            thousands(response.trainable_params),
            thousands(response.total_params.saturating_sub(response.trainable_params)),
            thousands(response.total_mult_adds),
        ));
        if response.total_bytes > 0 {
            html.push_str(&format!("<br/>Estimated total size: {:.2} MB", response.total_bytes as f64 / 1e6));
        }
        html.push_str("</p>");
        for note in &response.notes {
            html.push_str(&format!("\n<p><em>{}</em></p>", escape_html(note)));
        }
        html
    }

    pub fn to_text(&self) -> String {
        let mut text: Vec<String> = self
            .response
            .rows
            .iter()
            .map(|row| {
                let shape = row.output_shapes.first().map(|shape| shape_text(&shape.dims)).unwrap_or_else(|| "--".to_string());
                format!("{}{} {} {} {}", "  ".repeat(row.depth as usize), short_type(&row.type_name), row.path, shape, row.num_params)
            })
            .collect();
        text.push(format!("Total params: {}", thousands(self.response.total_params)));
        text.join("\n")
    }

    pub fn evcxr_display(&self) {
        Bundle::new().text("text/html", self.to_html()).text("text/plain", self.to_text()).print();
    }
}

/// An attribution: the numbers (same shape as the input) and the daemon's heat map.
#[derive(Clone, Debug)]
pub struct Attribution {
    pub response: proto::AttributeResponse,
    pub attribution: Tensor,
}

impl Attribution {
    /// "saliency for target 3", with the convergence delta where the method has one.
    pub fn caption(&self) -> String {
        let targets = self.response.targets.iter().map(|target| target.to_string()).collect::<Vec<_>>().join(", ");
        let mut caption = format!("{} for target {}", self.response.method, targets);
        if let Some(delta) = self.response.convergence_delta {
            caption.push_str(&format!(" (convergence delta {delta:.2e})"));
        }
        caption
    }

    pub fn evcxr_display(&self) {
        figure_bundle(self.response.figure.as_ref(), &self.caption(), &self.attribution.describe()).print();
    }
}

/// Images synthesized for objectives (activation maximisation) and their contact sheet.
#[derive(Clone, Debug)]
pub struct Visualization {
    pub result: proto::VisualizeResult,
    /// The images as fed to the model, (N, C, H, W).
    pub images: Tensor,
}

impl Visualization {
    pub fn caption(&self) -> String {
        let images: Vec<String> = self
            .result
            .labels
            .iter()
            .enumerate()
            .map(|(index, label)| {
                let objective = self.result.objective.get(index).copied().unwrap_or(f32::NAN);
                match (self.result.predicted_class.get(index), self.result.predicted_probability.get(index)) {
                    (Some(class), Some(probability)) => {
                        format!("{label}: objective {objective:.3}, predicted {class} ({:.1}%)", probability * 100.0)
                    }
                    _ => format!("{label}: objective {objective:.3}"),
                }
            })
            .collect();
        format!("{} steps; {}", self.result.steps, images.join("; "))
    }

    pub fn evcxr_display(&self) {
        figure_bundle(self.result.figure.as_ref(), &self.caption(), &self.images.describe()).print();
    }
}

/// The model's top classes for each input row.
#[derive(Clone, Debug)]
pub struct Prediction {
    pub response: proto::PredictResponse,
    /// The model's output, (batch, outputs).
    pub output: Tensor,
}

impl Prediction {
    /// The most likely class of each row.
    pub fn classes(&self) -> Vec<i64> {
        self.response.rows.iter().filter_map(|row| row.top.first().map(|top| top.class_index)).collect()
    }

    pub fn to_html(&self) -> String {
        let mut html = String::from(
            "<table class=\"layerlens-predict\">\n<thead><tr><th>row</th><th>rank</th><th>class</th><th>probability</th><th>logit</th></tr></thead>\n<tbody>\n",
        );
        for (row_index, row) in self.response.rows.iter().enumerate() {
            for (rank, top) in row.top.iter().enumerate() {
                html.push_str(&format!(
                    "<tr><td>{row_index}</td><td>{}</td><td>{}</td><td style=\"text-align:right\">{:.2}%</td><td style=\"text-align:right\">{:.4}</td></tr>\n",
                    rank + 1,
                    top.class_index,
                    top.probability * 100.0,
                    top.logit
                ));
            }
        }
        html.push_str("</tbody>\n</table>");
        html
    }

    pub fn to_text(&self) -> String {
        self.response
            .rows
            .iter()
            .enumerate()
            .map(|(row_index, row)| {
                let tops: Vec<String> = row.top.iter().map(|top| format!("{} ({:.1}%)", top.class_index, top.probability * 100.0)).collect();
                format!("row {row_index}: {}", tops.join(", "))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    pub fn evcxr_display(&self) {
        Bundle::new().text("text/html", self.to_html()).text("text/plain", self.to_text()).print();
    }
}

/// A figure the daemon rendered, shown on its own.
#[derive(Clone, Debug)]
pub struct Figure {
    pub figure: proto::Figure,
}

impl Figure {
    pub fn evcxr_display(&self) {
        Bundle::new().figure(&self.figure.mime, &self.figure.data).text("text/plain", self.figure.alt_text.clone()).print();
    }
}

/// A figure with a caption: HTML (the figure inline and the caption under it), the
/// figure under its own mime type (what frontends without HTML and tests read), and
/// the caption as plain text.
fn figure_bundle(figure: Option<&proto::Figure>, caption: &str, numbers: &str) -> Bundle {
    match figure {
        Some(figure) if !figure.data.is_empty() => Bundle::new()
            .text(
                "text/html",
                format!(
                    "<figure class=\"layerlens-figure\">{}<figcaption>{}</figcaption></figure>",
                    img_tag(&figure.mime, &figure.data, &figure.alt_text),
                    escape_html(caption)
                ),
            )
            .figure(&figure.mime, &figure.data)
            .text("text/plain", format!("{caption}\n{}", figure.alt_text)),
        // FIGURE_FORMAT_NONE: numbers only.
        _ => Bundle::new().text("text/plain", format!("{caption}\n{numbers}")),
    }
}

/// `torch.nn.modules.conv.Conv2d` as `Conv2d`.
fn short_type(type_name: &str) -> &str {
    type_name.rsplit('.').next().unwrap_or(type_name)
}

/// `[1, 16, 8, 8]`.
fn shape_text(dims: &[i64]) -> String {
    format!("[{}]", dims.iter().map(|dim| dim.to_string()).collect::<Vec<_>>().join(", "))
}

/// `1234567` as `1,234,567`, as torchinfo and Python's `{:,}` write counts.
pub(crate) fn thousands(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_names() {
        for (value, expect) in [(0, "0"), (999, "999"), (1000, "1,000"), (1234567, "1,234,567"), (100000, "100,000")] {
            assert_eq!(thousands(value), expect);
        }
        assert_eq!(short_type("torch.nn.modules.conv.Conv2d"), "Conv2d");
        assert_eq!(short_type("Net"), "Net");
        assert_eq!(shape_text(&[1, 16, 8, 8]), "[1, 16, 8, 8]");
    }

    fn summary() -> Summary {
        let row = |path: &str, type_name: &str, depth: u32, num_params: u64, dims: Vec<i64>| proto::SummaryRow {
            path: path.to_string(),
            type_name: type_name.to_string(),
            depth,
            num_params,
            output_shapes: vec![proto::Shape { dims }],
            ..Default::default()
        };
        Summary {
            response: proto::SummaryResponse {
                rows: vec![
                    row("", "__torch__.Net", 0, 1290, vec![1, 10]),
                    row("features.0", "torch.nn.modules.conv.Conv2d", 1, 160, vec![1, 16, 8, 8]),
                    row("head<x>", "torch.nn.modules.linear.Linear", 1, 1130, vec![1, 10]),
                ],
                total_params: 1290,
                trainable_params: 1290,
                notes: vec!["calls inside `if` left out".to_string()],
                ..Default::default()
            },
        }
    }

    #[test]
    fn summary_html() {
        let html = summary().to_html();
        assert!(html.starts_with("<table class=\"layerlens-summary\">"), "{html}");
        assert!(html.contains("Conv2d <code>features.0</code></td><td>[1, 16, 8, 8]</td><td style=\"text-align:right\">160</td>"), "{html}");
        assert!(html.contains("<code>head&lt;x&gt;</code>"), "paths are escaped: {html}");
        assert!(html.contains("Total params: 1,290<br/>"), "{html}");
        assert!(html.contains("<em>calls inside `if` left out</em>"), "{html}");
        assert_eq!(summary().layers()[1], ("features.0", "torch.nn.modules.conv.Conv2d"));
    }

    #[test]
    fn attribution_shows_its_figure_three_ways() {
        let attribution = Attribution {
            response: proto::AttributeResponse {
                method: "saliency".to_string(),
                targets: vec![3],
                figure: Some(proto::Figure { mime: "image/png".to_string(), data: vec![0, 255], alt_text: "heat map".to_string() }),
                ..Default::default()
            },
            attribution: Tensor::zeros(&[1, 1, 2, 2]).unwrap(),
        };
        let bundle = figure_bundle(attribution.response.figure.as_ref(), &attribution.caption(), "");
        let mimes: Vec<&str> = bundle.blocks.iter().map(|(mime, _)| mime.as_str()).collect();
        assert_eq!(mimes, ["text/html", "image/png", "text/plain"]);
        assert_eq!(
            bundle.blocks[0].1,
            "<figure class=\"layerlens-figure\"><img src=\"data:image/png;base64,AP8=\" alt=\"heat map\"/><figcaption>saliency for target 3</figcaption></figure>"
        );
        assert_eq!(bundle.blocks[1].1, "AP8=");
        assert_eq!(bundle.blocks[2].1, "saliency for target 3\nheat map");
        // Without a figure the numbers stand in.
        let bare = figure_bundle(None, "saliency for target 3", "Tensor (1) float32, values in [0.0000, 0.0000]");
        assert_eq!(
            bare.to_protocol(),
            "EVCXR_BEGIN_CONTENT text/plain\nsaliency for target 3\nTensor (1) float32, values in [0.0000, 0.0000]\nEVCXR_END_CONTENT\n"
        );
    }

    #[test]
    fn prediction_table() {
        let prediction = Prediction {
            response: proto::PredictResponse {
                rows: vec![proto::RowPrediction {
                    top: vec![
                        proto::TopClass { class_index: 3, logit: 4.5, probability: 0.875 },
                        proto::TopClass { class_index: 8, logit: 1.0, probability: 0.0625 },
                    ],
                }],
                ..Default::default()
            },
            output: Tensor::zeros(&[1, 10]).unwrap(),
        };
        assert_eq!(prediction.classes(), vec![3]);
        assert!(prediction.to_html().contains("<tr><td>0</td><td>1</td><td>3</td><td style=\"text-align:right\">87.50%</td>"));
        assert_eq!(prediction.to_text(), "row 0: 3 (87.5%), 8 (6.2%)");
    }
}
