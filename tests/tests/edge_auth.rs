//! The production publish path: a self-signed RS256 service-account JWT made with Web Crypto
//! inside workerd, checked here against the key's public half, and reused across requests.

#![allow(clippy::unwrap_used, reason = "test code: a panic is the failure report")]

use base64::Engine as _;
use lms_bridge_tests::edge::{Edge, HOTTOK};
use lms_bridge_tests::fixture;
use lms_bridge_tests::process::free_port;
use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::pkcs8::{EncodePrivateKey, LineEnding};
use rsa::signature::Verifier;
use rsa::{RsaPrivateKey, RsaPublicKey};
use sha2::Sha256;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

const CLIENT_EMAIL: &str = "edge-publisher@lms-bridge-test.iam.gserviceaccount.com";

/// One recorded call: path, Authorization header, body.
type Call = (String, Option<String>, String);

/// A stand-in for pubsub.googleapis.com that records each publish call.
struct Recorder {
    calls: Arc<Mutex<Vec<Call>>>,
    url: String,
}

fn recorder() -> Recorder {
    let port = free_port();
    let server = tiny_http::Server::http(("127.0.0.1", port)).unwrap();
    let calls = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&calls);
    std::thread::spawn(move || {
        for mut request in server.incoming_requests() {
            let auth =
                request.headers().iter().find(|h| h.field.equiv("authorization")).map(|h| h.value.as_str().to_owned());
            let mut body = String::new();
            let _ = request.as_reader().read_to_string(&mut body);
            seen.lock().unwrap().push((request.url().to_owned(), auth, body));
            let _ = request.respond(tiny_http::Response::from_string(r#"{"messageIds":["1"]}"#));
        }
    });
    Recorder { calls, url: format!("http://127.0.0.1:{port}") }
}

#[test]
fn publishes_with_a_valid_self_signed_jwt_that_is_reused() {
    let private = RsaPrivateKey::new(&mut rand::thread_rng(), 2048).unwrap();
    let public = RsaPublicKey::from(&private);
    let pem = private.to_pkcs8_pem(LineEnding::LF).unwrap();
    let key_json = serde_json::json!({
        "type": "service_account",
        "project_id": "lms-bridge-test",
        "private_key_id": "test-kid-1",
        "private_key": pem.as_str(),
        "client_email": CLIENT_EMAIL,
    })
    .to_string();
    let recorder = recorder();
    let edge = Edge::start(
        "auth",
        &[
            ("HOTMART_HOTTOK", HOTTOK),
            ("GCP_PROJECT", "lms-bridge-test"),
            ("PUBSUB_TOPIC", "edge-auth"),
            ("PUBSUB_ENDPOINT", &recorder.url),
            ("GCP_SERVICE_ACCOUNT_KEY", &key_json),
        ],
    );

    for name in ["purchase_approved", "purchase_refunded", "subscription_cancellation"] {
        let (status, answer) = edge.hotmart(fixture(&format!("hotmart/{name}.json")));
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["via"], "pubsub", "{answer}");
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    let calls = recorder.calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 3, "one publish per webhook: {calls:?}");
    let tokens: Vec<String> = calls
        .iter()
        .map(|(path, auth, body)| {
            assert_eq!(path, "/v1/projects/lms-bridge-test/topics/edge-auth:publish");
            let body: serde_json::Value = serde_json::from_str(body).unwrap();
            assert_eq!(body["messages"].as_array().unwrap().len(), 1);
            auth.as_deref().unwrap().strip_prefix("Bearer ").unwrap().to_owned()
        })
        .collect();
    assert!(tokens.iter().all(|t| *t == tokens[0]), "the token is cached, not re-signed per request");

    let token = &tokens[0];
    let (input, signature) = token.rsplit_once('.').unwrap();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let signature = Signature::try_from(b64.decode(signature).unwrap().as_slice()).unwrap();
    VerifyingKey::<Sha256>::new(public).verify(input.as_bytes(), &signature).expect("RS256 signature verifies");
    let (header, claims) = input.split_once('.').unwrap();
    let header: serde_json::Value = serde_json::from_slice(&b64.decode(header).unwrap()).unwrap();
    let claims: serde_json::Value = serde_json::from_slice(&b64.decode(claims).unwrap()).unwrap();
    assert_eq!(header["alg"], "RS256");
    assert_eq!(header["kid"], "test-kid-1");
    assert_eq!(claims["iss"], CLIENT_EMAIL);
    assert_eq!(claims["sub"], CLIENT_EMAIL);
    assert_eq!(claims["aud"], "https://pubsub.googleapis.com/");
    let iat = claims["iat"].as_i64().unwrap();
    let exp = claims["exp"].as_i64().unwrap();
    assert!((now - iat).abs() < 120, "iat {iat} is now ({now})");
    assert_eq!(exp - iat, 3600, "at most one hour");
}
