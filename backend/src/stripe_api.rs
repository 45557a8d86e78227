//! Stripe's API, read-only, for what Stripe's events no longer say: the invoice behind a
//! refunded or disputed payment intent or charge (API versions from `2025-03-31.basil` on link
//! them only through invoice payments), and the product of a one-off Checkout purchase (its
//! line items are not in the event). Authenticated with `STRIPE_API_KEY`, a restricted key with
//! read access only; every failure is typed in a text free of the key, URLs and emails.

use crate::cli::Secret;
use crate::engine::{LookupError, SourceLookup};
use async_trait::async_trait;
use lms_bridge_shared::{ChargeId, GrantId, ProductId};
use reqwest::StatusCode;
use serde_json::Value;
use std::time::Duration;

/// The API's base URL.
pub const API_URL: &str = "https://api.stripe.com";
/// The API version every request is rendered in, whatever the account's default: in it a
/// charge names its payment intent and never its invoice, so one path serves every account.
pub const API_VERSION: &str = "2025-03-31.basil";
/// How long one call may take.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest piece of a Stripe message an error carries.
const MAX_MESSAGE: usize = 160;
/// Invoices looked at per payment intent (an intent pays one invoice; a few is plenty).
const PAGE: &str = "10";

/// How to reach the API.
#[derive(Debug, Clone)]
pub struct StripeApiConfig {
    /// Base URL, without a trailing `/`.
    pub url: String,
    /// `STRIPE_API_KEY`.
    pub key: Secret,
    /// One call's timeout.
    pub timeout: Duration,
}

/// Why a Stripe call failed.
#[derive(Debug, thiserror::Error)]
pub enum StripeApiError {
    /// The key is refused (401) or may not read this (403): an operator must fix the setting.
    #[error("Stripe refused STRIPE_API_KEY for {what} (HTTP {status}: {message}); set a restricted key with read access to charges, invoices and Checkout Sessions")]
    Unauthorized {
        /// The call.
        what: &'static str,
        /// 401 or 403.
        status: u16,
        /// Stripe's message, scrubbed.
        message: String,
    },
    /// 429: Stripe's rate limit.
    #[error("Stripe rate-limited {what} (HTTP 429)")]
    RateLimited {
        /// The call.
        what: &'static str,
    },
    /// 5xx.
    #[error("Stripe failed {what} with HTTP {status}")]
    Unavailable {
        /// The call.
        what: &'static str,
        /// The status.
        status: u16,
    },
    /// Any other error status (a 400 for a parameter this client sent wrong).
    #[error("Stripe refused {what} (HTTP {status}: {message})")]
    Refused {
        /// The call.
        what: &'static str,
        /// The status.
        status: u16,
        /// Stripe's message, scrubbed.
        message: String,
    },
    /// A 2xx answer that is not the JSON expected (a proxy's page).
    #[error("Stripe answered {what} with HTTP {status} and no usable JSON")]
    NotJson {
        /// The call.
        what: &'static str,
        /// The status.
        status: u16,
    },
    /// No answer.
    #[error("{what}: {cause}")]
    Transport {
        /// The call.
        what: &'static str,
        /// A fixed text.
        cause: &'static str,
    },
    /// The client could not be built (a start-up error).
    #[error("building the Stripe API client: {0}")]
    Client(String),
}

impl StripeApiError {
    /// Whether a later try may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            StripeApiError::RateLimited { .. }
                | StripeApiError::Unavailable { .. }
                | StripeApiError::NotJson { .. }
                | StripeApiError::Transport { .. }
        )
    }
}

impl From<StripeApiError> for LookupError {
    fn from(e: StripeApiError) -> Self {
        if e.is_transient() {
            LookupError::Transient(e.to_string())
        } else {
            LookupError::Unavailable(e.to_string())
        }
    }
}

/// What a charge links to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChargeLinks {
    /// Its payment intent.
    pub payment_intent: Option<String>,
    /// Its invoice (only in API versions before basil; kept should a proxy render one).
    pub invoice: Option<String>,
}

/// The client.
pub struct StripeApi {
    http: reqwest::Client,
    url: String,
    key: Secret,
}

/// An id or an expanded object's `id`.
fn id_of(value: &Value) -> Option<String> {
    match value {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Object(o) => o.get("id").and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_owned),
        _ => None,
    }
}

/// Whether `id` is a Stripe id this client may put in a URL path: Stripe's ids are letters,
/// digits and `_`; anything else is not one of Stripe's.
fn plain_id(id: &str) -> bool {
    !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// A Stripe message made safe for errors and logs: no emails, URLs or the key, bounded.
fn scrub(message: &str, key: &str) -> String {
    crate::scrub::words(message, key, MAX_MESSAGE)
}

/// A transport failure as a fixed text: reqwest's own text names the URL.
fn transport_error(what: &'static str, error: &reqwest::Error) -> StripeApiError {
    let cause = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "cannot connect to Stripe"
    } else if error.is_body() || error.is_decode() {
        "the answer broke off"
    } else {
        "the request failed"
    };
    StripeApiError::Transport { what, cause }
}

impl StripeApi {
    /// A client for `config`.
    pub fn new(config: StripeApiConfig) -> Result<Self, StripeApiError> {
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(config.timeout)
            .user_agent(concat!("lms-bridge/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| StripeApiError::Client(e.to_string()))?;
        Ok(Self { http, url: config.url.trim_end_matches('/').to_owned(), key: config.key })
    }

    /// `GET {path}?{query}`: the JSON answer, `None` for a 404.
    async fn get(
        &self,
        path: &str,
        query: &[(&str, &str)],
        what: &'static str,
    ) -> Result<Option<Value>, StripeApiError> {
        let response = self
            .http
            .get(format!("{}{path}", self.url))
            .query(query)
            .bearer_auth(self.key.expose().trim())
            .header("Stripe-Version", API_VERSION)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| transport_error(what, &e))?;
        let status = response.status();
        let text = response.text().await.map_err(|e| transport_error(what, &e))?;
        let body: Option<Value> = serde_json::from_str(&text).ok();
        let message = || {
            let said = body.as_ref().and_then(|b| b["error"]["message"].as_str()).unwrap_or("(no message)");
            scrub(said, self.key.expose().trim())
        };
        match status {
            s if s.is_success() => body.map(Some).ok_or(StripeApiError::NotJson { what, status: s.as_u16() }),
            StatusCode::NOT_FOUND => Ok(None),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                Err(StripeApiError::Unauthorized { what, status: status.as_u16(), message: message() })
            }
            StatusCode::TOO_MANY_REQUESTS => Err(StripeApiError::RateLimited { what }),
            s if s.is_server_error() => Err(StripeApiError::Unavailable { what, status: s.as_u16() }),
            s => Err(StripeApiError::Refused { what, status: s.as_u16(), message: message() }),
        }
    }

    /// The invoices a payment intent paid (`GET /v1/invoice_payments`).
    pub async fn invoices_of_payment_intent(&self, payment_intent: &str) -> Result<Vec<String>, StripeApiError> {
        let query = [("payment[type]", "payment_intent"), ("payment[payment_intent]", payment_intent), ("limit", PAGE)];
        let Some(list) = self.get("/v1/invoice_payments", &query, "listing invoice payments").await? else {
            return Ok(Vec::new());
        };
        let items = list["data"].as_array().cloned().unwrap_or_default();
        Ok(items.iter().filter_map(|p| id_of(&p["invoice"])).collect())
    }

    /// What a charge links to (`GET /v1/charges/{id}`); `None`: no such charge.
    pub async fn charge(&self, charge: &str) -> Result<Option<ChargeLinks>, StripeApiError> {
        if !plain_id(charge) {
            return Ok(None);
        }
        let Some(body) = self.get(&format!("/v1/charges/{charge}"), &[], "retrieving a charge").await? else {
            return Ok(None);
        };
        Ok(Some(ChargeLinks { payment_intent: id_of(&body["payment_intent"]), invoice: id_of(&body["invoice"]) }))
    }

    /// The product of the first line item of the Checkout Session that created a payment
    /// intent (`GET /v1/checkout/sessions?payment_intent=…&expand[]=data.line_items`).
    pub async fn checkout_product(&self, payment_intent: &str) -> Result<Option<String>, StripeApiError> {
        let query = [("payment_intent", payment_intent), ("expand[]", "data.line_items"), ("limit", "1")];
        let Some(list) = self.get("/v1/checkout/sessions", &query, "listing Checkout Sessions").await? else {
            return Ok(None);
        };
        let session = &list["data"][0];
        Ok(id_of(&session["line_items"]["data"][0]["price"]["product"]))
    }
}

fn ids(values: impl IntoIterator<Item = String>) -> Vec<ChargeId> {
    let mut out: Vec<ChargeId> = Vec::new();
    for id in values.into_iter().filter_map(|v| ChargeId::parse(v).ok()) {
        if !out.contains(&id) {
            out.push(id);
        }
    }
    out
}

#[async_trait]
impl SourceLookup for StripeApi {
    fn source(&self) -> &str {
        "stripe"
    }

    /// A payment intent: the invoices it paid. A charge: its invoice (older renderings), its
    /// payment intent's invoices, then the payment intent (a one-off purchase's grant).
    async fn charge_aliases(&self, charge: &ChargeId) -> Result<Vec<ChargeId>, LookupError> {
        let id = charge.as_str();
        if id.starts_with("pi_") {
            return Ok(ids(self.invoices_of_payment_intent(id).await?));
        }
        if !id.starts_with("ch_") && !id.starts_with("py_") {
            return Ok(Vec::new());
        }
        let Some(links) = self.charge(id).await? else { return Ok(Vec::new()) };
        let mut found: Vec<String> = links.invoice.into_iter().collect();
        if let Some(intent) = links.payment_intent {
            found.extend(self.invoices_of_payment_intent(&intent).await?);
            found.push(intent);
        }
        Ok(ids(found))
    }

    /// A one-off purchase's grant is its payment intent: the product of its Checkout Session.
    async fn grant_product(&self, grant: &GrantId) -> Result<Option<ProductId>, LookupError> {
        let id = grant.as_str();
        if !id.starts_with("pi_") {
            return Ok(None);
        }
        Ok(self.checkout_product(id).await?.and_then(|p| ProductId::parse(p).ok()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stripe_messages_lose_emails_urls_and_the_key() {
        let said =
            scrub("Invalid API Key provided: rk_test_123 for ana@example.com see https://stripe.com/x", "rk_test_123");
        assert_eq!(said, "Invalid API Key provided: [key] for [email] see [url]");
        assert!(scrub(&"x ".repeat(1000), "k").chars().count() <= MAX_MESSAGE + 1);
    }

    #[test]
    fn ids_are_read_as_strings_or_expanded_objects_and_only_plain_ones_go_in_a_path() {
        assert_eq!(id_of(&serde_json::json!("prod_1")), Some("prod_1".to_owned()));
        assert_eq!(id_of(&serde_json::json!({"id": "prod_2", "object": "product"})), Some("prod_2".to_owned()));
        assert_eq!(id_of(&Value::Null), None);
        assert!(plain_id("ch_3PBXo5RxqlZt79sD1dVQwsQ1"));
        assert!(!plain_id("ch_1/../../v1/customers") && !plain_id(""));
    }

    #[test]
    fn only_transient_failures_are_retried_and_a_refused_key_names_the_setting() {
        let refused = StripeApiError::Unauthorized { what: "retrieving a charge", status: 401, message: "no".into() };
        assert!(!refused.is_transient());
        assert!(matches!(LookupError::from(refused), LookupError::Unavailable(m) if m.contains("STRIPE_API_KEY")));
        assert!(StripeApiError::RateLimited { what: "x" }.is_transient());
        assert!(StripeApiError::Unavailable { what: "x", status: 503 }.is_transient());
    }
}
