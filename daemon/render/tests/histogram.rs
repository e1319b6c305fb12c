//! `histogram_grid` as the daemon calls it: the grid's size in both formats, titles and
//! tick labels as SVG text, linear and log count axes, empty panels, alt text, errors.

use layerlens_render::{histogram_grid, Figure, Format, HistogramPanel, RenderError};

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

/// The heights of the histogram bars (rects in the bar colour), left to right.
fn bar_heights(svg: &str) -> Vec<f32> {
    svg.split("<rect ")
        .filter(|rect| rect.contains("fill=\"#4e79a7\""))
        .map(|rect| rect.split("height=\"").nth(1).unwrap().split('"').next().unwrap().parse().unwrap())
        .collect()
}

const EDGES: [f32; 5] = [-0.2, -0.1, 0.0, 0.1, 0.2];
const COUNTS: [u64; 4] = [1, 10, 100, 1000];

fn panels(count: usize, subtitle: &'static str) -> Vec<HistogramPanel<'static>> {
    const TITLES: [&str; 9] =
        ["conv1.weight", "conv1.bias", "bn1.weight", "bn1.bias", "layer1.0.conv1.weight", "fc.weight", "fc.bias", "relu", "pool"];
    TITLES[..count].iter().map(|&title| HistogramPanel { title, edges: &EDGES, counts: &COUNTS, subtitle }).collect()
}

#[test]
fn panels_fill_a_grid_of_up_to_four_columns() {
    // Margins 12 and a 28 px title line around the grid; each panel is its title
    // (22 px, 34 with subtitles) + plot 120 + x axis 20 high, rows 14 apart, columns 16.
    // Panels, subtitle, columns, rows.
    let cases: &[(usize, &str, u32, u32)] =
        &[(1, "", 1, 1), (2, "", 2, 1), (4, "", 4, 1), (5, "", 3, 2), (7, "mean 0, std 0.1", 4, 2), (9, "", 3, 3)];
    let one = histogram_grid("w", &panels(1, ""), false, Format::Png).unwrap();
    let panel_width = png_size(&one.data).0 - 24;
    for &(count, subtitle, columns, rows) in cases {
        let panel_height = if subtitle.is_empty() { 22 + 120 + 20 } else { 34 + 120 + 20 };
        let size = (24 + columns * panel_width + (columns - 1) * 16, 24 + 28 + rows * panel_height + (rows - 1) * 14);
        let png = histogram_grid("w", &panels(count, subtitle), false, Format::Png).unwrap();
        assert_eq!(png.mime, "image/png");
        assert_eq!(png_size(&png.data), size, "{count} panels");
        let svg = svg_text(&histogram_grid("w", &panels(count, subtitle), false, Format::Svg).unwrap());
        assert!(svg.contains(&format!("width=\"{}\" height=\"{}\"", size.0, size.1)), "{count} panels: SVG and PNG agree");
    }
}

#[test]
fn titles_subtitles_and_ticks_are_svg_text() {
    let grid = panels(3, "mean 0.01, std 0.2, 3% zeros");
    let svg = svg_text(&histogram_grid("layer1.0 parameters", &grid, false, Format::Svg).unwrap());
    let expected = [
        "layer1.0 parameters",
        "count per bin",
        "conv1.weight",
        "conv1.bias",
        "bn1.weight",
        "mean 0.01, std 0.2, 3% zeros",
        "-0.2",
        "0.2",
        "0",
        "1000",
    ];
    for text in expected {
        assert!(svg.contains(&format!(">{text}</text>")), "{text} missing");
    }
    // A dashed line marks 0 inside the value range.
    assert_eq!(svg.matches("stroke-dasharray").count(), 3);
    // Long titles keep their end.
    let long = [HistogramPanel { title: "features.denseblock4.denselayer16.norm2.running_var", edges: &EDGES, counts: &COUNTS, subtitle: "" }];
    let svg = svg_text(&histogram_grid("w", &long, false, Format::Svg).unwrap());
    assert!(svg.contains("\u{2026}") && svg.contains("norm2.running_var</text>"), "{svg}");
}

#[test]
fn log_counts_give_each_decade_the_same_height() {
    let grid = panels(1, "");
    let log = svg_text(&histogram_grid("w", &grid, true, Format::Svg).unwrap());
    for label in ["1", "10", "100", "1000", "count per bin, log scale"] {
        assert!(log.contains(&format!(">{label}</text>")), "{label} missing");
    }
    // Counts 1, 10, 100, 1000 on an axis from 0.5 to 1000: 120 px over log10(2000).
    let heights = bar_heights(&log);
    assert_eq!(heights.len(), 4);
    let decade = 120.0 / 2000f32.log10();
    for pair in heights.windows(2) {
        assert!((pair[1] - pair[0] - decade).abs() <= 1.0, "{heights:?}");
    }
    assert!(heights[0] >= 10.0, "a single value still shows: {heights:?}");
    // The same counts on a linear axis from 0 to 1000.
    let linear = bar_heights(&svg_text(&histogram_grid("w", &grid, false, Format::Svg).unwrap()));
    assert_eq!(linear, [1.0, 1.0, 12.0, 120.0], "a bin with any count is at least a pixel high");
    let alt = histogram_grid("w", &grid, true, Format::Png).unwrap().alt_text;
    assert!(alt.contains("counts on a log scale"), "{alt}");
}

#[test]
fn empty_bins_and_empty_histograms() {
    let counts = [0, 5, 0, 2];
    let zeros = [0, 0, 0, 0];
    let grid = [
        HistogramPanel { title: "sparse", edges: &EDGES, counts: &counts, subtitle: "" },
        HistogramPanel { title: "dead", edges: &EDGES, counts: &zeros, subtitle: "" },
    ];
    for log in [false, true] {
        let figure = histogram_grid("activations", &grid, log, Format::Svg).unwrap();
        let svg = svg_text(&figure);
        assert_eq!(bar_heights(&svg).len(), 2, "no bars for empty bins");
        assert_eq!(svg.matches(">all counts are zero</text>").count(), 1);
        let alt = &figure.alt_text;
        assert!(alt.starts_with("activations: histograms of 2 tensors"), "{alt}");
        assert!(alt.contains("sparse: 4 bins from -0.2 to 0.2, 7 values, most (5) in -0.1 to 0"), "{alt}");
        assert!(alt.contains("dead: 4 bins from -0.2 to 0.2, all counts zero (empty axes)"), "{alt}");
        let png = histogram_grid("activations", &grid, log, Format::Png).unwrap();
        assert!(png_size(&png.data).0 > 400);
    }
    // Edges that span nothing (a constant tensor) still draw.
    let constant = [HistogramPanel { title: "bias", edges: &[0.0, 0.0], counts: &[64], subtitle: "" }];
    let svg = svg_text(&histogram_grid("w", &constant, false, Format::Svg).unwrap());
    assert_eq!(bar_heights(&svg).len(), 1);
}

#[test]
fn inconsistent_or_empty_input_is_refused() {
    let nan = [0.0, f32::NAN, 1.0];
    let descending = [0.0, 1.0, 0.5];
    let cases: Vec<(Vec<HistogramPanel<'_>>, &str)> = vec![
        (vec![], "a histogram grid needs at least one panel"),
        (vec![HistogramPanel { title: "w", edges: &[0.0], counts: &[], subtitle: "" }], "histogram panel \"w\" has no bins"),
        (
            vec![HistogramPanel { title: "w", edges: &[0.0, 1.0], counts: &[1, 2], subtitle: "" }],
            "histogram panel \"w\" has 2 bin edges for 2 counts; there must be one edge more than counts",
        ),
        (
            vec![HistogramPanel { title: "w", edges: &nan, counts: &[1, 2], subtitle: "" }],
            "histogram panel \"w\" has a non-finite bin edge (NaN) at index 1",
        ),
        (
            vec![HistogramPanel { title: "w", edges: &descending, counts: &[1, 2], subtitle: "" }],
            "histogram panel \"w\" has bin edges that are not ascending: 0.5 at index 2 after 1",
        ),
    ];
    for (grid, expected) in cases {
        for format in [Format::Png, Format::Svg] {
            match histogram_grid("w", &grid, false, format) {
                Err(RenderError::BadData(message)) => {
                    assert_eq!(message, expected);
                    assert!(!message.ends_with('.'));
                }
                other => panic!("{expected}: got {other:?}"),
            }
        }
    }
}
