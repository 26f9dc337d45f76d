//! Generated AWS config and credentials files of a given size, shaped like real ones
//! (session tokens of STS length, an expiry key, one `[profile x]` per profile in config).

use std::fmt::Write as _;

/// A session token of realistic length (STS tokens run 600–1,000 characters).
pub fn token(seed: &str) -> String {
    let mut out = String::with_capacity(720);
    out.push_str("IQoJb3JpZ2luX2VjE");
    while out.len() < 700 {
        out.push_str(seed);
        out.push_str("AbCdEfGhIjKlMnOpQrStUvWxYz0123456789");
    }
    out.truncate(700);
    out
}

/// Credentials for `n` profiles: `acme` (with `acme_token`) and `p0001`…; about 800
/// bytes each.
pub fn credentials(n: usize, acme_token: &str) -> String {
    let mut out = String::with_capacity(n * 820);
    section(&mut out, "acme", acme_token);
    for i in 1..n {
        let name = format!("p{i:04}");
        section(&mut out, &name, &token(&name));
    }
    out
}

fn section(out: &mut String, name: &str, token: &str) {
    let _ = write!(
        out,
        "[{name}]\naws_access_key_id = ASIAIOSFODNN7EXAMPLE\n\
         aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n\
         aws_session_token = {token}\nx_security_token_expires = 2031-01-01T00:00:00Z\n\n"
    );
}

/// Config with one `[profile x]` section per profile of [`credentials`].
pub fn config(n: usize) -> String {
    let mut out = String::with_capacity(n * 60);
    out.push_str("[profile acme]\nregion = eu-west-1\noutput = json\n\n");
    for i in 1..n {
        let _ = write!(
            out,
            "[profile p{i:04}]\nregion = us-east-1\noutput = json\n\n"
        );
    }
    out
}
