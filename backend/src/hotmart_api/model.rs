//! What the API returns, read tolerantly: Hotmart omits absent fields, sends ids as numbers
//! or strings, and its docs date some examples in seconds where live data uses milliseconds.
//! A field of an unexpected type reads as absent instead of failing the page; only a row
//! without what identifies it (a sale's transaction, a subscriber code) is dropped, and
//! counted in [`Page::skipped`].

use lms_bridge_shared::Timestamp;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// One page of a paginated call.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// The rows, in Hotmart's order.
    pub items: Vec<T>,
    /// Where the next page starts; `None` on the last page. Opaque: hand it back unchanged.
    pub next_page_token: Option<String>,
    /// Hotmart's count for the whole query ("not returned by every endpoint"). For sales it
    /// counts the status being walked, as each status is its own query.
    pub total_results: Option<u64>,
    /// Rows dropped because they lacked their identifying field.
    pub skipped: usize,
}

/// A product as sales and subscriptions name it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Product {
    /// Hotmart's numeric product id, as text (the mappings key products by text).
    pub id: Option<String>,
    /// Its name.
    pub name: Option<String>,
}

/// A buyer or subscriber. Personal data: never log it.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Person {
    /// Name, when the buyer made it available at checkout.
    pub name: Option<String>,
    /// Email, likewise.
    pub email: Option<String>,
}

/// Keeps the name and the email out of logs and error texts.
impl std::fmt::Debug for Person {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Person")
            .field("name", &self.name.as_ref().map(|_| "[redacted]"))
            .field("email", &self.email.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

/// The offer a sale was made under.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Offer {
    /// The offer code (`k2pasun0`).
    pub code: Option<String>,
    /// `UNIQUE_PAYMENT`, `SUBSCRIPTION`, `SMART_INSTALLMENT`…
    pub payment_mode: Option<String>,
}

/// An amount.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Price {
    /// The value, in `currency_code` units.
    pub value: Option<f64>,
    /// ISO 4217.
    pub currency_code: Option<String>,
}

/// A subscription plan.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    /// Hotmart's plan id, as text.
    pub id: Option<String>,
    /// Its name.
    pub name: Option<String>,
    /// Days between charges (7, 30, 60, 90, 180, 360).
    pub recurrency_period: Option<u32>,
    /// Absent: charges until cancelled.
    pub max_charge_cycles: Option<u32>,
}

/// A `sales/history` item, flattened from its `product`/`buyer`/`purchase` parts.
#[derive(Debug, Clone, PartialEq)]
pub struct Sale {
    /// `purchase.transaction`: what identifies the sale (walks dedupe on it).
    pub transaction: String,
    /// Hotmart's REST spelling (`COMPLETE`, `CANCELLED`, `UNDER_ANALISYS`…), not mapped here
    /// so the caller can report values it does not know; empty when Hotmart sent none.
    pub status: String,
    /// When the order was placed.
    pub order_date: Option<Timestamp>,
    /// When payment was approved; absent for unpaid sales.
    pub approved_date: Option<Timestamp>,
    /// Whether the sale belongs to a subscription.
    pub is_subscription: Option<bool>,
    /// Also set on one-off sales, where it counts card installments.
    pub recurrency_number: Option<u32>,
    /// The product sold.
    pub product: Product,
    /// Absent when the buyer did not share it at checkout.
    pub buyer: Option<Person>,
    /// The offer.
    pub offer: Offer,
    /// The price paid.
    pub price: Price,
    /// The item as Hotmart sent it (what the backfill reads its facts from).
    pub item: RawItem,
}

/// A `/subscriptions` item.
#[derive(Debug, Clone, PartialEq)]
pub struct Subscription {
    /// What identifies it: one per buyer per product.
    pub subscriber_code: String,
    /// Hotmart's subscription id, as text.
    pub subscription_id: Option<String>,
    /// `ACTIVE`, `DELAYED`, `CANCELLED_BY_CUSTOMER`… as sent (see [`Sale::status`]).
    pub status: String,
    /// Access start.
    pub accession_date: Option<Timestamp>,
    /// When cancellation was requested; only on cancelled subscriptions.
    pub end_accession_date: Option<Timestamp>,
    /// Creation.
    pub request_date: Option<Timestamp>,
    /// The next charge; for a cancelled subscription, the last day of paid access.
    pub date_next_charge: Option<Timestamp>,
    /// Whether it is in a trial.
    pub trial: Option<bool>,
    /// The transaction that started it.
    pub transaction: Option<String>,
    /// The plan.
    pub plan: Plan,
    /// The product.
    pub product: Product,
    /// The subscriber.
    pub subscriber: Option<Person>,
    /// Per recurrence.
    pub price: Price,
    /// The item as Hotmart sent it.
    pub item: RawItem,
}

/// One charge attempt of a subscription (`/subscriptions/{code}/purchases`).
#[derive(Debug, Clone, PartialEq)]
pub struct SubscriptionPurchase {
    /// What identifies the attempt: each failed attempt is its own transaction.
    pub transaction: String,
    /// Absent on unpaid rows.
    pub approved_date: Option<Timestamp>,
    /// One of the sales statuses, as sent.
    pub status: String,
    /// Which recurrence; several rows may share one.
    pub recurrency_number: Option<u32>,
    /// The amount.
    pub price: Price,
    /// Not only the documented values (`HOTMART_BALANCE` is live).
    pub payment_type: Option<String>,
    /// `PIX`, `HOTMART`, `CREDIT_CARD_VISA`…
    pub payment_method: Option<String>,
    /// The row as Hotmart sent it.
    pub item: RawItem,
}

/// An item as Hotmart sent it. Its `Debug` shows nothing: items carry names and emails.
#[derive(Clone, PartialEq)]
pub struct RawItem(pub Value);

impl std::fmt::Debug for RawItem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RawItem(..)")
    }
}

/// A field as text: strings as they are (empty ones as absent), numbers written out.
fn text(v: &Value, key: &str) -> Option<String> {
    match v.get(key)? {
        Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn number(v: &Value, key: &str) -> Option<f64> {
    match v.get(key)? {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    }
    .filter(|n| n.is_finite())
}

fn count(v: &Value, key: &str) -> Option<u32> {
    let n = number(v, key)?;
    (n.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(&n)).then_some(n as u32)
}

fn flag(v: &Value, key: &str) -> Option<bool> {
    match v.get(key)? {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

/// Below this an epoch value is seconds: 10^11 ms is 1973, before any Hotmart sale, while
/// 10^11 s is the year 5138.
const SECONDS_BELOW: f64 = 1e11;

/// A date in epoch milliseconds; a value that can only be seconds (the docs' subscription
/// example) is scaled up.
pub(super) fn date(v: &Value, key: &str) -> Option<Timestamp> {
    let n = number(v, key)?;
    let millis = if n.abs() < SECONDS_BELOW { n * 1000.0 } else { n };
    if millis.abs() > 1e15 {
        return None;
    }
    Timestamp::from_unix_millis(millis.round() as i64).ok()
}

fn object<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.get(key).filter(|o| o.is_object())
}

fn product(v: Option<&Value>) -> Product {
    v.map(|p| Product { id: text(p, "id"), name: text(p, "name") }).unwrap_or_default()
}

fn person(v: Option<&Value>) -> Option<Person> {
    let p = v?;
    Some(Person { name: text(p, "name"), email: text(p, "email") })
}

fn price(v: Option<&Value>) -> Price {
    v.map(|p| Price { value: number(p, "value"), currency_code: text(p, "currency_code") }).unwrap_or_default()
}

impl Sale {
    /// From a `sales/history` item; `None` without `purchase.transaction`.
    pub fn from_item(item: &Value) -> Option<Self> {
        let empty = Value::Null;
        let purchase = object(item, "purchase").unwrap_or(&empty);
        let offer = object(purchase, "offer");
        Some(Self {
            transaction: text(purchase, "transaction")?,
            status: text(purchase, "status").unwrap_or_default(),
            order_date: date(purchase, "order_date"),
            approved_date: date(purchase, "approved_date"),
            is_subscription: flag(purchase, "is_subscription"),
            recurrency_number: count(purchase, "recurrency_number"),
            product: product(object(item, "product")),
            buyer: person(object(item, "buyer")),
            offer: offer
                .map(|o| Offer { code: text(o, "code"), payment_mode: text(o, "payment_mode") })
                .unwrap_or_default(),
            price: price(object(purchase, "price")),
            item: RawItem(item.clone()),
        })
    }
}

impl Subscription {
    /// From a `/subscriptions` item; `None` without `subscriber_code`.
    pub fn from_item(item: &Value) -> Option<Self> {
        let plan = object(item, "plan").map(|p| Plan {
            id: text(p, "id"),
            name: text(p, "name"),
            recurrency_period: count(p, "recurrency_period"),
            max_charge_cycles: count(p, "max_charge_cycles"),
        });
        Some(Self {
            subscriber_code: text(item, "subscriber_code")?,
            subscription_id: text(item, "subscription_id"),
            status: text(item, "status").unwrap_or_default(),
            accession_date: date(item, "accession_date"),
            end_accession_date: date(item, "end_accession_date"),
            request_date: date(item, "request_date"),
            date_next_charge: date(item, "date_next_charge"),
            trial: flag(item, "trial"),
            transaction: text(item, "transaction"),
            plan: plan.unwrap_or_default(),
            product: product(object(item, "product")),
            subscriber: person(object(item, "subscriber")),
            price: price(object(item, "price")),
            item: RawItem(item.clone()),
        })
    }
}

impl SubscriptionPurchase {
    /// From a `/purchases` row; `None` without `transaction`.
    pub fn from_item(item: &Value) -> Option<Self> {
        Some(Self {
            transaction: text(item, "transaction")?,
            approved_date: date(item, "approved_date"),
            status: text(item, "status").unwrap_or_default(),
            recurrency_number: count(item, "recurrency_number"),
            price: price(object(item, "price")),
            payment_type: text(item, "payment_type"),
            payment_method: text(item, "payment_method"),
            item: RawItem(item.clone()),
        })
    }
}

/// Serde reads these from the API's own item shapes, as `from_item` does.
macro_rules! deserialize_from_item {
    ($type:ty, $what:literal) => {
        impl<'de> Deserialize<'de> for $type {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let item = Value::deserialize(deserializer)?;
                Self::from_item(&item).ok_or_else(|| serde::de::Error::custom(concat!("a ", $what, " without its id")))
            }
        }
    };
}

deserialize_from_item!(Sale, "sale");
deserialize_from_item!(Subscription, "subscription");
deserialize_from_item!(SubscriptionPurchase, "subscription purchase");

/// The rows of an `items` array; how many were dropped.
pub(super) fn rows<T>(items: &[Value], parse: fn(&Value) -> Option<T>) -> (Vec<T>, usize) {
    let parsed: Vec<T> = items.iter().filter_map(parse).collect();
    let skipped = items.len() - parsed.len();
    (parsed, skipped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_live_sales_item_reads_whole() {
        let item = json!({
            "buyer": {"name": "Aluno", "ucode": "x", "email": "aluno@example.com"},
            "product": {"name": "ELO", "id": 5856194},
            "purchase": {"order_date": 1788010023000_i64, "is_subscription": false,
                "price": {"currency_code": "BRL", "value": 288.65}, "approved_date": 1788010026000_i64,
                "offer": {"payment_mode": "UNIQUE_PAYMENT", "code": "53bxa2hu"}, "status": "COMPLETE",
                "recurrency_number": 4, "transaction": "HP_EXEMPLO_001", "extra": {"ignored": true}}
        });
        let sale: Sale = serde_json::from_value(item).unwrap();
        assert_eq!(sale.transaction, "HP_EXEMPLO_001");
        assert_eq!(sale.status, "COMPLETE");
        assert_eq!(sale.order_date.unwrap().unix_millis(), 1_788_010_023_000);
        assert_eq!(sale.product.id.as_deref(), Some("5856194"));
        assert_eq!(sale.recurrency_number, Some(4));
        assert_eq!(sale.price.value, Some(288.65));
        assert_eq!(sale.offer.code.as_deref(), Some("53bxa2hu"));
        assert_eq!(sale.buyer.as_ref().unwrap().email.as_deref(), Some("aluno@example.com"));
        assert!(!format!("{sale:?}").contains("aluno@"));
    }

    #[test]
    fn odd_types_read_as_absent_or_converted_and_only_a_missing_id_drops_the_row() {
        let sale = Sale::from_item(&json!({"purchase": {"transaction": 12345, "order_date": "1788010023000",
            "approved_date": "soon", "recurrency_number": "2", "price": {"value": "10.5"}}, "buyer": null}))
        .unwrap();
        assert_eq!(sale.transaction, "12345");
        assert_eq!(sale.order_date.unwrap().unix_millis(), 1_788_010_023_000);
        assert_eq!((sale.approved_date, sale.recurrency_number, sale.price.value), (None, Some(2), Some(10.5)));
        assert_eq!(sale.buyer, None);
        assert!(Sale::from_item(&json!({"purchase": {"status": "APPROVED"}})).is_none());
        let (rows, skipped) = rows(&[json!({"purchase": {"transaction": "A"}}), json!(7)], Sale::from_item);
        assert_eq!((rows.len(), skipped), (1, 1));
    }

    #[test]
    fn ten_digit_dates_are_seconds() {
        let sub = Subscription::from_item(&json!({"subscriber_code": "ABC12DEF", "accession_date": 1577847600,
            "date_next_charge": 1580558059000_i64, "plan": {"id": 726420, "recurrency_period": 30}}))
        .unwrap();
        assert_eq!(sub.accession_date.unwrap().unix_millis(), 1_577_847_600_000);
        assert_eq!(sub.date_next_charge.unwrap().unix_millis(), 1_580_558_059_000);
        assert_eq!(sub.plan.id.as_deref(), Some("726420"));
        assert_eq!(sub.plan.max_charge_cycles, None);
    }
}
