//! The Hotmart REST API fake (`tools/src/bin/hotmart-fake.rs`) as tests start it, and a
//! builder of the sales and subscriptions it serves, in the API's own item shapes.

use crate::backend::built_binary;
use crate::process::{free_port, Service};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// The fake's client id.
pub const CLIENT_ID: &str = "bridge-client";
/// The fake's client secret: easy to spot wherever it leaks.
pub const CLIENT_SECRET: &str = "HOTMART-SECRET-4k2m9q";

/// The `hotmart-fake` binary (`HOTMART_FAKE_BIN` overrides the build).
pub fn fake_bin() -> PathBuf {
    built_binary("HOTMART_FAKE_BIN", "lms-bridge-tools", "hotmart-fake")
}

/// A running fake.
pub struct HotmartFake {
    _service: Service,
    /// `http://127.0.0.1:port`: both the token URL and the API URL.
    pub url: String,
}

impl HotmartFake {
    /// Starts one with the test credentials and these extra arguments.
    pub fn start(extra: &[&str]) -> Self {
        let port = free_port();
        let mut command = Command::new(fake_bin());
        command
            .args(["--port", &port.to_string(), "--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET])
            .args(extra);
        let mut service = Service::spawn("hotmart-fake", command);
        let url = format!("http://127.0.0.1:{port}");
        let probe = format!("{url}/_fake/state");
        service.wait_until(Duration::from_secs(20), || {
            reqwest::blocking::get(&probe).is_ok_and(|r| r.status().is_success())
        });
        Self { _service: service, url }
    }

    fn post(&self, path: &str, body: &Value) {
        // Loading tens of thousands of rows takes the fake a while.
        let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(600)).build().unwrap();
        let response = client.post(format!("{}/_fake/{path}", self.url)).json(body).send();
        let response = response.unwrap();
        assert!(response.status().is_success(), "fake {path}: {}", response.text().unwrap_or_default());
    }

    /// Replaces what it serves.
    pub fn serve(&self, data: &HotmartData) {
        self.post("data", &data.json(false));
    }

    /// Adds to what it serves (a sale or subscription with a known id replaces it: a status
    /// change).
    pub fn add(&self, data: &HotmartData) {
        self.post("data", &data.json(true));
    }

    /// Sets fault switches (see the fake's doc); each call replaces them all.
    pub fn faults(&self, faults: Value) {
        self.post("faults", &faults);
    }

    /// Call counts by path and status, tokens issued.
    pub fn state(&self) -> Value {
        reqwest::blocking::get(format!("{}/_fake/state", self.url)).unwrap().json().unwrap()
    }

    /// The environment `lms-bridge backfill`/`reconcile`/`serve` need to use this fake.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("HOTMART_API_URL", self.url.clone()),
            ("HOTMART_AUTH_URL", self.url.clone()),
            ("HOTMART_CLIENT_ID", CLIENT_ID.to_owned()),
            ("HOTMART_CLIENT_SECRET", CLIENT_SECRET.to_owned()),
            ("HOTMART_API_RATE_PER_MINUTE", "60000".to_owned()),
        ]
    }
}

/// Sales and subscriptions as the API returns them.
#[derive(Debug, Clone, Default)]
pub struct HotmartData {
    sales: Vec<Value>,
    subscriptions: Vec<Value>,
    purchases: serde_json::Map<String, Value>,
}

/// One charge of a subscription: its transaction, `sales/history` status, approval time (ms).
#[derive(Debug, Clone)]
pub struct Charge {
    /// Transaction.
    pub transaction: String,
    /// REST status (`APPROVED`, `REFUNDED`…).
    pub status: &'static str,
    /// Approval time; absent for unpaid attempts.
    pub approved_ms: Option<i64>,
}

impl HotmartData {
    /// Nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// A one-off sale of `product` to `email`, ordered and approved at `approved_ms`.
    pub fn sale(mut self, transaction: &str, email: &str, product: u64, status: &str, approved_ms: i64) -> Self {
        self.sales.push(sale_item(transaction, email, product, status, approved_ms, false));
        self
    }

    /// A subscription with its charges (each also a `sales/history` row marked as a
    /// subscription's, as Hotmart lists them).
    #[allow(clippy::too_many_arguments, reason = "one value per field of Hotmart's item")]
    pub fn subscription(
        mut self,
        code: &str,
        email: &str,
        product: u64,
        status: &str,
        next_charge_ms: i64,
        cancelled_ms: Option<i64>,
        charges: &[Charge],
    ) -> Self {
        let accession = charges.iter().filter_map(|c| c.approved_ms).min().unwrap_or(next_charge_ms);
        let mut item = json!({
            "subscriber_code": code,
            "subscription_id": 10_000 + self.subscriptions.len(),
            "status": status,
            "accession_date": accession,
            "request_date": accession,
            "date_next_charge": next_charge_ms,
            "trial": false,
            "plan": {"name": "Monthly", "id": 77, "recurrency_period": 30},
            "product": {"id": product, "name": format!("Product {product}"), "ucode": "P"},
            "price": {"value": 97, "currency_code": "BRL"},
            "subscriber": {"name": "Subscriber", "email": email, "ucode": "S"},
        });
        if let Some(first) = charges.first() {
            item["transaction"] = first.transaction.clone().into();
        }
        if let Some(cancelled) = cancelled_ms {
            item["end_accession_date"] = cancelled.into();
        }
        self.subscriptions.push(item);
        let rows: Vec<Value> = charges
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let mut row = json!({
                    "transaction": c.transaction,
                    "status": c.status,
                    "recurrency_number": i + 1,
                    "payment_engine": "HotPay",
                    "payment_type": "CREDIT_CARD",
                    "price": {"value": 97, "currency_code": "BRL"},
                });
                if let Some(approved) = c.approved_ms {
                    row["approved_date"] = approved.into();
                }
                row
            })
            .collect();
        for c in charges {
            if let Some(approved) = c.approved_ms {
                self.sales.push(sale_item(&c.transaction, email, product, c.status, approved, true));
            }
        }
        self.purchases.insert(code.to_owned(), Value::Array(rows));
        self
    }

    /// How many sales and subscriptions.
    pub fn records(&self) -> usize {
        self.sales.len() + self.subscriptions.len()
    }

    /// The control API's body.
    pub fn json(&self, append: bool) -> Value {
        json!({
            "sales": self.sales,
            "subscriptions": self.subscriptions,
            "purchases": self.purchases,
            "append": append,
        })
    }
}

fn sale_item(transaction: &str, email: &str, product: u64, status: &str, at_ms: i64, subscription: bool) -> Value {
    json!({
        "product": {"name": format!("Product {product}"), "id": product},
        "buyer": {"name": "Buyer", "ucode": "B", "email": email},
        "producer": {"name": "Producer", "ucode": "P"},
        "purchase": {
            "transaction": transaction,
            "order_date": at_ms,
            "approved_date": at_ms,
            "status": status,
            "recurrency_number": 1,
            "is_subscription": subscription,
            "commission_as": "PRODUCER",
            "price": {"value": 97.5, "currency_code": "BRL"},
            "payment": {"method": "CREDIT_CARD_VISA", "installments_number": 1, "type": "CREDIT_CARD"},
            "offer": {"payment_mode": if subscription { "SUBSCRIPTION" } else { "UNIQUE_PAYMENT" }, "code": "off1"},
        }
    })
}
