//! cmdr-config: what cmdrd and cmdrctl share on the user's machine, without either
//! linking the other: the settings from `config.toml`, the environment and the defaults
//! (paths, the socket location and where it came from), atomic writes to the user's files
//! and private directories, man pages and completions, and renewing an account's token (`cmdrctl renew` and the
//! desktop's **Renew**).

pub mod assets;
mod files;
pub mod renew;
mod settings;

pub use files::{create_private_dir, write_atomic};
pub use settings::{
    DesktopSettings, EndpointSettings, Settings, client_socket, parse_listen, token_file,
};
