//! The real Pub/Sub emulator, and a small REST client for topics and pull subscriptions.

use crate::process::{free_port, http_ok, require, Service};
use base64::Engine as _;
use serde_json::{json, Value};
use std::process::Command;
use std::time::{Duration, Instant};

/// The project id used against the emulator.
pub const PROJECT: &str = "lms-bridge-test";

/// A running Pub/Sub emulator.
pub struct Emulator {
    service: Option<Service>,
    /// `127.0.0.1:port`.
    pub host: String,
}

impl Emulator {
    /// Starts the emulator on a free port and waits until it answers.
    pub fn start() -> Self {
        let host = format!("127.0.0.1:{}", free_port());
        let mut emulator = Self { service: None, host };
        emulator.restart();
        emulator
    }

    /// Stops it (all state is lost, as with the real emulator).
    pub fn stop(&mut self) {
        self.service.take();
    }

    /// Starts it again on the same port.
    pub fn restart(&mut self) {
        self.stop();
        let gcloud = require("gcloud", "install Debian's google-cloud-cli and google-cloud-cli-pubsub-emulator");
        let mut command = Command::new(gcloud);
        command
            .args(["beta", "emulators", "pubsub", "start", "--quiet"])
            .arg(format!("--host-port={}", self.host))
            .arg(format!("--project={PROJECT}"))
            .env("CLOUDSDK_CORE_DISABLE_PROMPTS", "1");
        let mut service = Service::spawn("pubsub-emulator", command);
        let url = format!("http://{}/", self.host);
        service.wait_until(Duration::from_secs(60), || http_ok(&url));
        self.service = Some(service);
    }

    /// For failure messages: whether the emulator still answers, and if not, how its log ends
    /// (a chain test that times out must say whether the emulator died under it).
    pub fn diagnose(&self) -> String {
        if http_ok(&format!("http://{}/", self.host)) {
            return format!("the Pub/Sub emulator at {} still answers", self.host);
        }
        let tail = self.service.as_ref().map(Service::log_tail).unwrap_or_default();
        format!("the Pub/Sub emulator at {} does NOT answer; its log ends:\n{tail}", self.host)
    }

    /// A REST client for this emulator.
    pub fn client(&self) -> Client {
        Client { base: format!("http://{}/v1/projects/{PROJECT}", self.host), http: reqwest::blocking::Client::new() }
    }
}

/// A pulled message.
#[derive(Debug, Clone)]
pub struct Pulled {
    /// The decoded data.
    pub data: Vec<u8>,
    /// The attributes.
    pub attributes: Value,
    /// The ordering key, if any.
    pub ordering_key: Option<String>,
}

impl Pulled {
    /// The data as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.data).unwrap()
    }
}

/// Pub/Sub REST calls against the emulator.
pub struct Client {
    base: String,
    http: reqwest::blocking::Client,
}

impl Client {
    fn put(&self, path: &str, body: Value) {
        let response = self.http.put(format!("{}/{path}", self.base)).json(&body).send().unwrap();
        let status = response.status();
        assert!(status.is_success() || status.as_u16() == 409, "PUT {path}: {status} {}", response.text().unwrap());
    }

    /// Creates a topic (idempotent).
    pub fn create_topic(&self, topic: &str) {
        self.put(&format!("topics/{topic}"), json!({}));
    }

    /// Creates a pull subscription with message ordering (idempotent).
    pub fn create_subscription(&self, subscription: &str, topic: &str) {
        let topic = format!("projects/{PROJECT}/topics/{topic}");
        self.put(&format!("subscriptions/{subscription}"), json!({ "topic": topic, "enableMessageOrdering": true }));
    }

    /// Publishes normalized events to `topic` as the edge does (data, the event id attribute,
    /// ordered by the student key).
    pub fn publish_events(&self, topic: &str, events: &[Value]) {
        let messages: Vec<Value> = events
            .iter()
            .map(|event| {
                json!({
                    "data": base64::engine::general_purpose::STANDARD.encode(event.to_string()),
                    "attributes": { "event_id": event["id"] },
                    "orderingKey": event["student"]["key"],
                })
            })
            .collect();
        for chunk in messages.chunks(100) {
            let url = format!("{}/topics/{topic}:publish", self.base);
            let response = self.http.post(url).json(&json!({ "messages": chunk })).send().unwrap();
            assert!(response.status().is_success(), "publish: {}", response.text().unwrap());
        }
    }

    /// One pull: up to `max` messages, acknowledged.
    pub fn pull_once(&self, subscription: &str, max: usize) -> Vec<Pulled> {
        let url = format!("{}/subscriptions/{subscription}:pull", self.base);
        let response: Value = self
            .http
            .post(url)
            .json(&json!({ "maxMessages": max, "returnImmediately": true }))
            .send()
            .unwrap()
            .json()
            .unwrap();
        let received = response["receivedMessages"].as_array().cloned().unwrap_or_default();
        let ack_ids: Vec<Value> = received.iter().map(|m| m["ackId"].clone()).collect();
        if !ack_ids.is_empty() {
            let url = format!("{}/subscriptions/{subscription}:acknowledge", self.base);
            self.http.post(url).json(&json!({ "ackIds": ack_ids })).send().unwrap();
        }
        received
            .iter()
            .map(|m| {
                let message = &m["message"];
                let data = message["data"].as_str().unwrap_or_default();
                Pulled {
                    data: base64::engine::general_purpose::STANDARD.decode(data).unwrap(),
                    attributes: message["attributes"].clone(),
                    ordering_key: message["orderingKey"].as_str().map(str::to_owned),
                }
            })
            .collect()
    }

    /// Pulls until `count` messages arrived (or `timeout`), then waits `settle` for extras.
    pub fn pull_exactly(&self, subscription: &str, count: usize, timeout: Duration, settle: Duration) -> Vec<Pulled> {
        let mut all = Vec::new();
        let deadline = Instant::now() + timeout;
        while all.len() < count && Instant::now() < deadline {
            let got = self.pull_once(subscription, 100);
            if got.is_empty() {
                std::thread::sleep(Duration::from_millis(100));
            }
            all.extend(got);
        }
        let settle_until = Instant::now() + settle;
        while Instant::now() < settle_until {
            all.extend(self.pull_once(subscription, 100));
            std::thread::sleep(Duration::from_millis(100));
        }
        all
    }
}
