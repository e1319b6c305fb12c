//! layerlens-render: figures from plain numbers. No libtorch, no network: the daemon
//! hands in shapes and values, gets back PNG or SVG bytes with alt text.
//!
//! Today: attribution heat maps (input, heat map, blended overlay, colour bar) for
//! image inputs, a plain heat map for other inputs, and a summary table as SVG.

mod colour;
mod heatmap;
mod table;

pub use heatmap::{attribution_figure, AttributionFigure};
pub use table::{summary_table_svg, TableRow};

/// A rendered figure.
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    /// `image/png` or `image/svg+xml`.
    pub mime: String,
    pub data: Vec<u8>,
    /// The figure described in words.
    pub alt_text: String,
}

/// Which encoding to produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Png,
    Svg,
}

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("cannot render a figure: {0}")]
    BadData(String),
    #[error("encoding the figure failed: {0}")]
    Encoding(String),
}
