//! Applying events: one store transaction per event (dedupe, decide, state + outbox), then
//! the LMS actions, each marked done when it succeeded (docs/architecture.md). The rules it
//! applies are in `shared` (docs/access-rules.md).
//!
//! `intake` commits an event, `outbox` runs the LMS actions it queued, `sweep` ends access
//! whose time is up and retries what was left pending, `drift` compares the LMS with the state.

mod by_hand;
pub mod drift;
mod intake;
mod outbox;
mod resolve;
mod sweep;

pub use resolve::{LookupError, MissingLookup, SourceLookup, RESOLVE_PATIENCE};
pub use sweep::SWEEP_JOB_ID;

use crate::clock::Clock;
use crate::lms::{Lms, LmsError};
use crate::store::docs::EnrollmentDoc;
use crate::store::{FirestoreStore, StateStore, StoreError};
use futures::FutureExt;
use lms_bridge_shared::rules::Decision;
use lms_bridge_shared::{Access, CourseId, Enrollment, Event, LmsAction, Pepper};
use std::sync::Arc;
use std::time::Duration;

/// How long a runner holds pending actions before another may take them over: the push
/// handler's own budget, so a crashed runner's work is taken over soon after.
const LEASE: Duration = Duration::from_secs(45);
/// A run stops calling the LMS this long before its lease ends.
const LEASE_MARGIN: Duration = Duration::from_secs(5);
/// Attempts after which a pending action is given up (moved to `failed`, logged at ERROR).
pub const MAX_ATTEMPTS: u32 = 12;
/// One sweep's time budget; Cloud Scheduler's HTTP target times out after 180 s by default.
pub const SWEEP_BUDGET: Duration = Duration::from_secs(120);
/// Enrollments read per page by the sweep.
const SWEEP_PAGE: u32 = 100;
/// Event records are deleted by the TTL policy after this.
const EVENT_TTL_DAYS: u32 = 90;
/// Pending actions older than this are retried by the sweep.
pub const STALE_PENDING: Duration = Duration::from_secs(180);

/// What became of one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// New state written and every LMS action done.
    Applied,
    /// Already seen (same id): only pending actions were re-run.
    Duplicate,
    /// Recorded, no effect (info, no access change).
    Ignored(String),
    /// Kept whole until its product has a mapping.
    Unmapped(String),
    /// Kept for replay.
    Quarantined,
    /// Permanently invalid; recorded so it does not loop.
    Failed(String),
}

/// Why a delivery must be retried.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The state store failed, while committing the event or while running its actions.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The LMS failed transiently; the state is saved and the actions stay pending.
    #[error(transparent)]
    Lms(LmsError),
    /// Another runner holds this enrollment's pending actions (a concurrent or crashed
    /// delivery); acking now could lose them if that runner dies, so ask for a redelivery.
    #[error("LMS actions for {0} are being run by another delivery")]
    Busy(String),
    /// The event names a charge or grant the state does not know yet (a refund that overtook
    /// its purchase): retried while the event is young, then recorded as failed.
    #[error("the event cannot be resolved yet: {0}")]
    Unresolved(String),
    /// The source's API failed transiently while resolving the event.
    #[error("source lookup: {0}")]
    Lookup(LookupError),
}

/// The engine: the store, the LMS, and the clock. Generic over the store so the same code
/// runs over Firestore in production and in memory offline.
pub struct Engine<S: StateStore = FirestoreStore> {
    /// State.
    pub store: S,
    /// The LMS adapter.
    pub lms: Arc<dyn Lms>,
    /// Every time the engine records or compares comes from here.
    pub clock: Arc<dyn Clock>,
    /// Deactivate LMS users left without any active course.
    pub deactivate_idle_users: bool,
    /// `STUDENT_KEY_PEPPER`: every event's student key is derived again under it, so the
    /// store's ids never depend on what an edge (or an old event) computed.
    pub pepper: Option<Pepper>,
    /// How long a runner holds pending actions; every LMS call of the run ends before.
    pub lease: Duration,
    /// Attempts after which a pending action is moved to `failed`.
    pub max_attempts: u32,
    /// How long one sweep may run: under the scheduler's request timeout.
    pub sweep_budget: Duration,
    /// What a source's API says that its events do not (the grant behind a charge, the
    /// product of a purchase), for the source it serves; none: events are resolved from the
    /// state alone.
    pub lookup: Option<Arc<dyn SourceLookup>>,
    /// Unenrol when access ends by time even though the LMS ends it by itself, to be sure
    /// (`MOODLE_UNENROL_AT_END`).
    pub unenrol_at_end: bool,
}

impl<S: StateStore> Engine<S> {
    /// An engine with the production lease, attempts cap and sweep budget.
    pub fn new(store: S, lms: Arc<dyn Lms>, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            lms,
            clock,
            deactivate_idle_users: false,
            pepper: None,
            lease: LEASE,
            max_attempts: MAX_ATTEMPTS,
            sweep_budget: SWEEP_BUDGET,
            lookup: None,
            unenrol_at_end: false,
        }
    }

    /// The event with its student key derived under this deployment's pepper.
    pub fn keyed(&self, mut event: Event) -> Event {
        event.key_student(self.pepper.as_ref());
        event
    }

    /// Reads an enrollment in a transaction and lets `edit` change it; the document is written
    /// back when `edit` says so. `None` when there is no such enrollment. `edit` may run more
    /// than once (the store retries contended transactions), so it must only touch `doc`.
    async fn modify_enrollment<T, F>(&self, doc_id: &str, edit: F) -> Result<Option<T>, StoreError>
    where
        T: Send + 'static,
        F: Fn(&mut EnrollmentDoc) -> (bool, T) + Send + Sync + 'static,
    {
        let edit = Arc::new(edit);
        let doc_id = Arc::new(doc_id.to_owned());
        self.store
            .transaction(move |tx| {
                let (edit, doc_id) = (Arc::clone(&edit), Arc::clone(&doc_id));
                async move {
                    let Some(mut doc) = tx.enrollment(&doc_id).await? else { return Ok(None) };
                    let (write, result) = edit(&mut doc);
                    if write {
                        tx.put_enrollment(&doc_id, &doc)?;
                    }
                    Ok(Some(result))
                }
                .boxed()
            })
            .await
    }
}

/// What one sweep did.
#[derive(Debug, Default, serde::Serialize)]
pub struct SweepReport {
    /// Enrollments whose access it ended.
    pub ended: usize,
    /// Enrollments whose pending actions it retried.
    pub retried: usize,
    /// Enrollments it could not finish (logged; the next sweep tries again).
    pub errors: usize,
    /// False when the time budget ran out first, or a page could not be got past: the next
    /// sweep goes on.
    pub complete: bool,
}

/// For an LMS that ends access at the end date it was given (`Lms::enforces_end_dates`): an
/// end that moves while access stays on (a renewal, a cancellation, a second grant) is pushed
/// with another enrol, which such an LMS takes as an update of the date.
pub(crate) fn push_moved_end(mut decision: Decision, before: &Enrollment, course: &CourseId) -> Decision {
    let after = &decision.enrollment;
    let moved =
        before.access == Access::Active && after.access == Access::Active && before.access_until != after.access_until;
    if moved && !decision.actions.iter().any(|a| matches!(a, LmsAction::Enroll { .. })) {
        decision.actions.push(LmsAction::Enroll { course: course.clone() });
    }
    decision
}
