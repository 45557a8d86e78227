//! The grant rules on the sequences that broke the previous rules (docs/access-rules.md). The
//! full check against an independent model, through the backend's engine, is
//! `backend/tests/rules_model.rs`; every rule through `lms-bridge simulate` is
//! `backend/tests/simulate_rules.rs`.

#![allow(clippy::unwrap_used, reason = "test code: a panic is the failure report")]

use lms_bridge_shared::event::{Change, Charge, Event, Product, RevokeReason, Student, SCHEMA};
use lms_bridge_shared::rules::Access;
use lms_bridge_shared::{
    AccessPolicy, ChargeId, ChargebackPolicy, CourseId, DisputePolicy, Email, Enrollment, EventId, Grant, GrantId,
    LmsAction, ProductId, ProductMapping, SourceName, Timestamp,
};
use std::borrow::Cow;
use std::collections::BTreeMap;

const DAY: i64 = 86_400_000;
const T0: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

fn day(n: i64) -> Timestamp {
    Timestamp::from_unix_millis(T0 + n * DAY).unwrap()
}

fn course(id: &str) -> CourseId {
    CourseId::parse(id).unwrap()
}

fn subscription(grace_days: u32) -> ProductMapping {
    ProductMapping {
        source: SourceName::parse("hotmart").unwrap(),
        product_id: ProductId::parse("1").unwrap(),
        courses: vec![course("A")],
        policy: AccessPolicy::Subscription { grace_days },
        dispute: DisputePolicy::Keep,
        chargeback: ChargebackPolicy::RevokeGrant,
        plans: BTreeMap::from([("gold".to_owned(), vec![course("A"), course("B")])]),
    }
}

/// A fact about grant `SUB` told at business time `at` by `email`.
fn fact(id: &str, email: &str, change: Change, at: Timestamp, charge: Option<(&str, Option<Timestamp>)>) -> Event {
    Event {
        schema: Cow::Borrowed(SCHEMA),
        id: EventId::parse(format!("hotmart:{id}")).unwrap(),
        source: SourceName::parse("hotmart").unwrap(),
        source_event: change.kind().to_owned(),
        change,
        occurred_at: at,
        received_at: at,
        effective_at: at,
        clamped: false,
        student: Some(Student::new(Email::parse(email).unwrap())),
        product: Some(Product { id: ProductId::parse("1").unwrap(), name: None, offer: None, plan: None }),
        grant_id: Some(GrantId::parse("SUB").unwrap()),
        charge: charge.map(|(id, next)| Charge {
            id: ChargeId::parse(id).unwrap(),
            approved_at: Some(at),
            next_charge_at: next,
        }),
        subscription: None,
        amount: None,
        raw: None,
        raw_truncated: false,
        raw_sha256: None,
        admin: None,
    }
}

fn grant_of(events: &[Event], mapping: &ProductMapping) -> Grant {
    let mut grant = Grant::new(mapping);
    for event in events {
        grant.record(event, mapping).unwrap();
    }
    grant
}

#[test]
fn a_refused_renewal_paid_under_a_new_transaction_keeps_the_subscriber_in() {
    let m = subscription(0);
    let events = [
        fact("1", "ana@x.com", Change::Approve, day(0), Some(("T1", Some(day(30))))),
        fact("2", "ana@x.com", Change::Fail, day(30), Some(("T2", None))),
        fact("3", "ana@x.com", Change::Approve, day(32), Some(("T3", Some(day(60))))),
    ];
    assert_eq!(grant_of(&events, &m).access_at(day(40)), Some(Some(day(60))));
    // Between the refusal and the retry: the paid period has run out (no grace).
    assert_eq!(grant_of(&events[..2], &m).access_at(day(31)), None);
}

#[test]
fn a_completion_after_a_cancellation_does_not_undo_it() {
    let m = subscription(3);
    let events = [
        fact("1", "ana@x.com", Change::Approve, day(0), Some(("T1", Some(day(30))))),
        fact("2", "ana@x.com", Change::Cancel { period_end: Some(day(30)) }, day(2), None),
        // COMPLETE is stamped with the charge's approval time, not its own delivery on day 7.
        fact("3", "ana@x.com", Change::Complete, day(0), Some(("T1", Some(day(30))))),
    ];
    let grant = grant_of(&events, &m);
    assert_eq!(grant.access_at(day(10)), Some(Some(day(30))), "cancelled: no grace");
    assert_eq!(grant.access_at(day(30)), None);
}

#[test]
fn a_refund_of_the_current_charge_ends_access_now_and_of_an_older_one_changes_nothing() {
    let m = subscription(3);
    let paid = [
        fact("1", "ana@x.com", Change::Approve, day(0), Some(("T1", Some(day(30))))),
        fact("2", "ana@x.com", Change::Approve, day(30), Some(("T2", Some(day(60))))),
    ];
    let refund = |charge, at| {
        fact("r", "ana@x.com", Change::Revoke { reason: RevokeReason::Refunded }, at, Some((charge, None)))
    };
    let old = grant_of(&[paid[0].clone(), paid[1].clone(), refund("T1", day(35))], &m);
    assert_eq!(old.access_at(day(40)), Some(Some(day(63))));
    let current = grant_of(&[paid[0].clone(), paid[1].clone(), refund("T2", day(35))], &m);
    assert_eq!(current.access_at(day(35)), None);
    // Before it, the older charge still covers its own period (+ grace).
    assert_eq!(current.access_at(day(32)), Some(Some(day(33))));
}

#[test]
fn chargeback_policy_decides_between_the_grant_and_the_charge() {
    let mut m = subscription(0);
    let events = [
        fact("1", "ana@x.com", Change::Approve, day(0), Some(("T1", Some(day(30))))),
        fact("2", "ana@x.com", Change::Approve, day(30), Some(("T2", Some(day(60))))),
        fact("3", "ana@x.com", Change::Revoke { reason: RevokeReason::Chargeback }, day(40), Some(("T1", None))),
    ];
    assert_eq!(grant_of(&events, &m).access_at(day(41)), None);
    m.chargeback = ChargebackPolicy::RevokeCharge;
    assert_eq!(grant_of(&events, &m).access_at(day(41)), Some(Some(day(60))));
}

#[test]
fn a_plan_switch_moves_the_grant_between_courses_and_a_later_email_acts_on_the_owner() {
    let m = subscription(0);
    let mut first = fact("1", "ana@x.com", Change::Approve, day(0), Some(("T1", Some(day(30)))));
    first.product.as_mut().unwrap().plan = Some("gold".into());
    let switch = fact("2", "ana.new@x.com", Change::PlanChange { plan: "basic".into() }, day(5), None);
    let grant = grant_of(&[switch.clone(), first.clone()], &m);
    let owner = first.student.as_ref().unwrap().key.clone();
    assert_eq!(grant.placements(&m).into_iter().collect::<Vec<_>>(), vec![(owner.clone(), course("A"))]);
    let before = grant_of(&[first], &m);
    assert_eq!(before.placements(&m).len(), 2);

    // On course B the grant is taken off: an unenroll, and only that.
    let b = Enrollment::default().place(&course("B"), "g", Some(&before), day(1)).enrollment;
    assert_eq!(b.access, Access::Active);
    let after = b.place(&course("B"), "g", None, day(6));
    assert_eq!(after.actions, vec![LmsAction::Unenroll { course: course("B") }]);
}

#[test]
fn the_same_facts_in_any_order_and_any_number_of_times_make_the_same_grant() {
    let m = subscription(2);
    let events = [
        fact("1", "ana@x.com", Change::Approve, day(0), Some(("T1", Some(day(30))))),
        fact("2", "ana@x.com", Change::Dispute, day(3), Some(("T1", None))),
        fact("3", "ana@x.com", Change::Cancel { period_end: None }, day(10), None),
        fact("4", "ana@x.com", Change::ChargeDate { next_charge_at: day(40) }, day(5), None),
    ];
    let forward = grant_of(&events, &m);
    let mut shuffled: Vec<Event> = events.iter().rev().cloned().collect();
    shuffled.extend(events.iter().cloned());
    assert_eq!(grant_of(&shuffled, &m), forward);
    // The charge-date update is newer than the approval: its date is the paid period's end.
    assert_eq!(forward.access_at(day(20)), Some(Some(day(40))));
    let mut again = forward.clone();
    assert!(!again.record(&events[1], &m).unwrap(), "a known fact changes nothing");
}
