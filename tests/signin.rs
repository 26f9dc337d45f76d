//! IAM Identity Center sign-in: the loopback Identity Center (`clients/identity_center.py`,
//! written from botocore's sso-oidc and sso models) and the proof, with boto3's own
//! clients, that it speaks their protocol.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::endpoint::clients_dir;
use crate::sandbox::{Sandbox, stderr, stdout};

/// The loopback Identity Center, killed on drop.
pub struct IdentityCenter {
    child: Child,
    pub url: String,
}

impl IdentityCenter {
    /// Starts it and waits for its "listening URL" line (printed once it accepts).
    pub fn start() -> IdentityCenter {
        let mut child = Command::new("python3")
            .arg(clients_dir().join("identity_center.py"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 (scripts/test installs boto3)");
        let out = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        BufReader::new(out)
            .read_line(&mut line)
            .expect("identity_center.py stdout");
        let url = line
            .trim()
            .strip_prefix("listening ")
            .unwrap_or_else(|| panic!("identity_center.py did not start: {line:?}"))
            .to_owned();
        IdentityCenter { child, url }
    }
}

impl Drop for IdentityCenter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_loopback_identity_center_speaks_botocores_protocol() {
    let ic = IdentityCenter::start();
    let out = Command::new("python3")
        .arg(clients_dir().join("identity_center_check.py"))
        .arg(&ic.url)
        .output()
        .expect("python3 with boto3 (scripts/test installs it)");
    assert!(
        out.status.success(),
        "boto3 against the loopback Identity Center failed:\n{}",
        stderr(&out)
    );
    assert_eq!(stdout(&out).trim(), "ok");
}

impl IdentityCenter {
    pub fn post(&self, path: &str, body: &str) -> String {
        let out = Command::new("python3")
            .args([
                "-c",
                "import sys,urllib.request as u;print(u.urlopen(u.Request(sys.argv[1],data=sys.argv[2].encode(),method='POST')).read().decode())",
                &format!("{}{path}", self.url),
                body,
            ])
            .output()
            .expect("python3");
        assert!(out.status.success(), "{path}: {}", stderr(&out));
        stdout(&out)
    }

    pub fn counters(&self) -> serde_json::Value {
        let out = Command::new("python3")
            .args([
                "-c",
                "import sys,urllib.request as u;print(u.urlopen(sys.argv[1]).read().decode())",
                &format!("{}/_test/counters", self.url),
            ])
            .output()
            .expect("python3");
        serde_json::from_slice(&out.stdout).expect("counters json")
    }
}

fn signin_sandbox(ic: &IdentityCenter) -> Sandbox {
    let mut sb = Sandbox::new();
    sb.set_env("AWS_ENDPOINT_URL_SSO_OIDC", &ic.url);
    sb.set_env("AWS_ENDPOINT_URL_SSO", &ic.url);
    sb
}

/// Runs `cmdrctl login ARGS…` and returns its stderr lines as they come.
fn spawn_login(sb: &Sandbox, args: &[&str]) -> (Child, std::sync::mpsc::Receiver<String>) {
    let mut child = sb
        .command("cmdrctl")
        .arg("login")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cmdrctl login");
    let err = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

fn wait_line(rx: &std::sync::mpsc::Receiver<String>, pred: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .expect("cmdrctl login printed no such line within 30 s");
        if pred(&line) {
            return line;
        }
    }
}

pub fn cache_file(sb: &Sandbox, session: &str) -> std::path::PathBuf {
    use sha1::Digest as _;
    let name = hex::encode(sha1::Sha1::digest(session.as_bytes()));
    sb.home.join(format!(".aws/sso/cache/{name}.json"))
}

#[test]
fn device_code_login_writes_the_cli_cache_and_the_session_and_boto3_uses_it() {
    let ic = IdentityCenter::start();
    let sb = signin_sandbox(&ic);
    // The config file is a symlink (stow) with mode 0644 and bytes of its own: all kept.
    let dotfiles = sb.home.join("dotfiles");
    std::fs::create_dir_all(&dotfiles).expect("dotfiles");
    std::fs::create_dir_all(sb.home.join(".aws")).expect(".aws");
    std::fs::write(
        dotfiles.join("config"),
        "# mine\n[profile other]\nregion = eu-north-1",
    )
    .expect("config");
    crate::sandbox::set_mode(&dotfiles.join("config"), 0o644);
    std::os::unix::fs::symlink(dotfiles.join("config"), sb.home.join(".aws/config"))
        .expect("symlink");
    let (mut child, rx) = spawn_login(
        &sb,
        &[
            "--portal",
            "https://acme.awsapps.com/start",
            "--sso-region",
            "eu-west-1",
            "--device-code",
        ],
    );
    let line = wait_line(&rx, |l| l.contains("confirm the code"));
    let code = line.rsplit(' ').next().expect("a code");
    ic.post("/_test/approve", &format!("{{\"userCode\": \"{code}\"}}"));
    let status = child.wait().expect("wait");
    assert!(status.success(), "login failed");

    let file = cache_file(&sb, "acme");
    assert_eq!(crate::sandbox::mode(&file) & 0o777, 0o600);
    let token: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&file).expect("cache file")).expect("json");
    assert_eq!(token["startUrl"], "https://acme.awsapps.com/start");
    assert_eq!(token["region"], "eu-west-1");
    let expires = token["expiresAt"].as_str().expect("expiresAt");
    assert!(
        expires.len() == 20 && expires.ends_with('Z'),
        "expiresAt as the CLI writes it: {expires}"
    );
    for field in [
        "accessToken",
        "clientId",
        "clientSecret",
        "registrationExpiresAt",
        "refreshToken",
    ] {
        assert!(
            token[field].is_string(),
            "{field} missing: {:?}",
            token.as_object().map(|o| o.keys().collect::<Vec<_>>())
        );
    }
    // No secret in what login printed.
    let mut printed: Vec<String> = rx.try_iter().collect();
    printed.push(line.clone());
    let mut out = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().expect("stdout"), &mut out)
        .expect("stdout");
    printed.push(out);
    for field in ["accessToken", "clientSecret", "refreshToken"] {
        let secret = token[field].as_str().unwrap_or("missing");
        assert!(
            !printed.iter().any(|l| l.contains(secret)),
            "login printed its {field}"
        );
    }
    let config = std::fs::read_to_string(sb.home.join(".aws/config")).expect("config");
    assert!(
        std::fs::symlink_metadata(sb.home.join(".aws/config"))
            .expect("link")
            .file_type()
            .is_symlink()
    );
    assert_eq!(
        crate::sandbox::mode(&dotfiles.join("config")) & 0o777,
        0o644
    );
    assert!(
        config.starts_with("# mine\n[profile other]\nregion = eu-north-1\n\n[sso-session acme]\n"),
        "{config}"
    );
    assert!(config.contains("[sso-session acme]\nsso_start_url = https://acme.awsapps.com/start\nsso_region = eu-west-1\nsso_registration_scopes = sso:account:access\n"), "{config}");

    // boto3, an independent client, resolves role credentials from cmdr's cache file.
    std::fs::write(
        sb.home.join(".aws/config"),
        format!("{config}\n[profile acme-ro]\nsso_session = acme\nsso_account_id = 111111111111\nsso_role_name = ReadOnly\nregion = eu-west-1\n"),
    )
    .expect("config");
    let out = sb
        .external("python3")
        .args(["-c", "import boto3;c=boto3.Session(profile_name='acme-ro').get_credentials().get_frozen_credentials();print(c.access_key[:4])"])
        .output()
        .expect("python3");
    assert!(out.status.success(), "boto3: {}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "ASIA");
    assert_eq!(ic.counters()["GetRoleCredentials"], 1);

    // logout ends the session at the portal and removes the file.
    let out = sb.ctl(&["logout", "acme"]);
    assert!(out.status.success(), "logout: {}", stderr(&out));
    let access = token["accessToken"].as_str().unwrap_or("missing");
    assert!(!stdout(&out).contains(access) && !stderr(&out).contains(access));
    assert!(!file.exists(), "the cache file is gone");
    assert_eq!(ic.counters()["Logout"], 1);
}

#[test]
fn pkce_login_refuses_a_wrong_state_and_completes_through_the_redirect() {
    let ic = IdentityCenter::start();
    ic.post("/_test/auto_approve", "{\"on\": true}");
    let mut sb = signin_sandbox(&ic);
    sb.set_env("DISPLAY", ":99");
    let (mut child, rx) = spawn_login(
        &sb,
        &[
            "--portal",
            "https://acme.awsapps.com/start",
            "--sso-region",
            "eu-west-1",
            "--no-browser",
        ],
    );
    let url = wait_line(&rx, |l| l.contains("/authorize?"));
    // A redirect with another state (not started here) is refused; the login goes on.
    let fetch = |u: &str| {
        Command::new("python3")
            .args(["-c", "import sys,urllib.request as u,urllib.error as e\ntry:\n print(u.urlopen(sys.argv[1]).read().decode())\nexcept e.HTTPError as x:\n print(x.code)", u])
            .output()
            .expect("python3")
    };
    let state = url
        .split("state=")
        .nth(1)
        .and_then(|s| s.split('&').next())
        .expect("state");
    let bad = fetch(&url.replace(&format!("state={state}"), "state=0000"));
    assert_eq!(stdout(&bad).trim(), "400", "{}", stderr(&bad));
    // The server's authorize page redirects to cmdr's listener, which answers the page.
    let good = fetch(&url);
    assert!(
        stdout(&good).contains("You can close this tab"),
        "{}",
        stderr(&good)
    );
    assert!(child.wait().expect("wait").success(), "login failed");
    assert!(cache_file(&sb, "acme").exists());
    assert_eq!(ic.counters()["CreateToken.authorization_code"], 1);
}

/// The PKCE step in a real browser: headless Chromium opens the URL `login --no-browser`
/// prints, the authorize page redirects to cmdr's listener, and cmdr's page loads.
#[test]
fn pkce_login_completes_in_headless_chromium() {
    let Some(browser) = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|b| cmdr_testkit::skip::have(b))
    else {
        return cmdr_testkit::skip::skip(
            "chromium is not installed (Debian package `chromium`; scripts/test installs it as root)",
        );
    };
    let ic = IdentityCenter::start();
    ic.post("/_test/auto_approve", "{\"on\": true}");
    let mut sb = signin_sandbox(&ic);
    sb.set_env("DISPLAY", ":99");
    let (mut child, rx) = spawn_login(
        &sb,
        &[
            "--portal",
            "https://acme.awsapps.com/start",
            "--sso-region",
            "eu-west-1",
            "--no-browser",
        ],
    );
    let url = wait_line(&rx, |l| l.contains("/authorize?"));
    let profile = tempfile::tempdir().expect("temp dir");
    let out = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(["--dump-dom", &url])
        .output()
        .expect("chromium");
    assert!(
        stdout(&out).contains("You can close this tab"),
        "chromium did not land on cmdr's page: {}",
        stderr(&out)
    );
    assert!(child.wait().expect("wait").success(), "login failed");
    assert!(cache_file(&sb, "acme").exists());
    assert_eq!(ic.counters()["CreateToken.authorization_code"], 1);
}

/// NAME may be an account: the daemon's portal for it names the sso-session.
#[test]
fn login_to_an_account_signs_in_to_its_portals_session() {
    let ic = IdentityCenter::start();
    let mut sb = Sandbox::with_profile("IQoJsigninTOKEN1");
    sb.set_env("AWS_ENDPOINT_URL_SSO_OIDC", &ic.url);
    sb.set_env("AWS_ENDPOINT_URL_SSO", &ic.url);
    std::fs::write(
        sb.home.join(".aws/config"),
        "[sso-session corp]\nsso_start_url = https://corp.awsapps.com/start\nsso_region = us-east-2\n",
    )
    .expect("config");
    sb.start();
    sb.add_account("work", &["--portal", "https://corp.awsapps.com/start"]);
    let (mut child, rx) = spawn_login(&sb, &["work", "--device-code"]);
    let line = wait_line(&rx, |l| l.contains("confirm the code"));
    let code = line.rsplit(' ').next().expect("a code");
    ic.post("/_test/approve", &format!("{{\"userCode\": \"{code}\"}}"));
    assert!(child.wait().expect("wait").success(), "login failed");
    let token: serde_json::Value = serde_json::from_slice(
        &std::fs::read(cache_file(&sb, "corp")).expect("the cache file of sso-session corp"),
    )
    .expect("json");
    assert_eq!(token["region"], "us-east-2");
    // A second sign-in reuses the client registration kept in the cache file.
    let (mut child, rx) = spawn_login(&sb, &["corp", "--device-code"]);
    let line = wait_line(&rx, |l| l.contains("confirm the code"));
    let code = line.rsplit(' ').next().expect("a code");
    ic.post("/_test/approve", &format!("{{\"userCode\": \"{code}\"}}"));
    assert!(child.wait().expect("wait").success(), "second login failed");
    let counters = ic.counters();
    assert_eq!(counters["RegisterClient"], 1, "{counters}");
    assert_eq!(counters["CreateToken.device_code"], 2, "{counters}");
    // An unknown name is refused, saying what to give instead.
    let out = sb.ctl(&["login", "nobody", "--device-code"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("--portal URL --sso-region R"),
        "{}",
        stderr(&out)
    );
}

/// `logout` of a name that is no sso-session lists the ones there are (it said "give
/// --portal URL --sso-region R", which logout does not take), and neither `login` nor
/// `logout` passes a control character from its argument to the terminal (walkthrough of
/// 2026-12-06: an ESC came through).
#[test]
fn login_and_logout_name_what_there_is_and_pass_no_control_character() {
    let sb = Sandbox::new();
    std::fs::create_dir_all(&sb.aws).expect("aws dir");
    std::fs::write(
        sb.config(),
        "[sso-session acme]\nsso_start_url = https://acme.awsapps.com/start\nsso_region = us-east-1\n",
    )
    .expect("config");
    let out = sb.ctl(&["logout", "nobody"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("no sso-session nobody to sign out of (known: acme)"),
        "{err}"
    );
    assert!(!err.contains("--portal"), "{err}");
    for verb in ["login", "logout"] {
        let out = sb.ctl(&[verb, "x\u{1b}[31m"]);
        assert_eq!(out.status.code(), Some(1), "{verb}");
        let err = stderr(&out);
        assert!(!err.contains('\u{1b}'), "{verb}: {err:?}");
        assert!(err.contains("x\\e[31m"), "{verb}: {err:?}");
    }
}
