//! Renders the figures for training and optimiser explanations from synthetic runs
//! into a folder, to look at by eye:
//! `cargo run -p layerlens-render --example training_figures -- /tmp/figs`.

use layerlens_render::{
    bar_chart, contour_plot, line_chart, matrix_heat_map, step_chart_scaled, AxisScale, ChartSeries, ColourScale, Format, LineSeries, PlotPath,
};
use std::path::{Path, PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let folder = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "/tmp/figs".to_string()));
    std::fs::create_dir_all(&folder)?;
    heat_map(&folder)?;
    lines(&folder)?;
    gradient_norms(&folder)?;
    landscape(&folder)?;
    weight_change(&folder)?;
    edge_cases(&folder)?;
    Ok(())
}

fn write(folder: &Path, name: &str, data: &[u8], alt_text: &str) -> std::io::Result<()> {
    std::fs::write(folder.join(name), data)?;
    println!("{name}: {alt_text}");
    Ok(())
}

/// A learning rate with linear warm-up over `warmup` steps and cosine decay to a tenth.
fn learning_rate(step: f64, steps: f64, warmup: f64) -> f64 {
    let peak = 3e-4;
    if step < warmup {
        peak * (step + 1.0) / warmup
    } else {
        peak * (0.1 + 0.45 * (1.0 + (std::f64::consts::PI * (step - warmup) / (steps - warmup)).cos()))
    }
}

/// Layers of a small transformer, as module paths.
fn transformer_layers() -> Vec<String> {
    let mut layers = vec!["model.embed_tokens".to_string()];
    for block in 0..6 {
        for part in ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.up_proj", "mlp.down_proj"] {
            layers.push(format!("model.layers.{block}.{part}"));
        }
    }
    layers.push("lm_head".to_string());
    layers
}

/// Update:weight ratio per layer (rows) and logged step (columns): about the learning
/// rate times a per-layer factor, the embeddings far too small, one block's MLP far too
/// large early on, and a few steps not logged for the head.
fn heat_map(folder: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let layers = transformer_layers();
    let columns = 500;
    let steps: Vec<String> = (0..columns).map(|column| (column * 20).to_string()).collect();
    let mut values = Vec::with_capacity(layers.len() * columns);
    for (row, layer) in layers.iter().enumerate() {
        for column in 0..columns {
            let lr = learning_rate(column as f64, columns as f64, 25.0);
            let factor = if layer.contains("embed") {
                0.01
            } else if layer.contains("layers.4.mlp") {
                400.0 * (-(column as f64) / 80.0).exp() + 8.0
            } else {
                8.0 + 4.0 * (row as f64 * 0.7).sin()
            };
            let noise = 1.0 + 0.3 * ((row * 31 + column * 17) as f64).sin();
            let value = if layer == "lm_head" && (200..230).contains(&column) { f32::NAN } else { (lr * factor * noise) as f32 };
            values.push(value);
        }
    }
    for (format, extension) in [(Format::Png, "png"), (Format::Svg, "svg")] {
        let figure = matrix_heat_map(
            "Update:weight ratio per layer",
            &layers,
            &steps,
            &values,
            ColourScale::Log10,
            "update / weight (std ratio)",
            Some((1e-4, 1e-2)),
            format,
        )?;
        write(folder, &format!("heat_map.{extension}"), &figure.data, &figure.alt_text)?;
    }
    // A small one: few cells, gaps between them, every count shown.
    let small_layers: Vec<String> = layers[..6].to_vec();
    let small_steps: Vec<String> = (0..12).map(|step| (step * 100).to_string()).collect();
    let small: Vec<f32> = (0..6 * 12).map(|index| values[(index / 12) * columns + (index % 12) * 40]).collect();
    let figure = matrix_heat_map(
        "Update:weight ratio, first layers",
        &small_layers,
        &small_steps,
        &small,
        ColourScale::Log10,
        "ratio",
        Some((1e-4, 1e-2)),
        Format::Png,
    )?;
    write(folder, "heat_map_small.png", &figure.data, &figure.alt_text)?;
    let figure =
        matrix_heat_map("Update:weight ratio, no band", &small_layers, &small_steps, &small, ColourScale::Linear, "ratio", None, Format::Png)?;
    write(folder, "heat_map_linear.png", &figure.data, &figure.alt_text)?;
    Ok(())
}

/// The learning rate schedule, and the training and validation loss of two runs, one of
/// which diverges to NaN.
fn lines(folder: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let steps: Vec<f64> = (0..10_000).map(f64::from).collect();
    let rates: Vec<f64> = steps.iter().map(|&step| learning_rate(step, 10_000.0, 500.0)).collect();
    let schedule = [LineSeries { name: "learning rate", xs: &steps, ys: &rates }];
    for (format, extension) in [(Format::Png, "png"), (Format::Svg, "svg")] {
        let figure = line_chart("Learning rate", &schedule, "step", "learning rate", AxisScale::Linear, format)?;
        write(folder, &format!("line_chart_lr.{extension}"), &figure.data, &figure.alt_text)?;
    }
    let noise = |step: f64| 1.0 + 0.15 * ((step * 12.9898).sin() * 43758.5453).fract();
    let train: Vec<f64> = steps.iter().map(|&step| (0.4 + 2.2 * (-step / 1500.0).exp()) * noise(step)).collect();
    let val_steps: Vec<f64> = (0..=20).map(|index| index as f64 * 500.0).collect();
    let val: Vec<f64> = val_steps.iter().map(|&step| 0.5 + 2.1 * (-step / 1600.0).exp() + step / 100_000.0).collect();
    let high_lr: Vec<f64> =
        steps
            .iter()
            .map(|&step| {
                if step > 6200.0 {
                    f64::NAN
                } else {
                    (0.6 + 2.0 * (-step / 900.0).exp()) * noise(step + 7.0) * (1.0 + (step / 6200.0).powi(8) * 5.0)
                }
            })
            .collect();
    let runs = [
        LineSeries { name: "train loss", xs: &steps, ys: &train },
        LineSeries { name: "validation loss", xs: &val_steps, ys: &val },
        LineSeries { name: "train loss, lr 3e-3", xs: &steps, ys: &high_lr },
    ];
    for (format, extension) in [(Format::Png, "png"), (Format::Svg, "svg")] {
        let figure = line_chart("Loss of two runs", &runs, "step", "cross-entropy loss", AxisScale::Log10, format)?;
        write(folder, &format!("line_chart_loss.{extension}"), &figure.data, &figure.alt_text)?;
    }
    Ok(())
}

/// Per-layer gradient norms after three steps: large early, the embeddings' small, one
/// frozen layer's 0.
fn gradient_norms(folder: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let layers = transformer_layers();
    let norms = |step: f64| -> Vec<f32> {
        layers
            .iter()
            .enumerate()
            .map(|(row, layer)| {
                if layer.contains("layers.2.self_attn.k_proj") {
                    0.0
                } else if layer.contains("embed") {
                    (2e-4 / step.sqrt()) as f32
                } else {
                    ((1.0 + 0.5 * (row as f64).sin()) * 0.3 / step.sqrt() * (1.0 + row as f64 / 10.0)) as f32
                }
            })
            .collect()
    };
    let (early, middle, late) = (norms(10.0), norms(100.0), norms(1000.0));
    let series = [
        ChartSeries { name: "step 10", values: &early },
        ChartSeries { name: "step 100", values: &middle },
        ChartSeries { name: "step 1000", values: &late },
    ];
    for (format, extension) in [(Format::Png, "png"), (Format::Svg, "svg")] {
        let figure = step_chart_scaled("Gradient norm per layer", &layers, &series, "‖gradient‖₂", None, AxisScale::Log10, format)?;
        write(folder, &format!("step_chart_log.{extension}"), &figure.data, &figure.alt_text)?;
    }
    Ok(())
}

/// A loss landscape over two PCA directions, with the trajectory that reached the
/// checkpoint at (0, 0) and its first point outside the grid.
fn landscape(folder: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let axis: Vec<f64> = (0..=50).map(|index| -1.0 + 2.0 * index as f64 / 50.0).collect();
    let ys: Vec<f64> = (0..=40).map(|index| -0.8 + 1.6 * index as f64 / 40.0).collect();
    let loss = |x: f64, y: f64| {
        let (u, v) = (0.8 * x + 0.6 * y, -0.6 * x + 0.8 * y);
        0.35 + 1.2 * u * u + 4.0 * v * v + 0.25 * (4.0 * x).sin() * (3.0 * y).cos() + 0.15 * x
    };
    let values: Vec<f64> = ys.iter().flat_map(|&y| axis.iter().map(move |&x| loss(x, y))).collect();
    let trajectory: Vec<(f64, f64)> = (0..=10)
        .map(|epoch| {
            let t = epoch as f64 / 10.0;
            let radius = 1.4 * (1.0 - t).powf(1.5);
            let angle = 2.4 + 2.5 * t;
            (radius * angle.cos(), radius * angle.sin() * 0.6)
        })
        .collect();
    let labels: Vec<String> = (0..=10).map(|epoch| format!("epoch {epoch}")).collect();
    let paths = [PlotPath { name: "SGD trajectory", points: &trajectory, point_labels: &labels }];
    for (format, extension) in [(Format::Png, "png"), (Format::Svg, "svg")] {
        let figure =
            contour_plot("Loss landscape around the checkpoint", &axis, &ys, &values, &paths, "PC 1 (62% of variance)", "PC 2 (21%)", format)?;
        write(folder, &format!("contour.{extension}"), &figure.data, &figure.alt_text)?;
    }
    Ok(())
}

/// The relative change of every layer's weights between two checkpoints.
fn weight_change(folder: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let layers = transformer_layers();
    let change: Vec<f64> = layers
        .iter()
        .enumerate()
        .map(|(row, layer)| {
            if layer.contains("embed") {
                2e-4
            } else if layer == "lm_head" {
                0.0
            } else {
                0.02 + 0.015 * (row as f64 * 1.3).sin() + if layer.contains("layers.4.mlp") { 0.2 } else { 0.0 }
            }
        })
        .collect();
    for (format, extension) in [(Format::Png, "png"), (Format::Svg, "svg")] {
        let figure = bar_chart("Relative weight change, step 1000 to 2000", &layers, &change, "‖ΔW‖ / ‖W‖", AxisScale::Linear, format)?;
        write(folder, &format!("bar_chart.{extension}"), &figure.data, &figure.alt_text)?;
    }
    let figure = bar_chart("Relative weight change, log axis", &layers, &change, "‖ΔW‖ / ‖W‖", AxisScale::Log10, Format::Png)?;
    write(folder, "bar_chart_log.png", &figure.data, &figure.alt_text)?;
    Ok(())
}

/// Harder inputs, to check the layout holds: many rows, negative bars, missing loss
/// values, a path that leaves the grid.
fn edge_cases(folder: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let rows: Vec<String> = (0..300).map(|row| format!("backbone.stages.{}.blocks.{}.mlp.fc{}", row / 60, row / 2 % 30, row % 2 + 1)).collect();
    let steps: Vec<String> = (0..80).map(|step| format!("{}k", step * 5)).collect();
    let values: Vec<f32> = (0..300 * 80).map(|index| ((index / 80) as f32 * 0.05).sin() + (index % 80) as f32 / 40.0).collect();
    let figure = matrix_heat_map("Many rows, linear, band", &rows, &steps, &values, ColourScale::Linear, "value", Some((0.0, 1.5)), Format::Png)?;
    write(folder, "edge_heat_map_many_rows.png", &figure.data, &figure.alt_text)?;

    let layers: Vec<String> = (0..200).map(|layer| format!("encoder.layer.{layer}.attention.output.dense")).collect();
    let change: Vec<f64> = (0..200).map(|layer| (layer as f64 * 0.13).sin() * 0.02).collect();
    let figure = bar_chart("Many bars, both signs", &layers, &change, "signed change", AxisScale::Linear, Format::Png)?;
    write(folder, "edge_bar_chart_many.png", &figure.data, &figure.alt_text)?;

    let axis: Vec<f64> = (0..=30).map(|index| -3.0 + 0.2 * index as f64).collect();
    let values: Vec<f64> =
        axis.iter().flat_map(|&y| axis.iter().map(move |&x| if x > 2.0 && y > 1.5 { f64::NAN } else { (x * x + y * y + 0.01).ln() + 5.0 })).collect();
    let wander: Vec<(f64, f64)> = (0..25)
        .map(|step| {
            let t = step as f64 / 24.0;
            (4.0 - 6.0 * t, -3.5 + 5.0 * t * t)
        })
        .collect();
    let second: Vec<(f64, f64)> = vec![(-2.5, 2.5), (-1.5, 1.2), (-0.6, 0.5), (-0.1, 0.1)];
    let labels: Vec<String> = (0..4).map(|index| format!("ckpt {index}")).collect();
    let paths = [PlotPath { name: "run A", points: &wander, point_labels: &[] }, PlotPath { name: "run B", points: &second, point_labels: &labels }];
    let figure = contour_plot("Missing corner, paths leaving the grid", &axis, &axis, &values, &paths, "direction 1", "direction 2", Format::Png)?;
    write(folder, "edge_contour.png", &figure.data, &figure.alt_text)?;

    let one_x = [5.0];
    let one_y = [0.3];
    let figure = line_chart("One point", &[LineSeries { name: "loss", xs: &one_x, ys: &one_y }], "step", "loss", AxisScale::Linear, Format::Png)?;
    write(folder, "edge_line_chart_one_point.png", &figure.data, &figure.alt_text)?;
    Ok(())
}
