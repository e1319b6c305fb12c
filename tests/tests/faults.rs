//! Faults of the real `layerlensd` (issue 5): `kill -9` during an upload and during
//! requests, a client that goes away mid-job, several daemons sharing one store, and
//! bad requests of every kind. What must hold: no stored model is lost, none is left
//! half-written, every client gets an error rather than a hang, and abandoned work
//! frees the model's worker. Every daemon listens on loopback and every wait is
//! bounded, so a hang fails the test instead of stalling it.

use layerlens_client::{Client, ClientError};
use layerlens_e2e::*;
use layerlens_proto as proto;
use sha2::Digest;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tonic::Code;

/// The longest any single call may take before the test calls it a hang.
const CALL_BOUND: Duration = Duration::from_secs(30);

/// How long a client may wait for its error once the daemon is dead.
const ERROR_BOUND: Duration = Duration::from_secs(10);

async fn bounded<T>(label: &str, bound: Duration, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(bound, future).await.unwrap_or_else(|_| panic!("{label} did not finish within {bound:?}"))
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

/// File names in `store/directory`, sorted.
fn files_in(store: &Path, directory: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(store.join(directory))
        .unwrap_or_else(|error| panic!("reading {}: {error}", store.join(directory).display()))
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The staged upload files in the store and their sizes.
fn staged_files(store: &Path) -> Vec<(PathBuf, u64)> {
    std::fs::read_dir(store.join("staging"))
        .unwrap()
        .flatten()
        .map(|entry| (entry.path(), entry.metadata().map(|metadata| metadata.len()).unwrap_or(0)))
        .collect()
}

/// A model stored for these tests and an input it takes.
struct Fixture {
    file: &'static str,
    name: &'static str,
    input_shape: Vec<i64>,
}

impl Fixture {
    fn digits() -> Fixture {
        Fixture { file: "digits_cnn.pt", name: "digits", input_shape: vec![1, 1, 8, 8] }
    }

    fn cnn() -> Fixture {
        Fixture { file: "tiny_cnn_traced.pt", name: "cnn", input_shape: vec![1, 3, 8, 8] }
    }

    fn mlp() -> Fixture {
        Fixture { file: "tiny_mlp_scripted.pt", name: "mlp", input_shape: vec![1, 4] }
    }

    fn bytes(&self) -> Vec<u8> {
        std::fs::read(fixtures().join(self.file)).unwrap()
    }

    fn input(&self) -> proto::Tensor {
        let count: i64 = self.input_shape.iter().product();
        let values: Vec<f32> = (0..count).map(|index| ((index * 37 % 101) as f32 / 101.0) - 0.3).collect();
        proto::Tensor::from_f32(&self.input_shape, &values)
    }
}

/// What a model answers: its prediction on the fixture input and its summary. Equal
/// answers before and after a crash mean the model survived it whole.
#[derive(Debug, PartialEq)]
struct Answers {
    predict: proto::PredictResponse,
    summary: proto::SummaryResponse,
}

async fn answers(client: &Client, fixture: &Fixture) -> Answers {
    let predict = proto::PredictRequest { model: fixture.name.to_string(), input: Some(fixture.input()), top_k: 3, ..Default::default() };
    let summary = proto::SummaryRequest {
        model: fixture.name.to_string(),
        input_shape: fixture.input_shape.clone(),
        figure_format: proto::FigureFormat::None as i32,
        ..Default::default()
    };
    let label = format!("answers of {}", fixture.name);
    let predict = bounded(&label, CALL_BOUND, client.predict(predict)).await.unwrap_or_else(|error| panic!("{label}: {error}"));
    let summary = bounded(&label, CALL_BOUND, client.summary(summary)).await.unwrap_or_else(|error| panic!("{label}: {error}"));
    // The cache flag says where an answer came from, not what it is.
    Answers { predict: proto::PredictResponse { cached: false, ..predict }, summary: proto::SummaryResponse { cached: false, ..summary } }
}

async fn upload(client: &Client, fixture: &Fixture) -> proto::ModelInfo {
    bounded("upload", CALL_BOUND, client.upload_model(fixture.bytes(), Some(fixture.name), &fixture.input_shape))
        .await
        .unwrap_or_else(|error| panic!("uploading {}: {error}", fixture.file))
}

/// (id, names) of every listed model, sorted by id.
async fn listing(client: &Client) -> Vec<(String, Vec<String>)> {
    let models = bounded("Models.List", CALL_BOUND, client.list_models()).await.expect("Models.List");
    let mut listed: Vec<(String, Vec<String>)> = models.into_iter().map(|model| (model.id, model.names)).collect();
    listed.sort();
    listed
}

/// An upload over its own connection that sends its header and the first `held_at`
/// bytes (in 4 KiB chunks), then waits for `release` before it sends the rest, so a
/// test can act while the upload is under way however fast the machine is.
struct HeldUpload {
    call: tokio::task::JoinHandle<Result<proto::ModelInfo, tonic::Status>>,
    feeder: tokio::task::JoinHandle<()>,
    release: tokio::sync::oneshot::Sender<()>,
    held_at: usize,
}

const UPLOAD_CHUNK: usize = 4096;

async fn start_held_upload(url: &str, bytes: Vec<u8>, name: &str, input_shape: &[i64], held_chunks: usize) -> HeldUpload {
    let channel = tonic::transport::Endpoint::from_shared(url.to_string()).unwrap().connect().await.expect("connecting for the upload");
    let (sender, receiver) = tokio::sync::mpsc::channel(4);
    let header = proto::UploadHeader { name: name.to_string(), input_shape: input_shape.to_vec() };
    sender.send(proto::UploadRequest { part: Some(proto::upload_request::Part::Header(header)) }).await.unwrap();
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    let held_at = (held_chunks * UPLOAD_CHUNK).min(bytes.len());
    assert!(held_at < bytes.len(), "the upload would be complete before it is held");
    let feeder = tokio::spawn(async move {
        let mut released = Some(released);
        for (index, chunk) in bytes.chunks(UPLOAD_CHUNK).enumerate() {
            if index == held_chunks {
                // Held here until the test lets go (or drops the sender).
                let _ = released.take().expect("held once").await;
            }
            let message = proto::UploadRequest { part: Some(proto::upload_request::Part::Chunk(chunk.to_vec())) };
            if sender.send(message).await.is_err() {
                return;
            }
        }
    });
    let call = tokio::spawn(async move {
        let stream = tokio_stream::wrappers::ReceiverStream::new(receiver);
        proto::models_client::ModelsClient::new(channel).upload(stream).await.map(|response| response.into_inner())
    });
    HeldUpload { call, feeder, release, held_at }
}

/// Waits (bounded) until the daemon has written every byte sent before the hold into
/// a staged file; answers that file.
async fn wait_until_staged(store: &Path, upload: &HeldUpload) -> PathBuf {
    let deadline = Instant::now() + CALL_BOUND;
    loop {
        if let Some((path, _)) = staged_files(store).into_iter().find(|(_, size)| *size as usize == upload.held_at) {
            return path;
        }
        assert!(!upload.call.is_finished(), "the held upload ended before its hold: {:?}", staged_files(store));
        assert!(Instant::now() < deadline, "no staged file of {} bytes appeared within {CALL_BOUND:?}", upload.held_at);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_during_an_upload_loses_no_model_and_leaves_no_partial_one() {
    let work = tempfile::tempdir().unwrap();
    let store = work.path().join("store");
    let daemon = Daemon::start(&store, &[]);
    let client = Client::connect(&daemon.url, None).await.unwrap();
    let (digits, cnn) = (Fixture::digits(), Fixture::cnn());
    let digits_info = upload(&client, &digits).await;
    let cnn_info = upload(&client, &cnn).await;
    let listed_before = listing(&client).await;
    let answers_before = (answers(&client, &digits).await, answers(&client, &cnn).await);

    // A third model, 170 kB; the daemon dies when 40 kB of it are staged.
    let traced_bytes = std::fs::read(fixtures().join("digits_cnn_traced.pt")).unwrap();
    let traced_id = sha256_hex(&traced_bytes);
    let held = start_held_upload(&daemon.url, traced_bytes.clone(), "traced", &[1, 1, 8, 8], 10).await;
    let staged = wait_until_staged(&store, &held).await;
    daemon.kill();
    let killed = Instant::now();
    let outcome = bounded("the upload cut off by kill -9", ERROR_BOUND, held.call).await.expect("upload task");
    let status = outcome.expect_err("an upload whose daemon died mid-stream reported success");
    eprintln!("upload cut off by kill -9: {:?} '{}' after {:?}", status.code(), status.message(), killed.elapsed());
    held.feeder.abort();
    // The crash left the partial upload in staging (so the restart below has something
    // to clear) and nothing of it anywhere else.
    assert!(staged.is_file(), "the staged part of the upload vanished before the restart");
    assert!(!store.join("models").join(&traced_id).exists(), "the half-uploaded model reached models/");

    let daemon = Daemon::start(&store, &[]);
    let client = Client::connect(&daemon.url, None).await.unwrap();
    assert_eq!(listing(&client).await, listed_before, "the models listed after the restart differ");
    let answers_after = (answers(&client, &digits).await, answers(&client, &cnn).await);
    assert_eq!(answers_after, answers_before, "a model answers differently after the crash");
    match bounded("Models.Get", CALL_BOUND, client.get_model(&traced_id)).await {
        Err(error) => assert_eq!(error.code(), Some(Code::NotFound), "{error}"),
        Ok(model) => panic!("the half-uploaded model is stored: {model:?}"),
    }
    // On disk: the two models, their records and names, nothing staged.
    let mut ids = vec![digits_info.id.clone(), cnn_info.id.clone()];
    ids.sort();
    assert_eq!(files_in(&store, "models"), ids);
    assert_eq!(files_in(&store, "meta"), ids.iter().map(|id| format!("{id}.json")).collect::<Vec<_>>());
    assert_eq!(files_in(&store, "names"), vec!["cnn", "digits"]);
    assert!(!staged.exists(), "the restart left the crashed upload's staged file {}", staged.display());
    assert_eq!(files_in(&store, "staging"), Vec::<String>::new());
    for model in [&digits_info, &cnn_info] {
        let bytes = std::fs::read(store.join("models").join(&model.id)).unwrap();
        assert_eq!(sha256_hex(&bytes), model.id, "a stored model's bytes changed");
    }
    // The same upload, done again, now succeeds.
    let again = bounded("upload", CALL_BOUND, client.upload_model(traced_bytes, Some("traced"), &[1, 1, 8, 8])).await.unwrap();
    assert_eq!(again.id, traced_id);
    assert!(daemon.stop());
}

/// Polls `Daemon.Status` until `ready` holds (bounded), checking meanwhile that none of
/// `calls` has ended: they must still be in flight when the daemon dies.
async fn wait_for(
    client: &Client,
    calls: &[(String, tokio::task::JoinHandle<Result<(), ClientError>>)],
    failure: &str,
    ready: impl Fn(&proto::StatusResponse) -> bool,
) {
    let deadline = Instant::now() + CALL_BOUND;
    loop {
        let status = bounded("Daemon.Status", CALL_BOUND, client.status()).await.unwrap();
        if ready(&status) {
            return;
        }
        for (label, call) in calls {
            assert!(!call.is_finished(), "{label} finished before the daemon was killed");
        }
        assert!(Instant::now() < deadline, "{failure} within {CALL_BOUND:?}: {status:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_during_requests_gives_every_client_an_error_and_keeps_every_model() {
    let work = tempfile::tempdir().unwrap();
    let store = work.path().join("store");
    let daemon = Daemon::start(&store, &[]);
    let client = Client::connect(&daemon.url, None).await.unwrap();
    let fixtures = [Fixture::digits(), Fixture::cnn(), Fixture::mlp()];
    for fixture in &fixtures {
        upload(&client, fixture).await;
    }
    let listed_before = listing(&client).await;
    let mut answers_before = Vec::new();
    for fixture in &fixtures {
        answers_before.push(answers(&client, fixture).await);
    }

    // Long generation jobs on two models; once they run, an attribution and a
    // prediction for each model that wait in its worker's queue behind the job.
    let mut calls: Vec<(String, tokio::task::JoinHandle<Result<(), ClientError>>)> = Vec::new();
    let progressed: Vec<Arc<AtomicU32>> = (0..2).map(|_| Arc::new(AtomicU32::new(0))).collect();
    for (fixture, progressed) in fixtures[..2].iter().zip(&progressed) {
        let visualize = proto::VisualizeRequest {
            model: fixture.name.to_string(),
            objectives: vec![proto::Objective { terms: vec![proto::ObjectiveTerm { term: "class:1".into(), ..Default::default() }] }],
            images_per_objective: 8,
            steps: 10_000,
            parameterization: "pixel".into(),
            progress_every: 5,
            figure_format: proto::FigureFormat::None as i32,
            ..Default::default()
        };
        let (client, progressed) = (client.clone(), progressed.clone());
        calls.push((
            format!("Visualize on {}", fixture.name),
            tokio::spawn(async move { client.visualize(visualize, |event| progressed.store(event.step.max(1), Ordering::SeqCst)).await.map(drop) }),
        ));
    }
    wait_for(&client, &calls, "both generation jobs did not start", |_| progressed.iter().all(|step| step.load(Ordering::SeqCst) > 0)).await;
    for fixture in &fixtures[..2] {
        let attribute = proto::AttributeRequest {
            model: fixture.name.to_string(),
            input: Some(fixture.input()),
            method: "integrated_gradients".into(),
            target: Some(0),
            params: [("n_steps".to_string(), "64".to_string())].into(),
            figure_format: proto::FigureFormat::None as i32,
            ..Default::default()
        };
        let predict = proto::PredictRequest { model: fixture.name.to_string(), input: Some(fixture.input()), ..Default::default() };
        let client_for_attribute = client.clone();
        calls
            .push((format!("Attribute on {}", fixture.name), tokio::spawn(async move { client_for_attribute.attribute(attribute).await.map(drop) })));
        let client_for_predict = client.clone();
        calls.push((format!("Predict on {}", fixture.name), tokio::spawn(async move { client_for_predict.predict(predict).await.map(drop) })));
    }
    // Kill once all six calls are with the workers (queued or running).
    let expected = calls.len() as u64;
    wait_for(&client, &calls, "the calls were not all in flight", |status| {
        status.models.iter().map(|model| model.in_flight).sum::<u64>() >= expected
    })
    .await;
    let dead_url = daemon.url.clone();
    daemon.kill();
    let killed = Instant::now();
    for (label, call) in calls {
        let outcome = bounded(&label, ERROR_BOUND, call).await.expect("call task");
        let error = outcome.expect_err(&format!("{label} succeeded although its daemon was killed"));
        eprintln!("{label}: {:?} '{error}' after {:?}", error.code(), killed.elapsed());
        // Whatever the transport made of the reset connection, it is not an answer
        // from the daemon about the request.
        assert!(
            matches!(error.code(), Some(Code::Unavailable | Code::Unknown | Code::Internal | Code::Cancelled)),
            "{label}: unexpected error {error:?}"
        );
    }
    // A new call to the dead daemon fails too, and fast.
    match bounded("connecting to the dead daemon", ERROR_BOUND, Client::connect(&dead_url, None)).await {
        Err(ClientError::Connect { reason, .. }) => eprintln!("connecting to the dead daemon: {reason}"),
        other => panic!("connecting to a killed daemon: {:?}", other.map(|_| "connected")),
    }

    let daemon = Daemon::start(&store, &[]);
    let client = Client::connect(&daemon.url, None).await.unwrap();
    assert_eq!(listing(&client).await, listed_before);
    for (fixture, before) in fixtures.iter().zip(&answers_before) {
        assert_eq!(&answers(&client, fixture).await, before, "{} answers differently after the crash", fixture.name);
    }
    assert!(daemon.stop());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_goes_away_mid_generation_frees_the_worker() {
    let work = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&work.path().join("store"), &[]);
    let client = Client::connect(&daemon.url, None).await.unwrap();
    let digits = Fixture::digits();
    let digits_id = upload(&client, &digits).await.id;
    answers(&client, &digits).await;

    // A 10,000-step job on its own connection; read a few progress events to learn
    // its pace, then drop the stream and the connection.
    let steps = 10_000u32;
    let request = proto::VisualizeRequest {
        model: "digits".into(),
        objectives: (0..10)
            .map(|class| proto::Objective { terms: vec![proto::ObjectiveTerm { term: format!("class:{class}"), ..Default::default() }] })
            .collect(),
        images_per_objective: 4,
        steps,
        parameterization: "pixel".into(),
        progress_every: 10,
        figure_format: proto::FigureFormat::None as i32,
        ..Default::default()
    };
    let channel = tonic::transport::Endpoint::from_shared(daemon.url.clone()).unwrap().connect().await.unwrap();
    let mut generate = proto::generate_client::GenerateClient::new(channel);
    let mut events = bounded("Visualize", CALL_BOUND, generate.visualize(request)).await.expect("Visualize").into_inner();
    let mut seen: Vec<(u32, Instant)> = Vec::new();
    while seen.len() < 4 {
        let event = bounded("a progress event", CALL_BOUND, events.message()).await.expect("the event stream").expect("an event");
        match event.event {
            Some(proto::visualize_event::Event::Progress(progress)) => seen.push((progress.step, Instant::now())),
            other => panic!("expected progress, got {other:?}"),
        }
    }
    let (first_step, first_time) = seen[0];
    let (last_step, last_time) = seen[seen.len() - 1];
    let seconds_per_step = (last_time - first_time).as_secs_f64() / f64::from(last_step - first_step);
    let remaining = Duration::from_secs_f64(seconds_per_step * f64::from(steps - last_step));
    drop(events);
    drop(generate);
    let dropped = Instant::now();

    // The worker is free once Status shows nothing in flight for the model.
    let freed_after = loop {
        let status = bounded("Daemon.Status", CALL_BOUND, client.status()).await.unwrap();
        let model = status.models.iter().find(|model| model.id == digits_id).expect("digits is resident");
        if model.in_flight == 0 {
            break dropped.elapsed();
        }
        assert!(dropped.elapsed() < ERROR_BOUND, "the abandoned job still holds the worker {:?} after its client went away", dropped.elapsed());
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let predict_started = Instant::now();
    let predict = proto::PredictRequest { model: "digits".into(), input: Some(digits.input()), ..Default::default() };
    bounded("Predict after the abandoned job", CALL_BOUND, client.predict(predict)).await.expect("Predict");
    let predict_latency = predict_started.elapsed();
    eprintln!(
        "abandoned at step {last_step} of {steps}: the rest would have taken {remaining:?}; worker free after {freed_after:?}, \
         then Predict in {predict_latency:?}"
    );
    // The job was stopped, not run to its end: it had far more left than the wait.
    assert!(remaining > freed_after * 4, "the job would have ended by itself ({remaining:?} left) — too short to tell");
    assert!(predict_latency < Duration::from_secs(2), "Predict took {predict_latency:?} after the job was abandoned");
    assert!(daemon.stop());
}

/// A client that starts a generation with a contact sheet at every step and then never
/// reads its stream must not hold the model's worker: the worker hands progress to a
/// relay that drops what the client cannot take, so the job runs to its end at full
/// speed and the next request is served.
#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_stops_reading_does_not_stall_the_model() {
    let work = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&work.path().join("store"), &[]);
    let client = Client::connect(&daemon.url, None).await.unwrap();
    let digits = Fixture::digits();
    upload(&client, &digits).await;
    answers(&client, &digits).await;

    // Far more image events than the response stream's buffer and the HTTP/2 window
    // hold: a worker that waited for the client would stop after a few dozen.
    let steps = 400u32;
    let request = proto::VisualizeRequest {
        model: "digits".into(),
        objectives: (0..10)
            .map(|class| proto::Objective { terms: vec![proto::ObjectiveTerm { term: format!("class:{class}"), ..Default::default() }] })
            .collect(),
        steps,
        parameterization: "pixel".into(),
        progress_every: 1,
        image_every: 1,
        figure_format: proto::FigureFormat::Png as i32,
        ..Default::default()
    };
    let channel = tonic::transport::Endpoint::from_shared(daemon.url.clone()).unwrap().connect().await.unwrap();
    let mut generate = proto::generate_client::GenerateClient::new(channel);
    // The stream is held, never read.
    let held = bounded("Visualize", CALL_BOUND, generate.visualize(request)).await.expect("Visualize").into_inner();

    // Queued behind the generation on the same worker: answered once the job is done.
    let started = Instant::now();
    let predict = proto::PredictRequest { model: "digits".into(), input: Some(digits.input()), ..Default::default() };
    bounded("Predict behind a generation nobody reads", Duration::from_secs(90), client.predict(predict))
        .await
        .expect("Predict after the unread generation");
    eprintln!("Predict answered {:?} after a {steps}-step generation whose client never read", started.elapsed());
    drop(held);
    assert!(daemon.stop());
}

#[tokio::test(flavor = "multi_thread")]
async fn daemons_sharing_one_store_upload_concurrently_without_losing_anything() {
    let work = tempfile::tempdir().unwrap();
    let store = work.path().join("store");
    let first = Daemon::start(&store, &[]);
    let second = Daemon::start(&store, &[]);
    let clients = [Client::connect(&first.url, None).await.unwrap(), Client::connect(&second.url, None).await.unwrap()];

    // An upload under way on the first daemon while a third one starts on the store:
    // starting clears leftovers of dead daemons, not uploads of live ones.
    let traced_bytes = std::fs::read(fixtures().join("digits_cnn_traced.pt")).unwrap();
    let held = start_held_upload(&first.url, traced_bytes.clone(), "traced", &[1, 1, 8, 8], 5).await;
    let staged = wait_until_staged(&store, &held).await;
    let third = Daemon::start(&store, &[]);
    assert!(staged.is_file(), "starting a daemon on the store removed another daemon's upload in progress");
    held.release.send(()).expect("the held upload's feeder is waiting");

    // Meanwhile: the same model under the same name through both daemons, three times
    // each, and a model of each daemon's own, all at once.
    let mut jobs = vec![(0, Fixture::cnn()), (1, Fixture::mlp())];
    jobs.extend((0..6).map(|round| (round % 2, Fixture::digits())));
    let uploads: Vec<_> = jobs
        .into_iter()
        .map(|(daemon_index, fixture)| {
            let client = clients[daemon_index].clone();
            tokio::spawn(async move {
                let model = client.upload_model(fixture.bytes(), Some(fixture.name), &fixture.input_shape).await;
                (fixture, model)
            })
        })
        .collect();
    for upload in uploads {
        let (fixture, model) = bounded("an upload", CALL_BOUND, upload).await.expect("upload task");
        let model = model.unwrap_or_else(|error| panic!("uploading {}: {error}", fixture.file));
        assert_eq!(model.id, sha256_hex(&fixture.bytes()), "{}", fixture.file);
    }
    let traced = bounded("the held upload", CALL_BOUND, held.call).await.expect("upload task").expect("the held upload failed");
    assert_eq!(traced.id, sha256_hex(&traced_bytes));

    // Every daemon sees the same four models, and each answers the same on all three.
    let third_client = Client::connect(&third.url, None).await.unwrap();
    let listed = listing(&clients[0]).await;
    assert_eq!(
        listed.iter().map(|(_, names)| names.join(",")).collect::<std::collections::BTreeSet<_>>(),
        ["cnn", "digits", "mlp", "traced"].map(String::from).into()
    );
    assert_eq!(listing(&clients[1]).await, listed);
    assert_eq!(listing(&third_client).await, listed);
    for fixture in [Fixture::digits(), Fixture::cnn(), Fixture::mlp()] {
        let expected = answers(&clients[0], &fixture).await;
        assert_eq!(answers(&clients[1], &fixture).await, expected, "{}", fixture.name);
        assert_eq!(answers(&third_client, &fixture).await, expected, "{}", fixture.name);
    }
    // On disk: exactly the listed models, whole; nothing staged.
    assert_eq!(files_in(&store, "models"), listed.iter().map(|(id, _)| id.clone()).collect::<Vec<_>>());
    for (id, _) in &listed {
        assert_eq!(&sha256_hex(&std::fs::read(store.join("models").join(id)).unwrap()), id);
    }
    assert_eq!(files_in(&store, "staging"), Vec::<String>::new());
    for daemon in [first, second, third] {
        assert!(daemon.stop());
    }
}

type Call = std::pin::Pin<Box<dyn Future<Output = Result<(), ClientError>> + Send>>;

/// One bad call, made on the client it is given.
type Case = Box<dyn FnOnce(Client) -> Call>;

fn case<F, R>(call: impl FnOnce(Client) -> F + 'static) -> Case
where
    F: Future<Output = Result<R, ClientError>> + Send + 'static,
{
    Box::new(move |client| {
        let future = call(client);
        Box::pin(async move { future.await.map(drop) })
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_of_every_kind_get_clear_errors_and_leave_the_store_intact() {
    let work = tempfile::tempdir().unwrap();
    let store = work.path().join("store");
    let daemon = Daemon::start(&store, &[]);
    let client = Client::connect(&daemon.url, None).await.unwrap();
    let (digits, mlp) = (Fixture::digits(), Fixture::mlp());
    let digits_info = upload(&client, &digits).await;
    let mlp_info = upload(&client, &mlp).await;
    let listed_before = listing(&client).await;
    let answers_before = (answers(&client, &digits).await, answers(&client, &mlp).await);
    let model_bytes_before: Vec<Vec<u8>> =
        [&digits_info, &mlp_info].iter().map(|model| std::fs::read(store.join("models").join(&model.id)).unwrap()).collect();

    let digits_input = digits.input();
    let wrong_channels = proto::Tensor::from_f32(&[1, 3, 8, 8], &[0.5; 192]);
    let attribute = |method: &str, params: &[(&str, &str)], layer: &str, target: i64| proto::AttributeRequest {
        model: "digits".into(),
        input: Some(digits_input.clone()),
        method: method.into(),
        target: Some(target),
        params: params.iter().map(|(key, value)| (key.to_string(), value.to_string())).collect(),
        layer: layer.into(),
        figure_format: proto::FigureFormat::None as i32,
        ..Default::default()
    };
    let visualize = |term: &str, steps: u32| proto::VisualizeRequest {
        model: "digits".into(),
        objectives: vec![proto::Objective { terms: vec![proto::ObjectiveTerm { term: term.into(), ..Default::default() }] }],
        steps,
        figure_format: proto::FigureFormat::None as i32,
        ..Default::default()
    };
    let cnn_bytes = std::fs::read(fixtures().join("tiny_cnn_traced.pt")).unwrap();
    let (a1, a2, a3, a4) = (
        attribute("grad_cam", &[], "features.99", 1),
        attribute("saliency", &[], "", 1000),
        attribute("integrated_gradients", &[("n_steps", "many")], "", 1),
        attribute("occlusion", &[("sliding_window_shapes", "1,16,16")], "", 1),
    );
    let (v1, v2, v3) = (visualize("class:3", 20_000), visualize("class:99", 8), visualize("channel:no_such_layer:1", 8));
    let predict_wrong = proto::PredictRequest { model: "digits".into(), input: Some(wrong_channels.clone()), ..Default::default() };
    let activations_no_input = proto::ActivationsRequest { model: "digits".into(), ..Default::default() };
    let summary_wrong = proto::SummaryRequest { model: "digits".into(), input_shape: vec![1, 2, 8, 8], ..Default::default() };
    let counterfactual =
        proto::CounterfactualRequest { model: "digits".into(), input: Some(digits_input.clone()), target: vec![42], steps: 4, ..Default::default() };
    let parameters_no_model = proto::ParametersRequest { model: String::new(), ..Default::default() };
    // Tensors libtorch must never see: they once reached it and panicked the engine.
    let with_input = |input: proto::Tensor, method: &str| proto::AttributeRequest { input: Some(input), ..attribute(method, &[], "", 1) };
    let raw = |shape: Vec<i64>, data: Vec<u8>| proto::Tensor { shape, dtype: proto::Dtype::Float32 as i32, data };
    let scalar_saliency = with_input(raw(vec![], 1f32.to_le_bytes().to_vec()), "saliency");
    let scalar_ig = with_input(raw(vec![], 1f32.to_le_bytes().to_vec()), "integrated_gradients");
    let empty_saliency = with_input(raw(vec![0, 1, 8, 8], Vec::new()), "saliency");
    let overflowing = with_input(raw(vec![1 << 62, 1 << 62, 4], Vec::new()), "saliency");
    let thousand_dimensions = with_input(raw(vec![1; 1000], 1f32.to_le_bytes().to_vec()), "saliency");
    // (what is wrong, the call, the code, a word of the request the message must name)
    let cases: Vec<(&str, Case, Code, &str)> = vec![
        (
            "Predict, 3 channels for a 1-channel model",
            case(move |c| async move { c.predict(predict_wrong).await }),
            Code::InvalidArgument,
            "[1, 3, 8, 8]",
        ),
        ("Activations without an input", case(move |c| async move { c.activations(activations_no_input).await }), Code::InvalidArgument, "input"),
        ("Summary of a wrong input shape", case(move |c| async move { c.summary(summary_wrong).await }), Code::InvalidArgument, "[1, 2, 8, 8]"),
        ("Grad-CAM at a layer that does not exist", case(move |c| async move { c.attribute(a1).await }), Code::NotFound, "features.99"),
        ("a target past the last class", case(move |c| async move { c.attribute(a2).await }), Code::InvalidArgument, "1000"),
        ("n_steps that is not a number", case(move |c| async move { c.attribute(a3).await }), Code::InvalidArgument, "many"),
        (
            "an occlusion window larger than the input",
            case(move |c| async move { c.attribute(a4).await }),
            Code::InvalidArgument,
            "sliding_window_shapes",
        ),
        ("more generation steps than allowed", case(move |c| async move { c.visualize(v1, |_| {}).await }), Code::InvalidArgument, "20000"),
        ("a class objective past the last class", case(move |c| async move { c.visualize(v2, |_| {}).await }), Code::InvalidArgument, "class:99"),
        ("a channel objective at an unknown layer", case(move |c| async move { c.visualize(v3, |_| {}).await }), Code::NotFound, "no_such_layer"),
        (
            "a counterfactual target past the last class",
            case(move |c| async move { c.counterfactual(counterfactual, |_| {}).await }),
            Code::InvalidArgument,
            "42",
        ),
        ("Parameters without a model", case(move |c| async move { c.parameters(parameters_no_model).await }), Code::InvalidArgument, "model"),
        ("a 0-d input to saliency", case(move |c| async move { c.attribute(scalar_saliency).await }), Code::InvalidArgument, "0-d"),
        ("a 0-d input to integrated gradients", case(move |c| async move { c.attribute(scalar_ig).await }), Code::InvalidArgument, "0-d"),
        ("an input with no rows", case(move |c| async move { c.attribute(empty_saliency).await }), Code::InvalidArgument, "[0, 1, 8, 8]"),
        (
            "a shape whose element count overflows",
            case(move |c| async move { c.attribute(overflowing).await }),
            Code::InvalidArgument,
            "more elements than this machine can address",
        ),
        ("a 1000-dimension input", case(move |c| async move { c.attribute(thousand_dimensions).await }), Code::InvalidArgument, "(1000 dimensions)"),
        ("deleting a model that is not stored", case(move |c| async move { c.delete_model("no-such-model").await }), Code::NotFound, "no-such-model"),
        (
            "an upload with a negative input dimension",
            case(move |c| async move { c.upload_model(cnn_bytes, Some("bad-shape"), &[1, -3, 8, 8]).await }),
            Code::InvalidArgument,
            "-3",
        ),
    ];
    for (label, call, code, needle) in cases {
        let error = bounded(label, CALL_BOUND, call(client.clone())).await.expect_err(label);
        eprintln!("{label}: {:?} '{error}'", error.code());
        assert_eq!(error.code(), Some(code), "{label}: {error}");
        assert!(error.to_string().contains(needle), "{label}: '{error}' does not name '{needle}'");
        // One line naming the problem: no panic text, no libtorch backtrace, nothing long.
        let message = error.to_string();
        assert!(!message.contains("panicked") && !message.contains("frame #") && !message.contains("Exception raised"), "{label}: '{message}'");
        assert!(message.len() < 1100, "{label}: a message of {} characters", message.len());
        // The daemon keeps serving after every bad request.
        let predict = proto::PredictRequest { model: "digits".into(), input: Some(digits.input()), ..Default::default() };
        bounded("Predict", CALL_BOUND, client.predict(predict)).await.unwrap_or_else(|error| panic!("after {label}: {error}"));
    }

    // Nothing stored was lost or changed, nothing was added, nothing is left staged.
    assert_eq!(listing(&client).await, listed_before);
    assert_eq!((answers(&client, &digits).await, answers(&client, &mlp).await), answers_before);
    for (model, before) in [&digits_info, &mlp_info].iter().zip(&model_bytes_before) {
        assert_eq!(&std::fs::read(store.join("models").join(&model.id)).unwrap(), before, "{}'s file changed", model.names[0]);
    }
    assert_eq!(files_in(&store, "names"), vec!["digits", "mlp"]);
    assert_eq!(files_in(&store, "staging"), Vec::<String>::new());
    assert!(daemon.stop());
}
