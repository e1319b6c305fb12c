use layerlens_render::{step_chart, ChartSeries, Format};
fn main() {
    let out = std::env::args().nth(1).unwrap();
    let labels: Vec<String> = ["classifier.3", "layer4.1.conv2", "layer3.0.conv1", "conv1"].iter().map(|s| s.to_string()).collect();
    let a = [1.0f32, 0.62, 0.15, -0.04];
    let b = [0.98f32, 0.81, 0.44, 0.21];
    let s = [ChartSeries { name: "saliency", values: &a }, ChartSeries { name: "integrated_gradients", values: &b }];
    let f = step_chart("Spearman correlation after each randomisation step", &labels, &s, "Spearman ρ", Some((-1.0, 1.0)), Format::Png).unwrap();
    std::fs::write(format!("{out}/four.png"), &f.data).unwrap();
    println!("{}", f.alt_text);
    let f = step_chart("Spearman correlation after each randomisation step", &labels, &s, "Spearman ρ", Some((-1.0, 1.0)), Format::Svg).unwrap();
    std::fs::write(format!("{out}/four.svg"), &f.data).unwrap();
    let short: Vec<String> = ["a", "b", "c", "d"].iter().map(|s| s.to_string()).collect();
    let f = step_chart("one series, fitted", &short, &s[..1], "value", None, Format::Png).unwrap();
    std::fs::write(format!("{out}/one.png"), &f.data).unwrap();
    println!("{}", f.alt_text);
    let n = 60;
    let labels: Vec<String> = (0..n).map(|i| format!("features.denseblock{}.denselayer{}.conv2", i / 16 + 1, i % 16 + 1)).collect();
    let vals: Vec<Vec<f32>> = (0..3).map(|k| (0..n).map(|i| (1.0 - i as f32 / 40.0 * (k as f32 + 1.0) * 0.5).max(-0.3) + 0.05 * ((i * 7 + k) % 5) as f32).collect()).collect();
    let names = ["saliency", "integrated_gradients", "grad_cam"];
    let s: Vec<ChartSeries> = (0..3).map(|k| ChartSeries { name: names[k], values: &vals[k] }).collect();
    let f = step_chart("60 steps, cascading randomisation", &labels, &s, "Spearman ρ", Some((-0.5, 1.0)), Format::Png).unwrap();
    std::fs::write(format!("{out}/sixty.png"), &f.data).unwrap();
    println!("{}", f.alt_text);
    let n = 120;
    let labels: Vec<String> = (0..n).map(|i| format!("layer{}.{}.conv{}", i / 30 + 1, i % 30, i % 3 + 1)).collect();
    let v: Vec<f32> = (0..n).map(|i| (i as f32 / 10.0).sin() * 1.3).collect();
    let f = step_chart("120 steps, clipped", &labels, &[ChartSeries { name: "x", values: &v }], "Spearman ρ", Some((-1.0, 1.0)), Format::Png).unwrap();
    std::fs::write(format!("{out}/many.png"), &f.data).unwrap();
    println!("{}", f.alt_text);
}
#[allow(dead_code)]
fn crop() {}
