//! Stripe events that name only a charge or lack their product, through the real backend
//! (`lms-bridge serve`) → Firestore emulator → LMS sandbox, with the Stripe API fake (a real
//! HTTP server) answering what the events no longer say. Events are pushed as Pub/Sub push
//! envelopes, in the shape the edge publishes for Stripe.

#![allow(clippy::unwrap_used, reason = "test code: a panic is the failure report")]

use lms_bridge_backend::engine::{LookupError, SourceLookup};
use lms_bridge_backend::stripe_api::{StripeApi, StripeApiConfig};
use lms_bridge_shared::{ChargeId, Email, Timestamp};
use lms_bridge_tests::backend::{Backend, Sandbox};
use lms_bridge_tests::stack;
use lms_bridge_tests::stripe_fake::{StripeFake, API_KEY};
use lms_bridge_tests::webhooks::{now_ms, DAY_MS};
use serde_json::{json, Value};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

/// A subscription product (course 201, no grace) and a one-off product for life (course 301).
const MAPPINGS: &str = r#"
[[product]]
source = "stripe"
product_id = "prod_SUB"
courses = ["201"]
policy = { type = "subscription", grace_days = 0 }

[[product]]
source = "stripe"
product_id = "prod_ONE"
courses = ["301"]
policy = { type = "lifetime" }
"#;

struct Chain {
    sandbox: Sandbox,
    backend: Backend,
    fake: StripeFake,
    token: String,
}

/// One chain for the binary; tests take turns (they count the fake's calls).
fn chain() -> (MutexGuard<'static, ()>, &'static Chain) {
    static TURN: Mutex<()> = Mutex::new(());
    static CHAIN: OnceLock<Chain> = OnceLock::new();
    let turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let chain = CHAIN.get_or_init(|| {
        let (firestore, issuer) = (stack::firestore(), stack::issuer());
        let fake = StripeFake::start();
        let sandbox = Sandbox::start(&["--courses", "201,301"]);
        let env = fake.env();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let backend = Backend::start("t-stripe-resolve", firestore, &sandbox, issuer, &env);
        backend.import_mappings(MAPPINGS);
        let token = issuer.token(&backend.url);
        Chain { sandbox, backend, fake, token }
    });
    (turn, chain)
}

impl Chain {
    fn push(&self, event: &Value) -> (u16, Value) {
        self.backend.push_with(event, &format!("m-{}", event["id"]), Some(&self.token))
    }

    fn push_ok(&self, event: &Value, status: &str) -> Value {
        let (code, body) = self.push(event);
        assert_eq!((code, body["status"].as_str()), (200, Some(status)), "{body}\n{}", self.backend.log());
        body
    }
}

fn time(ms: i64) -> String {
    Timestamp::from_unix_millis(ms).unwrap().to_string()
}

/// A normalized Stripe event received at `received_ms`: the fields it names are in `fields`.
fn stripe_event(id: &str, source_event: &str, change: Value, received_ms: i64, fields: Value) -> Value {
    let mut event = json!({
        "schema": "lms-bridge.event.v2",
        "id": format!("stripe:{id}"),
        "source": "stripe",
        "source_event": source_event,
        "change": change,
        "occurred_at": time(received_ms),
        "received_at": time(received_ms),
        "effective_at": time(received_ms),
        "student": null, "product": null, "grant_id": null, "charge": null,
        "subscription": null, "amount": null,
    });
    for (k, v) in fields.as_object().unwrap() {
        event[k] = v.clone();
    }
    event
}

fn student(email: &str) -> Value {
    let key = Email::parse(email).unwrap().student_key().to_string();
    json!({ "key": key, "email": email, "name": null, "first_name": null, "last_name": null })
}

fn product(id: &str) -> Value {
    json!({ "id": id, "name": null, "offer": null, "plan": null })
}

fn charge(id: &str, next_charge_ms: Option<i64>) -> Value {
    json!({ "id": id, "approved_at": null, "next_charge_at": next_charge_ms.map(time) })
}

#[test]
fn a_basil_refund_naming_only_its_payment_intent_unenrolls_through_the_invoice_it_paid() {
    let (_turn, chain) = chain();
    let email = "stripe-sub@example.com";
    let now = now_ms();
    // `invoice.paid`: everything named; the subscription paid for 30 days.
    let paid = stripe_event(
        "evt_paid_1",
        "invoice.paid",
        json!({"type": "approve"}),
        now,
        json!({ "student": student(email), "product": product("prod_SUB"), "grant_id": "sub_1",
                "charge": charge("in_1", Some(now + 30 * DAY_MS)) }),
    );
    chain.push_ok(&paid, "applied");
    assert_eq!(chain.sandbox.courses_of(email), ["201"]);

    // basil: the refunded charge's payment intent no longer names its invoice; Stripe's invoice
    // payments do.
    chain.fake.invoice_payment("in_1", "pi_1");
    let refund = stripe_event(
        "evt_refund_1",
        "charge.refunded",
        json!({"type": "revoke", "reason": "refunded"}),
        now_ms(),
        json!({ "charge": charge("pi_1", None) }),
    );
    chain.push_ok(&refund, "applied");
    assert!(chain.sandbox.courses_of(email).is_empty(), "unenrolled");
    assert_eq!(chain.fake.calls("/v1/invoice_payments"), 1);
    assert_eq!(chain.fake.unauthorized(), 0);

    // The index learned the payment intent: its dispute needs no call, and its redelivery is
    // a duplicate.
    let dispute = stripe_event(
        "evt_dispute_1",
        "charge.dispute.created",
        json!({"type": "dispute"}),
        now_ms(),
        json!({ "charge": charge("pi_1", None) }),
    );
    chain.push_ok(&dispute, "applied");
    chain.push_ok(&refund, "duplicate");
    assert_eq!(chain.fake.calls("/v1/invoice_payments"), 1);
    let doc = stack::firestore().document(&chain.backend.project, "charges/stripe__pi_1");
    assert_eq!(doc["fields"]["charge_id"]["stringValue"], "in_1", "{doc}");
    assert_eq!(doc["fields"]["grant_id"]["stringValue"], "sub_1", "{doc}");
    assert_eq!(chain.sandbox.count_ok("addusertocourse"), 1);
    let log = chain.backend.log();
    assert!(!log.contains(API_KEY), "the key leaked into the log");
}

#[test]
fn a_one_off_purchase_without_product_metadata_takes_it_from_its_checkout_session() {
    let (_turn, chain) = chain();
    let email = "stripe-oneoff@example.com";
    chain.fake.checkout_session("pi_2", "prod_ONE");
    let before = chain.fake.calls("/v1/checkout/sessions");
    let purchase = stripe_event(
        "evt_checkout_2",
        "checkout.session.completed",
        json!({"type": "approve"}),
        now_ms(),
        json!({ "student": student(email), "grant_id": "pi_2", "charge": charge("pi_2", None) }),
    );
    chain.push_ok(&purchase, "applied");
    assert_eq!(chain.sandbox.courses_of(email), ["301"]);
    assert_eq!(chain.fake.calls("/v1/checkout/sessions"), before + 1);

    // Its refund names the charge: Stripe gives the payment intent, which is the grant.
    chain.fake.charge("ch_2", Some("pi_2"));
    let refund = stripe_event(
        "evt_refund_2",
        "charge.refunded",
        json!({"type": "revoke", "reason": "refunded"}),
        now_ms(),
        json!({ "charge": charge("ch_2", None) }),
    );
    chain.push_ok(&refund, "applied");
    assert!(chain.sandbox.courses_of(email).is_empty(), "unenrolled");
}

#[test]
fn a_refund_of_an_unknown_purchase_is_retried_while_young_then_failed_and_a_bad_key_is_named() {
    let (_turn, chain) = chain();
    let refund = |received_ms| {
        stripe_event(
            "evt_refund_3",
            "charge.refunded",
            json!({"type": "revoke", "reason": "refunded"}),
            received_ms,
            json!({ "charge": charge("pi_3", None) }),
        )
    };
    // Its purchase may be on the way: 503, so Pub/Sub redelivers.
    let (status, body) = chain.push(&refund(now_ms()));
    assert_eq!((status, body["error"]["code"].as_str()), (503, Some("unavailable")), "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("pi_3"), "{body}");
    // Received 11 minutes ago and still unknown: failed, kept whole, with what to do.
    let body = chain.push_ok(&refund(now_ms() - 11 * 60_000), "failed");
    let reason = body["reason"].as_str().unwrap();
    assert!(reason.contains("names charge pi_3 that no known grant has; replay it once"), "{reason}");
    let record = stack::firestore().document(&chain.backend.project, "events/stripe:evt_refund_3");
    assert!(record["fields"]["event_json"]["stringValue"].as_str().unwrap().contains("pi_3"), "{record}");

    // Its purchase arrives late; `replay --failed` then applies the kept refund.
    let email = "stripe-late-purchase@example.com";
    let purchase = stripe_event(
        "evt_checkout_3",
        "checkout.session.completed",
        json!({"type": "approve"}),
        now_ms() - 20 * 60_000,
        json!({ "student": student(email), "product": product("prod_ONE"), "grant_id": "pi_3",
                "charge": charge("pi_3", None) }),
    );
    chain.push_ok(&purchase, "applied");
    assert_eq!(chain.sandbox.courses_of(email), ["301"]);
    let output = chain.backend.cli(&["replay", "--failed"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let line = stdout.lines().find(|l| l.contains("stripe:evt_refund_3")).unwrap_or_else(|| panic!("{stdout}"));
    assert!(line.contains(r#""result":"applied""#), "{stdout}");
    assert!(chain.sandbox.courses_of(email).is_empty(), "the replayed refund unenrolled");
    let record = stack::firestore().document(&chain.backend.project, "events/stripe:evt_refund_3");
    assert_eq!(record["fields"]["status"]["stringValue"], "applied", "{record}");

    // A refused key is a permanent failure that names the setting, never the key.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let wrong = "rk_test_WRONG-KEY-0000";
    let config = StripeApiConfig {
        url: chain.fake.url.clone(),
        key: lms_bridge_backend::cli::Secret::new(wrong),
        timeout: Duration::from_secs(5),
    };
    let api = StripeApi::new(config).unwrap();
    let result = runtime.block_on(api.charge_aliases(&ChargeId::parse("pi_3").unwrap()));
    match result {
        Err(LookupError::Unavailable(message)) => {
            assert!(message.contains("STRIPE_API_KEY") && message.contains("401"), "{message}");
            assert!(!message.contains(wrong), "{message}");
        }
        other => panic!("expected a permanent failure, got {other:?}"),
    }
    assert_eq!(chain.fake.unauthorized(), 1);
}
