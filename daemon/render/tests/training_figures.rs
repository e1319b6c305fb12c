//! The figures of training runs as the daemon calls them: `matrix_heat_map`,
//! `line_chart`, `step_chart_scaled`, `contour_plot` and `bar_chart` render PNG and SVG
//! with their titles and labels as text, refuse bad data with a message that names the
//! problem, and say in their alt text what a reader needs.

use layerlens_render::{
    bar_chart, contour_plot, line_chart, matrix_heat_map, step_chart, step_chart_scaled, AxisScale, ChartSeries, ColourScale, Figure, Format,
    LineSeries, PlotPath, RenderError,
};

const PNG_MAGIC: &[u8] = b"\x89PNG\r\n\x1a\n";

/// The PNG's size, after checking its signature and that it decodes.
fn png_size(figure: &Figure) -> (u32, u32) {
    assert_eq!(figure.mime, "image/png");
    assert!(figure.data.starts_with(PNG_MAGIC), "PNG signature");
    let decoded = image::load_from_memory(&figure.data).expect("the PNG decodes");
    (decoded.width(), decoded.height())
}

fn svg_text(figure: &Figure) -> String {
    assert_eq!(figure.mime, "image/svg+xml");
    let text = String::from_utf8(figure.data.clone()).unwrap();
    assert!(text.starts_with("<svg") && text.ends_with("</svg>"));
    text
}

/// Both formats render, agree on the size, and the SVG has every one of `texts` as a
/// text element.
fn check_both(render: impl Fn(Format) -> Result<Figure, RenderError>, texts: &[&str]) -> Figure {
    let png = render(Format::Png).unwrap();
    let (width, height) = png_size(&png);
    let svg = render(Format::Svg).unwrap();
    let text = svg_text(&svg);
    assert!(text.contains(&format!("width=\"{width}\" height=\"{height}\"")), "SVG and PNG agree on the size {width}×{height}");
    for wanted in texts {
        assert!(text.contains(&format!(">{wanted}</text>")), "{wanted:?} missing from the SVG");
    }
    assert_eq!(png.alt_text, svg.alt_text);
    png
}

fn strings(names: &[&str]) -> Vec<String> {
    names.iter().map(|name| name.to_string()).collect()
}

/// `error` is BadData (or BadOptions) with exactly `message`.
fn check_error(error: RenderError, message: &str) {
    let is_data = matches!(error, RenderError::BadData(_));
    assert_eq!(is_data, message.starts_with("cannot render"), "{error:?}");
    assert_eq!(error.to_string(), message);
    assert!(!message.ends_with('.'));
}

// --- matrix_heat_map -----------------------------------------------------------------

const LAYERS: [&str; 3] = ["model.layers.0.self_attn.q_proj", "model.layers.0.mlp.down_proj", "lm_head"];

/// Update:weight ratios of three layers over four steps: the MLP too large at first,
/// the head too small once, one step of the query projection not logged.
#[rustfmt::skip]
const RATIOS: [f32; 12] = [
    1e-3, 2e-3, f32::NAN, 8e-4,
    0.2, 0.05, 3e-3, 1e-3,
    1e-3, 5e-5, 2e-3, 1e-3,
];

#[test]
fn heat_map_renders_with_labels_colour_bar_and_band() {
    let rows = strings(&LAYERS);
    let steps = strings(&["0", "100", "200", "300"]);
    let render =
        |format| matrix_heat_map("Update:weight ratio", &rows, &steps, &RATIOS, ColourScale::Log10, "update / weight", Some((1e-4, 1e-2)), format);
    let figure = check_both(
        render,
        &["Update:weight ratio", "lm_head", "model.layers.0.mlp.down_proj", "0", "300", "update / weight", "1e-4", "0.01", "missing", "outside band"],
    );
    let alt = &figure.alt_text;
    assert!(alt.contains("3 rows × 4 columns, log10 colour scale"), "{alt}");
    assert!(alt.contains("Largest 0.2 at row model.layers.0.mlp.down_proj, column 0; smallest 5.00e-5 at row lm_head, column 100"), "{alt}");
    assert!(alt.contains("1 cell missing"), "{alt}");
    // The worst row comes first: two cells above the band; then the head, one below.
    assert!(
        alt.contains(
            "3 cells (1 below, 2 above) in 2 rows of 3; most in model.layers.0.mlp.down_proj (2 of 4: 0 below, 2 above); lm_head (1 of 4: 1 below, 0 above)"
        ),
        "{alt}"
    );
    // Without a band: viridis, no outside column, and nothing about a band in words.
    let plain = matrix_heat_map("ratio", &rows, &steps, &RATIOS, ColourScale::Linear, "ratio", None, Format::Svg).unwrap();
    let text = svg_text(&plain);
    assert!(!text.contains(">outside band</text>") && !plain.alt_text.contains("band"), "{}", plain.alt_text);
}

#[test]
fn heat_map_thins_column_labels_and_keeps_the_end_of_long_rows() {
    let rows: Vec<String> = (0..40).map(|row| format!("encoder.transformer.blocks.{row}.attention.output.projection.weight")).collect();
    let steps: Vec<String> = (0..500).map(|step| (step * 10).to_string()).collect();
    let values: Vec<f32> = (0..40 * 500).map(|index| 1e-3 * (1.0 + (index % 500) as f32 / 100.0)).collect();
    let figure = matrix_heat_map("ratio", &rows, &steps, &values, ColourScale::Log10, "ratio", Some((1e-4, 3e-3)), Format::Svg).unwrap();
    let text = svg_text(&figure);
    // Every 50th step is labelled.
    assert!(text.contains(">0</text>") && text.contains(">500</text>") && text.contains(">4500</text>"));
    assert!(!text.contains(">10</text>") && !text.contains(">2490</text>"));
    // Long module paths keep their end after an ellipsis.
    assert!(text.contains("39.attention.output.projection.weight</text>") && text.contains(">\u{2026}"));
    assert!(!text.contains(">encoder.transformer.blocks.39"));
    // Cells above 3e-3 are outside: the later steps of every row.
    assert!(figure.alt_text.contains("in 40 rows of 40"), "{}", figure.alt_text);
}

#[test]
fn heat_map_refuses_bad_data_and_bands() {
    let rows = strings(&LAYERS);
    let steps = strings(&["0", "100", "200", "300"]);
    let mut infinite = RATIOS;
    infinite[5] = f32::INFINITY;
    let not_positive = [0.0f32, -1.0, f32::NAN];
    type Case<'a> = (&'a [String], &'a [String], &'a [f32], ColourScale, Option<(f32, f32)>, &'a str);
    let cases: &[Case<'_>] = &[
        (&[], &steps, &[], ColourScale::Linear, None, "cannot render a figure: a heat map needs at least one row and one column, got 0 rows and 4 columns"),
        (&rows, &steps, &RATIOS[..11], ColourScale::Linear, None, "cannot render a figure: a heat map of 3 rows × 4 columns needs 12 values (row-major), got 11"),
        (
            &rows,
            &steps,
            &infinite,
            ColourScale::Linear,
            None,
            "cannot render a figure: the heat map has an infinite value (inf) at row 1 (\"model.layers.0.mlp.down_proj\"), column 1 (\"100\"); use NaN for a missing cell",
        ),
        (
            &rows[..1],
            &steps[..3],
            &not_positive,
            ColourScale::Log10,
            None,
            "cannot render a figure: the heat map has no value to draw: all cells are NaN or not positive, and a log scale cannot show them",
        ),
        (&rows, &steps, &RATIOS, ColourScale::Linear, Some((1.0, 0.1)), "invalid figure options: the heat map's band must be finite with low below high, got (1, 0.1)"),
        (&rows, &steps, &RATIOS, ColourScale::Log10, Some((0.0, 0.1)), "invalid figure options: the heat map's band must be positive on a log scale, got (0, 0.1)"),
    ];
    for &(rows, steps, values, scale, band, message) in cases {
        for format in [Format::Png, Format::Svg] {
            check_error(matrix_heat_map("t", rows, steps, values, scale, "ratio", band, format).unwrap_err(), message);
        }
    }
}

// --- line_chart ----------------------------------------------------------------------

#[test]
fn line_chart_renders_several_runs_with_a_legend_on_a_log_axis() {
    let steps: Vec<f64> = (0..2000).map(f64::from).collect();
    let train: Vec<f64> = steps.iter().map(|step| 2.5 * (-step / 400.0).exp() + 0.3).collect();
    // The second run diverges: NaN from step 1500 breaks its line there.
    let diverged: Vec<f64> = steps.iter().map(|&step| if step < 1500.0 { 2.0 * (-step / 300.0).exp() + 0.5 } else { f64::NAN }).collect();
    let series = [LineSeries { name: "lr 1e-3", xs: &steps, ys: &train }, LineSeries { name: "lr 1e-2", xs: &steps, ys: &diverged }];
    let render = |format| line_chart("Training loss", &series, "step", "loss", AxisScale::Log10, format);
    let figure = check_both(render, &["Training loss", "lr 1e-3", "lr 1e-2", "step", "loss", "0", "1000", "0.1", "1", "10"]);
    let svg = svg_text(&render(Format::Svg).unwrap());
    // One line per run: long series are thinned, the NaN tail is left out.
    assert_eq!(svg.matches("<polyline").count(), 2);
    let alt = &figure.alt_text;
    assert!(alt.starts_with("Training loss: line chart of 2 series over step; loss log axis from 0.1 to 10."), "{alt}");
    assert!(
        alt.contains("lr 1e-3 (2000 points): first 2.8 at step 0, last 0.317 at step 1999, lowest 0.317 at step 1999, highest 2.8 at step 0"),
        "{alt}"
    );
    assert!(alt.contains("lr 1e-2 (1500 points): first 2.5 at step 0") && alt.contains("500 points not finite or ≤ 0, left out"), "{alt}");
}

#[test]
fn line_chart_breaks_lines_and_marks_few_points() {
    // A learning-rate schedule of 6 logged points, one missing: two runs and markers.
    let xs = [0.0, 100.0, 200.0, 300.0, 400.0, 500.0];
    let ys = [1e-4, 3e-4, f64::NAN, 2e-4, 1e-4, 5e-5];
    let series = [LineSeries { name: "learning rate", xs: &xs, ys: &ys }];
    let svg = svg_text(&line_chart("Learning rate", &series, "step", "lr", AxisScale::Linear, Format::Svg).unwrap());
    assert_eq!(svg.matches("<polyline").count(), 2, "the NaN breaks the line");
    // One marker (two circles: white ring and fill) per finite point, no legend.
    assert_eq!(svg.matches("<circle").count(), 2 * 5);
    assert!(!svg.contains(">learning rate</text>"), "no legend for one series");
    // On a log axis, y ≤ 0 is left out too.
    let zeros = [1.0, 0.0, 0.5];
    let figure = line_chart("t", &[LineSeries { name: "s", xs: &xs[..3], ys: &zeros }], "", "y", AxisScale::Log10, Format::Png).unwrap();
    assert!(
        figure.alt_text.contains("s (2 points): first 1 at x = 0, last 0.5 at x = 200") && figure.alt_text.contains("1 point not finite or ≤ 0"),
        "{}",
        figure.alt_text
    );
}

#[test]
fn line_chart_refuses_bad_data() {
    let xs = [0.0, 1.0, 2.0];
    let nan = [f64::NAN; 3];
    let negative = [-1.0, -2.0, 0.0];
    type Case<'a> = (Vec<LineSeries<'a>>, AxisScale, &'a str);
    let cases: Vec<Case<'_>> = vec![
        (vec![], AxisScale::Linear, "cannot render a figure: a line chart needs at least one series"),
        (
            vec![LineSeries { name: "loss", xs: &xs, ys: &xs[..2] }],
            AxisScale::Linear,
            "cannot render a figure: series \"loss\" has 3 x values for 2 y values",
        ),
        (vec![LineSeries { name: "loss", xs: &[], ys: &[] }], AxisScale::Linear, "cannot render a figure: series \"loss\" has no points"),
        (
            vec![LineSeries { name: "loss", xs: &xs, ys: &nan }],
            AxisScale::Linear,
            "cannot render a figure: the line chart has no point to draw: every point has a non-finite x or y",
        ),
        (
            vec![LineSeries { name: "loss", xs: &xs, ys: &negative }],
            AxisScale::Log10,
            "cannot render a figure: the line chart has no point to draw: every point has a non-finite x or y, or y ≤ 0 on the log axis",
        ),
    ];
    for (series, scale, message) in cases {
        for format in [Format::Png, Format::Svg] {
            check_error(line_chart("t", &series, "step", "loss", scale, format).unwrap_err(), message);
        }
    }
}

// --- step_chart_scaled ---------------------------------------------------------------

#[test]
fn step_chart_scaled_overlays_gradient_norms_on_a_log_axis() {
    let layers = strings(&["embed", "block.0", "block.1", "head"]);
    let (early, late) = ([2e-4f32, 0.3, 0.5, 1.2], [1e-5f32, 0.02, 0.0, 0.08]);
    let series = [ChartSeries { name: "step 10", values: &early }, ChartSeries { name: "step 1000", values: &late }];
    let render = |format| step_chart_scaled("Gradient norm per layer", &layers, &series, "‖grad‖", None, AxisScale::Log10, format);
    let figure = check_both(render, &["Gradient norm per layer", "embed", "head", "step 10", "step 1000", "‖grad‖", "1e-5", "1", "10"]);
    assert!(figure.alt_text.contains("‖grad‖ log axis from 1.00e-5 to 10; 1 value ≤ 0 drawn at the bottom edge"), "{}", figure.alt_text);
    let svg = svg_text(&render(Format::Svg).unwrap());
    // The 0 cuts the second line short (the last value stands alone, a marker); no
    // dashed zero line on a log axis.
    assert_eq!(svg.matches("<polyline").count(), 2);
    assert!(!svg.contains("stroke-dasharray"));
    // A log range must be positive.
    let error = step_chart_scaled("t", &layers, &series, "y", Some((0.0, 1.0)), AxisScale::Log10, Format::Png).unwrap_err();
    check_error(error, "invalid figure options: y_range must be positive on a log axis, got (0, 1)");
}

#[test]
fn step_chart_is_the_linear_step_chart_scaled() {
    let layers = strings(&["fc", "layer4", "layer3"]);
    let values = [0.9f32, -0.2, 0.4];
    let series = [ChartSeries { name: "s", values: &values }];
    for format in [Format::Png, Format::Svg] {
        let plain = step_chart("t", &layers, &series, "y", Some((-1.0, 1.0)), format).unwrap();
        let scaled = step_chart_scaled("t", &layers, &series, "y", Some((-1.0, 1.0)), AxisScale::Linear, format).unwrap();
        assert_eq!(plain, scaled);
    }
}

// --- contour_plot --------------------------------------------------------------------

/// A tilted bowl with its lowest point at (0.5, -0.25), on x in -2..2 and y in -1..1.
fn landscape() -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let xs: Vec<f64> = (0..=40).map(|index| -2.0 + 0.1 * index as f64).collect();
    let ys: Vec<f64> = (0..=20).map(|index| -1.0 + 0.1 * index as f64).collect();
    let values = ys.iter().flat_map(|&y| xs.iter().map(move |&x| 0.2 + (x - 0.5).powi(2) + 2.0 * (y + 0.25).powi(2))).collect();
    (xs, ys, values)
}

#[test]
fn contour_plot_renders_the_landscape_checkpoint_and_paths() {
    let (xs, ys, values) = landscape();
    // The trajectory starts outside the grid and ends at the checkpoint.
    let trajectory = [(-3.0, 1.5), (-1.5, 0.6), (-0.5, 0.2), (0.0, 0.0)];
    let labels = strings(&["epoch 0", "epoch 1", "epoch 2", "epoch 3"]);
    let paths = [PlotPath { name: "SGD", points: &trajectory, point_labels: &labels }];
    let render = |format| contour_plot("Loss landscape", &xs, &ys, &values, &paths, "PC 1", "PC 2", format);
    let figure = check_both(render, &["Loss landscape", "PC 1", "PC 2", "SGD", "checkpoint (0, 0)", "loss", "epoch 1", "epoch 3", "-2", "2", "1"]);
    let svg = svg_text(&render(Format::Svg).unwrap());
    assert!(!svg.contains(">epoch 0</text>"), "the label of a point outside the plot is left out");
    assert!(svg.contains("aria-label=\"loss landscape\""), "the filled map is an embedded picture");
    let alt = &figure.alt_text;
    assert!(
        alt.starts_with(
            "Loss landscape: loss landscape over PC 1 from -2 to 2 and PC 2 from -1 to 1 (41 × 21 grid); loss from 0.205 to 9.57; \
             lowest 0.205 at (0.5, -0.3). Contour lines at 9 levels from 1 to 9. Checkpoint at (0, 0), loss 0.575."
        ),
        "{alt}"
    );
    assert!(
        alt.contains("Path SGD: 4 points from (-3, 1.5) (epoch 0, outside the grid) to (0, 0) (epoch 3, loss 0.575); 1 point outside the plot."),
        "{alt}"
    );
}

#[test]
fn contour_plot_hatches_missing_values() {
    let (xs, ys, mut values) = landscape();
    for value in values.iter_mut().take(41 * 3) {
        *value = f64::NAN;
    }
    let figure = contour_plot("t", &xs, &ys, &values, &[], "x", "y", Format::Png).unwrap();
    png_size(&figure);
    assert!(figure.alt_text.contains("123 grid values not finite (hatched cells)"), "{}", figure.alt_text);
}

#[test]
fn contour_plot_refuses_bad_data() {
    let (xs, ys, values) = landscape();
    let nan = vec![f64::NAN; values.len()];
    let unordered: Vec<f64> = [0.0, 1.0, 0.5].into_iter().chain((3..41).map(f64::from)).collect();
    let labels = strings(&["a"]);
    let two = [(0.0, 0.0), (1.0, 1.0)];
    let not_finite = [(0.0, f64::INFINITY)];
    type Case<'a> = (&'a [f64], &'a [f64], &'a [f64], Vec<PlotPath<'a>>, &'a str);
    let cases: Vec<Case<'_>> = vec![
        (&xs[..1], &ys, &values, vec![], "cannot render a figure: a contour plot needs at least 2 xs, got 1"),
        (&unordered, &ys, &values, vec![], "cannot render a figure: xs must be strictly ascending: xs[2] = 0.5 follows 1"),
        (
            &xs,
            &ys,
            &values[1..],
            vec![],
            "cannot render a figure: a contour plot of 21 ys × 41 xs needs 861 values (row-major, one row per y), got 860",
        ),
        (&xs, &ys, &nan, vec![], "cannot render a figure: the contour plot has no finite value to draw"),
        (&xs, &ys, &values, vec![PlotPath { name: "SGD", points: &[], point_labels: &[] }], "cannot render a figure: path \"SGD\" has no points"),
        (
            &xs,
            &ys,
            &values,
            vec![PlotPath { name: "SGD", points: &not_finite, point_labels: &[] }],
            "cannot render a figure: path \"SGD\" has a point that is not finite ((0.0, inf)) at 0",
        ),
        (
            &xs,
            &ys,
            &values,
            vec![PlotPath { name: "SGD", points: &two, point_labels: &labels }],
            "cannot render a figure: path \"SGD\" has 1 point label for 2 points; give one per point or none",
        ),
    ];
    for (xs, ys, values, paths, message) in cases {
        for format in [Format::Png, Format::Svg] {
            check_error(contour_plot("t", xs, ys, values, &paths, "x", "y", format).unwrap_err(), message);
        }
    }
}

// --- bar_chart -----------------------------------------------------------------------

#[test]
fn bar_chart_renders_a_bar_per_layer() {
    let layers = strings(&["model.embed_tokens", "model.layers.0.mlp.down_proj", "lm_head"]);
    let change = [2e-4, 0.2, 0.0];
    let render = |format| bar_chart("Relative weight change", &layers, &change, "‖ΔW‖ / ‖W‖", AxisScale::Linear, format);
    let figure = check_both(render, &["Relative weight change", "‖ΔW‖ / ‖W‖", "model.embed_tokens", "lm_head", "0.2", "2.00e-4", "0", "0.05"]);
    assert_eq!(
        figure.alt_text,
        "Relative weight change: horizontal bar chart of ‖ΔW‖ / ‖W‖ for 3 labels, axis from 0 to 0.2. Largest 0.2 at \
         model.layers.0.mlp.down_proj; smallest 0 at lm_head."
    );
    // On a log axis the 0 has no bar, and the alt text says so.
    let log = bar_chart("t", &layers, &change, "change", AxisScale::Log10, Format::Svg).unwrap();
    assert!(log.alt_text.contains("log axis from 1.00e-4 to 1") && log.alt_text.contains("1 value ≤ 0 with no bar"), "{}", log.alt_text);
    let svg = svg_text(&log);
    assert!(svg.contains(">1e-4</text>") && svg.contains(">0.01</text>"));
}

#[test]
fn bar_chart_refuses_bad_data() {
    let layers = strings(&["a", "b"]);
    type Case<'a> = (&'a [String], &'a [f64], &'a str);
    let cases: &[Case<'_>] = &[
        (&[], &[], "cannot render a figure: a bar chart needs at least one label"),
        (&layers, &[1.0], "cannot render a figure: a bar chart has 1 value for 2 labels"),
        (&layers, &[1.0, f64::NAN], "cannot render a figure: the bar chart has a non-finite value (NaN) at 1 (\"b\")"),
    ];
    for &(labels, values, message) in cases {
        for format in [Format::Png, Format::Svg] {
            check_error(bar_chart("t", labels, values, "change", AxisScale::Linear, format).unwrap_err(), message);
        }
    }
}
