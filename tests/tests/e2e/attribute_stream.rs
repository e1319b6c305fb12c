//! AttributeStream against a real daemon: progress events arrive while the passes run
//! and the stream ends with the answer unary Attribute gives; a cached answer is one
//! result event; and a client that drops the stream frees the model's worker within
//! one pass instead of leaving it computing for nobody.

use layerlens_client::Client;
use layerlens_e2e::*;
use layerlens_proto as proto;
use std::time::{Duration, Instant};

/// The digits test images tiled to `rows` rows, (rows, 1, 8, 8).
fn digits_rows(rows: usize) -> (Vec<i64>, Vec<f32>) {
    let (shape, values) = read_npy(&fixtures().join("digits_test_images.npy"));
    let row_len = (shape[1] * shape[2] * shape[3]) as usize;
    let available = values.len() / row_len;
    let tiled: Vec<f32> = (0..rows).flat_map(|row| values[(row % available) * row_len..][..row_len].iter().copied()).collect();
    (vec![rows as i64, shape[1], shape[2], shape[3]], tiled)
}

fn request(model: &str, rows: usize, method: &str, params: &[(&str, &str)]) -> proto::AttributeRequest {
    let (shape, values) = digits_rows(rows);
    proto::AttributeRequest {
        model: model.to_string(),
        input: Some(proto::Tensor::from_f32(&shape, &values)),
        method: method.to_string(),
        target: Some(3),
        params: params.iter().map(|&(key, value)| (key.to_string(), value.to_string())).collect(),
        figure_format: proto::FigureFormat::None as i32,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_stream_reports_progress_then_the_answer_attribute_gives() {
    let work = tempfile::tempdir().unwrap();
    // No result cache: the unary call must compute its answer, not reuse the stream's.
    let daemon = Daemon::start(&work.path().join("store"), &["--cache-bytes", "0"]);
    let client = Client::connect(&daemon.url, None).await.unwrap();
    let digits = client.upload_file(&fixtures().join("digits_cnn.pt"), Some("digits"), &[1, 1, 8, 8]).await.unwrap();

    // 4 rows x 400 steps in passes of 8 rows: 200 gradient passes, long enough
    // (about a second) for several rate-limited progress events.
    let job = request(&digits.id, 4, "integrated_gradients", &[("n_steps", "400"), ("internal_batch_size", "8")]);
    let mut events = Vec::new();
    let streamed = client.attribute_stream(job.clone(), |progress| events.push(progress.clone())).await.unwrap();
    let unary = client.attribute(job).await.unwrap();

    assert!(events.len() >= 2, "expected several progress events, got {events:?}");
    for pair in events.windows(2) {
        assert!(pair[1].passes_done >= pair[0].passes_done, "passes go back: {pair:?}");
        assert!(pair[1].elapsed_seconds >= pair[0].elapsed_seconds, "time goes back: {pair:?}");
    }
    let gradient_events: Vec<_> = events.iter().filter(|event| event.phase == "gradient passes").collect();
    let last = gradient_events.last().expect("progress of the gradient passes");
    assert_eq!((last.rows_done, last.rows_total), (1600, 1600), "{last:?}");
    assert_eq!(last.passes_done, last.passes_total);
    assert!(last.passes_done <= u64::from(streamed.passes), "{last:?} but the answer ran {} passes", streamed.passes);
    assert!(gradient_events.iter().any(|event| event.rows_done < event.rows_total), "only a final event: {gradient_events:?}");

    // The streamed answer is the unary one.
    assert!(!streamed.cached && !unary.cached);
    assert_eq!((&streamed.method, &streamed.targets, streamed.n_steps), (&unary.method, &unary.targets, unary.n_steps));
    assert_eq!((streamed.passes, streamed.rows_evaluated), (unary.passes, unary.rows_evaluated));
    let (streamed_values, unary_values) = (streamed.attribution.unwrap(), unary.attribution.unwrap());
    assert_eq!(streamed_values.shape, vec![4, 1, 8, 8]);
    assert_eq!(streamed_values.shape, unary_values.shape);
    let difference = max_abs_diff(&streamed_values.to_f32().unwrap(), &unary_values.to_f32().unwrap());
    assert!(difference <= 1e-6, "streamed and unary attributions differ by {difference}");
    assert_eq!(streamed.convergence_deltas, unary.convergence_deltas);

    // Bad requests fail the call before any event, with the unary call's message.
    let mut bad = request(&digits.id, 1, "occlusion", &[]);
    bad.params.clear();
    let error = client.attribute_stream(bad, |_| {}).await.unwrap_err().to_string();
    assert!(error.contains("sliding_window_shapes"), "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn dropping_the_stream_frees_the_worker_within_a_pass() {
    let work = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&work.path().join("store"), &[]);
    let client = Client::connect(&daemon.url, None).await.unwrap();
    let digits = client.upload_file(&fixtures().join("digits_cnn.pt"), Some("digits"), &[1, 1, 8, 8]).await.unwrap();
    let predict = |rows| proto::PredictRequest {
        model: digits.id.clone(),
        input: Some({
            let (shape, values) = digits_rows(rows);
            proto::Tensor::from_f32(&shape, &values)
        }),
        ..Default::default()
    };
    client.predict(predict(1)).await.unwrap();

    // Occlusion with 1x1 windows over 8192 rows: 64 forward passes of 8192 rows (one
    // window each, internal_batch_size=1) after the targets' pass. How long one pass
    // takes is measured here on the same rows with 4 windows of 4x4 (5 passes).
    const ROWS: usize = 8192;
    let sample = request(&digits.id, ROWS, "occlusion", &[("sliding_window_shapes", "1,4,4"), ("strides", "1,4,4"), ("internal_batch_size", "1")]);
    let started = Instant::now();
    let measured = client.attribute(sample).await.unwrap();
    assert_eq!(measured.passes, 5, "4 windows and the targets' pass");
    let pass_time = started.elapsed() / 5;
    let whole_job = pass_time * 65;
    // The worker stops after the pass it is in: free within 2 s, or three passes'
    // time on a machine so loaded that one pass takes longer than that.
    const FREE_WITHIN_AT_LEAST: Duration = Duration::from_secs(2);
    let free_within = FREE_WITHIN_AT_LEAST.max(pass_time * 3);
    assert!(whole_job >= free_within * 5, "the whole occlusion would take only {whole_job:?}; the test needs a longer job");

    let job = request(&digits.id, ROWS, "occlusion", &[("sliding_window_shapes", "1,1,1"), ("internal_batch_size", "1")]);
    let (first_sender, first_progress) = tokio::sync::oneshot::channel();
    let mut first_sender = Some(first_sender);
    let stream = client.attribute_stream(job, move |progress| {
        if let Some(sender) = first_sender.take() {
            let _ = sender.send(progress.clone());
        }
    });
    let first = tokio::select! {
        first = first_progress => first.expect("a progress event"),
        answer = stream => panic!("the occlusion ended before its first progress event: {answer:?}"),
    };
    // The select dropped the stream: the call is cancelled.
    assert_eq!((first.rows_total, first.phase.as_str()), (64 * ROWS as u64, "forward passes"), "{first:?}");
    let dropped = Instant::now();
    let answer = client.predict(predict(2)).await.unwrap();
    let waited = dropped.elapsed();
    eprintln!(
        "occlusion of {ROWS} rows: about {whole_job:?} in all; Predict answered {waited:?} after the stream was dropped (bound {free_within:?})"
    );
    assert_eq!(answer.rows.len(), 2);
    assert!(waited < free_within, "Predict waited {waited:?} after the stream was dropped (the whole occlusion takes about {whole_job:?})");
    // The worker counts a command as running until just after it answered: allow it
    // a moment to count the Predict out.
    let in_flight_deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let status = client.status().await.unwrap();
        let resident = status.models.iter().find(|model| model.id == digits.id).expect("digits is resident").clone();
        if resident.in_flight == 0 {
            break;
        }
        assert!(Instant::now() < in_flight_deadline, "still in flight after the stream was dropped: {resident:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(daemon.stderr_text().lines().all(|line| !line.contains("panicked")), "{}", daemon.stderr_text());

    // Unary Attribute stops the same way when its call is dropped (the handler's
    // future is dropped with it): drop it once the job shows up as in flight.
    let unary_job = request(&digits.id, ROWS, "occlusion", &[("sliding_window_shapes", "1,1,1"), ("internal_batch_size", "1")]);
    let in_flight = async {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let status = client.status().await.unwrap();
            if status.models.iter().any(|model| model.id == digits.id && model.in_flight > 0) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    };
    tokio::select! {
        seen = in_flight => assert!(seen, "the unary attribution never showed up as in flight"),
        answer = client.attribute(unary_job) => panic!("the unary occlusion ended first: {answer:?}"),
    };
    let dropped = Instant::now();
    // Three rows: a Predict no earlier call made, so the result cache cannot answer it
    // and it has to wait for the worker.
    client.predict(predict(3)).await.unwrap();
    let waited = dropped.elapsed();
    assert!(waited < free_within, "Predict waited {waited:?} after the unary Attribute was dropped");
    // Nothing of the unary job may still count as in flight when the CLI starts: the CLI
    // is sent SIGINT once its own job shows up as in flight.
    let idle_deadline = Instant::now() + Duration::from_secs(5);
    while client.status().await.unwrap().models.iter().any(|model| model.id == digits.id && model.in_flight > 0) {
        assert!(Instant::now() < idle_deadline, "the worker was still busy 5 s after the unary Attribute was dropped");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The CLI runs the same job over the stream; Ctrl-C (SIGINT) while it runs drops
    // the stream and ends the command with a one-line error, and the worker is free.
    let (shape, values) = digits_rows(ROWS);
    let input = work.path().join("long.npy");
    write_npy(&input, &shape, &values);
    let mut command = std::process::Command::new(binary("layerlens"))
        .args(["--addr", &daemon.url, "attribute", "digits", "--input", input.to_str().unwrap(), "--method", "occlusion", "--target", "3"])
        .args(["--param", "sliding_window_shapes=1,1,1", "--param", "internal_batch_size=1"])
        .env_remove("LAYERLENS_TOKEN")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("starting layerlens");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = client.status().await.unwrap();
        if status.models.iter().any(|model| model.id == digits.id && model.in_flight > 0) {
            break;
        }
        assert!(Instant::now() < deadline, "the CLI's attribution never showed up as in flight");
        assert!(command.try_wait().unwrap().is_none(), "the CLI ended before its job was seen running");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let interrupted = std::process::Command::new("kill").args(["-INT", &command.id().to_string()]).status().unwrap();
    assert!(interrupted.success());
    let interrupted_at = Instant::now();
    let deadline = interrupted_at + Duration::from_secs(10);
    while command.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the CLI did not end within 10 s of Ctrl-C");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let output = command.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "the CLI succeeded after Ctrl-C");
    assert!(stderr.contains("interrupted") && stderr.trim().lines().count() == 1, "status {:?}, stderr: {stderr}", output.status);
    // Four rows: not in the result cache, so the answer comes from the worker.
    let answer = client.predict(predict(4)).await.unwrap();
    let waited = interrupted_at.elapsed();
    assert_eq!(answer.rows.len(), 4);
    assert!(waited < free_within, "Predict answered {waited:?} after the CLI's Ctrl-C");

    // A cached answer is a single result event: run a cheap request twice.
    let cheap = request(&digits.id, 2, "saliency", &[]);
    client.attribute_stream(cheap.clone(), |_| {}).await.unwrap();
    let mut events = 0;
    let cached = client.attribute_stream(cheap, |_| events += 1).await.unwrap();
    assert!(cached.cached);
    assert_eq!(events, 0, "a cached answer came with progress events");
}
