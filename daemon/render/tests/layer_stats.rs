//! `layer_stat_chart` as the daemon calls it: stacked panels and their size in both
//! formats, layer labels and series names as SVG text, log panels, red rings at flagged
//! layers, alt text and errors.

use layerlens_render::{layer_stat_chart, Figure, Format, LayerStatSeries, RenderError};

fn png_size(data: &[u8]) -> (u32, u32) {
    let decoded = image::load_from_memory(data).expect("the PNG decodes");
    (decoded.width(), decoded.height())
}

fn svg_text(figure: &Figure) -> String {
    assert_eq!(figure.mime, "image/svg+xml");
    let text = String::from_utf8(figure.data.clone()).unwrap();
    assert!(text.starts_with("<svg") && text.ends_with("</svg>"));
    text
}

fn labels(names: &[&str]) -> Vec<String> {
    names.iter().map(|name| name.to_string()).collect()
}

const LAYERS: [&str; 4] = ["conv1", "relu", "layer1", "fc"];
const MEAN: [f32; 4] = [0.1, 0.4, 0.2, 0.3];
const STD: [f32; 4] = [0.5, 2.0, 40.0, 1.0];
const NEGATIVE: [f32; 4] = [0.5, 0.0, 0.45, 0.2];
const SATURATED: [f32; 4] = [0.0, 0.01, 0.2, 0.001];

fn series(count: usize) -> Vec<LayerStatSeries<'static>> {
    [("mean", &MEAN, false), ("std", &STD, true), ("fraction ≤ 0", &NEGATIVE, false), ("fraction saturated", &SATURATED, true)]
        .into_iter()
        .take(count)
        .map(|(name, values, log_scale)| LayerStatSeries { name, values: values.as_slice(), log_scale })
        .collect()
}

/// Red-ring circles (the flag colour) in an SVG.
fn rings(svg: &str) -> usize {
    svg.split("<circle ").skip(1).filter(|circle| circle.split('>').next().unwrap().contains("fill=\"#d6191c\"")).count()
}

#[test]
fn panels_stack_one_per_series() {
    // Margins 12 and a 28 px title line around the chart; the chart is the value axis
    // (56) + plot (400, 16 px per layer at least) + 14 wide, and the ring key (20, with
    // flags), one panel per series (caption 22 + plot: 200 alone, 110 each with more,
    // 10 apart), and the upright layer labels (24) high.
    let size = |count: u32, flags: bool| {
        let plot = if count == 1 { 200 } else { 110 };
        (24 + 56 + 400 + 14, 24 + 28 + if flags { 20 } else { 0 } + count * (22 + plot) + (count - 1) * 10 + 24)
    };
    // Series, flagged layers.
    let cases: &[(usize, &[usize])] = &[(1, &[]), (1, &[2]), (2, &[]), (4, &[1, 2]), (4, &[2, 2])];
    for &(count, flagged) in cases {
        let expected = size(count as u32, !flagged.is_empty());
        let png = layer_stat_chart("activations", &labels(&LAYERS), &series(count), flagged, Format::Png).unwrap();
        assert_eq!(png.mime, "image/png");
        assert_eq!(png_size(&png.data), expected, "{count} series, flagged {flagged:?}");
        let svg = svg_text(&layer_stat_chart("activations", &labels(&LAYERS), &series(count), flagged, Format::Svg).unwrap());
        assert!(svg.contains(&format!("width=\"{}\" height=\"{}\"", expected.0, expected.1)), "{count} series: SVG and PNG agree");
        // One line per series (the saturated fraction's 0 is its first value, so its log
        // panel's line starts after it rather than breaking).
        assert_eq!(svg.matches("<polyline").count(), count);
    }
}

#[test]
fn labels_names_and_rings_are_drawn() {
    let svg = svg_text(&layer_stat_chart("activation statistics", &labels(&LAYERS), &series(4), &[2], Format::Svg).unwrap());
    let texts =
        ["activation statistics", "flagged as anomalous", "mean", "std", "fraction ≤ 0", "fraction saturated", "log scale", "conv1", "relu", "fc"];
    for text in texts {
        assert!(svg.contains(&format!(">{text}</text>")), "{text} missing");
    }
    // The flagged layer's label is red; a ring per series at it, and one in the key.
    assert!(svg.contains("fill=\"#d6191c\">layer1</text>"));
    assert_eq!(rings(&svg), 4 + 1);
    let unflagged = svg_text(&layer_stat_chart("activation statistics", &labels(&LAYERS), &series(4), &[], Format::Svg).unwrap());
    assert_eq!(rings(&unflagged), 0);
    assert!(!unflagged.contains("flagged as anomalous"));
    // Log panels have decade ticks: std from 0.1 to 100.
    for tick in ["0.1", "1", "10", "100"] {
        assert!(svg.contains(&format!(">{tick}</text>")), "{tick} missing");
    }
}

#[test]
fn many_layers_turn_and_thin_their_labels_but_keep_the_flagged_ones() {
    let layers: Vec<String> = (0..200).map(|layer| format!("blocks.{layer}.mlp.act")).collect();
    let values: Vec<f32> = (0..200).map(|layer| (layer as f32 / 9.0).sin()).collect();
    let line = [LayerStatSeries { name: "mean", values: &values, log_scale: false }];
    let figure = layer_stat_chart("vit", &layers, &line, &[100], Format::Svg).unwrap();
    let svg = svg_text(&figure);
    let shown = |layer: usize| svg.contains(&format!(">{}</text>", layers[layer]));
    assert!(shown(0) && shown(3) && shown(100) && shown(198), "every third layer and the flagged one");
    assert!(!shown(1) && !shown(99) && !shown(102), "thinned, and neighbours make way for the flagged layer");
    assert!(svg.contains("transform=\"rotate(-45 "));
    let (width, _) = png_size(&layer_stat_chart("vit", &layers, &line, &[100], Format::Png).unwrap().data);
    assert!((24 + 56 + 960 + 14..24 + 200 + 960 + 14).contains(&width), "{width}");
}

#[test]
fn alt_text_describes_panels_and_flags() {
    let figure = layer_stat_chart("activation statistics", &labels(&LAYERS), &series(4), &[2, 1], Format::Png).unwrap();
    let alt = &figure.alt_text;
    let parts = [
        "activation statistics: per-layer statistics over 4 layers in call order, from conv1 to fc, 4 panels stacked on a shared layer axis.",
        "mean (axis 0 to 0.6): lowest 0.1 at conv1, highest 0.4 at relu.",
        "std (log axis 0.1 to 100): lowest 0.5 at conv1, highest 40 at layer1.",
        "fraction saturated (log axis 1.00e-3 to 1): lowest 0 at conv1, highest 0.2 at layer1; 1 value ≤ 0 drawn at the bottom edge.",
        "Flagged as anomalous (red rings), 2 layers: relu (layer 1: mean 0.4, std 2, fraction ≤ 0 0, fraction saturated 0.01); \
         layer1 (layer 2: mean 0.2, std 40, fraction ≤ 0 0.45, fraction saturated 0.2)",
    ];
    for part in parts {
        assert!(alt.contains(part), "{part}\nnot in\n{alt}");
    }
    let quiet = layer_stat_chart("activation statistics", &labels(&LAYERS), &series(1), &[], Format::Png).unwrap();
    assert!(quiet.alt_text.ends_with("No layers are flagged"), "{}", quiet.alt_text);
}

#[test]
fn inconsistent_or_empty_input_is_refused() {
    let short = [1.0f32, 2.0];
    let nan = [0.0, f32::NAN, 1.0, 2.0];
    let layers = labels(&LAYERS);
    // Labels, series, flagged, message.
    type Case<'a> = (Vec<String>, Vec<LayerStatSeries<'a>>, Vec<usize>, &'a str);
    let cases: Vec<Case<'_>> = vec![
        (vec![], series(1), vec![], "a layer statistics chart needs at least one layer label"),
        (layers.clone(), vec![], vec![], "a layer statistics chart needs at least one series"),
        (
            layers.clone(),
            vec![LayerStatSeries { name: "mean", values: &short, log_scale: false }],
            vec![],
            "series \"mean\" has 2 values for 4 layer labels",
        ),
        (
            layers.clone(),
            vec![LayerStatSeries { name: "std", values: &nan, log_scale: true }],
            vec![],
            "series \"std\" has a non-finite value (NaN) at layer 1 (\"relu\")",
        ),
        (layers.clone(), series(2), vec![1, 4], "flagged layer index 4 is out of range for 4 layers"),
    ];
    for (layer_labels, lines, flagged, expected) in cases {
        for format in [Format::Png, Format::Svg] {
            match layer_stat_chart("w", &layer_labels, &lines, &flagged, format) {
                Err(RenderError::BadData(message)) => {
                    assert_eq!(message, expected);
                    assert!(!message.ends_with('.'));
                }
                other => panic!("{expected}: got {other:?}"),
            }
        }
    }
}
