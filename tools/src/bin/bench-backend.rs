//! Load run of one backend instance (recorded in BENCHMARKS.md): push events/s and p50/p99
//! latency against the Firestore emulator and the LMS sandbox, beside the floor measured in
//! the same run — one Firestore read + one commit in a transaction, through the backend's store.
//!
//! `cargo build --release -p lms-bridge-backend -p lms-bridge-tools --bin lms-bridge --bin lms-sandbox && \
//!  LMS_BRIDGE_BIN=target/release/lms-bridge cargo run --release -p lms-bridge-tools --bin bench-backend -- [EVENTS] [CONCURRENCY] [LMS_CALLS_PER_S] [OFFERED_PER_WORKER]`

#![allow(clippy::unwrap_used, reason = "a benchmark driver: a panic is the failure report")]

use futures::FutureExt;
use lms_bridge_backend::store::docs::StudentDoc;
use lms_bridge_backend::store::{FirestoreStore, StateStore};
use lms_bridge_shared::Timestamp;
use lms_bridge_tests::backend::{push_to, Backend, Firestore, Issuer, Sandbox};
use lms_bridge_tests::webhooks::Webhook;
use std::time::{Duration, Instant};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn report(name: &str, mut samples: Vec<Duration>, wall: Duration) -> Duration {
    samples.sort();
    let p50 = percentile(&samples, 0.5);
    println!(
        "{name}: n={} rate={:.1}/s p50={:.2}ms p99={:.2}ms",
        samples.len(),
        samples.len() as f64 / wall.as_secs_f64(),
        p50.as_secs_f64() * 1e3,
        percentile(&samples, 0.99).as_secs_f64() * 1e3
    );
    p50
}

fn main() {
    let mut args = std::env::args().skip(1);
    let events: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(300);
    let concurrency: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(4);
    // The backend default pace; the pace is what bounds events/s (3 LMS calls each).
    let rate = args.next().unwrap_or_else(|| "30".to_owned());
    // Offered load per worker (events/s, 0 = as fast as answers come): below the LMS pace,
    // latency shows the backend's own cost rather than time queued behind the pacer.
    let offered: f64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(0.0);
    lms_bridge_backend::service::install_crypto_provider();
    let firestore = Firestore::start();
    let sandbox = Sandbox::start_bin(&lms_bridge_tests::repo_root().join("target/release/lms-sandbox"), &[]);
    let issuer = Issuer::start();
    let backend = Backend::start(
        "bench",
        &firestore,
        &sandbox,
        &issuer,
        &[("PUSH_AUTH", "none"), ("RUST_LOG", "warn"), ("TALENTLMS_MAX_CALLS_PER_SECOND", &rate)],
    );
    backend.import_mappings(&lms_bridge_tests::mappings::sample().toml());
    let bodies: Vec<serde_json::Value> = (0..events)
        .map(|i| {
            Webhook::purchase_approved()
                .id(&format!("bench-{i}"))
                .buyer(&format!("student{i}@example.com"))
                .transaction(&format!("HPB{i}"))
                .event_received(Timestamp::epoch())
        })
        .collect();

    // Warm-up: connections, the mapping cache, the emulator's JIT.
    for i in 0..10 {
        let mut warm = bodies[0].clone();
        warm["id"] = format!("warm-{i}").into();
        push_to(&backend.url, &warm, "warm", None);
    }

    let started = Instant::now();
    let chunks: Vec<Vec<(usize, serde_json::Value)>> = {
        let mut chunks = vec![Vec::new(); concurrency];
        for (i, body) in bodies.into_iter().enumerate() {
            chunks[i % concurrency].push((i, body));
        }
        chunks
    };
    let samples: Vec<Duration> = std::thread::scope(|s| {
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|chunk| {
                let url = backend.url.clone();
                s.spawn(move || {
                    let mut next = Instant::now();
                    chunk
                        .into_iter()
                        .map(|(i, body)| {
                            if offered > 0.0 {
                                std::thread::sleep(next.saturating_duration_since(Instant::now()));
                                next += Duration::from_secs_f64(1.0 / offered);
                            }
                            let t = Instant::now();
                            let (status, answer) = push_to(&url, &body, &format!("m{i}"), None);
                            assert_eq!(status, 200, "{answer}");
                            t.elapsed()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    let wall = started.elapsed();
    let push_p50 = report(&format!("push (concurrency {concurrency})"), samples, wall);
    // The warm-up enrolled student 0 already; the run's first event is a repeat of that grant.
    assert_eq!(sandbox.count("addusertocourse") as usize, events, "every student enrolled exactly once");

    // The floor: one read + one commit, the least a transactional apply can cost.
    std::env::set_var("FIRESTORE_EMULATOR_HOST", &firestore.host);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let floor_p50 = runtime.block_on(async {
        let store = FirestoreStore::connect("bench").await.unwrap();
        let mut samples = Vec::new();
        let started = Instant::now();
        for i in 0..events as u64 {
            let t = Instant::now();
            store
                .transaction(move |tx| {
                    async move {
                        let key =
                            lms_bridge_shared::Email::parse(format!("floor{i}@example.com")).unwrap().student_key();
                        let current = tx.student(&key).await?;
                        tx.put_student(&current.unwrap_or_else(|| StudentDoc::empty(&key)))
                    }
                    .boxed()
                })
                .await
                .unwrap();
            samples.push(t.elapsed());
        }
        report("floor (1 read + 1 commit, sequential)", samples, started.elapsed())
    });
    println!("push p50 / floor p50 = {:.2}", push_p50.as_secs_f64() / floor_p50.as_secs_f64());
}
