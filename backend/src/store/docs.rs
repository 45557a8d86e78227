//! Document shapes of the state, typed: both stores keep them as they are, and Firestore
//! gets native timestamps from their serializers.

use lms_bridge_shared::ids::{ChargeId, CourseId, EventId, GrantId, SourceName, StudentKey};
use lms_bridge_shared::rules::{Access, Enrollment, Grant, LmsAction};
use lms_bridge_shared::{ProductMapping, Timestamp};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What became of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventStatus {
    /// Its effects are in the state (LMS actions may still be pending on the enrollments).
    Applied,
    /// Recorded without effect: duplicate content, unmapped product, `info`.
    Ignored,
    /// Permanently invalid; kept with the reason so it does not loop.
    Failed,
    /// Authenticated but unparsed; kept with its raw body for `replay --quarantined`.
    Quarantined,
    /// For a product with no mapping yet; kept whole and applied when the mapping is imported
    /// (or by `replay --unmapped`).
    Unmapped,
}

impl EventStatus {
    /// The stored string.
    pub fn as_str(self) -> &'static str {
        match self {
            EventStatus::Applied => "applied",
            EventStatus::Ignored => "ignored",
            EventStatus::Failed => "failed",
            EventStatus::Quarantined => "quarantined",
            EventStatus::Unmapped => "unmapped",
        }
    }
}

/// `events/{id}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventDoc {
    /// The event id.
    pub id: EventId,
    /// What became of it.
    pub status: EventStatus,
    /// Why it was ignored or failed.
    pub reason: Option<String>,
    /// The platform's event name.
    pub source_event: String,
    /// The change type.
    pub change: String,
    /// Who it concerns.
    pub student_key: Option<StudentKey>,
    /// The enrollments it touched (their pending actions are re-run on redelivery).
    #[serde(default)]
    pub enrollments: Vec<String>,
    /// Platform time.
    pub occurred_at: Timestamp,
    /// Edge time.
    pub received_at: Timestamp,
    /// When the backend recorded it.
    pub processed_at: Timestamp,
    /// TTL policy field: Firestore deletes the record after this. None for what still needs
    /// an operator (failed, quarantined, unmapped): those never expire unseen.
    pub expire_at: Option<Timestamp>,
    /// The event JSON, kept for quarantined and failed events (replay).
    pub event_json: Option<String>,
    /// Who asked for an admin event, and why.
    #[serde(default)]
    pub admin: Option<lms_bridge_shared::AdminNote>,
    /// What it did to each enrollment it changed, in words (`course 201: inactive → active …`).
    #[serde(default)]
    pub decisions: Vec<String>,
}

/// `students/{key}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StudentDoc {
    /// The student key.
    pub key: StudentKey,
    /// Normalized email.
    pub email: Option<String>,
    /// Full name.
    pub name: Option<String>,
    /// First name.
    pub first_name: Option<String>,
    /// Last name.
    pub last_name: Option<String>,
    /// The user id in each LMS, by adapter name.
    #[serde(default)]
    pub lms_user_ids: BTreeMap<String, String>,
    /// LMSs where the bridge itself created the user (never unset: a later lookup that finds
    /// the user does not make it someone else's). Only such users may be deactivated.
    #[serde(default)]
    pub lms_created: BTreeMap<String, bool>,
    /// Whether the user's LMS role is a plain learner, as last seen, by LMS: an instructor or
    /// admin is never deactivated.
    #[serde(default)]
    pub lms_learner: BTreeMap<String, bool>,
}

/// What an LMS said of a student's account when the bridge ensured it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LmsAccount {
    /// The user id in the LMS.
    pub id: String,
    /// The bridge created it (this time).
    pub created: bool,
    /// Its role is a plain learner.
    pub learner: bool,
}

impl StudentDoc {
    /// A record that knows only the key.
    pub fn empty(key: &StudentKey) -> Self {
        Self {
            key: key.clone(),
            email: None,
            name: None,
            first_name: None,
            last_name: None,
            lms_user_ids: BTreeMap::new(),
            lms_created: BTreeMap::new(),
            lms_learner: BTreeMap::new(),
        }
    }

    /// The bridge created this student's user in `lms` and it is a plain learner: the only
    /// accounts the bridge may deactivate.
    pub fn bridge_owns_user(&self, lms: &str) -> bool {
        self.lms_created.get(lms) == Some(&true) && self.lms_learner.get(lms) == Some(&true)
    }
}

/// One LMS action waiting to run (the outbox).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingAction {
    /// Unique within the enrollment: the event (or sweep) that caused it, and its position.
    pub id: String,
    /// What to do.
    pub action: LmsAction,
    /// When it was decided.
    pub created_at: Timestamp,
    /// A runner holds it until then; others leave it alone.
    pub leased_until: Option<Timestamp>,
    /// The claim of the runner that holds it: a runner finishes only its own claims.
    #[serde(default)]
    pub lease: Option<String>,
    /// Attempts so far.
    #[serde(default)]
    pub attempts: u32,
    /// The last failure.
    pub last_error: Option<String>,
}

/// `enrollments/{student key}__{course id}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EnrollmentDoc {
    /// The student.
    pub student_key: StudentKey,
    /// The LMS course.
    pub course_id: CourseId,
    /// The grants and the decided access.
    pub state: Enrollment,
    /// Copy of `state.access`, for queries.
    pub access: Access,
    /// Copy of `state.access_until`, for the sweep's range query.
    pub access_until: Option<Timestamp>,
    /// The outbox.
    #[serde(default)]
    pub pending: Vec<PendingAction>,
    /// Oldest pending action's time, for the sweep's retry query; absent when none.
    pub pending_since: Option<Timestamp>,
    /// Actions that failed for good, with the reason.
    #[serde(default)]
    pub failed: Vec<PendingAction>,
    /// Oldest failed action's time, for the console's query; absent when none.
    #[serde(default)]
    pub failed_since: Option<Timestamp>,
    /// The student held this course in the LMS before the bridge enrolled them (the first
    /// enroll found it there): the bridge never unenrolls it.
    #[serde(default)]
    pub preexisting: bool,
    /// The LMS holds this enrollment because the bridge enrolled the student (set when an
    /// enroll it ran succeeds, cleared when its unenroll does): the only enrollments `drift
    /// --fix` may remove.
    #[serde(default)]
    pub bridge_enrolled: bool,
    /// Incremented on every write.
    pub version: u64,
    /// Last write.
    pub updated_at: Timestamp,
}

impl EnrollmentDoc {
    /// A new enrollment with no grants.
    pub fn new(student_key: &StudentKey, course_id: &CourseId, now: Timestamp) -> Self {
        Self {
            student_key: student_key.clone(),
            course_id: course_id.clone(),
            state: Enrollment::default(),
            access: Access::Inactive,
            access_until: None,
            pending: Vec::new(),
            pending_since: None,
            failed: Vec::new(),
            failed_since: None,
            preexisting: false,
            bridge_enrolled: false,
            version: 0,
            updated_at: now,
        }
    }

    /// Stores a new engine state and recomputes the query copies.
    pub fn set_state(&mut self, state: Enrollment, now: Timestamp) {
        self.access = state.access;
        self.access_until = state.access_until;
        self.state = state;
        self.touch(now);
    }

    /// Applies a decision: queues its LMS actions (ids `{cause}#{n}`) and stores the new state.
    pub fn apply(&mut self, decision: lms_bridge_shared::Decision, cause: &str, now: Timestamp) {
        for (i, action) in decision.actions.into_iter().enumerate() {
            self.pending.push(PendingAction {
                id: format!("{cause}#{i}"),
                action,
                created_at: now,
                leased_until: None,
                lease: None,
                attempts: 0,
                last_error: None,
            });
        }
        self.set_state(decision.enrollment, now);
    }

    /// Bumps the version and recomputes `pending_since` and `failed_since`.
    pub fn touch(&mut self, now: Timestamp) {
        self.pending_since = self.pending.iter().map(|p| p.created_at).min();
        self.failed_since = self.failed.iter().map(|p| p.created_at).min();
        self.version += 1;
        self.updated_at = now;
    }
}

/// Where a grant is placed: one student's course.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Placement {
    /// The owner's student key.
    pub student_key: StudentKey,
    /// The course.
    pub course_id: CourseId,
}

/// `grants/{source}__{grant id}`: the one record of a grant's facts, so events about it act on
/// its owner whatever email they carry, and a plan switch knows which courses to leave.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GrantDoc {
    /// The payment platform.
    pub source: SourceName,
    /// The grant id (transaction or subscriber code).
    pub grant_id: GrantId,
    /// The owner's student key, for queries (the facts hold the owner too).
    pub owner_key: Option<StudentKey>,
    /// Everything its events said.
    pub state: Grant,
    /// The enrollments it is placed on, whose copies of `state` are kept current.
    pub placed: Vec<Placement>,
    /// Last write.
    pub updated_at: Timestamp,
}

/// `charges/{source}__{charge id}`: which grant a charge belongs to, so an event that names
/// only its charge (a refund, a dispute) acts on that grant. Written blind by the event
/// transaction of every event that names both; also under the ids the source's API linked to
/// it (a Stripe payment intent, for the invoice it paid).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChargeDoc {
    /// The payment platform.
    pub source: SourceName,
    /// The charge as its grant knows it (an invoice, a payment intent, a transaction): the
    /// document's own id, or, under an alias, the charge the alias stands for.
    pub charge_id: ChargeId,
    /// The grant it belongs to.
    pub grant_id: GrantId,
    /// Last write.
    pub updated_at: Timestamp,
}

/// `products/{source}__{product id}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProductDoc {
    /// The mapping.
    #[serde(flatten)]
    pub mapping: ProductMapping,
    /// Last import.
    pub updated_at: Timestamp,
}

/// `audit/{id}`: one thing an operator did in the console, with who and when.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditDoc {
    /// Random, unique.
    pub id: String,
    /// When.
    pub at: Timestamp,
    /// The operator's email.
    pub by: String,
    /// What, as a short verb phrase: `grant`, `block`, `retry`, `replay`, `mapping`.
    pub action: String,
    /// The student it concerns, when it concerns one.
    pub student_key: Option<StudentKey>,
    /// The details, in words (course, product, reason, ids).
    pub detail: String,
}

/// Which operator job a `jobs/{id}` record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// `lms-bridge backfill`.
    Backfill,
    /// `lms-bridge reconcile` and `POST /tasks/reconcile`.
    Reconcile,
    /// `lms-bridge drift`.
    Drift,
    /// The latest sweep (`jobs/sweep-latest`): `facts` ended, `published` retried.
    Sweep,
}

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// Started and not finished: interrupted, or still going.
    Running,
    /// Went through to the end (row errors, if any, are counted and listed).
    Done,
    /// Stopped on an error that needs an operator (the record says which).
    Failed,
}

/// What a job has done so far.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobCounts {
    /// API pages (or CSV files) read.
    pub pages: u64,
    /// Sales and subscriptions read.
    pub records: u64,
    /// Facts (events) they state.
    pub facts: u64,
    /// Facts the state already knew (not published).
    pub known: u64,
    /// Facts published to the events topic.
    pub published: u64,
    /// Records with nothing that touches access (waiting payments, …).
    pub skipped: u64,
    /// Records that could not be read (each listed in `errors`, up to a limit).
    pub errors: u64,
}

/// `jobs/{id}`: one backfill, reconcile or drift run: what it was asked, where it is (so an
/// interrupted run resumes), and what it found.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobDoc {
    /// The job id.
    pub id: String,
    /// What kind of job.
    pub kind: JobKind,
    /// Where it is.
    pub status: JobStatus,
    /// What it was asked, as JSON: a resume must be the same run.
    pub params: String,
    /// Where to resume, as JSON of the job's own cursor; absent before the first checkpoint.
    pub cursor: Option<String>,
    /// Totals so far.
    pub counts: JobCounts,
    /// The first errors, each naming its record (never an email).
    #[serde(default)]
    pub errors: Vec<String>,
    /// When it started.
    pub started_at: Timestamp,
    /// Last checkpoint.
    pub updated_at: Timestamp,
    /// When it finished.
    pub finished_at: Option<Timestamp>,
}

impl JobDoc {
    /// The most errors a record keeps (the count goes on).
    pub const MAX_ERRORS: usize = 100;

    /// Counts an error and keeps its text while there is room.
    pub fn error(&mut self, message: String) {
        self.counts.errors += 1;
        if self.errors.len() < Self::MAX_ERRORS {
            self.errors.push(message);
        }
    }
}
