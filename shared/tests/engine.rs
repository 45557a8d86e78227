//! The decision engine against every row of the access-rules table (DESIGN §5), plus
//! property tests over reordered and duplicated histories.

#![allow(clippy::unwrap_used, reason = "test code: a panic is the failure report")]

use lms_bridge_shared::engine::{Access, LmsAction};
use lms_bridge_shared::event::{Change, Event, Product, RevokeReason, Student, Subscription, SCHEMA};
use lms_bridge_shared::{
    decide, AccessPolicy, CourseId, DisputePolicy, Email, Enrollment, EventId, GrantId, ProductId, ProductMapping,
    SourceName, Timestamp,
};
use proptest::prelude::*;
use std::borrow::Cow;
use std::collections::BTreeMap;

const DAY: i64 = 86_400_000;
const T0: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

fn at(offset_millis: i64) -> Timestamp {
    Timestamp::from_unix_millis(T0 + offset_millis).unwrap()
}

fn course(id: &str) -> CourseId {
    CourseId::parse(id).unwrap()
}

fn mapping(product: &str, policy: AccessPolicy, dispute: DisputePolicy) -> ProductMapping {
    ProductMapping {
        source: SourceName::parse("hotmart").unwrap(),
        product_id: ProductId::parse(product).unwrap(),
        courses: vec![course("C1")],
        policy,
        dispute,
        plans: BTreeMap::from([("other".to_owned(), vec![course("C2")])]),
    }
}

/// A test event; `next_charge` fills the subscription part the way the Hotmart source does.
#[derive(Clone, Debug)]
struct Ev {
    id: String,
    at: i64,
    change: Change,
    grant: &'static str,
    product: &'static str,
    plan: Option<&'static str>,
    next_charge: Option<i64>,
}

fn ev(id: &str, at: i64, change: Change, grant: &'static str, product: &'static str) -> Ev {
    Ev { id: id.to_owned(), at, change, grant, product, plan: None, next_charge: None }
}

impl Ev {
    fn event(&self) -> Event {
        Event {
            schema: Cow::Borrowed(SCHEMA),
            id: EventId::parse(format!("hotmart:{}", self.id)).unwrap(),
            source: SourceName::parse("hotmart").unwrap(),
            source_event: "TEST".into(),
            change: self.change.clone(),
            occurred_at: at(self.at),
            received_at: at(self.at),
            student: Some(Student::new(Email::parse("ana@example.com").unwrap())),
            product: Some(Product {
                id: ProductId::parse(self.product).unwrap(),
                name: None,
                offer: None,
                plan: self.plan.map(str::to_owned),
            }),
            grant_id: Some(GrantId::parse(self.grant).unwrap()),
            subscription: self.next_charge.map(|n| Subscription {
                code: GrantId::parse(self.grant).unwrap(),
                status: None,
                next_charge_at: Some(at(n)),
            }),
            amount: None,
            raw: None,
        }
    }
}

fn grant(pt: Option<i64>) -> Change {
    Change::Grant { paid_through: pt.map(at) }
}

fn revoke(reason: RevokeReason) -> Change {
    Change::Revoke { reason }
}

/// Applies events in order at their own time (or `now`), collecting every action.
struct Run {
    mappings: Vec<ProductMapping>,
    state: Enrollment,
    actions: Vec<LmsAction>,
}

impl Run {
    fn new(mappings: Vec<ProductMapping>) -> Self {
        Self { mappings, state: Enrollment::default(), actions: Vec::new() }
    }

    fn apply_at(&mut self, e: &Ev, now: i64) -> Vec<LmsAction> {
        let mapping = self.mappings.iter().find(|m| m.product_id.as_str() == e.product).unwrap();
        let d = decide(&self.state, &course("C1"), &e.event(), mapping, at(now)).unwrap();
        self.state = d.enrollment;
        self.actions.extend(d.actions.clone());
        d.actions
    }

    fn apply(&mut self, e: &Ev) -> Vec<LmsAction> {
        self.apply_at(e, e.at)
    }

    fn sweep(&mut self, now: i64) -> Vec<LmsAction> {
        let d = self.state.refresh(&course("C1"), at(now));
        self.state = d.enrollment;
        self.actions.extend(d.actions.clone());
        d.actions
    }
}

fn enroll() -> Vec<LmsAction> {
    vec![LmsAction::EnsureUser, LmsAction::Enroll { course: course("C1") }]
}

fn unenroll() -> Vec<LmsAction> {
    vec![LmsAction::Unenroll { course: course("C1") }]
}

fn lifetime() -> Vec<ProductMapping> {
    vec![mapping("P1", AccessPolicy::Lifetime, DisputePolicy::Keep)]
}

#[test]
fn approval_enrolls_once_and_complete_or_a_resend_changes_nothing() {
    let mut run = Run::new(lifetime());
    assert_eq!(run.apply(&ev("a", 0, grant(None), "HP1", "P1")), enroll());
    assert_eq!(run.state.access, Access::Active);
    assert_eq!(run.state.access_until, None);
    // Hotmart resends under a new id; PURCHASE_COMPLETE follows a week later.
    assert_eq!(run.apply(&ev("a-resend", 0, grant(None), "HP1", "P1")), vec![]);
    assert_eq!(run.apply(&ev("complete", 7 * DAY, grant(None), "HP1", "P1")), vec![]);
    let e = ev("complete", 7 * DAY, grant(None), "HP1", "P1");
    let d = decide(&run.state, &course("C1"), &e.event(), &lifetime()[0], at(8 * DAY)).unwrap();
    assert!(!d.changed && d.actions.is_empty(), "an exact duplicate is a no-op");
}

#[test]
fn refund_chargeback_and_cancel_revoke_for_good() {
    for reason in [RevokeReason::Refunded, RevokeReason::Chargeback, RevokeReason::Canceled] {
        let mut run = Run::new(lifetime());
        run.apply(&ev("a", 0, grant(None), "HP1", "P1"));
        assert_eq!(run.apply(&ev("r", DAY, revoke(reason), "HP1", "P1")), unenroll());
        // A later (or replayed) approval of the same transaction does not revive it.
        assert_eq!(run.apply(&ev("a2", 2 * DAY, grant(None), "HP1", "P1")), vec![]);
        assert_eq!(run.state.access, Access::Inactive);
        assert_eq!(run.state.grants[&GrantId::parse("HP1").unwrap()].revoked.as_ref().unwrap().reason, reason);
    }
}

#[test]
fn refund_arriving_before_its_approval_never_enrolls() {
    let mut run = Run::new(lifetime());
    assert_eq!(run.apply_at(&ev("r", DAY, revoke(RevokeReason::Refunded), "HP1", "P1"), DAY), vec![]);
    assert_eq!(run.apply_at(&ev("a", 0, grant(None), "HP1", "P1"), 2 * DAY), vec![]);
    assert!(run.actions.is_empty());
}

#[test]
fn dispute_keeps_access_by_default_and_suspends_by_policy_until_settled() {
    let mut keep = Run::new(lifetime());
    keep.apply(&ev("a", 0, grant(None), "HP1", "P1"));
    assert_eq!(keep.apply(&ev("p", DAY, Change::Dispute, "HP1", "P1")), vec![]);
    assert_eq!(keep.state.access, Access::Active);

    let mut suspend = Run::new(vec![mapping("P1", AccessPolicy::Lifetime, DisputePolicy::Suspend)]);
    suspend.apply(&ev("a", 0, grant(None), "HP1", "P1"));
    assert_eq!(suspend.apply(&ev("p", DAY, Change::Dispute, "HP1", "P1")), unenroll());
    // Settled in the buyer's favour: PURCHASE_COMPLETE after the dispute.
    assert_eq!(suspend.apply(&ev("c", 2 * DAY, grant(None), "HP1", "P1")), enroll());
    // An old approval replayed after a new dispute does not settle it.
    suspend.apply(&ev("p2", 3 * DAY, Change::Dispute, "HP1", "P1"));
    assert_eq!(suspend.apply_at(&ev("a", 0, grant(None), "HP1", "P1"), 4 * DAY), vec![]);
    assert_eq!(suspend.state.access, Access::Inactive);
}

fn subscription(grace: u32) -> Vec<ProductMapping> {
    vec![mapping("P2", AccessPolicy::Subscription { grace_days: grace }, DisputePolicy::Keep)]
}

#[test]
fn subscription_renewals_extend_and_a_late_payment_lasts_until_grace_ends() {
    let mut run = Run::new(subscription(3));
    assert_eq!(run.apply(&ev("c1", 0, grant(Some(30 * DAY)), "SUB", "P2")), enroll());
    assert_eq!(run.state.access_until, Some(at(33 * DAY)));
    assert_eq!(run.apply(&ev("c2", 30 * DAY, grant(Some(60 * DAY)), "SUB", "P2")), vec![]);
    assert_eq!(run.state.access_until, Some(at(63 * DAY)));
    // The third charge is late: nothing changes now.
    assert_eq!(run.apply(&ev("late", 61 * DAY, Change::PaymentLate, "SUB", "P2")), vec![]);
    assert!(!run.state.is_due(at(62 * DAY)));
    assert_eq!(run.sweep(62 * DAY), vec![]);
    assert!(run.state.is_due(at(63 * DAY)));
    assert_eq!(run.sweep(63 * DAY), unenroll());
    // Paid after all: access comes back.
    assert_eq!(run.apply(&ev("c3", 64 * DAY, grant(Some(90 * DAY)), "SUB", "P2")), enroll());
}

#[test]
fn an_old_renewal_arriving_late_does_not_shorten_access() {
    let mut run = Run::new(subscription(0));
    run.apply(&ev("c2", 30 * DAY, grant(Some(60 * DAY)), "SUB", "P2"));
    run.apply_at(&ev("c1", 0, grant(Some(30 * DAY)), "SUB", "P2"), 31 * DAY);
    assert_eq!(run.state.access_until, Some(at(60 * DAY)));
}

#[test]
fn cancellation_keeps_access_to_the_end_of_the_paid_period_then_the_sweep_ends_it() {
    let mut run = Run::new(subscription(5));
    run.apply(&ev("c1", 0, grant(Some(30 * DAY)), "SUB", "P2"));
    assert_eq!(run.apply(&ev("cancel", 10 * DAY, Change::EndsAt { at: at(30 * DAY) }, "SUB", "P2")), vec![]);
    assert_eq!(run.state.access_until, Some(at(30 * DAY)), "no grace after a cancellation");
    assert_eq!(run.sweep(30 * DAY - 1), vec![]);
    assert_eq!(run.sweep(30 * DAY), unenroll());
}

#[test]
fn charge_date_update_moves_paid_through() {
    let mut run = Run::new(subscription(0));
    run.apply(&ev("c1", 0, grant(Some(30 * DAY)), "SUB", "P2"));
    run.apply(&ev("move", 5 * DAY, grant(Some(40 * DAY)), "SUB", "P2"));
    assert_eq!(run.state.access_until, Some(at(40 * DAY)));
    assert_eq!(run.sweep(35 * DAY), vec![]);
    assert_eq!(run.sweep(40 * DAY), unenroll());
}

#[test]
fn plan_change_moves_the_course_with_the_new_plan() {
    let mut run = Run::new(subscription(0));
    run.apply(&ev("c1", 0, grant(Some(30 * DAY)), "SUB", "P2"));
    let mut switch = ev("sw", DAY, Change::PlanChange { plan: "other".into() }, "SUB", "P2");
    switch.plan = Some("other");
    switch.next_charge = Some(30 * DAY);
    assert_eq!(run.apply(&switch), unenroll(), "plan `other` does not give C1");
    let mut back = ev("sw2", 2 * DAY, Change::PlanChange { plan: "basic".into() }, "SUB", "P2");
    back.plan = Some("basic");
    back.next_charge = Some(30 * DAY);
    assert_eq!(run.apply(&back), enroll());
}

#[test]
fn fixed_term_ends_on_time_and_later_approvals_do_not_extend_it() {
    let mut run = Run::new(vec![mapping("P3", AccessPolicy::FixedDays { days: 365 }, DisputePolicy::Keep)]);
    assert_eq!(run.apply(&ev("a", 0, grant(None), "HP3", "P3")), enroll());
    run.apply(&ev("complete", 7 * DAY, grant(None), "HP3", "P3"));
    assert_eq!(run.state.access_until, Some(at(365 * DAY)));
    assert_eq!(run.sweep(365 * DAY - 1), vec![]);
    assert_eq!(run.sweep(365 * DAY), unenroll());
}

#[test]
fn two_products_granting_one_course_keep_it_while_one_stands() {
    let mut run = Run::new(vec![
        mapping("P1", AccessPolicy::Lifetime, DisputePolicy::Keep),
        mapping("P3", AccessPolicy::FixedDays { days: 30 }, DisputePolicy::Keep),
    ]);
    assert_eq!(run.apply(&ev("a", 0, grant(None), "HP1", "P1")), enroll());
    assert_eq!(run.apply(&ev("b", DAY, grant(None), "HP3", "P3")), vec![]);
    assert_eq!(run.apply(&ev("r", 2 * DAY, revoke(RevokeReason::Refunded), "HP1", "P1")), vec![]);
    assert_eq!(run.state.access, Access::Active);
    assert_eq!(run.sweep(31 * DAY), unenroll());
}

#[test]
fn info_events_change_nothing_and_a_foreign_mapping_is_an_error() {
    let mut run = Run::new(lifetime());
    assert_eq!(run.apply(&ev("i", 0, Change::Info, "HP1", "P1")), vec![]);
    assert_eq!(run.state, Enrollment::default());
    let e = ev("a", 0, grant(None), "HP1", "P9").event();
    assert!(decide(&Enrollment::default(), &course("C1"), &e, &lifetime()[0], at(0)).is_err());
}

// ---- property tests ----

/// A realistic history for one student and course C1: a one-off purchase (lifetime or
/// fixed-term) and a monthly subscription, with optional dispute, refund, late charge,
/// cancellation, chargeback and plan change.
#[derive(Clone, Debug)]
struct History {
    events: Vec<Ev>,
    mappings: Vec<ProductMapping>,
}

fn history() -> impl Strategy<Value = History> {
    (
        any::<bool>(),                   // fixed-term one-off?
        any::<bool>(),                   // suspend on dispute?
        proptest::option::of(1i64..20),  // dispute on day
        proptest::option::of(1i64..40),  // refund on day
        1i64..5,                         // subscription charges
        any::<bool>(),                   // late charge after the last one
        any::<bool>(),                   // cancellation
        any::<bool>(),                   // chargeback
        proptest::option::of(1i64..120), // plan change away from C1 on day
    )
        .prop_map(|(fixed, suspend, dispute, refund, charges, late, cancel, chargeback, switch)| {
            let one_off = if fixed { AccessPolicy::FixedDays { days: 60 } } else { AccessPolicy::Lifetime };
            let dispute_policy = if suspend { DisputePolicy::Suspend } else { DisputePolicy::Keep };
            let mappings = vec![
                mapping("P1", one_off, dispute_policy),
                mapping("P2", AccessPolicy::Subscription { grace_days: 3 }, dispute_policy),
            ];
            let mut events =
                vec![ev("a", 0, grant(None), "HP1", "P1"), ev("complete", 8 * DAY, grant(None), "HP1", "P1")];
            if let Some(day) = dispute {
                events.push(ev("protest", day * DAY + 1, Change::Dispute, "HP1", "P1"));
            }
            if let Some(day) = refund {
                events.push(ev("refund", day * DAY + 2, revoke(RevokeReason::Refunded), "HP1", "P1"));
            }
            for k in 0..charges {
                let mut e = ev(&format!("charge{k}"), 30 * DAY * k + 3, grant(Some(30 * DAY * (k + 1))), "SUB", "P2");
                e.next_charge = Some(30 * DAY * (k + 1));
                events.push(e);
            }
            let last_paid = 30 * DAY * charges;
            if late {
                events.push(ev("late", last_paid + DAY, Change::PaymentLate, "SUB", "P2"));
            }
            if cancel {
                events.push(ev("cancel", last_paid - 5 * DAY, Change::EndsAt { at: at(last_paid) }, "SUB", "P2"));
            }
            if chargeback {
                events.push(ev("chargeback", 45 * DAY, revoke(RevokeReason::Chargeback), "SUB", "P2"));
            }
            if let Some(day) = switch {
                let mut e = ev("switch", day * DAY + 4, Change::PlanChange { plan: "other".into() }, "SUB", "P2");
                e.plan = Some("other");
                events.push(e);
            }
            events.sort_by_key(|e| e.at);
            History { events, mappings }
        })
}

/// The history with some events delivered again (same id, or a resend under a new id)
/// and everything shuffled.
fn delivery(history: History) -> impl Strategy<Value = (History, Vec<Ev>)> {
    let n = history.events.len();
    (proptest::collection::vec((0..n, any::<bool>()), 0..8), Just(history)).prop_flat_map(|(dups, history)| {
        let mut stream = history.events.clone();
        for (i, new_id) in dups {
            let mut e = history.events[i].clone();
            if new_id {
                e.id = format!("{}-resend", e.id);
            }
            stream.push(e);
        }
        (Just(history), Just(stream).prop_shuffle())
    })
}

/// Arrival times: events may arrive long after they happened; decide runs at arrival.
fn run(history: &History, stream: &[Ev], arrival_step: i64) -> Run {
    let mut r = Run::new(history.mappings.clone());
    let mut now = 0;
    for e in stream {
        now = (now + arrival_step).max(e.at);
        r.apply_at(e, now);
    }
    r
}

fn probes() -> impl Iterator<Item = i64> {
    (0..200).map(|d| d * DAY + DAY / 2)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn reordered_and_duplicated_histories_converge_to_the_in_order_access(
        (history, stream) in history().prop_flat_map(delivery),
        step in 0i64..(3 * DAY),
    ) {
        let in_order = run(&history, &history.events, 0);
        let shuffled = run(&history, &stream, step);
        for now in probes() {
            prop_assert_eq!(in_order.state.compute(at(now)), shuffled.state.compute(at(now)), "at day {}", now / DAY);
        }
    }

    #[test]
    fn a_revoked_grant_never_regains_access(
        (history, stream) in history().prop_flat_map(delivery),
    ) {
        let mut r = Run::new(history.mappings.clone());
        let mut now = 0;
        for e in &stream {
            now = now.max(e.at);
            r.apply_at(e, now);
            for g in r.state.grants.values().filter(|g| g.revoked.is_some()) {
                for probe in probes() {
                    prop_assert_eq!(g.access_at(at(probe)), None);
                }
            }
        }
    }

    #[test]
    fn actions_are_emitted_only_on_access_transitions(
        (history, stream) in history().prop_flat_map(delivery),
        sweeps in proptest::collection::vec(0i64..200, 0..6),
    ) {
        let mut r = Run::new(history.mappings.clone());
        let mut now = 0;
        let mut steps: Vec<(i64, Option<&Ev>)> = stream.iter().map(|e| (e.at, Some(e))).collect();
        steps.extend(sweeps.iter().map(|d| (d * DAY, None)));
        steps.sort_by_key(|(t, _)| *t);
        for (t, e) in steps {
            now = now.max(t);
            let before = r.state.access;
            let actions = match e {
                Some(e) => r.apply_at(e, now),
                None => r.sweep(now),
            };
            let expected = match (before, r.state.access) {
                (Access::Inactive, Access::Active) => enroll(),
                (Access::Active, Access::Inactive) => unenroll(),
                _ => vec![],
            };
            prop_assert_eq!(actions, expected);
        }
        // Re-delivering the whole stream afterwards changes nothing and does nothing.
        for e in &stream {
            prop_assert_eq!(r.apply_at(e, now), vec![]);
        }
    }
}
