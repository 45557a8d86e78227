//! The whole chain, every part real: webhook → edge (workerd) → Pub/Sub emulator → push →
//! backend → Firestore emulator → LMS sandbox. Assertions are on the sandbox (what the LMS
//! did) and on the backend's view of the student.

#![allow(clippy::unwrap_used, reason = "test code: a panic is the failure report")]

use lms_bridge_tests::backend::{Backend, Firestore, Issuer, Sandbox};
use lms_bridge_tests::chaos::ChaosProxy;
use lms_bridge_tests::edge::{Edge, HOTTOK};
use lms_bridge_tests::fixture;
use lms_bridge_tests::pubsub::{Emulator, PROJECT};
use serde_json::{json, Value};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

const CHAIN_MAPPINGS: &str = r#"
[[product]]
source = "hotmart"
product_id = "4774438"
courses = ["101"]
policy = { type = "lifetime" }

[[product]]
source = "hotmart"
product_id = "4774439"
courses = ["102"]
policy = { type = "subscription", grace_days = 0 }

[[product]]
source = "hotmart"
product_id = "4774440"
courses = ["103"]
policy = { type = "fixed_days", days = 365 }
"#;

struct Chain {
    /// Between the edge and Pub/Sub: an outage without losing the emulator's state.
    proxy: ChaosProxy,
    sandbox: Sandbox,
    backend: Backend,
    edge: Edge,
    pubsub: Mutex<Emulator>,
    _firestore: Firestore,
    _issuer: Issuer,
}

/// One chain for the binary; tests take turns (the sandbox's faults are global) and use
/// their own students.
fn chain() -> (MutexGuard<'static, ()>, &'static Chain) {
    static TURN: Mutex<()> = Mutex::new(());
    static CHAIN: OnceLock<Chain> = OnceLock::new();
    let turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let chain = CHAIN.get_or_init(|| {
        let pubsub = Emulator::start();
        let firestore = Firestore::start();
        let issuer = Issuer::start();
        let sandbox = Sandbox::start(env!("CARGO_BIN_EXE_lms-sandbox"), &[]);
        // The emulator's push carries no OIDC token: the backend runs as `make dev` runs it.
        let backend = Backend::start(PROJECT, &firestore, &sandbox, &issuer, &[("PUSH_AUTH", "none")]);
        setup_pubsub(&backend, &pubsub.host);
        backend.import_mappings(CHAIN_MAPPINGS);
        let proxy = ChaosProxy::start(&pubsub.host);
        let edge = Edge::start(
            "e2e",
            &[
                ("HOTMART_HOTTOK", HOTTOK),
                ("PUBSUB_EMULATOR_HOST", &proxy.host),
                ("GCP_PROJECT", PROJECT),
                ("PUBSUB_TOPIC", "lms-bridge-events"),
            ],
        );
        Chain { proxy, sandbox, backend, edge, pubsub: Mutex::new(pubsub), _firestore: firestore, _issuer: issuer }
    });
    (turn, chain)
}

/// `lms-bridge pubsub setup` for the chain's backend, as `make dev` runs it.
fn setup_pubsub(backend: &Backend, host: &str) {
    let setup = backend.cli(&[
        "pubsub",
        "setup",
        "--push-endpoint",
        &format!("{}/pubsub/push", backend.url),
        "--min-backoff-seconds",
        "1",
        "--pubsub-emulator-host",
        host,
    ]);
    assert!(setup.status.success(), "pubsub setup: {}", String::from_utf8_lossy(&setup.stderr));
}

fn webhook(sample: &str, id: &str, email: &str, transaction: &str) -> Vec<u8> {
    let mut raw: Value = serde_json::from_slice(&fixture(&format!("hotmart/{sample}.json"))).unwrap();
    raw["id"] = id.into();
    raw["data"]["buyer"]["email"] = email.into();
    raw["data"]["purchase"]["transaction"] = transaction.into();
    raw.to_string().into_bytes()
}

fn send(chain: &Chain, body: Vec<u8>) {
    let (status, answer) = chain.edge.hotmart(body);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["via"], "pubsub", "{answer}");
}

/// Waits until the sandbox shows `courses` for `email`; returns how long it took.
fn wait_for(chain: &Chain, email: &str, courses: &[&str], timeout: Duration) -> Duration {
    wait_in(&chain.sandbox, email, courses, timeout)
}

fn wait_in(sandbox: &Sandbox, email: &str, courses: &[&str], timeout: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let now: Vec<String> = sandbox.courses_of(email);
        if now == courses {
            return started.elapsed();
        }
        assert!(started.elapsed() < timeout, "{email}: courses {now:?}, expected {courses:?} within {timeout:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn purchase_enrolls_within_seconds_and_refund_unenrolls() {
    let (_turn, chain) = chain();
    let email = "e2e-one@example.com";
    send(chain, webhook("purchase_approved", "e1-a", email, "HPE1"));
    let took = wait_for(chain, email, &["101"], Duration::from_secs(5));
    eprintln!("purchase → enrolled in {took:?}");
    send(chain, webhook("purchase_refunded", "e1-r", email, "HPE1"));
    wait_for(chain, email, &[], Duration::from_secs(5));
}

#[test]
fn the_same_webhook_three_times_and_a_refund_before_its_approval_end_right() {
    let (_turn, chain) = chain();
    let email = "e2e-two@example.com";
    for _ in 0..3 {
        send(chain, webhook("purchase_approved", "e2-a", email, "HPE2"));
    }
    wait_for(chain, email, &["101"], Duration::from_secs(5));
    let other = "e2e-three@example.com";
    send(chain, webhook("purchase_refunded", "e3-r", other, "HPE3"));
    send(chain, webhook("purchase_approved", "e3-a", other, "HPE3"));
    std::thread::sleep(Duration::from_secs(2));
    assert!(chain.sandbox.courses_of(other).is_empty(), "refunded before approval: never enrolled");
    let state = chain.sandbox.state();
    let enrolls_for_two = state["users"].as_array().unwrap().iter().filter(|u| u["email"] == email).count();
    assert_eq!(enrolls_for_two, 1, "one LMS user");
    assert_eq!(chain.sandbox.courses_of(email), ["101"]);
}

#[test]
fn an_lms_outage_is_retried_by_pubsub_and_applied_once() {
    let (_turn, chain) = chain();
    let email = "e2e-four@example.com";
    let before = chain.sandbox.count_ok("addusertocourse");
    chain.sandbox.faults(json!({ "fail_next": 3 }));
    send(chain, webhook("purchase_approved", "e4-a", email, "HPE4"));
    let took = wait_for(chain, email, &["101"], Duration::from_secs(60));
    eprintln!("LMS down for 3 calls → enrolled after {took:?}");
    assert_eq!(chain.sandbox.count_ok("addusertocourse"), before + 1, "enrolled exactly once");
}

#[test]
fn a_backend_killed_mid_stream_loses_nothing_and_doubles_nothing() {
    let (_turn, chain) = chain();
    // A chain of our own behind the same edge and topic: its own push subscription, backend
    // (killable, restarted at the same address), Firestore project and LMS sandbox, so what
    // the sandbox shows was done by this backend alone.
    let pubsub_host = chain.pubsub.lock().unwrap().host.clone();
    let (firestore, issuer) = (&chain._firestore, &chain._issuer);
    let sandbox = Sandbox::start(env!("CARGO_BIN_EXE_lms-sandbox"), &[]);
    let port = lms_bridge_tests::process::free_port();
    let start = || Backend::start_on(port, "kill-test", firestore, &sandbox, issuer, &[("PUSH_AUTH", "none")]);
    let mut backend = start();
    backend.import_mappings(
        "[[product]]\nsource = \"hotmart\"\nproduct_id = \"4774438\"\ncourses = [\"101\"]\npolicy = { type = \"lifetime\" }\n",
    );
    let setup = backend.cli(&[
        "pubsub",
        "setup",
        "--push-endpoint",
        &format!("{}/pubsub/push", backend.url),
        "--subscription",
        "kill-test",
        "--gcp-project",
        PROJECT,
        "--min-backoff-seconds",
        "1",
        "--pubsub-emulator-host",
        &pubsub_host,
    ]);
    assert!(setup.status.success(), "{}", String::from_utf8_lossy(&setup.stderr));

    // 200 webhooks: 100 approvals, 50 refunds, 50 resends of approvals under new ids.
    let student = |i: usize| format!("stream-{i}@example.com");
    let mut stream: Vec<Vec<u8>> =
        (0..100).map(|i| webhook("purchase_approved", &format!("k-a{i}"), &student(i), &format!("HPK{i}"))).collect();
    stream.extend(
        (0..100).step_by(2).map(|i| webhook("purchase_refunded", &format!("k-r{i}"), &student(i), &format!("HPK{i}"))),
    );
    stream.extend(
        (0..50).map(|i| webhook("purchase_approved", &format!("k-a{i}-resend"), &student(i), &format!("HPK{i}"))),
    );
    assert_eq!(stream.len(), 200);
    for (n, body) in stream.into_iter().enumerate() {
        if n == 70 {
            backend.kill();
        }
        if n == 110 {
            backend = start();
        }
        send(chain, body);
    }
    for i in 0..100 {
        let expected: &[&str] = if i % 2 == 0 { &[] } else { &["101"] };
        wait_in(&sandbox, &student(i), expected, Duration::from_secs(150));
    }
    assert_eq!(sandbox.count_ok("usersignup"), 100, "one LMS user per student");
    assert_eq!(sandbox.count_ok("addusertocourse"), 100, "each student enrolled once, none twice");
    drop(backend);
}

#[test]
fn webhooks_during_a_pubsub_outage_are_answered_via_the_queue_and_all_applied() {
    let (_turn, chain) = chain();
    let student = |i: usize| format!("outage-{i}@example.com");
    chain.proxy.cut();
    for i in 0..8 {
        let (status, answer) =
            chain.edge.hotmart(webhook("purchase_approved", &format!("o-a{i}"), &student(i), &format!("HPO{i}")));
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["via"], "queue", "{answer}");
    }
    std::thread::sleep(Duration::from_secs(3));
    assert!(chain.sandbox.courses_of(&student(0)).is_empty(), "nothing reaches Pub/Sub while it is cut off");
    // Pub/Sub comes back; the edge's queue consumer delivers the parked events.
    chain.proxy.restore();
    for i in 0..8 {
        wait_for(chain, &student(i), &["101"], Duration::from_secs(120));
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

fn sweep(chain: &Chain) -> Value {
    let response = reqwest::blocking::Client::new().post(format!("{}/tasks/sweep", chain.backend.url)).send().unwrap();
    assert_eq!(response.status().as_u16(), 200);
    response.json().unwrap()
}

#[test]
fn renewals_extend_a_cancellation_ends_at_the_paid_date_and_a_fixed_term_expires() {
    let (_turn, chain) = chain();
    let email = "e2e-subscriber@example.com";
    let charge = |id: &str, paid_through: i64| {
        let mut raw: Value = serde_json::from_slice(&fixture("hotmart/subscription_purchase_approved.json")).unwrap();
        raw["id"] = id.into();
        raw["creation_date"] = now_ms().into();
        raw["data"]["buyer"]["email"] = email.into();
        raw["data"]["product"]["id"] = 4774439.into();
        raw["data"]["subscription"]["subscriber"]["code"] = "SUBE2E".into();
        raw["data"]["purchase"]["date_next_charge"] = paid_through.into();
        raw.to_string().into_bytes()
    };
    send(chain, charge("s-c1", now_ms() + 3_000));
    wait_for(chain, email, &["102"], Duration::from_secs(5));
    // A renewal extends the paid period; then the subscriber cancels: access lasts to the
    // paid-through date of the cancellation, and the sweep ends it there.
    send(chain, charge("s-c2", now_ms() + 60_000));
    let mut cancel: Value = serde_json::from_slice(&fixture("hotmart/subscription_cancellation.json")).unwrap();
    cancel["id"] = "s-cancel".into();
    cancel["creation_date"] = now_ms().into();
    cancel["data"]["subscriber"]["email"] = email.into();
    cancel["data"]["subscriber"]["code"] = "SUBE2E".into();
    cancel["data"]["product"]["id"] = 4774439.into();
    let ends = now_ms() + 10_000;
    cancel["data"]["date_next_charge"] = ends.into();
    send(chain, cancel.to_string().into_bytes());

    // Fixed term: approved 365 days ago less 10 seconds.
    let fixed = "e2e-fixed@example.com";
    let mut raw: Value = serde_json::from_slice(&fixture("hotmart/purchase_approved.json")).unwrap();
    raw["id"] = "f-a".into();
    raw["creation_date"] = (now_ms() - 365 * 86_400_000 + 10_000).into();
    raw["data"]["buyer"]["email"] = fixed.into();
    raw["data"]["product"]["id"] = 4774440.into();
    raw["data"]["purchase"]["transaction"] = "HPF1".into();
    send(chain, raw.to_string().into_bytes());
    wait_for(chain, fixed, &["103"], Duration::from_secs(5));

    std::thread::sleep(Duration::from_millis(3_500));
    sweep(chain);
    assert_eq!(chain.sandbox.courses_of(email), ["102"], "renewed: still enrolled after the first period");
    while now_ms() < ends + 500 {
        std::thread::sleep(Duration::from_millis(200));
    }
    let swept = sweep(chain);
    assert!(swept["ended"].as_u64().unwrap() >= 2, "{swept}");
    assert!(chain.sandbox.courses_of(email).is_empty(), "cancelled: ends at the paid-through date");
    assert!(chain.sandbox.courses_of(fixed).is_empty(), "fixed term over");
}
