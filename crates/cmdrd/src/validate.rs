//! STS validation: GetCallerIdentity with an account's credentials, region and target,
//! a fresh SDK config per call (the SDK caches profiles and credentials inside a config),
//! a timeout, and errors classified so that "offline" is never "invalid".

use std::sync::Arc;
use std::time::Duration;

use aws_config::profile::ProfileFileCredentialsProvider;
use aws_config::provider_config::ProviderConfig;
use aws_runtime::env_config::file::{EnvConfigFileKind, EnvConfigFiles};
use aws_sdk_sts::config::retry::RetryConfig;
use aws_sdk_sts::config::timeout::TimeoutConfig;
use aws_sdk_sts::config::{
    BehaviorVersion, ProvideCredentials as _, Region, SharedCredentialsProvider,
};
use aws_sdk_sts::error::{ProvideErrorMetadata as _, SdkError};
use aws_sdk_sts::operation::get_caller_identity::GetCallerIdentityError;
use cmdr_core::{FileKind, PerFile, Verdict};
use zeroize::Zeroizing;

/// One AWS file's text as the engine took it in, for the SDK's providers: secrets and all,
/// so it is zeroed when its last holder drops it and never printed.
#[derive(Clone)]
pub struct FileText(Arc<Zeroizing<String>>);

impl FileText {
    /// `None` when the bytes are not UTF-8 — never for a file the engine took in: it refuses
    /// such a file (`file_error`, "file is not valid UTF-8") and keeps its last good bytes,
    /// so the SDK, which would read it as empty, is never handed one.
    pub fn new(bytes: Vec<u8>) -> Option<FileText> {
        String::from_utf8(bytes)
            .ok()
            .map(|text| FileText(Arc::new(Zeroizing::new(text))))
    }

    fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl std::fmt::Debug for FileText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FileText(** redacted **)")
    }
}

/// What to validate. `credentials` are the profile's keys when it has them; otherwise the
/// SDK resolves the profile (SSO, assume-role, …) from `files`.
pub struct Job {
    pub profile: String,
    pub region: Option<String>,
    pub endpoint: Option<String>,
    pub credentials: Option<cmdr_core::Credentials>,
    /// Of the token validated: a verdict counts for the account only if it is the one it
    /// has accepted.
    pub fingerprint: Option<String>,
    /// The two files as the engine took them in (the bytes its view was built from): the
    /// SDK resolves from these, never from the disk, so it judges the files the engine
    /// judged. `None`: not at hand (a file that did not parse before anything needed them).
    pub files: PerFile<Option<FileText>>,
    /// Why the profile cannot give credentials by any provider (no keys, no SSO, role or
    /// process), as `accounts show` says it: the engine keeps no files' text for it.
    pub unresolvable: Option<String>,
    pub timeout: Duration,
    /// An SSO profile on a kept portal: its role credentials come through the portal's
    /// keeper (one token, one refresh for every account on it), not the SDK's provider.
    pub portal: Option<Route>,
}

/// Which portal keeper to ask for which role.
pub struct Route {
    pub keeper: crate::portal::KeeperHandle,
    pub account_id: String,
    pub role: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub account_id: String,
    pub arn: String,
    pub user_id: String,
    /// When the credentials the SDK resolved from the profile end, if it said (e.g. a
    /// `credential_process`'s `Expiration`); `None` for the profile's own keys.
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    Expired(String),
    Invalid(String),
    /// The profile cannot give credentials as written.
    Misconfigured(String),
    AccessDenied(String),
    Unreachable(String),
    Other(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (class, detail) = match self {
            Failure::Expired(d) => ("expired", d),
            Failure::Invalid(d) => ("invalid", d),
            Failure::Misconfigured(d) => ("misconfigured", d),
            Failure::AccessDenied(d) => ("access denied", d),
            Failure::Unreachable(d) => ("unreachable", d),
            Failure::Other(d) => ("error", d),
        };
        write!(f, "{class}: {detail}")
    }
}

/// Credentials the SDK resolved from a profile (SSO, assume-role, `credential_process`,
/// web identity), with when they end if the provider said.
pub struct Resolved {
    pub credentials: cmdr_core::Credentials,
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl std::fmt::Debug for Resolved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolved")
            .field("credentials", &self.credentials)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// Resolves the profile's credentials with the SDK's own provider chain (it runs the
/// profile's `credential_process`, reads the SSO token cache and calls the portal, assumes
/// the role through its source profile, …), from the files as the engine took them in.
/// (The legacy SSO provider still reads the token cache itself: aws-config's file-system
/// shim, `ProviderConfig::with_fs`, is `pub(crate)`.)
pub async fn resolve(job: &Job) -> Result<Resolved, Failure> {
    if let Some(route) = &job.portal {
        let creds = route
            .keeper
            .role_credentials(&route.account_id, &route.role)
            .await?;
        return Ok(Resolved {
            expires_at: Some(creds.expires_at),
            credentials: cmdr_core::Credentials {
                access_key_id: creds.access_key_id.clone(),
                secret_access_key: creds.secret_access_key.clone(),
                session_token: Some(creds.session_token.clone()),
            },
        });
    }
    if let Some(problem) = &job.unresolvable {
        return Err(Failure::Misconfigured(problem.clone()));
    }
    let mut files = EnvConfigFiles::builder();
    for (kind, text) in job.files.as_ref().into_pairs() {
        let Some(text) = text else {
            return Err(Failure::Misconfigured(format!(
                "the AWS {} file cannot be used (it does not parse or cannot be read); fix it and try again",
                kind.label()
            )));
        };
        let kind = match kind {
            FileKind::Config => EnvConfigFileKind::Config,
            FileKind::Credentials => EnvConfigFileKind::Credentials,
        };
        // A missing file is empty text, as it is for the SDK's default locations.
        files = files.with_contents(kind, text.as_str());
    }
    // The region of the STS (and SSO) calls the provider makes, e.g. to assume a role: the
    // account's, as the SDK would take the profile's from its region chain. Without one,
    // the SDK says so ("Missing Region"), as it would for the user.
    let config = ProviderConfig::without_region().with_region(job.region.clone().map(Region::new));
    let provider = ProfileFileCredentialsProvider::builder()
        .configure(&config)
        .profile_files(files.build())
        .profile_name(&job.profile)
        .build();
    let resolved = tokio::time::timeout(job.timeout, provider.provide_credentials())
        .await
        .map_err(|_| Failure::Unreachable("resolving the credentials timed out".into()))?
        .map_err(|err| classify_provider(&err, &job.profile))?;
    Ok(Resolved {
        expires_at: resolved.expiry().map(chrono::DateTime::<chrono::Utc>::from),
        credentials: cmdr_core::Credentials {
            access_key_id: resolved.access_key_id().to_owned(),
            secret_access_key: resolved.secret_access_key().to_owned(),
            session_token: resolved.session_token().map(str::to_owned),
        },
    })
}

/// A provider that cannot give credentials is a profile problem (no keys, a role without a
/// region, SSO not signed in) unless the network failed on the way. A profile with nothing
/// to give credentials from is said in cmdr's words, as `accounts show` says it, not the
/// SDK's ("the credential provider was not enabled").
fn classify_provider(
    err: &aws_credential_types::provider::error::CredentialsError,
    profile: &str,
) -> Failure {
    use aws_credential_types::provider::error::CredentialsError;
    if matches!(err, CredentialsError::CredentialsNotLoaded(_)) {
        return Failure::Misconfigured(format!(
            "profile `{profile}` gives no credentials: it has no access keys, SSO settings, role or credential_process"
        ));
    }
    let message = cmdr_core::innermost_message(err);
    let network = {
        let lower = message.to_ascii_lowercase();
        [
            "dispatch failure",
            "connection refused",
            "timed out",
            "timeout",
            "dns error",
            "connect error",
            "io error",
        ]
        .iter()
        .any(|needle| lower.contains(needle))
    };
    // A host that does not resolve (offline, the SSO portal's name) shows only in the
    // resolver's own words, somewhere down the chain.
    let unresolved = {
        let mut chain = String::new();
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
        while let Some(inner) = source {
            chain.push_str(&inner.to_string().to_ascii_lowercase());
            chain.push('\n');
            source = inner.source();
        }
        [
            "failed to lookup address",
            "name or service not known",
            "temporary failure in name resolution",
            "network is unreachable",
            "no route to host",
        ]
        .iter()
        .any(|needle| chain.contains(needle))
    };
    let network = network || unresolved;
    match err {
        CredentialsError::ProviderTimedOut(_) => Failure::Unreachable(message),
        _ if network => Failure::Unreachable(message),
        _ => Failure::Misconfigured(message),
    }
}

pub async fn validate(job: Job) -> Result<Identity, Failure> {
    let region = Region::new(job.region.clone().unwrap_or_else(|| "us-east-1".to_owned()));
    let mut expires_at = None;
    let provider = match &job.credentials {
        Some(c) => SharedCredentialsProvider::new(aws_sdk_sts::config::Credentials::new(
            c.access_key_id.clone(),
            c.secret_access_key.clone(),
            c.session_token.clone(),
            None,
            "cmdr",
        )),
        None => {
            // Resolved here rather than inside the STS call, to learn when they end.
            let resolved = resolve(&job).await?;
            expires_at = resolved.expires_at;
            let c = &resolved.credentials;
            SharedCredentialsProvider::new(aws_sdk_sts::config::Credentials::new(
                c.access_key_id.clone(),
                c.secret_access_key.clone(),
                c.session_token.clone(),
                resolved.expires_at.map(std::time::SystemTime::from),
                "cmdr",
            ))
        }
    };
    let mut config = aws_sdk_sts::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(region)
        .credentials_provider(provider)
        .timeout_config(
            TimeoutConfig::builder()
                .operation_timeout(job.timeout)
                .connect_timeout(job.timeout)
                .build(),
        )
        .retry_config(RetryConfig::standard().with_max_attempts(1));
    if let Some(endpoint) = job.endpoint.clone() {
        config = config.endpoint_url(endpoint);
    }
    let client = aws_sdk_sts::Client::from_conf(config.build());
    match client.get_caller_identity().send().await {
        Ok(out) => Ok(Identity {
            account_id: out.account().unwrap_or_default().to_owned(),
            arn: out.arn().unwrap_or_default().to_owned(),
            user_id: out.user_id().unwrap_or_default().to_owned(),
            expires_at,
        }),
        Err(err) => Err(classify(&err)),
    }
}

fn classify(err: &SdkError<GetCallerIdentityError>) -> Failure {
    match err {
        SdkError::DispatchFailure(failure) => {
            if failure.is_user() {
                // No usable credentials (e.g. a profile without keys): not a network fault.
                Failure::Misconfigured(cmdr_core::innermost_message(err))
            } else {
                Failure::Unreachable(cmdr_core::innermost_message(err))
            }
        }
        SdkError::TimeoutError(_) => Failure::Unreachable("timed out".to_owned()),
        SdkError::ServiceError(service) => {
            let message = service.err().message().unwrap_or("").to_owned();
            match service.err().code() {
                Some("ExpiredToken" | "ExpiredTokenException" | "RequestExpired") => {
                    Failure::Expired(or_default(message, "the session token has expired"))
                }
                Some(
                    "InvalidClientTokenId"
                    | "SignatureDoesNotMatch"
                    | "UnrecognizedClientException"
                    | "InvalidAccessKeyId",
                ) => Failure::Invalid(or_default(message, "the credentials were rejected")),
                Some("AccessDenied" | "AccessDeniedException") => {
                    Failure::AccessDenied(or_default(message, "access denied"))
                }
                Some(code) => Failure::Other(format!("{code}: {message}")),
                None => {
                    // moto answers unknown keys with a bare 403.
                    if service.raw().status().as_u16() == 403 {
                        Failure::Invalid("the credentials were rejected (HTTP 403)".to_owned())
                    } else {
                        Failure::Other(cmdr_core::innermost_message(err))
                    }
                }
            }
        }
        _ => Failure::Other(cmdr_core::innermost_message(err)),
    }
}

fn or_default(message: String, default: &str) -> String {
    if message.is_empty() {
        default.to_owned()
    } else {
        message
    }
}

impl Failure {
    /// What the failure says about the token validated.
    pub fn verdict(&self) -> Verdict {
        match self {
            Failure::Invalid(_) => Verdict::Rejected(self.to_string()),
            Failure::Misconfigured(_) => Verdict::Misconfigured(self.to_string()),
            Failure::Unreachable(_) => Verdict::Unreachable,
            Failure::Expired(_) | Failure::AccessDenied(_) | Failure::Other(_) => Verdict::Other,
        }
    }
}
