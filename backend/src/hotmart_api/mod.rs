//! Hotmart's REST API, for backfill and reconciliation (what it relies on, and how it guards
//! against what Hotmart leaves undocumented: docs/hotmart.md, "The REST API").
//!
//! Queries always carry an explicit window and explicit statuses: without them Hotmart
//! applies defaults that silently hide rows (sales: only APPROVED and COMPLETE; subscriptions:
//! a 30-day default window whose real effect is unverified). There is no "changed since" query, so reconciliation
//! re-sweeps windows, and pages are offset windows that shift when rows arrive mid-walk:
//! [`Walk`] dedupes by each row's id.
//!
//! Error texts and logs never hold the client secret, the Basic value, the access token, a
//! URL (the token call's query holds the secret) or an email.

mod error;
mod http;
mod model;
mod query;
mod walk;

pub use error::HotmartApiError;
pub use model::{Offer, Page, Person, Plan, Price, Product, Sale, Subscription, SubscriptionPurchase};
pub use query::{SaleStatus, SalesQuery, SubscriptionStatus, SubscriptionWindow, SubscriptionsQuery, UnknownStatus};
pub use walk::{Walk, Walkable};

use crate::cli::Secret;
use base64::Engine as _;
use http::{CachedToken, Call, Pacer};
use lms_bridge_shared::Timestamp;
use serde_json::Value;
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

/// The one token URL, for production and sandbox credentials alike.
pub const AUTH_URL: &str = "https://api-sec-vlc.hotmart.com";
/// The production API.
pub const API_URL: &str = "https://developers.hotmart.com";
/// The sandbox API: same paths, fictional data (its DNS has come and gone).
pub const SANDBOX_API_URL: &str = "https://sandbox.hotmart.com";
/// Hotmart's page-size ceiling; larger values are clamped.
pub const MAX_PAGE_SIZE: u32 = 500;
/// The widest sales window sent: Hotmart refuses windows "past ~1 year" (12 months passed,
/// 2 years failed), and SYNC, which probed it, sweeps in 360-day windows.
pub const MAX_SALES_WINDOW_DAYS: i64 = 360;

const DAY_MS: i64 = 86_400_000;

/// How to reach Hotmart and how hard to push it.
#[derive(Debug, Clone)]
pub struct HotmartApiConfig {
    /// The token host ([`AUTH_URL`]).
    pub auth_url: String,
    /// The API host ([`API_URL`], or [`SANDBOX_API_URL`]).
    pub api_url: String,
    /// `HOTMART_CLIENT_ID`.
    pub client_id: String,
    /// `HOTMART_CLIENT_SECRET`.
    pub client_secret: Secret,
    /// `HOTMART_BASIC`, the dashboard's "Basic" token, with or without its `Basic ` prefix
    /// (sources disagree on which the dashboard shows); absent: built from id and secret.
    pub basic: Option<Secret>,
    /// Rows per page, 1..=500.
    pub max_results: u32,
    /// The credential's quota; calls are paced at 90% of it, as other tools share it.
    pub rate_per_minute: u32,
    /// Tries per call for what is worth retrying (429, 5xx, broken bodies, transport).
    pub max_attempts: u32,
    /// The first back-off step; it doubles per failure, with jitter, up to 30 s.
    pub backoff_base: Duration,
    /// Per request. Hotmart gives up on a query after 30 s and answers 502.
    pub timeout: Duration,
}

impl HotmartApiConfig {
    /// Production hosts and the documented limits.
    pub fn new(client_id: impl Into<String>, client_secret: Secret) -> Self {
        Self {
            auth_url: AUTH_URL.into(),
            api_url: API_URL.into(),
            client_id: client_id.into(),
            client_secret,
            basic: None,
            max_results: MAX_PAGE_SIZE,
            rate_per_minute: 500,
            max_attempts: 5,
            backoff_base: Duration::from_millis(500),
            timeout: Duration::from_secs(40),
        }
    }
}

/// The Hotmart REST client. Share one per credential: the token and the pace are per
/// credential.
pub struct HotmartApi {
    auth_url: String,
    api_url: String,
    client_id: String,
    client_secret: Secret,
    /// The whole `Authorization` value, `Basic …`.
    basic: Secret,
    max_results: u32,
    max_attempts: u32,
    backoff_base: Duration,
    timeout: Duration,
    http: reqwest::Client,
    token: tokio::sync::Mutex<Option<CachedToken>>,
    pacer: Pacer,
}

/// Leaves the credentials and the token out.
impl fmt::Debug for HotmartApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HotmartApi")
            .field("api_url", &self.api_url)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// `https://host`, or `http://` to a loopback host only (the fake): the Basic value and the
/// secret must not cross a network in clear.
fn base_url(url: &str, which: &'static str) -> Result<String, HotmartApiError> {
    let url = url.trim().trim_end_matches('/');
    let parsed = reqwest::Url::parse(url).map_err(|_| HotmartApiError::Config(which))?;
    let host = parsed.host_str().unwrap_or_default().trim_start_matches('[').trim_end_matches(']');
    let loopback = host.eq_ignore_ascii_case("localhost") || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    match parsed.scheme() {
        _ if host.is_empty() => Err(HotmartApiError::Config(which)),
        "https" => Ok(url.to_owned()),
        "http" if loopback => Ok(url.to_owned()),
        _ => Err(HotmartApiError::Config(which)),
    }
}

/// The `Authorization` value of the token call, whichever form the Basic token came in.
fn basic_value(basic: Option<&Secret>, client_id: &str, client_secret: &Secret) -> Secret {
    let given = basic.map(|b| b.expose().trim()).filter(|b| !b.is_empty());
    let bare = match given {
        Some(b) if b.len() > 6 && b[..6].eq_ignore_ascii_case("basic ") => b[6..].trim().to_owned(),
        Some(b) => b.to_owned(),
        None => base64::engine::general_purpose::STANDARD.encode(format!("{client_id}:{}", client_secret.expose())),
    };
    Secret::new(format!("Basic {bare}"))
}

fn millis(t: Timestamp) -> String {
    t.unix_millis().to_string()
}

/// The statuses once each, in the caller's order.
fn distinct<T: PartialEq + Copy>(list: &[T]) -> Vec<T> {
    let mut out = Vec::with_capacity(list.len());
    for item in list {
        if !out.contains(item) {
            out.push(*item);
        }
    }
    out
}

/// The items and page info of a paginated answer.
fn page_parts(body: &Value) -> (&[Value], Option<String>, Option<u64>) {
    let items = body.get("items").and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
    let info = body.get("page_info");
    // Clients treat null and empty like absent: the last page.
    let next = info
        .and_then(|i| i.get("next_page_token"))
        .and_then(Value::as_str)
        .filter(|t| !t.trim().is_empty())
        .map(str::to_owned);
    let total = info.and_then(|i| i.get("total_results")).and_then(Value::as_u64);
    (items, next, total)
}

impl HotmartApi {
    /// A client for these settings; nothing is called yet.
    pub fn new(config: HotmartApiConfig) -> Result<Self, HotmartApiError> {
        let auth_url = base_url(&config.auth_url, "the auth URL must be https://host (http:// only for loopback)")?;
        let api_url = base_url(&config.api_url, "the API URL must be https://host (http:// only for loopback)")?;
        let client_id = config.client_id.trim().to_owned();
        if client_id.is_empty() {
            return Err(HotmartApiError::Config("HOTMART_CLIENT_ID is empty"));
        }
        if config.client_secret.is_blank() {
            return Err(HotmartApiError::Config("HOTMART_CLIENT_SECRET is empty"));
        }
        let client_secret = Secret::new(config.client_secret.expose().trim());
        let basic = basic_value(config.basic.as_ref(), &client_id, &client_secret);
        let http = reqwest::Client::builder()
            .build()
            .map_err(|_| HotmartApiError::Config("the HTTP client could not be built"))?;
        Ok(Self {
            auth_url,
            api_url,
            client_id,
            client_secret,
            basic,
            max_results: config.max_results.clamp(1, MAX_PAGE_SIZE),
            max_attempts: config.max_attempts.max(1),
            backoff_base: config.backoff_base,
            timeout: config.timeout,
            http,
            token: tokio::sync::Mutex::new(None),
            pacer: Pacer::new(config.rate_per_minute),
        })
    }

    /// One page of sales.
    ///
    /// Several statuses are walked one after the other, one query each: whether Hotmart
    /// honours a repeated or comma-separated `transaction_status` is undocumented and
    /// untested on record, and a server that kept only the first value would drop the other
    /// statuses without a word. So the returned `next_page_token` is this client's cursor:
    /// the status being walked plus Hotmart's token within it (`REFUNDED:eyJ…`), or the next
    /// status alone when one is done. Pass `None` to start, and checkpoint the cursor as is.
    pub async fn sales_page(
        &self,
        query: &SalesQuery,
        page_token: Option<&str>,
    ) -> Result<Page<Sale>, HotmartApiError> {
        const WHAT: &str = "sales history";
        let bad = |reason| HotmartApiError::BadQuery { what: WHAT, reason };
        let statuses = distinct(&query.statuses);
        if statuses.is_empty() {
            return Err(bad("no status given (Hotmart's default hides refunds and chargebacks)"));
        }
        if query.start > query.end {
            return Err(bad("the window ends before it starts"));
        }
        if query.end.unix_millis() - query.start.unix_millis() > MAX_SALES_WINDOW_DAYS * DAY_MS {
            return Err(HotmartApiError::QueryTooWide { what: WHAT, reason: "over 360 days: Hotmart refuses a year" });
        }
        let (index, token) = match page_token {
            None => (0, None),
            Some(cursor) => {
                let (status, token) = cursor.split_once(':').map_or((cursor, None), |(s, t)| (s, Some(t)));
                let index = statuses.iter().position(|s| s.as_str() == status);
                match (index, token) {
                    (Some(index), Some(t)) if !t.is_empty() => (index, Some(t)),
                    (Some(index), None) => (index, None),
                    _ => return Err(HotmartApiError::InvalidPageToken { what: WHAT }),
                }
            }
        };
        let status = statuses[index];
        let mut params = vec![
            ("max_results", self.max_results.to_string()),
            ("start_date", millis(query.start)),
            ("end_date", millis(query.end)),
            ("transaction_status", status.as_str().to_owned()),
        ];
        if let Some(product) = &query.product_id {
            params.push(("product_id", product.clone()));
        }
        if let Some(transaction) = &query.transaction {
            params.push(("transaction", transaction.clone()));
        }
        if let Some(token) = token {
            params.push(("page_token", token.to_owned()));
        }
        let call = Call { what: WHAT, windowed: true, page_token: token.is_some(), array: false };
        let body = self.get_json(call, "/payments/api/v1/sales/history", &params).await?;
        let (items, next, total_results) = page_parts(&body);
        if next.is_some() && next.as_deref() == token {
            return Err(HotmartApiError::RepeatedPageToken { what: WHAT });
        }
        let next_page_token = match next {
            Some(next) => Some(format!("{status}:{next}")),
            None => statuses.get(index + 1).map(|s| s.as_str().to_owned()),
        };
        let (items, skipped) = model::rows(items, Sale::from_item);
        Ok(Page { items, next_page_token, total_results, skipped })
    }

    /// One page of subscriptions; `next_page_token` is Hotmart's own.
    pub async fn subscriptions_page(
        &self,
        query: &SubscriptionsQuery,
        page_token: Option<&str>,
    ) -> Result<Page<Subscription>, HotmartApiError> {
        const WHAT: &str = "subscriptions";
        let statuses = distinct(&query.statuses);
        if statuses.is_empty() {
            return Err(HotmartApiError::BadQuery { what: WHAT, reason: "no status given" });
        }
        let (from, to, start, end) = match query.window {
            SubscriptionWindow::Accession { start, end } => ("accession_date", "end_accession_date", start, end),
            SubscriptionWindow::Cancelation { start, end } => ("cancelation_date", "end_cancelation_date", start, end),
        };
        if start > end {
            return Err(HotmartApiError::BadQuery { what: WHAT, reason: "the window ends before it starts" });
        }
        let mut params = vec![("max_results", self.max_results.to_string()), (from, millis(start)), (to, millis(end))];
        params.extend(statuses.iter().map(|s| ("status", s.as_str().to_owned())));
        if let Some(product) = &query.product_id {
            params.push(("product_id", product.clone()));
        }
        if let Some(code) = &query.subscriber_code {
            params.push(("subscriber_code", code.clone()));
        }
        if let Some(email) = &query.subscriber_email {
            params.push(("subscriber_email", email.clone()));
        }
        let token = page_token.filter(|t| !t.is_empty());
        if let Some(token) = token {
            params.push(("page_token", token.to_owned()));
        }
        let call = Call { what: WHAT, windowed: true, page_token: token.is_some(), array: false };
        let body = self.get_json(call, "/payments/api/v1/subscriptions", &params).await?;
        let (items, next_page_token, total_results) = page_parts(&body);
        if next_page_token.is_some() && next_page_token.as_deref() == token {
            return Err(HotmartApiError::RepeatedPageToken { what: WHAT });
        }
        let (items, skipped) = model::rows(items, Subscription::from_item);
        Ok(Page { items, next_page_token, total_results, skipped })
    }

    /// Every charge attempt of one subscription (not paginated). An unknown code is
    /// [`HotmartApiError::NotFound`].
    pub async fn subscription_purchases(
        &self,
        subscriber_code: &str,
    ) -> Result<Vec<SubscriptionPurchase>, HotmartApiError> {
        const WHAT: &str = "subscription purchases";
        let code = subscriber_code.trim();
        if code.is_empty() {
            return Err(HotmartApiError::BadQuery { what: WHAT, reason: "empty subscriber code" });
        }
        let segment: String = code
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
                    char::from(b).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        let call = Call { what: WHAT, windowed: false, page_token: false, array: true };
        let body = self.get_json(call, &format!("/payments/api/v1/subscriptions/{segment}/purchases"), &[]).await?;
        // Documented as a bare array; read a paginated wrapper too, should it ever get one.
        let rows =
            body.as_array().or_else(|| body.get("items").and_then(Value::as_array)).map_or(&[][..], Vec::as_slice);
        let (purchases, skipped) = model::rows(rows, SubscriptionPurchase::from_item);
        if skipped > 0 {
            tracing::warn!(skipped, "Hotmart subscription purchases without a transaction were skipped");
        }
        Ok(purchases)
    }

    /// Every page of a sales query, deduped by transaction.
    pub fn walk_sales(&self, query: &SalesQuery) -> Walk<'_, SalesQuery> {
        Walk::new(self, query.clone())
    }

    /// Every page of a subscriptions query, deduped by subscriber code.
    pub fn walk_subscriptions(&self, query: &SubscriptionsQuery) -> Walk<'_, SubscriptionsQuery> {
        Walk::new(self, query.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> HotmartApiConfig {
        HotmartApiConfig::new("id", Secret::new("s3cret"))
    }

    #[test]
    fn the_basic_value_is_normalised_whichever_form_it_came_in() {
        let secret = Secret::new("s3cret");
        let built = base64::engine::general_purpose::STANDARD.encode("id:s3cret");
        assert_eq!(basic_value(None, "id", &secret).expose(), format!("Basic {built}"));
        assert_eq!(basic_value(Some(&Secret::new(" ")), "id", &secret).expose(), format!("Basic {built}"));
        for given in ["abc=", "Basic abc=", "basic  abc=\n", " BASIC abc="] {
            assert_eq!(basic_value(Some(&Secret::new(given)), "id", &secret).expose(), "Basic abc=", "{given:?}");
        }
    }

    #[test]
    fn urls_must_be_https_or_loopback_http() {
        assert!(HotmartApi::new(config()).is_ok());
        for url in ["http://127.0.0.1:9000/", "http://localhost", "http://[::1]:1"] {
            assert!(
                HotmartApi::new(HotmartApiConfig { api_url: url.into(), auth_url: url.into(), ..config() }).is_ok(),
                "{url}"
            );
        }
        for url in ["http://developers.hotmart.com", "ftp://x", "developers.hotmart.com", ""] {
            let error = HotmartApi::new(HotmartApiConfig { api_url: url.into(), ..config() }).unwrap_err();
            assert!(matches!(error, HotmartApiError::Config(_)), "{url}: {error}");
        }
    }

    #[test]
    fn blank_credentials_are_refused_and_never_shown() {
        let error = HotmartApi::new(HotmartApiConfig { client_id: " ".into(), ..config() }).unwrap_err();
        assert!(error.to_string().contains("HOTMART_CLIENT_ID"), "{error}");
        let error = HotmartApi::new(HotmartApiConfig::new("id", Secret::new(""))).unwrap_err();
        assert!(error.to_string().contains("HOTMART_CLIENT_SECRET"), "{error}");
        let api = HotmartApi::new(config()).unwrap();
        assert!(!format!("{api:?}").contains("s3cret"));
        assert!(!format!("{:?}", config()).contains("s3cret"));
    }

    #[test]
    fn status_spellings_round_trip() {
        for status in SaleStatus::ALL {
            assert_eq!(SaleStatus::parse(status.as_str()), Ok(*status));
        }
        assert_eq!(SaleStatus::ALL.len(), 17);
        assert_eq!(SaleStatus::UnderAnalysis.as_str(), "UNDER_ANALISYS");
        assert!(SubscriptionStatus::parse("CANCELLED_BY_BUYER").is_err());
    }
}
