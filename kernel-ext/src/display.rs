//! evcxr's display protocol. A value whose type has an inherent
//! `evcxr_display(&self)` method is shown by calling it; the method prints one block
//! per mime type to stdout,
//!
//! ```text
//! EVCXR_BEGIN_CONTENT image/png
//! <base64 of the PNG>
//! EVCXR_END_CONTENT
//! ```
//!
//! and the kernel gathers the blocks of one cell into one Jupyter display bundle (one
//! entry per mime type), from which the frontend picks the richest it can render.
//! Binary data (PNG) travels as base64 on one line; text (HTML, SVG) as it is.

use base64::Engine as _;
use std::io::Write as _;

/// The blocks one value shows: (mime type, payload as the kernel expects it).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Bundle {
    pub blocks: Vec<(String, String)>,
}

impl Bundle {
    pub fn new() -> Bundle {
        Bundle::default()
    }

    /// Adds a text payload (text/plain, text/html, image/svg+xml).
    pub fn text(mut self, mime: &str, text: impl Into<String>) -> Bundle {
        self.blocks.push((mime.to_string(), text.into()));
        self
    }

    /// Adds a binary payload (image/png), base64-encoded as Jupyter stores it.
    pub fn binary(mut self, mime: &str, bytes: &[u8]) -> Bundle {
        self.blocks.push((mime.to_string(), base64::engine::general_purpose::STANDARD.encode(bytes)));
        self
    }

    /// Adds a figure the daemon rendered under its own mime type: SVG is text, every
    /// other image is binary.
    pub fn figure(self, mime: &str, bytes: &[u8]) -> Bundle {
        if mime == "image/svg+xml" {
            self.text(mime, String::from_utf8_lossy(bytes).into_owned())
        } else {
            self.binary(mime, bytes)
        }
    }

    /// The protocol text: one `EVCXR_BEGIN_CONTENT` ... `EVCXR_END_CONTENT` block per
    /// payload. Each block ends with a newline, because the kernel reads line by line
    /// and only a line that is exactly `EVCXR_END_CONTENT` closes a block.
    pub fn to_protocol(&self) -> String {
        let mut out = String::new();
        for (mime, payload) in &self.blocks {
            out.push_str("EVCXR_BEGIN_CONTENT ");
            out.push_str(mime);
            out.push('\n');
            out.push_str(payload);
            if !payload.ends_with('\n') {
                out.push('\n');
            }
            out.push_str("EVCXR_END_CONTENT\n");
        }
        out
    }

    /// Writes the protocol text to stdout in one piece and flushes, so the blocks of
    /// this value are not interleaved with other output.
    pub fn print(&self) {
        let mut stdout = std::io::stdout().lock();
        // A closed stdout leaves nothing to show the error on.
        let _ = stdout.write_all(self.to_protocol().as_bytes());
        let _ = stdout.flush();
    }
}

/// `text` with the five HTML-special characters escaped.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            other => out.push(other),
        }
    }
    out
}

/// An `<img>` with the figure inline as a data URI, for HTML that shows a figure with
/// a caption.
pub fn img_tag(mime: &str, bytes: &[u8], alt_text: &str) -> String {
    format!(
        "<img src=\"data:{};base64,{}\" alt=\"{}\"/>",
        escape_html(mime),
        base64::engine::general_purpose::STANDARD.encode(bytes),
        escape_html(alt_text)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(bundle: Bundle, expect: &str) {
        assert_eq!(bundle.to_protocol(), expect);
    }

    #[test]
    fn protocol_blocks() {
        check(Bundle::new(), "");
        check(Bundle::new().text("text/plain", "hello"), "EVCXR_BEGIN_CONTENT text/plain\nhello\nEVCXR_END_CONTENT\n");
        // A payload that already ends its last line gets no empty line added.
        check(Bundle::new().text("text/html", "<b>x</b>\n"), "EVCXR_BEGIN_CONTENT text/html\n<b>x</b>\nEVCXR_END_CONTENT\n");
        // Binary data is base64 on one line.
        check(Bundle::new().binary("image/png", b"\x89PNG\r\n\x1a\n"), "EVCXR_BEGIN_CONTENT image/png\niVBORw0KGgo=\nEVCXR_END_CONTENT\n");
        // SVG stays text; PNG becomes base64; several blocks follow each other.
        check(
            Bundle::new().figure("image/svg+xml", b"<svg/>").figure("image/png", &[0, 255]).text("text/plain", "two\nlines"),
            "EVCXR_BEGIN_CONTENT image/svg+xml\n<svg/>\nEVCXR_END_CONTENT\n\
             EVCXR_BEGIN_CONTENT image/png\nAP8=\nEVCXR_END_CONTENT\n\
             EVCXR_BEGIN_CONTENT text/plain\ntwo\nlines\nEVCXR_END_CONTENT\n",
        );
    }

    #[test]
    fn html_escaping() {
        assert_eq!(escape_html("a<b> & \"c\" 'd'"), "a&lt;b&gt; &amp; &quot;c&quot; &#39;d&#39;");
        assert_eq!(img_tag("image/png", &[0, 255], "a \"map\""), "<img src=\"data:image/png;base64,AP8=\" alt=\"a &quot;map&quot;\"/>");
    }
}
