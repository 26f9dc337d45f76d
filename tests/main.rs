//! End-to-end tests: the real `cmdrd` and `cmdrctl` binaries in a temp HOME, over the real
//! socket. Build the binaries first (`scripts/test` does).

// Unix only: these tests drive the real binaries over a Unix socket, with signals, uids and
// file modes. On Windows the same parts are tested by the crates' own tests under Wine and
// by the smoke in scripts/cross-check.
#![cfg(unix)]

// The temp HOME, the binaries, waiting for events.
mod sandbox;

// Every way of saving the files: in place, truncate, rename, delete+recreate, symlinks,
// ~/.aws created or removed while running, bursts.
mod save_patterns;
// A file rewritten in place is not a deletion; keys changed in one half are held.
mod half_written;
// The log stays bounded under a flood of changes.
mod log_flood;
// A broken file keeps the last good view; file_error, then file_recovered.
mod broken_files;
// Accounts: ask/changed/accept, auto, edit/remove, errors, restart and changes while down.
mod accounts;
// One daemon per user, stale sockets, modes, shutdown, exit codes.
mod daemon;
// The wire: JSON lines from a raw socket, bad frames, slow subscribers, version mismatch.
mod protocol;
// doctor without the daemon.
mod doctor;
// No secret in logs, state, events or output.
mod secrets;
// STS validation against moto and loopback stubs; expiry events; prompt.
mod sts;
// env, exec, credential-process: real shells, a real child, the real AWS CLI.
mod handout;
// The credentials endpoint: boto3, JavaScript and Rust SDK processes follow `accept`.
mod endpoint;
// The endpoint's protocol, refusals as the SDKs show them, SSO role credentials, hostile
// endpoint clients.
mod endpoint_answers;
// paste: byte-preserving, locked, atomic edits of the credentials file.
mod paste;
// paste that cannot hurt: no secret shown, identical pastes, warnings, clipboard.
mod paste_trust;
// paste never loses another program's write; crash leftovers; non-dumpable.
mod paste_race;
// Start at login: unit, plist, service dry runs, completions, man pages, versions.
mod service;
// Prompt hooks keep long-lived shells on the accepted token.
mod shell_hook;
// The Neovim plugin in a headless Neovim.
mod nvim;
// Desktop notifications through a real notification server on a private D-Bus.
mod desktop;
// Renew: portals, `renew` with recorders for xdg-open and aws, `paste --clipboard` (xclip).
mod renew;
// The right account: nothing in the files or the environment outranks an account's
// endpoint in any SDK; one accept is enough; per-account, per-port endpoint tokens.
mod right_account;
// Endpoint tokens: one per account, dead with their port, none sent to a squatter.
mod endpoint_tokens;
// The endpoint's crash guard: replaced when it dies, removes only its port's tokens, and
// only the guard the pid file names is stopped.
mod endpoint_guard;
// The endpoint's sentinel: cmdrd and its guard killed together leave no token behind.
mod endpoint_sentinel;
// The endpoint's sockets handed on: the next cmdrd serves the socket the guard or the
// sentinel held, never binding the port again.
mod endpoint_handover;
// Containers on the `cmdr` network follow the account: real Podman, setup, env, restart.
mod containers;
// console: the federation sign-in against a loopback sign-in server.
mod console;
// IAM Identity Center sign-in: the loopback Identity Center (checked with boto3), login, logout.
mod signin;
// accounts import: a portal's accounts and roles become profiles and bound accounts.
mod import;
// Portals kept fresh: one keeper per sso-session, signin_required once, Option 2 accounts
// that renew themselves.
mod portals;
// One test per fixed bug.
mod regression;
// What a new user hit: re-validation, reasons, renew, watch across restarts, regions,
// exit codes and `--json`, service install without systemd.
mod newcomer;
// The fuzz properties (fuzz/props.rs) as bounded proptests.
mod fuzz_props;
// Hostile clients: noise, half frames, 1000 connections, storms, the connection cap.
mod hostile;
// Hostile files: FIFOs, devices, churn, a crowded cache, bad token files.
mod hostile_files;
// What clients are told in hard cases: a stopped daemon, big answers, pages, escaping.
mod hostile_answers;
// Another uid is refused even with open socket permissions; unsafe socket directories.
mod another_user;
// Impersonation: a real second user's relay at the socket's path first, in a 0777 runtime
// dir, through a symlink, or moved into the victim's own directory.
mod impersonation;
// root on another user's HOME refuses; cmdr's own files never opened through a planted link.
mod root_home;
// Faults: kill -9, full disk, read-only data dir, unreadable file, inotify overflow and limits.
mod faults;
// Randomised soak: every save pattern at random; the view always equals a fresh parse.
mod soak;
// Secrets in memory: the daemon is non-dumpable even to its own uid.
mod memory;
