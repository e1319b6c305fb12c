//! End to end through the real processes: `layerlensd` on a loopback port with a
//! temporary store, driven by `layerlens-client` and by the `layerlens` CLI, with
//! Captum and PyTorch (run in the project's virtualenv) as the oracle.

use layerlens_client::Client;
use layerlens_e2e::*;
use layerlens_proto as proto;
use serde_json::Value;
use std::path::Path;
use tonic::Code;

const TOLERANCE: f32 = 1e-5;

// Further tests of this binary, one file per area (cargo would build a file directly
// in tests/tests/ as a separate test binary).
#[path = "e2e/attribute_stream.rs"]
mod attribute_stream;
#[path = "e2e/cli_inspection.rs"]
mod cli_inspection;

fn digits_batch(dir: &Path, rows: usize) -> (std::path::PathBuf, Vec<i64>, Vec<f32>) {
    let (shape, values) = read_npy(&fixtures().join("digits_test_images.npy"));
    let row_len: usize = shape[1..].iter().product::<i64>() as usize;
    let shape = vec![rows as i64, shape[1], shape[2], shape[3]];
    let values = values[..rows * row_len].to_vec();
    let path = dir.join(format!("digits_{rows}.npy"));
    write_npy(&path, &shape, &values);
    (path, shape, values)
}

fn saliency_request(model: &str, shape: &[i64], values: &[f32], target: Option<i64>) -> proto::AttributeRequest {
    proto::AttributeRequest {
        model: model.to_string(),
        input: Some(proto::Tensor::from_f32(shape, values)),
        method: "saliency".to_string(),
        target,
        figure_format: proto::FigureFormat::Png as i32,
        ..Default::default()
    }
}

/// Captum's saliency for each (model file, input file, targets) job.
fn captum_saliency(dir: &Path, jobs: &[(&Path, &Path, Vec<i64>)]) -> Vec<Vec<f32>> {
    let mut specs = Vec::new();
    for (index, (model, input, targets)) in jobs.iter().enumerate() {
        let out = dir.join(format!("captum_{index}.npy"));
        specs.push(serde_json::json!({"model": model, "input": input, "targets": targets, "out": out}));
    }
    run_reference("captum_saliency.py", &[&Value::Array(specs).to_string()]);
    (0..jobs.len()).map(|index| read_npy(&dir.join(format!("captum_{index}.npy"))).1).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn upload_then_saliency_matches_captum_and_survives_a_restart() {
    let work = tempfile::tempdir().unwrap();
    let store = work.path().join("store");
    let daemon = Daemon::start(&store, &[]);
    let client = Client::connect(&daemon.url, None).await.unwrap();

    // Models of several kinds: the trained digits CNN, a scripted MLP on tabular rows
    // and a traced CNN on 3-channel images.
    let digits = client.upload_file(&fixtures().join("digits_cnn.pt"), Some("digits"), &[1, 1, 8, 8]).await.unwrap();
    let mlp = client.upload_file(&fixtures().join("tiny_mlp_scripted.pt"), Some("mlp"), &[]).await.unwrap();
    let cnn = client.upload_file(&fixtures().join("tiny_cnn_traced.pt"), None, &[]).await.unwrap();
    let digits_bytes = std::fs::read(fixtures().join("digits_cnn.pt")).unwrap();
    assert_eq!(digits.id, sha256_hex(&digits_bytes), "a model's id is the sha256 of its bytes");
    assert_eq!(digits.names, vec!["digits".to_string()]);

    let listed = client.list_models().await.unwrap();
    let mut listed_ids: Vec<&str> = listed.iter().map(|model| model.id.as_str()).collect();
    listed_ids.sort();
    let mut expected_ids = vec![digits.id.as_str(), mlp.id.as_str(), cnn.id.as_str()];
    expected_ids.sort();
    assert_eq!(listed_ids, expected_ids);

    let (digits_input, digits_shape, digits_values) = digits_batch(work.path(), 4);
    let mlp_shape = [3i64, 4];
    let mlp_values: Vec<f32> = (0..12).map(|i| ((i * 37 % 11) as f32 - 5.0) / 3.0).collect();
    let mlp_input = work.path().join("mlp.npy");
    write_npy(&mlp_input, &mlp_shape, &mlp_values);
    let cnn_shape = [2i64, 3, 8, 8];
    let cnn_values: Vec<f32> = (0..384).map(|i| ((i * 53 % 97) as f32 / 48.0) - 1.0).collect();
    let cnn_input = work.path().join("cnn.npy");
    write_npy(&cnn_input, &cnn_shape, &cnn_values);

    // Explicit target, predicted class (no target), by name, by id and by id prefix.
    let with_target = client.attribute(saliency_request("digits", &digits_shape, &digits_values, Some(3))).await.unwrap();
    let predicted = client.attribute(saliency_request(&digits.id, &digits_shape, &digits_values, None)).await.unwrap();
    let mlp_answer = client.attribute(saliency_request("mlp", &mlp_shape, &mlp_values, Some(2))).await.unwrap();
    let cnn_answer = client.attribute(saliency_request(&cnn.id[..10], &cnn_shape, &cnn_values, Some(4))).await.unwrap();

    let facts: Value =
        serde_json::from_str(&run_reference("torch_facts.py", &[fixtures().join("digits_cnn.pt").to_str().unwrap(), digits_input.to_str().unwrap()]))
            .unwrap();
    let torch_predicted: Vec<i64> = serde_json::from_value(facts["predicted"].clone()).unwrap();
    assert_eq!(predicted.targets, torch_predicted, "without a target the predicted class is explained");

    let references = captum_saliency(
        work.path(),
        &[
            (&fixtures().join("digits_cnn.pt"), &digits_input, vec![3; 4]),
            (&fixtures().join("digits_cnn.pt"), &digits_input, torch_predicted.clone()),
            (&fixtures().join("tiny_mlp_scripted.pt"), &mlp_input, vec![2; 3]),
            (&fixtures().join("tiny_cnn_traced.pt"), &cnn_input, vec![4; 2]),
        ],
    );
    for (label, answer, reference, shape) in [
        ("digits, target 3", &with_target, &references[0], &digits_shape[..]),
        ("digits, predicted", &predicted, &references[1], &digits_shape[..]),
        ("mlp", &mlp_answer, &references[2], &mlp_shape[..]),
        ("traced cnn", &cnn_answer, &references[3], &cnn_shape[..]),
    ] {
        let attribution = answer.attribution.as_ref().unwrap();
        assert_eq!(attribution.shape, shape, "{label}: attribution keeps the input's shape");
        let values = attribution.to_f32().unwrap();
        let difference = max_abs_diff(&values, reference);
        assert!(difference <= TOLERANCE, "{label}: max |daemon - captum| = {difference}");
        assert!(values.iter().any(|&value| value > 0.0), "{label}: saliency is not all zero");
        let figure = answer.figure.as_ref().unwrap();
        assert_eq!(figure.mime, "image/png");
        assert!(figure.data.starts_with(b"\x89PNG\r\n\x1a\n"), "{label}: figure is a PNG");
        assert!(!figure.alt_text.is_empty());
    }

    // After a restart on the same store the models are still there and explainable.
    assert!(daemon.stop(), "layerlensd exits 0 on SIGTERM");
    let daemon = Daemon::start(&store, &[]);
    let client = Client::connect(&daemon.url, None).await.unwrap();
    let after = client.list_models().await.unwrap();
    assert_eq!(after.len(), 3);
    let digits_after = client.get_model("digits").await.unwrap();
    assert_eq!(digits_after.id, digits.id);
    assert_eq!(digits_after.input_shape, vec![1, 1, 8, 8]);
    let again = client.attribute(saliency_request("digits", &digits_shape, &digits_values, Some(3))).await.unwrap();
    let difference = max_abs_diff(&again.attribution.unwrap().to_f32().unwrap(), &references[0]);
    assert!(difference <= TOLERANCE, "after restart: max |daemon - captum| = {difference}");
    assert!(daemon.stop());
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gets_a_clear_error_and_the_daemon_keeps_serving() {
    let work = tempfile::tempdir().unwrap();
    let store = work.path().join("store");
    let daemon = Daemon::start(&store, &["--max-model-bytes", "150000", "--max-message-bytes", "1048576"]);
    let client = Client::connect(&daemon.url, None).await.unwrap();
    let mlp = client.upload_file(&fixtures().join("tiny_mlp_scripted.pt"), Some("mlp"), &[1, 4]).await.unwrap();
    let good_shape = [1i64, 4];
    let good = [0.5f32, -1.0, 2.0, 0.25];

    let request = |shape: &[i64], values: &[f32], target: Option<i64>| saliency_request("mlp", shape, values, target);
    let mut int_input = request(&good_shape, &good, Some(0));
    int_input.input.as_mut().unwrap().dtype = proto::Dtype::Int32 as i32;
    let mut short_bytes = request(&good_shape, &good, Some(0));
    short_bytes.input.as_mut().unwrap().data.truncate(10);
    let mut unknown_method = request(&good_shape, &good, Some(0));
    unknown_method.method = "deep_dream".to_string();
    let mut unknown_param = request(&good_shape, &good, Some(0));
    unknown_param.params.insert("n_steps".to_string(), "5".to_string());
    let mut no_input = request(&good_shape, &good, Some(0));
    no_input.input = None;
    let big: Vec<f32> = vec![0.0; 300_000];

    let cases: Vec<(&str, proto::AttributeRequest, Code, &str)> = vec![
        ("unknown model", saliency_request("no-such-model", &good_shape, &good, Some(0)), Code::NotFound, "no-such-model"),
        ("wrong rank", request(&[4], &good, Some(0)), Code::InvalidArgument, "does not match the model's input shape [N, 4]"),
        ("wrong shape", request(&[1, 2, 2], &good, Some(0)), Code::InvalidArgument, "input shape [1, 2, 2]"),
        ("wrong dtype", int_input, Code::InvalidArgument, "dtype int32"),
        ("byte length", short_bytes, Code::InvalidArgument, "needs 16 bytes but carries 10"),
        ("target out of range", request(&good_shape, &good, Some(3)), Code::InvalidArgument, "target 3 is out of range"),
        ("negative target", request(&good_shape, &good, Some(-1)), Code::InvalidArgument, "target -1 is out of range"),
        ("NaN input", request(&good_shape, &[f32::NAN, 0.0, 1.0, f32::NAN], Some(0)), Code::InvalidArgument, "2 NaN"),
        ("unknown method", unknown_method, Code::InvalidArgument, "unknown attribution method 'deep_dream'"),
        ("unknown parameter", unknown_param, Code::InvalidArgument, "unknown parameter 'n_steps' for saliency"),
        ("no input", no_input, Code::InvalidArgument, "no input tensor"),
        ("oversized message", request(&[75_000, 4], &big, Some(0)), Code::OutOfRange, "message length too large"),
    ];
    for (label, request, code, needle) in cases {
        let error = client.attribute(request).await.expect_err(label);
        assert_eq!(error.code(), Some(code), "{label}: {error}");
        assert!(error.to_string().contains(needle), "{label}: '{error}' does not mention '{needle}'");
        // The daemon keeps serving after every bad request.
        client.attribute(saliency_request("mlp", &good_shape, &good, Some(0))).await.unwrap_or_else(|error| panic!("after {label}: {error}"));
    }

    // Bad uploads: nothing is stored, nothing is left behind.
    let not_torchscript = std::fs::read(fixtures().join("not_torchscript.pt")).unwrap();
    let oversized = std::fs::read(fixtures().join("digits_cnn.pt")).unwrap();
    // (what is wrong, the bytes, the name, the code, a word the message must hold)
    type UploadCase<'a> = (&'a str, Vec<u8>, Option<&'a str>, Code, &'a str);
    let upload_cases: Vec<UploadCase> = vec![
        ("pickle, not TorchScript", not_torchscript, None, Code::InvalidArgument, "not a TorchScript model"),
        ("random bytes", b"definitely not a model".to_vec(), None, Code::InvalidArgument, "not a TorchScript model"),
        ("empty upload", Vec::new(), None, Code::InvalidArgument, "upload is empty"),
        ("over the model size limit", oversized, None, Code::ResourceExhausted, "limit of 150000 bytes"),
        (
            "bad name",
            std::fs::read(fixtures().join("tiny_mlp_traced.pt")).unwrap(),
            Some("../escape"),
            Code::InvalidArgument,
            "model name '../escape' is not allowed",
        ),
    ];
    for (label, bytes, name, code, needle) in upload_cases {
        let error = client.upload_model(bytes, name, &[]).await.expect_err(label);
        assert_eq!(error.code(), Some(code), "{label}: {error}");
        assert!(error.to_string().contains(needle), "{label}: '{error}' does not mention '{needle}'");
    }
    let models = client.list_models().await.unwrap();
    assert_eq!(models.iter().map(|model| model.id.as_str()).collect::<Vec<_>>(), vec![mlp.id.as_str()]);
    assert_eq!(std::fs::read_dir(store.join("staging")).unwrap().count(), 0, "no staged leftovers");
    assert_eq!(std::fs::read_dir(store.join("models")).unwrap().count(), 1);

    // An upload that does not start with a header.
    let chunk_only = proto::UploadRequest { part: Some(proto::upload_request::Part::Chunk(vec![1, 2, 3])) };
    let channel = tonic::transport::Endpoint::from_shared(daemon.url.clone()).unwrap().connect().await.unwrap();
    let error =
        proto::models_client::ModelsClient::new(channel.clone()).upload(tokio_stream::iter(vec![chunk_only])).await.expect_err("headerless upload");
    assert_eq!(error.code(), Code::InvalidArgument);
    assert!(error.message().contains("must start with a header"), "{}", error.message());

    // Health says SERVING throughout.
    let health = tonic_health::pb::health_client::HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest { service: String::new() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(health.status(), tonic_health::pb::health_check_response::ServingStatus::Serving);
    assert!(daemon.stop());
}

#[tokio::test(flavor = "multi_thread")]
async fn reflection_lists_the_services() {
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let work = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&work.path().join("store"), &[]);
    let channel = tonic::transport::Endpoint::from_shared(daemon.url.clone()).unwrap().connect().await.unwrap();
    let mut reflection = ServerReflectionClient::new(channel);
    let request =
        tonic_reflection::pb::v1::ServerReflectionRequest { host: String::new(), message_request: Some(MessageRequest::ListServices(String::new())) };
    let mut answers = reflection.server_reflection_info(tokio_stream::iter(vec![request])).await.unwrap().into_inner();
    let answer = answers.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else { panic!("not a service list") };
    let names: Vec<String> = list.service.into_iter().map(|service| service.name).collect();
    for expected in ["layerlens.v1.Models", "layerlens.v1.Explain", "grpc.health.v1.Health"] {
        assert!(names.iter().any(|name| name == expected), "{expected} missing from {names:?}");
    }
    assert!(daemon.stop());
}

#[tokio::test(flavor = "multi_thread")]
async fn cli_adds_summarises_explains_and_removes() {
    let work = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&work.path().join("store"), &[]);
    let url = daemon.url.as_str();
    let digits_path = fixtures().join("digits_cnn_traced.pt");
    let digits_path = digits_path.to_str().unwrap();

    let (ok, stdout, stderr) = cli(url, &["--json", "models", "add", digits_path, "--name", "digits", "--input-shape", "1,1,8,8"]);
    assert!(ok, "{stderr}");
    let added: Value = serde_json::from_str(&stdout).unwrap();
    let id = added["id"].as_str().unwrap().to_string();
    assert_eq!(id, sha256_hex(&std::fs::read(digits_path).unwrap()));
    assert_eq!(added["name"], "digits");
    // Without --json, `models add` prints the id alone.
    let (ok, stdout, _) = cli(url, &["models", "add", digits_path]);
    assert!(ok);
    assert_eq!(stdout.trim(), id);

    let (ok, stdout, _) = cli(url, &["--json", "models", "list"]);
    assert!(ok);
    let listed: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(listed[0]["id"], id.as_str());
    assert_eq!(listed[0]["name"], "digits");
    assert!(listed[0]["size_bytes"].as_u64().unwrap() > 0);
    assert!(listed[0]["resident"].is_boolean());

    let (input, _, _) = digits_batch(work.path(), 1);
    let facts: Value = serde_json::from_str(&run_reference("torch_facts.py", &[digits_path, input.to_str().unwrap()])).unwrap();
    let (ok, stdout, stderr) = cli(url, &["--json", "summary", &id[..8], "--input-shape", "1,1,8,8"]);
    assert!(ok, "{stderr}");
    let summary: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(summary["total_params"], facts["total_params"]);
    let paths: Vec<&str> = summary["rows"].as_array().unwrap().iter().map(|row| row["path"].as_str().unwrap()).collect();
    let mut torch_paths: Vec<&str> = facts["modules"].as_object().unwrap().keys().map(String::as_str).collect();
    torch_paths.sort();
    let mut sorted_paths = paths.clone();
    sorted_paths.sort();
    assert_eq!(sorted_paths, torch_paths, "one row per module instance");
    assert_eq!(summary["rows"][0]["path"], "");
    let conv = summary["rows"].as_array().unwrap().iter().find(|row| row["path"] == "features.0").unwrap();
    assert_eq!(conv["type"], "torch.nn.Conv2d");
    assert_eq!(conv["depth"], 2);
    assert_eq!(conv["num_params"], 16 * 9 + 16);

    // A model with two inputs: one --input-shape per forward argument.
    let two_input = fixtures().join("two_input_scripted.pt");
    let (ok, stdout, stderr) = cli(url, &["--json", "summary", two_input.to_str().unwrap(), "--input-shape", "1,1,6,6", "--input-shape", "1,3"]);
    assert!(!ok && stderr.contains("two_input_scripted.pt"), "a file path is not a model id: {stdout} {stderr}");
    let (ok, _, stderr) = cli(url, &["models", "add", two_input.to_str().unwrap(), "--name", "two-input"]);
    assert!(ok, "{stderr}");
    let (ok, stdout, stderr) = cli(url, &["--json", "summary", "two-input", "--input-shape", "1,1,6,6", "--input-shape", "1,3"]);
    assert!(ok, "{stderr}");
    let summary: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(summary["rows"][0]["input_shape"], serde_json::json!([[1, 1, 6, 6], [1, 3]]));
    let tabular = summary["rows"].as_array().unwrap().iter().find(|row| row["path"] == "tabular.0").unwrap();
    assert_eq!(tabular["output_shape"], serde_json::json!([1, 8]));
    let (ok, _, stderr) = cli(
        url,
        &[
            "summary",
            "two-input",
            "--input-shape",
            "1,1,6,6",
            "--input-shape",
            "1,3",
            "--input-dtype",
            "float32",
            "--input-dtype",
            "float32",
            "--input-dtype",
            "int64",
        ],
    );
    assert!(!ok && stderr.contains("3 --input-dtype values for 2 --input-shape values"), "{stderr}");
    let (ok, _, stderr) = cli(url, &["models", "rm", "two-input"]);
    assert!(ok, "{stderr}");

    let out = work.path().join("saliency.npy");
    let png = work.path().join("saliency.png");
    let svg = work.path().join("saliency.svg");
    let input_text = input.to_str().unwrap();
    let (ok, stdout, stderr) = cli(
        url,
        &[
            "--json",
            "attribute",
            "digits",
            "--input",
            input_text,
            "--method",
            "saliency",
            "--target",
            "5",
            "--out",
            out.to_str().unwrap(),
            "--figure",
            png.to_str().unwrap(),
        ],
    );
    assert!(ok, "{stderr}");
    let answer: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(answer["method"], "saliency");
    assert_eq!(answer["target"], 5);
    assert_eq!(answer["shape"], serde_json::json!([1, 1, 8, 8]));
    let (shape, values) = read_npy(&out);
    assert_eq!(shape, vec![1, 1, 8, 8]);
    let reference = captum_saliency(work.path(), &[(Path::new(digits_path), &input, vec![5])]);
    assert!(max_abs_diff(&values, &reference[0]) <= TOLERANCE);
    assert!(std::fs::read(&png).unwrap().starts_with(b"\x89PNG\r\n\x1a\n"));
    let (ok, _, stderr) = cli(url, &["attribute", "digits", "--input", input_text, "--method", "saliency", "--figure", svg.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    assert!(std::fs::read_to_string(&svg).unwrap().starts_with("<svg"));

    // generate (CONTRACT.md): --out holds the input exactly as fed to the model, in the
    // model's input shape; PyTorch classifies it as the class it was made for.
    let generated = work.path().join("three.npy");
    let sheet = work.path().join("three.png");
    let (ok, stdout, stderr) = cli(
        url,
        &[
            "--json",
            "generate",
            "digits",
            "--objective",
            "class_vs_rest:3",
            "--out",
            generated.to_str().unwrap(),
            "--figure",
            sheet.to_str().unwrap(),
            "--steps",
            "64",
            "--seed",
            "1",
            "--parameterization",
            "pixel",
        ],
    );
    assert!(ok, "{stderr}");
    let answer: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(answer["objective"], "class_vs_rest:3");
    assert_eq!(answer["steps"], 64);
    assert!(answer["final_objective"].as_f64().unwrap() > 0.0, "{answer}");
    assert_eq!(answer["out"], generated.to_str().unwrap());
    assert_eq!(answer["figure"], sheet.to_str().unwrap());
    let (shape, _) = read_npy(&generated);
    assert_eq!(shape, vec![1, 1, 8, 8]);
    let facts: Value = serde_json::from_str(&run_reference("torch_facts.py", &[digits_path, generated.to_str().unwrap()])).unwrap();
    assert_eq!(facts["predicted"], serde_json::json!([3]));
    assert!(std::fs::read(&sheet).unwrap().starts_with(b"\x89PNG\r\n\x1a\n"));
    let (ok, _, stderr) = cli(url, &["generate", "digits", "--objective", "channel:features.9:0"]);
    assert!(!ok && stderr.contains("features.9") && stderr.contains("not found"), "{stderr}");
    let (ok, stdout, stderr) = cli(
        url,
        &["--json", "counterfactual", "digits", "--input", input_text, "--target", "1", "--out", work.path().join("cf.npy").to_str().unwrap()],
    );
    assert!(ok, "{stderr}");
    let answer: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(answer["rows"][0]["final_class"], 1, "{answer}");
    let facts: Value = serde_json::from_str(&run_reference("torch_facts.py", &[digits_path, work.path().join("cf.npy").to_str().unwrap()])).unwrap();
    assert_eq!(facts["predicted"], serde_json::json!([1]));

    // Errors: non-zero exit, one line on stderr naming what was wrong.
    let missing = work.path().join("missing.npy");
    let wrong_shape = work.path().join("wrong.npy");
    write_npy(&wrong_shape, &[1, 3, 8, 8], &vec![0.0; 192]);
    for (args, needle) in [
        (vec!["attribute", "digits", "--input", missing.to_str().unwrap(), "--method", "saliency"], "missing.npy"),
        (vec!["attribute", "digits", "--input", wrong_shape.to_str().unwrap(), "--method", "saliency"], "input shape [1, 3, 8, 8]"),
        (vec!["attribute", "nope", "--input", input_text, "--method", "saliency"], "'nope'"),
        (vec!["models", "add", fixtures().join("not_torchscript.pt").to_str().unwrap()], "not_torchscript.pt"),
        (vec!["attribute", "digits", "--input", input_text, "--method", "saliency", "--figure", "x.gif"], "x.gif"),
    ] {
        let (ok, _, stderr) = cli(url, &args);
        assert!(!ok, "{args:?} should fail");
        assert_eq!(stderr.trim_end().lines().count(), 1, "one line on stderr: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: '{stderr}' does not mention '{needle}'");
    }
    let (ok, _, stderr) = cli("http://127.0.0.1:1", &["models", "list"]);
    assert!(!ok);
    assert!(stderr.contains("cannot connect to layerlensd at http://127.0.0.1:1"), "{stderr}");

    let (ok, stdout, _) = cli(url, &["--json", "models", "rm", "digits"]);
    assert!(ok);
    assert_eq!(serde_json::from_str::<Value>(&stdout).unwrap()["id"], id.as_str());
    let (ok, stdout, _) = cli(url, &["--json", "models", "list"]);
    assert!(ok);
    assert_eq!(stdout.trim(), "[]");
    assert!(daemon.stop());
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// The attribution suite through the CLI: integrated gradients with a baseline file and
/// a step count, a layer method, and the compare / evaluate / sanity-check commands,
/// with Captum (run by tests/reference/captum_attribute.py) as the oracle.
#[tokio::test(flavor = "multi_thread")]
async fn cli_attribution_suite_matches_captum() {
    let work = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&work.path().join("store"), &[]);
    let url = daemon.url.as_str();
    let model_path = fixtures().join("digits_cnn.pt");
    let model_text = model_path.to_str().unwrap();
    let (ok, _, stderr) = cli(url, &["models", "add", model_text, "--name", "digits", "--input-shape", "1,1,8,8"]);
    assert!(ok, "{stderr}");
    let (input, shape, _) = digits_batch(work.path(), 2);
    let input_text = input.to_str().unwrap();
    let baseline = work.path().join("baseline.npy");
    write_npy(&baseline, &shape, &vec![0.25; 128]);

    let ig_out = work.path().join("ig.npy");
    let (ok, stdout, stderr) = cli(
        url,
        &[
            "--json",
            "attribute",
            "digits",
            "--input",
            input_text,
            "--method",
            "integrated_gradients",
            "--target",
            "3",
            "--steps",
            "24",
            "--baseline",
            baseline.to_str().unwrap(),
            "--param",
            "method=riemann_trapezoid",
            "--out",
            ig_out.to_str().unwrap(),
        ],
    );
    assert!(ok, "{stderr}");
    let answer: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(answer["n_steps"], 24);
    assert_eq!(answer["convergence_deltas"].as_array().unwrap().len(), 2);

    let cam_out = work.path().join("cam.npy");
    let (ok, stdout, stderr) = cli(
        url,
        &[
            "--json",
            "attribute",
            "digits",
            "--input",
            input_text,
            "--method",
            "grad_cam",
            "--target",
            "3",
            "--layer",
            "features.2",
            "--out",
            cam_out.to_str().unwrap(),
            "--figure",
            work.path().join("cam.png").to_str().unwrap(),
        ],
    );
    assert!(ok, "{stderr}");
    assert_eq!(serde_json::from_str::<Value>(&stdout).unwrap()["shape"], serde_json::json!([2, 1, 8, 8]));

    let reference = work.path().join("reference");
    std::fs::create_dir_all(&reference).unwrap();
    let jobs = serde_json::json!([
        {"model": model_path, "input": input, "method": "integrated_gradients", "target": 3,
         "kwargs": {"n_steps": 24, "method": "riemann_trapezoid"}, "baseline": baseline, "out": reference.join("ig.npy")},
        {"model": model_path, "input": input, "method": "grad_cam", "target": 3, "layer": "features.2",
         "out": reference.join("cam.npy")},
    ]);
    run_reference("captum_attribute.py", &[&jobs.to_string()]);
    for (label, ours, theirs) in [("integrated gradients", &ig_out, reference.join("ig.npy")), ("grad_cam", &cam_out, reference.join("cam.npy"))] {
        let (our_shape, our_values) = read_npy(ours);
        let (their_shape, their_values) = read_npy(&theirs);
        assert_eq!(our_shape, their_shape, "{label}");
        let scale = their_values.iter().fold(0.0f32, |max, value| max.max(value.abs()));
        let difference = max_abs_diff(&our_values, &their_values);
        assert!(difference <= TOLERANCE * (1.0 + scale), "{label}: max |daemon - captum| = {difference}");
    }

    let grid = work.path().join("grid.png");
    let (ok, stdout, stderr) = cli(
        url,
        &[
            "--json",
            "compare",
            "digits",
            "--input",
            input_text,
            "--target",
            "3",
            "--methods",
            "saliency,occlusion,grad_cam",
            "--layer",
            "features.2",
            "--param",
            "occlusion.sliding_window_shapes=1,2,2",
            "--figure",
            grid.to_str().unwrap(),
        ],
    );
    assert!(ok, "{stderr}");
    let compared: Value = serde_json::from_str(&stdout).unwrap();
    let methods: Vec<&str> = compared["methods"].as_array().unwrap().iter().map(|row| row["method"].as_str().unwrap()).collect();
    assert_eq!(methods, ["saliency", "occlusion", "grad_cam"]);
    assert!(std::fs::read(&grid).unwrap().starts_with(b"\x89PNG\r\n\x1a\n"));

    let (ok, stdout, stderr) = cli(
        url,
        &[
            "--json",
            "evaluate",
            "digits",
            "--input",
            input_text,
            "--target",
            "3",
            "--method",
            "saliency",
            "--metric",
            "infidelity",
            "--metric",
            "sensitivity_max",
            "--metric-param",
            "seed=2",
            "--metric-param",
            "n_perturb_samples=4",
        ],
    );
    assert!(ok, "{stderr}");
    let evaluated: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(evaluated["infidelity"].as_array().unwrap().len(), 2);
    assert!(evaluated["sensitivity_max"].as_array().unwrap().iter().all(|value| value.as_f64().unwrap() >= 0.0));

    let (ok, stdout, stderr) = cli(url, &["--json", "sanity-check", "digits", "--input", input_text, "--method", "saliency", "--seed", "1"]);
    assert!(ok, "{stderr}");
    let checked: Value = serde_json::from_str(&stdout).unwrap();
    let layers: Vec<&str> = checked["steps"].as_array().unwrap().iter().map(|step| step["layer"].as_str().unwrap()).collect();
    assert_eq!(layers, ["classifier.3", "classifier.1", "features.2", "features.0"]);

    // Bad requests name the problem and leave the daemon serving.
    for (args, needle) in [
        (vec!["attribute", "digits", "--input", input_text, "--method", "integrated_gradients", "--steps", "0"], "n_steps=0"),
        (vec!["attribute", "digits", "--input", input_text, "--method", "grad_cam"], "needs a layer"),
        (vec!["attribute", "digits", "--input", input_text, "--method", "grad_cam", "--layer", "features.7"], "layer 'features.7' not found"),
        (vec!["attribute", "digits", "--input", input_text, "--method", "occlusion"], "sliding_window_shapes"),
        // The CLI offers the method table's names itself.
        (vec!["attribute", "digits", "--input", input_text, "--method", "nope"], "possible values: saliency"),
        (vec!["attribute", "digits", "--input", input_text, "--method", "saliency", "--targets", "1,2,3"], "3 targets were given for a batch of 2"),
    ] {
        let (ok, _, stderr) = cli(url, &args);
        assert!(!ok, "{args:?} should fail");
        assert!(stderr.contains(needle), "{args:?}: '{stderr}' does not mention '{needle}'");
    }
    let (ok, _, stderr) = cli(url, &["attribute", "digits", "--input", input_text, "--method", "saliency"]);
    assert!(ok, "{stderr}");
    assert!(daemon.stop());
}

/// Passes are chunked to the memory budget; a budget of one byte forces one row per
/// pass, and the answer must equal the one computed in a single pass.
#[tokio::test(flavor = "multi_thread")]
async fn chunked_passes_give_the_unchunked_answer() {
    let work = tempfile::tempdir().unwrap();
    let roomy = Daemon::start(&work.path().join("roomy"), &[]);
    let tight = Daemon::start(&work.path().join("tight"), &["--pass-budget-bytes", "1"]);
    let (_, shape, values) = digits_batch(work.path(), 3);
    let mut answers = Vec::new();
    for daemon in [&roomy, &tight] {
        let client = Client::connect(&daemon.url, None).await.unwrap();
        client.upload_file(&fixtures().join("digits_cnn.pt"), Some("digits"), &[]).await.unwrap();
        let mut per_method = Vec::new();
        for (method, params) in [
            ("integrated_gradients", vec![("n_steps", "12")]),
            ("smoothgrad", vec![("nt_samples", "4"), ("seed", "9"), ("stdevs", "0.1")]),
            ("occlusion", vec![("sliding_window_shapes", "1,3,3"), ("strides", "1,2,2")]),
        ] {
            let mut request = saliency_request("digits", &shape, &values, Some(5));
            request.method = method.to_string();
            request.figure_format = proto::FigureFormat::None as i32;
            request.params = params.into_iter().map(|(key, value)| (key.to_string(), value.to_string())).collect();
            per_method.push(client.attribute(request).await.unwrap());
        }
        answers.push(per_method);
    }
    for (roomy_answer, tight_answer) in answers[0].iter().zip(&answers[1]) {
        let label = &roomy_answer.method;
        assert!(tight_answer.passes > roomy_answer.passes, "{label}: {} vs {} chunks", tight_answer.passes, roomy_answer.passes);
        assert_eq!(tight_answer.rows_evaluated, roomy_answer.rows_evaluated, "{label}: the same rows were evaluated");
        let difference = max_abs_diff(
            &roomy_answer.attribution.as_ref().unwrap().to_f32().unwrap(),
            &tight_answer.attribution.as_ref().unwrap().to_f32().unwrap(),
        );
        assert!(difference <= 1e-5, "{label}: chunked and unchunked differ by {difference}");
    }
    assert!(roomy.stop() && tight.stop());
}

/// The method table is the one list of methods: the daemon serves exactly it (`methods`),
/// every entry runs from the CLI, and the CLI's help offers every entry. Run on a
/// torch.export archive, which the CLI stores like any model file.
#[tokio::test(flavor = "multi_thread")]
async fn every_method_in_the_table_runs_from_the_cli_on_an_exported_program() {
    let work = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&work.path().join("store"), &[]);
    let url = daemon.url.as_str();
    let archive = fixtures().join("digits_cnn.pt2");
    let (ok, stdout, stderr) = cli(url, &["--json", "models", "add", archive.to_str().unwrap(), "--name", "digits"]);
    assert!(ok, "{stderr}");
    let added: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(added["kind"], "exported");
    // The archive's example input (two rows, dynamic batch) is the stored default shape,
    // so a summary needs no --input-shape.
    assert_eq!(added["input_shape"], serde_json::json!([2, 1, 8, 8]));
    let (ok, stdout, stderr) = cli(url, &["--json", "summary", "digits"]);
    assert!(ok, "{stderr}");
    let summary: Value = serde_json::from_str(&stdout).unwrap();
    let conv = summary["rows"].as_array().unwrap().iter().find(|row| row["path"] == "features.0").unwrap();
    assert_eq!(conv["output_shape"], serde_json::json!([2, 16, 8, 8]));

    let (ok, stdout, stderr) = cli(url, &["--json", "methods"]);
    assert!(ok, "{stderr}");
    let served: Vec<String> =
        serde_json::from_str::<Value>(&stdout).unwrap().as_array().unwrap().iter().map(|row| row["name"].as_str().unwrap().to_string()).collect();
    let table: Vec<String> = layerlens_methods::METHODS.iter().map(|method| method.name.to_string()).collect();
    assert_eq!(served, table, "the daemon serves the method table");
    let (ok, help, _) = cli(url, &["attribute", "--help"]);
    assert!(ok);

    let (input, _, _) = digits_batch(work.path(), 1);
    let baselines = work.path().join("baselines.npy");
    write_npy(&baselines, &[2, 1, 8, 8], &[0.0; 128]);
    for method in layerlens_methods::METHODS {
        assert!(help.contains(method.name), "`attribute --help` does not offer {}", method.name);
        let out = work.path().join(format!("{}.npy", method.name));
        let mut args = vec!["--json", "attribute", "digits", "--input", input.to_str().unwrap(), "--method", method.name, "--target", "3"];
        args.extend(["--out", out.to_str().unwrap()]);
        if method.layer {
            args.extend(["--layer", "features.2"]);
        }
        // The options some methods cannot do without.
        match method.name {
            "gradient_shap" => args.extend(["--tensor-param", "baselines=", "--param", "seed=0"]),
            "occlusion" => args.extend(["--param", "sliding_window_shapes=1,2,2"]),
            _ => {}
        }
        let baseline_arg = format!("baselines={}", baselines.display());
        if let Some(slot) = args.iter().position(|arg| *arg == "baselines=") {
            args[slot] = &baseline_arg;
        }
        let (ok, stdout, stderr) = cli(url, &args);
        assert!(ok, "{}: {stderr}", method.name);
        let answer: Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(answer["method"], method.name);
        let (shape, values) = read_npy(&out);
        let expected_shape: Vec<i64> = if method.layer { vec![1, 32, 8, 8] } else { vec![1, 1, 8, 8] };
        if method.name != "grad_cam" {
            assert_eq!(shape, expected_shape, "{}", method.name);
        }
        assert!(values.iter().all(|value| value.is_finite()), "{}", method.name);
    }
    assert!(daemon.stop());
}
