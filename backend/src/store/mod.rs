//! The state port: the engine sees state only through [`StateStore`] and, inside a transaction,
//! [`Tx`]. Two adapters: [`FirestoreStore`] in production and [`MemoryStore`] for offline
//! simulation and tests. Document ids never contain raw emails. The collections and their
//! documents are described in docs/contracts.md#firestore.

pub mod console;
pub mod docs;
pub mod firestore;
pub mod memory;

pub use self::firestore::FirestoreStore;
pub use self::memory::MemoryStore;

use async_trait::async_trait;
use docs::{ChargeDoc, EnrollmentDoc, EventDoc, EventStatus, GrantDoc, JobDoc, JobKind, LmsAccount, StudentDoc};
use futures::future::BoxFuture;
use lms_bridge_shared::{CourseId, ProductMapping, StudentKey, Timestamp};

/// A store failure. Every kind is worth a retry later (the HTTP surface answers 503), so
/// callers never need to tell them apart; the variants exist for logs.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Firestore failed: unavailable, contention past the retries, or a document it could not
    /// (de)serialize.
    #[error("firestore: {0}")]
    Firestore(#[from] ::firestore::errors::FirestoreError),
    /// The store cannot serve now; what an in-memory store reports for an injected outage.
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

/// One transaction's view of the state. Reads see the snapshot the transaction started from
/// (not its own buffered writes, as in Firestore), and writes are only buffered: they are
/// committed together when the transaction's body returns `Ok`, and dropped when it fails.
///
/// Writes are plain functions because nothing happens until the commit; Firestore also wants
/// every read of a transaction before its writes, so bodies read first, then write.
#[async_trait]
pub trait Tx: Send {
    /// `events/{id}` by event id.
    async fn event(&mut self, event_id: &str) -> Result<Option<EventDoc>, StoreError>;
    /// An enrollment by its document id ([`enrollment_doc_id`]).
    async fn enrollment(&mut self, doc_id: &str) -> Result<Option<EnrollmentDoc>, StoreError>;
    /// A student by key.
    async fn student(&mut self, key: &StudentKey) -> Result<Option<StudentDoc>, StoreError>;
    /// `grants/{source}__{grant id}`: a grant's facts, owner and placements.
    async fn grant(&mut self, key: &str) -> Result<Option<GrantDoc>, StoreError>;
    /// `charges/{source}__{charge id}`: the grant a charge belongs to.
    async fn charge(&mut self, source: &str, charge_id: &str) -> Result<Option<ChargeDoc>, StoreError>;
    /// Inserts or replaces an event record (keyed by `doc.id`).
    fn put_event(&mut self, doc: &EventDoc) -> Result<(), StoreError>;
    /// Inserts or replaces an enrollment.
    fn put_enrollment(&mut self, doc_id: &str, doc: &EnrollmentDoc) -> Result<(), StoreError>;
    /// Inserts or replaces a student (keyed by `doc.key`).
    fn put_student(&mut self, doc: &StudentDoc) -> Result<(), StoreError>;
    /// Writes a grant record.
    fn put_grant(&mut self, key: &str, doc: &GrantDoc) -> Result<(), StoreError>;
    /// Inserts or replaces the index entry of `charge_id` (the charge itself, or an alias of
    /// `doc.charge_id`) in `doc.source` ([`charge_doc_id`]), without reading it first.
    fn put_charge(&mut self, charge_id: &str, doc: &ChargeDoc) -> Result<(), StoreError>;
}

/// Where the bridge keeps its state. Operations outside [`StateStore::transaction`] are
/// single-document writes or queries that need no isolation (the engine re-reads inside a
/// transaction before it changes anything that matters).
#[async_trait]
pub trait StateStore: Send + Sync + 'static {
    /// Runs `f` in a transaction and commits its writes when it returns `Ok`. On contention
    /// the whole body runs again, so `f` must have no effect besides its reads and writes.
    /// Captures must be owned (`'static`), since attempts may outlive any one borrow.
    async fn transaction<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'t> Fn(&'t mut dyn Tx) -> BoxFuture<'t, Result<T, StoreError>> + Send + Sync + 'static;

    /// A product mapping (an adapter may cache it briefly: mappings change rarely).
    async fn mapping(&self, source: &str, product: &str) -> Result<Option<ProductMapping>, StoreError>;
    /// Inserts or replaces a mapping.
    async fn put_mapping(&self, mapping: &ProductMapping, now: Timestamp) -> Result<(), StoreError>;
    /// Every mapping, ordered by document id.
    async fn list_mappings(&self) -> Result<Vec<ProductMapping>, StoreError>;

    /// One event record.
    async fn event(&self, event_id: &str) -> Result<Option<EventDoc>, StoreError>;
    /// Writes an event record as is (quarantine, failure, replay).
    async fn put_event(&self, doc: &EventDoc) -> Result<(), StoreError>;
    /// Events with a status, ordered by document id.
    async fn events_with_status(&self, status: EventStatus) -> Result<Vec<EventDoc>, StoreError>;

    /// A student record.
    async fn student(&self, key: &StudentKey) -> Result<Option<StudentDoc>, StoreError>;
    /// Saves a student's user id in one LMS without touching the rest of the record, so no
    /// transaction is needed (creating the record if there is none).
    async fn set_lms_user(&self, key: &StudentKey, lms: &str, account: &LmsAccount) -> Result<(), StoreError>;

    /// A student's enrollments.
    async fn enrollments_of(&self, student_key: &StudentKey) -> Result<Vec<EnrollmentDoc>, StoreError>;
    /// Active enrollments whose access ended at or before `now` (the sweep's first query),
    /// earliest end first, a page of `limit` starting at `access_until >= from`.
    async fn expired_enrollments(
        &self,
        now: Timestamp,
        from: Option<Timestamp>,
        limit: u32,
    ) -> Result<Vec<EnrollmentDoc>, StoreError>;
    /// A grant's record, by `{source}__{grant id}`.
    async fn grant(&self, key: &str) -> Result<Option<GrantDoc>, StoreError>;
    /// The grant a charge belongs to, from `charges/{source}__{charge id}`.
    async fn charge(&self, source: &str, charge_id: &str) -> Result<Option<ChargeDoc>, StoreError>;

    /// Enrollments of students whose key sorts after `after`, ordered by student key, at most
    /// `limit` of them: the last student of a full page may be cut short (the caller reads that
    /// student whole with [`StateStore::enrollments_of`]).
    async fn enrollments_after(&self, after: Option<&StudentKey>, limit: u32)
        -> Result<Vec<EnrollmentDoc>, StoreError>;

    /// A job record.
    async fn job(&self, id: &str) -> Result<Option<JobDoc>, StoreError>;
    /// Inserts or replaces a job record (keyed by `doc.id`).
    async fn put_job(&self, doc: &JobDoc) -> Result<(), StoreError>;
    /// The latest jobs of a kind, newest first.
    async fn recent_jobs(&self, kind: JobKind, limit: u32) -> Result<Vec<JobDoc>, StoreError>;

    /// Enrollments with actions pending since at or before `before`, oldest first, a page of
    /// `limit` starting at `pending_since >= from`.
    async fn stale_pending(
        &self,
        before: Timestamp,
        from: Option<Timestamp>,
        limit: u32,
    ) -> Result<Vec<EnrollmentDoc>, StoreError>;
}

/// `events/{id}`: '/' cannot appear in a Firestore document id.
pub fn event_doc_id(event_id: &str) -> String {
    event_id.replace('%', "%25").replace('/', "%2F")
}

/// `enrollments/{student key}__{course id}`.
pub fn enrollment_doc_id(student_key: &StudentKey, course: &CourseId) -> String {
    format!("{student_key}__{}", event_doc_id(course.as_str()))
}

/// `products/{source}__{product id}`.
pub fn product_doc_id(source: &str, product: &str) -> String {
    format!("{source}__{}", event_doc_id(product))
}

/// `charges/{source}__{charge id}`.
pub fn charge_doc_id(source: &str, charge: &str) -> String {
    product_doc_id(source, charge)
}

/// The `limit` newest jobs of `kind`.
fn newest_of_kind(mut jobs: Vec<JobDoc>, kind: JobKind, limit: u32) -> Vec<JobDoc> {
    jobs.retain(|j| j.kind == kind);
    jobs.sort_by(|a, b| b.started_at.cmp(&a.started_at).then_with(|| b.id.cmp(&a.id)));
    jobs.truncate(limit as usize);
    jobs
}
