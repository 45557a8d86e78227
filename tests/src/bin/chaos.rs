//! `make chaos N=…`: the chaos run as a load tool (see `lms_bridge_tests::chaos::run`).
//!
//! Usage: `chaos [--webhooks N] [--seed S] [--rate PER_SECOND] [--senders K]`; prints the
//! report and exits 1 unless nothing mismatched, nothing was lost and nothing was done twice.

use lms_bridge_tests::chaos::run::{run, Config};

fn main() {
    let mut config = Config::new(10_000);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().unwrap_or_default();
        let parsed = match flag.as_str() {
            "--webhooks" => value
                .parse()
                .map(|n| {
                    config = Config { seed: config.seed, rate: config.rate, senders: config.senders, ..Config::new(n) }
                })
                .is_ok(),
            "--seed" => value.parse().map(|s| config.seed = s).is_ok(),
            "--rate" => value.parse().map(|r| config.rate = r).is_ok(),
            "--senders" => value.parse().map(|k: usize| config.senders = k.max(1)).is_ok(),
            _ => false,
        };
        if !parsed {
            eprintln!("chaos: bad argument {flag} {value:?} (usage: chaos [--webhooks N] [--seed S] [--rate PER_SECOND] [--senders K])");
            std::process::exit(2);
        }
    }
    let report = run(&config);
    print!("{}", report.render());
    std::process::exit(if report.passed() { 0 } else { 1 });
}
