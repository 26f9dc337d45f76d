//! `cmdrctl doctor`: parses both AWS files without the daemon and reports problems with
//! path and line. Exit 1 when there are errors.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

use cmdr_core::{FileKind, Inputs, parse_view_or};
use serde::Serialize;
use serde_json::Value;

#[derive(Serialize)]
struct Report {
    /// Property → value; a sub-property block (`s3 =` then indented lines) is an object.
    profiles: BTreeMap<String, BTreeMap<String, Value>>,
    /// The same for `[sso-session NAME]` sections.
    sso_sessions: BTreeMap<String, BTreeMap<String, Value>>,
    errors: Vec<Problem>,
    warnings: Vec<String>,
}

#[derive(Serialize)]
struct Problem {
    path: String,
    line: Option<u32>,
    message: String,
}

pub fn run(config_file: Option<&Path>, json: bool) -> ExitCode {
    let settings = match cmdr_config::Settings::load(config_file, None) {
        Ok(s) => s,
        Err(err) => {
            eprintln!("cmdrctl: {err:#}");
            return ExitCode::from(1);
        }
    };
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    let mut read = |kind: FileKind, path: &Path| -> Vec<u8> {
        let problem = |message: String| Problem {
            path: path.display().to_string(),
            line: None,
            message,
        };
        match cmdr_config::userfile::read_bounded(path, cmdr_config::userfile::MAX_USER_FILE_LEN) {
            Ok(bytes) => {
                if kind == FileKind::Credentials {
                    warnings.extend(cmdr_config::userfile::exposed_warning(path));
                }
                bytes
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                warnings.push(format!("{} does not exist", path.display()));
                Vec::new()
            }
            Err(err) => {
                errors.push(problem(format!("cannot read: {err}")));
                Vec::new()
            }
        }
    };
    let config = read(FileKind::Config, &settings.aws_config);
    let credentials = read(FileKind::Credentials, &settings.aws_credentials);
    let mut hidden = Vec::new();
    for (kind, path, bytes) in [
        (FileKind::Config, &settings.aws_config, &config),
        (
            FileKind::Credentials,
            &settings.aws_credentials,
            &credentials,
        ),
    ] {
        warnings.extend(unreadable_expiries(path, bytes));
        for key in unshown_keys(kind, bytes) {
            warnings.push(format!(
                "{}:{}: a key whose name is not shown: it does not look like a key name and may be part of a secret (a session token wrapped onto a new line?); the SDKs read it as a key of [{}]",
                path.display(),
                key.line,
                key.section
            ));
            hidden.push(key);
        }
    }
    for (kind, bytes) in [
        (FileKind::Config, &config),
        (FileKind::Credentials, &credentials),
    ] {
        warnings.extend(cmdr_core::profile::default_credentials_warning(kind, bytes));
    }
    let cache = BTreeMap::new();
    // A broken file is reported and left out, so the other file's profiles still show.
    let (view, parse_errors) = parse_view_or(
        Inputs {
            config: &config,
            credentials: &credentials,
            sso_cache: &cache,
        },
        [b"", b""],
        cmdr_core::Detail::FULL,
    );
    // cmdr reads the files with its own parser, built to match the SDK's; here, where time
    // does not matter, the SDK's parser reads them too, and any difference is reported.
    if let (Ok(config), Ok(credentials)) = (
        std::str::from_utf8(&config),
        std::str::from_utf8(&credentials),
    ) && let Some(why) = cmdr_oracle::disagreement(config, credentials)
    {
        warnings.push(format!(
            "cmdr reads these files differently from the AWS SDK ({why}); please report this"
        ));
    }
    for e in parse_errors {
        errors.push(Problem {
            path: match e.file {
                FileKind::Config => settings.aws_config.display().to_string(),
                FileKind::Credentials => settings.aws_credentials.display().to_string(),
            },
            line: e.line,
            message: e.message,
        });
    }
    let view = view.unwrap_or_default();
    warnings.extend(view.warnings.iter().cloned());
    let mut report = Report {
        profiles: view
            .profiles
            .iter()
            .map(|(name, p)| (name.clone(), properties(&p.properties)))
            .collect(),
        sso_sessions: view
            .sso_sessions
            .iter()
            .map(|(name, section)| (name.clone(), properties(section)))
            .collect(),
        errors,
        warnings,
    };
    // Neither the name nor the value of such a key is shown.
    for key in &hidden {
        for section in [&mut report.profiles, &mut report.sso_sessions] {
            if let Some(properties) = section.get_mut(&key.section) {
                properties.remove(&key.key);
            }
        }
    }
    if json {
        crate::output::print_json(&report);
    } else {
        print_text(&report, &settings);
    }
    if report.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// A section's properties for the report, sub-property blocks as objects.
fn properties(section: &BTreeMap<String, String>) -> BTreeMap<String, Value> {
    section
        .iter()
        .map(|(key, value)| (key.clone(), property_value(value)))
        .collect()
}

/// A sub-property block is stored as its lines after an empty first one
/// (`"\nmax_concurrent_requests = 20"`): show it as the object it is.
fn property_value(value: &str) -> Value {
    let Some(block) = value.strip_prefix('\n') else {
        return Value::String(value.to_owned());
    };
    let object = block
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(key, value)| {
            (
                key.trim().to_owned(),
                Value::String(value.trim().to_owned()),
            )
        })
        .collect();
    Value::Object(object)
}

/// A key line whose name may be part of a secret ([`cmdr_core::keyname::showable`]).
struct Unshown {
    line: usize,
    /// The profile or sso-session name of its section.
    section: String,
    /// The key as the report lists it (lower-cased).
    key: String,
}

/// The key lines of a file whose names must not be shown, with their sections.
fn unshown_keys(kind: FileKind, bytes: &[u8]) -> Vec<Unshown> {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return Vec::new();
    };
    const SECRETS: [&str; 3] = [
        "aws_secret_access_key",
        "aws_session_token",
        "aws_security_token",
    ];
    let mut out = Vec::new();
    let mut section = String::new();
    let mut after_secret = false;
    for (index, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        // A continuation line belongs to the value above it.
        if line.starts_with([' ', '\t']) && !trimmed.is_empty() {
            continue;
        }
        if trimmed.is_empty() || trimmed.starts_with(['#', ';']) {
            continue;
        }
        if let Some(inner) = trimmed.strip_prefix('[') {
            let inner = inner.split(']').next().unwrap_or_default().trim();
            section = match (kind, inner.split_once([' ', '\t'])) {
                (FileKind::Config, Some((_, name))) => name.trim().to_owned(),
                _ => inner.to_owned(),
            };
            after_secret = false;
            continue;
        }
        let Some((key, _)) = trimmed.split_once('=') else {
            after_secret = false;
            continue;
        };
        let key = key.trim();
        if cmdr_core::keyname::showable(key, after_secret) {
            after_secret = SECRETS.contains(&key.to_ascii_lowercase().as_str());
        } else {
            out.push(Unshown {
                line: index + 1,
                section: section.clone(),
                key: key.to_ascii_lowercase(),
            });
            after_secret = true;
        }
    }
    out
}

/// Expiry keys whose value is no time cmdr can read: the expiry is then estimated, which
/// the user should know (path and line, never the value).
fn unreadable_expiries(path: &Path, bytes: &[u8]) -> Vec<String> {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.starts_with([' ', '\t']) {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let key = key.trim().to_ascii_lowercase();
        if !cmdr_core::expiry::EXPIRY_KEYS.contains(&key.as_str()) {
            continue;
        }
        // `#` or `;` after whitespace starts a comment, as the SDKs read values.
        let value = [" #", "\t#", " ;", "\t;"]
            .iter()
            .filter_map(|c| value.find(c))
            .min()
            .map_or(value, |end| &value[..end]);
        if cmdr_core::expiry::parse_timestamp(value).is_none() {
            out.push(format!(
                "{}:{}: `{key}` is not a time cmdr can read (use RFC 3339, e.g. 2026-11-29T18:00:00Z); the expiry is estimated instead",
                path.display(),
                index + 1
            ));
        }
    }
    out
}

fn print_text(report: &Report, settings: &cmdr_config::Settings) {
    use crate::output::say;
    say(&format!("config:      {}", settings.aws_config.display()));
    say(&format!(
        "credentials: {}",
        settings.aws_credentials.display()
    ));
    say(&format!("profiles:    {}", report.profiles.len()));
    if !report.sso_sessions.is_empty() {
        say(&format!("sso sessions: {}", report.sso_sessions.len()));
    }
    for e in &report.errors {
        match e.line {
            Some(line) => say(&format!("error: {}:{line}: {}", e.path, e.message)),
            None => say(&format!("error: {}: {}", e.path, e.message)),
        }
    }
    for w in &report.warnings {
        say(&format!("warning: {w}"));
    }
    if report.errors.is_empty() && report.warnings.is_empty() {
        say("no problems found");
    }
}
