//! The credentials endpoint: the AWS container-credentials protocol on loopback HTTP/1.1
//! (hyper), one URL per account, so that running SDK processes re-ask for credentials and
//! follow the accepted token. Every request must carry its account's token, from a 0600
//! file that dies with the port (`endpoint/tokens.rs`); answers
//! come from the engine's hand-out (`EngineHandle::hand_out`), with an `Expiration` short
//! enough for each SDK to come back within seconds (see `lifetime_for`). Containers on the
//! `cmdr` network reach the same URLs on 169.254.170.2 (`endpoint/container.rs`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use cmdr_proto::{EndpointInfo, ErrorCode};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::engine::EngineHandle;
use crate::slots::{Admission, Phase, Slots};
use crate::wire::timestamp;

/// The path every account's URL starts with; the percent-encoded name follows.
pub const PATH_PREFIX: &str = "/v1/credentials/";
/// Connections served at once; a newcomer beyond this closes the oldest.
const MAX_CONNECTIONS: usize = 512;
/// A client that has not sent its request headers by then is dropped (slowloris).
const HEADER_TIMEOUT: Duration = Duration::from_secs(3);
/// Keep-alive connections are closed after this, so none is held for ever.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);
/// Request headers beyond this are refused (hyper answers 431).
const MAX_HEADER_BYTES: usize = 16 * 1024;

pub use cmdr_config::{EndpointSettings, parse_listen};

mod bind;
pub mod container;
#[cfg(any(target_os = "linux", target_os = "macos", windows))]
pub mod guard;
#[cfg(any(target_os = "linux", target_os = "macos", windows))]
pub mod handover;
#[cfg(any(target_os = "linux", target_os = "macos", windows))]
pub mod sentinel;
mod tokens;
#[cfg(any(target_os = "linux", target_os = "macos"))]
mod vnode;

/// The endpoint's guard process (`guard.rs`: Linux, macOS, Windows).
#[cfg(any(target_os = "linux", target_os = "macos", windows))]
pub use guard::Guard;
#[cfg(any(target_os = "linux", target_os = "macos", windows))]
pub use sentinel::PortLock;
/// No sentinel on this platform.
#[cfg(not(any(target_os = "linux", target_os = "macos", windows)))]
pub struct PortLock;
/// No guard process on this platform: a crash leaves the port free (see README).
#[cfg(not(any(target_os = "linux", target_os = "macos", windows)))]
pub struct Guard;
#[cfg(not(any(target_os = "linux", target_os = "macos", windows)))]
impl Guard {
    pub fn stopping(&self) {}
    pub fn release(self) {}
}
pub use bind::bind;

/// What the next cmdrd takes over from the guard or sentinel of an earlier run
/// (`handover.rs`): the loopback listener, and the containers' if there was one.
#[cfg_attr(
    not(any(target_os = "linux", target_os = "macos", windows)),
    expect(dead_code, reason = "no guard or sentinel hands sockets on here")
)]
pub struct Taken {
    pub listener: std::net::TcpListener,
    pub gateway: Option<std::net::TcpListener>,
}
pub use tokens::{Check, Tokens};

/// What the engine knows of the endpoint: where it is (`status`) and its tokens.
#[derive(Clone)]
pub struct Access {
    pub info: EndpointInfo,
    pub tokens: Arc<Tokens>,
    /// Why containers are not served although they could be (`status` warns).
    pub gateway_problem: Option<String>,
}

/// A bound endpoint, before it serves.
pub struct Bound {
    listener: TcpListener,
    /// The same port on 169.254.170.2, for containers (Linux).
    gateway: Option<TcpListener>,
    pub access: Access,
    /// Holds the port while cmdrd runs and after a crash (`guard.rs`); released at a
    /// clean stop, after the tokens are gone.
    pub guard: Option<Guard>,
    /// This port's token lock (`endpoint/sentinel.rs`), held until exit.
    pub port_lock: Option<PortLock>,
}

/// Where the endpoint keeps its state on disk.
pub struct Paths<'a> {
    /// The port of an earlier start, kept so running processes keep their URL.
    pub port_file: &'a Path,
    /// The token directories (see `tokens.rs`).
    pub tokens: &'a Path,
    /// The one token file of older versions.
    pub legacy_token: &'a Path,
    /// Containers' token directories (see `container.rs`).
    pub containers: &'a Path,
}

/// What stays as it is in an account's URL: RFC 3986's unreserved characters.
const UNRESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'.')
    .remove(b'-')
    .remove(b'_')
    .remove(b'~');

/// The URL of one account.
pub fn account_url(base: &str, account: &str) -> String {
    format!(
        "{base}{}",
        percent_encoding::utf8_percent_encode(account, UNRESERVED)
    )
}

/// Serves until `stop` is cancelled.
pub async fn run(
    bound: Bound,
    engine: EngineHandle,
    stop: CancellationToken,
    tracker: TaskTracker,
) {
    // When every slot is taken, the oldest connection is closed for the newcomer (sshd's
    // MaxStartups idea), so a flood of idle or slow connections cannot lock real clients
    // out: an SDK's fetch takes milliseconds. The socket's limiter, every connection idle.
    let slots = Slots::new(MAX_CONNECTIONS);
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => break,
            accepted = bound.listener.accept() => accepted,
            accepted = accept_on(bound.gateway.as_ref()) => match accepted {
                // Only containers on the `cmdr` network (and the host) talk to it.
                Ok((_, peer)) if !container::from_network(&peer) => {
                    tracing::debug!(%peer, "closed a connection to the gateway from outside the cmdr network");
                    continue;
                }
                other => other,
            },
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(err) => {
                tracing::debug!(error = %err, "endpoint accept failed");
                // Out of descriptors: give the others a moment to close.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Admission::Admitted(slot) = slots.admit().0 else {
            continue;
        };
        slot.set(Phase::Idle);
        let engine = engine.clone();
        let tokens = bound.access.tokens.clone();
        let stop = stop.clone();
        tracker.spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let (engine, tokens) = (engine.clone(), tokens.clone());
                async move { Ok::<_, Infallible>(answer(request, &engine, &tokens, peer).await) }
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .max_buf_size(MAX_HEADER_BYTES);
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            let mut connection = std::pin::pin!(connection);
            tokio::select! {
                _ = &mut connection => {}
                () = tokio::time::sleep(CONNECTION_LIFETIME) => {}
                () = slot.shed.cancelled() => {}
                () = stop.cancelled() => connection.as_mut().graceful_shutdown(),
            }
            drop(slot);
        });
    }
}

/// Accepts on a listener that may not exist (then never).
async fn accept_on(
    listener: Option<&TcpListener>,
) -> std::io::Result<(tokio::net::TcpStream, SocketAddr)> {
    match listener {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

type Answer = hyper::Response<Full<Bytes>>;

async fn answer(
    request: hyper::Request<Incoming>,
    engine: &EngineHandle,
    tokens: &Tokens,
    peer: SocketAddr,
) -> Answer {
    let Some(presented) = request.headers().get(header::AUTHORIZATION) else {
        return refusal(StatusCode::UNAUTHORIZED, "unauthorized", "unauthorized");
    };
    let name = request
        .uri()
        .path()
        .strip_prefix(PATH_PREFIX)
        .and_then(|n| percent_encoding::percent_decode_str(n).decode_utf8().ok())
        .filter(|n| !n.is_empty() && !n.contains('/'));
    // Each account's token is good at its own URL only; a request without any token of
    // this run learns nothing, not even which paths exist.
    match name
        .as_deref()
        .map(|n| tokens.check(n, presented.as_bytes()))
    {
        Some(Check::Valid) => {}
        _ if !tokens.is_any(presented.as_bytes()) => {
            return refusal(StatusCode::FORBIDDEN, "forbidden", "forbidden");
        }
        Some(_) => {
            return refusal(
                StatusCode::FORBIDDEN,
                "forbidden",
                "this token belongs to another account's URL: start the process with `cmdrctl exec NAME` for the account it should use",
            );
        }
        None => {
            return refusal(
                StatusCode::NOT_FOUND,
                "not_found",
                &format!("no such path: account URLs are {PATH_PREFIX}NAME (see `cmdrctl status`)"),
            );
        }
    }
    if request.method() != Method::GET {
        return refusal(
            StatusCode::METHOD_NOT_ALLOWED,
            "bad_request",
            "only GET is served",
        );
    }
    let Some(name) = name else {
        return refusal(StatusCode::NOT_FOUND, "not_found", "no such path");
    };
    let name = name.into_owned();
    let (lifetime, family) = lifetime_for(request.headers());
    match engine.hand_out(name.clone(), false).await.answer().await {
        Ok(handout) => {
            let now = Utc::now();
            let until = match handout.expires_at {
                Some(at) if at < now + lifetime => at,
                _ => now + lifetime,
            };
            // scripts/bench counts fetches by this line (cmdr-bench's `FETCH_LINE`).
            tracing::debug!(account = %name, peer_port = peer.port(), client = family, "served an account's credentials");
            let mut body = serde_json::Map::new();
            let h = &handout.credentials;
            body.insert("AccessKeyId".into(), h.access_key_id.clone().into());
            body.insert("SecretAccessKey".into(), h.secret_access_key.clone().into());
            // botocore requires the key; an empty token is not sent by any SDK.
            body.insert(
                "Token".into(),
                h.session_token.clone().unwrap_or_default().into(),
            );
            body.insert("Expiration".into(), timestamp(until).into());
            if let Some(id) = &handout.grant.account_id {
                body.insert("AccountId".into(), id.clone().into());
            }
            json(StatusCode::OK, serde_json::Value::Object(body).to_string())
        }
        Err(err) => {
            let status = match err.code {
                ErrorCode::NotFound => StatusCode::NOT_FOUND,
                ErrorCode::Internal => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::CONFLICT,
            };
            refusal(status, err.code.label(), &err.message)
        }
    }
}

/// How long served credentials last, by SDK: each refreshes a fixed time before the
/// `Expiration` it got (its window). The lifetime is that window plus `MARGIN`, so each
/// comes back about 6 s after a fetch: a running process uses a newly accepted token
/// within about 6 s plus its own call interval (target: median ≤ 10 s, max ≤ 15 s), at
/// about 10 fetches a minute (≤ 15) — never one per call.
///
/// - botocore (boto3, AWS CLI; `User-Agent: python-urllib3/…`): refreshes in the last
///   15 minutes (advisory; 10 minutes mandatory) → 15 min 6 s.
/// - AWS SDK for JavaScript v3 (no `User-Agent`, no `Accept`): the last 5 minutes →
///   5 min 6 s.
/// - AWS SDK for Rust (no `User-Agent`, `Accept: application/json`): aws-smithy-runtime
///   1.11's identity cache refreshes 10 s before expiry minus a jitter of 0–5 s, i.e. in
///   the last 5–10 s → 16 s: it comes back 6–11 s after a fetch.
/// - anything else: 15 min 6 s, for the longest window known, so that no client
///   re-fetches on every call.
pub fn lifetime_for(headers: &HeaderMap<HeaderValue>) -> (chrono::Duration, &'static str) {
    const MARGIN: i64 = 6;
    let agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok());
    let accept = headers.get(header::ACCEPT).is_some();
    let (window, family) = match agent {
        Some(a) if a.starts_with("python-urllib3/") || a.contains("otocore") => {
            (15 * 60, "botocore")
        }
        None if !accept => (5 * 60, "js-v3"),
        None => (10, "rust"),
        Some(_) => (15 * 60, "other"),
    };
    (chrono::Duration::seconds(window + MARGIN), family)
}

fn refusal(status: StatusCode, code: &str, message: &str) -> Answer {
    json(
        status,
        serde_json::json!({ "code": code, "message": message }).to_string(),
    )
}

fn json(status: StatusCode, body: String) -> Answer {
    let mut response = hyper::Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_is_loopback_only() {
        assert!(parse_listen("127.0.0.1:4144").is_ok());
        assert!(parse_listen("0.0.0.0:4144").is_err());
        assert!(parse_listen("[::1]:4144").is_err());
        assert!(parse_listen("localhost:4144").is_err());
    }

    #[test]
    fn lifetimes_by_client() {
        let mut h = HeaderMap::new();
        assert_eq!(lifetime_for(&h).1, "js-v3");
        h.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        assert_eq!(lifetime_for(&h).1, "rust");
        h.insert(
            header::USER_AGENT,
            HeaderValue::from_static("python-urllib3/2.7.0"),
        );
        assert_eq!(lifetime_for(&h).0, chrono::Duration::seconds(906));
        h.insert(
            header::USER_AGENT,
            HeaderValue::from_static("Go-http-client/1.1"),
        );
        assert_eq!(lifetime_for(&h).1, "other");
    }

    #[test]
    fn urls_and_tokens() {
        assert_eq!(
            account_url("http://127.0.0.1:1/v1/credentials/", "a.b-c_d ç"),
            "http://127.0.0.1:1/v1/credentials/a.b-c_d%20%C3%A7"
        );
        let t = tokens::new_token().expect("token");
        assert_eq!(t.len(), 64);
        assert!(tokens::constant_time_eq(t.as_bytes(), t.as_bytes()));
        assert!(!tokens::constant_time_eq(t.as_bytes(), &t.as_bytes()[1..]));
    }
}
