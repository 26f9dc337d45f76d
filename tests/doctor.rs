//! `cmdrctl doctor` works without the daemon and prints the documented shape.

use crate::sandbox::{Sandbox, creds, stdout};

#[test]
fn doctor_json_shape_and_redaction() {
    let sb = Sandbox::with_profile("TOKEN-SECRET-DOCTOR");
    std::fs::write(
        sb.config(),
        "[profile acme]\nRegion = eu-west-1\ns3 =\n  max_concurrent_requests = 10\n\
         [sso-session corp]\nsso_start_url = https://corp.awsapps.com/start\nextra =\n  depth = 2\n\
         [oops]\nregion = x\n",
    )
    .expect("config");
    let out = sb.ctl(&["doctor", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let acme = &report["profiles"]["acme"];
    assert_eq!(acme["region"], "eu-west-1");
    assert_eq!(acme["aws_secret_access_key"], "<redacted>");
    assert_eq!(acme["aws_session_token"], "<redacted>");
    assert_eq!(acme["aws_access_key_id"], "AKIAIOSFODNN7EXAMPLE");
    assert_eq!(
        acme["s3"],
        serde_json::json!({"max_concurrent_requests": "10"})
    );
    assert_eq!(
        report["sso_sessions"]["corp"]["sso_start_url"],
        "https://corp.awsapps.com/start"
    );
    // A sub-property block of an sso-session is an object too, as in a profile.
    assert_eq!(
        report["sso_sessions"]["corp"]["extra"],
        serde_json::json!({"depth": "2"})
    );
    assert_eq!(report["errors"], serde_json::json!([]));
    assert!(
        report["warnings"].to_string().contains("[oops]"),
        "{report}"
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("TOKEN-SECRET-DOCTOR"));
}

#[test]
fn doctor_reports_path_and_line_and_exits_1() {
    let sb = Sandbox::with_profile("T");
    sb.write_credentials(&format!("{}\n[broken\n", creds("acme", "T")));
    let out = sb.ctl(&["doctor", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let error = &report["errors"][0];
    assert_eq!(error["path"], sb.credentials().display().to_string());
    assert_eq!(error["line"], 6);
    assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()));
    let text = stdout(&sb.ctl(&["doctor"]));
    assert!(
        text.contains(&format!("{}:6:", sb.credentials().display())),
        "{text}"
    );
}
