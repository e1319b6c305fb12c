//! `step_chart` as the daemon calls it: sizes in both formats, the legend, step labels
//! (upright, turned, thinned) as SVG text, the zero line, alt text and errors.

use layerlens_render::{step_chart, ChartSeries, Format, RenderError};

fn png_size(data: &[u8]) -> (u32, u32) {
    let decoded = image::load_from_memory(data).expect("the PNG decodes");
    (decoded.width(), decoded.height())
}

fn svg_text(figure: &layerlens_render::Figure) -> String {
    assert_eq!(figure.mime, "image/svg+xml");
    let text = String::from_utf8(figure.data.clone()).unwrap();
    assert!(text.starts_with("<svg") && text.ends_with("</svg>"));
    text
}

/// `count` module paths like a ResNet's, from the output backwards.
fn module_paths(count: usize) -> Vec<String> {
    (0..count)
        .map(|step| if step == 0 { "fc".to_string() } else { format!("layer{}.{}.conv{}", 4 - step / 16 % 4, step / 3 % 4, step % 3 + 1) })
        .collect()
}

const SALIENCY: [f32; 4] = [1.0, 0.62, 0.15, -0.04];
const GRADIENTS: [f32; 4] = [0.98, 0.81, 0.44, 0.21];
const GRAD_CAM: [f32; 4] = [0.9, 0.3, -0.2, -0.5];

fn series(count: usize) -> Vec<ChartSeries<'static>> {
    [("saliency", &SALIENCY), ("integrated_gradients", &GRADIENTS), ("grad_cam", &GRAD_CAM)]
        .into_iter()
        .take(count)
        .map(|(name, values)| ChartSeries { name, values: values.as_slice() })
        .collect()
}

fn labels(names: &[&str]) -> Vec<String> {
    names.iter().map(|name| name.to_string()).collect()
}

#[test]
fn sizes_follow_steps_and_legend_in_both_formats() {
    // Margins 12 on each side and a 28 px title line around the chart; the chart is the
    // value axis (64) + plot + 14 wide, and legend rows (18 each + 4) + caption line 22
    // + plot 240 + step labels 24 high. The plot is 16 px per step, within 400..960.
    let horizontal = |plot: u32, legend: u32| (24 + 64 + plot + 14, 24 + 28 + legend + 22 + 240 + 24);
    // Steps, series, expected size.
    let cases: &[(usize, usize, (u32, u32))] =
        &[(1, 1, horizontal(400, 0)), (4, 1, horizontal(400, 0)), (4, 2, horizontal(400, 22)), (4, 3, horizontal(400, 22))];
    for &(steps, count, size) in cases {
        let step_labels = labels(&["fc", "layer4", "layer3", "conv1"][..steps]);
        let data: Vec<Vec<f32>> = series(count).iter().map(|line| line.values[..steps].to_vec()).collect();
        let lines: Vec<ChartSeries<'_>> = series(count).iter().zip(&data).map(|(line, values)| ChartSeries { name: line.name, values }).collect();
        let png = step_chart("sanity check", &step_labels, &lines, "Spearman", Some((-1.0, 1.0)), Format::Png).unwrap();
        assert_eq!(png.mime, "image/png");
        assert_eq!(png_size(&png.data), size, "{steps} steps, {count} series");
        let svg = svg_text(&step_chart("sanity check", &step_labels, &lines, "Spearman", Some((-1.0, 1.0)), Format::Svg).unwrap());
        assert!(svg.contains(&format!("width=\"{}\" height=\"{}\"", size.0, size.1)), "{steps} steps, {count} series");
    }
    // Many long module paths: the plot stops growing at 960 px and the labels are turned,
    // which takes more room under the plot (and left of it for the first labels).
    let step_labels = module_paths(60);
    let values: Vec<f32> = (0..60).map(|step| 1.0 - step as f32 / 30.0).collect();
    let line = [ChartSeries { name: "saliency", values: &values }];
    let png = step_chart("sanity check", &step_labels, &line, "Spearman", Some((-1.0, 1.0)), Format::Png).unwrap();
    let (width, height) = png_size(&png.data);
    assert!((24 + 64 + 960 + 14..24 + 160 + 960 + 14).contains(&width), "{width}");
    assert!(height > 24 + 28 + 22 + 240 + 24 + 30, "{height}");
    let svg = svg_text(&step_chart("sanity check", &step_labels, &line, "Spearman", Some((-1.0, 1.0)), Format::Svg).unwrap());
    assert!(svg.contains(&format!("width=\"{width}\" height=\"{height}\"")), "SVG and PNG agree on the size");
}

#[test]
fn legend_only_with_several_series() {
    let step_labels = labels(&["fc", "layer4", "layer3", "conv1"]);
    for count in 1..=3 {
        let svg = svg_text(&step_chart("sanity check", &step_labels, &series(count), "Spearman", None, Format::Svg).unwrap());
        for line in series(3) {
            let named = svg.contains(&format!(">{}</text>", line.name));
            let in_chart = series(count).iter().any(|shown| shown.name == line.name);
            assert_eq!(named, in_chart && count > 1, "{count} series: legend entry {}", line.name);
        }
        // One polyline per series, in distinct colours.
        let colours: std::collections::BTreeSet<&str> =
            svg.match_indices("<polyline").map(|(at, _)| svg[at..].split("stroke=\"").nth(1).unwrap().split('"').next().unwrap()).collect();
        assert_eq!(svg.matches("<polyline").count(), count);
        assert_eq!(colours.len(), count, "{colours:?}");
    }
}

#[test]
fn step_labels_are_svg_text_upright_turned_or_thinned() {
    // Few short labels: upright, every one.
    let step_labels = labels(&["classifier.3", "layer4.1.conv2", "layer3.0.conv1", "conv1"]);
    let svg = svg_text(&step_chart("sanity check", &step_labels, &series(2), "Spearman ρ", Some((-1.0, 1.0)), Format::Svg).unwrap());
    for label in step_labels.iter().map(String::as_str).chain(["sanity check", "Spearman ρ", "-1.0", "0", "1.0"]) {
        assert!(svg.contains(&format!(">{label}</text>")), "{label} missing");
    }
    assert!(!svg.contains("rotate("), "short labels stay upright");

    // Many steps: turned labels, every one up to 60 steps (16 px each), then every k-th.
    // Steps, labelled steps, unlabelled steps.
    let cases: &[(usize, &[usize], &[usize])] = &[(30, &[0, 1, 29], &[]), (60, &[0, 1, 59], &[]), (120, &[0, 2, 118], &[1, 119])];
    for &(steps, labelled, unlabelled) in cases {
        let step_labels: Vec<String> = (0..steps).map(|step| format!("blocks.{step}.attn.proj")).collect();
        let values: Vec<f32> = (0..steps).map(|step| (step as f32 / 7.0).sin()).collect();
        let line = [ChartSeries { name: "saliency", values: &values }];
        let svg = svg_text(&step_chart("sanity check", &step_labels, &line, "Spearman", Some((-1.0, 1.0)), Format::Svg).unwrap());
        let shown = |step: usize| svg.contains(&format!(">{}</text>", step_labels[step]));
        assert!(labelled.iter().all(|&step| shown(step)), "{steps} steps");
        assert!(!unlabelled.iter().any(|&step| shown(step)), "{steps} steps");
        let turned = svg.matches("transform=\"rotate(-45 ").count();
        assert_eq!(turned, steps.min(60), "{steps} steps: every label is turned, at most 60 shown");
    }
}

#[test]
fn dashed_zero_line_only_when_zero_is_on_the_axis() {
    let step_labels = labels(&["fc", "layer4", "layer3", "conv1"]);
    let positive = [0.9f32, 0.8, 0.7, 0.6];
    // y range, values, whether a dashed line is drawn.
    type Case<'a> = (Option<(f32, f32)>, &'a [f32], bool);
    let cases: &[Case<'_>] =
        &[(Some((-1.0, 1.0)), &positive, true), (Some((0.5, 1.0)), &positive, false), (None, &positive, false), (None, &SALIENCY, true)];
    for &(range, values, dashed) in cases {
        let line = [ChartSeries { name: "saliency", values }];
        let svg = svg_text(&step_chart("sanity check", &step_labels, &line, "Spearman", range, Format::Svg).unwrap());
        assert_eq!(svg.contains("stroke-dasharray"), dashed, "{range:?} {values:?}");
    }
}

#[test]
fn alt_text_names_title_series_and_their_first_and_last_values() {
    let step_labels = labels(&["classifier.3", "layer4.1.conv2", "layer3.0.conv1", "conv1"]);
    let figure = step_chart("Spearman after randomisation", &step_labels, &series(2), "Spearman ρ", Some((-1.0, 1.0)), Format::Png).unwrap();
    assert_eq!(
        figure.alt_text,
        "Spearman after randomisation: line chart of 2 series over 4 steps, from classifier.3 to conv1; Spearman ρ axis fixed \
         from -1 to 1. saliency: 1 at classifier.3 to -0.04 at conv1; integrated_gradients: 0.98 at classifier.3 to 0.21 at conv1"
    );
    // Values beyond a fixed range are cut off, and the alt text says so.
    let wide = [1.5f32, 0.5, -2.0, 0.0];
    let figure = step_chart("t", &step_labels, &[ChartSeries { name: "s", values: &wide }], "y", Some((-1.0, 1.0)), Format::Svg).unwrap();
    assert!(
        figure.alt_text.contains("2 values outside the axis are cut off") && figure.alt_text.contains("s: 1.5 at classifier.3 to 0 at conv1"),
        "{}",
        figure.alt_text
    );
    // A fitted axis and a single step.
    let one = [0.25f32];
    let figure = step_chart("t", &labels(&["fc"]), &[ChartSeries { name: "s", values: &one }], "y", None, Format::Png).unwrap();
    assert!(
        figure.alt_text.starts_with("t: line chart of 1 series over 1 step (fc); y axis from ") && figure.alt_text.ends_with("s: 0.25 at fc"),
        "{}",
        figure.alt_text
    );
}

#[test]
fn bad_data_and_ranges_are_errors() {
    let step_labels = labels(&["fc", "layer4", "layer3", "conv1"]);
    let short = [0.1f32, 0.2];
    let not_finite = [0.1f32, f32::NAN, 0.3, 0.4];
    let infinite = [0.1f32, 0.2, 0.3, f32::INFINITY];
    let good = [ChartSeries { name: "saliency", values: &SALIENCY }];
    // Labels, series, y range, the message of the error.
    type Case<'a> = (&'a [String], Vec<ChartSeries<'a>>, Option<(f32, f32)>, &'a str);
    let cases: Vec<Case<'_>> = vec![
        (&step_labels, vec![], None, "cannot render a figure: a step chart needs at least one series"),
        (&[], vec![ChartSeries { name: "saliency", values: &[] }], None, "cannot render a figure: a step chart needs at least one step label"),
        (
            &step_labels,
            vec![good[0], ChartSeries { name: "occlusion", values: &short }],
            None,
            "cannot render a figure: series \"occlusion\" has 2 values for 4 step labels",
        ),
        (
            &step_labels,
            vec![ChartSeries { name: "s", values: &not_finite }],
            None,
            "cannot render a figure: series \"s\" has a non-finite value (NaN) at step 1 (\"layer4\")",
        ),
        (
            &step_labels,
            vec![ChartSeries { name: "s", values: &infinite }],
            None,
            "cannot render a figure: series \"s\" has a non-finite value (inf) at step 3 (\"conv1\")",
        ),
        (&step_labels, good.to_vec(), Some((1.0, -1.0)), "invalid figure options: y_range must be finite with low below high, got (1, -1)"),
        (&step_labels, good.to_vec(), Some((0.0, f32::NAN)), "invalid figure options: y_range must be finite with low below high, got (0, NaN)"),
    ];
    for (step_labels, lines, range, message) in cases {
        for format in [Format::Png, Format::Svg] {
            let error = step_chart("t", step_labels, &lines, "y", range, format).unwrap_err();
            let is_data = matches!(error, RenderError::BadData(_));
            assert_eq!(is_data, message.starts_with("cannot render"), "{error:?}");
            assert_eq!(error.to_string(), message);
            assert!(!message.ends_with('.'));
        }
    }
}
