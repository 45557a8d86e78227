//! Taking in one event: everything it changes is committed in one transaction (the outbox
//! included) before any LMS call, so a crash after the commit loses nothing.

use super::outbox::UserCache;
use super::resolve::{is_young, needs_resolving, Resolved};
use super::{push_moved_end, ApplyError, Engine, Outcome, EVENT_TTL_DAYS};
use crate::store::docs::{ChargeDoc, EnrollmentDoc, EventDoc, EventStatus, GrantDoc, Placement, StudentDoc};
use crate::store::{enrollment_doc_id, StateStore, StoreError, Tx};
use futures::FutureExt;
use lms_bridge_shared::event::Student;
use lms_bridge_shared::rules::Decision;
use lms_bridge_shared::{
    admin, grant_key, Access, Change, ChargeId, CourseId, Enrollment, Event, Grant, LmsAction, ProductMapping,
    Timestamp,
};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

/// How often and how long a delivery waits for another one that holds the same actions.
const BUSY_RETRIES: u32 = 20;
const BUSY_PAUSE: Duration = Duration::from_millis(100);

pub(super) fn record(event: &Event, status: EventStatus, reason: Option<String>, now: Timestamp) -> EventDoc {
    // What an operator must still look at is kept whole and never expires.
    let keep = matches!(status, EventStatus::Failed | EventStatus::Quarantined | EventStatus::Unmapped);
    EventDoc {
        id: event.id.clone(),
        status,
        reason,
        source_event: event.source_event.clone(),
        change: event.change.kind().to_owned(),
        student_key: event.student_key().cloned(),
        enrollments: Vec::new(),
        occurred_at: event.occurred_at,
        received_at: event.received_at,
        processed_at: now,
        expire_at: (!keep).then(|| now.plus_days(EVENT_TTL_DAYS)),
        event_json: keep.then(|| String::from_utf8_lossy(&event.to_json()).into_owned()),
        admin: event.admin.clone(),
        decisions: Vec::new(),
    }
}

/// A decision in words, for the event's record: `course 201: inactive → active until …`.
pub(super) fn describe(course: &CourseId, before: &Enrollment, decision: &Decision) -> String {
    fn access(e: &Enrollment) -> String {
        match (e.access, e.access_until) {
            (Access::Inactive, _) => "inactive".to_owned(),
            (Access::Active, Some(until)) => format!("active until {until}"),
            (Access::Active, None) => "active with no end".to_owned(),
        }
    }
    let actions: Vec<&str> = decision
        .actions
        .iter()
        .map(|a| match a {
            LmsAction::EnsureUser => "ensure user",
            LmsAction::Enroll { .. } => "enroll",
            LmsAction::Unenroll { .. } => "unenroll",
        })
        .collect();
    let mut text = format!("course {course}: {} → {}", access(before), access(&decision.enrollment));
    if !actions.is_empty() {
        text.push_str(&format!(" ({})", actions.join(", ")));
    }
    text
}

/// The result of the event transaction.
pub(super) enum Committed {
    New {
        touched: Vec<String>,
        changed: bool,
    },
    /// Only the enrollments it touched matter on a redelivery.
    Seen {
        enrollments: Vec<String>,
    },
}

/// The event transaction: dedupe; record the fact on the grant's record; put the grant's
/// current facts on every enrollment it is placed on now, and take it off those it left (a
/// plan switch, an earlier approval under another email); queue each enrollment's LMS actions;
/// index its charge (and the `aliases` it was resolved from) under its grant.
async fn apply_in(
    tx: &mut dyn Tx,
    event: &Event,
    aliases: &[ChargeId],
    mapping: &ProductMapping,
    lms_ends_access: bool,
    now: Timestamp,
) -> Result<Committed, StoreError> {
    // An event kept while its product had no mapping is applied now, like a new one; so is
    // one recorded as failed that now passes every check (a replay of an event whose
    // purchase was not known yet).
    let pending = |s: &EventDoc| matches!(s.status, EventStatus::Unmapped | EventStatus::Failed);
    if let Some(seen) = tx.event(event.id.as_str()).await?.filter(|s| !pending(s)) {
        return Ok(Committed::Seen { enrollments: seen.enrollments });
    }
    // Both checked before the transaction (`check_complete`).
    let (Some(student), Some(grant_id)) = (&event.student, &event.grant_id) else {
        return Ok(Committed::New { touched: Vec::new(), changed: false });
    };
    let key = grant_key(&event.source, grant_id);
    let record_before = tx.grant(&key).await?;
    let placed_before: BTreeSet<Placement> =
        record_before.as_ref().map(|r| r.placed.iter().cloned().collect()).unwrap_or_default();
    let mut grant = record_before.map_or_else(|| Grant::new(mapping), |r| r.state);
    // Recorded on a fresh grant before the transaction: it cannot fail here.
    let facts_changed = grant.record(event, mapping).unwrap_or(false);
    let placed_after: BTreeSet<Placement> = grant
        .placements(mapping)
        .into_iter()
        .map(|(student, course)| Placement { student_key: student, course_id: course })
        .collect();

    let mut touched = Vec::new();
    let mut decisions = Vec::new();
    let mut docs = Vec::new();
    for placement in placed_before.union(&placed_after) {
        let doc_id = enrollment_doc_id(&placement.student_key, &placement.course_id);
        docs.push((doc_id.clone(), placement, tx.enrollment(&doc_id).await?));
    }
    let student_doc = tx.student(&student.key).await?;
    for (doc_id, placement, current) in docs {
        let course = &placement.course_id;
        let mut doc = current.unwrap_or_else(|| EnrollmentDoc::new(&placement.student_key, course, now));
        let placed = placed_after.contains(placement).then_some(&grant);
        let decision = doc.state.place(course, &key, placed, now);
        if !decision.changed {
            continue;
        }
        let decision = if lms_ends_access { push_moved_end(decision, &doc.state, course) } else { decision };
        decisions.push(describe(course, &doc.state, &decision));
        doc.apply(decision, event.id.as_str(), now);
        tx.put_enrollment(&doc_id, &doc)?;
        touched.push(doc_id);
    }
    let changed = facts_changed || !touched.is_empty();
    if changed {
        tx.put_grant(
            &key,
            &GrantDoc {
                source: event.source.clone(),
                grant_id: grant_id.clone(),
                owner_key: grant.owner.as_ref().map(|o| o.key.clone()),
                state: grant,
                placed: placed_after.into_iter().collect(),
                updated_at: now,
            },
        )?;
    }
    // Blind writes: the index only ever learns which grant a charge belongs to, so whatever
    // it held is replaced by the same answer.
    if let Some(charge) = &event.charge {
        let doc = ChargeDoc {
            source: event.source.clone(),
            charge_id: charge.id.clone(),
            grant_id: grant_id.clone(),
            updated_at: now,
        };
        for charge_id in std::iter::once(&charge.id).chain(aliases) {
            tx.put_charge(charge_id.as_str(), &doc)?;
        }
    }
    tx.put_student(&updated_student(student_doc, student))?;
    let (status, reason) = if changed {
        (EventStatus::Applied, None)
    } else {
        (EventStatus::Ignored, Some("no change: a fact already known for its grant".to_owned()))
    };
    let mut doc = record(event, status, reason, now);
    doc.enrollments = touched.clone();
    doc.decisions = decisions;
    tx.put_event(&doc)?;
    Ok(Committed::New { touched, changed })
}

/// The event's own student is kept up to date even when the grant belongs to another: it is
/// who the platform says sent it. A name the event lacks keeps the one already known.
fn updated_student(current: Option<StudentDoc>, student: &Student) -> StudentDoc {
    let mut doc = current.unwrap_or_else(|| StudentDoc::empty(&student.key));
    doc.email = Some(student.email.as_str().to_owned());
    doc.name = student.name.clone().or(doc.name);
    doc.first_name = student.first_name.clone().or(doc.first_name);
    doc.last_name = student.last_name.clone().or(doc.last_name);
    doc
}

impl<S: StateStore> Engine<S> {
    /// Records an event that can never be applied, so its redelivery stops.
    pub async fn fail(&self, event: &Event, reason: &str) -> Result<Outcome, ApplyError> {
        self.store.put_event(&record(event, EventStatus::Failed, Some(reason.to_owned()), self.clock.now())).await?;
        Ok(Outcome::Failed(reason.to_owned()))
    }

    /// Applies one event: dedupe, decide, commit, then run the LMS actions.
    pub async fn apply(&self, event: &Event) -> Result<Outcome, ApplyError> {
        // The push handler has keyed it already; only other callers (replay) pay for a copy.
        let rekeyed;
        let event = match event.student.as_ref() {
            Some(s) if s.key != s.email.student_key_with(self.pepper.as_ref()) => {
                rekeyed = self.keyed(event.clone());
                &rekeyed
            }
            _ => event,
        };
        let now = self.clock.now();
        if let Change::Unparsed { reason } = &event.change {
            tracing::warn!(event_id = %event.id, reason = %reason, "quarantined: the edge could not normalize this webhook; kept for replay");
            if self.store.event(event.id.as_str()).await?.is_none() {
                self.store.put_event(&record(event, EventStatus::Quarantined, Some(reason.clone()), now)).await?;
            }
            return Ok(Outcome::Quarantined);
        }
        if matches!(event.change, Change::Block | Change::Retry) {
            return self.apply_by_hand(event, now).await;
        }
        // A refund naming only its charge, a subscription update naming no student: completed
        // from the state (and the source's API) before anything else.
        let resolved;
        let mut aliases = Vec::new();
        let event = if needs_resolving(event) {
            match self.resolve(event).await? {
                Resolved::Ready { event: complete, aliases: found } => {
                    resolved = *complete;
                    aliases = found;
                    &resolved
                }
                Resolved::Unresolved(reason) if is_young(event, now) => {
                    tracing::warn!(event_id = %event.id, reason = %reason, "event not resolved yet; asking for a redelivery");
                    return Err(ApplyError::Unresolved(reason));
                }
                Resolved::Unresolved(reason) => {
                    tracing::warn!(event_id = %event.id, reason = %reason, "event still not resolved; recorded as failed, kept for replay");
                    return self.fail(event, &reason).await;
                }
            }
        } else {
            event
        };
        let mapping = match (&event.change, &event.product) {
            // A grant by hand names its course as its product.
            (change, Some(product)) if change.affects_access() && admin::is_admin(&event.source) => {
                match admin::mapping(&product.id) {
                    Ok(mapping) => Some(mapping),
                    Err(e) => return self.fail(event, &format!("a grant by hand names no course: {e}")).await,
                }
            }
            (change, Some(product)) if change.affects_access() => {
                self.store.mapping(event.source.as_str(), product.id.as_str()).await?
            }
            _ => None,
        };
        let Some(mapping) = mapping else {
            if self.store.event(event.id.as_str()).await?.is_some() {
                return Ok(Outcome::Duplicate);
            }
            if !event.change.affects_access() {
                let reason = format!("{} event: recorded, no access effect", event.change.kind());
                self.store.put_event(&record(event, EventStatus::Ignored, Some(reason.clone()), now)).await?;
                return Ok(Outcome::Ignored(reason));
            }
            // Kept whole: a purchase made before its product was mapped must not be lost.
            let product = event.product.as_ref().map(|p| p.id.to_string()).unwrap_or_default();
            tracing::warn!(event_id = %event.id, product = %product, "no mapping for product; event kept as unmapped until one is imported");
            let reason = format!("no mapping for product {product}");
            self.store.put_event(&record(event, EventStatus::Unmapped, Some(reason.clone()), now)).await?;
            return Ok(Outcome::Unmapped(reason));
        };
        if let Err(e) = event.check_complete() {
            return self.fail(event, &e.to_string()).await;
        }
        // A fact the rules cannot record (a purchase fact without its charge) never will be.
        if let Err(e) = Grant::new(&mapping).record(event, &mapping) {
            return self.fail(event, &e.to_string()).await;
        }

        let event = Arc::new(event.clone());
        let mapping = Arc::new(mapping);
        let aliases = Arc::new(aliases);
        let lms_ends_access = self.lms.enforces_end_dates();
        let committed = self
            .store
            .transaction(move |tx| {
                let (event, mapping, aliases) = (Arc::clone(&event), Arc::clone(&mapping), Arc::clone(&aliases));
                async move { apply_in(tx, &event, &aliases, &mapping, lms_ends_access, now).await }.boxed()
            })
            .await?;

        self.finish_committed(committed).await
    }

    /// Runs the LMS actions a committed event queued (or, for one seen before, those its first
    /// delivery left pending).
    pub(super) async fn finish_committed(&self, committed: Committed) -> Result<Outcome, ApplyError> {
        match committed {
            Committed::New { touched, changed } => {
                self.run_pending_all(&touched).await?;
                Ok(if changed { Outcome::Applied } else { Outcome::Ignored("no change".into()) })
            }
            Committed::Seen { enrollments } => {
                // A redelivery: finish whatever the first delivery left pending.
                self.run_pending_all(&enrollments).await?;
                Ok(Outcome::Duplicate)
            }
        }
    }

    /// Runs each enrollment's pending actions; one failing does not stop the others, and the
    /// first error is what the delivery reports.
    pub(super) async fn run_pending_all(&self, enrollments: &[String]) -> Result<(), ApplyError> {
        let mut first_error = None;
        let mut users = UserCache::new();
        for doc_id in enrollments {
            // Another delivery of the same event (Pub/Sub delivers at least once, sometimes
            // twice at the same moment) may hold these actions: wait for it a little before
            // answering 503, so the usual race ends with the work done and acked.
            let mut result = self.run_pending_with(doc_id, &mut users).await;
            for _ in 0..BUSY_RETRIES {
                if !matches!(result, Err(ApplyError::Busy(_))) {
                    break;
                }
                tokio::time::sleep(BUSY_PAUSE).await;
                result = self.run_pending_with(doc_id, &mut users).await;
            }
            if let Err(e) = result {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}
