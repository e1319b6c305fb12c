use layerlens_render::*;

fn save(name: &str, figure: Figure) {
    std::fs::write(format!("/tmp/preview/{name}.png"), &figure.data).unwrap();
    println!("{name}: {}", figure.alt_text);
}

fn gauss(n: usize, seed: u64, scale: f32, shift: f32) -> Vec<f32> {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let mut next = || { state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407); ((state >> 33) as f32) / (1u64 << 31) as f32 };
    (0..n).map(|_| { let (u, v) = (next().max(1e-7), next()); shift + scale * (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos() }).collect()
}

fn hist(values: &[f32], bins: usize) -> (Vec<f32>, Vec<u64>) {
    let lo = values.iter().cloned().fold(f32::INFINITY, f32::min);
    let hi = values.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let edges: Vec<f32> = (0..=bins).map(|i| lo + (hi - lo) * i as f32 / bins as f32).collect();
    let mut counts = vec![0u64; bins];
    for &v in values { let b = (((v - lo) / (hi - lo)) * bins as f32) as usize; counts[b.min(bins - 1)] += 1; }
    (edges, counts)
}

#[test]
fn preview() {
    let w = gauss(20000, 1, 0.05, 0.0);
    let b = gauss(64, 2, 0.01, 0.02);
    let relu: Vec<f32> = gauss(50000, 3, 1.0, 0.2).into_iter().map(|v| v.max(0.0)).collect();
    let (we, wc) = hist(&w, 60);
    let (be, bc) = hist(&b, 20);
    let (re, rc) = hist(&relu, 300);
    let zero_edges = [0.0f32, 0.5, 1.0];
    let zero_counts = [0u64, 0];
    let panels = [
        HistogramPanel { title: "layer1.0.conv1.weight", edges: &we, counts: &wc, subtitle: "mean 0.0003, std 0.05, 0% zeros" },
        HistogramPanel { title: "layer1.0.conv1.bias", edges: &be, counts: &bc, subtitle: "mean 0.02, std 0.01" },
        HistogramPanel { title: "features.denseblock4.denselayer16.relu2 (output)", edges: &re, counts: &rc, subtitle: "mean 0.51, std 0.62, 42% zeros, some long text that overflows" },
        HistogramPanel { title: "layer1.0.bn1.running_var", edges: &zero_edges, counts: &zero_counts, subtitle: "" },
        HistogramPanel { title: "fc.weight", edges: &we, counts: &wc, subtitle: "" },
    ];
    save("hist_linear", histogram_grid("layer1.0 parameters", &panels, false, Format::Png).unwrap());
    save("hist_log", histogram_grid("layer1.0 parameters", &panels, true, Format::Png).unwrap());
    save("hist_one", histogram_grid("activations of layer3", &panels[2..3], true, Format::Png).unwrap());

    // RGB conv1 filters 64x3x7x7 with smooth structure
    let mut rgb = Vec::new();
    for o in 0..64 { for c in 0..3 { for y in 0..7 { for x in 0..7 {
        let (fx, fy) = (x as f32 - 3.0, y as f32 - 3.0);
        let angle = o as f32 * 0.4;
        let v = ((fx * angle.cos() + fy * angle.sin()) * (0.5 + (o % 5) as f32 * 0.3)).sin() * (-(fx*fx+fy*fy)/8.0).exp() * if c == o % 3 { 1.0 } else { 0.4 };
        rgb.push(v);
    }}}}
    save("filters_rgb", filter_grid("conv1.weight", &[64, 3, 7, 7], &rgb, Format::Png).unwrap());
    let g = gauss(64 * 64 * 9, 5, 0.1, 0.0);
    save("filters_grey", filter_grid("layer1.0.conv1.weight", &[64, 64, 3, 3], &g, Format::Png).unwrap());
    let g1 = gauss(32 * 25, 6, 0.1, 0.0);
    save("filters_mono", filter_grid("conv1.weight", &[32, 1, 5, 5], &g1, Format::Png).unwrap());
    let g2 = gauss(16 * 6 * 25, 7, 0.1, 0.0);
    save("filters_lenet", filter_grid("conv2.weight", &[16, 6, 5, 5], &g2, Format::Png).unwrap());
    let g3 = gauss(8 * 2 * 9, 8, 0.1, 0.0);
    save("filters_two", filter_grid("conv.weight", &[8, 2, 3, 3], &g3, Format::Png).unwrap());

    let labels: Vec<String> = ["conv1", "bn1", "relu", "maxpool", "layer1.0.conv1", "layer1.0.bn1", "layer1.0.relu", "layer1.0.conv2", "layer1.0.bn2", "layer1.0", "layer2.0.conv1", "layer2.0.bn1", "layer2.0.relu", "layer2.0.conv2", "layer2.0.bn2", "layer2.0.downsample.0", "layer2.0", "avgpool", "fc"].iter().map(|s| s.to_string()).collect();
    let n = labels.len();
    let mean: Vec<f32> = (0..n).map(|i| (i as f32 * 0.7).sin() * 0.5 + if i == 12 { 3.0 } else { 0.0 }).collect();
    let std: Vec<f32> = (0..n).map(|i| 0.5 + i as f32 * 0.3 + if i == 12 { 40.0 } else { 0.0 }).collect();
    let nonpos: Vec<f32> = (0..n).map(|i| if i % 3 == 2 { 0.0 } else { 0.3 + (i as f32 * 0.4).cos() * 0.2 }).collect();
    let sat: Vec<f32> = (0..n).map(|i| if i == 5 { 0.0 } else { 0.001 * (i + 1) as f32 }).collect();
    let series = [
        LayerStatSeries { name: "mean", values: &mean, log_scale: false },
        LayerStatSeries { name: "std", values: &std, log_scale: true },
        LayerStatSeries { name: "fraction ≤ 0", values: &nonpos, log_scale: false },
        LayerStatSeries { name: "fraction saturated", values: &sat, log_scale: true },
    ];
    save("stats", layer_stat_chart("activation statistics, resnet18", &labels, &series, &[12, 5], Format::Png).unwrap());
    save("stats_one", layer_stat_chart("activation std", &labels, &series[1..2], &[], Format::Png).unwrap());
    let many: Vec<String> = (0..150).map(|i| format!("encoder.layers.{}.mlp.fc{}", i / 2, i % 2 + 1)).collect();
    let m1: Vec<f32> = (0..150).map(|i| (i as f32 * 0.1).sin()).collect();
    let m2: Vec<f32> = (0..150).map(|i| 1.0 + i as f32 * 0.05).collect();
    let s2 = [LayerStatSeries { name: "mean", values: &m1, log_scale: false }, LayerStatSeries { name: "std", values: &m2, log_scale: true }];
    save("stats_many", layer_stat_chart("activation statistics, vit", &many, &s2, &[40, 41, 120], Format::Png).unwrap());
    let svg = layer_stat_chart("activation statistics, resnet18", &labels, &series, &[12, 5], Format::Svg).unwrap();
    std::fs::write("/tmp/preview/stats.svg", &svg.data).unwrap();
}
#[test]
fn svg_filter() {
    let g = (0..64 * 64 * 9).map(|i| ((i * 7919) % 101) as f32).collect::<Vec<_>>();
    std::fs::write("/tmp/preview/filters.svg", filter_grid("layer1.0.conv1.weight", &[64, 64, 3, 3], &g, Format::Svg).unwrap().data).unwrap();
}
