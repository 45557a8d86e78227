//! Blocks and retries by hand (admin events, `lms_bridge_shared::admin`): each is one
//! transaction on the course's enrollment, recorded as an event like any other, then the
//! enrollment's LMS actions are run.

use super::intake::{describe, record, Committed};
use super::{ApplyError, Engine, Outcome};
use crate::store::docs::{EnrollmentDoc, EventStatus};
use crate::store::{enrollment_doc_id, StateStore, StoreError, Tx};
use futures::FutureExt;
use lms_bridge_shared::{admin, Change, CourseId, Event, Timestamp};
use std::sync::Arc;

async fn by_hand_in(
    tx: &mut dyn Tx,
    event: &Event,
    course: &CourseId,
    now: Timestamp,
) -> Result<Committed, StoreError> {
    if let Some(seen) = tx.event(event.id.as_str()).await? {
        return Ok(Committed::Seen { enrollments: seen.enrollments });
    }
    // Checked before the transaction (`check_complete`).
    let Some(student) = &event.student else { return Ok(Committed::New { touched: Vec::new(), changed: false }) };
    let doc_id = enrollment_doc_id(&student.key, course);
    let current = tx.enrollment(&doc_id).await?;
    let mut decisions = Vec::new();
    let (status, reason, doc) = match (&event.change, current) {
        (Change::Block, current) => {
            // Kept even where there is no enrollment yet: a purchase approved before the block
            // that arrives later must not give the course either.
            let mut doc = current.unwrap_or_else(|| EnrollmentDoc::new(&student.key, course, now));
            let decision = doc.state.block(course, event.effective_at, now);
            decisions.push(describe(course, &doc.state, &decision));
            doc.apply(decision, event.id.as_str(), now);
            (EventStatus::Applied, None, Some(doc))
        }
        (_, Some(mut doc)) if !doc.failed.is_empty() => {
            for mut action in std::mem::take(&mut doc.failed) {
                action.attempts = 0;
                action.leased_until = None;
                action.lease = None;
                action.created_at = now;
                doc.pending.push(action);
            }
            doc.touch(now);
            decisions.push(format!("course {course}: failed LMS actions queued again"));
            (EventStatus::Applied, None, Some(doc))
        }
        _ => (EventStatus::Ignored, Some("no failed LMS action to retry on this course".to_owned()), None),
    };
    let mut touched = Vec::new();
    if let Some(doc) = &doc {
        tx.put_enrollment(&doc_id, doc)?;
        touched.push(doc_id);
    }
    let mut record = record(event, status, reason, now);
    record.enrollments = touched.clone();
    record.decisions = decisions;
    tx.put_event(&record)?;
    Ok(Committed::New { changed: !touched.is_empty(), touched })
}

impl<S: StateStore> Engine<S> {
    /// Applies a block or a retry: only admin events may ask for either.
    pub(super) async fn apply_by_hand(&self, event: &Event, now: Timestamp) -> Result<Outcome, ApplyError> {
        if !admin::is_admin(&event.source) {
            return self.fail(event, &format!("only admin events may {}", event.change.kind())).await;
        }
        if let Err(e) = event.check_complete() {
            return self.fail(event, &e.to_string()).await;
        }
        let course = event.product.as_ref().map(|p| CourseId::parse(p.id.as_str()));
        let Some(Ok(course)) = course else {
            return self.fail(event, "an admin event names no course").await;
        };
        let (event, course) = (Arc::new(event.clone()), Arc::new(course));
        let committed = self
            .store
            .transaction(move |tx| {
                let (event, course) = (Arc::clone(&event), Arc::clone(&course));
                async move { by_hand_in(tx, &event, &course, now).await }.boxed()
            })
            .await?;
        self.finish_committed(committed).await
    }
}
