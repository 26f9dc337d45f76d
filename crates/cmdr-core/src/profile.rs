//! The profile view: what the AWS SDKs see after merging the config and credentials files,
//! plus what cmdr derives from it (kind, region, source files, masked key, fingerprint,
//! expiry). Secrets are kept apart in [`Credentials`], which never prints and is zeroed on drop.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use chrono::{DateTime, Utc};
use sha1::Digest as _;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::expiry::{EXPIRY_KEYS, Expiry, ExpirySource, parse_expires_comment, parse_timestamp};
use crate::sdk;

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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub name: String,
    pub kind: ProfileKind,
    pub region: Option<String>,
    /// The files that define a section for this profile.
    pub sources: Vec<FileKind>,
    /// Every property, lower-cased keys, SDK values; secrets replaced by [`REDACTED`].
    pub properties: BTreeMap<String, String>,
    /// `AKIA…WXYZ`: enough to tell keys apart, useless to an attacker.
    pub masked_access_key_id: Option<String>,
    /// Changes whenever any secret changes; reveals nothing about them.
    pub fingerprint: Option<String>,
    /// What the files (or the SSO cache) say; `estimated` is the daemon's business.
    pub expiry: Option<Expiry>,
    pub credentials: Option<Credentials>,
}

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

/// What the line scan learns that the SDK does not expose: key names per section, the
/// `# Expires:` comments, and sections the SDK drops.
#[derive(Default)]
struct Scan {
    /// Profiles (and `sso-session x`) with a section in this file.
    sections: BTreeSet<String>,
    keys: BTreeMap<String, BTreeSet<String>>,
    expires_comment: BTreeMap<String, DateTime<Utc>>,
    warnings: Vec<String>,
}

/// Parses one file with the SDK, so a broken file is attributed to the right path.
pub fn check_file(kind: FileKind, bytes: &[u8]) -> Result<(), ParseError> {
    let text = as_text(kind, bytes)?;
    let (config, credentials) = match kind {
        FileKind::Config => (Some(text), None),
        FileKind::Credentials => (None, Some(text)),
    };
    sdk::load(config, credentials)
        .map(|_| ())
        .map_err(|message| sdk_error(kind, &message))
}

/// Builds the merged view of both files. Each file is checked on its own first, so every
/// error names its file and line; any error means no view (the caller keeps the last good one).
pub fn parse_view(inputs: Inputs<'_>) -> Result<ProfileView, Vec<ParseError>> {
    let mut errors = Vec::new();
    let config = as_text(FileKind::Config, inputs.config).map_err(|e| errors.push(e));
    let credentials =
        as_text(FileKind::Credentials, inputs.credentials).map_err(|e| errors.push(e));
    let (Ok(config), Ok(credentials)) = (config, credentials) else {
        return Err(errors);
    };
    // One SDK load of both files on the happy path; only a failure is worth loading each
    // file alone, to say which file and line is broken.
    let merged = match sdk::load(Some(config), Some(credentials)) {
        Ok(merged) => merged,
        Err(merged_message) => {
            if let Err(message) = sdk::load(Some(config), None) {
                errors.push(sdk_error(FileKind::Config, &message));
            }
            if let Err(message) = sdk::load(None, Some(credentials)) {
                errors.push(sdk_error(FileKind::Credentials, &message));
            }
            if errors.is_empty() {
                errors.push(ParseError {
                    file: FileKind::Credentials,
                    line: None,
                    message: merged_message,
                });
            }
            return Err(errors);
        }
    };

    let config_scan = scan(FileKind::Config, config);
    let credentials_scan = scan(FileKind::Credentials, credentials);
    let cache = SsoCache::new(inputs.sso_cache);

    let mut view = ProfileView::default();
    view.warnings.extend(config_scan.warnings.iter().cloned());
    view.warnings
        .extend(credentials_scan.warnings.iter().cloned());
    for name in merged.sso_sessions() {
        let Some(session) = merged.sso_session(name) else {
            continue;
        };
        let keys = config_scan
            .keys
            .get(&format!("sso-session {name}"))
            .into_iter()
            .flatten();
        let properties = keys
            .filter_map(|key| session.get(key).map(|v| (key.clone(), v.to_owned())))
            .collect();
        view.sso_sessions.insert(name.to_owned(), properties);
    }
    for name in merged.profiles() {
        let Some(sdk_profile) = merged.get_profile(name) else {
            continue;
        };
        let mut sources = Vec::new();
        if config_scan.sections.contains(name) {
            sources.push(FileKind::Config);
        }
        if credentials_scan.sections.contains(name) {
            sources.push(FileKind::Credentials);
        }
        let keys: BTreeSet<&String> = config_scan
            .keys
            .get(name)
            .into_iter()
            .chain(credentials_scan.keys.get(name))
            .flatten()
            .collect();
        let get = |key: &str| sdk_profile.get(key).map(str::to_owned);
        let properties = keys
            .into_iter()
            .filter_map(|key| {
                let value = sdk_profile.get(key)?;
                let shown = if SECRET_KEYS.contains(&key.as_str()) {
                    REDACTED
                } else {
                    value
                };
                Some((key.clone(), shown.to_owned()))
            })
            .collect();
        let comment = credentials_scan
            .expires_comment
            .get(name)
            .or_else(|| config_scan.expires_comment.get(name));
        let profile = build_profile(name, &get, properties, sources, comment, &cache, &merged);
        view.profiles.insert(name.to_owned(), profile);
    }
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
        while let Some(source) = current.properties.get("source_profile") {
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
        match parse_view(attempt) {
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
    get: &dyn Fn(&str) -> Option<String>,
    properties: BTreeMap<String, String>,
    sources: Vec<FileKind>,
    comment: Option<&DateTime<Utc>>,
    cache: &SsoCache<'_>,
    set: &aws_config::profile::ProfileSet,
) -> Profile {
    let access_key_id = get("aws_access_key_id").filter(|v| !v.is_empty());
    let secret = get("aws_secret_access_key").filter(|v| !v.is_empty());
    let token = get("aws_session_token")
        .or_else(|| get("aws_security_token"))
        .filter(|v| !v.is_empty());
    let kind = classify(get, access_key_id.is_some(), token.is_some());
    let credentials = match (&access_key_id, secret) {
        (Some(id), Some(secret)) => Some(Credentials {
            access_key_id: id.clone(),
            secret_access_key: secret,
            session_token: token,
        }),
        _ => None,
    };

    let mut fingerprint = credentials.as_ref().map(|c| {
        fingerprint_of(&[
            &c.access_key_id,
            &c.secret_access_key,
            c.session_token.as_deref().unwrap_or(""),
        ])
    });
    let mut expiry = EXPIRY_KEYS.iter().find_map(|key| {
        let at = parse_timestamp(&get(key)?)?;
        Some(Expiry::at(at, ExpirySource::Key((*key).to_owned())))
    });
    if expiry.is_none() {
        expiry = comment.map(|at| Expiry::at(*at, ExpirySource::Comment));
    }
    if kind == ProfileKind::Sso {
        let session = get("sso_session");
        let start_url = get("sso_start_url").or_else(|| {
            let session = set.sso_session(session.as_deref()?)?;
            session.get("sso_start_url").map(str::to_owned)
        });
        if let Some(token) = cache.lookup(session.as_deref(), start_url.as_deref()) {
            fingerprint = Some(fingerprint_of(&[
                &token.access_token,
                &get("sso_account_id").unwrap_or_default(),
                &get("sso_role_name").unwrap_or_default(),
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
    Profile {
        name: name.to_owned(),
        kind,
        region: get("region").filter(|r| !r.is_empty()),
        sources,
        properties,
        masked_access_key_id: access_key_id.as_deref().map(mask_access_key_id),
        fingerprint,
        expiry,
        credentials,
    }
}

fn classify(get: &dyn Fn(&str) -> Option<String>, has_key: bool, has_token: bool) -> ProfileKind {
    let has = |key: &str| get(key).is_some_and(|v| !v.is_empty());
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

/// The SDK says `error parsing <path> on line N:\n  <message>`; keep N and the message.
fn sdk_error(kind: FileKind, text: &str) -> ParseError {
    let line = text.split_once(" on line ").and_then(|(_, rest)| {
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    });
    let message = match text.split_once(":\n") {
        Some((_, message)) => message.trim().to_owned(),
        None => text.trim().to_owned(),
    };
    ParseError {
        file: kind,
        line,
        message,
    }
}

/// A line scan of one file for what the SDK parser does not expose. It never decides
/// semantics: values always come from the SDK.
fn scan(kind: FileKind, text: &str) -> Scan {
    let mut out = Scan::default();
    let mut section: Option<String> = None;
    for (index, line) in text.lines().enumerate() {
        if line.starts_with('[') {
            section = section_name(kind, line);
            if let Some(name) = &section {
                out.sections.insert(name.clone());
            } else {
                let header = line
                    .split(']')
                    .next()
                    .unwrap_or(line)
                    .trim_start_matches('[');
                out.warnings.push(format!(
                    "{} file, line {}: section [{}] is ignored by the AWS SDKs{}",
                    kind.label(),
                    index + 1,
                    header.trim(),
                    if kind == FileKind::Config {
                        " (config sections need the `profile ` prefix)"
                    } else {
                        ""
                    }
                ));
            }
            continue;
        }
        let Some(name) = &section else { continue };
        let trimmed = line.trim_start();
        if trimmed.starts_with(['#', ';']) {
            if let Some(at) = parse_expires_comment(trimmed) {
                out.expires_comment.insert(name.clone(), at);
            }
            continue;
        }
        if line.starts_with([' ', '\t']) {
            continue;
        }
        if let Some((key, _)) = line.split_once('=') {
            let key = key.trim().to_ascii_lowercase();
            if !key.is_empty() {
                out.keys.entry(name.clone()).or_default().insert(key);
            }
        }
    }
    out
}

/// The profile (or `sso-session NAME`) a section header introduces, as the SDK names it.
fn section_name(kind: FileKind, line: &str) -> Option<String> {
    let inner = line.strip_prefix('[')?;
    let inner = inner[..inner.find(']')?].trim();
    match kind {
        FileKind::Credentials => Some(inner.to_owned()),
        FileKind::Config => {
            let mut words = inner.split_whitespace();
            match (words.next(), words.next(), words.next()) {
                (Some("default"), None, None) => Some("default".to_owned()),
                (Some("profile"), Some(name), None) => Some(name.to_owned()),
                (Some("sso-session"), Some(name), None) => Some(format!("sso-session {name}")),
                (Some("services"), Some(name), None) => Some(format!("services {name}")),
                _ => None,
            }
        }
    }
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

    #[test]
    fn a_broken_file_falls_back_and_the_other_still_counts() {
        let cache = BTreeMap::new();
        let inputs = Inputs {
            config: b"[profile a]\nregion = new\n",
            credentials: b"[broken\n",
            sso_cache: &cache,
        };
        let good = b"[a]\naws_access_key_id = AKIAEXAMPLEEXAMPLE\naws_secret_access_key = s\n";
        let (view, errors) = parse_view_or(inputs, [b"", good]);
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
        let (view, errors) = parse_view_or(inputs, [b"", b"[also broken\n"]);
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
