//! `filter_grid` as the daemon calls it: grey tiles per (filter, input channel) with a
//! known weight at its expected grey level and place, RGB tiles for 3-channel filters,
//! the 64-tile cap and its note, SVG text, alt text and errors.

use layerlens_render::{filter_grid, Figure, Format, RenderError, MAX_FILTER_TILES};

fn png(figure: &Figure) -> image::RgbImage {
    assert_eq!(figure.mime, "image/png");
    image::load_from_memory(&figure.data).expect("the PNG decodes").to_rgb8()
}

fn svg_text(figure: &Figure) -> String {
    assert_eq!(figure.mime, "image/svg+xml");
    let text = String::from_utf8(figure.data.clone()).unwrap();
    assert!(text.starts_with("<svg") && text.ends_with("</svg>"));
    text
}

/// The first pixel of this colour in reading order.
fn find(picture: &image::RgbImage, colour: [u8; 3]) -> (u32, u32) {
    let index = picture.pixels().position(|pixel| pixel.0 == colour).expect("the colour is drawn");
    (index as u32 % picture.width(), index as u32 / picture.width())
}

/// The size of the embedded tile mosaic in an SVG.
fn mosaic_size(svg: &str) -> (u32, u32) {
    let image = svg.split("<image ").nth(1).expect("one mosaic");
    assert!(image.contains("aria-label=\"filters\""));
    let attribute = |name: &str| image.split(&format!("{name}=\"")).nth(1).unwrap().split('"').next().unwrap().parse().unwrap();
    (attribute("width"), attribute("height"))
}

#[test]
fn a_known_weight_lands_at_its_grey_level_in_its_tile() {
    // 2 filters × 2 input channels of 3×3. Each filter's minimum (-1, black) is its first
    // weight, its maximum (1, white) its last; filter 1, channel 1, row 2, column 1 is
    // 0.5, three quarters of the way from black to white.
    let mut weights = vec![0.0f32; 2 * 2 * 9];
    for filter in 0..2 {
        weights[filter * 18] = -1.0;
        weights[filter * 18 + 17] = 1.0;
    }
    weights[18 + 9 + 2 * 3 + 1] = 0.5;
    let figure = filter_grid("conv2.weight", &[2, 2, 3, 3], &weights, Format::Png).unwrap();
    let picture = png(&figure);
    // Text is never pure black, so the first black pixel is the top-left corner of the
    // first tile. Tiles are 3×3 upscaled 11× (33 px), 2 px apart within a filter and
    // 8 px between filters, both filters in one row: filter 1, channel 1 starts at
    // 33 + 2 + 33 + 8 + 33 + 2 = 111.
    let (left, top) = find(&picture, [0, 0, 0]);
    let grey = |x: u32, y: u32| picture.get_pixel(left + x, top + y).0;
    let expected = (1.5f32 / 2.0 * 255.0).round() as u8;
    for (dx, dy) in [(0, 0), (5, 5), (10, 10)] {
        assert_eq!(grey(111 + 11 + dx, 22 + dy), [expected; 3], "inside the weight's 11×11 block");
    }
    assert_eq!(grey(111 + 11 - 1, 22), [128; 3], "the weight next to it is 0, mid grey");
    assert_eq!(grey(10, 10), [0; 3], "filter 0's minimum");
    assert_eq!(grey(33 + 2 + 22, 22).map(|c| c > 250), [true; 3], "filter 0's maximum, white");
    assert_eq!(grey(33, 5), [255; 3], "the gap between tiles");
    assert_eq!(grey(76, 0), [0; 3], "filter 1's minimum opens its first tile");
}

#[test]
fn three_channel_filters_are_rgb_tiles() {
    // Filter 0: red at its maximum, green at its minimum, blue half way; filter 1 the
    // other way round in red and green, blue at the minimum. 2×2 kernels: 32 px tiles.
    let mut weights = Vec::new();
    for (red, green, blue) in [(1.0f32, -1.0f32, 0.0f32), (-2.0, 2.0, -2.0)] {
        for value in [red, green, blue] {
            weights.extend([value; 4]);
        }
    }
    let figure = filter_grid("conv1.weight", &[2, 3, 2, 2], &weights, Format::Png).unwrap();
    let picture = png(&figure);
    let (left, top) = find(&picture, [255, 0, 128]);
    assert_eq!(picture.get_pixel(left + 31, top + 31).0, [255, 0, 128]);
    assert_eq!(picture.get_pixel(left + 34, top).0, [0, 255, 0], "the second tile, 2 px on");
    assert_eq!(picture.get_pixel(left + 65, top + 31).0, [0, 255, 0]);
    assert!(figure.alt_text.contains("2 RGB tiles, one per filter"), "{}", figure.alt_text);
    let svg = svg_text(&filter_grid("conv1.weight", &[2, 3, 2, 2], &weights, Format::Svg).unwrap());
    assert_eq!(mosaic_size(&svg), (32 + 2 + 32, 32));
    assert!(svg.contains(">2 filters of 2\u{d7}2 over 3 input channels as RGB, upscaled 16\u{d7}</text>"));
}

#[test]
fn more_than_64_tiles_are_cut_with_a_note() {
    // Shape, mosaic size, note about what was left out (none when all fit).
    type Case = (&'static [i64], (u32, u32), Option<&'static str>);
    let cases: &[Case] = &[
        // 8 × 8 RGB tiles of 32 px, 2 px apart.
        (&[64, 3, 1, 1], (270, 270), None),
        (&[100, 3, 1, 1], (270, 270), Some("first 64 filters: 64 of 100 tiles shown, 36 left out")),
        // A row of 8 input channels per filter (33 px tiles 2 apart), 8 filters 4 apart.
        (&[10, 10, 3, 3], (278, 292), Some("first 8 filters \u{d7} 8 channels: 64 of 100 tiles shown, 36 left out")),
        (&[64, 64, 3, 3], (278, 292), Some("first 8 filters \u{d7} 8 channels: 64 of 4096 tiles shown, 4032 left out")),
        // Single-channel filters in a square grid: 6 × 6 for 32, 8 × 8 for 512.
        (&[32, 1, 5, 5], (6 * 35 + 5 * 2, 6 * 35 + 5 * 2), None),
        (&[512, 1, 5, 5], (8 * 35 + 7 * 2, 8 * 35 + 7 * 2), Some("first 64 filters: 64 of 512 tiles shown, 448 left out")),
        // Six channels: ten filters of six tiles.
        (&[16, 6, 5, 5], (6 * 35 + 5 * 2, 10 * 35 + 9 * 4), Some("first 10 filters: 60 of 96 tiles shown, 36 left out")),
    ];
    for &(shape, size, note) in cases {
        let count = shape.iter().product::<i64>() as usize;
        let weights: Vec<f32> = (0..count).map(|index| (index % 7) as f32 - 3.0).collect();
        let figure = filter_grid("conv.weight", shape, &weights, Format::Svg).unwrap();
        let svg = svg_text(&figure);
        assert_eq!(mosaic_size(&svg), size, "{shape:?}");
        match note {
            Some(note) => {
                assert!(svg.contains(&format!(">{note}</text>")), "{shape:?}: {note} missing");
                let left_out = note.split(", ").last().unwrap();
                assert!(figure.alt_text.contains(&left_out.replace(" left out", " of ")), "{shape:?}: {}", figure.alt_text);
            }
            None => {
                assert!(!svg.contains("left out"), "{shape:?}");
                assert!(figure.alt_text.contains("all tiles shown"), "{shape:?}: {}", figure.alt_text);
            }
        }
        let picture = png(&filter_grid("conv.weight", shape, &weights, Format::Png).unwrap());
        let svg_size = format!("width=\"{}\" height=\"{}\"", picture.width(), picture.height());
        assert!(svg.contains(&svg_size), "{shape:?}: SVG and PNG agree on the size");
    }
    assert_eq!(MAX_FILTER_TILES, 64);
}

#[test]
fn titles_labels_and_alt_text() {
    let mut weights: Vec<f32> = (0..4 * 4 * 9).map(|index| (index as f32 * 0.37).sin()).collect();
    // Filter 2 is dead: all zero.
    weights[2 * 36..3 * 36].fill(0.0);
    (weights[0], weights[40]) = (-1.5, 2.5);
    let figure = filter_grid("layer1.0.conv1.weight", &[4, 4, 3, 3], &weights, Format::Svg).unwrap();
    let svg = svg_text(&figure);
    let texts = [
        "layer1.0.conv1.weight",
        "4 filters \u{d7} 4 input channels of 3\u{d7}3, upscaled 11\u{d7}",
        "black = the filter's min, white = its max",
        "filter",
        "in 0",
        "3",
        "0",
        "2",
    ];
    for text in texts {
        assert!(svg.contains(&format!(">{text}</text>")), "{text} missing");
    }
    let alt = &figure.alt_text;
    assert!(alt.starts_with("layer1.0.conv1.weight: convolution filters of weight shape [4, 4, 3, 3] as an image grid of 16 grey tiles"), "{alt}");
    assert!(alt.contains("1 filter is constant (drawn mid grey): 2 (0)"), "{alt}");
    assert!(alt.contains("Weights range from -1.5 to 2.5"), "{alt}");
}

#[test]
fn bad_shapes_and_values_are_refused() {
    let nine = [0.5f32; 9];
    let mut infinite = [0.5f32; 18];
    infinite[9 + 4] = f32::INFINITY;
    let cases: &[(&[i64], &[f32], &str)] = &[
        (&[1, 3, 3], &nine, "a filter grid needs a 4-D weight shape (out_channels, in_channels, kh, kw), got [1, 3, 3]"),
        (&[1, 0, 3, 3], &[], "weight shape [1, 0, 3, 3] has a dimension that is not positive"),
        (&[2, 1, 3, 3], &nine, "weight shape [2, 1, 3, 3] needs 18 values, got 9"),
        (&[2, 1, 3, 3], &infinite, "weights have a non-finite value (inf) in filter 1, input channel 0, row 1, column 1"),
    ];
    for &(shape, weights, expected) in cases {
        for format in [Format::Png, Format::Svg] {
            match filter_grid("w", shape, weights, format) {
                Err(RenderError::BadData(message)) => assert_eq!(message, expected),
                other => panic!("{shape:?}: got {other:?}"),
            }
        }
    }
}
