//! Regressions: `paste`: sections without keys, read-only files and backups, environment-variable blocks.

use std::io::Write as _;

use super::ctl_with_input;
use crate::sandbox::{Sandbox, mode, set_mode, stderr};

/// `paste` into a credentials file whose target section had a header but no key lines
/// wrote the file back without any keys (found by the `paste` fuzz property).
#[test]
fn paste_into_a_section_without_keys() {
    let sb = Sandbox::new();
    std::fs::create_dir_all(&sb.aws).expect("aws");
    sb.write_credentials("[other]\nregion = eu-west-1\n\n[acme]\n# to be filled\n");
    let mut child = sb
        .command("cmdrctl")
        .arg("paste")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let block = "[acme]\naws_access_key_id=ASIAREGRESSION\naws_secret_access_key=regression-secret-key\naws_session_token=regression-session-token\n";
    sb.remember_secrets(block);
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(block.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success(), "{}", crate::sandbox::stderr(&out));
    let text = std::fs::read_to_string(sb.credentials()).expect("read");
    assert_eq!(
        text,
        "[other]\nregion = eu-west-1\n\n[acme]\naws_access_key_id = ASIAREGRESSION\naws_secret_access_key = regression-secret-key\naws_session_token = regression-session-token\n# to be filled\n"
    );
}

/// Defect 7: `paste` replaced a read-only (0400) credentials file; backups of a symlinked
/// file landed beside the link's target, inside a dotfiles repository.
#[test]
fn paste_respects_read_only_files_and_keeps_backups_in_the_data_dir() {
    let sb = Sandbox::new();
    std::fs::create_dir_all(&sb.aws).expect("aws");
    let dotfiles = sb.home.join("dotfiles");
    std::fs::create_dir_all(&dotfiles).expect("dotfiles");
    let target = dotfiles.join("credentials");
    let original = "[other]\nregion = eu-west-1\n";
    std::fs::write(&target, original).expect("write");
    std::os::unix::fs::symlink(&target, sb.credentials()).expect("link");
    set_mode(&target, 0o400);
    let block =
        "[acme]\naws_access_key_id = AKIAREADONLY\naws_secret_access_key = read-only-secret-key\n";
    sb.remember_secrets(block);

    let out = ctl_with_input(&sb, &["paste"], block);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("read-only") && stderr(&out).contains("--force"));
    assert_eq!(std::fs::read_to_string(&target).expect("read"), original);

    let out = ctl_with_input(&sb, &["paste", "--force"], block);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        std::fs::read_to_string(&target)
            .expect("read")
            .contains("AKIAREADONLY")
    );
    assert_eq!(mode(&target), 0o400, "the mode is kept");
    let in_dotfiles: Vec<_> = std::fs::read_dir(&dotfiles)
        .expect("dotfiles")
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .collect();
    assert_eq!(
        in_dotfiles,
        ["credentials"],
        "nothing else in the dotfiles repository"
    );
    let backups: Vec<_> = std::fs::read_dir(sb.data_dir.join("backups"))
        .expect("backups in the data dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    assert_eq!(backups.len(), 1, "{backups:?}");
    assert_eq!(
        std::fs::read_to_string(&backups[0]).expect("backup"),
        original
    );
    assert_eq!(mode(&backups[0]), 0o600);
    assert_eq!(mode(&sb.data_dir.join("backups")), 0o700);
}

/// Friction: the portal's "Set AWS environment variables" blocks (bash `export`, Windows
/// `set`, PowerShell `$Env:`) were refused as "unexpected key `export aws_access_key_id`".
#[test]
fn paste_takes_environment_variable_blocks() {
    let sb = Sandbox::new();
    std::fs::create_dir_all(&sb.aws).expect("aws");
    let blocks = [
        (
            "bash",
            "export AWS_ACCESS_KEY_ID=\"ASIABASHBLOCK\"\nexport AWS_SECRET_ACCESS_KEY=\"bash-block-secret\"\nexport AWS_SESSION_TOKEN=\"bash-block-token\"\n",
        ),
        (
            "cmd",
            "set AWS_ACCESS_KEY_ID=ASIACMDBLOCK\r\nset AWS_SECRET_ACCESS_KEY=cmd-block-secret\r\nset AWS_SESSION_TOKEN=cmd-block-token\r\n",
        ),
        (
            "pwsh",
            "$Env:AWS_ACCESS_KEY_ID=\"ASIAPWSHBLOCK\"\n$Env:AWS_SECRET_ACCESS_KEY=\"pwsh-block-secret\"\n$Env:AWS_SESSION_TOKEN=\"pwsh-block-token\"\n",
        ),
    ];
    for (profile, block) in blocks {
        sb.remember_secrets(&format!(
            "aws_secret_access_key = {profile}-block-secret\naws_session_token = {profile}-block-token\n"
        ));
        // No header names a profile: --profile is required, a usage error without it.
        let out = ctl_with_input(&sb, &["paste"], block);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(stderr(&out).contains("--profile"), "{}", stderr(&out));
        let out = ctl_with_input(&sb, &["paste", "--profile", profile], block);
        assert!(out.status.success(), "{profile}: {}", stderr(&out));
    }
    let text = std::fs::read_to_string(sb.credentials()).expect("read");
    assert!(text.contains("[bash]\naws_access_key_id = ASIABASHBLOCK\naws_secret_access_key = bash-block-secret\naws_session_token = bash-block-token\n"), "{text}");
    assert!(
        text.contains("[cmd]\naws_access_key_id = ASIACMDBLOCK\n"),
        "{text}"
    );
    assert!(
        text.contains(
            "[pwsh]\naws_access_key_id = ASIAPWSHBLOCK\naws_secret_access_key = pwsh-block-secret\n"
        ),
        "{text}"
    );
}
