//! Containers follow the account (issue 26, item 1): `container setup` makes the real
//! Podman network `cmdr` (idempotent; a clear message without Podman or Docker, and
//! Docker's real CLI without a daemon); a real container on it, started with exactly what
//! `container env` printed, runs the Rust SDK loop and follows `accept` and a daemon
//! restart; another account's URL refuses its token; the host's 127.0.0.1 is out of its
//! reach. Images come from a local root filesystem (busybox-static plus the loop binary and
//! the libraries `ldd` lists): no registry.
#![cfg(target_os = "linux")]

use std::net::{SocketAddrV4, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use crate::endpoint::{Loop, User, alice_and_bob, user_creds};
use crate::sandbox::{Sandbox, bin, stderr, stdout};

const IMAGE: &str = "localhost/cmdr-test-sts-loop:latest";
const GATEWAY: std::net::Ipv4Addr = std::net::Ipv4Addr::new(169, 254, 170, 2);
/// How long a container may take to follow an `accept` (a bound, not a timing: see
/// docs/benchmarks.md).
const FOLLOW: Duration = Duration::from_secs(120);

/// One test at a time touches the `cmdr` network (one removes and re-creates it).
fn network_lock() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Podman as this machine runs it (TECH-NOTES "Real containers on this machine"): runc,
/// cgroupfs, no default ulimits, from a containers.conf of the test's own.
fn podman_conf() -> &'static Path {
    static CONF: OnceLock<PathBuf> = OnceLock::new();
    CONF.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("cmdr-podman-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("conf dir");
        let conf = dir.join("containers.conf");
        std::fs::write(
            &conf,
            "[containers]\ndefault_ulimits = []\n[engine]\nruntime = \"runc\"\ncgroup_manager = \"cgroupfs\"\n",
        )
        .expect("containers.conf");
        conf
    })
}

fn podman() -> Command {
    let mut cmd = Command::new("podman");
    cmd.env("CONTAINERS_CONF", podman_conf());
    cmd
}

fn ok(out: &Output, what: &str) -> String {
    assert!(out.status.success(), "{what}: {}", stderr(out));
    stdout(out)
}

/// The image: busybox-static, the Rust SDK loop, its shared libraries and the root
/// certificates.
fn image() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let root = tempfile::tempdir().expect("root");
        let r = root.path().join("fs");
        for dir in ["bin", "tmp", "etc"] {
            std::fs::create_dir_all(r.join(dir)).expect("dir");
        }
        std::fs::copy("/bin/busybox", r.join("bin/busybox"))
            .expect("busybox (apt-get install busybox-static; scripts/test does)");
        for applet in ["sh", "wget", "cat"] {
            std::os::unix::fs::symlink("busybox", r.join("bin").join(applet)).expect("applet");
        }
        let sts = bin("cmdr-sts-loop");
        std::fs::copy(&sts, r.join("bin/cmdr-sts-loop")).expect("loop binary");
        let ldd = ok(&Command::new("ldd").arg(&sts).output().expect("ldd"), "ldd");
        for lib in ldd.split_whitespace().filter(|w| w.starts_with('/')) {
            let to = r.join(lib.trim_start_matches('/'));
            std::fs::create_dir_all(to.parent().expect("parent")).expect("lib dir");
            std::fs::copy(lib, &to).unwrap_or_else(|e| panic!("copy {lib}: {e}"));
        }
        // The SDK's HTTP client refuses to start without root certificates (even for http).
        let certs = r.join("etc/ssl/certs");
        std::fs::create_dir_all(&certs).expect("certs dir");
        std::fs::copy(
            "/etc/ssl/certs/ca-certificates.crt",
            certs.join("ca-certificates.crt"),
        )
        .expect("ca-certificates");
        let tar = root.path().join("root.tar");
        ok(
            &Command::new("tar")
                .arg("-C")
                .arg(&r)
                .arg("-cf")
                .arg(&tar)
                .arg(".")
                .output()
                .expect("tar"),
            "tar",
        );
        ok(
            &podman()
                .arg("import")
                .arg(&tar)
                .arg(IMAGE)
                .output()
                .expect("podman (apt-get install podman runc; scripts/test does)"),
            "podman import",
        );
    });
}

/// moto on the host's loopback, reachable from the network at the gateway: a forwarder
/// bound (IP_FREEBIND) to 169.254.170.2 on moto's port, so a container reaches it with the
/// account's endpoint as `container env` rewrites it.
fn forward_from_gateway(moto_url: &str) {
    let port: u16 = moto_url
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("moto port");
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket.set_freebind_v4(true).expect("freebind");
    socket
        .bind(&SocketAddrV4::new(GATEWAY, port).into())
        .expect("bind the gateway");
    socket.listen(64).expect("listen");
    let listener: TcpListener = socket.into();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(inside) = conn else { continue };
            let Ok(moto) = TcpStream::connect(("127.0.0.1", port)) else {
                continue;
            };
            let (mut a, mut b) = (
                inside.try_clone().expect("clone"),
                moto.try_clone().expect("clone"),
            );
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut a, &mut &moto);
                let _ = moto.shutdown(std::net::Shutdown::Write);
            });
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut b, &mut &inside);
                let _ = inside.shutdown(std::net::Shutdown::Write);
            });
        }
    });
}

/// A running container; removed when dropped.
struct Container {
    name: String,
    run: Loop,
}

impl Container {
    /// `podman run` with exactly the options `container env` printed.
    fn start(printed: &str, program: &[&str]) -> Container {
        image();
        let name = format!("cmdr-test-{}-{}", std::process::id(), rand_suffix());
        let mut cmd = podman();
        cmd.args(["run", "--rm", "--name", &name])
            .args(printed.split_whitespace())
            .arg(IMAGE)
            .args(program);
        Container {
            run: Loop::spawn("Rust SDK in a container", cmd),
            name,
        }
    }

    /// A shell command inside the running container.
    fn sh(&self, script: &str) -> Output {
        podman()
            .args(["exec", &self.name, "sh", "-c", script])
            .output()
            .expect("podman exec")
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = podman()
            .args(["rm", "-f", "-t", "0", &self.name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
        % 1_000_000_007
}

fn setup(sb: &Sandbox, path: &str, args: &[&str]) -> Output {
    let mut cmd = sb.command("cmdrctl");
    cmd.args(["container", "setup"])
        .args(args)
        .env("PATH", path)
        .env("CONTAINERS_CONF", podman_conf());
    cmd.output().expect("cmdrctl")
}

/// A directory holding only a `podman` link: the PATH of a machine without Docker.
fn podman_only() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("dir");
    let podman = ["/usr/bin/podman", "/usr/local/bin/podman"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("podman (apt-get install podman runc; scripts/test does)");
    std::os::unix::fs::symlink(podman, dir.path().join("podman")).expect("link");
    dir
}

fn wget(c: &Container, url: &str, token: &str) -> Output {
    c.sh(&format!(
        "wget -q -O - --header \"Authorization: $(cat {token})\" {url}"
    ))
}

fn change_and_accept(sb: &Sandbox, to: &User) {
    let mut watch = sb.watch();
    sb.write_credentials(&user_creds("acme", to));
    watch.wait_type("token_changed");
    assert!(sb.ctl(&["accept", "acme"]).status.success());
}

#[test]
fn a_container_follows_accept_and_a_restart_and_reads_its_own_account_only() {
    let (mut sb, moto, users) = alice_and_bob();
    let (alice, bob) = (&users[0], &users[1]);
    forward_from_gateway(&moto.url);
    let _network = network_lock();
    let podman_path = podman_only();
    let out = setup(&sb, podman_path.path().to_str().expect("utf8"), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    // prod: bob's keys under another account.
    let mut creds = user_creds("acme", alice);
    creds.push_str(&user_creds("bobs", bob));
    sb.write_credentials(&creds);
    sb.wait_until("profile bobs", || {
        sb.ctl(&["accounts", "add", "prod", "--profile", "bobs"])
            .status
            .success()
    });

    let status = sb.json(&["status"]);
    let gateway = status["endpoint"]["gateway_url"]
        .as_str()
        .expect("status shows the gateway URL")
        .to_owned();
    assert!(gateway.starts_with("http://169.254.170.2:"), "{gateway}");
    let out = sb.ctl(&["container", "env", "acme"]);
    let printed = ok(&out, "container env");
    // The account's loopback endpoint is the host's: the container gets it at the gateway.
    assert!(stderr(&out).contains("169.254.170.2"), "{}", stderr(&out));
    assert!(printed.contains("--network cmdr"), "{printed}");
    assert!(
        printed.contains(&format!("AWS_CONTAINER_CREDENTIALS_FULL_URI={gateway}acme")),
        "{printed}"
    );
    assert!(!printed.contains('\''), "one word per option: {printed}");
    let json = sb.json(&["container", "env", "acme"]);
    let host_token = PathBuf::from(json["mount"]["source"].as_str().expect("mount")).join("token");
    let first_token = std::fs::read_to_string(&host_token).expect("container token");

    let c = Container::start(&printed, &["/bin/cmdr-sts-loop", "--every-ms", "500"]);
    c.run.wait_for(&alice.arn, Duration::from_secs(90));

    // The container reads its own account, not prod's, and not the host's loopback.
    let token = "$AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE";
    let own = wget(&c, &format!("{gateway}acme"), token);
    assert!(
        own.status.success() && stdout(&own).contains(&alice.id),
        "its own URL: {}{}",
        stdout(&own),
        stderr(&own)
    );
    let other = wget(&c, &format!("{gateway}prod"), token);
    assert!(!other.status.success(), "prod answered: {}", stdout(&other));
    assert!(stderr(&other).contains("403"), "{}", stderr(&other));
    assert!(!stdout(&other).contains(&bob.id));
    let loopback = gateway.replace("169.254.170.2", "127.0.0.1");
    let host = wget(&c, &format!("{loopback}acme"), token);
    assert!(
        !host.status.success() && !stdout(&host).contains(&alice.id),
        "the host's 127.0.0.1 answered a container: {}",
        stdout(&host)
    );
    let moto_inside = c.sh(&format!("wget -q -O - {}", moto.url));
    assert!(
        !moto_inside.status.success(),
        "the host's moto on 127.0.0.1 answered"
    );

    // accept: the running container switches to bob.
    change_and_accept(&sb, bob);
    c.run.wait_for(&bob.arn, FOLLOW);

    // A daemon restart on the same port: a new token, through the same mount.
    sb.stop();
    assert!(!host_token.exists(), "the token dies with the daemon");
    sb.start();
    let second_token = std::fs::read_to_string(&host_token).expect("a new token, same place");
    assert_ne!(first_token, second_token);
    change_and_accept(&sb, alice);
    c.run.wait_for(&alice.arn, FOLLOW);
    let own = wget(&c, &format!("{gateway}acme"), token);
    assert!(own.status.success(), "after the restart: {}", stderr(&own));

    // Docker's CLI takes the same options: it parses them all and stops only at the
    // missing daemon (an unknown or malformed option would be named instead).
    if Path::new("/usr/local/bin/docker").exists() || which("docker") {
        let out = Command::new("docker")
            .arg("run")
            .args(printed.split_whitespace())
            .args([IMAGE, "true"])
            .output()
            .expect("docker");
        let said = stderr(&out);
        assert!(
            said.contains("daemon") && !said.contains("flag") && !said.contains("invalid"),
            "{said}"
        );
    }
}

fn which(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
}

#[test]
fn container_setup_is_real_idempotent_and_says_what_is_missing() {
    let sb = Sandbox::new();
    let _network = network_lock();
    let podman_path = podman_only();
    let path = podman_path.path().to_str().expect("utf8");
    // From scratch: the dry run names the command and creates nothing.
    let _ = podman().args(["network", "rm", "cmdr"]).output();
    let out = setup(&sb, path, &["--dry-run"]);
    assert!(
        ok(&out, "dry run").contains(
            "podman network create --subnet 169.254.170.0/24 --gateway 169.254.170.2 cmdr"
        )
    );
    assert!(
        !podman()
            .args(["network", "exists", "cmdr"])
            .status()
            .expect("podman")
            .success()
    );
    let first: serde_json::Value =
        serde_json::from_str(&ok(&setup(&sb, path, &["--json"]), "setup")).expect("json");
    assert_eq!(first["created"], true);
    let inspect = ok(
        &podman()
            .args(["network", "inspect", "cmdr"])
            .output()
            .expect("inspect"),
        "inspect",
    );
    assert!(inspect.contains("\"169.254.170.0/24\"") && inspect.contains("\"169.254.170.2\""));
    let again = setup(&sb, path, &[]);
    assert!(ok(&again, "again").contains("nothing to do"));
    let second: serde_json::Value =
        serde_json::from_str(&ok(&setup(&sb, path, &["--json"]), "setup")).expect("json");
    assert_eq!(second["created"], false);

    // Neither tool: a clear message, exit 1.
    let empty = tempfile::tempdir().expect("dir");
    let out = setup(&sb, empty.path().to_str().expect("utf8"), &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("neither docker nor podman found in PATH"),
        "{}",
        stderr(&out)
    );
    // Docker's real CLI without a daemon (or the rights to it): its words and a hint.
    if which("docker") {
        let out = sb
            .command("cmdrctl")
            .args(["container", "setup", "--tool", "docker"])
            .output()
            .expect("cmdrctl");
        assert_eq!(out.status.code(), Some(1));
        let said = stderr(&out);
        assert!(
            said.contains(
                "docker network create --subnet 169.254.170.0/24 --gateway 169.254.170.2 cmdr"
            ) && said.contains("hint:"),
            "{said}"
        );
    }
}

#[test]
fn container_env_formats() {
    let (sb, _moto, _users) = alice_and_bob();
    let file = ok(
        &sb.ctl(&["container", "env", "acme", "--format", "env-file"]),
        "env-file",
    );
    assert!(
        file.lines()
            .any(|l| l.starts_with("AWS_CONTAINER_CREDENTIALS_FULL_URI=http://169.254.170.2:"))
    );
    assert!(
        file.lines()
            .any(|l| l == "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE=/run/cmdr/token")
    );
    assert!(file.lines().any(|l| l == "AWS_REGION=us-east-1"));
    assert!(file.lines().any(|l| l == "CMDR_ACCOUNT=acme"));
    assert!(
        file.lines()
            .next()
            .is_some_and(|l| l.starts_with("# docker run --network cmdr --volume "))
    );
    let dev: serde_json::Value = serde_json::from_str(&ok(
        &sb.ctl(&["container", "env", "acme", "--format", "devcontainer"]),
        "devcontainer",
    ))
    .expect("json");
    assert_eq!(dev["runArgs"][0], "--network=cmdr");
    assert!(
        dev["runArgs"][1]
            .as_str()
            .is_some_and(|v| v.starts_with("--volume=") && v.ends_with(":/run/cmdr:ro"))
    );
    assert_eq!(dev["containerEnv"]["CMDR_ACCOUNT"], "acme");
    // No secret in any of it: only paths and URLs.
    let token = std::fs::read_to_string(
        PathBuf::from(
            sb.json(&["container", "env", "acme"])["mount"]["source"]
                .as_str()
                .expect("source"),
        )
        .join("token"),
    )
    .expect("token");
    assert!(!file.contains(&token) && !dev.to_string().contains(&token));
    // An unknown account is refused.
    let out = sb.ctl(&["container", "env", "nobody"]);
    assert!(!out.status.success());
}

/// Another program on 169.254.170.2 and the endpoint's port when cmdrd starts (any user can
/// bind it with IP_FREEBIND): containers are not served, and `status` says so and why (a
/// restart keeps the same port; walkthrough of 2026-12-06: only an INFO log line said it).
#[test]
fn a_taken_gateway_port_is_a_status_warning() {
    let (mut sb, _moto, _users) = alice_and_bob();
    let status = sb.json(&["status"]);
    let url = status["endpoint"]["url"].as_str().expect("url").to_owned();
    let port: u16 = url
        .strip_prefix("http://127.0.0.1:")
        .and_then(|r| r.split('/').next())
        .and_then(|p| p.parse().ok())
        .expect("port");
    sb.stop();
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket.set_freebind_v4(true).expect("freebind");
    socket
        .bind(&SocketAddrV4::new(GATEWAY, port).into())
        .expect("take the gateway's port");
    socket.listen(4).expect("listen");
    sb.start();
    let status = sb.json(&["status"]);
    assert!(status["endpoint"]["gateway_url"].is_null(), "{status}");
    let warned = format!("containers are not served: another program holds {GATEWAY}:{port}");
    assert!(status["warnings"].to_string().contains(&warned), "{status}");
    let text = stdout(&sb.ctl(&["status"]));
    assert!(text.contains(&warned), "{text}");
    drop(socket);
}
