//! Who may call what. With a tokens file (`--tokens`), every call except
//! `grpc.health.v1` must carry `authorization: Bearer <token>`; the token is hashed
//! (sha256) and compared in constant time with each user's stored hash, so tokens are
//! never kept in clear, and the time taken says nothing about which hash came close.
//! Some methods are admin-only. Without a tokens file every caller is `anonymous` and
//! may do everything: config.rs makes sure such a daemon only listens on loopback
//! unless `--insecure` was given.
//!
//! The check is a tower layer around all services rather than a tonic interceptor,
//! because it needs the method's path (interceptors only see metadata). It also opens
//! the request's tracing span, which names the user, so every log line of a request
//! says who made it, and puts the `Caller` in the request's extensions for handlers.

use crate::error::AccessError;
use anyhow::{bail, Context};
use layerlens_engine::scheduler::TICKET;
use layerlens_engine::{Priority, Ticket};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;
use tonic::codegen::http;
use tracing::Instrument;

/// Methods only an admin may call (full gRPC paths): they destroy what others use.
const ADMIN_ONLY: &[&str] = &["/layerlens.v1.Models/Delete", "/layerlens.v1.Models/Pin", "/layerlens.v1.Models/Unpin"];

/// Services anyone may call without a token: load balancers and orchestrators probe
/// health without credentials.
const OPEN_PREFIXES: &[&str] = &["/grpc.health.v1.Health/"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    User,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::User => "user",
        }
    }
}

/// The authenticated maker of a call; handlers find it in the request's extensions.
#[derive(Debug, Clone)]
pub struct Caller {
    pub name: String,
    pub role: Role,
    /// The user's share of a model's worker while others wait too (scheduler.rs).
    pub weight: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokensFile {
    #[serde(default)]
    user: Vec<UserEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserEntry {
    name: String,
    token_sha256: String,
    role: Role,
    /// Share of a busy model's time against other users; 1 when left out.
    #[serde(default = "default_weight")]
    weight: u32,
}

fn default_weight() -> u32 {
    1
}

#[derive(Clone)]
struct User {
    caller: Arc<Caller>,
    token_sha256: [u8; 32],
}

/// The users of a tokens file.
#[derive(Clone)]
pub struct Tokens {
    users: Vec<User>,
}

impl Tokens {
    pub fn load(path: &Path) -> anyhow::Result<Tokens> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading tokens file {}", path.display()))?;
        Tokens::parse(&text).with_context(|| format!("tokens file {}", path.display()))
    }

    pub fn parse(text: &str) -> anyhow::Result<Tokens> {
        let file: TokensFile = toml::from_str(text).context("not valid TOML with [[user]] tables of name, token_sha256, role")?;
        if file.user.is_empty() {
            bail!("no [[user]] entries: nobody could call the daemon");
        }
        let mut names = HashSet::new();
        let mut hashes = HashSet::new();
        let mut users = Vec::with_capacity(file.user.len());
        for entry in file.user {
            if entry.name.trim().is_empty() {
                bail!("a user has an empty name");
            }
            if !names.insert(entry.name.clone()) {
                bail!("user {} appears twice", entry.name);
            }
            let token_sha256: [u8; 32] = hex::decode(entry.token_sha256.trim()).ok().and_then(|bytes| bytes.try_into().ok()).with_context(|| {
                format!("user {}: token_sha256 must be 64 hex characters (the sha256 of the token; see `layerlensd hash-token`)", entry.name)
            })?;
            // One token for two users would make the caller ambiguous.
            if !hashes.insert(token_sha256) {
                bail!("user {} has the same token as another user", entry.name);
            }
            if entry.weight == 0 {
                bail!("user {}: weight must be at least 1", entry.name);
            }
            users.push(User { caller: Arc::new(Caller { name: entry.name, role: entry.role, weight: entry.weight }), token_sha256 });
        }
        Ok(Tokens { users })
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// The user holding `token`. Every stored hash is compared, each in constant time.
    fn find(&self, token: &str) -> Option<Arc<Caller>> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = None;
        for user in &self.users {
            if bool::from(user.token_sha256.ct_eq(&digest)) {
                found = Some(user.caller.clone());
            }
        }
        found
    }
}

/// The sha256 hex of a token, as a tokens file stores it.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The access rules of one daemon.
pub struct AccessPolicy {
    tokens: Option<Tokens>,
    anonymous: Arc<Caller>,
}

impl AccessPolicy {
    pub fn new(tokens: Option<Tokens>) -> AccessPolicy {
        // Without tokens nothing is checked, so the anonymous caller may do everything;
        // with tokens it only ever reaches the open (health) services.
        let role = if tokens.is_some() { Role::User } else { Role::Admin };
        AccessPolicy { tokens, anonymous: Arc::new(Caller { name: "anonymous".to_string(), role, weight: 1 }) }
    }

    /// The caller of `method` (a gRPC path such as `/layerlens.v1.Models/Delete`), or
    /// why the call is refused.
    pub fn check(&self, method: &str, headers: &http::HeaderMap) -> Result<Arc<Caller>, AccessError> {
        let Some(tokens) = &self.tokens else {
            return Ok(self.anonymous.clone());
        };
        let open = OPEN_PREFIXES.iter().any(|prefix| method.starts_with(prefix));
        let caller = match bearer_token(headers) {
            Ok(Some(token)) => match tokens.find(token) {
                Some(caller) => caller,
                None if open => self.anonymous.clone(),
                None => {
                    return Err(AccessError::Unauthenticated(
                        "the access token is not valid for this daemon: no user in its tokens file holds it".to_string(),
                    ))
                }
            },
            Ok(None) | Err(_) if open => self.anonymous.clone(),
            Ok(None) => {
                return Err(AccessError::Unauthenticated(
                    "this daemon requires an access token: send `authorization: Bearer <token>` \
                     (layerlens --token or LAYERLENS_TOKEN; layerlens.connect(token=...) in Python)"
                        .to_string(),
                ))
            }
            Err(message) => return Err(AccessError::Unauthenticated(message)),
        };
        if ADMIN_ONLY.contains(&method) && caller.role != Role::Admin {
            return Err(AccessError::PermissionDenied(format!(
                "{} needs role admin; user {} has role {}",
                crate::request_context::display_method(method),
                caller.name,
                caller.role.as_str()
            )));
        }
        Ok(caller)
    }
}

/// How the worker queues order this call (scheduler.rs): the caller's name and
/// weight, `x-layerlens-priority` (`interactive`, the default, or `batch`) and the
/// gRPC deadline (`grpc-timeout`). Without a tokens file anyone may name themselves
/// with `x-layerlens-user` (nothing is checked there anyway), so a shared loopback
/// daemon can still be fair between people and jobs.
fn ticket(caller: &Caller, authenticated: bool, headers: &http::HeaderMap) -> Result<Ticket, String> {
    let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    let priority = match header("x-layerlens-priority") {
        None => Priority::Interactive,
        Some(text) => Priority::parse(text).ok_or_else(|| format!("x-layerlens-priority is '{text}'; expected interactive or batch"))?,
    };
    let user = match header("x-layerlens-user").filter(|name| !authenticated && !name.is_empty()) {
        Some(name) => name.chars().take(64).collect::<String>(),
        None => caller.name.clone(),
    };
    let deadline = match header("grpc-timeout") {
        None => None,
        Some(text) => Some(Instant::now() + parse_grpc_timeout(text).ok_or_else(|| format!("grpc-timeout '{text}' is not a gRPC timeout"))?),
    };
    let trace = crate::request_context::current().map(|labels| labels.trace.clone());
    Ok(Ticket { user: Arc::from(user), weight: caller.weight, priority, deadline, trace })
}

/// A `grpc-timeout` value: up to 8 digits and a unit (H, M, S, m, u, n).
fn parse_grpc_timeout(text: &str) -> Option<Duration> {
    let (digits, unit) = text.split_at(text.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 {
        return None;
    }
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount * 3600),
        "M" => Duration::from_secs(amount * 60),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

/// The token of an `authorization: Bearer <token>` header; `Ok(None)` without one.
fn bearer_token(headers: &http::HeaderMap) -> Result<Option<&str>, String> {
    let Some(value) = headers.get(http::header::AUTHORIZATION) else {
        return Ok(None);
    };
    let text = value.to_str().map_err(|_| "the authorization header is not ASCII text".to_string())?;
    match text.split_once(' ') {
        // RFC 6750: the scheme name is case-insensitive.
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() => Ok(Some(token.trim())),
        _ => Err("the authorization header must be `Bearer <token>`".to_string()),
    }
}

/// Tower layer that applies an `AccessPolicy` to every call of the server.
#[derive(Clone)]
pub struct AccessLayer {
    policy: Arc<AccessPolicy>,
}

impl AccessLayer {
    pub fn new(policy: AccessPolicy) -> AccessLayer {
        AccessLayer { policy: Arc::new(policy) }
    }
}

impl<S> tower::Layer<S> for AccessLayer {
    type Service = AccessService<S>;

    fn layer(&self, inner: S) -> AccessService<S> {
        AccessService { inner, policy: self.policy.clone() }
    }
}

#[derive(Clone)]
pub struct AccessService<S> {
    inner: S,
    policy: Arc<AccessPolicy>,
}

/// Numbers requests so the log lines of one request can be told from another's.
static NEXT_REQUEST_ID: AtomicU64 = AtomicU64::new(1);

impl<S, RequestBody, ResponseBody> tower::Service<http::Request<RequestBody>> for AccessService<S>
where
    S: tower::Service<http::Request<RequestBody>, Response = http::Response<ResponseBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    RequestBody: Send + 'static,
    ResponseBody: Default + Send + 'static,
{
    type Response = http::Response<ResponseBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, context: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(context)
    }

    fn call(&mut self, mut request: http::Request<RequestBody>) -> Self::Future {
        let method = request.uri().path().to_string();
        let request_id = NEXT_REQUEST_ID.fetch_add(1, Ordering::Relaxed);
        match self.policy.check(&method, request.headers()) {
            Ok(caller) => {
                let ticket = match ticket(&caller, self.policy.tokens.is_some(), request.headers()) {
                    Ok(ticket) => ticket,
                    Err(message) => {
                        tracing::warn!(request_id, method = %method, "refused: {message}");
                        let status = tonic::Status::from(crate::error::ApiError::bad_input(message));
                        return Box::pin(std::future::ready(Ok(status.into_http())));
                    }
                };
                let span = tracing::info_span!("rpc", request_id, user = %ticket.user, method = %method);
                tracing::info!(parent: &span, role = caller.role.as_str(), priority = ticket.priority.as_str(), "request");
                crate::request_context::note_user(&ticket.user);
                request.extensions_mut().insert(caller);
                // The service that was polled ready is the one to call; leave a clone
                // in its place for the next call (tower's documented pattern).
                let ready = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, ready);
                Box::pin(TICKET.scope(ticket, async move { inner.call(request).await }).instrument(span))
            }
            Err(error) => {
                let status = tonic::Status::from(error);
                tracing::warn!(request_id, method = %method, code = ?status.code(), "refused: {}", status.message());
                Box::pin(std::future::ready(Ok(status.into_http())))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(authorization: Option<&str>) -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        if let Some(value) = authorization {
            headers.insert(http::header::AUTHORIZATION, value.parse().unwrap());
        }
        headers
    }

    fn policy() -> AccessPolicy {
        let text = format!(
            "[[user]]\nname = \"alice\"\ntoken_sha256 = \"{}\"\nrole = \"admin\"\n\n\
             [[user]]\nname = \"bob\"\ntoken_sha256 = \"{}\"\nrole = \"user\"\n",
            hash_token("alice-secret"),
            hash_token("bob-secret").to_uppercase()
        );
        AccessPolicy::new(Some(Tokens::parse(&text).unwrap()))
    }

    /// (method, authorization header, expected caller or error kind)
    #[test]
    fn checks_each_case() {
        let policy = policy();
        let delete = "/layerlens.v1.Models/Delete";
        let list = "/layerlens.v1.Models/List";
        let health = "/grpc.health.v1.Health/Check";
        let cases: &[(&str, Option<&str>, &str)] = &[
            (list, None, "unauthenticated"),
            (list, Some("Bearer wrong"), "unauthenticated"),
            (list, Some("Basic abc"), "unauthenticated"),
            (list, Some("Bearer "), "unauthenticated"),
            (list, Some("Bearer bob-secret"), "bob"),
            (list, Some("bearer alice-secret"), "alice"),
            (delete, Some("Bearer bob-secret"), "denied"),
            (delete, Some("Bearer alice-secret"), "alice"),
            (delete, None, "unauthenticated"),
            (health, None, "anonymous"),
            (health, Some("Bearer wrong"), "anonymous"),
            (health, Some("Bearer bob-secret"), "bob"),
        ];
        for &(method, authorization, expected) in cases {
            let got = match policy.check(method, &headers(authorization)) {
                Ok(caller) => caller.name.clone(),
                Err(AccessError::Unauthenticated(_)) => "unauthenticated".to_string(),
                Err(AccessError::PermissionDenied(message)) => {
                    assert_eq!(message, "Models.Delete needs role admin; user bob has role user");
                    "denied".to_string()
                }
                Err(AccessError::Api(error)) => panic!("unexpected {error:?}"),
            };
            assert_eq!(got, expected, "{method} with {authorization:?}");
        }
    }

    #[test]
    fn without_tokens_everyone_may_do_everything() {
        let policy = AccessPolicy::new(None);
        let caller = policy.check("/layerlens.v1.Models/Delete", &headers(None)).unwrap();
        assert_eq!((caller.name.as_str(), caller.role), ("anonymous", Role::Admin));
    }

    #[test]
    fn bad_tokens_files_are_refused_with_the_reason() {
        let hash = hash_token("t");
        let cases: &[(String, &str)] = &[
            (String::new(), "no [[user]] entries"),
            (format!("[[user]]\nname = \"a\"\ntoken_sha256 = \"{hash}\"\nrole = \"root\"\n"), "not valid TOML"),
            ("[[user]]\nname = \"a\"\ntoken_sha256 = \"abc\"\nrole = \"user\"\n".to_string(), "64 hex characters"),
            (
                format!("[[user]]\nname = \"a\"\ntoken_sha256 = \"{hash}\"\nrole = \"user\"\n[[user]]\nname = \"b\"\ntoken_sha256 = \"{hash}\"\nrole = \"user\"\n"),
                "same token",
            ),
            (
                format!("[[user]]\nname = \"a\"\ntoken_sha256 = \"{hash}\"\nrole = \"user\"\n[[user]]\nname = \"a\"\ntoken_sha256 = \"{}\"\nrole = \"user\"\n", hash_token("u")),
                "appears twice",
            ),
        ];
        for (text, expected) in cases {
            let error = format!("{:#}", Tokens::parse(text).err().expect("refused"));
            assert!(error.contains(expected), "{error:?} should contain {expected:?}");
        }
    }
}
