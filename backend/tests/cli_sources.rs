//! `lms-bridge normalize` and `simulate` for every source, as a user runs them: the real binary,
//! the request's headers as `--header`, the source's secrets in its environment setting.
//! A Standard Webhooks sender's bodies are signed here the way a sender signs them.

#![allow(clippy::unwrap_used, reason = "test code: a panic is the failure report")]

use lms_bridge_shared::source::StdWebhooks;
use std::io::Write;
use std::process::{Command, Output, Stdio};

/// The Standard Webhooks reference vectors' secrets: one current, one being rotated in.
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const NEW_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
const SETTING: &str = "STD_WEBHOOK_SECRET_ACME";
/// 2026-01-01T00:00:00Z, in seconds.
const SENT: i64 = 1_767_225_600;
const NOW: &str = "2026-01-01T00:00:30Z";
const WEBHOOK_ID: &str = "msg_2026_0001";

/// Every setting a source reads, so the caller's environment never leaks into a test.
const SETTINGS: [&str; 4] = ["HOTMART_HOTTOK", "HOTMART_HEADER_HOTTOK", "STRIPE_WEBHOOK_SECRET", SETTING];

fn run(args: &[&str], env: &[(&str, &str)], stdin: &[u8]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_lms-bridge"));
    for name in SETTINGS {
        command.env_remove(name);
    }
    let mut child = command
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the lms-bridge binary runs");
    let mut input = child.stdin.take().expect("stdin is piped");
    let body = stdin.to_vec();
    // A writer thread: a request refused by its headers is refused before its body is read.
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&body);
    });
    let output = child.wait_with_output().expect("lms-bridge exits");
    let _ = writer.join();
    output
}

fn body() -> Vec<u8> {
    br#"{"type":"access.granted","timestamp":"2026-01-01T00:00:00Z","data":{"email":" Ana@Example.com ","name":"Ana Souza","product":"course-101","grant":"sub_42","charge":"ch_7","occurred_at":"2026-01-01T00:00:00Z"}}"#.to_vec()
}

/// `--header` arguments of a request signed with `secret` at `timestamp` (seconds).
fn signed(secret: &str, timestamp: i64, body: &[u8]) -> Vec<String> {
    let signature = StdWebhooks::sign(secret, WEBHOOK_ID, timestamp, body).unwrap();
    vec![
        "--header".into(),
        format!("webhook-id: {WEBHOOK_ID}"),
        "--header".into(),
        format!("webhook-timestamp: {timestamp}"),
        "--header".into(),
        format!("webhook-signature: {signature}"),
    ]
}

/// `normalize --source std:acme --now NOW` with these headers, the setting set to `secrets`.
fn normalize_std(headers: &[String], secrets: &str, now: &str, body: &[u8]) -> Output {
    let mut args = vec!["normalize", "--source", "std:acme", "--now", now];
    args.extend(headers.iter().map(String::as_str));
    run(&args, &[(SETTING, secrets)], body)
}

/// Nothing printed anywhere carries a secret.
fn assert_no_secret(output: &Output) {
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    for secret in [SECRET, NEW_SECRET, &SECRET[6..], &NEW_SECRET[6..], "hottok-CANARY"] {
        assert!(!text.contains(secret), "a secret in the output: {text}");
    }
}

/// A refusal: exit 2, nothing on stdout, one stderr line; returns it.
fn refused(output: &Output) -> String {
    assert_no_secret(output);
    assert_eq!(output.status.code(), Some(2), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.stdout.is_empty(), "{}", String::from_utf8_lossy(&output.stdout));
    let text = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(text.lines().count(), 1, "one-line error expected, got {text:?}");
    assert!(text.starts_with("lms-bridge: ") && !text.contains("panicked"), "{text}");
    text
}

/// A success: exit 0, one event line, no stderr; returns the event.
fn event(output: &Output) -> serde_json::Value {
    assert_no_secret(output);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.stderr.is_empty(), "{}", String::from_utf8_lossy(&output.stderr));
    let text = String::from_utf8(output.stdout.clone()).unwrap();
    assert_eq!(text.lines().count(), 1, "{text}");
    serde_json::from_str(&text).unwrap()
}

#[test]
fn a_signed_std_body_verifies_and_prints_the_event_with_its_webhook_id() {
    let event = event(&normalize_std(&signed(SECRET, SENT, &body()), SECRET, NOW, &body()));
    assert_eq!(event["id"], format!("std-acme:{WEBHOOK_ID}"));
    assert_eq!(event["source"], "std-acme");
    assert_eq!(event["change"]["type"], "approve");
    assert_eq!(event["student"]["email"], "ana@example.com");
    // --now is the arrival time.
    assert_eq!(event["received_at"], "2026-01-01T00:00:30.000Z");
    // `std-acme` is the same sender as `std:acme`.
    let mut args = vec!["normalize", "--source", "std-acme", "--now", NOW];
    let headers = signed(SECRET, SENT, &body());
    args.extend(headers.iter().map(String::as_str));
    assert_eq!(crate::event(&run(&args, &[(SETTING, SECRET)], &body()))["id"], format!("std-acme:{WEBHOOK_ID}"));
}

#[test]
fn every_refusal_is_one_line_naming_the_reason_and_exit_2() {
    let mut tampered = body();
    tampered[20] ^= 1;
    let ten_minutes_later = "2026-01-01T00:10:00Z";
    let mut missing = signed(SECRET, SENT, &body());
    missing.truncate(4);
    let cases: [(&str, Output); 5] = [
        ("invalid signature", normalize_std(&signed(NEW_SECRET, SENT, &body()), SECRET, NOW, &body())),
        ("invalid signature", normalize_std(&signed(SECRET, SENT, &body()), SECRET, NOW, &tampered)),
        ("timestamp too old", normalize_std(&signed(SECRET, SENT, &body()), SECRET, ten_minutes_later, &body())),
        ("timestamp in the future", normalize_std(&signed(SECRET, SENT + 600, &body()), SECRET, NOW, &body())),
        ("missing header webhook-signature", normalize_std(&missing, SECRET, NOW, &body())),
    ];
    for (reason, output) in cases {
        assert_eq!(refused(&output), format!("lms-bridge: refused: {reason}\n"));
    }
}

#[test]
fn during_a_rotation_either_secret_verifies() {
    for secrets in [format!("{SECRET},{NEW_SECRET}"), format!(" {NEW_SECRET} , {SECRET} ,")] {
        for secret in [SECRET, NEW_SECRET] {
            let event = event(&normalize_std(&signed(secret, SENT, &body()), &secrets, NOW, &body()));
            assert_eq!(event["id"], format!("std-acme:{WEBHOOK_ID}"));
        }
    }
    let other = "whsec_dGhpcmQgc2VjcmV0IG5vdCBjb25maWd1cmVk";
    let output = normalize_std(&signed(other, SENT, &body()), &format!("{SECRET},{NEW_SECRET}"), NOW, &body());
    assert!(refused(&output).ends_with("refused: invalid signature\n"));
}

#[test]
fn a_signed_source_without_its_secret_is_refused_naming_the_setting() {
    let headers = signed(SECRET, SENT, &body());
    for secrets in [None, Some(""), Some(" , ")] {
        let mut args = vec!["normalize", "--source", "std:acme", "--now", NOW];
        args.extend(headers.iter().map(String::as_str));
        let env: Vec<(&str, &str)> = secrets.map(|s| (SETTING, s)).into_iter().collect();
        let line = refused(&run(&args, &env, &body()));
        assert!(line.starts_with(&format!("lms-bridge: refused: {SETTING} is not set")), "{line}");
    }
    let line = refused(&normalize_std(&headers, "not base64!", NOW, &body()));
    assert_eq!(line, format!("lms-bridge: refused: a secret in {SETTING} is not usable\n"));
}

#[test]
fn hotmart_reads_its_token_from_a_header_and_its_setting() {
    let body =
        std::fs::read(format!("{}/../tests/fixtures/hotmart/purchase_approved.json", env!("CARGO_MANIFEST_DIR")))
            .unwrap();
    let token = "hottok-CANARY";
    let header = format!("X-HOTMART-HOTTOK: {token}");
    let args = ["normalize", "--source", "hotmart", "--header", &header];
    let event = event(&run(&args, &[("HOTMART_HOTTOK", token)], &body));
    assert!(event["id"].as_str().unwrap().starts_with("hotmart:"), "{event}");
    // Rotation: either of two tokens.
    event_ok(&run(&args, &[("HOTMART_HOTTOK", &format!("old-token, {token}"))], &body));

    let wrong = run(&["normalize", "--header", "x-hotmart-hottok: nope"], &[("HOTMART_HOTTOK", token)], &body);
    assert_eq!(refused(&wrong), "lms-bridge: refused: invalid token in X-HOTMART-HOTTOK\n");
    // The header once: from --header or from HOTMART_HEADER_HOTTOK, not both.
    let twice = run(&args, &[("HOTMART_HOTTOK", token), ("HOTMART_HEADER_HOTTOK", token)], &body);
    assert!(refused(&twice).contains("X-HOTMART-HOTTOK is given by --header and by HOTMART_HEADER_HOTTOK"));
    // No hottok configured: normalized unchecked, as before.
    event_ok(&run(&["normalize", "--header", "X-HOTMART-HOTTOK: anything"], &[], &body));
    // The hottok files are Hotmart's.
    let line = refused(&run(&["normalize", "--source", "std:acme", "--hottok-file", "/dev/null"], &[], &body));
    assert!(line.contains("--hottok-file and --header-hottok-file are for --source hotmart"), "{line}");
}

fn event_ok(output: &Output) {
    let _ = event(output);
}

#[test]
fn unknown_sources_and_malformed_arguments_are_one_line() {
    let body = body();
    for command in ["normalize", "simulate"] {
        for source in ["paypal", "std:", "std:ACME"] {
            let args = [command, "--mappings", "/dev/null", "--source", source];
            let args = if command == "normalize" { [&args[..1], &args[3..]].concat() } else { args.to_vec() };
            let line = refused(&run(&args, &[(SETTING, SECRET)], &body));
            assert!(line.starts_with(&format!("lms-bridge: unknown source {source:?} (known: hotmart")), "{line}");
            assert!(line.contains("std:NAME"), "{line}");
        }
    }
    let cases: [(&[&str], &str); 4] = [
        (&["--header", "webhook-id msg_1"], "--header #1 is not 'Name: value' (no colon)"),
        (&["--header", "webhook-id: m", "--header", ": x"], "--header #2 has an empty name"),
        (&["--header", "web hook: x"], "--header #1 has a name with spaces"),
        (&["--now", "yesterday"], "invalid --now \"yesterday\""),
    ];
    for (extra, message) in cases {
        let mut args = vec!["normalize", "--source", "std:acme"];
        args.extend_from_slice(extra);
        let line = refused(&run(&args, &[(SETTING, SECRET)], &body));
        assert!(line.starts_with(&format!("lms-bridge: {message}")), "{message}: {line}");
    }
}

#[test]
fn simulate_replays_a_std_senders_bodies() {
    let dir = std::env::temp_dir().join(format!("lms-bridge-cli-sources-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mappings = dir.join("mappings.toml");
    let toml = "[[product]]\nsource = \"std-acme\"\nproduct_id = \"course-101\"\ncourses = [\"101\"]\npolicy = { type = \"lifetime\" }\n";
    std::fs::write(&mappings, toml).unwrap();
    let revoke = String::from_utf8(body())
        .unwrap()
        .replace("access.granted", "access.revoked")
        .replace("00:00:00Z\"}", "00:00:00Z\",\"reason\":\"refunded\"}")
        .replace("2026-01-01T00:00:00Z", "2026-01-05T00:00:00Z");
    let stdin = format!("{}\n{revoke}\n", String::from_utf8(body()).unwrap());
    let mappings = mappings.to_str().unwrap();
    let args = [
        "simulate",
        "--source",
        "std:acme",
        "--mappings",
        mappings,
        "--timeline",
        "--at",
        "2026-01-02T00:00:00Z",
        "--at",
        "2026-01-06T00:00:00Z",
    ];
    let output = run(&args, &[], stdin.as_bytes());
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let lines: Vec<serde_json::Value> =
        String::from_utf8(output.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert!(lines[0]["event_id"].as_str().unwrap().starts_with("std-acme:body-"), "{}", lines[0]);
    assert_eq!((&lines[0]["change"], &lines[0]["status"]), (&"approve".into(), &"applied".into()));
    assert_eq!((&lines[1]["change"], &lines[1]["status"]), (&"revoke".into(), &"applied".into()));
    assert_eq!(
        (&lines[2]["email"], &lines[2]["access"], &lines[2]["lms"]),
        (&"ana@example.com".into(), &"active".into(), &"enrolled".into())
    );
    assert_eq!((&lines[3]["access"], &lines[3]["lms"]), (&"inactive".into(), &"not_enrolled".into()));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Stripe's own vector (stripe/stripe-dotnet `src/StripeTests/Services/Events/EventUtilityTest.cs`
/// with `src/StripeTests/Resources/event_test_signature.json`): the header, its secret, and the
/// body's digest are Stripe's; the body is that fixture, trailing newline included.
#[test]
fn stripe_deliveries_verify_as_at_the_edge_and_refusals_name_the_check() {
    const STRIPE_SECRET: &str = "webhook_secret";
    const HEADER: &str = "t=1533204620,v1=2220f87ef101a04665f11cdf770523143f875572008577fa0f20882ddb9cc3c7,v0=63f3a72374a733066c4be69ed7f8e5ac85c22c9f0a6a612ab9a025a9e4ee7eef";
    let body = b"{\n  \"id\": \"evt_123\",\n  \"object\": \"event\",\n  \"account\": \"acct_123\",\n  \"api_version\": \"2017-05-25\",\n  \"created\": 1533204620,\n  \"data\": {\n    \"object\": {\n      \"id\": \"cus_123\",\n      \"object\": \"customer\",\n      \"created\": 123456789,\n      \"email\": \"test@stripe.com\",\n      \"livemode\": false,\n      \"metadata\": {}\n    }\n  },\n  \"livemode\": false,\n  \"pending_webhooks\": 1,\n  \"request\": {\n    \"id\": \"req_123\",\n    \"idempotency_key\": \"idempotency-key-123\"\n  },\n  \"type\": \"customer.created\"\n}\n";
    assert_eq!(body.len(), 484);
    let header = format!("Stripe-Signature: {HEADER}");
    let normalize = |secrets: &str, now: &str, body: &[u8]| {
        run(
            &["normalize", "--source", "stripe", "--now", now, "--header", &header],
            &[("STRIPE_WEBHOOK_SECRET", secrets)],
            body,
        )
    };
    // 100 s after it was signed, under the secret alone or beside a rotated one.
    for secrets in [STRIPE_SECRET, "whsec_other,webhook_secret"] {
        let output = normalize(secrets, "2018-08-02T10:12:00Z", body);
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let event: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(event["id"], "stripe:evt_123");
        assert_eq!(event["change"]["type"], "info", "customer.created has no access effect");
    }
    // 400 s after: a replay.
    let line = refused(&normalize(STRIPE_SECRET, "2018-08-02T10:16:40Z", body));
    assert_eq!(line.trim_end(), "lms-bridge: refused: timestamp too old");
    // The body without its last byte, or another secret: not Stripe's signature.
    let line = refused(&normalize(STRIPE_SECRET, "2018-08-02T10:12:00Z", &body[..483]));
    assert_eq!(line.trim_end(), "lms-bridge: refused: invalid signature");
    let line = refused(&normalize("whsec_other", "2018-08-02T10:12:00Z", body));
    assert_eq!(line.trim_end(), "lms-bridge: refused: invalid signature");
    // No secret: a signature that cannot be checked is refused, naming the setting.
    let output = run(&["normalize", "--source", "stripe", "--header", &header], &[], body);
    assert!(refused(&output).contains("STRIPE_WEBHOOK_SECRET"));
}
