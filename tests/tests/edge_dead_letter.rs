//! The parking queue's dead-letter queue is not a dead end: an event that runs out of retries
//! is re-parked by the same Worker (ERROR line, event id only) and still reaches Pub/Sub once
//! it is back. Runs wrangler.toml's `fast-retries` environment (one retry before the DLQ).

#![allow(clippy::unwrap_used, reason = "test code: a panic is the failure report")]

use lms_bridge_tests::chaos::ChaosProxy;
use lms_bridge_tests::edge::{Edge, HOTTOK};
use lms_bridge_tests::fixture;
use lms_bridge_tests::pubsub_emulator::{Emulator, PROJECT};
use std::time::Duration;

const TOPIC: &str = "edge-dead-letter";
const REPARKED: &str = "re-parked from the dead-letter queue";

#[test]
fn an_event_that_runs_out_of_retries_is_re_parked_and_published_later() {
    let emulator = Emulator::start();
    let client = emulator.client();
    client.create_topic(TOPIC);
    client.create_subscription("after-dead-letter", TOPIC);
    let proxy = ChaosProxy::start(&emulator.host);
    let edge = Edge::start_env(
        "dead-letter",
        Some("fast-retries"),
        &[
            ("HOTMART_HOTTOK", HOTTOK),
            ("PUBSUB_EMULATOR_HOST", &proxy.host),
            ("GCP_PROJECT", PROJECT),
            ("PUBSUB_TOPIC", TOPIC),
        ],
    );
    proxy.cut();
    let (status, answer) = edge.hotmart(fixture("hotmart/purchase_approved.json"));
    assert_eq!((status, answer["via"].as_str()), (200, Some("queue")), "{answer}");
    let id = answer["event_id"].as_str().unwrap().to_owned();

    // Two failed tries, the dead-letter queue, back to the parking queue: twice, to be sure
    // the round trip repeats rather than ends.
    let reparked = || {
        edge.log_lines()
            .into_iter()
            .filter(|l| {
                l["severity"] == "ERROR"
                    && l["event_id"] == id.as_str()
                    && l["message"].as_str().is_some_and(|m| m.contains(REPARKED))
            })
            .collect::<Vec<_>>()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while reparked().len() < 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
    }
    let lines = reparked();
    assert!(lines.len() >= 2, "re-parked twice within 120 s:\n{}", edge.output());
    // The ERROR line names the event and nothing else about it.
    let keys: Vec<&str> = lines[0].as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, ["event_id", "message", "severity"], "{}", lines[0]);
    assert!(client.pull_once("after-dead-letter", 10).is_empty(), "nothing got through the outage");

    proxy.restore();
    let pulled = client.pull_exactly("after-dead-letter", 1, Duration::from_secs(90), Duration::from_secs(3));
    assert_eq!(pulled[0].json()["id"], id.as_str());
}
