//! One client connection: the handshake (with a deadline), requests with ids, and the
//! event subscription. A malformed or oversized frame closes this connection only; a
//! client that stops reading lags, then is dropped, and never holds up anyone else.

use std::time::Duration;

use cmdr_proto::{
    ClientMessage, Codec, ErrorCode, ErrorReply, Event, EventKind, FrameDecoder, MAX_REPLY_LEN,
    Outcome, PROTOCOL_VERSION, ProtoError, Request, Response, ServerMessage, Welcome,
    encode_within,
};

mod answer;
use interprocess::local_socket::tokio::Stream;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, WriteHalf};
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::engine::{EngineEvent, EngineHandle};
use crate::slots::{Phase, Slot};
use crate::wire::timestamp;
use cmdr_core::text::escape_controls;

/// An unauthenticated connection that has not said hello by then is closed.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(5);
/// A client that cannot take one frame in this time is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
const OUTGOING_QUEUE: usize = 64;
/// Requests one connection may have open at once; beyond it the connection is not read
/// until one is answered.
const MAX_OPEN_REQUESTS: usize = 32;

/// Features announced in `Welcome`.
pub const FEATURES: &[&str] = &[
    "json-lines",
    "events",
    cmdr_proto::FEATURE_PAGES,
    cmdr_proto::FEATURE_ACCEPT_RESULT,
    cmdr_proto::FEATURE_CHILD_ENV,
    cmdr_proto::FEATURE_CONSOLE,
    cmdr_proto::FEATURE_CONTAINER_ENV,
    cmdr_proto::FEATURE_RENEWALS,
    cmdr_proto::FEATURE_RENEW_NOW,
    cmdr_proto::FEATURE_RENEWAL_PLANS,
];

/// Runs one session in `slot`; it ends early when the slot is shed for a newcomer.
pub async fn run(stream: Stream, engine: EngineHandle, shutdown: CancellationToken, slot: Slot) {
    let (mut reader, writer) = tokio::io::split(stream);
    let mut decoder = FrameDecoder::detecting();
    let first = tokio::select! {
        first = tokio::time::timeout(HELLO_TIMEOUT, read_message(&mut reader, &mut decoder)) => first,
        () = slot.shed.cancelled() => {
            tracing::debug!("closing connection: shed before hello to make room");
            return;
        }
    };
    let hello = match first {
        Ok(Ok(Some(ClientMessage::Hello(hello)))) => hello,
        Ok(Ok(Some(ClientMessage::Request { .. }))) => {
            let codec = decoder.codec().unwrap_or(Codec::Binary);
            send_once(writer, codec, refused("the first message must be a hello")).await;
            return;
        }
        Ok(Ok(None)) => return,
        Ok(Err(err)) => {
            tracing::debug!(error = %err, "closing connection: bad handshake");
            let codec = decoder.codec().unwrap_or(Codec::Binary);
            send_once(writer, codec, refused(&unreadable(&err))).await;
            return;
        }
        Err(_) => {
            tracing::debug!("closing connection: no hello within {HELLO_TIMEOUT:?}");
            return;
        }
    };
    let codec = decoder.codec().unwrap_or(Codec::Binary);
    if hello.protocol != PROTOCOL_VERSION {
        let message = format!(
            "protocol version mismatch: cmdrd {} speaks protocol {PROTOCOL_VERSION}, {} {} speaks protocol {}; install matching versions of cmdrd and the client",
            env!("CARGO_PKG_VERSION"),
            hello.client,
            hello.client_version,
            hello.protocol
        );
        send_once(writer, codec, refused(&message)).await;
        return;
    }
    slot.set(Phase::Idle);
    // What a peer says is logged escaped: a newline in it must not forge a log line.
    tracing::debug!(
        client = %escape_controls(&hello.client),
        version = %escape_controls(&hello.client_version),
        ?codec,
        "client connected"
    );

    let broken = CancellationToken::new();
    let (out, out_rx) = mpsc::channel::<Vec<u8>>(OUTGOING_QUEUE);
    // The writer is this session's own task: it ends with the session (tracked with it).
    let mut writer_task = JoinSet::new();
    writer_task.spawn(write_loop(writer, out_rx, broken.clone()));
    let send = |message: ServerMessage| {
        let out = out.clone();
        async move {
            match encode_reply(codec, &message) {
                Some(frame) => out.send(frame).await.is_ok(),
                None => true,
            }
        }
    };
    let welcome = ServerMessage::Welcome(Welcome {
        protocol: PROTOCOL_VERSION,
        daemon_version: env!("CARGO_PKG_VERSION").to_owned(),
        features: FEATURES.iter().map(|f| (*f).to_owned()).collect(),
    });
    if !send(welcome).await {
        return;
    }

    let mut events: Option<broadcast::Receiver<EngineEvent>> = None;
    // Requests being answered: each waits apart, so a slow one (an STS call) holds up
    // neither the connection's events nor its other requests; answers go out by id, in
    // the order they are ready. Bounded: a client with this many open stops being read.
    let mut answers: JoinSet<(u64, Outcome)> = JoinSet::new();
    // Counts this connection in `status` while it is subscribed.
    let mut counted = None;
    loop {
        tokio::select! {
            () = broken.cancelled() => break,
            () = slot.shed.cancelled() => {
                tracing::debug!("closing an idle connection to make room");
                break;
            }
            // Subscribers leave after forwarding `daemon_stopping`; others at shutdown.
            () = shutdown.cancelled(), if events.is_none() => break,
            Some(done) = answers.join_next(), if !answers.is_empty() => {
                let Ok((id, outcome)) = done else { break };
                if answers.is_empty() {
                    slot.set(if events.is_some() { Phase::Subscribed } else { Phase::Idle });
                }
                if !send(ServerMessage::Response { id, outcome }).await {
                    break;
                }
            }
            message = read_message(&mut reader, &mut decoder), if answers.len() < MAX_OPEN_REQUESTS => match message {
                Ok(Some(ClientMessage::Request { id, request })) => {
                    // What a new subscriber is told right after `subscribed`.
                    let mut standing = None;
                    let outcome = match request {
                        Request::Subscribe => {
                            if events.is_none() {
                                standing = Some(engine.standing());
                            }
                            events = Some(engine.subscribe());
                            counted.get_or_insert_with(|| engine.count_subscriber());
                            Outcome::Ok(Response::Subscribed)
                        }
                        Request::Unsubscribe => {
                            events = None;
                            counted = None;
                            Outcome::Ok(Response::Done)
                        }
                        Request::ConsoleUrl { name } => {
                            // An HTTPS call of its own, after the engine's hand-out check.
                            slot.set(Phase::Busy);
                            let engine = engine.clone();
                            answers.spawn(async move {
                                (id, crate::console::signin_url(&engine, name).await)
                            });
                            continue;
                        }
                        other => {
                            slot.set(Phase::Busy);
                            let answer = answer::submit(&engine, other).await;
                            answers.spawn(async move { (id, answer.await) });
                            continue;
                        }
                    };
                    if answers.is_empty() {
                        slot.set(if events.is_some() { Phase::Subscribed } else { Phase::Idle });
                    }
                    let mut sent = send(ServerMessage::Response { id, outcome }).await;
                    for told in standing.iter().flat_map(|s| s.iter()) {
                        sent = sent && send(ServerMessage::Event(told.event.clone())).await;
                    }
                    if !sent {
                        break;
                    }
                }
                Ok(Some(ClientMessage::Hello(_))) => {
                    send(refused("hello was already said on this connection")).await;
                    break;
                }
                Ok(None) => break,
                Err(err) => {
                    // Say why before closing: a plugin author sees the reason, not just EOF.
                    tracing::debug!(error = %err, "closing connection");
                    send(refused(&unreadable(&err))).await;
                    break;
                }
            },
            event = next_event(&mut events) => match event {
                Ok(EngineEvent { event, .. }) => {
                    let stopping = matches!(event.kind, EventKind::DaemonStopping);
                    if !send(ServerMessage::Event(event)).await || stopping {
                        break;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    let lagged = Event {
                        at: timestamp(chrono::Utc::now()),
                        kind: EventKind::Lagged { missed },
                    };
                    if !send(ServerMessage::Event(lagged)).await {
                        break;
                    }
                }
                Err(broadcast::error::RecvError::Closed) => break,
            },
        }
    }
    drop(out);
    // Let queued frames (e.g. `daemon_stopping`) go out, but not forever.
    let _ = tokio::time::timeout(Duration::from_secs(2), writer_task.join_next()).await;
}

/// Answers a connection over the limit with a refusal and closes it.
pub async fn refuse(stream: Stream, message: String) {
    let (mut reader, writer) = tokio::io::split(stream);
    let mut decoder = FrameDecoder::detecting();
    // Read the hello to learn the codec; do not wait long.
    let _ = tokio::time::timeout(
        Duration::from_secs(1),
        read_message(&mut reader, &mut decoder),
    )
    .await;
    let codec = decoder.codec().unwrap_or(Codec::Binary);
    send_once(writer, codec, refused(&message)).await;
}

/// The answer to a message that cannot be read (invalid JSON, an unknown request, a frame
/// over the limit). The decoder's error never quotes the input.
fn unreadable(err: &ProtoError) -> String {
    format!(
        "cannot read this message ({err}); expected a hello, then requests like {{\"request\":{{\"id\":1,\"request\":\"status\"}}}}; closing the connection"
    )
}

/// Encodes what the daemon sends, within [`MAX_REPLY_LEN`]. An answer that does not fit
/// becomes an error reply to the same request: the client is told, never left waiting.
fn encode_reply(codec: Codec, message: &ServerMessage) -> Option<Vec<u8>> {
    encode_reply_within(codec, message, MAX_REPLY_LEN)
}

fn encode_reply_within(codec: Codec, message: &ServerMessage, max: usize) -> Option<Vec<u8>> {
    match encode_within(codec, message, max) {
        Ok(frame) => Some(frame),
        Err(err) => {
            tracing::error!(error = %err, "cannot encode a message");
            let ServerMessage::Response { id, .. } = message else {
                return None;
            };
            let reply = ServerMessage::Response {
                id: *id,
                outcome: Outcome::Err(ErrorReply {
                    code: ErrorCode::Internal,
                    message: format!(
                        "the answer is too large to send ({err}); ask for lists in pages (`profiles_page`, `accounts_page`)"
                    ),
                }),
            };
            encode_within(codec, &reply, max).ok()
        }
    }
}

fn refused(message: &str) -> ServerMessage {
    ServerMessage::Refused {
        message: message.to_owned(),
    }
}

async fn send_once(mut writer: WriteHalf<Stream>, codec: Codec, message: ServerMessage) {
    if let Some(frame) = encode_reply(codec, &message) {
        let _ = tokio::time::timeout(WRITE_TIMEOUT, writer.write_all(&frame)).await;
    }
}

async fn next_event(
    events: &mut Option<broadcast::Receiver<EngineEvent>>,
) -> Result<EngineEvent, broadcast::error::RecvError> {
    match events {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Reads one message. Cancel-safe: bytes already read stay in the decoder.
async fn read_message<R: AsyncRead + Unpin>(
    reader: &mut R,
    decoder: &mut FrameDecoder,
) -> Result<Option<ClientMessage>, ProtoError> {
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(message) = decoder.decode()? {
            return Ok(Some(message));
        }
        match reader.read(&mut chunk).await {
            Ok(0) | Err(_) => return Ok(None),
            Ok(n) => decoder.extend(&chunk[..n]),
        }
    }
}

async fn write_loop(
    mut writer: WriteHalf<Stream>,
    mut frames: mpsc::Receiver<Vec<u8>>,
    broken: CancellationToken,
) {
    while let Some(frame) = frames.recv().await {
        match tokio::time::timeout(WRITE_TIMEOUT, writer.write_all(&frame)).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => {
                tracing::debug!(error = %err, "client went away");
                broken.cancel();
                return;
            }
            Err(_) => {
                tracing::warn!("dropping a client that stopped reading");
                broken.cancel();
                return;
            }
        }
    }
    let _ = writer.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An answer over the limit becomes an error reply to the same request, in both
    /// codecs; an event over it is dropped (there is no one to answer).
    #[test]
    fn an_answer_too_large_to_send_is_an_error_reply() {
        let profile = |name: String| cmdr_proto::ProfileInfo {
            name,
            kind: cmdr_proto::ProfileKind::Static,
            region: None,
            sources: Vec::new(),
            access_key_id: None,
            fingerprint: None,
            expires_at: None,
            expiry_source: None,
        };
        let answer = ServerMessage::Response {
            id: 7,
            outcome: Outcome::Ok(Response::Profiles(vec![profile("p".repeat(5000))])),
        };
        for codec in [Codec::Binary, Codec::JsonLines] {
            let frame = encode_reply_within(codec, &answer, 1000).expect("a reply");
            let mut decoder = FrameDecoder::with_max(codec, 1000);
            decoder.extend(&frame);
            let reply: ServerMessage = decoder.decode().expect("decodes").expect("whole");
            let ServerMessage::Response {
                id: 7,
                outcome: Outcome::Err(err),
            } = reply
            else {
                panic!("{reply:?}");
            };
            assert_eq!(err.code, ErrorCode::Internal);
            assert!(err.message.contains("too large to send"), "{}", err.message);
            assert!(err.message.contains("profiles_page"), "{}", err.message);
            let event = ServerMessage::Event(Event {
                at: "2026-12-02T10:00:00Z".into(),
                kind: EventKind::FileError {
                    path: "p".repeat(5000),
                    line: None,
                    message: String::new(),
                },
            });
            assert!(encode_reply_within(codec, &event, 1000).is_none());
        }
    }
}
