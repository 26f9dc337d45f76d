//! Building the view from the parsed files: each profile's kind, region, masked key,
//! fingerprint, properties and expiry (keys, `# Expires:` comments, the SSO cache, the
//! `source_profile` chain), and the fallback to a file's last good bytes.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash as _, Hasher as _};

use crate::PerFile;
use crate::expiry::{EXPIRY_KEYS, Expiry, ExpirySource, parse_timestamp};
use crate::grammar;

use super::sso::{self, SsoCache};
use super::{
    Credentials, Detail, FileKind, Inputs, ParseError, Profile, ProfileKind, ProfileView, REDACTED,
    SECRET_KEYS, SsoRole, as_text, fingerprint_of, keys_fingerprint, mask_access_key_id,
};

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

/// The file as a process started by `cmdrctl exec` sees it: no keys in any section, no
/// credential source in the default profile, every other setting kept (see
/// `grammar/isolate.rs`). Not UTF-8: empty, as the SDKs read it.
pub fn without_credentials(kind: FileKind, bytes: &[u8]) -> Vec<u8> {
    let text = std::str::from_utf8(bytes).unwrap_or("");
    grammar::without_credentials(kind, text).into_bytes()
}

/// The properties that make the file's default profile give credentials: a tool started
/// outside cmdr (no profile named) uses them, whatever account it meant.
pub fn default_credentials(kind: FileKind, bytes: &[u8]) -> Vec<&'static str> {
    std::str::from_utf8(bytes).map_or_else(
        |_| Vec::new(),
        |text| grammar::default_credentials(kind, text),
    )
}

/// What `doctor` and `status` say of a file whose default profile gives credentials, if
/// it does: tools started outside cmdr use them, whatever account was meant.
pub fn default_credentials_warning(kind: FileKind, bytes: &[u8]) -> Option<String> {
    let found = default_credentials(kind, bytes);
    (!found.is_empty()).then(|| {
        format!(
            "{} file: [default] has {}: a tool started without a profile uses these, not an account; start it with `cmdrctl exec NAME` (or in a shell of `cmdrctl env NAME --serve`), where nothing outranks the account",
            kind.label(),
            found.join(", ")
        )
    })
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

/// The view of two files that parse, with no SSO cache: what most tests start from.
#[cfg(test)]
pub(crate) fn parse_files(config: &str, credentials: &str) -> ProfileView {
    let cache = std::collections::BTreeMap::new();
    parse_view(Inputs {
        config: config.as_bytes(),
        credentials: credentials.as_bytes(),
        sso_cache: &cache,
    })
    .expect("parses")
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
        sso_cache_files: sso::named_files(&parsed),
        ..ProfileView::default()
    };
    for (name, session) in &parsed.sso_sessions {
        let properties = session
            .props
            .iter()
            .map(|(k, v)| (k.to_owned(), shown(k, v).into_owned()))
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
            if let Some(at) = next.expiry.as_ref().and_then(|e| e.when()) {
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
    let mut fell_back = PerFile::both(false);
    let mut errors = Vec::new();
    loop {
        let attempt = Inputs {
            config: if fell_back.config {
                fallback[0]
            } else {
                inputs.config
            },
            credentials: if fell_back.credentials {
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
                    if !fell_back[e.file] {
                        fell_back[e.file] = true;
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
                Some(keys_fingerprint(id, secret, token)),
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
            // A refreshable sign-in is one token for the account however often it is
            // refreshed (by cmdrd's keeper, botocore or the CLI): the account and role are
            // the profile's, so a refresh is no token change to accept. A token without a
            // refresh token is fingerprinted by itself, as before.
            let signin = if token.refreshable {
                "sso-sign-in"
            } else {
                token.access_token.as_str()
            };
            fingerprint = Some(fingerprint_of(&[
                signin,
                session.or(start_url).unwrap_or_default(),
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
    let mut shown: Vec<(&str, Cow<'_, str>)> = section
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
            .map(|(k, v)| ((*k).to_owned(), v.clone().into_owned()))
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
            .filter(|kind| section.sources[*kind])
            .collect(),
        properties,
        digest: hasher.finish(),
        source_profile: get("source_profile").map(str::to_owned),
        masked_access_key_id: access_key_id.map(mask_access_key_id),
        fingerprint,
        expiry,
        credentials,
        sso: (kind == ProfileKind::Sso)
            .then(|| {
                Some(SsoRole {
                    session: non_empty("sso_session")?.to_owned(),
                    account_id: non_empty("sso_account_id")?.to_owned(),
                    role_name: non_empty("sso_role_name")?.to_owned(),
                    own_endpoints: non_empty("services").is_some(),
                })
            })
            .flatten(),
        sso_start_url: non_empty("sso_start_url")
            .or_else(|| {
                let session = parsed.sso_sessions.get(get("sso_session")?)?;
                session.props.get_non_empty("sso_start_url")
            })
            .map(str::to_owned),
    }
}

/// A property's value as the view shows it: secrets never, at any depth — a value with
/// sub-properties (`s3 =` then indented `key = value` lines) has its secret ones redacted.
fn shown<'v>(key: &str, value: &'v str) -> Cow<'v, str> {
    if SECRET_KEYS.contains(&key) {
        return Cow::Borrowed(REDACTED);
    }
    let secret_line = |line: &str| {
        line.split_once('=').is_some_and(|(k, _)| {
            SECRET_KEYS
                .iter()
                .any(|s| k.trim_matches([' ', '\t']).eq_ignore_ascii_case(s))
        })
    };
    if !value.contains('\n') || !value.split('\n').any(secret_line) {
        return Cow::Borrowed(value);
    }
    let lines: Vec<Cow<'_, str>> = value
        .split('\n')
        .map(|line| match line.split_once('=') {
            Some((k, _)) if secret_line(line) => Cow::Owned(format!("{k}= {REDACTED}")),
            _ => Cow::Borrowed(line),
        })
        .collect();
    Cow::Owned(lines.join("\n"))
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
    } else if has("login_session") {
        // aws-config's order: after SSO, before credential_process.
        ProfileKind::Login
    } else if has("credential_process") {
        ProfileKind::CredentialProcess
    } else {
        ProfileKind::Other
    }
}
