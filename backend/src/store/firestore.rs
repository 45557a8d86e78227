//! The Firestore adapter. Every time is stored as a native Firestore timestamp (see
//! `Timestamp`'s serializer), so range queries and the TTL policy on `events.expire_at` work.

use super::docs::{
    ChargeDoc, EnrollmentDoc, EventDoc, EventStatus, GrantDoc, JobDoc, JobKind, LmsAccount, ProductDoc, StudentDoc,
};
use super::{charge_doc_id, event_doc_id, newest_of_kind, product_doc_id, StateStore, StoreError, Tx};
use ::firestore::errors::BackoffError;
use ::firestore::{FirestoreDb, FirestoreQueryCursor, FirestoreTransaction, FirestoreValue};
use async_trait::async_trait;
use futures::future::BoxFuture;
use futures::{FutureExt, TryStreamExt};
use lms_bridge_shared::{ProductMapping, StudentKey, Timestamp};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Event records by `event_doc_id`.
pub const EVENTS: &str = "events";
/// Students by key.
pub const STUDENTS: &str = "students";
/// Enrollments by `{student key}__{course id}`.
pub const ENROLLMENTS: &str = "enrollments";
/// Grants by `{source}__{grant id}`: their facts, owner and placements.
pub const GRANTS: &str = "grants";
/// The charge index by `{source}__{charge id}`: the grant each charge belongs to.
pub const CHARGES: &str = "charges";
/// Product mappings by `{source}__{product id}`.
pub const PRODUCTS: &str = "products";
/// Backfill, reconcile and drift runs by job id.
pub const JOBS: &str = "jobs";
/// What operators did in the console, by random id.
pub const AUDIT: &str = "audit";

/// How long a mapping read is reused by the server.
const MAPPING_CACHE_TTL: Duration = Duration::from_secs(30);

/// The Firestore database, with a short cache of product mappings.
pub struct FirestoreStore {
    pub(super) db: FirestoreDb,
    mappings: Mutex<HashMap<String, (Instant, ProductMapping)>>,
}

impl FirestoreStore {
    /// Connects to `project` (the emulator when `FIRESTORE_EMULATOR_HOST` is set).
    pub async fn connect(project: &str) -> Result<Self, StoreError> {
        let db = FirestoreDb::new(project).await?;
        Ok(Self { db, mappings: Mutex::new(HashMap::new()) })
    }

    /// The sweep's pages: enrollments whose `field` is at or before `up_to` (active ones only
    /// when `active_only`), ordered by it, `limit` of them from the inclusive cursor `from`.
    pub(super) async fn enrollments_up_to(
        &self,
        field: &str,
        up_to: Timestamp,
        active_only: bool,
        from: Option<Timestamp>,
        limit: u32,
    ) -> Result<Vec<EnrollmentDoc>, StoreError> {
        let mut query = self
            .db
            .fluent()
            .select()
            .from(ENROLLMENTS)
            .filter(|q| {
                q.for_all([
                    active_only.then(|| q.field("access").eq("active")),
                    Some(q.field(field).less_than_or_equal(up_to)),
                ])
            })
            .order(|o| o.fields([o.field(field).ascending()]))
            .limit(limit);
        if let Some(from) = from {
            query = query.start_at(FirestoreQueryCursor::BeforeValue(vec![Into::<FirestoreValue>::into(from)]));
        }
        let stream = query.obj::<EnrollmentDoc>().stream_query_with_errors().await?;
        Ok(stream.try_collect().await?)
    }
}

/// One attempt of a Firestore transaction: reads go through the transaction's database handle
/// (so they see its snapshot and take its locks), writes are added to the transaction.
struct FirestoreTx<'b, 'a> {
    db: FirestoreDb,
    tx: &'b mut FirestoreTransaction<'a>,
}

#[async_trait]
impl Tx for FirestoreTx<'_, '_> {
    async fn event(&mut self, event_id: &str) -> Result<Option<EventDoc>, StoreError> {
        Ok(self.db.fluent().select().by_id_in(EVENTS).obj().one(&event_doc_id(event_id)).await?)
    }

    async fn enrollment(&mut self, doc_id: &str) -> Result<Option<EnrollmentDoc>, StoreError> {
        Ok(self.db.fluent().select().by_id_in(ENROLLMENTS).obj().one(doc_id).await?)
    }

    async fn student(&mut self, key: &StudentKey) -> Result<Option<StudentDoc>, StoreError> {
        Ok(self.db.fluent().select().by_id_in(STUDENTS).obj().one(key.as_str()).await?)
    }

    async fn grant(&mut self, key: &str) -> Result<Option<GrantDoc>, StoreError> {
        Ok(self.db.fluent().select().by_id_in(GRANTS).obj().one(&event_doc_id(key)).await?)
    }

    async fn charge(&mut self, source: &str, charge_id: &str) -> Result<Option<ChargeDoc>, StoreError> {
        Ok(self.db.fluent().select().by_id_in(CHARGES).obj().one(&charge_doc_id(source, charge_id)).await?)
    }

    fn put_charge(&mut self, charge_id: &str, doc: &ChargeDoc) -> Result<(), StoreError> {
        self.db
            .fluent()
            .update()
            .in_col(CHARGES)
            .document_id(charge_doc_id(doc.source.as_str(), charge_id))
            .object(doc)
            .add_to_transaction(self.tx)?;
        Ok(())
    }

    fn put_grant(&mut self, key: &str, doc: &GrantDoc) -> Result<(), StoreError> {
        self.db
            .fluent()
            .update()
            .in_col(GRANTS)
            .document_id(event_doc_id(key))
            .object(doc)
            .add_to_transaction(self.tx)?;
        Ok(())
    }

    fn put_event(&mut self, doc: &EventDoc) -> Result<(), StoreError> {
        self.db
            .fluent()
            .update()
            .in_col(EVENTS)
            .document_id(event_doc_id(doc.id.as_str()))
            .object(doc)
            .add_to_transaction(self.tx)?;
        Ok(())
    }

    fn put_enrollment(&mut self, doc_id: &str, doc: &EnrollmentDoc) -> Result<(), StoreError> {
        self.db.fluent().update().in_col(ENROLLMENTS).document_id(doc_id).object(doc).add_to_transaction(self.tx)?;
        Ok(())
    }

    fn put_student(&mut self, doc: &StudentDoc) -> Result<(), StoreError> {
        self.db
            .fluent()
            .update()
            .in_col(STUDENTS)
            .document_id(doc.key.as_str())
            .object(doc)
            .add_to_transaction(self.tx)?;
        Ok(())
    }
}

#[async_trait]
impl StateStore for FirestoreStore {
    async fn transaction<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'t> Fn(&'t mut dyn Tx) -> BoxFuture<'t, Result<T, StoreError>> + Send + Sync + 'static,
    {
        // Each attempt's future must own what it uses: Firestore may run several.
        let f = Arc::new(f);
        let result = self
            .db
            .run_transaction(|db, tx| {
                let f = Arc::clone(&f);
                async move {
                    let mut tx = FirestoreTx { db, tx };
                    // The body's own errors are not retried (as `?` on a read did before);
                    // Firestore retries contended commits.
                    f(&mut tx).await.map_err(BackoffError::permanent)
                }
                .boxed()
            })
            .await?;
        Ok(result)
    }

    async fn mapping(&self, source: &str, product: &str) -> Result<Option<ProductMapping>, StoreError> {
        let id = product_doc_id(source, product);
        if let Ok(cache) = self.mappings.lock() {
            if let Some((at, mapping)) = cache.get(&id) {
                if at.elapsed() < MAPPING_CACHE_TTL {
                    return Ok(Some(mapping.clone()));
                }
            }
        }
        let doc: Option<ProductDoc> = self.db.fluent().select().by_id_in(PRODUCTS).obj().one(&id).await?;
        let mapping = doc.map(|d| d.mapping);
        // A miss is never kept: a mapping saved a moment ago (by `mappings import` or the
        // console, which then sends the events that waited for it) must apply to them at once.
        // A miss costs one read, next to the unmapped record it leads to.
        if let (Some(mapping), Ok(mut cache)) = (&mapping, self.mappings.lock()) {
            cache.insert(id, (Instant::now(), mapping.clone()));
        }
        Ok(mapping)
    }

    async fn put_mapping(&self, mapping: &ProductMapping, now: Timestamp) -> Result<(), StoreError> {
        let id = product_doc_id(mapping.source.as_str(), mapping.product_id.as_str());
        let doc = ProductDoc { mapping: mapping.clone(), updated_at: now };
        let _: ProductDoc = self.db.fluent().update().in_col(PRODUCTS).document_id(&id).object(&doc).execute().await?;
        Ok(())
    }

    async fn list_mappings(&self) -> Result<Vec<ProductMapping>, StoreError> {
        let docs: Vec<ProductDoc> = self.db.fluent().select().from(PRODUCTS).obj().query().await?;
        Ok(docs.into_iter().map(|d| d.mapping).collect())
    }

    async fn event(&self, event_id: &str) -> Result<Option<EventDoc>, StoreError> {
        Ok(self.db.fluent().select().by_id_in(EVENTS).obj().one(&event_doc_id(event_id)).await?)
    }

    async fn put_event(&self, doc: &EventDoc) -> Result<(), StoreError> {
        let _: EventDoc = self
            .db
            .fluent()
            .update()
            .in_col(EVENTS)
            .document_id(event_doc_id(doc.id.as_str()))
            .object(doc)
            .execute()
            .await?;
        Ok(())
    }

    async fn events_with_status(&self, status: EventStatus) -> Result<Vec<EventDoc>, StoreError> {
        let docs = self
            .db
            .fluent()
            .select()
            .from(EVENTS)
            .filter(|q| q.for_all([q.field("status").eq(status.as_str())]))
            .obj()
            .query()
            .await?;
        Ok(docs)
    }

    async fn student(&self, key: &StudentKey) -> Result<Option<StudentDoc>, StoreError> {
        Ok(self.db.fluent().select().by_id_in(STUDENTS).obj().one(key.as_str()).await?)
    }

    async fn set_lms_user(&self, key: &StudentKey, lms: &str, account: &LmsAccount) -> Result<(), StoreError> {
        // Only these fields are written (the mask), so no read is needed first; `created` is
        // written only when true, so it never goes back to false.
        let mut fields = vec![format!("lms_user_ids.{lms}"), format!("lms_learner.{lms}")];
        let mut doc = StudentDoc::empty(key);
        doc.lms_user_ids.insert(lms.to_owned(), account.id.clone());
        doc.lms_learner.insert(lms.to_owned(), account.learner);
        if account.created {
            fields.push(format!("lms_created.{lms}"));
            doc.lms_created.insert(lms.to_owned(), true);
        }
        let _: StudentDoc = self
            .db
            .fluent()
            .update()
            .fields(fields.iter().map(String::as_str))
            .in_col(STUDENTS)
            .document_id(key.as_str())
            .object(&doc)
            .execute()
            .await?;
        Ok(())
    }

    async fn enrollments_of(&self, student_key: &StudentKey) -> Result<Vec<EnrollmentDoc>, StoreError> {
        let docs = self
            .db
            .fluent()
            .select()
            .from(ENROLLMENTS)
            .filter(|q| q.for_all([q.field("student_key").eq(student_key.as_str())]))
            .obj()
            .query()
            .await?;
        Ok(docs)
    }

    async fn expired_enrollments(
        &self,
        now: Timestamp,
        from: Option<Timestamp>,
        limit: u32,
    ) -> Result<Vec<EnrollmentDoc>, StoreError> {
        // Composite index `access` + `access_until`, see deploy/firestore.indexes.json.
        self.enrollments_up_to("access_until", now, true, from, limit).await
    }

    async fn stale_pending(
        &self,
        before: Timestamp,
        from: Option<Timestamp>,
        limit: u32,
    ) -> Result<Vec<EnrollmentDoc>, StoreError> {
        self.enrollments_up_to("pending_since", before, false, from, limit).await
    }

    async fn grant(&self, key: &str) -> Result<Option<GrantDoc>, StoreError> {
        Ok(self.db.fluent().select().by_id_in(GRANTS).obj().one(&event_doc_id(key)).await?)
    }

    async fn charge(&self, source: &str, charge_id: &str) -> Result<Option<ChargeDoc>, StoreError> {
        Ok(self.db.fluent().select().by_id_in(CHARGES).obj().one(&charge_doc_id(source, charge_id)).await?)
    }

    async fn enrollments_after(
        &self,
        after: Option<&StudentKey>,
        limit: u32,
    ) -> Result<Vec<EnrollmentDoc>, StoreError> {
        // One field, so the automatic single-field index serves it.
        let mut query = self
            .db
            .fluent()
            .select()
            .from(ENROLLMENTS)
            .order(|o| o.fields([o.field("student_key").ascending()]))
            .limit(limit);
        if let Some(after) = after {
            query =
                query.start_at(FirestoreQueryCursor::AfterValue(vec![Into::<FirestoreValue>::into(after.as_str())]));
        }
        let stream = query.obj::<EnrollmentDoc>().stream_query_with_errors().await?;
        Ok(stream.try_collect().await?)
    }

    async fn job(&self, id: &str) -> Result<Option<JobDoc>, StoreError> {
        Ok(self.db.fluent().select().by_id_in(JOBS).obj().one(&event_doc_id(id)).await?)
    }

    async fn put_job(&self, doc: &JobDoc) -> Result<(), StoreError> {
        let _: JobDoc =
            self.db.fluent().update().in_col(JOBS).document_id(event_doc_id(&doc.id)).object(doc).execute().await?;
        Ok(())
    }

    async fn recent_jobs(&self, kind: JobKind, limit: u32) -> Result<Vec<JobDoc>, StoreError> {
        // Filtered by kind in memory: one kind's runs are few, and a kind + time order would
        // need a composite index for an operator listing.
        let docs: Vec<JobDoc> = self.db.fluent().select().from(JOBS).obj().query().await?;
        Ok(newest_of_kind(docs, kind, limit))
    }
}
