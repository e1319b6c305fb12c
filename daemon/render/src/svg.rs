//! Writes a scene as SVG: shapes and text as SVG elements (so titles and labels stay
//! selectable, searchable text), raster panels as embedded PNGs, the alt text as the
//! document's `<title>` and `aria-label`.

use crate::colour::Colour;
use crate::font::SVG_FONT_FAMILY;
use crate::raster::encode_png;
use crate::scene::{Anchor, Element, Scene};
use crate::RenderError;
use base64::Engine as _;
use std::fmt::Write as _;

pub(crate) fn to_svg(scene: &Scene, alt_text: &str) -> Result<String, RenderError> {
    let mut svg = String::new();
    let alt = xml_escape(alt_text);
    // `write!` into a String cannot fail; the results are ignored for that reason.
    let _ = write!(
        svg,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" role=\"img\" \
         aria-label=\"{alt}\" font-family=\"{SVG_FONT_FAMILY}\"><title>{alt}</title>\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>",
        w = number(scene.width.ceil()),
        h = number(scene.height.ceil()),
    );
    for element in &scene.elements {
        match element {
            Element::Rect { x, y, width, height, fill } => {
                let _ = write!(
                    svg,
                    "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{}\"/>",
                    number(*x),
                    number(*y),
                    number(*width),
                    number(*height),
                    hex(*fill)
                );
            }
            Element::Line { from, to, colour, width, dash } => {
                let dash = dash.map(|dash| format!(" stroke-dasharray=\"{}\"", number(dash))).unwrap_or_default();
                let _ = write!(
                    svg,
                    "<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"{}\" stroke-width=\"{}\"{dash}/>",
                    number(from.0),
                    number(from.1),
                    number(to.0),
                    number(to.1),
                    hex(*colour),
                    number(*width)
                );
            }
            Element::Polyline { points, colour, width } => {
                let points: Vec<String> = points.iter().map(|(x, y)| format!("{},{}", number(*x), number(*y))).collect();
                let _ = write!(
                    svg,
                    "<polyline points=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"{}\" stroke-linejoin=\"round\"/>",
                    points.join(" "),
                    hex(*colour),
                    number(*width)
                );
            }
            Element::Circle { centre, radius, fill } => {
                let _ = write!(
                    svg,
                    "<circle cx=\"{}\" cy=\"{}\" r=\"{}\" fill=\"{}\"/>",
                    number(centre.0),
                    number(centre.1),
                    number(*radius),
                    hex(*fill)
                );
            }
            Element::Text { x, y, text, size, anchor, colour, rotation } => {
                let anchor = match anchor {
                    Anchor::Start => "start",
                    Anchor::Middle => "middle",
                    Anchor::End => "end",
                };
                let transform = if *rotation == 0.0 {
                    String::new()
                } else {
                    format!(" transform=\"rotate({} {} {})\"", number(*rotation), number(*x), number(*y))
                };
                let _ = write!(
                    svg,
                    "<text x=\"{}\" y=\"{}\" font-size=\"{}\" text-anchor=\"{anchor}\" fill=\"{}\"{transform}>{}</text>",
                    number(*x),
                    number(*y),
                    number(*size),
                    hex(*colour),
                    xml_escape(text)
                );
            }
            Element::Image { x, y, image, label } => {
                let png = base64::engine::general_purpose::STANDARD.encode(encode_png(image)?);
                // Pixelated scaling keeps upsampled attribution cells sharp if a viewer
                // zooms the SVG, as they are in the PNG.
                let _ = write!(
                    svg,
                    "<image x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" style=\"image-rendering:pixelated\" \
                     aria-label=\"{}\" href=\"data:image/png;base64,{png}\"/>",
                    number(*x),
                    number(*y),
                    image.width(),
                    image.height(),
                    xml_escape(label)
                );
            }
        }
    }
    svg.push_str("</svg>");
    Ok(svg)
}

/// `text` as XML character data or attribute value: markup characters escaped, and
/// characters that XML 1.0 does not allow at all, escaped or not (control characters
/// other than tab, line feed and carriage return; U+FFFE, U+FFFF), replaced by U+FFFD,
/// so that labels and alt text from user data (tokens of a prompt) cannot make the SVG
/// unreadable.
pub(crate) fn xml_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\t' | '\n' | '\r' => escaped.push(character),
            '\u{0}'..='\u{1f}' | '\u{fffe}' | '\u{ffff}' => escaped.push('\u{fffd}'),
            _ => escaped.push(character),
        }
    }
    escaped
}

/// A coordinate with at most two decimals and no trailing zeros.
fn number(value: f32) -> String {
    let text = format!("{value:.2}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" {
        "0".to_string()
    } else {
        text.to_string()
    }
}

fn hex(colour: Colour) -> String {
    format!("#{:02x}{:02x}{:02x}", colour[0], colour[1], colour[2])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_replaces_characters_xml_forbids() {
        assert_eq!(xml_escape("a<b & \"c\">"), "a&lt;b &amp; &quot;c&quot;&gt;");
        assert_eq!(xml_escape("tab\tline\nbell\u{7}nul\u{0}\u{ffff}"), "tab\tline\nbell\u{fffd}nul\u{fffd}\u{fffd}");
        assert_eq!(xml_escape("Ġthe ▁cat 中"), "Ġthe ▁cat 中");
    }
}
