//! `lms-bridge normalize` as a user runs it: the real binary, stdin in, stdout/stderr out.

#![allow(clippy::unwrap_used, reason = "test code: a panic is the failure report")]

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/../tests/fixtures/hotmart/{name}.json", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

fn normalize(args: &[&str], body: &[u8]) -> Output {
    normalize_with(args, &[], body)
}

fn normalize_with(args: &[&str], env: &[(&str, &str)], body: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_lms-bridge"))
        .arg("normalize")
        .args(args)
        .env_remove("HOTMART_HOTTOK")
        .env_remove("HOTMART_HEADER_HOTTOK")
        .envs(env.iter().copied())
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
    let env = |expected: &'static str, header: &'static str| {
        [("HOTMART_HOTTOK", expected), ("HOTMART_HEADER_HOTTOK", header)]
    };
    let ok = normalize_with(&[], &env("tok", "tok"), &body);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));

    let wrong = normalize_with(&[], &env("tok", "nope"), &body);
    assert_eq!(wrong.status.code(), Some(2));
    assert!(stderr_line(&wrong).contains("invalid token in X-HOTMART-HOTTOK"));
    assert!(wrong.stdout.is_empty());

    let missing = normalize_with(&[], &[("HOTMART_HOTTOK", "tok")], &body);
    assert_eq!(missing.status.code(), Some(2));
    assert!(stderr_line(&missing).contains("missing header X-HOTMART-HOTTOK"));
}

/// Arguments, environment, and what the one-line error must say.
type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);

#[test]
fn hottoks_come_from_files_too_and_never_from_the_command_line() {
    let body = fixture("purchase_approved");
    let dir = std::env::temp_dir().join(format!("lms-bridge-normalize-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let (tok, nope, empty) = (file("tok", "tok\n"), file("nope", "nope"), file("empty", "\n"));

    let ok = normalize(&["--hottok-file", &tok, "--header-hottok-file", &tok], &body);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    // A file and the environment mix.
    let mixed = normalize_with(&["--header-hottok-file", &tok], &[("HOTMART_HOTTOK", "tok")], &body);
    assert!(mixed.status.success(), "{}", String::from_utf8_lossy(&mixed.stderr));
    let wrong = normalize(&["--hottok-file", &tok, "--header-hottok-file", &nope], &body);
    assert_eq!(wrong.status.code(), Some(2));
    assert!(stderr_line(&wrong).contains("invalid token in X-HOTMART-HOTTOK"));

    let cases: [Case; 3] = [
        (&["--hottok-file", &tok], &[("HOTMART_HOTTOK", "tok")], "HOTMART_HOTTOK and --hottok-file are both given"),
        (&["--hottok-file", &empty], &[], "is empty"),
        (&["--hottok-file", "/nonexistent/hottok"], &[], "cannot read --hottok-file /nonexistent/hottok"),
    ];
    for (args, env, message) in cases {
        let output = normalize_with(args, env, &body);
        assert_eq!(output.status.code(), Some(2), "{message}");
        assert!(stderr_line(&output).contains(message), "{message}: {}", String::from_utf8_lossy(&output.stderr));
        assert!(output.stdout.is_empty());
    }

    // The old flags are gone: a secret on the command line shows in `ps`.
    for flag in ["--hottok", "--header-hottok"] {
        let output = normalize(&[flag, "tok"], &body);
        assert_eq!(output.status.code(), Some(2), "{flag}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("unexpected argument"), "{flag}: {stderr}");
        assert!(output.stdout.is_empty());
    }
    std::fs::remove_dir_all(&dir).unwrap();
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
