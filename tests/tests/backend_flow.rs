//! The backend as a process: Pub/Sub push envelopes in, Firestore emulator state, LMS
//! sandbox effects out. Each test has its own project (isolated state in the one emulator),
//! its own sandbox and its own backend.

#![allow(clippy::unwrap_used, reason = "test code: a panic is the failure report")]

use lms_bridge_shared::source::hotmart;
use lms_bridge_shared::Timestamp;
use lms_bridge_tests::backend::Issuer;
use lms_bridge_tests::fixture;
use lms_bridge_tests::mappings::{self, Mappings};
use lms_bridge_tests::stack::{self, BackendStack};
use lms_bridge_tests::webhooks::{now_ms, Webhook, DAY_MS};
use serde_json::{json, Value};
use std::time::Duration;

const ANA: &str = "ana.souza@example.com";

/// A backend with its sandbox and the backend tests' catalogue ([`mappings::backend`]).
fn world(name: &str) -> BackendStack {
    world_with(name, &[], &[])
}

fn world_with(name: &str, sandbox_args: &[&str], env: &[(&str, &str)]) -> BackendStack {
    BackendStack::start_with(name, &mappings::backend(), sandbox_args, env)
}

/// Ana's purchase of `product` under `transaction`, approved now (webhook `id`), as the edge
/// publishes it.
fn approved(id: &str, product: u64, transaction: &str) -> Value {
    Webhook::purchase_approved().now().id(id).product(product).transaction(transaction).event()
}

/// The refund of Ana's purchase of `product` under `transaction` (webhook `id`).
fn refunded(id: &str, product: u64, transaction: &str) -> Value {
    Webhook::purchase_refunded().now().id(id).product(product).transaction(transaction).event()
}

#[test]
fn purchase_creates_the_user_and_enrolls_once_even_when_bought_twice() {
    let w = world("purchase");
    let body = w.push_ok(&approved("p1", 5000, "HP1"));
    assert_eq!(body["status"], "applied");
    assert_eq!(w.sandbox.courses_of(ANA), ["101", "102"]);
    assert_eq!(w.sandbox.count("usersignup"), 1);
    // The same course bought again (another transaction): no second enrollment call.
    let body = w.push_ok(&approved("p2", 6000, "HP2"));
    assert_eq!(body["status"], "applied");
    assert_eq!(w.sandbox.count("addusertocourse"), 2, "one call per course, none for the repeat");
    assert_eq!(w.sandbox.count("usersignup"), 1);
    // The same delivery again: a duplicate, no LMS call.
    let (status, body) = w.push(&approved("p1", 5000, "HP1"));
    assert_eq!((status, body["status"].as_str()), (200, Some("duplicate")));
    assert_eq!(w.sandbox.count("addusertocourse"), 2);
}

#[test]
fn refund_unenrolls_and_a_refund_before_its_approval_never_enrolls() {
    let w = world("refund");
    w.push_ok(&approved("a1", 6000, "HP10"));
    assert_eq!(w.sandbox.courses_of(ANA), ["102"]);
    w.push_ok(&refunded("r1", 6000, "HP10"));
    assert!(w.sandbox.courses_of(ANA).is_empty());

    // Another transaction whose refund arrives first.
    w.push_ok(&refunded("r2", 7000, "HP11"));
    let late_approval =
        Webhook::purchase_approved().now().id("a2").at(now_ms() - 60_000).product(7000).transaction("HP11").event();
    // Recorded in the grant's history, but a revoked transaction gives no access.
    w.push_ok(&late_approval);
    assert!(!w.sandbox.courses_of(ANA).contains(&"103".to_owned()));
    assert_eq!(w.sandbox.count("addusertocourse"), 1, "course 103 was never enrolled");
}

#[test]
fn two_products_granting_one_course_keep_it_when_one_is_refunded() {
    let w = world("two-products");
    w.push_ok(&approved("a1", 5000, "HP20"));
    w.push_ok(&approved("a2", 6000, "HP21"));
    w.push_ok(&refunded("r1", 6000, "HP21"));
    assert_eq!(w.sandbox.courses_of(ANA), ["101", "102"], "102 still granted by product 5000");
    w.push_ok(&refunded("r2", 5000, "HP20"));
    assert!(w.sandbox.courses_of(ANA).is_empty());
}

/// A charge of Ana's subscription (product 4774438), paid through `paid_through_ms`.
fn subscription_charge(id: &str, paid_through_ms: i64) -> Value {
    Webhook::subscription_charge().now().id(id).transaction(&format!("HP-{id}")).next_charge(paid_through_ms).event()
}

#[test]
fn renewals_extend_and_a_cancellation_ends_at_the_paid_through_date_via_the_sweep() {
    let firestore = stack::firestore();
    let w = world("subscription");
    let t0 = now_ms();
    w.push_ok(&subscription_charge("c1", t0 + 2 * DAY_MS));
    assert_eq!(w.sandbox.courses_of(ANA), ["101"]);
    // The renewal extends access well past the first period.
    w.push_ok(&subscription_charge("c2", t0 + 60 * DAY_MS));
    let cancel =
        Webhook::subscription_cancellation().now().id("cancel").cancelled_at(t0).next_charge(t0 + 4 * DAY_MS).event();
    w.push_ok(&cancel);
    assert_eq!(w.backend.sweep_at(t0 + 3 * DAY_MS)["ended"], 0, "renewed and paid: the first period's end is past");
    assert_eq!(w.backend.sweep(&w.token).0, 200);
    assert_eq!(w.sandbox.courses_of(ANA), ["101"], "renewed and paid: still enrolled");
    // Times are native Firestore timestamps (range queries and TTL depend on it).
    let key = "7fd726011aa08d90d14a923ea0e5e3edf63bfe14b51ee6f6429483118d197c9b";
    let doc = firestore.document(&w.backend.project, &format!("enrollments/{key}__101"));
    assert!(doc["fields"]["access_until"]["timestampValue"].is_string(), "{doc}");
    assert_eq!(w.backend.sweep_at(t0 + 5 * DAY_MS)["ended"], 1);
    assert!(w.sandbox.courses_of(ANA).is_empty(), "cancelled: access ends at the paid-through date");
}

#[test]
fn a_fixed_term_product_ends_on_time() {
    let w = world("fixed-term");
    let t0 = now_ms();
    let approval = Webhook::purchase_approved()
        .now()
        .id("f1")
        .created_and_approved_at(t0)
        .product(7000)
        .transaction("HP30")
        .event();
    w.push_ok(&approval);
    assert_eq!(w.sandbox.courses_of(ANA), ["103"]);
    assert_eq!(w.backend.sweep(&w.token).1["ended"], 0);
    // 365 days of access: still there a second before the end, gone a second after.
    assert_eq!(w.backend.sweep_at(t0 + 365 * DAY_MS - 1_000)["ended"], 0);
    assert_eq!(w.sandbox.courses_of(ANA), ["103"]);
    assert_eq!(w.backend.sweep_at(t0 + 365 * DAY_MS + 1_000)["ended"], 1);
    assert!(w.sandbox.courses_of(ANA).is_empty());
}

#[test]
fn a_brief_lms_failure_is_retried_within_the_delivery_and_a_longer_one_answers_503_then_applies_once() {
    let w = world("lms-500");
    // One failed call: tried again within the same delivery.
    w.sandbox.faults(json!({ "fail_next": 1 }));
    let (status, body) = w.push(&approved("a0", 6000, "HP39"));
    assert_eq!((status, body["status"].as_str()), (200, Some("applied")), "{body}");
    assert_eq!(w.sandbox.courses_of(ANA), ["102"]);

    // Three in a row (the call and both retries): the delivery fails, Pub/Sub redelivers.
    let bea = "bea@example.com";
    w.sandbox.faults(json!({ "fail_next": 3 }));
    let approval = Webhook::purchase_approved().now().id("a1").product(6000).transaction("HP40").buyer(bea).event();
    let (status, body) = w.push(&approval);
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "unavailable");
    assert!(w.sandbox.courses_of(bea).is_empty());
    // The redelivery: the event is already applied, only the pending actions run.
    let (status, body) = w.push(&approval);
    assert_eq!((status, body["status"].as_str()), (200, Some("duplicate")), "{body}");
    assert_eq!(w.sandbox.courses_of(bea), ["102"]);
    assert_eq!(w.sandbox.count_ok("addusertocourse"), 2, "each enrolled once");
}

#[test]
fn rate_limits_are_honoured_without_hammering_the_lms() {
    let w = world("rate-limit");
    // A short wait is waited out within the delivery.
    w.sandbox.faults(json!({ "rate_limit_next": 1, "retry_after_secs": 1 }));
    assert_eq!(w.push(&approved("a0", 6000, "HP49")).0, 200);
    assert_eq!(w.sandbox.courses_of(ANA), ["102"]);

    // A long one fails the delivery at once, and no call is made inside the window.
    let bea = "bea@example.com";
    w.sandbox.faults(json!({ "rate_limit_next": 1, "retry_after_secs": 7 }));
    let approval = Webhook::purchase_approved().now().id("a1").product(6000).transaction("HP50").buyer(bea).event();
    let started = std::time::Instant::now();
    assert_eq!(w.push(&approval).0, 503);
    let calls = w.sandbox.state()["calls"].as_array().unwrap().len();
    assert_eq!(w.push(&approval).0, 503);
    assert_eq!(w.sandbox.state()["calls"].as_array().unwrap().len(), calls, "no call while told to wait");
    std::thread::sleep(Duration::from_millis(7_100).saturating_sub(started.elapsed()));
    assert_eq!(w.push(&approval).0, 200);
    assert_eq!(w.sandbox.courses_of(bea), ["102"]);
}

#[test]
fn the_same_push_delivered_twice_concurrently_has_one_effect() {
    let w = world("concurrent");
    let approval = approved("a1", 5000, "HP60");
    let answers: Vec<(u16, Value)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..2).map(|_| s.spawn(|| w.push(&approval))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    // One applies it; the other sees a duplicate — done (200), or still running elsewhere
    // (503: Pub/Sub will redeliver, so nothing is acked while it could still be lost).
    let applied = answers.iter().filter(|(s, b)| *s == 200 && b["status"] == "applied").count();
    let other_ok = answers.iter().any(|(s, b)| (*s == 200 && b["status"] == "duplicate") || *s == 503);
    assert!(applied == 1 && other_ok, "{answers:?}");
    let (status, body) = w.push(&approval);
    assert_eq!((status, body["status"].as_str()), (200, Some("duplicate")), "a later redelivery is acked");
    assert_eq!(w.sandbox.count("usersignup"), 1);
    assert_eq!(w.sandbox.count("addusertocourse"), 2, "two courses, each enrolled once");
}

#[test]
fn bad_tokens_are_refused_with_401_and_no_effect() {
    let issuer = stack::issuer();
    let w = world("auth");
    let approval = approved("a1", 6000, "HP70");
    let header = json!({ "alg": "RS256", "kid": lms_bridge_tests::backend::KID, "typ": "JWT" });
    let claims = |edit: &dyn Fn(&mut Value)| {
        let mut c = Issuer::claims(&w.backend.url);
        edit(&mut c);
        c
    };
    let b64 = |v: &Value| {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let cases: Vec<(&str, Option<String>)> = vec![
        ("missing", None),
        ("garbage", Some("not-a-jwt".into())),
        (
            "expired",
            Some(issuer.sign(
                header.clone(),
                claims(&|c| {
                    c["exp"] = (now_ms() / 1000 - 3600).into();
                    c["iat"] = (now_ms() / 1000 - 7200).into();
                }),
            )),
        ),
        ("wrong audience", Some(issuer.sign(header.clone(), claims(&|c| c["aud"] = "https://elsewhere".into())))),
        ("wrong issuer", Some(issuer.sign(header.clone(), claims(&|c| c["iss"] = "https://evil.example".into())))),
        ("wrong account", Some(issuer.sign(header.clone(), claims(&|c| c["email"] = "x@evil.example".into())))),
        ("unverified email", Some(issuer.sign(header.clone(), claims(&|c| c["email_verified"] = false.into())))),
        ("alg none", Some(format!("{}.{}.", b64(&json!({ "alg": "none", "typ": "JWT" })), b64(&claims(&|_| {}))))),
        (
            "bad signature",
            Some({
                let token = issuer.token(&w.backend.url);
                let (input, _) = token.rsplit_once('.').unwrap();
                format!("{input}.AAAA")
            }),
        ),
    ];
    for (what, token) in cases {
        let (status, body) = w.backend.push_with(&approval, "m1", token.as_deref());
        assert_eq!(status, 401, "{what}: {body}");
        assert_eq!(body["error"]["code"], "unauthorized", "{what}");
    }
    assert_eq!(w.sandbox.count("addusertocourse"), 0);
    assert_eq!(w.sandbox.count("usersignup"), 0);
    let sweep = reqwest::blocking::Client::new().post(format!("{}/tasks/sweep", w.backend.url)).send().unwrap();
    assert_eq!(sweep.status().as_u16(), 401);
}

#[test]
fn poison_unmapped_and_unparsed_messages_are_acked_and_recorded() {
    let w = world("poison");
    // Not an event at all: stored, and refused so that Pub/Sub dead-letters it
    // (backend_surface's undecodable test checks the record).
    let (status, body) = w.backend.push_with(&json!({ "schema": "other" }), "m-poison", Some(&w.token));
    assert_eq!((status, body["error"]["code"].as_str()), (422, Some("unprocessable")), "{body}");
    // Product 0: Hotmart's test button.
    let test_button = approved("t0", 0, "HP0");
    assert_eq!(w.push_ok(&test_button)["status"], "unmapped");
    // Unparsed: quarantined with its raw body, then replayed once the body normalizes.
    let body = String::from_utf8(fixture("hotmart/purchase_approved.json")).unwrap().replace("4774438", "6000");
    // The hottok is scrubbed from quarantined bodies by value: a realistic one, not a letter.
    let source = hotmart::Hotmart::new([String::from("hottok-of-the-poison-test")]);
    use lms_bridge_shared::source::Source as _;
    let reason = lms_bridge_shared::source::NormalizeError::MissingField("data.buyer.email");
    let unparsed = source.quarantine(body.as_bytes(), &reason, Timestamp::from_unix_millis(now_ms()).unwrap());
    let unparsed = serde_json::to_value(&unparsed).unwrap();
    assert_eq!(w.push_ok(&unparsed)["status"], "quarantined");
    assert!(w.sandbox.courses_of(ANA).is_empty());
    let output = w.backend.cli(&["replay", "--quarantined"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(report.contains("\"result\":\"applied\""), "{report}");
    assert_eq!(w.sandbox.courses_of(ANA), ["102"]);
}

#[test]
fn a_purchase_made_before_its_product_was_mapped_is_applied_when_the_mapping_is_imported() {
    let firestore = stack::firestore();
    let w = world("unmapped");
    let early = approved("early", 8000, "HP90");
    assert_eq!(w.push_ok(&early)["status"], "unmapped");
    // Kept whole, without an expiry: nothing is lost while the operator catches up.
    let doc = firestore.document(&w.backend.project, "events/hotmart:early");
    assert_eq!(doc["fields"]["status"]["stringValue"], "unmapped", "{doc}");
    assert!(doc["fields"]["event_json"]["stringValue"].is_string(), "{doc}");
    assert!(doc["fields"]["expire_at"].get("timestampValue").is_none(), "{doc}");
    // A redelivery before the import changes nothing and loses nothing.
    assert_eq!(w.push_ok(&early)["status"], "duplicate");
    assert!(w.sandbox.courses_of(ANA).is_empty());

    w.backend.import_mappings(&Mappings::new().lifetime(8000, &["104"]).toml());
    assert_eq!(w.sandbox.courses_of(ANA), ["104"], "applied by the import");
    let doc = firestore.document(&w.backend.project, "events/hotmart:early");
    assert_eq!(doc["fields"]["status"]["stringValue"], "applied", "{doc}");
    // Applied once: a later redelivery is a duplicate.
    assert_eq!(w.push_ok(&early)["status"], "duplicate");
    assert_eq!(w.sandbox.count("addusertocourse"), 1);
}

#[test]
fn student_show_and_mappings_list_tell_the_operator_what_is_known() {
    let w = world("cli");
    w.push_ok(&approved("a1", 6000, "HP80"));
    let output = w.backend.cli(&["student", "show", "  Ana.Souza@Example.com "]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let shown: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(shown["courses"][0]["course"], "102");
    assert_eq!(shown["courses"][0]["access"], "active");
    assert!(shown["courses"][0]["grants"]["hotmart__HP80"]["charges"]["HP80"].is_object(), "{shown}");
    assert_eq!(shown["lms_user_ids"]["talentlms"], "1");

    let unknown = w.backend.cli(&["student", "show", "nobody@example.com"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert_eq!(String::from_utf8_lossy(&unknown.stderr).lines().count(), 1);

    let list = w.backend.cli(&["mappings", "list"]);
    assert_eq!(String::from_utf8_lossy(&list.stdout).lines().count(), 4);
    let bad = std::env::temp_dir().join("bad-mappings.toml");
    std::fs::write(&bad, "[[product]]\nsource = 1").unwrap();
    let refused = w.backend.cli(&["mappings", "import", bad.to_str().unwrap()]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).starts_with("lms-bridge: invalid mappings file"));
}

#[test]
fn idle_users_are_deactivated_when_configured_and_reactivated_on_purchase() {
    let w = world_with("idle", &["--signup-inactive"], &[("DEACTIVATE_IDLE_USERS", "true")]);
    w.push_ok(&approved("a1", 6000, "HP90"));
    assert_eq!(w.sandbox.user_status(ANA).as_deref(), Some("active"), "activated after an inactive signup");
    w.push_ok(&refunded("r1", 6000, "HP90"));
    assert_eq!(w.sandbox.user_status(ANA).as_deref(), Some("inactive"));
    w.push_ok(&approved("a2", 6000, "HP91"));
    assert_eq!(w.sandbox.user_status(ANA).as_deref(), Some("active"));
    assert_eq!(w.sandbox.courses_of(ANA), ["102"]);
}

#[test]
fn the_bridge_never_takes_away_what_it_did_not_give() {
    // Someone buys with other people's emails and asks for a refund.
    let w = world_with("not-ours", &[], &[("DEACTIVATE_IDLE_USERS", "true")]);
    let learner = "held.before@example.com";
    let instructor = "teacher@example.com";
    w.sandbox.add_user(json!({ "email": learner, "login": "heldbefore", "courses": ["102"] }));
    w.sandbox.add_user(json!({ "email": instructor, "login": "teacher", "user_type": "Instructor" }));
    let as_buyer = |email: &'static str, sample: &str, id: &str, transaction: &str| {
        Webhook::sample(sample).now().id(id).product(6000).transaction(transaction).buyer(email).event()
    };
    for (email, transaction) in [(learner, "HP70"), (instructor, "HP71")] {
        w.push_ok(&as_buyer(email, "purchase_approved", &format!("a-{transaction}"), transaction));
        assert_eq!(w.sandbox.courses_of(email), ["102"], "{email}");
        w.push_ok(&as_buyer(email, "purchase_refunded", &format!("r-{transaction}"), transaction));
    }
    // The learner held course 102 before the bridge: it stays, and so does the account.
    assert_eq!(w.sandbox.courses_of(learner), ["102"]);
    assert_eq!(w.sandbox.user_status(learner).as_deref(), Some("active"));
    // The instructor's course came from the bridge and goes; the account is not the bridge's.
    assert!(w.sandbox.courses_of(instructor).is_empty());
    assert_eq!(w.sandbox.user_status(instructor).as_deref(), Some("active"));
    assert_eq!(w.sandbox.count("usersignup"), 0);
    assert_eq!(w.sandbox.count("usersetstatus"), 0, "no account touched");
    // Firestore says why.
    let key = lms_bridge_shared::Email::parse(learner).unwrap().student_key().to_string();
    let doc = stack::firestore().document(&w.backend.project, &format!("enrollments/{key}__102"));
    assert_eq!(doc["fields"]["preexisting"]["booleanValue"], true, "{doc}");
}

#[test]
fn with_a_pepper_students_are_kept_under_the_hmac_of_their_email() {
    let pepper = [("STUDENT_KEY_PEPPER", "pepper-of-the-test")];
    let w = world_with("pepper", &[], &pepper);
    // The event comes keyed by plain sha256 (an edge without the pepper, or an old event).
    w.push_ok(&approved("pp1", 6000, "HP80"));
    assert_eq!(w.sandbox.courses_of(ANA), ["102"]);
    // HMAC-SHA256("pepper-of-the-test", ANA), computed with Python's hmac.
    let key = "8cd7792f0927cf0461ad6c293f4206100ab4ced857d7a3b30acb4c3d0c88c3cb";
    let doc = stack::firestore().document(&w.backend.project, &format!("enrollments/{key}__102"));
    assert_eq!(doc["fields"]["access"]["stringValue"], "active", "{doc}");
    let plain = lms_bridge_shared::Email::parse(ANA).unwrap().student_key().to_string();
    assert!(!w.backend.log().contains(&plain), "only the peppered key is logged");

    let printed = w.backend.cli_with(&["student", "key", " Ana.Souza@Example.com"], &pepper);
    assert!(printed.status.success(), "{}", String::from_utf8_lossy(&printed.stderr));
    assert_eq!(String::from_utf8_lossy(&printed.stdout).trim(), key);
    let shown = w.backend.cli_with(&["student", "show", ANA], &pepper);
    assert!(shown.status.success(), "{}", String::from_utf8_lossy(&shown.stderr));
    assert!(String::from_utf8_lossy(&shown.stdout).contains(key));
    let bad = w.backend.cli_with(&["student", "key", "not-an-email"], &pepper);
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn a_sweep_at_a_given_time_ends_the_access_due_by_then_and_nothing_else() {
    let w = world("sweep-at");
    w.push_ok(&approved("f1", 7000, "HP85")); // 365 days of course 103
    w.push_ok(&approved("l1", 6000, "HP86")); // lifetime course 102
    assert_eq!(w.sandbox.courses_of(ANA), ["102", "103"]);
    let at = |days: i64| {
        let t = Timestamp::from_unix_millis(now_ms() + days * DAY_MS).unwrap();
        t.to_string()
    };
    let early = w.backend.cli(&["sweep", "--at", &at(300)]);
    assert!(early.status.success(), "{}", String::from_utf8_lossy(&early.stderr));
    assert!(
        String::from_utf8_lossy(&early.stdout).contains("\"ended\":0"),
        "{}",
        String::from_utf8_lossy(&early.stdout)
    );
    assert_eq!(w.sandbox.courses_of(ANA), ["102", "103"]);
    let due = w.backend.cli(&["sweep", "--at", &at(366)]);
    assert!(due.status.success(), "{}", String::from_utf8_lossy(&due.stderr));
    assert!(String::from_utf8_lossy(&due.stdout).contains("\"ended\":1"), "{}", String::from_utf8_lossy(&due.stdout));
    assert_eq!(w.sandbox.courses_of(ANA), ["102"]);
    let bad = w.backend.cli(&["sweep", "--at", "next tuesday"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).starts_with("lms-bridge: --at is not an RFC 3339 time"));
}

/// Events exactly as the previous release's edge published them (schema v1), as Pub/Sub may
/// still hold during a deploy.
fn v1_event(id: &str, change: Value, source_event: &str, product: &str, transaction: &str) -> Value {
    let now = Timestamp::from_unix_millis(now_ms()).unwrap().to_string();
    json!({
        "schema": "lms-bridge.event.v1",
        "id": format!("hotmart:{id}"),
        "source": "hotmart",
        "source_event": source_event,
        "change": change,
        "occurred_at": now,
        "received_at": now,
        "student": {
            "key": lms_bridge_shared::Email::parse(ANA).unwrap().student_key(),
            "email": ANA, "name": "Ana Souza", "first_name": "Ana", "last_name": "Souza"
        },
        "product": { "id": product, "name": "Curso de Exemplo", "offer": "test", "plan": null },
        "grant_id": transaction,
        "subscription": null,
        "amount": { "value": "1500", "currency": "BRL" }
    })
}

#[test]
fn events_of_the_previous_schema_in_flight_during_a_deploy_are_still_applied() {
    let w = world("schema-v1");
    let approval =
        v1_event("v1a", json!({ "type": "grant", "paid_through": null }), "PURCHASE_APPROVED", "6000", "HP40");
    assert_eq!(w.push_ok(&approval)["status"], "applied");
    assert_eq!(w.sandbox.courses_of(ANA), ["102"]);
    // A v2 event about the same purchase acts on the same grant.
    let refund = refunded("v2r", 6000, "HP40");
    assert_eq!(refund["schema"], "lms-bridge.event.v2");
    assert_eq!(w.push_ok(&refund)["status"], "applied");
    assert!(w.sandbox.courses_of(ANA).is_empty());
    // A v1 refund of a purchase the v2 code approved.
    w.push_ok(&approved("v2a", 7000, "HP41"));
    assert_eq!(w.sandbox.courses_of(ANA), ["103"]);
    let v1_refund =
        v1_event("v1r", json!({ "type": "revoke", "reason": "refunded" }), "PURCHASE_REFUNDED", "7000", "HP41");
    assert_eq!(w.push_ok(&v1_refund)["status"], "applied");
    assert!(w.sandbox.courses_of(ANA).is_empty());
}
