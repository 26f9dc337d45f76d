//! IAM Identity Center sign-in: the loopback Identity Center (`clients/identity_center.py`,
//! written from botocore's sso-oidc and sso models) and the proof, with boto3's own
//! clients, that it speaks their protocol.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};

use crate::endpoint::clients_dir;
use crate::sandbox::{stderr, stdout};

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
