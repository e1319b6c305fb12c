//! `layerlens open FILE` and the absolute paths the figure-writing commands print.
//!
//! Commands print where a figure went as an absolute path, so it can be pasted into a
//! viewer or a browser from any directory. `open` hands a file to the desktop's opener
//! (`open` on macOS, `xdg-open` elsewhere) when one can be started, and otherwise only
//! prints the path: on a headless server or over SSH there is nothing to open a window
//! on, and that is not an error. `LAYERLENS_OPENER` names another program (a viewer, or
//! `true` to never open anything).

use crate::output::outln;
use anyhow::Context;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// `path` made absolute against the working directory (not resolving links), as text.
pub fn absolute(path: &Path) -> String {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()).display().to_string()
}

/// The program that opens files on this machine, or None where none can show anything.
fn opener() -> Option<PathBuf> {
    if let Some(program) = std::env::var_os("LAYERLENS_OPENER").filter(|value| !value.is_empty()) {
        return find_program(Path::new(&program));
    }
    if cfg!(target_os = "macos") {
        return find_program(Path::new("open"));
    }
    // xdg-open without a display falls back to a text browser in the terminal, or
    // fails; neither helps, so a headless machine gets the path alone.
    let has_display = ["DISPLAY", "WAYLAND_DISPLAY"].iter().any(|name| std::env::var_os(name).is_some_and(|value| !value.is_empty()));
    if has_display {
        find_program(Path::new("xdg-open"))
    } else {
        None
    }
}

/// A program name looked up on PATH (a path with a separator is taken as it is).
fn find_program(program: &Path) -> Option<PathBuf> {
    if program.components().count() > 1 {
        return program.is_file().then(|| program.to_path_buf());
    }
    let search_path = std::env::var_os("PATH")?;
    std::env::split_paths(&search_path).map(|dir| dir.join(program)).find(|candidate| candidate.is_file())
}

pub fn open(file: &Path, as_json: bool) -> anyhow::Result<()> {
    let metadata = std::fs::metadata(file).with_context(|| format!("cannot open {}", file.display()))?;
    if !metadata.is_file() {
        anyhow::bail!("cannot open {}: not a file", file.display());
    }
    let path = absolute(file);
    let opener = opener();
    let mut opened = false;
    let mut problem = None;
    if let Some(program) = &opener {
        // The opener's own chatter (xdg-open's warnings) would clutter the terminal;
        // its exit status says whether it worked.
        let status = Command::new(program).arg(&path).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).status();
        match status {
            Ok(status) if status.success() => opened = true,
            Ok(status) => problem = Some(format!("{} exited with {status}", program.display())),
            Err(error) => problem = Some(format!("cannot run {}: {error}", program.display())),
        }
    }
    if as_json {
        outln!("{}", json!({"path": path, "opened": opened, "opener": opener.map(|program| program.display().to_string())}))?;
    } else {
        outln!("{path}")?;
    }
    if let Some(problem) = problem {
        // Still a success: the path is printed, which is what a headless user needs.
        eprintln!("layerlens: not opened ({problem})");
    }
    Ok(())
}
