//! The scheduler's sweep: what no event will ever trigger, the end of a fixed term, and
//! actions a crashed or failed delivery left pending.

use super::outbox::UserCache;
use super::{push_moved_end, ApplyError, Engine, SweepReport, STALE_PENDING, SWEEP_PAGE};
use crate::store::docs::{EnrollmentDoc, JobCounts, JobDoc, JobKind, JobStatus};
use crate::store::{enrollment_doc_id, StateStore, StoreError};
use lms_bridge_shared::{LmsAction, Timestamp};
use std::collections::HashSet;
use std::fmt::Display;

/// The one record of the latest sweep.
pub const SWEEP_JOB_ID: &str = "sweep-latest";

impl<S: StateStore> Engine<S> {
    /// Ends access whose time is up, then retries actions left pending, oldest first. One
    /// enrollment's failure never stops the others: it is counted, logged, and retried by the
    /// next sweep (until its attempts cap moves it to `failed`). Stops at the time budget.
    pub async fn sweep(&self) -> Result<SweepReport, ApplyError> {
        let now = self.clock.now();
        let mut run = Run {
            seen: HashSet::new(),
            report: SweepReport { complete: true, ..SweepReport::default() },
            users: UserCache::new(),
            started: tokio::time::Instant::now(),
        };
        // Expiry is committed before any LMS call, so an ended enrollment leaves its query.
        if self.sweep_pass(Pass::Expiry { now }, &mut run).await? {
            let cutoff =
                Timestamp::from_unix_millis(now.unix_millis() - STALE_PENDING.as_millis() as i64).unwrap_or(now);
            self.sweep_pass(Pass::Retry { cutoff }, &mut run).await?;
        }
        self.record_sweep(now, &run.report).await;
        Ok(run.report)
    }

    /// Keeps what the latest sweep did in `jobs/sweep-latest` (the console's "last sweep"):
    /// one record, overwritten, so a sweep every 5 minutes leaves no trail. Not being able to
    /// write it does not fail the sweep.
    async fn record_sweep(&self, started: Timestamp, report: &SweepReport) {
        let finished = self.clock.now();
        let record = JobDoc {
            id: SWEEP_JOB_ID.to_owned(),
            kind: JobKind::Sweep,
            status: JobStatus::Done,
            params: "{}".to_owned(),
            cursor: None,
            counts: JobCounts {
                facts: report.ended as u64,
                published: report.retried as u64,
                errors: report.errors as u64,
                ..JobCounts::default()
            },
            errors: if report.complete {
                Vec::new()
            } else {
                vec!["stopped at its time budget; the next sweep goes on".to_owned()]
            },
            started_at: started,
            updated_at: finished,
            finished_at: Some(finished),
        };
        if let Err(e) = self.store.put_job(&record).await {
            tracing::warn!(error = %e, "cannot record the sweep in jobs/sweep-latest");
        }
    }

    /// Walks one query's pages, each enrollment once per sweep; false when the time budget ran
    /// out.
    async fn sweep_pass(&self, pass: Pass, run: &mut Run) -> Result<bool, ApplyError> {
        let mut from = None;
        loop {
            let page = match pass {
                Pass::Expiry { now } => self.store.expired_enrollments(now, from, SWEEP_PAGE).await?,
                Pass::Retry { cutoff } => self.store.stale_pending(cutoff, from, SWEEP_PAGE).await?,
            };
            let fresh: Vec<_> = page.iter().filter(|d| !run.seen.contains(&doc_key(d))).cloned().collect();
            if fresh.is_empty() {
                run.report.stuck_if_full(&page, pass.name());
                return Ok(true);
            }
            for doc in fresh {
                if run.started.elapsed() >= self.sweep_budget {
                    run.report.complete = false;
                    return Ok(false);
                }
                run.seen.insert(doc_key(&doc));
                match pass {
                    Pass::Expiry { now } => {
                        from = doc.access_until;
                        match self.end_if_due(&doc, now).await {
                            Ok(ended) => run.report.ended += usize::from(ended),
                            // Nothing was queued: counted once, and left to the next sweep.
                            Err(e) => {
                                run.report.failure(&doc, &e);
                                continue;
                            }
                        }
                    }
                    Pass::Retry { .. } => {
                        from = doc.pending_since;
                        run.report.retried += 1;
                    }
                }
                if let Err(e) = skip_busy(&doc, self.run_pending_with(&doc_key(&doc), &mut run.users).await) {
                    run.report.failure(&doc, &e);
                }
            }
        }
    }

    /// Ends one enrollment's access if its time is up, and queues its unenroll.
    async fn end_if_due(&self, doc: &EnrollmentDoc, now: Timestamp) -> Result<bool, StoreError> {
        let doc_id = doc_key(doc);
        // An LMS that ends access at the end date it was given has ended it already: the end
        // is recorded without calling it, unless asked to unenrol all the same.
        let (lms_ends_access, skip_unenroll) = {
            let ends = self.lms.enforces_end_dates();
            (ends, ends && !self.unenrol_at_end)
        };
        let ended = self
            .modify_enrollment(&doc_id, move |doc| {
                let mut decision = doc.state.refresh(&doc.course_id, now);
                if !decision.changed {
                    return (false, None);
                }
                if lms_ends_access {
                    decision = push_moved_end(decision, &doc.state, &doc.course_id);
                }
                if skip_unenroll {
                    decision.actions.retain(|a| !matches!(a, LmsAction::Unenroll { .. }));
                }
                doc.apply(decision, &format!("sweep:{}", now.unix_millis()), now);
                (true, Some(doc.clone()))
            })
            .await?
            .flatten();
        if let Some(ended_doc) = &ended {
            tracing::info!(student = %doc.student_key, course = %doc.course_id, "access ended by the sweep");
            // With no unenroll queued (the LMS ended it), no action run will get to the idle
            // check: made here, so a learner left with nothing stops using a seat.
            if skip_unenroll && self.deactivate_idle_users {
                if let Err(e) = self.deactivate_if_idle(ended_doc).await {
                    tracing::warn!(student = %doc.student_key, error = %e, "sweep: cannot deactivate an idle learner; its next change retries");
                }
            }
        }
        Ok(ended.is_some())
    }
}

/// The sweep's two queries.
#[derive(Clone, Copy)]
enum Pass {
    /// Active enrollments whose access ended by `now`.
    Expiry { now: Timestamp },
    /// Enrollments with actions pending since `cutoff` or before.
    Retry { cutoff: Timestamp },
}

impl Pass {
    fn name(self) -> &'static str {
        match self {
            Pass::Expiry { .. } => "expired",
            Pass::Retry { .. } => "stale pending",
        }
    }
}

/// What one sweep carries across its passes.
struct Run {
    seen: HashSet<String>,
    report: SweepReport,
    users: UserCache,
    started: tokio::time::Instant,
}

impl SweepReport {
    fn failure(&mut self, doc: &EnrollmentDoc, error: &dyn Display) {
        self.errors += 1;
        tracing::warn!(student = %doc.student_key, course = %doc.course_id, error = %error, "sweep: enrollment not finished; next sweep retries");
    }

    /// A full page of enrollments already looked at means more than a page share the cursor's
    /// time (each left unfinished): the query cannot get past them, so what follows is left
    /// to the next sweep and the report must not claim it is complete.
    fn stuck_if_full(&mut self, page: &[EnrollmentDoc], query: &str) {
        if page.len() >= SWEEP_PAGE as usize {
            self.complete = false;
            tracing::warn!(
                query,
                page = page.len(),
                "sweep: a full page of enrollments already tried; the rest is left to the next sweep"
            );
        }
    }
}

fn doc_key(doc: &EnrollmentDoc) -> String {
    enrollment_doc_id(&doc.student_key, &doc.course_id)
}

/// The sweep leaves enrollments another runner holds to that runner.
fn skip_busy(doc: &EnrollmentDoc, result: Result<(), ApplyError>) -> Result<(), ApplyError> {
    match result {
        Err(ApplyError::Busy(_)) => {
            tracing::debug!(student = %doc.student_key, course = %doc.course_id, "sweep: pending actions held by another runner; left to it");
            Ok(())
        }
        other => other,
    }
}
