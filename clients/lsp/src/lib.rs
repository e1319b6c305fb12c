//! layerlens-lsp: a language server that shows what `layerlensd` knows about a
//! PyTorch model where its Python source is edited — hover cards on layers, anomaly
//! diagnostics and output-shape inlay hints. It talks to the daemon only through
//! `layerlens-client` and links no libtorch, so an editor never pays for it.
//!
//! The pieces: `config` (daemon address, token, `layerlens.toml`), `source` (finding
//! layers in Python text), `model` (the daemon's answers for one model, fetched once
//! and kept), `card` (Markdown hover cards), `server` (the LSP loop).

pub mod card;
pub mod config;
pub mod model;
pub mod server;
pub mod source;

pub use server::run_stdio;
