//! The chaos run, short: 500 webhooks through the whole chain with two backend instances (one
//! killed and restarted three times), Pub/Sub cut off from the edge for a while and the LMS
//! failing, answering late and rate-limiting; then the LMS and the state must agree with
//! `simulate`, nothing answered 2xx may be lost, and no side effect may happen twice.
//! `make chaos N=10000` is the same at launch-day scale.

use lms_bridge_tests::chaos::run::{run, Config};

#[test]
fn five_hundred_webhooks_under_faults_end_as_simulate_says_with_nothing_lost_or_doubled() {
    let report = run(&Config::new(500));
    let text = report.render();
    eprintln!("{text}");
    assert!(report.accepted > 0 && report.events > 0, "the run did nothing:\n{text}");
    assert!(report.faults.get("lms fail").copied().unwrap_or(0) > 0, "no LMS fault was injected:\n{text}");
    assert!(report.via_queue > 0, "no webhook went through the edge's queue:\n{text}");
    assert!(report.passed(), "{text}");
}
