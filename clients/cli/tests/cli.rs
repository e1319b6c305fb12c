//! The `layerlens` binary's behaviour that needs no real daemon: every command's `--help`
//! against committed snapshots, shell completions, `layerlens open`, output into a closed
//! pipe, negative numbers in flags, and Ctrl-C while a streaming request is in flight
//! (against a stand-in that accepts the request and never answers).
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

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

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
    &["generate-text"],
    &["attribute-text"],
    &["bench"],
    &["checkpoints"],
    &["checkpoints", "add"],
    &["checkpoints", "list"],
    &["optimizer"],
    &["landscape"],
    &["weight-change"],
    &["runs"],
    &["runs", "list"],
    &["runs", "show"],
    &["runs", "figure"],
    &["status"],
    &["methods"],
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
    let mut commands: Vec<Vec<String>> = listed_commands(&top).into_iter().map(|name| vec![name]).collect();
    for group in ["models", "checkpoints", "runs"] {
        let (_, help, _) = run(layerlens().args([group, "--help"]));
        commands.extend(listed_commands(&help).into_iter().map(|name| vec![group.to_string(), name]));
    }
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
    let (output, stdout, _) =
        run(layerlens().current_dir(work.path()).env("PATH", &bin).args(["--addr", "http://127.0.0.1:1", "--json", "open", "saliency.png"]));
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

#[test]
fn a_closed_stdout_ends_the_command_quietly_with_success() {
    let work = tempfile::tempdir().unwrap();
    let figure = work.path().join("saliency.png");
    std::fs::write(&figure, b"\x89PNG\r\n\x1a\n").unwrap();
    let figure_text = figure.to_str().unwrap();
    // `open` prints through the CLI's own code, the others through clap and the
    // completion generator; all of them must stop quietly like `grep | head` does.
    for args in
        [vec!["open", figure_text], vec!["--json", "open", figure_text], vec!["completions", "bash"], vec!["--help"], vec!["attribute", "--help"]]
    {
        // The read end is closed before the CLI starts, so its first write fails with
        // EPIPE however quickly or slowly the process gets there.
        let (reader, writer) = std::io::pipe().expect("creating a pipe");
        drop(reader);
        let output = layerlens().args(&args).stdout(writer).stderr(Stdio::piped()).output().expect("running layerlens");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "layerlens {} into a closed pipe: {} {stderr}", args.join(" "), output.status);
        assert!(stderr.is_empty(), "layerlens {} into a closed pipe wrote to stderr: {stderr}", args.join(" "));
    }
}

#[test]
fn negative_numbers_in_flags_get_past_the_parser() {
    let work = tempfile::tempdir().unwrap();
    let input = work.path().join("x.npy");
    write_npy_f32(&input, &[1, 4], &[0.0; 4]);
    let input = input.to_str().unwrap();
    let attribute = ["attribute", "digits", "--input", input, "--method", "integrated_gradients"];
    let generate = ["generate", "digits", "--objective", "class:0"];
    // Signed flags reach the connection attempt (nobody listens on port 1), which
    // proves the parser took the value: the daemon is the one to say what is wrong
    // with it. Unsigned flags get clap's named error for the value, not a usage dump
    // about an unexpected argument.
    let cannot_connect = "cannot connect to layerlensd";
    let cases: Vec<(Vec<&str>, &str)> = vec![
        ([&attribute[..], &["--target", "-1"]].concat(), cannot_connect),
        ([&attribute[..], &["--steps", "-4"]].concat(), cannot_connect),
        ([&attribute[..], &["--targets", "-1,2"]].concat(), cannot_connect),
        (vec!["sanity-check", "digits", "--input", input, "--method", "saliency", "--seed", "-3"], cannot_connect),
        (vec!["summary", "digits", "--input-shape", "-1,1,8,8"], cannot_connect),
        (vec!["models", "add", "model.pt", "--input-shape", "-1,1,8,8"], cannot_connect),
        ([&generate[..], &["--learning-rate", "-0.5"]].concat(), cannot_connect),
        ([&generate[..], &["--l2", "-1e-3", "--total-variation", "-1", "--blur", "-2.5"]].concat(), cannot_connect),
        ([&generate[..], &["--mean", "-0.5,0.25", "--std", "-1"]].concat(), cannot_connect),
        (vec!["counterfactual", "digits", "--input", input, "--target", "-1,3"], cannot_connect),
        (vec!["traverse", "decoder", "--z", input, "--range", "-2"], cannot_connect),
        ([&generate[..], &["--steps", "-4"]].concat(), "invalid value '-4' for '--steps <STEPS>'"),
        ([&generate[..], &["--seed", "-1"]].concat(), "invalid value '-1' for '--seed <SEED>'"),
        (vec!["summary", "digits", "--depth", "-1"], "invalid value '-1' for '--depth <DEPTH>'"),
        (vec!["graph", "digits", "--input-shape", "1,1,8,8", "--figure", "g.svg", "--depth", "-2"], "invalid value '-2' for '--depth <DEPTH>'"),
        (vec!["params", "digits", "--bins", "-1"], "invalid value '-1' for '--bins <BINS>'"),
        (vec!["activations", "digits", "--input", input, "--bins", "-1"], "invalid value '-1' for '--bins <BINS>'"),
        (vec!["predict", "digits", "--input", input, "--top-k", "-1"], "invalid value '-1' for '--top-k <TOP_K>'"),
        (vec!["counterfactual", "digits", "--input", input, "--target", "1", "--steps", "-1"], "invalid value '-1' for '--steps <STEPS>'"),
        (vec!["traverse", "decoder", "--z", input, "--dims", "-1,2"], "invalid value '-1' for '--dims <DIMS>'"),
        (vec!["traverse", "decoder", "--z", input, "--steps", "-7"], "invalid value '-7' for '--steps <STEPS>'"),
    ];
    for (args, needle) in cases {
        let (output, _, stderr) = run(layerlens().args(["--addr", "http://127.0.0.1:1"]).args(&args));
        assert!(!output.status.success(), "layerlens {} succeeded without a daemon", args.join(" "));
        assert!(!stderr.contains("unexpected argument"), "layerlens {}: the parser refused the negative number: {stderr}", args.join(" "));
        assert!(stderr.contains(needle), "layerlens {}: '{stderr}' does not mention '{needle}'", args.join(" "));
    }
}

/// A float32 `.npy` file, written by hand so that the test needs no numpy.
fn write_npy_f32(path: &Path, shape: &[usize], values: &[f32]) {
    let dims: Vec<String> = shape.iter().map(|dim| dim.to_string()).collect();
    let shape_text = if dims.len() == 1 { format!("({},)", dims[0]) } else { format!("({})", dims.join(", ")) };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_text}, }}");
    // The magic, version and length take 10 bytes; the header is padded with spaces so
    // that the data starts on a multiple of 64 and ends with a newline.
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&u16::try_from(header.len()).unwrap().to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    for value in values {
        bytes.extend_from_slice(&value.to_le_bytes());
    }
    std::fs::write(path, bytes).unwrap();
}

/// Plays the daemon's side of one HTTP/2 connection just far enough for the CLI to send
/// its request: sends SETTINGS and acknowledges the client's, and returns true once the
/// first request's HEADERS frame has arrived, false if the CLI hung up before sending
/// one. The request is never answered, so it stays in flight for as long as the
/// connection is held open.
fn wait_for_request(connection: &mut TcpStream) -> bool {
    // Frames are (length: 3 bytes, type, flags, stream id: 4 bytes, payload).
    const SETTINGS: u8 = 0x4;
    const HEADERS: u8 = 0x1;
    const ACK: u8 = 0x1;
    connection.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut preface = [0u8; 24];
    if connection.read_exact(&mut preface).is_err() {
        return false;
    }
    assert_eq!(&preface, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    connection.write_all(&[0, 0, 0, SETTINGS, 0, 0, 0, 0, 0]).unwrap();
    loop {
        let mut frame_header = [0u8; 9];
        if connection.read_exact(&mut frame_header).is_err() {
            return false;
        }
        let length = u32::from_be_bytes([0, frame_header[0], frame_header[1], frame_header[2]]) as usize;
        let (frame_type, flags) = (frame_header[3], frame_header[4]);
        let stream_id = u32::from_be_bytes([frame_header[5], frame_header[6], frame_header[7], frame_header[8]]) & 0x7fff_ffff;
        let mut payload = vec![0u8; length];
        if connection.read_exact(&mut payload).is_err() {
            return false;
        }
        if frame_type == SETTINGS && flags & ACK == 0 {
            connection.write_all(&[0, 0, 0, SETTINGS, ACK, 0, 0, 0, 0]).unwrap();
        }
        if frame_type == HEADERS && stream_id != 0 {
            return true;
        }
    }
}

/// A stand-in daemon on a loopback port that takes every connection through the HTTP/2
/// handshake and answers nothing else: the CLI connects, so what it checks before it
/// sends a request can be tested without a real daemon. Answers its address.
fn silent_daemon() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for connection in listener.incoming() {
            let Ok(mut connection) = connection else { continue };
            std::thread::spawn(move || {
                // Held open until the CLI hangs up, so a request stays unanswered.
                if wait_for_request(&mut connection) {
                    let _ = connection.read_to_end(&mut Vec::new());
                }
            });
        }
    });
    addr
}

/// The output of a CLI process that is expected to end by itself; it is killed after
/// 30 s, because one waiting on a stand-in daemon's answer would wait forever.
fn output_within_30_s(mut child: Child, args: &[&str]) -> Output {
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("layerlens {} did not end within 30 s", args.join(" "));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn ctrl_c_while_a_stream_is_in_flight_cancels_with_a_message() {
    let work = tempfile::tempdir().unwrap();
    let input = work.path().join("x.npy");
    write_npy_f32(&input, &[1, 4], &[0.0; 4]);
    let input = input.to_str().unwrap();
    for args in [
        vec!["attribute", "digits", "--input", input, "--method", "saliency"],
        vec!["generate", "digits", "--objective", "class:0"],
        vec!["counterfactual", "digits", "--input", input, "--target", "1"],
    ] {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = format!("http://{}", listener.local_addr().unwrap());
        let child =
            layerlens().args(["--addr", &addr]).args(&args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("starting layerlens");
        let (mut connection, _) = listener.accept().expect("accepting the CLI's connection");
        assert!(wait_for_request(&mut connection), "layerlens {} hung up without sending its request", args.join(" "));
        // SIGINT as soon as the request is on the wire: the moment a handler installed
        // lazily (on the first poll of its future) may not be there yet.
        let kill = Command::new("kill").args(["-INT", &child.id().to_string()]).status().expect("running kill");
        assert!(kill.success());
        let output = output_within_30_s(child, &args);
        drop(connection);
        let stderr = String::from_utf8_lossy(&output.stderr);
        // Killed by the signal, the process would have no exit code and no message.
        assert_eq!(output.status.code(), Some(1), "layerlens {}: {} {stderr}", args.join(" "), output.status);
        assert_eq!(stderr.trim_end().lines().count(), 1, "one line on stderr: {stderr}");
        assert!(stderr.contains("interrupted (Ctrl-C)"), "layerlens {}: {stderr}", args.join(" "));
    }
}

#[test]
fn every_figure_flag_takes_png_or_svg_and_says_so_the_same_way() {
    let addr = silent_daemon();
    let work = tempfile::tempdir().unwrap();
    let input = work.path().join("x.npy");
    write_npy_f32(&input, &[1, 4], &[0.0; 4]);
    let input = input.to_str().unwrap();
    let not_png_or_svg = |flag: &str, name: &str| format!("{flag} {name}: the file name must end in .png or .svg");
    let cases: Vec<(Vec<&str>, String)> = vec![
        (vec!["graph", "digits", "--input-shape", "1,1,8,8", "--figure", "graph.gif"], not_png_or_svg("--figure", "graph.gif")),
        (vec!["params", "digits", "--figure", "params.gif"], not_png_or_svg("--figure", "params.gif")),
        (vec!["params", "digits", "--filters", "filters"], not_png_or_svg("--filters", "filters")),
        (vec!["activations", "digits", "--input", input, "--histograms", "histograms.jpg"], not_png_or_svg("--histograms", "histograms.jpg")),
        (
            vec!["attribute", "digits", "--input", input, "--method", "saliency", "--figure", "saliency.gif"],
            not_png_or_svg("--figure", "saliency.gif"),
        ),
        (
            vec!["compare", "digits", "--input", input, "--methods", "saliency,occlusion", "--figure", "grid.gif"],
            not_png_or_svg("--figure", "grid.gif"),
        ),
        (
            vec!["sanity-check", "digits", "--input", input, "--method", "saliency", "--figure", "sanity.gif"],
            not_png_or_svg("--figure", "sanity.gif"),
        ),
        (vec!["generate", "digits", "--objective", "class:0", "--figure", "sheet.gif"], not_png_or_svg("--figure", "sheet.gif")),
        (vec!["counterfactual", "digits", "--input", input, "--target", "1", "--figure", "cf.gif"], not_png_or_svg("--figure", "cf.gif")),
        (vec!["traverse", "decoder", "--z", input, "--figure", "traversal.gif"], not_png_or_svg("--figure", "traversal.gif")),
        // Both figures of one request are drawn in one format, so the names must agree.
        (
            vec!["params", "digits", "--figure", "params.png", "--filters", "filters.svg"],
            "--figure params.png and --filters filters.svg ask for different figure formats".to_string(),
        ),
        (
            vec!["activations", "digits", "--input", input, "--figure", "chart.svg", "--histograms", "histograms.png"],
            "--figure chart.svg and --histograms histograms.png ask for different figure formats".to_string(),
        ),
    ];
    for (args, message) in cases {
        let child = layerlens()
            .args(["--addr", &addr])
            .args(&args)
            .current_dir(work.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting layerlens");
        let output = output_within_30_s(child, &args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "layerlens {}: {stderr}", args.join(" "));
        assert_eq!(stderr.trim_end().lines().count(), 1, "one line on stderr: {stderr}");
        assert!(stderr.contains(&message), "layerlens {}: '{stderr}' does not say '{message}'", args.join(" "));
    }
}
