//! The Hotmart fake: an HTTP server speaking Hotmart's REST API as docs/hotmart.md describes it
//! (tokens, sales history, subscriptions and their charges, pages, rate limits, errors),
//! with in-memory sales and subscriptions, for tests and local runs. One server answers both
//! the token host's path and the API paths: point the auth URL and the API URL at it.
//!
//! Usage: `hotmart-fake --port N [--client-id ID] [--client-secret S] [--expires-in SECS]
//! [--rate-per-minute N] [--data FILE] [--exit-with-stdin]` (port 0: any free port, printed
//! on stderr as `hotmart-fake listening on 127.0.0.1:PORT`; defaults `fake-id`, `fake-secret`,
//! 172799 s, 500 calls a minute; `--data`: a JSON file shaped as `POST /_fake/data`;
//! `--exit-with-stdin`: stop when stdin closes, so a test's fake dies with the test).
//!
//! What it serves:
//! * `POST /security/oauth/token`: `Authorization: Basic base64(id:secret)` required (any
//!   `client_id`/`client_secret` in the query must match too); `grant_type=client_credentials`
//!   in the query or a form body. Every call mints a new opaque token (holding `%` and `=`)
//!   valid `--expires-in` seconds; earlier tokens stay valid until they expire.
//! * `GET /payments/api/v1/sales/history` and `/sales/users`: every filter Hotmart documents,
//!   the {APPROVED, COMPLETE} default unless `transaction` or `transaction_status` is given
//!   (`transaction_status` as repeated keys or a comma list), windows over 366 days and
//!   unknown enum values refused (400 `invalid_parameter`), dates matched on `order_date`;
//!   no window at all means every date. Pages are offset windows with base64
//!   `{"page":n,"rows":m}` tokens; `max_results` is clamped to 1..=500 (default 10).
//! * `GET /payments/api/v1/subscriptions`: repeated `status` and `plan` keys (a comma inside
//!   one `status` is an unknown status), the date pairs in ms (items dated in seconds are
//!   compared as ms), and, when no date, `subscriber_code` or `transaction` is given, the
//!   documented default `accession_date` = now − 30 days. Opaque 64-hex page tokens.
//! * `GET /payments/api/v1/subscriptions/{code}/purchases`: a bare array; a code that is
//!   neither a subscription nor in the purchases map is a 404.
//! * Every answer (but the control API's) carries the five rate-limit headers; over
//!   `--rate-per-minute` API calls in the current one-minute window (counted after the bearer
//!   check, as Kong does; token calls are not counted) is a 429.
//!
//! Control API for tests (JSON):
//! * `POST /_fake/data` with `{"sales":[…],"subscriptions":[…],"purchases":{"CODE":[…]},
//!   "append":bool}`: items exactly in the API's shapes. Replaces everything unless
//!   `append`, which upserts (a sale by `purchase.transaction`, a subscription by
//!   `subscriber_code`) as a status change would.
//! * `POST /_fake/faults` replaces every switch with
//!   `{"expire_tokens":bool,"expired_error":"token_expired"|"invalid_token","rate_limit_next":n,
//!   "kong_429":bool,"retry_after_secs":s,"bad_gateway_wide_days":n,"fail_next":n,
//!   "fail_status":500|503,"html_next":n,"empty_body_next":n,"error_in_200_next":n,
//!   "incident":bool,"drift_insert":n,"repeat_token":bool}`: `expire_tokens` expires every
//!   token issued so far (at once); the next `n` API calls answer 429 (`RateLimit-Reset` and,
//!   with `kong_429`, `Retry-After` set to `retry_after_secs`, default 1; Kong's body
//!   `{"message":"API rate limit exceeded"}` with `kong_429`), or `fail_status` (default 500),
//!   or a 502 HTML page, or a 200 with an empty body, or a 200 with an error envelope; a sales
//!   query whose window spans more than `bad_gateway_wide_days` days (or has no start) is a
//!   502 `internal_server_error`; `incident` makes every sales call a 400 `invalid_parameter`;
//!   `drift_insert` inserts n sales at the front of the query's ordering after each history
//!   page served; `repeat_token` makes `next_page_token` repeat the current page's token.
//! * `GET /_fake/state`: `{"calls":{"/path":n},"statuses":{"200":n},"tokens_issued":n,
//!   "rate_limited":n,"sales":n,"subscriptions":n}` (API and token calls only).

#![allow(clippy::unwrap_used, reason = "a test fixture: a poisoned lock or bad header is a bug to surface")]

use base64::Engine as _;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tiny_http::{Header, Method, Request, Response};

const ERROR_URI: &str = "https://developers.hotmart.com/docs/en/start/http-response-codes/";
const FULL_AUTH: &str = "Full authentication is required to access this resource.";
/// The live text of a 400 `invalid_parameter`.
const UNACCEPTABLE: &str = "The request was unacceptable, often due to a misconfigured parameter";
const SALE_STATUSES: [&str; 17] = [
    "APPROVED",
    "BLOCKED",
    "CANCELLED",
    "CHARGEBACK",
    "COMPLETE",
    "EXPIRED",
    "NO_FUNDS",
    "OVERDUE",
    "PARTIALLY_REFUNDED",
    "PRE_ORDER",
    "PRINTED_BILLET",
    "PROCESSING_TRANSACTION",
    "PROTESTED",
    "REFUNDED",
    "STARTED",
    "UNDER_ANALISYS",
    "WAITING_PAYMENT",
];
const SUBSCRIPTION_STATUSES: [&str; 8] = [
    "ACTIVE",
    "INACTIVE",
    "DELAYED",
    "CANCELLED_BY_CUSTOMER",
    "CANCELLED_BY_SELLER",
    "CANCELLED_BY_ADMIN",
    "STARTED",
    "OVERDUE",
];
const PAYMENT_TYPES: [&str; 17] = [
    "BILLET",
    "CASH_PAYMENT",
    "CREDIT_CARD",
    "DIRECT_BANK_TRANSFER",
    "DIRECT_DEBIT",
    "FINANCED_BILLET",
    "FINANCED_INSTALLMENT",
    "GOOGLE_PAY",
    "HOTCARD",
    "HYBRID",
    "MANUAL_TRANSFER",
    "PAYPAL",
    "PAYPAL_INTERNACIONAL",
    "PICPAY",
    "PIX",
    "SAMSUNG_PAY",
    "WALLET",
];
const COMMISSION_AS: [&str; 3] = ["PRODUCER", "COPRODUCER", "AFFILIATE"];
const DAY_MS: i64 = 86_400_000;
/// SYNC's probe: 12 months accepted, 2 years refused; the fake draws the line at a leap year.
const MAX_WINDOW_DAYS: i64 = 366;
const MAX_RESULTS: u64 = 500;
const DEFAULT_RESULTS: u64 = 10;
const HTML_502: &str =
    "<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center></body></html>";

enum Body {
    Json(Value),
    Html(&'static str),
    Empty,
}

struct Reply {
    status: u16,
    body: Body,
    headers: Vec<(String, String)>,
}

fn reply(status: u16, body: Value) -> Reply {
    Reply { status, body: Body::Json(body), headers: Vec::new() }
}

fn envelope(status: u16, error: &str, description: &str) -> Reply {
    reply(status, json!({ "error": error, "error_description": description, "error_uri": ERROR_URI }))
}

fn invalid_parameter() -> Reply {
    envelope(400, "invalid_parameter", UNACCEPTABLE)
}

#[derive(Default)]
struct Faults {
    expired_error: Option<String>,
    rate_limit_next: u64,
    kong_429: bool,
    retry_after_secs: Option<u64>,
    bad_gateway_wide_days: Option<i64>,
    fail_next: u64,
    fail_status: Option<u16>,
    html_next: u64,
    empty_body_next: u64,
    error_in_200_next: u64,
    incident: bool,
    drift_insert: u64,
    repeat_token: bool,
}

struct State {
    client_id: String,
    client_secret: String,
    expires_in: u64,
    rate_per_minute: u64,
    /// Every token issued, with its expiry.
    tokens: HashMap<String, Instant>,
    /// Kept ordered by `order_date`, then `transaction`.
    sales: Vec<Value>,
    /// Kept ordered by `accession_date`, then `subscriber_code`.
    subscriptions: Vec<Value>,
    purchases: BTreeMap<String, Vec<Value>>,
    faults: Faults,
    calls: BTreeMap<String, u64>,
    statuses: BTreeMap<String, u64>,
    tokens_issued: u64,
    rate_limited: u64,
    window_start: Instant,
    window_count: u64,
    minted: u64,
    drifted: u64,
}

/// A query string: repeated keys kept, in order.
struct Params(Vec<(String, String)>);

impl Params {
    fn parse(query: &str) -> Self {
        Self(
            query
                .split('&')
                .filter(|pair| !pair.is_empty())
                .map(|pair| {
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    (percent_decode(k), percent_decode(v))
                })
                .collect(),
        )
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    fn all(&self, key: &str) -> Vec<&str> {
        self.0.iter().filter(|(k, _)| k == key).map(|(_, v)| v.as_str()).collect()
    }

    fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// An integer parameter; `Err` when present and not one.
    fn int(&self, key: &str) -> Result<Option<i64>, Reply> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.trim().parse().map(Some).map_err(|_| invalid_parameter()),
        }
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
                if let Some(b) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    out.push(b);
                    i += 3;
                    continue;
                }
                out.push(b'%');
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

/// A date field as ms: a 10-digit value (the docs' subscription example) is seconds.
fn date_ms(value: Option<&Value>) -> Option<i64> {
    let v = value?.as_i64()?;
    Some(if v.abs() < 100_000_000_000 { v * 1000 } else { v })
}

fn text<'a>(item: &'a Value, pointer: &str) -> Option<&'a str> {
    item.pointer(pointer).and_then(Value::as_str)
}

/// An id as text, whether sent as a number or a string.
fn id_text(item: &Value, pointer: &str) -> Option<String> {
    match item.pointer(pointer)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn sale_key(sale: &Value) -> (i64, String) {
    let date = sale.pointer("/purchase/order_date").and_then(Value::as_i64).unwrap_or(0);
    (date, text(sale, "/purchase/transaction").unwrap_or_default().to_owned())
}

fn subscription_key(sub: &Value) -> (i64, String) {
    (date_ms(sub.get("accession_date")).unwrap_or(0), text(sub, "/subscriber_code").unwrap_or_default().to_owned())
}

/// A `[start, end]` filter in ms, each end optional.
fn in_window(value: Option<i64>, start: Option<i64>, end: Option<i64>) -> bool {
    if start.is_none() && end.is_none() {
        return true;
    }
    value.is_some_and(|v| start.is_none_or(|s| v >= s) && end.is_none_or(|e| v <= e))
}

struct SalesFilter {
    start: Option<i64>,
    end: Option<i64>,
    statuses: BTreeSet<String>,
    product_id: Option<String>,
    transaction: Option<String>,
    buyer_email: Option<String>,
    buyer_name: Option<String>,
    sales_source: Option<String>,
    payment_type: Option<String>,
    offer_code: Option<String>,
    commission_as: Option<String>,
}

impl SalesFilter {
    fn parse(params: &Params) -> Result<Self, Reply> {
        let start = params.int("start_date")?;
        let end = params.int("end_date")?;
        if let (Some(s), Some(e)) = (start, end) {
            if s > e {
                return Err(invalid_parameter());
            }
        }
        let span_end = end.unwrap_or_else(now_ms);
        if start.is_some_and(|s| span_end - s > MAX_WINDOW_DAYS * DAY_MS) {
            return Err(invalid_parameter());
        }
        let mut statuses = BTreeSet::new();
        for value in params.all("transaction_status") {
            for status in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                if !SALE_STATUSES.contains(&status) {
                    return Err(invalid_parameter());
                }
                statuses.insert(status.to_owned());
            }
        }
        let transaction = params.get("transaction").map(str::to_owned);
        if statuses.is_empty() && transaction.is_none() {
            statuses = ["APPROVED", "COMPLETE"].map(str::to_owned).into();
        }
        let product_id = params.get("product_id").map(str::to_owned);
        if product_id.as_ref().is_some_and(|p| p.parse::<i64>().is_err()) {
            return Err(invalid_parameter());
        }
        let payment_type = params.get("payment_type").map(str::to_owned);
        if payment_type.as_deref().is_some_and(|p| !PAYMENT_TYPES.contains(&p)) {
            return Err(invalid_parameter());
        }
        let commission_as = params.get("commission_as").map(str::to_owned);
        if commission_as.as_deref().is_some_and(|c| !COMMISSION_AS.contains(&c)) {
            return Err(invalid_parameter());
        }
        Ok(Self {
            start,
            end,
            statuses,
            product_id,
            transaction,
            buyer_email: params.get("buyer_email").map(str::to_owned),
            buyer_name: params.get("buyer_name").map(str::to_owned),
            sales_source: params.get("sales_source").map(str::to_owned),
            payment_type,
            offer_code: params.get("offer_code").map(str::to_owned),
            commission_as,
        })
    }

    /// Days the window spans; a window with no start spans everything.
    fn span_days(&self) -> i64 {
        match self.start {
            Some(s) => (self.end.unwrap_or_else(now_ms) - s) / DAY_MS,
            None => i64::MAX,
        }
    }

    fn matches(&self, sale: &Value) -> bool {
        let eq = |want: &Option<String>, got: Option<String>| want.as_ref().is_none_or(|w| got.as_ref() == Some(w));
        let status = text(sale, "/purchase/status").unwrap_or_default();
        (self.statuses.is_empty() || self.statuses.contains(status))
            && in_window(sale.pointer("/purchase/order_date").and_then(Value::as_i64), self.start, self.end)
            && eq(&self.product_id, id_text(sale, "/product/id"))
            && eq(&self.transaction, id_text(sale, "/purchase/transaction"))
            && self
                .buyer_email
                .as_ref()
                .is_none_or(|w| text(sale, "/buyer/email").is_some_and(|e| e.eq_ignore_ascii_case(w)))
            && self
                .buyer_name
                .as_ref()
                .is_none_or(|w| text(sale, "/buyer/name").is_some_and(|n| n.to_lowercase().contains(&w.to_lowercase())))
            && eq(&self.sales_source, id_text(sale, "/purchase/tracking/source"))
            && eq(&self.payment_type, id_text(sale, "/purchase/payment/type"))
            && eq(&self.offer_code, id_text(sale, "/purchase/offer/code"))
            && eq(&self.commission_as, id_text(sale, "/purchase/commission_as"))
    }
}

/// How an endpoint's page tokens look.
#[derive(Clone, Copy)]
enum Tokens {
    /// Sales: base64 of `{"page":n,"rows":m}` (live).
    Base64Json,
    /// Subscriptions: 64 hex characters (the docs' example); opaque all the same.
    Hex,
}

impl Tokens {
    fn encode(self, page: u64, rows: u64) -> String {
        match self {
            Tokens::Base64Json => {
                base64::engine::general_purpose::STANDARD.encode(json!({ "page": page, "rows": rows }).to_string())
            }
            Tokens::Hex => {
                let mut plain = format!("{page}:{rows}:");
                while plain.len() < 32 {
                    plain.push('x');
                }
                plain.bytes().map(|b| format!("{b:02x}")).collect()
            }
        }
    }

    fn decode(self, token: &str) -> Option<(u64, u64)> {
        let (page, rows) = match self {
            Tokens::Base64Json => {
                let bytes = base64::engine::general_purpose::STANDARD.decode(token.trim()).ok()?;
                let v: Value = serde_json::from_slice(&bytes).ok()?;
                (v.get("page")?.as_u64()?, v.get("rows")?.as_u64()?)
            }
            Tokens::Hex => {
                if !token.len().is_multiple_of(2) {
                    return None;
                }
                let bytes: Option<Vec<u8>> =
                    (0..token.len()).step_by(2).map(|i| u8::from_str_radix(token.get(i..i + 2)?, 16).ok()).collect();
                let plain = String::from_utf8(bytes?).ok()?;
                let mut parts = plain.split(':');
                (parts.next()?.parse().ok()?, parts.next()?.parse().ok()?)
            }
        };
        (page >= 1 && (1..=MAX_RESULTS).contains(&rows)).then_some((page, rows))
    }
}

/// One page of `items`: the page's items and the whole answer body.
fn paginate(
    items: &[Value],
    params: &Params,
    tokens: Tokens,
    repeat_token: bool,
) -> Result<(Vec<Value>, Value), Reply> {
    let (page, rows) = match params.get("page_token").filter(|t| !t.is_empty()) {
        Some(token) => tokens.decode(token).ok_or_else(|| envelope(400, "invalid_token", "Invalid page token"))?,
        None => {
            let rows = match params.int("max_results")? {
                Some(n) => n.clamp(1, MAX_RESULTS as i64) as u64,
                None => DEFAULT_RESULTS,
            };
            (1, rows)
        }
    };
    let total = items.len() as u64;
    let from = ((page - 1) * rows).min(total) as usize;
    let to = (page * rows).min(total) as usize;
    let slice = items[from..to].to_vec();
    let mut info = serde_json::Map::new();
    info.insert("total_results".into(), total.into());
    info.insert("results_per_page".into(), slice.len().into());
    if repeat_token {
        info.insert("next_page_token".into(), tokens.encode(page, rows).into());
    } else if page * rows < total {
        info.insert("next_page_token".into(), tokens.encode(page + 1, rows).into());
    }
    if page > 1 {
        info.insert("prev_page_token".into(), tokens.encode(page - 1, rows).into());
    }
    let body = json!({ "items": slice, "page_info": info });
    Ok((slice, body))
}

/// What `/sales/users` makes of a sale.
fn users_item(sale: &Value) -> Value {
    let mut users = Vec::new();
    if let Some(producer) = sale.get("producer") {
        users.push(json!({ "role": "PRODUCER", "user": producer }));
    }
    if let Some(buyer) = sale.get("buyer") {
        users.push(json!({ "role": "BUYER", "user": buyer }));
    }
    let mut item = json!({ "users": users });
    if let Some(transaction) = sale.pointer("/purchase/transaction") {
        item["transaction"] = transaction.clone();
    }
    if let Some(product) = sale.get("product") {
        item["product"] = product.clone();
    }
    item
}

impl State {
    fn mint_token(&mut self) -> String {
        self.minted += 1;
        // Opaque, like the live gzip+base64+URL-encoded JWT: `%` and `=` included.
        let seed = now_ms() as u64 ^ self.minted.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut x = seed | 1;
        let bytes: Vec<u8> = (0..47)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect();
        let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
        format!("H4sIAAAAAAAA%2F{}", b64.replace('+', "%2B").replace('/', "%2F"))
    }

    fn token(&mut self, method: &Method, params: &Params, auth: Option<&str>, body: &str) -> Reply {
        if *method != Method::Post {
            return envelope(405, "method_not_allowed", "Request method not supported");
        }
        let Some(basic) = auth.and_then(|a| a.strip_prefix("Basic ").or_else(|| a.strip_prefix("basic "))) else {
            return reply(401, json!({ "error": "unauthorized", "error_description": FULL_AUTH }));
        };
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(basic.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .unwrap_or_default();
        let bad = || reply(401, json!({ "error": "unauthorized", "error_description": "Bad credentials" }));
        if decoded != format!("{}:{}", self.client_id, self.client_secret) {
            return bad();
        }
        if params.get("client_id").is_some_and(|id| id != self.client_id)
            || params.get("client_secret").is_some_and(|s| s != self.client_secret)
        {
            return bad();
        }
        let form = Params::parse(body.trim());
        match params.get("grant_type").or_else(|| form.get("grant_type")) {
            Some("client_credentials") => {}
            None => {
                return reply(400, json!({ "error": "invalid_request", "error_description": "Missing grant type" }))
            }
            Some(other) => {
                let description = format!("Unsupported grant type: {other}");
                return reply(400, json!({ "error": "unsupported_grant_type", "error_description": description }));
            }
        }
        let token = self.mint_token();
        self.tokens.insert(token.clone(), Instant::now() + Duration::from_secs(self.expires_in));
        self.tokens_issued += 1;
        let jti = format!("{:08x}-{:04x}-4f76-9b3a-{:012x}", self.minted, self.minted % 0xffff, now_ms());
        reply(
            200,
            json!({ "access_token": token, "token_type": "bearer", "expires_in": self.expires_in,
                    "scope": "read write", "jti": jti }),
        )
    }

    fn check_bearer(&self, auth: Option<&str>) -> Result<(), Reply> {
        let token = auth.and_then(|a| a.strip_prefix("Bearer ").or_else(|| a.strip_prefix("bearer ")));
        let Some(token) = token.filter(|t| !t.is_empty()) else {
            return Err(envelope(401, "unauthorized", FULL_AUTH));
        };
        match self.tokens.get(token) {
            None => Err(envelope(401, "invalid_token", "Invalid access token")),
            Some(expiry) if *expiry <= Instant::now() => {
                let kind = self.faults.expired_error.clone().unwrap_or_else(|| "token_expired".into());
                Err(envelope(401, &kind, "Access token expired"))
            }
            Some(_) => Ok(()),
        }
    }

    /// Starts a new one-minute window when the current one is over.
    fn roll_window(&mut self) {
        if self.window_start.elapsed() >= Duration::from_secs(60) {
            self.window_start = Instant::now();
            self.window_count = 0;
        }
    }

    /// The five headers, for the current window.
    fn rate_headers(&mut self, forced_reset: Option<u64>) -> Vec<(String, String)> {
        self.roll_window();
        let remaining = self.rate_per_minute.saturating_sub(self.window_count);
        let reset = 60u64.saturating_sub(self.window_start.elapsed().as_secs()).max(1);
        let (remaining, reset) = match forced_reset {
            Some(r) => (0, r),
            None => (remaining, reset),
        };
        vec![
            ("RateLimit-Limit".into(), self.rate_per_minute.to_string()),
            ("RateLimit-Remaining".into(), remaining.to_string()),
            ("RateLimit-Reset".into(), reset.to_string()),
            ("X-RateLimit-Limit-Minute".into(), self.rate_per_minute.to_string()),
            ("X-RateLimit-Remaining-Minute".into(), remaining.to_string()),
        ]
    }

    fn too_many(&mut self, wait: u64) -> Reply {
        self.rate_limited += 1;
        let mut r = if self.faults.kong_429 {
            reply(429, json!({ "message": "API rate limit exceeded" }))
        } else {
            envelope(429, "too_many_requests", "Too many requests")
        };
        if self.faults.kong_429 {
            r.headers.push(("Retry-After".into(), wait.to_string()));
        }
        r.headers.extend(self.rate_headers(Some(wait)));
        r
    }

    fn api(&mut self, method: &Method, path: &str, params: &Params, auth: Option<&str>) -> Reply {
        if let Err(mut r) = self.check_bearer(auth) {
            r.headers.extend(self.rate_headers(None));
            return r;
        }
        self.roll_window();
        self.window_count += 1;
        if self.faults.rate_limit_next > 0 {
            self.faults.rate_limit_next -= 1;
            let wait = self.faults.retry_after_secs.unwrap_or(1);
            return self.too_many(wait);
        }
        if self.window_count > self.rate_per_minute {
            let wait = 60u64.saturating_sub(self.window_start.elapsed().as_secs()).max(1);
            return self.too_many(wait);
        }
        let mut r = self.route(method, path, params);
        r.headers.extend(self.rate_headers(None));
        r
    }

    fn route(&mut self, method: &Method, path: &str, params: &Params) -> Reply {
        if *method != Method::Get {
            return envelope(405, "method_not_allowed", "Request method not supported");
        }
        let f = &mut self.faults;
        if f.fail_next > 0 {
            f.fail_next -= 1;
            let status = f.fail_status.unwrap_or(500);
            return envelope(status, "internal_server_error", "An unexpected error occurred");
        }
        if f.html_next > 0 {
            f.html_next -= 1;
            return Reply { status: 502, body: Body::Html(HTML_502), headers: Vec::new() };
        }
        if f.empty_body_next > 0 {
            f.empty_body_next -= 1;
            return Reply { status: 200, body: Body::Empty, headers: Vec::new() };
        }
        if f.error_in_200_next > 0 {
            f.error_in_200_next -= 1;
            return reply(200, json!({ "error": "internal_server_error", "message": "An unexpected error occurred" }));
        }
        match path {
            "/payments/api/v1/sales/history" => self.sales_history(params),
            "/payments/api/v1/sales/users" => self.sales_users(params),
            "/payments/api/v1/subscriptions" => self.subscriptions(params),
            _ => {
                match path.strip_prefix("/payments/api/v1/subscriptions/").and_then(|p| p.strip_suffix("/purchases")) {
                    Some(code) if !code.is_empty() && !code.contains('/') => self.purchases(&percent_decode(code)),
                    _ => envelope(404, "not_found", "Resource not found"),
                }
            }
        }
    }

    /// The sales a sales query selects, in order; or its refusal.
    fn select_sales(&self, params: &Params) -> Result<(SalesFilter, Vec<Value>), Reply> {
        if self.faults.incident {
            return Err(invalid_parameter());
        }
        let filter = SalesFilter::parse(params)?;
        if self.faults.bad_gateway_wide_days.is_some_and(|days| filter.span_days() > days) {
            let description = "The request took more than 30 seconds to be processed. Please review the dates and/or use other filters.";
            return Err(envelope(502, "internal_server_error", description));
        }
        let selected = self.sales.iter().filter(|s| filter.matches(s)).cloned().collect();
        Ok((filter, selected))
    }

    fn sales_history(&mut self, params: &Params) -> Reply {
        let (filter, selected) = match self.select_sales(params) {
            Ok(found) => found,
            Err(r) => return r,
        };
        let (_, body) = match paginate(&selected, params, Tokens::Base64Json, self.faults.repeat_token) {
            Ok(page) => page,
            Err(r) => return r,
        };
        if let Some(front) = selected.first() {
            for _ in 0..self.faults.drift_insert {
                self.drifted += 1;
                let mut sale = front.clone();
                let date = front.pointer("/purchase/order_date").and_then(Value::as_i64).unwrap_or(0);
                let date = if filter.start.is_some_and(|s| date - 1 < s) { date } else { date - 1 };
                sale["purchase"]["order_date"] = date.into();
                sale["purchase"]["transaction"] = format!("0DRIFT{:06}", self.drifted).into();
                self.sales.push(sale);
            }
            self.sales.sort_by_key(sale_key);
        }
        reply(200, body)
    }

    fn sales_users(&mut self, params: &Params) -> Reply {
        let selected = match self.select_sales(params) {
            Ok((_, selected)) => selected,
            Err(r) => return r,
        };
        let users: Vec<Value> = selected.iter().map(users_item).collect();
        match paginate(&users, params, Tokens::Base64Json, self.faults.repeat_token) {
            Ok((_, body)) => reply(200, body),
            Err(r) => r,
        }
    }

    fn subscriptions(&mut self, params: &Params) -> Reply {
        let statuses: Vec<&str> = params.all("status");
        if statuses.iter().any(|s| !SUBSCRIPTION_STATUSES.contains(s)) {
            return invalid_parameter();
        }
        let mut windows = Vec::new();
        for (from, to, field) in [
            ("accession_date", "end_accession_date", "accession_date"),
            ("cancelation_date", "end_cancelation_date", "end_accession_date"),
            ("date_next_charge", "end_date_next_charge", "date_next_charge"),
        ] {
            let (start, end) = match (params.int(from), params.int(to)) {
                (Ok(s), Ok(e)) => (s, e),
                (Err(r), _) | (_, Err(r)) => return r,
            };
            if start.is_some() || end.is_some() {
                windows.push((field, start, end));
            }
        }
        let by_identity = params.has("subscriber_code") || params.has("transaction");
        if windows.is_empty() && !by_identity {
            windows.push(("accession_date", Some(now_ms() - 30 * DAY_MS), None));
        }
        let trial = match params.get("trial") {
            None => None,
            Some("true") => Some(true),
            Some("false") => Some(false),
            Some(_) => return invalid_parameter(),
        };
        for key in ["product_id", "plan_id"] {
            if params.get(key).is_some_and(|v| v.parse::<i64>().is_err()) {
                return invalid_parameter();
            }
        }
        let plans = params.all("plan");
        let eq = |key: &str, pointer: &str, sub: &Value| {
            params.get(key).is_none_or(|w| id_text(sub, pointer).as_deref() == Some(w))
        };
        let selected: Vec<Value> = self
            .subscriptions
            .iter()
            .filter(|sub| {
                (statuses.is_empty() || statuses.contains(&text(sub, "/status").unwrap_or_default()))
                    && windows.iter().all(|(field, s, e)| in_window(date_ms(sub.get(*field)), *s, *e))
                    && eq("product_id", "/product/id", sub)
                    && eq("plan_id", "/plan/id", sub)
                    && eq("subscriber_code", "/subscriber_code", sub)
                    && eq("transaction", "/transaction", sub)
                    && params
                        .get("subscriber_email")
                        .is_none_or(|w| text(sub, "/subscriber/email").is_some_and(|e| e.eq_ignore_ascii_case(w)))
                    && (plans.is_empty() || plans.contains(&text(sub, "/plan/name").unwrap_or_default()))
                    && trial.is_none_or(|t| sub.get("trial").and_then(Value::as_bool) == Some(t))
            })
            .cloned()
            .collect();
        match paginate(&selected, params, Tokens::Hex, self.faults.repeat_token) {
            Ok((_, body)) => reply(200, body),
            Err(r) => r,
        }
    }

    fn purchases(&self, code: &str) -> Reply {
        match self.purchases.get(code) {
            Some(rows) => reply(200, Value::Array(rows.clone())),
            None if self.subscriptions.iter().any(|s| text(s, "/subscriber_code") == Some(code)) => {
                reply(200, json!([]))
            }
            None => envelope(404, "not_found", "subscription not found"),
        }
    }

    /// `POST /_fake/data` (and `--data`).
    fn load(&mut self, data: &Value) -> Result<Value, String> {
        let list = |key: &str| -> Result<Vec<Value>, String> {
            match data.get(key) {
                None | Some(Value::Null) => Ok(Vec::new()),
                Some(Value::Array(items)) => Ok(items.clone()),
                Some(_) => Err(format!("{key} must be an array")),
            }
        };
        let sales = list("sales")?;
        if let Some(bad) = sales.iter().position(|s| text(s, "/purchase/transaction").is_none()) {
            return Err(format!("sales[{bad}] has no purchase.transaction"));
        }
        let subscriptions = list("subscriptions")?;
        if let Some(bad) = subscriptions.iter().position(|s| text(s, "/subscriber_code").is_none()) {
            return Err(format!("subscriptions[{bad}] has no subscriber_code"));
        }
        let mut purchases = BTreeMap::new();
        match data.get("purchases") {
            None | Some(Value::Null) => {}
            Some(Value::Object(map)) => {
                for (code, rows) in map {
                    let rows = rows.as_array().ok_or_else(|| format!("purchases.{code} must be an array"))?;
                    purchases.insert(code.clone(), rows.clone());
                }
            }
            Some(_) => return Err("purchases must be an object".into()),
        }
        if !data.get("append").and_then(Value::as_bool).unwrap_or(false) {
            self.sales.clear();
            self.subscriptions.clear();
            self.purchases.clear();
        }
        for sale in sales {
            let transaction = text(&sale, "/purchase/transaction").map(str::to_owned);
            self.sales.retain(|s| text(s, "/purchase/transaction").map(str::to_owned) != transaction);
            self.sales.push(sale);
        }
        self.sales.sort_by_key(sale_key);
        for sub in subscriptions {
            let code = text(&sub, "/subscriber_code").map(str::to_owned);
            self.subscriptions.retain(|s| text(s, "/subscriber_code").map(str::to_owned) != code);
            self.subscriptions.push(sub);
        }
        self.subscriptions.sort_by_key(subscription_key);
        self.purchases.extend(purchases);
        Ok(json!({ "sales": self.sales.len(), "subscriptions": self.subscriptions.len(),
                   "purchases": self.purchases.len() }))
    }

    fn set_faults(&mut self, f: &Value) {
        let n = |k: &str| f.get(k).and_then(Value::as_u64);
        let flag = |k: &str| f.get(k).and_then(Value::as_bool).unwrap_or(false);
        if flag("expire_tokens") {
            let now = Instant::now();
            for expiry in self.tokens.values_mut() {
                *expiry = (*expiry).min(now);
            }
        }
        self.faults = Faults {
            expired_error: f.get("expired_error").and_then(Value::as_str).map(str::to_owned),
            rate_limit_next: n("rate_limit_next").unwrap_or(0),
            kong_429: flag("kong_429"),
            retry_after_secs: n("retry_after_secs"),
            bad_gateway_wide_days: n("bad_gateway_wide_days").map(|d| d as i64),
            fail_next: n("fail_next").unwrap_or(0),
            fail_status: n("fail_status").map(|s| s as u16),
            html_next: n("html_next").unwrap_or(0),
            empty_body_next: n("empty_body_next").unwrap_or(0),
            error_in_200_next: n("error_in_200_next").unwrap_or(0),
            incident: flag("incident"),
            drift_insert: n("drift_insert").unwrap_or(0),
            repeat_token: flag("repeat_token"),
        };
    }

    fn snapshot(&self) -> Value {
        json!({
            "calls": self.calls, "statuses": self.statuses, "tokens_issued": self.tokens_issued,
            "rate_limited": self.rate_limited, "sales": self.sales.len(), "subscriptions": self.subscriptions.len(),
        })
    }
}

fn respond(request: Request, r: Reply) {
    let (text, kind) = match r.body {
        Body::Json(v) => (v.to_string(), Some("application/json;charset=UTF-8")),
        Body::Html(page) => (page.to_owned(), Some("text/html")),
        Body::Empty => (String::new(), None),
    };
    let mut response = Response::from_string(text).with_status_code(r.status);
    if let Some(kind) = kind {
        response.add_header(Header::from_bytes("content-type", kind).unwrap());
    }
    for (k, v) in r.headers {
        response.add_header(Header::from_bytes(k.as_bytes(), v.as_bytes()).unwrap());
    }
    let _ = request.respond(response);
}

fn handle(state: &Mutex<State>, mut request: Request) {
    let url = request.url().to_owned();
    let (path, query) = url.split_once('?').unwrap_or((url.as_str(), ""));
    let method = request.method().clone();
    let auth = request.headers().iter().find(|h| h.field.equiv("authorization")).map(|h| h.value.as_str().to_owned());
    let mut body = String::new();
    let _ = request.as_reader().take(16 << 20).read_to_string(&mut body);
    let mut s = state.lock().unwrap();

    if let Some(control) = path.strip_prefix("/_fake/") {
        let r = match (&method, control) {
            (Method::Get, "state") => reply(200, s.snapshot()),
            (Method::Post, "data") => match serde_json::from_str(&body).map_err(|e| e.to_string()) {
                Ok(data) => match s.load(&data) {
                    Ok(counts) => reply(200, counts),
                    Err(e) => reply(400, json!({ "error": e })),
                },
                Err(e) => reply(400, json!({ "error": e })),
            },
            (Method::Post, "faults") => {
                let f: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                s.set_faults(&f);
                reply(200, json!({ "faults": f }))
            }
            _ => reply(404, json!({ "error": "unknown fake control" })),
        };
        drop(s);
        return respond(request, r);
    }

    let params = Params::parse(query);
    *s.calls.entry(path.to_owned()).or_default() += 1;
    let r = if path == "/security/oauth/token" {
        // The token host does not spend the API's quota, but shows it like every answer.
        let mut r = s.token(&method, &params, auth.as_deref(), &body);
        r.headers.extend(s.rate_headers(None));
        r
    } else {
        s.api(&method, path, &params, auth.as_deref())
    };
    *s.statuses.entry(r.status.to_string()).or_default() += 1;
    drop(s);
    respond(request, r);
}

fn main() {
    let mut port = 0u16;
    let mut client_id = "fake-id".to_owned();
    let mut client_secret = "fake-secret".to_owned();
    let mut expires_in = 172_799u64;
    let mut rate_per_minute = 500u64;
    let mut data_file = None;
    let mut exit_with_stdin = false;
    let mut args = std::env::args().skip(1);
    let number = |value: Option<String>, name: &str| -> u64 {
        value.and_then(|v| v.parse().ok()).unwrap_or_else(|| {
            eprintln!("hotmart-fake: {name} needs a number");
            std::process::exit(2);
        })
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--port" => port = number(args.next(), "--port") as u16,
            "--client-id" => client_id = args.next().unwrap_or_default(),
            "--client-secret" => client_secret = args.next().unwrap_or_default(),
            "--expires-in" => expires_in = number(args.next(), "--expires-in"),
            "--rate-per-minute" => rate_per_minute = number(args.next(), "--rate-per-minute"),
            "--data" => data_file = args.next(),
            "--exit-with-stdin" => exit_with_stdin = true,
            other => {
                eprintln!("hotmart-fake: unknown argument {other}");
                std::process::exit(2);
            }
        }
    }
    let mut state = State {
        client_id,
        client_secret,
        expires_in,
        rate_per_minute,
        tokens: HashMap::new(),
        sales: Vec::new(),
        subscriptions: Vec::new(),
        purchases: BTreeMap::new(),
        faults: Faults::default(),
        calls: BTreeMap::new(),
        statuses: BTreeMap::new(),
        tokens_issued: 0,
        rate_limited: 0,
        window_start: Instant::now(),
        window_count: 0,
        minted: 0,
        drifted: 0,
    };
    if let Some(file) = data_file {
        let loaded = std::fs::read_to_string(&file)
            .map_err(|e| e.to_string())
            .and_then(|t| serde_json::from_str::<Value>(&t).map_err(|e| e.to_string()))
            .and_then(|data| state.load(&data));
        if let Err(e) = loaded {
            eprintln!("hotmart-fake: --data {file}: {e}");
            std::process::exit(2);
        }
    }
    let server = lms_bridge_tools::listen("hotmart-fake", port);
    let state = Arc::new(Mutex::new(state));
    lms_bridge_tools::serve("hotmart-fake", server, state, 4, exit_with_stdin, handle);
}
