//! The authorization code flow with PKCE (S256): a one-use `127.0.0.1` listener on a random
//! port receives the redirect; `state` is checked; it gives up after 5 minutes.

use std::time::Duration;

use percent_encoding::{NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

use crate::{SigninError, service};

/// The redirect URI as registered: loopback, any port (RFC 8252 §7.3).
pub const REDIRECT_BASE: &str = "http://127.0.0.1/oauth/callback";
const LIMIT: Duration = Duration::from_secs(300);

type Token = aws_sdk_ssooidc::operation::create_token::CreateTokenOutput;

fn random_hex(bytes: usize) -> Result<String, SigninError> {
    let mut buf = vec![0u8; bytes];
    getrandom::getrandom(&mut buf)
        .map_err(|e| SigninError::Flow(format!("no randomness for pkce: {e}")))?;
    Ok(hex::encode(buf))
}

/// base64url without padding (RFC 7636's challenge encoding).
fn base64url(data: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(char::from(ABC[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

pub fn challenge(verifier: &str) -> String {
    base64url(&Sha256::digest(verifier.as_bytes()))
}

fn enc(s: &str) -> String {
    utf8_percent_encode(s, NON_ALPHANUMERIC).to_string()
}

fn page(status: &str, text: &str) -> String {
    let body = format!(
        "<!doctype html><html><head><title>cmdr</title></head><body><p>{text}</p></body></html>"
    );
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: text/html; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// The query parameters of a request line `GET /path?query HTTP/1.1`.
fn callback_params(head: &str) -> Option<Vec<(String, String)>> {
    let target = head
        .lines()
        .next()?
        .strip_prefix("GET ")?
        .split(' ')
        .next()?;
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    (path == "/oauth/callback").then(|| {
        query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| {
                let dec = |s: &str| {
                    percent_decode_str(&s.replace('+', " "))
                        .decode_utf8_lossy()
                        .into_owned()
                };
                (dec(k), dec(v))
            })
            .collect()
    })
}

pub async fn run(
    client: &aws_sdk_ssooidc::Client,
    endpoint: &str,
    client_id: &str,
    client_secret: &str,
    open: bool,
    say: &(dyn Fn(&str) + Sync),
) -> Result<Token, SigninError> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.map_err(|e| {
        SigninError::Flow(format!("127.0.0.1: cannot listen for the redirect: {e}"))
    })?;
    let port = listener
        .local_addr()
        .map_err(|e| SigninError::Flow(format!("127.0.0.1: {e}")))?
        .port();
    let redirect = format!("http://127.0.0.1:{port}/oauth/callback");
    let verifier = random_hex(48)?;
    let state = random_hex(16)?;
    let url = format!(
        "{}/authorize?response_type=code&client_id={}&redirect_uri={}&scopes={}&state={}&code_challenge={}&code_challenge_method=S256",
        endpoint.trim_end_matches('/'),
        enc(client_id),
        enc(&redirect),
        enc(crate::SCOPE),
        state,
        challenge(&verifier)
    );
    if open && cmdr_config::renew::open(&url).await.is_ok() {
        say(&format!(
            "signing in in your browser; if it did not open, open:\n{url}"
        ));
    } else {
        say(&format!("open this URL in a browser to sign in:\n{url}"));
    }
    let code = tokio::time::timeout(LIMIT, receive(&listener, &state))
        .await
        .map_err(|_| {
            SigninError::Flow(format!("{redirect}: no sign-in arrived within 5 minutes"))
        })??;
    drop(listener);
    client
        .create_token()
        .client_id(client_id)
        .client_secret(client_secret)
        .grant_type("authorization_code")
        .code(code)
        .redirect_uri(&redirect)
        .code_verifier(&verifier)
        .send()
        .await
        .map_err(|e| service(endpoint, "create token", &e))
}

/// Waits for the redirect with the right `state`; a request with another state is
/// answered 400 and ignored (it did not come from this sign-in).
async fn receive(listener: &TcpListener, state: &str) -> Result<String, SigninError> {
    loop {
        let Ok((mut conn, _)) = listener.accept().await else {
            continue;
        };
        let mut buf = vec![0u8; 8192];
        let mut len = 0;
        let read = tokio::time::timeout(Duration::from_secs(5), async {
            while len < buf.len() {
                match conn.read(&mut buf[len..]).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => len += n,
                }
                if buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
        })
        .await;
        if read.is_err() {
            continue;
        }
        let head = String::from_utf8_lossy(&buf[..len]).into_owned();
        let Some(params) = callback_params(&head) else {
            let _ = conn
                .write_all(page("404 Not Found", "Not found.").as_bytes())
                .await;
            continue;
        };
        let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        if get("state").as_deref() != Some(state) {
            let _ = conn
                .write_all(
                    page(
                        "400 Bad Request",
                        "This sign-in was not started here (state does not match).",
                    )
                    .as_bytes(),
                )
                .await;
            continue;
        }
        if let Some(error) = get("error") {
            let _ = conn
                .write_all(
                    page(
                        "400 Bad Request",
                        "Sign-in was refused. You can close this tab.",
                    )
                    .as_bytes(),
                )
                .await;
            return Err(SigninError::Flow(format!(
                "the portal refused the sign-in: {error}"
            )));
        }
        let Some(code) = get("code") else {
            let _ = conn
                .write_all(page("400 Bad Request", "No code.").as_bytes())
                .await;
            continue;
        };
        let _ = conn
            .write_all(
                page(
                    "200 OK",
                    "Signed in to AWS with cmdr. You can close this tab.",
                )
                .as_bytes(),
            )
            .await;
        let _ = conn.shutdown().await;
        return Ok(code);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenge_is_base64url_of_sha256() {
        // python3: base64.urlsafe_b64encode(hashlib.sha256(v).digest()).rstrip(b"=")
        assert_eq!(
            challenge("dBjftJeZ4CVP-mB92K27uhbUJU2p1r7wFdwJ-MAHqGPGlNqQLmeZ"),
            "42LtH9BpHmGEi1Fk9podtDpv5sev4WpjVz11zX3p4jo"
        );
    }

    #[test]
    fn only_the_callback_path_counts() {
        let p = callback_params("GET /oauth/callback?code=a%2Bb&state=s HTTP/1.1\r\n");
        assert_eq!(
            p,
            Some(vec![
                ("code".into(), "a+b".into()),
                ("state".into(), "s".into())
            ])
        );
        assert_eq!(callback_params("GET /x?code=a HTTP/1.1\r\n"), None);
    }
}
