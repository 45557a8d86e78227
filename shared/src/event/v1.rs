//! Events of schema `lms-bridge.event.v1`, read only to upgrade them.
//!
//! During a deploy, the previous edge may still publish v1 events, and Pub/Sub may hold v1
//! events published before it. v1 stated grant-level changes stamped with the webhook's time
//! and, for subscriptions, no transaction id. The upgrade keeps what each event meant when it
//! was published, as closely as v2 can say it:
//! - an approval or completion becomes a charge approved at the webhook's time (a one-off's
//!   charge is its transaction, the grant id; a subscription's is named after the event);
//! - a refund or chargeback of a one-off revokes its charge; of a subscription (no transaction
//!   known) it revokes the whole grant, as v1 did;
//! - PURCHASE_CANCELED of a one-off fails its charge; of a subscription it names no charge
//!   and so changes nothing (v2's rule: a failed charge never ends a subscription);
//! - a dispute names a charge only for a one-off; for a subscription it is recorded only;
//! - a cancellation's end becomes its stated paid-period end; a charge-date move of an active
//!   subscription becomes a charge-date update.

use super::{Amount, Change as V2, Charge, Product, Student, Subscription, SCHEMA as V2_SCHEMA};
use crate::ids::{ChargeId, EventId, GrantId, SourceName};
use crate::timestamp::Timestamp;
use serde::Deserialize;
use std::borrow::Cow;

/// The schema tag of v1 events.
pub const SCHEMA: &str = "lms-bridge.event.v1";

/// A v1 event as published.
#[derive(Debug, Clone, Deserialize)]
pub struct Event {
    id: EventId,
    source: SourceName,
    source_event: String,
    change: V1Change,
    occurred_at: Timestamp,
    received_at: Timestamp,
    student: Option<Student>,
    product: Option<Product>,
    grant_id: Option<GrantId>,
    subscription: Option<Subscription>,
    amount: Option<Amount>,
    #[serde(default)]
    raw: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum RevokeReason {
    Refunded,
    Chargeback,
    Canceled,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum V1Change {
    Grant { paid_through: Option<Timestamp> },
    Revoke { reason: RevokeReason },
    Dispute,
    PaymentLate,
    EndsAt { at: Timestamp },
    PlanChange { plan: String },
    Info,
    Unparsed { reason: String },
}

impl Event {
    /// The same event in v2 terms.
    pub fn upgrade(self) -> super::Event {
        let one_off = self.subscription.is_none();
        // A one-off's only charge is its transaction, which v1 used as the grant id.
        let own_charge = || self.grant_id.as_ref().filter(|_| one_off).map(|g| ChargeId::trusted(g.to_string()));
        let charge = |id: Option<ChargeId>, next: Option<Timestamp>| {
            id.map(|id| Charge { id, approved_at: Some(self.occurred_at), next_charge_at: next })
        };
        let (change, charge) = match self.change {
            V1Change::Grant { paid_through } if self.source_event == "UPDATE_SUBSCRIPTION_CHARGE_DATE" => {
                match paid_through {
                    Some(at) => (V2::ChargeDate { next_charge_at: at }, None),
                    None => (V2::Info, None),
                }
            }
            V1Change::Grant { paid_through } => {
                let kind = if self.source_event == "PURCHASE_COMPLETE" { V2::Complete } else { V2::Approve };
                let id = own_charge().or_else(|| {
                    let grant = self.grant_id.as_ref()?;
                    Some(ChargeId::trusted(format!("{grant}@{}", self.occurred_at.unix_millis())))
                });
                (kind, charge(id, paid_through))
            }
            V1Change::Revoke { reason: RevokeReason::Canceled } => match own_charge() {
                Some(id) => (V2::Fail, charge(Some(id), None)),
                None => (V2::Info, None),
            },
            V1Change::Revoke { reason } => {
                let reason = match reason {
                    RevokeReason::Chargeback => super::RevokeReason::Chargeback,
                    _ => super::RevokeReason::Refunded,
                };
                (V2::Revoke { reason }, charge(own_charge(), None))
            }
            V1Change::Dispute => match own_charge() {
                Some(id) => (V2::Dispute, charge(Some(id), None)),
                None => (V2::Info, None),
            },
            V1Change::PaymentLate => (V2::PaymentLate, None),
            V1Change::EndsAt { at } if self.source_event == "SUBSCRIPTION_CANCELLATION" => {
                (V2::Cancel { period_end: Some(at) }, None)
            }
            // v1's "ends at" for a charge-date move of an inactive subscription: no effect in v2.
            V1Change::EndsAt { .. } => (V2::Info, None),
            V1Change::PlanChange { plan } => (V2::PlanChange { plan }, None),
            V1Change::Info => (V2::Info, None),
            V1Change::Unparsed { reason } => (V2::Unparsed { reason }, None),
        };
        let (student, product, grant_id) = match change {
            V2::Info | V2::Unparsed { .. } => (self.student, self.product, None),
            _ => (self.student, self.product, self.grant_id),
        };
        super::Event {
            schema: Cow::Borrowed(V2_SCHEMA),
            id: self.id,
            source: self.source,
            source_event: self.source_event,
            change,
            occurred_at: self.occurred_at,
            received_at: self.received_at,
            effective_at: self.occurred_at,
            clamped: false,
            student,
            product,
            grant_id,
            charge,
            subscription: self.subscription,
            amount: self.amount,
            raw: self.raw,
            raw_truncated: false,
            raw_sha256: None,
            admin: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::RevokeReason as V2Reason;

    fn v1(change: &str, source_event: &str, subscription: bool) -> super::super::Event {
        let subscription = if subscription {
            r#"{"code":"SUB1","status":"ACTIVE","next_charge_at":"2026-02-01T00:00:00.000Z"}"#
        } else {
            "null"
        };
        let text = format!(
            r#"{{"schema":"lms-bridge.event.v1","id":"hotmart:e1","source":"hotmart","source_event":"{source_event}",
            "change":{change},"occurred_at":"2026-01-01T00:00:00.000Z","received_at":"2026-01-01T00:00:01.000Z",
            "student":{{"key":"{key}","email":"a@b.c","name":null,"first_name":null,"last_name":null}},
            "product":{{"id":"1","name":null,"offer":null,"plan":null}},"grant_id":"{grant}",
            "subscription":{subscription},"amount":null}}"#,
            key = crate::ids::Email::parse("a@b.c").unwrap().student_key(),
            grant = if subscription == "null" { "HP1" } else { "SUB1" },
        );
        super::super::Event::from_json(text.as_bytes()).unwrap()
    }

    #[test]
    fn a_one_off_approval_becomes_its_transaction_approved_at_the_webhook_time() {
        let event = v1(r#"{"type":"grant","paid_through":null}"#, "PURCHASE_APPROVED", false);
        assert_eq!(event.schema, V2_SCHEMA);
        assert_eq!(event.change, V2::Approve);
        let charge = event.charge.unwrap();
        assert_eq!(charge.id.as_str(), "HP1");
        assert_eq!(charge.approved_at, Some(event.occurred_at));
        assert_eq!(event.effective_at, event.occurred_at);
    }

    #[test]
    fn a_subscription_renewal_keeps_its_paid_through_date_as_the_charge_coverage() {
        let event = v1(r#"{"type":"grant","paid_through":"2026-02-01T00:00:00.000Z"}"#, "PURCHASE_APPROVED", true);
        let charge = event.charge.unwrap();
        assert!(charge.id.as_str().starts_with("SUB1@"));
        assert_eq!(charge.next_charge_at, Some(Timestamp::parse_rfc3339("2026-02-01T00:00:00Z").unwrap()));
    }

    #[test]
    fn a_subscription_refund_revokes_the_grant_and_a_failed_renewal_changes_nothing() {
        let refund = v1(r#"{"type":"revoke","reason":"refunded"}"#, "PURCHASE_REFUNDED", true);
        assert_eq!(refund.change, V2::Revoke { reason: V2Reason::Refunded });
        assert_eq!(refund.charge, None);
        let failed = v1(r#"{"type":"revoke","reason":"canceled"}"#, "PURCHASE_CANCELED", true);
        assert_eq!(failed.change, V2::Info);
        let one_off_failed = v1(r#"{"type":"revoke","reason":"canceled"}"#, "PURCHASE_CANCELED", false);
        assert_eq!(one_off_failed.change, V2::Fail);
    }

    #[test]
    fn a_cancellation_keeps_its_end() {
        let event = v1(r#"{"type":"ends_at","at":"2026-02-01T00:00:00.000Z"}"#, "SUBSCRIPTION_CANCELLATION", true);
        assert_eq!(
            event.change,
            V2::Cancel { period_end: Some(Timestamp::parse_rfc3339("2026-02-01T00:00:00Z").unwrap()) }
        );
    }
}
