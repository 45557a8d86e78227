//! The normalized event, schema `lms-bridge.event.v2`: what the edge publishes and the only
//! thing the backend accepts (see docs/architecture.md and docs/access-rules.md).
//!
//! v2 states facts about *charges* with their business time (v1 stated grant-level changes
//! stamped with the webhook's own time). The backend still reads v1 events, which may be in
//! flight in Pub/Sub during a deploy: [`Event::from_json`] upgrades them (see [`v1`]).

pub mod v1;

use crate::ids::{ChargeId, Email, EventId, GrantId, Pepper, ProductId, SourceName, StudentKey};
use crate::timestamp::Timestamp;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::fmt;

/// The schema tag every event carries.
pub const SCHEMA: &str = "lms-bridge.event.v2";

/// A platform event, normalized.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Always [`SCHEMA`]; checked on read by [`Event::from_json`].
    pub schema: Cow<'static, str>,
    /// Dedupe key: `source:source's own event id`.
    pub id: EventId,
    /// The platform the event came from.
    pub source: SourceName,
    /// The platform's own event name, verbatim.
    pub source_event: String,
    /// What the event means for access.
    pub change: Change,
    /// The platform's timestamp of the webhook (its envelope).
    pub occurred_at: Timestamp,
    /// The edge clock when the webhook arrived.
    pub received_at: Timestamp,
    /// The business time of the fact (an approval's approval time, a cancellation's
    /// cancellation date, …; else `occurred_at`), never later than `received_at` + 5 minutes.
    pub effective_at: Timestamp,
    /// Whether a stated time was later than `received_at` + 5 minutes and was clamped.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub clamped: bool,
    /// Who the event is about; absent only for `info` and `unparsed` events.
    pub student: Option<Student>,
    /// The product; absent only for `info` and `unparsed` events.
    pub product: Option<Product>,
    /// The grant: transaction code, or subscriber code for subscriptions.
    pub grant_id: Option<GrantId>,
    /// The charge (one payment) a purchase event is about.
    #[serde(default)]
    pub charge: Option<Charge>,
    /// Subscription details, when the event concerns one.
    pub subscription: Option<Subscription>,
    /// The amount charged, as the platform wrote it.
    pub amount: Option<Amount>,
    /// Base64 of the raw body (credentials removed); only on `unparsed` events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<String>,
    /// `raw` holds only the first bytes of the body: the whole did not fit a queue message.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub raw_truncated: bool,
    /// sha256 hex of the whole (redacted) body, when `raw` is truncated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_sha256: Option<String>,
    /// Who asked for an admin event (source `admin`) and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<AdminNote>,
}

/// The operator behind an admin event, and their reason: shown on the student's timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminNote {
    /// The operator's email (staff, not a student: never logged all the same).
    pub by: String,
    /// Why, in the operator's words.
    pub reason: String,
}

/// The student an event concerns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Student {
    /// sha256 hex of the normalized email; the only identity that may be logged.
    pub key: StudentKey,
    /// Trimmed, lowercased email.
    pub email: Email,
    /// Full name, if known.
    pub name: Option<String>,
    /// First name, if known.
    pub first_name: Option<String>,
    /// Last name, if known.
    pub last_name: Option<String>,
}

impl Student {
    /// A student from an email; the key is derived from it so the two always agree.
    pub fn new(email: Email) -> Self {
        Self { key: email.student_key(), email, name: None, first_name: None, last_name: None }
    }
}

/// The product an event concerns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Product {
    /// The platform's product id, as a string.
    pub id: ProductId,
    /// Product name, if sent.
    pub name: Option<String>,
    /// Offer code, if sent.
    pub offer: Option<String>,
    /// Subscription plan id, if sent.
    pub plan: Option<String>,
}

/// Subscription details.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscription {
    /// Subscriber code: the grant id of every charge of this subscription.
    pub code: GrantId,
    /// The platform's status text (`ACTIVE`, `CANCELLED`, …), verbatim.
    pub status: Option<String>,
    /// When the next charge is due.
    pub next_charge_at: Option<Timestamp>,
}

/// One payment, as a purchase event states it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Charge {
    /// The platform's transaction id.
    pub id: ChargeId,
    /// When the platform approved it (clamped like `effective_at`), if the event says.
    pub approved_at: Option<Timestamp>,
    /// The charge's own next-charge date: the end of the period it pays for (subscriptions).
    pub next_charge_at: Option<Timestamp>,
}

/// An amount as the platform sent it (decimal text, currency code).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Amount {
    /// Decimal value as text, never a float.
    pub value: String,
    /// ISO 4217 currency code.
    pub currency: String,
}

/// Why a charge was revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevokeReason {
    /// Money returned to the buyer.
    Refunded,
    /// The card holder disputed the charge with the bank.
    Chargeback,
}

/// The fact an event states (docs/access-rules.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Change {
    /// A charge was approved (Hotmart PURCHASE_APPROVED).
    Approve,
    /// A charge's warranty period ended (PURCHASE_COMPLETE): confirms, never extends.
    Complete,
    /// A charge was refunded or charged back. Without a charge (only from v1 events), the
    /// whole grant is revoked.
    Revoke {
        /// Why.
        reason: RevokeReason,
    },
    /// A charge did not go through (PURCHASE_CANCELED): it never gives access.
    Fail,
    /// A dispute was opened on a charge; the product's dispute policy decides.
    Dispute,
    /// A subscription charge is late: no change (access runs to the paid date + grace).
    PaymentLate,
    /// A subscription was cancelled at `effective_at`.
    Cancel {
        /// The end of the paid period the cancellation states, if it does.
        period_end: Option<Timestamp>,
    },
    /// An active subscription's next charge date was moved.
    ChargeDate {
        /// The new next charge date.
        next_charge_at: Timestamp,
    },
    /// A subscription moved to another plan.
    PlanChange {
        /// The new plan id.
        plan: String,
    },
    /// An operator ended the student's access to the product's course by hand (admin events
    /// only): the grants approved before `effective_at` no longer give it; a later approval
    /// (a new purchase, a renewal, a grant by hand) does again.
    Block,
    /// An operator asked for the course's failed LMS actions to be run again (admin events
    /// only): no fact, no access change.
    Retry,
    /// Recorded, no effect on access.
    Info,
    /// Authenticated but not normalizable; kept with its raw body for replay.
    Unparsed {
        /// Why normalization failed.
        reason: String,
    },
}

impl Change {
    /// The `type` tag, as used in the Pub/Sub `change` attribute.
    pub fn kind(&self) -> &'static str {
        match self {
            Change::Approve => "approve",
            Change::Complete => "complete",
            Change::Revoke { .. } => "revoke",
            Change::Fail => "fail",
            Change::Dispute => "dispute",
            Change::PaymentLate => "payment_late",
            Change::Cancel { .. } => "cancel",
            Change::ChargeDate { .. } => "charge_date",
            Change::PlanChange { .. } => "plan_change",
            Change::Block => "block",
            Change::Retry => "retry",
            Change::Info => "info",
            Change::Unparsed { .. } => "unparsed",
        }
    }

    /// Whether this change acts on a grant (and so needs student, product and grant id).
    pub fn affects_access(&self) -> bool {
        !matches!(self, Change::Info | Change::Unparsed { .. })
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind())
    }
}

/// Why bytes are not a usable `lms-bridge.event.v1` event.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// Not JSON, or not the event's shape.
    #[error("malformed event: {0}")]
    Malformed(#[from] serde_json::Error),
    /// Another schema (or none).
    #[error("unsupported schema {found:?}, expected {SCHEMA:?}")]
    Schema {
        /// The schema found, if any.
        found: Option<String>,
    },
    /// A change that acts on access without what it needs.
    #[error("a {change} event needs {field}")]
    Incomplete {
        /// The change type.
        change: &'static str,
        /// The missing field.
        field: &'static str,
    },
}

impl Event {
    /// Reads an event, checking the schema tag before anything else. A v1 event (published
    /// by an edge of the previous release) is upgraded to v2.
    pub fn from_json(bytes: &[u8]) -> Result<Self, EventError> {
        #[derive(Deserialize)]
        struct Probe<'a> {
            #[serde(borrow)]
            schema: Option<Cow<'a, str>>,
        }
        let probe: Probe<'_> = serde_json::from_slice(bytes)?;
        let event = match probe.schema.as_deref() {
            Some(SCHEMA) => serde_json::from_slice::<Event>(bytes)?,
            Some(v1::SCHEMA) => serde_json::from_slice::<v1::Event>(bytes)?.upgrade(),
            _ => return Err(EventError::Schema { found: probe.schema.map(Cow::into_owned) }),
        };
        event.check_complete()?;
        Ok(event)
    }

    /// The event as JSON bytes (the Pub/Sub message data).
    pub fn to_json(&self) -> Vec<u8> {
        // Serializing plain structs with string keys cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Checks that a change acting on access carries student, product and grant id, or names
    /// a charge or a grant id the backend resolves them from (a refund that names only its
    /// charge, a subscription update that names no student).
    pub fn check_complete(&self) -> Result<(), EventError> {
        if !self.change.affects_access() {
            return Ok(());
        }
        if self.student.is_some() && self.product.is_some() && self.grant_id.is_some() {
            return Ok(());
        }
        if self.charge.is_some() || self.grant_id.is_some() {
            return Ok(());
        }
        let change = self.change.kind();
        if self.student.is_none() {
            return Err(EventError::Incomplete { change, field: "student" });
        }
        if self.product.is_none() {
            return Err(EventError::Incomplete { change, field: "product" });
        }
        if self.grant_id.is_none() {
            return Err(EventError::Incomplete { change, field: "grant_id" });
        }
        Ok(())
    }

    /// The student key, if the event names a student.
    pub fn student_key(&self) -> Option<&StudentKey> {
        self.student.as_ref().map(|s| &s.key)
    }

    /// Derives the student key again from the email under `pepper` (normalizers key without
    /// one; the edge and the backend apply the deployment's).
    pub fn key_student(&mut self, pepper: Option<&Pepper>) {
        if let Some(student) = &mut self.student {
            student.key = student.email.student_key_with(pepper);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Event {
        Event {
            schema: Cow::Borrowed(SCHEMA),
            id: EventId::parse("hotmart:abc").unwrap(),
            source: SourceName::parse("hotmart").unwrap(),
            source_event: "PURCHASE_APPROVED".into(),
            change: Change::Approve,
            occurred_at: Timestamp::from_unix_millis(1_000).unwrap(),
            received_at: Timestamp::from_unix_millis(2_000).unwrap(),
            effective_at: Timestamp::from_unix_millis(900).unwrap(),
            clamped: false,
            student: Some(Student::new(Email::parse("a@b.c").unwrap())),
            product: Some(Product { id: ProductId::parse("1").unwrap(), name: None, offer: None, plan: None }),
            grant_id: Some(GrantId::parse("HP1").unwrap()),
            charge: Some(Charge {
                id: ChargeId::parse("HP1").unwrap(),
                approved_at: Some(Timestamp::from_unix_millis(900).unwrap()),
                next_charge_at: None,
            }),
            subscription: None,
            amount: None,
            raw: None,
            raw_truncated: false,
            raw_sha256: None,
            admin: None,
        }
    }

    #[test]
    fn round_trips_and_tags_the_change() {
        let event = sample();
        let json = event.to_json();
        let text = String::from_utf8(json.clone()).unwrap();
        assert!(text.contains(r#""change":{"type":"approve"}"#), "{text}");
        assert_eq!(Event::from_json(&json).unwrap(), event);
    }

    #[test]
    fn another_schema_is_refused() {
        let text = String::from_utf8(sample().to_json()).unwrap().replace(".v2", ".v3");
        match Event::from_json(text.as_bytes()) {
            Err(EventError::Schema { found }) => assert_eq!(found.as_deref(), Some("lms-bridge.event.v3")),
            other => panic!("expected a schema error, got {other:?}"),
        }
        assert!(matches!(Event::from_json(b"{}"), Err(EventError::Schema { found: None })));
    }

    #[test]
    fn unknown_fields_are_ignored_and_incomplete_grants_refused() {
        let mut value: serde_json::Value = serde_json::from_slice(&sample().to_json()).unwrap();
        value["future_field"] = 1.into();
        assert!(Event::from_json(value.to_string().as_bytes()).is_ok());
        value["grant_id"] = serde_json::Value::Null;
        value["charge"] = serde_json::Value::Null;
        assert!(matches!(
            Event::from_json(value.to_string().as_bytes()),
            Err(EventError::Incomplete { field: "grant_id", .. })
        ));
    }
}
