//! What the unit tests of several figures share: decoding a rendered figure and
//! checking it is what its mime type says.

use crate::Figure;
use image::RgbaImage;

/// The pixels of a PNG figure, after checking its mime type and magic bytes.
pub fn png(figure: &Figure) -> RgbaImage {
    assert_eq!(figure.mime, "image/png");
    assert!(figure.data.starts_with(b"\x89PNG\r\n\x1a\n"), "PNG magic bytes");
    image::load_from_memory(&figure.data).expect("the PNG decodes").to_rgba8()
}

/// The text of an SVG figure, after checking its mime type and outline.
pub fn svg(figure: &Figure) -> String {
    assert_eq!(figure.mime, "image/svg+xml");
    let text = String::from_utf8(figure.data.clone()).unwrap();
    assert!(text.starts_with("<svg") && text.ends_with("</svg>"));
    text
}
