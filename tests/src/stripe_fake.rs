//! A fake of the part of Stripe's API the backend reads, as a real HTTP server on a free
//! loopback port (in this process, like the test issuer): invoice payments, Checkout Sessions
//! with their line items, and charges, in Stripe's own shapes. Every API call needs
//! `Authorization: Bearer` [`API_KEY`] (else a 401 in Stripe's error shape) and is counted.
//!
//! Data is loaded in process ([`StripeFake::invoice_payment`], …) or with
//! `POST /_fake/data` `{"invoice_payments":[{"invoice","payment_intent"}],
//! "checkout_sessions":[{"payment_intent","product"}],"charges":[{"id","payment_intent"}]}`
//! (added to what it serves); `GET /_fake/state` answers `{"calls":{"/v1/…":n},"unauthorized":n}`.
//!
//! What it serves:
//! * `GET /v1/invoice_payments`: filtered by `invoice`, or by `payment[type]=payment_intent`
//!   with `payment[payment_intent]` (a `payment[payment_intent]` without the type is a 400, as
//!   Stripe's parameter check is).
//! * `GET /v1/checkout/sessions`: filtered by `payment_intent`; `line_items` only with
//!   `expand[]=data.line_items` (an includable field, as in Stripe).
//! * `GET /v1/charges/{id}`: the charge and its `payment_intent`; 404 `resource_missing` else.

use crate::process::free_port;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tiny_http::{Header, Method, Request, Response, Server};

/// The restricted key the fake accepts: easy to spot wherever it leaks.
pub const API_KEY: &str = "rk_test_FAKE-STRIPE-KEY-5q8w2e";

#[derive(Debug, Default)]
struct Data {
    /// (invoice, payment intent).
    invoice_payments: Vec<(String, String)>,
    /// (payment intent, product).
    checkout_sessions: Vec<(String, String)>,
    /// Charge id → its payment intent.
    charges: BTreeMap<String, Option<String>>,
    calls: BTreeMap<String, u64>,
    unauthorized: u64,
}

/// A running fake; it serves until the test process ends.
pub struct StripeFake {
    /// `http://127.0.0.1:port`: the `STRIPE_API_URL`.
    pub url: String,
    data: Arc<Mutex<Data>>,
}

impl StripeFake {
    /// Starts one on a free port.
    pub fn start() -> Self {
        let port = free_port();
        let server = Server::http(("127.0.0.1", port)).unwrap();
        let data = Arc::new(Mutex::new(Data::default()));
        let shared = Arc::clone(&data);
        std::thread::spawn(move || {
            for request in server.incoming_requests() {
                handle(&shared, request);
            }
        });
        Self { url: format!("http://127.0.0.1:{port}"), data }
    }

    fn data(&self) -> std::sync::MutexGuard<'_, Data> {
        self.data.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The payment intent `payment_intent` paid invoice `invoice`.
    pub fn invoice_payment(&self, invoice: &str, payment_intent: &str) {
        self.data().invoice_payments.push((invoice.to_owned(), payment_intent.to_owned()));
    }

    /// A completed Checkout Session in payment mode that created `payment_intent`, its one
    /// line item's price of `product`.
    pub fn checkout_session(&self, payment_intent: &str, product: &str) {
        self.data().checkout_sessions.push((payment_intent.to_owned(), product.to_owned()));
    }

    /// A charge, of `payment_intent` if any.
    pub fn charge(&self, id: &str, payment_intent: Option<&str>) {
        self.data().charges.insert(id.to_owned(), payment_intent.map(str::to_owned));
    }

    /// Authorized calls of a path (`/v1/charges` for every charge).
    pub fn calls(&self, path: &str) -> u64 {
        self.data().calls.get(path).copied().unwrap_or(0)
    }

    /// Calls refused for their key.
    pub fn unauthorized(&self) -> u64 {
        self.data().unauthorized
    }

    /// The environment a backend needs to use this fake.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![("STRIPE_API_URL", self.url.clone()), ("STRIPE_API_KEY", API_KEY.to_owned())]
    }
}

fn respond(request: Request, status: u16, body: &Value) {
    let header = Header::from_bytes("content-type", "application/json").unwrap();
    let _ = request.respond(Response::from_string(body.to_string()).with_status_code(status).with_header(header));
}

fn error(kind: &str, message: &str) -> Value {
    json!({ "error": { "type": kind, "message": message } })
}

fn list(url: &str, data: Vec<Value>) -> Value {
    json!({ "object": "list", "url": url, "has_more": false, "data": data })
}

fn handle(data: &Mutex<Data>, mut request: Request) {
    let parsed = reqwest::Url::parse(&format!("http://fake{}", request.url())).unwrap();
    let path = parsed.path().to_owned();
    let query: Vec<(String, String)> = parsed.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    let param = |name: &str| query.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let mut data = data.lock().unwrap_or_else(std::sync::PoisonError::into_inner);

    if path.starts_with("/_fake/") {
        match (request.method(), path.as_str()) {
            (Method::Get, "/_fake/state") => {
                let body = json!({ "calls": data.calls, "unauthorized": data.unauthorized });
                return respond(request, 200, &body);
            }
            (Method::Post, "/_fake/data") => {
                let mut text = String::new();
                let _ = request.as_reader().read_to_string(&mut text);
                let Ok(body) = serde_json::from_str::<Value>(&text) else {
                    return respond(request, 400, &error("invalid_request_error", "not JSON"));
                };
                let text_of = |v: &Value, k: &str| v[k].as_str().unwrap_or_default().to_owned();
                for p in body["invoice_payments"].as_array().into_iter().flatten() {
                    data.invoice_payments.push((text_of(p, "invoice"), text_of(p, "payment_intent")));
                }
                for s in body["checkout_sessions"].as_array().into_iter().flatten() {
                    data.checkout_sessions.push((text_of(s, "payment_intent"), text_of(s, "product")));
                }
                for c in body["charges"].as_array().into_iter().flatten() {
                    data.charges.insert(text_of(c, "id"), c["payment_intent"].as_str().map(str::to_owned));
                }
                return respond(request, 200, &json!({ "ok": true }));
            }
            _ => return respond(request, 404, &error("invalid_request_error", "no such control route")),
        }
    }

    let authorized = request
        .headers()
        .iter()
        .any(|h| h.field.equiv("authorization") && h.value.as_str() == format!("Bearer {API_KEY}"));
    if !authorized {
        data.unauthorized += 1;
        let message = "Invalid API Key provided: rk_test_****";
        return respond(request, 401, &error("invalid_request_error", message));
    }
    if request.method() != &Method::Get {
        return respond(request, 405, &error("invalid_request_error", "only GET is faked"));
    }
    let counted = if path.starts_with("/v1/charges/") { "/v1/charges".to_owned() } else { path.clone() };
    *data.calls.entry(counted).or_insert(0) += 1;

    match path.as_str() {
        "/v1/invoice_payments" => {
            let intent = param("payment[payment_intent]");
            if intent.is_some() && param("payment[type]").as_deref() != Some("payment_intent") {
                let message = "Missing required param: payment[type].";
                return respond(request, 400, &error("invalid_request_error", message));
            }
            let invoice = param("invoice");
            let items = data
                .invoice_payments
                .iter()
                .enumerate()
                .filter(|(_, (i, p))| intent.as_ref().is_none_or(|x| x == p) && invoice.as_ref().is_none_or(|x| x == i))
                .map(|(n, (i, p))| {
                    json!({
                        "id": format!("inpay_{n}"), "object": "invoice_payment", "invoice": i,
                        "is_default": true, "status": "paid",
                        "payment": { "type": "payment_intent", "payment_intent": p },
                    })
                })
                .collect();
            respond(request, 200, &list("/v1/invoice_payments", items));
        }
        "/v1/checkout/sessions" => {
            let intent = param("payment_intent");
            let expanded = query.iter().any(|(k, v)| k == "expand[]" && v == "data.line_items");
            let items = data
                .checkout_sessions
                .iter()
                .enumerate()
                .filter(|(_, (p, _))| intent.as_ref().is_none_or(|x| x == p))
                .map(|(n, (p, product))| {
                    let mut session = json!({
                        "id": format!("cs_test_{n}"), "object": "checkout.session", "mode": "payment",
                        "status": "complete", "payment_status": "paid", "payment_intent": p,
                    });
                    if expanded {
                        let price = json!({ "id": format!("price_{n}"), "object": "price", "product": product });
                        let item = json!({ "id": format!("li_{n}"), "object": "item", "quantity": 1, "price": price });
                        session["line_items"] =
                            list(&format!("/v1/checkout/sessions/cs_test_{n}/line_items"), vec![item]);
                    }
                    session
                })
                .collect();
            respond(request, 200, &list("/v1/checkout/sessions", items));
        }
        charge if charge.starts_with("/v1/charges/") => {
            let id = &charge["/v1/charges/".len()..];
            match data.charges.get(id) {
                Some(intent) => {
                    let body = json!({ "id": id, "object": "charge", "payment_intent": intent, "refunded": true });
                    respond(request, 200, &body)
                }
                None => {
                    let mut body = error("invalid_request_error", &format!("No such charge: '{id}'"));
                    body["error"]["code"] = "resource_missing".into();
                    respond(request, 404, &body)
                }
            }
        }
        _ => respond(request, 404, &error("invalid_request_error", "Unrecognized request URL")),
    }
}
