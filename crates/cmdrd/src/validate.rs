//! STS validation: GetCallerIdentity with an account's credentials, region and target,
//! a fresh SDK config per call (the SDK caches profiles and credentials inside a config),
//! a timeout, and errors classified so that "offline" is never "invalid".

use std::path::PathBuf;
use std::time::Duration;

use aws_config::profile::ProfileFileCredentialsProvider;
use aws_runtime::env_config::file::{EnvConfigFileKind, EnvConfigFiles};
use aws_sdk_sts::config::retry::RetryConfig;
use aws_sdk_sts::config::timeout::TimeoutConfig;
use aws_sdk_sts::config::{
    BehaviorVersion, ProvideCredentials as _, Region, SharedCredentialsProvider,
};
use aws_sdk_sts::error::{ProvideErrorMetadata as _, SdkError};
use aws_sdk_sts::operation::get_caller_identity::GetCallerIdentityError;

/// What to validate. `credentials` are the profile's keys when it has them; otherwise the
/// SDK resolves the profile (SSO, assume-role, …) from the files.
pub struct Job {
    pub profile: String,
    pub region: Option<String>,
    pub endpoint: Option<String>,
    pub credentials: Option<cmdr_core::Credentials>,
    pub config_file: PathBuf,
    pub credentials_file: PathBuf,
    pub timeout: Duration,
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
    AccessDenied(String),
    Unreachable(String),
    Other(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (class, detail) = match self {
            Failure::Expired(d) => ("expired", d),
            Failure::Invalid(d) => ("invalid", d),
            Failure::AccessDenied(d) => ("access denied", d),
            Failure::Unreachable(d) => ("unreachable", d),
            Failure::Other(d) => ("error", d),
        };
        write!(f, "{class}: {detail}")
    }
}

pub async fn validate(job: Job) -> Result<Identity, Failure> {
    let region = Region::new(job.region.unwrap_or_else(|| "us-east-1".to_owned()));
    let mut expires_at = None;
    let provider = match job.credentials {
        Some(c) => SharedCredentialsProvider::new(aws_sdk_sts::config::Credentials::new(
            c.access_key_id.clone(),
            c.secret_access_key.clone(),
            c.session_token.clone(),
            None,
            "cmdr",
        )),
        None => {
            // Resolved here rather than inside the STS call, to learn when they end (the
            // SDK runs the profile's `credential_process`, assumes its role, …).
            // The SDK refuses a named file that does not exist; SSO users often have no
            // credentials file at all, so a missing one counts as empty, as it does for the
            // SDK's default locations.
            let mut files = EnvConfigFiles::builder();
            for (kind, path) in [
                (EnvConfigFileKind::Config, &job.config_file),
                (EnvConfigFileKind::Credentials, &job.credentials_file),
            ] {
                files = if path.exists() {
                    files.with_file(kind, path)
                } else {
                    files.with_contents(kind, "")
                };
            }
            let files = files.build();
            let provider = ProfileFileCredentialsProvider::builder()
                .profile_files(files)
                .profile_name(&job.profile)
                .build();
            let resolved = tokio::time::timeout(job.timeout, provider.provide_credentials())
                .await
                .map_err(|_| Failure::Unreachable("resolving the credentials timed out".into()))?
                .map_err(|err| Failure::Invalid(cmdr_core::innermost_message(&err)))?;
            expires_at = resolved.expiry().map(chrono::DateTime::<chrono::Utc>::from);
            SharedCredentialsProvider::new(resolved)
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
    if let Some(endpoint) = job.endpoint {
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
                Failure::Invalid(cmdr_core::innermost_message(err))
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
