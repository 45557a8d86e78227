//! The in-memory adapter, for the offline simulator and tests. Transactions are serialized by
//! one lock held from the first read to the commit, so they never contend and run once.
//! Every collection is a `BTreeMap` by document id: queries answer in a fixed order, and runs
//! are reproducible.

use super::docs::{ChargeDoc, EnrollmentDoc, EventDoc, EventStatus, GrantDoc, JobDoc, JobKind, LmsAccount, StudentDoc};
use super::{charge_doc_id, event_doc_id, newest_of_kind, product_doc_id, StateStore, StoreError, Tx};
use async_trait::async_trait;
use futures::future::BoxFuture;
use lms_bridge_shared::Access;
use lms_bridge_shared::{ProductMapping, StudentKey, Timestamp};
use std::collections::BTreeMap;
use tokio::sync::Mutex;

/// The collections, by document id (the same ids the Firestore adapter uses).
#[derive(Debug, Default)]
struct Collections {
    events: BTreeMap<String, EventDoc>,
    students: BTreeMap<String, StudentDoc>,
    enrollments: BTreeMap<String, EnrollmentDoc>,
    grants: BTreeMap<String, GrantDoc>,
    charges: BTreeMap<String, ChargeDoc>,
    products: BTreeMap<String, ProductMapping>,
    jobs: BTreeMap<String, JobDoc>,
}

/// State in memory. Only the current document versions are kept (no TTL: event records stay).
#[derive(Debug, Default)]
pub struct MemoryStore {
    state: Mutex<Collections>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every enrollment, by document id: what `lms-bridge simulate` shows.
    pub async fn all_enrollments(&self) -> Vec<EnrollmentDoc> {
        self.state.lock().await.enrollments.values().cloned().collect()
    }
}

/// A transaction: reads from the state as it was when the transaction began (the lock keeps
/// it so), writes buffered until the body succeeds.
struct MemoryTx<'s> {
    snapshot: &'s Collections,
    writes: Collections,
}

#[async_trait]
impl Tx for MemoryTx<'_> {
    async fn event(&mut self, event_id: &str) -> Result<Option<EventDoc>, StoreError> {
        Ok(self.snapshot.events.get(&event_doc_id(event_id)).cloned())
    }

    async fn enrollment(&mut self, doc_id: &str) -> Result<Option<EnrollmentDoc>, StoreError> {
        Ok(self.snapshot.enrollments.get(doc_id).cloned())
    }

    async fn student(&mut self, key: &StudentKey) -> Result<Option<StudentDoc>, StoreError> {
        Ok(self.snapshot.students.get(key.as_str()).cloned())
    }

    async fn grant(&mut self, key: &str) -> Result<Option<GrantDoc>, StoreError> {
        Ok(self.snapshot.grants.get(key).cloned())
    }

    async fn charge(&mut self, source: &str, charge_id: &str) -> Result<Option<ChargeDoc>, StoreError> {
        Ok(self.snapshot.charges.get(&charge_doc_id(source, charge_id)).cloned())
    }

    fn put_charge(&mut self, charge_id: &str, doc: &ChargeDoc) -> Result<(), StoreError> {
        self.writes.charges.insert(charge_doc_id(doc.source.as_str(), charge_id), doc.clone());
        Ok(())
    }

    fn put_grant(&mut self, key: &str, doc: &GrantDoc) -> Result<(), StoreError> {
        self.writes.grants.insert(key.to_owned(), doc.clone());
        Ok(())
    }

    fn put_event(&mut self, doc: &EventDoc) -> Result<(), StoreError> {
        self.writes.events.insert(event_doc_id(doc.id.as_str()), doc.clone());
        Ok(())
    }

    fn put_enrollment(&mut self, doc_id: &str, doc: &EnrollmentDoc) -> Result<(), StoreError> {
        self.writes.enrollments.insert(doc_id.to_owned(), doc.clone());
        Ok(())
    }

    fn put_student(&mut self, doc: &StudentDoc) -> Result<(), StoreError> {
        self.writes.students.insert(doc.key.to_string(), doc.clone());
        Ok(())
    }
}

#[async_trait]
impl StateStore for MemoryStore {
    async fn transaction<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'t> Fn(&'t mut dyn Tx) -> BoxFuture<'t, Result<T, StoreError>> + Send + Sync + 'static,
    {
        let mut state = self.state.lock().await;
        let mut tx = MemoryTx { snapshot: &state, writes: Collections::default() };
        let value = f(&mut tx).await?;
        let writes = tx.writes;
        state.events.extend(writes.events);
        state.students.extend(writes.students);
        state.enrollments.extend(writes.enrollments);
        state.grants.extend(writes.grants);
        state.charges.extend(writes.charges);
        state.products.extend(writes.products);
        Ok(value)
    }

    async fn mapping(&self, source: &str, product: &str) -> Result<Option<ProductMapping>, StoreError> {
        Ok(self.state.lock().await.products.get(&product_doc_id(source, product)).cloned())
    }

    async fn put_mapping(&self, mapping: &ProductMapping, _now: Timestamp) -> Result<(), StoreError> {
        let id = product_doc_id(mapping.source.as_str(), mapping.product_id.as_str());
        self.state.lock().await.products.insert(id, mapping.clone());
        Ok(())
    }

    async fn list_mappings(&self) -> Result<Vec<ProductMapping>, StoreError> {
        Ok(self.state.lock().await.products.values().cloned().collect())
    }

    async fn event(&self, event_id: &str) -> Result<Option<EventDoc>, StoreError> {
        Ok(self.state.lock().await.events.get(&event_doc_id(event_id)).cloned())
    }

    async fn put_event(&self, doc: &EventDoc) -> Result<(), StoreError> {
        self.state.lock().await.events.insert(event_doc_id(doc.id.as_str()), doc.clone());
        Ok(())
    }

    async fn events_with_status(&self, status: EventStatus) -> Result<Vec<EventDoc>, StoreError> {
        Ok(self.state.lock().await.events.values().filter(|e| e.status == status).cloned().collect())
    }

    async fn student(&self, key: &StudentKey) -> Result<Option<StudentDoc>, StoreError> {
        Ok(self.state.lock().await.students.get(key.as_str()).cloned())
    }

    async fn set_lms_user(&self, key: &StudentKey, lms: &str, account: &LmsAccount) -> Result<(), StoreError> {
        let mut state = self.state.lock().await;
        let student = state.students.entry(key.to_string()).or_insert_with(|| StudentDoc::empty(key));
        student.lms_user_ids.insert(lms.to_owned(), account.id.clone());
        student.lms_learner.insert(lms.to_owned(), account.learner);
        if account.created {
            student.lms_created.insert(lms.to_owned(), true);
        }
        Ok(())
    }

    async fn enrollments_of(&self, student_key: &StudentKey) -> Result<Vec<EnrollmentDoc>, StoreError> {
        let state = self.state.lock().await;
        Ok(state.enrollments.values().filter(|e| e.student_key == *student_key).cloned().collect())
    }

    async fn expired_enrollments(
        &self,
        now: Timestamp,
        from: Option<Timestamp>,
        limit: u32,
    ) -> Result<Vec<EnrollmentDoc>, StoreError> {
        let state = self.state.lock().await;
        let in_range = |t: Timestamp| t <= now && from.is_none_or(|f| t >= f);
        let expired = |e: &&EnrollmentDoc| e.access == Access::Active && e.access_until.is_some_and(in_range);
        Ok(page(state.enrollments.values().filter(expired), |e| e.access_until, limit))
    }

    async fn stale_pending(
        &self,
        before: Timestamp,
        from: Option<Timestamp>,
        limit: u32,
    ) -> Result<Vec<EnrollmentDoc>, StoreError> {
        let state = self.state.lock().await;
        let in_range = |t: Timestamp| t <= before && from.is_none_or(|f| t >= f);
        let stale = |e: &&EnrollmentDoc| e.pending_since.is_some_and(in_range);
        Ok(page(state.enrollments.values().filter(stale), |e| e.pending_since, limit))
    }

    async fn grant(&self, key: &str) -> Result<Option<GrantDoc>, StoreError> {
        Ok(self.state.lock().await.grants.get(key).cloned())
    }

    async fn charge(&self, source: &str, charge_id: &str) -> Result<Option<ChargeDoc>, StoreError> {
        Ok(self.state.lock().await.charges.get(&charge_doc_id(source, charge_id)).cloned())
    }

    async fn enrollments_after(
        &self,
        after: Option<&StudentKey>,
        limit: u32,
    ) -> Result<Vec<EnrollmentDoc>, StoreError> {
        let state = self.state.lock().await;
        let later = |e: &&EnrollmentDoc| after.is_none_or(|a| e.student_key > *a);
        Ok(page(state.enrollments.values().filter(later), |e| e.student_key.clone(), limit))
    }

    async fn job(&self, id: &str) -> Result<Option<JobDoc>, StoreError> {
        Ok(self.state.lock().await.jobs.get(id).cloned())
    }

    async fn put_job(&self, doc: &JobDoc) -> Result<(), StoreError> {
        self.state.lock().await.jobs.insert(doc.id.clone(), doc.clone());
        Ok(())
    }

    async fn recent_jobs(&self, kind: JobKind, limit: u32) -> Result<Vec<JobDoc>, StoreError> {
        Ok(newest_of_kind(self.state.lock().await.jobs.values().cloned().collect(), kind, limit))
    }
}

/// The first `limit` documents by `key`, as a Firestore query ordered by that field returns.
fn page<'a, K: Ord>(
    docs: impl Iterator<Item = &'a EnrollmentDoc>,
    key: impl Fn(&EnrollmentDoc) -> K,
    limit: u32,
) -> Vec<EnrollmentDoc> {
    let mut docs: Vec<EnrollmentDoc> = docs.cloned().collect();
    docs.sort_by_key(|d| key(d));
    docs.truncate(limit as usize);
    docs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::docs::EnrollmentDoc;
    use crate::store::enrollment_doc_id;
    use futures::FutureExt;
    use lms_bridge_shared::CourseId;

    fn at(unix_millis: i64) -> Timestamp {
        Timestamp::from_unix_millis(unix_millis).unwrap()
    }

    fn event(id: &str, status: EventStatus) -> EventDoc {
        EventDoc {
            id: lms_bridge_shared::EventId::parse(id).unwrap(),
            status,
            reason: None,
            source_event: "PURCHASE_APPROVED".to_owned(),
            change: "grant".to_owned(),
            student_key: None,
            enrollments: Vec::new(),
            occurred_at: at(0),
            received_at: at(0),
            processed_at: at(0),
            expire_at: Some(at(0)),
            event_json: None,
            admin: None,
            decisions: Vec::new(),
        }
    }

    /// A student key made of one repeated hex digit, so tests can name students `a`, `b`.
    fn key(digit: &str) -> StudentKey {
        StudentKey::parse(digit.repeat(64)).unwrap()
    }

    fn enrollment(
        student: &str,
        course: &str,
        access: Access,
        until: Option<i64>,
        pending: Option<i64>,
    ) -> EnrollmentDoc {
        let mut doc = EnrollmentDoc::new(&key(student), &CourseId::parse(course).unwrap(), at(0));
        doc.access = access;
        doc.access_until = until.map(at);
        doc.pending_since = pending.map(at);
        doc
    }

    async fn put(store: &MemoryStore, doc: EnrollmentDoc) {
        store
            .transaction(move |tx| {
                let doc = doc.clone();
                async move { tx.put_enrollment(&enrollment_doc_id(&doc.student_key, &doc.course_id), &doc) }.boxed()
            })
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_transaction_commits_its_writes_when_it_succeeds() {
        let store = MemoryStore::new();
        let seen = store
            .transaction(|tx| {
                async move {
                    tx.put_event(&event("hotmart:a/1", EventStatus::Applied))?;
                    tx.put_student(&StudentDoc::empty(&key("1")))?;
                    // Reads see the snapshot the transaction began from, as in Firestore.
                    tx.event("hotmart:a/1").await
                }
                .boxed()
            })
            .await
            .unwrap();
        assert!(seen.is_none());
        assert_eq!(store.event("hotmart:a/1").await.unwrap().unwrap().status, EventStatus::Applied);
        assert!(store.student(&key("1")).await.unwrap().is_some());
        let again = store.transaction(|tx| async move { tx.event("hotmart:a/1").await }.boxed()).await.unwrap();
        assert!(again.is_some());
    }

    #[tokio::test]
    async fn a_failed_transaction_writes_nothing() {
        let store = MemoryStore::new();
        let result: Result<(), _> = store
            .transaction(|tx| {
                async move {
                    tx.put_event(&event("e1", EventStatus::Applied))?;
                    tx.put_student(&StudentDoc::empty(&key("1")))?;
                    Err(StoreError::Unavailable("injected".to_owned()))
                }
                .boxed()
            })
            .await;
        assert!(matches!(result, Err(StoreError::Unavailable(_))));
        assert!(store.event("e1").await.unwrap().is_none());
        assert!(store.student(&key("1")).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn queries_select_by_status_student_expiry_and_pending_age() {
        let store = MemoryStore::new();
        store.put_event(&event("e2", EventStatus::Quarantined)).await.unwrap();
        store.put_event(&event("e1", EventStatus::Quarantined)).await.unwrap();
        store.put_event(&event("e3", EventStatus::Applied)).await.unwrap();
        let quarantined = store.events_with_status(EventStatus::Quarantined).await.unwrap();
        assert_eq!(quarantined.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), ["e1", "e2"]);

        put(&store, enrollment("a", "1", Access::Active, Some(100), None)).await;
        put(&store, enrollment("a", "2", Access::Active, Some(101), Some(50))).await;
        put(&store, enrollment("a", "3", Access::Active, None, Some(60))).await;
        put(&store, enrollment("b", "1", Access::Inactive, Some(10), None)).await;
        let courses = |docs: Vec<EnrollmentDoc>| {
            docs.into_iter().map(|d| format!("{}/{}", &d.student_key.as_str()[..1], d.course_id)).collect::<Vec<_>>()
        };

        assert_eq!(courses(store.enrollments_of(&key("a")).await.unwrap()), ["a/1", "a/2", "a/3"]);
        assert!(store.enrollments_of(&key("c")).await.unwrap().is_empty());
        // Inclusive bound; inactive and unbounded access never expire.
        assert_eq!(courses(store.expired_enrollments(at(100), None, 10).await.unwrap()), ["a/1"]);
        assert_eq!(courses(store.expired_enrollments(at(101), None, 10).await.unwrap()), ["a/1", "a/2"]);
        assert_eq!(courses(store.stale_pending(at(50), None, 10).await.unwrap()), ["a/2"]);
        assert_eq!(courses(store.stale_pending(at(60), None, 10).await.unwrap()), ["a/2", "a/3"]);
        // Pages: ordered by the field, from an inclusive cursor.
        assert_eq!(courses(store.expired_enrollments(at(101), None, 1).await.unwrap()), ["a/1"]);
        assert_eq!(courses(store.expired_enrollments(at(101), Some(at(101)), 1).await.unwrap()), ["a/2"]);
        assert_eq!(courses(store.stale_pending(at(60), Some(at(51)), 10).await.unwrap()), ["a/3"]);
    }

    #[tokio::test]
    async fn mappings_and_lms_user_ids_round_trip() {
        let store = MemoryStore::new();
        let text = "[[product]]\nsource=\"hotmart\"\nproduct_id=\"9\"\ncourses=[\"101\"]\npolicy={type=\"lifetime\"}";
        let mapping = crate::commands::parse_mappings(text).unwrap().remove(0);
        store.put_mapping(&mapping, at(0)).await.unwrap();
        assert_eq!(store.mapping("hotmart", "9").await.unwrap().unwrap().product_id, mapping.product_id);
        assert!(store.mapping("hotmart", "8").await.unwrap().is_none());
        assert_eq!(store.list_mappings().await.unwrap().len(), 1);

        let account = |created| LmsAccount { id: "42".into(), created, learner: true };
        store.set_lms_user(&key("1"), "talentlms", &account(true)).await.unwrap();
        // A later lookup that finds the user does not make it someone else's.
        store.set_lms_user(&key("1"), "talentlms", &account(false)).await.unwrap();
        let student = store.student(&key("1")).await.unwrap().unwrap();
        assert_eq!(student.lms_user_ids.get("talentlms").map(String::as_str), Some("42"));
        assert!(student.bridge_owns_user("talentlms"));
    }
}
