//! No secret material, email or body in anything the edge prints, whatever goes wrong; fixed
//! ERROR texts for what an operator must fix (an unusable key, a publisher Pub/Sub refuses, an
//! emulator host outside local mode).

#![allow(clippy::unwrap_used, reason = "test code: a panic is the failure report")]

use lms_bridge_tests::edge::Edge;
use lms_bridge_tests::fixture;
use lms_bridge_tests::process::free_port;
use rsa::pkcs8::{EncodePrivateKey, LineEnding};
use rsa::RsaPrivateKey;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A hottok that cannot appear by chance.
const HOTTOK: &str = "hottok-SENTINEL-5b1e9c04d2";
const EMAIL: &str = "ana.souza@example.com";

/// A stand-in for Pub/Sub answering every call with `status` and `body`; records the calls
/// (Authorization header included).
struct FakePubsub {
    calls: Arc<Mutex<Vec<Option<String>>>>,
    host: String,
}

fn fake_pubsub(status: u16, body: &'static str) -> FakePubsub {
    let port = free_port();
    let server = tiny_http::Server::http(("127.0.0.1", port)).unwrap();
    let calls = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&calls);
    std::thread::spawn(move || {
        for request in server.incoming_requests() {
            let auth =
                request.headers().iter().find(|h| h.field.equiv("authorization")).map(|h| h.value.as_str().to_owned());
            seen.lock().unwrap().push(auth);
            let _ = request.respond(tiny_http::Response::from_string(body).with_status_code(status));
        }
    });
    FakePubsub { calls, host: format!("127.0.0.1:{port}") }
}

/// A fresh service-account key: (its JSON, the PEM's base64 lines).
fn key() -> (String, Vec<String>) {
    let private = RsaPrivateKey::new(&mut rand::thread_rng(), 2048).unwrap();
    let pem = private.to_pkcs8_pem(LineEnding::LF).unwrap().to_string();
    let lines = pem.lines().filter(|l| !l.starts_with("-----")).map(str::to_owned).collect();
    let json = serde_json::json!({
        "type": "service_account",
        "project_id": "lms-bridge-test",
        "private_key_id": "kid-SENTINEL-77",
        "private_key": pem,
        "client_email": "edge-publisher@lms-bridge-test.iam.gserviceaccount.com",
    })
    .to_string();
    (json, lines)
}

/// The requests every edge here gets: a purchase (an email inside), a body carrying the hottok
/// (top level and nested, so quarantined), a wrong token, a form body.
fn send_everything(edge: &Edge) -> Vec<u16> {
    let mut with_token: serde_json::Value = serde_json::from_slice(&fixture("hotmart/purchase_approved.json")).unwrap();
    with_token["hottok"] = HOTTOK.into();
    with_token["data"]["HOTTOK"] = HOTTOK.into();
    with_token["data"]["buyer"].as_object_mut().unwrap().remove("email");
    with_token["data"]["note"] = format!("contact {EMAIL}").into();
    let requests: Vec<(Option<&str>, &str, Vec<u8>)> = vec![
        (Some(HOTTOK), "application/json", fixture("hotmart/purchase_approved.json")),
        (Some(HOTTOK), "application/json", with_token.to_string().into_bytes()),
        (Some("wrong-SENTINEL-token"), "application/json", fixture("hotmart/purchase_approved.json")),
        (Some(HOTTOK), "application/x-www-form-urlencoded", format!("hottok={HOTTOK}&email={EMAIL}").into_bytes()),
        (Some(HOTTOK), "application/json", format!("{{ not json {EMAIL} {HOTTOK}").into_bytes()),
    ];
    requests
        .into_iter()
        .map(|(token, content_type, body)| edge.post("/webhooks/hotmart", token, content_type, body).0)
        .collect()
}

/// Fails with the offending line if the output holds any of `secrets`.
fn assert_clean(edge: &Edge, secrets: &[String]) {
    let output = edge.output();
    for secret in secrets {
        if let Some(line) = output.lines().find(|l| l.contains(secret.as_str())) {
            panic!("secret material in the edge output ({secret:.12}…): {line:.300}");
        }
    }
}

fn error_lines_with(edge: &Edge, text: &str) -> usize {
    edge.log_lines()
        .iter()
        .filter(|l| l["severity"] == "ERROR")
        .filter(|l| l["error"].as_str().unwrap_or_default().contains(text) || l["message"] == text)
        .count()
}

fn secrets(pem_lines: &[String]) -> Vec<String> {
    let mut secrets: Vec<String> = pem_lines.to_vec();
    secrets.extend(["SENTINEL", "PRIVATE KEY", "ana.souza", "Ana.Souza", "{ not json"].map(String::from));
    secrets
}

#[test]
fn a_double_encoded_key_is_refused_with_a_fixed_text_and_never_printed() {
    let (key, pem_lines) = key();
    // A JSON string containing the key JSON: what a secret store that quotes values gives.
    let double_encoded = serde_json::to_string(&key).unwrap();
    let pubsub = fake_pubsub(200, r#"{"messageIds":["1"]}"#);
    let edge = Edge::start(
        "secrets-key",
        &[
            ("HOTMART_HOTTOK", HOTTOK),
            ("GCP_PROJECT", "lms-bridge-test"),
            ("PUBSUB_TOPIC", "edge-secrets"),
            ("PUBSUB_ENDPOINT", &format!("http://{}", pubsub.host)),
            ("GCP_SERVICE_ACCOUNT_KEY", &double_encoded),
        ],
    );
    let statuses = send_everything(&edge);
    assert!(statuses.iter().all(|s| *s == 500), "a key that does not read refuses everything: {statuses:?}");
    assert!(pubsub.calls.lock().unwrap().is_empty(), "nothing published");
    std::thread::sleep(Duration::from_secs(1));
    let fixed = "GCP_SERVICE_ACCOUNT_KEY is not a service-account key JSON";
    assert_eq!(error_lines_with(&edge, fixed), statuses.len(), "{}", edge.output());
    assert_clean(&edge, &secrets(&pem_lines));
}

#[test]
fn a_publisher_pubsub_refuses_is_an_error_not_a_retry_warning_and_nothing_secret_is_printed() {
    let (key, pem_lines) = key();
    let pubsub = fake_pubsub(
        403,
        r#"{"error":{"code":403,"message":"User not authorized SENTINEL ana.souza@example.com","status":"PERMISSION_DENIED"}}"#,
    );
    let edge = Edge::start(
        "secrets-refused",
        &[
            ("HOTMART_HOTTOK", HOTTOK),
            ("GCP_PROJECT", "lms-bridge-test"),
            ("PUBSUB_TOPIC", "edge-secrets"),
            ("PUBSUB_ENDPOINT", &format!("http://{}", pubsub.host)),
            ("GCP_SERVICE_ACCOUNT_KEY", &key),
        ],
    );
    let statuses = send_everything(&edge);
    // Parked (the event is durable) though Pub/Sub refuses; the wrong token is refused.
    assert_eq!(statuses, [200, 200, 401, 200, 200]);
    let persistent = "pubsub refuses this publisher";
    let refused_errors = |lines: &[serde_json::Value]| {
        lines
            .iter()
            .filter(|l| l["severity"] == "ERROR" && l["message"].as_str().is_some_and(|m| m.starts_with(persistent)))
            .count()
    };
    // wrangler prints the Worker's log lines a moment after the answers: wait for them.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let mut lines = edge.log_lines();
    while refused_errors(&lines) < 4 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        lines = edge.log_lines();
    }
    assert!(refused_errors(&lines) >= 4, "one ERROR per refused publish:\n{}", edge.output());
    assert!(
        !lines.iter().any(|l| l["message"].as_str().is_some_and(|m| m.starts_with("pubsub publish failed"))),
        "a refused publisher is not a routine retry warning"
    );
    // Let the queue consumer try too, then scan everything, the bearer token included.
    std::thread::sleep(Duration::from_secs(4));
    let mut secrets = secrets(&pem_lines);
    let bearers: Vec<String> = pubsub.calls.lock().unwrap().iter().flatten().cloned().collect();
    assert!(!bearers.is_empty());
    secrets.extend(bearers.iter().map(|b| b.trim_start_matches("Bearer ").rsplit('.').next().unwrap().to_owned()));
    secrets.push("User not authorized".to_owned());
    assert_clean(&edge, &secrets);
}

#[test]
fn the_emulator_host_without_local_mode_refuses_to_publish() {
    let pubsub = fake_pubsub(200, r#"{"messageIds":["1"]}"#);
    let edge = Edge::start(
        "secrets-no-local",
        &[
            ("HOTMART_HOTTOK", HOTTOK),
            ("GCP_PROJECT", "lms-bridge-test"),
            ("PUBSUB_TOPIC", "edge-secrets"),
            ("PUBSUB_EMULATOR_HOST", &pubsub.host),
            ("LMS_BRIDGE_LOCAL", "0"),
        ],
    );
    let (status, answer) = edge.hotmart_with(HOTTOK, fixture("hotmart/purchase_approved.json"));
    assert_eq!(status, 500, "{answer}");
    assert_eq!(answer["error"]["code"], "misconfigured");
    std::thread::sleep(Duration::from_secs(1));
    assert!(pubsub.calls.lock().unwrap().is_empty(), "nothing published unauthenticated");
    let fixed = "PUBSUB_EMULATOR_HOST is set but LMS_BRIDGE_LOCAL is not 1";
    assert_eq!(error_lines_with(&edge, fixed), 1, "{}", edge.output());
}
