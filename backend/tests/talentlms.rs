//! The TalentLMS adapter against the LMS sandbox (`tools/src/bin/lms-sandbox.rs`), a real
//! HTTP server speaking TalentLMS v1, with its fault injection and admin-made users.
//!
//! The sandbox binary is built once per test run (`LMS_SANDBOX_BIN` overrides it); every
//! test starts its own sandbox on a free port, which dies with the test.

#![allow(clippy::unwrap_used, reason = "tests: a panic is the failure report")]

use base64::Engine as _;
use lms_bridge_backend::lms::talentlms::TalentLms;
use lms_bridge_backend::lms::{Enrolled, EnsuredUser, Lms, LmsError, LmsStudent, LmsUserId};
use lms_bridge_shared::CourseId;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStderr, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A key that is easy to spot wherever it leaks.
const KEY: &str = "SECRET-KEY-zq81xw55-do-not-leak";
const EMAIL: &str = "ana.secret@example.com";
/// The student key of [`EMAIL`] (any 64-hex key will do).
const STUDENT_KEY: &str = "7fd726011aa08d90d14a923ea0e5e3edf63bfe14b51ee6f6429483118d197c9b";
/// The logins the adapter derives for [`EMAIL`], in the order it tries them.
const LOGINS: [&str; 4] = [
    "ana.secret-7fd726",
    "ana.secret-7fd726011aa0",
    "ana.secret-7fd726011aa08d90d1",
    "ana.secret-7fd726011aa08d90d14a923e",
];

/// A running sandbox; dropping it stops it (and it stops by itself when this process ends:
/// it watches its stdin).
struct Sandbox {
    child: Child,
    _stderr: BufReader<ChildStderr>,
    url: String,
    http: reqwest::Client,
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Sandbox {
    fn start(extra: &[&str]) -> Self {
        let mut child = Command::new(lms_bridge_tests::backend::sandbox_bin())
            .args(["--port", "0", "--api-key", KEY, "--exit-with-stdin"])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        stderr.read_line(&mut line).unwrap();
        let addr = line.trim().strip_prefix("lms-sandbox listening on ").unwrap_or_else(|| panic!("sandbox: {line}"));
        Self { child, _stderr: stderr, url: format!("http://{addr}"), http: reqwest::Client::new() }
    }

    async fn control(&self, path: &str, body: Value) -> Value {
        let response = self.http.post(format!("{}/_sandbox/{path}", self.url)).json(&body).send().await.unwrap();
        assert!(response.status().is_success(), "sandbox {path}: {}", response.status());
        response.json().await.unwrap()
    }

    async fn faults(&self, faults: Value) {
        self.control("faults", faults).await;
    }

    /// Adds a user as a portal admin would; its id.
    async fn add_user(&self, user: Value) -> String {
        self.control("users", user).await["id"].as_str().unwrap().to_owned()
    }

    async fn state(&self) -> Value {
        self.http.get(format!("{}/_sandbox/state", self.url)).send().await.unwrap().json().await.unwrap()
    }

    async fn calls(&self) -> usize {
        self.state().await["calls"].as_array().unwrap().len()
    }

    async fn count(&self, action: &str) -> u64 {
        self.state().await["counts"][action].as_u64().unwrap_or(0)
    }

    async fn users(&self) -> Vec<Value> {
        self.state().await["users"].as_array().unwrap().clone()
    }

    fn lms(&self) -> TalentLms {
        TalentLms::new(&self.url, KEY.into(), 30).unwrap()
    }
}

fn ana() -> LmsStudent {
    LmsStudent {
        email: EMAIL.into(),
        first_name: "Ana".into(),
        last_name: "Secret".into(),
        key: lms_bridge_shared::StudentKey::parse(STUDENT_KEY).unwrap(),
    }
}

fn course(id: &str) -> CourseId {
    CourseId::parse(id).unwrap()
}

/// Fails when an error's text (Display or Debug) holds the key, an email or a URL.
fn assert_clean(error: &LmsError, also: &[&str]) {
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{KEY}:"));
    for text in [error.to_string(), format!("{error:?}")] {
        for secret in [KEY, basic.as_str(), EMAIL, "ana.secret", "example.com", "http:", "127.0.0.1", "/api/v1", "@"]
            .iter()
            .chain(also)
        {
            assert!(!text.contains(secret), "{secret:?} in {text:?}");
        }
    }
}

// --- A: what ensure_user and enroll report --------------------------------------------

#[tokio::test]
async fn ensure_user_reports_a_new_learner_as_created_then_as_found() {
    let sandbox = Sandbox::start(&[]);
    let lms = sandbox.lms();
    let first = lms.ensure_user(&ana()).await.unwrap();
    assert!(first.created && first.learner, "{first:?}");
    let again = lms.ensure_user(&ana()).await.unwrap();
    assert_eq!(again, EnsuredUser { id: first.id, created: false, learner: true });
    assert_eq!(sandbox.count("usersignup").await, 1);
}

#[tokio::test]
async fn admins_and_trainers_found_by_email_are_not_learners_and_are_left_alone() {
    let sandbox = Sandbox::start(&[]);
    let lms = sandbox.lms();
    for (user_type, email) in [
        ("SuperAdmin", "owner@example.com"),
        ("Admin-Type", "admin@example.com"),
        ("Trainer-Type", "coach@example.com"),
    ] {
        let id = sandbox.add_user(json!({ "email": email, "user_type": user_type, "status": "inactive" })).await;
        let student = LmsStudent { email: email.into(), ..ana() };
        let user = lms.ensure_user(&student).await.unwrap();
        assert_eq!(user, EnsuredUser { id: LmsUserId(id), created: false, learner: false }, "{user_type}");
    }
    assert_eq!(sandbox.count("usersignup").await, 0);
}

#[tokio::test]
async fn a_portal_that_signs_users_up_as_another_type_reports_them_as_not_learners() {
    let sandbox = Sandbox::start(&["--signup-type", "Trainer-Type"]);
    let user = sandbox.lms().ensure_user(&ana()).await.unwrap();
    assert!(user.created && !user.learner, "{user:?}");
}

#[tokio::test]
async fn enroll_says_now_then_already() {
    let sandbox = Sandbox::start(&[]);
    let lms = sandbox.lms();
    let user = lms.ensure_user(&ana()).await.unwrap();
    assert_eq!(lms.enroll(&user.id, &course("101")).await.unwrap(), Enrolled::Now);
    assert_eq!(lms.enroll(&user.id, &course("101")).await.unwrap(), Enrolled::Already);
    assert_eq!(lms.enroll(&user.id, &course("102")).await.unwrap(), Enrolled::Now);
}

// --- B (issue 15): a login taken by someone else -----------------------------------------

#[tokio::test]
async fn a_login_taken_by_another_user_signs_up_with_the_next_login() {
    let sandbox = Sandbox::start(&[]);
    // Ana changed her email inside TalentLMS; now she buys again with the old one.
    let old = sandbox.add_user(json!({ "email": "ana.new@example.com", "login": LOGINS[0] })).await;
    let lms = sandbox.lms();
    let user = lms.ensure_user(&ana()).await.unwrap();
    assert!(user.created && user.learner && user.id.0 != old, "{user:?}");
    let users = sandbox.users().await;
    let made = users.iter().find(|u| u["email"] == EMAIL).unwrap();
    assert_eq!(made["login"], LOGINS[1]);
    let kept = users.iter().find(|u| u["id"] == old.as_str()).unwrap();
    assert_eq!((kept["email"].as_str(), kept["login"].as_str()), (Some("ana.new@example.com"), Some(LOGINS[0])));
    // And from now on she is found by email.
    let again = lms.ensure_user(&ana()).await.unwrap();
    assert_eq!(again, EnsuredUser { id: user.id, created: false, learner: true });
}

#[tokio::test]
async fn a_login_held_by_a_user_with_the_students_email_is_that_user() {
    let sandbox = Sandbox::start(&[]);
    let id = sandbox.add_user(json!({ "email": EMAIL, "login": LOGINS[0] })).await;
    // Created by a concurrent delivery right after this one looked the email up.
    sandbox.faults(json!({ "hide_next_lookups": 1 })).await;
    let user = sandbox.lms().ensure_user(&ana()).await.unwrap();
    assert_eq!(user, EnsuredUser { id: LmsUserId(id), created: false, learner: true });
    assert_eq!(sandbox.users().await.len(), 1);
}

#[tokio::test]
async fn when_every_login_is_taken_the_failure_is_permanent_after_a_bounded_number_of_tries() {
    let sandbox = Sandbox::start(&[]);
    for (i, login) in LOGINS.iter().enumerate() {
        sandbox.add_user(json!({ "email": format!("other{i}@example.com"), "login": login })).await;
    }
    let error = sandbox.lms().ensure_user(&ana()).await.unwrap_err();
    assert!(matches!(&error, LmsError::Permanent(reason) if reason.contains("login")), "{error:?}");
    assert_clean(&error, &[]);
    assert_eq!(sandbox.count("usersignup").await, LOGINS.len() as u64);
}

// --- C (issue 16): back-off on 429 whatever form the reset takes --------------------------

/// Calls `ensure_user` over and over for `window`; every error it got.
async fn hammer(lms: &TalentLms, window: Duration) -> Vec<LmsError> {
    let start = Instant::now();
    let mut errors = Vec::new();
    while start.elapsed() < window {
        errors.push(lms.ensure_user(&ana()).await.unwrap_err());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    errors
}

fn retry_after(error: &LmsError) -> Duration {
    match error {
        LmsError::Transient { retry_after: Some(wait), .. } => *wait,
        other => panic!("not a transient error with a retry time: {other:?}"),
    }
}

#[tokio::test]
async fn a_429_whose_reset_is_seconds_to_go_backs_off_that_long() {
    let sandbox = Sandbox::start(&[]);
    sandbox
        .faults(json!({ "rate_limit_next": 1000, "retry_after_secs": 30, "reset_form": "seconds", "omit_retry_after": true }))
        .await;
    let lms = sandbox.lms();
    let errors = hammer(&lms, Duration::from_millis(1500)).await;
    assert!(errors.len() > 10);
    assert!(sandbox.calls().await <= 2, "{} calls during the back-off", sandbox.calls().await);
    assert!(retry_after(&errors[0]) >= Duration::from_secs(29), "{:?}", errors[0]);
    assert!(errors.iter().all(|e| retry_after(e) >= Duration::from_secs(25)));
    assert_clean(&errors[0], &[]);
}

#[tokio::test]
async fn a_429_whose_reset_is_in_the_past_backs_off_the_floor_then_calls_again() {
    let sandbox = Sandbox::start(&[]);
    sandbox.faults(json!({ "rate_limit_next": 1000, "reset_form": "past", "omit_retry_after": true })).await;
    let lms = sandbox.lms();
    let errors = hammer(&lms, Duration::from_millis(800)).await;
    assert!(errors.len() > 10);
    assert!(sandbox.calls().await <= 2, "{} calls during the back-off", sandbox.calls().await);
    assert!(retry_after(&errors[0]) >= Duration::from_millis(990), "{:?}", errors[0]);
    // The floor is a pause, not a lockout.
    sandbox.faults(json!({})).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(lms.ensure_user(&ana()).await.unwrap().created);
}

#[tokio::test]
async fn a_429_with_retry_after_is_honoured_even_when_the_reset_is_past() {
    let sandbox = Sandbox::start(&[]);
    sandbox.faults(json!({ "rate_limit_next": 1000, "retry_after_secs": 8, "reset_form": "past" })).await;
    let lms = sandbox.lms();
    let errors = hammer(&lms, Duration::from_millis(600)).await;
    assert!(retry_after(&errors[0]) >= Duration::from_secs(8), "{:?}", errors[0]);
    assert!(sandbox.calls().await <= 2);
}

#[tokio::test]
async fn a_429_with_a_future_epoch_reset_backs_off_until_then() {
    let sandbox = Sandbox::start(&[]);
    sandbox.faults(json!({ "rate_limit_next": 1000, "retry_after_secs": 20, "omit_retry_after": true })).await;
    let errors = hammer(&sandbox.lms(), Duration::from_millis(600)).await;
    assert!(retry_after(&errors[0]) >= Duration::from_secs(18), "{:?}", errors[0]);
    assert!(sandbox.calls().await <= 2);
}

// --- D (issue 17): an email kept by a deleted user ---------------------------------------

#[tokio::test]
async fn an_email_kept_by_a_deleted_user_fails_for_good_with_a_clear_reason() {
    let sandbox = Sandbox::start(&[]);
    sandbox.add_user(json!({ "email": EMAIL, "login": "ana-old", "deleted": true })).await;
    let error = sandbox.lms().ensure_user(&ana()).await.unwrap_err();
    let LmsError::Permanent(reason) = &error else { panic!("not permanent: {error:?}") };
    assert!(reason.contains("deleted in TalentLMS") && reason.contains("email"), "{reason}");
    assert_clean(&error, &[]);
    assert_eq!(sandbox.count("usersignup").await, 1);
}

// --- E (issue 10): no key, email or URL in error texts or logs ----------------------------

#[tokio::test]
async fn a_timeout_names_no_url_email_or_key() {
    let sandbox = Sandbox::start(&[]);
    sandbox.faults(json!({ "delay_next": 1, "delay_ms": 2000 })).await;
    let lms = sandbox.lms().with_timeout(Duration::from_millis(300));
    let error = lms.ensure_user(&ana()).await.unwrap_err();
    assert!(matches!(&error, LmsError::Transient { message, .. } if message.contains("timed out")), "{error:?}");
    assert_clean(&error, &[]);
}

#[tokio::test]
async fn a_refused_connection_names_no_url_email_or_key() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let lms = TalentLms::new(&format!("http://127.0.0.1:{port}"), KEY.into(), 30).unwrap();
    let error = lms.ensure_user(&ana()).await.unwrap_err();
    assert!(matches!(&error, LmsError::Transient { message, .. } if message.contains("connect")), "{error:?}");
    assert_clean(&error, &[&port.to_string()]);
    let error = lms.enroll(&LmsUserId("7".into()), &course("101")).await.unwrap_err();
    assert_clean(&error, &[&port.to_string()]);
}

#[tokio::test]
async fn a_500_names_no_url_email_or_key_even_when_talentlms_echoes_them() {
    let sandbox = Sandbox::start(&[]);
    let echo = format!("Internal error for {EMAIL} at {}/api/v1/users with key {KEY}", sandbox.url);
    sandbox.faults(json!({ "fail_next": 1, "fail_message": echo })).await;
    let error = sandbox.lms().ensure_user(&ana()).await.unwrap_err();
    assert!(matches!(&error, LmsError::Transient { message, .. } if message.contains("HTTP 500")), "{error:?}");
    assert_clean(&error, &[]);
}

#[tokio::test]
async fn a_rejected_key_names_neither_key_nor_email() {
    let sandbox = Sandbox::start(&[]);
    let wrong = "WRONG-KEY-aa77bb88-do-not-leak";
    let lms = TalentLms::new(&sandbox.url, wrong.into(), 30).unwrap();
    let error = lms.ensure_user(&ana()).await.unwrap_err();
    assert!(matches!(&error, LmsError::Transient { message, .. } if message.contains("HTTP 401")), "{error:?}");
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{wrong}:"));
    assert_clean(&error, &[wrong, &basic]);
}

#[tokio::test]
async fn an_answer_that_is_not_json_is_transient_and_names_nothing_private() {
    let sandbox = Sandbox::start(&[]);
    sandbox.faults(json!({ "bad_json_next": 1 })).await;
    let error = sandbox.lms().ensure_user(&ana()).await.unwrap_err();
    assert!(matches!(&error, LmsError::Transient { message, .. } if message.contains("not JSON")), "{error:?}");
    assert_clean(&error, &["support", "html"]);
    // The next call goes through.
    assert!(sandbox.lms().ensure_user(&ana()).await.unwrap().created);
}

/// A log sink for one test (the subscriber is set for this thread only).
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "current_thread")]
async fn the_adapters_log_lines_carry_the_student_key_but_no_email_url_or_key() {
    let captured = Captured::default();
    let sink = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        // The adapter's own lines (libraries log hosts at debug level, which the service filters out).
        .with_env_filter("lms_bridge_backend=trace")
        .with_writer(move || sink.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let sandbox = Sandbox::start(&[]);
    sandbox.add_user(json!({ "email": "ana.new@example.com", "login": LOGINS[0] })).await;
    let lms = sandbox.lms();
    lms.ensure_user(&ana()).await.unwrap();
    sandbox.faults(json!({ "rate_limit_next": 1, "retry_after_secs": 1 })).await;
    lms.enroll(&LmsUserId("1".into()), &course("101")).await.unwrap_err();

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains(STUDENT_KEY) && logs.contains("rate limit"), "{logs}");
    for secret in [KEY, EMAIL, "ana.new", "ana.secret", "@", "http:", "127.0.0.1"] {
        assert!(!logs.contains(secret), "{secret:?} in {logs}");
    }
}

// --- F (issue 14): settings --------------------------------------------------------------

#[tokio::test]
async fn a_key_pasted_with_a_newline_works() {
    let sandbox = Sandbox::start(&[]);
    let lms = TalentLms::new(&format!(" {}\n", sandbox.url), format!("{KEY}\n"), 30).unwrap();
    assert!(lms.ensure_user(&ana()).await.unwrap().created);
}

#[test]
fn plain_http_to_a_remote_host_is_a_clear_start_up_error() {
    let error = TalentLms::new("http://acme.talentlms.com", KEY.into(), 30).unwrap_err();
    let text = error.to_string();
    assert!(text.contains("TALENTLMS_URL") && text.contains("https://") && text.contains("loopback"), "{text}");
    assert!(!text.contains(KEY));
}
