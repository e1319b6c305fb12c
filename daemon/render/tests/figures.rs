//! The figure API as the daemon calls it: every image method with every sign, charts
//! for tabular and sequence inputs, the method grid, PNG and SVG, errors and alt text.
//! Pixel-level checks of the methods live next to the code (`src/figure.rs`), where the
//! panel positions are known.

use layerlens_render::{attribution_figure, method_grid, AttributionFigure, FigureOptions, Format, GridPanel, RenderError, Sign, VisualMethod};

/// A 3-channel 6×6 image in [0, 1] and an attribution with both signs, strongest
/// (most negative) at row 4, column 1.
fn image_case() -> (Vec<i64>, Vec<f32>, Vec<f32>) {
    let shape = vec![1, 3, 6, 6];
    let input: Vec<f32> = (0..108).map(|v| (v % 36) as f32 / 36.0).collect();
    let mut attribution: Vec<f32> = (0..108).map(|v| ((v % 7) as f32 - 3.0) * 0.01).collect();
    for channel in 0..3 {
        attribution[channel * 36 + 4 * 6 + 1] = -0.5;
    }
    (shape, input, attribution)
}

fn figure<'a>(
    shape: &'a [i64],
    input: &'a [f32],
    attribution_shape: &'a [i64],
    attribution: &'a [f32],
    options: FigureOptions,
) -> AttributionFigure<'a> {
    AttributionFigure { input_shape: shape, input, attribution_shape, attribution, title: "saliency, target 3", options }
}

fn png_size(data: &[u8]) -> (u32, u32) {
    let decoded = image::load_from_memory(data).expect("the PNG decodes");
    (decoded.width(), decoded.height())
}

#[test]
fn every_method_and_sign_renders_or_gives_the_documented_error() {
    let (shape, input, attribution) = image_case();
    for method in VisualMethod::ALL {
        for sign in Sign::ALL {
            let options = FigureOptions { method, sign, ..FigureOptions::default() };
            let refused = sign == Sign::All && matches!(method, VisualMethod::MaskedImage | VisualMethod::AlphaScaling);
            for format in [Format::Png, Format::Svg] {
                let result = attribution_figure(&figure(&shape, &input, &shape, &attribution, options), format);
                match result {
                    Err(RenderError::BadOptions(message)) if refused => {
                        assert!(message.contains(&format!("{method} cannot show sign all")), "{message}");
                        assert!(!message.ends_with('.'), "{message}");
                    }
                    Ok(rendered) if !refused => {
                        match format {
                            Format::Png => {
                                assert_eq!(rendered.mime, "image/png");
                                let (width, height) = png_size(&rendered.data);
                                assert!(width >= 160 && height >= 160, "{method} {sign}: {width}x{height}");
                            }
                            Format::Svg => {
                                assert_eq!(rendered.mime, "image/svg+xml");
                                let text = String::from_utf8(rendered.data).unwrap();
                                assert!(text.starts_with("<svg") && text.ends_with("</svg>"));
                            }
                        }
                        // Alt text: the sign, where the strongest value is, the scale.
                        let alt = &rendered.alt_text;
                        assert!(alt.starts_with("saliency, target 3: "), "{alt}");
                        assert!(alt.contains(sign_words(sign)), "{method} {sign}: {alt}");
                        assert!(alt.contains("first batch row of input [1, 3, 6, 6]"), "{alt}");
                        if sign == Sign::Positive {
                            assert!(alt.contains("strongest at row"), "{alt}");
                        } else {
                            assert!(alt.contains("strongest at row 4, column 1 (-1.5)"), "{method} {sign}: {alt}");
                        }
                        assert!(alt.contains("outliers by cumulative sum"), "{alt}");
                    }
                    other => panic!("{method} {sign} {format:?}: unexpected {other:?}"),
                }
            }
        }
    }
}

fn sign_words(sign: Sign) -> &'static str {
    match sign {
        Sign::AbsoluteValue => "absolute value of the attribution",
        Sign::Positive => "positive attribution",
        Sign::Negative => "negative attribution",
        Sign::All => "signed attribution",
    }
}

#[test]
fn image_methods_need_an_image_input() {
    let shape = [1i64, 5];
    let values = [0.1f32, -0.2, 0.3, 0.0, 0.5];
    for method in [VisualMethod::BlendedHeatMap, VisualMethod::MaskedImage, VisualMethod::AlphaScaling, VisualMethod::OriginalImage] {
        let options = FigureOptions { method, ..FigureOptions::default() };
        match attribution_figure(&figure(&shape, &values, &shape, &values, options), Format::Png) {
            Err(RenderError::BadOptions(message)) => {
                assert!(message.contains("needs an image input") && message.contains("[1, 5]"), "{message}")
            }
            other => panic!("{method}: {other:?}"),
        }
    }
    // heat_map works on anything: a strip of the five values.
    let options = FigureOptions { method: VisualMethod::HeatMap, ..FigureOptions::default() };
    let heat = attribution_figure(&figure(&shape, &values, &shape, &values, options), Format::Png).unwrap();
    assert!(heat.alt_text.contains("heat map of 1\u{d7}5 values; absolute value of the attribution"), "{}", heat.alt_text);
}

#[test]
fn bad_options_and_shapes_are_errors() {
    let (shape, input, attribution) = image_case();
    let options = FigureOptions { outlier_percent: 101.0, ..FigureOptions::default() };
    assert!(matches!(attribution_figure(&figure(&shape, &input, &shape, &attribution, options), Format::Png), Err(RenderError::BadOptions(_))));
    let short = &attribution[..100];
    let error = attribution_figure(&figure(&shape, &input, &shape, short, FigureOptions::default()), Format::Png).unwrap_err();
    assert_eq!(
        error.to_string(),
        "cannot render a figure: attribution shape [1, 3, 6, 6] does not match its 100 values (expected positive dimensions, batch first)"
    );
    let error = method_grid(&shape, &input, &[], &FigureOptions::default(), Format::Png).unwrap_err();
    assert!(matches!(error, RenderError::BadData(_)), "{error}");
}

/// Attribution shape, number of values, words the alt text must contain, PNG size.
type ChartCase<'a> = (&'a [i64], usize, &'a str, (u32, u32));

#[test]
fn tabular_inputs_get_a_bar_chart_and_sequences_a_line_plot() {
    // Sizes: margins 12 on each side, title line 28; a chart panel is 64 (value axis) +
    // plot + 14 wide and 20 + 16 + 220 + 38 = 294 high. Bar charts give 24 px per bar,
    // at least 240 and at most 720; line plots are 640 wide.
    let cases: &[ChartCase<'_>] = &[
        (&[2, 10], 20, "bar chart of 10 feature attributions", (24 + 64 + 240 + 14, 24 + 28 + 294)),
        (&[1, 30], 30, "bar chart of 30 feature attributions", (24 + 64 + 720 + 14, 24 + 28 + 294)),
        (&[1, 500], 500, "line plot of attribution over 500 positions", (24 + 64 + 640 + 14, 24 + 28 + 294)),
        (
            &[1, 12, 4],
            48,
            "line plot of attribution over 12 positions; signed attribution, summed over 4 dimensions",
            (24 + 64 + 640 + 14, 24 + 28 + 294),
        ),
    ];
    for &(shape, len, words, size) in cases {
        let values: Vec<f32> = (0..len).map(|v| ((v * 37 % 11) as f32 - 5.0) / 10.0).collect();
        let options = FigureOptions { sign: Sign::All, ..FigureOptions::default() };
        let png = attribution_figure(&figure(shape, &values, shape, &values, options), Format::Png).unwrap();
        assert_eq!(png_size(&png.data), size, "{shape:?}");
        assert!(png.alt_text.contains(words) && png.alt_text.contains("strongest at "), "{}", png.alt_text);
        let svg = String::from_utf8(attribution_figure(&figure(shape, &values, shape, &values, options), Format::Svg).unwrap().data).unwrap();
        assert!(svg.contains(&format!("width=\"{}\" height=\"{}\"", size.0, size.1)), "{shape:?}");
        assert!(svg.contains(">attribution</text>"), "the value axis is captioned");
    }
}

#[test]
fn svg_keeps_titles_as_text() {
    let (shape, input, attribution) = image_case();
    let svg = attribution_figure(&figure(&shape, &input, &shape, &attribution, FigureOptions::default()), Format::Svg).unwrap();
    let text = String::from_utf8(svg.data).unwrap();
    for title in ["saliency, target 3", "input", "heat map", "blended heat map", "|attribution|"] {
        assert!(text.contains(&format!(">{title}</text>")), "{title} missing");
    }
    assert!(text.contains("<title>saliency, target 3: input, heat map and heat map blended"), "alt text is the SVG title");
    assert!(text.contains("data:image/png;base64,"));
}

#[test]
fn method_grid_shows_the_input_then_one_titled_panel_per_method() {
    let (shape, input, attribution) = image_case();
    let grad_cam_shape = [1i64, 1, 3, 3];
    let grad_cam = [0.0f32, 0.2, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.1];
    let panels = [
        GridPanel { title: "saliency", attribution_shape: &shape, attribution: &attribution },
        GridPanel { title: "integrated_gradients", attribution_shape: &shape, attribution: &attribution },
        GridPanel { title: "grad_cam", attribution_shape: &grad_cam_shape, attribution: &grad_cam },
    ];
    let options = FigureOptions::default();
    let svg = method_grid(&shape, &input, &panels, &options, Format::Svg).unwrap();
    let text = String::from_utf8(svg.data).unwrap();
    for title in ["blended heat map per method", "input", "saliency", "integrated_gradients", "grad_cam"] {
        assert!(text.contains(&format!(">{title}</text>")), "{title} missing");
    }
    assert!(svg.alt_text.contains("grad_cam: heat map blended over the grey input"), "{}", svg.alt_text);
    assert!(svg.alt_text.contains("upsampled bilinearly from 3\u{d7}3"), "{}", svg.alt_text);
    // The 6×6 input enlarged 26 times is 156 px; method panels are 160 wide to fit their
    // colour bars; three gaps of 16, margins of 12.
    let png = method_grid(&shape, &input, &panels, &options, Format::Png).unwrap();
    assert_eq!(png_size(&png.data).0, 24 + 156 + 3 * 160 + 3 * 16);
}
