//! The decision engine (DESIGN §5): `decide(enrollment, event, mapping, now)` → new state and
//! LMS actions. Pure and deterministic.
//!
//! Every fact about a grant is kept as a last-writer-wins register stamped with the platform's
//! own time (ties broken by event id), or as a min/max. Applying events is therefore
//! commutative and idempotent: duplicates, resends under new ids and any arrival order end in
//! the same state, and revocation is final because it never goes back to `None`.

use crate::event::{Change, Event, RevokeReason};
use crate::ids::{CourseId, EventId, GrantId, ProductId};
use crate::policy::{AccessPolicy, DisputePolicy, ProductMapping};
use crate::timestamp::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// When a fact was established: the platform's time, then the event id as a tie-breaker.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Stamp {
    /// The platform's timestamp of the event.
    pub at: Timestamp,
    /// The event that established it.
    pub event: EventId,
}

/// A value with the stamp of the event that set it; newer stamps win.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Register<T> {
    /// The current value.
    pub value: T,
    /// Who set it.
    pub stamp: Stamp,
}

fn write<T>(register: &mut Option<Register<T>>, value: T, stamp: &Stamp) {
    if register.as_ref().is_none_or(|r| *stamp > r.stamp) {
        *register = Some(Register { value, stamp: stamp.clone() });
    }
}

/// A revocation: final for its grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    /// Why.
    pub reason: RevokeReason,
    /// The earliest revoking event.
    pub stamp: Stamp,
}

/// One grant (a transaction, or a subscription) as it bears on one course.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// The product it was bought as.
    pub product_id: ProductId,
    /// The product's access policy.
    pub policy: AccessPolicy,
    /// The product's dispute policy.
    pub dispute_policy: DisputePolicy,
    /// Earliest approval: where a fixed term starts.
    pub first_granted: Option<Timestamp>,
    /// Latest approval (or renewal, or plan change into this course).
    pub last_granted: Option<Stamp>,
    /// End of the paid period, from the newest event that stated one.
    pub paid_through: Option<Register<Timestamp>>,
    /// A scheduled end (cancellation at the end of the paid period).
    pub ends: Option<Register<Timestamp>>,
    /// Latest dispute; settled by a later approval.
    pub disputed: Option<Stamp>,
    /// Set once, never cleared.
    pub revoked: Option<Revocation>,
    /// Whether the grant's current plan includes this course.
    pub in_plan: Option<Register<bool>>,
    /// Platform time of the newest event seen for this grant.
    pub last_event_at: Timestamp,
}

impl Grant {
    fn new(mapping: &ProductMapping, at: Timestamp) -> Self {
        Self {
            product_id: mapping.product_id.clone(),
            policy: mapping.policy,
            dispute_policy: mapping.dispute,
            first_granted: None,
            last_granted: None,
            paid_through: None,
            ends: None,
            disputed: None,
            revoked: None,
            in_plan: None,
            last_event_at: at,
        }
    }

    fn granted(&mut self, stamp: &Stamp, paid_through: Option<Timestamp>) {
        self.first_granted = Some(self.first_granted.map_or(stamp.at, |t| t.min(stamp.at)));
        if self.last_granted.as_ref().is_none_or(|s| stamp > s) {
            self.last_granted = Some(stamp.clone());
        }
        if let Some(until) = paid_through {
            write(&mut self.paid_through, until, stamp);
        }
    }

    /// The grant's access at `now`: `None` if inactive, `Some(end)` if active (`end` `None`
    /// meaning no end).
    pub fn access_at(&self, now: Timestamp) -> Option<Option<Timestamp>> {
        if self.revoked.is_some() || self.in_plan.as_ref().is_some_and(|r| !r.value) {
            return None;
        }
        let last_granted = self.last_granted.as_ref()?;
        let suspended =
            self.dispute_policy == DisputePolicy::Suspend && self.disputed.as_ref().is_some_and(|d| d > last_granted);
        if suspended {
            return None;
        }
        let mut end = match self.policy {
            AccessPolicy::Lifetime => None,
            AccessPolicy::FixedDays { days } => self.first_granted.map(|t| t.plus_days(days)),
            AccessPolicy::Subscription { grace_days } => {
                self.paid_through.as_ref().map(|r| r.value.plus_days(grace_days))
            }
        };
        // A cancellation newer than the last renewal ends access at its date, without grace.
        if let Some(ends) = self.ends.as_ref().filter(|e| e.stamp > *last_granted) {
            end = Some(end.map_or(ends.value, |e| e.min(ends.value)));
        }
        match end {
            Some(end) if now >= end => None,
            _ => Some(end),
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

/// One student's access to one course: the union of its grants.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Enrollment {
    /// The grants that bear on this course, by grant id.
    pub grants: BTreeMap<GrantId, Grant>,
    /// The access last decided (and so last asked of the LMS).
    pub access: Access,
    /// When the current access ends, if it does.
    pub access_until: Option<Timestamp>,
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
    /// The enrollment after the event.
    pub enrollment: Enrollment,
    /// What the LMS must do; empty unless access changed.
    pub actions: Vec<LmsAction>,
    /// Whether the stored state changed (false for duplicates and stale events).
    pub changed: bool,
}

/// Why an event cannot be decided for this enrollment.
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

impl Enrollment {
    /// Access at `now` from the grants, and when it ends (`None`: no end).
    pub fn compute(&self, now: Timestamp) -> (Access, Option<Timestamp>) {
        let mut access = Access::Inactive;
        let mut until: Option<Option<Timestamp>> = None;
        for grant in self.grants.values() {
            if let Some(end) = grant.access_at(now) {
                access = Access::Active;
                until = Some(match (until, end) {
                    (None, end) => end,
                    (Some(None), _) | (_, None) => None,
                    (Some(Some(a)), Some(b)) => Some(a.max(b)),
                });
            }
        }
        (access, until.flatten())
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

/// Applies one event to one student's enrollment in `course`, a course that `mapping` gives.
pub fn decide(
    enrollment: &Enrollment,
    course: &CourseId,
    event: &Event,
    mapping: &ProductMapping,
    now: Timestamp,
) -> Result<Decision, DecideError> {
    if !event.change.affects_access() {
        return Ok(enrollment.refresh(course, now));
    }
    let change = event.change.kind();
    let grant_id = event.grant_id.as_ref().ok_or(DecideError::Incomplete { change, field: "grant_id" })?;
    let product = event.product.as_ref().ok_or(DecideError::Incomplete { change, field: "product" })?;
    if product.id != mapping.product_id {
        return Err(DecideError::WrongProduct { event: product.id.clone(), mapping: mapping.product_id.clone() });
    }
    let stamp = Stamp { at: event.occurred_at, event: event.id.clone() };
    let mut after = enrollment.clone();
    let grant = after.grants.entry(grant_id.clone()).or_insert_with(|| Grant::new(mapping, event.occurred_at));
    grant.policy = mapping.policy;
    grant.dispute_policy = mapping.dispute;
    grant.last_event_at = grant.last_event_at.max(event.occurred_at);
    let next_charge = event.subscription.as_ref().and_then(|s| s.next_charge_at);

    match &event.change {
        Change::Grant { paid_through } => {
            if let Some(plan) = product.plan.as_deref() {
                write(&mut grant.in_plan, mapping.courses_for(Some(plan)).contains(course), &stamp);
            }
            grant.granted(&stamp, *paid_through);
        }
        Change::Revoke { reason } => {
            if grant.revoked.as_ref().is_none_or(|r| stamp < r.stamp) {
                grant.revoked = Some(Revocation { reason: *reason, stamp });
            }
        }
        Change::Dispute => {
            if grant.disputed.as_ref().is_none_or(|d| stamp > *d) {
                grant.disputed = Some(stamp);
            }
        }
        Change::EndsAt { at } => write(&mut grant.ends, *at, &stamp),
        Change::PlanChange { plan } => {
            let included = mapping.courses_for(Some(plan)).contains(course);
            write(&mut grant.in_plan, included, &stamp);
            // Moving to a plan is proof the subscription is running.
            if included {
                grant.granted(&stamp, next_charge);
            }
        }
        // A late charge changes nothing now: access lasts to paid-through plus grace.
        Change::PaymentLate | Change::Info | Change::Unparsed { .. } => {}
    }
    Ok(transition(enrollment, after, course, now))
}
