//! Which portal a name means, and the `[sso-session NAME]` section `login` adds to the
//! config file when missing (atomic write, every other byte and the file's mode kept).

use std::path::Path;

/// A portal: an sso-session's name, start URL and region.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Portal {
    pub session: String,
    pub start_url: String,
    pub region: String,
}

/// The session name for a start URL: its host's first label (`acme` from
/// `https://acme.awsapps.com/start`).
pub fn name_from_url(url: &str) -> Option<String> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let host = rest.split(['/', ':', '?']).next()?;
    let label = host.split('.').next()?;
    (!label.is_empty()
        && label
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'))
    .then(|| label.to_owned())
}

/// Whether two start URLs name the same portal (a trailing `/` aside).
pub fn same_start_url(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

/// The section text for a portal.
pub fn section(portal: &Portal) -> String {
    format!(
        "[sso-session {}]\nsso_start_url = {}\nsso_region = {}\nsso_registration_scopes = sso:account:access\n",
        portal.session, portal.start_url, portal.region
    )
}

/// Appends the portal's section to the config file (created 0600 if missing), keeping
/// every byte already there and the file's mode.
pub fn add_section(config: &Path, portal: &Portal) -> std::io::Result<()> {
    let mut bytes =
        match cmdr_config::userfile::read_bounded(config, cmdr_config::userfile::MAX_USER_FILE_LEN)
        {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
    if !bytes.is_empty() && !bytes.ends_with(b"\n") {
        bytes.push(b'\n');
    }
    if !bytes.is_empty() {
        bytes.push(b'\n');
    }
    bytes.extend_from_slice(section(portal).as_bytes());
    cmdr_config::write_atomic(config, &bytes, 0o600)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_names_come_from_the_host() {
        assert_eq!(
            name_from_url("https://acme.awsapps.com/start").as_deref(),
            Some("acme")
        );
        assert_eq!(
            name_from_url("http://127.0.0.1:4000/start").as_deref(),
            Some("127")
        );
        assert_eq!(name_from_url("https://ex ample.com"), None);
    }

    #[test]
    fn start_urls_match_with_or_without_a_trailing_slash() {
        let url = "https://acme.awsapps.com/start";
        assert!(same_start_url(url, "https://acme.awsapps.com/start/"));
        assert!(same_start_url(url, url));
        assert!(!same_start_url(url, "https://acme.awsapps.com/start2"));
    }

    #[test]
    fn the_section_is_appended_and_the_rest_kept() {
        let dir = std::env::temp_dir().join(format!("cmdr-signin-{}", std::process::id()));
        std::fs::create_dir_all(&dir).ok();
        let file = dir.join("config");
        std::fs::write(&file, "[profile a]\nregion = x").ok();
        let portal = Portal {
            session: "acme".into(),
            start_url: "https://acme.awsapps.com/start".into(),
            region: "eu-west-1".into(),
        };
        assert!(add_section(&file, &portal).is_ok());
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        assert!(
            text.starts_with("[profile a]\nregion = x\n\n[sso-session acme]\n"),
            "{text}"
        );
        std::fs::remove_dir_all(&dir).ok();
    }
}
