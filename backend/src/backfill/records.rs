//! Neutral records: one Hotmart sale, one subscription and its charges, as the REST API
//! (`/sales/history`, `/subscriptions`, `/subscriptions/{code}/purchases`) and the CSV sales
//! export both state them. [`super::events`] turns them into normalized events; the API client
//! and [`super::csv`] only have to fill them in.
//!
//! The `from_api` readers take one JSON item as the API returns it. They follow what
//! docs/hotmart.md says of the REST API: absent fields are omitted (never null), ids come as
//! numbers or strings, dates are epoch milliseconds, except in one documented example where
//! they are seconds (see [`instant`]).

pub use crate::hotmart_api::{SaleStatus, SubscriptionStatus, UnknownStatus};
use lms_bridge_shared::event::Amount;
use lms_bridge_shared::{ChargeId, Email, GrantId, ProductId, Timestamp};
use serde_json::Value;
use std::fmt;

/// Where a bad value was read: a JSON field of an API item, or a column of the CSV export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// A dotted path inside an API item (`purchase.status`).
    Api(&'static str),
    /// A CSV export column, by its header (`Status da transação`).
    Column(&'static str),
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Field::Api(path) => write!(f, "field `{path}`"),
            Field::Column(name) => write!(f, "column `{name}`"),
        }
    }
}

/// Why an API item or CSV row is not a usable record. One line, naming the field and the value
/// (never an email: those are PII, so only "buyer email is invalid" is said).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// A required value is absent or blank.
    #[error("{field}: missing")]
    Missing {
        /// Where.
        field: Field,
    },
    /// A status outside the known vocabulary.
    #[error("{field}: {status}")]
    Status {
        /// Where.
        field: Field,
        /// The value.
        status: UnknownStatus,
    },
    /// A value of the wrong shape.
    #[error("{field}: invalid value `{value}` ({reason})")]
    Invalid {
        /// Where.
        field: Field,
        /// The value, clipped.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An email that does not parse; the value is never repeated.
    #[error("{field}: {whose} email is invalid")]
    Email {
        /// Where.
        field: Field,
        /// `buyer` or `subscriber`.
        whose: &'static str,
    },
}

impl RecordError {
    /// An invalid value, clipped and stripped of control characters so the message stays one
    /// short line whatever the input.
    pub fn invalid(field: Field, value: &str, reason: &'static str) -> Self {
        RecordError::Invalid { field, value: printable(value), reason }
    }
}

/// At most 64 characters of `value`, control characters replaced: for error messages.
pub(crate) fn printable(value: &str) -> String {
    value.chars().take(64).map(|c| if c.is_control() { '?' } else { c }).collect()
}

/// One sale (`/sales/history` item, or one row of the CSV export).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaleRecord {
    /// `purchase.transaction`: the charge, and the grant of a one-off purchase.
    pub transaction: ChargeId,
    /// `purchase.status`.
    pub status: SaleStatus,
    /// `product.id`.
    pub product_id: ProductId,
    /// `product.name`.
    pub product_name: Option<String>,
    /// `purchase.offer.code`.
    pub offer_code: Option<String>,
    /// `buyer.email`.
    pub buyer_email: Email,
    /// `buyer.name`.
    pub buyer_name: Option<String>,
    /// `purchase.order_date`.
    pub order_at: Option<Timestamp>,
    /// `purchase.approved_date`.
    pub approved_at: Option<Timestamp>,
    /// `purchase.is_subscription`: a subscription's charge, whose grant is the subscriber code
    /// this record does not know.
    pub is_subscription: Option<bool>,
    /// `purchase.price`.
    pub amount: Option<Amount>,
}

/// One subscription (`/subscriptions` item) with its charges (`/subscriptions/{code}/purchases`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionRecord {
    /// `subscriber_code`: the grant.
    pub code: GrantId,
    /// `status`.
    pub status: SubscriptionStatus,
    /// `product.id`.
    pub product_id: ProductId,
    /// `product.name`.
    pub product_name: Option<String>,
    /// `plan.id`.
    pub plan_id: Option<String>,
    /// `plan.recurrency_period`, in days.
    pub recurrency_period_days: Option<u32>,
    /// `subscriber.email`.
    pub subscriber_email: Email,
    /// `subscriber.name`.
    pub subscriber_name: Option<String>,
    /// `accession_date`: access start.
    pub accession_at: Option<Timestamp>,
    /// `end_accession_date`: when the subscriber asked to cancel.
    pub cancelled_at: Option<Timestamp>,
    /// `date_next_charge`: the paid-through date (for a cancelled subscription, its last day
    /// of access).
    pub next_charge_at: Option<Timestamp>,
    /// Every charge, failed attempts included (each under its own transaction).
    pub charges: Vec<ChargeRecord>,
}

/// One charge of a subscription (`/subscriptions/{code}/purchases` item).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargeRecord {
    /// `transaction`.
    pub transaction: ChargeId,
    /// `status`: the sales vocabulary.
    pub status: SaleStatus,
    /// `approved_date`; absent on unpaid rows.
    pub approved_at: Option<Timestamp>,
    /// `recurrency_number`: which period it pays (retries share it).
    pub recurrency_number: Option<u32>,
    /// `price`.
    pub amount: Option<Amount>,
}

// ---- Reading API items ----------------------------------------------------------------------

fn at<'a>(item: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(item, |v, key| v.get(key)).filter(|v| !v.is_null())
}

/// Text, or a number written as text (ids come as both); blank is absent.
fn text(item: &Value, path: &'static str) -> Result<Option<String>, RecordError> {
    match at(item, path) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.trim().to_owned()).filter(|s| !s.is_empty())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(other) => Err(RecordError::invalid(Field::Api(path), &other.to_string(), "not text")),
    }
}

fn required(item: &Value, path: &'static str) -> Result<String, RecordError> {
    text(item, path)?.ok_or(RecordError::Missing { field: Field::Api(path) })
}

fn id<T, E>(field: Field, raw: &str, parsed: Result<T, E>) -> Result<T, RecordError> {
    parsed.map_err(|_| RecordError::invalid(field, raw, "not a usable id"))
}

fn email(item: &Value, path: &'static str, whose: &'static str) -> Result<Email, RecordError> {
    Email::parse(required(item, path)?).map_err(|_| RecordError::Email { field: Field::Api(path), whose })
}

/// Below this an epoch value is taken as seconds: as milliseconds it would fall in 1973.
/// `/subscriptions`' documented example uses 10-digit seconds while live data uses ms [?].
const SECONDS_BELOW: i64 = 100_000_000_000;

/// An epoch instant (number or numeric text; milliseconds, or seconds when small, see
/// [`SECONDS_BELOW`]).
pub(crate) fn instant(item: &Value, path: &'static str) -> Result<Option<Timestamp>, RecordError> {
    let Some(value) = at(item, path) else { return Ok(None) };
    let bad = |reason| RecordError::invalid(Field::Api(path), &value.to_string(), reason);
    let raw = match value {
        Value::Number(n) => n.as_i64().ok_or_else(|| bad("not an integer"))?,
        Value::String(s) if s.trim().is_empty() => return Ok(None),
        Value::String(s) => s.trim().parse::<i64>().map_err(|_| bad("not epoch milliseconds"))?,
        _ => return Err(bad("not epoch milliseconds")),
    };
    let millis = if raw.abs() < SECONDS_BELOW { raw.saturating_mul(1000) } else { raw };
    Timestamp::from_unix_millis(millis).map(Some).map_err(|_| bad("out of range"))
}

fn bool_at(item: &Value, path: &'static str) -> Result<Option<bool>, RecordError> {
    match at(item, path) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(RecordError::invalid(Field::Api(path), &other.to_string(), "not a boolean")),
    }
}

fn count(item: &Value, path: &'static str) -> Result<Option<u32>, RecordError> {
    let Some(raw) = text(item, path)? else { return Ok(None) };
    raw.parse().map(Some).map_err(|_| RecordError::invalid(Field::Api(path), &raw, "not a count"))
}

fn status<S>(item: &Value, path: &'static str, parse: fn(&str) -> Result<S, UnknownStatus>) -> Result<S, RecordError> {
    parse(&required(item, path)?).map_err(|status| RecordError::Status { field: Field::Api(path), status })
}

/// `{value, currency_code}`; either part absent means no amount.
fn amount(item: &Value, path: &'static str, value: &'static str, currency: &'static str) -> Option<Amount> {
    let price = at(item, path)?;
    Some(Amount { value: text(price, value).ok()??, currency: text(price, currency).ok()?? })
}

impl SaleRecord {
    /// Reads one `/payments/api/v1/sales/history` item.
    pub fn from_api(item: &Value) -> Result<Self, RecordError> {
        let transaction = required(item, "purchase.transaction")?;
        let product_id = required(item, "product.id")?;
        Ok(SaleRecord {
            transaction: id(Field::Api("purchase.transaction"), &transaction, ChargeId::parse(&transaction))?,
            status: status(item, "purchase.status", SaleStatus::parse)?,
            product_id: id(Field::Api("product.id"), &product_id, ProductId::parse(&product_id))?,
            product_name: text(item, "product.name")?,
            offer_code: text(item, "purchase.offer.code")?,
            // Only there when the buyer shared it at checkout: without it there is no student.
            buyer_email: email(item, "buyer.email", "buyer")?,
            buyer_name: text(item, "buyer.name")?,
            order_at: instant(item, "purchase.order_date")?,
            approved_at: instant(item, "purchase.approved_date")?,
            is_subscription: bool_at(item, "purchase.is_subscription")?,
            amount: amount(item, "purchase.price", "value", "currency_code"),
        })
    }
}

impl SubscriptionRecord {
    /// Reads one `/payments/api/v1/subscriptions` item, with the subscription's charges read
    /// by [`ChargeRecord::from_api`].
    pub fn from_api(item: &Value, charges: Vec<ChargeRecord>) -> Result<Self, RecordError> {
        let code = required(item, "subscriber_code")?;
        let product_id = required(item, "product.id")?;
        Ok(SubscriptionRecord {
            code: id(Field::Api("subscriber_code"), &code, GrantId::parse(&code))?,
            status: status(item, "status", SubscriptionStatus::parse)?,
            product_id: id(Field::Api("product.id"), &product_id, ProductId::parse(&product_id))?,
            product_name: text(item, "product.name")?,
            plan_id: text(item, "plan.id")?,
            recurrency_period_days: count(item, "plan.recurrency_period")?,
            subscriber_email: email(item, "subscriber.email", "subscriber")?,
            subscriber_name: text(item, "subscriber.name")?,
            accession_at: instant(item, "accession_date")?,
            cancelled_at: instant(item, "end_accession_date")?,
            next_charge_at: instant(item, "date_next_charge")?,
            charges,
        })
    }
}

impl ChargeRecord {
    /// Reads one item of the bare array `/subscriptions/{code}/purchases` returns.
    pub fn from_api(item: &Value) -> Result<Self, RecordError> {
        let transaction = required(item, "transaction")?;
        Ok(ChargeRecord {
            transaction: id(Field::Api("transaction"), &transaction, ChargeId::parse(&transaction))?,
            status: status(item, "status", SaleStatus::parse)?,
            approved_at: instant(item, "approved_date")?,
            recurrency_number: count(item, "recurrency_number")?,
            amount: amount(item, "price", "value", "currency_code"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_seventeen_rest_spellings_parse_and_round_trip() {
        assert_eq!(SaleStatus::ALL.len(), 17);
        for status in SaleStatus::ALL {
            assert_eq!(SaleStatus::parse(status.as_str()), Ok(*status));
        }
        assert_eq!(SaleStatus::parse(" under_analisys "), Ok(SaleStatus::UnderAnalysis));
        // The correct English spelling is not what the API sends.
        assert_eq!(SaleStatus::parse("UNDER_ANALYSIS"), Err(UnknownStatus("UNDER_ANALYSIS".into())));
        assert_eq!(SubscriptionStatus::ALL.len(), 8);
        for status in SubscriptionStatus::ALL {
            assert_eq!(SubscriptionStatus::parse(status.as_str()), Ok(*status));
        }
        let err = SubscriptionStatus::parse("CANCELLED_BY_BUYER").unwrap_err();
        assert_eq!(err.to_string(), "unknown status `CANCELLED_BY_BUYER`");
    }

    #[test]
    fn the_live_sales_history_item_reads() {
        // A live, anonymized `sales/history` item.
        let item = json!({
            "producer": {"name": "Produtor exemplo", "ucode": "00000000-0000-4000-8000-000000000001"},
            "buyer": {"name": "Aluno exemplo", "ucode": "00000000-0000-4000-8000-000000000002", "email": "aluno@example.com"},
            "product": {"name": "Formação Estrategista Legal de Obras - ELO", "id": 5856194},
            "purchase": {
                "tracking": {"source_sck": "aberturarelampago"},
                "order_date": 1788010023000i64, "is_subscription": false,
                "price": {"currency_code": "BRL", "value": 288.65},
                "payment": {"installments_number": 9, "type": "CREDIT_CARD", "method": "CREDIT_CARD_VISA"},
                "approved_date": 1788010026000i64,
                "offer": {"payment_mode": "UNIQUE_PAYMENT", "code": "53bxa2hu"},
                "status": "COMPLETE", "warranty_expire_date": 1788566400000i64, "recurrency_number": 4,
                "transaction": "HP_EXEMPLO_001", "commission_as": "PRODUCER"
            }
        });
        let sale = SaleRecord::from_api(&item).unwrap();
        assert_eq!(sale.transaction.as_str(), "HP_EXEMPLO_001");
        assert_eq!(sale.status, SaleStatus::Complete);
        assert_eq!(sale.product_id.as_str(), "5856194");
        assert_eq!(sale.offer_code.as_deref(), Some("53bxa2hu"));
        assert_eq!(sale.buyer_email.as_str(), "aluno@example.com");
        assert_eq!(sale.approved_at, Some(Timestamp::from_unix_millis(1_788_010_026_000).unwrap()));
        assert_eq!(sale.is_subscription, Some(false));
        assert_eq!(sale.amount, Some(Amount { value: "288.65".into(), currency: "BRL".into() }));
    }

    #[test]
    fn api_errors_name_the_field_and_the_value_but_never_the_email() {
        let base = json!({"product": {"id": 1}, "buyer": {"email": "secret.person@example.com"},
                          "purchase": {"transaction": "HP1", "status": "APPROVED"}});
        let with = |path: &[&str], value: Value| {
            let mut item = base.clone();
            let (last, parents) = path.split_last().unwrap();
            let mut slot = &mut item;
            for key in parents {
                slot = &mut slot[*key];
            }
            slot[*last] = value;
            SaleRecord::from_api(&item).unwrap_err().to_string()
        };
        assert_eq!(
            with(&["purchase", "status"], json!("PENDURADO")),
            "field `purchase.status`: unknown status `PENDURADO`"
        );
        assert_eq!(with(&["purchase", "transaction"], Value::Null), "field `purchase.transaction`: missing");
        assert_eq!(
            with(&["purchase", "approved_date"], json!("yesterday")),
            "field `purchase.approved_date`: invalid value `\"yesterday\"` (not epoch milliseconds)"
        );
        let bad_email = with(&["buyer", "email"], json!("secret.person at example"));
        assert_eq!(bad_email, "field `buyer.email`: buyer email is invalid");
        assert!(!bad_email.contains("secret"));
        let no_buyer = SaleRecord::from_api(&json!({"product": {"id": 1},
            "purchase": {"transaction": "HP1", "status": "APPROVED"}}));
        assert_eq!(no_buyer.unwrap_err(), RecordError::Missing { field: Field::Api("buyer.email") });
    }

    #[test]
    fn subscriptions_and_their_charges_read_with_seconds_or_milliseconds() {
        // The documented example: 10-digit dates (seconds).
        let item = json!({"subscriber_code":"ABC12DEF","subscription_id":123456,"status":"ACTIVE",
            "accession_date":1577847600,"end_accession_date":1641005999,"request_date":1577847600,
            "date_next_charge":1580558059,"trial":false,"transaction":"HP16616613605324",
            "plan":{"name":"Plan name","id":726420,"recurrency_period":30,"max_charge_cycles":6},
            "product":{"id":123456,"name":"Product Name","ucode":"12a34bcd"},
            "price":{"value":123.45,"currency_code":"BRL"},
            "subscriber":{"name":"Subscriber name","email":"subscriber@email.com.br","ucode":"10a98bcd"}});
        // Two live rows of `/purchases`: a paid one and an unpaid OVERDUE one without approved_date.
        let rows = json!([
            {"payment_type":"HOTMART_BALANCE","recurrency_number":1,"transaction":"TX103816199060427",
             "price":{"value":997,"currency_code":"BRL"},"status":"COMPLETE","approved_date":1619906042000i64,
             "payment_engine":"HotPay","under_warranty":false,"payment_method":"HOTMART"},
            {"under_warranty":false,"payment_method":"PIX","status":"OVERDUE","recurrency_number":4,
             "payment_type":"PIX","payment_engine":"HotPay","transaction":"TX3216232573",
             "price":{"value":997,"currency_code":"BRL"}}
        ]);
        let charges: Vec<ChargeRecord> =
            rows.as_array().unwrap().iter().map(ChargeRecord::from_api).collect::<Result<_, _>>().unwrap();
        assert_eq!(charges[0].approved_at, Some(Timestamp::from_unix_millis(1_619_906_042_000).unwrap()));
        assert_eq!(
            (charges[1].status, charges[1].approved_at, charges[1].recurrency_number),
            (SaleStatus::Overdue, None, Some(4))
        );
        let sub = SubscriptionRecord::from_api(&item, charges).unwrap();
        assert_eq!(sub.code.as_str(), "ABC12DEF");
        assert_eq!(sub.plan_id.as_deref(), Some("726420"));
        assert_eq!(sub.recurrency_period_days, Some(30));
        assert_eq!(sub.next_charge_at, Some(Timestamp::from_unix_millis(1_580_558_059_000).unwrap()));
        assert_eq!(sub.cancelled_at, Some(Timestamp::from_unix_millis(1_641_005_999_000).unwrap()));
        assert_eq!(sub.charges.len(), 2);
    }
}
