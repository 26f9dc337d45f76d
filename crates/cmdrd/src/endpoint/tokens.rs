//! The endpoint's tokens: one per account, each in a 0600 file whose path names the port
//! it is valid for (`<tokens dir>/<port>/<account>`).
//!
//! Why per port: the SDKs re-read the token file on every fetch and send it to the URL
//! they were started with. If cmdrd comes back on another port (someone else took the
//! old one), a token written where old processes look would be sent to whoever holds the
//! old port. So every token dies with its port: all token files are removed when cmdrd
//! stops and before it binds, and a new port means new paths, which processes started for
//! the old one do not know: their next fetch fails (the file is gone) before it sends
//! anything. Why per account: a child started for `acme` holds acme's token only, which
//! every other account's URL refuses.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use super::container::{ContainerDirs, TOKEN_FILE};

/// What a request's token is worth at an account's URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// The account's own token.
    Valid,
    /// No token was ever issued for this account in this run.
    Unknown,
    /// Another token (another account's, an old one, a guess).
    Wrong,
}

pub struct Tokens {
    root: PathBuf,
    /// `root/<port>`: the only directory of live tokens.
    dir: PathBuf,
    live: RwLock<HashMap<String, Arc<str>>>,
    /// Containers' copies of the same tokens (`container.rs`), when containers are served.
    containers: Option<ContainerDirs>,
}

impl Tokens {
    /// Removes every token an earlier run left (all ports): call before binding, so a
    /// token is never in a file while another program may hold its port.
    pub fn clear(root: &Path) -> std::io::Result<()> {
        match std::fs::remove_dir_all(root) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(err),
            _ => Ok(()),
        }
    }

    /// The (empty) token directory for `port`.
    pub fn new(root: PathBuf, port: u16) -> std::io::Result<Tokens> {
        let dir = root.join(port.to_string());
        cmdr_config::create_private_dir(&dir)?;
        Ok(Tokens {
            root,
            dir,
            live: RwLock::new(HashMap::new()),
            containers: None,
        })
    }

    /// Containers are served too: an account's token is also written to its container
    /// directory, once one was made for it ([`Tokens::issue_container`]).
    pub fn with_containers(mut self, containers: ContainerDirs) -> Tokens {
        self.containers = Some(containers);
        self
    }

    /// The directory that `status` shows (append the account's name).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The account's token file, written with a new token if it has none yet (or its
    /// file was removed).
    pub fn issue(&self, account: &str) -> anyhow::Result<PathBuf> {
        // Names are checked when accounts are made; a path separator must never get here.
        cmdr_core::input::check_name(account)?;
        let path = self.dir.join(account);
        let known = self.read().get(account).cloned();
        if let Some(token) = known
            && path.is_file()
        {
            self.copy_for_containers(account, &token, false)?;
            return Ok(path);
        }
        let token = new_token()?;
        // No newline: the SDKs send the file's bytes as the header value, and botocore
        // refuses a value that ends in one.
        cmdr_config::write_atomic(&path, token.as_bytes(), 0o600)?;
        self.copy_for_containers(account, &token, true)?;
        self.write().insert(account.to_owned(), token.into());
        Ok(path)
    }

    /// The account's token file for containers (`<dir>/token`, the directory to mount),
    /// made now if the account had none.
    pub fn issue_container(&self, account: &str) -> anyhow::Result<PathBuf> {
        cmdr_core::input::check_name(account)?;
        let Some(containers) = &self.containers else {
            anyhow::bail!("containers are not served");
        };
        let dir = containers.create(account)?;
        self.issue(account)?;
        Ok(dir.join(TOKEN_FILE))
    }

    /// Writes the containers' copy of a `fresh` token, or of a kept one they lack.
    fn copy_for_containers(&self, account: &str, token: &str, fresh: bool) -> std::io::Result<()> {
        match &self.containers {
            Some(c) if c.has(account) && (fresh || !c.token_present(account)) => {
                c.write(account, token)
            }
            _ => Ok(()),
        }
    }

    /// The account's token is dead: its file goes, and its URL refuses it.
    pub fn revoke(&self, account: &str) {
        if self.write().remove(account).is_some() {
            let _ = std::fs::remove_file(self.dir.join(account));
        }
        if let Some(containers) = &self.containers {
            containers.remove(account);
        }
    }

    pub fn check(&self, account: &str, presented: &[u8]) -> Check {
        match self.read().get(account) {
            None => Check::Unknown,
            Some(token) if constant_time_eq(presented, token.as_bytes()) => Check::Valid,
            Some(_) => Check::Wrong,
        }
    }

    /// Whether `presented` is any account's token (a wrong URL, not a wrong token).
    pub fn is_any(&self, presented: &[u8]) -> bool {
        self.read().values().fold(false, |any, t| {
            any | constant_time_eq(presented, t.as_bytes())
        })
    }

    /// Every token dies (cmdrd stops).
    pub fn remove_all(&self) {
        self.write().clear();
        if let Some(containers) = &self.containers {
            containers.remove_tokens();
        }
        if let Err(err) = Self::clear(&self.root) {
            tracing::warn!(dir = %self.root.display(), error = %err, "cannot remove the endpoint's tokens");
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<str>>> {
        self.live.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<str>>> {
        self.live.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// 256 random bits, hex.
pub fn new_token() -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes)
        .map_err(|err| anyhow::anyhow!("no randomness for an endpoint token: {err}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_token_per_account_and_port() {
        let root = std::env::temp_dir().join(format!("cmdr-tokens-{}", std::process::id()));
        let tokens = Tokens::new(root.clone(), 4144).expect("dir");
        let acme = tokens.issue("acme").expect("acme");
        let prod = tokens.issue("prod").expect("prod");
        assert_eq!(acme, root.join("4144").join("acme"));
        let a = std::fs::read(&acme).expect("read");
        let p = std::fs::read(&prod).expect("read");
        assert_eq!(a.len(), 64);
        assert_ne!(a, p);
        assert_eq!(tokens.check("acme", &a), Check::Valid);
        assert_eq!(tokens.check("prod", &a), Check::Wrong);
        assert_eq!(tokens.check("nobody", &a), Check::Unknown);
        assert!(tokens.is_any(&p));
        // Issuing again keeps the token; revoking one leaves the other.
        assert_eq!(tokens.issue("acme").expect("again"), acme);
        assert_eq!(std::fs::read(&acme).expect("read"), a);
        tokens.revoke("acme");
        assert!(!acme.exists());
        assert_eq!(tokens.check("acme", &a), Check::Unknown);
        assert_eq!(tokens.check("prod", &p), Check::Valid);
        assert!(tokens.issue("../x").is_err());
        tokens.remove_all();
        assert!(!root.exists());
    }
}
