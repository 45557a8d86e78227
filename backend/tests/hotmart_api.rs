//! The Hotmart REST client against the Hotmart fake (`tools/src/bin/hotmart-fake.rs`), a real
//! HTTP server with Hotmart's token call, pages, rate limits and fault switches.
//!
//! The fake binary is built once per test run (`HOTMART_FAKE_BIN` overrides it); every test
//! starts its own fake on a free port, which dies with the test.

#![allow(clippy::unwrap_used, reason = "tests: a panic is the failure report")]

use base64::Engine as _;
use lms_bridge_backend::cli::Secret;
use lms_bridge_backend::hotmart_api::{
    HotmartApi, HotmartApiConfig, HotmartApiError, SaleStatus, SalesQuery, SubscriptionStatus, SubscriptionWindow,
    SubscriptionsQuery, Walk,
};
use lms_bridge_shared::Timestamp;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStderr, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const CLIENT_ID: &str = "client-7f3a";
/// A secret that is easy to spot wherever it leaks.
const SECRET: &str = "SECRET-zq81xw55-do-not-leak";
/// 2026-08-29T10:40:00Z: the middle of every test window.
const T0: i64 = 1_788_000_000_000;
const DAY: i64 = 86_400_000;

fn fake_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| lms_bridge_tests::backend::built_binary("HOTMART_FAKE_BIN", "lms-bridge-tools", "hotmart-fake"))
        .clone()
}

/// A running fake; dropping it stops it (and it stops by itself when this process ends: it
/// watches its stdin).
struct Fake {
    child: Child,
    _stderr: BufReader<ChildStderr>,
    url: String,
    http: reqwest::Client,
}

impl Drop for Fake {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Fake {
    fn start(extra: &[&str]) -> Self {
        let mut child = Command::new(fake_bin())
            .args(["--port", "0", "--client-id", CLIENT_ID, "--client-secret", SECRET, "--exit-with-stdin"])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        stderr.read_line(&mut line).unwrap();
        let addr = line.trim().strip_prefix("hotmart-fake listening on ").unwrap_or_else(|| panic!("fake: {line}"));
        Self { child, _stderr: stderr, url: format!("http://{addr}"), http: reqwest::Client::new() }
    }

    async fn control(&self, path: &str, body: Value) -> Value {
        let response = self.http.post(format!("{}/_fake/{path}", self.url)).json(&body).send().await.unwrap();
        assert!(response.status().is_success(), "fake {path}: {}", response.status());
        response.json().await.unwrap()
    }

    async fn data(&self, data: Value) {
        self.control("data", data).await;
    }

    async fn faults(&self, faults: Value) {
        self.control("faults", faults).await;
    }

    async fn state(&self) -> Value {
        self.http.get(format!("{}/_fake/state", self.url)).send().await.unwrap().json().await.unwrap()
    }

    async fn calls(&self, path: &str) -> u64 {
        self.state().await["calls"][path].as_u64().unwrap_or(0)
    }

    async fn tokens_issued(&self) -> u64 {
        self.state().await["tokens_issued"].as_u64().unwrap()
    }

    /// The test settings: pages of 2, three tries, 20 ms back-off steps, no pacing to speak of.
    fn config(&self) -> HotmartApiConfig {
        HotmartApiConfig {
            auth_url: self.url.clone(),
            api_url: self.url.clone(),
            max_results: 2,
            rate_per_minute: 60_000,
            max_attempts: 3,
            backoff_base: Duration::from_millis(20),
            timeout: Duration::from_secs(5),
            ..HotmartApiConfig::new(CLIENT_ID, Secret::new(SECRET))
        }
    }

    fn api(&self) -> HotmartApi {
        HotmartApi::new(self.config()).unwrap()
    }
}

const HISTORY: &str = "/payments/api/v1/sales/history";
const TOKEN: &str = "/security/oauth/token";

fn at(millis: i64) -> Timestamp {
    Timestamp::from_unix_millis(millis).unwrap()
}

/// A sales/history item in the live shape (absent fields omitted).
fn sale(transaction: &str, status: &str, order_date: i64) -> Value {
    json!({
        "producer": {"name": "Produtor", "ucode": "00000000-0000-4000-8000-000000000001"},
        "buyer": {"name": "Aluno", "ucode": "00000000-0000-4000-8000-000000000002", "email": format!("{}@example.com", transaction.to_lowercase())},
        "product": {"name": "Curso", "id": 5856194},
        "purchase": {
            "transaction": transaction, "order_date": order_date, "approved_date": order_date + 3000,
            "status": status, "is_subscription": false, "recurrency_number": 1, "commission_as": "PRODUCER",
            "price": {"currency_code": "BRL", "value": 288.65},
            "payment": {"installments_number": 1, "type": "CREDIT_CARD", "method": "CREDIT_CARD_VISA"},
            "offer": {"payment_mode": "UNIQUE_PAYMENT", "code": "53bxa2hu"}
        }
    })
}

/// `n` sales of one status, an hour apart from T0.
fn sales(prefix: &str, status: &str, n: i64) -> Vec<Value> {
    (0..n).map(|i| sale(&format!("{prefix}{i:03}"), status, T0 + i * 3_600_000)).collect()
}

fn query(statuses: &[SaleStatus]) -> SalesQuery {
    SalesQuery {
        start: at(T0 - 10 * DAY),
        end: at(T0 + 10 * DAY),
        statuses: statuses.to_vec(),
        product_id: None,
        transaction: None,
    }
}

fn approved() -> SalesQuery {
    query(&[SaleStatus::Approved])
}

fn transactions(sales: &[lms_bridge_backend::hotmart_api::Sale]) -> Vec<String> {
    sales.iter().map(|s| s.transaction.clone()).collect()
}

/// Fails when an error's text (Display or Debug) holds a credential, a URL or an email.
fn assert_clean(error: &HotmartApiError) {
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:{SECRET}"));
    for text in [error.to_string(), format!("{error:?}")] {
        for leak in [SECRET, basic.as_str(), "H4sI", "http:", "127.0.0.1", "@", "example.com"] {
            assert!(!text.contains(leak), "{leak:?} in {text:?}");
        }
        assert!(!text.contains('\n'), "{text:?}");
    }
}

// --- Tokens ---------------------------------------------------------------------------

#[tokio::test]
async fn a_token_is_fetched_once_and_reused_across_calls() {
    let fake = Fake::start(&[]);
    fake.data(json!({ "sales": sales("HP", "APPROVED", 5) })).await;
    let api = fake.api();
    let all = api.walk_sales(&approved()).collect().await.unwrap();
    assert_eq!(all.len(), 5);
    let query = SubscriptionsQuery {
        window: SubscriptionWindow::Accession { start: at(T0 - DAY), end: at(T0 + DAY) },
        statuses: vec![SubscriptionStatus::Active],
        product_id: None,
        subscriber_code: None,
        subscriber_email: None,
    };
    api.subscriptions_page(&query, None).await.unwrap();
    assert_eq!(fake.calls(HISTORY).await, 3);
    assert_eq!(fake.tokens_issued().await, 1);
    assert_eq!(fake.calls(TOKEN).await, 1);
}

#[tokio::test]
async fn the_basic_value_works_with_or_without_its_prefix() {
    let fake = Fake::start(&[]);
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:{SECRET}"));
    for given in [basic.clone(), format!("Basic {basic}"), format!("basic {basic}\n")] {
        let api = HotmartApi::new(HotmartApiConfig { basic: Some(Secret::new(given)), ..fake.config() }).unwrap();
        api.sales_page(&approved(), None).await.unwrap();
    }
    assert_eq!(fake.tokens_issued().await, 3);
}

#[tokio::test]
async fn an_expired_token_is_refreshed_once_and_the_call_succeeds() {
    let fake = Fake::start(&[]);
    fake.data(json!({ "sales": sales("HP", "APPROVED", 1) })).await;
    let api = fake.api();
    api.sales_page(&approved(), None).await.unwrap();
    for kind in ["token_expired", "invalid_token"] {
        fake.faults(json!({ "expire_tokens": true, "expired_error": kind })).await;
        let page = api.sales_page(&approved(), None).await.unwrap();
        assert_eq!(page.items.len(), 1, "{kind}");
    }
    let state = fake.state().await;
    assert_eq!(state["tokens_issued"], 3);
    assert_eq!(state["statuses"]["401"], 2);
    assert_eq!(state["calls"][HISTORY], 5);
}

#[tokio::test]
async fn a_token_refused_even_when_fresh_is_an_unauthorized_error_after_one_refresh() {
    let fake = Fake::start(&["--expires-in", "0"]);
    let error = fake.api().sales_page(&approved(), None).await.unwrap_err();
    assert!(matches!(&error, HotmartApiError::Unauthorized { error } if error == "token_expired"), "{error:?}");
    assert_clean(&error);
    assert_eq!(fake.tokens_issued().await, 2);
    assert_eq!(fake.calls(HISTORY).await, 2);
}

#[tokio::test]
async fn wrong_credentials_are_a_credentials_error_naming_the_variables() {
    let fake = Fake::start(&[]);
    let config = HotmartApiConfig { client_secret: Secret::new(format!("{SECRET}-wrong")), ..fake.config() };
    let error = HotmartApi::new(config).unwrap().sales_page(&approved(), None).await.unwrap_err();
    assert!(matches!(error, HotmartApiError::Credentials { status: 401, .. }), "{error:?}");
    let text = error.to_string();
    assert!(text.contains("HOTMART_CLIENT_ID") && text.contains("HOTMART_CLIENT_SECRET"), "{text}");
    assert_clean(&error);
    // Never retried, and no API call made without a token.
    assert_eq!(fake.calls(TOKEN).await, 1);
    assert_eq!(fake.calls(HISTORY).await, 0);
}

// --- Rate limits and retries -------------------------------------------------------------

#[tokio::test]
async fn a_429_is_backed_off_for_as_long_as_asked_then_retried_whatever_its_body() {
    let fake = Fake::start(&[]);
    fake.data(json!({ "sales": sales("HP", "APPROVED", 1) })).await;
    let api = fake.api();
    for kong in [false, true] {
        fake.faults(json!({ "rate_limit_next": 1, "retry_after_secs": 1, "kong_429": kong })).await;
        let started = Instant::now();
        let page = api.sales_page(&approved(), None).await.unwrap();
        assert_eq!(page.items.len(), 1);
        assert!(started.elapsed() >= Duration::from_millis(950), "kong {kong}: {:?}", started.elapsed());
    }
    let state = fake.state().await;
    assert_eq!(state["rate_limited"], 2);
    assert_eq!(state["calls"][HISTORY], 4);
}

#[tokio::test]
async fn a_429_on_every_try_is_a_rate_limited_error() {
    let fake = Fake::start(&[]);
    fake.faults(json!({ "rate_limit_next": 100, "retry_after_secs": 0, "kong_429": true })).await;
    let error = fake.api().sales_page(&approved(), None).await.unwrap_err();
    assert!(matches!(error, HotmartApiError::RateLimited { attempts: 3, .. }), "{error:?}");
    assert_clean(&error);
    assert_eq!(fake.calls(HISTORY).await, 3);
}

#[tokio::test]
async fn html_502_empty_200_error_in_200_and_503_are_retried() {
    let fake = Fake::start(&[]);
    fake.data(json!({ "sales": sales("HP", "APPROVED", 1) })).await;
    fake.faults(
        json!({ "html_next": 1, "empty_body_next": 1, "error_in_200_next": 1, "fail_next": 1, "fail_status": 503 }),
    )
    .await;
    let api = HotmartApi::new(HotmartApiConfig { max_attempts: 5, ..fake.config() }).unwrap();
    let page = api.sales_page(&approved(), None).await.unwrap();
    assert_eq!(transactions(&page.items), ["HP000"]);
    let state = fake.state().await;
    assert_eq!(state["calls"][HISTORY], 5);
    assert_eq!((state["statuses"]["503"].as_u64(), state["statuses"]["502"].as_u64()), (Some(1), Some(1)));
}

#[tokio::test]
async fn failures_that_outlast_the_tries_are_typed_and_clean() {
    let fake = Fake::start(&[]);
    let api = fake.api();
    fake.faults(json!({ "html_next": 10 })).await;
    let error = api.sales_page(&approved(), None).await.unwrap_err();
    assert!(
        matches!(&error, HotmartApiError::NotJson { status: 502, snippet, .. } if snippet.contains("Bad Gateway")),
        "{error:?}"
    );
    assert_clean(&error);
    fake.faults(json!({ "empty_body_next": 10 })).await;
    let error = api.sales_page(&approved(), None).await.unwrap_err();
    assert!(matches!(error, HotmartApiError::NotJson { status: 200, .. }), "{error:?}");
    fake.faults(json!({ "fail_next": 10, "fail_status": 503 })).await;
    let error = api.sales_page(&approved(), None).await.unwrap_err();
    assert!(matches!(&error, HotmartApiError::Unavailable { status: 503, attempts: 3, .. }), "{error:?}");
    assert_clean(&error);
    assert_eq!(fake.calls(HISTORY).await, 9);
}

#[tokio::test]
async fn an_incident_is_an_invalid_parameter_error_and_is_not_retried() {
    let fake = Fake::start(&[]);
    fake.faults(json!({ "incident": true })).await;
    let error = fake.api().sales_page(&approved(), None).await.unwrap_err();
    let HotmartApiError::InvalidParameter { error: code, description, .. } = &error else { panic!("{error:?}") };
    assert_eq!(code, "invalid_parameter");
    assert!(description.contains("misconfigured parameter"), "{description}");
    assert_clean(&error);
    assert_eq!(fake.calls(HISTORY).await, 1);
}

#[tokio::test]
async fn a_window_hotmart_cannot_serve_asks_to_be_split() {
    let fake = Fake::start(&[]);
    fake.data(json!({ "sales": sales("HP", "APPROVED", 1) })).await;
    fake.faults(json!({ "bad_gateway_wide_days": 5 })).await;
    let api = fake.api();
    let error = api.sales_page(&approved(), None).await.unwrap_err();
    assert!(matches!(error, HotmartApiError::QueryTooWide { .. }), "{error:?}");
    assert_eq!(fake.calls(HISTORY).await, 1, "a query over 30 s is not retried");
    let narrow = SalesQuery { start: at(T0 - DAY), end: at(T0 + DAY), ..approved() };
    assert_eq!(api.sales_page(&narrow, None).await.unwrap().items.len(), 1);
    // Past Hotmart's year the client splits before asking.
    let year = SalesQuery { start: at(T0 - 200 * DAY), end: at(T0 + 200 * DAY), ..approved() };
    let error = api.sales_page(&year, None).await.unwrap_err();
    assert!(matches!(error, HotmartApiError::QueryTooWide { .. }), "{error:?}");
    assert_eq!(fake.calls(HISTORY).await, 2);
}

// --- Pages --------------------------------------------------------------------------------

#[tokio::test]
async fn pages_that_drift_mid_walk_still_yield_every_transaction_exactly_once() {
    let fake = Fake::start(&[]);
    fake.data(json!({ "sales": sales("HP", "APPROVED", 6) })).await;
    fake.faults(json!({ "drift_insert": 1 })).await;
    let api = fake.api();
    let mut walk = api.walk_sales(&approved());
    let mut seen = Vec::new();
    while let Some(rows) = walk.next_page().await.unwrap() {
        seen.extend(transactions(&rows));
    }
    let expected: Vec<String> = (0..6).map(|i| format!("HP{i:03}")).collect();
    assert_eq!(seen, expected);
    // The offsets shifted under the walk: more pages than 6 rows of 2 need.
    assert!(fake.calls(HISTORY).await > 3, "{}", fake.calls(HISTORY).await);
}

#[tokio::test]
async fn a_repeated_page_token_is_an_error_not_a_hang() {
    let fake = Fake::start(&[]);
    fake.data(json!({ "sales": sales("HP", "APPROVED", 6) })).await;
    fake.faults(json!({ "repeat_token": true })).await;
    let api = fake.api();
    let walked = tokio::time::timeout(Duration::from_secs(10), api.walk_sales(&approved()).collect()).await.unwrap();
    let error = walked.unwrap_err();
    assert!(matches!(error, HotmartApiError::RepeatedPageToken { .. }), "{error:?}");
    assert!(fake.calls(HISTORY).await <= 2);
}

#[tokio::test]
async fn a_walk_stops_at_its_page_limit() {
    let fake = Fake::start(&[]);
    fake.data(json!({ "sales": sales("HP", "APPROVED", 6) })).await;
    let api = fake.api();
    let error = Walk::new(&api, approved()).with_max_pages(2).collect().await.unwrap_err();
    assert!(matches!(error, HotmartApiError::TooManyPages { pages: 2, .. }), "{error:?}");
}

#[tokio::test]
async fn a_checkpointed_cursor_resumes_the_walk_and_a_garbage_one_is_refused() {
    let fake = Fake::start(&[]);
    fake.data(json!({ "sales": sales("HP", "APPROVED", 5) })).await;
    let api = fake.api();
    let mut walk = api.walk_sales(&approved());
    let first = walk.next_page().await.unwrap().unwrap();
    let cursor = walk.page_token().unwrap().to_owned();
    let rest = Walk::resume(&api, approved(), cursor).collect().await.unwrap();
    assert_eq!([transactions(&first), transactions(&rest)].concat(), ["HP000", "HP001", "HP002", "HP003", "HP004"]);
    let error = api.sales_page(&approved(), Some("APPROVED:not-a-token!")).await.unwrap_err();
    assert!(matches!(error, HotmartApiError::InvalidPageToken { .. }), "{error:?}");
    let calls = fake.calls(HISTORY).await;
    let error = api.sales_page(&approved(), Some("REFUNDED:eyJwYWdlIjoyLCJyb3dzIjoyfQ==")).await.unwrap_err();
    assert!(matches!(error, HotmartApiError::InvalidPageToken { .. }), "{error:?}");
    assert_eq!(fake.calls(HISTORY).await, calls, "a cursor for another query is refused before any call");
}

// --- Statuses -----------------------------------------------------------------------------

#[tokio::test]
async fn refunds_come_back_because_the_client_asks_for_them_status_by_status() {
    let fake = Fake::start(&[]);
    let mut all = sales("AP", "APPROVED", 3);
    all.extend(sales("RF", "REFUNDED", 3));
    all.extend(sales("CB", "CHARGEBACK", 1));
    all.extend(sales("CO", "COMPLETE", 1));
    fake.data(json!({ "sales": all })).await;
    let api = fake.api();
    let refunds = api.walk_sales(&query(&[SaleStatus::Refunded])).collect().await.unwrap();
    assert_eq!(transactions(&refunds), ["RF000", "RF001", "RF002"]);
    assert!(refunds.iter().all(|s| s.status == "REFUNDED"));
    let query = query(&[SaleStatus::Approved, SaleStatus::Refunded, SaleStatus::Complete, SaleStatus::Approved]);
    let found: BTreeSet<String> = transactions(&api.walk_sales(&query).collect().await.unwrap()).into_iter().collect();
    let expected: BTreeSet<String> =
        ["AP000", "AP001", "AP002", "RF000", "RF001", "RF002", "CO000"].into_iter().map(String::from).collect();
    assert_eq!(found, expected);
    let error = api.sales_page(&self::query(&[]), None).await.unwrap_err();
    assert!(matches!(error, HotmartApiError::BadQuery { .. }), "{error:?}");
}

#[tokio::test]
async fn a_sale_reads_whole_and_a_buyerless_sale_has_no_buyer() {
    let fake = Fake::start(&[]);
    let mut buyerless = sale("HP900", "COMPLETE", T0);
    buyerless.as_object_mut().unwrap().remove("buyer");
    fake.data(json!({ "sales": [sale("HP100", "COMPLETE", T0 - 1000), buyerless] })).await;
    let page = fake.api().sales_page(&query(&[SaleStatus::Complete]), None).await.unwrap();
    let [first, second] = page.items.as_slice() else { panic!("{:?}", page.items) };
    assert_eq!(first.transaction, "HP100");
    assert_eq!(first.order_date, Some(at(T0 - 1000)));
    assert_eq!(first.approved_date, Some(at(T0 + 2000)));
    assert_eq!(first.product.id.as_deref(), Some("5856194"));
    assert_eq!(first.buyer.as_ref().and_then(|b| b.email.as_deref()), Some("hp100@example.com"));
    assert_eq!(
        (first.offer.payment_mode.as_deref(), first.price.currency_code.as_deref()),
        (Some("UNIQUE_PAYMENT"), Some("BRL"))
    );
    assert_eq!(second.buyer, None);
    assert_eq!(page.total_results, Some(2));
    assert_eq!(page.next_page_token, None);
}

// --- Subscriptions ------------------------------------------------------------------------

fn subscription(code: &str, status: &str, accession_secs: i64) -> Value {
    json!({
        "subscriber_code": code, "subscription_id": 123456, "status": status,
        "accession_date": accession_secs, "request_date": accession_secs,
        "date_next_charge": accession_secs + 30 * 86_400, "trial": false, "transaction": format!("TX{code}"),
        "plan": {"name": "Plano", "id": 726420, "recurrency_period": 30},
        "product": {"id": 1355458, "name": "Produto", "ucode": "788B4B12"},
        "price": {"value": 123.45, "currency_code": "BRL"},
        "subscriber": {"name": "Assinante", "email": "assinante@example.com", "ucode": "84B4848A"}
    })
}

#[tokio::test]
async fn subscriptions_dated_in_seconds_read_as_ms_across_pages_and_statuses() {
    let fake = Fake::start(&[]);
    let secs = T0 / 1000;
    fake.data(json!({ "subscriptions": [
        subscription("SUBA", "ACTIVE", secs),
        subscription("SUBB", "CANCELLED_BY_SELLER", secs + 60),
        subscription("SUBC", "ACTIVE", secs + 120),
        subscription("SUBD", "INACTIVE", secs + 180),
        subscription("SUBE", "ACTIVE", secs - 40 * 86_400),
    ] }))
    .await;
    let api = fake.api();
    let query = SubscriptionsQuery {
        window: SubscriptionWindow::Accession { start: at(T0 - DAY), end: at(T0 + DAY) },
        statuses: vec![SubscriptionStatus::Active, SubscriptionStatus::CancelledBySeller],
        product_id: Some("1355458".into()),
        subscriber_code: None,
        subscriber_email: None,
    };
    let subs = api.walk_subscriptions(&query).collect().await.unwrap();
    let codes: Vec<&str> = subs.iter().map(|s| s.subscriber_code.as_str()).collect();
    assert_eq!(codes, ["SUBA", "SUBB", "SUBC"]);
    assert_eq!(subs[0].accession_date, Some(at(T0)));
    assert_eq!(subs[0].date_next_charge, Some(at(T0 + 30 * DAY)));
    assert_eq!(subs[1].status, "CANCELLED_BY_SELLER");
    assert_eq!(subs[0].plan.recurrency_period, Some(30));
    assert_eq!(subs[0].subscription_id.as_deref(), Some("123456"));
    assert_eq!(fake.calls("/payments/api/v1/subscriptions").await, 2);
}

#[tokio::test]
async fn purchases_read_as_a_bare_array_and_an_unknown_code_is_not_found() {
    let fake = Fake::start(&[]);
    fake.data(json!({
        "subscriptions": [subscription("SUBA", "ACTIVE", T0 / 1000)],
        "purchases": { "SUBA": [
            {"payment_type": "HOTMART_BALANCE", "recurrency_number": 1, "transaction": "TX1", "price": {"value": 997, "currency_code": "BRL"},
             "status": "COMPLETE", "approved_date": 1_619_906_042_000_i64, "payment_engine": "HotPay", "under_warranty": false, "payment_method": "HOTMART"},
            {"under_warranty": false, "payment_method": "PIX", "status": "OVERDUE", "recurrency_number": 2, "payment_type": "PIX",
             "payment_engine": "HotPay", "transaction": "TX2", "price": {"value": 997, "currency_code": "BRL"}},
            {"under_warranty": false, "payment_method": "PIX", "status": "COMPLETE", "recurrency_number": 2, "payment_type": "PIX",
             "transaction": "TX3", "approved_date": 1_622_584_442_000_i64}
        ] }
    }))
    .await;
    let api = fake.api();
    let rows = api.subscription_purchases("SUBA").await.unwrap();
    assert_eq!(rows.iter().map(|r| r.transaction.as_str()).collect::<Vec<_>>(), ["TX1", "TX2", "TX3"]);
    assert_eq!(rows[0].payment_type.as_deref(), Some("HOTMART_BALANCE"));
    assert_eq!(rows[0].approved_date, Some(at(1_619_906_042_000)));
    assert_eq!((rows[1].approved_date, rows[1].status.as_str()), (None, "OVERDUE"));
    assert_eq!(rows[2].recurrency_number, Some(2));
    let error = api.subscription_purchases("X53ZPFQZ").await.unwrap_err();
    assert!(matches!(error, HotmartApiError::NotFound { .. }), "{error:?}");
    assert_clean(&error);
    assert_eq!(fake.calls("/payments/api/v1/subscriptions/X53ZPFQZ/purchases").await, 1);
}
