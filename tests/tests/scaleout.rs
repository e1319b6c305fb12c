//! Scale-out behind nginx (deploy/README.md): three real `layerlensd` processes share
//! one store behind a real nginx running deploy/nginx/layerlens.conf, which hashes the
//! clients' `x-layerlens-model` header. Checks that each model is loaded on exactly one
//! replica however often it is asked for, that when that replica is killed (SIGKILL)
//! the model is served by another one with the same answer while the other models stay
//! where they were, that the CLI works through the proxy, that the proxy lets a
//! multi-megabyte upload through, and that the client's retries on UNAVAILABLE are
//! bounded (three tries) and never repeat an upload.
//!
//! nginx comes from Debian (`apt-get install nginx`) when it is missing. Everything
//! listens on loopback; every process the test starts is stopped when it ends, also
//! when it fails (the `Daemon` and `Nginx` guards).

use layerlens_client::{Client, ClientError};
use layerlens_e2e::{cli, ensure_debian_program, fixtures, workspace_root, Daemon};
use layerlens_proto as proto;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A port on 127.0.0.1 that was free a moment ago (nginx takes a fixed port).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("binding a free port").local_addr().unwrap().port()
}

/// deploy/nginx/layerlens.conf with its three `server` lines replaced by `replicas`
/// (`127.0.0.1:PORT`) and its `listen 8080` by `127.0.0.1:<port>`; nothing else changes.
fn render_nginx_conf(replicas: &[String], port: u16) -> String {
    let template = std::fs::read_to_string(workspace_root().join("deploy/nginx/layerlens.conf")).expect("reading deploy/nginx/layerlens.conf");
    let mut lines = Vec::new();
    let (mut servers_seen, mut listen_seen) = (0, 0);
    for line in template.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("server layerlensd-") {
            servers_seen += 1;
            if servers_seen == 1 {
                for replica in replicas {
                    lines.push(format!("        server {replica} max_fails=1 fail_timeout=10s;"));
                }
            }
        } else if trimmed.starts_with("listen 8080 ") {
            listen_seen += 1;
            lines.push(line.replace("listen 8080 ", &format!("listen 127.0.0.1:{port} ")));
        } else {
            lines.push(line.to_string());
        }
    }
    assert_eq!((servers_seen, listen_seen), (3, 1), "deploy/nginx/layerlens.conf no longer has 3 `server layerlensd-N` lines and one `listen 8080`");
    lines.join("\n") + "\n"
}

/// A running nginx master process (`daemon off`) with its access log (stdout) kept;
/// stopped with SIGTERM on drop (SIGKILL would leave its workers holding the port).
struct Nginx {
    child: Option<Child>,
    url: String,
    access_log: Arc<Mutex<Vec<String>>>,
}

impl Nginx {
    fn start(prefix: &Path, replicas: &[String]) -> Nginx {
        std::fs::create_dir_all(prefix).unwrap();
        // When the test runs as root nginx's workers run as `nobody`; they must reach
        // the temporary directories under the prefix.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(prefix, std::fs::Permissions::from_mode(0o755)).unwrap();
        let port = free_port();
        let conf = prefix.join("layerlens.conf");
        std::fs::write(&conf, render_nginx_conf(replicas, port)).unwrap();
        let mut prefix_arg = prefix.as_os_str().to_owned();
        prefix_arg.push("/");
        let mut child = Command::new("nginx")
            .arg("-p")
            .arg(&prefix_arg)
            .arg("-c")
            .arg(&conf)
            .args(["-e", "stderr", "-g", "daemon off;"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting nginx");
        // Its error log, through eprintln so the test harness shows it only on failure.
        let stderr = child.stderr.take().expect("piped stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("nginx: {line}");
            }
        });
        let access_log = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().expect("piped stdout");
        {
            let access_log = access_log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    access_log.lock().unwrap().push(line);
                }
            });
        }
        let mut nginx = Nginx { child: Some(child), url: format!("http://127.0.0.1:{port}"), access_log };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = nginx.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("nginx exited with {status} before listening on 127.0.0.1:{port} (its error log is above)");
            }
            assert!(Instant::now() < deadline, "nginx did not listen on 127.0.0.1:{port} within 20 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        nginx
    }

    /// Access-log lines of calls to `method` (e.g. `Explain/Predict`) with model header
    /// `model` (nginx logs a missing header as `-`).
    fn log_lines(&self, method: &str, model: &str) -> Vec<String> {
        let method = format!("/layerlens.v1.{method} ");
        let header = format!("model=\"{model}\"");
        self.access_log.lock().unwrap().iter().filter(|line| line.contains(&method) && line.contains(&header)).cloned().collect()
    }

    /// `log_lines` once at least `count` lines are there (nginx writes a line after the
    /// answer has gone out, so a client can be faster than the log), waiting at most
    /// 10 s, plus 200 ms for lines that should not come.
    fn log_lines_after(&self, method: &str, model: &str, count: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.log_lines(method, model).len() < count && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(200));
        self.log_lines(method, model)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The `upstream="..."` field of an access-log line: the replica(s) nginx tried.
fn upstream_of(line: &str) -> String {
    let start = line.find("upstream=\"").expect("upstream field in the access log") + "upstream=\"".len();
    line[start..].split('"').next().unwrap().to_string()
}

/// A deterministic float32 input of `shape`.
fn input(shape: &[i64]) -> proto::Tensor {
    let count: i64 = shape.iter().product();
    let values: Vec<f32> = (0..count).map(|index| ((index * 37 % 101) as f32 / 50.0) - 1.0).collect();
    proto::Tensor::from_f32(shape, &values)
}

fn predict_request(model: &str, shape: &[i64]) -> proto::PredictRequest {
    proto::PredictRequest { model: model.to_string(), input: Some(input(shape)), top_k: 1, ..Default::default() }
}

/// Model id → indices of the live replicas that hold it resident (asked directly).
async fn residents(replicas: &[Option<Daemon>]) -> BTreeMap<String, Vec<usize>> {
    let mut holders: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (index, replica) in replicas.iter().enumerate() {
        let Some(replica) = replica else { continue };
        let status = Client::connect(&replica.url, None).await.unwrap().status().await.unwrap();
        for model in status.models {
            holders.entry(model.id).or_default().push(index);
        }
    }
    holders
}

#[tokio::test(flavor = "multi_thread")]
async fn models_stay_on_one_replica_and_move_when_it_dies() {
    if !ensure_debian_program("nginx", "-v", "nginx", "models_stay_on_one_replica_and_move_when_it_dies") {
        return;
    }
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let mut replicas: Vec<Option<Daemon>> = (0..3).map(|_| Some(Daemon::start(&store, &[]))).collect();
    let addresses: Vec<String> = replicas.iter().map(|replica| replica.as_ref().unwrap().url.trim_start_matches("http://").to_string()).collect();
    let nginx = Nginx::start(&dir.path().join("nginx"), &addresses);
    let client = Client::connect(&nginx.url, None).await.unwrap();

    // Uploads go through the proxy (without a model header: to one replica); every
    // replica reads them from the shared store.
    let files: [(&str, &[i64]); 5] = [
        ("digits_cnn.pt", &[1, 1, 8, 8]),
        ("tiny_cnn_scripted.pt", &[1, 3, 8, 8]),
        ("tiny_cnn_traced.pt", &[1, 3, 8, 8]),
        ("tiny_mlp_scripted.pt", &[1, 4]),
        ("tiny_mlp_traced.pt", &[1, 4]),
    ];
    let mut models: Vec<(String, &[i64])> = Vec::new();
    for (file, shape) in files {
        let name = (file == "digits_cnn.pt").then_some("digits");
        let info =
            client.upload_file(&fixtures().join(file), name, shape).await.unwrap_or_else(|error| panic!("uploading {file} through nginx: {error}"));
        models.push((info.id, shape));
    }

    // (a) Affinity: three predictions per model, by id, through the proxy.
    let mut answers = BTreeMap::new();
    for (id, shape) in &models {
        for _ in 0..3 {
            let answer = client.predict(predict_request(id, shape)).await.unwrap();
            answers.insert(id.clone(), answer.output.clone().expect("an output tensor"));
        }
    }
    let holders = residents(&replicas).await;
    for (id, _) in &models {
        assert_eq!(holders.get(id).map(Vec::len), Some(1), "model {id} is resident on replicas {:?}, not exactly one: {holders:?}", holders.get(id));
        let upstreams: Vec<String> = nginx.log_lines_after("Explain/Predict", id, 3).iter().map(|line| upstream_of(line)).collect();
        assert_eq!(upstreams.len(), 3, "nginx logged {} predictions of {id}, expected 3", upstreams.len());
        assert!(upstreams.iter().all(|upstream| *upstream == addresses[holders[id][0]]), "predictions of {id} went to {upstreams:?}");
    }

    // (b) Kill (SIGKILL, dropping the guard) the replica holding the first model: the
    // same request through the proxy is answered by another replica, with the same
    // numbers, and only the dead replica's models move.
    let (moved_id, moved_shape) = models[0].clone();
    let victim = holders[&moved_id][0];
    replicas[victim] = None;
    let answer = client.predict(predict_request(&moved_id, moved_shape)).await.expect("the model was not served after its replica died");
    assert_eq!(answer.output.as_ref(), Some(&answers[&moved_id]), "another replica answered differently");
    for (id, shape) in &models {
        client.predict(predict_request(id, shape)).await.unwrap_or_else(|error| panic!("model {id} after the failover: {error}"));
    }
    let after = residents(&replicas).await;
    for (id, _) in &models {
        let now = after.get(id).cloned().unwrap_or_default();
        // The dead replica's models now live on exactly one of the others.
        assert_eq!(now.len(), 1, "after the failover model {id} is resident on replicas {now:?}");
        if holders[id][0] != victim {
            assert_eq!(now, holders[id], "model {id} moved although its replica is alive");
        }
    }

    // A call cut off in flight: the replica now holding the digits model is killed
    // while it computes a long attribution. nginx answers UNAVAILABLE (it never resends
    // a call a replica accepted), and the client's own retry gets the answer from the
    // last replica; nginx logs both tries.
    let digits_id = models[0].0.clone();
    let computing = after[&digits_id][0];
    let (shape, values) = layerlens_e2e::read_npy(&fixtures().join("digit_sample.npy"));
    let long_attribution = proto::AttributeRequest {
        model: digits_id.clone(),
        input: Some(proto::Tensor::from_f32(&shape, &values)),
        method: "integrated_gradients".to_string(),
        target: Some(0),
        // About 3 s on two CPU cores.
        params: [("n_steps".to_string(), "10000".to_string())].into_iter().collect(),
        ..Default::default()
    };
    let in_flight = tokio::spawn({
        let client = client.clone();
        async move { client.attribute(long_attribution).await }
    });
    // Killed as soon as its worker has the request (Daemon.Status: in flight).
    let direct = Client::connect(&replicas[computing].as_ref().unwrap().url, None).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = direct.status().await.unwrap();
        if status.models.iter().any(|model| model.id == digits_id && model.in_flight > 0) {
            break;
        }
        assert!(Instant::now() < deadline, "the attribution did not reach replica {computing} within 20 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!in_flight.is_finished(), "the attribution finished before its replica could be killed; give it more steps");
    replicas[computing] = None;
    let attribution = in_flight.await.unwrap().expect("the attribution cut off in flight was not retried elsewhere");
    assert!(!attribution.attribution.as_ref().expect("attribution values").data.is_empty());
    let tries: Vec<String> = nginx.log_lines_after("Explain/Attribute", &digits_id, 2);
    assert_eq!(tries.len(), 2, "expected the cut-off try and the retry in nginx's log: {tries:#?}");
    assert!(upstream_of(&tries[0]).ends_with(&addresses[computing]), "first try: {}", tries[0]);
    let survivor = (0..3).find(|&index| replicas[index].is_some()).expect("one replica left");
    assert_eq!(upstream_of(&tries[1]), addresses[survivor], "retry: {}", tries[1]);

    // The CLI through the proxy, by name (hashed as given: it may pick another replica
    // than the id, and any replica can serve any stored model).
    let sample = fixtures().join("digit_sample.npy");
    let (ok, stdout, stderr) = cli(&nginx.url, &["--json", "predict", "digits", "--input", sample.to_str().unwrap(), "--top-k", "1"]);
    assert!(ok, "layerlens predict through nginx failed: {stderr}");
    let json: serde_json::Value = serde_json::from_str(&stdout).expect("JSON from layerlens --json predict");
    let expected = client
        .predict(proto::PredictRequest {
            model: digits_id.clone(),
            input: Some(proto::Tensor::from_f32(&shape, &values)),
            top_k: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(json["top_k"][0][0]["class"].as_i64(), Some(expected.rows[0].top[0].class_index), "CLI answer {json}");

    // A request body of several MiB passes the proxy (nginx's default limit is 1 MiB):
    // the daemon itself answers that the bytes are not TorchScript.
    match client.upload_model(vec![0u8; 3 << 20], None, &[]).await {
        Err(ClientError::Rpc(status)) => assert_eq!(status.code(), tonic::Code::InvalidArgument, "3 MiB upload: {}", status.message()),
        other => panic!("a 3 MiB non-TorchScript upload through nginx answered {other:?}"),
    }

    // (c) Bounded retries: with every replica gone nginx answers 502, which gRPC reads
    // as UNAVAILABLE; the client tries three times (nginx logs three calls), pausing
    // 100 ms and 300 ms, then reports UNAVAILABLE. An upload is tried once only.
    for replica in &mut replicas {
        *replica = None;
    }
    let (id, shape) = &models[1];
    let logged_before = nginx.log_lines("Explain/Predict", id).len();
    let asked = Instant::now();
    match client.predict(predict_request(id, shape)).await {
        Err(ClientError::Rpc(status)) => assert_eq!(status.code(), tonic::Code::Unavailable, "{}", status.message()),
        other => panic!("with no replica alive a prediction answered {other:?}"),
    }
    let waited = asked.elapsed();
    assert_eq!(
        nginx.log_lines_after("Explain/Predict", id, logged_before + 3).len() - logged_before,
        3,
        "the client did not try exactly three times"
    );
    assert!(waited >= Duration::from_millis(400), "three tries took {waited:?}, less than the 100 + 300 ms pauses");
    // A generation stream that received nothing is opened again the same way.
    let logged_before = nginx.log_lines("Generate/Visualize", id).len();
    let visualize = client.visualize(proto::VisualizeRequest { model: id.clone(), ..Default::default() }, |_| {}).await;
    assert!(matches!(&visualize, Err(error) if error.code() == Some(tonic::Code::Unavailable)), "visualize with no replica: {visualize:?}");
    assert_eq!(
        nginx.log_lines_after("Generate/Visualize", id, logged_before + 3).len() - logged_before,
        3,
        "the stream was not opened exactly three times"
    );
    let uploads_before = nginx.log_lines("Models/Upload", "-").len();
    let upload = client.upload_file(&fixtures().join("tiny_mlp_scripted.pt"), None, &[1, 4]).await;
    assert!(matches!(&upload, Err(error) if error.code() == Some(tonic::Code::Unavailable)), "upload with no replica: {upload:?}");
    assert_eq!(nginx.log_lines_after("Models/Upload", "-", uploads_before + 1).len() - uploads_before, 1, "an upload was retried");

    drop(nginx);
    eprintln!("scale-out test took {:?}", started.elapsed());
}
