//! `cmdrctl console NAME`: the AWS console signed in as an account's accepted session,
//! through the partition's federation endpoint (`getSigninToken`, then the `login` URL).
//! The URL is a bearer secret for 15 minutes: it goes to the asking client only, and no
//! log line, error or event carries it, the session JSON or the sign-in token.

use std::time::Duration;

use cmdr_proto::{ConsoleUrl, ErrorCode, ErrorReply, Outcome, Response};
use http_body_util::{BodyExt as _, Empty, Limited};
use hyper::body::Bytes;

use crate::engine::EngineHandle;

/// The federation endpoint must answer within this.
const DEADLINE: Duration = Duration::from_secs(15);
/// A sign-in token is a few hundred bytes; more than this is not an answer.
const MAX_ANSWER: usize = 64 * 1024;

/// What a query value may keep as it is (RFC 3986 unreserved).
const QUERY: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'.')
    .remove(b'-')
    .remove(b'_')
    .remove(b'~');

/// The federation endpoint and console of the partition a region belongs to.
pub fn partition(region: Option<&str>) -> (&'static str, &'static str) {
    match region {
        Some(r) if r.starts_with("cn-") => (
            "https://signin.amazonaws.cn/federation",
            "https://console.amazonaws.cn/",
        ),
        Some(r) if r.starts_with("us-gov-") => (
            "https://signin.amazonaws-us-gov.com/federation",
            "https://console.amazonaws-us-gov.com/",
        ),
        _ => (
            "https://signin.aws.amazon.com/federation",
            "https://console.aws.amazon.com/",
        ),
    }
}

/// The sign-in URL for `name`, or why not.
pub async fn signin_url(engine: &EngineHandle, name: String) -> Outcome {
    match build(engine, name).await {
        Ok(url) => Outcome::Ok(Response::ConsoleUrl(ConsoleUrl { url })),
        Err(err) => Outcome::Err(err),
    }
}

fn refused(message: String) -> ErrorReply {
    ErrorReply {
        code: ErrorCode::BadRequest,
        message,
    }
}

async fn build(engine: &EngineHandle, name: String) -> Result<String, ErrorReply> {
    let handout = engine.hand_out(name.clone(), false).await.answer().await?;
    let (h, keys) = (&handout.grant, &handout.credentials);
    if let Some(endpoint) = &h.endpoint {
        return Err(refused(format!(
            "account `{name}` targets {endpoint}, not AWS: the AWS console cannot sign in to it"
        )));
    }
    let Some(session_token) = &keys.session_token else {
        return Err(refused(format!(
            "account `{name}` holds long-lived keys (no session token): the console's federation sign-in takes session credentials only, such as an SSO role's or a pasted \"Option 2\" block"
        )));
    };
    let (default_signin, console) = partition(h.region.as_deref());
    let signin = engine
        .settings()
        .console_signin_url
        .clone()
        .unwrap_or_else(|| default_signin.to_owned());
    let session = serde_json::json!({
        "sessionId": keys.access_key_id,
        "sessionKey": keys.secret_access_key,
        "sessionToken": session_token,
    })
    .to_string();
    let ask = format!(
        "{signin}?Action=getSigninToken&Session={}",
        percent_encoding::utf8_percent_encode(&session, QUERY)
    );
    let token = fetch_token(&ask).await?;
    let destination = match &h.region {
        Some(region) => format!("{console}console/home?region={region}"),
        None => console.to_owned(),
    };
    tracing::info!(account = %name, "made a console sign-in URL");
    Ok(format!(
        "{signin}?Action=login&Issuer=cmdr&Destination={}&SigninToken={}",
        percent_encoding::utf8_percent_encode(&destination, QUERY),
        percent_encoding::utf8_percent_encode(&token, QUERY),
    ))
}

/// `getSigninToken`: the errors say what failed, never what was sent or answered.
async fn fetch_token(url: &str) -> Result<String, ErrorReply> {
    let failed = |what: String| ErrorReply {
        code: ErrorCode::ValidationFailed,
        message: format!("the console sign-in failed: {what}"),
    };
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_native_roots()
        .map_err(|err| failed(format!("no TLS roots: {err}")))?
        .https_or_http()
        .enable_http1()
        .build();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build::<_, Empty<Bytes>>(connector);
    let uri: hyper::Uri = url
        .parse()
        .map_err(|_| failed("the sign-in URL is not valid".to_owned()))?;
    let host = uri.host().unwrap_or("?").to_owned();
    let call = async {
        let response = client
            .get(uri)
            .await
            .map_err(|err| failed(format!("cannot reach {host}: {err}")))?;
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|_| failed(format!("{host} sent an unreadable answer")))?
            .to_bytes();
        if !status.is_success() {
            return Err(failed(format!(
                "{host} answered HTTP {} (expired or refused session credentials?)",
                status.as_u16()
            )));
        }
        serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["SigninToken"].as_str().map(str::to_owned))
            .ok_or_else(|| failed(format!("{host} answered without a SigninToken")))
    };
    tokio::time::timeout(DEADLINE, call)
        .await
        .map_err(|_| failed(format!("{host} did not answer within {DEADLINE:?}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions() {
        assert_eq!(
            partition(Some("cn-north-1")).0,
            "https://signin.amazonaws.cn/federation"
        );
        assert_eq!(
            partition(Some("us-gov-west-1")).1,
            "https://console.amazonaws-us-gov.com/"
        );
        assert_eq!(
            partition(Some("eu-west-1")).0,
            "https://signin.aws.amazon.com/federation"
        );
        assert_eq!(partition(None).1, "https://console.aws.amazon.com/");
    }
}
