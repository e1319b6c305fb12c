//! `layerlens bench`: a load generator. N clients, each on its own connection (its own
//! HTTP/2 channel), send one kind of request (a prediction or an attribution method)
//! to one model, closed-loop (each client sends its next request when the last one is
//! answered) or at a fixed total rate (open loop: requests leave on schedule whatever
//! is still in flight, and latency counts from the scheduled time, so a slow daemon
//! cannot hide its queue). Reports throughput and latency quantiles as the clients saw
//! them, and the daemon's own time per phase from each response's
//! `x-layerlens-phases` header, so the client's share of the latency shows.
//!
//! Each request's input is the given input with its first value moved by a per-request
//! amount, so the daemon's result cache never answers a request of the run (unless
//! `--same-input`).

use crate::output::outln;
use crate::shape::Shape;
use anyhow::{bail, Context};
use clap::Args;
use layerlens_client::{npy, Client, Phases};
use layerlens_proto as proto;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  layerlens bench digits --method saliency --clients 8 --requests 200\n  layerlens bench resnet --input x.npy --method predict --clients 4 --rate 50 --duration 20\n  layerlens --json bench digits --method integrated_gradients --param n_steps=8 --clients 16"
)]
pub struct BenchArgs {
    /// Id, id prefix (8+ hex characters) or name.
    model: String,
    /// `predict`, or an attribution method (`layerlens methods` lists them).
    #[arg(long, default_value = "saliency")]
    method: String,
    /// Input tensor (.npy, float32); default: a ramp of the model's stored input shape.
    #[arg(long)]
    input: Option<PathBuf>,
    /// The input's shape when no --input is given (default: the stored shape).
    #[arg(long, allow_hyphen_values = true)]
    input_shape: Option<Shape>,
    /// Output index to explain (attributions); default: the predicted class.
    #[arg(long, allow_negative_numbers = true)]
    target: Option<i64>,
    /// Options of the attribution method under Captum's names, KEY=VALUE (repeatable).
    #[arg(long = "param", value_name = "KEY=VALUE")]
    params: Vec<String>,
    /// Ask for the figure too: png or svg (default: none, the numbers only).
    #[arg(long)]
    figure_format: Option<String>,
    /// Concurrent clients, each on its own connection.
    #[arg(long, allow_negative_numbers = true, default_value_t = 8)]
    clients: i64,
    /// Requests per client (closed loop), or in all (with --rate).
    #[arg(long, allow_negative_numbers = true, default_value_t = 50)]
    requests: i64,
    /// Requests per second in all, sent on schedule (open loop); default: closed loop.
    #[arg(long, allow_hyphen_values = true)]
    rate: Option<f64>,
    /// Stop sending after this many seconds even if requests remain.
    #[arg(long, allow_hyphen_values = true, default_value_t = 300.0)]
    duration: f64,
    /// Send the same input every time (the result cache may answer).
    #[arg(long)]
    same_input: bool,
}

/// One request's outcome.
struct Sample {
    latency: Duration,
    result: Result<Phases, String>,
}

/// What every request is built from.
struct Workload {
    method: String,
    model: String,
    input: proto::Tensor,
    values: Vec<f32>,
    shape: Vec<i64>,
    target: Option<i64>,
    params: HashMap<String, String>,
    figure_format: proto::FigureFormat,
    same_input: bool,
}

impl Workload {
    fn input(&self, index: u64) -> proto::Tensor {
        if self.same_input || self.values.is_empty() {
            return self.input.clone();
        }
        let mut values = self.values.clone();
        values[0] += (index + 1) as f32 * 1e-6;
        proto::Tensor::from_f32(&self.shape, &values)
    }

    async fn send(&self, client: &Client, index: u64) -> Result<Phases, String> {
        let input = Some(self.input(index));
        let answer = if self.method == "predict" {
            client
                .predict_traced(proto::PredictRequest { model: self.model.clone(), input, extra_inputs: vec![], top_k: 5 })
                .await
                .map(|(_, phases)| phases)
        } else {
            let request = proto::AttributeRequest {
                model: self.model.clone(),
                input,
                method: self.method.clone(),
                target: self.target,
                params: self.params.clone(),
                figure_format: self.figure_format as i32,
                ..Default::default()
            };
            client.attribute_traced(request).await.map(|(_, phases)| phases)
        };
        answer.map_err(|error| error.to_string().lines().next().unwrap_or_default().to_string())
    }
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

pub async fn bench(addr: &str, connect: impl Fn() -> ConnectFuture, args: BenchArgs, as_json: bool) -> anyhow::Result<()> {
    if args.clients < 1 || args.clients > 1024 {
        bail!("--clients {}: expected 1 to 1024", args.clients);
    }
    if args.requests < 1 {
        bail!("--requests {}: expected at least 1", args.requests);
    }
    if let Some(rate) = args.rate {
        if !(rate > 0.0 && rate.is_finite()) {
            bail!("--rate {rate}: expected a positive number of requests per second");
        }
    }
    if !(args.duration > 0.0 && args.duration.is_finite()) {
        bail!("--duration {}: expected a positive number of seconds", args.duration);
    }
    let figure_format = match args.figure_format.as_deref() {
        None => proto::FigureFormat::None,
        Some("png") => proto::FigureFormat::Png,
        Some("svg") => proto::FigureFormat::Svg,
        Some(other) => bail!("--figure-format {other}: expected png or svg"),
    };
    let first = connect().await?;
    let (shape, values) = match (&args.input, &args.input_shape) {
        (Some(path), _) => npy::read_f32(path).with_context(|| format!("reading {}", path.display()))?,
        (None, shape) => {
            let shape = match shape {
                Some(shape) => shape.0.clone(),
                None => first.get_model(&args.model).await.with_context(|| format!("looking up {}", args.model))?.input_shape,
            };
            if shape.is_empty() {
                bail!("model {} has no stored input shape: give --input or --input-shape", args.model);
            }
            let count = shape.iter().product::<i64>().max(0) as usize;
            (shape, (0..count).map(|index| ((index % 17) as f32) / 17.0).collect())
        }
    };
    let params = args
        .params
        .iter()
        .map(|pair| {
            pair.split_once('=').map(|(key, value)| (key.to_string(), value.to_string())).context(format!("--param {pair}: expected KEY=VALUE"))
        })
        .collect::<anyhow::Result<HashMap<_, _>>>()?;
    let workload = Arc::new(Workload {
        method: args.method.clone(),
        model: args.model.clone(),
        input: proto::Tensor::from_f32(&shape, &values),
        values,
        shape,
        target: args.target,
        params,
        figure_format,
        same_input: args.same_input,
    });
    // Every client on its own connection, opened before the clock starts; one untimed
    // request first, so no client pays for the model's loading.
    let mut clients = vec![first];
    for _ in 1..args.clients {
        clients.push(connect().await?);
    }
    workload.send(&clients[0], u64::MAX - 1).await.map_err(|error| anyhow::anyhow!("the warm-up request failed: {error}"))?;
    let clients: Vec<Arc<Client>> = clients.into_iter().map(Arc::new).collect();
    let samples = Arc::new(Mutex::new(Vec::<Sample>::new()));
    let deadline = Instant::now() + Duration::from_secs_f64(args.duration);
    let started = Instant::now();
    let mut tasks = Vec::new();
    match args.rate {
        None => {
            for (client_index, client) in clients.iter().enumerate() {
                let (client, workload, samples) = (client.clone(), workload.clone(), samples.clone());
                let per_client = args.requests as u64;
                tasks.push(tokio::spawn(async move {
                    for request in 0..per_client {
                        if Instant::now() >= deadline {
                            break;
                        }
                        let sent = Instant::now();
                        let result = workload.send(&client, client_index as u64 * per_client + request).await;
                        samples.lock().await.push(Sample { latency: sent.elapsed(), result });
                    }
                }));
            }
        }
        Some(rate) => {
            let interval = Duration::from_secs_f64(1.0 / rate);
            for request in 0..args.requests as u64 {
                let scheduled = started + interval.mul_f64(request as f64);
                if scheduled >= deadline {
                    break;
                }
                tokio::time::sleep_until(scheduled.into()).await;
                let client = clients[request as usize % clients.len()].clone();
                let (workload, samples) = (workload.clone(), samples.clone());
                tasks.push(tokio::spawn(async move {
                    let result = workload.send(&client, request).await;
                    samples.lock().await.push(Sample { latency: scheduled.elapsed(), result });
                }));
            }
        }
    }
    for task in tasks {
        task.await.context("a client task failed")?;
    }
    let elapsed = started.elapsed();
    let samples = std::mem::take(&mut *samples.lock().await);
    report(addr, &args, &samples, elapsed, as_json)
}

pub type ConnectFuture = std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<Client>>>>;

fn report(addr: &str, args: &BenchArgs, samples: &[Sample], elapsed: Duration, as_json: bool) -> anyhow::Result<()> {
    let mut latencies: Vec<f64> = samples.iter().filter(|sample| sample.result.is_ok()).map(|sample| sample.latency.as_secs_f64() * 1e3).collect();
    latencies.sort_by(f64::total_cmp);
    let mut errors: BTreeMap<String, usize> = BTreeMap::new();
    for sample in samples {
        if let Err(error) = &sample.result {
            *errors.entry(error.clone()).or_default() += 1;
        }
    }
    let answered = latencies.len();
    let throughput = answered as f64 / elapsed.as_secs_f64();
    // The daemon's phases over the answered requests: mean and median per phase.
    let mut by_phase: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut batch_sizes = Vec::new();
    for phases in samples.iter().filter_map(|sample| sample.result.as_ref().ok()) {
        for (name, millis) in &phases.millis {
            by_phase.entry(name.clone()).or_default().push(*millis);
        }
        batch_sizes.extend(phases.batch_size);
    }
    let order = ["decode", "queue", "batch_wait", "run", "to_device", "to_host", "render", "encode", "handler"];
    let mut phase_rows: Vec<(String, f64, f64, usize)> = Vec::new();
    let names: Vec<String> =
        order.iter().map(|name| name.to_string()).chain(by_phase.keys().filter(|name| !order.contains(&name.as_str())).cloned()).collect();
    for name in names {
        if let Some(values) = by_phase.get_mut(&name) {
            values.sort_by(f64::total_cmp);
            let mean = values.iter().sum::<f64>() / answered.max(1) as f64;
            phase_rows.push((name, mean, quantile(values, 0.5), values.len()));
        }
    }
    let mean_latency = latencies.iter().sum::<f64>() / answered.max(1) as f64;
    let handler_mean = phase_rows.iter().find(|row| row.0 == "handler").map(|row| row.1).unwrap_or(0.0);
    let mean_batch = if batch_sizes.is_empty() { 0.0 } else { batch_sizes.iter().sum::<u64>() as f64 / batch_sizes.len() as f64 };
    let mode = match args.rate {
        Some(rate) => format!("open loop at {rate} requests/s"),
        None => "closed loop".to_string(),
    };
    if as_json {
        let phases: Value = phase_rows
            .iter()
            .map(|(name, mean, median, count)| (name.clone(), json!({"mean_ms": mean, "p50_ms": median, "requests": count})))
            .collect::<serde_json::Map<_, _>>()
            .into();
        outln!(
            "{}",
            json!({
                "addr": addr, "model": args.model, "method": args.method, "clients": args.clients, "mode": mode,
                "requests": samples.len(), "answered": answered, "errors": errors, "seconds": elapsed.as_secs_f64(),
                "throughput": throughput,
                "latency_ms": {"mean": mean_latency, "p50": quantile(&latencies, 0.5), "p90": quantile(&latencies, 0.9),
                               "p99": quantile(&latencies, 0.99), "max": latencies.last().copied().unwrap_or(f64::NAN)},
                "daemon_phases": phases, "outside_daemon_ms": mean_latency - handler_mean, "mean_batch_size": mean_batch,
            })
        )?;
        return Ok(());
    }
    outln!(
        "{} {} on {}: {} clients, {mode}; {answered} of {} answered in {:.2} s: {throughput:.1} requests/s",
        args.method,
        args.model,
        addr,
        args.clients,
        samples.len(),
        elapsed.as_secs_f64()
    )?;
    outln!(
        "latency ms: mean {mean_latency:.2}, p50 {:.2}, p90 {:.2}, p99 {:.2}, max {:.2}",
        quantile(&latencies, 0.5),
        quantile(&latencies, 0.9),
        quantile(&latencies, 0.99),
        latencies.last().copied().unwrap_or(f64::NAN)
    )?;
    outln!("{:<12} {:>10} {:>10}", "daemon phase", "mean ms", "p50 ms")?;
    for (name, mean, median, _) in &phase_rows {
        outln!("{name:<12} {mean:>10.3} {median:>10.3}")?;
    }
    outln!("outside the daemon (client, connection, framing): {:.3} ms per request on average", mean_latency - handler_mean)?;
    if mean_batch > 0.0 {
        outln!("requests per pass: {mean_batch:.2} on average")?;
    }
    for (error, count) in &errors {
        outln!("{count} failed: {error}")?;
    }
    Ok(())
}
