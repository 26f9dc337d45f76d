//! Man pages and shell completions of a binary, generated from its clap definition (never
//! written by hand). Each binary writes its own: `cmdrctl generate-assets --out DIR` and
//! `cmdrd --generate-assets DIR`.

use std::path::Path;

use clap_complete::Shell;

/// `DIR/man/man1/NAME*.1` and `DIR/completions/{bash,zsh,fish,powershell}/…` of `command`.
pub fn write(command: clap::Command, name: &str, dir: &Path) -> std::io::Result<()> {
    let man = dir.join("man").join("man1");
    std::fs::create_dir_all(&man)?;
    clap_mangen::generate_to(command.clone(), &man)?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish, Shell::PowerShell] {
        let out = dir.join("completions").join(shell.to_string());
        std::fs::create_dir_all(&out)?;
        clap_complete::generate_to(shell, &mut command.clone(), name, &out)?;
    }
    Ok(())
}
