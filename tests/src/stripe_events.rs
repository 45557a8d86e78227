//! Stripe webhook bodies for chain tests: the real-shaped fixtures of
//! `shared/tests/fixtures/stripe/` (one per event type and API rendering), with the fields a
//! scenario needs set to its own ids, buyers and dates, and signed as Stripe signs them.

use lms_bridge_shared::source::Stripe;
use serde_json::Value;
use std::time::{SystemTime, UNIX_EPOCH};

/// An API rendering of the fixtures: before `2025-03-31.basil`, or since.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rendering {
    /// The older shapes (`subscription` on the invoice, `price` on its lines, `invoice` on a
    /// charge).
    Acacia,
    /// `2025-03-31.basil`: `parent.subscription_details`, `pricing.price_details`, no charge
    /// ↔ invoice link.
    Basil,
}

/// A Stripe event body under construction.
#[derive(Clone, Debug)]
pub struct StripeEvent(pub Value);

impl StripeEvent {
    /// The fixture `{kind}.{version}.json`, e.g. `invoice.paid` in the basil rendering.
    pub fn fixture(kind: &str, rendering: Rendering) -> Self {
        let dir = crate::repo_root().join("shared/tests/fixtures/stripe");
        let prefix = format!("{kind}.");
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.starts_with(&prefix) && n.ends_with(".json"))
            .filter(|n| n[prefix.len()..].chars().next().is_some_and(|c| c.is_ascii_digit()))
            .collect();
        names.sort();
        let name = match rendering {
            Rendering::Basil => names.iter().find(|n| n.contains("basil")),
            Rendering::Acacia => names.iter().find(|n| !n.contains("basil")),
        }
        .unwrap_or_else(|| panic!("no {rendering:?} fixture for {kind} in {}", dir.display()));
        let text = std::fs::read(dir.join(name)).unwrap();
        Self(serde_json::from_slice(&text).unwrap())
    }

    /// Sets the field at a JSON pointer (`/data/object/customer_email`); the parent must exist.
    pub fn set(mut self, pointer: &str, value: impl Into<Value>) -> Self {
        let slot = self.0.pointer_mut(pointer).unwrap_or_else(|| panic!("no field {pointer} in the fixture"));
        *slot = value.into();
        self
    }

    /// The event id (`evt_…`): unique per test, as Stripe's are.
    pub fn id(self, id: &str) -> Self {
        self.set("/id", id)
    }

    /// The event's `created` time, in seconds.
    pub fn created(self, seconds: i64) -> Self {
        self.set("/created", seconds)
    }

    /// The body as Stripe sends it (pretty-printed).
    pub fn bytes(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(&self.0).unwrap()
    }

    /// The `Stripe-Signature` header for `body` under `secret`, signed now.
    pub fn signature(secret: &str, body: &[u8]) -> String {
        Stripe::sign(secret, now_seconds(), body)
    }
}

/// The clock, in seconds.
pub fn now_seconds() -> i64 {
    i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()).unwrap()
}

/// A subscription invoice paid: `invoice` of `subscription` for `product`/`price`, by `email`,
/// covering `[start, end)` (seconds), paid at `start`.
#[allow(clippy::too_many_arguments, reason = "a scenario names every id of the invoice")]
pub fn invoice_paid(
    rendering: Rendering,
    id: &str,
    email: &str,
    subscription: &str,
    invoice: &str,
    product: &str,
    price: &str,
    (start, end): (i64, i64),
) -> StripeEvent {
    let event = StripeEvent::fixture("invoice.paid", rendering)
        .id(id)
        .created(start)
        .set("/data/object/id", invoice)
        .set("/data/object/customer_email", email)
        .set("/data/object/lines/data/0/period/start", start)
        .set("/data/object/lines/data/0/period/end", end);
    match rendering {
        Rendering::Basil => event
            .set("/data/object/parent/subscription_details/subscription", subscription)
            .set("/data/object/lines/data/0/parent/subscription_item_details/subscription", subscription)
            .set("/data/object/lines/data/0/pricing/price_details/product", product)
            .set("/data/object/lines/data/0/pricing/price_details/price", price)
            .set("/data/object/status_transitions/paid_at", start),
        Rendering::Acacia => event
            .set("/data/object/subscription", subscription)
            .set("/data/object/lines/data/0/subscription", subscription)
            .set("/data/object/lines/data/0/price/product", product)
            .set("/data/object/lines/data/0/price/id", price)
            .set("/data/object/lines/data/0/plan/product", product)
            .set("/data/object/lines/data/0/plan/id", price),
    }
}

/// A charge fully refunded (the basil rendering names no invoice: only the payment intent).
pub fn charge_refunded(
    rendering: Rendering,
    id: &str,
    charge: &str,
    payment_intent: &str,
    invoice: Option<&str>,
    at: i64,
) -> StripeEvent {
    let event = StripeEvent::fixture("charge.refunded", rendering)
        .id(id)
        .created(at)
        .set("/data/object/id", charge)
        .set("/data/object/payment_intent", payment_intent);
    match (rendering, invoice) {
        (Rendering::Acacia, Some(invoice)) => event.set("/data/object/invoice", invoice),
        _ => event,
    }
}

/// A one-off Checkout payment completed by `email` under `payment_intent`; `product` in the
/// session's metadata, or none (then only the session's line items name it).
pub fn checkout_completed(
    rendering: Rendering,
    id: &str,
    email: &str,
    payment_intent: &str,
    product: Option<&str>,
    at: i64,
) -> StripeEvent {
    let event = StripeEvent::fixture("checkout.session.completed", rendering)
        .id(id)
        .created(at)
        .set("/data/object/mode", "payment")
        .set("/data/object/payment_status", "paid")
        .set("/data/object/subscription", Value::Null)
        .set("/data/object/payment_intent", payment_intent)
        .set("/data/object/customer_details/email", email);
    let mut event = event;
    if let Some(invoice) = event.0.pointer_mut("/data/object/invoice") {
        *invoice = Value::Null;
    }
    let metadata = match product {
        Some(product) => serde_json::json!({ "product_id": product }),
        None => serde_json::json!({}),
    };
    event.set("/data/object/metadata", metadata)
}

/// A dispute event (`charge.dispute.created` or `.closed`) on `payment_intent`'s charge.
pub fn dispute(kind: &str, id: &str, charge: &str, payment_intent: &str, status: &str, at: i64) -> StripeEvent {
    StripeEvent::fixture(kind, Rendering::Basil)
        .id(id)
        .created(at)
        .set("/data/object/charge", charge)
        .set("/data/object/payment_intent", payment_intent)
        .set("/data/object/status", status)
}

/// A subscription ended at `at` (`customer.subscription.deleted`, basil).
pub fn subscription_deleted(id: &str, subscription: &str, product: &str, at: i64) -> StripeEvent {
    StripeEvent::fixture("customer.subscription.deleted", Rendering::Basil)
        .id(id)
        .created(at)
        .set("/data/object/id", subscription)
        .set("/data/object/ended_at", at)
        .set("/data/object/canceled_at", at)
        .set("/data/object/cancel_at", Value::Null)
        .set("/data/object/items/data/0/price/product", product)
        .set("/data/object/items/data/0/subscription", subscription)
}
