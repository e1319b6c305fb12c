//! Access control of the real `layerlensd` (README "Access"): tokens and roles, the
//! loopback-only rule without tokens, TLS from the Rust client, the CLI and the Python
//! client, and AddFromPath confined to the model roots. Every daemon listens on
//! loopback (or on 0.0.0.0 with a random port, reached through 127.0.0.1), and every
//! wait is bounded.

use layerlens_client::{Client, ClientError};
use layerlens_e2e::{binary, fixtures, python, workspace_root, Daemon};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use tonic::Code;

const ALICE_TOKEN: &str = "alice-7f3c9e2a-admin-token";
const BOB_TOKEN: &str = "bob-51d0a8b4-user-token";

/// `layerlensd hash-token` with `token` and a newline on stdin, as an admin would run it.
fn hash_token(token: &str) -> String {
    let mut child = Command::new(binary("layerlensd"))
        .arg("hash-token")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("running layerlensd hash-token");
    writeln!(child.stdin.take().expect("stdin"), "{token}").expect("writing the token");
    let output = child.wait_with_output().expect("hash-token output");
    assert!(output.status.success(), "hash-token failed");
    String::from_utf8(output.stdout).expect("utf-8").trim().to_string()
}

/// A tokens file with alice (admin) and bob (user), hashed by `layerlensd hash-token`.
fn write_tokens_file(dir: &Path) -> PathBuf {
    let alice = hash_token(ALICE_TOKEN);
    let bob = hash_token(BOB_TOKEN);
    // The helper's answer is the plain sha256 of the token (the documented
    // `printf %s TOKEN | sha256sum` recipe gives the same).
    use sha2::Digest;
    assert_eq!(alice, hex::encode(sha2::Sha256::digest(ALICE_TOKEN.as_bytes())));
    let path = dir.join("tokens.toml");
    std::fs::write(
        &path,
        format!(
            "[[user]]\nname = \"alice\"\ntoken_sha256 = \"{alice}\"\nrole = \"admin\"\n\n\
             [[user]]\nname = \"bob\"\ntoken_sha256 = \"{bob}\"\nrole = \"user\"\n"
        ),
    )
    .unwrap();
    path
}

fn code_and_message(error: ClientError) -> (Code, String) {
    match error {
        ClientError::Rpc(status) => (status.code(), status.message().to_string()),
        other => panic!("expected an answer from the daemon, got {other}"),
    }
}

async fn health_status(url: &str) -> i32 {
    let channel = tonic::transport::Endpoint::from_shared(url.to_string()).unwrap().connect().await.expect("health connect");
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    health.check(tonic_health::pb::HealthCheckRequest { service: String::new() }).await.expect("health check").into_inner().status
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_decide_who_may_call_what_and_every_request_names_its_user() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = write_tokens_file(dir.path());
    let model_file = fixtures().join("tiny_mlp_traced.pt");
    // With tokens, a non-loopback address needs no --insecure (reached here through
    // 127.0.0.1 only).
    let daemon = Daemon::try_start(&dir.path().join("store"), "0.0.0.0:0", &["--tokens", tokens.to_str().unwrap()], "info")
        .expect("a daemon with tokens may listen on 0.0.0.0");

    let anonymous = Client::connect(&daemon.url, None).await.unwrap();
    let (code, message) = code_and_message(anonymous.list_models().await.unwrap_err());
    assert_eq!(code, Code::Unauthenticated);
    assert!(message.contains("requires an access token") && message.contains("Bearer"), "{message}");
    let stranger = Client::connect(&daemon.url, Some("not-a-token")).await.unwrap();
    let (code, message) = code_and_message(stranger.list_models().await.unwrap_err());
    assert_eq!(code, Code::Unauthenticated);
    assert!(message.contains("not valid"), "{message}");
    assert_eq!(health_status(&daemon.url).await, tonic_health::pb::health_check_response::ServingStatus::Serving as i32);

    let bob = Client::connect(&daemon.url, Some(BOB_TOKEN)).await.unwrap();
    let model = bob.upload_file(&model_file, Some("mlp"), &[1, 4]).await.unwrap();
    assert_eq!(bob.list_models().await.unwrap().len(), 1);
    let summary = bob.summary(layerlens_client::SummaryRequest { model: "mlp".to_string(), ..Default::default() }).await.unwrap();
    assert!(!summary.rows.is_empty());
    let (code, message) = code_and_message(bob.delete_model("mlp").await.unwrap_err());
    assert_eq!(code, Code::PermissionDenied);
    assert_eq!(message, "Models.Delete needs role admin; user bob has role user");
    assert_eq!(bob.get_model(&model.id).await.unwrap().id, model.id, "a refused delete keeps the model");
    // No --model-root: AddFromPath is off, for everyone, and says how to turn it on.
    let (code, message) = code_and_message(bob.add_from_path(model_file.to_str().unwrap(), None, &[]).await.unwrap_err());
    assert_eq!(code, Code::PermissionDenied);
    assert!(message.contains("--model-root"), "{message}");

    // The CLI sends --token or LAYERLENS_TOKEN; without one it fails with the reason.
    let cli = |token: Option<&str>, env_token: Option<&str>, args: &[&str]| {
        let mut command = Command::new(binary("layerlens"));
        command.arg("--addr").arg(&daemon.url).env_remove("LAYERLENS_TOKEN").env_remove("LAYERLENS_TLS_CA");
        if let Some(token) = token {
            command.args(["--token", token]);
        }
        if let Some(token) = env_token {
            command.env("LAYERLENS_TOKEN", token);
        }
        command.args(args).output().expect("running layerlens")
    };
    let output = cli(None, None, &["models", "list", "--json"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("requires an access token"), "{stderr}");
    let output = cli(None, Some(BOB_TOKEN), &["models", "list", "--json"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stdout).contains(&model.id));
    let output = cli(Some(BOB_TOKEN), None, &["models", "rm", "mlp"]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("needs role admin"));
    let output = cli(Some(ALICE_TOKEN), None, &["models", "rm", "mlp", "--json"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(bob.list_models().await.unwrap().is_empty(), "the admin's delete removed the model");

    let log = daemon.stderr_text();
    assert!(
        log.lines().any(|line| line.contains("user=bob") && line.contains("/layerlens.v1.Models/List")),
        "no log line names bob's List call:\n{log}"
    );
    assert!(log.lines().any(|line| line.contains("user=alice") && line.contains("/layerlens.v1.Models/Delete")), "{log}");
    assert!(!log.contains(BOB_TOKEN) && !log.contains(ALICE_TOKEN), "a token reached the log");
    assert!(daemon.stop(), "layerlensd did not exit 0 on SIGTERM");
}

#[tokio::test(flavor = "multi_thread")]
async fn without_tokens_the_daemon_stays_on_loopback_unless_insecure() {
    let dir = tempfile::tempdir().unwrap();
    let refused =
        Daemon::try_start(&dir.path().join("store"), "0.0.0.0:0", &[], "warn").err().expect("layerlensd must refuse 0.0.0.0 without --tokens");
    assert!(refused.contains("refusing to listen on 0.0.0.0:0"), "{refused}");
    assert!(refused.contains("--tokens FILE") && refused.contains("--insecure"), "{refused}");

    let daemon = Daemon::try_start(&dir.path().join("store"), "0.0.0.0:0", &["--insecure"], "warn").expect("--insecure allows 0.0.0.0");
    let client = Client::connect(&daemon.url, None).await.unwrap();
    assert!(client.list_models().await.unwrap().is_empty());
    assert!(daemon.stop());

    // Loopback without tokens is the default and needs nothing (scripts/serve-demo.sh).
    let daemon = Daemon::start(&dir.path().join("store"), &[]);
    let client = Client::connect(&daemon.url, None).await.unwrap();
    let model = client.upload_file(&fixtures().join("tiny_mlp_traced.pt"), Some("mlp"), &[1, 4]).await.unwrap();
    assert_eq!(client.delete_model("mlp").await.unwrap(), model.id);
    assert!(daemon.stop());
}

/// A CA and a server certificate it signed, for localhost and 127.0.0.1; answers
/// (ca.pem, server.pem, server-key.pem).
fn make_certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.distinguished_name.push(DnType::CommonName, "layerlens test CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let mut server_params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    server_params.distinguished_name.push(DnType::CommonName, "layerlensd");
    let server_cert = server_params.signed_by(&server_key, &Issuer::new(ca_params, ca_key)).unwrap();
    let paths = (dir.join("ca.pem"), dir.join("server.pem"), dir.join("server-key.pem"));
    std::fs::write(&paths.0, ca_cert.pem()).unwrap();
    std::fs::write(&paths.1, server_cert.pem()).unwrap();
    std::fs::write(&paths.2, server_key.serialize_pem()).unwrap();
    (paths.0, paths.1, paths.2)
}

/// Runs the Python client (clients/python/src) with `code`; answers (success, stdout, stderr).
fn run_python(code: &str, env: &[(&str, &str)]) -> (bool, String, String) {
    let mut command = Command::new(python());
    command
        .arg("-c")
        .arg(code)
        .env("PYTHONPATH", workspace_root().join("clients/python/src"))
        .env_remove("LAYERLENS_ADDR")
        .env_remove("LAYERLENS_TOKEN")
        .env_remove("LAYERLENS_TLS_CA");
    for (name, value) in env {
        command.env(name, value);
    }
    let output = command.output().expect("running python");
    (output.status.success(), String::from_utf8_lossy(&output.stdout).into_owned(), String::from_utf8_lossy(&output.stderr).into_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_with_a_private_ca_from_rust_the_cli_and_python() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = make_certificates(dir.path());
    let tokens = write_tokens_file(dir.path());
    let daemon = Daemon::start(
        &dir.path().join("store"),
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
            "--tokens",
            tokens.to_str().unwrap(),
            "--web-listen",
            "127.0.0.1:0",
        ],
    );
    assert!(daemon.url.starts_with("https://127.0.0.1:"), "{}", daemon.url);
    let web_url = daemon.web_url.clone().expect("the web explorer's line");
    assert!(web_url.starts_with("https://127.0.0.1:"), "the explorer is served over TLS too: {web_url}");

    let client = Client::connect_with(&daemon.url, Some(BOB_TOKEN), Some(&ca)).await.expect("TLS connect with the CA");
    let model = client.upload_file(&fixtures().join("tiny_mlp_traced.pt"), Some("mlp"), &[1, 4]).await.unwrap();
    assert_eq!(client.list_models().await.unwrap().len(), 1);
    // Tokens are still checked over TLS.
    let anonymous = Client::connect_with(&daemon.url, None, Some(&ca)).await.unwrap();
    assert_eq!(anonymous.list_models().await.unwrap_err().code(), Some(Code::Unauthenticated));

    // The system's roots do not know the test CA: the handshake fails and says why.
    let untrusted = match Client::connect(&daemon.url, Some(BOB_TOKEN)).await {
        Ok(client) => client.list_models().await.map(|_| ()).unwrap_err().to_string(),
        Err(error) => error.to_string(),
    };
    assert!(untrusted.to_lowercase().contains("certificate"), "{untrusted}");
    // Plaintext against the TLS port fails, with a hint at https.
    let plain_url = daemon.url.replace("https://", "http://");
    let plain = match Client::connect(&plain_url, Some(BOB_TOKEN)).await {
        Ok(client) => client.list_models().await.map(|_| ()).unwrap_err().to_string(),
        Err(error) => error.to_string(),
    };
    assert!(plain.contains("https://"), "{plain}");

    // CLI: --tls-ca, or LAYERLENS_TLS_CA.
    for use_env in [false, true] {
        let mut command = Command::new(binary("layerlens"));
        command.args(["--addr", &daemon.url, "--token", BOB_TOKEN]).env_remove("LAYERLENS_TLS_CA");
        if use_env {
            command.env("LAYERLENS_TLS_CA", &ca);
        } else {
            command.arg("--tls-ca").arg(&ca);
        }
        let output = command.args(["models", "list", "--json"]).output().expect("running layerlens");
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        assert!(String::from_utf8_lossy(&output.stdout).contains(&model.id));
    }
    let output = Command::new(binary("layerlens"))
        .args(["--addr", &plain_url, "--token", BOB_TOKEN, "models", "list"])
        .env_remove("LAYERLENS_TLS_CA")
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("https://"), "{}", String::from_utf8_lossy(&output.stderr));

    // Python: tls_ca=..., or LAYERLENS_TLS_CA; plaintext fails with a LayerlensError.
    let list = "import layerlens, os\n\
                ll = layerlens.connect(os.environ['ADDR'], token=os.environ['TOKEN'], timeout=30, tls_ca=os.environ.get('CA_ARG'))\n\
                print(','.join(model.id for model in ll.models()))\n";
    let ca_text = ca.to_str().unwrap();
    for env in [
        vec![("ADDR", daemon.url.as_str()), ("TOKEN", BOB_TOKEN), ("CA_ARG", ca_text)],
        vec![("ADDR", daemon.url.as_str()), ("TOKEN", BOB_TOKEN), ("LAYERLENS_TLS_CA", ca_text)],
    ] {
        let (ok, stdout, stderr) = run_python(list, &env);
        assert!(ok, "{stderr}");
        assert_eq!(stdout.trim(), model.id);
    }
    let (ok, _, stderr) = run_python(list, &[("ADDR", daemon.url.as_str()), ("TOKEN", "wrong"), ("CA_ARG", ca_text)]);
    assert!(!ok && stderr.contains("LayerlensError: the access token is not valid"), "{stderr}");
    let (ok, _, stderr) = run_python(list, &[("ADDR", plain_url.as_str()), ("TOKEN", BOB_TOKEN)]);
    assert!(!ok && stderr.contains("LayerlensError") && stderr.contains("https://"), "{stderr}");

    // The web explorer: its page and gRPC-Web answers over TLS with the CA, the same
    // token rule, and nothing over plaintext.
    let web = r#"
import os, ssl, urllib.request
context = ssl.create_default_context(cafile=os.environ["CA"])
page = urllib.request.urlopen(os.environ["WEB"], context=context, timeout=30).read().decode()
assert "<title>layerlens" in page, page[:200]

def call(token):
    """Models.List through gRPC-Web: the grpc-status, from the headers or the trailer frame."""
    headers = {"content-type": "application/grpc-web+proto", "x-grpc-web": "1"}
    if token:
        headers["authorization"] = "Bearer " + token
    request = urllib.request.Request(os.environ["WEB"] + "layerlens.v1.Models/List", data=bytes(5), headers=headers)
    with urllib.request.urlopen(request, context=context, timeout=30) as answer:
        status, body, at = answer.headers.get("grpc-status"), answer.read(), 0
    while status is None and at < len(body):
        flag, size = body[at], int.from_bytes(body[at + 1:at + 5], "big")
        if flag & 0x80:
            status = body[at + 5:at + 5 + size].decode().split("grpc-status:")[1].split()[0]
        at += 5 + size
    return status

print(call(os.environ["TOKEN"]), call(None))
try:
    urllib.request.urlopen(os.environ["WEB"].replace("https://", "http://"), timeout=30).read()
    print("plaintext answered")
except Exception as error:
    print("plaintext refused:", type(error).__name__)
"#;
    let (ok, stdout, stderr) = run_python(web, &[("CA", ca_text), ("WEB", web_url.as_str()), ("TOKEN", BOB_TOKEN)]);
    assert!(ok, "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "0 16", "Models.List through gRPC-Web: OK with bob's token, UNAUTHENTICATED without one");
    assert!(lines[1].starts_with("plaintext refused"), "{stdout}");

    assert!(daemon.stop(), "layerlensd did not exit 0 on SIGTERM");
}

#[tokio::test(flavor = "multi_thread")]
async fn add_from_path_reads_only_under_the_model_roots() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("models");
    let outside = dir.path().join("elsewhere");
    std::fs::create_dir_all(root.join("team")).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    let mlp = fixtures().join("tiny_mlp_traced.pt");
    std::fs::copy(&mlp, root.join("team/mlp.pt")).unwrap();
    std::fs::copy(fixtures().join("tiny_cnn_traced.pt"), outside.join("cnn.pt")).unwrap();
    std::os::unix::fs::symlink(outside.join("cnn.pt"), root.join("escape.pt")).unwrap();
    let daemon = Daemon::start(&dir.path().join("store"), &["--model-root", root.to_str().unwrap()]);
    let client = Client::connect(&daemon.url, None).await.unwrap();
    let canonical_root = root.canonicalize().unwrap();
    let at = |relative: &str| format!("{}/{relative}", root.display());

    let model = client.add_from_path(&at("team/mlp.pt"), Some("mlp"), &[1, 4]).await.expect("a file under the root");
    assert_eq!(model.id, hex::encode(<sha2::Sha256 as sha2::Digest>::digest(std::fs::read(&mlp).unwrap())));
    // (path, expected code)
    let refused = [
        (at("../elsewhere/cnn.pt"), Code::PermissionDenied),
        (at("team/../../elsewhere/cnn.pt"), Code::PermissionDenied),
        (at("escape.pt"), Code::PermissionDenied),
        (outside.join("cnn.pt").display().to_string(), Code::PermissionDenied),
        (at("../elsewhere/missing.pt"), Code::PermissionDenied),
        (at("team/missing.pt"), Code::NotFound),
        ("team/mlp.pt".to_string(), Code::InvalidArgument),
        (at("team"), Code::InvalidArgument),
    ];
    for (path, expected) in refused {
        let (code, message) = code_and_message(client.add_from_path(&path, None, &[]).await.unwrap_err());
        assert_eq!(code, expected, "{path}: {message}");
        if code == Code::PermissionDenied {
            assert!(message.contains(&canonical_root.display().to_string()), "the message names the roots: {message}");
        }
    }
    // The refusals stored nothing and the daemon serves on.
    let models = client.list_models().await.unwrap();
    assert_eq!(models.iter().map(|model| model.id.as_str()).collect::<Vec<_>>(), [model.id.as_str()]);
    assert!(daemon.stop());
}

#[test]
fn bad_access_settings_stop_the_daemon_before_it_serves() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let bad_tokens = dir.path().join("bad.toml");
    std::fs::write(&bad_tokens, "[[user]]\nname = \"x\"\ntoken_sha256 = \"abc\"\nrole = \"user\"\n").unwrap();
    let not_pem = dir.path().join("not.pem");
    std::fs::write(&not_pem, "not a certificate").unwrap();
    let missing = dir.path().join("missing");
    let cases: &[(&[&str], &str)] = &[
        (&["--tokens", bad_tokens.to_str().unwrap()], "64 hex characters"),
        (&["--tokens", missing.to_str().unwrap()], "reading tokens file"),
        (&["--tls-cert", not_pem.to_str().unwrap()], "--tls-cert needs --tls-key"),
        (&["--tls-cert", not_pem.to_str().unwrap(), "--tls-key", not_pem.to_str().unwrap()], "--tls-cert/--tls-key"),
        (&["--model-root", missing.to_str().unwrap()], "--model-root"),
    ];
    for (args, expected) in cases {
        let stderr = Daemon::try_start(&store, "127.0.0.1:0", args, "warn").err().unwrap_or_else(|| panic!("{args:?} was accepted"));
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}
