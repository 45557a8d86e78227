//! The backend's HTTP surface and start-up: JSON errors, the Cloud Run auth mode, refusing to
//! start half-configured, and graceful shutdown.

#![allow(clippy::unwrap_used, reason = "test code: a panic is the failure report")]

use lms_bridge_shared::source::hotmart;
use lms_bridge_shared::Timestamp;
use lms_bridge_tests::backend::{backend_bin, push_to, Backend, Firestore, Issuer, Sandbox, LMS_KEY};
use lms_bridge_tests::fixture;
use serde_json::{json, Value};
use std::process::Command;
use std::time::{Duration, Instant};

fn stack() -> (Firestore, Sandbox, Issuer) {
    (Firestore::start(), Sandbox::start(env!("CARGO_BIN_EXE_lms-sandbox"), &[]), Issuer::start())
}

#[test]
fn surface_errors_are_json_cloud_run_mode_checks_claims_and_sigterm_stops_cleanly() {
    let (firestore, sandbox, issuer) = stack();
    let backend = Backend::start("t-surface", &firestore, &sandbox, &issuer, &[("PUSH_AUTH", "cloud-run")]);
    let http = reqwest::blocking::Client::new();

    let cases = [
        (http.get(format!("{}/pubsub/push", backend.url)), 405, "method_not_allowed"),
        (http.get(format!("{}/nowhere", backend.url)), 404, "not_found"),
    ];
    for (request, status, code) in cases {
        let response = request.send().unwrap();
        assert_eq!(response.status().as_u16(), status);
        let body: Value = response.json().unwrap();
        assert_eq!(body["error"]["code"], code);
    }

    // Behind Cloud Run IAM the signature arrives removed; the claims are still checked.
    let b64 = |v: &Value| {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let header = json!({ "alg": "RS256", "kid": "k", "typ": "JWT" });
    let stripped = |claims: Value| format!("{}.{}.SIGNATURE_REMOVED_BY_GOOGLE", b64(&header), b64(&claims));
    let good = stripped(Issuer::claims(&backend.url));
    let mut wrong = Issuer::claims(&backend.url);
    wrong["email"] = "someone@else.iam.gserviceaccount.com".into();
    let wrong = stripped(wrong);

    let malformed =
        http.post(format!("{}/pubsub/push", backend.url)).bearer_auth(&good).body("{not json").send().unwrap();
    assert_eq!(malformed.status().as_u16(), 400);
    assert_eq!(malformed.json::<Value>().unwrap()["error"]["code"], "malformed");

    let refused = http.post(format!("{}/tasks/sweep", backend.url)).bearer_auth(&wrong).send().unwrap();
    assert_eq!(refused.status().as_u16(), 401);
    let accepted = http.post(format!("{}/tasks/sweep", backend.url)).bearer_auth(&good).send().unwrap();
    assert_eq!(accepted.status().as_u16(), 200);

    // SIGTERM while a push is in flight (the LMS answers slowly): the push still gets its
    // answer, then the server exits by itself, well within Cloud Run's 10 s.
    backend.import_mappings("[[product]]\nsource = \"hotmart\"\nproduct_id = \"4774438\"\ncourses = [\"101\"]\npolicy = { type = \"lifetime\" }\n");
    sandbox.faults(json!({ "delay_next": 5, "delay_ms": 600 }));
    let event = hotmart::normalize(&fixture("hotmart/purchase_approved.json"), Timestamp::epoch()).unwrap();
    let event = serde_json::to_value(event).unwrap();
    let mut backend = backend;
    let url = backend.url.clone();
    let answer = std::thread::scope(|s| {
        let push = s.spawn(|| push_to(&url, &event, "m-inflight", Some(&good)));
        std::thread::sleep(Duration::from_millis(400));
        let started = Instant::now();
        let exit = backend.terminate(Duration::from_secs(12));
        assert!(exit.is_some_and(|e| e.success()), "exit: {exit:?}");
        assert!(started.elapsed() < Duration::from_secs(10));
        push.join().unwrap()
    });
    assert_eq!(answer.0, 200, "the in-flight push finished: {answer:?}");
    assert_eq!(sandbox.count("addusertocourse"), 1);
}

/// What is wrong, the environment given, and what the one-line error must say.
type Misconfig<'a> = (&'a str, Vec<(&'a str, String)>, &'a str);

#[test]
fn a_half_configured_server_refuses_to_start_with_one_line() {
    let (firestore, sandbox, _issuer) = stack();
    let cases: [Misconfig; 3] = [
        (
            "no API key",
            vec![("TALENTLMS_URL", sandbox.url.clone()), ("PUSH_AUTH", "none".into())],
            "TALENTLMS_API_KEY is not set",
        ),
        (
            "no audience",
            vec![("TALENTLMS_URL", sandbox.url.clone()), ("TALENTLMS_API_KEY", LMS_KEY.into())],
            "PUSH_AUDIENCE is not set",
        ),
        ("unknown LMS", vec![("LMS", "blackboard".into()), ("PUSH_AUTH", "none".into())], "unknown LMS \"blackboard\""),
    ];
    for (what, env, message) in cases {
        let started = Instant::now();
        let output = Command::new(backend_bin())
            .arg("serve")
            .env("GCP_PROJECT", "t-config")
            .env("FIRESTORE_EMULATOR_HOST", &firestore.host)
            .env("PORT", "0")
            .env_remove("TALENTLMS_API_KEY")
            .env_remove("PUSH_AUDIENCE")
            .envs(env)
            .output()
            .unwrap();
        assert!(!output.status.success(), "{what}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last = stderr.lines().last().unwrap_or_default();
        assert!(last.starts_with("lms-bridge: ") && last.contains(message), "{what}: {stderr}");
        assert!(started.elapsed() < Duration::from_secs(30));
    }
}
