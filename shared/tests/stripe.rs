//! Every Stripe event type the bridge maps, in both renderings (an API version before
//! `2025-03-31.basil` and basil itself), through the Stripe source.
//!
//! The fixtures in `tests/fixtures/stripe/` are named `{type}.{api_version}.json`; see the
//! README there for where each comes from.

#![allow(clippy::unwrap_used, reason = "test code: a panic is the failure report")]

use lms_bridge_shared::event::{Change, Event, RevokeReason};
use lms_bridge_shared::source::{stripe, NormalizeError, Source, Stripe};
use lms_bridge_shared::Timestamp;
use serde_json::{json, Value};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/stripe/{name}.json", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_unix_millis(seconds * 1000).unwrap()
}

/// Normalizes a body as the edge would, two seconds after Stripe created the event.
fn normalize(body: &[u8]) -> Event {
    let source = Stripe::new(Vec::new());
    let created = source.sent_at(body).expect("every fixture states `created`");
    let received = Timestamp::from_unix_millis(created.unix_millis() + 2000).unwrap();
    let event = source.normalize(body, received).unwrap();
    // Every event is one the backend accepts, and survives the queue unchanged.
    event.check_complete().unwrap();
    assert_eq!(Event::from_json(&event.to_json()).unwrap(), event);
    assert!(!event.clamped);
    event
}

fn value(name: &str) -> Value {
    serde_json::from_slice(&fixture(name)).unwrap()
}

fn normalize_value(value: &Value) -> Event {
    normalize(&serde_json::to_vec(value).unwrap())
}

/// What each fixture must normalize to.
struct Expected {
    name: &'static str,
    change: Change,
    charge: Option<&'static str>,
    grant: Option<&'static str>,
    product: Option<&'static str>,
    plan: Option<&'static str>,
    email: Option<&'static str>,
    next_charge_at: Option<i64>,
    effective_at: i64,
}

const NONE: Expected = Expected {
    name: "",
    change: Change::Info,
    charge: None,
    grant: None,
    product: None,
    plan: None,
    email: None,
    next_charge_at: None,
    effective_at: 0,
};

fn expected() -> Vec<Expected> {
    let refunded = Change::Revoke { reason: RevokeReason::Refunded };
    let chargeback = Change::Revoke { reason: RevokeReason::Chargeback };
    vec![
        // ---- checkout sessions ----
        Expected {
            name: "checkout.session.completed.2020-08-27",
            change: Change::Approve,
            charge: Some("pi_3LpM8hH3pVsbUDTX1Y0dS5aq"),
            grant: Some("pi_3LpM8hH3pVsbUDTX1Y0dS5aq"),
            product: Some("prod_MYTd0Mjnr2EVfU"),
            email: Some("stripe@example.com"),
            effective_at: 1_664_911_810,
            ..NONE
        },
        // Subscription mode: the first invoice carries the charge.
        Expected {
            name: "checkout.session.completed.2025-03-31.basil",
            grant: Some("sub_1RMcdRCMHTTliF5iM812gr0j"),
            email: Some("buyer@example.com"),
            effective_at: 1_746_742_186,
            ..NONE
        },
        Expected {
            name: "checkout.session.async_payment_succeeded.2024-06-20",
            change: Change::Approve,
            charge: Some("pi_3PkDdQH3pVsbUDTX0s5ZbJ6t"),
            grant: Some("pi_3PkDdQH3pVsbUDTX0s5ZbJ6t"),
            product: Some("prod_QbR6cVt6x3dQ1k"),
            email: Some("ana.souza@example.com"),
            effective_at: 1_723_213_400,
            ..NONE
        },
        // No `metadata.product_id`: the backend reads the session's line items.
        Expected {
            name: "checkout.session.async_payment_succeeded.2025-03-31.basil",
            change: Change::Approve,
            charge: Some("pi_3RNZxQCMHTTliF5i1C6cN0dF"),
            grant: Some("pi_3RNZxQCMHTTliF5i1C6cN0dF"),
            email: Some("buyer@example.com"),
            effective_at: 1_746_960_000,
            ..NONE
        },
        Expected {
            name: "checkout.session.async_payment_failed.2024-06-20",
            change: Change::Fail,
            charge: Some("pi_3PkDdQH3pVsbUDTX0s5ZbJ6t"),
            grant: Some("pi_3PkDdQH3pVsbUDTX0s5ZbJ6t"),
            product: Some("prod_QbR6cVt6x3dQ1k"),
            email: Some("ana.souza@example.com"),
            effective_at: 1_723_213_500,
            ..NONE
        },
        Expected {
            name: "checkout.session.async_payment_failed.2025-03-31.basil",
            change: Change::Fail,
            charge: Some("pi_3RNZxQCMHTTliF5i1C6cN0dF"),
            grant: Some("pi_3RNZxQCMHTTliF5i1C6cN0dF"),
            email: Some("buyer@example.com"),
            effective_at: 1_746_960_100,
            ..NONE
        },
        // ---- invoices ----
        // No `status_transitions` in this capture: approved at the event's time.
        Expected {
            name: "invoice.paid.2023-10-16",
            change: Change::Approve,
            charge: Some("in_1PBXo5RxqlZt79sDAbGhMpyk"),
            grant: Some("sub_1PBXo5RxqlZt79sD3kdxoDVi"),
            product: Some("prod_Q1aaAFnFaTrIJT"),
            plan: Some("price_1PBXPdRxqlZt79sDHvLwlTkt"),
            email: Some("test12@email.com"),
            next_charge_at: Some(1_717_227_745),
            effective_at: 1_714_549_347,
        },
        Expected {
            name: "invoice.paid.2025-03-31.basil",
            change: Change::Approve,
            charge: Some("in_1RMgafCMHTTliF5ilpBkRLZf"),
            grant: Some("sub_1RMgafCMHTTliF5imBKfvfyV"),
            product: Some("prod_S6iXedXCQhbo7o"),
            plan: Some("price_1RCV6tCMHTTliF5iuMgrQbyE"),
            email: Some("buyer@example.com"),
            next_charge_at: Some(1_749_435_787),
            effective_at: 1_746_757_388,
        },
        Expected {
            name: "invoice.payment_succeeded.2023-10-16",
            change: Change::Approve,
            charge: Some("in_1PBXo5RxqlZt79sDAbGhMpyk"),
            grant: Some("sub_1PBXo5RxqlZt79sD3kdxoDVi"),
            product: Some("prod_Q1aaAFnFaTrIJT"),
            plan: Some("price_1PBXPdRxqlZt79sDHvLwlTkt"),
            email: Some("test12@email.com"),
            next_charge_at: Some(1_717_227_745),
            effective_at: 1_714_549_346,
        },
        // The real CLI-signed delivery, byte for byte.
        Expected {
            name: "invoice.payment_succeeded.2025-03-31.basil",
            change: Change::Approve,
            charge: Some("in_1RMgafCMHTTliF5ilpBkRLZf"),
            grant: Some("sub_1RMgafCMHTTliF5imBKfvfyV"),
            product: Some("prod_S6iXedXCQhbo7o"),
            plan: Some("price_1RCV6tCMHTTliF5iuMgrQbyE"),
            email: Some("jeff@indaggo.com"),
            next_charge_at: Some(1_749_435_787),
            effective_at: 1_746_757_388,
        },
        // An upgrade invoice: a proration credit of the old price, then the new price. The
        // product and plan are the new line's.
        Expected {
            name: "invoice.payment_failed.2023-10-16",
            change: Change::PaymentLate,
            charge: Some("in_1PDx0aRxqlZt79sDmI0bJ3Xy"),
            grant: Some("sub_1PBXo5RxqlZt79sD3kdxoDVi"),
            product: Some("prod_Q3zZp1QJkqB6Ym"),
            plan: Some("price_1PDwzYRxqlZt79sDqX5bC0Tn"),
            email: Some("test12@email.com"),
            next_charge_at: None,
            effective_at: 1_716_000_003,
        },
        Expected {
            name: "invoice.payment_failed.2025-03-31.basil",
            change: Change::PaymentLate,
            charge: Some("in_1RXk2bCMHTTliF5i0oQm9HgT"),
            grant: Some("sub_1RMgafCMHTTliF5imBKfvfyV"),
            product: Some("prod_S6iZ0QpYw1uN3h"),
            plan: Some("price_1RCV8kCMHTTliF5iPr0Yq2Zs"),
            email: Some("buyer@example.com"),
            next_charge_at: None,
            effective_at: 1_748_000_004,
        },
        // ---- subscriptions ----
        // Cancelled at the period end (the classic flag), at `canceled_at`.
        Expected {
            name: "customer.subscription.updated.2024-06-20",
            change: Change::Cancel { period_end: Some(at(1_650_998_496)) },
            grant: Some("sub_000000000000000000000000"),
            product: Some("prod_00000000000000"),
            plan: Some("price_000000000000000000000000"),
            effective_at: 1_649_000_000,
            ..NONE
        },
        // Basic → Pro: `previous_attributes.items` names another price.
        Expected {
            name: "customer.subscription.updated.2025-03-31.basil",
            change: Change::PlanChange { plan: "price_1RCV8kCMHTTliF5iPr0Yq2Zs".into() },
            grant: Some("sub_1RMgafCMHTTliF5imBKfvfyV"),
            product: Some("prod_S6iXedXCQhbo7o"),
            plan: Some("price_1RCV8kCMHTTliF5iPr0Yq2Zs"),
            effective_at: 1_747_000_000,
            ..NONE
        },
        Expected {
            name: "customer.subscription.deleted.2020-08-27",
            change: Change::Cancel { period_end: Some(at(1_648_320_097)) },
            grant: Some("sub_000000000000000000000000"),
            product: Some("prod_00000000000000"),
            plan: Some("price_000000000000000000000000"),
            effective_at: 1_648_320_097,
            ..NONE
        },
        Expected {
            name: "customer.subscription.deleted.2025-03-31.basil",
            change: Change::Cancel { period_end: Some(at(1_749_435_787)) },
            grant: Some("sub_1RMgafCMHTTliF5imBKfvfyV"),
            product: Some("prod_S6iXedXCQhbo7o"),
            plan: Some("price_1RCV6tCMHTTliF5iuMgrQbyE"),
            effective_at: 1_749_435_787,
            ..NONE
        },
        // ---- charges and disputes: named by their charge only ----
        Expected {
            name: "charge.refunded.2020-08-27",
            change: refunded.clone(),
            charge: Some("ch_000000000000000000000000"),
            effective_at: 1_648_319_949,
            ..NONE
        },
        Expected {
            name: "charge.refunded.2025-03-31.basil",
            change: refunded,
            charge: Some("pi_3RNZxQCMHTTliF5i1C6cN0dF"),
            effective_at: 1_747_200_000,
            ..NONE
        },
        Expected {
            name: "charge.dispute.created.2020-08-27",
            change: Change::Dispute,
            charge: Some("ch_000000000000000000000000"),
            effective_at: 1_648_320_000,
            ..NONE
        },
        Expected {
            name: "charge.dispute.created.2025-03-31.basil",
            change: Change::Dispute,
            charge: Some("pi_3RNZxQCMHTTliF5i1C6cN0dF"),
            effective_at: 1_747_300_000,
            ..NONE
        },
        // Won: approved again at the close time, which settles the dispute.
        Expected {
            name: "charge.dispute.closed.2020-08-27",
            change: Change::Approve,
            charge: Some("ch_000000000000000000000000"),
            effective_at: 1_649_529_600,
            ..NONE
        },
        Expected {
            name: "charge.dispute.closed.2025-03-31.basil",
            change: chargeback,
            charge: Some("pi_3RNZxQCMHTTliF5i1C6cN0dF"),
            effective_at: 1_748_500_000,
            ..NONE
        },
    ]
}

#[test]
fn every_fixture_normalizes_to_its_fact() {
    let cases = expected();
    // Both renderings of each mapped type.
    assert_eq!(cases.len(), 22);
    for case in cases {
        let body = fixture(case.name);
        let event = normalize(&body);
        let raw: Value = serde_json::from_slice(&body).unwrap();
        let name = case.name;
        assert_eq!(event.id.as_str(), format!("stripe:{}", raw["id"].as_str().unwrap()), "{name}");
        assert_eq!(event.source.as_str(), "stripe");
        assert_eq!(event.source_event, raw["type"].as_str().unwrap(), "{name}");
        assert_eq!(event.occurred_at, at(raw["created"].as_i64().unwrap()), "{name}");
        assert_eq!(event.change, case.change, "{name}");
        assert_eq!(event.charge.as_ref().map(|c| c.id.as_str()), case.charge, "{name}: charge");
        assert_eq!(event.grant_id.as_ref().map(|g| g.as_str()), case.grant, "{name}: grant");
        assert_eq!(event.product.as_ref().map(|p| p.id.as_str()), case.product, "{name}: product");
        let plan = event.product.as_ref().and_then(|p| p.plan.as_deref());
        assert_eq!(plan, case.plan, "{name}: plan");
        assert_eq!(event.student.as_ref().map(|s| s.email.as_str()), case.email, "{name}: student");
        assert_eq!(event.effective_at, at(case.effective_at), "{name}: effective_at");
        let next = event.charge.as_ref().and_then(|c| c.next_charge_at);
        assert_eq!(next, case.next_charge_at.map(at), "{name}: next_charge_at");
        // An approval is stamped with its business time; other facts carry none.
        let approved_at = event.charge.as_ref().and_then(|c| c.approved_at);
        let approve = event.change == Change::Approve;
        assert_eq!(approved_at, approve.then_some(event.effective_at), "{name}: approved_at");
        if let Some(next) = case.next_charge_at {
            let subscription = event.subscription.as_ref().unwrap();
            assert_eq!(Some(subscription.code.as_str()), case.grant, "{name}");
            assert_eq!(subscription.next_charge_at, Some(at(next)), "{name}");
        }
    }
}

#[test]
fn the_basil_renderings_say_what_the_older_ones_say() {
    // The same facts under the two renderings where the fixtures tell the same story.
    for (old, new) in [
        ("invoice.paid.2023-10-16", "invoice.paid.2025-03-31.basil"),
        ("customer.subscription.deleted.2020-08-27", "customer.subscription.deleted.2025-03-31.basil"),
    ] {
        let (old, new) = (normalize(&fixture(old)), normalize(&fixture(new)));
        assert_eq!(old.change.kind(), new.change.kind());
        assert!(old.product.is_some() && new.product.is_some());
        assert_eq!(old.subscription.is_some(), new.subscription.is_some());
    }
    // Statuses and paid periods of subscription events.
    let updated = normalize(&fixture("customer.subscription.updated.2024-06-20"));
    let subscription = updated.subscription.unwrap();
    assert_eq!(subscription.status.as_deref(), Some("active"));
    assert_eq!(subscription.next_charge_at, Some(at(1_650_998_496)));
    let switched = normalize(&fixture("customer.subscription.updated.2025-03-31.basil"));
    assert_eq!(switched.subscription.unwrap().next_charge_at, Some(at(1_749_435_787)));
    let deleted = normalize(&fixture("customer.subscription.deleted.2025-03-31.basil"));
    assert_eq!(deleted.subscription.unwrap().status.as_deref(), Some("canceled"));
    // Amounts in the currency's units.
    let paid = normalize(&fixture("invoice.payment_succeeded.2025-03-31.basil")).amount.unwrap();
    assert_eq!((paid.value.as_str(), paid.currency.as_str()), ("49.99", "CAD"));
    let old = normalize(&fixture("invoice.paid.2023-10-16")).amount.unwrap();
    assert_eq!((old.value.as_str(), old.currency.as_str()), ("700.00", "USD"));
    // Names where the object has one.
    let student = normalize(&fixture("checkout.session.completed.2025-03-31.basil")).student.unwrap();
    assert_eq!(student.name.as_deref(), Some("alice-lab"));
}

/// A failed attempt is retried by Stripe on the same invoice: the attempt must not make the
/// invoice a failed charge for good, or its later `invoice.paid` would give nothing.
#[test]
fn a_failed_invoice_attempt_then_paid_gives_access_until_the_paid_date() {
    use lms_bridge_shared::policy::{AccessPolicy, ChargebackPolicy, DisputePolicy, ProductMapping};
    use lms_bridge_shared::{Grant, SourceName};
    let failed = normalize(&fixture("invoice.payment_failed.2025-03-31.basil"));
    assert_eq!(failed.change, Change::PaymentLate);
    let mut paid_value = value("invoice.payment_failed.2025-03-31.basil");
    paid_value["type"] = json!("invoice.paid");
    paid_value["id"] = json!("evt_paid_after_retry");
    paid_value["created"] = json!(1_748_100_000);
    paid_value["data"]["object"]["status_transitions"]["paid_at"] = json!(1_748_100_000);
    let paid = normalize_value(&paid_value);
    assert_eq!(paid.charge.as_ref().unwrap().id, failed.charge.as_ref().unwrap().id, "the same invoice");
    let mapping = ProductMapping {
        source: SourceName::parse("stripe").unwrap(),
        product_id: paid.product.as_ref().unwrap().id.clone(),
        courses: vec![lms_bridge_shared::CourseId::parse("1").unwrap()],
        policy: AccessPolicy::Subscription { grace_days: 0 },
        dispute: DisputePolicy::Keep,
        chargeback: ChargebackPolicy::RevokeGrant,
        plans: std::collections::BTreeMap::new(),
    };
    let mut grant = Grant::new(&mapping);
    grant.record(&failed, &mapping).unwrap();
    grant.record(&paid, &mapping).unwrap();
    let until = paid.charge.as_ref().unwrap().next_charge_at.unwrap();
    let during = lms_bridge_shared::Timestamp::from_unix_millis(1_748_200_000_000).unwrap();
    assert_eq!(grant.access_at(during), Some(Some(until)), "paid on the retry: active until the paid date");
}

/// A one-off Checkout payment with an invoice (`invoice_creation`): the session and the
/// invoice's `invoice.paid` state one charge of one grant, so a refund leaves nothing standing.
#[test]
fn an_invoiced_checkout_payment_and_its_invoice_are_one_grant() {
    let mut session = value("checkout.session.completed.2020-08-27");
    session["data"]["object"]["invoice"] = json!("in_ONEOFF_1");
    let event = normalize_value(&session);
    assert_eq!(event.change, Change::Approve);
    assert_eq!(event.grant_id.as_ref().unwrap().as_str(), "in_ONEOFF_1");
    assert_eq!(event.charge.as_ref().unwrap().id.as_str(), "in_ONEOFF_1");
    let mut invoice = value("invoice.paid.2023-10-16");
    let object = &mut invoice["data"]["object"];
    object["id"] = json!("in_ONEOFF_1");
    object["subscription"] = Value::Null;
    object["lines"]["data"][0]["subscription"] = Value::Null;
    object["lines"]["data"][0]["type"] = json!("invoiceitem");
    let paid = normalize_value(&invoice);
    assert_eq!(paid.grant_id, event.grant_id);
    assert_eq!(paid.charge.as_ref().unwrap().id, event.charge.as_ref().unwrap().id);
}

#[test]
fn checkout_sessions_unpaid_and_without_a_payment_intent() {
    let mut session = value("checkout.session.completed.2020-08-27");
    session["data"]["object"]["payment_status"] = json!("unpaid");
    let unpaid = normalize_value(&session);
    assert_eq!(unpaid.change, Change::Info);
    assert!(unpaid.student.is_some() && unpaid.product.is_some());
    session["data"]["object"]["payment_status"] = json!("paid");
    session["data"]["object"]["payment_intent"] = Value::Null;
    let approved = normalize_value(&session);
    let id = "cs_test_a1YS1URlnyQCN5fUUduORoQ7Pw41PJqDWkIVQCpJPqkfIhd6tVY8XB3OLa";
    assert_eq!(approved.charge.unwrap().id.as_str(), id);
    assert_eq!(approved.grant_id.unwrap().as_str(), id);
    // A failed async payment of a subscription session is the invoice's business.
    let mut failed = value("checkout.session.completed.2025-03-31.basil");
    failed["type"] = json!("checkout.session.async_payment_failed");
    assert_eq!(normalize_value(&failed).change, Change::Info);
    // The prefilled `customer_email` stands in when `customer_details` has none.
    session["data"]["object"]["customer_details"] = Value::Null;
    session["data"]["object"]["customer_email"] = json!("Prefilled@Example.com");
    assert_eq!(normalize_value(&session).student.unwrap().email.as_str(), "prefilled@example.com");
}

#[test]
fn invoices_without_a_subscription_or_with_prorations_only() {
    // A one-off invoice: the grant is the invoice, no paid period.
    let mut once = value("invoice.paid.2023-10-16");
    let object = &mut once["data"]["object"];
    object["subscription"] = Value::Null;
    let line = &mut object["lines"]["data"][0];
    line["subscription"] = Value::Null;
    line["type"] = json!("invoiceitem");
    let event = normalize_value(&once);
    assert_eq!(event.change, Change::Approve);
    assert_eq!(event.grant_id.unwrap().as_str(), "in_1PBXo5RxqlZt79sDAbGhMpyk");
    assert_eq!(event.charge.unwrap().next_charge_at, None);
    assert_eq!(event.subscription, None);
    assert_eq!(event.product.unwrap().id.as_str(), "prod_Q1aaAFnFaTrIJT");

    // Basil: the subscription read from the line when the invoice's `parent` lacks it.
    let mut lines_only = value("invoice.paid.2025-03-31.basil");
    lines_only["data"]["object"]["parent"] = Value::Null;
    assert_eq!(normalize_value(&lines_only).grant_id.unwrap().as_str(), "sub_1RMgafCMHTTliF5imBKfvfyV");

    // Only proration lines: they are what the invoice pays for.
    let mut prorations = value("invoice.payment_failed.2025-03-31.basil");
    prorations["type"] = json!("invoice.paid");
    let lines = prorations["data"]["object"]["lines"]["data"].as_array_mut().unwrap();
    lines.remove(1);
    let event = normalize_value(&prorations);
    assert_eq!(event.charge.unwrap().next_charge_at, Some(at(1_749_435_787)));
    // With a regular line too, the latest end among the regular lines counts.
    let mut both = value("invoice.payment_failed.2025-03-31.basil");
    both["type"] = json!("invoice.paid");
    both["data"]["object"]["status_transitions"]["paid_at"] = json!(1_748_000_003);
    let event = normalize_value(&both);
    assert_eq!(event.effective_at, at(1_748_000_003));
    assert_eq!(event.charge.unwrap().next_charge_at, Some(at(1_750_678_400)));
}

#[test]
fn subscription_updates_in_every_encoding() {
    // Flexible billing (the Customer Portal): `cancel_at` set, the flag false.
    let mut portal = value("customer.subscription.updated.2025-03-31.basil");
    portal["data"]["previous_attributes"] = json!({"cancel_at": null, "canceled_at": null});
    let object = &mut portal["data"]["object"];
    object["cancel_at"] = json!(1_749_435_787);
    object["canceled_at"] = json!(1_746_990_000);
    let event = normalize_value(&portal);
    assert_eq!(event.change, Change::Cancel { period_end: Some(at(1_749_435_787)) });
    assert_eq!(event.effective_at, at(1_746_990_000));
    assert_eq!(event.student, None);
    // The flag alone (basil): the period end comes from the items.
    portal["data"]["object"]["cancel_at"] = Value::Null;
    portal["data"]["object"]["cancel_at_period_end"] = json!(true);
    assert_eq!(normalize_value(&portal).change, Change::Cancel { period_end: Some(at(1_749_435_787)) });
    // A past-due subscription set to end is cancelled the same way; an ended one is not
    // (its deletion is the fact).
    portal["data"]["object"]["status"] = json!("past_due");
    assert_eq!(normalize_value(&portal).change.kind(), "cancel");
    portal["data"]["object"]["status"] = json!("incomplete_expired");
    assert_eq!(normalize_value(&portal).change, Change::Info);

    // Basil reports a renewal as changed items too: the same prices are no switch.
    let mut renewal = value("customer.subscription.updated.2025-03-31.basil");
    let item = renewal["data"]["object"]["items"]["data"][0].clone();
    let mut before = item.clone();
    before["current_period_end"] = json!(1_746_757_387);
    renewal["data"]["previous_attributes"]["items"]["data"] = json!([before]);
    assert_eq!(normalize_value(&renewal).change, Change::Info);

    // Before basil: a switch of plan, stated the same way.
    let mut switch = value("customer.subscription.updated.2024-06-20");
    let object = &mut switch["data"]["object"];
    object["cancel_at_period_end"] = json!(false);
    object["canceled_at"] = Value::Null;
    let mut old_items = object["items"].clone();
    old_items["data"][0]["price"]["id"] = json!("price_OLD");
    switch["data"]["previous_attributes"] = json!({"items": old_items, "plan": {"id": "price_OLD"}});
    let event = normalize_value(&switch);
    assert_eq!(event.change, Change::PlanChange { plan: "price_000000000000000000000000".into() });
    assert_eq!(event.effective_at, at(1_649_000_000));
    // And an update that changes neither (metadata): recorded only.
    switch["data"]["previous_attributes"] = json!({"metadata": {}});
    assert_eq!(normalize_value(&switch).change, Change::Info);
}

#[test]
fn refunds_and_disputes_name_the_charge_the_approval_named() {
    // A partial refund leaves the purchase standing.
    let mut partial = value("charge.refunded.2025-03-31.basil");
    partial["data"]["object"]["refunded"] = json!(false);
    partial["data"]["object"]["amount_refunded"] = json!(1000);
    let event = normalize_value(&partial);
    assert_eq!(event.change, Change::Info);
    assert_eq!(event.charge, None);
    // Before basil a subscription's charge names its invoice: the id `invoice.paid` stated.
    let mut invoiced = value("charge.refunded.2020-08-27");
    invoiced["data"]["object"]["invoice"] = json!("in_1PBXo5RxqlZt79sDAbGhMpyk");
    invoiced["data"]["object"]["payment_intent"] = json!("pi_3PBXo5RxqlZt79sD1gfyEF1L");
    assert_eq!(normalize_value(&invoiced).charge.unwrap().id.as_str(), "in_1PBXo5RxqlZt79sDAbGhMpyk");
    invoiced["data"]["object"]["invoice"] = Value::Null;
    assert_eq!(normalize_value(&invoiced).charge.unwrap().id.as_str(), "pi_3PBXo5RxqlZt79sD1gfyEF1L");
    // The refund of a checkout payment names the payment intent checkout approved.
    let approved = normalize(&fixture("checkout.session.async_payment_succeeded.2025-03-31.basil"));
    let refund = normalize(&fixture("charge.refunded.2025-03-31.basil"));
    assert_eq!(approved.charge.unwrap().id, refund.charge.unwrap().id);

    let mut closed = value("charge.dispute.closed.2025-03-31.basil");
    for (status, kind) in
        [("warning_closed", "approve"), ("won", "approve"), ("lost", "revoke"), ("under_review", "info")]
    {
        closed["data"]["object"]["status"] = json!(status);
        assert_eq!(normalize_value(&closed).change.kind(), kind, "{status}");
    }
}

#[test]
fn other_types_are_recorded_and_bad_bodies_refused() {
    let source = Stripe::new(Vec::new());
    let received = at(1_746_757_400);
    let created = br#"{"id":"evt_1","object":"event","type":"customer.created","created":1746757389,"data":{"object":{"id":"cus_1","email":"a@b.c"}}}"#;
    let event = source.normalize(created, received).unwrap();
    assert_eq!((event.change.clone(), event.source_event.as_str()), (Change::Info, "customer.created"));
    assert_eq!(event.occurred_at, at(1_746_757_389));
    // An empty type-specific object is recorded, not refused: as an event when its type changes
    // no access, else kept as unparsed (an access change naming no charge and no grant is an
    // event the backend refuses).
    let bare = br#"{"id":"evt_2","type":"customer.subscription.updated"}"#;
    assert_eq!(source.normalize(bare, received).unwrap().occurred_at, received);
    let bare = br#"{"id":"evt_2","type":"invoice.paid"}"#;
    assert_eq!(source.normalize(bare, received).unwrap_err(), NormalizeError::MissingField("data.object.id"));

    assert!(matches!(source.normalize(b"[1]", received), Err(NormalizeError::NotJson(_))));
    assert!(matches!(source.normalize(b"not json", received), Err(NormalizeError::NotJson(_))));
    assert_eq!(
        source.normalize(br#"{"type":"invoice.paid"}"#, received).unwrap_err(),
        NormalizeError::MissingField("id")
    );
    assert_eq!(source.normalize(br#"{"id":"evt_3"}"#, received).unwrap_err(), NormalizeError::MissingField("type"));
    let thin = br#"{"id":"evt_test_65R","object":"v2.core.event","type":"v1.invoice.paid","created":"2025-05-09T02:23:09.000Z","related_object":{"id":"in_1","type":"invoice"}}"#;
    match source.normalize(thin, received) {
        Err(NormalizeError::InvalidField { field: "object", reason }) => {
            assert!(reason.contains("snapshot"), "{reason}")
        }
        other => panic!("a thin event must be refused, got {other:?}"),
    }
    // Quarantined as usual (the default `Source::quarantine`), with the secret cut out.
    let secretive = Stripe::new(vec!["whsec_abc123".to_owned()]);
    let kept = secretive.quarantine(br#"{"note":"whsec_abc123"}"#, &NormalizeError::MissingField("id"), received);
    assert_eq!(kept.change.kind(), "unparsed");
    assert!(kept.id.as_str().starts_with("stripe:unparsed:"));
}

#[test]
fn a_business_time_ahead_of_the_clock_is_clamped() {
    let body = fixture("invoice.paid.2025-03-31.basil");
    let received = at(1_746_000_000); // days before Stripe's times
    let event = stripe::normalize(&body, received).unwrap();
    assert!(event.clamped);
    assert_eq!(event.effective_at, at(1_746_000_300));
    assert_eq!(event.charge.unwrap().approved_at, Some(at(1_746_000_300)));
    // The envelope time is kept as stated.
    assert_eq!(event.occurred_at, at(1_746_757_389));
}
