//! layerlens-render: figures from plain numbers. No libtorch, no network: the daemon
//! hands in shapes and values, gets back PNG or SVG bytes with alt text.
//!
//! Attribution figures follow Captum's `visualize_image_attr`: the attribution is summed
//! over channels, one sign is selected (`absolute_value`, `positive`, `negative`, `all`),
//! outliers are clipped by a cumulative-sum threshold and the result is scaled to
//! [-1, 1]; then it is drawn as a heat map, blended over the grey input, used as a mask
//! or as opacity. What is drawn is decided from the shapes (first batch row only):
//!
//! - image, input `(batch, 1|3, height, width)` and a 4-D attribution: Captum's image
//!   methods; the attribution is summed over its channels and, when smaller (Grad-CAM,
//!   layer maps), upsampled bilinearly to the input's size;
//! - tabular, attribution `(batch, features)` with at most [`MAX_BAR_FEATURES`]
//!   features: a bar chart;
//! - sequence, attribution `(batch, length)` with more features than that, or
//!   `(batch, length, dims)`: a line plot over positions, summed over `dims`;
//! - anything else: a plain heat map of the first batch row.
//!
//! Where layerlens departs from Captum, it is so that a figure is always drawn from
//! what the daemon has (the model input, not the user's original picture): an input
//! whose values are not all in [0, 1] is stretched from its min..max to 0..255 (Captum
//! would use it as it is); when no value of the chosen sign is non-zero the map is blank
//! (Captum asserts); non-finite attributions count as 0.
//!
//! Besides attributions, [`step_chart`] draws one or more series of plain numbers
//! over labelled steps (the Spearman correlation after each randomisation step of a
//! sanity check), and [`summary_table_svg`] the model summary. For generated inputs,
//! [`image_grid`] draws a captioned contact sheet of synthesized images and
//! [`counterfactual_figure`] each counterfactual beside its original with their
//! difference (a heat map for images, a bar chart for tabular rows).
//!
//! For explaining training and the optimiser: [`matrix_heat_map`] colours a matrix
//! such as layers × steps of the update:weight ratio, optionally splitting its colour
//! map at a healthy band so that cells outside it stand out; [`line_chart`] draws
//! curves over a numeric axis (learning rate, losses, several runs);
//! [`step_chart_scaled`] is the step chart on a log axis (per-layer gradient norms of
//! several steps); [`contour_plot`] draws a loss landscape with its contour lines, the
//! checkpoint and projected training trajectories; [`bar_chart`] draws one horizontal
//! bar per layer (relative weight change between checkpoints). Axes and colour scales
//! are linear or log10 ([`AxisScale`], [`ColourScale`]).
//!
//! For attributions over the tokens of a text (language models), as Captum shows them:
//! [`token_heat_map`] sets the prompt as running text with each token on a background
//! coloured by its attribution (`visualize_text`), [`token_html`] is the same as an
//! HTML fragment for a notebook, [`token_matrix`] colours output tokens × input tokens
//! (`plot_token_attr`) and [`sequence_bars`] draws a bar per input token
//! (`plot_seq_attr`). Tokens come as the tokenizer wrote them (`Ġthe`, `▁the`,
//! `##ing`, `<|endoftext|>`) and are shown as readable text.
//!
//! Every figure is laid out once as a scene of primitives (`scene.rs`) and then drawn
//! as PNG (text rasterised from a font compiled into the binary, so no system fonts are
//! needed) or as SVG (text stays `<text>`, raster parts are embedded PNGs). Every figure
//! has alt text naming the method, the sign, where the strongest attribution is and the
//! scale.

mod bar_chart;
mod chart;
mod colour;
mod colour_bar;
mod contour;
mod figure;
mod filters;
mod font;
mod graph;
mod graph_layout;
mod heat_map;
mod histogram;
mod image_attr;
mod images;
mod layer_stats;
mod line_chart;
mod normalize;
mod options;
mod panel;
mod plane;
mod raster;
mod scene;
mod small_multiples;
mod step_chart;
mod svg;
mod table;
#[cfg(test)]
mod test_support;
mod text_attr;

pub use bar_chart::bar_chart;
pub use contour::{contour_plot, PlotPath};
pub use figure::{attribution_figure, method_grid, AttributionFigure, GridPanel, MAX_BAR_FEATURES};
pub use filters::{filter_grid, MAX_FILTER_TILES};
pub use graph::{
    graph_figure, graph_figure_and_layout, graph_layout, BoxRole, GraphEdge, GraphLayout, GraphNode, GraphOptions, LaidOutBox, LaidOutEdge,
    LaidOutFrame, ModelGraph,
};
pub use heat_map::matrix_heat_map;
pub use histogram::{histogram_grid, HistogramPanel};
pub use images::{counterfactual_figure, image_grid, CounterfactualPanel, ImageTile, MAX_COUNTERFACTUAL_ROWS, MAX_IMAGE_TILES};
pub use layer_stats::{layer_stat_chart, LayerStatSeries};
pub use line_chart::{line_chart, LineSeries};
pub use options::{AxisScale, ColourScale, FigureOptions, Sign, VisualMethod};
pub use step_chart::{step_chart, step_chart_scaled, ChartSeries};
pub use table::{summary_table_svg, TableRow};
pub use text_attr::{sequence_bars, token_heat_map, token_html, token_matrix, MAX_TEXT_TOKENS};

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
    /// Shapes and values that do not fit together, or data that cannot be drawn.
    #[error("cannot render a figure: {0}")]
    BadData(String),
    /// A figure option that is unknown, out of range, or does not fit the input (a
    /// method that needs an image for a tabular input, `masked_image` with sign `all`).
    #[error("invalid figure options: {0}")]
    BadOptions(String),
    #[error("encoding the figure failed: {0}")]
    Encoding(String),
}
