//! Hotmart webhooks, version 2.0.0 (what this adapter relies on: docs/hotmart.md).
//!
//! Authentication is a static token in `X-HOTMART-HOTTOK`. Payloads are parsed tolerantly:
//! every field by meaning, every form seen accepted, and only what the change needs required.

use super::loose::{Flag, Instant, List, Obj, Text};
use super::redact::{remove_secret_keys, Scrubber};
use super::{Headers, NormalizeError, Source, VerifyError};
use crate::event::{Amount, Change, Charge, Event, Product, RevokeReason, Student, Subscription, SCHEMA};
use crate::ids::{ChargeId, Email, EventId, GrantId, ProductId, SourceName};
use crate::timestamp::Timestamp;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use subtle::ConstantTimeEq;

/// The source name, as in `POST /webhooks/hotmart`.
pub const NAME: &str = "hotmart";
/// The header that carries the hottok.
pub const HOTTOK_HEADER: &str = "X-HOTMART-HOTTOK";
/// The setting holding the accepted hottoks (comma-separated during a rotation).
pub const SECRET_SETTING: &str = "HOTMART_HOTTOK";

/// Longest name kept (student and product names): a megabyte of name must not travel on to
/// Firestore's 1 MiB document limit or the LMS.
pub const MAX_NAME_CHARS: usize = 200;
/// Longest other free text kept (offer, plan, status, event name, amount).
pub const MAX_TEXT_CHARS: usize = 256;

/// The Hotmart source, holding the accepted hottoks (several during a rotation).
#[derive(Clone)]
pub struct Hotmart {
    /// sha256 of each accepted token: equal-length values for a constant-time compare.
    hottoks: Vec<[u8; 32]>,
    /// The tokens in the one form that can only cut them out of bodies (never printed).
    scrubber: Scrubber,
}

impl std::fmt::Debug for Hotmart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Hotmart {{ hottoks: <{} redacted> }}", self.hottoks.len())
    }
}

impl Hotmart {
    /// A source accepting any of these tokens; blank ones are ignored.
    pub fn new(hottoks: impl IntoIterator<Item = String>) -> Self {
        let plain: Vec<String> = hottoks.into_iter().filter(|t| !t.trim().is_empty()).collect();
        let hottoks = plain.iter().map(|t| Sha256::digest(t.as_bytes()).into()).collect();
        Self { hottoks, scrubber: Scrubber::new(&plain) }
    }
}

impl Source for Hotmart {
    fn name(&self) -> SourceName {
        SourceName::trusted(NAME.to_owned())
    }

    fn secret_setting(&self) -> String {
        SECRET_SETTING.to_owned()
    }

    fn verify(&self, headers: &dyn Headers, _body: &[u8], now: Timestamp) -> Result<(), VerifyError> {
        // The token is the whole credential: nothing in the body to check.
        self.verify_headers(headers, now)
    }

    fn verify_headers(&self, headers: &dyn Headers, _now: Timestamp) -> Result<(), VerifyError> {
        if self.hottoks.is_empty() {
            return Err(VerifyError::NotConfigured(SECRET_SETTING));
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

    fn sent_at(&self, body: &[u8]) -> Option<Timestamp> {
        sent_at(body)
    }

    fn redact(&self, body: &[u8]) -> Vec<u8> {
        // By value: every configured token, however it is spelled, wherever it is. Then by
        // name: `hottok` keys at any depth. Bodies without such keys keep their bytes.
        let scrubbed = self.scrubber.scrub(body);
        remove_secret_keys(&scrubbed).unwrap_or(scrubbed)
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
    switch_plan_date: Instant,
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
    approved_date: Instant,
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
        "PURCHASE_APPROVED" => Family::Purchase(Change::Approve),
        "PURCHASE_COMPLETE" => Family::Purchase(Change::Complete),
        "PURCHASE_REFUNDED" => Family::Purchase(Change::Revoke { reason: RevokeReason::Refunded }),
        "PURCHASE_CHARGEBACK" => Family::Purchase(Change::Revoke { reason: RevokeReason::Chargeback }),
        // The payment did not go through: a failed charge, never a revocation.
        "PURCHASE_CANCELED" => Family::Purchase(Change::Fail),
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
    let clipped = |t: &Text| name(t.get());
    Student {
        name: clipped(&person.name),
        first_name: clipped(&person.first_name),
        last_name: clipped(&person.last_name),
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

/// At most `max` characters of `text`.
fn clip(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => text[..end].to_owned(),
        None => text.to_owned(),
    }
}

/// Free text, clipped to [`MAX_TEXT_CHARS`].
fn owned(text: Option<&str>) -> Option<String> {
    text.map(|t| clip(t, MAX_TEXT_CHARS))
}

/// A name, clipped to [`MAX_NAME_CHARS`].
fn name(text: Option<&str>) -> Option<String> {
    text.map(|t| clip(t, MAX_NAME_CHARS))
}

/// What a family extracts beyond the envelope.
struct Parts {
    change: Change,
    /// The fact's business time, when the body states one (else the envelope time).
    business_time: Option<Timestamp>,
    charge: Option<Charge>,
    student: Option<Student>,
    product: Option<Product>,
    grant_id: Option<GrantId>,
    subscription: Option<Subscription>,
    amount: Option<Amount>,
}

fn purchase(data: &Data, change: Change) -> Result<Parts, NormalizeError> {
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
        name: name(raw_product.and_then(|p| p.name.get())),
        offer: owned(purchase.and_then(|p| p.offer.get()).or(data.offer.get()).and_then(Offer::code)),
        plan: owned(sub.and_then(|s| s.plan.get()).and_then(|p| p.id.get())),
    };
    let transaction = purchase.and_then(|p| p.transaction.get());
    let grant = match subscriber_code {
        Some(code) => grant_id(Some(code), "data.subscription.subscriber.code")?,
        None => grant_id(transaction, "data.purchase.transaction")?,
    };
    // Every purchase fact but a late payment is about one charge: it needs the transaction.
    let charge = match (&change, transaction) {
        (Change::PaymentLate, None) => None,
        (_, transaction) => Some(Charge {
            id: ChargeId::parse(required(transaction, "data.purchase.transaction")?).map_err(|e| {
                NormalizeError::InvalidField { field: "data.purchase.transaction", reason: e.to_string() }
            })?,
            approved_at: purchase.and_then(|p| p.approved_date.0),
            // Only subscription charges pay for a period; one-off purchases follow the policy.
            next_charge_at: subscriber_code.and(next_charge),
        }),
    };
    // An approval is stamped with the charge's approval time; other facts with the envelope's.
    let business_time = match change {
        Change::Approve | Change::Complete => charge.as_ref().and_then(|c| c.approved_at),
        _ => None,
    };
    let subscription = subscriber_code.map(|_| Subscription {
        code: grant.clone(),
        status: owned(sub.and_then(|s| s.status.get())),
        next_charge_at: next_charge,
    });
    let amount = purchase.and_then(|p| p.price.get()).and_then(|price| {
        Some(Amount {
            value: clip(price.value.get()?, MAX_TEXT_CHARS),
            currency: clip(price.currency_value.get()?, MAX_TEXT_CHARS),
        })
    });
    Ok(Parts {
        change,
        business_time,
        charge,
        student: Some(student),
        product: Some(product),
        grant_id: Some(grant),
        subscription,
        amount,
    })
}

fn cancellation(data: &Data) -> Result<Parts, NormalizeError> {
    let subscriber = data.subscriber.get();
    let raw_product = data.product.get();
    let email = email(subscriber.map_or(&Text(None), |s| &s.email), "data.subscriber.email")?;
    let grant = grant_id(subscriber.and_then(|s| s.code.get()), "data.subscriber.code")?;
    // The end of the paid period; without it the rules fall back to the known paid period.
    let period_end = data.date_next_charge.0;
    let plan = data.subscription.get().and_then(|s| s.plan.get()).and_then(|p| p.id.get());
    Ok(Parts {
        change: Change::Cancel { period_end },
        business_time: data.cancellation_date.0,
        charge: None,
        student: Some(student(subscriber.unwrap_or(&Person::default()), email)),
        product: Some(Product {
            id: product_id(raw_product, "data.product.id")?,
            name: name(raw_product.and_then(|p| p.name.get())),
            offer: None,
            plan: owned(plan),
        }),
        subscription: Some(Subscription { code: grant.clone(), status: None, next_charge_at: period_end }),
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
        change: Change::PlanChange { plan: clip(plan, MAX_TEXT_CHARS) },
        business_time: data.switch_plan_date.0,
        charge: None,
        student: Some(student(user.unwrap_or(&Person::default()), email)),
        product: Some(Product {
            id: product_id(raw_product, "data.subscription.product.id")?,
            name: name(raw_product.and_then(|p| p.name.get())),
            offer: owned(current.and_then(|p| p.offer.get()).and_then(Offer::code)),
            plan: Some(clip(plan, MAX_TEXT_CHARS)),
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
    let status = sub.and_then(|s| s.status.get());
    // Only an active subscription's new date moves its paid period; any other status is
    // recorded without effect.
    if !status.is_none_or(|s| s.eq_ignore_ascii_case("ACTIVE")) {
        return Ok(info(data));
    }
    let raw_product = sub.and_then(|s| s.product.get()).or(data.product.get());
    let email = email(subscriber.map_or(&Text(None), |s| &s.email), "data.subscriber.email")?;
    let grant = grant_id(subscriber.and_then(|s| s.code.get()), "data.subscriber.code")?;
    let next = required(
        sub.and_then(|s| s.date_next_charge.0).or(data.date_next_charge.0),
        "data.subscription.date_next_charge",
    )?;
    let plan = data.plan.get();
    Ok(Parts {
        change: Change::ChargeDate { next_charge_at: next },
        business_time: None,
        charge: None,
        student: Some(student(subscriber.unwrap_or(&Person::default()), email)),
        product: Some(Product {
            id: product_id(raw_product, "data.subscription.product.id")?,
            name: name(raw_product.and_then(|p| p.name.get())),
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
        Some(Product { id: ProductId::parse(p.id.get()?).ok()?, name: name(p.name.get()), offer: None, plan: None })
    });
    Parts {
        change: Change::Info,
        business_time: None,
        charge: None,
        student: person.map(|(p, email)| student(p, email)),
        product,
        grant_id: None,
        subscription: None,
        amount: None,
    }
}

/// How far past the edge's clock a stated time may be before it is clamped.
const CLOCK_SKEW_MILLIS: i64 = 5 * 60 * 1000;

/// The envelope time of a Hotmart body (`creation_date`), if it has one: when the platform
/// sent it. `lms-bridge simulate` uses it as the arrival time.
pub fn sent_at(body: &[u8]) -> Option<Timestamp> {
    serde_json::from_slice::<Obj<Envelope>>(body).ok()?.0?.creation_date.0
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
    let mut parts = match family(name) {
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
    // A platform clock ahead of ours must not push a fact into the future.
    let limit =
        Timestamp::from_unix_millis(received_at.unix_millis().saturating_add(CLOCK_SKEW_MILLIS)).unwrap_or(received_at);
    let mut clamped = false;
    let mut clamp = |t: Timestamp| {
        clamped |= t > limit;
        t.min(limit)
    };
    let effective_at = clamp(parts.business_time.unwrap_or(occurred_at));
    if let Some(charge) = parts.charge.as_mut() {
        charge.approved_at = match parts.change {
            Change::Approve | Change::Complete => Some(effective_at),
            _ => charge.approved_at.map(&mut clamp),
        };
    }
    Ok(Event {
        schema: Cow::Borrowed(SCHEMA),
        id,
        source: SourceName::trusted(NAME.to_owned()),
        source_event: clip(name, MAX_TEXT_CHARS),
        change: parts.change,
        occurred_at,
        received_at,
        effective_at,
        clamped,
        student: parts.student,
        product: parts.product,
        grant_id: parts.grant_id,
        charge: parts.charge,
        subscription: parts.subscription,
        amount: parts.amount,
        raw: None,
        raw_truncated: false,
        raw_sha256: None,
        admin: None,
    })
}
