//! Shared harness for the cross-component tests: starts the real `layerlensd`
//! binary on a free loopback port with a temporary store, runs the real `layerlens`
//! CLI, finds the generated fixtures and runs the Python reference scripts (PyTorch,
//! Captum) in the project's virtualenv.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The workspace root (this crate lives in `tests/`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}

/// Directory holding the built binaries: the test executable sits in `<target>/<profile>/deps`.
pub fn binary_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent().and_then(Path::parent).expect("target/<profile>/deps").to_path_buf()
}

pub fn binary(name: &str) -> PathBuf {
    let path = binary_dir().join(name);
    assert!(path.exists(), "{} is missing: build the workspace binaries first (cargo build --workspace --bins)", path.display());
    path
}

/// The virtualenv's python (scripts/setup.sh writes LAYERLENS_PYTHON into .cargo/config.toml).
pub fn python() -> PathBuf {
    PathBuf::from(std::env::var("LAYERLENS_PYTHON").expect("LAYERLENS_PYTHON is not set: run scripts/setup.sh"))
}

/// The generated fixtures, generated once per test process (a no-op when current).
pub fn fixtures() -> &'static Path {
    static FIXTURES: OnceLock<PathBuf> = OnceLock::new();
    FIXTURES.get_or_init(|| {
        let out = workspace_root().join("tests/fixtures/out");
        let status = Command::new(python())
            .arg(workspace_root().join("tests/fixtures/make_fixtures.py"))
            .arg(&out)
            .status()
            .expect("running make_fixtures.py");
        assert!(status.success(), "make_fixtures.py failed");
        out
    })
}

/// Runs a Python script from `tests/reference` and returns its stdout.
pub fn run_reference(script: &str, args: &[&str]) -> String {
    let output =
        Command::new(python()).arg(workspace_root().join("tests/reference").join(script)).args(args).output().expect("running a reference script");
    assert!(output.status.success(), "{script} failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).expect("utf-8 output")
}

/// A running `layerlensd` process; killed on drop if not stopped.
pub struct Daemon {
    child: Option<Child>,
    /// `http://127.0.0.1:PORT` (`https://` with TLS)
    pub url: String,
    pub store: PathBuf,
    /// `127.0.0.1:PORT` of `GET /metrics` when started with `--metrics-listen`.
    pub metrics_address: Option<String>,
    /// The explorer's `http(s)://127.0.0.1:PORT/` when started with `--web-listen`.
    pub web_url: Option<String>,
    stderr_lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Daemon {
    /// Starts the daemon on 127.0.0.1:0 with `store` and extra flags, and waits (at
    /// most 60 s) for its `listening on` line.
    pub fn start(store: &Path, extra_args: &[&str]) -> Daemon {
        Daemon::try_start(store, "127.0.0.1:0", extra_args, "warn").unwrap_or_else(|stderr| panic!("layerlensd exited before listening: {stderr}"))
    }

    /// Starts the daemon on `listen` and waits (at most 60 s) for its `listening on`
    /// line; answers its stderr when it exits before that. The url is `https://` when
    /// `--tls-cert` is among the flags, and names 127.0.0.1 when the daemon listens on
    /// 0.0.0.0 (tests only talk to loopback). `log_filter` is its LAYERLENS_LOG.
    pub fn try_start(store: &Path, listen: &str, extra_args: &[&str], log_filter: &str) -> Result<Daemon, String> {
        let mut child = Command::new(binary("layerlensd"))
            .args(["--listen", listen, "--device", "cpu", "--store"])
            .arg(store)
            .args(extra_args)
            .env("LAYERLENS_LOG", log_filter)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting layerlensd");
        let stdout = child.stdout.take().expect("piped stdout");
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                // The metrics and web lines, when there are any, come before the listening line.
                if let Some((_, address)) = line.split_once("metrics on ") {
                    let _ = sender.send((Some(false), address.trim().to_string()));
                } else if let Some((_, url)) = line.split_once("web explorer on ") {
                    let _ = sender.send((Some(true), url.trim().to_string()));
                } else if let Some((_, address)) = line.split_once("listening on ") {
                    let _ = sender.send((None, address.trim().to_string()));
                }
            }
        });
        // stderr is passed on to the test's and kept, to answer a failed start with it.
        let stderr = child.stderr.take().expect("piped stderr");
        let stderr_lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let stderr_thread = {
            let stderr_lines = stderr_lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    eprintln!("{line}");
                    stderr_lines.lock().expect("stderr lines").push(line);
                }
            })
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        let (mut metrics_address, mut web_url) = (None, None);
        let address = loop {
            match receiver.recv_timeout(Duration::from_millis(100)) {
                Ok((Some(false), address)) => metrics_address = Some(address),
                Ok((Some(true), url)) => web_url = Some(url),
                Ok((None, address)) => break address,
                Err(_) => {}
            }
            if child.try_wait().expect("polling layerlensd").is_some() {
                let _ = stderr_thread.join();
                return Err(stderr_lines.lock().expect("stderr lines").join("\n"));
            }
            assert!(Instant::now() < deadline, "layerlensd did not print 'listening on' within 60 s");
        };
        let address = match address.strip_prefix("0.0.0.0:") {
            Some(port) => format!("127.0.0.1:{port}"),
            None => address,
        };
        let scheme = if extra_args.contains(&"--tls-cert") { "https" } else { "http" };
        Ok(Daemon { child: Some(child), url: format!("{scheme}://{address}"), store: store.to_path_buf(), metrics_address, web_url, stderr_lines })
    }

    /// What the daemon has written to stderr (its log) so far.
    pub fn stderr_text(&self) -> String {
        self.stderr_lines.lock().expect("stderr lines").join("\n")
    }

    /// Sends SIGTERM and waits (at most 30 s); answers whether it exited with status 0.
    pub fn stop(mut self) -> bool {
        let mut child = self.child.take().expect("running daemon");
        let pid = child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().expect("kill -TERM");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().expect("waiting for layerlensd") {
                return status.success();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Daemon {
    /// Kills the daemon with SIGKILL, as a crash would (no shutdown, no clean-up), and
    /// waits (at most 10 s) until the process is gone.
    pub fn kill(mut self) {
        let mut child = self.child.take().expect("running daemon");
        child.kill().expect("kill -9 layerlensd");
        let deadline = Instant::now() + Duration::from_secs(10);
        while child.try_wait().expect("waiting for layerlensd").is_none() {
            assert!(Instant::now() < deadline, "layerlensd was still running 10 s after SIGKILL");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running daemon").id()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs the `layerlens` CLI against `url`; answers (exit success, stdout, stderr).
pub fn cli(url: &str, args: &[&str]) -> (bool, String, String) {
    cli_in(None, url, args)
}

/// `cli`, run in `dir` when given (for relative paths in arguments).
pub fn cli_in(dir: Option<&Path>, url: &str, args: &[&str]) -> (bool, String, String) {
    let mut command = Command::new(binary("layerlens"));
    if let Some(dir) = dir {
        command.current_dir(dir);
    }
    let output = command.arg("--addr").arg(url).args(args).env_remove("LAYERLENS_TOKEN").output().expect("running layerlens");
    (output.status.success(), String::from_utf8_lossy(&output.stdout).into_owned(), String::from_utf8_lossy(&output.stderr).into_owned())
}

/// Reads a float32 `.npy` file (float64 is converted): (shape, values).
pub fn read_npy(path: &Path) -> (Vec<i64>, Vec<f32>) {
    layerlens_client::npy::read_f32(path).unwrap_or_else(|error| panic!("{error}"))
}

pub fn write_npy(path: &Path, shape: &[i64], values: &[f32]) {
    layerlens_client::npy::write_f32(path, shape, values).unwrap_or_else(|error| panic!("{error}"));
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "compared tensors differ in length");
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// Whether `program` runs (`program version_flag` succeeds), installing the Debian
/// `package` with apt-get first when it is missing and we are root. Off CI a test
/// whose program cannot be had is skipped, saying why; on CI (`CI` set) that fails.
pub fn ensure_debian_program(program: &str, version_flag: &str, package: &str, test_name: &str) -> bool {
    let runs = || Command::new(program).arg(version_flag).output().is_ok_and(|output| output.status.success());
    if runs() {
        return true;
    }
    let is_root = Command::new("id").arg("-u").output().is_ok_and(|output| String::from_utf8_lossy(&output.stdout).trim() == "0");
    if is_root {
        let install = || {
            Command::new("apt-get")
                .args(["install", "-y", "-q", package])
                .env("DEBIAN_FRONTEND", "noninteractive")
                .status()
                .is_ok_and(|status| status.success())
        };
        let updated = || Command::new("apt-get").args(["update", "-q"]).status().is_ok_and(|status| status.success());
        if (install() || (updated() && install())) && runs() {
            return true;
        }
    }
    let why = format!("{program} is not installed and cannot be installed here (needs root and apt-get: apt-get install -y {package})");
    assert!(std::env::var_os("CI").is_none(), "{why}");
    eprintln!("SKIPPED {test_name}: {why}");
    false
}
