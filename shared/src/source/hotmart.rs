//! Hotmart webhooks, version 2.0.0 (see `hotmart-webhooks.md` in the design folder).
//!
//! Authentication is a static token in `X-HOTMART-HOTTOK`. Payloads are parsed tolerantly:
//! every field by meaning, every form seen accepted, and only what the change needs required.

use super::loose::{Flag, Instant, List, Obj, Text};
use super::{Headers, NormalizeError, Source, VerifyError};
use crate::event::{Amount, Change, Event, Product, RevokeReason, Student, Subscription, SCHEMA};
use crate::ids::{Email, EventId, GrantId, ProductId, SourceName};
use crate::timestamp::Timestamp;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use subtle::ConstantTimeEq;

/// The source name, as in `POST /webhooks/hotmart`.
pub const NAME: &str = "hotmart";
/// The header that carries the hottok.
pub const HOTTOK_HEADER: &str = "X-HOTMART-HOTTOK";

/// The Hotmart source, holding the accepted hottoks (several during a rotation).
#[derive(Clone)]
pub struct Hotmart {
    /// sha256 of each accepted token: equal-length values for a constant-time compare.
    hottoks: Vec<[u8; 32]>,
}

impl std::fmt::Debug for Hotmart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Hotmart {{ hottoks: <{} redacted> }}", self.hottoks.len())
    }
}

impl Hotmart {
    /// A source accepting any of these tokens; blank ones are ignored.
    pub fn new(hottoks: impl IntoIterator<Item = String>) -> Self {
        let hottoks =
            hottoks.into_iter().filter(|t| !t.trim().is_empty()).map(|t| Sha256::digest(t.as_bytes()).into()).collect();
        Self { hottoks }
    }
}

impl Source for Hotmart {
    fn name(&self) -> SourceName {
        SourceName::trusted(NAME.to_owned())
    }

    fn verify(&self, headers: &dyn Headers, _body: &[u8], _now: Timestamp) -> Result<(), VerifyError> {
        if self.hottoks.is_empty() {
            return Err(VerifyError::NotConfigured("HOTMART_HOTTOK"));
        }
        let sent = headers.header(HOTTOK_HEADER).ok_or(VerifyError::MissingHeader(HOTTOK_HEADER))?;
        let sent: [u8; 32] = Sha256::digest(sent.as_bytes()).into();
        // Compare against every token, without stopping early, so timing says nothing.
        let matched = self.hottoks.iter().fold(subtle::Choice::from(0), |acc, token| acc | token.ct_eq(&sent));
        if bool::from(matched) {
            Ok(())
        } else {
            Err(VerifyError::InvalidToken(HOTTOK_HEADER))
        }
    }

    fn normalize(&self, body: &[u8], received_at: Timestamp) -> Result<Event, NormalizeError> {
        normalize(body, received_at)
    }

    fn redact(&self, body: &[u8]) -> Vec<u8> {
        // The body `hottok` is the secret itself. Re-serialize only when it is there, so
        // other bodies are kept byte for byte.
        match serde_json::from_slice::<serde_json::Value>(body) {
            Ok(serde_json::Value::Object(mut map)) if map.contains_key("hottok") => {
                map.remove("hottok");
                serde_json::to_vec(&map).unwrap_or_default()
            }
            _ => body.to_vec(),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Envelope {
    id: Text,
    #[serde(alias = "creationDate")]
    creation_date: Instant,
    event: Text,
    data: Obj<Data>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Data {
    buyer: Obj<Person>,
    product: Obj<ProductRaw>,
    purchase: Obj<Purchase>,
    subscription: Obj<SubscriptionRaw>,
    subscriber: Obj<Person>,
    user: Obj<Person>,
    #[serde(alias = "dateNextCharge")]
    date_next_charge: Instant,
    cancellation_date: Instant,
    plans: List<Plan>,
    plan: Obj<Plan>,
    offer: Obj<Offer>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Person {
    email: Text,
    name: Text,
    first_name: Text,
    last_name: Text,
    code: Text,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ProductRaw {
    id: Text,
    name: Text,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Purchase {
    transaction: Text,
    price: Obj<Price>,
    offer: Obj<Offer>,
    #[serde(alias = "dateNextCharge")]
    date_next_charge: Instant,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Price {
    value: Text,
    currency_value: Text,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Offer {
    code: Text,
    key: Text,
}

impl Offer {
    fn code(&self) -> Option<&str> {
        self.code.get().or(self.key.get())
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct SubscriptionRaw {
    status: Text,
    plan: Obj<Plan>,
    subscriber: Obj<Person>,
    subscriber_code: Text,
    product: Obj<ProductRaw>,
    user: Obj<Person>,
    #[serde(alias = "dateNextCharge")]
    date_next_charge: Instant,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Plan {
    id: Text,
    name: Text,
    offer: Obj<Offer>,
    current: Flag,
}

/// Which shape of `data` an event name uses.
enum Family {
    Purchase(Change),
    Cancellation,
    SwitchPlan,
    ChargeDate,
    Info,
}

fn family(event: &str) -> Family {
    match event {
        "PURCHASE_APPROVED" | "PURCHASE_COMPLETE" => Family::Purchase(Change::Grant { paid_through: None }),
        "PURCHASE_REFUNDED" => Family::Purchase(Change::Revoke { reason: RevokeReason::Refunded }),
        "PURCHASE_CHARGEBACK" => Family::Purchase(Change::Revoke { reason: RevokeReason::Chargeback }),
        "PURCHASE_CANCELED" => Family::Purchase(Change::Revoke { reason: RevokeReason::Canceled }),
        "PURCHASE_PROTEST" => Family::Purchase(Change::Dispute),
        "PURCHASE_DELAYED" => Family::Purchase(Change::PaymentLate),
        "SUBSCRIPTION_CANCELLATION" => Family::Cancellation,
        "SWITCH_PLAN" => Family::SwitchPlan,
        "UPDATE_SUBSCRIPTION_CHARGE_DATE" => Family::ChargeDate,
        // BILLET_PRINTED, EXPIRED, OUT_OF_SHOPPING_CART, CLUB_*, ORDER_FULFILLMENT and any
        // name we do not know yet: recorded, never lost, no effect on access.
        _ => Family::Info,
    }
}

fn required<T>(value: Option<T>, field: &'static str) -> Result<T, NormalizeError> {
    value.ok_or(NormalizeError::MissingField(field))
}

fn email(text: &Text, field: &'static str) -> Result<Email, NormalizeError> {
    let raw = required(text.get(), field)?;
    Email::parse(raw).map_err(|e| NormalizeError::InvalidField { field, reason: e.to_string() })
}

fn student(person: &Person, email: Email) -> Student {
    let owned = |t: &Text| t.get().map(str::to_owned);
    Student {
        name: owned(&person.name),
        first_name: owned(&person.first_name),
        last_name: owned(&person.last_name),
        ..Student::new(email)
    }
}

fn product_id(product: Option<&ProductRaw>, field: &'static str) -> Result<ProductId, NormalizeError> {
    let raw = required(product.and_then(|p| p.id.get()), field)?;
    ProductId::parse(raw).map_err(|e| NormalizeError::InvalidField { field, reason: e.to_string() })
}

fn grant_id(raw: Option<&str>, field: &'static str) -> Result<GrantId, NormalizeError> {
    let raw = required(raw, field)?;
    GrantId::parse(raw).map_err(|e| NormalizeError::InvalidField { field, reason: e.to_string() })
}

fn owned(text: Option<&str>) -> Option<String> {
    text.map(str::to_owned)
}

/// What a family extracts beyond the envelope.
struct Parts {
    change: Change,
    student: Option<Student>,
    product: Option<Product>,
    grant_id: Option<GrantId>,
    subscription: Option<Subscription>,
    amount: Option<Amount>,
}

fn purchase(data: &Data, mut change: Change) -> Result<Parts, NormalizeError> {
    let buyer = data.buyer.get();
    let raw_product = data.product.get();
    let purchase = data.purchase.get();
    let sub = data.subscription.get();
    let subscriber_code = sub.and_then(|s| s.subscriber.get()).and_then(|s| s.code.get());
    let next_charge = purchase.and_then(|p| p.date_next_charge.0).or(sub.and_then(|s| s.date_next_charge.0));

    let student = student(
        buyer.unwrap_or(&Person::default()),
        email(buyer.map_or(&Text(None), |b| &b.email), "data.buyer.email")?,
    );
    let product = Product {
        id: product_id(raw_product, "data.product.id")?,
        name: owned(raw_product.and_then(|p| p.name.get())),
        offer: owned(purchase.and_then(|p| p.offer.get()).or(data.offer.get()).and_then(Offer::code)),
        plan: owned(sub.and_then(|s| s.plan.get()).and_then(|p| p.id.get())),
    };
    let grant = match subscriber_code {
        Some(code) => grant_id(Some(code), "data.subscription.subscriber.code")?,
        None => grant_id(purchase.and_then(|p| p.transaction.get()), "data.purchase.transaction")?,
    };
    let subscription = subscriber_code.map(|_| Subscription {
        code: grant.clone(),
        status: owned(sub.and_then(|s| s.status.get())),
        next_charge_at: next_charge,
    });
    if let Change::Grant { paid_through } = &mut change {
        // Only subscriptions are paid through a date; one-off purchases follow the policy.
        *paid_through = subscription.as_ref().and(next_charge);
    }
    let amount = purchase.and_then(|p| p.price.get()).and_then(|price| {
        Some(Amount { value: price.value.get()?.to_owned(), currency: price.currency_value.get()?.to_owned() })
    });
    Ok(Parts { change, student: Some(student), product: Some(product), grant_id: Some(grant), subscription, amount })
}

fn cancellation(data: &Data) -> Result<Parts, NormalizeError> {
    let subscriber = data.subscriber.get();
    let raw_product = data.product.get();
    let email = email(subscriber.map_or(&Text(None), |s| &s.email), "data.subscriber.email")?;
    let grant = grant_id(subscriber.and_then(|s| s.code.get()), "data.subscriber.code")?;
    let at = required(data.date_next_charge.0, "data.date_next_charge")?;
    let plan = data.subscription.get().and_then(|s| s.plan.get()).and_then(|p| p.id.get());
    Ok(Parts {
        change: Change::EndsAt { at },
        student: Some(student(subscriber.unwrap_or(&Person::default()), email)),
        product: Some(Product {
            id: product_id(raw_product, "data.product.id")?,
            name: owned(raw_product.and_then(|p| p.name.get())),
            offer: None,
            plan: owned(plan),
        }),
        subscription: Some(Subscription { code: grant.clone(), status: None, next_charge_at: Some(at) }),
        grant_id: Some(grant),
        amount: None,
    })
}

fn switch_plan(data: &Data) -> Result<Parts, NormalizeError> {
    let sub = data.subscription.get();
    let raw_product = sub.and_then(|s| s.product.get()).or(data.product.get());
    let user = sub.and_then(|s| s.user.get());
    let email = email(user.map_or(&Text(None), |u| &u.email), "data.subscription.user.email")?;
    let grant = grant_id(sub.and_then(|s| s.subscriber_code.get()), "data.subscription.subscriber_code")?;
    let current = data.plans.0.iter().find(|p| p.current.0 == Some(true));
    let plan = required(current.and_then(|p| p.id.get()), "data.plans[current].id")?;
    Ok(Parts {
        change: Change::PlanChange { plan: plan.to_owned() },
        student: Some(student(user.unwrap_or(&Person::default()), email)),
        product: Some(Product {
            id: product_id(raw_product, "data.subscription.product.id")?,
            name: owned(raw_product.and_then(|p| p.name.get())),
            offer: owned(current.and_then(|p| p.offer.get()).and_then(Offer::code)),
            plan: Some(plan.to_owned()),
        }),
        subscription: Some(Subscription {
            code: grant.clone(),
            status: owned(sub.and_then(|s| s.status.get())),
            next_charge_at: sub.and_then(|s| s.date_next_charge.0),
        }),
        grant_id: Some(grant),
        amount: None,
    })
}

fn charge_date(data: &Data) -> Result<Parts, NormalizeError> {
    let subscriber = data.subscriber.get();
    let sub = data.subscription.get();
    let raw_product = sub.and_then(|s| s.product.get()).or(data.product.get());
    let email = email(subscriber.map_or(&Text(None), |s| &s.email), "data.subscriber.email")?;
    let grant = grant_id(subscriber.and_then(|s| s.code.get()), "data.subscriber.code")?;
    let next = required(
        sub.and_then(|s| s.date_next_charge.0).or(data.date_next_charge.0),
        "data.subscription.date_next_charge",
    )?;
    let status = sub.and_then(|s| s.status.get());
    // An active subscription is paid through its next charge; any other status only moves
    // the end of an access that is already running out.
    let change = if status.is_none_or(|s| s.eq_ignore_ascii_case("ACTIVE")) {
        Change::Grant { paid_through: Some(next) }
    } else {
        Change::EndsAt { at: next }
    };
    let plan = data.plan.get();
    Ok(Parts {
        change,
        student: Some(student(subscriber.unwrap_or(&Person::default()), email)),
        product: Some(Product {
            id: product_id(raw_product, "data.subscription.product.id")?,
            name: owned(raw_product.and_then(|p| p.name.get())),
            offer: owned(plan.and_then(|p| p.offer.get()).and_then(Offer::code)),
            plan: owned(plan.and_then(|p| p.id.get())),
        }),
        subscription: Some(Subscription { code: grant.clone(), status: owned(status), next_charge_at: Some(next) }),
        grant_id: Some(grant),
        amount: None,
    })
}

/// Info events keep whatever identifies the student and product, and never fail on it.
fn info(data: &Data) -> Parts {
    let sub = data.subscription.get();
    let person = [data.buyer.get(), data.subscriber.get(), data.user.get(), sub.and_then(|s| s.user.get())]
        .into_iter()
        .flatten()
        .find_map(|p| Some((p, Email::parse(p.email.get()?).ok()?)));
    let raw_product = data.product.get().or(sub.and_then(|s| s.product.get()));
    let product = raw_product.and_then(|p| {
        Some(Product { id: ProductId::parse(p.id.get()?).ok()?, name: owned(p.name.get()), offer: None, plan: None })
    });
    Parts {
        change: Change::Info,
        student: person.map(|(p, email)| student(p, email)),
        product,
        grant_id: None,
        subscription: None,
        amount: None,
    }
}

/// Normalizes a Hotmart 2.0.0 webhook body.
pub fn normalize(body: &[u8], received_at: Timestamp) -> Result<Event, NormalizeError> {
    let Obj(envelope) =
        serde_json::from_slice::<Obj<Envelope>>(body).map_err(|e| NormalizeError::NotJson(e.to_string()))?;
    let envelope = envelope.ok_or_else(|| NormalizeError::NotJson("expected an object at the top level".into()))?;
    let id = required(envelope.id.get(), "id")?;
    let id = EventId::parse(format!("{NAME}:{id}"))
        .map_err(|e| NormalizeError::InvalidField { field: "id", reason: e.to_string() })?;
    let name = required(envelope.event.get(), "event")?;
    let empty = Data::default();
    let data = envelope.data.get().unwrap_or(&empty);
    let parts = match family(name) {
        Family::Purchase(change) => purchase(data, change)?,
        Family::Cancellation => cancellation(data)?,
        Family::SwitchPlan => switch_plan(data)?,
        Family::ChargeDate => charge_date(data)?,
        Family::Info => info(data),
    };
    let occurred_at = match (&parts.change, envelope.creation_date.0) {
        (_, Some(at)) => at,
        // Ordering of access changes relies on the platform's clock: required for them.
        (change, None) if change.affects_access() => return Err(NormalizeError::MissingField("creation_date")),
        (_, None) => received_at,
    };
    Ok(Event {
        schema: Cow::Borrowed(SCHEMA),
        id,
        source: SourceName::trusted(NAME.to_owned()),
        source_event: name.to_owned(),
        change: parts.change,
        occurred_at,
        received_at,
        student: parts.student,
        product: parts.product,
        grant_id: parts.grant_id,
        subscription: parts.subscription,
        amount: parts.amount,
        raw: None,
    })
}
