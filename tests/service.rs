//! Start at login: the generated systemd unit and launchd agent, `service` dry runs,
//! completions and man pages.

use std::process::Command;

use cmdr_testkit::skip::need;

use crate::sandbox::{Sandbox, bin, stderr, stdout};

#[test]
fn linux_dry_run_prints_the_unit_and_commands() {
    let sb = Sandbox::new();
    let out = sb.ctl(&["service", "install", "--dry-run", "--platform", "linux"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let unit_path = sb.home.join(".config/systemd/user/cmdrd.service");
    assert!(
        text.contains(&format!("# write {}", unit_path.display())),
        "{text}"
    );
    assert!(
        text.contains(&format!("ExecStart={}", bin("cmdrd").display())),
        "{text}"
    );
    for line in [
        "Type=notify",
        "Restart=on-failure",
        "WantedBy=default.target",
        "NoNewPrivileges=yes",
    ] {
        assert!(text.contains(line), "{line} missing in {text}");
    }
    assert!(
        text.contains("# run: systemctl --user enable --now cmdrd.service"),
        "{text}"
    );
    assert!(!unit_path.exists(), "a dry run writes nothing");
    let out = sb.ctl(&["service", "uninstall", "--dry-run", "--platform", "linux"]);
    assert!(stdout(&out).contains("systemctl --user disable --now cmdrd.service"));
}

#[test]
fn systemd_analyze_verifies_the_unit() {
    if !need("systemd-analyze", "Debian package `systemd`") {
        return;
    }
    let sb = Sandbox::new();
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../systemd/cmdrd.service"
    ))
    .expect("unit")
    .replace("/usr/bin/cmdrd", &bin("cmdrd").display().to_string());
    let dir = sb.root.join("units");
    std::fs::create_dir_all(&dir).expect("dir");
    let verify = |text: &str| {
        std::fs::write(dir.join("cmdrd.service"), text).expect("write");
        Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(dir.join("cmdrd.service"))
            .output()
            .expect("systemd-analyze")
    };
    let out = verify(&unit);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    // The check can fail: a broken unit is reported.
    let out = verify(&unit.replace("Type=notify", "Type=notifyy"));
    assert!(
        !out.status.success() || !stderr(&out).is_empty(),
        "a broken unit must be reported"
    );
}

#[test]
fn macos_dry_run_plist_parses_with_the_keys() {
    let sb = Sandbox::new();
    let out = sb.ctl(&["service", "install", "--dry-run", "--platform", "macos"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let plist_path = sb.home.join("Library/LaunchAgents/dev.cmdr.cmdrd.plist");
    assert!(
        text.contains(&format!("# write {}", plist_path.display())),
        "{text}"
    );
    assert!(text.contains("# run: launchctl bootstrap gui/"), "{text}");
    let start = text.find("<?xml").expect("plist");
    let end = text.find("</plist>").expect("plist end") + "</plist>".len();
    let plist = sb.root.join("agent.plist");
    std::fs::write(&plist, &text[start..end]).expect("write");
    let script = r#"
import plistlib, sys, json
p = plistlib.load(open(sys.argv[1], 'rb'))
print(json.dumps(p))
"#;
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(&plist)
        .output()
        .expect("python3");
    assert!(out.status.success(), "{}", stderr(&out));
    let p: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(p["Label"], "dev.cmdr.cmdrd");
    assert_eq!(p["RunAtLoad"], true);
    assert_eq!(p["KeepAlive"]["SuccessfulExit"], false);
    assert_eq!(p["ProcessType"], "Background");
    assert_eq!(p["ProgramArguments"][0], bin("cmdrd").display().to_string());
    let logs = sb.home.join("Library/Logs").display().to_string();
    // cmdrd writes and rotates its own log: launchd would not rotate it.
    assert_eq!(p["ProgramArguments"][1], "--log-file");
    assert_eq!(p["ProgramArguments"][2], format!("{logs}/cmdrd.log"));
    assert!(
        p["StandardOutPath"]
            .as_str()
            .is_some_and(|s| s.starts_with(&logs)),
        "{p}"
    );
    assert!(
        p["StandardErrorPath"]
            .as_str()
            .is_some_and(|s| s.starts_with(&logs)),
        "{p}"
    );
}

#[test]
fn no_service_manager_is_a_clear_error_and_windows_uses_the_run_key() {
    let sb = Sandbox::new();
    let out = sb.ctl(&["service", "install", "--dry-run", "--platform", "windows"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains(
            r"# run: reg add HKCU\Software\Microsoft\Windows\CurrentVersion\Run /v cmdrd"
        ),
        "{text}"
    );
    let out = sb.ctl(&["service", "uninstall", "--dry-run", "--platform", "windows"]);
    assert!(stdout(&out).contains("reg delete"), "{}", stdout(&out));
    // Only where no user systemd answers (containers, CI): never install for real here.
    let user_systemd = sb
        .external("systemctl")
        .args(["--user", "show-environment"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !user_systemd {
        let out = sb.ctl(&["service", "install"]);
        assert_eq!(out.status.code(), Some(1));
        assert!(
            stderr(&out).contains("loginctl enable-linger"),
            "{}",
            stderr(&out)
        );
        assert!(!sb.home.join(".config/systemd/user/cmdrd.service").exists());
    }
}

#[test]
fn completions_for_every_shell_and_man_pages() {
    let sb = Sandbox::new();
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let out = sb.ctl(&["completions", shell]);
        assert!(out.status.success(), "{shell}");
        assert!(stdout(&out).contains("cmdrctl"), "{shell}");
    }
    let script = format!(
        "source <('{}' completions bash); complete -p cmdrctl",
        bin("cmdrctl").display()
    );
    let out = Command::new("bash")
        .args(["-c", &script])
        .output()
        .expect("bash");
    assert!(stdout(&out).contains("cmdrctl"), "{}", stderr(&out));

    let out_dir = sb.root.join("assets");
    let out = sb.ctl(&["generate-assets", "--out", out_dir.to_str().expect("utf8")]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = sb
        .command("cmdrd")
        .arg("--generate-assets")
        .arg(&out_dir)
        .output()
        .expect("cmdrd --generate-assets");
    assert!(out.status.success(), "{}", stderr(&out));
    for page in [
        "cmdrd.1",
        "cmdrctl.1",
        "cmdrctl-paste.1",
        "cmdrctl-accounts-add.1",
    ] {
        let text = std::fs::read_to_string(out_dir.join("man/man1").join(page)).expect(page);
        assert!(text.starts_with(".ie") || text.contains(".TH"), "{page}");
    }
    for file in [
        "bash/cmdrd.bash",
        "zsh/_cmdrctl",
        "fish/cmdrctl.fish",
        "powershell/_cmdrctl.ps1",
    ] {
        assert!(out_dir.join("completions").join(file).is_file(), "{file}");
    }
}

#[test]
fn versions() {
    let sb = Sandbox::new();
    for program in ["cmdrd", "cmdrctl"] {
        let out = sb
            .command(program)
            .arg("--version")
            .output()
            .expect("version");
        assert_eq!(
            stdout(&out).trim(),
            format!("{program} {}", env!("CARGO_PKG_VERSION"))
        );
    }
}
