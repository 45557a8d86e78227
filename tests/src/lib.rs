//! The harness of the end-to-end tests: real processes (the Pub/Sub and Firestore emulators,
//! `wrangler dev`, the backend, the LMS sandbox, ChromeDriver and its headless Chromium) on
//! free loopback ports, each in its own process group and stopped with it. The tests
//! themselves are in `tests/tests/`; the dev tools they start (the LMS sandbox) are in the `lms-bridge-tools` crate (`tools/`).

#![allow(clippy::unwrap_used, reason = "test code: a panic is the failure report")]

pub mod access_rules;
pub mod admin_console;
pub mod backend;
pub mod browser;
pub mod chaos;
pub mod edge;
pub mod hotmart_fake;
pub mod iap;
pub mod iap_proxy;
pub mod mappings;
pub mod moodle_sandbox;
pub mod process;
pub mod pubsub_emulator;
pub mod stack;
pub mod stripe_events;
pub mod stripe_fake;
pub mod webhooks;

use std::path::PathBuf;

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().map(PathBuf::from).unwrap()
}

/// A sample webhook body from `tests/fixtures`.
pub fn fixture(path: &str) -> Vec<u8> {
    let full = repo_root().join("tests/fixtures").join(path);
    std::fs::read(&full).unwrap_or_else(|e| panic!("reading {}: {e}", full.display()))
}

/// Every Hotmart sample, by file stem.
pub fn hotmart_samples() -> Vec<(String, Vec<u8>)> {
    let dir = repo_root().join("tests/fixtures/hotmart");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path().file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names.into_iter().map(|n| (n.clone(), fixture(&format!("hotmart/{n}.json")))).collect()
}
