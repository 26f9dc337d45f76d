//! `cmdr-sts-loop`: a long-running Rust AWS SDK client for the end-to-end tests and the
//! propagation benchmark. It loads its configuration the way any Rust tool does
//! (`aws_config::load_defaults`: environment, container credentials, profiles), then
//! calls STS GetCallerIdentity every `--every-ms` milliseconds (default 1000) with one
//! long-lived client, printing `<unix millis> <ARN>` or `<unix millis> error: <message>`
//! per call, until `--calls N` calls were made (default: forever).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_config::BehaviorVersion;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut every = Duration::from_millis(1000);
    let mut calls = u64::MAX;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().and_then(|v| v.parse::<u64>().ok());
        match (arg.as_str(), value) {
            ("--every-ms", Some(ms)) => every = Duration::from_millis(ms),
            ("--calls", Some(n)) => calls = n,
            _ => {
                eprintln!("usage: cmdr-sts-loop [--every-ms MS] [--calls N]");
                std::process::exit(2);
            }
        }
    }
    let config = aws_config::defaults(BehaviorVersion::latest()).load().await;
    let client = aws_sdk_sts::Client::new(&config);
    for _ in 0..calls {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        match client.get_caller_identity().send().await {
            Ok(out) => println!("{now} {}", out.arn().unwrap_or("?")),
            Err(err) => println!("{now} error: {}", error_chain(&err)),
        }
        tokio::time::sleep(every).await;
    }
}

/// Every message of the error chain on one line: the SDKs' top-level messages are generic.
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text.replace('\n', " ")
}
