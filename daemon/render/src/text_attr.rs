//! Attributions over the tokens of a text, drawn as Captum draws them for language
//! models: [`token_heat_map`] sets the prompt as running text with every token on a
//! background coloured by its attribution (Captum's `visualize_text`), [`token_html`]
//! writes the same as an HTML fragment a notebook can show and a user can save,
//! [`token_matrix`] colours a grid of output tokens × input tokens
//! (`LLMAttributionResult.plot_token_attr`) and [`sequence_bars`] draws one bar per
//! input token (`plot_seq_attr`).
//!
//! Tokens arrive as the tokenizer wrote them, and this file makes them readable once
//! for all four: GPT-2 style byte-level tokens (`Ġthe`, `Ċ`, `âĢĻ`) are decoded to
//! their text, SentencePiece's `▁` is a space, WordPiece's `##` joins a piece to the
//! word before it, and a leading space starts a new word. Control tokens such as
//! `<|endoftext|>` or `[CLS]` are shown as they are. Characters no one could see are
//! written so that they can be: `↵` for a line feed (running text also breaks the
//! line there), `⇥` for a tab, `␣` for a token of spaces, `\xNN` for a control
//! character or a byte that is not a whole UTF-8 character. The figures' font has no
//! CJK or emoji glyphs, so figures write such characters as `U+4E2D`; the HTML and the
//! alt text keep them, as a browser or screen reader has the fonts.
//!
//! Colours are Captum's `visualize_text` colours: white at 0, green for positive and
//! red for negative attributions, on a scale symmetric about 0 that ends at the largest
//! |attribution|. Captum's `plot_token_attr` (RdYlGn) and `plot_seq_attr` (green and
//! red bars) use the same sense, and so does every other attribution figure of this
//! crate (`sign: all` is red–white–green), so red means "against" everywhere.

use crate::chart::{format_value, nice_at_least, ticks_within};
use crate::colour::{chart_colour, luminance, Colour, AXIS, GRID, TEXT};
use crate::colour_bar::{ColourBar, MIN_BAR_HEIGHT};
use crate::figure::encode;
use crate::font::{has_glyph, text_width};
use crate::options::{AxisScale, Sign};
use crate::panel::compose;
use crate::scene::{Anchor, Element, Scene};
use crate::small_multiples::{counted, fit_end, fit_start, AxisLabels, ValueScale, TICK_FONT};
use crate::svg::xml_escape;
use crate::{Figure, Format, RenderError};
use image::{Rgba, RgbaImage};
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::ops::Range;

/// At most this many tokens along one axis (a prompt, the inputs or the outputs of a
/// matrix): a longer text would make a figure too large to look at.
pub const MAX_TEXT_TOKENS: usize = 4096;

/// Captum's `visualize_text` colours at full strength: hsl(120, 75%, 50%) for +1 and
/// hsl(0, 75%, 60%) for -1. Its lightness runs linearly down from 100% at 0, which is
/// the same as blending white towards these, so `rgba(end, |t|)` over white in the
/// HTML gives exactly the figures' colour. Dark text stays readable on both ends.
const POSITIVE_END: Colour = [32, 223, 32];
const NEGATIVE_END: Colour = [230, 77, 77];

/// Running text: the tokens' font, their boxes and lines.
const TOKEN_FONT: f32 = 13.0;
const BOX_HEIGHT: f32 = 19.0;
/// From the top of a token's box to its text's baseline.
const BOX_BASELINE: f32 = 14.0;
const LINE_PITCH: f32 = 25.0;
const BOX_PADDING: f32 = 2.0;
/// Between words, and between the pieces of one word (`walk` `ing`).
const WORD_GAP: f32 = 6.0;
const PIECE_GAP: f32 = 1.0;
/// Lines wrap at this width; a single token is cut to [`MAX_TOKEN_WIDTH`].
const TEXT_WIDTH: f32 = 900.0;
const MAX_TOKEN_WIDTH: f32 = 280.0;
/// The index of each line's first token, in grey left of the line.
const INDEX_FONT: f32 = 9.0;
const LEGEND_BAR_WIDTH: f32 = 200.0;
const LEGEND_BAR_HEIGHT: f32 = 10.0;
const LEGEND_HEIGHT: f32 = 44.0;
const CAPTION_FONT: f32 = 11.0;

/// The matrix: its grid is at most this large; cells are whole pixels up to these sizes.
const MAX_GRID_WIDTH: f32 = 900.0;
const MAX_GRID_HEIGHT: f32 = 700.0;
const MAX_CELL_WIDTH: f32 = 56.0;
const MAX_CELL_HEIGHT: f32 = 24.0;
/// Cells at least this big both ways get a white pixel between them.
const GAPPED_CELL: f32 = 6.0;
const CELL_FONT: f32 = 10.0;
/// Cells at least this high get their value written in them, where it fits.
const MIN_ANNOTATED_HEIGHT: f32 = 13.0;
/// Row labels need this much height each; with thinner rows every k-th is labelled.
const ROW_LABEL_PITCH: f32 = 12.0;
const MAX_ROW_LABEL: f32 = 160.0;
const GRID_TOP: f32 = 8.0;

/// The bar chart: bars this far apart within these plot widths.
const BAR_PITCH: f32 = 22.0;
const MIN_PLOT_WIDTH: f32 = 320.0;
const MAX_PLOT_WIDTH: f32 = 1200.0;
const PLOT_HEIGHT: f32 = 260.0;
const PLOT_TOP: f32 = 24.0;

/// The tokens of a prompt as running text, each on a background coloured by its
/// attribution (`values[i]` for `tokens[i]`): Captum's `visualize_text` as a figure.
///
/// Lines wrap between words at about 900 px and break after a token that ends with a
/// line feed; each line starts with the index of its first token in grey. Colours run
/// from red (negative) through white (0) to green (positive), scaled to ±the largest
/// |attribution|; a colour bar under the text gives the scale. The alt text names the
/// tokens with the largest positive and negative attributions, with their index and
/// value.
///
/// Errors: [`RenderError::BadData`] for no tokens, more than [`MAX_TEXT_TOKENS`], a
/// value count that is not the token count, or a value that is not finite.
pub fn token_heat_map(title: &str, tokens: &[String], values: &[f64], format: Format) -> Result<Figure, RenderError> {
    let (scene, alt_text) = token_heat_map_scene(title, tokens, values)?;
    encode(&scene, format, alt_text)
}

/// The same as [`token_heat_map`] as a self-contained HTML fragment: one `<span>` per
/// token with its colour as an inline `background-color: rgba(...)` and its index and
/// value as the `title` (shown on hover), words separated by spaces, `<br>` after a
/// line feed, then a small legend. Inline styles only, no scripts and no classes, on a
/// white card so that it reads the same in a dark notebook theme; every token and the
/// title are HTML-escaped. Show it in Jupyter with `IPython.display.HTML` or save it as
/// a file.
///
/// Errors: as [`token_heat_map`].
pub fn token_html(tokens: &[String], values: &[f64], title: Option<&str>) -> Result<String, RenderError> {
    validate("the token HTML", tokens, values)?;
    let shown = readable(tokens);
    let scale = Symmetric::of(values);
    let mut html = String::new();
    // `write!` into a String cannot fail; the results are ignored for that reason.
    html.push_str(
        "<div style=\"font-family: 'DejaVu Sans', Verdana, Arial, sans-serif; font-size: 14px; line-height: 1.9; color: #212121; \
         background-color: #ffffff; padding: 8px 10px; max-width: 900px\">",
    );
    if let Some(title) = title.filter(|title| !title.is_empty()) {
        let _ = write!(html, "<div style=\"font-weight: bold; margin-bottom: 4px\">{}</div>", xml_escape(title));
    }
    html.push_str("<div>");
    // As in the figure, a word's pieces are padded at the word's ends only and stand a
    // pixel apart, so that they read as one word.
    let starts_word = |index: usize| index == 0 || index == shown.len() || shown[index].starts_word || shown[index - 1].ends_line;
    for (index, (token, &value)) in shown.iter().zip(values).enumerate() {
        if index > 0 && starts_word(index) && !shown[index - 1].ends_line {
            html.push(' ');
        }
        let normalised = scale.normalised(value);
        let [r, g, b] = if normalised < 0.0 { NEGATIVE_END } else { POSITIVE_END };
        let padding = |at_end: bool| if at_end { 2 } else { 0 };
        let _ = write!(
            html,
            "<span style=\"background-color: rgba({r}, {g}, {b}, {:.3}); padding: 1px {}px 1px {}px; margin-right: 1px; \
             white-space: pre\" title=\"{}\">{}</span>",
            normalised.abs(),
            padding(starts_word(index + 1)),
            padding(starts_word(index)),
            xml_escape(&format!("token {index}: {}", value_text(value))),
            xml_escape(&token.text),
        );
        if token.ends_line {
            html.push_str("<br>");
        }
    }
    html.push_str("</div>");
    let rgb = |[r, g, b]: Colour| format!("rgb({r}, {g}, {b})");
    let _ = write!(
        html,
        "<div style=\"margin-top: 6px; font-size: 12px; color: #555555\">{} \
         <span style=\"display: inline-block; width: 160px; height: 10px; vertical-align: middle; border: 1px solid #999999; \
         background: linear-gradient(to right, {}, rgb(255, 255, 255), {})\"></span> {} &#183; red: negative, green: positive; \
         hover over a token for its value</div>",
        if scale.all_zero { String::new() } else { xml_escape(&value_text(-scale.limit)) },
        rgb(NEGATIVE_END),
        rgb(POSITIVE_END),
        if scale.all_zero { "(every attribution is 0)".to_string() } else { xml_escape(&value_text(scale.limit)) },
    );
    html.push_str("</div>");
    Ok(html)
}

/// Captum's `plot_token_attr`: how much each input token (columns, `input_tokens`)
/// contributes to each output token (rows, `output_tokens`), `values` row-major with
/// `output_tokens.len()` rows of `input_tokens.len()` values.
///
/// Cells are coloured from red (negative) through white to green (positive), scaled
/// to ±the largest |attribution|, with a colour bar right of the grid. While cells are
/// large enough each has its value written in it with two decimals (in units of a
/// power of ten, named in the subtitle, when the values are very small or large).
/// Input tokens label the columns, turned when they do not fit; with many tokens only
/// every k-th row and column is labelled. The alt text names the strongest cells.
///
/// Errors: [`RenderError::BadData`] for no input or no output tokens, more than
/// [`MAX_TEXT_TOKENS`] of either, a value count that is not outputs × inputs, or a
/// value that is not finite.
pub fn token_matrix(title: &str, input_tokens: &[String], output_tokens: &[String], values: &[f64], format: Format) -> Result<Figure, RenderError> {
    let (scene, alt_text) = token_matrix_scene(title, input_tokens, output_tokens, values)?;
    encode(&scene, format, alt_text)
}

/// Captum's `plot_seq_attr`: one vertical bar per input token (`values[i]` for
/// `tokens[i]`, left to right), green above the zero line for positive and red below
/// it for negative attributions, with the tokens under the plot (turned when they do
/// not fit, every k-th when there are many). The alt text names the largest positive
/// and negative tokens and the sum.
///
/// Errors: as [`token_heat_map`].
pub fn sequence_bars(title: &str, tokens: &[String], values: &[f64], format: Format) -> Result<Figure, RenderError> {
    let (scene, alt_text) = sequence_bars_scene(title, tokens, values)?;
    encode(&scene, format, alt_text)
}

fn validate(figure: &str, tokens: &[String], values: &[f64]) -> Result<(), RenderError> {
    validate_count(figure, "token", tokens.len())?;
    if values.len() != tokens.len() {
        return Err(RenderError::BadData(format!(
            "{figure} needs one value per token, got {} for {}",
            counted(values.len(), "value"),
            counted(tokens.len(), "token")
        )));
    }
    check_finite(figure, values, |index| format!("token {index} ({:?})", tokens[index]))
}

fn validate_count(figure: &str, noun: &str, count: usize) -> Result<(), RenderError> {
    if count == 0 {
        return Err(RenderError::BadData(format!("{figure} needs at least one {noun}, got none")));
    }
    if count > MAX_TEXT_TOKENS {
        return Err(RenderError::BadData(format!("{figure} draws at most {MAX_TEXT_TOKENS} {noun}s, got {count}")));
    }
    Ok(())
}

fn check_finite(figure: &str, values: &[f64], at: impl Fn(usize) -> String) -> Result<(), RenderError> {
    match values.iter().position(|value| !value.is_finite()) {
        Some(index) => Err(RenderError::BadData(format!("{figure} has a non-finite value ({}) at {}", values[index], at(index)))),
        None => Ok(()),
    }
}

/// The colour scale ±`limit`, symmetric about 0: the largest |value|, or 1 when every
/// value is 0 (then everything is white).
struct Symmetric {
    limit: f64,
    all_zero: bool,
}

impl Symmetric {
    fn of(values: &[f64]) -> Symmetric {
        let largest = values.iter().fold(0.0f64, |largest, value| largest.max(value.abs()));
        if largest > 0.0 {
            Symmetric { limit: largest, all_zero: false }
        } else {
            Symmetric { limit: 1.0, all_zero: true }
        }
    }

    fn normalised(&self, value: f64) -> f64 {
        (value / self.limit).clamp(-1.0, 1.0)
    }

    fn colour(&self, value: f64) -> Colour {
        token_colour(self.normalised(value))
    }

    fn words(&self) -> String {
        if self.all_zero {
            "every attribution is 0".to_string()
        } else {
            format!("colours scaled to \u{b1}{}", value_text(self.limit))
        }
    }
}

/// White at 0, blending towards green at +1 and red at -1.
fn token_colour(normalised: f64) -> Colour {
    let strength = normalised.clamp(-1.0, 1.0);
    let end = if strength < 0.0 { NEGATIVE_END } else { POSITIVE_END };
    [0, 1, 2].map(|channel| (255.0 + (end[channel] as f64 - 255.0) * strength.abs()).round() as u8)
}

fn value_text(value: f64) -> String {
    format_value(value as f32)
}

/// How the tokenizer marks where words start, decided once for the whole sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Marking {
    /// GPT-2 style byte-level BPE: every byte is written as a printable character
    /// (`Ġ` a space, `Ċ` a line feed), a word's first token starts with `Ġ`.
    ByteLevel,
    /// SentencePiece: `▁` is a space, `<0x0A>` a byte.
    SentencePiece,
    /// Tokens that carry their leading space as a plain space (decoded one by one).
    LeadingSpace,
    /// WordPiece: `##` starts a piece that continues the word before it.
    WordPiece,
    /// Every token is a word of its own.
    Plain,
}

/// One token as it is shown.
#[derive(Debug, Clone, PartialEq)]
struct ShownToken {
    /// The token's text with the tokenizer's markers resolved and characters no one
    /// can see made visible; characters the font lacks are kept (see [`drawable`]).
    text: String,
    /// Whether a space comes before it in the text, rather than it continuing the word
    /// before it.
    starts_word: bool,
    /// Whether the text goes on on a new line after it.
    ends_line: bool,
}

/// The bytes 0..=255 that GPT-2's byte-level alphabet writes as characters 256 and up,
/// in order: the ones that are not printable Latin-1 (control characters, space, DEL,
/// no-break space, soft hyphen).
fn remapped_bytes() -> impl Iterator<Item = u8> {
    (0u8..=255).filter(|byte| !matches!(byte, 0x21..=0x7e | 0xa1..=0xac | 0xae..=0xff))
}

/// The bytes a byte-level token stands for, or `None` when a character is outside the
/// byte-level alphabet.
fn byte_level_bytes(token: &str) -> Option<Vec<u8>> {
    token
        .chars()
        .map(|character| match character as u32 {
            code @ (0x21..=0x7e | 0xa1..=0xac | 0xae..=0xff) => Some(code as u8),
            code @ 256..=511 => remapped_bytes().nth(code as usize - 256),
            _ => None,
        })
        .collect()
}

/// `bytes` as text: the runs that are UTF-8 as characters, every other byte as `\xNN`
/// (a character that the tokenizer split over several tokens).
fn bytes_as_text(mut bytes: &[u8]) -> String {
    let mut text = String::new();
    loop {
        match std::str::from_utf8(bytes) {
            Ok(valid) => {
                text.push_str(valid);
                return text;
            }
            Err(error) => {
                let (valid, rest) = bytes.split_at(error.valid_up_to());
                text.push_str(std::str::from_utf8(valid).unwrap_or_default());
                let invalid = error.error_len().unwrap_or(rest.len());
                for byte in &rest[..invalid] {
                    let _ = write!(text, "\\x{byte:02X}");
                }
                bytes = &rest[invalid..];
            }
        }
    }
}

/// SentencePiece's byte-fallback token `<0xNN>`: its byte.
fn byte_token(token: &str) -> Option<u8> {
    let hex = token.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() == 2 {
        u8::from_str_radix(hex, 16).ok()
    } else {
        None
    }
}

/// A tokenizer's control token, shown as it is: `<|endoftext|>`, `<s>`, `</s>`,
/// `<pad>`, `[CLS]`, `[SEP]`, `[MASK]`.
fn is_special(token: &str) -> bool {
    let short = token.chars().count() <= 40;
    let angled = token.len() > 2 && token.starts_with('<') && token.ends_with('>') && byte_token(token).is_none();
    let bracketed = token.len() > 2
        && token.starts_with('[')
        && token.ends_with(']')
        && token[1..token.len() - 1].chars().all(|character| character.is_ascii_alphanumeric() || character == '_');
    short && (angled || bracketed) && !token.chars().any(char::is_whitespace)
}

fn marking_of(tokens: &[String]) -> Marking {
    let ordinary = || tokens.iter().filter(|token| !is_special(token));
    // A byte-level sequence has a token starting with the space byte's `Ġ` or holding a
    // line feed's `Ċ`, and nothing outside the alphabet; plain text with a Latin
    // Extended-A letter (`ł`) rarely has either.
    let byte_marks = ordinary().any(|token| (token.chars().count() > 1 && token.starts_with('\u{120}')) || token.contains('\u{10a}'));
    if byte_marks && ordinary().all(|token| byte_level_bytes(token).is_some()) {
        Marking::ByteLevel
    } else if ordinary().any(|token| token.contains('\u{2581}')) {
        Marking::SentencePiece
    } else if ordinary().any(|token| token.starts_with(' ')) {
        Marking::LeadingSpace
    } else if ordinary().any(|token| token.len() > 2 && token.starts_with("##")) {
        Marking::WordPiece
    } else {
        Marking::Plain
    }
}

/// Every token made readable (see the file's documentation).
fn readable(tokens: &[String]) -> Vec<ShownToken> {
    let marking = marking_of(tokens);
    let mut shown: Vec<ShownToken> = Vec::with_capacity(tokens.len());
    let mut previous_special = false;
    for token in tokens {
        let special = is_special(token);
        let (text, marked) = if special {
            (token.clone(), true)
        } else {
            match marking {
                Marking::ByteLevel => leading_space(byte_level_bytes(token).map_or_else(|| token.clone(), |bytes| bytes_as_text(&bytes))),
                Marking::SentencePiece => match byte_token(token) {
                    Some(byte) => (bytes_as_text(&[byte]), false),
                    None => leading_space(token.replace('\u{2581}', " ")),
                },
                Marking::LeadingSpace => leading_space(token.clone()),
                Marking::WordPiece => match token.strip_prefix("##") {
                    Some(rest) if !rest.is_empty() => (rest.to_string(), false),
                    _ => (token.clone(), !closes_word(token)),
                },
                Marking::Plain => (token.clone(), !closes_word(token)),
            }
        };
        let ends_line = !special && text.ends_with('\n');
        shown.push(ShownToken { text: visible(&text), starts_word: marked || special || previous_special || shown.is_empty(), ends_line });
        previous_special = special;
    }
    shown
}

/// Punctuation that follows a word without a space (`,` `.` `)`), for tokenizers
/// that do not mark spaces: their text reads as it would be written, as the
/// tokenizers' own decoding cleans up such spaces too.
fn closes_word(token: &str) -> bool {
    !token.is_empty() && token.chars().all(|character| matches!(character, ',' | '.' | ';' | ':' | '!' | '?' | ')' | ']' | '}' | '%'))
}

/// Whether `text` starts with a space (a new word), and the text without it. A token
/// of nothing but spaces keeps them, so that it stays visible.
fn leading_space(text: String) -> (String, bool) {
    match text.strip_prefix(' ') {
        Some(rest) if !rest.chars().all(|character| character == ' ') => (rest.to_string(), true),
        Some(_) => (text, true),
        None => (text, false),
    }
}

/// Characters no one could see, made visible: `↵` for a line feed, `⇥` for a tab,
/// `\xNN` for other control characters, `␣` for each space of a token that is nothing
/// but spaces, `∅` for an empty token.
fn visible(text: &str) -> String {
    if text.is_empty() {
        return "\u{2205}".to_string();
    }
    if text.chars().all(|character| character == ' ') {
        return "\u{2423}".repeat(text.chars().count());
    }
    let mut shown = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '\n' => shown.push('\u{21b5}'),
            '\t' => shown.push('\u{21e5}'),
            character if character.is_control() => {
                let _ = write!(shown, "\\x{:02X}", character as u32);
            }
            character => shown.push(character),
        }
    }
    shown
}

/// `text` as the figures draw it: characters the built-in font has no glyph for (CJK,
/// emoji) as their code point, `U+4E2D`, set apart by spaces.
fn drawable(text: &str) -> String {
    let mut drawn = String::with_capacity(text.len());
    let mut after_code = false;
    for character in text.chars() {
        if has_glyph(character) {
            if after_code && character != ' ' {
                drawn.push(' ');
            }
            drawn.push(character);
            after_code = false;
        } else {
            if !drawn.is_empty() && !drawn.ends_with(' ') {
                drawn.push(' ');
            }
            let _ = write!(drawn, "U+{:04X}", character as u32);
            after_code = true;
        }
    }
    drawn
}

/// A token of the running text: where its box goes, and its text in it.
#[derive(Debug, Clone, PartialEq)]
struct PlacedToken {
    text: String,
    x: f32,
    line: usize,
    width: f32,
    /// From the box's left edge to the text.
    text_x: f32,
}

/// Sets the tokens as running text: words (a token that starts one and the pieces that
/// continue it) wrap to the next line as a whole while they fit on one, a line ends
/// after a token that ends with a line feed. Boxes are padded at the ends of a word
/// only, so that its pieces read as one word, with a white pixel between them.
fn set_text(shown: &[ShownToken]) -> Vec<PlacedToken> {
    let texts: Vec<String> = shown.iter().map(|token| fit_start(&drawable(&token.text), TOKEN_FONT, MAX_TOKEN_WIDTH)).collect();
    let mut words: Vec<Range<usize>> = Vec::new();
    for index in 0..shown.len() {
        match words.last_mut() {
            Some(word) if !shown[index].starts_word && !shown[index - 1].ends_line => word.end = index + 1,
            _ => words.push(index..index + 1),
        }
    }
    let mut placed = Vec::with_capacity(shown.len());
    let (mut line, mut x) = (0, 0.0f32);
    for word in words {
        let padding = |index: usize| {
            let left = if index == word.start { BOX_PADDING } else { 0.0 };
            let right = if index + 1 == word.end { BOX_PADDING } else { 0.0 };
            (left, right)
        };
        let widths: Vec<f32> = word
            .clone()
            .map(|index| {
                let (left, right) = padding(index);
                left + text_width(&texts[index], TOKEN_FONT).ceil() + right
            })
            .collect();
        let word_width = widths.iter().sum::<f32>() + PIECE_GAP * (word.len() - 1) as f32;
        if x > 0.0 && x + WORD_GAP + word_width > TEXT_WIDTH {
            (line, x) = (line + 1, 0.0);
        }
        for (index, width) in word.clone().zip(widths) {
            let mut gap = if x == 0.0 {
                0.0
            } else if index == word.start {
                WORD_GAP
            } else {
                PIECE_GAP
            };
            // Only a word wider than a line breaks between its pieces.
            if x > 0.0 && x + gap + width > TEXT_WIDTH {
                (line, x, gap) = (line + 1, 0.0, 0.0);
            }
            placed.push(PlacedToken { text: texts[index].clone(), x: x + gap, line, width, text_x: padding(index).0 });
            x += gap + width;
            if shown[index].ends_line {
                (line, x) = (line + 1, 0.0);
            }
        }
    }
    placed
}

fn token_heat_map_scene(title: &str, tokens: &[String], values: &[f64]) -> Result<(Scene, String), RenderError> {
    validate("the token heat map", tokens, values)?;
    let shown = readable(tokens);
    let scale = Symmetric::of(values);
    let placed = set_text(&shown);
    let lines = placed.last().map_or(1, |token| token.line + 1);
    // The index of each line's first token, right-aligned in a column left of the text.
    let line_starts: Vec<(usize, usize)> = placed
        .iter()
        .enumerate()
        .filter(|(index, token)| *index == 0 || placed[index - 1].line != token.line)
        .map(|(index, token)| (token.line, index))
        .collect();
    let index_width = line_starts.iter().map(|(_, index)| text_width(&index.to_string(), INDEX_FONT)).fold(0.0, f32::max).ceil() + 8.0;
    let text_right = placed.iter().map(|token| token.x + token.width).fold(0.0, f32::max);
    let legend = ColourLegend { scale: &scale };
    let width = (index_width + text_right.max(legend.width())).ceil() + 2.0;
    let text_height = lines as f32 * LINE_PITCH;
    let mut scene = Scene::new(width, text_height + LEGEND_HEIGHT);
    let top_of = |line: usize| line as f32 * LINE_PITCH + 2.0;

    for (line, index) in line_starts {
        scene.push(Element::Text {
            x: index_width - 8.0,
            y: top_of(line) + BOX_BASELINE - 1.0,
            text: index.to_string(),
            size: INDEX_FONT,
            anchor: Anchor::End,
            colour: AXIS,
            rotation: 0.0,
        });
    }
    for (token, &value) in placed.iter().zip(values) {
        let (x, top) = (index_width + token.x, top_of(token.line));
        scene.push(Element::Rect { x, y: top, width: token.width, height: BOX_HEIGHT, fill: scale.colour(value) });
        // A hairline under every box shows where a token ends even on white (0).
        scene.line((x, top + BOX_HEIGHT + 0.5), (x + token.width, top + BOX_HEIGHT + 0.5), GRID, 1.0);
        scene.text(x + token.text_x, top + BOX_BASELINE, token.text.as_str(), TOKEN_FONT, Anchor::Start);
    }
    scene.place(legend.draw(), index_width, text_height + 8.0);

    let subtitle = format!("{}, {}", counted(tokens.len(), "token"), scale.words());
    let alt_text = format!(
        "{title}: {} as running text, each on a background from red (negative) through white (0) to green (positive), {}. {}",
        counted(tokens.len(), "token"),
        scale.words(),
        strongest_tokens(&shown, values),
    );
    Ok((compose(title, &subtitle, vec![(title.to_string(), scene)]), alt_text))
}

/// A horizontal colour bar under running text: the map from -limit to +limit with
/// its ends and 0 labelled, and what the colours mean beside it.
struct ColourLegend<'a> {
    scale: &'a Symmetric,
}

impl ColourLegend<'_> {
    const CAPTION: &'static str = "attribution: red negative, white 0, green positive";

    fn width(&self) -> f32 {
        LEGEND_BAR_WIDTH + 12.0 + text_width(Self::CAPTION, CAPTION_FONT)
    }

    fn draw(&self) -> Scene {
        let mut scene = Scene::new(self.width(), LEGEND_HEIGHT - 8.0);
        let pixels = LEGEND_BAR_WIDTH as u32;
        let gradient = RgbaImage::from_fn(pixels, LEGEND_BAR_HEIGHT as u32, |x, _| {
            let [r, g, b] = token_colour(-1.0 + 2.0 * (x as f64 + 0.5) / pixels as f64);
            Rgba([r, g, b, 255])
        });
        scene.push(Element::Image { x: 0.0, y: 0.0, image: gradient, label: "colour bar".to_string() });
        let bottom = LEGEND_BAR_HEIGHT;
        // A thin frame, so the white middle stays visible on the white page.
        scene.line((-0.5, -0.5), (LEGEND_BAR_WIDTH + 0.5, -0.5), AXIS, 1.0);
        scene.line((-0.5, bottom + 0.5), (LEGEND_BAR_WIDTH + 0.5, bottom + 0.5), AXIS, 1.0);
        scene.line((-0.5, -0.5), (-0.5, bottom + 0.5), AXIS, 1.0);
        scene.line((LEGEND_BAR_WIDTH + 0.5, -0.5), (LEGEND_BAR_WIDTH + 0.5, bottom + 0.5), AXIS, 1.0);
        let limit = self.scale.limit;
        let ticks = [(0.0, -limit, Anchor::Start), (0.5, 0.0, Anchor::Middle), (1.0, limit, Anchor::End)];
        // With every attribution 0 there is no scale: only 0 is labelled.
        let labelled = ticks.into_iter().filter(|(fraction, _, _)| !self.scale.all_zero || *fraction == 0.5);
        for (fraction, value, anchor) in labelled {
            let x = (fraction * LEGEND_BAR_WIDTH).round() - if fraction == 1.0 { 0.5 } else { -0.5 };
            scene.line((x, bottom + 1.0), (x, bottom + 4.0), AXIS, 1.0);
            let label_x = match anchor {
                Anchor::Start => 0.0,
                Anchor::Middle => x,
                Anchor::End => LEGEND_BAR_WIDTH,
            };
            scene.text(label_x, bottom + 15.0, value_text(value), TICK_FONT, anchor);
        }
        scene.text(LEGEND_BAR_WIDTH + 12.0, bottom - 0.5, Self::CAPTION, CAPTION_FONT, Anchor::Start);
        scene
    }
}

/// `"cat" (token 4) 0.52`.
fn token_words(shown: &[ShownToken], values: &[f64], index: usize) -> String {
    format!("{:?} (token {index}) {}", shown[index].text, value_text(values[index]))
}

/// The alt text's sentence on the strongest tokens: up to three of each sign.
fn strongest_tokens(shown: &[ShownToken], values: &[f64]) -> String {
    const LISTED: usize = 3;
    let mut order: Vec<usize> = (0..values.len()).collect();
    // Ties go to the first token.
    order.sort_by(|&a, &b| values[b].total_cmp(&values[a]).then(a.cmp(&b)));
    let positive: Vec<String> =
        order.iter().filter(|&&index| values[index] > 0.0).take(LISTED).map(|&index| token_words(shown, values, index)).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]).then(a.cmp(&b)));
    let negative: Vec<String> =
        order.iter().filter(|&&index| values[index] < 0.0).take(LISTED).map(|&index| token_words(shown, values, index)).collect();
    let list = |words: Vec<String>, sign: &str| {
        if words.is_empty() {
            format!("no {sign} attribution")
        } else {
            format!("most {sign}: {}", words.join(", "))
        }
    };
    let mut sentence = format!("{}; {}.", list(positive, "positive"), list(negative, "negative"));
    sentence[..1].make_ascii_uppercase();
    sentence
}

/// Where the matrix's cells go.
struct CellLayout {
    cell_width: f32,
    cell_height: f32,
    width: f32,
    height: f32,
}

impl CellLayout {
    fn new(rows: usize, columns: usize) -> CellLayout {
        let (cell_width, width) = crate::chart::fit_cells(columns, MAX_GRID_WIDTH, MAX_CELL_WIDTH);
        let (cell_height, height) = crate::chart::fit_cells(rows, MAX_GRID_HEIGHT, MAX_CELL_HEIGHT);
        CellLayout { cell_width, cell_height, width, height }
    }

    /// The cells as a picture, one colour per cell, a white pixel between big cells.
    fn picture(&self, colours: &[Colour], columns: usize) -> RgbaImage {
        let rows = colours.len() / columns;
        let gapped = self.cell_width >= GAPPED_CELL && self.cell_height >= GAPPED_CELL;
        RgbaImage::from_fn(self.width.round() as u32, self.height.round() as u32, |x, y| {
            let column = (((x as f32 + 0.5) / self.cell_width) as usize).min(columns - 1);
            let row = (((y as f32 + 0.5) / self.cell_height) as usize).min(rows - 1);
            // The last pixel of a cell is the gap, except along the grid's right and bottom edge.
            let gap_x = (x + 1) as f32 >= (column + 1) as f32 * self.cell_width && ((x + 1) as f32) < self.width;
            let gap_y = (y + 1) as f32 >= (row + 1) as f32 * self.cell_height && ((y + 1) as f32) < self.height;
            let [r, g, b] = if gapped && (gap_x || gap_y) { [255, 255, 255] } else { colours[row * columns + column] };
            Rgba([r, g, b, 255])
        })
    }
}

/// Cell values are written in units of 10^exponent: 0 for values from 0.05 to 1000,
/// the largest |value|'s power of ten otherwise, so that two decimals say something.
fn annotation_exponent(scale: &Symmetric) -> i32 {
    if scale.all_zero || (0.05..1000.0).contains(&scale.limit) {
        0
    } else {
        scale.limit.log10().floor() as i32
    }
}

fn annotation(value: f64, exponent: i32) -> String {
    let text = format!("{:.2}", value / 10f64.powi(exponent));
    if text == "-0.00" {
        "0.00".to_string()
    } else {
        text
    }
}

fn token_matrix_scene(title: &str, input_tokens: &[String], output_tokens: &[String], values: &[f64]) -> Result<(Scene, String), RenderError> {
    let figure = "the token matrix";
    validate_count(figure, "input token", input_tokens.len())?;
    validate_count(figure, "output token", output_tokens.len())?;
    let (rows, columns) = (output_tokens.len(), input_tokens.len());
    if values.len() != rows * columns {
        return Err(RenderError::BadData(format!(
            "{figure} of {} × {} needs {} values (output-major), got {}",
            counted(rows, "output token"),
            counted(columns, "input token"),
            rows * columns,
            values.len()
        )));
    }
    check_finite(figure, values, |index| {
        format!(
            "output token {} ({:?}), input token {} ({:?})",
            index / columns,
            output_tokens[index / columns],
            index % columns,
            input_tokens[index % columns]
        )
    })?;
    let (inputs, outputs) = (readable(input_tokens), readable(output_tokens));
    let scale = Symmetric::of(values);
    let layout = CellLayout::new(rows, columns);
    let colours: Vec<Colour> = values.iter().map(|&value| scale.colour(value)).collect();

    let column_texts: Vec<String> = inputs.iter().map(|token| drawable(&token.text)).collect();
    let labels = token_axis(&column_texts, layout.cell_width);
    let row_every = nice_at_least(ROW_LABEL_PITCH / layout.cell_height);
    let shown_rows: Vec<usize> = (0..rows).step_by(row_every).collect();
    let row_text = |row: usize| if row_every > 1 { format!("{row}: {}", drawable(&outputs[row].text)) } else { drawable(&outputs[row].text) };
    let row_texts: Vec<String> = shown_rows.iter().map(|&row| fit_end(&row_text(row), TICK_FONT, MAX_ROW_LABEL)).collect();
    let exponent = annotation_exponent(&scale);
    let annotations: Vec<String> = values.iter().map(|&value| annotation(value, exponent)).collect();
    let widest_annotation = annotations.iter().map(|text| text_width(text, CELL_FONT)).fold(0.0, f32::max);
    let annotated = layout.cell_width >= widest_annotation + 4.0 && layout.cell_height >= MIN_ANNOTATED_HEIGHT;

    let left = row_texts.iter().map(|text| text_width(text, TICK_FONT) + 10.0).fold(labels.overhang_left(layout.cell_width) + 2.0, f32::max).ceil();
    let grid_right = left + layout.width;
    let bar_height = layout.height.max(MIN_BAR_HEIGHT);
    let fraction = |value: f64| (value + scale.limit) / (2.0 * scale.limit);
    let colour_at = |at: f64| token_colour(2.0 * at - 1.0);
    let mut ticks: Vec<(f64, String)> =
        ticks_within(-scale.limit, scale.limit, 6).into_iter().map(|(value, label)| (fraction(value), label)).collect();
    if ticks.len() < 2 {
        ticks = vec![(0.0, value_text(-scale.limit)), (1.0, value_text(scale.limit))];
    }
    let colour_bar = ColourBar { colour_at: &colour_at, ticks, band: None, levels: Vec::new(), caption: "attribution" };
    let bar_left = (grid_right + labels.overhang_right(layout.cell_width, layout.width).max(0.0) + 16.0).ceil();
    let width = (bar_left + colour_bar.width(bar_height) + 2.0).ceil();
    let grid_bottom = GRID_TOP + layout.height;
    let height = (grid_bottom + labels.height()).max(GRID_TOP + bar_height + 8.0).ceil();
    let mut scene = Scene::new(width, height);

    scene.push(Element::Image { x: left, y: GRID_TOP, image: layout.picture(&colours, columns), label: "token matrix".to_string() });
    scene.line((left - 0.5, GRID_TOP - 0.5), (grid_right + 0.5, GRID_TOP - 0.5), AXIS, 1.0);
    scene.line((left - 0.5, grid_bottom + 0.5), (grid_right + 0.5, grid_bottom + 0.5), AXIS, 1.0);
    scene.line((left - 0.5, GRID_TOP - 0.5), (left - 0.5, grid_bottom + 0.5), AXIS, 1.0);
    scene.line((grid_right + 0.5, GRID_TOP - 0.5), (grid_right + 0.5, grid_bottom + 0.5), AXIS, 1.0);
    if annotated {
        for (index, text) in annotations.into_iter().enumerate() {
            let (row, column) = (index / columns, index % columns);
            let colour = if luminance(colours[index]) > 0.35 { TEXT } else { [255, 255, 255] };
            scene.push(Element::Text {
                x: left + (column as f32 + 0.5) * layout.cell_width - 0.5,
                y: GRID_TOP + (row as f32 + 0.5) * layout.cell_height + 3.5,
                text,
                size: CELL_FONT,
                anchor: Anchor::Middle,
                colour,
                rotation: 0.0,
            });
        }
    }
    for (&row, text) in shown_rows.iter().zip(row_texts) {
        scene.text(left - 6.0, GRID_TOP + (row as f32 + 0.5) * layout.cell_height + 3.5, text, TICK_FONT, Anchor::End);
    }
    for &column in &labels.shown {
        let x = (left + (column as f32 + 0.5) * layout.cell_width).round() + 0.5;
        scene.line((x, grid_bottom + 1.0), (x, grid_bottom + 5.0), AXIS, 1.0);
        scene.push(labels.text(column, x, grid_bottom, TEXT));
    }
    scene.place(colour_bar.draw(bar_height), bar_left, GRID_TOP);

    let units = if exponent == 0 { String::new() } else { format!("; cell values in units of 1e{exponent}") };
    let subtitle = format!("rows: output tokens, columns: input tokens; {}{}", scale.words(), if annotated { units.as_str() } else { "" });
    let alt_text = format!(
        "{title}: attribution of {} (rows) to {} (columns) as a grid of cells from red (negative) through white (0) to green (positive), {}. {}",
        counted(rows, "output token"),
        counted(columns, "input token"),
        scale.words(),
        strongest_cells(&inputs, &outputs, values),
    );
    Ok((compose(title, &subtitle, vec![(title.to_string(), scene)]), alt_text))
}

/// The labels of an axis of tokens; when only every k-th fits, each label starts with
/// its token's index (`16: back`), so that a reader can tell where they are.
fn token_axis(texts: &[String], pitch: f32) -> AxisLabels {
    let labels = AxisLabels::new(texts, pitch, &BTreeSet::new());
    if labels.every == 1 {
        return labels;
    }
    let indexed: Vec<String> = texts.iter().enumerate().map(|(index, text)| format!("{index}: {text}")).collect();
    AxisLabels::new(&indexed, pitch, &BTreeSet::new())
}

/// The alt text's sentence on the strongest cells: up to five by |value|.
fn strongest_cells(inputs: &[ShownToken], outputs: &[ShownToken], values: &[f64]) -> String {
    const LISTED: usize = 5;
    let columns = inputs.len();
    let mut order: Vec<usize> = (0..values.len()).filter(|&index| values[index] != 0.0).collect();
    order.sort_by(|&a, &b| values[b].abs().total_cmp(&values[a].abs()).then(a.cmp(&b)));
    if order.is_empty() {
        return "No cell has a non-zero attribution.".to_string();
    }
    let cells: Vec<String> = order
        .iter()
        .take(LISTED)
        .map(|&index| {
            let (row, column) = (index / columns, index % columns);
            format!(
                "output {:?} (token {row}) from input {:?} (token {column}) {}",
                outputs[row].text,
                inputs[column].text,
                value_text(values[index])
            )
        })
        .collect();
    format!("Strongest cells: {}.", cells.join("; "))
}

fn sequence_bars_scene(title: &str, tokens: &[String], values: &[f64]) -> Result<(Scene, String), RenderError> {
    validate("the sequence bar chart", tokens, values)?;
    let shown = readable(tokens);
    let count = tokens.len();
    let axis = ValueScale::fitted(AxisScale::Linear, values.iter().copied().chain([0.0]), 5);
    let plot_width = (count as f32 * BAR_PITCH).clamp(MIN_PLOT_WIDTH, MAX_PLOT_WIDTH);
    let pitch = plot_width / count as f32;
    let texts: Vec<String> = shown.iter().map(|token| drawable(&token.text)).collect();
    let labels = token_axis(&texts, pitch);
    let left = (axis.widest_label() + 12.0).max(labels.overhang_left(pitch) + 2.0).max(40.0).ceil();
    let right = labels.overhang_right(pitch, plot_width).max(12.0).ceil();
    let (top, bottom) = (PLOT_TOP, PLOT_TOP + PLOT_HEIGHT);
    let width = (left + plot_width + right).ceil();
    let mut scene = Scene::new(width, (bottom + labels.height()).ceil());
    let y_of = |value: f64| top + (1.0 - axis.fraction(value).clamp(0.0, 1.0)) as f32 * PLOT_HEIGHT;
    let x_of = |index: usize| left + (index as f32 + 0.5) * pitch;

    scene.text(left, 13.0, "attribution", CAPTION_FONT, Anchor::Start);
    axis.draw(&mut scene, left, top, plot_width, PLOT_HEIGHT);
    let zero = y_of(0.0);
    // Bars narrower than a few pixels touch, as gaps of less than a pixel would only
    // make stripes.
    let bar_width = if pitch < 4.0 { pitch } else { pitch * 0.7 };
    for (index, &value) in values.iter().enumerate() {
        let end = y_of(value);
        // Any value off zero is at least a pixel tall, so it shows.
        let (from, to) = if end <= zero { (end.min(zero - 1.0), zero) } else { (zero, end.max(zero + 1.0)) };
        if value != 0.0 {
            let fill = chart_colour(Sign::All, value as f32);
            scene.push(Element::Rect { x: x_of(index) - bar_width / 2.0, y: from, width: bar_width, height: to - from, fill });
        }
    }
    scene.line((left, zero.round() + 0.5), (left + plot_width, zero.round() + 0.5), AXIS, 1.0);
    scene.line((left - 0.5, bottom + 0.5), (left + plot_width, bottom + 0.5), AXIS, 1.0);
    for &index in &labels.shown {
        let x = x_of(index).round() + 0.5;
        scene.line((x, bottom + 1.0), (x, bottom + 5.0), AXIS, 1.0);
        scene.push(labels.text(index, x, bottom, TEXT));
    }

    let sum: f64 = values.iter().sum();
    let every = if labels.every > 1 { format!(", 1 in {} labelled", labels.every) } else { String::new() };
    let subtitle = format!("{}{every}; green positive, red negative", counted(count, "token"));
    let alt_text = format!(
        "{title}: vertical bar chart of the attribution of each of {}, in order, value axis {} to {}. {} Sum of all attributions {}.",
        counted(count, "input token"),
        value_text(axis.low),
        value_text(axis.high),
        strongest_tokens(&shown, values),
        value_text(sum),
    );
    Ok((compose(title, &subtitle, vec![(title.to_string(), scene)]), alt_text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{png, svg};

    fn strings(tokens: &[&str]) -> Vec<String> {
        tokens.iter().map(|token| token.to_string()).collect()
    }

    fn bad_data<T: std::fmt::Debug>(result: Result<T, RenderError>) -> String {
        match result {
            Err(RenderError::BadData(message)) => message,
            other => panic!("expected BadData, got {other:?}"),
        }
    }

    /// Each tokenizer's way of writing tokens, and how they are shown: the text, and
    /// `+` before a token that starts a word, `/` after one that ends a line.
    #[test]
    fn tokens_are_shown_readably_whatever_the_tokenizer() {
        fn check(tokens: &[&str], expect: &[&str]) {
            let shown: Vec<String> = readable(&strings(tokens))
                .iter()
                .map(|token| format!("{}{}{}", if token.starts_word { "+" } else { "" }, token.text, if token.ends_line { "/" } else { "" }))
                .collect();
            assert_eq!(shown, expect, "{tokens:?}");
        }
        // GPT-2 byte-level: Ġ is a space, Ċ a line feed, âĢĻ the three bytes of ’, and
        // an emoji split over two tokens shows its bytes.
        check(
            &["<|endoftext|>", "The", "Ġcat", "âĢĻs", "Ġmat", ".", "Ċ", "Ġ", "ĠðŁ", "ĻĤ"],
            &["+<|endoftext|>", "+The", "+cat", "\u{2019}s", "+mat", ".", "\u{21b5}/", "+\u{2423}", "+\\xF0\\x9F", "\\x99\\x82"],
        );
        // SentencePiece: ▁ is a space, <0x0A> a line feed byte.
        check(&["<s>", "▁Hello", "▁wor", "ld", "<0x0A>", "▁again"], &["+<s>", "+Hello", "+wor", "ld", "\u{21b5}/", "+again"]);
        // WordPiece: ## continues the word.
        check(&["[CLS]", "un", "##believ", "##able", "!", "[SEP]"], &["+[CLS]", "+un", "believ", "able", "!", "+[SEP]"]);
        // Decoded tokens with their spaces; tabs and control characters made visible.
        check(&["Hello", " world", "\tx", "\u{1b}[0m"], &["+Hello", "+world", "\u{21e5}x", "\\x1B[0m"]);
        // Plain words, punctuation after them; markup-like text that is no control
        // token stays as it is.
        check(&["a < b", "&", "\"q\"", ",", "ok", "..."], &["+a < b", "+&", "+\"q\"", ",", "+ok", "..."]);
        // Plain text with a Latin Extended-A letter is not byte-level.
        check(&["był", "tam"], &["+był", "+tam"]);
    }

    #[test]
    fn characters_the_font_lacks_are_drawn_as_code_points() {
        assert_eq!(drawable("中文 ok"), "U+4E2D U+6587 ok");
        assert_eq!(drawable("a🙂b"), "a U+1F642 b");
        assert_eq!(drawable("é\u{21b5}"), "é\u{21b5}");
    }

    #[test]
    fn colours_run_from_red_through_white_to_green() {
        assert_eq!(token_colour(1.0), POSITIVE_END);
        assert_eq!(token_colour(0.0), [255, 255, 255]);
        assert_eq!(token_colour(-1.0), NEGATIVE_END);
        // Captum's hsl(120, 75%, 75%) at half strength.
        assert_eq!(token_colour(0.5), [144, 239, 144]);
        let scale = Symmetric::of(&[0.5, -2.0, 1.0]);
        assert_eq!((scale.limit, scale.normalised(1.0)), (2.0, 0.5));
        assert!(Symmetric::of(&[0.0, 0.0]).all_zero);
    }

    #[test]
    fn running_text_wraps_between_words_and_after_line_feeds() {
        let shown = readable(&strings(&["Ġword"; 200]));
        let placed = set_text(&shown);
        let lines = placed.last().unwrap().line + 1;
        assert!(lines > 5 && lines < 40, "{lines} lines");
        assert!(placed.iter().all(|token| token.x + token.width <= TEXT_WIDTH), "every token inside the line");
        // Pieces of one word stay on one line; a line feed ends the line.
        let shown = readable(&strings(&["Ġun", "believ", "able", "Ċ", "Ġnext"]));
        let placed = set_text(&shown);
        assert_eq!(placed.iter().map(|token| token.line).collect::<Vec<_>>(), [0, 0, 0, 0, 1]);
        assert_eq!(placed[1].x, placed[0].x + placed[0].width + PIECE_GAP);
    }

    #[test]
    fn heat_map_renders_both_formats_with_escaped_tokens() {
        let tokens = strings(&["<|endoftext|>", "If", "Ġa", "Ġ<", "Ġb", "Ġ&", "Ġ\"", "c", "\"", "Ġthen"]);
        let values = [0.0, 0.1, -0.2, 0.9, 0.05, -0.7, 0.3, 0.0, 0.0, 0.2];
        let figure = token_heat_map("integrated gradients, target \"yes\"", &tokens, &values, Format::Png).unwrap();
        let picture = png(&figure);
        assert!(picture.width() > 300 && picture.height() > 80, "{:?}", picture.dimensions());
        let text = svg(&token_heat_map("integrated gradients, target \"yes\"", &tokens, &values, Format::Svg).unwrap());
        for escaped in [">&lt;|endoftext|&gt;</text>", ">&lt;</text>", ">&amp;</text>", ">&quot;</text>", "target &quot;yes&quot;"] {
            assert!(text.contains(escaped), "{escaped} in the SVG");
        }
        assert!(!text.contains("<|endoftext|>") && !text.contains(">\"<"), "nothing unescaped");
        // The strongest token's box has the full positive colour.
        let (scene, alt) = token_heat_map_scene("t", &tokens, &values).unwrap();
        assert!(scene.elements.iter().any(|element| matches!(element, Element::Rect { fill, .. } if *fill == POSITIVE_END)));
        assert!(alt.contains("Most positive: \"<\" (token 3) 0.9") && alt.contains("most negative: \"&\" (token 5) -0.7"), "{alt}");
        assert!(alt.contains("scaled to \u{b1}0.9"), "{alt}");
    }

    #[test]
    fn html_is_escaped_and_self_contained() {
        let tokens = strings(&["[CLS]", "<script>", "&", "\"", "##x", "[SEP]"]);
        let html = token_html(&tokens, &[0.0, 1.0, -0.5, 0.25, 0.0, 0.0], Some("a <b> title")).unwrap();
        assert!(html.starts_with("<div style=") && html.ends_with("</div>"));
        assert!(html.contains("a &lt;b&gt; title"), "{html}");
        assert!(!html.contains("<script") && html.contains(">&lt;script&gt;</span>") && html.contains(">&amp;</span>"), "{html}");
        assert!(html.contains(">&quot;</span>") && html.contains("title=\"token 1: 1\""), "{html}");
        assert!(html.contains("background-color: rgba(32, 223, 32, 1.000)") && html.contains("background-color: rgba(230, 77, 77, 0.500)"), "{html}");
        // `##x` joins the token before it: no space between the spans.
        assert!(html.contains("&quot;</span><span"), "{html}");
        assert!(!html.contains("class=") && !html.contains("<style"), "inline styles only");
        assert_eq!(html.matches("<span style=\"background-color").count(), tokens.len());
        // Line feeds break the line; no title means no heading.
        let html = token_html(&strings(&["a", "Ċ", "Ġb"]), &[0.0, 0.0, 0.0], None).unwrap();
        assert!(html.contains("\u{21b5}</span><br><span") && !html.contains("font-weight"), "{html}");
    }

    #[test]
    fn bad_data_names_the_problem() {
        let tokens = strings(&["Ġa", "Ġb", "Ġc"]);
        let many: Vec<String> = vec!["x".to_string(); MAX_TEXT_TOKENS + 1];
        let message = bad_data(token_heat_map("t", &tokens, &[0.1, f64::NAN, 0.2], Format::Png));
        assert!(message.contains("non-finite value (NaN) at token 1 (\"Ġb\")"), "{message}");
        let message = bad_data(token_html(&tokens, &[0.1, 0.2], None));
        assert!(message.contains("2 values for 3 tokens"), "{message}");
        let message = bad_data(sequence_bars("t", &[], &[], Format::Svg));
        assert!(message.contains("at least one token"), "{message}");
        let message = bad_data(sequence_bars("t", &tokens, &[0.0, f64::INFINITY, 0.0], Format::Svg));
        assert!(message.contains("(inf) at token 1"), "{message}");
        let message = bad_data(token_heat_map("t", &many, &vec![0.0; many.len()], Format::Png));
        assert!(message.contains("at most 4096 tokens, got 4097"), "{message}");
        let message = bad_data(token_matrix("t", &tokens, &strings(&["x", "y"]), &[0.0; 5], Format::Png));
        assert!(message.contains("2 output tokens × 3 input tokens needs 6 values"), "{message}");
        let message = bad_data(token_matrix("t", &tokens, &strings(&["x", "y"]), &[0.0, 0.0, 0.0, 0.0, f64::NAN, 0.0], Format::Png));
        assert!(message.contains("at output token 1 (\"y\"), input token 1 (\"Ġb\")"), "{message}");
        let message = bad_data(token_matrix("t", &tokens, &[], &[], Format::Png));
        assert!(message.contains("at least one output token"), "{message}");
    }

    #[test]
    fn matrix_writes_values_in_cells_that_fit_them() {
        let inputs = strings(&["<s>", "▁The", "▁capital", "▁of", "▁France", "▁is"]);
        let outputs = strings(&["▁Paris", ".", "</s>"]);
        let values: Vec<f64> = (0..18).map(|index| ((index * 7) % 11) as f64 / 10.0 - 0.5).collect();
        let (scene, alt) = token_matrix_scene("plot_token_attr", &inputs, &outputs, &values).unwrap();
        let texts: Vec<&str> = scene
            .elements
            .iter()
            .filter_map(|element| match element {
                Element::Text { text, size, .. } if *size == CELL_FONT => Some(text.as_str()),
                _ => None,
            })
            .collect();
        assert!(texts.contains(&"0.50") && texts.contains(&"-0.50") && texts.contains(&"0.00"), "{texts:?}");
        assert!(alt.contains("3 output tokens (rows) to 6 input tokens (columns)"), "{alt}");
        // Ties go to the first cell: -0.5 at row 0, column 0.
        assert!(alt.contains("Strongest cells: output \"Paris\" (token 0) from input \"<s>\" (token 0) -0.5"), "{alt}");
        let text = svg(&token_matrix("t", &inputs, &outputs, &values, Format::Svg).unwrap());
        assert!(text.contains(">&lt;s&gt;</text>") && text.contains(">&lt;/s&gt;</text>") && text.contains(">France</text>"));
        png(&token_matrix("t", &inputs, &outputs, &values, Format::Png).unwrap());
        // Tiny values are written in units of their power of ten.
        let small: Vec<f64> = values.iter().map(|value| value * 1e-3).collect();
        let (scene, _) = token_matrix_scene("t", &inputs, &outputs, &small).unwrap();
        assert!(scene.elements.iter().any(|element| matches!(element, Element::Text { text, .. } if text.contains("in units of 1e-4"))));
    }

    #[test]
    fn bars_grow_from_zero_green_up_and_red_down() {
        let tokens = strings(&["ĠThe", "Ġmovie", "Ġwas", "Ġnot", "Ġgood"]);
        let values = [0.1, 0.4, 0.0, -0.6, 0.3];
        let (scene, alt) = sequence_bars_scene("plot_seq_attr", &tokens, &values).unwrap();
        let bars: Vec<(f32, f32, Colour)> = scene
            .elements
            .iter()
            .filter_map(|element| match element {
                Element::Rect { y, height, fill, .. } => Some((*y, *height, *fill)),
                _ => None,
            })
            .collect();
        assert_eq!(bars.len(), 4, "no bar for 0");
        let (up, down) = (bars[1], bars[2]);
        assert!((up.0 + up.1 - down.0).abs() < 0.01, "bars meet at zero: {bars:?}");
        assert_eq!((up.2, down.2), (chart_colour(Sign::All, 0.4), chart_colour(Sign::All, -0.6)));
        assert!(alt.contains("Most positive: \"movie\" (token 1) 0.4"), "{alt}");
        assert!(alt.contains("most negative: \"not\" (token 3) -0.6") && alt.contains("Sum of all attributions 0.2"), "{alt}");
        let text = svg(&sequence_bars("t", &strings(&["a<b", "c&d", "\"e\""]), &[1.0, -1.0, 0.5], Format::Svg).unwrap());
        assert!(text.contains(">a&lt;b</text>") && text.contains(">c&amp;d</text>") && text.contains(">&quot;e&quot;</text>"));
        png(&sequence_bars("t", &tokens, &values, Format::Png).unwrap());
    }

    #[test]
    fn a_thousand_tokens_still_render() {
        let tokens: Vec<String> = (0..1024).map(|index| if index % 3 == 0 { format!("Ġword{index}") } else { "ing".to_string() }).collect();
        let values: Vec<f64> = (0..1024).map(|index| ((index as f64) * 0.37).sin()).collect();
        let heat = png(&token_heat_map("long prompt", &tokens, &values, Format::Png).unwrap());
        assert!(heat.width() <= 1000 && heat.height() > 500 && heat.height() < 4000, "{:?}", heat.dimensions());
        let bars = png(&sequence_bars("long prompt", &tokens, &values, Format::Png).unwrap());
        assert!(bars.width() <= 1500, "{:?}", bars.dimensions());
        let outputs: Vec<String> = (0..40).map(|index| format!("Ġout{index}")).collect();
        let matrix_values: Vec<f64> = (0..40 * 1024).map(|index| ((index as f64) * 0.01).cos()).collect();
        let (scene, _) = token_matrix_scene("long prompt", &tokens, &outputs, &matrix_values).unwrap();
        let texts = scene.elements.iter().filter(|element| matches!(element, Element::Text { .. })).count();
        assert!(texts < 200, "labels only, no values in 1 px cells: {texts} texts");
        let matrix = png(&token_matrix("long prompt", &tokens, &outputs, &matrix_values, Format::Png).unwrap());
        assert!(matrix.width() <= 1400 && matrix.height() <= 1100, "{:?}", matrix.dimensions());
    }
}
