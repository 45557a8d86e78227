//! Load held: the edge taking webhooks as fast as this machine sends them makes every one it
//! answers 2xx durable in Pub/Sub; the backend offered far more than the LMS pace refuses what
//! it cannot start within two seconds (503, so Pub/Sub backs off and redelivers), completes
//! everything, and never calls the LMS above its pace.

#![allow(clippy::unwrap_used, reason = "test code: a panic is the failure report")]

use lms_bridge_tests::backend::{push_to, Backend, Firestore, Issuer, Sandbox};
use lms_bridge_tests::edge::{Edge, HOTTOK};
use lms_bridge_tests::mappings;
use lms_bridge_tests::pubsub_emulator::{Emulator, PROJECT};
use lms_bridge_tests::webhooks::Webhook;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

fn emulator() -> &'static Emulator {
    static EMULATOR: OnceLock<Emulator> = OnceLock::new();
    EMULATOR.get_or_init(Emulator::start)
}

#[test]
fn two_thousand_webhooks_as_fast_as_they_come_are_each_durable_once_answered() {
    let emulator = emulator();
    let client = emulator.client();
    client.create_topic("load-edge");
    client.create_subscription("load-edge-all", "load-edge");
    let edge = Edge::start(
        "load",
        &[
            ("HOTMART_HOTTOK", HOTTOK),
            ("PUBSUB_EMULATOR_HOST", &emulator.host),
            ("GCP_PROJECT", PROJECT),
            ("PUBSUB_TOPIC", "load-edge"),
        ],
    );
    let total = 2_000;
    let bodies: Vec<(String, Vec<u8>)> = (0..total)
        .map(|i| {
            let id = format!("load-{i}");
            let body = Webhook::purchase_approved()
                .id(&id)
                .buyer(&format!("load-{i}@example.com"))
                .transaction(&format!("HPL{i}"))
                .bytes();
            (id, body)
        })
        .collect();
    let bodies = Arc::new(bodies);
    let accepted = Arc::new(Mutex::new(BTreeSet::new()));
    let http = reqwest::blocking::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let started = Instant::now();
    let senders: Vec<_> = (0..8)
        .map(|n| {
            let (bodies, accepted, http, url) =
                (Arc::clone(&bodies), Arc::clone(&accepted), http.clone(), format!("{}/webhooks/hotmart", edge.url));
            std::thread::spawn(move || {
                for (id, body) in bodies.iter().skip(n).step_by(8) {
                    let sent = http
                        .post(&url)
                        .header("content-type", "application/json")
                        .header("X-HOTMART-HOTTOK", HOTTOK)
                        .body(body.clone())
                        .send();
                    if sent.is_ok_and(|r| r.status().is_success()) {
                        accepted.lock().unwrap().insert(format!("hotmart:{id}"));
                    }
                }
            })
        })
        .collect();
    for sender in senders {
        sender.join().unwrap();
    }
    let took = started.elapsed();
    let accepted = accepted.lock().unwrap().clone();
    eprintln!(
        "{} of {total} webhooks answered 2xx in {:.1} s ({:.0}/s, 8 connections)",
        accepted.len(),
        took.as_secs_f64(),
        accepted.len() as f64 / took.as_secs_f64()
    );
    assert!(accepted.len() > total / 2, "the edge answered 2xx to only {} of {total}", accepted.len());

    let pulled = client.pull_exactly("load-edge-all", accepted.len(), Duration::from_secs(120), Duration::from_secs(2));
    let published: BTreeSet<String> = pulled.iter().map(|m| m.json()["id"].as_str().unwrap().to_owned()).collect();
    let missing: Vec<&String> = accepted.difference(&published).collect();
    assert!(missing.is_empty(), "{} answered 2xx but not in Pub/Sub, e.g. {:?}", missing.len(), missing.first());
    assert!(published.is_subset(&accepted), "published what was not accepted");
}

/// The pushes come from 45 threads at once, each retrying a refused delivery with Pub/Sub's
/// exponential backoff (1 s doubling to 10 s): the emulator pushes with two threads, where
/// production Pub/Sub keeps up to a thousand deliveries outstanding.
#[test]
fn the_backend_offered_far_above_the_lms_pace_refuses_with_503_completes_everything_and_keeps_the_pace() {
    let (firestore, issuer, sandbox) = (Firestore::start(), Issuer::start(), Sandbox::start(&[]));
    let pace = 3;
    let backend = Backend::start(
        "load-pace",
        &firestore,
        &sandbox,
        &issuer,
        &[("PUSH_AUTH", "none"), ("TALENTLMS_MAX_CALLS_PER_SECOND", &pace.to_string())],
    );
    backend.import_mappings(&mappings::sample().toml());

    // 45 new students at once: 135 LMS calls, 45 s at 3 calls a second, offered in one.
    let students = 45;
    let started = Instant::now();
    let refused = Arc::new(AtomicUsize::new(0));
    let pushers: Vec<_> = (0..students)
        .map(|i| {
            let event = Webhook::purchase_approved()
                .id(&format!("pace-{i}"))
                .buyer(&format!("pace-{i}@example.com"))
                .transaction(&format!("HPP{i}"))
                .event();
            let (url, refused) = (backend.url.clone(), Arc::clone(&refused));
            std::thread::spawn(move || {
                let mut backoff = Duration::from_secs(1);
                for attempt in 1..=40 {
                    let (status, answer) = push_to(&url, &event, &format!("m-pace-{i}"), None);
                    if status == 200 {
                        return attempt;
                    }
                    assert_eq!(status, 503, "{answer}");
                    refused.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
                panic!("pace-{i} not delivered in 40 attempts");
            })
        })
        .collect();
    let attempts: Vec<u32> = pushers.into_iter().map(|p| p.join().unwrap()).collect();
    let took = started.elapsed();
    assert_eq!(sandbox.count_ok("addusertocourse"), students, "each enrolled once");
    assert_eq!(sandbox.count_ok("usersignup"), students, "each signed up once");

    // The pace: no second with more calls than the pace allows (its burst included), and the
    // whole run at the pace.
    let state = sandbox.state();
    let mut times: Vec<i64> = state["calls"].as_array().unwrap().iter().map(|c| c["at_ms"].as_i64().unwrap()).collect();
    times.sort_unstable();
    let busiest = times.iter().map(|t| times.iter().filter(|u| **u >= *t && **u < t + 1_000).count()).max().unwrap();
    let span = (times[times.len() - 1] - times[0]) as f64 / 1_000.0;
    let rate = (times.len() - 1) as f64 / span;
    let refused = refused.load(Ordering::Relaxed);
    eprintln!(
        "{students} students in {:.1} s: {} LMS calls at {rate:.2}/s (pace {pace}), busiest second {busiest}; \
         {refused} deliveries answered 503, at most {} attempts for one event",
        took.as_secs_f64(),
        times.len(),
        attempts.iter().max().unwrap()
    );
    assert!(busiest <= 2 * pace, "{busiest} calls in one second at a pace of {pace}");
    assert!(rate <= pace as f64 * 1.1, "{rate:.2} calls/s at a pace of {pace}");
    assert!(refused > 0, "no delivery was refused: the backend held every request instead");
    let log = backend.log();
    assert!(log.contains("LMS busy"), "the refusals were not for the pace");
    assert!(!log.contains("given up after too many attempts"), "pauses used up an action's attempts");
}
