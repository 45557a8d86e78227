//! Load run of `lms-bridge backfill` (recorded in BENCHMARKS.md): SALES one-off sales served by
//! the Hotmart API fake, walked and published to the Pub/Sub emulator (events/s into Pub/Sub);
//! with `lms`, also applied by a backend at the default TalentLMS pace (students/s into the LMS).
//!
//! `cargo build --release -p lms-bridge-backend -p lms-bridge-tools && \
//!  LMS_BRIDGE_BIN=target/release/lms-bridge HOTMART_FAKE_BIN=target/release/hotmart-fake \
//!  target/release/bench-backfill SALES [lms]`

#![allow(clippy::unwrap_used, reason = "a benchmark driver: a panic is the failure report")]

use lms_bridge_tests::backend::{Backend, Firestore, Issuer, Sandbox};
use lms_bridge_tests::hotmart_fake::{HotmartData, HotmartFake};
use lms_bridge_tests::mappings::Mappings;
use lms_bridge_tests::pubsub_emulator::{Emulator, PROJECT};
use lms_bridge_tests::webhooks::{now_ms, DAY_MS};
use std::time::{Duration, Instant};

fn main() {
    let mut args = std::env::args().skip(1);
    let sales: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(2_000);
    let with_lms = args.next().as_deref() == Some("lms");
    let pubsub = Emulator::start();
    let firestore = Firestore::start();
    let issuer = Issuer::start();
    let sandbox = Sandbox::start_bin(&lms_bridge_tests::repo_root().join("target/release/lms-sandbox"), &[]);
    let fake = HotmartFake::start(&[]);
    let backend =
        Backend::start(PROJECT, &firestore, &sandbox, &issuer, &[("PUSH_AUTH", "none"), ("RUST_LOG", "warn")]);
    backend.import_mappings(&Mappings::new().lifetime(4774438, &["101"]).toml());
    if with_lms {
        backend.pubsub_setup(&pubsub.host, &[]);
    } else {
        pubsub.client().create_topic("lms-bridge-events");
    }

    let now = now_ms();
    let mut data = HotmartData::new();
    for i in 0..sales {
        let at = now - (i as i64 % 300 + 1) * DAY_MS;
        data = data.sale(&format!("HPB{i:07}"), &format!("bench{i}@example.com"), 4774438, "APPROVED", at);
    }
    fake.serve(&data);

    let mut env: Vec<(&str, String)> = fake.env();
    env.extend([("PUBSUB_EMULATOR_HOST", pubsub.host.clone()), ("PUBLISH_PER_SECOND", "100000".to_owned())]);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let since = lms_bridge_shared::Timestamp::from_unix_millis(now - 310 * DAY_MS).unwrap().to_string();
    let started = Instant::now();
    let output =
        backend.cli_with(&["backfill", "--from", "hotmart-api", "--since", &since, "--window-days", "90"], &env);
    let walk = started.elapsed();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let summary: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&output.stdout).lines().last().unwrap()).unwrap();
    let published = summary["counts"]["published"].as_u64().unwrap();
    println!(
        "backfill walk+publish: sales={sales} pages={} published={published} wall={:.1}s rate={:.0} events/s",
        summary["counts"]["pages"],
        walk.as_secs_f64(),
        published as f64 / walk.as_secs_f64()
    );
    if with_lms {
        loop {
            let enrolled = sandbox.count_ok("addusertocourse");
            if enrolled >= sales {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(3_600), "{enrolled} of {sales} enrolled after an hour");
            std::thread::sleep(Duration::from_secs(1));
        }
        let all = started.elapsed();
        println!(
            "backfill into the LMS (default pace): students={sales} wall={:.1}s rate={:.1} students/s",
            all.as_secs_f64(),
            sales as f64 / all.as_secs_f64()
        );
    }
}
