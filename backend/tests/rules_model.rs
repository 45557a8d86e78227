//! docs/access-rules.md as a property: random Hotmart histories, delivered shuffled, duplicated and
//! resent, are fed to `lms-bridge simulate`, and every probe is compared with a separate,
//! deliberately simple interpreter of the page (the `model` module below: set comprehensions over
//! the facts known at the probe, no event-by-event state, no lms-bridge code).
//!
//! `RULES_MODEL_CASES` sets the number of cases (default 2000).

#![allow(clippy::unwrap_used, reason = "test code: a panic is the failure report")]

mod support;

use model::{Fact, Kind, Mapping, Policy};
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use support::{parse_answer, product_toml, rfc3339, simulate, Access, Hotmart, DAY, HOUR, MINUTE, SECOND, T0};

// =============================================================================================
// The model
// =============================================================================================

/// docs/access-rules.md, read literally. Input: the facts known at a probe; output: the active
/// (student, course) pairs and their ends.
mod model {
    use super::support::{parse_time, DAY, MINUTE};
    use serde_json::Value;
    use std::collections::{BTreeMap, BTreeSet};

    /// A grant's policy (mapping `policy`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Policy {
        Lifetime,
        FixedDays(i64),
        Subscription { grace_days: i64 },
    }

    /// A product mapping.
    #[derive(Debug, Clone)]
    pub struct Mapping {
        pub product: String,
        pub courses: Vec<String>,
        pub policy: Policy,
        /// `dispute = "suspend"` (else keep).
        pub suspend: bool,
        /// `chargeback = "revoke_charge"` (else revoke_grant).
        pub revoke_charge: bool,
        pub plans: BTreeMap<String, Vec<String>>,
    }

    /// What a fact says, by event.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Kind {
        Approved { charge: String, stated: Option<i64>, next: Option<i64>, plan: Option<String> },
        Complete { charge: String, stated: Option<i64>, next: Option<i64>, plan: Option<String> },
        Refunded { charge: String },
        Chargeback { charge: String },
        Canceled { charge: String },
        Protest { charge: String },
        Delayed { charge: String },
        Cancellation { stated: Option<i64>, next: Option<i64> },
        Switch { stated: Option<i64>, plan: String },
        ChargeDate { date: i64, active: bool },
        Info,
    }

    /// One webhook body, read by meaning.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Fact {
        /// The envelope `creation_date`: when it was sent (and received, in `simulate`).
        pub sent: i64,
        pub event: String,
        pub product: Option<String>,
        pub grant: Option<String>,
        pub email: Option<String>,
        pub kind: Kind,
    }

    fn text(value: &Value) -> Option<String> {
        match value {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }

    /// Reads a body of the shapes the generator writes (docs/hotmart.md).
    pub fn read(body: &Value) -> Fact {
        let sent = body["creation_date"].as_i64().expect("creation_date");
        let event = body["event"].as_str().expect("event").to_owned();
        let d = &body["data"];
        let (product, grant, email, kind) = match event.as_str() {
            "PURCHASE_APPROVED"
            | "PURCHASE_COMPLETE"
            | "PURCHASE_REFUNDED"
            | "PURCHASE_CHARGEBACK"
            | "PURCHASE_CANCELED"
            | "PURCHASE_PROTEST"
            | "PURCHASE_DELAYED" => {
                let charge = text(&d["purchase"]["transaction"]).expect("a transaction");
                let grant = text(&d["subscription"]["subscriber"]["code"]).unwrap_or_else(|| charge.clone());
                let stated = d["purchase"]["approved_date"].as_i64();
                let next = d["purchase"]["date_next_charge"].as_i64();
                let plan = text(&d["subscription"]["plan"]["id"]);
                let kind = match event.as_str() {
                    "PURCHASE_APPROVED" => Kind::Approved { charge, stated, next, plan },
                    "PURCHASE_COMPLETE" => Kind::Complete { charge, stated, next, plan },
                    "PURCHASE_REFUNDED" => Kind::Refunded { charge },
                    "PURCHASE_CHARGEBACK" => Kind::Chargeback { charge },
                    "PURCHASE_CANCELED" => Kind::Canceled { charge },
                    "PURCHASE_PROTEST" => Kind::Protest { charge },
                    _ => Kind::Delayed { charge },
                };
                (text(&d["product"]["id"]), Some(grant), text(&d["buyer"]["email"]), kind)
            }
            "SUBSCRIPTION_CANCELLATION" => (
                text(&d["product"]["id"]),
                text(&d["subscriber"]["code"]),
                text(&d["subscriber"]["email"]),
                Kind::Cancellation { stated: d["cancellation_date"].as_i64(), next: d["date_next_charge"].as_i64() },
            ),
            "SWITCH_PLAN" => {
                let current = d["plans"].as_array().and_then(|plans| plans.iter().find(|p| p["current"] == true));
                let plan = current.and_then(|p| text(&p["id"])).expect("a current plan");
                (
                    text(&d["subscription"]["product"]["id"]),
                    text(&d["subscription"]["subscriber_code"]),
                    text(&d["subscription"]["user"]["email"]),
                    Kind::Switch { stated: d["switch_plan_date"].as_i64(), plan },
                )
            }
            "UPDATE_SUBSCRIPTION_CHARGE_DATE" => {
                let date = d["subscription"]["date_next_charge"].as_str().expect("an ISO date");
                (
                    text(&d["subscription"]["product"]["id"]),
                    text(&d["subscriber"]["code"]),
                    text(&d["subscriber"]["email"]),
                    Kind::ChargeDate {
                        date: parse_time(date).expect("an ISO date"),
                        active: d["subscription"]["status"] == "ACTIVE",
                    },
                )
            }
            _ => (None, None, None, Kind::Info),
        };
        Fact { sent, event, product, grant, email, kind }
    }

    impl Fact {
        /// Business time: the stated time (approval, cancellation, switch) or the envelope's,
        /// clamped to the envelope's + 5 minutes.
        pub fn time(&self) -> i64 {
            let stated = match &self.kind {
                Kind::Approved { stated, .. }
                | Kind::Complete { stated, .. }
                | Kind::Cancellation { stated, .. }
                | Kind::Switch { stated, .. } => *stated,
                _ => None,
            };
            stated.unwrap_or(self.sent).min(self.sent + 5 * MINUTE)
        }

        /// The student the fact names: trimmed, lowercased.
        pub fn student(&self) -> String {
            self.email.as_deref().unwrap_or_default().trim().to_lowercase()
        }

        fn charge(&self) -> Option<&str> {
            match &self.kind {
                Kind::Approved { charge, .. }
                | Kind::Complete { charge, .. }
                | Kind::Refunded { charge }
                | Kind::Chargeback { charge }
                | Kind::Canceled { charge }
                | Kind::Protest { charge }
                | Kind::Delayed { charge } => Some(charge),
                _ => None,
            }
        }

        fn next(&self) -> Option<i64> {
            match &self.kind {
                Kind::Approved { next, .. } | Kind::Complete { next, .. } | Kind::Cancellation { next, .. } => *next,
                _ => None,
            }
        }

        fn plan(&self) -> Option<&str> {
            match &self.kind {
                Kind::Approved { plan, .. } | Kind::Complete { plan, .. } => plan.as_deref(),
                Kind::Switch { plan, .. } => Some(plan),
                _ => None,
            }
        }
    }

    /// What the page says of one charge, from the facts naming it.
    #[derive(Debug, Clone, Copy)]
    struct ChargeState {
        /// The earliest approval time stated by an APPROVED; with none, by a COMPLETE.
        approval: Option<i64>,
        /// The latest next-charge date stated by an APPROVED; with none, the earliest by a COMPLETE.
        coverage: Option<i64>,
        /// The earliest revocation (a chargeback is one under `revoke_charge`).
        revoked: Option<i64>,
        /// A PURCHASE_CANCELED is known.
        failed: bool,
        /// A PROTEST at d (the latest), no APPROVED stating an approval later than d, not revoked.
        disputed: bool,
    }

    impl ChargeState {
        fn of(facts: &[&Fact], revoke_charge: bool) -> Self {
            let approved: Vec<&Fact> =
                facts.iter().copied().filter(|f| matches!(f.kind, Kind::Approved { .. })).collect();
            let completed: Vec<&Fact> =
                facts.iter().copied().filter(|f| matches!(f.kind, Kind::Complete { .. })).collect();
            let approving = if approved.is_empty() { &completed } else { &approved };
            let approval = approving.iter().map(|f| f.time()).min();
            let coverage = approved
                .iter()
                .filter_map(|f| f.next())
                .max()
                .or_else(|| completed.iter().filter_map(|f| f.next()).min());
            let revoked = facts
                .iter()
                .filter(|f| {
                    matches!(f.kind, Kind::Refunded { .. })
                        || (revoke_charge && matches!(f.kind, Kind::Chargeback { .. }))
                })
                .map(|f| f.time())
                .min();
            let failed = facts.iter().any(|f| matches!(f.kind, Kind::Canceled { .. }));
            let protest = facts.iter().filter(|f| matches!(f.kind, Kind::Protest { .. })).map(|f| f.time()).max();
            let disputed = protest.is_some_and(|d| !approved.iter().any(|f| f.time() > d)) && revoked.is_none();
            Self { approval, coverage, revoked, failed, disputed }
        }

        fn valid(&self) -> bool {
            self.approval.is_some() && self.revoked.is_none() && !self.failed
        }
    }

    /// One grant: its mapping, its known facts, its charges.
    struct Grant<'a> {
        mapping: &'a Mapping,
        facts: Vec<&'a Fact>,
        charges: BTreeMap<&'a str, ChargeState>,
        /// The facts stating each charge's approval: its APPROVED, or with none its COMPLETE.
        approvals: Vec<&'a Fact>,
    }

    impl<'a> Grant<'a> {
        fn new(mapping: &'a Mapping, facts: Vec<&'a Fact>) -> Self {
            let mut by_charge: BTreeMap<&'a str, Vec<&'a Fact>> = BTreeMap::new();
            for fact in &facts {
                if let Some(charge) = fact.charge() {
                    by_charge.entry(charge).or_default().push(fact);
                }
            }
            let charges = by_charge.iter().map(|(c, of)| (*c, ChargeState::of(of, mapping.revoke_charge))).collect();
            let approvals = by_charge
                .values()
                .flat_map(|of| {
                    let approved: Vec<&'a Fact> =
                        of.iter().copied().filter(|f| matches!(f.kind, Kind::Approved { .. })).collect();
                    if approved.is_empty() {
                        of.iter().copied().filter(|f| matches!(f.kind, Kind::Complete { .. })).collect()
                    } else {
                        approved
                    }
                })
                .collect();
            Self { mapping, facts, charges, approvals }
        }

        fn of(&self, pick: fn(&Kind) -> bool) -> impl Iterator<Item = &'a Fact> + '_ {
            self.facts.iter().copied().filter(move |f| pick(&f.kind))
        }

        /// The paid period's end: the coverage of the valid charge with the latest approval time
        /// that has one, unless an ACTIVE charge-date update sent after that approval is newer.
        fn paid_end(&self) -> Option<i64> {
            let stated =
                self.charges.values().filter(|c| c.valid()).filter_map(|c| Some((c.approval?, c.coverage?))).max();
            let update = self
                .of(|k| matches!(k, Kind::ChargeDate { active: true, .. }))
                .filter_map(|f| match f.kind {
                    Kind::ChargeDate { date, .. } => Some((f.time(), date)),
                    _ => None,
                })
                .max();
            match (stated, update) {
                (Some((approved, coverage)), Some((updated, date))) => {
                    Some(if updated > approved { date } else { coverage })
                }
                (Some((_, coverage)), None) => Some(coverage),
                // Assumption (never generated): with no coverage known, the update is the newest statement.
                (None, Some((_, date))) => Some(date),
                (None, None) => None,
            }
        }

        /// `None`: inactive by the rules. `Some(end)`: active until `end` (`None`: no end).
        fn end(&self) -> Option<Option<i64>> {
            let valid: Vec<&ChargeState> = self.charges.values().filter(|c| c.valid()).collect();
            if valid.is_empty() {
                return None;
            }
            if self.mapping.suspend && self.charges.values().any(|c| c.disputed) {
                return None;
            }
            let mut ends = Vec::new();
            if !self.mapping.revoke_charge {
                ends.extend(self.of(|k| matches!(k, Kind::Chargeback { .. })).map(|f| f.time()).min());
            }
            match self.mapping.policy {
                Policy::Lifetime => {}
                Policy::FixedDays(days) => {
                    ends.extend(valid.iter().filter_map(|c| c.approval).map(|a| a + days * DAY).max())
                }
                Policy::Subscription { grace_days } => {
                    let paid = self.paid_end();
                    ends.extend(paid.map(|p| p + grace_days * DAY));
                    // The charge with the latest approval time, valid or not: revoked → ends then.
                    let latest = self.charges.values().filter_map(|c| Some((c.approval?, c.revoked))).max();
                    if let Some((_, revoked)) = latest {
                        ends.extend(revoked);
                    }
                    let cancellation = self.of(|k| matches!(k, Kind::Cancellation { .. })).max_by_key(|f| f.time());
                    if let Some(cancellation) = cancellation {
                        let t = cancellation.time();
                        let reactivated = valid.iter().any(|c| c.approval.is_some_and(|a| a > t));
                        if !reactivated {
                            ends.push(cancellation.next().or(paid).unwrap_or(t));
                        }
                    }
                }
            }
            Some(ends.into_iter().min())
        }

        /// The student of the earliest approval (equal times: the smallest email); with none, of
        /// the earliest fact.
        fn owner(&self) -> Option<String> {
            let pool = if self.approvals.is_empty() { &self.facts } else { &self.approvals };
            pool.iter().map(|f| (f.time(), f.student())).min().map(|(_, student)| student)
        }

        /// The plan of the latest switch; with none, of the earliest approval.
        fn plan(&self) -> Option<String> {
            if let Some(switch) = self.of(|k| matches!(k, Kind::Switch { .. })).max_by_key(|f| f.time()) {
                return switch.plan().map(str::to_owned);
            }
            let earliest = self.approvals.iter().min_by_key(|f| (f.time(), f.student()))?;
            earliest.plan().map(str::to_owned)
        }

        fn courses(&self) -> Vec<String> {
            self.plan().and_then(|p| self.mapping.plans.get(&p)).unwrap_or(&self.mapping.courses).clone()
        }
    }

    /// The access at `t` given every fact sent by then: active (student, course) → end.
    pub fn access(mappings: &[Mapping], facts: &[Fact], t: i64) -> BTreeMap<(String, String), Option<i64>> {
        let known: Vec<&Fact> = facts.iter().filter(|f| f.sent <= t && f.kind != Kind::Info).collect();
        let grants: BTreeSet<(&str, &str)> =
            known.iter().filter_map(|f| Some((f.product.as_deref()?, f.grant.as_deref()?))).collect();
        let mut out: BTreeMap<(String, String), Option<i64>> = BTreeMap::new();
        for (product, id) in grants {
            let Some(mapping) = mappings.iter().find(|m| m.product == product) else { continue };
            let facts = known
                .iter()
                .copied()
                .filter(|f| f.product.as_deref() == Some(product) && f.grant.as_deref() == Some(id))
                .collect();
            let grant = Grant::new(mapping, facts);
            let Some(end) = grant.end() else { continue };
            if end.is_some_and(|end| t >= end) {
                continue;
            }
            let Some(owner) = grant.owner() else { continue };
            for course in grant.courses() {
                out.entry((owner.clone(), course))
                    .and_modify(|until| {
                        *until = match (*until, end) {
                            (Some(a), Some(b)) => Some(a.max(b)),
                            _ => None,
                        }
                    })
                    .or_insert(end);
            }
        }
        out
    }
}

impl Mapping {
    fn toml(&self, explicit_defaults: bool) -> String {
        let policy = match self.policy {
            Policy::Lifetime => r#"{ type = "lifetime" }"#.to_owned(),
            Policy::FixedDays(days) => format!(r#"{{ type = "fixed_days", days = {days} }}"#),
            Policy::Subscription { grace_days } => format!(r#"{{ type = "subscription", grace_days = {grace_days} }}"#),
        };
        let mut extra = String::new();
        if self.suspend || explicit_defaults {
            let _ = writeln!(extra, "dispute = \"{}\"", if self.suspend { "suspend" } else { "keep" });
        }
        if self.revoke_charge || explicit_defaults {
            let _ = writeln!(
                extra,
                "chargeback = \"{}\"",
                if self.revoke_charge { "revoke_charge" } else { "revoke_grant" }
            );
        }
        if !self.plans.is_empty() {
            let plans: Vec<String> =
                self.plans.iter().map(|(plan, courses)| format!("{plan:?} = {courses:?}")).collect();
            let _ = writeln!(extra, "plans = {{ {} }}", plans.join(", "));
        }
        let courses: Vec<&str> = self.courses.iter().map(String::as_str).collect();
        product_toml(&self.product, &courses, &policy, &extra)
    }
}

fn describe(fact: &Fact) -> String {
    let time = |t: &Option<i64>| t.map_or_else(|| "-".to_owned(), rfc3339);
    let what = match &fact.kind {
        Kind::Approved { charge, stated, next, plan } | Kind::Complete { charge, stated, next, plan } => format!(
            "charge={charge} approved_date={} next={} plan={}",
            time(stated),
            time(next),
            plan.as_deref().unwrap_or("-")
        ),
        Kind::Refunded { charge }
        | Kind::Chargeback { charge }
        | Kind::Canceled { charge }
        | Kind::Protest { charge }
        | Kind::Delayed { charge } => format!("charge={charge}"),
        Kind::Cancellation { stated, next } => format!("cancellation_date={} next={}", time(stated), time(next)),
        Kind::Switch { stated, plan } => format!("switch_plan_date={} plan={plan}", time(stated)),
        Kind::ChargeDate { date, active } => format!("date={} active={active}", rfc3339(*date)),
        Kind::Info => String::new(),
    };
    format!(
        "sent {} {:<31} product={} grant={} email={:?} business={} {what}",
        rfc3339(fact.sent),
        fact.event,
        fact.product.as_deref().unwrap_or("-"),
        fact.grant.as_deref().unwrap_or("-"),
        fact.email.as_deref().unwrap_or("-"),
        rfc3339(fact.time()),
    )
}

// =============================================================================================
// The model on hand-computed cases (from docs/access-rules.md, not from lms-bridge)
// =============================================================================================

const ANA: &str = "ana@example.com";
const A0: i64 = T0 + 10 * HOUR;
const LAG: i64 = 7 * SECOND;
const N1: i64 = A0 + 30 * DAY;

fn sub_mapping(product: &str, courses: &[&str], grace_days: i64) -> Mapping {
    Mapping {
        product: product.to_owned(),
        courses: courses.iter().map(|c| (*c).to_owned()).collect(),
        policy: Policy::Subscription { grace_days },
        suspend: false,
        revoke_charge: false,
        plans: BTreeMap::new(),
    }
}

fn facts(bodies: &[Hotmart]) -> Vec<Fact> {
    bodies.iter().map(|b| model::read(&b.body)).collect()
}

fn pairs(list: &[(&str, &str, Option<i64>)]) -> BTreeMap<(String, String), Option<i64>> {
    list.iter().map(|(e, c, u)| (((*e).to_owned(), (*c).to_owned()), *u)).collect()
}

#[test]
fn model_refused_renewal_then_retry_under_a_new_transaction_continues() {
    let mappings = [sub_mapping("2002", &["201"], 3)];
    let retry = N1 + 2 * DAY;
    let history = facts(&[
        support::ana_sub_charge("PURCHASE_APPROVED", "S1", Some(A0), Some(N1), A0 + LAG),
        support::ana_sub_charge("PURCHASE_CANCELED", "S2", None, Some(N1 + 30 * DAY), N1 + HOUR),
        support::ana_sub_charge("PURCHASE_APPROVED", "S3", Some(retry), Some(retry + 30 * DAY), retry + LAG),
    ]);
    assert_eq!(model::access(&mappings, &history, N1 + DAY), pairs(&[(ANA, "201", Some(N1 + 3 * DAY))]));
    assert_eq!(model::access(&mappings, &history, retry), pairs(&[(ANA, "201", Some(N1 + 3 * DAY))]));
    assert_eq!(model::access(&mappings, &history, retry + LAG), pairs(&[(ANA, "201", Some(retry + 33 * DAY))]));
    assert_eq!(model::access(&mappings, &history[..2], N1 + 3 * DAY), pairs(&[]), "no retry: lapsed");
}

#[test]
fn model_cancellation_is_not_undone_by_a_later_completion_of_an_earlier_charge() {
    let mappings = [sub_mapping("2002", &["201"], 3)];
    let cancel = Hotmart::cancellation()
        .product("2002")
        .subscriber("SUB1")
        .email(ANA)
        .cancelled_at(Some(T0 + 2 * DAY))
        .next_charge(Some(N1))
        .created(T0 + 2 * DAY + LAG);
    let history = facts(&[
        support::ana_sub_charge("PURCHASE_APPROVED", "S1", Some(A0), Some(N1), A0 + LAG),
        cancel,
        support::ana_sub_charge("PURCHASE_COMPLETE", "S1", Some(A0), Some(N1), T0 + 7 * DAY),
    ]);
    assert_eq!(model::access(&mappings, &history, T0 + DAY), pairs(&[(ANA, "201", Some(N1 + 3 * DAY))]));
    assert_eq!(model::access(&mappings, &history, T0 + 7 * DAY), pairs(&[(ANA, "201", Some(N1))]));
    assert_eq!(model::access(&mappings, &history, N1), pairs(&[]));
}

#[test]
fn model_refund_of_the_current_month_ends_now_and_of_an_older_month_changes_nothing() {
    let mappings = [sub_mapping("2002", &["201"], 3)];
    let a2 = N1 + 10 * MINUTE;
    let n2 = a2 + 30 * DAY;
    let base = [
        support::ana_sub_charge("PURCHASE_APPROVED", "S1", Some(A0), Some(N1), A0 + LAG),
        support::ana_sub_charge("PURCHASE_APPROVED", "S2", Some(a2), Some(n2), a2 + LAG),
    ];
    let mut older = base.to_vec();
    older.push(support::ana_sub_charge("PURCHASE_REFUNDED", "S1", Some(A0), Some(N1), N1 + 10 * DAY));
    let mut current = base.to_vec();
    current.push(support::ana_sub_charge("PURCHASE_REFUNDED", "S2", Some(a2), Some(n2), N1 + 10 * DAY));
    let at = N1 + 10 * DAY;
    assert_eq!(model::access(&mappings, &facts(&older), at), pairs(&[(ANA, "201", Some(n2 + 3 * DAY))]));
    assert_eq!(model::access(&mappings, &facts(&current), at), pairs(&[]));
    assert_eq!(model::access(&mappings, &facts(&current), at - 1), pairs(&[(ANA, "201", Some(n2 + 3 * DAY))]));
}

#[test]
fn model_dispute_suspends_until_a_later_approval_and_revoke_grant_is_for_good() {
    let lifetime = |suspend| Mapping {
        product: "1001".to_owned(),
        courses: vec!["101".to_owned()],
        policy: Policy::Lifetime,
        suspend,
        revoke_charge: false,
        plans: BTreeMap::new(),
    };
    let one_off = |event: &str, approved: i64, sent: i64| {
        Hotmart::purchase(event).product("1001").transaction("HP1").email(ANA).approved(Some(approved)).created(sent)
    };
    let approval = one_off("PURCHASE_APPROVED", A0, A0 + LAG);
    let history = facts(&[
        approval.clone(),
        one_off("PURCHASE_PROTEST", A0, T0 + 5 * DAY),
        approval.resend().created(T0 + 6 * DAY),
        one_off("PURCHASE_APPROVED", T0 + 8 * DAY, T0 + 8 * DAY + LAG),
        one_off("PURCHASE_CHARGEBACK", A0, T0 + 20 * DAY),
        one_off("PURCHASE_APPROVED", T0 + 21 * DAY, T0 + 21 * DAY + LAG),
    ]);
    let keep = [lifetime(false)];
    let suspend = [lifetime(true)];
    assert_eq!(model::access(&keep, &history, T0 + 5 * DAY), pairs(&[(ANA, "101", None)]));
    assert_eq!(model::access(&suspend, &history, T0 + 5 * DAY), pairs(&[]));
    assert_eq!(model::access(&suspend, &history, T0 + 7 * DAY), pairs(&[]), "a resend of the old approval");
    assert_eq!(model::access(&suspend, &history, T0 + 8 * DAY + LAG), pairs(&[(ANA, "101", None)]));
    assert_eq!(model::access(&keep, &history, T0 + 22 * DAY), pairs(&[]), "a chargeback is for good");
}

#[test]
fn model_plan_switch_and_earliest_approval_owner_arriving_last() {
    let mappings = [Mapping {
        product: "4774438".to_owned(),
        courses: vec!["101".to_owned()],
        policy: Policy::Subscription { grace_days: 3 },
        suspend: false,
        revoke_charge: false,
        plans: [("123", ["101", "102"]), ("124", ["102", "103"])]
            .map(|(p, c)| (p.to_owned(), c.map(str::to_owned).to_vec()))
            .into_iter()
            .collect(),
    }];
    let charge = |tx: &str, email: &str, plan: i64, approved: i64, next: i64, sent: i64| {
        Hotmart::subscription("PURCHASE_APPROVED")
            .product("4774438")
            .subscriber("SUB1")
            .transaction(tx)
            .email(email)
            .plan(plan)
            .approved(Some(approved))
            .next_charge(Some(next))
            .created(sent)
    };
    let a2 = N1 + 10 * MINUTE;
    let n2 = a2 + 30 * DAY;
    let switch = Hotmart::switch_plan()
        .product("4774438")
        .subscriber("SUB1")
        .email(ANA)
        .switch_to(124, 123)
        .switched_at(Some(T0 + 35 * DAY))
        .created(T0 + 35 * DAY + LAG);
    let history = facts(&[
        charge("S2", "ana.new@example.com", 124, a2, n2, a2 + LAG),
        charge("S1", ANA, 123, A0, N1, A0 + 40 * DAY),
        switch,
    ]);
    let end = Some(n2 + 3 * DAY);
    // Only the renewal (new email, plan 124 named) is known: its student, and its plan.
    assert_eq!(
        model::access(&mappings, &history, a2 + HOUR),
        pairs(&[("ana.new@example.com", "102", end), ("ana.new@example.com", "103", end)])
    );
    // The switch to 124 is known; the first approval (plan 123, Ana) not yet.
    assert_eq!(
        model::access(&mappings, &history, T0 + 36 * DAY),
        pairs(&[("ana.new@example.com", "102", end), ("ana.new@example.com", "103", end)])
    );
    // The first approval arrives: Ana owns it; the switch still decides the plan.
    assert_eq!(model::access(&mappings, &history, A0 + 41 * DAY), pairs(&[(ANA, "102", end), (ANA, "103", end)]));
}

#[test]
fn model_charge_date_updates_clamping_and_two_grants_on_one_course() {
    let mappings = [
        sub_mapping("2002", &["201"], 3),
        Mapping {
            product: "1003".to_owned(),
            courses: vec!["201".to_owned()],
            policy: Policy::FixedDays(20),
            suspend: false,
            revoke_charge: false,
            plans: BTreeMap::new(),
        },
    ];
    let update = |date: i64, status: &str, sent: i64| {
        Hotmart::charge_date_update()
            .product("2002")
            .subscriber("SUB1")
            .email(ANA)
            .next_charge(Some(date))
            .status(status)
            .created(sent)
    };
    let sent = T0 + 3 * DAY;
    let fixed = Hotmart::purchase("PURCHASE_APPROVED")
        .product("1003")
        .transaction("HP3")
        .email(" ANA@example.com")
        .approved(Some(sent + 2 * DAY))
        .created(sent);
    let fixed_end = sent + 5 * MINUTE + 20 * DAY;
    let base = [support::ana_sub_charge("PURCHASE_APPROVED", "S1", Some(A0), Some(N1), A0 + LAG)];
    let mut moved = base.to_vec();
    moved.push(update(T0 + 50 * DAY, "ACTIVE", T0 + 5 * DAY));
    moved.push(update(T0 + 70 * DAY, "CANCELLED_BY_CUSTOMER", T0 + 6 * DAY));
    assert_eq!(model::access(&mappings, &facts(&moved), T0 + 7 * DAY), pairs(&[(ANA, "201", Some(T0 + 53 * DAY))]));
    // A renewal approved after the update states the date again.
    let a2 = T0 + 50 * DAY + HOUR;
    moved.push(support::ana_sub_charge("PURCHASE_APPROVED", "S2", Some(a2), Some(a2 + 30 * DAY), a2 + LAG));
    assert_eq!(model::access(&mappings, &facts(&moved), a2 + LAG), pairs(&[(ANA, "201", Some(a2 + 33 * DAY))]));
    // The fixed-term purchase's approval is clamped; the course's end is the latest of both grants.
    let mut both = base.to_vec();
    both.push(fixed);
    both.push(support::ana_sub_charge("PURCHASE_REFUNDED", "S1", Some(A0), Some(N1), T0 + 10 * DAY));
    assert_eq!(model::access(&mappings, &facts(&both), sent), pairs(&[(ANA, "201", Some(N1 + 3 * DAY))]));
    assert_eq!(model::access(&mappings, &facts(&both), T0 + 10 * DAY), pairs(&[(ANA, "201", Some(fixed_end))]));
    assert_eq!(model::access(&mappings, &facts(&both), fixed_end), pairs(&[]));
}

// =============================================================================================
// The generator
// =============================================================================================

/// (plain email, the same email as some bodies spell it, a changed address).
const STUDENTS: [(&str, &str, &str); 3] = [
    ("ana@example.com", " Ana@Example.com", "ana.novo@example.com"),
    ("bruno@example.com", "BRUNO@example.com ", "bruno@example.org"),
    ("carla@example.com", "Carla@EXAMPLE.com", "carla.s@example.com"),
];
const PLAN_IDS: [i64; 3] = [123, 124, 125];

/// A mapped product slot: 0 = "1001" one-off → 101; 1 = "4774438" subscription with plans;
/// 2 = "2002": a subscription → 102 + 104, or a one-off → 104.
#[derive(Debug, Clone)]
struct ProductSpec {
    present: bool,
    kind: u8,
    param: u8,
    suspend: bool,
    revoke_charge: bool,
    explicit_defaults: bool,
}

fn mapping_of(slot: usize, spec: &ProductSpec) -> Mapping {
    let courses = |list: &[&str]| list.iter().map(|c| (*c).to_owned()).collect::<Vec<_>>();
    let (product, courses, policy, plans) = match slot {
        0 => {
            let policy = match spec.kind {
                0 => Policy::Lifetime,
                1 => Policy::FixedDays(3),
                _ => Policy::FixedDays(30),
            };
            ("1001", courses(&["101"]), policy, BTreeMap::new())
        }
        1 => {
            let plans = [("123", courses(&["101", "102"])), ("124", courses(&["102", "103"]))]
                .map(|(p, c)| (p.to_owned(), c))
                .into_iter()
                .collect();
            (
                "4774438",
                courses(&["101"]),
                Policy::Subscription { grace_days: [0, 3][usize::from(spec.param % 2)] },
                plans,
            )
        }
        _ => match spec.kind {
            0 => (
                "2002",
                courses(&["102", "104"]),
                Policy::Subscription { grace_days: [0, 2][usize::from(spec.param % 2)] },
                BTreeMap::new(),
            ),
            1 => ("2002", courses(&["104"]), Policy::Lifetime, BTreeMap::new()),
            _ => ("2002", courses(&["104"]), Policy::FixedDays(10), BTreeMap::new()),
        },
    };
    Mapping {
        product: product.to_owned(),
        courses,
        policy,
        suspend: spec.suspend,
        revoke_charge: spec.revoke_charge,
        plans,
    }
}

/// How the envelope of a fact with a stated business time is sent.
#[derive(Debug, Clone, Copy)]
enum Env {
    /// `creation_date` that many seconds after the stated time.
    Secs(i64),
    /// … minutes after.
    Mins(i64),
    /// Delivered 40 days late.
    Late,
    /// A platform clock 2 days ahead: the stated time is clamped to creation_date + 5 min.
    Future,
    /// No stated time: the business time is the creation_date.
    NoStated,
}

impl Env {
    /// (stated time, creation_date) for a business time `at`.
    fn times(self, at: i64) -> (Option<i64>, i64) {
        match self {
            Self::Secs(s) => (Some(at), at + s * SECOND),
            Self::Mins(m) => (Some(at), at + m * MINUTE),
            Self::Late => (Some(at), at + 40 * DAY + 17 * SECOND),
            Self::Future => (Some(at + 2 * DAY + 3 * HOUR), at + 17 * SECOND),
            Self::NoStated => (None, at),
        }
    }
}

/// Which address a follow-up event carries.
#[derive(Debug, Clone, Copy)]
enum EmailSel {
    Owner,
    Spelled,
    Changed,
}

#[derive(Debug, Clone)]
struct Start {
    day: i64,
    minute: i64,
    env: Env,
    /// One-off: a boleto printed then expired or cancelled, never paid.
    unpaid: bool,
    /// The first approval is also sent with the changed address, same approval time.
    tie_email: bool,
    /// Subscription: no charge states a next-charge date.
    no_dates: bool,
    plan: usize,
}

#[derive(Debug, Clone)]
enum OneOffStep {
    Complete { days: i64 },
    Refund { after: i64, email: EmailSel },
    Chargeback { after: i64, email: EmailSel },
    Protest { after: i64, settle: Option<i64>, resend_old: bool, email: EmailSel },
    Info { after: i64, kind: u8, email: EmailSel },
    Wait { days: i64 },
}

#[derive(Debug, Clone)]
enum SubStep {
    Renew { late_days: i64, minutes: i64, env: Env, stale_plan: bool, email: EmailSel },
    RefusedRetry { retry: Option<(i64, i64)>, delayed: bool, email: EmailSel },
    RefundCurrent { after: i64, email: EmailSel },
    RefundOlder { which: usize, after: i64, email: EmailSel },
    Chargeback { which: usize, after: i64, email: EmailSel },
    Protest { which: usize, after: i64, settle: Option<i64>, email: EmailSel },
    Complete { which: usize, days: i64 },
    Cancel { after: i64, with_date: bool, stated: bool, email: EmailSel },
    Switch { after: i64, plan: usize, stated: bool, email: EmailSel },
    ChargeDate { after: i64, shift_days: i64, active: bool, email: EmailSel },
    Delayed { after: i64, email: EmailSel },
    Info { after: i64, kind: u8, email: EmailSel },
    Wait { days: i64 },
}

#[derive(Debug, Clone)]
struct GrantSpec {
    slot: usize,
    student: usize,
    start: Start,
    one_off: Vec<OneOffStep>,
    sub: Vec<SubStep>,
}

#[derive(Debug, Clone)]
enum ProbePick {
    /// The creation_date of a line.
    Sent(usize),
    /// An access end the model gives somewhere, plus -1, 0 or +1 ms.
    End(usize, i64),
    /// Any minute of the first 200 days.
    Grid(i64, i64),
}

#[derive(Debug, Clone)]
struct CaseSpec {
    products: Vec<ProductSpec>,
    grants: Vec<GrantSpec>,
    duplicates: Vec<usize>,
    resends: Vec<(usize, i64)>,
    shuffle: u64,
    probes: Vec<ProbePick>,
}

fn after() -> impl Strategy<Value = i64> {
    prop_oneof![
        1 => Just(0),
        3 => (1..600i64).prop_map(|m| m * MINUTE),
        3 => (1..15i64).prop_map(|d| d * DAY),
        2 => (1..10i64, 0..1440i64).prop_map(|(d, m)| d * DAY + m * MINUTE),
    ]
}

fn settle() -> impl Strategy<Value = Option<i64>> {
    prop_oneof![
        1 => Just(None),
        1 => Just(Some(0)),
        2 => (1..600i64).prop_map(|m| Some(m * MINUTE)),
        2 => (1..10i64).prop_map(|d| Some(d * DAY)),
    ]
}

fn env() -> impl Strategy<Value = Env> {
    prop_oneof![
        6 => (0..60i64).prop_map(Env::Secs),
        2 => (1..5i64).prop_map(Env::Mins),
        1 => Just(Env::Late),
        1 => Just(Env::Future),
        1 => Just(Env::NoStated),
    ]
}

fn email() -> impl Strategy<Value = EmailSel> {
    prop_oneof![5 => Just(EmailSel::Owner), 2 => Just(EmailSel::Spelled), 2 => Just(EmailSel::Changed)]
}

fn product_spec() -> impl Strategy<Value = ProductSpec> {
    (any::<bool>(), 0..3u8, 0..2u8, any::<bool>(), any::<bool>(), any::<bool>()).prop_map(
        |(present, kind, param, suspend, revoke_charge, explicit_defaults)| ProductSpec {
            present,
            kind,
            param,
            suspend,
            revoke_charge,
            explicit_defaults,
        },
    )
}

fn start() -> impl Strategy<Value = Start> {
    (
        0..10i64,
        0..1440i64,
        env(),
        proptest::bool::weighted(0.1),
        proptest::bool::weighted(0.1),
        proptest::bool::weighted(0.12),
        0..3usize,
    )
        .prop_map(|(day, minute, env, unpaid, tie_email, no_dates, plan)| Start {
            day,
            minute,
            env,
            unpaid,
            tie_email,
            no_dates,
            plan,
        })
}

fn one_off_step() -> impl Strategy<Value = OneOffStep> {
    prop_oneof![
        2 => (7..=30i64).prop_map(|days| OneOffStep::Complete { days }),
        2 => (after(), email()).prop_map(|(after, email)| OneOffStep::Refund { after, email }),
        1 => (after(), email()).prop_map(|(after, email)| OneOffStep::Chargeback { after, email }),
        2 => (after(), settle(), any::<bool>(), email())
            .prop_map(|(after, settle, resend_old, email)| OneOffStep::Protest { after, settle, resend_old, email }),
        1 => (after(), 0..6u8, email()).prop_map(|(after, kind, email)| OneOffStep::Info { after, kind, email }),
        1 => (1..40i64).prop_map(|days| OneOffStep::Wait { days }),
    ]
}

fn sub_step() -> impl Strategy<Value = SubStep> {
    prop_oneof![
        6 => (-1..=3i64, 0..600i64, env(), proptest::bool::weighted(0.2), email()).prop_map(
            |(late_days, minutes, env, stale_plan, email)| SubStep::Renew { late_days, minutes, env, stale_plan, email }
        ),
        2 => (proptest::option::weighted(0.7, (1..=5i64, 0..600i64)), any::<bool>(), email())
            .prop_map(|(retry, delayed, email)| SubStep::RefusedRetry { retry, delayed, email }),
        1 => (after(), email()).prop_map(|(after, email)| SubStep::RefundCurrent { after, email }),
        1 => (any::<usize>(), after(), email()).prop_map(|(which, after, email)| SubStep::RefundOlder { which, after, email }),
        1 => (any::<usize>(), after(), email()).prop_map(|(which, after, email)| SubStep::Chargeback { which, after, email }),
        2 => (any::<usize>(), after(), settle(), email())
            .prop_map(|(which, after, settle, email)| SubStep::Protest { which, after, settle, email }),
        2 => (any::<usize>(), 7..=30i64).prop_map(|(which, days)| SubStep::Complete { which, days }),
        2 => (after(), any::<bool>(), proptest::bool::weighted(0.8), email())
            .prop_map(|(after, with_date, stated, email)| SubStep::Cancel { after, with_date, stated, email }),
        2 => (after(), 0..3usize, proptest::bool::weighted(0.8), email())
            .prop_map(|(after, plan, stated, email)| SubStep::Switch { after, plan, stated, email }),
        2 => (after(), -10..=20i64, proptest::bool::weighted(0.7), email())
            .prop_map(|(after, shift_days, active, email)| SubStep::ChargeDate { after, shift_days, active, email }),
        1 => (after(), email()).prop_map(|(after, email)| SubStep::Delayed { after, email }),
        1 => (after(), 0..6u8, email()).prop_map(|(after, kind, email)| SubStep::Info { after, kind, email }),
        1 => (1..45i64).prop_map(|days| SubStep::Wait { days }),
    ]
}

fn grant_spec() -> impl Strategy<Value = GrantSpec> {
    (
        0..3usize,
        0..3usize,
        start(),
        proptest::collection::vec(one_off_step(), 0..=4),
        proptest::collection::vec(sub_step(), 0..=8),
    )
        .prop_map(|(slot, student, start, one_off, sub)| GrantSpec { slot, student, start, one_off, sub })
}

fn probe_pick() -> impl Strategy<Value = ProbePick> {
    prop_oneof![
        2 => any::<usize>().prop_map(ProbePick::Sent),
        3 => (any::<usize>(), -1..=1i64).prop_map(|(i, d)| ProbePick::End(i, d)),
        2 => (0..200i64, 0..1440i64).prop_map(|(d, m)| ProbePick::Grid(d, m)),
    ]
}

fn case_spec() -> impl Strategy<Value = CaseSpec> {
    (
        proptest::collection::vec(product_spec(), 3),
        proptest::collection::vec(grant_spec(), 1..=4),
        proptest::collection::vec(any::<usize>(), 0..4),
        proptest::collection::vec(
            (
                any::<usize>(),
                prop_oneof![Just(0i64), (1..300i64).prop_map(|s| s * SECOND), (1..20i64).prop_map(|d| d * DAY)],
            ),
            0..5,
        ),
        any::<u64>(),
        proptest::collection::vec(probe_pick(), 4..=8),
    )
        .prop_map(|(products, grants, duplicates, resends, shuffle, probes)| CaseSpec {
            products,
            grants,
            duplicates,
            resends,
            shuffle,
            probes,
        })
}

// --- building bodies --------------------------------------------------------------------------

/// A body, and whether a resend of it may carry a later creation_date and still be the same fact
/// (its business time is stated, or later copies change nothing: the earliest revocation counts).
struct Sent {
    body: Hotmart,
    later_ok: bool,
}

/// A charge as the builder made it.
#[derive(Clone)]
struct Charge {
    tx: String,
    stated: Option<i64>,
    /// Its business (approval) time.
    approved: i64,
    next: Option<i64>,
    plan: i64,
    email: String,
}

/// The approval time a body states, as the rules read it.
fn business(stated: Option<i64>, sent: i64) -> i64 {
    stated.unwrap_or(sent).min(sent + 5 * MINUTE)
}

struct GrantBuilder<'a> {
    out: &'a mut Vec<Sent>,
    product: String,
    student: (&'static str, &'static str, &'static str),
    /// Subscriber code (subscriptions).
    code: String,
    tx_prefix: String,
    next_tx: u32,
    cursor: i64,
    charges: Vec<Charge>,
    next_due: Option<i64>,
    plan: i64,
    first_plan: i64,
    recurrence: u32,
    no_dates: bool,
    /// Times already taken, per kind, so that no two facts the spec orders by time tie.
    approvals: BTreeSet<i64>,
    cancellations: BTreeSet<i64>,
    switches: BTreeSet<i64>,
    updates: BTreeSet<i64>,
}

fn free(taken: &mut BTreeSet<i64>, mut at: i64) -> i64 {
    while taken.contains(&at) {
        at += MINUTE;
    }
    taken.insert(at);
    at
}

impl GrantBuilder<'_> {
    fn email(&self, sel: EmailSel) -> String {
        match sel {
            EmailSel::Owner => self.student.0.to_owned(),
            EmailSel::Spelled => self.student.1.to_owned(),
            EmailSel::Changed => self.student.2.to_owned(),
        }
    }

    fn tx(&mut self) -> String {
        self.next_tx += 1;
        format!("{}{:02}", self.tx_prefix, self.next_tx)
    }

    fn push(&mut self, body: Hotmart, later_ok: bool) {
        self.out.push(Sent { body, later_ok });
    }

    fn subscription_body(&self, event: &str, tx: &str, email: &str, plan: i64) -> Hotmart {
        Hotmart::subscription(event)
            .product(&self.product)
            .subscriber(&self.code)
            .transaction(tx)
            .email(email)
            .plan(plan)
            .status("ACTIVE")
    }

    fn one_off_body(&self, event: &str, tx: &str, email: &str) -> Hotmart {
        Hotmart::purchase(event).product(&self.product).transaction(tx).email(email)
    }

    /// A body about `charge`, repeating its approval date, next charge date and plan.
    fn about(&self, event: &str, charge: &Charge, email: &str, subscription: bool) -> Hotmart {
        let body = if subscription {
            self.subscription_body(event, &charge.tx, email, charge.plan).next_charge(charge.next)
        } else {
            self.one_off_body(event, &charge.tx, email)
        };
        body.approved(charge.stated)
    }

    /// A new approved charge at business time `at` (moved a minute at a time off any approval
    /// time already taken).
    fn approve(&mut self, mut at: i64, env: Env, email: &str, plan: i64, subscription: bool) -> Charge {
        let (stated, sent) = loop {
            let (stated, sent) = env.times(at);
            if !self.approvals.contains(&business(stated, sent)) {
                break (stated, sent);
            }
            at += MINUTE;
        };
        let approved = business(stated, sent);
        self.approvals.insert(approved);
        let tx = self.tx();
        let next = (subscription && !self.no_dates).then_some(approved + 30 * DAY);
        let charge = Charge { tx, stated, approved, next, plan, email: email.to_owned() };
        self.recurrence += 1;
        let body = if subscription {
            self.about("PURCHASE_APPROVED", &charge, email, true).recurrence(self.recurrence)
        } else {
            self.about("PURCHASE_APPROVED", &charge, email, false)
        };
        self.push(body.created(sent), stated.is_some_and(|s| s <= sent));
        if let Some(next) = next {
            self.next_due = Some(next);
        }
        self.cursor = self.cursor.max(approved);
        self.charges.push(charge.clone());
        charge
    }

    /// The same charge approved again at `at` (a dispute settled, when later than the protest).
    fn approve_again(&mut self, charge: &Charge, at: i64, subscription: bool) {
        let at = free(&mut self.approvals, at);
        let body = self.about("PURCHASE_APPROVED", charge, &charge.email, subscription).approved(Some(at));
        self.push(body.created(at + 5 * SECOND), true);
        self.cursor = self.cursor.max(at);
    }

    fn complete(&mut self, charge: &Charge, days: i64, subscription: bool) {
        let sent = charge.approved + days * DAY + 13 * SECOND;
        let body = self.about("PURCHASE_COMPLETE", charge, &charge.email, subscription).created(sent);
        self.push(body, charge.stated.is_some_and(|s| s <= sent));
    }

    fn info(&mut self, at: i64, kind: u8, email: &str) {
        let tx = format!("{}I{:02}", self.tx_prefix, self.next_tx + 1);
        self.next_tx += 1;
        let body = match kind {
            0 => self.one_off_body("PURCHASE_BILLET_PRINTED", &tx, email).approved(None),
            1 => self.one_off_body("PURCHASE_EXPIRED", &tx, email).approved(None),
            2 => Hotmart::cart_abandoned().product(&self.product).email(email),
            3 => Hotmart::club_first_access().product(&self.product).email(email),
            4 => self.one_off_body("PURCHASE_SOMETHING_NEW", &tx, email).approved(Some(at)),
            _ => Hotmart::purchase("PURCHASE_APPROVED").product("999").transaction(&tx).email(email).approved(Some(at)),
        };
        self.push(body.created(at), true);
    }

    fn one_off(&mut self, spec: &GrantSpec) {
        let start = &spec.start;
        let at = T0 + start.day * DAY + start.minute * MINUTE;
        if start.unpaid {
            let tx = self.tx();
            let owner = self.email(EmailSel::Owner);
            let printed = self.one_off_body("PURCHASE_BILLET_PRINTED", &tx, &owner).approved(None).created(at);
            self.push(printed, true);
            let end = if start.minute % 2 == 0 { "PURCHASE_EXPIRED" } else { "PURCHASE_CANCELED" };
            let ended = self.one_off_body(end, &tx, &owner).approved(None).created(at + 3 * DAY);
            self.push(ended, true);
            return;
        }
        let owner = self.email(EmailSel::Owner);
        let charge = self.approve(at, start.env, &owner, 0, false);
        if start.tie_email {
            let changed = self.email(EmailSel::Changed);
            let (stated, sent) = start.env.times(at);
            let again =
                self.about("PURCHASE_APPROVED", &charge, &changed, false).approved(stated).created(sent + MINUTE);
            self.approvals.insert(business(stated, sent + MINUTE));
            self.push(again, stated.is_some_and(|s| s <= sent));
        }
        for step in &spec.one_off {
            match *step {
                OneOffStep::Complete { days } => self.complete(&charge, days, false),
                OneOffStep::Refund { after, email } | OneOffStep::Chargeback { after, email } => {
                    let event = if matches!(step, OneOffStep::Refund { .. }) {
                        "PURCHASE_REFUNDED"
                    } else {
                        "PURCHASE_CHARGEBACK"
                    };
                    self.cursor += after;
                    let body = self.about(event, &charge, &self.email(email), false).created(self.cursor);
                    self.push(body, true);
                }
                OneOffStep::Protest { after, settle, resend_old, email } => {
                    self.cursor += after;
                    let protest = self.cursor;
                    let body = self.about("PURCHASE_PROTEST", &charge, &self.email(email), false).created(protest);
                    self.push(body, false);
                    // The old approval resent (only when its stated time is not clamped: the same fact).
                    if resend_old && charge.stated == Some(charge.approved) {
                        let old =
                            self.about("PURCHASE_APPROVED", &charge, &charge.email, false).created(protest + HOUR);
                        self.push(old, true);
                    }
                    if let Some(delay) = settle {
                        self.approve_again(&charge, protest + delay, false);
                    }
                }
                OneOffStep::Info { after, kind, email } => {
                    self.cursor += after;
                    self.info(self.cursor, kind, &self.email(email));
                }
                OneOffStep::Wait { days } => self.cursor += days * DAY,
            }
        }
    }

    fn pick(&self, which: usize) -> Option<Charge> {
        (!self.charges.is_empty()).then(|| self.charges[which % self.charges.len()].clone())
    }

    fn current(&self) -> Option<Charge> {
        self.charges.iter().max_by_key(|c| c.approved).cloned()
    }

    fn subscription(&mut self, spec: &GrantSpec) {
        let start = &spec.start;
        let at = T0 + start.day * DAY + start.minute * MINUTE;
        let owner = self.email(EmailSel::Owner);
        let first = self.approve(at, start.env, &owner, self.plan, true);
        if start.tie_email {
            let changed = self.email(EmailSel::Changed);
            let (stated, sent) = start.env.times(at);
            let again = self.about("PURCHASE_APPROVED", &first, &changed, true).approved(stated).created(sent + MINUTE);
            self.approvals.insert(business(stated, sent + MINUTE));
            self.push(again.recurrence(1), stated.is_some_and(|s| s <= sent));
        }
        for step in &spec.sub {
            match *step {
                SubStep::Renew { late_days, minutes, env, stale_plan, email } => {
                    let due = self.next_due.unwrap_or(self.cursor + 30 * DAY);
                    let at = (self.cursor + MINUTE).max(due + late_days * DAY + minutes * MINUTE);
                    let plan = if stale_plan { self.first_plan } else { self.plan };
                    self.approve(at, env, &self.email(email), plan, true);
                }
                SubStep::RefusedRetry { retry, delayed, email } => {
                    let due = self.next_due.unwrap_or(self.cursor + 30 * DAY);
                    let refused_at = (self.cursor + MINUTE).max(due + 30 * MINUTE);
                    let tx = self.tx();
                    let email = self.email(email);
                    let refused = self
                        .subscription_body("PURCHASE_CANCELED", &tx, &email, self.plan)
                        .recurrence(self.recurrence + 1)
                        .approved(None)
                        .next_charge(self.next_due)
                        .created(refused_at);
                    self.push(refused, true);
                    self.cursor = refused_at;
                    if delayed {
                        self.cursor += DAY;
                        let late = self
                            .subscription_body("PURCHASE_DELAYED", &tx, &email, self.plan)
                            .recurrence(self.recurrence + 1)
                            .approved(None)
                            .next_charge(self.next_due)
                            .created(self.cursor);
                        self.push(late, true);
                    }
                    if let Some((days, minutes)) = retry {
                        self.approve(refused_at + days * DAY + minutes * MINUTE, Env::Secs(5), &email, self.plan, true);
                    }
                }
                SubStep::RefundCurrent { after, email } => {
                    let Some(charge) = self.current() else { continue };
                    self.cursor += after;
                    let body = self.about("PURCHASE_REFUNDED", &charge, &self.email(email), true).created(self.cursor);
                    self.push(body, true);
                }
                SubStep::RefundOlder { which, after, email } => {
                    let older = self.charges.len().saturating_sub(1).max(1);
                    let Some(charge) = self.pick(which % older) else { continue };
                    self.cursor += after;
                    let body = self.about("PURCHASE_REFUNDED", &charge, &self.email(email), true).created(self.cursor);
                    self.push(body, true);
                }
                SubStep::Chargeback { which, after, email } => {
                    let Some(charge) = self.pick(which) else { continue };
                    self.cursor += after;
                    let body =
                        self.about("PURCHASE_CHARGEBACK", &charge, &self.email(email), true).created(self.cursor);
                    self.push(body, true);
                }
                SubStep::Protest { which, after, settle, email } => {
                    let Some(charge) = self.pick(which) else { continue };
                    self.cursor += after;
                    let protest = self.cursor;
                    let body = self.about("PURCHASE_PROTEST", &charge, &self.email(email), true).created(protest);
                    self.push(body, false);
                    if let Some(delay) = settle {
                        self.approve_again(&charge, protest + delay, true);
                    }
                }
                SubStep::Complete { which, days } => {
                    let Some(charge) = self.pick(which) else { continue };
                    self.complete(&charge, days, true);
                }
                SubStep::Cancel { after, with_date, stated, email } => {
                    let at = free(&mut self.cancellations, self.cursor + after);
                    self.cursor = at;
                    let body = Hotmart::cancellation()
                        .product(&self.product)
                        .subscriber(&self.code)
                        .email(&self.email(email))
                        .plan(self.plan)
                        .cancelled_at(stated.then_some(at))
                        .next_charge(if with_date { self.next_due } else { None })
                        .created(if stated { at + 9 * SECOND } else { at });
                    self.push(body, stated);
                }
                SubStep::Switch { after, plan, stated, email } => {
                    let at = free(&mut self.switches, self.cursor + after);
                    self.cursor = at;
                    let mut new = PLAN_IDS[plan % 3];
                    if new == self.plan {
                        new = PLAN_IDS[(plan + 1) % 3];
                    }
                    let body = Hotmart::switch_plan()
                        .product(&self.product)
                        .subscriber(&self.code)
                        .email(&self.email(email))
                        .switch_to(new, self.plan)
                        .switched_at(stated.then_some(at))
                        .next_charge(self.next_due)
                        .created(if stated { at + 11 * SECOND } else { at });
                    self.plan = new;
                    self.push(body, stated);
                }
                SubStep::ChargeDate { after, shift_days, active, email } => {
                    // No date stated anywhere: an ACTIVE update would be a case the page leaves open.
                    let active = active && !self.no_dates;
                    let at = if active { free(&mut self.updates, self.cursor + after) } else { self.cursor + after };
                    self.cursor = at;
                    let date = self.next_due.unwrap_or(at + 30 * DAY) + shift_days * DAY;
                    let body = Hotmart::charge_date_update()
                        .product(&self.product)
                        .subscriber(&self.code)
                        .email(&self.email(email))
                        .plan(self.plan)
                        .next_charge(Some(date))
                        .status(if active { "ACTIVE" } else { "CANCELLED_BY_CUSTOMER" })
                        .created(at);
                    if active {
                        self.next_due = Some(date);
                    }
                    self.push(body, false);
                }
                SubStep::Delayed { after, email } => {
                    self.cursor += after;
                    let tx = self.tx();
                    let body = self
                        .subscription_body("PURCHASE_DELAYED", &tx, &self.email(email), self.plan)
                        .recurrence(self.recurrence + 1)
                        .approved(None)
                        .next_charge(self.next_due)
                        .created(self.cursor);
                    self.push(body, true);
                }
                SubStep::Info { after, kind, email } => {
                    self.cursor += after;
                    self.info(self.cursor, kind, &self.email(email));
                }
                SubStep::Wait { days } => self.cursor += days * DAY,
            }
        }
    }
}

/// A small deterministic generator for the shuffle (the seed is part of the case).
fn shuffle<T>(items: &mut [T], mut seed: u64) {
    for i in (1..items.len()).rev() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let j = usize::try_from(seed % (i as u64 + 1)).unwrap();
        items.swap(i, j);
    }
}

/// A case ready to run: mappings, the input lines (file order) and their facts, the probes.
struct Case {
    mappings: Vec<Mapping>,
    toml: String,
    lines: Vec<Hotmart>,
    facts: Vec<Fact>,
    probes: Vec<i64>,
}

fn build(spec: &CaseSpec) -> Case {
    let mut present: Vec<usize> = (0..3).filter(|i| spec.products[*i].present).collect();
    if present.is_empty() {
        present.push(1);
    }
    let mappings: Vec<Mapping> = present.iter().map(|i| mapping_of(*i, &spec.products[*i])).collect();
    let toml: String =
        present.iter().zip(&mappings).map(|(i, m)| m.toml(spec.products[*i].explicit_defaults)).collect();

    let mut sent = Vec::new();
    for (gi, grant) in spec.grants.iter().enumerate() {
        let slot = present[grant.slot % present.len()];
        let mapping = &mappings[grant.slot % present.len()];
        let plan = PLAN_IDS[grant.start.plan % 3];
        let mut builder = GrantBuilder {
            out: &mut sent,
            product: mapping.product.clone(),
            student: STUDENTS[grant.student % 3],
            code: format!("SUB{slot}{gi}"),
            tx_prefix: format!("HP{slot}{gi}"),
            next_tx: 0,
            cursor: T0,
            charges: Vec::new(),
            next_due: None,
            plan,
            first_plan: plan,
            recurrence: 0,
            no_dates: grant.start.no_dates,
            approvals: BTreeSet::new(),
            cancellations: BTreeSet::new(),
            switches: BTreeSet::new(),
            updates: BTreeSet::new(),
        };
        if matches!(mapping.policy, Policy::Subscription { .. }) {
            builder.subscription(grant);
        } else {
            builder.one_off(grant);
        }
    }

    let mut lines: Vec<Hotmart> = sent.iter().map(|s| s.body.clone()).collect();
    for index in &spec.duplicates {
        lines.push(sent[index % sent.len()].body.clone());
    }
    for (index, later) in &spec.resends {
        let original = &sent[index % sent.len()];
        let again = original.body.resend();
        let later = if original.later_ok { *later } else { 0 };
        lines.push(again.created(original.body.creation() + later));
    }
    shuffle(&mut lines, spec.shuffle);
    let facts: Vec<Fact> = lines.iter().map(|b| model::read(&b.body)).collect();

    let last = facts.iter().map(|f| f.sent).max().unwrap_or(T0);
    let mut times: Vec<i64> = facts.iter().map(|f| f.sent).collect();
    times.sort_unstable();
    times.dedup();
    // The ends the model gives at a dozen of the sending times (every one would be slow).
    let step = times.len().div_ceil(12).max(1);
    let ends: Vec<i64> = times
        .iter()
        .step_by(step)
        .chain([&last])
        .flat_map(|t| model::access(&mappings, &facts, *t).into_values().flatten().collect::<Vec<_>>())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut probes: BTreeSet<i64> = [last, last + 400 * DAY].into();
    for pick in &spec.probes {
        match *pick {
            ProbePick::Sent(i) => {
                probes.insert(times[i % times.len()]);
            }
            ProbePick::End(i, delta) if !ends.is_empty() => {
                probes.insert(ends[i % ends.len()] + delta);
            }
            ProbePick::End(..) => {}
            ProbePick::Grid(d, m) => {
                probes.insert(T0 + d * DAY + m * MINUTE);
            }
        }
    }
    Case { mappings, toml, lines, facts, probes: probes.into_iter().collect() }
}

// --- running and comparing --------------------------------------------------------------------

fn show(pairs: &BTreeMap<(String, String), Access>) -> String {
    if pairs.is_empty() {
        return "    (nothing active)\n".to_owned();
    }
    pairs.iter().map(|((e, c), a)| format!("    {e} {c}: {a}\n")).collect()
}

fn history(case: &Case) -> String {
    let mut text = format!("mappings:\n{}\nlines (file order):\n", case.toml);
    for (n, (fact, body)) in case.facts.iter().zip(&case.lines).enumerate() {
        let _ = writeln!(text, "  {:>3} {} id={}", n + 1, describe(fact), body.envelope_id());
    }
    text
}

fn check(case: &Case) -> Result<(), String> {
    let lines: Vec<String> = case.lines.iter().map(Hotmart::line).collect();
    let output = simulate(&case.toml, &lines, &case.probes, false);
    if !output.status.success() {
        return Err(format!(
            "simulate failed ({}): {}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr),
            history(case)
        ));
    }
    let answer = parse_answer(&output, &case.probes).map_err(|e| format!("{e}\n{}", history(case)))?;
    for probe in &case.probes {
        let expected: BTreeMap<(String, String), Access> = model::access(&case.mappings, &case.facts, *probe)
            .into_iter()
            .map(|(key, until)| (key, Access::active(until)))
            .collect();
        let actual = &answer.probes[probe];
        let keys: BTreeSet<&(String, String)> = expected.keys().chain(actual.keys()).collect();
        let wrong: Vec<String> = keys
            .into_iter()
            .filter_map(|key| {
                let want = expected.get(key).copied().unwrap_or(Access::NONE);
                let got = actual.get(key).copied().unwrap_or(Access::NONE);
                (want != got).then(|| format!("    {} {}: model {want}, simulate {got}", key.0, key.1))
            })
            .collect();
        if !wrong.is_empty() {
            return Err(format!(
                "at probe {}:\n{}\nmodel:\n{}simulate:\n{}\n{}",
                rfc3339(*probe),
                wrong.join("\n"),
                show(&expected),
                show(actual),
                history(case)
            ));
        }
    }
    Ok(())
}

fn config() -> ProptestConfig {
    let cases = std::env::var("RULES_MODEL_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(2000);
    ProptestConfig { cases, max_shrink_iters: 1000, ..ProptestConfig::default() }
}

proptest! {
    #![proptest_config(config())]

    /// Any history, in any order, duplicated or resent: `simulate` answers what the page says.
    #[test]
    fn simulate_agrees_with_the_rules_model(spec in case_spec()) {
        check(&build(&spec)).map_err(TestCaseError::fail)?;
    }
}

/// How many of 2,000 seeded cases the program gets wrong: the measure of a deliberate mutation
/// of the rules (see the closing notes), where the property test stops at the first. Run by
/// hand: `cargo test -p lms-bridge-backend --test rules_model -- --ignored --nocapture`.
#[test]
#[ignore = "a measuring tool for mutations, run by hand; the property test above is the check"]
fn count_the_cases_the_program_gets_wrong() {
    let cases = sample_cases(2000);
    let wrong = cases.iter().filter(|case| check(case).is_err()).count();
    println!("{wrong} of {} cases disagree with the model", cases.len());
}

// --- the generator itself ----------------------------------------------------------------------

/// Cases from a fixed seed, for the generator's own checks.
fn sample_cases(n: usize) -> Vec<Case> {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]);
    let mut runner = TestRunner::new_with_rng(Config::default(), rng);
    let strategy = case_spec();
    (0..n).map(|_| build(&strategy.new_tree(&mut runner).unwrap().current())).collect()
}

#[test]
fn the_generator_covers_every_sequence_of_the_page() {
    let cases = sample_cases(400);
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    let mut note = |what: &'static str, yes: bool| *seen.entry(what).or_default() += usize::from(yes);
    for case in &cases {
        let facts = &case.facts;
        let any = |f: &dyn Fn(&Fact) -> bool| facts.iter().any(f);
        let events: BTreeSet<&str> = facts.iter().map(|f| f.event.as_str()).collect();
        for event in [
            "PURCHASE_APPROVED",
            "PURCHASE_COMPLETE",
            "PURCHASE_REFUNDED",
            "PURCHASE_CHARGEBACK",
            "PURCHASE_CANCELED",
            "PURCHASE_PROTEST",
            "PURCHASE_DELAYED",
            "PURCHASE_BILLET_PRINTED",
            "PURCHASE_EXPIRED",
            "PURCHASE_OUT_OF_SHOPPING_CART",
            "CLUB_FIRST_ACCESS",
            "PURCHASE_SOMETHING_NEW",
            "SUBSCRIPTION_CANCELLATION",
            "SWITCH_PLAN",
            "UPDATE_SUBSCRIPTION_CHARGE_DATE",
        ] {
            note(event, events.contains(event));
        }
        note(
            "clamped approval",
            any(&|f| matches!(f.kind, Kind::Approved { stated: Some(s), .. } if s > f.sent + 5 * MINUTE)),
        );
        note("approval without approved_date", any(&|f| matches!(f.kind, Kind::Approved { stated: None, .. })));
        note(
            "approval delivered 40 days late",
            any(&|f| matches!(f.kind, Kind::Approved { stated: Some(s), .. } if f.sent - s > 30 * DAY)),
        );
        note(
            "cancellation without date_next_charge",
            any(&|f| matches!(f.kind, Kind::Cancellation { next: None, .. })),
        );
        note(
            "cancellation without cancellation_date",
            any(&|f| matches!(f.kind, Kind::Cancellation { stated: None, .. })),
        );
        note("charge-date update ACTIVE", any(&|f| matches!(f.kind, Kind::ChargeDate { active: true, .. })));
        note("charge-date update not ACTIVE", any(&|f| matches!(f.kind, Kind::ChargeDate { active: false, .. })));
        note("unmapped product", any(&|f| f.product.as_deref() == Some("999")));
        note(
            "changed email",
            any(&|f| {
                f.email.as_deref().is_some_and(|e| e.contains(".novo") || e.contains(".org") || e.contains(".s@"))
            }),
        );
        note("same envelope id twice", {
            let ids: Vec<&str> = case.lines.iter().map(Hotmart::envelope_id).collect();
            ids.iter().collect::<BTreeSet<_>>().len() < ids.len()
        });
        let approvals_of = |charge: &str| {
            facts
                .iter()
                .filter(move |f| matches!(&f.kind, Kind::Approved { charge: c, .. } if c == charge))
                .collect::<Vec<_>>()
        };
        note(
            "dispute settled by a later approval",
            facts.iter().any(|p| match &p.kind {
                Kind::Protest { charge } => approvals_of(charge).iter().any(|a| a.time() > p.time()),
                _ => false,
            }),
        );
        note(
            "refused renewal then retry",
            facts.iter().any(|c| match &c.kind {
                Kind::Canceled { .. } => facts
                    .iter()
                    .any(|a| matches!(a.kind, Kind::Approved { .. }) && a.grant == c.grant && a.time() > c.time()),
                _ => false,
            }),
        );
        note(
            "reactivation after cancellation",
            facts.iter().any(|c| match &c.kind {
                Kind::Cancellation { .. } => facts
                    .iter()
                    .any(|a| matches!(a.kind, Kind::Approved { .. }) && a.grant == c.grant && a.time() > c.time()),
                _ => false,
            }),
        );
        note(
            "completion days after a cancellation",
            facts.iter().any(|c| match &c.kind {
                Kind::Cancellation { .. } => facts
                    .iter()
                    .any(|a| matches!(a.kind, Kind::Complete { .. }) && a.grant == c.grant && a.sent > c.sent),
                _ => false,
            }),
        );
        note("two grants give one student one course", {
            let mut by_pair: BTreeMap<(String, String), BTreeSet<(String, String)>> = BTreeMap::new();
            for f in facts.iter().filter(|f| matches!(f.kind, Kind::Approved { .. })) {
                let Some(m) = case.mappings.iter().find(|m| Some(&m.product) == f.product.as_ref()) else { continue };
                for course in m.courses.iter().chain(m.plans.values().flatten()) {
                    by_pair
                        .entry((f.student(), course.clone()))
                        .or_default()
                        .insert((m.product.clone(), f.grant.clone().unwrap_or_default()));
                }
            }
            by_pair.values().any(|grants| grants.len() > 1)
        });
        note("suspend policy", case.mappings.iter().any(|m| m.suspend));
        note("revoke_charge policy", case.mappings.iter().any(|m| m.revoke_charge));
        note("fixed_days policy", case.mappings.iter().any(|m| matches!(m.policy, Policy::FixedDays(_))));
        note("lifetime policy", case.mappings.iter().any(|m| m.policy == Policy::Lifetime));
        note("active at some probe", case.probes.iter().any(|p| !model::access(&case.mappings, facts, *p).is_empty()));
        note(
            "ended at some probe after being active",
            case.probes.windows(2).any(|w| {
                let before = model::access(&case.mappings, facts, w[0]);
                let after = model::access(&case.mappings, facts, w[1]);
                before.keys().any(|k| !after.contains_key(k))
            }),
        );
    }
    let report: String = seen.iter().map(|(what, n)| format!("{what}: {n}\n")).collect();
    eprintln!("cases (of 400) with:\n{report}");
    for (what, n) in &seen {
        assert!(*n >= 4, "{what} seen in only {n} of 400 cases:\n{report}");
    }
}

#[test]
fn the_generator_never_writes_what_the_page_leaves_open() {
    for case in sample_cases(400) {
        let facts = &case.facts;
        let grants: BTreeSet<(Option<String>, Option<String>)> =
            facts.iter().map(|f| (f.product.clone(), f.grant.clone())).collect();
        for (product, grant) in grants {
            let of: Vec<&Fact> = facts.iter().filter(|f| f.product == product && f.grant == grant).collect();
            // Two charges never share an approval time (which one is "the latest" would be open).
            let mut by_time: BTreeMap<i64, BTreeSet<&str>> = BTreeMap::new();
            for f in &of {
                if let Kind::Approved { charge, .. } = &f.kind {
                    by_time.entry(f.time()).or_default().insert(charge);
                }
            }
            assert!(by_time.values().all(|c| c.len() == 1), "{}", history(&case));
            // Same-time cancellations, switches, ACTIVE updates say the same thing.
            let mut said: BTreeMap<(u8, i64), BTreeSet<String>> = BTreeMap::new();
            for f in &of {
                let key = match &f.kind {
                    Kind::Cancellation { next, .. } => Some((0, format!("{next:?}"))),
                    Kind::Switch { plan, .. } => Some((1, plan.clone())),
                    Kind::ChargeDate { date, active: true } => Some((2, date.to_string())),
                    _ => None,
                };
                if let Some((kind, what)) = key {
                    said.entry((kind, f.time())).or_default().insert(what);
                }
            }
            assert!(said.values().all(|w| w.len() == 1), "{}", history(&case));
            // Every fact of one charge names one plan; a subscription's APPROVED all state a date or none does.
            let mut plans: BTreeMap<&str, BTreeSet<Option<&str>>> = BTreeMap::new();
            for f in &of {
                if let Kind::Approved { charge, plan, .. } | Kind::Complete { charge, plan, .. } = &f.kind {
                    plans.entry(charge).or_default().insert(plan.as_deref());
                }
            }
            assert!(plans.values().all(|p| p.len() == 1), "{}", history(&case));
        }
    }
}
