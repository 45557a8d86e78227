//! docs/access-rules.md, row by row and bullet by bullet, through `lms-bridge simulate` as a user
//! runs it: real-shaped Hotmart bodies in, access / until / LMS state out. Every expected `until` is
//! computed here by hand from the dates each test chooses.

#![allow(clippy::unwrap_used, reason = "test code: a panic is the failure report")]

mod support;

use serde_json::{json, Value};
use support::{
    ana_sub_charge as charge, answer, day, parse_answer, product_toml, rfc3339, run, simulate, Access, Answer, Hotmart,
    TempFile, DAY, HOUR, MINUTE, SECOND, T0,
};

const ANA: &str = "ana@example.com";
const ANA_NEW: &str = "ana.new@example.com";
const BRUNO: &str = "bruno@example.com";

/// The first approval of most histories: day 0, 10:00.
const A0: i64 = T0 + 10 * HOUR;
/// Hotmart sends a few seconds after the business time.
const LAG: i64 = 7 * SECOND;
/// The next charge date the first subscription charge states.
const N1: i64 = A0 + 30 * DAY;
/// The second charge (renewal): approved 10 minutes after N1, covering 30 days.
const A2: i64 = N1 + 10 * MINUTE;
const N2: i64 = A2 + 30 * DAY;

// --- mappings -------------------------------------------------------------------------------

/// 1001 → course 101, lifetime (dispute keep, chargeback revoke_grant: the defaults).
fn lifetime(extra: &str) -> String {
    product_toml("1001", &["101"], r#"{ type = "lifetime" }"#, extra)
}

/// 1003 → course 301, 30 days.
fn fixed_30() -> String {
    product_toml("1003", &["301"], r#"{ type = "fixed_days", days = 30 }"#, "")
}

/// 2002 → course 201, subscription with 3 grace days.
fn subscription(extra: &str) -> String {
    product_toml("2002", &["201"], r#"{ type = "subscription", grace_days = 3 }"#, extra)
}

/// 4774438 → course 101, plan 123 → 101 + 102, plan 124 → 102 + 103 (125: no entry).
fn with_plans() -> String {
    product_toml(
        "4774438",
        &["101"],
        r#"{ type = "subscription", grace_days = 3 }"#,
        r#"plans = { "123" = ["101", "102"], "124" = ["102", "103"] }"#,
    )
}

// --- bodies ---------------------------------------------------------------------------------

/// A one-off purchase event of product 1001, transaction `tx`, by Ana; `approved` is the purchase's
/// approval date, which Hotmart repeats on every event of the purchase.
fn one_off(event: &str, tx: &str, approved: Option<i64>, sent: i64) -> Hotmart {
    Hotmart::purchase(event).product("1001").transaction(tx).email(ANA).approved(approved).created(sent)
}

/// The first charge S1: approved at A0, covering up to N1.
fn first_charge() -> Hotmart {
    charge("PURCHASE_APPROVED", "S1", Some(A0), Some(N1), A0 + LAG).recurrence(1)
}

/// The renewal S2: approved at A2, covering up to N2.
fn renewal() -> Hotmart {
    charge("PURCHASE_APPROVED", "S2", Some(A2), Some(N2), A2 + LAG).recurrence(2)
}

/// A cancellation of SUB1.
fn cancellation(at: Option<i64>, next: Option<i64>, sent: i64) -> Hotmart {
    Hotmart::cancellation()
        .product("2002")
        .subscriber("SUB1")
        .email(ANA)
        .plan(123)
        .cancelled_at(at)
        .next_charge(next)
        .created(sent)
}

/// A charge-date update of SUB1.
fn charge_date(date: i64, status: &str, sent: i64) -> Hotmart {
    Hotmart::charge_date_update()
        .product("2002")
        .subscriber("SUB1")
        .email(ANA)
        .plan(123)
        .next_charge(Some(date))
        .status(status)
        .created(sent)
}

/// A charge of Ana's subscription SUB1 to product 4774438, naming `plan`.
fn plan_charge(tx: &str, plan: i64, approved: i64, next: i64) -> Hotmart {
    Hotmart::subscription("PURCHASE_APPROVED")
        .product("4774438")
        .subscriber("SUB1")
        .transaction(tx)
        .email(ANA)
        .plan(plan)
        .approved(Some(approved))
        .next_charge(Some(next))
        .created(approved + LAG)
}

/// A SWITCH_PLAN of SUB1 (product 4774438) from `from` to `to` at `at`.
fn switch(from: i64, to: i64, at: i64, sent: i64) -> Hotmart {
    Hotmart::switch_plan()
        .product("4774438")
        .subscriber("SUB1")
        .email(ANA)
        .switch_to(to, from)
        .switched_at(Some(at))
        .next_charge(Some(N1))
        .created(sent)
}

// --- running --------------------------------------------------------------------------------

fn lines(bodies: &[Hotmart]) -> Vec<String> {
    bodies.iter().map(Hotmart::line).collect()
}

fn sim(mappings: &str, bodies: &[Hotmart], probes: &[i64]) -> Answer {
    answer(&simulate(mappings, &lines(bodies), probes, false), probes)
}

fn sim_timeline(mappings: &str, bodies: &[Hotmart], probes: &[i64]) -> Answer {
    answer(&simulate(mappings, &lines(bodies), probes, true), probes)
}

fn active(until: i64) -> Access {
    Access::active(Some(until))
}

fn no_end() -> Access {
    Access::active(None)
}

/// The actions of a timeline entry as (type, email, course).
fn actions(entry: &Value) -> Vec<(String, String, String)> {
    entry["actions"]
        .as_array()
        .unwrap_or_else(|| panic!("no actions array in {entry}"))
        .iter()
        .map(|a| {
            let field = |name: &str| a[name].as_str().unwrap_or_else(|| panic!("no {name} in {a}")).to_owned();
            (field("type"), field("email"), field("course"))
        })
        .collect()
}

fn action(kind: &str, email: &str, course: &str) -> (String, String, String) {
    (kind.to_owned(), email.to_owned(), course.to_owned())
}

/// The pairs active or enrolled at `at` (the output may also list inactive pairs).
fn visible(answer: &Answer, at: i64) -> Vec<((String, String), Access)> {
    answer.probes[&at].iter().filter(|(_, a)| a.active || a.enrolled).map(|(k, a)| (k.clone(), *a)).collect()
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| (*a).to_owned()).collect()
}

/// One line on stderr, no panic in it.
fn one_stderr_line(output: &std::process::Output) -> String {
    let text = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(text.lines().count(), 1, "one-line error expected, got {text:?}");
    assert!(!text.contains("panicked"), "{text}");
    text
}

// ============================================================================================
// Per charge
// ============================================================================================

#[test]
fn an_approved_purchase_gives_lifetime_access_with_no_end() {
    let answer =
        sim(&lifetime(""), &[one_off("PURCHASE_APPROVED", "HP1", Some(A0), A0 + LAG)], &[A0, A0 + LAG, day(400)]);
    assert_eq!(answer.at(A0, ANA, "101"), Access::NONE, "not sent yet");
    assert_eq!(answer.at(A0 + LAG, ANA, "101"), no_end());
    assert_eq!(answer.at(day(400), ANA, "101"), no_end());
}

#[test]
fn the_timeline_shows_ensure_user_and_enroll_on_approval_and_unenroll_on_refund_once() {
    let approval = one_off("PURCHASE_APPROVED", "HP1", Some(A0), A0 + LAG);
    let refund = one_off("PURCHASE_REFUNDED", "HP1", Some(A0), day(3));
    let bodies = [
        approval.clone(),
        approval.resend().created(A0 + HOUR),
        refund.clone(),
        refund.resend().created(day(3) + MINUTE),
    ];
    let answer = sim_timeline(&lifetime(""), &bodies, &[day(4)]);
    assert_eq!(answer.timeline.len(), 4, "one timeline line per input line: {:?}", answer.timeline);
    let first = answer.line(1);
    assert_eq!(first["event_id"], json!(format!("hotmart:{}", approval.envelope_id())));
    assert_eq!(first["source_event"], "PURCHASE_APPROVED");
    assert_eq!(first["status"], "applied");
    assert_eq!(actions(first), [action("ensure_user", ANA, "101"), action("enroll", ANA, "101")]);
    assert!(actions(answer.line(2)).is_empty(), "the resent approval changes nothing");
    assert_eq!(answer.line(3)["status"], "applied");
    assert_eq!(actions(answer.line(3)), [action("unenroll", ANA, "101")]);
    assert!(actions(answer.line(4)).is_empty(), "the resent refund changes nothing");
    assert_eq!(answer.at(day(4), ANA, "101"), Access::NONE);
}

#[test]
fn a_duplicate_envelope_is_reported_as_duplicate_and_changes_nothing() {
    let approval = one_off("PURCHASE_APPROVED", "HP1", Some(A0), A0 + LAG);
    let answer = sim_timeline(&lifetime(""), &[approval.clone(), approval], &[day(1)]);
    assert_eq!(answer.line(2)["status"], "duplicate");
    assert!(actions(answer.line(2)).is_empty());
    assert_eq!(answer.at(day(1), ANA, "101"), no_end());
}

#[test]
fn completion_never_extends_a_fixed_term() {
    // A COMPLETE without approved_date has business time = its creation_date (day 20): it must not
    // move the approval time while the APPROVED is known.
    let bodies = [
        one_off("PURCHASE_APPROVED", "HP3", Some(A0), A0 + LAG).product("1003"),
        one_off("PURCHASE_COMPLETE", "HP3", None, day(20)).product("1003"),
    ];
    let end = A0 + 30 * DAY;
    let answer = sim(&fixed_30(), &bodies, &[day(21), end]);
    assert_eq!(answer.at(day(21), ANA, "301"), active(end));
    assert_eq!(answer.at(end, ANA, "301"), Access::NONE);
}

#[test]
fn completion_never_extends_a_subscription_coverage() {
    let complete = charge("PURCHASE_COMPLETE", "S1", Some(A0), Some(N1 + 30 * DAY), day(8));
    let answer = sim(&subscription(""), &[first_charge(), complete], &[day(8) + HOUR]);
    assert_eq!(answer.at(day(8) + HOUR, ANA, "201"), active(N1 + 3 * DAY));
}

#[test]
fn a_completion_alone_grants_from_the_approval_time_and_coverage_it_states() {
    // The APPROVED of both charges never arrived.
    let bodies = [
        one_off("PURCHASE_COMPLETE", "HP3", Some(A0), day(8)).product("1003"),
        charge("PURCHASE_COMPLETE", "S1", Some(A0), Some(N1), day(8)),
    ];
    let mappings = fixed_30() + &subscription("");
    let answer = sim(&mappings, &bodies, &[day(8)]);
    assert_eq!(answer.at(day(8), ANA, "301"), active(A0 + 30 * DAY));
    assert_eq!(answer.at(day(8), ANA, "201"), active(N1 + 3 * DAY));
}

#[test]
fn a_refund_removes_a_one_off_purchase_at_once() {
    let bodies = [
        one_off("PURCHASE_APPROVED", "HP1", Some(A0), A0 + LAG),
        one_off("PURCHASE_REFUNDED", "HP1", Some(A0), day(3)),
    ];
    let answer = sim(&lifetime(""), &bodies, &[day(3) - 1, day(3)]);
    assert_eq!(answer.at(day(3) - 1, ANA, "101"), no_end());
    assert_eq!(answer.at(day(3), ANA, "101"), Access::NONE);
}

#[test]
fn a_chargeback_removes_a_one_off_purchase_at_once_under_both_policies() {
    let mappings =
        lifetime("") + &product_toml("1002", &["102"], r#"{ type = "lifetime" }"#, r#"chargeback = "revoke_charge""#);
    let bodies = [
        one_off("PURCHASE_APPROVED", "HP1", Some(A0), A0 + LAG),
        one_off("PURCHASE_APPROVED", "HP2", Some(A0), A0 + LAG).product("1002"),
        one_off("PURCHASE_CHARGEBACK", "HP1", Some(A0), day(3)),
        one_off("PURCHASE_CHARGEBACK", "HP2", Some(A0), day(3)).product("1002"),
    ];
    let answer = sim(&mappings, &bodies, &[day(3) - 1, day(3)]);
    assert_eq!(answer.at(day(3) - 1, ANA, "101"), no_end());
    assert_eq!(answer.at(day(3) - 1, ANA, "102"), no_end());
    assert_eq!(answer.at(day(3), ANA, "101"), Access::NONE);
    assert_eq!(answer.at(day(3), ANA, "102"), Access::NONE);
}

#[test]
fn a_refused_payment_never_gives_access() {
    let bodies = [
        one_off("PURCHASE_CANCELED", "HP1", None, A0),
        charge("PURCHASE_CANCELED", "S1", None, Some(N1), A0).recurrence(1),
    ];
    let answer = sim(&(lifetime("") + &subscription("")), &bodies, &[A0 + HOUR]);
    assert!(answer.active_at(A0 + HOUR).is_empty());
}

#[test]
fn a_refused_renewal_alone_does_not_end_the_subscription_before_its_paid_date_and_grace() {
    let refused = charge("PURCHASE_CANCELED", "S2", None, Some(N1 + 30 * DAY), N1 + HOUR).recurrence(2);
    let end = N1 + 3 * DAY;
    let answer = sim(&subscription(""), &[first_charge(), refused], &[N1 + 2 * HOUR, end - 1, end]);
    assert_eq!(answer.at(N1 + 2 * HOUR, ANA, "201"), active(end));
    assert_eq!(answer.at(end - 1, ANA, "201"), active(end));
    assert_eq!(answer.at(end, ANA, "201"), Access::NONE, "lapsed: the sweep unenrolls");
}

#[test]
fn a_refused_renewal_paid_later_under_a_new_transaction_continues_access() {
    let refused = charge("PURCHASE_CANCELED", "S2", None, Some(N1 + 30 * DAY), N1 + HOUR).recurrence(2);
    let retry_at = N1 + 2 * DAY;
    let retry =
        charge("PURCHASE_APPROVED", "S3", Some(retry_at), Some(retry_at + 30 * DAY), retry_at + LAG).recurrence(2);
    let answer = sim(&subscription(""), &[first_charge(), refused, retry], &[N1 + DAY, retry_at + LAG]);
    assert_eq!(answer.at(N1 + DAY, ANA, "201"), active(N1 + 3 * DAY));
    assert_eq!(answer.at(retry_at + LAG, ANA, "201"), active(retry_at + 33 * DAY));
}

#[test]
fn a_late_payment_notice_changes_nothing() {
    let delayed = charge("PURCHASE_DELAYED", "S2", None, Some(N1 + 30 * DAY), N1 + DAY).recurrence(2);
    let end = N1 + 3 * DAY;
    let answer = sim(&subscription(""), &[first_charge(), delayed], &[N1 + DAY, end]);
    assert_eq!(answer.at(N1 + DAY, ANA, "201"), active(end));
    assert_eq!(answer.at(end, ANA, "201"), Access::NONE);
}

#[test]
fn a_dispute_under_the_keep_policy_changes_nothing() {
    let bodies =
        [one_off("PURCHASE_APPROVED", "HP1", Some(A0), A0 + LAG), one_off("PURCHASE_PROTEST", "HP1", Some(A0), day(5))];
    let answer = sim(&lifetime(""), &bodies, &[day(5)]);
    assert_eq!(answer.at(day(5), ANA, "101"), no_end());
}

#[test]
fn a_dispute_under_the_suspend_policy_suspends_access_until_the_charge_is_approved_again_later() {
    let bodies = [
        one_off("PURCHASE_APPROVED", "HP1", Some(A0), A0 + LAG),
        one_off("PURCHASE_PROTEST", "HP1", Some(A0), day(5)),
        one_off("PURCHASE_APPROVED", "HP1", Some(day(8)), day(8) + LAG),
    ];
    let answer = sim(&lifetime(r#"dispute = "suspend""#), &bodies, &[day(5) - 1, day(5), day(8) + LAG]);
    assert_eq!(answer.at(day(5) - 1, ANA, "101"), no_end());
    assert_eq!(answer.at(day(5), ANA, "101"), Access::NONE, "suspended: unenrolled");
    assert_eq!(answer.at(day(8) + LAG, ANA, "101"), no_end(), "settled: enrolled again");
}

#[test]
fn a_resend_of_the_old_approval_does_not_settle_a_dispute() {
    let approval = one_off("PURCHASE_APPROVED", "HP1", Some(A0), A0 + LAG);
    let bodies =
        [approval.clone(), one_off("PURCHASE_PROTEST", "HP1", Some(A0), day(5)), approval.resend().created(day(8))];
    let answer = sim(&lifetime(r#"dispute = "suspend""#), &bodies, &[day(9)]);
    assert_eq!(answer.at(day(9), ANA, "101"), Access::NONE);
}

#[test]
fn a_refunded_charge_stays_revoked_even_when_approved_again() {
    let bodies = [
        one_off("PURCHASE_APPROVED", "HP1", Some(A0), A0 + LAG),
        one_off("PURCHASE_PROTEST", "HP1", Some(A0), day(5)),
        one_off("PURCHASE_REFUNDED", "HP1", Some(A0), day(6)),
        one_off("PURCHASE_APPROVED", "HP1", Some(day(8)), day(8) + LAG),
    ];
    let answer = sim(&lifetime(r#"dispute = "suspend""#), &bodies, &[day(9)]);
    assert_eq!(answer.at(day(9), ANA, "101"), Access::NONE);
}

#[test]
fn a_dispute_on_an_older_subscription_charge_suspends_the_whole_subscription_until_settled() {
    let protest = charge("PURCHASE_PROTEST", "S1", Some(A0), Some(N1), N1 + 5 * DAY);
    let settled_at = N1 + 6 * DAY;
    let settle = charge("PURCHASE_APPROVED", "S1", Some(settled_at), Some(N1), settled_at + LAG);
    let mappings = subscription(r#"dispute = "suspend""#);
    let answer = sim(&mappings, &[first_charge(), renewal(), protest, settle], &[N1 + 5 * DAY, settled_at + LAG]);
    assert_eq!(answer.at(N1 + 5 * DAY, ANA, "201"), Access::NONE);
    assert_eq!(answer.at(settled_at + LAG, ANA, "201"), active(N2 + 3 * DAY));
}

// ============================================================================================
// Per grant
// ============================================================================================

#[test]
fn a_fixed_term_ends_n_days_after_the_approval_and_the_sweep_unenrolls() {
    let end = A0 + 30 * DAY;
    let approval = one_off("PURCHASE_APPROVED", "HP3", Some(A0), A0 + LAG).product("1003");
    let answer = sim(&fixed_30(), &[approval], &[end - 1, end, end + 1]);
    assert_eq!(answer.at(end - 1, ANA, "301"), active(end));
    assert_eq!(answer.at(end, ANA, "301"), Access::NONE);
    assert_eq!(answer.at(end + 1, ANA, "301"), Access::NONE);
}

#[test]
fn a_renewal_extends_access_to_the_new_next_charge_date_plus_grace() {
    let answer = sim(&subscription(""), &[first_charge(), renewal()], &[N1 - HOUR, A2 + LAG]);
    assert_eq!(answer.at(N1 - HOUR, ANA, "201"), active(N1 + 3 * DAY));
    assert_eq!(answer.at(A2 + LAG, ANA, "201"), active(N2 + 3 * DAY));
}

#[test]
fn a_subscription_lapses_when_its_next_charge_date_plus_grace_passes() {
    let end = N1 + 3 * DAY;
    let answer = sim(&subscription(""), &[first_charge()], &[end - 1, end, end + 1]);
    assert_eq!(answer.at(end - 1, ANA, "201"), active(end));
    assert_eq!(answer.at(end, ANA, "201"), Access::NONE, "the sweep ends it: unenrolled");
    assert_eq!(answer.at(end + 1, ANA, "201"), Access::NONE);
}

#[test]
fn a_subscription_with_no_valid_charge_gives_nothing() {
    let bodies = [
        charge("PURCHASE_PROTEST", "S1", None, Some(N1), day(1)),
        charge("PURCHASE_DELAYED", "S2", None, Some(N1), day(2)),
        charge("PURCHASE_CANCELED", "S3", None, Some(N1), day(3)),
    ];
    let answer = sim(&subscription(""), &bodies, &[day(4)]);
    assert_eq!(answer.at(day(4), ANA, "201"), Access::NONE);
}

#[test]
fn a_subscription_with_no_next_charge_date_has_no_end_until_cancelled_then_ends_at_the_cancellation() {
    let approval = charge("PURCHASE_APPROVED", "S1", Some(A0), None, A0 + LAG);
    let cancel = cancellation(Some(day(10)), None, day(10) + LAG);
    let answer = sim(&subscription(""), &[approval, cancel], &[day(5), day(10) + LAG]);
    assert_eq!(answer.at(day(5), ANA, "201"), no_end());
    assert_eq!(answer.at(day(10) + LAG, ANA, "201"), Access::NONE);
}

#[test]
fn a_refund_of_the_current_month_ends_access_at_once_without_grace() {
    let refund = charge("PURCHASE_REFUNDED", "S2", Some(A2), Some(N2), N1 + 10 * DAY);
    let answer = sim(&subscription(""), &[first_charge(), renewal(), refund], &[N1 + 10 * DAY - 1, N1 + 10 * DAY]);
    assert_eq!(answer.at(N1 + 10 * DAY - 1, ANA, "201"), active(N2 + 3 * DAY));
    assert_eq!(answer.at(N1 + 10 * DAY, ANA, "201"), Access::NONE);
}

#[test]
fn a_refund_of_an_older_month_changes_nothing_while_a_later_month_is_paid() {
    let refund = charge("PURCHASE_REFUNDED", "S1", Some(A0), Some(N1), N1 + 10 * DAY);
    let answer = sim(&subscription(""), &[first_charge(), renewal(), refund], &[N1 + 10 * DAY]);
    assert_eq!(answer.at(N1 + 10 * DAY, ANA, "201"), active(N2 + 3 * DAY));
}

#[test]
fn a_cancellation_keeps_access_to_the_end_of_the_paid_period_without_grace() {
    let cancel = cancellation(Some(day(10)), Some(N1), day(10) + LAG);
    let answer = sim(&subscription(""), &[first_charge(), cancel], &[day(11), N1 - 1, N1]);
    assert_eq!(answer.at(day(11), ANA, "201"), active(N1));
    assert_eq!(answer.at(N1 - 1, ANA, "201"), active(N1));
    assert_eq!(answer.at(N1, ANA, "201"), Access::NONE);
}

#[test]
fn a_cancellation_without_a_date_ends_with_the_known_paid_period_without_grace() {
    let cancel = cancellation(Some(day(10)), None, day(10) + LAG);
    let answer = sim(&subscription(""), &[first_charge(), cancel], &[day(11), N1]);
    assert_eq!(answer.at(day(11), ANA, "201"), active(N1));
    assert_eq!(answer.at(N1, ANA, "201"), Access::NONE);
}

#[test]
fn a_cancelled_subscription_paid_again_later_comes_back() {
    let cancel = cancellation(Some(day(10)), Some(N1), day(10) + LAG);
    let again = charge("PURCHASE_APPROVED", "S2", Some(day(45)), Some(day(75)), day(45) + LAG).recurrence(2);
    let answer = sim(&subscription(""), &[first_charge(), cancel, again], &[N1 + HOUR, day(45) + LAG]);
    assert_eq!(answer.at(N1 + HOUR, ANA, "201"), Access::NONE);
    assert_eq!(answer.at(day(45) + LAG, ANA, "201"), active(day(78)));
}

#[test]
fn the_latest_cancellation_counts_after_a_reactivation_even_when_an_older_one_arrives_late() {
    let first_cancel = cancellation(Some(day(10)), Some(N1), day(10) + LAG);
    let again = charge("PURCHASE_APPROVED", "S2", Some(day(45)), Some(day(75)), day(45) + LAG).recurrence(2);
    let second_cancel = cancellation(Some(day(50)), Some(day(75)), day(50) + LAG);
    let bodies = [first_charge(), first_cancel.clone(), again, second_cancel, first_cancel.resend().created(day(52))];
    let answer = sim(&subscription(""), &bodies, &[day(53), day(75)]);
    assert_eq!(answer.at(day(53), ANA, "201"), active(day(75)));
    assert_eq!(answer.at(day(75), ANA, "201"), Access::NONE);
}

#[test]
fn the_earliest_of_several_ends_wins() {
    // Paid period moved to day 20 (+3 grace = day 23); the cancellation states N1 (day 30): day 23 wins.
    let moved = charge_date(day(20), "ACTIVE", day(5));
    let cancel = cancellation(Some(day(6)), Some(N1), day(6) + LAG);
    let answer = sim(&subscription(""), &[first_charge(), moved, cancel], &[day(7), day(23)]);
    assert_eq!(answer.at(day(7), ANA, "201"), active(day(23)));
    assert_eq!(answer.at(day(23), ANA, "201"), Access::NONE);
}

#[test]
fn a_chargeback_ends_the_whole_subscription_for_good_by_default() {
    let chargeback = charge("PURCHASE_CHARGEBACK", "S1", Some(A0), Some(N1), N1 + 5 * DAY);
    let later = charge("PURCHASE_APPROVED", "S3", Some(N2), Some(N2 + 30 * DAY), N2 + LAG).recurrence(3);
    let answer = sim(
        &subscription(""),
        &[first_charge(), renewal(), chargeback, later],
        &[N1 + 5 * DAY - 1, N1 + 5 * DAY, N2 + HOUR],
    );
    assert_eq!(answer.at(N1 + 5 * DAY - 1, ANA, "201"), active(N2 + 3 * DAY));
    assert_eq!(answer.at(N1 + 5 * DAY, ANA, "201"), Access::NONE);
    assert_eq!(answer.at(N2 + HOUR, ANA, "201"), Access::NONE, "for good: a later charge does not bring it back");
}

#[test]
fn a_chargeback_under_revoke_charge_counts_only_as_a_refund_of_that_charge() {
    let old = charge("PURCHASE_CHARGEBACK", "S1", Some(A0), Some(N1), N1 + 5 * DAY);
    let current = charge("PURCHASE_CHARGEBACK", "S2", Some(A2), Some(N2), N1 + 6 * DAY);
    let mappings = subscription(r#"chargeback = "revoke_charge""#);
    let answer = sim(&mappings, &[first_charge(), renewal(), old, current], &[N1 + 5 * DAY, N1 + 6 * DAY]);
    assert_eq!(answer.at(N1 + 5 * DAY, ANA, "201"), active(N2 + 3 * DAY), "an older charge: nothing changes");
    assert_eq!(answer.at(N1 + 6 * DAY, ANA, "201"), Access::NONE, "the current charge: ends now");
}

// --- plans ----------------------------------------------------------------------------------

#[test]
fn a_plan_switch_gives_the_new_plan_courses_and_removes_only_the_courses_the_old_plan_had() {
    let bodies = [plan_charge("P1", 123, A0, N1), switch(123, 124, day(10), day(10) + 20 * SECOND)];
    let answer = sim_timeline(&with_plans(), &bodies, &[day(9), day(11)]);
    let end = N1 + 3 * DAY;
    assert_eq!(answer.at(day(9), ANA, "101"), active(end));
    assert_eq!(answer.at(day(9), ANA, "102"), active(end));
    assert_eq!(answer.at(day(9), ANA, "103"), Access::NONE);
    assert_eq!(answer.at(day(11), ANA, "101"), Access::NONE, "only the old plan had it: unenrolled");
    assert_eq!(answer.at(day(11), ANA, "102"), active(end), "both plans have it: kept");
    assert_eq!(answer.at(day(11), ANA, "103"), active(end), "the new plan's course: enrolled");
    let switched = actions(answer.line(2));
    assert!(switched.contains(&action("unenroll", ANA, "101")), "{switched:?}");
    assert!(switched.contains(&action("enroll", ANA, "103")), "{switched:?}");
    assert!(
        switched.iter().all(|(_, _, course)| course != "102"),
        "no action on a course both plans give: {switched:?}"
    );
}

#[test]
fn a_plan_with_no_mapping_entry_gives_the_product_courses() {
    let answer = sim(&with_plans(), &[plan_charge("P1", 125, A0, N1)], &[day(1)]);
    assert_eq!(answer.active_at(day(1)), [(ANA.to_owned(), "101".to_owned(), Some(N1 + 3 * DAY))]);
}

#[test]
fn a_renewal_naming_another_plan_does_not_change_the_courses() {
    let bodies = [plan_charge("P1", 123, A0, N1), plan_charge("P2", 124, A2, N2)];
    let answer = sim(&with_plans(), &bodies, &[A2 + LAG]);
    let end = Some(N2 + 3 * DAY);
    assert_eq!(
        answer.active_at(A2 + LAG),
        [(ANA.to_owned(), "101".to_owned(), end), (ANA.to_owned(), "102".to_owned(), end)]
    );
}

#[test]
fn the_latest_switch_by_switch_date_stands_whatever_the_arrival_order() {
    let first = switch(123, 124, day(10), day(10) + LAG);
    let second = switch(124, 125, day(12), day(12) + LAG);
    let bodies = [second, plan_charge("P1", 123, A0, N1), first.resend().created(day(14)), first];
    let answer = sim(&with_plans(), &bodies, &[day(11), day(15)]);
    let end = Some(N1 + 3 * DAY);
    assert_eq!(
        answer.active_at(day(11)),
        [(ANA.to_owned(), "102".to_owned(), end), (ANA.to_owned(), "103".to_owned(), end)]
    );
    assert_eq!(answer.active_at(day(15)), [(ANA.to_owned(), "101".to_owned(), end)]);
}

#[test]
fn a_refund_naming_another_plan_still_ends_every_course_of_the_grant() {
    let refund = Hotmart::subscription("PURCHASE_REFUNDED")
        .product("4774438")
        .subscriber("SUB1")
        .transaction("P1")
        .email(ANA)
        .plan(124)
        .approved(Some(A0))
        .next_charge(Some(N1))
        .created(day(5));
    let answer = sim(&with_plans(), &[plan_charge("P1", 123, A0, N1), refund], &[day(5)]);
    assert!(answer.active_at(day(5)).is_empty());
}

// --- charge-date updates --------------------------------------------------------------------

#[test]
fn a_charge_date_update_moves_access_to_the_new_date_plus_grace() {
    let answer = sim(&subscription(""), &[first_charge(), charge_date(day(40), "ACTIVE", day(5))], &[day(5), day(43)]);
    assert_eq!(answer.at(day(5), ANA, "201"), active(day(43)));
    assert_eq!(answer.at(day(43), ANA, "201"), Access::NONE);
}

#[test]
fn a_charge_date_update_of_a_subscription_not_active_changes_nothing() {
    let moved = charge_date(day(40), "CANCELLED_BY_CUSTOMER", day(5));
    let answer = sim(&subscription(""), &[first_charge(), moved], &[day(5)]);
    assert_eq!(answer.at(day(5), ANA, "201"), active(N1 + 3 * DAY));
}

#[test]
fn a_renewal_after_a_charge_date_update_states_the_next_date_again() {
    let renewed_at = day(40) + HOUR;
    let renewed = charge("PURCHASE_APPROVED", "S2", Some(renewed_at), Some(renewed_at + 30 * DAY), renewed_at + LAG);
    let bodies = [first_charge(), charge_date(day(40), "ACTIVE", day(5)), renewed];
    let answer = sim(&subscription(""), &bodies, &[renewed_at + LAG]);
    assert_eq!(answer.at(renewed_at + LAG, ANA, "201"), active(renewed_at + 33 * DAY));
}

// --- other events ---------------------------------------------------------------------------

#[test]
fn information_events_change_no_access() {
    let bodies = [
        one_off("PURCHASE_APPROVED", "HP1", Some(A0), A0 + LAG),
        one_off("PURCHASE_BILLET_PRINTED", "HP9", None, day(1)),
        Hotmart::cart_abandoned().product("1001").email(BRUNO).created(day(2)),
        Hotmart::club_first_access().product("1001").email(ANA).created(day(3)),
        one_off("PURCHASE_EXPIRED", "HP9", None, day(4)),
        one_off("ORDER_FULFILLMENT", "HP1", Some(A0), day(5)),
        one_off("PURCHASE_SOMETHING_NEW", "HP1", Some(A0), day(6)),
        one_off("PURCHASE_BILLET_PRINTED", "HP8", None, day(6)).email(BRUNO),
    ];
    let answer = sim(&lifetime(""), &bodies, &[day(7)]);
    assert_eq!(answer.active_at(day(7)), [(ANA.to_owned(), "101".to_owned(), None)]);
}

#[test]
fn an_event_for_a_product_without_mapping_is_kept_as_unmapped() {
    let answer = sim_timeline(
        &lifetime(""),
        &[one_off("PURCHASE_APPROVED", "HP7", Some(A0), A0 + LAG).product("999")],
        &[day(1)],
    );
    assert_eq!(answer.line(1)["status"], "unmapped");
    assert!(actions(answer.line(1)).is_empty());
    assert!(answer.active_at(day(1)).is_empty());
}

// ============================================================================================
// Identity
// ============================================================================================

#[test]
fn a_refund_carrying_another_email_revokes_the_owners_access() {
    let refund = one_off("PURCHASE_REFUNDED", "HP1", Some(A0), day(3)).email(ANA_NEW);
    let answer = sim(&lifetime(""), &[one_off("PURCHASE_APPROVED", "HP1", Some(A0), A0 + LAG), refund], &[day(3)]);
    assert_eq!(answer.at(day(3), ANA, "101"), Access::NONE);
    assert!(answer.active_at(day(3)).is_empty());
}

#[test]
fn a_cancellation_carrying_another_email_acts_on_the_owner() {
    let cancel = cancellation(Some(day(10)), Some(N1), day(10) + LAG).email(ANA_NEW);
    let answer = sim(&subscription(""), &[first_charge(), cancel], &[day(11)]);
    assert_eq!(answer.active_at(day(11)), [(ANA.to_owned(), "201".to_owned(), Some(N1))]);
}

#[test]
fn the_earliest_approval_decides_the_owner_even_when_it_arrives_last() {
    let late_first = charge("PURCHASE_APPROVED", "S1", Some(A0), Some(N1), A0 + 40 * DAY).recurrence(1);
    let renewal_new_email = renewal().email(ANA_NEW);
    let after_first = A0 + 40 * DAY + MINUTE;
    let answer = sim(&subscription(""), &[renewal_new_email, late_first], &[A2 + HOUR, after_first]);
    assert_eq!(answer.at(A2 + HOUR, ANA_NEW, "201"), active(N2 + 3 * DAY), "the only approval known");
    assert_eq!(answer.at(A2 + HOUR, ANA, "201"), Access::NONE);
    assert_eq!(answer.at(after_first, ANA, "201"), active(N2 + 3 * DAY), "the earliest approval's student");
    assert_eq!(answer.at(after_first, ANA_NEW, "201"), Access::NONE, "moved away: unenrolled");
}

#[test]
fn equal_approval_times_give_the_grant_to_the_smallest_email() {
    let zoe = one_off("PURCHASE_APPROVED", "HP1", Some(A0), A0 + LAG).email("zoe@example.com");
    let bruno = one_off("PURCHASE_APPROVED", "HP1", Some(A0), A0 + MINUTE).email(BRUNO);
    let answer = sim(&lifetime(""), &[zoe, bruno], &[A0 + 2 * MINUTE]);
    assert_eq!(answer.active_at(A0 + 2 * MINUTE), [(BRUNO.to_owned(), "101".to_owned(), None)]);
}

#[test]
fn emails_are_trimmed_and_lowercased() {
    let approval = one_off("PURCHASE_APPROVED", "HP1", Some(A0), A0 + LAG).email("  Ana.Souza@Example.COM ");
    let answer = sim(&lifetime(""), &[approval], &[day(1)]);
    assert_eq!(answer.active_at(day(1)), [("ana.souza@example.com".to_owned(), "101".to_owned(), None)]);
}

// ============================================================================================
// Business times
// ============================================================================================

#[test]
fn a_cancellation_on_day_2_is_not_undone_by_the_completion_of_the_day_0_charge_on_day_7() {
    let cancel = cancellation(Some(day(2)), Some(N1), day(2) + LAG);
    let complete = charge("PURCHASE_COMPLETE", "S1", Some(A0), Some(N1), day(7));
    let answer = sim(&subscription(""), &[first_charge(), cancel, complete], &[day(7), N1]);
    assert_eq!(answer.at(day(7), ANA, "201"), active(N1), "cancelled: no grace");
    assert_eq!(answer.at(N1, ANA, "201"), Access::NONE);
}

#[test]
fn an_approval_time_far_in_the_future_is_clamped_to_five_minutes_after_sending() {
    let sent = A0 + LAG;
    let approval = one_off("PURCHASE_APPROVED", "HP3", Some(sent + 3 * DAY), sent).product("1003");
    let end = sent + 5 * MINUTE + 30 * DAY;
    let answer = sim(&fixed_30(), &[approval], &[sent + HOUR, end - 1, end]);
    assert_eq!(answer.at(sent + HOUR, ANA, "301"), active(end));
    assert_eq!(answer.at(end - 1, ANA, "301"), active(end));
    assert_eq!(answer.at(end, ANA, "301"), Access::NONE);
}

// ============================================================================================
// Order, duplicates, resends, probes
// ============================================================================================

/// Renewal, refund of the older month, cancellation with and without date, a dispute (keep).
fn a_busy_history() -> Vec<Hotmart> {
    vec![
        first_charge(),
        charge("PURCHASE_COMPLETE", "S1", Some(A0), Some(N1), day(8)),
        renewal(),
        charge("PURCHASE_PROTEST", "S2", Some(A2), Some(N2), N1 + 2 * DAY),
        charge("PURCHASE_REFUNDED", "S1", Some(A0), Some(N1), N1 + 3 * DAY),
        cancellation(Some(N1 + 4 * DAY), Some(N2), N1 + 4 * DAY + LAG),
        cancellation(Some(N1 + 5 * DAY), None, N1 + 5 * DAY + LAG).email(ANA_NEW),
    ]
}

const AFTER_BUSY: i64 = N1 + 6 * DAY;

#[test]
fn resends_under_new_envelope_ids_give_the_same_access() {
    let history = a_busy_history();
    let mut with_resends = history.clone();
    for body in &history {
        // Resent a day later, but for the protest: its business time is its creation_date and the
        // latest protest counts, so a later resend would be another fact.
        let later = if body.event_name() == "PURCHASE_PROTEST" { 0 } else { DAY };
        with_resends.push(body.resend().created(body.creation() + later));
    }
    let probes = [day(9), N1 + 3 * DAY, AFTER_BUSY + DAY, N2];
    let once = sim(&subscription(""), &history, &probes);
    let resent = sim(&subscription(""), &with_resends, &probes);
    for probe in probes {
        assert_eq!(visible(&once, probe), visible(&resent, probe), "at {}", rfc3339(probe));
    }
    assert_eq!(once.at(AFTER_BUSY + DAY, ANA, "201"), active(N2), "cancelled: the stated paid period, no grace");
    assert_eq!(once.at(N2, ANA, "201"), Access::NONE);
}

#[test]
fn arrival_order_does_not_change_access() {
    let history = a_busy_history();
    let mut reversed = history.clone();
    reversed.reverse();
    let mut interleaved: Vec<Hotmart> = history.iter().step_by(2).cloned().collect();
    interleaved.extend(history.iter().skip(1).step_by(2).cloned());
    for order in [history, reversed, interleaved] {
        let answer = sim(&subscription(""), &order, &[AFTER_BUSY]);
        assert_eq!(answer.at(AFTER_BUSY, ANA, "201"), active(N2));
        assert_eq!(answer.active_at(AFTER_BUSY).len(), 1);
    }
}

#[test]
fn a_refund_sent_on_day_10_is_unknown_to_a_day_5_probe() {
    // The refund is first in the file: lines wait for the probe that reaches their creation_date.
    let bodies = [
        one_off("PURCHASE_REFUNDED", "HP1", Some(A0), day(10)),
        one_off("PURCHASE_APPROVED", "HP1", Some(A0), A0 + LAG),
    ];
    let answer = sim(&lifetime(""), &bodies, &[day(10), day(5)]);
    assert_eq!(answer.at(day(5), ANA, "101"), no_end());
    assert_eq!(answer.at(day(10), ANA, "101"), Access::NONE);
}

#[test]
fn without_at_the_probe_is_the_latest_creation_date() {
    let bodies = [
        one_off("PURCHASE_APPROVED", "HP3", Some(A0), A0 + LAG).product("1003"),
        one_off("PURCHASE_COMPLETE", "HP3", Some(A0), day(8)).product("1003"),
    ];
    let output = simulate(&fixed_30(), &lines(&bodies), &[], false);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let answer = parse_answer(&output, &[]).unwrap();
    assert_eq!(answer.probes.keys().copied().collect::<Vec<_>>(), [day(8)]);
    assert_eq!(answer.at(day(8), ANA, "301"), active(A0 + 30 * DAY));
}

#[test]
fn a_course_given_by_several_grants_stays_active_with_the_latest_end_and_no_end_wins() {
    let mappings = product_toml("1003", &["301"], r#"{ type = "fixed_days", days = 30 }"#, "")
        + &product_toml("3003", &["301"], r#"{ type = "subscription", grace_days = 0 }"#, "")
        + &product_toml("1001", &["301"], r#"{ type = "lifetime" }"#, "");
    let sub = |event: &str, sent: i64| {
        Hotmart::subscription(event)
            .product("3003")
            .subscriber("SUB3")
            .transaction("S31")
            .email(ANA)
            .approved(Some(day(10)))
            .next_charge(Some(day(40)))
            .created(sent)
    };
    let bodies = [
        one_off("PURCHASE_APPROVED", "HP3", Some(A0), A0 + LAG).product("1003"),
        sub("PURCHASE_APPROVED", day(10) + LAG),
        sub("PURCHASE_REFUNDED", day(12)),
        one_off("PURCHASE_APPROVED", "HP1", Some(day(13)), day(13) + LAG),
        one_off("PURCHASE_REFUNDED", "HP1", Some(day(13)), day(14)),
    ];
    let answer = sim(&mappings, &bodies, &[day(11), day(12), day(13) + LAG, day(14)]);
    assert_eq!(answer.at(day(11), ANA, "301"), active(day(40)), "the latest end of two grants");
    assert_eq!(answer.at(day(12), ANA, "301"), active(A0 + 30 * DAY), "the other grant still gives it");
    assert_eq!(answer.at(day(13) + LAG, ANA, "301"), no_end(), "no end wins");
    assert_eq!(answer.at(day(14), ANA, "301"), active(A0 + 30 * DAY));
}

// ============================================================================================
// Bad input
// ============================================================================================

#[test]
fn a_line_that_is_not_json_is_reported_with_its_number_and_skipped() {
    let mut input = lines(&[one_off("PURCHASE_APPROVED", "HP1", Some(A0), A0 + LAG)]);
    input.push("{not json".to_owned());
    input.push(one_off("PURCHASE_APPROVED", "HP3", Some(A0), A0 + LAG).product("1003").line());
    let probes = [day(1)];
    let output = simulate(&(lifetime("") + &fixed_30()), &input, &probes, true);
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("line 2"), "{stderr}");
    let answer = answer(&output, &probes);
    assert_eq!(answer.line(2)["status"], "quarantined");
    assert_eq!(answer.at(day(1), ANA, "101"), no_end());
    assert_eq!(answer.at(day(1), ANA, "301"), active(A0 + 30 * DAY));
}

#[test]
fn a_body_the_normalizer_refuses_is_quarantined_with_its_line_number_and_skipped() {
    let bodies = [
        one_off("PURCHASE_APPROVED", "HP1", Some(A0), A0 + LAG),
        one_off("PURCHASE_APPROVED", "HP2", Some(A0), A0 + LAG).without_buyer_email(),
        one_off("PURCHASE_APPROVED", "HP3", Some(A0), A0 + LAG).product("1003"),
    ];
    let probes = [day(1)];
    let output = simulate(&(lifetime("") + &fixed_30()), &lines(&bodies), &probes, true);
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("line 2"), "{stderr}");
    let answer = answer(&output, &probes);
    assert_eq!(answer.line(2)["status"], "quarantined");
    assert_eq!(answer.line(1)["status"], "applied");
    assert_eq!(answer.line(3)["status"], "applied");
    assert_eq!(answer.at(day(1), ANA, "101"), no_end());
    assert_eq!(answer.at(day(1), ANA, "301"), active(A0 + 30 * DAY));
}

#[test]
fn blank_lines_are_skipped() {
    let mappings = TempFile::new("toml", &lifetime(""));
    let approval = one_off("PURCHASE_APPROVED", "HP1", Some(A0), A0 + LAG).line();
    let refund = one_off("PURCHASE_REFUNDED", "HP1", Some(A0), day(3)).line();
    let stdin = format!("\n{approval}\n\n{refund}\n\n");
    let args =
        strings(&["simulate", "--mappings", &mappings.arg(), "--at", &rfc3339(day(2)), "--at", &rfc3339(day(3))]);
    let output = run(&args, &stdin);
    let answer = answer(&output, &[day(2), day(3)]);
    assert_eq!(answer.at(day(2), ANA, "101"), no_end());
    assert_eq!(answer.at(day(3), ANA, "101"), Access::NONE);
}

fn assert_refused(output: &std::process::Output, what: &str) -> String {
    assert_eq!(output.status.code(), Some(2), "{what}: {}", String::from_utf8_lossy(&output.stderr));
    assert!(output.stdout.is_empty(), "{what}: nothing on stdout, got {}", String::from_utf8_lossy(&output.stdout));
    one_stderr_line(output)
}

#[test]
fn a_missing_mappings_file_is_one_error_line_and_exit_2() {
    let path = std::env::temp_dir().join("lms-bridge-simulate-no-such-mappings.toml");
    let args = ["simulate".to_owned(), "--mappings".to_owned(), path.to_string_lossy().into_owned()];
    let output = run(&args, &one_off("PURCHASE_APPROVED", "HP1", Some(A0), A0 + LAG).line());
    let line = assert_refused(&output, "missing file");
    assert!(
        line.contains("lms-bridge-simulate-no-such-mappings.toml") || line.to_lowercase().contains("mapping"),
        "{line}"
    );
}

#[test]
fn an_invalid_mappings_file_is_one_error_line_and_exit_2() {
    let cases = [
        ("not TOML", "[[product]\nsource = \n".to_owned()),
        ("unknown policy", product_toml("1001", &["101"], r#"{ type = "forever" }"#, "")),
        ("unknown dispute policy", lifetime(r#"dispute = "maybe""#)),
        ("unknown chargeback policy", lifetime(r#"chargeback = "sometimes""#)),
        ("fixed_days without days", product_toml("1003", &["301"], r#"{ type = "fixed_days" }"#, "")),
    ];
    for (what, text) in cases {
        let output =
            simulate(&text, &[one_off("PURCHASE_APPROVED", "HP1", Some(A0), A0 + LAG).line()], &[day(1)], false);
        assert_refused(&output, what);
    }
}

#[test]
fn a_bad_at_is_one_error_line_and_exit_2() {
    let mappings = TempFile::new("toml", &lifetime(""));
    for at in ["yesterday", "2026-13-01T00:00:00.000Z", ""] {
        let args = strings(&["simulate", "--mappings", &mappings.arg(), "--at", at]);
        let output = run(&args, &one_off("PURCHASE_APPROVED", "HP1", Some(A0), A0 + LAG).line());
        let line = assert_refused(&output, at);
        assert!(line.contains("--at") || line.contains(at) || line.to_lowercase().contains("time"), "{at:?}: {line}");
    }
}

/// The README's `simulate` example prints exactly what the README shows.
#[test]
fn the_readme_example_prints_what_the_readme_shows() {
    let root = format!("{}/..", env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    let example = readme.split("< docs/examples/refused-renewal.ndjson\n```\n\n```json\n").nth(1).unwrap();
    let shown = example.split("```").next().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_lms-bridge"))
        .current_dir(&root)
        .args(["simulate", "--mappings", "deploy/mappings.example.toml", "--timeline"])
        .args(["--at", "2026-02-06T00:00:00Z", "--at", "2026-02-20T00:00:00Z", "--at", "2026-03-11T00:00:00Z"])
        .stdin(std::fs::File::open(format!("{root}/docs/examples/refused-renewal.ndjson")).unwrap())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(String::from_utf8_lossy(&output.stdout), shown);
}
