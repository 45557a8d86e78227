//! Applying events: one store transaction per event (dedupe, decide, state + outbox), then
//! the LMS actions, each marked done when it succeeded (DESIGN §5).

use crate::clock::Clock;
use crate::lms::{Enrolled, Lms, LmsError, LmsStudent, LmsUserId};
use crate::store::docs::{
    EnrollmentDoc, EventDoc, EventStatus, GrantDoc, LmsAccount, PendingAction, Placement, StudentDoc,
};
use crate::store::{enrollment_doc_id, FirestoreStore, StateStore, StoreError, Tx};
use futures::FutureExt;
use lms_bridge_shared::{
    grant_key, Access, Change, CourseId, Event, Grant, LmsAction, Pepper, ProductMapping, Timestamp,
};
use std::collections::BTreeSet;
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
    /// `STUDENT_KEY_PEPPER`: every event's student key is derived again under it, so the
    /// store's ids never depend on what an edge (or an old event) computed.
    pub pepper: Option<Pepper>,
    /// How long a runner holds pending actions; every LMS call of the run ends before.
    pub lease: Duration,
    /// Attempts after which a pending action is moved to `failed`.
    pub max_attempts: u32,
    /// How long one sweep may run: under the scheduler's request timeout.
    pub sweep_budget: Duration,
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
        }
    }
}

fn after(t: Timestamp, d: Duration) -> Timestamp {
    Timestamp::from_unix_millis(t.unix_millis() + d.as_millis() as i64).unwrap_or(t)
}

fn record(event: &Event, status: EventStatus, reason: Option<String>, now: Timestamp) -> EventDoc {
    // What an operator must still look at is kept whole and never expires.
    let keep = matches!(status, EventStatus::Failed | EventStatus::Quarantined | EventStatus::Unmapped);
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
        expire_at: (!keep).then(|| now.plus_days(EVENT_TTL_DAYS)),
        event_json: keep.then(|| String::from_utf8_lossy(&event.to_json()).into_owned()),
    }
}

/// What a runner got when it asked for an enrollment's pending actions.
enum Claim {
    Nothing,
    Busy,
    /// The enrollment, the actions claimed, and those given up (over the attempts cap).
    Got(Box<EnrollmentDoc>, Vec<PendingAction>, Vec<PendingAction>),
}

/// LMS user ids by student key, known in one run.
type UserCache = std::collections::HashMap<String, LmsUserId>;

/// What a run did with its claim, for `finish`.
struct Finished {
    done: Vec<String>,
    /// Action id and reason.
    failed: Vec<(String, String)>,
    /// The transient error that stopped the run.
    error: Option<String>,
    /// A changed `preexisting`.
    preexisting: Option<bool>,
}

/// A claim's own token: random, so two runners never share one.
fn claim_token() -> String {
    format!("{:032x}", rand::random::<u128>())
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
    // An event kept while its product had no mapping is applied now, like a new one.
    if let Some(seen) = tx.event(event.id.as_str()).await?.filter(|s| s.status != EventStatus::Unmapped) {
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
        let event = &self.keyed(event.clone());
        let now = self.clock.now();
        if let Change::Unparsed { reason } = &event.change {
            tracing::warn!(event_id = %event.id, reason = %reason, "quarantined: the edge could not normalize this webhook; kept for replay");
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
        let mut users = UserCache::new();
        for doc_id in enrollments {
            if let Err(e) = self.run_pending_with(doc_id, &mut users).await {
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
    /// them twice), runs them in order, and removes each one that succeeded. `users` carries the
    /// LMS user ids already known in this run (one lookup per student, not per course).
    async fn run_pending_with(&self, doc_id: &str, users: &mut UserCache) -> Result<(), ApplyError> {
        let now = self.clock.now();
        let token = claim_token();
        let lease = self.lease;
        let max_attempts = self.max_attempts;
        let claim_token = token.clone();
        let claimed = self
            .modify_enrollment(doc_id, move |doc| {
                let free = |p: &PendingAction| p.leased_until.is_none_or(|until| until <= now);
                // Actions run in order: stop at the first one someone else holds.
                let take = doc.pending.iter().take_while(|p| free(p)).count();
                if take == 0 {
                    return (false, if doc.pending.is_empty() { Claim::Nothing } else { Claim::Busy });
                }
                // An action that keeps failing stops blocking the ones after it: it is moved to
                // `failed`, where `student show` and the logs tell an operator.
                let mut exhausted = Vec::new();
                let mut kept = Vec::new();
                for (i, mut p) in std::mem::take(&mut doc.pending).into_iter().enumerate() {
                    if i < take && p.attempts >= max_attempts {
                        p.leased_until = None;
                        p.lease = None;
                        exhausted.push(p);
                    } else {
                        if i < take {
                            p.leased_until = Some(after(now, lease));
                            p.lease = Some(claim_token.clone());
                            p.attempts += 1;
                        }
                        kept.push(p);
                    }
                }
                doc.pending = kept;
                doc.failed.extend(exhausted.iter().cloned());
                let claimed: Vec<PendingAction> =
                    doc.pending.iter().filter(|p| p.lease.as_deref() == Some(&claim_token)).cloned().collect();
                doc.touch(now);
                (true, Claim::Got(Box::new(doc.clone()), claimed, exhausted))
            })
            .await?
            .unwrap_or(Claim::Nothing);
        let (doc, claimed) = match claimed {
            Claim::Nothing => return Ok(()),
            Claim::Busy => return Err(ApplyError::Busy(doc_id.to_owned())),
            Claim::Got(doc, claimed, exhausted) => {
                for p in &exhausted {
                    tracing::error!(student = %doc.student_key, course = %doc.course_id, action = ?p.action, attempts = p.attempts, last_error = p.last_error.as_deref().unwrap_or(""), "LMS action given up after too many attempts; moved to failed");
                }
                (doc, claimed)
            }
        };

        // Every call ends before the lease does, so no late call can land after another
        // runner took the actions over.
        let deadline = tokio::time::Instant::now() + lease.saturating_sub(LEASE_MARGIN.min(lease / 2));
        let mut done = Vec::new();
        let mut failed_for_good = Vec::new();
        let mut outcome = Ok(());
        let mut preexisting = doc.preexisting;
        for pending in &claimed {
            let result = tokio::time::timeout_at(deadline, self.run_action(&doc, pending, preexisting, users))
                .await
                .unwrap_or_else(|_| {
                    Err(LmsError::Transient { message: "the LMS call outlasted the lease".into(), retry_after: None })
                });
            match result {
                Ok(found) => {
                    preexisting = found.unwrap_or(preexisting);
                    done.push(pending.id.clone());
                }
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
        let finished = Finished {
            done,
            failed: failed_for_good,
            error: outcome.as_ref().err().map(ToString::to_string),
            preexisting: (preexisting != doc.preexisting).then_some(preexisting),
        };
        self.finish(doc_id, &token, finished).await?;
        if outcome.is_ok() && self.deactivate_idle_users {
            self.deactivate_if_idle(&doc).await?;
        }
        outcome
    }

    /// The event with its student key derived under this deployment's pepper.
    pub fn keyed(&self, mut event: Event) -> Event {
        event.key_student(self.pepper.as_ref());
        event
    }

    /// Runs one enrollment's pending actions (see `run_pending_with`).
    pub async fn run_pending(&self, doc_id: &str) -> Result<(), ApplyError> {
        self.run_pending_with(doc_id, &mut UserCache::new()).await
    }

    /// Removes this claim's finished actions and releases the rest of this claim; actions
    /// another runner claimed since are left as they are.
    async fn finish(&self, doc_id: &str, token: &str, finished: Finished) -> Result<(), ApplyError> {
        let now = self.clock.now();
        let token = token.to_owned();
        let Finished { done, failed, error, preexisting } = finished;
        self.modify_enrollment(doc_id, move |doc| {
            if let Some(preexisting) = preexisting {
                doc.preexisting = preexisting;
            }
            let mut kept = Vec::new();
            for mut p in std::mem::take(&mut doc.pending) {
                if p.lease.as_deref() != Some(token.as_str()) {
                    kept.push(p);
                    continue;
                }
                p.leased_until = None;
                p.lease = None;
                if done.contains(&p.id) {
                    continue;
                }
                if let Some((_, reason)) = failed.iter().find(|(id, _)| *id == p.id) {
                    p.last_error = Some(reason.clone());
                    doc.failed.push(p);
                    continue;
                }
                p.last_error = error.clone().or(p.last_error);
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

    /// Finds or creates the LMS user and remembers on the student its id, whether the bridge
    /// created it and whether it is a plain learner (what deactivation may touch).
    async fn ensure_user(&self, key: &str) -> Result<LmsUserId, LmsError> {
        let (student, _) = self.lms_student(key).await.map_err(to_lms_error)?;
        let user = self.lms.ensure_user(&student).await?;
        let account = LmsAccount { id: user.id.0.clone(), created: user.created, learner: user.learner };
        self.store
            .set_lms_user(key, self.lms.name(), &account)
            .await
            .map_err(|e| LmsError::Transient { message: e.to_string(), retry_after: None })?;
        Ok(user.id)
    }

    /// The LMS user id: from this run, from the student record, or by ensuring the user.
    async fn user_id(&self, key: &str, users: &mut UserCache) -> Result<LmsUserId, LmsError> {
        if let Some(user) = users.get(key) {
            return Ok(user.clone());
        }
        let (_, known) = self.lms_student(key).await.map_err(to_lms_error)?;
        let user = match known {
            Some(user) => user,
            None => self.ensure_user(key).await?,
        };
        users.insert(key.to_owned(), user.clone());
        Ok(user)
    }

    /// Runs one action. An enroll answers whether the enrollment pre-existed (`Some`), when
    /// that can be told: see `Enrolled`.
    async fn run_action(
        &self,
        doc: &EnrollmentDoc,
        pending: &PendingAction,
        preexisting: bool,
        users: &mut UserCache,
    ) -> Result<Option<bool>, LmsError> {
        let key = doc.student_key.as_str();
        match &pending.action {
            // Ensured once per run: an event giving several courses looks the user up once.
            LmsAction::EnsureUser if users.contains_key(key) => Ok(None),
            LmsAction::EnsureUser => {
                let user = self.ensure_user(key).await?;
                users.insert(key.to_owned(), user);
                Ok(None)
            }
            LmsAction::Enroll { course } => {
                let id = self.user_id(key, users).await?;
                let found = match self.lms.enroll(&id, course).await? {
                    Enrolled::Now => Some(false),
                    // Found there on the first try: someone enrolled the student before the
                    // bridge did. On a retry it may be this action's own earlier call that
                    // landed (its answer lost), so nothing can be told.
                    Enrolled::Already if pending.attempts <= 1 => Some(true),
                    Enrolled::Already => None,
                };
                tracing::info!(student = %doc.student_key, course = %course, preexisting = found == Some(true), "enrolled");
                Ok(found)
            }
            LmsAction::Unenroll { course } if preexisting => {
                // The bridge removes only what it gave: someone could buy with another person's
                // email and ask for a refund.
                tracing::info!(student = %doc.student_key, course = %course, "access ended; the LMS enrollment predates the bridge and is left in place");
                Ok(None)
            }
            LmsAction::Unenroll { course } => {
                let id = self.user_id(key, users).await?;
                self.lms.unenroll(&id, course).await?;
                tracing::info!(student = %doc.student_key, course = %course, "unenrolled");
                Ok(None)
            }
        }
    }

    /// With `DEACTIVATE_IDLE_USERS`, a learner the bridge created, left with no active
    /// course, stops using a seat. Accounts the bridge did not create, and instructors or
    /// admins, are never touched.
    async fn deactivate_if_idle(&self, doc: &EnrollmentDoc) -> Result<(), ApplyError> {
        if doc.access == Access::Active || !self.has_no_active_course(&doc.student_key).await? {
            return Ok(());
        }
        let Some(student) = self.store.student(&doc.student_key).await? else { return Ok(()) };
        let lms = self.lms.name();
        let Some(user) = student.lms_user_ids.get(lms).map(|id| LmsUserId(id.clone())) else { return Ok(()) };
        if !student.bridge_owns_user(lms) {
            tracing::info!(student = %doc.student_key, "no active course left; the LMS user was not created by the bridge as a learner and stays active");
            return Ok(());
        }
        self.lms.set_active(&user, false).await.map_err(ApplyError::Lms)?;
        // A purchase committed meanwhile either shows here, or ensures the user (and so
        // reactivates it) after this: every activation runs EnsureUser after its commit.
        if self.has_no_active_course(&doc.student_key).await? {
            tracing::info!(student = %doc.student_key, "LMS user deactivated: no active course left");
        } else {
            self.lms.set_active(&user, true).await.map_err(ApplyError::Lms)?;
        }
        Ok(())
    }

    async fn has_no_active_course(&self, student_key: &str) -> Result<bool, ApplyError> {
        Ok(!self.store.enrollments_of(student_key).await?.iter().any(|e| e.access == Access::Active))
    }

    /// Ends access whose time is up, then retries actions left pending, oldest first. One
    /// enrollment's failure never stops the others: it is counted, logged, and retried by the
    /// next sweep (until its attempts cap moves it to `failed`). Stops at the time budget.
    pub async fn sweep(&self) -> Result<SweepReport, ApplyError> {
        let started = tokio::time::Instant::now();
        let over_budget = || started.elapsed() >= self.sweep_budget;
        let now = self.clock.now();
        let mut report = SweepReport { complete: true, ..SweepReport::default() };
        let mut users = UserCache::new();

        // Expiry is committed before any LMS call, so an ended enrollment leaves this query.
        let mut seen = std::collections::HashSet::new();
        let mut from = None;
        'expiry: loop {
            let page = self.store.expired_enrollments(now, from, SWEEP_PAGE).await?;
            let fresh: Vec<_> = page.iter().filter(|d| !seen.contains(&doc_key(d))).cloned().collect();
            if fresh.is_empty() {
                break;
            }
            for doc in fresh {
                if over_budget() {
                    report.complete = false;
                    break 'expiry;
                }
                seen.insert(doc_key(&doc));
                from = doc.access_until;
                match self.end_if_due(&doc, now).await {
                    Ok(ended) => report.ended += usize::from(ended),
                    Err(e) => report.failure(&doc, &e.into()),
                }
                if let Err(e) = skip_busy(self.run_pending_with(&doc_key(&doc), &mut users).await) {
                    report.failure(&doc, &e);
                }
            }
        }

        let cutoff = Timestamp::from_unix_millis(now.unix_millis() - STALE_PENDING.as_millis() as i64).unwrap_or(now);
        let mut from = None;
        'retry: loop {
            let page = self.store.stale_pending(cutoff, from, SWEEP_PAGE).await?;
            let fresh: Vec<_> = page.iter().filter(|d| !seen.contains(&doc_key(d))).cloned().collect();
            if fresh.is_empty() {
                break;
            }
            for doc in fresh {
                if over_budget() {
                    report.complete = false;
                    break 'retry;
                }
                seen.insert(doc_key(&doc));
                from = doc.pending_since;
                report.retried += 1;
                if let Err(e) = skip_busy(self.run_pending_with(&doc_key(&doc), &mut users).await) {
                    report.failure(&doc, &e);
                }
            }
        }
        Ok(report)
    }

    /// Ends one enrollment's access if its time is up, and queues its unenroll.
    async fn end_if_due(&self, doc: &EnrollmentDoc, now: Timestamp) -> Result<bool, StoreError> {
        let doc_id = doc_key(doc);
        let ended = self
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
        if ended {
            tracing::info!(student = %doc.student_key, course = %doc.course_id, "access ended by the sweep");
        }
        Ok(ended)
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
    /// False when the time budget ran out first: the next sweep goes on.
    pub complete: bool,
}

impl SweepReport {
    fn failure(&mut self, doc: &EnrollmentDoc, error: &ApplyError) {
        self.errors += 1;
        tracing::warn!(student = %doc.student_key, course = %doc.course_id, error = %error, "sweep: enrollment not finished; next sweep retries");
    }
}

fn doc_key(doc: &EnrollmentDoc) -> String {
    enrollment_doc_id(&doc.student_key, &doc.course_id)
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
