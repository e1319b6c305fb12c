//! Renders the figures of attributions over text tokens from made-up attributions of
//! the tokenizers' own token strings (GPT-2 byte-level, SentencePiece, WordPiece) into a
//! folder, to look at by eye: `cargo run -p layerlens-render --example text_figures --
//! /tmp/textfigs`. The HTML fragment is written beside them.

use layerlens_render::{sequence_bars, token_heat_map, token_html, token_matrix, Format};
use std::path::{Path, PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let folder = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "/tmp/textfigs".to_string()));
    std::fs::create_dir_all(&folder)?;
    sentiment(&folder)?;
    generation(&folder)?;
    wordpiece(&folder)?;
    long_prompt(&folder)?;
    awkward_tokens(&folder)?;
    Ok(())
}

fn write(folder: &Path, name: &str, data: &[u8], alt_text: &str) -> std::io::Result<()> {
    std::fs::write(folder.join(name), data)?;
    println!("{name}: {alt_text}\n");
    Ok(())
}

fn strings(tokens: &[&str]) -> Vec<String> {
    tokens.iter().map(|token| token.to_string()).collect()
}

/// A GPT-2 prompt for sentiment, with a line feed and a curly apostrophe in it.
fn sentiment(folder: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let tokens = strings(&[
        "<|endoftext|>",
        "Review",
        ":",
        "ĠThe",
        "Ġmovie",
        "Ġwasn",
        "âĢĻt",
        "Ġbad",
        "Ġat",
        "Ġall",
        ";",
        "Ġthe",
        "Ġacting",
        "Ġwas",
        "Ġsuperb",
        "Ġand",
        "Ġthe",
        "Ġplot",
        "Ġkept",
        "Ġme",
        "Ġguessing",
        ".",
        "Ċ",
        "Sent",
        "iment",
        ":",
    ]);
    let values = [
        0.01, 0.05, 0.0, 0.02, 0.08, -0.31, -0.12, -0.45, 0.06, 0.11, 0.0, 0.01, 0.22, 0.03, 0.92, 0.02, 0.01, 0.07, 0.15, 0.04, 0.28, 0.0, 0.0,
        0.03, 0.02, 0.01,
    ];
    let figure = token_heat_map("integrated gradients, target \"positive\"", &tokens, &values, Format::Png)?;
    write(folder, "token-heat-map.png", &figure.data, &figure.alt_text)?;
    let figure = token_heat_map("integrated gradients, target \"positive\"", &tokens, &values, Format::Svg)?;
    write(folder, "token-heat-map.svg", &figure.data, &figure.alt_text)?;
    let html = token_html(&tokens, &values, Some("integrated gradients, target \"positive\""))?;
    write(folder, "token-heat-map.html", html.as_bytes(), "(HTML fragment)")?;
    let figure = sequence_bars("feature ablation, target \"positive\"", &tokens, &values, Format::Png)?;
    write(folder, "sequence-bars.png", &figure.data, &figure.alt_text)?;
    let figure = sequence_bars("feature ablation, target \"positive\"", &tokens, &values, Format::Svg)?;
    write(folder, "sequence-bars.svg", &figure.data, &figure.alt_text)?;
    Ok(())
}

/// A Llama-style (SentencePiece) prompt and the answer generated for it.
fn generation(folder: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let inputs = strings(&["<s>", "▁Dave", "▁lives", "▁in", "▁Palm", "▁Coast", ",", "▁FL", "▁and", "▁is", "▁a", "▁lawyer", "."]);
    let outputs = strings(&["▁He", "▁lives", "▁in", "▁Florida", "▁and", "▁works", "▁as", "▁an", "▁attorney", ".", "</s>"]);
    let mut values = Vec::new();
    for (row, _) in outputs.iter().enumerate() {
        for (column, _) in inputs.iter().enumerate() {
            let near = 1.0 / (1.0 + (row as f64 - column as f64 * 0.8).abs());
            let wiggle = ((row * 7 + column * 3) as f64).sin() * 0.25;
            values.push(near * 0.9 + wiggle - 0.15);
        }
    }
    let figure = token_matrix("layer integrated gradients, generated answer", &inputs, &outputs, &values, Format::Png)?;
    write(folder, "token-matrix.png", &figure.data, &figure.alt_text)?;
    let figure = token_matrix("layer integrated gradients, generated answer", &inputs, &outputs, &values, Format::Svg)?;
    write(folder, "token-matrix.svg", &figure.data, &figure.alt_text)?;
    let small: Vec<f64> = values.iter().map(|value| value * 2e-4).collect();
    let figure = token_matrix("saliency (tiny values)", &inputs, &outputs, &small, Format::Png)?;
    write(folder, "token-matrix-small-values.png", &figure.data, &figure.alt_text)?;
    let row: Vec<f64> = values[3 * inputs.len()..4 * inputs.len()].to_vec();
    let figure = token_heat_map("attribution to \"Florida\"", &inputs, &row, Format::Png)?;
    write(folder, "token-heat-map-sentencepiece.png", &figure.data, &figure.alt_text)?;
    Ok(())
}

/// BERT WordPiece pieces with [CLS] and [SEP].
fn wordpiece(folder: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let tokens = strings(&[
        "[CLS]", "the", "film", "was", "un", "##believ", "##ably", "boring", ",", "but", "the", "sound", "##track", "saved", "it", "[SEP]",
    ]);
    let values = [0.0, 0.01, 0.03, -0.02, -0.2, -0.35, -0.15, -0.8, 0.0, 0.3, 0.01, 0.2, 0.25, 0.6, 0.05, 0.0];
    let figure = token_heat_map("saliency, BERT sentiment", &tokens, &values, Format::Png)?;
    write(folder, "token-heat-map-wordpiece.png", &figure.data, &figure.alt_text)?;
    let figure = sequence_bars("saliency, BERT sentiment", &tokens, &values, Format::Png)?;
    write(folder, "sequence-bars-wordpiece.png", &figure.data, &figure.alt_text)?;
    Ok(())
}

/// 1024 tokens of made-up running text.
fn long_prompt(folder: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let words = ["Ġthe", "Ġmodel", "Ġattribut", "es", "Ġeach", "Ġtoken", ",", "Ġand", "Ġwe", "Ġread", "Ġthem", "Ġback", ".", "Ċ"];
    let tokens: Vec<String> = (0..1024).map(|index| words[index % words.len()].to_string()).collect();
    let values: Vec<f64> = (0..1024).map(|index| ((index as f64) * 0.05).sin() * ((index as f64) * 0.013).cos()).collect();
    let figure = token_heat_map("occlusion over 1024 tokens", &tokens, &values, Format::Png)?;
    write(folder, "token-heat-map-1024.png", &figure.data, &figure.alt_text)?;
    let figure = sequence_bars("occlusion over 1024 tokens", &tokens, &values, Format::Png)?;
    write(folder, "sequence-bars-1024.png", &figure.data, &figure.alt_text)?;
    let outputs: Vec<String> = (0..48).map(|index| words[index % words.len()].to_string()).collect();
    let matrix: Vec<f64> = (0..48 * 1024).map(|index| ((index % 1024) as f64 * 0.02 + (index / 1024) as f64 * 0.3).sin()).collect();
    let figure = token_matrix("attention-weighted attribution, 48 × 1024", &tokens, &outputs, &matrix, Format::Png)?;
    write(folder, "token-matrix-1024.png", &figure.data, &figure.alt_text)?;
    Ok(())
}

/// Markup characters, CJK, an emoji split over two byte-level tokens, a tab, a very
/// long token, all attributions 0.
fn awkward_tokens(folder: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let tokens =
        strings(&["<", "tag", ">", "Ġ&", "amp", ";", "Ġ\"", "quoted", "\"", "Ġä¸Ń", "æĸĩ", "ĠðŁ", "ĻĤ", "ĉ", "Ġ", "Ġ", "Ġsupercalifragilistic"]);
    let values: Vec<f64> = (0..tokens.len()).map(|index| (index as f64 - 8.0) * 0.1).collect();
    let figure = token_heat_map("awkward <tokens> & \"quotes\"", &tokens, &values, Format::Png)?;
    write(folder, "token-heat-map-awkward.png", &figure.data, &figure.alt_text)?;
    let figure = token_heat_map("awkward <tokens> & \"quotes\"", &tokens, &values, Format::Svg)?;
    write(folder, "token-heat-map-awkward.svg", &figure.data, &figure.alt_text)?;
    let html = token_html(&tokens, &values, Some("awkward <tokens> & \"quotes\""))?;
    write(folder, "token-heat-map-awkward.html", html.as_bytes(), "(HTML fragment)")?;
    let zeros = vec![0.0; 5];
    let figure = token_heat_map("all zero", &tokens[..5], &zeros, Format::Png)?;
    write(folder, "token-heat-map-zero.png", &figure.data, &figure.alt_text)?;
    Ok(())
}
