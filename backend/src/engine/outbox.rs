//! Running an enrollment's pending LMS actions. A runner claims them under a lease token of
//! its own, so two deliveries never run them at once and a runner whose lease ran out cannot
//! release what another took over; each action is removed once the LMS did it.

use super::{ApplyError, Engine, LEASE_MARGIN};
use crate::lms::{Enrolled, LmsError, LmsStudent, LmsUserId};
use crate::store::docs::{EnrollmentDoc, LmsAccount, PendingAction, StudentDoc};
use crate::store::{StateStore, StoreError};
use lms_bridge_shared::{Access, LmsAction, StudentKey, Timestamp};
use std::time::Duration;

/// Pauses before retrying a transiently failed LMS call within the same delivery: a 5xx, a
/// timeout or a dropped connection usually passes in a second, and a redelivery costs Pub/Sub's
/// backoff (seconds to minutes) and slows every push to the endpoint.
const INLINE_BACKOFF: [Duration; 2] = [Duration::from_millis(300), Duration::from_secs(1)];
/// The longest rate-limit pause waited out within a delivery; a longer one fails the delivery.
const MAX_INLINE_WAIT: Duration = Duration::from_secs(5);

/// LMS user ids by student key, known in one run.
pub(super) type UserCache = std::collections::HashMap<StudentKey, LmsUserId>;

/// Why one action did not run. The store is not the LMS: a Firestore failure while looking
/// up or saving the LMS user is reported as a store failure, not as the LMS being down.
#[derive(Debug, thiserror::Error)]
enum RunError {
    #[error(transparent)]
    Lms(#[from] LmsError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<RunError> for ApplyError {
    fn from(e: RunError) -> Self {
        match e {
            RunError::Lms(e) => ApplyError::Lms(e),
            RunError::Store(e) => ApplyError::Store(e),
        }
    }
}

/// What a runner got when it asked for an enrollment's pending actions.
enum Claim {
    Nothing,
    Busy,
    /// The enrollment, the actions claimed, and those given up (over the attempts cap).
    Got(Box<EnrollmentDoc>, Vec<PendingAction>, Vec<PendingAction>),
}

/// What a run did with its claim, for `finish`.
struct Finished {
    done: Vec<String>,
    /// Action id and reason.
    failed: Vec<(String, String)>,
    /// The transient error that stopped the run.
    error: Option<String>,
    /// Whether that error was a pause (rate limit, full queue): the claim's attempt is given back.
    paused: bool,
    /// A changed `preexisting`.
    preexisting: Option<bool>,
    /// Whether the LMS now holds an enrollment the bridge gave, when this run changed it.
    bridge_enrolled: Option<bool>,
}

/// A claim's own token: random, so two runners never share one.
fn claim_token() -> String {
    format!("{:032x}", rand::random::<u128>())
}

fn after(t: Timestamp, d: Duration) -> Timestamp {
    Timestamp::from_unix_millis(t.unix_millis() + d.as_millis() as i64).unwrap_or(t)
}

impl<S: StateStore> Engine<S> {
    /// Runs one enrollment's pending actions (see `run_pending_with`).
    pub async fn run_pending(&self, doc_id: &str) -> Result<(), ApplyError> {
        self.run_pending_with(doc_id, &mut UserCache::new()).await
    }

    /// Takes a lease on an enrollment's pending actions (so concurrent deliveries do not run
    /// them twice), runs them in order, and removes each one that succeeded. `users` carries the
    /// LMS user ids already known in this run (one lookup per student, not per course).
    pub(super) async fn run_pending_with(&self, doc_id: &str, users: &mut UserCache) -> Result<(), ApplyError> {
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
        let mut paused = false;
        let mut preexisting = doc.preexisting;
        let mut bridge_enrolled = None;
        for pending in &claimed {
            let result = tokio::time::timeout_at(deadline, self.run_action_retrying(&doc, pending, preexisting, users))
                .await
                .unwrap_or_else(|_| {
                    Err(RunError::Lms(LmsError::Transient {
                        message: "the LMS call outlasted the lease".into(),
                        retry_after: None,
                    }))
                });
            match result {
                Ok(found) => {
                    preexisting = found.unwrap_or(preexisting);
                    match pending.action {
                        LmsAction::Enroll { .. } if !preexisting => bridge_enrolled = Some(true),
                        LmsAction::Unenroll { .. } if !preexisting => bridge_enrolled = Some(false),
                        _ => {}
                    }
                    done.push(pending.id.clone());
                }
                Err(RunError::Lms(LmsError::Permanent(reason))) => {
                    tracing::error!(student = %doc.student_key, course = %doc.course_id, error = %reason, "LMS action failed for good");
                    failed_for_good.push((pending.id.clone(), reason));
                }
                Err(e) => {
                    match &e {
                        RunError::Lms(e) => {
                            paused = e.is_pause();
                            tracing::warn!(student = %doc.student_key, course = %doc.course_id, error = %e, "LMS action failed; will retry");
                        }
                        RunError::Store(e) => {
                            tracing::warn!(student = %doc.student_key, course = %doc.course_id, error = %e, "state store failed while running an LMS action; will retry");
                        }
                    }
                    outcome = Err(ApplyError::from(e));
                    break;
                }
            }
        }
        let finished = Finished {
            done,
            failed: failed_for_good,
            error: outcome.as_ref().err().map(ToString::to_string),
            paused,
            preexisting: (preexisting != doc.preexisting).then_some(preexisting),
            bridge_enrolled,
        };
        self.finish(doc_id, &token, finished).await?;
        if outcome.is_ok() && self.deactivate_idle_users {
            self.deactivate_if_idle(&doc).await?;
        }
        outcome
    }

    /// Removes this claim's finished actions and releases the rest of this claim; actions
    /// another runner claimed since are left as they are.
    async fn finish(&self, doc_id: &str, token: &str, finished: Finished) -> Result<(), ApplyError> {
        let now = self.clock.now();
        let token = token.to_owned();
        let Finished { done, failed, error, paused, preexisting, bridge_enrolled } = finished;
        self.modify_enrollment(doc_id, move |doc| {
            if let Some(preexisting) = preexisting {
                doc.preexisting = preexisting;
            }
            if let Some(enrolled) = bridge_enrolled {
                doc.bridge_enrolled = enrolled;
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
                if paused {
                    p.attempts = p.attempts.saturating_sub(1);
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

    async fn lms_student(&self, key: &StudentKey) -> Result<(LmsStudent, Option<LmsUserId>), RunError> {
        let doc = self.store.student(key).await?.unwrap_or_else(|| StudentDoc::empty(key));
        // Without an email the LMS cannot be given the user, now or on any retry.
        let email = doc.email.clone().ok_or_else(|| LmsError::Permanent("student has no email".into()))?;
        let local = email.split('@').next().unwrap_or("student").to_owned();
        let student = LmsStudent {
            first_name: doc.first_name.clone().or_else(|| doc.name.clone()).unwrap_or_else(|| local.clone()),
            last_name: doc.last_name.clone().unwrap_or_else(|| "-".to_owned()),
            email,
            key: key.clone(),
        };
        let user = doc.lms_user_ids.get(self.lms.name()).cloned().map(LmsUserId);
        Ok((student, user))
    }

    /// Finds or creates the LMS user and remembers on the student its id, whether the bridge
    /// created it and whether it is a plain learner (what deactivation may touch).
    async fn ensure_user(&self, key: &StudentKey) -> Result<LmsUserId, RunError> {
        let (student, _) = self.lms_student(key).await?;
        let user = self.lms.ensure_user(&student).await?;
        let account = LmsAccount { id: user.id.0.clone(), created: user.created, learner: user.learner };
        self.store.set_lms_user(key, self.lms.name(), &account).await?;
        Ok(user.id)
    }

    /// The LMS user id: from this run, from the student record, or by ensuring the user.
    async fn user_id(&self, key: &StudentKey, users: &mut UserCache) -> Result<LmsUserId, RunError> {
        if let Some(user) = users.get(key) {
            return Ok(user.clone());
        }
        let (_, known) = self.lms_student(key).await?;
        let user = match known {
            Some(user) => user,
            None => self.ensure_user(key).await?,
        };
        users.insert(key.clone(), user.clone());
        Ok(user)
    }

    /// Runs one action, retrying transient LMS failures a few times ([`INLINE_BACKOFF`], or the
    /// rate-limit pause when it is short) before giving the failure to the delivery.
    async fn run_action_retrying(
        &self,
        doc: &EnrollmentDoc,
        pending: &PendingAction,
        preexisting: bool,
        users: &mut UserCache,
    ) -> Result<Option<bool>, RunError> {
        let mut attempt = pending.clone();
        for backoff in INLINE_BACKOFF {
            let result = self.run_action(doc, &attempt, preexisting, users).await;
            let wait = match &result {
                Err(RunError::Lms(LmsError::Transient { retry_after: Some(wait), .. })) if *wait <= MAX_INLINE_WAIT => {
                    *wait
                }
                Err(RunError::Lms(LmsError::Transient { retry_after: None, .. })) => backoff,
                _ => return result,
            };
            tokio::time::sleep(wait).await;
            // A retry: what the LMS shows now may be this action's own earlier call, whose
            // answer was lost (a timeout after the LMS acted).
            attempt.attempts += 1;
        }
        self.run_action(doc, &attempt, preexisting, users).await
    }

    /// Runs one action. An enroll answers whether the enrollment pre-existed (`Some`), when
    /// that can be told: see `Enrolled`.
    async fn run_action(
        &self,
        doc: &EnrollmentDoc,
        pending: &PendingAction,
        preexisting: bool,
        users: &mut UserCache,
    ) -> Result<Option<bool>, RunError> {
        let key = &doc.student_key;
        match &pending.action {
            // Ensured once per run: an event giving several courses looks the user up once.
            LmsAction::EnsureUser if users.contains_key(key) => Ok(None),
            LmsAction::EnsureUser => {
                let user = self.ensure_user(key).await?;
                users.insert(key.clone(), user);
                Ok(None)
            }
            LmsAction::Enroll { course } if self.lms.enforces_end_dates() && doc.access != Access::Active => {
                // Access ended after this enrol was queued (a retry of one that failed, run
                // after the sweep): an LMS that takes the end with the enrol would read "no
                // end" and give the course for good. Nothing to enrol.
                tracing::info!(student = %doc.student_key, course = %course, "enrol skipped: access ended since it was queued");
                Ok(None)
            }
            LmsAction::Enroll { course } => {
                let id = self.user_id(key, users).await?;
                // An LMS that ends access by itself gets the end with every enrol (an enrol without it
                // would reset it to "never").
                let found = match self.lms.enroll_until(&id, course, doc.access_until).await? {
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
    pub(super) async fn deactivate_if_idle(&self, doc: &EnrollmentDoc) -> Result<(), ApplyError> {
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

    async fn has_no_active_course(&self, student_key: &StudentKey) -> Result<bool, ApplyError> {
        Ok(!self.store.enrollments_of(student_key).await?.iter().any(|e| e.access == Access::Active))
    }
}
