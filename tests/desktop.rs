//! Desktop notifications against a real notification server (dunst under Xvfb) on a
//! private D-Bus session bus: the notification arrives with its actions, and invoking
//! "Use new token" accepts the account; "Renew" on an expiry opens the account's portal.
//! Without any server, the daemon logs once.

use std::io::{BufRead as _, BufReader};
use std::os::unix::process::CommandExt as _;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cmdr_testkit::sys::{self, Signal};

use crate::renew::Recorder;
use cmdr_testkit::skip::need;

use crate::sandbox::{Sandbox, WAIT, creds};

/// A private session bus with dunst (under Xvfb) and a dbus-monitor recording
/// notification calls. Every process is in its own group, killed on drop.
pub(crate) struct Desktop {
    children: Vec<Child>,
    pub(crate) address: String,
    monitor: std::path::PathBuf,
}

impl Desktop {
    pub(crate) fn start(root: &std::path::Path) -> Option<Desktop> {
        for tool in [
            "dbus-daemon",
            "xvfb-run",
            "dunst",
            "dunstctl",
            "dbus-monitor",
        ] {
            if !need(tool, "Debian packages dbus, dbus-bin, xvfb, dunst") {
                return None;
            }
        }
        let bus = root.join("bus");
        let mut dbus = Command::new("dbus-daemon")
            .args(["--session", "--nofork", "--print-address=1"])
            .arg(format!("--address=unix:path={}", bus.display()))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("dbus-daemon");
        let mut line = String::new();
        BufReader::new(dbus.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("bus address");
        let address = line.trim().to_owned();
        let mut desktop = Desktop {
            children: vec![dbus],
            address,
            monitor: root.join("monitor.txt"),
        };
        let dunst = Command::new("xvfb-run")
            .args(["-a", "dunst"])
            .env("DBUS_SESSION_BUS_ADDRESS", &desktop.address)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("dunst");
        desktop.children.push(dunst);
        // dunst answers on the bus once it is up.
        let start = Instant::now();
        while !desktop.dunstctl(&["count", "displayed"]).status.success() {
            assert!(start.elapsed() < WAIT, "dunst did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        let monitor = Command::new("dbus-monitor")
            .args(["--session", "interface='org.freedesktop.Notifications'"])
            .env("DBUS_SESSION_BUS_ADDRESS", &desktop.address)
            .stdout(std::fs::File::create(&desktop.monitor).expect("monitor file"))
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("dbus-monitor");
        desktop.children.push(monitor);
        Some(desktop)
    }

    pub(crate) fn dunstctl(&self, args: &[&str]) -> std::process::Output {
        Command::new("dunstctl")
            .args(args)
            .env("DBUS_SESSION_BUS_ADDRESS", &self.address)
            .output()
            .expect("dunstctl")
    }

    pub(crate) fn recorded(&self) -> String {
        std::fs::read_to_string(&self.monitor).unwrap_or_default()
    }
}

impl Drop for Desktop {
    fn drop(&mut self) {
        for child in &mut self.children {
            // A process group we created.
            let _ = sys::signal_group(child.id(), Signal::Term);
            let _ = child.wait();
        }
    }
}

/// A daemon on the desktop's bus with account `acme`, after its token changed to `token`
/// (`None` when the desktop tools are missing).
fn token_changed_on_a_desktop(
    root: &std::path::Path,
    token: &str,
) -> Option<(Desktop, Sandbox, crate::sandbox::Watch)> {
    let desktop = Desktop::start(root)?;
    let mut sb = Sandbox::with_profile("TOKEN-ONE");
    sb.set_env("DBUS_SESSION_BUS_ADDRESS", &desktop.address);
    sb.start();
    sb.add_account("acme", &[]);
    let mut watch = sb.watch();
    sb.write_credentials(&creds("acme", token));
    watch.wait_type("token_changed");
    Some((desktop, sb, watch))
}

#[test]
fn use_new_token_from_a_real_notification_server() {
    let root = tempfile::tempdir().expect("tempdir");
    let Some((desktop, sb, mut watch)) =
        token_changed_on_a_desktop(root.path(), "TOKEN-TWO-SECRET")
    else {
        return;
    };

    // The Notify call carries the summary and both actions.
    sb.wait_until("notification with actions", || {
        let text = desktop.recorded();
        text.contains("New AWS token for acme")
            && text.contains("string \"default\"")
            && text.contains("string \"Use new token\"")
            && text.contains("string \"ignore\"")
            && text.contains("string \"Ignore\"")
    });
    let shown = desktop.dunstctl(&["count", "displayed"]);
    assert_ne!(String::from_utf8_lossy(&shown.stdout).trim(), "0");
    assert!(
        !desktop.recorded().contains("TOKEN-TWO-SECRET"),
        "a secret in a notification"
    );
    assert_eq!(sb.account("acme")["state"], "changed");

    // Clicking "Use new token" (the default action) accepts, like `cmdrctl accept`.
    let out = desktop.dunstctl(&["action", "0"]);
    assert!(out.status.success());
    watch.wait_type("token_accepted");
    let account = sb.account("acme");
    assert_eq!(account["state"], "ok");
    assert_eq!(account["accepted_fingerprint"], account["fingerprint"]);
}

/// A "Use new token" notification waits for the user's click without end; SIGTERM must
/// still stop cmdrd at once (the wait is not a task shutdown waits for).
#[test]
fn sigterm_with_a_notification_pending_exits_promptly() {
    let root = tempfile::tempdir().expect("tempdir");
    let Some((desktop, mut sb, _watch)) = token_changed_on_a_desktop(root.path(), "TOKEN-TWO")
    else {
        return;
    };
    sb.wait_until("the notification is shown", || {
        desktop.recorded().contains("New AWS token for acme")
            && String::from_utf8_lossy(&desktop.dunstctl(&["count", "displayed"]).stdout).trim()
                != "0"
    });
    match sb.stop_within(Duration::from_secs(3)) {
        Ok(code) => assert_eq!(code, Some(0), "{}", sb.log_tail()),
        Err(waited) => panic!(
            "cmdrd still running {waited:?} after SIGTERM with a notification pending\n{}",
            sb.log_tail()
        ),
    }
}

#[test]
fn renew_from_an_expiry_notification_opens_the_portal() {
    let root = tempfile::tempdir().expect("tempdir");
    let Some(desktop) = Desktop::start(root.path()) else {
        return;
    };
    let mut sb = Sandbox::with_profile("TOKEN-ONE");
    sb.write_credentials(&format!(
        "{}x_security_token_expires = 2020-01-01T00:00:00Z\n",
        creds("acme", "TOKEN-EXPIRED-SECRET")
    ));
    // The daemon's session opens the portal: an xdg-open recorder on its PATH.
    let rec = Recorder::install(&mut sb, &[("xdg-open", 0)], false);
    sb.set_env("DBUS_SESSION_BUS_ADDRESS", &desktop.address);
    sb.start();
    let mut watch = sb.watch();
    let portal = "https://acme.awsapps.com/start#/saml";
    sb.add_account("acme", &["--portal", portal]);
    watch.wait_type("expired");
    sb.wait_until("expired notification with Renew", || {
        let text = desktop.recorded();
        text.contains("acme expired")
            && text.contains("cmdrctl renew acme")
            && text.contains("string \"default\"")
            && text.contains("string \"Renew\"")
    });
    assert!(rec.calls().is_empty(), "{:?}", rec.calls());
    // Clicking "Renew" (the default action) opens the portal, as `cmdrctl renew` does.
    let out = desktop.dunstctl(&["action", "0"]);
    assert!(out.status.success());
    sb.wait_until("xdg-open called", || !rec.calls().is_empty());
    assert_eq!(rec.calls(), [format!("xdg-open {portal}")]);
    assert!(
        sb.log_text()
            .contains("renewed from a desktop notification")
    );
}

#[test]
fn without_a_notification_service_the_daemon_logs_once_and_carries_on() {
    let mut sb = Sandbox::with_profile("TOKEN-ONE");
    sb.start();
    sb.add_account("acme", &[]);
    let mut watch = sb.watch();
    for token in ["TOKEN-TWO", "TOKEN-THREE"] {
        sb.write_credentials(&creds("acme", token));
        watch.wait_type("token_changed");
    }
    sb.wait_until("the warning", || {
        sb.log_text()
            .contains("desktop notifications are unavailable")
    });
    assert!(sb.ctl(&["status"]).status.success());
    let warnings = sb
        .log_text()
        .matches("desktop notifications are unavailable")
        .count();
    assert_eq!(warnings, 1);
}
