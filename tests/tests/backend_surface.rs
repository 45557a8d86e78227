//! The backend's HTTP surface and start-up: JSON errors, the Cloud Run auth mode and its
//! second factors (the verification token, the subscription), refusing to start
//! half-configured or unauthenticated on Cloud Run, undecodable messages kept for the
//! dead-letter topic, no secret in the logs, and graceful shutdown.

#![allow(clippy::unwrap_used, reason = "test code: a panic is the failure report")]

use lms_bridge_shared::source::hotmart;
use lms_bridge_shared::Timestamp;
use lms_bridge_tests::backend::{
    backend_bin, envelope, post_push, Backend, Firestore, Issuer, Sandbox, LMS_KEY, PUSH_ACCOUNT, VERIFICATION_TOKEN,
};
use lms_bridge_tests::{fixture, mappings, stack};
use serde_json::{json, Value};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// One Firestore emulator and one test issuer for the binary; a sandbox per test.
fn stack() -> (&'static Firestore, Sandbox, &'static Issuer) {
    (stack::firestore(), Sandbox::start(&[]), stack::issuer())
}

fn b64url(v: &Value) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

/// A token as Cloud Run forwards it: claims readable, signature removed.
fn stripped(claims: &Value) -> String {
    let header = json!({ "alg": "RS256", "kid": "k", "typ": "JWT" });
    format!("{}.{}.SIGNATURE_REMOVED_BY_GOOGLE", b64url(&header), b64url(claims))
}

/// The sample purchase (product 4774438, Ana), normalized.
fn purchase() -> Value {
    let event = hotmart::normalize(&fixture("hotmart/purchase_approved.json"), Timestamp::epoch()).unwrap();
    serde_json::to_value(event).unwrap()
}

/// A project name of its own for this run (its log file starts empty).
fn fresh_project(name: &str) -> String {
    format!("{name}-{}", SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis())
}

#[test]
fn surface_errors_are_json_cloud_run_mode_checks_claims_and_sigterm_stops_cleanly() {
    let (firestore, sandbox, issuer) = stack();
    let backend = Backend::start("t-surface", firestore, &sandbox, issuer, &[("PUSH_AUTH", "cloud-run")]);
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
    let good = stripped(&Issuer::claims(&backend.url));
    let mut wrong = Issuer::claims(&backend.url);
    wrong["email"] = "someone@else.iam.gserviceaccount.com".into();
    let wrong = stripped(&wrong);

    let malformed = http.post(backend.push_endpoint()).bearer_auth(&good).body("{not json").send().unwrap();
    assert_eq!(malformed.status().as_u16(), 400);
    assert_eq!(malformed.json::<Value>().unwrap()["error"]["code"], "malformed");

    let refused = http.post(backend.sweep_endpoint()).bearer_auth(&wrong).send().unwrap();
    assert_eq!(refused.status().as_u16(), 401);
    let accepted = http.post(backend.sweep_endpoint()).bearer_auth(&good).send().unwrap();
    assert_eq!(accepted.status().as_u16(), 200);

    // SIGTERM while a push is in flight (the LMS answers slowly): the push still gets its
    // answer, then the server exits by itself, well within Cloud Run's 10 s.
    backend.import_mappings(&mappings::sample().toml());
    sandbox.faults(json!({ "delay_next": 5, "delay_ms": 600 }));
    let delivery = envelope(&purchase(), "m-inflight", &backend.subscription());
    let mut backend = backend;
    let endpoint = backend.push_endpoint();
    let answer = std::thread::scope(|s| {
        let push = s.spawn(|| post_push(&endpoint, &delivery, Some(&good)));
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
    let lms = || vec![("TALENTLMS_URL", sandbox.url.clone()), ("TALENTLMS_API_KEY", LMS_KEY.to_owned())];
    let with = |extra: &[(&'static str, &str)]| {
        let mut env = lms();
        env.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
        env
    };
    let claims = [("PUSH_AUDIENCE", "https://backend"), ("PUSH_SERVICE_ACCOUNT", "push@p.iam.gserviceaccount.com")];
    let cloud_run = |extra: &[(&'static str, &'static str)]| {
        let mut env = with(&claims);
        env.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
        env.push(("PUSH_AUTH", "cloud-run".to_owned()));
        env
    };
    let cases: [Misconfig; 8] = [
        (
            "no API key",
            vec![("TALENTLMS_URL", sandbox.url.clone()), ("PUSH_AUTH", "none".into())],
            "TALENTLMS_API_KEY is not set",
        ),
        ("no audience", lms(), "PUSH_AUDIENCE is not set"),
        (
            "unknown LMS",
            vec![("LMS", "blackboard".into()), ("PUSH_AUTH", "none".into())],
            "invalid value 'blackboard' for '--lms <LMS>' [possible values: talentlms, moodle]",
        ),
        (
            "unauthenticated on Cloud Run",
            with(&[("PUSH_AUTH", "none"), ("K_SERVICE", "lms-bridge-backend")]),
            "PUSH_AUTH=none is refused on Cloud Run (K_SERVICE=lms-bridge-backend is set)",
        ),
        (
            "cloud-run without its token",
            cloud_run(&[("PUBSUB_SUBSCRIPTION", "lms-bridge-push")]),
            "PUSH_VERIFICATION_TOKEN is not set (required with PUSH_AUTH=cloud-run)",
        ),
        (
            "cloud-run with an empty token",
            cloud_run(&[("PUBSUB_SUBSCRIPTION", "lms-bridge-push"), ("PUSH_VERIFICATION_TOKEN", "")]),
            "PUSH_VERIFICATION_TOKEN is set but empty",
        ),
        (
            "cloud-run without the subscription",
            cloud_run(&[("PUSH_VERIFICATION_TOKEN", "t0ken")]),
            "PUBSUB_SUBSCRIPTION is not set",
        ),
        ("oidc without the subscription", with(&claims), "PUBSUB_SUBSCRIPTION is not set"),
    ];
    let bin = backend_bin(); // built before the clock starts
    let mut wrong = Vec::new();
    for (what, env, message) in cases {
        let started = Instant::now();
        let mut child = Command::new(&bin)
            .arg("serve")
            .env("GCP_PROJECT", "t-config")
            .env("FIRESTORE_EMULATOR_HOST", &firestore.host)
            .env("PORT", "0")
            .env_remove("TALENTLMS_API_KEY")
            .env_remove("PUSH_AUDIENCE")
            .env_remove("PUSH_AUTH")
            .env_remove("PUSH_VERIFICATION_TOKEN")
            .env_remove("PUBSUB_SUBSCRIPTION")
            .env_remove("K_SERVICE")
            .envs(env)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // A server that starts instead of refusing must not hang the test.
        while child.try_wait().unwrap().is_none() && started.elapsed() < Duration::from_secs(30) {
            std::thread::sleep(Duration::from_millis(50));
        }
        if child.try_wait().unwrap().is_none() {
            let _ = child.kill();
        }
        let output = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last = stderr.lines().last().unwrap_or_default();
        // (the first two run with PUSH_AUTH=none, which warns first)
        let one_line = what == "no API key" || stderr.lines().count() == 1;
        if output.status.success() || !last.starts_with("lms-bridge: ") || !last.contains(message) || !one_line {
            wrong.push(format!("{what} ({:?}, {:?}): {stderr}", output.status, started.elapsed()));
        }
    }
    assert!(wrong.is_empty(), "not refused with one line:\n{}", wrong.join("\n"));
}

#[test]
fn pushes_and_sweeps_need_the_verification_token_and_pushes_their_subscription() {
    let (firestore, sandbox, issuer) = stack();
    let backend = Backend::start("t-second-factor", firestore, &sandbox, issuer, &[("PUSH_AUTH", "cloud-run")]);
    backend.import_mappings(&mappings::sample().toml());
    let good = stripped(&Issuer::claims(&backend.url));
    let delivery = envelope(&purchase(), "m-factor", &backend.subscription());
    let push = format!("{}/pubsub/push", backend.url);
    let sweep = format!("{}/tasks/sweep", backend.url);
    let http = reqwest::blocking::Client::new();

    // A valid Cloud Run token is not enough: the URL's token is checked too.
    for (what, query) in [
        ("no token", String::new()),
        ("empty token", "?token=".to_owned()),
        ("wrong token", "?token=not-the-token".to_owned()),
        ("token prefix", format!("?token={}", &VERIFICATION_TOKEN[..VERIFICATION_TOKEN.len() - 1])),
        ("token twice", format!("?token={VERIFICATION_TOKEN}&token={VERIFICATION_TOKEN}")),
    ] {
        let (status, body) = post_push(&format!("{push}{query}"), &delivery, Some(&good));
        assert_eq!((status, body["error"]["code"].as_str()), (401, Some("unauthorized")), "push, {what}: {body}");
        let response = http.post(format!("{sweep}{query}")).bearer_auth(&good).send().unwrap();
        assert_eq!(response.status().as_u16(), 401, "sweep, {what}");
        assert_eq!(response.json::<Value>().unwrap()["error"]["code"], "unauthorized");
    }
    // The right token, another subscription: refused, nothing applied.
    let elsewhere = envelope(&purchase(), "m-factor", "projects/someone-else/subscriptions/push");
    let (status, body) = post_push(&backend.push_endpoint(), &elsewhere, Some(&good));
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("forbidden")), "{body}");
    assert_eq!(sandbox.count("usersignup") + sandbox.count("addusertocourse"), 0, "nothing applied when refused");

    // Both right: applied.
    let (status, body) = post_push(&backend.push_endpoint(), &delivery, Some(&good));
    assert_eq!((status, body["status"].as_str()), (200, Some("applied")), "{body}");
    assert_eq!(sandbox.courses_of("ana.souza@example.com"), ["101"]);
    let response = http.post(backend.sweep_endpoint()).bearer_auth(&good).send().unwrap();
    assert_eq!(response.status().as_u16(), 200);

    // Set in any mode, the token is checked in any mode, `none` included.
    let open = Backend::start(
        "t-second-factor-none",
        firestore,
        &sandbox,
        issuer,
        &[("PUSH_AUTH", "none"), ("PUSH_VERIFICATION_TOKEN", VERIFICATION_TOKEN)],
    );
    let (status, _) = post_push(&format!("{}/pubsub/push", open.url), &delivery, None);
    assert_eq!(status, 401);
    let (status, body) = post_push(&open.push_endpoint(), &delivery, None);
    assert_eq!(status, 200, "{body}");
}

#[test]
fn undecodable_messages_are_stored_whole_and_refused_so_that_pubsub_dead_letters_them() {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let (firestore, sandbox, issuer) = stack();
    let backend = Backend::start("t-undecodable", firestore, &sandbox, issuer, &[]);
    let token = issuer.token(&backend.url);
    let binary: &[u8] = &[0xff, 0xfe, 0x00, 0x9f, b'{'];
    let other_schema = r#"{"schema":"lms-bridge.event.v9","id":"hotmart:x1","buyer":"ana.souza@example.com"}"#;
    // (message id, the data field, what must be stored in event_json, words of the reason)
    let cases = [
        ("u-base64", "%%% not base64 %%%".to_owned(), "%%% not base64 %%%".to_owned(), "not base64"),
        ("u-json", b64.encode("{not json"), "{not json".to_owned(), "not JSON"),
        ("u-schema", b64.encode(other_schema), other_schema.to_owned(), "unsupported schema \"lms-bridge.event.v9\""),
        ("u-binary", b64.encode(binary), b64.encode(binary), "base64-encoded"),
    ];
    for (id, data, kept, reason) in cases {
        let delivery = json!({
            "message": { "data": data, "messageId": id, "publishTime": "2026-11-25T00:00:00Z" },
            "subscription": backend.subscription(), "deliveryAttempt": 1,
        });
        // Refused (a nack: redelivered, then dead-lettered), every time it comes.
        for _ in 0..2 {
            let (status, body) = post_push(&backend.push_endpoint(), &delivery, Some(&token));
            assert_eq!((status, body["error"]["code"].as_str()), (422, Some("unprocessable")), "{id}: {body}");
            assert!(body["error"]["message"].as_str().unwrap().contains(&format!("pubsub:{id}")), "{id}: {body}");
            assert!(!body.to_string().contains("ana.souza"), "{id}: the answer quotes no data: {body}");
        }
        let doc = firestore.document(&backend.project, &format!("events/pubsub%3A{id}"));
        let fields = &doc["fields"];
        assert_eq!(fields["status"]["stringValue"], "failed", "{id}: {doc}");
        assert_eq!(fields["change"]["stringValue"], "undecodable", "{id}");
        assert_eq!(fields["event_json"]["stringValue"], kept.as_str(), "{id}: stored whole");
        assert!(fields["reason"]["stringValue"].as_str().unwrap().contains(reason), "{id}: {doc}");
        // The TTL policy deletes only documents whose expire_at is a timestamp.
        assert!(fields["expire_at"]["timestampValue"].is_null(), "{id}: never expires unseen: {doc}");
    }
    // The event id a wrapper names is not used for the record: the same event, readable, later
    // (a backend that knows the schema) is applied, not taken for a duplicate.
    assert!(firestore.document(&backend.project, "events/hotmart%3Ax1")["fields"].is_null());
}

#[test]
fn no_token_key_or_email_reaches_the_logs() {
    let (firestore, sandbox, issuer) = stack();
    let verification = "vt-CANARY-8d1f2e3a4b5c";
    let jwks_secret = "jwks-CANARY-6e7f";
    let project = fresh_project("t-logs");
    let backend = Backend::start(
        &project,
        firestore,
        &sandbox,
        issuer,
        &[
            ("PUSH_VERIFICATION_TOKEN", verification),
            ("OIDC_JWKS_URL", &format!("{}?key={jwks_secret}", issuer.jwks_url)),
        ],
    );
    backend.import_mappings(&mappings::sample().toml());
    let token = issuer.token(&backend.url);
    let subscription = backend.subscription();
    let email = "ana.souza@example.com";
    let wrong_token = "wrong-CANARY-0a9b";
    let header = json!({ "alg": "RS256", "kid": "test-key-1", "typ": "JWT" });
    let mut odd_claims = Issuer::claims(&backend.url);
    odd_claims["email_verified"] = "leak.claim@example.com".into();
    let odd = issuer.sign(header, odd_claims);
    let unknown_kid =
        issuer.sign(json!({ "alg": "RS256", "kid": "no-such-kid", "typ": "JWT" }), Issuer::claims(&backend.url));
    let push = format!("{}/pubsub/push", backend.url);
    let good = envelope(&purchase(), "m-logs", &subscription);
    let weird_data =
        json!({ "schema": "lms-bridge.event.v2", "id": 5, "student": { "email": 7 }, "who": "leak.data@example.com" });

    // Wrong and missing verification tokens.
    assert_eq!(post_push(&format!("{push}?token={wrong_token}"), &good, Some(&token)).0, 401);
    assert_eq!(post_push(&push, &good, Some(&token)).0, 401);
    let with_token = backend.push_endpoint();
    assert!(with_token.ends_with(verification));
    // A malformed envelope quoting an email, data of an unexpected shape, odd claims, an unknown kid.
    let http = reqwest::blocking::Client::new();
    let malformed =
        http.post(&with_token).bearer_auth(&token).body(r#"{"message": "leak.envelope@example.com"}"#).send().unwrap();
    assert_eq!(malformed.status().as_u16(), 400);
    assert_eq!(post_push(&with_token, &envelope(&weird_data, "m-weird", &subscription), Some(&token)).0, 422);
    assert_eq!(post_push(&with_token, &good, Some(&odd)).0, 401);
    assert_eq!(post_push(&with_token, &good, Some(&unknown_kid)).0, 401);
    assert_eq!(post_push(&with_token, &good, Some("not.a.jwt")).0, 401);
    // And a good push, so the applying path writes its lines too.
    let (status, body) = post_push(&with_token, &good, Some(&token));
    assert_eq!(status, 200, "{body}");

    // A second backend whose JWKS endpoint is down: the fetch error is logged without its URL's
    // query string.
    let down = format!("http://127.0.0.1:{}/certs?key={jwks_secret}", lms_bridge_tests::process::free_port());
    let project_down = fresh_project("t-logs-down");
    let broken = Backend::start(
        &project_down,
        firestore,
        &sandbox,
        issuer,
        &[("PUSH_VERIFICATION_TOKEN", verification), ("OIDC_JWKS_URL", &down)],
    );
    let endpoint = broken.push_endpoint();
    let (status, body) = post_push(&endpoint, &envelope(&purchase(), "m-down", &broken.subscription()), Some(&token));
    assert_eq!((status, body["error"]["code"].as_str()), (503, Some("unavailable")), "{body}");
    assert!(!body.to_string().contains(jwks_secret), "{body}");

    let logs = backend.log() + &broken.log();
    assert!(logs.lines().count() > 5, "the backends wrote their lines: {logs}");
    assert!(logs.contains("cannot fetch the token signing keys"), "{logs}");
    let secrets =
        [verification, wrong_token, jwks_secret, LMS_KEY, &token, email, "leak.", "@example.com", PUSH_ACCOUNT];
    for line in logs.lines() {
        for secret in secrets {
            assert!(!line.contains(secret), "a log line holds {secret:?}: {line}");
        }
    }
}
