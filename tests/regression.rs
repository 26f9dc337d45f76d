//! One test per fixed bug.

use std::io::{BufRead as _, BufReader, Write as _};
use std::os::unix::net::UnixStream;

use serde_json::Value;

use crate::sandbox::{Sandbox, creds, mode, set_mode, stderr, stdout};

/// The accepted token's credentials were not restored when the file was broken at start
/// and then fixed without a token change.
#[test]
fn accepted_token_restored_after_broken_start() {
    let mut sb = Sandbox::with_profile("T1");
    sb.start();
    sb.add_account("acme", &[]);
    sb.stop();
    sb.write_credentials("[acme\n");
    sb.start();
    let mut watch = sb.watch();
    sb.write_credentials(&creds("acme", "T1"));
    watch.wait_type("profile_added");
    assert_eq!(sb.account("acme")["state"], "ok");
    assert!(
        !watch.seen.iter().any(|e| e["type"] == "token_changed"),
        "{:?}",
        watch.seen
    );
}

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

/// `~/.aws` removed and recreated at once can get the same inode number back: the watch
/// was thought alive and writes went unseen until the 60 s safety rescan.
#[test]
fn aws_dir_recreated_at_once_is_watched_again() {
    let mut sb = Sandbox::with_profile("T0");
    sb.start();
    sb.add_account("acme", &[]);
    for round in 1..=5 {
        std::fs::remove_dir_all(&sb.aws).expect("rm -rf");
        std::fs::create_dir_all(&sb.aws).expect("mkdir");
        sb.write_credentials(&creds("acme", &format!("T{round}-a")));
        // Let the daemon settle on this directory, then write again into it.
        std::thread::sleep(std::time::Duration::from_millis(300));
        sb.write_credentials(&creds("acme", &format!("T{round}-b")));
        let start = std::time::Instant::now();
        let expected = {
            let mut fresh = Sandbox::with_profile(&format!("T{round}-b"));
            fresh.start();
            fresh.json(&["profiles"])[0]["fingerprint"].clone()
        };
        while sb.json(&["profiles"])[0]["fingerprint"] != expected {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(10),
                "round {round}: the write after recreating ~/.aws was not seen"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

/// Deleting and recreating the credentials file left an account on a config profile stuck
/// `invalid`: the vanished token was taken for a new one (`token_changed` with no new
/// fingerprint, an `auto` account "accepting" it), its failed validation marked the account
/// invalid, and later "unreachable" validations never cleared that.
#[test]
fn delete_and_recreate_is_missing_then_ok_again() {
    let mut sb = Sandbox::new();
    std::fs::create_dir_all(&sb.aws).expect("aws");
    std::fs::write(sb.config(), "[profile local]\nregion = us-east-1\n").expect("config");
    let saved = "[local]\naws_access_key_id = AKIAIOSFODNN7EXAMPLE\naws_secret_access_key = wJalrXUtnFEMI-SECRET-local\n";
    sb.write_credentials(saved);
    // Validation on: nothing listens on the LocalStack port, so every validation is
    // "unreachable" — which must never make or keep the account `invalid`.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port");
    sb.write_cmdr_config("[daemon]\nvalidate_on_change = true\n");
    sb.start();
    let localstack = format!("http://127.0.0.1:{port}");
    for (name, policy) in [("local", "ask"), ("auto", "auto")] {
        let out = sb.ctl(&[
            "accounts",
            "add",
            name,
            "--profile",
            "local",
            "--localstack",
            &localstack,
            "--on-change",
            policy,
        ]);
        assert!(out.status.success(), "{}", crate::sandbox::stderr(&out));
    }
    let mut watch = sb.watch();
    std::fs::remove_file(sb.credentials()).expect("rm");
    sb.wait_until("missing", || {
        sb.account("local")["state"] == "missing" && sb.account("auto")["state"] == "missing"
    });
    std::thread::sleep(std::time::Duration::from_millis(1500));
    sb.write_credentials(saved);
    sb.wait_until("back", || {
        ["local", "auto"]
            .iter()
            .all(|n| matches!(sb.account(n)["state"].as_str(), Some("ok" | "unvalidated")))
    });
    // Validations after the token came back answer "unreachable": never `invalid`.
    assert!(crate::sandbox::stderr(&sb.ctl(&["validate", "local"])).contains("unreachable"));
    for name in ["local", "auto"] {
        assert_eq!(sb.account(name)["state"], "unvalidated", "{name}");
    }
    let out = sb.ctl(&["env", "local"]);
    assert!(out.status.success(), "{}", crate::sandbox::stderr(&out));
    let events = watch.drain(std::time::Duration::from_millis(500));
    let bad: Vec<&serde_json::Value> = watch
        .seen
        .iter()
        .chain(&events)
        .filter(|e| {
            (e["type"] == "token_changed" && e["new_fingerprint"].is_null())
                || e["type"] == "token_accepted"
        })
        .collect();
    assert!(bad.is_empty(), "a vanished token is no new token: {bad:#?}");
}

/// States were used for the wrong things: a role without a region and a profile with no
/// credentials at all were `invalid` (STS never said so); each is `misconfigured`, with
/// its reason.
#[test]
fn profiles_that_cannot_give_credentials_are_misconfigured() {
    let mut sb = Sandbox::new();
    std::fs::create_dir_all(&sb.aws).expect("aws");
    std::fs::write(
        sb.config(),
        "[profile bare]\nregion = us-east-1\n\
         [profile role]\nrole_arn = arn:aws:iam::123456789012:role/r\nsource_profile = base\n\
         [profile base]\nregion = us-east-1\n",
    )
    .expect("config");
    sb.write_credentials(
        "[base]\naws_access_key_id = AKIAIOSFODNN7EXAMPLE\naws_secret_access_key = wJalrXUtnFEMI-SECRET-base\n",
    );
    sb.start();
    let out = sb.ctl(&["accounts", "add", "bare", "--profile", "bare"]);
    assert!(out.status.success(), "{}", crate::sandbox::stderr(&out));
    assert_eq!(sb.account("bare")["state"], "misconfigured");
    let out = sb.ctl(&["env", "bare"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        crate::sandbox::stderr(&out).contains("gives no credentials"),
        "{}",
        crate::sandbox::stderr(&out)
    );
    // The role has no region anywhere: resolving it fails before any network.
    let out = sb.ctl(&["accounts", "add", "role", "--profile", "role"]);
    assert!(out.status.success(), "{}", crate::sandbox::stderr(&out));
    let out = sb.ctl(&["validate", "role"]);
    assert_eq!(out.status.code(), Some(1));
    let role = sb.account("role");
    assert_eq!(role["state"], "misconfigured", "{role}");
}

/// Found trying the product as a new user: an assume-role profile with a region (in the
/// profile and the account) was `misconfigured: Missing Region`, because the SDK's
/// provider was given no region for its STS call. It now gets the account's; offline the
/// call is unreachable (`unvalidated`), online STS judges the keys, never "Missing Region".
#[test]
fn a_role_with_a_region_is_not_missing_one() {
    let mut sb = Sandbox::new();
    std::fs::create_dir_all(&sb.aws).expect("aws");
    std::fs::write(
        sb.config(),
        "[profile role]\nrole_arn = arn:aws:iam::123456789012:role/r\nsource_profile = base\nregion = eu-west-1\n\
         [profile base]\nregion = eu-west-1\n",
    )
    .expect("config");
    sb.write_credentials(
        "[base]\naws_access_key_id = AKIAIOSFODNN7EXAMPLE\naws_secret_access_key = wJalrXUtnFEMI-SECRET-role\n",
    );
    sb.start();
    let out = sb.ctl(&["accounts", "add", "role", "--profile", "role"]);
    assert!(out.status.success(), "{}", crate::sandbox::stderr(&out));
    let out = sb.ctl(&["validate", "role"]);
    let stderr = crate::sandbox::stderr(&out);
    assert!(!stderr.contains("Missing Region"), "{stderr}");
    let role = sb.account("role");
    assert_ne!(role["state"], "misconfigured", "{role}");
}

// ---- What a new user following README.md hit (the contract: PRODUCT.md, "Public contract") ----

/// Runs cmdrctl with `input` on stdin; returns its output.
fn ctl_with_input(sb: &Sandbox, args: &[&str], input: &str) -> std::process::Output {
    use std::io::Write as _;
    use std::process::Stdio;
    let mut child = sb
        .command("cmdrctl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // A refused option ends cmdrctl before it reads stdin: a broken pipe here is fine.
    let _ = child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes());
    child.wait_with_output().expect("wait")
}

/// A raw JSON-lines connection that has said hello.
fn json_session(sb: &Sandbox) -> (UnixStream, BufReader<UnixStream>) {
    let mut stream = UnixStream::connect(sb.socket()).expect("connect");
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .expect("timeout");
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    stream
        .write_all(
            b"{\"hello\":{\"protocol\":1,\"client\":\"regression\",\"client_version\":\"0\"}}\n",
        )
        .expect("hello");
    let welcome = read_json_line(&mut reader).expect("welcome");
    assert!(welcome.get("welcome").is_some(), "{welcome}");
    (stream, reader)
}

fn read_json_line(reader: &mut BufReader<UnixStream>) -> Option<Value> {
    let mut line = String::new();
    match reader.read_line(&mut line) {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(serde_json::from_str(&line).expect("a JSON line")),
    }
}

/// Defect 3: `cmdrctl status | head -1` panicked (exit 101, a backtrace) when the reader
/// had gone; so did `completions bash | head -1`. Now it ends quietly, killed by SIGPIPE
/// like other Unix tools. The pipe's read end is closed before cmdrctl starts, so every
/// run writes into a closed pipe.
#[test]
fn closed_pipe_ends_quietly_by_sigpipe() {
    use std::os::unix::process::ExitStatusExt as _;
    let mut sb = Sandbox::with_profile("T1");
    sb.start();
    sb.add_account("acme", &[]);
    for args in [
        &["status"][..],
        &["accounts", "list"],
        &["profiles", "--json"],
        &["completions", "bash"],
        &["doctor"],
        &["prompt", "--all"],
    ] {
        let (read, write) = cmdr_testkit::sys::pipe().expect("pipe");
        drop(read);
        let out = sb
            .command("cmdrctl")
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::from(write))
            .stderr(std::process::Stdio::piped())
            .output()
            .expect("run");
        let err = stderr(&out);
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGPIPE),
            "cmdrctl {args:?}: {:?}\n{err}",
            out.status
        );
        assert!(err.is_empty(), "cmdrctl {args:?}: {err}");
    }
}

/// Defect 5: `--json` was accepted and ignored by `env`, `prompt` and `paste`.
#[test]
fn json_shapes_of_env_prompt_and_paste() {
    let mut sb = Sandbox::with_profile("T1");
    sb.start();
    sb.add_account("acme", &["--region", "eu-west-1"]);
    let env = sb.json(&["env", "acme"]);
    assert_eq!(env["AWS_ACCESS_KEY_ID"], "AKIAIOSFODNN7EXAMPLE");
    assert_eq!(env["AWS_SESSION_TOKEN"], "T1");
    assert_eq!(env["AWS_REGION"], "eu-west-1");
    assert_eq!(env["CMDR_ACCOUNT"], "acme");
    assert_eq!(env["AWS_SECURITY_TOKEN"], Value::Null);
    assert_eq!(env["AWS_ENDPOINT_URL"], Value::Null);

    let prompt = sb.json(&["prompt"]);
    let entries = prompt.as_array().expect("array");
    assert_eq!(entries.len(), 1, "{prompt}");
    assert_eq!(entries[0]["account"], "acme");
    assert_eq!(entries[0]["state"], "ok");
    assert!(entries[0].get("expires_at").is_some() && entries[0]["left"].is_string());

    let out = ctl_with_input(
        &sb,
        &[
            "paste",
            "--profile",
            "fresh",
            "--expires-in",
            "1h",
            "--json",
        ],
        "aws_access_key_id = AKIAPASTEDJSON\naws_secret_access_key = pasted-json-secret\n",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let pasted: Value = serde_json::from_slice(&out.stdout).expect("paste --json");
    assert_eq!(pasted["profile"], "fresh");
    assert_eq!(
        pasted["path"],
        sb.credentials().display().to_string().as_str()
    );
    assert!(pasted["backup"].is_string(), "{pasted}");
    assert!(
        pasted["expires_at"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );
}

/// Defect 6: malformed values were accepted (and saved) or refused with a misleading rule.
/// Every one is now refused where it enters, with exit 2 and the rule: on the command
/// line, and over the socket (a client that skips cmdrctl).
#[test]
fn malformed_values_are_refused_with_the_rule() {
    let mut sb = Sandbox::with_profile("T1");
    sb.start();
    let cases: &[(&[&str], &str)] = &[
        (
            &[
                "accounts",
                "add",
                "a1",
                "--profile",
                "acme",
                "--endpoint",
                "http://",
            ],
            "no host",
        ),
        (
            &[
                "accounts",
                "add",
                "a2",
                "--profile",
                "acme",
                "--region",
                "eu west 1",
            ],
            "like `eu-west-1`",
        ),
        (
            &[
                "accounts",
                "add",
                "a3",
                "--profile",
                "acme",
                "--region",
                "eu-west-1\n",
            ],
            "like `eu-west-1`",
        ),
        (
            &[
                "accounts",
                "add",
                "a4",
                "--profile",
                "acme",
                "--region",
                "eu\u{1b}[2J",
            ],
            "like `eu-west-1`",
        ),
        (
            &["accounts", "add", "--profile", "acme", "--", "-dash"],
            "starting with a letter or digit",
        ),
        (
            &["accounts", "add", "ç", "--profile", "acme"],
            "ASCII letters",
        ),
        (
            &["paste", "--profile", "p", "--expires-in", "0"],
            "positive duration",
        ),
        (
            &[
                "paste",
                "--profile",
                "p",
                "--expires-at",
                "2020-01-01T00:00:00Z",
            ],
            "in the future",
        ),
    ];
    for (args, rule) in cases {
        let out = ctl_with_input(&sb, args, "");
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(rule), "{args:?}: {err}");
        assert!(!err.contains('\u{1b}'), "{args:?}: {err}");
    }
    assert_eq!(sb.json(&["accounts", "list"]), serde_json::json!([]));

    // The same rules hold for requests over the socket.
    let (mut stream, mut reader) = json_session(&sb);
    let requests = [
        r#"{"name":"s1","profile":"acme","region":"eu west 1","target":{"target":"aws","endpoint":null},"on_change":"ask"}"#,
        r#"{"name":"s2","profile":"acme","region":null,"target":{"target":"endpoint","endpoint":"http://"},"on_change":"ask"}"#,
        r#"{"name":"-s3","profile":"acme","region":null,"target":{"target":"aws","endpoint":null},"on_change":"ask"}"#,
    ];
    for (id, spec) in requests.iter().enumerate() {
        let line =
            format!("{{\"request\":{{\"id\":{id},\"request\":{{\"add_account\":{spec}}}}}}}\n");
        stream.write_all(line.as_bytes()).expect("send");
        let answer = read_json_line(&mut reader).expect("answer");
        let error = &answer["response"]["outcome"]["err"];
        assert_eq!(error["code"], "bad_request", "{answer}");
        assert!(
            error["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("invalid ")),
            "{answer}"
        );
    }
    assert_eq!(sb.json(&["accounts", "list"]), serde_json::json!([]));
    sb.add_account("acme", &["--region", "eu-west-1"]);
    let edit = r#"{"request":{"id":9,"request":{"edit_account":{"name":"acme","edit":{"profile":null,"region":"EU WEST","clear_region":false,"target":null,"on_change":null}}}}}"#;
    stream
        .write_all(format!("{edit}\n").as_bytes())
        .expect("send");
    let answer = read_json_line(&mut reader).expect("answer");
    assert_eq!(
        answer["response"]["outcome"]["err"]["code"], "bad_request",
        "{answer}"
    );
    assert_eq!(sb.account("acme")["region"], "eu-west-1");
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

/// Defect 8: a duplicate name and a bad endpoint exited 1; only a usage error exits 2.
#[test]
fn malformed_values_exit_2() {
    let mut sb = Sandbox::with_profile("T1");
    sb.start();
    sb.add_account("acme", &[]);
    let duplicate = sb.ctl(&["accounts", "add", "acme", "--profile", "acme"]);
    assert_eq!(duplicate.status.code(), Some(2), "{}", stderr(&duplicate));
    assert!(stderr(&duplicate).contains("already exists"));
    let endpoint = sb.ctl(&["accounts", "edit", "acme", "--endpoint", "localhost:4566"]);
    assert_eq!(endpoint.status.code(), Some(2), "{}", stderr(&endpoint));
    assert!(stderr(&endpoint).contains("http://"));
    // Not malformed, just absent: a failure, exit 1.
    let missing = sb.ctl(&["accounts", "show", "nobody"]);
    assert_eq!(missing.status.code(), Some(1), "{}", stderr(&missing));
}

/// Defect 8: a connection refused because it came from another uid said "cmdrd closed the
/// connection" (exit 1); it now says the socket belongs to another user (exit 3, no daemon
/// of ours is reachable): since issue 23, cmdrctl names the directory's owner before it
/// connects. Needs root to act as another uid.
#[test]
fn another_users_daemon_is_named_as_such() {
    use std::os::unix::process::CommandExt as _;
    if !cmdr_testkit::sys::is_root() {
        eprintln!("skipped: acting as another uid needs root");
        return;
    }
    let nobody = 65534;
    let mut sb = Sandbox::with_profile("T1");
    sb.start();
    set_mode(&sb.root, 0o755);
    set_mode(&sb.run_dir, 0o755);
    set_mode(sb.socket().parent().expect("dir"), 0o755);
    set_mode(&sb.socket(), 0o666);
    let ctl = crate::another_user::bin_copy("cmdrctl", &sb.root);
    let out = std::process::Command::new(&ctl)
        .arg("status")
        .env_clear()
        .env("HOME", "/nonexistent")
        .env("CMDR_SOCKET", sb.socket())
        .uid(nobody)
        .gid(nobody)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run as nobody");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains("owned by uid 0 (root), not by uid 65534"),
        "{err}"
    );
}

/// Friction: `accept` without a new token re-accepted and emitted `token_accepted`;
/// `accounts edit` without a change emitted `account_updated`.
#[test]
fn accept_and_edit_without_a_change_emit_nothing() {
    let mut sb = Sandbox::with_profile("T1");
    sb.start();
    sb.add_account("acme", &["--region", "eu-west-1"]);
    let mut watch = sb.watch();
    let out = sb.ctl(&["accept", "acme"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("nothing to accept"),
        "{}",
        stdout(&out)
    );
    let out = sb.ctl(&["accounts", "edit", "acme", "--region", "eu-west-1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // A real change afterwards: events arrive in order, so anything the two no-ops had
    // emitted would come before it.
    let out = sb.ctl(&["accounts", "edit", "acme", "--on-change", "auto"]);
    assert!(out.status.success(), "{}", stderr(&out));
    watch.wait_type("account_updated");
    let types: Vec<&Value> = watch.seen.iter().map(|e| &e["type"]).collect();
    assert_eq!(types, ["account_updated"], "{:?}", watch.seen);

    // With a new token in the file, accept does accept.
    sb.write_credentials(&creds("acme", "T2"));
    watch.wait_type("token_accepted");
    sb.ctl(&["accounts", "edit", "acme", "--on-change", "ask"]);
    sb.write_credentials(&creds("acme", "T3"));
    watch.wait_for("T3 changed", |e| {
        e["type"] == "token_changed" && e["account"] == "acme"
    });
    let out = sb.ctl(&["accept", "acme"]);
    assert!(
        stdout(&out).contains("accepted account acme"),
        "{}",
        stdout(&out)
    );
    watch.wait_type("token_accepted");
}

/// Friction: after switching an account to another target, the account id STS reported
/// for the old target stayed.
#[test]
fn switching_target_forgets_the_account_id() {
    let moto = crate::sts::Moto::start(&[]);
    let mut sb = Sandbox::with_profile("T1");
    sb.start();
    sb.add_account("acme", &["--endpoint", &moto.url, "--region", "eu-west-1"]);
    let out = sb.ctl(&["validate", "acme"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(sb.account("acme")["account_id"], "123456789012");
    let out = sb.ctl(&["accounts", "edit", "acme", "--localstack"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(sb.account("acme")["account_id"], Value::Null);
}

/// Friction: `prompt` with several accounts printed all of them (`acme 11h59m local moto
/// 11h59m`). It shows the shell's account (`CMDR_ACCOUNT`), else the one expiring first;
/// `--all` shows every one; `--format` keeps working.
#[test]
fn prompt_shows_one_account() {
    let mut sb = Sandbox::new();
    std::fs::create_dir_all(&sb.aws).expect("aws");
    let soon = (epoch_now() + 3 * 3600).to_string();
    let later = (epoch_now() + 9 * 3600).to_string();
    let text = format!(
        "{}x_security_token_expires = {}\n\n{}x_security_token_expires = {}\n",
        creds("acme", "TA"),
        rfc3339(&later),
        creds("moto", "TM"),
        rfc3339(&soon),
    );
    sb.write_credentials(&text);
    sb.start();
    sb.add_account("acme", &[]);
    let out = sb.ctl(&["accounts", "add", "moto", "--profile", "moto"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let prompt = |sb: &Sandbox, args: &[&str]| stdout(&sb.ctl(args)).trim_end().to_owned();
    assert!(
        prompt(&sb, &["prompt"]).starts_with("moto 2h5"),
        "{}",
        prompt(&sb, &["prompt"])
    );
    assert_eq!(
        prompt(&sb, &["prompt", "--format", "[{account}]"]),
        "[moto]"
    );
    assert_eq!(
        prompt(
            &sb,
            &["prompt", "--account", "acme", "--format", "{account}"]
        ),
        "acme"
    );
    assert_eq!(
        prompt(&sb, &["prompt", "--all", "--format", "{account}"]),
        "acme moto"
    );
    sb.set_env("CMDR_ACCOUNT", "acme");
    assert_eq!(
        prompt(&sb, &["prompt", "--format", "{account}:{state}"]),
        "acme:ok"
    );
    let all = sb.json(&["prompt", "--all"]);
    assert_eq!(all.as_array().map(Vec::len), Some(2), "{all}");
}

fn epoch_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(0))
        .unwrap_or(0)
}

/// Seconds since the epoch (as text) in RFC 3339 UTC, through `date` (no chrono here).
fn rfc3339(epoch: &str) -> String {
    let out = std::process::Command::new("date")
        .args(["-u", "-d", &format!("@{epoch}"), "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .expect("date");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
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

/// Friction: the refusal for an expired `auto` account told it to run `accept`, which an
/// `auto` account never needs.
#[test]
fn expired_auto_account_is_not_told_to_accept() {
    let mut sb = Sandbox::new();
    std::fs::create_dir_all(&sb.aws).expect("aws");
    sb.write_credentials(&format!(
        "{}x_security_token_expires = 2020-01-01T00:00:00Z\n",
        creds("acme", "T1")
    ));
    sb.start();
    sb.add_account("auto", &["--on-change", "auto"]);
    sb.add_account("ask", &[]);
    let auto = sb.ctl(&["env", "auto"]);
    assert_eq!(auto.status.code(), Some(1));
    assert!(
        stderr(&auto).contains("paste a new one") && !stderr(&auto).contains("cmdrctl accept"),
        "{}",
        stderr(&auto)
    );
    let ask = sb.ctl(&["env", "ask"]);
    assert!(
        stderr(&ask).contains("cmdrctl accept ask"),
        "{}",
        stderr(&ask)
    );
}

/// Friction: `hook powershell` was refused while `env --shell powershell` worked.
#[test]
fn hook_for_powershell() {
    let sb = Sandbox::new();
    for shell in ["powershell", "pwsh"] {
        let out = sb.ctl(&["hook", shell]);
        assert!(out.status.success(), "{}", stderr(&out));
        let text = stdout(&out);
        assert!(text.contains("function global:prompt"), "{text}");
        assert!(text.contains("--shell powershell --if-changed"), "{text}");
    }
}

/// Friction: `status` counted a subscriber with no client subscribed (the daemon's own
/// desktop notifier); `watch` exited 0 when the daemon stopped (now with `--once`; without
/// it, `watch` waits for the daemon to come back: tests/newcomer.rs).
#[test]
fn status_counts_clients_and_watch_exits_3_when_the_daemon_stops() {
    let mut sb = Sandbox::with_profile("T1");
    sb.start();
    assert_eq!(sb.json(&["status"])["subscribers"], 0);
    let child = sb
        .command("cmdrctl")
        .args(["watch", "--once"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("watch");
    sb.wait_until("watch subscribed", || {
        sb.json(&["status"])["subscribers"] == 1
    });
    sb.stop();
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("cmdrd stopped"), "{}", stderr(&out));
}

/// Friction: an unknown request or invalid JSON closed the connection without a word.
#[test]
fn unreadable_messages_get_a_reply_before_the_close() {
    let mut sb = Sandbox::new();
    sb.start();
    for bad in [
        &b"{\"request\":{\"id\":1,\"request\":\"frobnicate\"}}\n"[..],
        b"{not json at all\n",
    ] {
        let (mut stream, mut reader) = json_session(&sb);
        stream.write_all(bad).expect("send");
        let answer = read_json_line(&mut reader).expect("a reply before the close");
        let message = answer["refused"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("cannot read this message"), "{answer}");
        assert_eq!(read_json_line(&mut reader), None, "then the close");
    }
}

/// Friction: `doctor` said "no problems found" for an expiry it cannot read (and quietly
/// estimated one), and printed sub-properties as raw strings.
#[test]
fn doctor_warns_about_unreadable_expiry_and_shows_sub_properties() {
    let sb = Sandbox::new();
    std::fs::create_dir_all(&sb.aws).expect("aws");
    sb.write_credentials(&format!(
        "{}x_security_token_expires = tomorrow\n",
        creds("acme", "T1")
    ));
    std::fs::write(
        sb.config(),
        "[profile acme]\nregion = eu-west-1\ns3 =\n  max_concurrent_requests = 20\n  max_queue_size = 1000\n",
    )
    .expect("config");
    let out = sb.ctl(&["doctor"]);
    let text = stdout(&out);
    let at = format!("{}:5:", sb.credentials().display());
    assert!(
        text.contains(&at) && text.contains("x_security_token_expires"),
        "{text}"
    );
    assert!(!text.contains("no problems found"), "{text}");
    let report = sb.json(&["doctor"]);
    assert_eq!(
        report["profiles"]["acme"]["s3"],
        serde_json::json!({"max_concurrent_requests": "20", "max_queue_size": "1000"})
    );
    assert_eq!(report["profiles"]["acme"]["region"], "eu-west-1");
}

/// Friction: `env` for an account without a region unset the user's own `AWS_REGION`.
#[test]
fn env_of_a_region_less_account_leaves_aws_region_alone() {
    let mut sb = Sandbox::with_profile("T1");
    sb.start();
    sb.add_account("acme", &[]);
    assert_eq!(sb.account("acme")["region"], Value::Null);
    let out = sb.ctl(&["env", "acme", "--shell", "bash"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stdout(&out).contains("AWS_REGION"), "{}", stdout(&out));
    let script = format!(
        "export AWS_REGION=us-east-2; eval \"$('{}' env acme --shell bash)\"; echo \"region=$AWS_REGION\"",
        crate::sandbox::bin("cmdrctl").display()
    );
    let out = sb
        .external("bash")
        .args(["-c", &script])
        .output()
        .expect("bash");
    assert!(
        stdout(&out).contains("region=us-east-2"),
        "{}",
        stdout(&out)
    );
    assert!(
        !sb.json(&["env", "acme"])
            .as_object()
            .expect("object")
            .contains_key("AWS_REGION")
    );
}

/// Two daemons on different sockets (e.g. `cmdrd` and `env -u XDG_RUNTIME_DIR cmdrd`) both
/// started and both wrote the same `state.json`; the last writer won and accounts vanished.
/// One daemon per data directory: the second exits 1 and names the first one's socket.
#[test]
fn second_daemon_on_another_socket_refused_for_the_same_data_dir() {
    let mut sb = Sandbox::with_profile("T1");
    sb.start();
    sb.add_account("acme", &[]);
    let other = sb.root.join("other.sock");
    // Spawned, not `output()`: before the fix the second daemon ran on, and the test must
    // fail rather than hang.
    let mut second = sb
        .command("cmdrd")
        .arg("--socket")
        .arg(&other)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("second cmdrd");
    let mut exited = None;
    sb.wait_until("the second cmdrd to exit or bind", || {
        exited = second.try_wait().expect("try_wait");
        exited.is_some() || other.exists()
    });
    if exited.is_none() {
        let _ = second.kill();
        let _ = second.wait();
        panic!(
            "a second daemon started on {} with the same data directory",
            other.display()
        );
    }
    let out = second.wait_with_output().expect("second cmdrd output");
    let err = crate::sandbox::stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "already running (socket {})",
            sb.socket().display()
        )),
        "{err}"
    );
    assert!(
        !other.exists(),
        "the second daemon must not bind its socket"
    );
    // The first one is unharmed and keeps its accounts.
    assert_eq!(sb.account("acme")["state"], "ok");
    sb.stop();
    let state = std::fs::read_to_string(sb.state_file()).expect("state file");
    assert!(state.contains("\"acme\""), "{state}");
}

/// Found by a new user: `[paths] socket = ""` made cmdrd bind an empty path in the
/// current directory and cmdrctl look for one; an empty path counts as unset, as an empty
/// `CMDR_SOCKET` does.
#[test]
fn empty_paths_in_the_config_count_as_unset() {
    let mut sb = Sandbox::with_profile("TOKEN-ONE");
    sb.write_cmdr_config(
        "[daemon]\nvalidate_on_change = false\n[paths]\nsocket = \"\"\ncredentials = \"\"\n",
    );
    sb.start();
    assert!(sb.socket().exists(), "the default socket");
    let status = sb.json(&["status"]);
    assert_eq!(status["socket"], sb.socket().display().to_string());
    let files = status["files"].as_array().cloned().unwrap_or_default();
    assert!(
        files
            .iter()
            .any(|f| f["path"] == sb.credentials().display().to_string()),
        "{files:?}"
    );
}
