//! `lms-bridge drift`: the access the state says against what the LMS really holds (an admin
//! removed an enrollment by hand, deleted a user, deactivated one). Fixes go through the same
//! outbox as every other LMS action, so they are leased, retried and logged like them; only
//! enrollments the bridge itself gave are ever removed.

use super::{ApplyError, Engine};
use crate::lms::LmsUser;
use crate::store::docs::{EnrollmentDoc, PendingAction};
use crate::store::{enrollment_doc_id, StateStore};
use lms_bridge_shared::{Access, CourseId, LmsAction, StudentKey};
use serde::Serialize;

/// Students read per store page.
const PAGE: u32 = 200;

/// One way the LMS differs from the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftKind {
    /// The student has active courses and no LMS user.
    MissingUser,
    /// An active course the LMS user is not enrolled in.
    MissingEnrollment,
    /// A course whose access ended, still held in the LMS, that the bridge had given.
    ExtraEnrollment,
    /// The student has active courses and the LMS user is inactive.
    InactiveUser,
}

/// A difference, as `drift` prints it (one JSON line each).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Difference {
    /// The student (never the email).
    pub student: StudentKey,
    /// The course, when the difference is about one.
    pub course: Option<CourseId>,
    /// What differs.
    pub difference: DriftKind,
    /// With `--fix`: the actions are queued and were run (false: queued, left pending).
    pub fixed: bool,
}

/// What a drift run found.
#[derive(Debug, Default, Serialize)]
pub struct DriftReport {
    /// Students compared.
    pub students: u64,
    /// The differences.
    pub differences: Vec<Difference>,
    /// Students that could not be compared, with why (keyed, never an email).
    pub errors: Vec<String>,
}

impl<S: StateStore> Engine<S> {
    /// Compares these students (every student with enrollments when `only` is empty) against
    /// the LMS; with `fix`, queues and runs the actions that bring the LMS back to the state.
    pub async fn drift(&self, fix: bool, only: &[StudentKey]) -> Result<DriftReport, ApplyError> {
        let mut report = DriftReport::default();
        if !only.is_empty() {
            for student in only {
                self.compare(student, fix, &mut report).await?;
            }
            return Ok(report);
        }
        let mut after: Option<StudentKey> = None;
        loop {
            let page = self.store.enrollments_after(after.as_ref(), PAGE).await?;
            let Some(last) = page.last().map(|d| d.student_key.clone()) else { break };
            let mut students: Vec<StudentKey> = page.iter().map(|d| d.student_key.clone()).collect();
            students.dedup();
            for student in students {
                self.compare(&student, fix, &mut report).await?;
            }
            after = Some(last);
        }
        Ok(report)
    }

    /// One student, read whole (a full page may have cut the last student short); an LMS that
    /// cannot be asked about them is reported, not a stop.
    async fn compare(&self, student: &StudentKey, fix: bool, report: &mut DriftReport) -> Result<(), ApplyError> {
        let docs = self.store.enrollments_of(student).await?;
        report.students += 1;
        match self.drift_of(student, &docs, fix).await {
            Ok(found) => report.differences.extend(found),
            Err(e) => report.errors.push(format!("student {student}: {e}")),
        }
        Ok(())
    }

    async fn drift_of(
        &self,
        student: &StudentKey,
        docs: &[EnrollmentDoc],
        fix: bool,
    ) -> Result<Vec<Difference>, ApplyError> {
        // Enrollments with actions in flight are not drift: the outbox is still at work.
        let settled: Vec<&EnrollmentDoc> = docs.iter().filter(|d| d.pending.is_empty()).collect();
        let active: Vec<&EnrollmentDoc> = settled.iter().copied().filter(|d| d.access == Access::Active).collect();
        let ended: Vec<&EnrollmentDoc> = settled
            .iter()
            .copied()
            .filter(|d| d.access == Access::Inactive && d.bridge_enrolled && !d.preexisting)
            .collect();
        if active.is_empty() && ended.is_empty() {
            return Ok(Vec::new());
        }
        let email = self
            .store
            .student(student)
            .await?
            .and_then(|s| s.email)
            .ok_or_else(|| ApplyError::Lms(crate::lms::LmsError::Permanent("student has no email".into())))?;
        let user: Option<LmsUser> = self.lms.lookup(&email).await.map_err(ApplyError::Lms)?;
        let mut found = Vec::new();
        let mut differ = |doc: &EnrollmentDoc, course: bool, kind: DriftKind, actions: Vec<LmsAction>| {
            found.push((
                doc.clone(),
                actions,
                Difference {
                    student: student.clone(),
                    course: course.then(|| doc.course_id.clone()),
                    difference: kind,
                    fixed: false,
                },
            ));
        };
        match &user {
            None => {
                if let Some(first) = active.first() {
                    differ(first, false, DriftKind::MissingUser, vec![LmsAction::EnsureUser]);
                }
                for doc in &active {
                    differ(
                        doc,
                        true,
                        DriftKind::MissingEnrollment,
                        vec![LmsAction::Enroll { course: doc.course_id.clone() }],
                    );
                }
            }
            Some(user) => {
                if !user.active {
                    if let Some(first) = active.first() {
                        differ(first, false, DriftKind::InactiveUser, vec![LmsAction::EnsureUser]);
                    }
                }
                for doc in active.iter().filter(|d| !user.courses.contains(&d.course_id)) {
                    differ(
                        doc,
                        true,
                        DriftKind::MissingEnrollment,
                        vec![LmsAction::Enroll { course: doc.course_id.clone() }],
                    );
                }
                for doc in ended.iter().filter(|d| user.courses.contains(&d.course_id)) {
                    differ(
                        doc,
                        true,
                        DriftKind::ExtraEnrollment,
                        vec![LmsAction::Unenroll { course: doc.course_id.clone() }],
                    );
                }
            }
        }
        let mut differences = Vec::with_capacity(found.len());
        for (doc, actions, mut difference) in found {
            if fix {
                difference.fixed = self.queue_and_run(&doc, actions).await?;
            }
            differences.push(difference);
        }
        Ok(differences)
    }

    /// Queues `actions` on the enrollment (ids `drift:{ms}#{n}`) and runs its pending actions;
    /// false when they were left pending (the sweep retries them).
    async fn queue_and_run(&self, doc: &EnrollmentDoc, actions: Vec<LmsAction>) -> Result<bool, ApplyError> {
        let now = self.clock.now();
        let doc_id = enrollment_doc_id(&doc.student_key, &doc.course_id);
        let cause = format!("drift:{}", now.unix_millis());
        self.modify_enrollment(&doc_id, move |doc| {
            for (i, action) in actions.iter().enumerate() {
                let id = format!("{cause}#{i}");
                if doc.pending.iter().any(|p| p.id == id) {
                    continue;
                }
                doc.pending.push(PendingAction {
                    id,
                    action: action.clone(),
                    created_at: now,
                    leased_until: None,
                    lease: None,
                    attempts: 0,
                    last_error: None,
                });
            }
            doc.touch(now);
            (true, ())
        })
        .await?;
        match self.run_pending(&doc_id).await {
            Ok(()) => Ok(true),
            Err(ApplyError::Store(e)) => Err(ApplyError::Store(e)),
            Err(e) => {
                tracing::warn!(student = %doc.student_key, course = %doc.course_id, error = %e, "drift fix left pending; the sweep retries it");
                Ok(false)
            }
        }
    }
}
