//! IAM Identity Center sign-in with the SDK's own sso-oidc and sso clients: `login`
//! (authorization code with PKCE, or the device code flow) and `logout`, sharing the AWS
//! CLI v2's token cache. Runs without the daemon, as `aws sso login` does.

pub mod cache;
pub mod keep;
mod pkce;
pub mod portal;
pub mod session;

use std::path::PathBuf;
use std::time::Duration;

use aws_sdk_ssooidc::config::{BehaviorVersion, Region};
use chrono::Utc;

pub use cache::CachedToken;
pub use session::Portal;

const SCOPE: &str = "sso:account:access";
const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

#[derive(Debug, thiserror::Error)]
pub enum SigninError {
    #[error("{endpoint}: {message}")]
    Service { endpoint: String, message: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Flow(String),
}

/// How to sign in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// Authorization code with PKCE; `open`: open the browser (else print the URL).
    Pkce {
        open: bool,
    },
    DeviceCode,
}

/// Where the files are.
pub struct Paths {
    pub config: PathBuf,
    pub sso_cache: PathBuf,
}

/// `AWS_ENDPOINT_URL_<SERVICE>`, then `AWS_ENDPOINT_URL`, as the SDKs read them.
fn endpoint_override(service: &str) -> Option<String> {
    [
        format!("AWS_ENDPOINT_URL_{service}"),
        "AWS_ENDPOINT_URL".into(),
    ]
    .iter()
    .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
}

fn oidc_endpoint(region: &str) -> String {
    endpoint_override("SSO_OIDC").unwrap_or_else(|| format!("https://oidc.{region}.amazonaws.com"))
}

fn oidc_client(region: &str) -> aws_sdk_ssooidc::Client {
    let mut b = aws_sdk_ssooidc::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region.to_owned()));
    if let Some(url) = endpoint_override("SSO_OIDC") {
        b = b.endpoint_url(url);
    }
    aws_sdk_ssooidc::Client::from_conf(b.build())
}

fn sso_client(region: &str) -> aws_sdk_sso::Client {
    let mut b = aws_sdk_sso::Config::builder()
        .behavior_version(aws_sdk_sso::config::BehaviorVersion::latest())
        .region(aws_sdk_sso::config::Region::new(region.to_owned()));
    if let Some(url) = endpoint_override("SSO") {
        b = b.endpoint_url(url);
    }
    aws_sdk_sso::Client::from_conf(b.build())
}

fn service<E: std::fmt::Debug + aws_sdk_ssooidc::error::ProvideErrorMetadata>(
    endpoint: &str,
    what: &str,
    e: &E,
) -> SigninError {
    let message = match (e.code(), e.message()) {
        (Some(c), Some(m)) => format!("{what}: {c}: {m}"),
        (Some(c), None) => format!("{what}: {c}"),
        _ => format!("{what}: {e:?}"),
    };
    SigninError::Service {
        endpoint: endpoint.to_owned(),
        message: message.to_lowercase(),
    }
}

async fn register(
    client: &aws_sdk_ssooidc::Client,
    endpoint: &str,
    portal: &Portal,
    flow: Flow,
) -> Result<(String, String, String), SigninError> {
    let mut req = client
        .register_client()
        .client_name("cmdr")
        .client_type("public")
        .scopes(SCOPE);
    if matches!(flow, Flow::Pkce { .. }) {
        req = req
            .grant_types("authorization_code")
            .grant_types("refresh_token")
            .redirect_uris(pkce::REDIRECT_BASE)
            .issuer_url(&portal.start_url);
    }
    let out = req
        .send()
        .await
        .map_err(|e| service(endpoint, "register client", &e))?;
    let until = chrono::DateTime::from_timestamp(out.client_secret_expires_at(), 0)
        .unwrap_or_else(Utc::now);
    Ok((
        out.client_id().unwrap_or_default().to_owned(),
        out.client_secret().unwrap_or_default().to_owned(),
        cache::timestamp(until),
    ))
}

/// Signs in to `portal` and writes the token to the cache (the caller adds the sso-session
/// section with `session::add_section` under its own lock). `say` gets what the user must see (URLs, codes), never a secret.
pub async fn login(
    portal: &Portal,
    paths: &Paths,
    flow: Flow,
    say: &(dyn Fn(&str) + Sync),
) -> Result<CachedToken, SigninError> {
    let endpoint = oidc_endpoint(&portal.region);
    let client = oidc_client(&portal.region);
    let file = cache::path(&paths.sso_cache, &portal.session);
    let old = cache::read(&file).filter(|t| t.start_url == portal.start_url);
    let now = Utc::now();
    // A registration is reused until it expires (kept in the token file, as the CLI does);
    // one the service refuses for this flow (made for the other flow) is replaced once.
    // PKCE registers anew each time: the file does not say which grants a cached
    // registration has, and one made for the device code has no redirect URI.
    let mut reuse = old
        .as_ref()
        .and_then(|t| t.registration(now))
        .filter(|_| flow == Flow::DeviceCode);
    let (token, client_id, client_secret, registration_expires) = loop {
        let reused = reuse.is_some();
        let (client_id, client_secret, registration_expires) = match reuse.take() {
            Some((id, secret)) => {
                let until = old.as_ref().and_then(|t| t.registration_expires_at.clone());
                (id, secret, until.unwrap_or_default())
            }
            None => register(&client, &endpoint, portal, flow).await?,
        };
        let result = match flow {
            Flow::DeviceCode => {
                device_code(&client, &endpoint, portal, &client_id, &client_secret, say).await
            }
            Flow::Pkce { open } => {
                pkce::run(&client, &endpoint, &client_id, &client_secret, open, say).await
            }
        };
        match result {
            Ok(token) => break (token, client_id, client_secret, registration_expires),
            Err(SigninError::Service { ref message, .. })
                if reused
                    && (message.contains("invalidclient")
                        || message.contains("unauthorizedclient")) => {}
            Err(e) => return Err(e),
        }
    };
    let expires = Utc::now() + chrono::Duration::seconds(i64::from(token.expires_in()));
    let cached = CachedToken {
        start_url: portal.start_url.clone(),
        region: portal.region.clone(),
        access_token: token.access_token().unwrap_or_default().to_owned(),
        expires_at: cache::timestamp(expires),
        client_id: Some(client_id),
        client_secret: Some(client_secret),
        registration_expires_at: Some(registration_expires),
        refresh_token: token.refresh_token().map(str::to_owned),
    };
    cache::write(&file, &cached).map_err(|source| SigninError::Io {
        path: file.clone(),
        source,
    })?;
    Ok(cached)
}

async fn device_code(
    client: &aws_sdk_ssooidc::Client,
    endpoint: &str,
    portal: &Portal,
    client_id: &str,
    client_secret: &str,
    say: &(dyn Fn(&str) + Sync),
) -> Result<aws_sdk_ssooidc::operation::create_token::CreateTokenOutput, SigninError> {
    let start = client
        .start_device_authorization()
        .client_id(client_id)
        .client_secret(client_secret)
        .start_url(&portal.start_url)
        .send()
        .await
        .map_err(|e| service(endpoint, "start device authorization", &e))?;
    let uri = start
        .verification_uri_complete()
        .or(start.verification_uri())
        .unwrap_or_default();
    say(&format!(
        "open {uri}\nand confirm the code {}",
        start.user_code().unwrap_or_default()
    ));
    let mut interval = Duration::from_secs(u64::try_from(start.interval().max(1)).unwrap_or(5));
    let deadline = tokio::time::Instant::now()
        + Duration::from_secs(u64::try_from(start.expires_in().max(1)).unwrap_or(600));
    loop {
        let answer = client
            .create_token()
            .client_id(client_id)
            .client_secret(client_secret)
            .grant_type(DEVICE_GRANT)
            .device_code(start.device_code().unwrap_or_default())
            .send()
            .await;
        match answer {
            Ok(out) => return Ok(out),
            Err(e) => {
                let pending = e
                    .as_service_error()
                    .is_some_and(|s| s.is_authorization_pending_exception());
                let slow = e
                    .as_service_error()
                    .is_some_and(|s| s.is_slow_down_exception());
                if !pending && !slow {
                    return Err(service(endpoint, "create token", &e));
                }
                if slow {
                    interval += Duration::from_secs(5);
                }
            }
        }
        if tokio::time::Instant::now() + interval > deadline {
            return Err(SigninError::Flow(format!(
                "{endpoint}: the device code expired before it was confirmed"
            )));
        }
        tokio::time::sleep(interval).await;
    }
}

/// Ends the portal session of the cached token and removes the cache file. Returns
/// whether a token was there.
pub async fn logout(portal: &Portal, paths: &Paths) -> Result<bool, SigninError> {
    let file = cache::path(&paths.sso_cache, &portal.session);
    let Some(token) = cache::read(&file) else {
        return Ok(false);
    };
    let endpoint = endpoint_override("SSO")
        .unwrap_or_else(|| format!("https://portal.sso.{}.amazonaws.com", portal.region));
    let result = sso_client(&token.region)
        .logout()
        .access_token(&token.access_token)
        .send()
        .await;
    // The file goes either way: a token the portal no longer knows is of no use.
    match std::fs::remove_file(&file) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => return Err(SigninError::Io { path: file, source }),
    }
    if let Err(e) = result {
        let unauthorized = e
            .as_service_error()
            .is_some_and(|s| s.is_unauthorized_exception());
        if !unauthorized {
            return Err(service(&endpoint, "logout", &e));
        }
    }
    Ok(true)
}
