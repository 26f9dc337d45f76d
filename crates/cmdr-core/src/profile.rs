//! The profile view: what the AWS SDKs see after merging the config and credentials files,
//! plus what cmdr derives from it (kind, region, source files, masked key, fingerprint,
//! expiry). Secrets are kept apart in [`Credentials`], which never prints and is zeroed on drop.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use sha1::Digest as _;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::expiry::Expiry;

mod sso;
#[cfg(test)]
mod tests;
mod view;

pub use sso::sso_token_problem;
#[cfg(test)]
pub(crate) use view::parse_files;
pub use view::{
    check_file, default_credentials, default_credentials_warning, parse_view, parse_view_or,
    parse_view_with, redact_secrets, without_credentials,
};

/// Properties whose values are secrets: never shown, never stored.
pub const SECRET_KEYS: &[&str] = &[
    "aws_secret_access_key",
    "aws_session_token",
    "aws_security_token",
];

/// What `doctor --json` and the view show in place of a secret.
pub const REDACTED: &str = "<redacted>";

/// Which of the two AWS files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FileKind {
    Config,
    Credentials,
}

impl FileKind {
    pub fn label(self) -> &'static str {
        match self {
            FileKind::Config => "config",
            FileKind::Credentials => "credentials",
        }
    }
}

/// A file that does not parse. `line` is 1-based. The message never quotes the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub file: FileKind,
    pub line: Option<u32>,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(
                f,
                "{} file, line {line}: {}",
                self.file.label(),
                self.message
            ),
            None => write!(f, "{} file: {}", self.file.label(), self.message),
        }
    }
}

/// How a profile gets its credentials, in the order the SDKs decide it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProfileKind {
    Static,
    Session,
    Sso,
    AssumeRole,
    CredentialProcess,
    WebIdentity,
    Other,
    /// `login_session` (`aws login`, AWS CLI >= 2.32): console credentials from AWS
    /// Sign-In, cached in `~/.aws/login/cache/<sha256 of the session ARN>.json`.
    Login,
}

/// Key material of a profile. `Debug` is redacted; memory is zeroed on drop.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &mask_access_key_id(&self.access_key_id))
            .field("secret_access_key", &REDACTED)
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| REDACTED),
            )
            .finish()
    }
}

/// One merged profile as the SDKs see it.
#[derive(Debug, Clone)]
pub struct Profile {
    pub name: String,
    pub kind: ProfileKind,
    pub region: Option<String>,
    /// The files that define a section for this profile.
    pub sources: Vec<FileKind>,
    /// Every property, lower-cased keys, SDK values; secrets replaced by [`REDACTED`].
    /// Empty unless the view was built with [`Detail::properties`].
    pub properties: BTreeMap<String, String>,
    /// A hash of what `properties` holds, kept either way: a change of any property
    /// changes it.
    pub digest: u64,
    /// Where an assumed role's credentials come from.
    pub source_profile: Option<String>,
    /// `AKIA…WXYZ`: enough to tell keys apart, useless to an attacker.
    pub masked_access_key_id: Option<String>,
    /// Changes whenever any secret changes; reveals nothing about them.
    pub fingerprint: Option<String>,
    /// What the files (or the SSO cache) say; `estimated` is the daemon's business.
    pub expiry: Option<Expiry>,
    /// Kept only for the profiles [`Detail::secrets_for`] names; never compared, since the
    /// fingerprint changes with any secret.
    pub credentials: Option<Box<Credentials>>,
    /// The access portal: the profile's `sso_start_url`, else its `sso-session`'s. An
    /// account's default `portal`.
    pub sso_start_url: Option<String>,
    /// An SSO profile on an `[sso-session]`: the role it asks its portal for.
    pub sso: Option<SsoRole>,
}

/// The role an SSO profile on an sso-session gets from its portal (GetRoleCredentials).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsoRole {
    pub session: String,
    pub account_id: String,
    pub role_name: String,
    /// The profile names a `[services]` section, which may redirect the portal's endpoint:
    /// the SDK's own provider reads it, cmdrd's portal keeper does not.
    pub own_endpoints: bool,
}

impl PartialEq for Profile {
    /// Everything but the credentials: whether they are kept depends on the view's
    /// [`Detail`], and the fingerprint already changes with them. (Destructured in full, so
    /// a new field cannot be forgotten here.)
    fn eq(&self, other: &Self) -> bool {
        let Profile {
            name,
            kind,
            region,
            sources,
            properties: _,
            digest,
            source_profile,
            masked_access_key_id,
            fingerprint,
            expiry,
            credentials: _,
            sso_start_url,
            sso,
        } = self;
        // `properties` holds exactly what `digest` hashes (a 64-bit SipHash): comparing
        // the digests stands for comparing the maps, which costs a diff of 5,000 profiles
        // more than the rest together.
        *digest == other.digest
            && *fingerprint == other.fingerprint
            && *name == other.name
            && *kind == other.kind
            && *region == other.region
            && *sources == other.sources
            && *source_profile == other.source_profile
            && *masked_access_key_id == other.masked_access_key_id
            && *expiry == other.expiry
            && *sso_start_url == other.sso_start_url
            && *sso == other.sso
    }
}

impl Eq for Profile {}

/// Everything the SDKs would see, keyed by profile name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProfileView {
    pub profiles: BTreeMap<String, Profile>,
    /// `[sso-session x]` sections, values as the SDK reads them.
    pub sso_sessions: BTreeMap<String, BTreeMap<String, String>>,
    /// Things the SDKs silently ignore that a user probably did not mean.
    pub warnings: Vec<String>,
    /// The SSO token cache files the two files name (`<sha1>.json` of each `sso_session`
    /// and `sso_start_url`).
    pub sso_cache_files: BTreeSet<String>,
}

impl ProfileView {
    pub fn get(&self, name: &str) -> Option<&Profile> {
        self.profiles.get(name)
    }
}

/// The raw inputs of one view: exactly the bytes that were read (and hashed).
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    pub config: &'a [u8],
    pub credentials: &'a [u8],
    /// `~/.aws/sso/cache`: file name → contents. Unrelated or broken files are skipped.
    pub sso_cache: &'a BTreeMap<String, Vec<u8>>,
}

/// How much of each profile a view keeps. The daemon keeps the properties only as a
/// digest, and secrets only for the profiles its accounts are bound to: with thousands of
/// profiles that is most of its memory. `doctor`, `paste` and the tests keep everything.
#[derive(Debug, Clone, Copy)]
pub struct Detail<'a> {
    /// Keep [`Profile::properties`]; without it only [`Profile::digest`] tells changes.
    pub properties: bool,
    /// Keep [`Profile::credentials`] of these profiles only (`None`: of every profile).
    pub secrets_for: Option<&'a BTreeSet<String>>,
    /// The view before this one: where a file's secrets were [`redact_secrets`]-ed away,
    /// fingerprints and credentials are taken from it.
    pub previous: Option<&'a ProfileView>,
}

impl Detail<'static> {
    pub const FULL: Detail<'static> = Detail {
        properties: true,
        secrets_for: None,
        previous: None,
    };
}

/// `AKIAIOSFODNN7EXAMPLE` → `AKIA…MPLE`.
pub fn mask_access_key_id(id: &str) -> String {
    let chars: Vec<char> = id.chars().collect();
    if chars.len() <= 8 {
        return "…".to_owned();
    }
    let head: String = chars[..4].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}…{tail}")
}

/// The fingerprint of a profile's keys: what the view shows and what a hand-out's
/// `CMDR_FINGERPRINT` is compared with (one recipe, here).
pub fn keys_fingerprint(access_key_id: &str, secret: &str, session_token: Option<&str>) -> String {
    fingerprint_of(&[access_key_id, secret, session_token.unwrap_or("")])
}

/// A domain-separated SHA-256 over the secret parts, 16 hex digits.
pub fn fingerprint_of(parts: &[&str]) -> String {
    let mut hasher = sha2::Sha256::new();
    hasher.update(b"cmdr-fingerprint-v1");
    for part in parts {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part.as_bytes());
    }
    let digest = hasher.finalize();
    hex::encode(&digest[..8])
}

fn as_text(kind: FileKind, bytes: &[u8]) -> Result<&str, ParseError> {
    std::str::from_utf8(bytes).map_err(|err| {
        let valid = &bytes[..err.valid_up_to()];
        let line = valid.iter().filter(|b| **b == b'\n').count() + 1;
        ParseError {
            file: kind,
            line: u32::try_from(line).ok(),
            message: "file is not valid UTF-8".to_owned(),
        }
    })
}
