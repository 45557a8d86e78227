//! The whole chain, every part real: webhook → edge (workerd) → Pub/Sub emulator → push →
//! backend → Firestore emulator → LMS sandbox. Assertions are on the sandbox (what the LMS
//! did) and on the backend's view of the student.

#![allow(clippy::unwrap_used, reason = "test code: a panic is the failure report")]

use lms_bridge_tests::backend::{Backend, Firestore, Issuer, Sandbox};
use lms_bridge_tests::chaos::ChaosProxy;
use lms_bridge_tests::edge::{Edge, HOTTOK};
use lms_bridge_tests::mappings;
use lms_bridge_tests::pubsub_emulator::{Emulator, PROJECT};
use lms_bridge_tests::webhooks::{now_ms, Webhook, DAY_MS};
use serde_json::{json, Value};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

struct Chain {
    /// Between the edge and Pub/Sub: an outage without losing the emulator's state.
    proxy: ChaosProxy,
    sandbox: Sandbox,
    backend: Backend,
    edge: Edge,
    pubsub: Mutex<Emulator>,
    firestore: Firestore,
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
        let sandbox = Sandbox::start(&[]);
        // The emulator's push carries no OIDC token: the backend runs as `make dev` runs it.
        let backend = Backend::start(PROJECT, &firestore, &sandbox, &issuer, &[("PUSH_AUTH", "none")]);
        backend.pubsub_setup(&pubsub.host, &[]);
        backend.import_mappings(&mappings::chain().toml());
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
        Chain { proxy, sandbox, backend, edge, pubsub: Mutex::new(pubsub), firestore, _issuer: issuer }
    });
    (turn, chain)
}

/// `email`'s purchase of the fixtures' product (lifetime: course 101) under `transaction`,
/// approved (webhook `id`), as Hotmart posts it; the samples' dates.
fn approved(id: &str, email: &str, transaction: &str) -> Vec<u8> {
    Webhook::purchase_approved().id(id).buyer(email).transaction(transaction).bytes()
}

/// The refund of that purchase.
fn refunded(id: &str, email: &str, transaction: &str) -> Vec<u8> {
    Webhook::purchase_refunded().id(id).buyer(email).transaction(transaction).bytes()
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
    send(chain, approved("e1-a", email, "HPE1"));
    let took = wait_for(chain, email, &["101"], Duration::from_secs(5));
    eprintln!("purchase → enrolled in {took:?}");
    send(chain, refunded("e1-r", email, "HPE1"));
    wait_for(chain, email, &[], Duration::from_secs(5));
}

#[test]
fn the_same_webhook_three_times_and_a_refund_before_its_approval_end_right() {
    let (_turn, chain) = chain();
    let email = "e2e-two@example.com";
    for _ in 0..3 {
        send(chain, approved("e2-a", email, "HPE2"));
    }
    wait_for(chain, email, &["101"], Duration::from_secs(5));
    let other = "e2e-three@example.com";
    send(chain, refunded("e3-r", other, "HPE3"));
    send(chain, approved("e3-a", other, "HPE3"));
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
    send(chain, approved("e4-a", email, "HPE4"));
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
    let (firestore, issuer) = (&chain.firestore, &chain._issuer);
    let sandbox = Sandbox::start(&[]);
    let port = lms_bridge_tests::process::free_port();
    let start = || Backend::start_on(port, "kill-test", firestore, &sandbox, issuer, &[("PUSH_AUTH", "none")]);
    let mut backend = start();
    backend.import_mappings(&mappings::sample().toml());
    // The emulator redelivers to the dead instance at once instead of backing off, so on a busy
    // machine ten deliveries pass while it is down; its dead-lettering then stops its push loop
    // for good. Pub/Sub's maximum keeps the test about the backend.
    backend.pubsub_setup(
        &pubsub_host,
        &["--subscription", "kill-test", "--gcp-project", PROJECT, "--max-delivery-attempts", "100"],
    );

    // 200 webhooks: 100 approvals, 50 refunds, 50 resends of approvals under new ids.
    let student = |i: usize| format!("stream-{i}@example.com");
    let mut stream: Vec<Vec<u8>> =
        (0..100).map(|i| approved(&format!("k-a{i}"), &student(i), &format!("HPK{i}"))).collect();
    stream.extend((0..100).step_by(2).map(|i| refunded(&format!("k-r{i}"), &student(i), &format!("HPK{i}"))));
    stream.extend((0..50).map(|i| approved(&format!("k-a{i}-resend"), &student(i), &format!("HPK{i}"))));
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
    // Counted for this stream's students only: an earlier test's event parked in the edge's
    // queue may reach the topic late, and so this backend too.
    let state = sandbox.state();
    let ok_calls = |action: &str| {
        let calls = state["calls"].as_array().cloned().unwrap_or_default();
        calls
            .iter()
            .filter(|c| c["action"] == action && c["status"] == 200)
            .filter(|c| c["user"].as_str().is_some_and(|u| u.starts_with("stream-")))
            .count()
    };
    assert_eq!(ok_calls("usersignup"), 100, "one LMS user per student");
    assert_eq!(ok_calls("addusertocourse"), 100, "each student enrolled once, none twice");
    drop(backend);
}

#[test]
fn webhooks_during_a_pubsub_outage_are_answered_via_the_queue_and_all_applied() {
    let (_turn, chain) = chain();
    let student = |i: usize| format!("outage-{i}@example.com");
    chain.proxy.cut();
    for i in 0..8 {
        let (status, answer) = chain.edge.hotmart(approved(&format!("o-a{i}"), &student(i), &format!("HPO{i}")));
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

fn sweep(chain: &Chain) -> Value {
    let response = reqwest::blocking::Client::new().post(format!("{}/tasks/sweep", chain.backend.url)).send().unwrap();
    assert_eq!(response.status().as_u16(), 200);
    response.json().unwrap()
}

#[test]
fn renewals_extend_a_cancellation_ends_at_the_paid_date_and_a_fixed_term_expires() {
    let (_turn, chain) = chain();
    let email = "e2e-subscriber@example.com";
    // Each recurrence is its own charge, approved now.
    let charge = |id: &str, paid_through: i64| {
        Webhook::subscription_charge()
            .now()
            .id(id)
            .buyer(email)
            .product(4774439)
            .subscriber_code("SUBE2E")
            .transaction(&format!("HP-{id}"))
            .next_charge(paid_through)
            .bytes()
    };
    let t0 = now_ms();
    send(chain, charge("s-c1", t0 + 3 * DAY_MS));
    wait_for(chain, email, &["102"], Duration::from_secs(5));
    // A renewal extends the paid period; then the subscriber cancels: access lasts to the
    // paid-through date of the cancellation, and the sweep ends it there.
    send(chain, charge("s-c2", t0 + 60 * DAY_MS));
    let ends = t0 + 10 * DAY_MS;
    let cancel = Webhook::subscription_cancellation()
        .now()
        .id("s-cancel")
        .cancelled_at(t0)
        .buyer(email)
        .subscriber_code("SUBE2E")
        .product(4774439)
        .next_charge(ends);
    send(chain, cancel.bytes());

    // Fixed term: 365 days from its approval, now.
    let fixed = "e2e-fixed@example.com";
    let term = Webhook::purchase_approved()
        .id("f-a")
        .created_and_approved_at(t0)
        .buyer(fixed)
        .product(4774440)
        .transaction("HPF1");
    send(chain, term.bytes());
    wait_for(chain, fixed, &["103"], Duration::from_secs(5));
    wait_processed(chain, "s-cancel", email, Duration::from_secs(20));

    // The scheduler's sweep runs now; then time moves on through `sweep --at`. (The chain's
    // state is shared with the other tests, so the reports' counts may include theirs.)
    sweep(chain);
    chain.backend.sweep_at(t0 + 4 * DAY_MS);
    assert_eq!(chain.sandbox.courses_of(email), ["102"], "renewed: still enrolled after the first period");
    assert_eq!(chain.sandbox.courses_of(fixed), ["103"]);
    assert!(chain.backend.sweep_at(ends + 1_000)["ended"].as_u64() >= Some(1));
    assert!(chain.sandbox.courses_of(email).is_empty(), "cancelled: ends at the paid-through date");
    assert_eq!(chain.sandbox.courses_of(fixed), ["103"], "the fixed term runs on");
    assert!(chain.backend.sweep_at(t0 + 365 * DAY_MS + 1_000)["ended"].as_u64() >= Some(1));
    assert!(chain.sandbox.courses_of(fixed).is_empty(), "fixed term over");
}

/// The sandbox's calls that concerned the user with this email, as `(action, status)`.
fn calls_of(chain: &Chain, email: &str) -> Vec<(String, u64)> {
    let state = chain.sandbox.state();
    let calls = state["calls"].as_array().cloned().unwrap_or_default();
    // An older sandbox logs no user: every check on this list would pass for nothing.
    assert!(
        calls.iter().all(|c| c.get("user").is_some()),
        "the sandbox's call log names no users (stale lms-sandbox?)"
    );
    calls
        .iter()
        .filter(|c| c["user"].as_str().is_some_and(|u| u.eq_ignore_ascii_case(email)))
        .map(|c| (c["action"].as_str().unwrap().to_owned(), c["status"].as_u64().unwrap()))
        .collect()
}

/// `lms-bridge student show EMAIL` on the chain's backend (None: no such student).
fn student_show(chain: &Chain, email: &str) -> Option<Value> {
    let output = chain.backend.cli(&["student", "show", email]);
    output.status.success().then(|| serde_json::from_slice(&output.stdout).unwrap())
}

/// Waits until the backend has recorded the Hotmart event `id` (`events/hotmart:{id}`) and
/// no LMS action on `email`'s enrollments is left pending: the event is fully processed.
/// Returns the event's status.
fn wait_processed(chain: &Chain, id: &str, email: &str, timeout: Duration) -> String {
    let started = Instant::now();
    loop {
        let doc = chain.firestore.document(&chain.backend.project, &format!("events/hotmart%3A{id}"));
        let status = doc["fields"]["status"]["stringValue"].as_str().map(str::to_owned);
        let shown = student_show(chain, email);
        // No such student: nothing pending for it either.
        let settled = shown.as_ref().is_none_or(|s| {
            s["courses"].as_array().unwrap().iter().all(|c| c["pending_actions"].as_array().is_none_or(Vec::is_empty))
        });
        if let (Some(status), true) = (&status, settled) {
            return status.clone();
        }
        assert!(
            started.elapsed() < timeout,
            "event hotmart:{id} not processed within {timeout:?}: status {status:?}, {email}: {shown:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A subscription charge of product 4774439 (subscription, grace 0) for subscriber `code`.
fn subscription_approved(
    id: &str,
    email: &str,
    code: &str,
    transaction: &str,
    recurrence: u32,
    approved: i64,
    next_charge: i64,
) -> Vec<u8> {
    Webhook::subscription_charge()
        .id(id)
        .at(approved + 1_000)
        .buyer(email)
        .product(4774439)
        .subscriber_code(code)
        .transaction(transaction)
        .recurrence(recurrence)
        .approved_at(approved)
        .ordered_at(approved - 10_000)
        .next_charge(next_charge)
        .bytes()
}

#[test]
fn a_refused_renewal_paid_under_a_new_transaction_keeps_the_subscriber_enrolled() {
    let (_turn, chain) = chain();
    let email = "e2e-refused-renewal@example.com";
    let code = "SUBE2EREFUSED";
    let base = now_ms();

    // (a) Recurrence 1 approved (T1), paid through +30 days.
    let first = subscription_approved("rr-a1", email, code, "HPRR1", 1, base - 120_000, base + 30 * DAY_MS);
    send(chain, first);
    wait_for(chain, email, &["102"], Duration::from_secs(20));

    // (b) Recurrence 2's card is refused: PURCHASE_CANCELED of its transaction T2, same
    // subscriber. The payment did not go through; it must not end the subscription.
    let refused = Webhook::purchase_canceled()
        .id("rr-c2")
        .at(base - 60_000)
        .buyer(email)
        .product(4774439)
        .edit(|raw| {
            raw["data"]["subscription"] = json!({
                "status": "ACTIVE", "plan": { "id": 123, "name": "plano de teste" }, "subscriber": { "code": code },
            });
            raw["data"]["purchase"].as_object_mut().unwrap().remove("approved_date");
        })
        .transaction("HPRR2")
        .recurrence(2)
        .ordered_at(base - 70_000);
    send(chain, refused.bytes());
    let status = wait_processed(chain, "rr-c2", email, Duration::from_secs(20));
    let calls = calls_of(chain, email);
    assert!(
        !calls.iter().any(|(action, _)| action == "removeuserfromcourse"),
        "the refused renewal (PURCHASE_CANCELED of T2, event {status}) unenrolled the subscriber; \
         sandbox calls for {email}: {calls:?}, courses now {:?}",
        chain.sandbox.courses_of(email)
    );

    // (c) Recurrence 2 paid under a new transaction T3, paid through +60 days.
    let paid_through = base + 60 * DAY_MS;
    send(chain, subscription_approved("rr-a3", email, code, "HPRR3", 2, base - 30_000, paid_through));
    let status = wait_processed(chain, "rr-a3", email, Duration::from_secs(20));

    let calls = calls_of(chain, email);
    assert_eq!(chain.sandbox.courses_of(email), ["102"], "still enrolled after T3 ({status}); calls {calls:?}");
    assert!(
        !calls.iter().any(|(action, _)| action == "removeuserfromcourse"),
        "never unenrolled; sandbox calls for {email}: {calls:?}"
    );
    let shown = student_show(chain, email).unwrap();
    let course = &shown["courses"][0];
    assert_eq!(course["course"], "102", "{shown}");
    assert_eq!(course["access"], "active", "{shown}");
    let until = lms_bridge_shared::Timestamp::from_unix_millis(paid_through).unwrap().to_string();
    assert_eq!(course["access_until"], until.as_str(), "access until T3's next charge date (+60 days): {shown}");
}

#[test]
fn a_refund_carrying_a_changed_buyer_email_revokes_the_buyers_access() {
    let (_turn, chain) = chain();
    let (buyer, changed) = ("ana.x@example.com", "ana.new@example.com");
    let base = now_ms();
    let purchase = |sample: &str, id: &str, email: &str, created: i64| {
        Webhook::sample(sample)
            .id(id)
            .at(created)
            .buyer(email)
            .product(4774438)
            .transaction("HPAX1")
            .approved_at(base - 60_000)
            .ordered_at(base - 70_000)
            .bytes()
    };
    send(chain, purchase("purchase_approved", "ax-a", buyer, base - 59_000));
    wait_for(chain, buyer, &["101"], Duration::from_secs(20));

    // The buyer changed address at Hotmart: the refund of the same transaction names it.
    send(chain, purchase("purchase_refunded", "ax-r", changed, base - 10_000));
    let status = wait_processed(chain, "ax-r", buyer, Duration::from_secs(20));
    wait_processed(chain, "ax-r", changed, Duration::from_secs(20));
    let started = Instant::now();
    while !chain.sandbox.courses_of(buyer).is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{buyer} still enrolled in {:?} 20 s after the refund of HPAX1 (sent as {changed}) was recorded \
             ({status}); sandbox calls for {buyer}: {:?}",
            chain.sandbox.courses_of(buyer),
            calls_of(chain, buyer)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(calls_of(chain, buyer).iter().any(|c| c == &("removeuserfromcourse".to_owned(), 200)));
    let state = chain.sandbox.state();
    let users = state["users"].as_array().unwrap();
    assert!(!users.iter().any(|u| u["email"] == changed), "no LMS user for {changed}: {users:?}");
    let calls = calls_of(chain, changed);
    assert!(
        !calls.iter().any(|(action, _)| action == "usersignup" || action == "addusertocourse"),
        "nothing created or enrolled for {changed}: {calls:?}"
    );
}

/// Every log line the edge and the backend wrote in this run, as one text.
fn chain_logs() -> String {
    let dir = lms_bridge_tests::repo_root().join("target/test-logs");
    ["wrangler-e2e.log".to_owned(), format!("backend-{PROJECT}.log")]
        .iter()
        .map(|name| std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("reading log {name}: {e}")))
        .collect()
}

#[test]
fn no_secret_and_no_email_reaches_the_logs_of_the_edge_or_the_backend_through_faults() {
    let (_turn, chain) = chain();
    let email = "Secret.Scan.Person@Example.com";
    let forged = "forged-hottok-9d1e2c";
    // A forged token is refused; a body carrying the real hottok and the email that cannot be
    // normalized is quarantined; the LMS fails, then rate-limits, before it works.
    let (status, _) = chain.edge.post("/webhooks/hotmart", Some(forged), "application/json", b"{}".to_vec());
    assert_eq!(status, 401);
    let unparsed = format!(
        r#"{{"id":"scan-unparsed","event":"PURCHASE_APPROVED","hottok":"{HOTTOK}","data":{{"buyer":{{"email":"{email}"}}}}}}"#
    );
    let (status, _) = chain.edge.hotmart(unparsed.into_bytes());
    assert_eq!(status, 200);
    chain.sandbox.faults(json!({ "fail_next": 2, "rate_limit_next": 1, "retry_after_secs": 1 }));
    send(chain, approved("scan-approved", email, "HPSCAN1"));
    wait_for(chain, &email.to_lowercase(), &["101"], Duration::from_secs(30));
    send(chain, refunded("scan-refunded", email, "HPSCAN1"));
    wait_for(chain, &email.to_lowercase(), &[], Duration::from_secs(30));

    let logs = chain_logs();
    assert!(logs.lines().count() > 10, "the processes logged: {} lines", logs.lines().count());
    // The lines about this student are there, under its key.
    let key = lms_bridge_shared::Email::parse(email).unwrap().student_key().to_string();
    assert!(logs.contains(&key), "no log line names the student key");
    let lower = logs.to_lowercase();
    for secret in [HOTTOK, forged, lms_bridge_tests::backend::LMS_KEY, "secret.scan.person", "ana.souza@example.com"] {
        let hits: Vec<&str> = logs.lines().filter(|l| l.to_lowercase().contains(&secret.to_lowercase())).collect();
        assert!(
            !lower.contains(&secret.to_lowercase()),
            "{secret:?} in {} log line(s), e.g. {:?}",
            hits.len(),
            hits.first()
        );
    }
}
