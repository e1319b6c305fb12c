//! Cross-request batching: requests for the same model that would run the same
//! computation on different rows (same method, options and per-row input shape) are
//! joined into one request, run as one pass, and split back.
//!
//! Only requests whose rows are computed independently are joined, so each caller's
//! answer is what it would get alone: gradient methods with a fixed step count
//! (saliency, input × gradient, integrated gradients) and the layer methods, plus
//! Predict; and the noise tunnels (SmoothGrad, SmoothGrad², VarGrad), whose joined run
//! draws each caller's noise apart, seeded as that caller asked (`draw_groups`), so the
//! noise is what the request would draw alone. Left out: adaptive integrated gradients
//! (its step count depends on the worst row of the batch), the other sampling methods
//! (their draws depend on the batch),
//! perturbation methods (already batched over perturbations), tensor options such as
//! explicit baselines (per-request tensors), and predicted targets mixed with
//! explicit ones. Requests with progress handles are joined: every handle sees the
//! joined run's progress, and the run stops only when every caller has gone. A model whose rows interact (batch
//! statistics in eval mode, which no standard layer has) would break the promise; the
//! daemon's `--max-batch-size 1` turns batching off.

use crate::attribution::{Attribution, AttributionRequest, DrawGroup, Sampling, Targets};
use crate::host_tensor::HostTensor;
use crate::inspection::Prediction;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// What a worker has seen of its batchable traffic, for the batch window (the idea of
/// Triton's dynamic batcher): how far apart batchable requests arrive, how long a
/// pass takes and how many requests a pass served, as moving averages.
#[derive(Debug, Default)]
pub(crate) struct Traffic {
    mean_gap: Option<Duration>,
    last_arrival: Option<Instant>,
    mean_pass: Option<Duration>,
    mean_batch: Option<f64>,
}

/// How a job waits for companions (`Traffic::wait_for`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Wait {
    /// At most this many more.
    pub more: usize,
    /// For at most this long.
    pub window: Duration,
    /// And no longer than this after the last arrival.
    pub quiet: Option<Duration>,
}

impl Wait {
    pub(crate) const NONE: Wait = Wait { more: 0, window: Duration::ZERO, quiet: None };
}

/// Passes that served this many requests on average mean several callers are in step
/// (closed loops that send again on their answers): a job that finds none of them
/// queued yet waits for them.
const CALLERS_IN_STEP: f64 = 1.5;

fn moving_average(previous: Option<Duration>, sample: Duration) -> Duration {
    match previous {
        None => sample,
        Some(previous) => (previous * 7 + sample) / 8,
    }
}

impl Traffic {
    /// A batchable request that arrived (was queued) at `at`. Requests reach the worker
    /// out of arrival order (fair queuing); only later arrivals than the last seen count.
    pub(crate) fn arrived(&mut self, at: Instant) {
        match self.last_arrival {
            Some(last) if at <= last => {}
            Some(last) => {
                self.mean_gap = Some(moving_average(self.mean_gap, at - last));
                self.last_arrival = Some(at);
            }
            None => self.last_arrival = Some(at),
        }
    }

    /// A batchable run of `batch` requests took `pass`.
    pub(crate) fn ran(&mut self, pass: Duration, batch: usize) {
        self.mean_pass = Some(moving_average(self.mean_pass, pass));
        // Halved at each pass, so a caller left alone after a burst stops waiting for
        // the others within a few passes.
        self.mean_batch = Some(self.mean_batch.map_or(batch as f64, |mean| (mean + batch as f64) / 2.0));
    }

    /// How a job that found `found` companions queued, with room for `room` more,
    /// waits for others: how many at most, until when at most, and, when set, for how
    /// long after the last arrival (the wait ends when a burst's arrivals pause).
    ///
    /// When recent passes served several callers at once (`CALLERS_IN_STEP`: closed
    /// loops that send again on their answers), the job waits while companions keep
    /// arriving, at most `max_delay` and a quarter of a pass, and until a quarter of
    /// that has passed without one, whether or not some are queued already: with eight
    /// such users the first to send again would otherwise run alone (or with the few
    /// already there) and the rest in a pass of their own, two passes where one does
    /// (on a GPU a pass of one row costs about what a pass of eight does). The arrival
    /// gap does not bound this wait: its average counts the pause between bursts.
    ///
    /// Otherwise a job that found companions waits for the room to fill (`window`),
    /// and one that found none runs at once: a lone caller's passes serve one
    /// request, so it never waits.
    pub(crate) fn wait_for(&self, max_delay: Duration, found: usize, room: usize) -> Wait {
        if room == 0 {
            return Wait::NONE;
        }
        if self.mean_batch.is_some_and(|mean| mean >= CALLERS_IN_STEP) {
            let window = self.mean_pass.map_or(max_delay, |pass| max_delay.min(pass / 4));
            return Wait { more: room, window, quiet: Some(window / 4) };
        }
        if found == 0 {
            return Wait::NONE;
        }
        Wait { more: room, window: self.window(max_delay, room), quiet: None }
    }

    /// How long a job waits for `more` companions. Not at all when requests arrive
    /// further apart than `max_delay` (the next is unlikely in time). Otherwise for the
    /// time they take to arrive at the observed rate, at most `max_delay` and at most a
    /// quarter of a pass (waiting longer would cost every request in the batch more
    /// than the pass it saves). Without observations yet it waits `max_delay`.
    fn window(&self, max_delay: Duration, more: usize) -> Duration {
        let Some(gap) = self.mean_gap else { return max_delay };
        if gap > max_delay {
            return Duration::ZERO;
        }
        let fill = gap.saturating_mul(more as u32);
        let cap = self.mean_pass.map_or(max_delay, |pass| pass / 4);
        fill.min(max_delay).min(cap)
    }
}

/// What two requests must share to run as one pass.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum BatchKey {
    Attribute {
        method: String,
        params: BTreeMap<String, String>,
        layer: Option<String>,
        /// Per input: its shape without the batch dimension, and whether it holds ids.
        row_shapes: Vec<(Vec<i64>, bool)>,
        /// Predicted targets are joined only with predicted targets.
        predicted: bool,
    },
    Predict {
        top_k: usize,
        row_shapes: Vec<(Vec<i64>, bool)>,
    },
}

/// Per input, the shape of one row; `None` when the inputs disagree on the row count
/// or are not valid tensors (such a request runs alone and gets its own error).
fn row_shapes(inputs: &[HostTensor]) -> Option<Vec<(Vec<i64>, bool)>> {
    let rows = inputs.first()?.rows();
    if rows == 0 {
        return None;
    }
    inputs.iter().map(|input| (input.validate("input").is_ok() && input.rows() == rows).then(|| (input.shape[1..].to_vec(), input.integer))).collect()
}

/// Whether a joined run of this method draws each caller's noise apart (`draw_groups`),
/// so callers with different seeds may share it: the noise tunnels.
fn draws_per_caller(method: &str) -> bool {
    crate::attribution::find_method(method).is_ok_and(|method| method.sampling == Sampling::UnlessNoiseGiven)
}

pub(crate) fn attribute_key(request: &AttributionRequest) -> Option<BatchKey> {
    // Which methods may share a pass is a property in the method table.
    crate::attribution::find_method(&request.method).ok().filter(|method| method.batchable)?;
    // Every other seeded option keeps a request alone.
    let draws_per_request = draws_per_caller(&request.method);
    if !request.tensor_params.is_empty()
        || request.params.get("n_steps").is_some_and(|steps| steps == "auto")
        || (request.params.contains_key("seed") && !draws_per_request)
        // Random baselines of integrated gradients under a noise tunnel are drawn for the batch.
        || request.params.get("baselines").is_some_and(|kind| kind == "uniform")
        || !request.draw_groups.is_empty()
    {
        return None;
    }
    let row_shapes = row_shapes(&request.inputs)?;
    let rows = request.inputs[0].rows();
    if let Targets::PerRow(targets) = &request.targets {
        if targets.len() != rows {
            return None;
        }
    }
    let mut params = request.params.clone();
    if draws_per_request {
        let seed = params.remove("seed");
        if seed.is_some_and(|seed| seed.parse::<u64>().is_err()) {
            return None; // a bad seed gets its own error, alone
        }
        let samples: i64 = params.get("nt_samples").map_or(Some(5), |samples| samples.parse().ok())?;
        let values: i64 = request.inputs.iter().map(|input| input.shape.iter().product::<i64>()).sum();
        // Its noise is drawn up front in a joined run (each caller's apart).
        if values.saturating_mul(samples) > crate::attribution::MAX_UPFRONT_NOISE_VALUES {
            return None;
        }
    }
    Some(BatchKey::Attribute {
        method: request.method.clone(),
        params,
        layer: request.layer.clone(),
        row_shapes,
        predicted: request.targets == Targets::Predicted,
    })
}

pub(crate) fn predict_key(inputs: &[HostTensor], top_k: usize) -> Option<BatchKey> {
    Some(BatchKey::Predict { top_k, row_shapes: row_shapes(inputs)? })
}

/// The inputs of several requests stacked input by input.
pub(crate) fn join_inputs(parts: &[&[HostTensor]]) -> Vec<HostTensor> {
    (0..parts[0].len()).map(|index| HostTensor::concat_rows(&parts.iter().map(|inputs| &inputs[index]).collect::<Vec<_>>())).collect()
}

/// One request doing the work of all of `requests` (which share a `BatchKey`).
pub(crate) fn join_attribution(requests: &[&AttributionRequest]) -> AttributionRequest {
    let first = requests[0];
    let targets = if first.targets == Targets::Predicted {
        Targets::Predicted
    } else {
        Targets::PerRow(
            requests
                .iter()
                .flat_map(|request| match &request.targets {
                    Targets::All(target) => vec![*target; request.inputs[0].rows()],
                    Targets::PerRow(targets) => targets.clone(),
                    Targets::Predicted => unreachable!("predicted targets are only joined with predicted targets"),
                })
                .collect(),
        )
    };
    let mut params = first.params.clone();
    let draw_groups = if draws_per_caller(&first.method) {
        params.remove("seed");
        requests
            .iter()
            .map(|request| DrawGroup { rows: request.inputs[0].rows(), seed: request.params.get("seed").and_then(|seed| seed.parse().ok()) })
            .collect()
    } else {
        Vec::new()
    };
    AttributionRequest {
        method: first.method.clone(),
        inputs: join_inputs(&requests.iter().map(|request| request.inputs.as_slice()).collect::<Vec<_>>()),
        targets,
        params,
        tensor_params: BTreeMap::new(),
        layer: first.layer.clone(),
        // Who may stop a joined run is the worker's decision (every caller's own handle
        // and cancel flag, `Progress::any`); the joined request carries none itself.
        progress: None,
        draw_groups,
    }
}

/// One handle for a joined run: it tells every request's handle each update and says
/// go on while any of them does (a caller that left stops only its own share, and the
/// worker does not answer it).
/// Splits a joined answer back into one answer per request (`rows[i]` rows each).
/// The pass counts describe the shared run and are the same in every part.
pub(crate) fn split_attribution(joined: Attribution, rows: &[usize]) -> Vec<Attribution> {
    let total: usize = rows.iter().sum();
    let split = |tensor: &HostTensor| tensor.split_rows(rows);
    let values: Vec<Vec<HostTensor>> = joined.values.iter().map(split).collect();
    let outputs = split(&joined.output);
    let figure_values = joined.figure_values.as_ref().filter(|figure| figure.rows() == total).map(split);
    let mut start = 0;
    rows.iter()
        .enumerate()
        .map(|(part, &count)| {
            let range = start..start + count;
            start += count;
            Attribution {
                method: joined.method.clone(),
                targets: joined.targets[range.clone()].to_vec(),
                values: values.iter().map(|pieces| pieces[part].clone()).collect(),
                output: outputs[part].clone(),
                convergence_deltas: joined.convergence_deltas.get(range).map(<[f64]>::to_vec).unwrap_or_default(),
                n_steps: joined.n_steps,
                rows_evaluated: joined.rows_evaluated,
                passes: joined.passes,
                figure_values: figure_values.as_ref().map(|pieces| pieces[part].clone()),
            }
        })
        .collect()
}

pub(crate) fn split_prediction(joined: Prediction, rows: &[usize]) -> Vec<Prediction> {
    let outputs = joined.output.split_rows(rows);
    let mut top_k = joined.top_k.into_iter();
    outputs.into_iter().zip(rows).map(|(output, &count)| Prediction { output, top_k: top_k.by_ref().take(count).collect() }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tensor(rows: i64, start: f32) -> HostTensor {
        HostTensor { shape: vec![rows, 2], values: (0..rows * 2).map(|index| start + index as f32).collect(), integer: false }
    }

    fn request(method: &str, rows: i64, targets: Targets) -> AttributionRequest {
        AttributionRequest { method: method.into(), inputs: vec![tensor(rows, 0.0)], targets, ..AttributionRequest::default() }
    }

    #[test]
    fn noise_tunnels_join_across_seeds_and_draw_per_caller() {
        let with = |rows: i64, seed: Option<&str>| {
            let mut request = request("smoothgrad", rows, Targets::All(1));
            if let Some(seed) = seed {
                request.params.insert("seed".into(), seed.into());
            }
            request
        };
        let (a, b, c) = (with(1, Some("3")), with(2, Some("9")), with(1, None));
        let key = attribute_key(&a);
        assert!(key.is_some());
        assert_eq!(key, attribute_key(&b));
        assert_eq!(key, attribute_key(&c));
        assert!(attribute_key(&with(1, Some("minus one"))).is_none(), "a bad seed runs alone and gets its error");
        let joined = join_attribution(&[&a, &b, &c]);
        assert!(!joined.params.contains_key("seed"));
        let groups: Vec<(usize, Option<u64>)> = joined.draw_groups.iter().map(|group| (group.rows, group.seed)).collect();
        assert_eq!(groups, [(1, Some(3)), (2, Some(9)), (1, None)]);
        // A joined request is not joined again, and a big input's noise is not drawn up front.
        assert!(attribute_key(&joined).is_none());
        let mut big = with(1, Some("3"));
        big.inputs = vec![HostTensor { shape: vec![1, 3, 512, 512], values: vec![0.0; 3 * 512 * 512], integer: false }];
        big.params.insert("nt_samples".into(), "50".into());
        assert!(attribute_key(&big).is_none());
        // Seeds elsewhere still keep a request alone: integrated gradients' random baselines.
        let mut ig = request("integrated_gradients", 1, Targets::All(1));
        ig.params.insert("seed".into(), "3".into());
        assert!(attribute_key(&ig).is_none());
    }

    #[test]
    fn keys_join_only_compatible_requests() {
        let saliency = attribute_key(&request("saliency", 1, Targets::All(3)));
        assert!(saliency.is_some());
        assert_eq!(saliency, attribute_key(&request("saliency", 4, Targets::PerRow(vec![1, 2, 3, 4]))));
        assert_ne!(saliency, attribute_key(&request("input_x_gradient", 1, Targets::All(3))));
        assert_ne!(saliency, attribute_key(&request("saliency", 1, Targets::Predicted)));
        assert!(attribute_key(&request("occlusion", 1, Targets::All(3))).is_none());
        assert!(attribute_key(&request("saliency", 2, Targets::PerRow(vec![1]))).is_none(), "a wrong target count runs alone");
        let mut adaptive = request("integrated_gradients", 1, Targets::All(0));
        adaptive.params.insert("n_steps".into(), "auto".into());
        assert!(attribute_key(&adaptive).is_none());
    }

    #[test]
    fn joined_requests_split_back_row_for_row() {
        let a = request("saliency", 1, Targets::All(7));
        let b = AttributionRequest { inputs: vec![tensor(2, 100.0)], targets: Targets::PerRow(vec![1, 2]), ..a.clone() };
        let joined = join_attribution(&[&a, &b]);
        assert_eq!(joined.inputs[0].shape, vec![3, 2]);
        assert_eq!(joined.inputs[0].values, vec![0.0, 1.0, 100.0, 101.0, 102.0, 103.0]);
        assert_eq!(joined.targets, Targets::PerRow(vec![7, 1, 2]));

        let answer = Attribution {
            method: "saliency".into(),
            targets: vec![7, 1, 2],
            values: joined.inputs.clone(),
            output: HostTensor { shape: vec![3, 1], values: vec![0.5, 1.5, 2.5], integer: false },
            convergence_deltas: vec![],
            n_steps: None,
            rows_evaluated: 3,
            passes: 1,
            figure_values: None,
        };
        let parts = split_attribution(answer, &[1, 2]);
        assert_eq!(parts[0].values[0], a.inputs[0]);
        assert_eq!(parts[1].values[0], b.inputs[0]);
        assert_eq!(parts[1].targets, vec![1, 2]);
        assert_eq!(parts[1].output.values, vec![1.5, 2.5]);
    }

    #[test]
    fn the_batch_window_follows_arrivals_and_pass_time() {
        let max = Duration::from_millis(2);
        let wait = |more: usize, window: Duration| Wait { more, window, quiet: None };
        let mut traffic = Traffic::default();
        assert_eq!(traffic.wait_for(max, 0, 7), Wait::NONE, "a lone request never waits");
        assert_eq!(traffic.wait_for(max, 3, 4), wait(4, max), "no observations yet: the configured delay");
        let start = Instant::now();
        // Requests 100 µs apart, seen out of order too.
        for index in [0u32, 1, 3, 2, 4, 5] {
            traffic.arrived(start + Duration::from_micros(100) * index);
        }
        let gap = traffic.mean_gap.unwrap();
        assert!(gap >= Duration::from_micros(100) && gap <= Duration::from_micros(200), "{gap:?}");
        assert_eq!(traffic.wait_for(max, 2, 5), wait(5, gap * 5), "the time 5 more take to arrive");
        assert_eq!(traffic.wait_for(max, 2, 0), Wait::NONE, "a full batch runs at once");
        traffic.ran(Duration::from_micros(800), 1);
        assert_eq!(traffic.wait_for(max, 2, 5), wait(5, Duration::from_micros(200)), "at most a quarter of a pass");
        // Sparse traffic: companions arrive 10 ms apart, more than the delay allows.
        let mut sparse = Traffic::default();
        for index in 0..4u32 {
            sparse.arrived(start + Duration::from_millis(10) * index);
        }
        assert_eq!(sparse.wait_for(max, 1, 6).window, Duration::ZERO);
    }

    #[test]
    fn a_job_that_finds_no_companion_waits_only_for_callers_in_step() {
        let max = Duration::from_millis(2);
        let start = Instant::now();
        // One caller: every pass served one request, so its next never waits.
        let mut lone = Traffic::default();
        for index in 0..8u32 {
            lone.arrived(start + Duration::from_micros(100) * index);
        }
        for _ in 0..8 {
            lone.ran(Duration::from_millis(5), 1);
        }
        assert_eq!(lone.wait_for(max, 0, 7), Wait::NONE);
        // Eight callers in step: passes served eight, so the first to send again waits
        // while the others arrive, at most the delay and a quarter of a pass, whatever
        // the mean gap between arrivals (here 10 ms, a pause between bursts included),
        // and not past a quarter of that without an arrival.
        let mut eight = Traffic::default();
        for index in 0..8u32 {
            eight.arrived(start + Duration::from_millis(10) * index);
        }
        eight.ran(Duration::from_millis(5), 8);
        let quarter_pass = Duration::from_micros(1250);
        assert_eq!(eight.wait_for(max, 0, 7), Wait { more: 7, window: quarter_pass, quiet: Some(quarter_pass / 4) });
        eight.ran(Duration::from_millis(40), 8);
        assert_eq!(eight.wait_for(max, 0, 7), Wait { more: 7, window: max, quiet: Some(max / 4) });
        // Some of them queued already: it waits for the rest the same way.
        assert_eq!(eight.wait_for(max, 3, 4), Wait { more: 4, window: max, quiet: Some(max / 4) });
        assert_eq!(eight.wait_for(max, 7, 0), Wait::NONE);
        // Once the others stop, passes serve one again, and within four the lone
        // caller's request runs at once.
        for _ in 0..4 {
            eight.ran(Duration::from_millis(5), 1);
        }
        assert_eq!(eight.wait_for(max, 0, 7), Wait::NONE);
    }
}
