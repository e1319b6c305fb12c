//! Load on the real `layerlensd` (issue 5): 32 concurrent clients, each on its own
//! connection, send 200 mixed requests each (predictions, summaries, parameter and
//! activation reports, saliency and integrated-gradient attributions, listings and
//! status) over loopback to one daemon holding four models. Passes when every request
//! succeeds within the overall bound, concurrent predictions equal the sequential
//! ones, and both the result cache and the models answered a good share; prints p50
//! and p99 latency per method and the throughput.
//!
//! The work per request is small (8×8 inputs, 8 integration steps, a figure only for
//! one saliency request in four) so the debug build finishes each phase in seconds; `tests/bench/bench_serving.py`
//! runs the same load against the release build.

use layerlens_client::Client;
use layerlens_e2e::*;
use layerlens_proto as proto;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const CLIENTS: usize = 32;
const REQUESTS_PER_CLIENT: usize = 200;
/// Each phase of the load must finish within this, or the test fails.
const LOAD_BOUND: Duration = Duration::from_secs(120);
/// Inputs per model whose predictions are checked against a sequential run.
const CHECKED_INPUTS: usize = 48;

/// A stored model and the inputs the clients send it.
struct LoadModel {
    name: &'static str,
    /// One input row's shape with its batch dimension of 1.
    shape: Vec<i64>,
    classes: i64,
    /// `CHECKED_INPUTS` rows, each `shape`'s product long.
    inputs: Vec<Vec<f32>>,
}

impl LoadModel {
    /// Input `index` of client `client`'s request `request`: one of the checked rows
    /// for predictions, else a row made unique to the request (so the result cache
    /// cannot answer it).
    fn unique_input(&self, client: usize, request: usize) -> proto::Tensor {
        let base = &self.inputs[(client * 7 + request) % self.inputs.len()];
        let shift = (client * REQUESTS_PER_CLIENT + request) as f32 * 1e-4;
        let values: Vec<f32> = base.iter().map(|value| value + shift).collect();
        proto::Tensor::from_f32(&self.shape, &values)
    }
}

fn load_models() -> Vec<LoadModel> {
    let (image_shape, images) = read_npy(&fixtures().join("digits_test_images.npy"));
    let image_len: usize = image_shape[1..].iter().product::<i64>() as usize;
    let digits_inputs: Vec<Vec<f32>> = images.chunks(image_len).take(CHECKED_INPUTS).map(<[f32]>::to_vec).collect();
    let synthetic = |len: usize, salt: usize| -> Vec<Vec<f32>> {
        (0..CHECKED_INPUTS).map(|row| (0..len).map(|index| (((row * 131 + index * 37 + salt) % 101) as f32 / 50.0) - 1.0).collect()).collect()
    };
    vec![
        LoadModel { name: "digits", shape: vec![1, 1, 8, 8], classes: 10, inputs: digits_inputs.clone() },
        LoadModel { name: "digits-traced", shape: vec![1, 1, 8, 8], classes: 10, inputs: digits_inputs },
        LoadModel { name: "cnn", shape: vec![1, 3, 8, 8], classes: 5, inputs: synthetic(3 * 64, 1) },
        LoadModel { name: "mlp", shape: vec![1, 4], classes: 3, inputs: synthetic(4, 2) },
    ]
}

/// What one request was and how it went.
struct Outcome {
    method: &'static str,
    latency: Duration,
    /// `Some(cached)` for the methods the result cache may answer.
    cached: Option<bool>,
    error: Option<String>,
    /// (model, checked input) and the output row of a prediction.
    prediction: Option<((usize, usize), Vec<f32>)>,
}

/// Client `client`'s request number `request`: the method cycles through ten slots so
/// every client sends every kind, and the model through the four.
async fn one_request(client: &Client, models: &[LoadModel], client_index: usize, request: usize) -> Outcome {
    let model_index = (client_index + request) % models.len();
    let model = &models[model_index];
    let name = model.name.to_string();
    let no_figure = proto::FigureFormat::None as i32;
    let target = ((client_index * 3 + request) as i64) % model.classes;
    let started = Instant::now();
    let mut prediction = None;
    let (method, result): (&'static str, Result<Option<bool>, layerlens_client::ClientError>) = match (client_index + request * 3) % 10 {
        0 | 1 => {
            let checked = (client_index * 5 + request) % model.inputs.len();
            let request = proto::PredictRequest {
                model: name,
                input: Some(proto::Tensor::from_f32(&model.shape, &model.inputs[checked])),
                top_k: 3,
                ..Default::default()
            };
            let result = client.predict(request).await.map(|response| {
                let output = response.output.as_ref().and_then(|tensor| tensor.to_f32().ok()).unwrap_or_default();
                prediction = Some(((model_index, checked), output));
                Some(response.cached)
            });
            ("Predict", result)
        }
        2 | 3 => {
            let request = proto::AttributeRequest {
                model: name,
                input: Some(model.unique_input(client_index, request)),
                method: "saliency".into(),
                target: Some(target),
                // One in four asks for the heat map too, so rendering is part of the load.
                figure_format: if request.is_multiple_of(4) { proto::FigureFormat::Png as i32 } else { no_figure },
                ..Default::default()
            };
            ("Attribute saliency", client.attribute(request).await.map(|response| Some(response.cached)))
        }
        4 => {
            let request = proto::AttributeRequest {
                model: name,
                input: Some(model.unique_input(client_index, request)),
                method: "integrated_gradients".into(),
                target: Some(target),
                params: [("n_steps".to_string(), "8".to_string())].into(),
                figure_format: no_figure,
                ..Default::default()
            };
            ("Attribute integrated_gradients", client.attribute(request).await.map(|response| Some(response.cached)))
        }
        5 => {
            let request = proto::ActivationsRequest {
                model: name,
                input: Some(model.unique_input(client_index, request)),
                bins: 8,
                figure_format: no_figure,
                ..Default::default()
            };
            ("Activations", client.activations(request).await.map(|response| Some(response.cached)))
        }
        6 => {
            let request = proto::SummaryRequest {
                model: name,
                input_shape: model.shape.clone(),
                depth: (request % 3) as u32,
                figure_format: no_figure,
                ..Default::default()
            };
            ("Summary", client.summary(request).await.map(|response| Some(response.cached)))
        }
        7 => {
            let request = proto::ParametersRequest { model: name, bins: 8 + (request % 4) as u32, figure_format: no_figure };
            ("Parameters", client.parameters(request).await.map(|response| Some(response.cached)))
        }
        8 => (
            "Models.List",
            client.list_models().await.map(|models| {
                assert_eq!(models.len(), 4, "Models.List lost a model under load");
                None
            }),
        ),
        _ => ("Daemon.Status", client.status().await.map(|_| None)),
    };
    let latency = started.elapsed();
    match result {
        Ok(cached) => Outcome { method, latency, cached, error: None, prediction },
        Err(error) => Outcome { method, latency, cached: None, error: Some(format!("{method} on {}: {error}", model.name)), prediction: None },
    }
}

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    let rank = ((sorted.len() as f64 * fraction).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn milliseconds(duration: Duration) -> String {
    format!("{:.1}", duration.as_secs_f64() * 1e3)
}

/// What one phase of load measured.
struct LoadReport {
    outcomes: Vec<Outcome>,
    elapsed: Duration,
}

/// Starts a daemon with `daemon_args`, stores the four models, computes the reference
/// predictions, runs the 32 × 200 requests and checks them; prints the table under
/// `label`.
async fn run_load(label: &str, daemon_args: &[&str]) -> LoadReport {
    let work = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&work.path().join("store"), daemon_args);
    let setup = Client::connect(&daemon.url, None).await.unwrap();
    let models = load_models();
    for (model, file) in models.iter().zip(["digits_cnn.pt", "digits_cnn_traced.pt", "tiny_cnn_traced.pt", "tiny_mlp_scripted.pt"]) {
        setup.upload_file(&fixtures().join(file), Some(model.name), &model.shape).await.unwrap_or_else(|error| panic!("{file}: {error}"));
    }
    // The reference: each model's predictions for its checked inputs, one batch per
    // model sent alone (a batch is another request than a row, so the cache does not
    // hand these to the clients).
    let mut reference: BTreeMap<(usize, usize), Vec<f32>> = BTreeMap::new();
    for (model_index, model) in models.iter().enumerate() {
        let mut shape = model.shape.clone();
        shape[0] = model.inputs.len() as i64;
        let values: Vec<f32> = model.inputs.concat();
        let request = proto::PredictRequest { model: model.name.into(), input: Some(proto::Tensor::from_f32(&shape, &values)), ..Default::default() };
        let output = setup.predict(request).await.unwrap().output.unwrap().to_f32().unwrap();
        let row_len = output.len() / model.inputs.len();
        for (row, values) in output.chunks(row_len).enumerate() {
            reference.insert((model_index, row), values.to_vec());
        }
    }

    let models = std::sync::Arc::new(models);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for client_index in 0..CLIENTS {
        let (url, models) = (daemon.url.clone(), models.clone());
        tasks.push(tokio::spawn(async move {
            let client = Client::connect(&url, None).await.expect("connecting a load client");
            let mut outcomes = Vec::with_capacity(REQUESTS_PER_CLIENT);
            for request in 0..REQUESTS_PER_CLIENT {
                outcomes.push(one_request(&client, &models, client_index, request).await);
            }
            outcomes
        }));
    }
    let outcomes: Vec<Outcome> = tokio::time::timeout(LOAD_BOUND, async {
        let mut all = Vec::new();
        for task in tasks {
            all.extend(task.await.expect("a load client panicked"));
        }
        all
    })
    .await
    .unwrap_or_else(|_| panic!("{label}: {CLIENTS} × {REQUESTS_PER_CLIENT} requests did not finish within {LOAD_BOUND:?}"));
    let elapsed = started.elapsed();

    // The report: latency per method and overall, and the throughput.
    let mut by_method: BTreeMap<&str, Vec<Duration>> = BTreeMap::new();
    for outcome in &outcomes {
        by_method.entry(outcome.method).or_default().push(outcome.latency);
    }
    let mut all: Vec<Duration> = outcomes.iter().map(|outcome| outcome.latency).collect();
    all.sort();
    let cacheable: Vec<bool> = outcomes.iter().filter_map(|outcome| outcome.cached).collect();
    let hits = cacheable.iter().filter(|&&cached| cached).count();
    eprintln!(
        "\n{label}: {} requests from {CLIENTS} clients in {:.2} s: {:.0} requests/s; the cache answered {hits} of {} cacheable",
        outcomes.len(),
        elapsed.as_secs_f64(),
        outcomes.len() as f64 / elapsed.as_secs_f64(),
        cacheable.len()
    );
    eprintln!("| method | requests | p50 ms | p99 ms | max ms |\n|---|---|---|---|---|");
    for (method, latencies) in by_method.iter_mut() {
        latencies.sort();
        let max = latencies[latencies.len() - 1];
        eprintln!(
            "| {method} | {} | {} | {} | {} |",
            latencies.len(),
            milliseconds(percentile(latencies, 0.5)),
            milliseconds(percentile(latencies, 0.99)),
            milliseconds(max)
        );
    }
    eprintln!(
        "| all | {} | {} | {} | {} |",
        all.len(),
        milliseconds(percentile(&all, 0.5)),
        milliseconds(percentile(&all, 0.99)),
        milliseconds(all[all.len() - 1])
    );

    let errors: Vec<&String> = outcomes.iter().filter_map(|outcome| outcome.error.as_ref()).collect();
    assert!(errors.is_empty(), "{label}: {} of {} requests failed, e.g. {:?}", errors.len(), outcomes.len(), &errors[..errors.len().min(5)]);
    assert_eq!(outcomes.len(), CLIENTS * REQUESTS_PER_CLIENT);
    // A prediction made among 31 other clients equals the one made alone.
    for outcome in &outcomes {
        if let Some((key, output)) = &outcome.prediction {
            let difference = max_abs_diff(output, &reference[key]);
            assert!(difference <= 1e-5, "{label}: model {} input {}: prediction under load differs by {difference}", models[key.0].name, key.1);
        }
    }
    // Nothing is left queued once every client has its answers.
    let status = setup.status().await.unwrap();
    for model in &status.models {
        assert_eq!(model.in_flight, 0, "{label}: {:?} still has work in flight after the load", model.names);
    }
    assert!(daemon.stop(), "{label}: the daemon did not stop cleanly after the load");
    LoadReport { outcomes, elapsed }
}

#[tokio::test(flavor = "multi_thread")]
async fn thirty_two_clients_times_two_hundred_mixed_requests_all_succeed() {
    // With the result cache: repeated predictions, summaries and parameter reports
    // come from it, attributions and activations of fresh inputs from the models.
    let cached = run_load("with the result cache", &[]).await;
    let cacheable: Vec<bool> = cached.outcomes.iter().filter_map(|outcome| outcome.cached).collect();
    let hits = cacheable.iter().filter(|&&cached| cached).count();
    assert!(cacheable.len() - hits >= cacheable.len() / 3, "only {} of {} cacheable answers were computed", cacheable.len() - hits, cacheable.len());
    assert!(hits > 0, "the result cache answered nothing");
    // Without it: every answer is computed by the models.
    let uncached = run_load("with --cache-bytes 0", &["--cache-bytes", "0"]).await;
    let hits = uncached.outcomes.iter().filter(|outcome| outcome.cached == Some(true)).count();
    assert_eq!(hits, 0, "answers came from a cache that is off");
    let total = cached.elapsed + uncached.elapsed;
    assert!(total < LOAD_BOUND, "the two phases took {total:?} together");
}
