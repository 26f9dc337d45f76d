//! The bridge to the AWS SDK's own profile parser (`aws_config::profile`), so cmdr sees
//! exactly what the SDKs see. Contents are handed over in memory: the parser never touches
//! the file system and its future never waits, so it is polled to completion here.

use std::collections::HashMap;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use aws_config::profile::ProfileSet;
use aws_runtime::env_config::file::{EnvConfigFileKind, EnvConfigFiles};
use aws_types::os_shim_internal::{Env, Fs};

/// Parses the given contents with the SDK. `Err` carries the SDK's message (with the line).
pub(crate) fn load(config: Option<&str>, credentials: Option<&str>) -> Result<ProfileSet, String> {
    let mut builder = EnvConfigFiles::builder();
    if let Some(config) = config {
        builder = builder.with_contents(EnvConfigFileKind::Config, config);
    }
    if let Some(credentials) = credentials {
        builder = builder.with_contents(EnvConfigFileKind::Credentials, credentials);
    }
    let files = builder.build();
    // An empty fake file system and environment: nothing can leak in from the real ones.
    let fs = Fs::from_map(HashMap::<String, Vec<u8>>::new());
    let env = Env::from_slice(&[]);
    let future = aws_config::profile::load(&fs, &env, &files, None);
    match poll_once(future) {
        Some(Ok(set)) => Ok(set),
        Some(Err(err)) => Err(crate::innermost_message(&err)),
        None => Err("the AWS profile parser did not complete synchronously".to_owned()),
    }
}

fn poll_once<F: Future>(future: F) -> Option<F::Output> {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    match future.as_mut().poll(&mut cx) {
        Poll::Ready(out) => Some(out),
        Poll::Pending => None,
    }
}
