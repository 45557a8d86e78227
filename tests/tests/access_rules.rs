//! The access rules of `lms_bridge_tests::access_rules` against each LMS adapter: the same
//! scenarios, the backend as a process, once with the TalentLMS sandbox and once with the
//! Moodle sandbox (`LMS=moodle`).

#![allow(clippy::unwrap_used, reason = "test code: a panic is the failure report")]

use lms_bridge_tests::access_rules::run_all;
use lms_bridge_tests::backend::Sandbox;
use lms_bridge_tests::moodle_sandbox::MoodleSandbox;

#[test]
fn talentlms() {
    run_all(&Sandbox::start(&[]));
}

#[test]
fn moodle() {
    run_all(&MoodleSandbox::start(&["--courses", "101,102,103"]));
}
