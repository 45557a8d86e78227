//! The whole chain with `LMS=moodle`, every part real: webhook → edge (workerd) → Pub/Sub
//! emulator → push → backend → Firestore emulator → Moodle sandbox. Assertions are on the
//! sandbox (users, enrolments and their `timeend`, the calls the bridge made) and on
//! `lms-bridge student show`. Moodle ends a timed enrolment by itself: the sweep records the
//! end without calling it.

#![allow(clippy::unwrap_used, reason = "test code: a panic is the failure report")]

use lms_bridge_shared::Timestamp;
use lms_bridge_tests::backend::{backend_bin, Backend, Firestore, Issuer};
use lms_bridge_tests::edge::{Edge, HOTTOK};
use lms_bridge_tests::mappings::{Mappings, SAMPLE_PRODUCT};
use lms_bridge_tests::moodle_sandbox::{MoodleSandbox, MOODLE_TOKEN};
use lms_bridge_tests::process::free_port;
use lms_bridge_tests::pubsub_emulator::{Emulator, PROJECT};
use lms_bridge_tests::webhooks::{now_ms, Webhook, DAY_MS};
use serde_json::{json, Value};
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// The subscription product (grace 3 days: course 102) and the fixed-term one (30 days: 103).
const SUBSCRIPTION: u64 = 4774439;
const GRACE_DAYS: i64 = 3;
const FIXED: u64 = 4774440;
const TERM_DAYS: i64 = 30;

struct Chain {
    moodle: MoodleSandbox,
    backend: Backend,
    edge: Edge,
    _pubsub: Emulator,
    _firestore: Firestore,
    _issuer: Issuer,
}

/// One chain for the binary; tests take turns (the sandbox's clock is global) and use their
/// own students.
fn chain() -> (MutexGuard<'static, ()>, &'static Chain) {
    static TURN: Mutex<()> = Mutex::new(());
    static CHAIN: OnceLock<Chain> = OnceLock::new();
    let turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let chain = CHAIN.get_or_init(|| {
        let pubsub = Emulator::start();
        let firestore = Firestore::start();
        let issuer = Issuer::start();
        let moodle = MoodleSandbox::start(&["--courses", "101,102,103"]);
        // The emulator's push carries no OIDC token: the backend runs as `make dev` runs it.
        let backend =
            Backend::start_with_lms(PROJECT, &firestore, &moodle.backend_env(), &issuer, &[("PUSH_AUTH", "none")]);
        backend.pubsub_setup(&pubsub.host, &[]);
        let mappings = Mappings::new()
            .lifetime(SAMPLE_PRODUCT, &["101"])
            .subscription(SUBSCRIPTION, &["102"], GRACE_DAYS as u32)
            .fixed_days(FIXED, &["103"], TERM_DAYS as u32);
        backend.import_mappings(&mappings.toml());
        let edge = Edge::start(
            "e2e-moodle",
            &[
                ("HOTMART_HOTTOK", HOTTOK),
                ("PUBSUB_EMULATOR_HOST", &pubsub.host),
                ("GCP_PROJECT", PROJECT),
                ("PUBSUB_TOPIC", "lms-bridge-events"),
            ],
        );
        Chain { moodle, backend, edge, _pubsub: pubsub, _firestore: firestore, _issuer: issuer }
    });
    (turn, chain)
}

fn send(chain: &Chain, body: Vec<u8>) {
    let (status, answer) = chain.edge.hotmart(body);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["via"], "pubsub", "{answer}");
}

/// Waits until `done` holds; `what` and the sandbox's calls for `email` explain a timeout.
fn wait_until(chain: &Chain, email: &str, what: &str, timeout: Duration, done: impl Fn() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < timeout,
            "{email}: not {what} within {timeout:?}; enrolments {:?}; enrol timeends {:?}; backend log:\n{}",
            chain.moodle.courses_of(email),
            chain.moodle.enrol_timeends(email, 102),
            chain.backend.log_tail()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `lms-bridge student show EMAIL`: the course's entry.
fn shown_course(chain: &Chain, email: &str, course: &str) -> Value {
    let output = chain.backend.cli(&["student", "show", email]);
    assert!(output.status.success(), "student show: {}", String::from_utf8_lossy(&output.stderr));
    let shown: Value = serde_json::from_slice(&output.stdout).unwrap();
    let courses = shown["courses"].as_array().cloned().unwrap_or_default();
    courses.into_iter().find(|c| c["course"] == course).unwrap_or_else(|| panic!("{course} not in {shown}"))
}

/// A time in Unix ms as `student show` prints it.
fn shown_time(ms: i64) -> String {
    Timestamp::from_unix_millis(ms).unwrap().to_string()
}

/// The whole seconds Moodle gets for an end in Unix ms.
fn secs(ms: i64) -> i64 {
    ms.div_euclid(1000)
}

/// A charge of `email`'s subscription, approved now, paid through `paid_through` (Unix ms).
fn charge(id: &str, email: &str, code: &str, paid_through: i64) -> Vec<u8> {
    Webhook::subscription_charge()
        .now()
        .id(id)
        .buyer(email)
        .product(SUBSCRIPTION)
        .subscriber_code(code)
        .transaction(&format!("HP-{id}"))
        .next_charge(paid_through)
        .bytes()
}

#[test]
fn a_lifetime_purchase_creates_a_lower_case_user_enrolled_without_end() {
    let (_turn, chain) = chain();
    let (given, email) = ("Moodle.Life@Example.COM", "moodle.life@example.com");
    send(chain, Webhook::purchase_approved().now().id("m-life").buyer(given).transaction("HPML1").bytes());
    wait_until(chain, email, "enrolled in 101", Duration::from_secs(20), || chain.moodle.courses_of(email) == [101]);
    let state = chain.moodle.state();
    let users: Vec<&Value> = state["users"].as_array().unwrap().iter().filter(|u| u["email"] == email).collect();
    assert_eq!(users.len(), 1, "one Moodle user: {users:?}");
    assert_eq!(users[0]["username"], email, "the lower-case e-mail as username");
    assert_eq!(users[0]["auth"], "manual");
    assert_eq!(chain.moodle.timeend_of(email, 101), Some(0), "lifetime: no end");
    assert_eq!(chain.moodle.enrol_timeends(email, 101), [0], "one enrol, timeend 0");
    let course = shown_course(chain, email, "101");
    assert_eq!(course["access"], "active", "{course}");
    assert!(course["access_until"].is_null(), "{course}");
}

#[test]
fn a_subscription_ends_at_its_paid_date_plus_grace_and_a_renewal_moves_the_end() {
    let (_turn, chain) = chain();
    let email = "moodle-subscriber@example.com";
    let t0 = now_ms();
    let paid = t0 + 30 * DAY_MS;
    send(chain, charge("ms-c1", email, "SUBMS1", paid));
    let first = secs(paid + GRACE_DAYS * DAY_MS);
    wait_until(chain, email, "enrolled until the paid date + grace", Duration::from_secs(20), || {
        chain.moodle.timeend_of(email, 102) == Some(first)
    });
    assert_eq!(chain.moodle.courses_of(email), [102]);
    assert_eq!(chain.moodle.enrol_timeends(email, 102), [first], "one enrol, with its end");
    assert_eq!(shown_course(chain, email, "102")["access_until"], shown_time(paid + GRACE_DAYS * DAY_MS));

    // The renewal: another charge, paid through D2. The same enrolment, its end moved by
    // another enrol call.
    let paid2 = t0 + 60 * DAY_MS;
    send(chain, charge("ms-c2", email, "SUBMS1", paid2));
    let second = secs(paid2 + GRACE_DAYS * DAY_MS);
    wait_until(chain, email, "moved to the renewal's end", Duration::from_secs(20), || {
        chain.moodle.timeend_of(email, 102) == Some(second)
    });
    assert_eq!(chain.moodle.enrol_timeends(email, 102), [first, second]);
    let state = chain.moodle.state();
    let enrolments: Vec<&Value> =
        state["enrolments"].as_array().unwrap().iter().filter(|e| e["email"] == email).collect();
    assert_eq!(enrolments.len(), 1, "one enrolment, updated: {enrolments:?}");
    assert_eq!(enrolments[0]["active"], true);
    assert_eq!(chain.moodle.calls_of("enrol_manual_unenrol_users", email).len(), 0);
    let course = shown_course(chain, email, "102");
    assert_eq!(course["access"], "active", "{course}");
    assert_eq!(course["access_until"], shown_time(paid2 + GRACE_DAYS * DAY_MS), "{course}");
}

#[test]
fn a_refund_unenrols() {
    let (_turn, chain) = chain();
    let email = "moodle-refund@example.com";
    send(chain, Webhook::purchase_approved().now().id("mr-a").buyer(email).transaction("HPMR1").bytes());
    wait_until(chain, email, "enrolled", Duration::from_secs(20), || chain.moodle.courses_of(email) == [101]);
    send(chain, Webhook::purchase_refunded().now().id("mr-r").buyer(email).transaction("HPMR1").bytes());
    wait_until(chain, email, "unenrolled", Duration::from_secs(20), || chain.moodle.timeend_of(email, 101).is_none());
    assert!(chain.moodle.courses_of(email).is_empty());
    let unenrols = chain.moodle.ok_calls_of("enrol_manual_unenrol_users", email);
    assert_eq!(unenrols.len(), 1, "{unenrols:?}");
    assert_eq!(unenrols[0]["params"]["enrolments"]["0"]["courseid"], "101");
    assert_eq!(shown_course(chain, email, "101")["access"], "inactive");
}

#[test]
fn a_fixed_term_product_is_enrolled_until_its_approval_plus_the_term() {
    let (_turn, chain) = chain();
    let email = "moodle-fixed@example.com";
    let approved = now_ms() - 5_000;
    let term = Webhook::purchase_approved()
        .id("mf-a")
        .created_and_approved_at(approved)
        .buyer(email)
        .product(FIXED)
        .transaction("HPMF1");
    send(chain, term.bytes());
    let end = approved + TERM_DAYS * DAY_MS;
    wait_until(chain, email, "enrolled in 103", Duration::from_secs(20), || chain.moodle.courses_of(email) == [103]);
    assert_eq!(chain.moodle.timeend_of(email, 103), Some(secs(end)));
    assert_eq!(chain.moodle.enrol_timeends(email, 103), [secs(end)], "the end set with the enrol itself");
    assert_eq!(shown_course(chain, email, "103")["access_until"], shown_time(end));
}

#[test]
fn a_cancellation_moves_the_end_and_moodle_ends_it_without_an_unenrol_call() {
    let (_turn, chain) = chain();
    let email = "moodle-cancel@example.com";
    let t0 = now_ms();
    send(chain, charge("mc-c1", email, "SUBMC1", t0 + 60 * DAY_MS));
    let paid_end = secs(t0 + (60 + GRACE_DAYS) * DAY_MS);
    wait_until(chain, email, "enrolled", Duration::from_secs(20), || {
        chain.moodle.timeend_of(email, 102) == Some(paid_end)
    });
    // The subscriber cancels: access lasts to the stated end of the period (no grace).
    let ends = t0 + 10 * DAY_MS;
    let cancel = Webhook::subscription_cancellation()
        .now()
        .id("mc-cancel")
        .cancelled_at(t0)
        .buyer(email)
        .subscriber_code("SUBMC1")
        .product(SUBSCRIPTION)
        .next_charge(ends);
    send(chain, cancel.bytes());
    wait_until(chain, email, "moved to the period's end", Duration::from_secs(20), || {
        chain.moodle.timeend_of(email, 102) == Some(secs(ends))
    });
    assert_eq!(chain.moodle.enrol_timeends(email, 102), [paid_end, secs(ends)]);
    assert_eq!(shown_course(chain, email, "102")["access_until"], shown_time(ends));

    // Time passes the end: Moodle stops the access by itself…
    let unenrols_before = chain.moodle.count("enrol_manual_unenrol_users");
    let enrols_before = chain.moodle.count("enrol_manual_enrol_users");
    chain.moodle.clock(json!({ "now": secs(ends) + 120 }));
    let state = chain.moodle.state();
    let enrolment = state["enrolments"].as_array().unwrap().iter().find(|e| e["email"] == email).cloned().unwrap();
    chain.moodle.clock(json!({}));
    assert_eq!(
        (enrolment["active"].as_bool(), enrolment["listed"].as_bool()),
        (Some(false), Some(false)),
        "{enrolment}"
    );
    // …and the sweep at that time records it without calling Moodle.
    let report = chain.backend.sweep_at(ends + 120_000);
    assert!(report["ended"].as_u64() >= Some(1), "{report}");
    let course = shown_course(chain, email, "102");
    assert_eq!(course["access"], "inactive", "{course}");
    assert_eq!(chain.moodle.count("enrol_manual_unenrol_users"), unenrols_before, "no unenrol call");
    assert_eq!(chain.moodle.count("enrol_manual_enrol_users"), enrols_before, "no enrol call either");
    assert!(chain.moodle.calls_of("enrol_manual_unenrol_users", email).is_empty());
    assert_eq!(chain.moodle.timeend_of(email, 102), Some(secs(ends)), "the expired enrolment stays in Moodle");
}

/// `lms-bridge serve` against `moodle` with `url` and `token`: how it exited and its stderr
/// (panics if it is still serving after 30 s: the check let it through).
fn serve_start(url: &str, token: &str) -> (std::process::ExitStatus, String) {
    let mut child = Command::new(backend_bin())
        .arg("serve")
        .envs([
            ("LMS", "moodle"),
            ("MOODLE_URL", url),
            ("MOODLE_TOKEN", token),
            ("GCP_PROJECT", "moodle-check"),
            ("FIRESTORE_EMULATOR_HOST", "127.0.0.1:9"),
            ("PUSH_AUTH", "none"),
            ("LISTEN_ADDR", "127.0.0.1"),
        ])
        .env("PORT", free_port().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("lms-bridge serve still running with MOODLE_URL={url}: the start-up check let it through");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    (status, stderr)
}

/// The lines of a failed start that say why (`lms-bridge: …`; the log lines before it are
/// JSON).
fn error_lines(stderr: &str) -> Vec<&str> {
    stderr.lines().filter(|l| l.starts_with("lms-bridge:")).collect()
}

#[test]
fn serve_refuses_to_start_with_a_wrong_token_or_a_url_that_is_not_the_wwwroot() {
    // No chain: the check runs before anything else.
    let moodle = MoodleSandbox::start(&[]);
    let (status, stderr) = serve_start(&moodle.url, "not-the-token");
    assert!(!status.success(), "{stderr}");
    let errors = error_lines(&stderr);
    assert_eq!(errors.len(), 1, "one error line: {stderr}");
    assert!(errors[0].contains("MOODLE_TOKEN"), "{stderr}");
    assert!(!stderr.contains(MOODLE_TOKEN), "no token in the output");

    let other_host = moodle.url.replace("127.0.0.1", "localhost");
    let (status, stderr) = serve_start(&other_host, MOODLE_TOKEN);
    assert!(!status.success(), "{stderr}");
    let errors = error_lines(&stderr);
    assert_eq!(errors.len(), 1, "one error line: {stderr}");
    assert!(errors[0].contains("MOODLE_URL") && errors[0].contains("wwwroot"), "{stderr}");
    assert!(!stderr.contains(MOODLE_TOKEN), "no token in the output");
    assert_eq!(moodle.count("enrol_manual_enrol_users"), 0);
}
