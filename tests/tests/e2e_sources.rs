//! Stripe and a Standard Webhooks sender through the whole chain, every part real: signed
//! webhook → edge (workerd) → Pub/Sub emulator → push → backend → Firestore emulator → LMS
//! sandbox, with the Stripe API fake answering what the newer Stripe renderings leave out.
//! Assertions are on the sandbox (what the LMS did) and on `lms-bridge student show`.

#![allow(clippy::unwrap_used, reason = "test code: a panic is the failure report")]

use lms_bridge_shared::source::{StdWebhooks, Stripe};
use lms_bridge_shared::Timestamp;
use lms_bridge_tests::backend::{Backend, Firestore, Issuer, Sandbox};
use lms_bridge_tests::edge::Edge;
use lms_bridge_tests::pubsub_emulator::{Emulator, PROJECT};
use lms_bridge_tests::stripe_events::{
    charge_refunded, checkout_completed, dispute, invoice_paid, now_seconds, subscription_deleted, Rendering,
};
use lms_bridge_tests::stripe_fake::StripeFake;
use serde_json::Value;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

const STRIPE_SECRET: &str = "whsec_e2e_sources_endpoint_secret_0123456789abcdef";
const STD_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const DAY: i64 = 86_400;

/// Stripe: a monthly subscription (course 401, no grace) and a one-off for life (course 402);
/// the sender `acme`: a product for life (course 403).
const MAPPINGS: &str = r#"
[[product]]
source = "stripe"
product_id = "prod_E2E_MONTHLY"
courses = ["401"]
policy = { type = "subscription", grace_days = 0 }

[[product]]
source = "stripe"
product_id = "prod_E2E_ONEOFF"
courses = ["402"]
policy = { type = "lifetime" }
chargeback = "revoke_grant"

[[product]]
source = "std-acme"
product_id = "course-403"
courses = ["403"]
policy = { type = "lifetime" }
"#;

struct Chain {
    sandbox: Sandbox,
    backend: Backend,
    edge: Edge,
    stripe: StripeFake,
    _pubsub: Emulator,
    _firestore: Firestore,
    _issuer: Issuer,
}

/// One chain for the binary; tests take turns and use their own students.
fn chain() -> (MutexGuard<'static, ()>, &'static Chain) {
    static TURN: Mutex<()> = Mutex::new(());
    static CHAIN: OnceLock<Chain> = OnceLock::new();
    let turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let chain = CHAIN.get_or_init(|| {
        let pubsub = Emulator::start();
        let firestore = Firestore::start();
        let issuer = Issuer::start();
        let stripe = StripeFake::start();
        let sandbox = Sandbox::start(&["--courses", "401,402,403"]);
        let mut env = stripe.env();
        env.push(("PUSH_AUTH", "none".to_owned()));
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let backend = Backend::start(PROJECT, &firestore, &sandbox, &issuer, &env);
        backend.pubsub_setup(&pubsub.host, &[]);
        backend.import_mappings(MAPPINGS);
        let edge = Edge::start(
            "e2e-sources",
            &[
                ("STRIPE_WEBHOOK_SECRET", STRIPE_SECRET),
                ("STD_WEBHOOK_SECRET_ACME", STD_SECRET),
                ("PUBSUB_EMULATOR_HOST", &pubsub.host),
                ("GCP_PROJECT", PROJECT),
                ("PUBSUB_TOPIC", "lms-bridge-events"),
            ],
        );
        Chain { sandbox, backend, edge, stripe, _pubsub: pubsub, _firestore: firestore, _issuer: issuer }
    });
    (turn, chain)
}

fn answer(response: reqwest::blocking::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().unwrap();
    (status, serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}")))
}

/// Posts a Stripe event to the edge, signed now, as Stripe does; it must be accepted.
fn send_stripe(chain: &Chain, body: Vec<u8>) {
    let response = reqwest::blocking::Client::new()
        .post(format!("{}/webhooks/stripe", chain.edge.url))
        .header("content-type", "application/json; charset=utf-8")
        .header("Stripe-Signature", Stripe::sign(STRIPE_SECRET, now_seconds(), &body))
        .timeout(Duration::from_secs(30))
        .body(body)
        .send()
        .unwrap();
    let (status, answer) = answer(response);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "accepted", "{answer}");
}

/// Posts a Standard Webhooks message of sender `acme` to the edge; it must be accepted.
fn send_std(chain: &Chain, id: &str, body: Vec<u8>) {
    let at = now_seconds();
    let response = reqwest::blocking::Client::new()
        .post(format!("{}/webhooks/std/acme", chain.edge.url))
        .header("content-type", "application/json")
        .header("webhook-id", id)
        .header("webhook-timestamp", at.to_string())
        .header("webhook-signature", StdWebhooks::sign(STD_SECRET, id, at, &body).unwrap())
        .timeout(Duration::from_secs(30))
        .body(body)
        .send()
        .unwrap();
    let (status, answer) = answer(response);
    assert_eq!(status, 200, "{answer}");
}

fn wait_for(chain: &Chain, email: &str, courses: &[&str], timeout: Duration) {
    let started = Instant::now();
    loop {
        let now = chain.sandbox.courses_of(email);
        if now == courses {
            return;
        }
        assert!(
            started.elapsed() < timeout,
            "{email}: courses {now:?}, expected {courses:?} within {timeout:?}; {email} in the backend: {:?}",
            student_show(chain, email)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `lms-bridge student show EMAIL` (None: no such student).
fn student_show(chain: &Chain, email: &str) -> Option<Value> {
    let output = chain.backend.cli(&["student", "show", email]);
    output.status.success().then(|| serde_json::from_slice(&output.stdout).unwrap())
}

/// The course's `access_until` in the backend, waiting until it is `expected`.
fn wait_until_shown(chain: &Chain, email: &str, course: &str, expected: &str, timeout: Duration) {
    let started = Instant::now();
    loop {
        let shown = student_show(chain, email);
        let until = shown.as_ref().and_then(|s| {
            s["courses"].as_array()?.iter().find(|c| c["course"] == course)?["access_until"].as_str().map(str::to_owned)
        });
        if until.as_deref() == Some(expected) {
            return;
        }
        assert!(
            started.elapsed() < timeout,
            "{email} {course}: access until {until:?}, expected {expected}: {shown:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn iso(seconds: i64) -> String {
    Timestamp::from_unix_millis(seconds * 1000).unwrap().to_string()
}

#[test]
fn a_stripe_subscription_paid_renewed_then_refunded_in_the_basil_rendering() {
    let (_turn, chain) = chain();
    let email = "stripe-sub@example.com";
    let now = now_seconds();
    let (sub, product, price) = ("sub_E2E_1", "prod_E2E_MONTHLY", "price_E2E_MONTHLY");
    let first = (now - DAY, now + 29 * DAY);
    send_stripe(
        chain,
        invoice_paid(Rendering::Basil, "evt_e2e_sub_1", email, sub, "in_E2E_1", product, price, first).bytes(),
    );
    wait_for(chain, email, &["401"], Duration::from_secs(30));
    wait_until_shown(chain, email, "401", &iso(first.1), Duration::from_secs(10));

    // The renewal: the next invoice, paid through a month later.
    let second = (now + 29 * DAY - 60, now + 59 * DAY);
    send_stripe(
        chain,
        invoice_paid(Rendering::Basil, "evt_e2e_sub_2", email, sub, "in_E2E_2", product, price, second).bytes(),
    );
    wait_until_shown(chain, email, "401", &iso(second.1), Duration::from_secs(30));

    // The renewal's charge refunded. Since basil the charge names only its payment intent:
    // the backend asks Stripe which invoice that payment paid.
    chain.stripe.invoice_payment("in_E2E_2", "pi_E2E_2");
    let before = chain.stripe.calls("/v1/invoice_payments");
    send_stripe(chain, charge_refunded(Rendering::Basil, "evt_e2e_sub_r", "ch_E2E_2", "pi_E2E_2", None, now).bytes());
    wait_for(chain, email, &[], Duration::from_secs(30));
    assert!(chain.stripe.calls("/v1/invoice_payments") > before, "the invoice was not looked up");
    let shown = student_show(chain, email).unwrap();
    assert_eq!(shown["courses"][0]["access"], "inactive", "{shown}");
}

#[test]
fn a_stripe_cancellation_by_deletion_ends_access_at_once() {
    let (_turn, chain) = chain();
    let email = "stripe-deleted@example.com";
    let now = now_seconds();
    let (sub, product) = ("sub_E2E_DEL", "prod_E2E_MONTHLY");
    let period = (now - DAY, now + 29 * DAY);
    let paid = invoice_paid(Rendering::Acacia, "evt_e2e_del_1", email, sub, "in_E2E_DEL", product, "price_x", period);
    send_stripe(chain, paid.bytes());
    wait_for(chain, email, &["401"], Duration::from_secs(30));
    // The deleted subscription names no buyer: the backend acts on the grant's owner.
    send_stripe(chain, subscription_deleted("evt_e2e_del_2", sub, product, now - 5).bytes());
    wait_for(chain, email, &[], Duration::from_secs(30));
}

#[test]
fn a_stripe_one_off_without_product_metadata_then_a_lost_dispute() {
    let (_turn, chain) = chain();
    let email = "stripe-oneoff@example.com";
    let now = now_seconds();
    // No metadata.product_id: the product is the session's line item's, from Stripe's API.
    chain.stripe.checkout_session("pi_E2E_ONE", "prod_E2E_ONEOFF");
    send_stripe(
        chain,
        checkout_completed(Rendering::Acacia, "evt_e2e_one_1", email, "pi_E2E_ONE", None, now - 60).bytes(),
    );
    wait_for(chain, email, &["402"], Duration::from_secs(30));

    // A dispute opened: the mapping keeps access while it runs.
    send_stripe(
        chain,
        dispute("charge.dispute.created", "evt_e2e_one_d1", "ch_E2E_ONE", "pi_E2E_ONE", "needs_response", now - 30)
            .bytes(),
    );
    // Lost: a chargeback, which ends the grant.
    send_stripe(
        chain,
        dispute("charge.dispute.closed", "evt_e2e_one_d2", "ch_E2E_ONE", "pi_E2E_ONE", "lost", now).bytes(),
    );
    wait_for(chain, email, &[], Duration::from_secs(30));
    let shown = student_show(chain, email).unwrap();
    assert_eq!(shown["courses"][0]["access"], "inactive", "{shown}");
}

#[test]
fn a_standard_webhooks_sender_grants_and_revokes() {
    let (_turn, chain) = chain();
    let email = "acme-buyer@example.com";
    let body = |kind: &str, extra: &str| {
        format!(
            r#"{{"type":"{kind}","data":{{"email":"{email}","product":"course-403","grant":"order-77","charge":"pay-77","occurred_at":"{}"{extra}}}}}"#,
            iso(now_seconds() - 5)
        )
        .into_bytes()
    };
    send_std(chain, "msg_e2e_grant", body("access.granted", ""));
    wait_for(chain, email, &["403"], Duration::from_secs(30));
    send_std(chain, "msg_e2e_revoke", body("access.revoked", r#","reason":"refunded""#));
    wait_for(chain, email, &[], Duration::from_secs(30));
}
