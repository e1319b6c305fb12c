//! The `layerlens` binary's behaviour that needs no daemon: every command's `--help`
//! against committed snapshots, shell completions, and `layerlens open`.
//!
//! The snapshots live in `clients/cli/tests/snapshots/help/<command>.txt`. After changing
//! a command's flags or examples on purpose, rewrite them with
//!
//! ```sh
//! UPDATE_SNAPSHOTS=1 cargo test -p layerlens-cli --test cli
//! ```
//!
//! and review the diff like any other change. The commands that talk to a daemon are
//! tested end to end in `tests/tests/e2e.rs`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Every command whose help is snapshot-tested, as the words after `layerlens`.
const COMMANDS: &[&[&str]] = &[
    &[],
    &["models"],
    &["models", "add"],
    &["models", "list"],
    &["models", "rm"],
    &["models", "pin"],
    &["models", "unpin"],
    &["summary"],
    &["params"],
    &["activations"],
    &["predict"],
    &["graph"],
    &["attribute"],
    &["compare"],
    &["evaluate"],
    &["sanity-check"],
    &["generate"],
    &["counterfactual"],
    &["traverse"],
    &["status"],
    &["completions"],
    &["open"],
];

const SHELLS: &[&str] = &["bash", "zsh", "fish", "elvish", "powershell"];

/// The CLI with an environment that cannot change its output: no daemon address or
/// token from the caller, no display, no opener override.
fn layerlens() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_layerlens"));
    for name in ["LAYERLENS_ADDR", "LAYERLENS_TOKEN", "LAYERLENS_OPENER", "DISPLAY", "WAYLAND_DISPLAY"] {
        command.env_remove(name);
    }
    command
}

fn run(command: &mut Command) -> (Output, String, String) {
    let output = command.output().expect("running layerlens");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output, stdout, stderr)
}

fn snapshot_path(words: &[&str]) -> PathBuf {
    let name = if words.is_empty() { "layerlens".to_string() } else { words.join("-") };
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots/help").join(format!("{name}.txt"))
}

/// The subcommand names listed under "Commands:" in a help text (without `help`).
fn listed_commands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|line| !line.starts_with("Commands:"))
        .skip(1)
        .take_while(|line| line.starts_with("  "))
        .filter_map(|line| line.split_whitespace().next().map(str::to_string))
        .filter(|name| name != "help")
        .collect()
}

#[test]
fn every_command_has_help_with_examples_matching_its_snapshot() {
    let update = std::env::var_os("UPDATE_SNAPSHOTS").is_some_and(|value| value == "1");
    let mut mismatches = Vec::new();
    for words in COMMANDS {
        let (output, help, stderr) = run(layerlens().args(*words).arg("--help"));
        assert!(output.status.success(), "layerlens {} --help failed: {stderr}", words.join(" "));
        assert!(help.contains("\nExample"), "layerlens {} --help shows no examples:\n{help}", words.join(" "));
        let path = snapshot_path(words);
        if update {
            std::fs::create_dir_all(path.parent().expect("a snapshot directory")).expect("creating the snapshot directory");
            std::fs::write(&path, &help).unwrap_or_else(|error| panic!("writing {}: {error}", path.display()));
            continue;
        }
        match std::fs::read_to_string(&path) {
            Ok(expected) if expected == help => {}
            Ok(expected) => mismatches.push(format!(
                "layerlens {} --help differs from {}:\n--- expected\n{expected}\n--- actual\n{help}",
                words.join(" "),
                path.display()
            )),
            Err(error) => mismatches.push(format!("{}: {error}", path.display())),
        }
    }
    assert!(
        mismatches.is_empty(),
        "{}\n\nIf the change is intended, run `UPDATE_SNAPSHOTS=1 cargo test -p layerlens-cli --test cli` and review the diff",
        mismatches.join("\n\n")
    );
}

#[test]
fn the_snapshot_list_covers_every_command() {
    let (_, top, _) = run(layerlens().arg("--help"));
    let (_, models, _) = run(layerlens().args(["models", "--help"]));
    let mut commands: Vec<Vec<String>> = listed_commands(&top).into_iter().map(|name| vec![name]).collect();
    commands.extend(listed_commands(&models).into_iter().map(|name| vec!["models".to_string(), name]));
    assert!(commands.len() > 15, "parsed too few commands from --help:\n{top}");
    for command in commands {
        assert!(
            COMMANDS.iter().any(|words| words.iter().copied().eq(command.iter().map(String::as_str))),
            "layerlens {} has no help snapshot: add it to COMMANDS",
            command.join(" ")
        );
    }
}

#[test]
fn completions_are_printed_for_every_shell_without_a_daemon() {
    for shell in SHELLS {
        // An address nobody listens on: completions must not try to connect.
        let (output, script, stderr) = run(layerlens().args(["--addr", "http://127.0.0.1:1", "completions", shell]));
        assert!(output.status.success(), "completions {shell}: {stderr}");
        for word in ["layerlens", "sanity-check", "--input-shape", "completions"] {
            assert!(script.contains(word), "the {shell} script does not mention {word}");
        }
    }
    // The bash script is valid bash.
    let (_, script, _) = run(layerlens().args(["completions", "bash"]));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("layerlens.bash");
    std::fs::write(&path, script).unwrap();
    let status = Command::new("bash").arg("-n").arg(&path).status().expect("running bash -n");
    assert!(status.success(), "bash -n rejects the completion script");

    let (output, _, stderr) = run(layerlens().args(["completions", "tcsh"]));
    assert!(!output.status.success());
    assert!(stderr.contains("tcsh"), "{stderr}");
}

/// A shell script standing in for xdg-open: it appends its argument to `log`.
fn fake_opener(dir: &Path, name: &str, log: &Path, exit_status: i32) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\nprintf '%s\\n' \"$1\" >> '{}'\nexit {exit_status}\n", log.display())).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[test]
fn open_prints_the_absolute_path_and_opens_only_where_it_can() {
    let work = tempfile::tempdir().unwrap();
    let figure = work.path().join("saliency.png");
    std::fs::write(&figure, b"\x89PNG\r\n\x1a\n").unwrap();
    let bin = work.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let log = work.path().join("opened.log");
    fake_opener(&bin, "xdg-open", &log, 0);

    // Headless (no DISPLAY): the path alone, success, and the opener is not run even
    // though it is on PATH. The relative name is printed absolute.
    let (output, stdout, stderr) = run(layerlens().current_dir(work.path()).env("PATH", &bin).args(["open", "saliency.png"]));
    assert!(output.status.success(), "{stderr}");
    assert_eq!(stdout.trim_end(), figure.display().to_string());
    assert!(!log.exists(), "xdg-open ran without a display");

    // No daemon is needed, and --json says what happened.
    let (output, stdout, _) = run(layerlens().current_dir(work.path()).env("PATH", &bin).args(["--addr", "http://127.0.0.1:1", "--json", "open", "saliency.png"]));
    assert!(output.status.success());
    let answer: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(answer["path"], figure.display().to_string());
    assert_eq!(answer["opened"], false);
    assert!(answer["opener"].is_null());

    // With a display, xdg-open from PATH gets the absolute path.
    let (output, stdout, stderr) =
        run(layerlens().current_dir(work.path()).env("PATH", &bin).env("DISPLAY", ":0").args(["--json", "open", "saliency.png"]));
    assert!(output.status.success(), "{stderr}");
    let answer: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(answer["opened"], true, "{answer}");
    assert_eq!(answer["opener"], bin.join("xdg-open").display().to_string());
    assert_eq!(std::fs::read_to_string(&log).unwrap(), format!("{}\n", figure.display()));

    // LAYERLENS_OPENER picks the program; one that fails leaves a note but no failure.
    let failing = fake_opener(&bin, "broken-viewer", &log, 3);
    let (output, stdout, stderr) = run(layerlens().env("LAYERLENS_OPENER", &failing).arg("open").arg(&figure));
    assert!(output.status.success(), "{stderr}");
    assert_eq!(stdout.trim_end(), figure.display().to_string());
    assert!(stderr.contains("not opened") && stderr.contains("broken-viewer"), "{stderr}");

    // A missing file is an error naming it, on one line.
    let (output, _, stderr) = run(layerlens().args(["open", "no-such-figure.png"]));
    assert!(!output.status.success());
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("no-such-figure.png"), "{stderr}");
    let (output, _, stderr) = run(layerlens().arg("open").arg(work.path()));
    assert!(!output.status.success() && stderr.contains("not a file"), "{stderr}");
}
