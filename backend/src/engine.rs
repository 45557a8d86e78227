//! Applying events: one store transaction per event (dedupe, decide, state + outbox), then
//! the LMS actions, each marked done when it succeeded (DESIGN §5).

use crate::clock::Clock;
use crate::lms::{Lms, LmsError, LmsStudent, LmsUserId};
use crate::store::docs::{EnrollmentDoc, EventDoc, EventStatus, GrantDoc, PendingAction, Placement, StudentDoc};
use crate::store::{enrollment_doc_id, FirestoreStore, StateStore, StoreError, Tx};
use futures::FutureExt;
use lms_bridge_shared::{grant_key, Access, Change, CourseId, Event, Grant, LmsAction, ProductMapping, Timestamp};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

/// How long a runner holds pending actions before another may take them over: the push
/// handler's own budget, so a crashed runner's work is taken over soon after.
const LEASE: Duration = Duration::from_secs(45);
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
    /// Recorded, no effect (unmapped product, info, no access change).
    Ignored(String),
    /// Kept for replay.
    Quarantined,
    /// Permanently invalid; recorded so it does not loop.
    Failed(String),
}

/// Why a delivery must be retried.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The state store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The LMS failed transiently; the state is saved and the actions stay pending.
    #[error(transparent)]
    Lms(LmsError),
    /// Another runner holds this enrollment's pending actions (a concurrent or crashed
    /// delivery); acking now could lose them if that runner dies, so ask for a redelivery.
    #[error("LMS actions for {0} are being run by another delivery")]
    Busy(String),
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
}

fn after(t: Timestamp, d: Duration) -> Timestamp {
    Timestamp::from_unix_millis(t.unix_millis() + d.as_millis() as i64).unwrap_or(t)
}

fn record(event: &Event, status: EventStatus, reason: Option<String>, now: Timestamp) -> EventDoc {
    let keep_json = matches!(status, EventStatus::Failed | EventStatus::Quarantined);
    EventDoc {
        id: event.id.to_string(),
        status,
        reason,
        source_event: event.source_event.clone(),
        change: event.change.kind().to_owned(),
        student_key: event.student_key().map(ToString::to_string),
        enrollments: Vec::new(),
        occurred_at: event.occurred_at,
        received_at: event.received_at,
        processed_at: now,
        expire_at: now.plus_days(EVENT_TTL_DAYS),
        event_json: keep_json.then(|| String::from_utf8_lossy(&event.to_json()).into_owned()),
    }
}

/// What a runner got when it asked for an enrollment's pending actions.
enum Claim {
    Nothing,
    Busy,
    Got(Box<EnrollmentDoc>, Vec<PendingAction>),
}

/// The result of the event transaction.
enum Committed {
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
/// plan switch, an earlier approval under another email); queue each enrollment's LMS actions.
async fn apply_in(
    tx: &mut dyn Tx,
    event: &Event,
    mapping: &ProductMapping,
    now: Timestamp,
) -> Result<Committed, StoreError> {
    if let Some(seen) = tx.event(event.id.as_str()).await? {
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
        .map(|(student, course)| Placement { student_key: student.to_string(), course_id: course.to_string() })
        .collect();

    let mut touched = Vec::new();
    let mut docs = Vec::new();
    for placement in placed_before.union(&placed_after) {
        let doc_id = enrollment_doc_id(&placement.student_key, &placement.course_id);
        docs.push((doc_id.clone(), placement, tx.enrollment(&doc_id).await?));
    }
    let student_key = student.key.to_string();
    let student_doc = tx.student(&student_key).await?;
    for (doc_id, placement, current) in docs {
        let Ok(course) = CourseId::parse(&placement.course_id) else { continue };
        let mut doc = current.unwrap_or_else(|| EnrollmentDoc::new(&placement.student_key, course.as_str(), now));
        let placed = placed_after.contains(placement).then_some(&grant);
        let decision = doc.state.place(&course, &key, placed, now);
        if !decision.changed {
            continue;
        }
        doc.apply(decision, event.id.as_str(), now);
        tx.put_enrollment(&doc_id, &doc)?;
        touched.push(doc_id);
    }
    let changed = facts_changed || !touched.is_empty();
    if changed {
        tx.put_grant(
            &key,
            &GrantDoc {
                source: event.source.to_string(),
                grant_id: grant_id.to_string(),
                owner_key: grant.owner.as_ref().map(|o| o.key.to_string()),
                state: grant,
                placed: placed_after.into_iter().collect(),
                updated_at: now,
            },
        )?;
    }
    // The event's own student is kept up to date even when the grant belongs to another: it
    // is who the platform says sent it.
    let mut student_doc = student_doc.unwrap_or_else(|| StudentDoc::empty(&student_key));
    student_doc.email = Some(student.email.as_str().to_owned());
    student_doc.name = student.name.clone().or(student_doc.name);
    student_doc.first_name = student.first_name.clone().or(student_doc.first_name);
    student_doc.last_name = student.last_name.clone().or(student_doc.last_name);
    tx.put_student(&student_doc)?;
    let (status, reason) = if changed {
        (EventStatus::Applied, None)
    } else {
        (EventStatus::Ignored, Some("no change: a fact already known for its grant".to_owned()))
    };
    let mut doc = record(event, status, reason, now);
    doc.enrollments = touched.clone();
    tx.put_event(&doc)?;
    Ok(Committed::New { touched, changed })
}

impl<S: StateStore> Engine<S> {
    /// Records an event that can never be applied, so its redelivery stops.
    pub async fn fail(&self, event: &Event, reason: &str) -> Result<Outcome, ApplyError> {
        self.store.put_event(&record(event, EventStatus::Failed, Some(reason.to_owned()), self.clock.now())).await?;
        Ok(Outcome::Failed(reason.to_owned()))
    }

    /// Applies one event: dedupe, decide, commit, then run the LMS actions.
    pub async fn apply(&self, event: &Event) -> Result<Outcome, ApplyError> {
        let now = self.clock.now();
        if let Change::Unparsed { reason } = &event.change {
            if self.store.event(event.id.as_str()).await?.is_none() {
                self.store.put_event(&record(event, EventStatus::Quarantined, Some(reason.clone()), now)).await?;
            }
            return Ok(Outcome::Quarantined);
        }
        let mapping = match (&event.change, &event.product) {
            (change, Some(product)) if change.affects_access() => {
                self.store.mapping(event.source.as_str(), product.id.as_str()).await?
            }
            _ => None,
        };
        let Some(mapping) = mapping else {
            let reason = if event.change.affects_access() {
                let product = event.product.as_ref().map(|p| p.id.to_string()).unwrap_or_default();
                tracing::warn!(event_id = %event.id, product = %product, "no mapping for product; event ignored");
                format!("no mapping for product {product}")
            } else {
                format!("{} event: recorded, no access effect", event.change.kind())
            };
            if self.store.event(event.id.as_str()).await?.is_some() {
                return Ok(Outcome::Duplicate);
            }
            self.store.put_event(&record(event, EventStatus::Ignored, Some(reason.clone()), now)).await?;
            return Ok(Outcome::Ignored(reason));
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
        let committed = self
            .store
            .transaction(move |tx| {
                let (event, mapping) = (Arc::clone(&event), Arc::clone(&mapping));
                async move { apply_in(tx, &event, &mapping, now).await }.boxed()
            })
            .await?;

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

    async fn run_pending_all(&self, enrollments: &[String]) -> Result<(), ApplyError> {
        let mut first_error = None;
        for doc_id in enrollments {
            if let Err(e) = self.run_pending(doc_id).await {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
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

    /// Takes a lease on an enrollment's pending actions (so concurrent deliveries do not run
    /// them twice), runs them in order, and removes each one that succeeded.
    pub async fn run_pending(&self, doc_id: &str) -> Result<(), ApplyError> {
        let now = self.clock.now();
        let claimed = self
            .modify_enrollment(doc_id, move |doc| {
                let free = |p: &PendingAction| p.leased_until.is_none_or(|until| until <= now);
                // Actions run in order: stop at the first one someone else holds.
                let take = doc.pending.iter().take_while(|p| free(p)).count();
                if take == 0 {
                    return (false, if doc.pending.is_empty() { Claim::Nothing } else { Claim::Busy });
                }
                for p in doc.pending.iter_mut().take(take) {
                    p.leased_until = Some(after(now, LEASE));
                    p.attempts += 1;
                }
                let claimed = doc.pending[..take].to_vec();
                doc.touch(now);
                (true, Claim::Got(Box::new(doc.clone()), claimed))
            })
            .await?
            .unwrap_or(Claim::Nothing);
        let (doc, claimed) = match claimed {
            Claim::Nothing => return Ok(()),
            Claim::Busy => return Err(ApplyError::Busy(doc_id.to_owned())),
            Claim::Got(doc, claimed) => (doc, claimed),
        };

        let mut done = Vec::new();
        let mut failed_for_good = Vec::new();
        let mut outcome = Ok(());
        let mut user: Option<LmsUserId> = None;
        for pending in &claimed {
            match self.run_action(&doc, &pending.action, &mut user).await {
                Ok(()) => done.push(pending.id.clone()),
                Err(LmsError::Permanent(reason)) => {
                    tracing::error!(student = %doc.student_key, course = %doc.course_id, error = %reason, "LMS action failed for good");
                    failed_for_good.push((pending.id.clone(), reason));
                }
                Err(e) => {
                    tracing::warn!(student = %doc.student_key, course = %doc.course_id, error = %e, "LMS action failed; will retry");
                    outcome = Err(ApplyError::Lms(e));
                    break;
                }
            }
        }
        self.finish(doc_id, &done, &failed_for_good, outcome.as_ref().err().map(ToString::to_string)).await?;
        if outcome.is_ok() && self.deactivate_idle_users {
            self.deactivate_if_idle(&doc).await?;
        }
        outcome
    }

    /// Removes finished actions and releases the lease on the rest.
    async fn finish(
        &self,
        doc_id: &str,
        done: &[String],
        failed: &[(String, String)],
        error: Option<String>,
    ) -> Result<(), ApplyError> {
        let now = self.clock.now();
        let (done, failed) = (done.to_vec(), failed.to_vec());
        self.modify_enrollment(doc_id, move |doc| {
            let mut kept = Vec::new();
            for mut p in std::mem::take(&mut doc.pending) {
                if done.contains(&p.id) {
                    continue;
                }
                if let Some((_, reason)) = failed.iter().find(|(id, _)| *id == p.id) {
                    p.last_error = Some(reason.clone());
                    doc.failed.push(p);
                    continue;
                }
                if p.leased_until.is_some_and(|until| until > now) {
                    p.leased_until = None;
                    p.last_error = error.clone().or(p.last_error);
                }
                kept.push(p);
            }
            doc.pending = kept;
            doc.touch(now);
            (true, ())
        })
        .await?;
        Ok(())
    }

    async fn lms_student(&self, key: &str) -> Result<(LmsStudent, Option<LmsUserId>), ApplyError> {
        let doc = self.store.student(key).await?.unwrap_or_else(|| StudentDoc::empty(key));
        let email =
            doc.email.clone().ok_or_else(|| ApplyError::Lms(LmsError::Permanent("student has no email".into())))?;
        let local = email.split('@').next().unwrap_or("student").to_owned();
        let student = LmsStudent {
            first_name: doc.first_name.clone().or_else(|| doc.name.clone()).unwrap_or_else(|| local.clone()),
            last_name: doc.last_name.clone().unwrap_or_else(|| "-".to_owned()),
            email,
            key: key.to_owned(),
        };
        let user = doc.lms_user_ids.get(self.lms.name()).cloned().map(LmsUserId);
        Ok((student, user))
    }

    /// Finds or creates the LMS user and remembers its id on the student.
    async fn ensure_user(&self, key: &str) -> Result<LmsUserId, LmsError> {
        let (student, _) = self.lms_student(key).await.map_err(to_lms_error)?;
        let user = self.lms.ensure_user(&student).await?.id;
        self.store
            .set_lms_user(key, self.lms.name(), &user.0)
            .await
            .map_err(|e| LmsError::Transient { message: e.to_string(), retry_after: None })?;
        Ok(user)
    }

    /// The LMS user id: from this run, from the student record, or by ensuring the user.
    async fn user_id(&self, doc: &EnrollmentDoc, cached: &mut Option<LmsUserId>) -> Result<LmsUserId, LmsError> {
        if let Some(user) = cached {
            return Ok(user.clone());
        }
        let (_, known) = self.lms_student(&doc.student_key).await.map_err(to_lms_error)?;
        let user = match known {
            Some(user) => user,
            None => self.ensure_user(&doc.student_key).await?,
        };
        *cached = Some(user.clone());
        Ok(user)
    }

    async fn run_action(
        &self,
        doc: &EnrollmentDoc,
        action: &LmsAction,
        user: &mut Option<LmsUserId>,
    ) -> Result<(), LmsError> {
        match action {
            LmsAction::EnsureUser => {
                *user = Some(self.ensure_user(&doc.student_key).await?);
                Ok(())
            }
            LmsAction::Enroll { course } => {
                let id = self.user_id(doc, user).await?;
                self.lms.enroll(&id, course).await?;
                tracing::info!(student = %doc.student_key, course = %course, "enrolled");
                Ok(())
            }
            LmsAction::Unenroll { course } => {
                let id = self.user_id(doc, user).await?;
                self.lms.unenroll(&id, course).await?;
                tracing::info!(student = %doc.student_key, course = %course, "unenrolled");
                Ok(())
            }
        }
    }

    /// With `DEACTIVATE_IDLE_USERS`, a user left with no active course stops using a seat.
    async fn deactivate_if_idle(&self, doc: &EnrollmentDoc) -> Result<(), ApplyError> {
        if doc.access == Access::Active {
            return Ok(());
        }
        let all = self.store.enrollments_of(&doc.student_key).await?;
        if all.iter().any(|e| e.access == Access::Active) {
            return Ok(());
        }
        let Some(student) = self.store.student(&doc.student_key).await? else { return Ok(()) };
        if let Some(user) = student.lms_user_ids.get(self.lms.name()) {
            self.lms.set_active(&LmsUserId(user.clone()), false).await.map_err(ApplyError::Lms)?;
            tracing::info!(student = %doc.student_key, "LMS user deactivated: no active course left");
        }
        Ok(())
    }

    /// Ends access whose time is up and retries actions left pending; returns (ended, retried).
    pub async fn sweep(&self) -> Result<(usize, usize), ApplyError> {
        let now = self.clock.now();
        let mut ended = 0;
        for doc in self.store.expired_enrollments(now).await? {
            let doc_id = enrollment_doc_id(&doc.student_key, &doc.course_id);
            let changed = self
                .modify_enrollment(&doc_id, move |doc| {
                    let Ok(course) = CourseId::parse(&doc.course_id) else { return (false, false) };
                    let decision = doc.state.refresh(&course, now);
                    if !decision.changed {
                        return (false, false);
                    }
                    doc.apply(decision, &format!("sweep:{}", now.unix_millis()), now);
                    (true, true)
                })
                .await?
                .unwrap_or(false);
            if changed {
                ended += 1;
                tracing::info!(student = %doc.student_key, course = %doc.course_id, "access ended by the sweep");
            }
            skip_busy(self.run_pending(&doc_id).await)?;
        }
        let mut retried = 0;
        let cutoff = Timestamp::from_unix_millis(now.unix_millis() - STALE_PENDING.as_millis() as i64).unwrap_or(now);
        for doc in self.store.stale_pending(cutoff).await? {
            retried += 1;
            skip_busy(self.run_pending(&enrollment_doc_id(&doc.student_key, &doc.course_id)).await)?;
        }
        Ok((ended, retried))
    }
}

/// The sweep leaves enrollments another runner holds to that runner.
fn skip_busy(result: Result<(), ApplyError>) -> Result<(), ApplyError> {
    match result {
        Err(ApplyError::Busy(_)) => Ok(()),
        other => other,
    }
}

fn to_lms_error(e: ApplyError) -> LmsError {
    match e {
        ApplyError::Lms(e) => e,
        ApplyError::Store(e) => LmsError::Transient { message: e.to_string(), retry_after: None },
        ApplyError::Busy(e) => LmsError::Transient { message: e, retry_after: None },
    }
}
