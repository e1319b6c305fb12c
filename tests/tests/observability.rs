//! Observability and the result cache of the real `layerlensd` (README "Daemon"):
//! Prometheus metrics scraped over plain HTTP from `--metrics-listen`, the `Status`
//! RPC through `layerlens status`, and repeated explanations answered from the cache
//! (marked `cached`, equal to the first answer) except unseeded sampling. Every
//! daemon listens on loopback, and every wait is bounded.

use layerlens_client::{Client, ClientError};
use layerlens_e2e::{cli, fixtures, Daemon};
use layerlens_proto as proto;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::time::Duration;

const ALICE_TOKEN: &str = "alice-0b7e4d19-observability";

fn tokens_file(dir: &std::path::Path) -> std::path::PathBuf {
    use sha2::Digest;
    let hash = hex::encode(sha2::Sha256::digest(ALICE_TOKEN.as_bytes()));
    let path = dir.join("tokens.toml");
    std::fs::write(&path, format!("[[user]]\nname = \"alice\"\ntoken_sha256 = \"{hash}\"\nrole = \"admin\"\n")).unwrap();
    path
}

/// `GET path` over HTTP/1.1 on `address`; answers (status code, body).
fn http_get(address: &str, path: &str) -> (u16, String) {
    let address = address.replace("0.0.0.0:", "127.0.0.1:");
    let mut stream = std::net::TcpStream::connect(&address).expect("connecting to the metrics port");
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("reading the metrics response");
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    let status = head.split_whitespace().nth(1).and_then(|code| code.parse().ok()).expect("a status code");
    assert!(head.to_ascii_lowercase().contains("content-length") || status != 200, "{head}");
    (status, body.to_string())
}

/// One sample of the text format: metric name and labels → value.
type Samples = Vec<(String, BTreeMap<String, String>, f64)>;

fn parse_metrics(text: &str) -> Samples {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("name and value");
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => {
                    let labels = rest
                        .trim_end_matches('}')
                        .split("\",")
                        .filter(|pair| !pair.is_empty())
                        .map(|pair| {
                            let (key, value) = pair.split_once('=').expect("label=value");
                            (key.to_string(), value.trim_matches('"').to_string())
                        })
                        .collect();
                    (name.to_string(), labels)
                }
                None => (series.to_string(), BTreeMap::new()),
            };
            (name, labels, value.parse::<f64>().expect("a number"))
        })
        .collect()
}

/// The sum of the samples named `name` whose labels include `labels`.
fn sample(samples: &Samples, name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|(sample_name, sample_labels, _)| {
            sample_name == name && labels.iter().all(|(key, value)| sample_labels.get(*key).map(String::as_str) == Some(*value))
        })
        .map(|(_, _, value)| value)
        .sum()
}

fn cnn_input() -> proto::Tensor {
    let values: Vec<f32> = (0..3 * 8 * 8).map(|index| ((index * 37 % 101) as f32 / 50.0) - 1.0).collect();
    proto::Tensor::from_f32(&[1, 3, 8, 8], &values)
}

fn attribute_request(method: &str, params: &[(&str, &str)]) -> proto::AttributeRequest {
    proto::AttributeRequest {
        model: "cnn".to_string(),
        input: Some(cnn_input()),
        method: method.to_string(),
        target: Some(2),
        params: params.iter().map(|(key, value)| (key.to_string(), value.to_string())).collect(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_status_and_cache_report_what_the_daemon_did() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = tokens_file(dir.path());
    let daemon = Daemon::start(&dir.path().join("store"), &["--tokens", tokens.to_str().unwrap(), "--metrics-listen", "127.0.0.1:0"]);
    let metrics_address = daemon.metrics_address.clone().expect("layerlensd printed `layerlensd metrics on ADDR`");

    // A refused call: no token.
    let anonymous = Client::connect(&daemon.url, None).await.unwrap();
    match anonymous.list_models().await {
        Err(ClientError::Rpc(status)) => assert_eq!(status.code(), tonic::Code::Unauthenticated),
        other => panic!("expected UNAUTHENTICATED, got {other:?}"),
    }
    let client = Client::connect(&daemon.url, Some(ALICE_TOKEN)).await.unwrap();
    let model = client.upload_file(&fixtures().join("tiny_cnn_traced.pt"), Some("cnn"), &[1, 3, 8, 8]).await.unwrap();

    // A repeated summary is answered from the cache and equals the first answer.
    let summary_request = proto::SummaryRequest { model: "cnn".into(), input_shape: vec![1, 3, 8, 8], ..Default::default() };
    let first = client.summary(summary_request.clone()).await.unwrap();
    assert!(!first.cached);
    assert_eq!(first.total_params, 3 * 4 * 9 + 4 + 144 * 5 + 5);
    let params_bytes = first.params_bytes;
    // By id prefix: the key holds the resolved id, so a prefix hits the name's entry.
    let second = client.summary(proto::SummaryRequest { model: model.id[..10].to_string(), ..summary_request.clone() }).await.unwrap();
    assert!(second.cached, "the repeated summary was not served from the cache");
    assert_eq!(proto::SummaryResponse { cached: false, ..second }, first);

    // The same for a deterministic attribution, and for a seeded SmoothGrad.
    let saliency = attribute_request("saliency", &[]);
    let first = client.attribute(saliency.clone()).await.unwrap();
    let second = client.attribute(saliency).await.unwrap();
    assert!(!first.cached && second.cached);
    assert_eq!(proto::AttributeResponse { cached: false, ..second }, first);
    let seeded = attribute_request("smoothgrad", &[("nt_samples", "4"), ("stdevs", "0.2"), ("seed", "7")]);
    assert!(!client.attribute(seeded.clone()).await.unwrap().cached);
    assert!(client.attribute(seeded).await.unwrap().cached);
    // Without a seed every run draws new noise: never from the cache, and the numbers differ.
    let unseeded = attribute_request("smoothgrad", &[("nt_samples", "4"), ("stdevs", "0.2")]);
    let first = client.attribute(unseeded.clone()).await.unwrap();
    let second = client.attribute(unseeded).await.unwrap();
    assert!(!first.cached && !second.cached, "an unseeded SmoothGrad came from the cache");
    assert_ne!(first.attribution, second.attribution, "unseeded SmoothGrad gave the same numbers twice");

    // A rejected request: an unknown method is INVALID_ARGUMENT.
    match client.attribute(attribute_request("no_such_method", &[])).await {
        Err(ClientError::Rpc(status)) => assert_eq!(status.code(), tonic::Code::InvalidArgument),
        other => panic!("expected INVALID_ARGUMENT, got {other:?}"),
    }

    // `layerlens status --json` shows the resident model, its exact size and the hits.
    let (ok, stdout, stderr) = cli(&daemon.url, &["--token", ALICE_TOKEN, "--json", "status"]);
    assert!(ok, "{stderr}");
    let status: Value = serde_json::from_str(&stdout).expect("status JSON");
    assert_eq!(status["device"], "cpu");
    assert_eq!(status["version"], env!("CARGO_PKG_VERSION"));
    let models = status["models"].as_array().expect("models");
    assert_eq!(models.len(), 1, "{status}");
    assert_eq!(models[0]["id"], model.id.as_str());
    assert_eq!(models[0]["names"], serde_json::json!(["cnn"]));
    assert_eq!(models[0]["in_flight"], 0);
    // TinyCNN has parameters and no buffers: resident bytes are torchinfo's parameter bytes.
    assert_eq!(models[0]["resident_bytes"].as_u64(), Some(params_bytes));
    assert_eq!(status["cache"]["hits"], 3, "{status}");
    // Misses: the first summary, saliency and seeded SmoothGrad (unseeded is never looked up).
    assert_eq!(status["cache"]["misses"], 3, "{status}");
    assert_eq!(status["cache"]["entries"], 3, "{status}");
    assert_eq!(status["cache"]["capacity_bytes"], 256u64 << 20);
    let (ok, table, stderr) = cli(&daemon.url, &["--token", ALICE_TOKEN, "status"]);
    assert!(ok, "{stderr}");
    assert!(table.contains("result cache: 3 answers") && table.contains("cnn") && table.contains(&model.id[..12]), "{table}");

    // The scrape.
    let (code, text) = http_get(&metrics_address, "/metrics");
    assert_eq!(code, 200, "{text}");
    let samples = parse_metrics(&text);
    let summary_ok = [("method", "Explain.Summary"), ("model", "cnn"), ("user", "alice"), ("code", "ok")];
    assert_eq!(sample(&samples, "layerlens_requests_total", &summary_ok), 2.0, "{text}");
    assert_eq!(sample(&samples, "layerlens_requests_total", &[("method", "Explain.Attribute"), ("model", "cnn"), ("code", "ok")]), 6.0);
    assert_eq!(sample(&samples, "layerlens_requests_total", &[("method", "Models.List"), ("code", "unauthenticated"), ("user", "")]), 1.0);
    assert_eq!(sample(&samples, "layerlens_rejections_total", &[("reason", "unauthenticated")]), 1.0, "{text}");
    assert_eq!(sample(&samples, "layerlens_rejections_total", &[("reason", "invalid_argument"), ("method", "Explain.Attribute")]), 1.0);
    let summary_latency = [("method", "Explain.Summary"), ("model", "cnn")];
    assert_eq!(sample(&samples, "layerlens_request_duration_seconds_count", &summary_latency), 2.0);
    assert_eq!(sample(&samples, "layerlens_request_duration_seconds_bucket", &[("method", "Explain.Summary"), ("le", "+Inf")]), 2.0);
    assert!(sample(&samples, "layerlens_request_duration_seconds_sum", &summary_latency) > 0.0);
    assert!(text.contains("# TYPE layerlens_request_duration_seconds histogram"), "{text}");
    assert_eq!(sample(&samples, "layerlens_cache_lookups_total", &[("result", "hit")]), 3.0);
    assert_eq!(sample(&samples, "layerlens_cache_lookups_total", &[("method", "Explain.Summary"), ("result", "miss")]), 1.0);
    assert_eq!(sample(&samples, "layerlens_cache_entries", &[]), 3.0);
    assert!(sample(&samples, "layerlens_cache_bytes", &[]) > 0.0);
    assert_eq!(sample(&samples, "layerlens_resident_models", &[]), 1.0);
    let resident = [("model", "cnn"), ("model_id", model.id.as_str())];
    assert_eq!(Some(sample(&samples, "layerlens_resident_bytes", &resident) as u64), models[0]["resident_bytes"].as_u64());
    assert!(text.contains(&format!("layerlens_in_flight_requests{{model=\"cnn\",model_id=\"{}\"}} 0", model.id)), "{text}");
    assert_eq!(http_get(&metrics_address, "/other").0, 404);

    // Deleting the model drops its cached answers.
    client.delete_model("cnn").await.unwrap();
    let status = client.status().await.unwrap();
    assert_eq!(status.cache.unwrap().entries, 0);
    assert!(status.models.is_empty());
    assert!(daemon.stop());
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_port_keeps_to_loopback_and_the_cache_can_be_off() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let refused = Daemon::try_start(&store, "127.0.0.1:0", &["--metrics-listen", "0.0.0.0:0"], "warn")
        .err()
        .expect("layerlensd must refuse metrics on 0.0.0.0 without --tokens");
    assert!(refused.contains("refusing to serve metrics on 0.0.0.0:0"), "{refused}");
    assert!(refused.contains("--tokens FILE") && refused.contains("--insecure"), "{refused}");

    let daemon = Daemon::try_start(&store, "127.0.0.1:0", &["--metrics-listen", "0.0.0.0:0", "--insecure", "--cache-bytes", "0"], "warn")
        .expect("--insecure allows metrics on 0.0.0.0");
    let client = Client::connect(&daemon.url, None).await.unwrap();
    client.upload_file(&fixtures().join("tiny_cnn_traced.pt"), Some("cnn"), &[1, 3, 8, 8]).await.unwrap();
    let request = proto::SummaryRequest { model: "cnn".into(), input_shape: vec![1, 3, 8, 8], ..Default::default() };
    for _ in 0..2 {
        assert!(!client.summary(request.clone()).await.unwrap().cached, "--cache-bytes 0 must turn the cache off");
    }
    let cache = client.status().await.unwrap().cache.unwrap();
    assert_eq!((cache.capacity_bytes, cache.entries, cache.hits, cache.misses), (0, 0, 0, 0));
    let (code, text) = http_get(daemon.metrics_address.as_deref().expect("metrics address"), "/metrics");
    assert_eq!(code, 200);
    let samples = parse_metrics(&text);
    assert_eq!(sample(&samples, "layerlens_requests_total", &[("method", "Explain.Summary"), ("user", "anonymous"), ("code", "ok")]), 2.0);
    assert_eq!(sample(&samples, "layerlens_cache_lookups_total", &[]), 0.0);
    assert!(daemon.stop());
}
