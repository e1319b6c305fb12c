//! Daemon configuration: command-line flags (CONTRACT.md), optionally layered over a
//! TOML file given with `--config`. Flags win over the file. Also the access rules
//! that can be checked before anything starts: a daemon without a tokens file only
//! listens on loopback unless told `--insecure`, and TLS needs both a cert and a key.

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use layerlens_engine::Device;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(name = "layerlensd", version, about = "Serves explanations of PyTorch models (torch.export .pt2 and TorchScript) over gRPC")]
pub struct Flags {
    /// Address to listen on (`127.0.0.1:7533`); port 0 picks a free port.
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Serve Prometheus metrics (`GET /metrics`) on this address, e.g.
    /// `127.0.0.1:9533`; the same loopback rule as --listen. Off by default.
    /// `--metrics ADDR` (CONTRACT.md) is the same flag.
    #[arg(long, visible_alias = "metrics", value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,
    /// Serve the web explorer and the same API over gRPC-Web on this address, e.g.
    /// `127.0.0.1:7534`; the same loopback, token and TLS rules as --listen. Off by default.
    #[arg(long, value_name = "ADDR")]
    pub web_listen: Option<SocketAddr>,
    /// Size bound of the result cache (encoded answers of repeated deterministic
    /// explanation requests), in bytes; 0 turns it off [default: 256 MiB].
    #[arg(long)]
    pub cache_bytes: Option<u64>,
    /// Model store directory [default: $XDG_DATA_HOME/layerlens or ~/.local/share/layerlens].
    #[arg(long)]
    pub store: Option<PathBuf>,
    /// cpu, cuda or cuda:N [default: cuda:0 when CUDA is usable, else cpu].
    #[arg(long)]
    pub device: Option<String>,
    /// TOML file with the same keys as these flags (listen, metrics_listen, web_listen, store,
    /// device, max_message_bytes, max_model_bytes, pass_budget_bytes,
    /// max_generation_steps, cache_bytes, tokens, insecure, tls_cert, tls_key,
    /// model_roots, max_queue, max_batch_size, max_batch_delay_ms,
    /// memory_budget_bytes, allow_tf32, op_libraries).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Largest gRPC message accepted or sent, in bytes [default: 64 MiB].
    #[arg(long)]
    pub max_message_bytes: Option<usize>,
    /// Largest model file accepted by Upload and AddFromPath, in bytes [default: 2 GiB].
    #[arg(long)]
    pub max_model_bytes: Option<u64>,
    /// Working memory one forward/backward pass may use, in bytes; attribution steps,
    /// samples and perturbations are chunked to fit [default: 1 GiB on the CPU; on a
    /// GPU, its free memory when a request is planned, less a tenth of the device
    /// (at least 1 GiB)].
    #[arg(long)]
    pub pass_budget_bytes: Option<u64>,
    /// Optimisation steps one generation job (visualisation, counterfactual) may ask
    /// for [default: 10000].
    #[arg(long)]
    pub max_generation_steps: Option<u32>,
    /// Let cuDNN convolutions on a GPU round to TF32 (PyTorch's default). Off by
    /// default: in TF32 a conv's result depends on the batch it ran in, so batched and
    /// lone explanations would differ.
    #[arg(long)]
    pub allow_tf32: bool,
    /// Requests one model's queue holds (waiting, not running); one more is refused at
    /// once with RESOURCE_EXHAUSTED and a retry hint [default: 256].
    #[arg(long)]
    pub max_queue: Option<usize>,
    /// Most compatible requests (same model, method, options and row shape) run as
    /// one pass; 1 turns cross-request batching off [default: 8].
    #[arg(long)]
    pub max_batch_size: Option<usize>,
    /// How long a batchable request that found companions waits for more, in
    /// milliseconds; a request that finds none runs at once [default: 2].
    #[arg(long)]
    pub max_batch_delay_ms: Option<u64>,
    /// Bytes the resident models' parameters and buffers may take on the device;
    /// least recently used unpinned models are evicted to make room [default: no
    /// budget].
    #[arg(long)]
    pub memory_budget_bytes: Option<u64>,
    /// Shared library of custom operators (TORCH_LIBRARY) to load before any model, so
    /// exported programs that call them run (repeatable).
    #[arg(long = "op-library", value_name = "PATH")]
    pub op_libraries: Vec<PathBuf>,
    /// Store a TorchScript file under a name before serving, e.g. `digits=demo/digits_cnn.pt`
    /// (repeatable). An optional `@1,1,8,8` suffix records the model's input shape.
    #[arg(long = "add-model", value_name = "NAME=PATH[@SHAPE]")]
    pub add_models: Vec<String>,
    /// TOML file of users (`[[user]]` with name, token_sha256, role = "admin" or
    /// "user"); turns on authentication: every call but health needs
    /// `authorization: Bearer <token>`.
    #[arg(long)]
    pub tokens: Option<PathBuf>,
    /// Serve a non-loopback address without a tokens file (anyone who reaches the
    /// port may use and delete models).
    #[arg(long)]
    pub insecure: bool,
    /// PEM certificate chain; with --tls-key the daemon serves TLS (https://) only.
    #[arg(long, value_name = "PEM")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, value_name = "PEM")]
    pub tls_key: Option<PathBuf>,
    /// Directory whose files AddFromPath may store (repeatable); without one,
    /// AddFromPath is refused. `--add-model` is not restricted.
    #[arg(long = "model-root", value_name = "DIR")]
    pub model_roots: Vec<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the sha256 hex of a token read from stdin (one trailing newline is
    /// dropped), for the `token_sha256` of a tokens file.
    HashToken,
}

/// The same settings as a TOML file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    metrics_listen: Option<SocketAddr>,
    web_listen: Option<SocketAddr>,
    cache_bytes: Option<u64>,
    store: Option<PathBuf>,
    device: Option<String>,
    max_message_bytes: Option<usize>,
    max_model_bytes: Option<u64>,
    pass_budget_bytes: Option<u64>,
    max_generation_steps: Option<u32>,
    tokens: Option<PathBuf>,
    insecure: Option<bool>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    model_roots: Option<Vec<PathBuf>>,
    max_queue: Option<usize>,
    max_batch_size: Option<usize>,
    max_batch_delay_ms: Option<u64>,
    memory_budget_bytes: Option<u64>,
    allow_tf32: Option<bool>,
    op_libraries: Option<Vec<PathBuf>>,
}

/// A model to store at start-up.
#[derive(Debug, Clone)]
pub struct StartupModel {
    pub name: String,
    pub path: PathBuf,
    pub input_shape: Vec<i64>,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// Where `GET /metrics` is served; `None`: nowhere.
    pub metrics_listen: Option<SocketAddr>,
    /// Where the web explorer and gRPC-Web are served; `None`: nowhere.
    pub web_listen: Option<SocketAddr>,
    /// Size bound of the result cache in bytes; 0: no cache.
    pub cache_bytes: u64,
    pub store: PathBuf,
    pub device: Device,
    pub max_message_bytes: usize,
    pub max_model_bytes: u64,
    pub pass_budget: layerlens_engine::PassBudget,
    pub max_generation_steps: u32,
    pub startup_models: Vec<StartupModel>,
    /// The tokens file; `None` means no authentication (loopback or `--insecure`).
    pub tokens: Option<PathBuf>,
    pub tls: Option<TlsFiles>,
    /// AddFromPath's allowed directories, as configured (canonicalized at start-up).
    pub model_roots: Vec<PathBuf>,
    pub queue: layerlens_engine::QueueSettings,
    /// Bytes resident models may take; `None`: no budget.
    pub memory_budget_bytes: Option<u64>,
    pub allow_tf32: bool,
    /// Custom-operator libraries loaded before any model.
    pub op_libraries: Vec<PathBuf>,
}

/// The daemon's certificate chain and key, both PEM.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Config {
    pub fn from_flags(flags: Flags) -> anyhow::Result<Config> {
        let file = match &flags.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).with_context(|| format!("reading config file {}", path.display()))?;
                toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))?
            }
            None => FileConfig::default(),
        };
        let device = match flags.device.or(file.device) {
            Some(text) => text.parse::<Device>()?,
            None => Device::default_for_host(),
        };
        device.check_available()?;
        let store = match flags.store.or(file.store) {
            Some(store) => store,
            None => default_store_dir()?,
        };
        let startup_models = flags.add_models.iter().map(|spec| parse_startup_model(spec)).collect::<anyhow::Result<_>>()?;
        let listen = flags.listen.or(file.listen).unwrap_or_else(|| "127.0.0.1:7533".parse().expect("valid address"));
        let tokens = flags.tokens.or(file.tokens);
        let insecure = flags.insecure || file.insecure.unwrap_or(false);
        check_exposure("listen on", listen, tokens.is_some(), insecure)?;
        let metrics_listen = flags.metrics_listen.or(file.metrics_listen);
        if let Some(address) = metrics_listen {
            check_exposure("serve metrics on", address, tokens.is_some(), insecure)?;
        }
        let web_listen = flags.web_listen.or(file.web_listen);
        if let Some(address) = web_listen {
            check_exposure("serve the web explorer on", address, tokens.is_some(), insecure)?;
        }
        let tls = match (flags.tls_cert.or(file.tls_cert), flags.tls_key.or(file.tls_key)) {
            (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
            (None, None) => None,
            (Some(_), None) => bail!("--tls-cert needs --tls-key (the certificate's private key)"),
            (None, Some(_)) => bail!("--tls-key needs --tls-cert (the certificate chain)"),
        };
        let model_roots = if flags.model_roots.is_empty() { file.model_roots.unwrap_or_default() } else { flags.model_roots };
        Ok(Config {
            listen,
            metrics_listen,
            web_listen,
            cache_bytes: flags.cache_bytes.or(file.cache_bytes).unwrap_or(256 << 20),
            store,
            device,
            max_message_bytes: flags.max_message_bytes.or(file.max_message_bytes).unwrap_or(64 << 20),
            max_model_bytes: flags.max_model_bytes.or(file.max_model_bytes).unwrap_or(2 << 30),
            pass_budget: match flags.pass_budget_bytes.or(file.pass_budget_bytes) {
                Some(bytes) => layerlens_engine::PassBudget::Bytes(bytes.max(1)),
                None => layerlens_engine::PassBudget::FromDevice,
            },
            max_generation_steps: flags.max_generation_steps.or(file.max_generation_steps).unwrap_or(10_000).max(1),
            startup_models,
            tokens,
            tls,
            model_roots,
            queue: layerlens_engine::QueueSettings {
                max_queue: flags.max_queue.or(file.max_queue).unwrap_or(256).max(1),
                max_batch_size: flags.max_batch_size.or(file.max_batch_size).unwrap_or(8).max(1),
                max_batch_delay: std::time::Duration::from_millis(flags.max_batch_delay_ms.or(file.max_batch_delay_ms).unwrap_or(2)),
            },
            memory_budget_bytes: flags.memory_budget_bytes.or(file.memory_budget_bytes),
            allow_tf32: flags.allow_tf32 || file.allow_tf32.unwrap_or(false),
            op_libraries: if flags.op_libraries.is_empty() { file.op_libraries.unwrap_or_default() } else { flags.op_libraries },
        })
    }
}

/// The loopback rule for an address the daemon serves on: without tokens anyone who
/// reaches the port may use (and delete) models, and the metrics port names users and
/// models, so only this machine may reach either unless the admin says otherwise.
fn check_exposure(what: &str, address: SocketAddr, has_tokens: bool, insecure: bool) -> anyhow::Result<()> {
    if !has_tokens && !address.ip().is_loopback() && !insecure {
        bail!(
            "refusing to {what} {address} without authentication: pass --tokens FILE to require access tokens, \
             or --insecure to let anyone who can reach this address use the daemon (or use 127.0.0.1)"
        );
    }
    Ok(())
}

fn default_store_dir() -> anyhow::Result<PathBuf> {
    if let Some(data_home) = std::env::var_os("XDG_DATA_HOME").filter(|value| !value.is_empty()) {
        return Ok(PathBuf::from(data_home).join("layerlens"));
    }
    match std::env::var_os("HOME") {
        Some(home) => Ok(PathBuf::from(home).join(".local/share/layerlens")),
        None => bail!("neither XDG_DATA_HOME nor HOME is set; pass --store DIR"),
    }
}

fn parse_startup_model(spec: &str) -> anyhow::Result<StartupModel> {
    let Some((name, rest)) = spec.split_once('=') else {
        bail!("--add-model {spec}: expected NAME=PATH or NAME=PATH@SHAPE");
    };
    let (path, input_shape) = match rest.rsplit_once('@') {
        Some((path, shape)) => {
            let dims = shape
                .split(',')
                .map(|dim| dim.trim().parse::<i64>())
                .collect::<Result<Vec<_>, _>>()
                .with_context(|| format!("--add-model {spec}: shape '{shape}' is not a comma-separated list of integers"))?;
            (path, dims)
        }
        None => (rest, Vec::new()),
    };
    Ok(StartupModel { name: name.to_string(), path: PathBuf::from(path), input_shape })
}
