//! The access rules of docs/access-rules.md: what a grant's facts mean for access, and the
//! LMS actions a change of access needs. Pure and deterministic.
//!
//! A [`Grant`] keeps the *facts* its events stated, each reduced to an order-free summary (the
//! earliest approval, the latest dispute, …), so applying the same facts in any order, any
//! number of times, under any envelope ids, gives the same grant. Access is computed from the
//! facts when asked, never accumulated.
//!
//! A student's access to a course is the union of the grants *placed* on it: a grant is placed
//! on each course of its current plan, for its owner ([`Grant::placements`]). The backend keeps
//! a grant's facts in one record and a copy in each enrollment it is placed on; when a fact
//! moves the grant (a plan switch, an earlier approval under another email), the enrollments
//! it leaves lose their copy ([`Enrollment::place`]).

use crate::event::{Change, Event, RevokeReason};
use crate::ids::{ChargeId, CourseId, Email, ProductId, SourceName, StudentKey};
use crate::policy::{AccessPolicy, ChargebackPolicy, DisputePolicy, ProductMapping};
use crate::timestamp::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// A value stated at a business time.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Dated<T> {
    /// The business time of the statement.
    pub at: Timestamp,
    /// What it stated.
    pub value: T,
}

fn earliest(slot: &mut Option<Timestamp>, t: Timestamp) {
    *slot = Some(slot.map_or(t, |s| s.min(t)));
}

fn latest(slot: &mut Option<Timestamp>, t: Timestamp) {
    *slot = Some(slot.map_or(t, |s| s.max(t)));
}

/// Keeps the greater of two statements: ties on time are broken by value, so the result does
/// not depend on arrival order.
fn newest<T: Ord>(slot: &mut Option<T>, candidate: T) {
    if slot.as_ref().is_none_or(|s| candidate > *s) {
        *slot = Some(candidate);
    }
}

/// What the events said about one charge.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ChargeFacts {
    /// Earliest approval time stated by an approval.
    pub approved: Option<Timestamp>,
    /// Latest approval time stated by an approval: a later one settles a dispute.
    pub reapproved: Option<Timestamp>,
    /// Earliest approval time stated by a completion (used only without an approval).
    pub completed: Option<Timestamp>,
    /// Latest next-charge date stated by an approval.
    pub covers_approved: Option<Timestamp>,
    /// Earliest next-charge date stated by a completion (used only without an approval's).
    pub covers_completed: Option<Timestamp>,
    /// Earliest refund.
    pub refunded: Option<Timestamp>,
    /// Earliest chargeback.
    pub charged_back: Option<Timestamp>,
    /// Earliest failure (the payment did not go through).
    pub failed: Option<Timestamp>,
    /// Latest dispute.
    pub disputed: Option<Timestamp>,
}

impl ChargeFacts {
    /// When the charge was approved; a completion counts only when no approval is known.
    pub fn approval_time(&self) -> Option<Timestamp> {
        self.approved.or(self.completed)
    }

    /// The end of the period the charge pays for.
    pub fn coverage(&self) -> Option<Timestamp> {
        self.covers_approved.or(self.covers_completed)
    }

    /// When the charge was revoked (refund or chargeback), the earliest revocation counting.
    pub fn revoked_at(&self) -> Option<Timestamp> {
        match (self.refunded, self.charged_back) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Approved, and neither revoked nor failed.
    pub fn is_valid(&self) -> bool {
        self.approval_time().is_some() && self.revoked_at().is_none() && self.failed.is_none()
    }

    /// A dispute no later approval settled, on a charge not revoked.
    pub fn is_disputed(&self) -> bool {
        self.revoked_at().is_none() && self.disputed.is_some_and(|d| self.reapproved.is_none_or(|a| a <= d))
    }
}

/// The student a grant belongs to. Ordered so that the least candidate is the owner: an
/// approval before any other fact, then the earliest time, then the smallest email.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Owner {
    /// False for an approval: approvals come first.
    pub unapproved: bool,
    /// The business time of the fact that names the student.
    pub at: Timestamp,
    /// The student's email.
    pub email: Email,
    /// The student's key.
    pub key: StudentKey,
}

/// A subscription cancellation; the latest by time counts.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Cancellation {
    /// When it was cancelled.
    pub at: Timestamp,
    /// The end of the paid period it states.
    pub period_end: Option<Timestamp>,
}

/// A grant (a one-off purchase, or a subscription) and everything its events said.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// The product it was bought as.
    pub product_id: ProductId,
    /// The product's access policy, from the mapping at the latest event.
    pub policy: AccessPolicy,
    /// The product's dispute policy.
    pub dispute: DisputePolicy,
    /// The product's chargeback policy.
    pub chargeback: ChargebackPolicy,
    /// Its charges, by transaction id.
    pub charges: BTreeMap<ChargeId, ChargeFacts>,
    /// The latest cancellation.
    pub cancellation: Option<Cancellation>,
    /// The newest next-charge date stated by a charge-date update of the active subscription.
    pub charge_date: Option<Dated<Timestamp>>,
    /// The plan its earliest approval names.
    pub first_plan: Option<Dated<String>>,
    /// The latest plan switch.
    pub plan_switch: Option<Dated<String>>,
    /// Who it belongs to.
    pub owner: Option<Owner>,
    /// A revocation of the whole grant that names no charge (only from v1 events).
    pub revoked: Option<Timestamp>,
}

/// Why an event cannot be applied to a grant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecideError {
    /// The event lacks what its change needs.
    #[error("a {change} event needs {field}")]
    Incomplete {
        /// The change type.
        change: &'static str,
        /// The missing part.
        field: &'static str,
    },
    /// The mapping passed in is for another product.
    #[error("event is for product {event}, mapping is for {mapping}")]
    WrongProduct {
        /// The event's product.
        event: ProductId,
        /// The mapping's product.
        mapping: ProductId,
    },
}

/// The key of a grant among a course's grants, and of its record: `{source}__{grant id}`.
pub fn grant_key(source: &SourceName, grant: &crate::ids::GrantId) -> String {
    format!("{source}__{grant}")
}

impl Grant {
    /// A grant nothing is known about yet.
    pub fn new(mapping: &ProductMapping) -> Self {
        Self {
            product_id: mapping.product_id.clone(),
            policy: mapping.policy,
            dispute: mapping.dispute,
            chargeback: mapping.chargeback,
            charges: BTreeMap::new(),
            cancellation: None,
            charge_date: None,
            first_plan: None,
            plan_switch: None,
            owner: None,
            revoked: None,
        }
    }

    /// Adds the fact an event states. Returns whether the grant changed: `false` for a fact
    /// already known (a duplicate, a resend, a stale restatement).
    pub fn record(&mut self, event: &Event, mapping: &ProductMapping) -> Result<bool, DecideError> {
        let change = event.change.kind();
        let incomplete = |field| DecideError::Incomplete { change, field };
        let product = event.product.as_ref().ok_or(incomplete("product"))?;
        if product.id != mapping.product_id {
            return Err(DecideError::WrongProduct { event: product.id.clone(), mapping: mapping.product_id.clone() });
        }
        let before = self.clone();
        self.policy = mapping.policy;
        self.dispute = mapping.dispute;
        self.chargeback = mapping.chargeback;
        let at = event.effective_at;
        let approval = matches!(event.change, Change::Approve | Change::Complete);
        if let Some(student) = &event.student {
            let candidate = Owner { unapproved: !approval, at, email: student.email.clone(), key: student.key.clone() };
            if self.owner.as_ref().is_none_or(|o| candidate < *o) {
                self.owner = Some(candidate);
            }
        }
        if approval {
            if let Some(plan) = &product.plan {
                let candidate = Dated { at, value: plan.clone() };
                if self.first_plan.as_ref().is_none_or(|p| candidate < *p) {
                    self.first_plan = Some(candidate);
                }
            }
        }
        let charge = event.charge.as_ref();
        match &event.change {
            Change::Approve => {
                let charge = charge.ok_or(incomplete("charge"))?;
                let facts = self.charges.entry(charge.id.clone()).or_default();
                earliest(&mut facts.approved, at);
                latest(&mut facts.reapproved, at);
                if let Some(next) = charge.next_charge_at {
                    latest(&mut facts.covers_approved, next);
                }
            }
            Change::Complete => {
                let charge = charge.ok_or(incomplete("charge"))?;
                let facts = self.charges.entry(charge.id.clone()).or_default();
                earliest(&mut facts.completed, at);
                if let Some(next) = charge.next_charge_at {
                    earliest(&mut facts.covers_completed, next);
                }
            }
            Change::Revoke { reason } => match charge {
                Some(charge) => {
                    let facts = self.charges.entry(charge.id.clone()).or_default();
                    match reason {
                        RevokeReason::Refunded => earliest(&mut facts.refunded, at),
                        RevokeReason::Chargeback => earliest(&mut facts.charged_back, at),
                    }
                }
                None => earliest(&mut self.revoked, at),
            },
            Change::Fail => {
                let charge = charge.ok_or(incomplete("charge"))?;
                earliest(&mut self.charges.entry(charge.id.clone()).or_default().failed, at);
            }
            Change::Dispute => {
                let charge = charge.ok_or(incomplete("charge"))?;
                latest(&mut self.charges.entry(charge.id.clone()).or_default().disputed, at);
            }
            Change::Cancel { period_end } => {
                newest(&mut self.cancellation, Cancellation { at, period_end: *period_end })
            }
            Change::ChargeDate { next_charge_at } => {
                newest(&mut self.charge_date, Dated { at, value: *next_charge_at })
            }
            Change::PlanChange { plan } => newest(&mut self.plan_switch, Dated { at, value: plan.clone() }),
            Change::PaymentLate | Change::Block | Change::Retry | Change::Info | Change::Unparsed { .. } => {}
        }
        Ok(*self != before)
    }

    /// The plan whose courses the grant gives: the latest switch's, else its first approval's.
    pub fn plan(&self) -> Option<&str> {
        self.plan_switch.as_ref().or(self.first_plan.as_ref()).map(|p| p.value.as_str())
    }

    /// Where the grant gives access: its owner, on each course of its current plan.
    pub fn placements(&self, mapping: &ProductMapping) -> BTreeSet<(StudentKey, CourseId)> {
        let Some(owner) = &self.owner else { return BTreeSet::new() };
        mapping.courses_for(self.plan()).iter().map(|course| (owner.key.clone(), course.clone())).collect()
    }

    /// The grant's access: `None` if inactive whatever the time, `Some(end)` if active until
    /// `end` (`None`: no end).
    pub fn end(&self) -> Option<Option<Timestamp>> {
        if self.revoked.is_some() {
            return None;
        }
        let charges = || self.charges.values();
        if self.chargeback == ChargebackPolicy::RevokeGrant && charges().any(|c| c.charged_back.is_some()) {
            return None;
        }
        if self.dispute == DisputePolicy::Suspend && charges().any(ChargeFacts::is_disputed) {
            return None;
        }
        let valid: Vec<&ChargeFacts> = charges().filter(|c| c.is_valid()).collect();
        if valid.is_empty() {
            return None;
        }
        let approved = |c: &&ChargeFacts| c.approval_time();
        match self.policy {
            AccessPolicy::Lifetime => Some(None),
            AccessPolicy::FixedDays { days } => {
                Some(valid.iter().filter_map(approved).max().map(|t| t.plus_days(days)))
            }
            AccessPolicy::Subscription { grace_days } => Some(self.subscription_end(&valid, grace_days)),
        }
    }

    /// The end of the period paid for (subscriptions): the newest statement of the next charge
    /// date, a valid charge's coverage stamped with its approval time, unless a charge-date
    /// update is strictly newer.
    pub fn paid_through(&self) -> Option<Timestamp> {
        let valid = self.charges.values().filter(|c| c.is_valid());
        let from_charges = valid.filter_map(|c| Some((c.approval_time()?, c.coverage()?))).max();
        match (from_charges, &self.charge_date) {
            (Some((approved, _)), Some(update)) if update.at > approved => Some(update.value),
            (None, Some(update)) => Some(update.value),
            (Some((_, date)), _) => Some(date),
            (None, None) => None,
        }
    }

    fn subscription_end(&self, valid: &[&ChargeFacts], grace_days: u32) -> Option<Timestamp> {
        let period_end = self.paid_through();
        let mut end = period_end.map(|d| d.plus_days(grace_days));
        let mut cut = |t: Timestamp| end = Some(end.map_or(t, |e| e.min(t)));
        // The charge with the latest approval time (ties: the greatest id), valid or not.
        let latest =
            self.charges.iter().filter_map(|(id, c)| Some(((c.approval_time()?, id), c))).max_by(|a, b| a.0.cmp(&b.0));
        if let Some(revoked) = latest.and_then(|(_, c)| c.revoked_at()) {
            cut(revoked);
        }
        if let Some(cancel) = &self.cancellation {
            let reactivated = valid.iter().any(|c| c.approval_time().is_some_and(|t| t > cancel.at));
            if !reactivated {
                cut(cancel.period_end.or(period_end).unwrap_or(cancel.at));
            }
        }
        end
    }

    /// The latest approval time among its valid charges: what a block by hand is compared with.
    pub fn latest_approval(&self) -> Option<Timestamp> {
        self.charges.values().filter(|c| c.is_valid()).filter_map(ChargeFacts::approval_time).max()
    }

    /// The grant's access at `now`, as [`Grant::end`], with ends at or before `now` inactive.
    pub fn access_at(&self, now: Timestamp) -> Option<Option<Timestamp>> {
        match self.end()? {
            Some(end) if now >= end => None,
            end => Some(end),
        }
    }
}

/// Whether the LMS should give the student the course.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    /// Enrolled.
    Active,
    /// Not enrolled.
    #[default]
    Inactive,
}

/// One student's access to one course: the union of the grants placed on it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Enrollment {
    /// Copies of the grants placed on this course, by [`grant_key`].
    pub grants: BTreeMap<String, Grant>,
    /// The access last decided (and so last asked of the LMS).
    pub access: Access,
    /// When the current access ends, if it does.
    pub access_until: Option<Timestamp>,
    /// The latest block by hand: grants with no valid charge approved after it give nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocked: Option<Timestamp>,
}

/// A side effect on the LMS, produced only by an access transition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LmsAction {
    /// Create the user if missing (by email), activate it.
    EnsureUser,
    /// Enroll the user in the course.
    Enroll {
        /// The LMS course.
        course: CourseId,
    },
    /// Remove the user from the course.
    Unenroll {
        /// The LMS course.
        course: CourseId,
    },
}

/// The outcome of one decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The enrollment after the change.
    pub enrollment: Enrollment,
    /// What the LMS must do; empty unless access changed.
    pub actions: Vec<LmsAction>,
    /// Whether the stored state changed.
    pub changed: bool,
}

impl Enrollment {
    /// Access at `now` from the grants, and when it ends (`None`: no end). The end is the
    /// latest among the active grants, "no end" winning.
    pub fn compute(&self, now: Timestamp) -> (Access, Option<Timestamp>) {
        let mut until: Option<Option<Timestamp>> = None;
        for end in self.grants.values().filter(|g| self.unblocked(g)).filter_map(|g| g.access_at(now)) {
            until = Some(match (until, end) {
                (None, end) => end,
                (Some(None), _) | (_, None) => None,
                (Some(Some(a)), Some(b)) => Some(a.max(b)),
            });
        }
        match until {
            Some(end) => (Access::Active, end),
            None => (Access::Inactive, None),
        }
    }

    /// Whether a block by hand leaves this grant out: only an approval after the block counts.
    pub fn unblocked(&self, grant: &Grant) -> bool {
        self.blocked.is_none_or(|blocked| grant.latest_approval().is_some_and(|a| a > blocked))
    }

    /// Ends access by hand at `at` (the latest block counts), and decides access at `now`.
    pub fn block(&self, course: &CourseId, at: Timestamp, now: Timestamp) -> Decision {
        let mut after = self.clone();
        after.blocked = Some(after.blocked.map_or(at, |b| b.max(at)));
        transition(self, after, course, now)
    }

    /// Puts a grant's current facts on this course (`Some`), or takes the grant off it
    /// (`None`: the grant moved to another plan or owner), and decides access at `now`.
    pub fn place(&self, course: &CourseId, key: &str, grant: Option<&Grant>, now: Timestamp) -> Decision {
        let mut after = self.clone();
        match grant {
            Some(grant) => after.grants.insert(key.to_owned(), grant.clone()),
            None => after.grants.remove(key),
        };
        transition(self, after, course, now)
    }

    /// Re-evaluates access at `now` (the sweep): ends access whose time is up.
    pub fn refresh(&self, course: &CourseId, now: Timestamp) -> Decision {
        transition(self, self.clone(), course, now)
    }

    /// Whether the sweep must look at this enrollment: active, with an end that has passed.
    pub fn is_due(&self, now: Timestamp) -> bool {
        self.access == Access::Active && self.access_until.is_some_and(|until| now >= until)
    }
}

fn transition(before: &Enrollment, mut after: Enrollment, course: &CourseId, now: Timestamp) -> Decision {
    let (access, until) = after.compute(now);
    after.access = access;
    after.access_until = until;
    let actions = match (before.access, access) {
        (Access::Inactive, Access::Active) => {
            vec![LmsAction::EnsureUser, LmsAction::Enroll { course: course.clone() }]
        }
        (Access::Active, Access::Inactive) => vec![LmsAction::Unenroll { course: course.clone() }],
        _ => Vec::new(),
    };
    let changed = after != *before;
    Decision { enrollment: after, actions, changed }
}
