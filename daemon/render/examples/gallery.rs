//! Writes a gallery of figures (every image method and sign, Grad-CAM upsampling, bar
//! chart, line plot, method grid, step charts; PNG and SVG) into a folder, to look at by eye:
//! `cargo run -p layerlens-render --example gallery -- /tmp/layerlens-gallery`.

use layerlens_render::{
    attribution_figure, method_grid, step_chart, AttributionFigure, ChartSeries, FigureOptions, Format, GridPanel, Sign, VisualMethod,
};
use std::path::{Path, PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let folder = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "layerlens-gallery".to_string()));
    std::fs::create_dir_all(&folder)?;
    let (shape, input, attribution) = synthetic_image(32);
    for method in VisualMethod::ALL {
        for sign in Sign::ALL {
            let options = FigureOptions { method, sign, ..FigureOptions::default() };
            let figure = AttributionFigure {
                input_shape: &shape,
                input: &input,
                attribution_shape: &shape,
                attribution: &attribution,
                title: "integrated_gradients, target 7",
                options,
            };
            match attribution_figure(&figure, Format::Png) {
                Ok(rendered) => write(&folder, &format!("image-{method}-{sign}.png"), &rendered.data, &rendered.alt_text)?,
                Err(error) => println!("image-{method}-{sign}: {error}"),
            }
        }
    }
    let figure = AttributionFigure {
        input_shape: &shape,
        input: &input,
        attribution_shape: &shape,
        attribution: &attribution,
        title: "integrated_gradients, target 7",
        options: FigureOptions::default(),
    };
    let svg = attribution_figure(&figure, Format::Svg)?;
    write(&folder, "image-auto.svg", &svg.data, &svg.alt_text)?;

    // A Grad-CAM map, (1, 1, 4, 4), over the 32×32 input.
    let cam_shape = [1i64, 1, 4, 4];
    let cam: Vec<f32> = (0..16)
        .map(|i| {
            if i == 5 || i == 6 {
                1.0
            } else if i == 9 {
                0.5
            } else {
                0.0
            }
        })
        .collect();
    let grad_cam = AttributionFigure {
        input_shape: &shape,
        input: &input,
        attribution_shape: &cam_shape,
        attribution: &cam,
        title: "grad_cam, target 7",
        options: FigureOptions { method: VisualMethod::BlendedHeatMap, ..FigureOptions::default() },
    };
    let rendered = attribution_figure(&grad_cam, Format::Png)?;
    write(&folder, "grad-cam-blended.png", &rendered.data, &rendered.alt_text)?;

    let grid_panels = [
        GridPanel { title: "saliency", attribution_shape: &shape, attribution: &attribution },
        GridPanel { title: "integrated_gradients", attribution_shape: &shape, attribution: &attribution },
        GridPanel { title: "grad_cam", attribution_shape: &cam_shape, attribution: &cam },
    ];
    let grid = method_grid(&shape, &input, &grid_panels, &FigureOptions::default(), Format::Png)?;
    write(&folder, "grid.png", &grid.data, &grid.alt_text)?;
    let grid = method_grid(&shape, &input, &grid_panels, &FigureOptions { sign: Sign::All, ..FigureOptions::default() }, Format::Svg)?;
    write(&folder, "grid-all.svg", &grid.data, &grid.alt_text)?;

    let tabular_shape = [1i64, 13];
    let tabular: Vec<f32> = (0..13).map(|i| ((i * 7 % 13) as f32 - 6.0) * 0.013).collect();
    for sign in [Sign::All, Sign::AbsoluteValue] {
        let figure = AttributionFigure {
            input_shape: &tabular_shape,
            input: &tabular,
            attribution_shape: &tabular_shape,
            attribution: &tabular,
            title: "feature_ablation, target 1",
            options: FigureOptions { sign, ..FigureOptions::default() },
        };
        let rendered = attribution_figure(&figure, Format::Png)?;
        write(&folder, &format!("tabular-{sign}.png"), &rendered.data, &rendered.alt_text)?;
    }
    // An 8×8 grey "digit" (a ring) in [0, 16] as sklearn's digits are, signed attribution.
    let digit_shape = [1i64, 1, 8, 8];
    let digit: Vec<f32> = (0..64)
        .map(|i| {
            let (y, x) = ((i / 8) as f32 - 3.5, (i % 8) as f32 - 3.5);
            if (x * x + y * y).sqrt() > 1.5 && (x * x + y * y).sqrt() < 3.2 {
                16.0
            } else {
                0.0
            }
        })
        .collect();
    let digit_attribution: Vec<f32> = digit.iter().enumerate().map(|(i, v)| v * 0.01 * if i % 8 < 4 { 1.0 } else { -0.5 }).collect();
    let figure = AttributionFigure {
        input_shape: &digit_shape,
        input: &digit,
        attribution_shape: &digit_shape,
        attribution: &digit_attribution,
        title: "input_x_gradient, target 0",
        options: FigureOptions { sign: Sign::All, ..FigureOptions::default() },
    };
    let rendered = attribution_figure(&figure, Format::Png)?;
    write(&folder, "digit-auto-all.png", &rendered.data, &rendered.alt_text)?;

    // ImageNet size, and a long 1-D signal, to see the cost of large inputs.
    let (large_shape, large_input, large_attribution) = synthetic_image(224);
    let started = std::time::Instant::now();
    let figure = AttributionFigure {
        input_shape: &large_shape,
        input: &large_input,
        attribution_shape: &large_shape,
        attribution: &large_attribution,
        title: "saliency, target 281",
        options: FigureOptions::default(),
    };
    let rendered = attribution_figure(&figure, Format::Png)?;
    write(&folder, "image-224-auto.png", &rendered.data, &rendered.alt_text)?;
    println!("224x224 auto figure: {:?}", started.elapsed());
    let long_shape = [1i64, 200_000];
    let long: Vec<f32> = (0..200_000).map(|i| ((i as f32) / 5000.0).sin() + if i == 123_456 { 4.0 } else { 0.0 }).collect();
    let started = std::time::Instant::now();
    let figure = AttributionFigure {
        input_shape: &long_shape,
        input: &long,
        attribution_shape: &long_shape,
        attribution: &long,
        title: "saliency over 200000 samples",
        options: FigureOptions { sign: Sign::All, ..FigureOptions::default() },
    };
    let rendered = attribution_figure(&figure, Format::Png)?;
    write(&folder, "sequence-long.png", &rendered.data, &rendered.alt_text)?;
    println!("200000-point line plot: {:?}", started.elapsed());

    let sequence_shape = [1i64, 120, 8];
    let sequence: Vec<f32> = (0..960).map(|i| ((i / 8) as f32 / 9.0).sin() * 0.02 + if i / 8 == 70 { 0.05 } else { 0.0 }).collect();
    let figure = AttributionFigure {
        input_shape: &sequence_shape,
        input: &sequence,
        attribution_shape: &sequence_shape,
        attribution: &sequence,
        title: "saliency over tokens",
        options: FigureOptions { sign: Sign::All, ..FigureOptions::default() },
    };
    let rendered = attribution_figure(&figure, Format::Png)?;
    write(&folder, "sequence-all.png", &rendered.data, &rendered.alt_text)?;
    let rendered = attribution_figure(&figure, Format::Svg)?;
    write(&folder, "sequence-all.svg", &rendered.data, &rendered.alt_text)?;

    // Sanity check: Spearman correlation after each cascading randomisation step, for a
    // few steps with short labels and for 60 long module paths (turned labels).
    let steps: Vec<String> = ["classifier.3", "layer4.1.conv2", "layer3.0.conv1", "conv1"].iter().map(|step| step.to_string()).collect();
    let (saliency, gradients) = ([1.0f32, 0.62, 0.15, -0.04], [0.98f32, 0.81, 0.44, 0.21]);
    let series = [ChartSeries { name: "saliency", values: &saliency }, ChartSeries { name: "integrated_gradients", values: &gradients }];
    for (format, name) in [(Format::Png, "sanity-check.png"), (Format::Svg, "sanity-check.svg")] {
        let rendered =
            step_chart("Spearman correlation after each randomisation step", &steps, &series, "Spearman \u{3c1}", Some((-1.0, 1.0)), format)?;
        write(&folder, name, &rendered.data, &rendered.alt_text)?;
    }
    let steps: Vec<String> = (0..60).map(|step| format!("features.denseblock{}.denselayer{}.conv2", 4 - step / 16, 16 - step % 16)).collect();
    let curves: Vec<Vec<f32>> =
        (1..=3).map(|k| (0..60).map(|step| (1.0 - step as f32 * k as f32 / 50.0).max(-0.3) + 0.04 * ((step * 7 + k) % 5) as f32).collect()).collect();
    let series: Vec<ChartSeries<'_>> =
        ["saliency", "integrated_gradients", "grad_cam"].iter().zip(&curves).map(|(name, values)| ChartSeries { name, values }).collect();
    let rendered = step_chart("60 randomisation steps", &steps, &series, "Spearman \u{3c1}", None, Format::Png)?;
    write(&folder, "sanity-check-60.png", &rendered.data, &rendered.alt_text)?;
    Ok(())
}

/// A normalised RGB image (values around 0, like a model input) of a bright disc on a
/// gradient, and an attribution that is strong and positive on the disc's edge, weakly
/// negative at the bottom left, with a little noise.
fn synthetic_image(side: usize) -> (Vec<i64>, Vec<f32>, Vec<f32>) {
    let plane = side * side;
    let mut input = vec![0.0f32; 3 * plane];
    let mut attribution = vec![0.0f32; 3 * plane];
    let centre = side as f32 * 0.55;
    for y in 0..side {
        for x in 0..side {
            let distance = ((x as f32 - centre).powi(2) + (y as f32 - centre * 0.8).powi(2)).sqrt();
            let disc = if distance < side as f32 * 0.25 { 1.5 } else { 0.0 };
            let edge = (-(distance - side as f32 * 0.25).powi(2) / 4.0).exp();
            let corner = (-((x as f32 - 4.0).powi(2) + (y as f32 - side as f32 + 5.0).powi(2)) / 18.0).exp();
            let noise = (((x * 31 + y * 17) % 13) as f32 - 6.0) * 0.003;
            for channel in 0..3 {
                let index = channel * plane + y * side + x;
                input[index] = disc * [1.0, 0.6, 0.2][channel] + x as f32 / side as f32 * [0.2, 0.5, 1.0][channel] - 0.8;
                attribution[index] = 0.08 * edge - 0.05 * corner + noise;
            }
        }
    }
    (vec![1, 3, side as i64, side as i64], input, attribution)
}

fn write(folder: &Path, name: &str, data: &[u8], alt_text: &str) -> std::io::Result<()> {
    std::fs::write(folder.join(name), data)?;
    println!("{name}: {alt_text}");
    Ok(())
}
