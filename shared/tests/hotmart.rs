//! Every sample payload through the Hotmart source: verification, normalization, PII.

#![allow(clippy::unwrap_used, reason = "test code: a panic is the failure report")]

use lms_bridge_shared::event::{Change, Event, RevokeReason, SCHEMA};
use lms_bridge_shared::source::{hotmart, Hotmart, NormalizeError, Source, VerifyError};
use lms_bridge_shared::Charge;
use lms_bridge_shared::Timestamp;

const ANA_KEY: &str = "7fd726011aa08d90d14a923ea0e5e3edf63bfe14b51ee6f6429483118d197c9b";

fn sample(name: &str) -> Vec<u8> {
    let path = format!("{}/../tests/fixtures/hotmart/{name}.json", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

fn received() -> Timestamp {
    Timestamp::parse_rfc3339("2026-11-24T18:03:11.512Z").unwrap()
}

fn normalize(name: &str) -> Event {
    hotmart::normalize(&sample(name), received()).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn ts(text: &str) -> Timestamp {
    Timestamp::parse_rfc3339(text).unwrap()
}

#[test]
fn purchase_approved_normalizes_to_a_lifetime_grant_without_pii() {
    let event = normalize("purchase_approved");
    let json: serde_json::Value = serde_json::from_slice(&event.to_json()).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "schema": "lms-bridge.event.v2",
            "id": "hotmart:4f1c2a9e-7d1b-4a57-9a0e-2b1f0c9d8e77",
            "source": "hotmart",
            "source_event": "PURCHASE_APPROVED",
            "change": { "type": "approve" },
            "occurred_at": "2025-11-24T14:23:11.047Z",
            "received_at": "2026-11-24T18:03:11.512Z",
            "effective_at": "2025-11-24T14:23:10.000Z",
            "student": {
                "key": ANA_KEY,
                "email": "ana.souza@example.com",
                "name": "Ana Souza", "first_name": "Ana", "last_name": "Souza"
            },
            "product": { "id": "4774438", "name": "Curso de Exemplo", "offer": "test", "plan": null },
            "grant_id": "HP16015479281022",
            "charge": { "id": "HP16015479281022", "approved_at": "2025-11-24T14:23:10.000Z", "next_charge_at": null },
            "subscription": null,
            "amount": { "value": "1500", "currency": "BRL" }
        })
    );
    let text = String::from_utf8(event.to_json()).unwrap();
    for pii in ["69526128664", "CPF", "Galassi", "38400123", "99999999900", "12345678965"] {
        assert!(!text.contains(pii), "{pii} must not leave the edge");
    }
}

#[test]
fn each_purchase_event_gets_the_change_the_access_rules_demand() {
    let cases = [
        ("purchase_complete", Change::Complete),
        ("purchase_refunded", Change::Revoke { reason: RevokeReason::Refunded }),
        ("purchase_chargeback", Change::Revoke { reason: RevokeReason::Chargeback }),
        ("purchase_canceled", Change::Fail),
        ("purchase_protest", Change::Dispute),
        ("subscription_purchase_delayed", Change::PaymentLate),
        ("purchase_billet_printed", Change::Info),
        ("purchase_expired", Change::Info),
        ("purchase_out_of_shopping_cart", Change::Info),
        ("club_first_access", Change::Info),
    ];
    for (name, change) in cases {
        let event = normalize(name);
        assert_eq!(event.change, change, "{name}");
        assert_eq!(event.schema, SCHEMA);
        assert!(event.id.as_str().starts_with("hotmart:"), "{name}");
        if event.change.affects_access() {
            assert_eq!(event.student.as_ref().unwrap().key.as_str(), ANA_KEY, "{name}");
            assert_eq!(event.product.as_ref().unwrap().id.as_str(), "4774438", "{name}");
            assert!(event.grant_id.is_some(), "{name}");
        }
    }
}

#[test]
fn subscription_charge_is_a_charge_of_the_subscriber_grant_covering_to_the_next_charge() {
    let event = normalize("subscription_purchase_approved");
    assert_eq!(event.grant_id.as_ref().unwrap().as_str(), "I9OT62C3");
    assert_eq!(event.change, Change::Approve);
    let Charge { id, approved_at, next_charge_at } = event.charge.clone().unwrap();
    assert_eq!(id.as_str(), "HP17715690036014");
    assert_eq!(approved_at, Some(ts("2025-11-24T14:23:10Z")));
    assert_eq!(event.effective_at, ts("2025-11-24T14:23:10Z"));
    assert_eq!(next_charge_at, Some(ts("2025-12-24T14:23:10Z")));
    let sub = event.subscription.unwrap();
    assert_eq!(sub.code.as_str(), "I9OT62C3");
    assert_eq!(sub.status.as_deref(), Some("ACTIVE"));
    assert_eq!(event.product.unwrap().plan.as_deref(), Some("123"));
}

#[test]
fn cancellation_states_its_own_time_and_the_paid_period_end() {
    let event = normalize("subscription_cancellation");
    assert_eq!(event.change, Change::Cancel { period_end: Some(ts("2025-12-24T14:23:10Z")) });
    assert_eq!(event.effective_at, Timestamp::from_unix_millis(1_764_080_590_000).unwrap());
    assert_eq!(event.grant_id.unwrap().as_str(), "I9OT62C3");
    assert_eq!(event.student.unwrap().key.as_str(), ANA_KEY);
    assert_eq!(event.occurred_at, Timestamp::from_unix_millis(1_764_080_591_047).unwrap());
}

#[test]
fn switch_plan_names_the_current_plan() {
    let event = normalize("switch_plan");
    assert_eq!(event.change, Change::PlanChange { plan: "124".into() });
    assert_eq!(event.effective_at, Timestamp::from_unix_millis(1_764_166_990_000).unwrap());
    let product = event.product.unwrap();
    assert_eq!((product.id.as_str(), product.offer.as_deref()), ("4774438", Some("k2pasun0")));
    assert_eq!(event.grant_id.unwrap().as_str(), "I9OT62C3");
}

#[test]
fn charge_date_update_reads_the_iso_date_of_an_active_subscription() {
    let event = normalize("update_subscription_charge_date");
    assert_eq!(event.change, Change::ChargeDate { next_charge_at: ts("2027-01-03T12:00:00Z") });
    assert_eq!(event.grant_id.unwrap().as_str(), "I9OT62C3");
}

#[test]
fn info_events_keep_who_and_what_when_present() {
    let cart = normalize("purchase_out_of_shopping_cart");
    assert_eq!(cart.student.unwrap().email.as_str(), "bruno@example.com");
    let club = normalize("club_first_access");
    assert_eq!(club.product.unwrap().id.as_str(), "4774438");
}

#[test]
fn unknown_event_names_are_kept_as_info() {
    let body = br#"{"id":"x1","creation_date":"1763994191047","event":"SOMETHING_NEW","data":{}}"#;
    let event = hotmart::normalize(body, received()).unwrap();
    assert_eq!((event.change, event.source_event.as_str()), (Change::Info, "SOMETHING_NEW"));
}

#[test]
fn a_cancellation_without_a_paid_period_end_is_still_a_cancellation() {
    let mut value: serde_json::Value = serde_json::from_slice(&sample("subscription_cancellation")).unwrap();
    value["data"].as_object_mut().unwrap().remove("date_next_charge");
    let event = hotmart::normalize(value.to_string().as_bytes(), received()).unwrap();
    assert_eq!(event.change, Change::Cancel { period_end: None });
}

#[test]
fn a_purchase_without_what_the_change_needs_names_the_missing_field() {
    let strip = |name: &str, pointer: &str, key: &str| {
        let mut value: serde_json::Value = serde_json::from_slice(&sample(name)).unwrap();
        value.pointer_mut(pointer).unwrap().as_object_mut().unwrap().remove(key);
        hotmart::normalize(value.to_string().as_bytes(), received()).unwrap_err()
    };
    assert_eq!(strip("purchase_approved", "/data/buyer", "email"), NormalizeError::MissingField("data.buyer.email"));
    assert_eq!(strip("purchase_refunded", "/data/product", "id"), NormalizeError::MissingField("data.product.id"));
    assert_eq!(
        strip("purchase_approved", "/data/purchase", "transaction"),
        NormalizeError::MissingField("data.purchase.transaction")
    );
    assert_eq!(strip("purchase_approved", "", "creation_date"), NormalizeError::MissingField("creation_date"));
    assert_eq!(strip("purchase_approved", "", "id"), NormalizeError::MissingField("id"));
    assert_eq!(
        strip("subscription_cancellation", "/data/subscriber", "code"),
        NormalizeError::MissingField("data.subscriber.code")
    );
    let bad_email = String::from_utf8(sample("purchase_approved")).unwrap().replace("Ana.Souza@Example.com ", "ana");
    assert!(matches!(
        hotmart::normalize(bad_email.as_bytes(), received()),
        Err(NormalizeError::InvalidField { field: "data.buyer.email", .. })
    ));
    assert!(matches!(hotmart::normalize(b"not json", received()), Err(NormalizeError::NotJson(_))));
    assert!(matches!(hotmart::normalize(b"[1,2]", received()), Err(NormalizeError::NotJson(_))));
}

#[test]
fn loose_types_are_read_by_meaning() {
    // ids as strings, dates as numeric strings, camelCase names: all seen in real deliveries.
    let body = br#"{"id":"e1","creationDate":"1763994191047","event":"PURCHASE_APPROVED",
        "data":{"buyer":{"email":"x@y.z"},"product":{"id":"4774438"},
        "purchase":{"transaction":"HP1","price":{"value":"149.90","currency_value":"BRL"}},
        "affiliates":"not-a-list"}}"#;
    let event = hotmart::normalize(body, received()).unwrap();
    assert_eq!(event.occurred_at, Timestamp::from_unix_millis(1_763_994_191_047).unwrap());
    assert_eq!(event.amount.unwrap().value, "149.90");
}

#[test]
fn hottok_is_required_and_compared_against_every_configured_token() {
    let source = Hotmart::new(["old-token".to_string(), "new-token".to_string()]);
    let now = received();
    let body = sample("purchase_approved");
    assert_eq!(source.verify(&vec![("x-hotmart-hottok", "new-token")], &body, now), Ok(()));
    assert_eq!(source.verify(&vec![("X-HOTMART-HOTTOK", "old-token")], &body, now), Ok(()));
    assert_eq!(
        source.verify(&vec![("X-HOTMART-HOTTOK", "new-token!")], &body, now),
        Err(VerifyError::InvalidToken("X-HOTMART-HOTTOK"))
    );
    assert_eq!(
        source.verify(&Vec::<(&str, &str)>::new(), &body, now),
        Err(VerifyError::MissingHeader("X-HOTMART-HOTTOK"))
    );
    let unconfigured = Hotmart::new([String::new()]);
    assert_eq!(
        unconfigured.verify(&vec![("X-HOTMART-HOTTOK", "")], &body, now),
        Err(VerifyError::NotConfigured("HOTMART_HOTTOK"))
    );
    assert!(!format!("{source:?}").contains("token"));
}

#[test]
fn quarantine_keeps_the_raw_body_without_the_body_hottok() {
    let source = Hotmart::new(["s3cret".to_string()]);
    let body = br#"{"hottok":"s3cret","id":"e9","event":"PURCHASE_APPROVED","data":{}}"#;
    let error = source.normalize(body, received()).unwrap_err();
    let event = source.quarantine(body, &error, received());
    assert_eq!(event.change, Change::Unparsed { reason: "missing field data.buyer.email".into() });
    assert!(event.id.as_str().starts_with("hotmart:unparsed:"));
    use base64::Engine as _;
    let raw = base64::engine::general_purpose::STANDARD.decode(event.raw.as_ref().unwrap()).unwrap();
    let raw: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(raw.get("hottok"), None);
    assert_eq!(raw["id"], "e9");
    // The same bytes quarantine under the same id, so resends dedupe.
    assert_eq!(source.quarantine(body, &error, received()).id, event.id);
    assert!(Event::from_json(&event.to_json()).is_ok());
}

#[test]
fn charge_date_update_of_an_inactive_subscription_is_only_recorded() {
    let mut raw: serde_json::Value = serde_json::from_slice(&sample("update_subscription_charge_date")).unwrap();
    raw["data"]["subscription"]["status"] = "CANCELLED_BY_CUSTOMER".into();
    let event = hotmart::normalize(raw.to_string().as_bytes(), received()).unwrap();
    assert_eq!(event.change, Change::Info);
}

#[test]
fn a_stated_time_ahead_of_the_edge_clock_is_clamped_to_five_minutes_past_it() {
    let mut raw: serde_json::Value = serde_json::from_slice(&sample("purchase_approved")).unwrap();
    let received = received();
    raw["data"]["purchase"]["approved_date"] = (received.unix_millis() + 86_400_000).into();
    let event = hotmart::normalize(raw.to_string().as_bytes(), received).unwrap();
    let limit = Timestamp::from_unix_millis(received.unix_millis() + 300_000).unwrap();
    assert_eq!(event.effective_at, limit);
    assert_eq!(event.charge.unwrap().approved_at, Some(limit));
    assert!(event.clamped);
}

#[test]
fn a_failed_charge_names_its_transaction_and_a_purchase_fact_without_one_is_refused() {
    let failed = normalize("purchase_canceled");
    assert!(failed.charge.is_some());
    let mut raw: serde_json::Value = serde_json::from_slice(&sample("purchase_refunded")).unwrap();
    raw["data"]["purchase"].as_object_mut().unwrap().remove("transaction");
    let error = hotmart::normalize(raw.to_string().as_bytes(), received()).unwrap_err();
    assert_eq!(error.to_string(), "missing field data.purchase.transaction");
}
