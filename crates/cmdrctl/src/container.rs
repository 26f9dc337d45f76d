//! `cmdrctl container setup|env`: containers that follow an account. `setup` makes the
//! `cmdr` network (Docker or Podman) whose gateway, 169.254.170.2, is the host address
//! every SDK accepts over plain http; `env` prints what `docker run` (or an env file, or a
//! devcontainer) needs for one account: the network, a read-only mount of the account's
//! token directory, and the variables. No secret passes through cmdrctl.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Subcommand, ValueEnum};
use cmdr_client::{Client, ClientError};
use cmdr_proto::{Request, Response};

pub const NETWORK: &str = "cmdr";
pub const SUBNET: &str = "169.254.170.0/24";
pub const GATEWAY: &str = "169.254.170.2";
/// Where a container sees its account's token directory.
pub const MOUNT_TARGET: &str = "/run/cmdr";

#[derive(Debug, Subcommand)]
pub enum Action {
    /// Create the `cmdr` network (subnet 169.254.170.0/24, gateway 169.254.170.2) with
    /// Docker or Podman; does nothing when it exists.
    Setup {
        /// Print the commands instead of running them.
        #[arg(long)]
        dry_run: bool,
        /// The container tool (default: docker, else podman, whichever is in PATH).
        #[arg(long, value_enum)]
        tool: Option<Tool>,
    },
    /// Print what a container needs to follow the account: `docker run $(cmdrctl
    /// container env acme) IMAGE`.
    Env {
        name: String,
        /// docker: `docker run`/`podman run` options; env-file: for `--env-file` (the
        /// network and mount as comments); devcontainer: `runArgs` and `containerEnv` for
        /// .devcontainer/devcontainer.json.
        #[arg(long, value_enum, default_value = "docker")]
        format: Format,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Tool {
    Docker,
    Podman,
}

impl Tool {
    fn name(self) -> &'static str {
        match self {
            Tool::Docker => "docker",
            Tool::Podman => "podman",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Docker,
    EnvFile,
    Devcontainer,
}

pub async fn run(socket: &Path, action: Action, json: bool) -> Result<ExitCode, ClientError> {
    match action {
        Action::Setup { dry_run, tool } => Ok(setup(tool, dry_run, json).await),
        Action::Env { name, format } => env(socket, name, format, json).await,
    }
}

/// The first of `names` found in PATH.
fn find_tool(wanted: Option<Tool>) -> Option<(Tool, PathBuf)> {
    let path = std::env::var_os("PATH")?;
    let tools = match wanted {
        Some(t) => vec![t],
        None => vec![Tool::Docker, Tool::Podman],
    };
    tools.into_iter().find_map(|tool| {
        std::env::split_paths(&path).find_map(|dir| {
            let candidate = dir.join(format!("{}{}", tool.name(), std::env::consts::EXE_SUFFIX));
            candidate.is_file().then_some((tool, candidate))
        })
    })
}

fn create_args() -> Vec<&'static str> {
    vec![
        "network",
        "create",
        "--subnet",
        SUBNET,
        "--gateway",
        GATEWAY,
        NETWORK,
    ]
}

async fn output(program: &Path, args: &[&str]) -> std::io::Result<std::process::Output> {
    tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
}

/// What the tool said, on one line, without control characters.
fn said(out: &std::process::Output) -> String {
    let text = String::from_utf8_lossy(&out.stderr);
    cmdr_core::text::escape_controls(text.trim()).into_owned()
}

fn rights_hint(tool: Tool) -> &'static str {
    match tool {
        Tool::Docker => {
            "is the Docker daemon running, and may you use it (the `docker` group, or sudo)?"
        }
        Tool::Podman => "may you use Podman here (run it as root for a network on the host)?",
    }
}

async fn setup(wanted: Option<Tool>, dry_run: bool, json: bool) -> ExitCode {
    let Some((tool, program)) = find_tool(wanted) else {
        eprintln!(
            "cmdrctl: {} found in PATH: install Docker or Podman, then run `cmdrctl container setup` again",
            match wanted {
                Some(t) => format!("no {}", t.name()),
                None => "neither docker nor podman".to_owned(),
            }
        );
        return ExitCode::FAILURE;
    };
    let create = create_args();
    if dry_run {
        let line = format!("{} {}", tool.name(), create.join(" "));
        if json {
            crate::output::print_json(&serde_json::json!({
                "tool": tool.name(), "network": NETWORK, "subnet": SUBNET, "gateway": GATEWAY,
                "dry_run": true, "command": line,
            }));
        } else {
            println!(
                "# unless `{} network inspect {NETWORK}` finds it:",
                tool.name()
            );
            println!("{line}");
        }
        return ExitCode::SUCCESS;
    }
    let inspect = match output(&program, &["network", "inspect", NETWORK]).await {
        Ok(out) => out,
        Err(err) => {
            eprintln!("cmdrctl: cannot run {}: {err}", program.display());
            return ExitCode::FAILURE;
        }
    };
    let created = if inspect.status.success() {
        let text = String::from_utf8_lossy(&inspect.stdout);
        if !(text.contains(&format!("\"{SUBNET}\"")) && text.contains(&format!("\"{GATEWAY}\""))) {
            eprintln!(
                "cmdrctl: the {} network `{NETWORK}` exists with another subnet or gateway: remove it (`{} network rm {NETWORK}`) and run `cmdrctl container setup` again",
                tool.name(),
                tool.name()
            );
            return ExitCode::FAILURE;
        }
        false
    } else {
        match output(&program, &create).await {
            Ok(out) if out.status.success() => true,
            Ok(out) => {
                eprintln!(
                    "cmdrctl: `{} {}` failed: {}\nhint: {}",
                    tool.name(),
                    create.join(" "),
                    said(&out),
                    rights_hint(tool)
                );
                return ExitCode::FAILURE;
            }
            Err(err) => {
                eprintln!("cmdrctl: cannot run {}: {err}", program.display());
                return ExitCode::FAILURE;
            }
        }
    };
    if tool == Tool::Podman && rootless_podman(&program).await {
        eprintln!(
            "cmdrctl: warning: rootless Podman keeps its networks in a namespace of its own, where {GATEWAY} is not this host: containers there cannot reach cmdrd; use Podman as root, or Docker"
        );
    }
    if json {
        crate::output::print_json(&serde_json::json!({
            "tool": tool.name(), "network": NETWORK, "subnet": SUBNET, "gateway": GATEWAY,
            "created": created,
        }));
    } else if created {
        println!(
            "created the {} network `{NETWORK}` ({SUBNET}, gateway {GATEWAY}): run containers with `$(cmdrctl container env NAME)`",
            tool.name()
        );
    } else {
        println!(
            "the {} network `{NETWORK}` exists ({SUBNET}, gateway {GATEWAY}): nothing to do",
            tool.name()
        );
    }
    ExitCode::SUCCESS
}

async fn rootless_podman(program: &Path) -> bool {
    output(
        program,
        &["info", "--format", "{{.Host.Security.Rootless}}"],
    )
    .await
    .is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).trim() == "true")
}

/// A loopback endpoint (LocalStack on `localhost:4566`) is the container's own loopback
/// inside it: the host is at the gateway.
fn for_container(endpoint: &str) -> Option<String> {
    let (scheme, rest) = endpoint.split_once("://")?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (format!("{u}@"), h),
        None => (String::new(), authority),
    };
    let (host, port) = if let Some(stripped) = hostport.strip_prefix('[') {
        let (h, p) = stripped.split_once(']')?;
        (h, p)
    } else {
        match hostport.rsplit_once(':') {
            Some((h, _)) => (h, &hostport[h.len()..]),
            None => (hostport, ""),
        }
    };
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    loopback.then(|| format!("{scheme}://{userinfo}{GATEWAY}{port}{tail}"))
}

async fn env(
    socket: &Path,
    name: String,
    format: Format,
    json: bool,
) -> Result<ExitCode, ClientError> {
    let mut client = Client::connect(socket, "cmdrctl").await?;
    if !client
        .welcome()
        .features
        .iter()
        .any(|f| f == cmdr_proto::FEATURE_CONTAINER_ENV)
    {
        return Err(ClientError::Incompatible(format!(
            "cmdrd {} does not serve containers: restart cmdrd",
            client.welcome().daemon_version
        )));
    }
    let Response::ChildEnv(child) = client.request(Request::ContainerEnv { name }).await? else {
        return Err(ClientError::Proto(cmdr_proto::ProtoError::Malformed(
            "unexpected answer to a container_env request".to_owned(),
        )));
    };
    crate::sentinel::ensure(socket, &child.url);
    let token_file = cmdr_proto::path_from_wire(&child.token_file);
    let Some(dir) = token_file.parent().and_then(|d| d.to_str()) else {
        eprintln!(
            "cmdrctl: the token directory {} is not UTF-8: containers cannot mount it",
            token_file.display()
        );
        return Ok(ExitCode::FAILURE);
    };
    let token_name = token_file
        .file_name()
        .map_or_else(|| "token".into(), |n| n.to_string_lossy().into_owned());
    let mount = format!("{dir}:{MOUNT_TARGET}:ro");
    let mut vars: Vec<(&str, String)> = vec![
        ("AWS_CONTAINER_CREDENTIALS_FULL_URI", child.url.clone()),
        (
            "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
            format!("{MOUNT_TARGET}/{token_name}"),
        ),
    ];
    if let Some(region) = &child.region {
        vars.push(("AWS_REGION", region.clone()));
        vars.push(("AWS_DEFAULT_REGION", region.clone()));
    }
    if let Some(endpoint) = &child.endpoint {
        let seen = match for_container(endpoint) {
            Some(moved) => {
                eprintln!(
                    "cmdrctl: note: the account's endpoint {endpoint} is on this host's loopback; a container reaches this host at {GATEWAY}, so it gets {moved} (the service must listen there too, e.g. on all addresses)"
                );
                moved
            }
            None => endpoint.clone(),
        };
        vars.push(("AWS_ENDPOINT_URL", seen));
    }
    vars.push(("CMDR_ACCOUNT", child.account.clone()));
    if json {
        let env: serde_json::Map<String, serde_json::Value> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone().into()))
            .collect();
        crate::output::print_json(&serde_json::json!({
            "account": child.account,
            "network": NETWORK,
            "mount": { "source": dir, "target": MOUNT_TARGET, "read_only": true },
            "env": env,
        }));
        return Ok(ExitCode::SUCCESS);
    }
    match format {
        Format::Docker => {
            let mut words = vec![
                "--network".to_owned(),
                NETWORK.to_owned(),
                "--volume".to_owned(),
                shell_word(&mount),
            ];
            for (k, v) in &vars {
                words.push("--env".to_owned());
                words.push(shell_word(&format!("{k}={v}")));
            }
            println!("{}", words.join(" "));
        }
        Format::EnvFile => {
            println!("# docker run --network {NETWORK} --volume {mount} --env-file FILE IMAGE");
            for (k, v) in &vars {
                println!("{k}={v}");
            }
        }
        Format::Devcontainer => {
            let env: serde_json::Map<String, serde_json::Value> = vars
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone().into()))
                .collect();
            crate::output::print_json(&serde_json::json!({
                "runArgs": [format!("--network={NETWORK}"), format!("--volume={mount}")],
                "containerEnv": env,
            }));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// As it is when a shell would keep it one word; single-quoted otherwise (then use
/// `eval`).
fn shell_word(word: &str) -> String {
    let plain = word
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_./:=@%+,".contains(&b));
    if plain {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_endpoints_move_to_the_gateway() {
        let check = |input: &str, expected: Option<&str>| {
            assert_eq!(for_container(input).as_deref(), expected, "{input}");
        };
        check("http://localhost:4566", Some("http://169.254.170.2:4566"));
        check(
            "http://127.0.0.1:5000/path",
            Some("http://169.254.170.2:5000/path"),
        );
        check("http://[::1]:4566/", Some("http://169.254.170.2:4566/"));
        check("https://LOCALHOST", Some("https://169.254.170.2"));
        check("https://sts.example.com:443", None);
        check("http://10.0.0.1:4566", None);
    }

    #[test]
    fn words_are_quoted_only_when_needed() {
        assert_eq!(shell_word("A=b/c:d"), "A=b/c:d");
        assert_eq!(shell_word("A=b c"), "'A=b c'");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
    }
}
