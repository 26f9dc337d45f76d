//! cmdr-config: what cmdrd and cmdrctl share on the user's machine, without either
//! linking the other: the settings from `config.toml`, the environment and the defaults
//! (paths, the socket location and where it came from), atomic writes to the user's files
//! and private directories (cmdr's own files opened without following links), refusing
//! root on another user's files, the compare-and-swap replace of a file other programs write
//! too (`replace.rs`, `paste`'s), the sweep of temps a crash left, man pages and completions, and renewing an account's token (`cmdrctl renew` and the
//! desktop's **Renew**).

pub mod assets;
mod files;
pub mod paste;
pub mod renew;
pub mod replace;
mod root;
mod settings;
pub mod userfile;

pub use files::{
    STALE_TEMP_AGE, check_own, create_private_dir, open_own, read_own, sweep_temps, write_atomic,
};
pub use root::{ALLOW_ROOT_VAR, refuse_root_on_foreign_files};
pub use settings::{
    DesktopSettings, EndpointSettings, PasteSettings, Settings, client_socket,
    container_tokens_dir, endpoint_sentinel_file, endpoint_sentinel_runs, endpoint_tokens_dir,
    parse_listen, service_aws_paths, token_file,
};
