//! `lms-bridge normalize` as a user runs it: the real binary, stdin in, stdout/stderr out.

#![allow(clippy::unwrap_used, reason = "test code: a panic is the failure report")]

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/../tests/fixtures/hotmart/{name}.json", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

fn normalize(args: &[&str], body: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_lms-bridge"))
        .arg("normalize")
        .args(args)
        .env_remove("HOTMART_HOTTOK")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the lms-bridge binary runs");
    let mut stdin = child.stdin.take().expect("stdin is piped");
    // A refused body may close stdin early; the exit status tells what happened.
    let _ = stdin.write_all(body);
    drop(stdin);
    child.wait_with_output().expect("lms-bridge exits")
}

fn stderr_line(output: &Output) -> String {
    let text = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(text.lines().count(), 1, "one-line error expected, got {text:?}");
    assert!(!text.contains("panicked"), "{text}");
    text
}

#[test]
fn every_sample_normalizes_with_the_expected_change() {
    let cases = [
        ("purchase_approved", "approve"),
        ("purchase_complete", "complete"),
        ("purchase_billet_printed", "info"),
        ("purchase_canceled", "fail"),
        ("purchase_chargeback", "revoke"),
        ("purchase_expired", "info"),
        ("purchase_out_of_shopping_cart", "info"),
        ("purchase_protest", "dispute"),
        ("purchase_refunded", "revoke"),
        ("subscription_cancellation", "cancel"),
        ("subscription_purchase_approved", "approve"),
        ("subscription_purchase_delayed", "payment_late"),
        ("switch_plan", "plan_change"),
        ("update_subscription_charge_date", "charge_date"),
        ("club_first_access", "info"),
    ];
    let dir = format!("{}/../tests/fixtures/hotmart", env!("CARGO_MANIFEST_DIR"));
    assert_eq!(std::fs::read_dir(dir).unwrap().count(), cases.len(), "every sample has a case");
    for (name, change) in cases {
        let output = normalize(&[], &fixture(name));
        assert!(output.status.success(), "{name}: {}", String::from_utf8_lossy(&output.stderr));
        let event: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(event["schema"], "lms-bridge.event.v2", "{name}");
        assert_eq!(event["change"]["type"], change, "{name}");
        let raw: serde_json::Value = serde_json::from_slice(&fixture(name)).unwrap();
        assert_eq!(event["id"], format!("hotmart:{}", raw["id"].as_str().unwrap()), "{name}");
        assert_eq!(event["source_event"], raw["event"], "{name}");
        assert!(event["received_at"].as_str().unwrap().ends_with('Z'));
        if change != "info" {
            let email = event["student"]["email"].as_str().unwrap();
            assert_eq!(email, email.trim().to_lowercase(), "{name}");
            assert_eq!(event["student"]["key"].as_str().unwrap().len(), 64, "{name}");
            assert!(event["grant_id"].is_string(), "{name}");
        }
    }
}

#[test]
fn hottok_is_checked_when_configured() {
    let body = fixture("purchase_approved");
    let ok = normalize(&["--hottok", "tok", "--header-hottok", "tok"], &body);
    assert!(ok.status.success());

    let wrong = normalize(&["--hottok", "tok", "--header-hottok", "nope"], &body);
    assert_eq!(wrong.status.code(), Some(2));
    assert!(stderr_line(&wrong).contains("invalid token in X-HOTMART-HOTTOK"));
    assert!(wrong.stdout.is_empty());

    let missing = normalize(&["--hottok", "tok"], &body);
    assert_eq!(missing.status.code(), Some(2));
    assert!(stderr_line(&missing).contains("missing header X-HOTMART-HOTTOK"));
}

#[test]
fn bad_input_is_a_one_line_error_with_exit_code_2() {
    let cases: [(&[&str], Vec<u8>, &str); 5] = [
        (&[], b"{not json".to_vec(), "not a JSON object"),
        (&[], b"".to_vec(), "not a JSON object"),
        (
            &[],
            String::from_utf8(fixture("purchase_approved"))
                .unwrap()
                .replace("\"email\": \"Ana.Souza@Example.com \",", "")
                .into_bytes(),
            "missing field data.buyer.email",
        ),
        (&["--source", "paypal"], fixture("purchase_approved"), "unknown source \"paypal\""),
        (&[], vec![b' '; 1024 * 1024 + 1], "larger than"),
    ];
    for (args, body, message) in cases {
        let output = normalize(args, &body);
        assert_eq!(output.status.code(), Some(2), "{message}");
        assert!(stderr_line(&output).contains(message), "{message}: {}", String::from_utf8_lossy(&output.stderr));
        assert!(output.stdout.is_empty());
    }
}
