//! Hotmart webhooks for scenarios, built from the one fixture set (`tests/fixtures/hotmart/`):
//! start from a sample, say what differs, and take the body the edge receives
//! ([`Webhook::bytes`]) or the normalized event the edge would publish ([`Webhook::event`]).
//!
//! ```no_run
//! # use lms_bridge_tests::webhooks::Webhook;
//! let body = Webhook::purchase_approved().id("a1").product(6000).transaction("HP90").buyer("ana@example.com").bytes();
//! ```

use crate::fixture;
use lms_bridge_shared::source::hotmart;
use lms_bridge_shared::Timestamp;
use serde_json::Value;
use std::time::{SystemTime, UNIX_EPOCH};

/// Now, in Unix milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

/// One day in milliseconds.
pub const DAY_MS: i64 = 86_400_000;

/// A Hotmart webhook body under construction: a sample, edited field by field.
#[derive(Clone, Debug)]
pub struct Webhook {
    raw: Value,
}

impl Webhook {
    /// The sample `tests/fixtures/hotmart/{name}.json`, unchanged.
    pub fn sample(name: &str) -> Self {
        Self { raw: serde_json::from_slice(&fixture(&format!("hotmart/{name}.json"))).unwrap() }
    }

    /// `PURCHASE_APPROVED` of a one-off purchase (product 4774438, Ana Souza).
    pub fn purchase_approved() -> Self {
        Self::sample("purchase_approved")
    }

    /// `PURCHASE_REFUNDED` of the same purchase.
    pub fn purchase_refunded() -> Self {
        Self::sample("purchase_refunded")
    }

    /// `PURCHASE_CANCELED` (a payment that did not go through).
    pub fn purchase_canceled() -> Self {
        Self::sample("purchase_canceled")
    }

    /// `PURCHASE_APPROVED` of a subscription charge.
    pub fn subscription_charge() -> Self {
        Self::sample("subscription_purchase_approved")
    }

    /// `SUBSCRIPTION_CANCELLATION`.
    pub fn subscription_cancellation() -> Self {
        Self::sample("subscription_cancellation")
    }

    /// Whether this is a subscription cancellation (its fields live elsewhere).
    fn is_cancellation(&self) -> bool {
        self.raw["event"] == "SUBSCRIPTION_CANCELLATION"
    }

    /// The webhook's id (Hotmart's delivery id; the event becomes `hotmart:{id}`).
    pub fn id(mut self, id: &str) -> Self {
        self.raw["id"] = id.into();
        self
    }

    /// The product bought.
    pub fn product(mut self, product: u64) -> Self {
        self.raw["data"]["product"]["id"] = product.into();
        self
    }

    /// The purchase's transaction (a grant: one per purchase or charge).
    pub fn transaction(mut self, transaction: &str) -> Self {
        self.raw["data"]["purchase"]["transaction"] = transaction.into();
        self
    }

    /// The buyer's email (the subscriber's, on a cancellation).
    pub fn buyer(mut self, email: &str) -> Self {
        let who = if self.is_cancellation() { "subscriber" } else { "buyer" };
        self.raw["data"][who]["email"] = email.into();
        self
    }

    /// The subscriber code (the subscription the charge or cancellation belongs to).
    pub fn subscriber_code(mut self, code: &str) -> Self {
        if self.is_cancellation() {
            self.raw["data"]["subscriber"]["code"] = code.into();
        } else {
            self.raw["data"]["subscription"]["subscriber"]["code"] = code.into();
        }
        self
    }

    /// When Hotmart created the webhook (`creation_date`, Unix ms).
    pub fn at(mut self, ms: i64) -> Self {
        self.raw["creation_date"] = ms.into();
        self
    }

    /// When the purchase was approved (`approved_date`, Unix ms).
    pub fn approved_at(mut self, ms: i64) -> Self {
        self.raw["data"]["purchase"]["approved_date"] = ms.into();
        self
    }

    /// When the order was placed (`order_date`, Unix ms).
    pub fn ordered_at(mut self, ms: i64) -> Self {
        self.raw["data"]["purchase"]["order_date"] = ms.into();
        self
    }

    /// Created and approved at `ms` (a purchase approved long ago: a fixed term near its end).
    pub fn created_and_approved_at(self, ms: i64) -> Self {
        self.at(ms).approved_at(ms)
    }

    /// Created now and, if the sample has an approval date, approved a second ago (the
    /// samples' dates are a year old).
    pub fn now(self) -> Self {
        let now = now_ms();
        let approved = self.raw["data"]["purchase"].get("approved_date").is_some();
        let fresh = self.at(now);
        if approved {
            fresh.approved_at(now - 1_000)
        } else {
            fresh
        }
    }

    /// The paid-through date: the next charge (`date_next_charge`, Unix ms).
    pub fn next_charge(mut self, ms: i64) -> Self {
        if self.is_cancellation() {
            self.raw["data"]["date_next_charge"] = ms.into();
        } else {
            self.raw["data"]["purchase"]["date_next_charge"] = ms.into();
        }
        self
    }

    /// When the subscriber cancelled (`cancellation_date`, Unix ms).
    pub fn cancelled_at(mut self, ms: i64) -> Self {
        self.raw["data"]["cancellation_date"] = ms.into();
        self
    }

    /// The charge's recurrence number (1: the first charge of a subscription).
    pub fn recurrence(mut self, n: u32) -> Self {
        self.raw["data"]["purchase"]["recurrence_number"] = n.into();
        self
    }

    /// Any other change, on the raw JSON.
    pub fn edit(mut self, edit: impl FnOnce(&mut Value)) -> Self {
        edit(&mut self.raw);
        self
    }

    /// The raw JSON.
    pub fn json(&self) -> &Value {
        &self.raw
    }

    /// The body as Hotmart posts it.
    pub fn bytes(&self) -> Vec<u8> {
        self.raw.to_string().into_bytes()
    }

    /// The normalized event (schema v2, keyed without a pepper) the edge publishes for this
    /// body, received now: what a test pushes straight to the backend.
    pub fn event(&self) -> Value {
        self.event_received(Timestamp::from_unix_millis(now_ms()).unwrap())
    }

    /// The same, received at `received`.
    pub fn event_received(&self, received: Timestamp) -> Value {
        let event = hotmart::normalize(&self.bytes(), received).unwrap();
        serde_json::to_value(event).unwrap()
    }
}
