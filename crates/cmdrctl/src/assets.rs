//! Shell completions and man pages, generated from the clap definitions of both binaries
//! (never written by hand).

use std::path::Path;
use std::process::ExitCode;

use clap::CommandFactory as _;
use clap_complete::Shell;

pub fn completions(shell: Shell, out: &mut dyn std::io::Write) {
    clap_complete::generate(shell, &mut crate::Cli::command(), "cmdrctl", out);
}

/// `DIR/man/man1/*.1` and `DIR/completions/{bash,zsh,fish,powershell}/…` for both binaries.
pub fn generate(dir: &Path) -> ExitCode {
    match write_all(dir) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!(
                "cmdrctl: cannot generate assets in {}: {err}",
                dir.display()
            );
            ExitCode::from(1)
        }
    }
}

fn write_all(dir: &Path) -> std::io::Result<()> {
    let man = dir.join("man").join("man1");
    std::fs::create_dir_all(&man)?;
    for command in [crate::Cli::command(), cmdrd::cli::Args::command()] {
        clap_mangen::generate_to(command, &man)?;
    }
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish, Shell::PowerShell] {
        let out = dir.join("completions").join(shell.to_string());
        std::fs::create_dir_all(&out)?;
        for (mut command, name) in [
            (crate::Cli::command(), "cmdrctl"),
            (cmdrd::cli::Args::command(), "cmdrd"),
        ] {
            clap_complete::generate_to(shell, &mut command, name, &out)?;
        }
    }
    Ok(())
}
