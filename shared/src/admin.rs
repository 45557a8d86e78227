//! Admin events: what an operator does by hand in the console, stated as events with source
//! `admin`, published to the events topic and applied by the backend with the same rules as
//! any webhook, so a later webhook composes with them (docs/access-rules.md#by-hand).
//!
//! - A grant by hand is a grant of its own (`admin__hand-…`) with one charge approved when the
//!   operator asked, read with [`mapping`]: access to the course until the date chosen, or with
//!   no end.
//! - A block by hand ([`Change::Block`]) ends the student's access to the course: the grants
//!   approved before it no longer give it; a later approval (a new purchase, a renewal paid, a
//!   grant by hand) does again.
//! - A retry ([`Change::Retry`]) runs the course's failed LMS actions again.

use crate::event::{AdminNote, Change, Charge, Event, Product, Student, SCHEMA};
use crate::ids::{ChargeId, CourseId, EventId, GrantId, IdError, Pepper, ProductId, SourceName};
use crate::policy::{AccessPolicy, ChargebackPolicy, DisputePolicy, ProductMapping};
use crate::timestamp::Timestamp;
use std::borrow::Cow;
use std::collections::BTreeMap;

/// The source of every admin event.
pub const SOURCE: &str = "admin";

/// Whether events of this source are admin events.
pub fn is_admin(source: &SourceName) -> bool {
    source.as_str() == SOURCE
}

/// The mapping a grant by hand is read with: its product id is the course id; a subscription
/// with no grace, so access runs to its charge's coverage (the end the operator chose), or has
/// no end when none was chosen.
pub fn mapping(product: &ProductId) -> Result<ProductMapping, IdError> {
    Ok(ProductMapping {
        source: SourceName::parse(SOURCE)?,
        product_id: product.clone(),
        courses: vec![CourseId::parse(product.as_str())?],
        policy: AccessPolicy::Subscription { grace_days: 0 },
        dispute: DisputePolicy::Keep,
        chargeback: ChargebackPolicy::RevokeGrant,
        plans: BTreeMap::new(),
    })
}

/// What an operator asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandChange {
    /// Give the course until `until` (no end when `None`).
    Grant {
        /// When the access ends.
        until: Option<Timestamp>,
    },
    /// End the student's access to the course.
    Block,
    /// Run the course's failed LMS actions again.
    Retry,
}

/// One request by hand: who, which course, by whom and why, when.
#[derive(Debug, Clone)]
pub struct HandAction {
    /// Unique per request (the console draws it at random): the event and grant ids are made
    /// from it, so a form posted twice is one request only if it carries the same id.
    pub id: String,
    /// The student.
    pub student: Student,
    /// The LMS course.
    pub course: CourseId,
    /// The operator and the reason.
    pub note: AdminNote,
    /// When it was asked.
    pub at: Timestamp,
    /// What.
    pub change: HandChange,
}

impl HandAction {
    /// The admin event, its student keyed under `pepper` as the edge would.
    pub fn event(&self, pepper: Option<&Pepper>) -> Result<Event, IdError> {
        let hand = format!("hand-{}", self.id);
        let (change, source_event, charge) = match &self.change {
            HandChange::Grant { until } => (
                Change::Approve,
                "ADMIN_GRANT",
                Some(Charge { id: ChargeId::parse(&hand)?, approved_at: Some(self.at), next_charge_at: *until }),
            ),
            HandChange::Block => (Change::Block, "ADMIN_BLOCK", None),
            HandChange::Retry => (Change::Retry, "ADMIN_RETRY", None),
        };
        let mut event = Event {
            schema: Cow::Borrowed(SCHEMA),
            id: EventId::parse(format!("{SOURCE}:{}", self.id))?,
            source: SourceName::parse(SOURCE)?,
            source_event: source_event.to_owned(),
            change,
            occurred_at: self.at,
            received_at: self.at,
            effective_at: self.at,
            clamped: false,
            student: Some(self.student.clone()),
            product: Some(Product { id: ProductId::parse(self.course.as_str())?, name: None, offer: None, plan: None }),
            grant_id: Some(GrantId::parse(&hand)?),
            charge,
            subscription: None,
            amount: None,
            raw: None,
            raw_truncated: false,
            raw_sha256: None,
            admin: Some(self.note.clone()),
        };
        event.key_student(pepper);
        Ok(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::Email;
    use crate::rules::{Access, Enrollment, Grant};

    fn at(text: &str) -> Timestamp {
        Timestamp::parse_rfc3339(text).unwrap()
    }

    fn action(change: HandChange, when: &str) -> HandAction {
        HandAction {
            id: format!("{when}-x"),
            student: Student::new(Email::parse("ana@example.com").unwrap()),
            course: CourseId::parse("201").unwrap(),
            note: AdminNote { by: "ops@example.com".into(), reason: "support ticket 12".into() },
            at: at(when),
            change,
        }
    }

    #[test]
    fn a_grant_by_hand_gives_the_course_until_the_chosen_end_or_for_good() {
        let course = CourseId::parse("201").unwrap();
        for (until, expected) in [(Some(at("2026-12-03T00:00:00Z")), Some(at("2026-12-03T00:00:00Z"))), (None, None)] {
            let event = action(HandChange::Grant { until }, "2026-11-25T10:00:00Z").event(None).unwrap();
            event.check_complete().unwrap();
            let product = &event.product.as_ref().unwrap().id;
            let mapping = mapping(product).unwrap();
            let mut grant = Grant::new(&mapping);
            assert!(grant.record(&event, &mapping).unwrap());
            let decision = Enrollment::default().place(&course, "admin__x", Some(&grant), at("2026-11-25T10:00:00Z"));
            assert_eq!(decision.enrollment.access, Access::Active);
            assert_eq!(decision.enrollment.access_until, expected);
        }
    }

    #[test]
    fn events_read_back_as_they_were_written() {
        for change in [HandChange::Block, HandChange::Retry, HandChange::Grant { until: None }] {
            let event = action(change, "2026-11-25T10:00:00Z").event(None).unwrap();
            assert_eq!(Event::from_json(&event.to_json()).unwrap(), event);
            assert!(is_admin(&event.source));
        }
    }
}
