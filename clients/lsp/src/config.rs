//! Where the daemon is and which model a Python file belongs to. The daemon address
//! and token come from the client's `initializationOptions` (`addr`, `token`), else
//! from `LAYERLENS_ADDR` / `LAYERLENS_TOKEN`, else the default address. A workspace
//! `layerlens.toml` pins files to models:
//!
//! ```toml
//! [[model]]
//! name = "digits"            # name or id in the daemon's store
//! files = ["model.py"]       # relative to the workspace root
//! input_shape = [1, 1, 8, 8] # optional: else the shape stored with the model
//! sample = "x.npy"           # optional float32 input for activation statistics
//! ```

use serde::Deserialize;
use std::path::{Path, PathBuf};

/// The file name looked up at the workspace root.
pub const WORKSPACE_FILE: &str = "layerlens.toml";

#[derive(Debug, Clone, Default, Deserialize)]
pub struct InitializationOptions {
    pub addr: Option<String>,
    pub token: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkspaceConfig {
    #[serde(default, rename = "model")]
    pub models: Vec<ModelMapping>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelMapping {
    pub name: String,
    #[serde(default)]
    pub files: Vec<String>,
    pub input_shape: Option<Vec<i64>>,
    pub sample: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub addr: String,
    pub token: Option<String>,
    pub workspace_root: PathBuf,
    pub workspace: WorkspaceConfig,
    /// Set when `layerlens.toml` exists but cannot be read; shown to the user once.
    pub workspace_error: Option<String>,
}

impl Settings {
    pub fn new(options: InitializationOptions, workspace_root: PathBuf) -> Settings {
        let addr = options
            .addr
            .filter(|addr| !addr.is_empty())
            .or_else(|| std::env::var("LAYERLENS_ADDR").ok().filter(|addr| !addr.is_empty()))
            .unwrap_or_else(|| layerlens_client::DEFAULT_ADDR.to_string());
        let token =
            options.token.filter(|token| !token.is_empty()).or_else(|| std::env::var("LAYERLENS_TOKEN").ok().filter(|token| !token.is_empty()));
        let (workspace, workspace_error) = match read_workspace_config(&workspace_root) {
            Ok(config) => (config, None),
            Err(error) => (WorkspaceConfig::default(), Some(error)),
        };
        Settings { addr, token, workspace_root, workspace, workspace_error }
    }

    /// The mapping whose `files` include `path`.
    pub fn mapping_for(&self, path: &Path) -> Option<&ModelMapping> {
        let path = normalize(path);
        self.workspace.models.iter().find(|mapping| mapping.files.iter().any(|file| normalize(&self.workspace_root.join(file)) == path))
    }
}

fn read_workspace_config(root: &Path) -> Result<WorkspaceConfig, String> {
    let path = root.join(WORKSPACE_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(WorkspaceConfig::default()),
        Err(error) => return Err(format!("cannot read {}: {error}", path.display())),
    };
    toml::from_str(&text).map_err(|error| format!("{} is not valid: {error}", path.display()))
}

/// An absolute path with symlinks resolved where the file exists, so that paths the
/// editor, the config and TorchScript's recorded call sites use compare equal.
pub fn normalize(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}
