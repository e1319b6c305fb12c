//! ARCHITECTURE.md's invariants that a test can check, checked on the source tree:
//! dependencies point one way, the engine knows nothing of the network, only the
//! daemon's error module builds gRPC statuses, and no client links libtorch. A change
//! that breaks one fails here with the file and line that broke it.

use layerlens_e2e::workspace_root;
use std::path::{Path, PathBuf};

/// The `[dependencies]` table of a crate's Cargo.toml, as dependency names.
fn dependencies(manifest: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(manifest).unwrap_or_else(|error| panic!("{}: {error}", manifest.display()));
    let mut names = Vec::new();
    let mut in_dependencies = false;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_dependencies = line == "[dependencies]";
            continue;
        }
        if in_dependencies {
            if let Some((name, _)) = line.split_once('=') {
                let name = name.trim().trim_end_matches(".workspace").trim();
                if !name.is_empty() && !name.starts_with('#') {
                    names.push(name.to_string());
                }
            }
        }
    }
    names
}

/// Every `.rs` file under a directory.
fn rust_files(directory: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![directory.to_path_buf()];
    while let Some(directory) = pending.pop() {
        for entry in std::fs::read_dir(&directory).unwrap_or_else(|error| panic!("{}: {error}", directory.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|extension| extension == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// `file:line: text` of every line of the files that contains one of `needles`.
fn lines_containing(files: &[PathBuf], needles: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(file).unwrap();
        for (number, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            if needles.iter().any(|needle| code.contains(needle)) {
                found.push(format!("{}:{}: {}", file.display(), number + 1, line.trim()));
            }
        }
    }
    found
}

#[test]
fn the_engine_and_the_renderer_know_nothing_of_the_network() {
    let root = workspace_root();
    let network = ["tonic", "prost", "hyper", "h2", "tower", "http", "layerlens-proto", "tokio-stream"];
    for krate in ["daemon/engine", "daemon/render", "daemon/checkpoint", "methods"] {
        let dependencies = dependencies(&root.join(krate).join("Cargo.toml"));
        let leaked: Vec<&String> = dependencies.iter().filter(|name| network.contains(&name.as_str())).collect();
        assert!(leaked.is_empty(), "{krate} depends on network crates {leaked:?}");
        let uses = lines_containing(&rust_files(&root.join(krate).join("src")), &["tonic::", "prost::", "layerlens_proto"]);
        assert!(uses.is_empty(), "{krate} uses the network API:\n{}", uses.join("\n"));
    }
}

#[test]
fn no_client_links_libtorch() {
    let root = workspace_root();
    for krate in ["clients/rust", "clients/cli", "clients/lsp", "kernel-ext", "proto", "methods"] {
        let dependencies = dependencies(&root.join(krate).join("Cargo.toml"));
        for forbidden in ["tch", "torch-sys", "layerlens-engine", "layerlens-daemon"] {
            assert!(!dependencies.iter().any(|name| name == forbidden), "{krate} depends on {forbidden}");
        }
    }
}

/// Checkpoints are read as data before anything loads them: the reader needs no
/// libtorch (the checkpoint crate), and only the daemon opens the training database.
#[test]
fn the_checkpoint_reader_links_no_libtorch_and_only_the_daemon_opens_the_database() {
    let root = workspace_root();
    let dependencies = dependencies(&root.join("daemon/checkpoint/Cargo.toml"));
    for forbidden in ["tch", "torch-sys", "layerlens-engine"] {
        assert!(!dependencies.iter().any(|name| name == forbidden), "daemon/checkpoint depends on {forbidden}");
    }
    for krate in ["daemon/engine", "daemon/render", "daemon/checkpoint", "clients/rust", "clients/cli", "clients/lsp"] {
        let opened = lines_containing(&rust_files(&root.join(krate).join("src")), &["rusqlite::"]);
        assert!(opened.is_empty(), "{krate} uses the database directly:\n{}", opened.join("\n"));
    }
}

#[test]
fn only_the_error_module_builds_grpc_statuses() {
    let root = workspace_root();
    let files: Vec<PathBuf> = rust_files(&root.join("daemon/src")).into_iter().filter(|file| !file.ends_with("error.rs")).collect();
    let builders = [
        "Status::new(",
        "Status::invalid_argument(",
        "Status::internal(",
        "Status::not_found(",
        "Status::unauthenticated(",
        "Status::permission_denied(",
        "Status::resource_exhausted(",
        "Status::cancelled(",
        "Status::unavailable(",
        "Status::deadline_exceeded(",
    ];
    let built = lines_containing(&files, &builders);
    assert!(built.is_empty(), "statuses built outside daemon/src/error.rs:\n{}", built.join("\n"));
}

#[test]
fn method_names_are_listed_only_in_the_method_table() {
    // A method's name may appear in docs, tests and help examples, but no source file
    // outside the table and the engine's binding of it may decide by a list of names.
    let root = workspace_root();
    let mut files = Vec::new();
    for directory in ["daemon/src", "daemon/engine/src", "clients/cli/src", "clients/rust/src", "clients/lsp/src", "kernel-ext/src"] {
        files.extend(rust_files(&root.join(directory)));
    }
    let allowed = ["attribution/methods.rs"];
    let files: Vec<PathBuf> = files.into_iter().filter(|file| !allowed.iter().any(|name| file.ends_with(name))).collect();
    let lists = lines_containing(&files, &["\"grad_cam\" |", "| \"grad_cam\"", "\"layer_activation\" |", "\"smoothgrad\" |", "\"saliency\" |"]);
    assert!(lists.is_empty(), "method names matched outside the method table:\n{}", lists.join("\n"));
}
