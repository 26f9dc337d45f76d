//! The profile view: what the AWS SDKs see after merging the config and credentials files,
//! plus what cmdr derives from it (kind, region, source files, masked key, fingerprint,
//! expiry). Secrets are kept apart in [`Credentials`], which never prints and is zeroed on drop.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::hash::{Hash as _, Hasher as _};

use chrono::{DateTime, Utc};
use sha1::Digest as _;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::expiry::{EXPIRY_KEYS, Expiry, ExpirySource, parse_timestamp};
use crate::grammar;

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
}

impl ProfileKind {
    pub fn label(self) -> &'static str {
        match self {
            ProfileKind::Static => "static",
            ProfileKind::Session => "session",
            ProfileKind::Sso => "sso",
            ProfileKind::AssumeRole => "assume-role",
            ProfileKind::CredentialProcess => "credential-process",
            ProfileKind::WebIdentity => "web-identity",
            ProfileKind::Other => "other",
        }
    }
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

/// A file that parses, with every secret value replaced by a stand-in: what the daemon
/// keeps of a file's last good version (a fallback should the file break), so that each
/// token is held once, in the view of the profiles that need it, not in a copy of the file.
/// Parsing it gives the same view except fingerprints and credentials, which
/// [`Detail::previous`] supplies.
pub fn redact_secrets(bytes: &[u8]) -> Vec<u8> {
    match std::str::from_utf8(bytes) {
        Ok(text) => grammar::redact(text).into_bytes(),
        Err(_) => bytes.to_vec(),
    }
}

/// Checks one file against the grammar alone, so an error names the right file.
pub fn check_file(kind: FileKind, bytes: &[u8]) -> Result<(), ParseError> {
    grammar::check(kind, as_text(kind, bytes)?)
}

/// Builds the merged view of both files, keeping everything. Every file that does not
/// parse gives an error with its line; any error means no view (the caller keeps the last
/// good one).
pub fn parse_view(inputs: Inputs<'_>) -> Result<ProfileView, Vec<ParseError>> {
    parse_view_with(inputs, Detail::FULL)
}

/// [`parse_view`], keeping what `detail` asks for.
pub fn parse_view_with(
    inputs: Inputs<'_>,
    detail: Detail<'_>,
) -> Result<ProfileView, Vec<ParseError>> {
    let mut errors = Vec::new();
    let config = as_text(FileKind::Config, inputs.config).map_err(|e| errors.push(e));
    let credentials =
        as_text(FileKind::Credentials, inputs.credentials).map_err(|e| errors.push(e));
    let (Ok(config), Ok(credentials)) = (config, credentials) else {
        return Err(errors);
    };
    let parsed = grammar::parse(config, credentials)?;
    let cache = SsoCache::new(inputs.sso_cache);

    let mut view = ProfileView {
        warnings: parsed.warnings.clone(),
        ..ProfileView::default()
    };
    for (name, session) in &parsed.sso_sessions {
        let properties = session
            .props
            .iter()
            .map(|(k, v)| (k.to_owned(), shown(k, v).to_owned()))
            .collect();
        view.sso_sessions.insert((*name).to_owned(), properties);
    }
    // Sorted already, so the map is built in bulk.
    view.profiles = parsed
        .profiles
        .iter()
        .map(|(name, section)| {
            let profile = build_profile(name, section, &parsed, &cache, detail);
            ((*name).to_owned(), profile)
        })
        .collect();
    resolve_source_profile_expiry(&mut view);
    Ok(view)
}

/// An assumed role lives no longer than the credentials it is assumed from: follow the
/// `source_profile` chain (cycle-safe) to the first profile with a known expiry.
fn resolve_source_profile_expiry(view: &mut ProfileView) {
    let mut found = Vec::new();
    for (name, profile) in &view.profiles {
        if profile.kind != ProfileKind::AssumeRole || profile.expiry.is_some() {
            continue;
        }
        let mut current = profile;
        let mut visited = BTreeSet::from([name.as_str()]);
        while let Some(source) = &current.source_profile {
            if !visited.insert(source.as_str()) {
                break;
            }
            let Some(next) = view.profiles.get(source) else {
                break;
            };
            if let Some(at) = next.expiry.as_ref().and_then(|e| e.at) {
                found.push((
                    name.clone(),
                    Expiry::at(at, ExpirySource::SourceProfile(source.clone())),
                ));
                break;
            }
            current = next;
        }
    }
    for (name, expiry) in found {
        if let Some(profile) = view.profiles.get_mut(&name) {
            profile.expiry = Some(expiry);
        }
    }
}

/// Parses both files, and a file that does not parse is replaced by its `fallback` bytes
/// (the last good ones, or nothing) so that the other file still counts. Returns the view
/// (`None` if even that does not parse) and the errors of the files that fell back.
pub fn parse_view_or(
    inputs: Inputs<'_>,
    fallback: [&[u8]; 2],
    detail: Detail<'_>,
) -> (Option<ProfileView>, Vec<ParseError>) {
    let mut fell_back = [false; 2];
    let mut errors = Vec::new();
    loop {
        let attempt = Inputs {
            config: if fell_back[0] {
                fallback[0]
            } else {
                inputs.config
            },
            credentials: if fell_back[1] {
                fallback[1]
            } else {
                inputs.credentials
            },
            sso_cache: inputs.sso_cache,
        };
        match parse_view_with(attempt, detail) {
            Ok(view) => return (Some(view), errors),
            Err(found) => {
                let mut progressed = false;
                for e in found {
                    let index = usize::from(e.file == FileKind::Credentials);
                    if !fell_back[index] {
                        fell_back[index] = true;
                        progressed = true;
                        errors.push(e);
                    }
                }
                if !progressed {
                    return (None, errors);
                }
            }
        }
    }
}

fn build_profile(
    name: &str,
    section: &grammar::Section<'_>,
    parsed: &grammar::Parsed<'_>,
    cache: &SsoCache<'_>,
    detail: Detail<'_>,
) -> Profile {
    let props = &section.props;
    let get = |key| props.get(key);
    let non_empty = |key| props.get_non_empty(key);
    let access_key_id = non_empty("aws_access_key_id");
    let secret = non_empty("aws_secret_access_key");
    let token = get("aws_session_token")
        .or_else(|| get("aws_security_token"))
        .filter(|v| !v.is_empty());
    let kind = classify(props, access_key_id.is_some(), token.is_some());

    let keep_secrets = detail.secrets_for.is_none_or(|names| names.contains(name));
    // Secrets of a redacted last good file: the view built from the real one knows them.
    // (Were a profile's secrets split across both files and only one redacted, its
    // fingerprint stays as it was until the broken file parses again.)
    let (mut fingerprint, credentials) = if [secret, token].contains(&Some(grammar::STAND_IN)) {
        let before = detail.previous.and_then(|view| view.get(name));
        (
            before.and_then(|p| p.fingerprint.clone()),
            before
                .filter(|_| keep_secrets)
                .and_then(|p| p.credentials.clone()),
        )
    } else {
        match (access_key_id, secret) {
            (Some(id), Some(secret)) => (
                Some(fingerprint_of(&[id, secret, token.unwrap_or("")])),
                keep_secrets.then(|| {
                    Box::new(Credentials {
                        access_key_id: id.to_owned(),
                        secret_access_key: secret.to_owned(),
                        session_token: token.map(str::to_owned),
                    })
                }),
            ),
            _ => (None, None),
        }
    };
    let mut expiry = EXPIRY_KEYS.iter().find_map(|key| {
        let at = parse_timestamp(get(key)?)?;
        Some(Expiry::at(at, ExpirySource::Key(key)))
    });
    if expiry.is_none() {
        expiry = section
            .expires_comment
            .map(|at| Expiry::at(at, ExpirySource::Comment));
    }
    if kind == ProfileKind::Sso {
        let session = get("sso_session");
        let start_url = get("sso_start_url").or_else(|| {
            parsed
                .sso_sessions
                .get(session?)
                .and_then(|s| s.props.get("sso_start_url"))
        });
        if let Some(token) = cache.lookup(session, start_url) {
            fingerprint = Some(fingerprint_of(&[
                &token.access_token,
                get("sso_account_id").unwrap_or_default(),
                get("sso_role_name").unwrap_or_default(),
            ]));
            if expiry.is_none() {
                expiry = token
                    .expires_at
                    .map(|at| Expiry::at(at, ExpirySource::SsoCache));
            }
        }
    }
    if expiry.is_none() && kind == ProfileKind::Static {
        expiry = Some(Expiry::never());
    }

    // What is shown of each property: secrets replaced, keys sorted.
    let mut shown: Vec<(&str, &str)> = section
        .props
        .iter()
        .map(|(k, v)| (k, shown(k, v)))
        .collect();
    shown.sort_unstable();
    let mut hasher = std::hash::DefaultHasher::new();
    shown.hash(&mut hasher);
    let properties = if detail.properties {
        shown
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    } else {
        BTreeMap::new()
    };
    Profile {
        name: name.to_owned(),
        kind,
        region: non_empty("region").map(str::to_owned),
        sources: [FileKind::Config, FileKind::Credentials]
            .into_iter()
            .filter(|kind| section.sources[usize::from(*kind == FileKind::Credentials)])
            .collect(),
        properties,
        digest: hasher.finish(),
        source_profile: get("source_profile").map(str::to_owned),
        masked_access_key_id: access_key_id.map(mask_access_key_id),
        fingerprint,
        expiry,
        credentials,
        sso_start_url: non_empty("sso_start_url")
            .or_else(|| {
                let session = parsed.sso_sessions.get(get("sso_session")?)?;
                session.props.get_non_empty("sso_start_url")
            })
            .map(str::to_owned),
    }
}

/// A property's value as the view shows it: secrets never.
fn shown<'v>(key: &str, value: &'v str) -> &'v str {
    if SECRET_KEYS.contains(&key) {
        REDACTED
    } else {
        value
    }
}

fn classify(props: &grammar::Props<'_>, has_key: bool, has_token: bool) -> ProfileKind {
    let has = |key| props.get_non_empty(key).is_some();
    if has("role_arn") && has("web_identity_token_file") {
        ProfileKind::WebIdentity
    } else if has("role_arn") && (has("source_profile") || has("credential_source")) {
        ProfileKind::AssumeRole
    } else if has_key {
        if has_token {
            ProfileKind::Session
        } else {
            ProfileKind::Static
        }
    } else if has("sso_session") || has("sso_start_url") || has("sso_account_id") {
        ProfileKind::Sso
    } else if has("credential_process") {
        ProfileKind::CredentialProcess
    } else {
        ProfileKind::Other
    }
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

/// A token from the SSO cache. Only the hash of `access_token` leaves this module.
struct CachedToken {
    access_token: String,
    expires_at: Option<DateTime<Utc>>,
}

struct SsoCache<'a> {
    files: &'a BTreeMap<String, Vec<u8>>,
}

impl<'a> SsoCache<'a> {
    fn new(files: &'a BTreeMap<String, Vec<u8>>) -> Self {
        SsoCache { files }
    }

    /// The cache file is named by the SHA-1 of the session name, or else of the start URL.
    fn lookup(&self, session: Option<&str>, start_url: Option<&str>) -> Option<CachedToken> {
        let key = session.or(start_url)?;
        let file = format!("{}.json", hex::encode(sha1::Sha1::digest(key.as_bytes())));
        let bytes = self.files.get(&file)?;
        let json: serde_json::Value = serde_json::from_slice(bytes).ok()?;
        let access_token = json.get("accessToken")?.as_str()?.to_owned();
        let expires_at = json
            .get("expiresAt")
            .and_then(|v| v.as_str())
            .and_then(parse_timestamp);
        Some(CachedToken {
            access_token,
            expires_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(config: &str, credentials: &str) -> ProfileView {
        let cache = BTreeMap::new();
        parse_view(Inputs {
            config: config.as_bytes(),
            credentials: credentials.as_bytes(),
            sso_cache: &cache,
        })
        .expect("parses")
    }

    fn check(config: &str, credentials: &str, name: &str, kind: ProfileKind, region: Option<&str>) {
        let v = view(config, credentials);
        let p = v
            .get(name)
            .unwrap_or_else(|| panic!("profile {name} missing in {v:?}"));
        assert_eq!(p.kind, kind, "{name}");
        assert_eq!(p.region.as_deref(), region, "{name}");
    }

    const KEYS: &str = "aws_access_key_id = AKIAIOSFODNN7EXAMPLE\naws_secret_access_key = s3cr3t\n";

    #[test]
    fn kinds_and_regions() {
        let cases: &[(&str, &str, &str, ProfileKind, Option<&str>)] = &[
            ("", &format!("[a]\n{KEYS}"), "a", ProfileKind::Static, None),
            (
                "",
                &format!("[a]\n{KEYS}aws_session_token = tok\n"),
                "a",
                ProfileKind::Session,
                None,
            ),
            (
                "[profile a]\nregion = eu-west-1\n",
                &format!("[a]\n{KEYS}"),
                "a",
                ProfileKind::Static,
                Some("eu-west-1"),
            ),
            (
                "[profile r]\nrole_arn = arn:aws:iam::1:role/x\nsource_profile = a\n",
                "",
                "r",
                ProfileKind::AssumeRole,
                None,
            ),
            (
                "[profile s]\nsso_session = corp\nsso_account_id = 1\nsso_role_name = R\n\
                 [sso-session corp]\nsso_start_url = https://x\nsso_region = us-east-1\n",
                "",
                "s",
                ProfileKind::Sso,
                None,
            ),
            (
                "[profile p]\ncredential_process = /bin/true\n",
                "",
                "p",
                ProfileKind::CredentialProcess,
                None,
            ),
            (
                "[profile w]\nrole_arn = arn\nweb_identity_token_file = /t\n",
                "",
                "w",
                ProfileKind::WebIdentity,
                None,
            ),
            (
                "[default]\nregion = us-east-1\n",
                "",
                "default",
                ProfileKind::Other,
                Some("us-east-1"),
            ),
        ];
        for (config, credentials, name, kind, region) in cases {
            check(config, credentials, name, *kind, *region);
        }
    }

    #[test]
    fn sdk_semantics_are_kept() {
        // `[profile default]` beats `[default]` in config; credentials win per key;
        // a `#` inside a value is only a comment after whitespace; keys are lower-cased.
        let v = view(
            "[default]\nregion = us-west-1\n[profile default]\nregion = eu-north-1\n\
             [profile a]\nRegion = ap-south-1\noutput = json#not-a-comment ; a comment\n\
             [notprefixed]\nregion = x\n",
            "[a]\nregion = sa-east-1\n",
        );
        assert_eq!(
            v.get("default").and_then(|p| p.region.as_deref()),
            Some("eu-north-1")
        );
        let a = v.get("a").expect("a");
        assert_eq!(a.region.as_deref(), Some("sa-east-1"));
        assert_eq!(
            a.properties.get("output").map(String::as_str),
            Some("json#not-a-comment")
        );
        assert_eq!(a.sources, vec![FileKind::Config, FileKind::Credentials]);
        assert!(v.get("notprefixed").is_none());
        assert!(
            v.warnings.iter().any(|w| w.contains("[notprefixed]")),
            "{:?}",
            v.warnings
        );
    }

    #[test]
    fn secrets_are_redacted_and_fingerprinted() {
        let v = view("", &format!("[a]\n{KEYS}aws_session_token = tok1\n"));
        let a = v.get("a").expect("a");
        assert_eq!(a.properties["aws_secret_access_key"], REDACTED);
        assert_eq!(a.properties["aws_session_token"], REDACTED);
        assert_eq!(a.properties["aws_access_key_id"], "AKIAIOSFODNN7EXAMPLE");
        assert_eq!(a.masked_access_key_id.as_deref(), Some("AKIA…MPLE"));
        let debug = format!("{v:?}");
        assert!(
            !debug.contains("s3cr3t") && !debug.contains("tok1"),
            "{debug}"
        );

        let fp1 = a.fingerprint.clone().expect("fingerprint");
        let v2 = view("", &format!("[a]\n{KEYS}aws_session_token = tok2\n"));
        let fp2 = v2
            .get("a")
            .and_then(|p| p.fingerprint.clone())
            .expect("fingerprint");
        assert_ne!(fp1, fp2);
        assert_eq!(fp1.len(), 16);
        // Non-secret edits keep the fingerprint.
        let v3 = view(
            "[profile a]\nregion = eu-west-1\n",
            &format!("[a]\n{KEYS}aws_session_token = tok1\n"),
        );
        assert_eq!(v3.get("a").and_then(|p| p.fingerprint.clone()), Some(fp1));
    }

    #[test]
    fn errors_name_file_and_line() {
        let cache = BTreeMap::new();
        let err = parse_view(Inputs {
            config: b"[profile a]\nregion = x\n",
            credentials: b"[a]\naws_access_key_id = A\n[broken\n",
            sso_cache: &cache,
        })
        .expect_err("broken");
        assert_eq!(err.len(), 1);
        assert_eq!(err[0].file, FileKind::Credentials);
        assert_eq!(err[0].line, Some(3));
        assert!(err[0].message.contains("]"), "{}", err[0].message);

        let err = parse_view(Inputs {
            config: b"[profile a]\nno equals sign here\n",
            credentials: b"",
            sso_cache: &cache,
        })
        .expect_err("broken");
        assert_eq!((err[0].file, err[0].line), (FileKind::Config, Some(2)));
        assert!(!err[0].message.contains("no equals"), "{}", err[0].message);

        let err = parse_view(Inputs {
            config: b"",
            credentials: b"[a]\n\xff\xfe\n",
            sso_cache: &cache,
        })
        .expect_err("binary");
        assert_eq!((err[0].file, err[0].line), (FileKind::Credentials, Some(2)));
    }

    #[test]
    fn every_expiry_key_is_read() {
        for key in crate::expiry::EXPIRY_KEYS {
            let v = view(
                "",
                &format!("[a]\n{KEYS}aws_session_token = t\n{key} = 2026-11-29T10:00:00+0000\n"),
            );
            let e = v.get("a").and_then(|p| p.expiry.clone()).expect("expiry");
            assert_eq!(e.source.label(), *key);
            assert_eq!(
                e.at.map(|a| a.to_rfc3339()).as_deref(),
                Some("2026-11-29T10:00:00+00:00")
            );
        }
    }

    /// The view of redacted files, given the view of the real ones, is the same view.
    fn check_redacted(config: &str, credentials: &str) {
        let cache = BTreeMap::new();
        let real = view(config, credentials);
        let (config_r, credentials_r) = (
            redact_secrets(config.as_bytes()),
            redact_secrets(credentials.as_bytes()),
        );
        let detail = Detail {
            previous: Some(&real),
            ..Detail::FULL
        };
        let again = parse_view_with(
            Inputs {
                config: &config_r,
                credentials: &credentials_r,
                sso_cache: &cache,
            },
            detail,
        )
        .expect("a redacted file parses");
        assert_eq!(again, real, "{config:?} {credentials:?}");
        for (name, p) in &real.profiles {
            assert_eq!(again.profiles[name].credentials, p.credentials, "{name}");
            if let Some(c) = &p.credentials {
                let kept =
                    [&config_r, &credentials_r].map(|b| String::from_utf8_lossy(b).into_owned());
                for secret in [Some(&c.secret_access_key), c.session_token.as_ref()]
                    .into_iter()
                    .flatten()
                {
                    for part in secret.split('\n') {
                        assert!(
                            !kept.iter().any(|k| k.contains(part)),
                            "{part:?} kept in {kept:?}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn redacted_files_keep_the_view_but_not_the_secrets() {
        check_redacted("", &format!("[a]\n{KEYS}aws_session_token = tok-one\n"));
        check_redacted(
            "[profile a]\nregion = eu-west-1\naws_session_token = in-config-zz\n",
            "[a]\r\nAWS_Access_Key_Id = AKIAIOSFODNN7EXAMPLE\r\naws_secret_access_key = sec-two # c\r\n\
             aws_security_token = legacy-tok\r\n# Expires: 2030-01-01T00:00:00Z\r\n",
        );
        // Continuation lines, an empty value continued, empty values, a last line without
        // a line end, duplicates.
        check_redacted(
            "",
            "[a]\naws_access_key_id = AKIAIOSFODNN7EXAMPLE\naws_secret_access_key = s3c\n  r3t-part\n\
             aws_session_token =\n# Expires: 2030-01-01T00:00:00Z\n\n  x-tok = y-part\n\
             region = r\n[b]\naws_access_key_id = AKIAIOSFODNN7EXAMPLE\naws_secret_access_key =\n\
             [a]\naws_secret_access_key = later-sec\naws_session_token = tail-tok\r",
        );
        assert!(
            String::from_utf8_lossy(&redact_secrets(b"[a]\naws_session_token = t\n"))
                .contains("aws_session_token")
        );
    }

    #[test]
    fn a_broken_file_falls_back_and_the_other_still_counts() {
        let cache = BTreeMap::new();
        let inputs = Inputs {
            config: b"[profile a]\nregion = new\n",
            credentials: b"[broken\n",
            sso_cache: &cache,
        };
        let good = b"[a]\naws_access_key_id = AKIAEXAMPLEEXAMPLE\naws_secret_access_key = s\n";
        let (view, errors) = parse_view_or(inputs, [b"", good], Detail::FULL);
        let view = view.expect("view");
        assert_eq!(errors.len(), 1);
        assert_eq!(
            (errors[0].file, errors[0].line),
            (FileKind::Credentials, Some(1))
        );
        let a = view.get("a").expect("a");
        assert_eq!(a.region.as_deref(), Some("new"));
        assert!(a.credentials.is_some());
        // Fallbacks that are broken too give no view.
        let (view, errors) = parse_view_or(inputs, [b"", b"[also broken\n"], Detail::FULL);
        assert!(view.is_none());
        assert_eq!(errors.len(), 1);
    }

    #[test]
    fn expiry_keys_comments_and_sso_cache() {
        let v = view(
            "",
            &format!(
                "[a]\n{KEYS}aws_session_token = t\nx_security_token_expires = 2026-11-29T10:00:00Z\n\
                 [b]\n# Expires: 2026-11-29T11:00:00Z\n{KEYS}aws_session_token = t\n\
                 [c]\n{KEYS}aws_session_token = t\naws_session_expiration = 2026-11-29T12:00:00+0000\n\
                 [d]\n{KEYS}\n[e]\n{KEYS}aws_session_token = t\n"
            ),
        );
        let label = |n: &str| {
            v.get(n)
                .and_then(|p| p.expiry.as_ref())
                .map(|e| (e.at.map(|a| a.to_rfc3339()), e.source.label()))
        };
        assert_eq!(
            label("a"),
            Some((
                Some("2026-11-29T10:00:00+00:00".into()),
                "x_security_token_expires".into()
            ))
        );
        assert_eq!(
            label("b"),
            Some((Some("2026-11-29T11:00:00+00:00".into()), "comment".into()))
        );
        assert_eq!(
            label("c"),
            Some((
                Some("2026-11-29T12:00:00+00:00".into()),
                "aws_session_expiration".into()
            ))
        );
        assert_eq!(label("d"), Some((None, "never".into())));
        assert_eq!(label("e"), None);

        // An assumed role inherits the expiry of its source chain; cycles end the walk.
        let v = view(
            "[profile r1]\nrole_arn = arn:aws:iam::1:role/x\nsource_profile = r2\n\
             [profile r2]\nrole_arn = arn:aws:iam::1:role/y\nsource_profile = a\n\
             [profile c1]\nrole_arn = arn\nsource_profile = c2\n\
             [profile c2]\nrole_arn = arn\nsource_profile = c1\n",
            &format!(
                "[a]\n{KEYS}aws_session_token = t\nx_security_token_expires = 2026-11-29T10:00:00Z\n"
            ),
        );
        let r1 = v
            .get("r1")
            .and_then(|p| p.expiry.clone())
            .expect("r1 expiry");
        assert_eq!(r1.source.label(), "source_profile:a");
        assert!(v.get("c1").and_then(|p| p.expiry.clone()).is_none());

        let mut cache = BTreeMap::new();
        let name = format!("{}.json", hex::encode(sha1::Sha1::digest(b"corp")));
        cache.insert(
            name,
            br#"{"accessToken":"tok","expiresAt":"2021-12-07T01:19:12UTC"}"#.to_vec(),
        );
        cache.insert("junk.json".into(), b"not json".to_vec());
        let config = "[profile s]\nsso_session = corp\nsso_account_id = 1\nsso_role_name = R\n\
                      [sso-session corp]\nsso_start_url = https://x\n";
        let v = parse_view(Inputs {
            config: config.as_bytes(),
            credentials: b"",
            sso_cache: &cache,
        })
        .expect("parses");
        let s = v.get("s").expect("s");
        assert!(s.fingerprint.is_some());
        let e = s.expiry.as_ref().expect("expiry");
        assert_eq!(e.source, ExpirySource::SsoCache);
        assert_eq!(
            e.at.map(|a| a.to_rfc3339()).as_deref(),
            Some("2021-12-07T01:19:12+00:00")
        );
        assert_eq!(v.sso_sessions["corp"]["sso_start_url"], "https://x");
        // The portal comes from the sso-session.
        assert_eq!(s.sso_start_url.as_deref(), Some("https://x"));

        // Legacy SSO profiles: the cache file is named by the start URL's hash.
        let mut cache = BTreeMap::new();
        let name = format!(
            "{}.json",
            hex::encode(sha1::Sha1::digest(b"https://legacy"))
        );
        cache.insert(
            name,
            br#"{"accessToken":"tok","expiresAt":"2026-11-29T10:00:00Z","region":"x"}"#.to_vec(),
        );
        let v = parse_view(Inputs {
            config: b"[profile l]\nsso_start_url = https://legacy\nsso_account_id = 1\nsso_role_name = R\nsso_region = us-east-1\n",
            credentials: b"",
            sso_cache: &cache,
        })
        .expect("parses");
        let e = v.get("l").and_then(|p| p.expiry.clone()).expect("expiry");
        // A legacy profile names its portal itself.
        assert_eq!(
            v.get("l").and_then(|p| p.sso_start_url.as_deref()),
            Some("https://legacy")
        );
        assert_eq!(
            e.at.map(|a| a.to_rfc3339()).as_deref(),
            Some("2026-11-29T10:00:00+00:00")
        );
        // No cache file: no expiry, no fingerprint, no error.
        let v = parse_view(Inputs {
            config: b"[profile l]\nsso_start_url = https://other\nsso_account_id = 1\n",
            credentials: b"",
            sso_cache: &cache,
        })
        .expect("parses");
        assert!(
            v.get("l")
                .is_some_and(|p| p.expiry.is_none() && p.fingerprint.is_none())
        );
    }
}
