//! Firestore state (DESIGN §4.3). Document ids never contain raw emails; every time is stored
//! as a native Firestore timestamp (see `Timestamp`'s serializer), so range queries and the
//! TTL policy on `events.expire_at` work.

pub mod docs;

use docs::{EnrollmentDoc, EventDoc, ProductDoc, StudentDoc};
use firestore::FirestoreDb;
use futures::TryStreamExt;
use lms_bridge_shared::{ProductMapping, Timestamp};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Collection names.
pub const EVENTS: &str = "events";
/// Students by key.
pub const STUDENTS: &str = "students";
/// Enrollments by `{student key}__{course id}`.
pub const ENROLLMENTS: &str = "enrollments";
/// Product mappings by `{source}__{product id}`.
pub const PRODUCTS: &str = "products";

/// How long a mapping read is reused by the server.
const MAPPING_CACHE_TTL: Duration = Duration::from_secs(30);

/// A store failure; all of them are worth a retry (Firestore contention or unavailability).
#[derive(Debug, thiserror::Error)]
#[error("firestore: {0}")]
pub struct StoreError(#[from] pub firestore::errors::FirestoreError);

/// The Firestore database, with a short cache of product mappings.
pub struct Store {
    db: FirestoreDb,
    mappings: Mutex<HashMap<String, (Instant, Option<ProductMapping>)>>,
}

/// `events/{id}`: '/' cannot appear in a document id.
pub fn event_doc_id(event_id: &str) -> String {
    event_id.replace('%', "%25").replace('/', "%2F")
}

/// `enrollments/{student key}__{course id}`.
pub fn enrollment_doc_id(student_key: &str, course: &str) -> String {
    format!("{student_key}__{}", event_doc_id(course))
}

/// `products/{source}__{product id}`.
pub fn product_doc_id(source: &str, product: &str) -> String {
    format!("{source}__{}", event_doc_id(product))
}

impl Store {
    /// Connects to `project` (the emulator when `FIRESTORE_EMULATOR_HOST` is set).
    pub async fn connect(project: &str) -> Result<Self, StoreError> {
        let db = FirestoreDb::new(project).await?;
        Ok(Self { db, mappings: Mutex::new(HashMap::new()) })
    }

    /// The database handle, for transactions.
    pub fn db(&self) -> &FirestoreDb {
        &self.db
    }

    /// A product mapping, cached for a short while (mappings change rarely; events are many).
    pub async fn mapping(&self, source: &str, product: &str) -> Result<Option<ProductMapping>, StoreError> {
        let id = product_doc_id(source, product);
        if let Ok(cache) = self.mappings.lock() {
            if let Some((at, mapping)) = cache.get(&id) {
                if at.elapsed() < MAPPING_CACHE_TTL {
                    return Ok(mapping.clone());
                }
            }
        }
        let doc: Option<ProductDoc> = self.db.fluent().select().by_id_in(PRODUCTS).obj().one(&id).await?;
        let mapping = doc.map(|d| d.mapping);
        if let Ok(mut cache) = self.mappings.lock() {
            cache.insert(id, (Instant::now(), mapping.clone()));
        }
        Ok(mapping)
    }

    /// Inserts or replaces a mapping.
    pub async fn put_mapping(&self, mapping: &ProductMapping, now: Timestamp) -> Result<(), StoreError> {
        let id = product_doc_id(mapping.source.as_str(), mapping.product_id.as_str());
        let doc = ProductDoc { mapping: mapping.clone(), updated_at: now };
        let _: ProductDoc = self.db.fluent().update().in_col(PRODUCTS).document_id(&id).object(&doc).execute().await?;
        Ok(())
    }

    /// Every mapping, ordered by id.
    pub async fn list_mappings(&self) -> Result<Vec<ProductMapping>, StoreError> {
        let docs: Vec<ProductDoc> = self.db.fluent().select().from(PRODUCTS).obj().query().await?;
        Ok(docs.into_iter().map(|d| d.mapping).collect())
    }

    /// One event record.
    pub async fn event(&self, event_id: &str) -> Result<Option<EventDoc>, StoreError> {
        Ok(self.db.fluent().select().by_id_in(EVENTS).obj().one(&event_doc_id(event_id)).await?)
    }

    /// Writes an event record as is (quarantine, failure, replay).
    pub async fn put_event(&self, doc: &EventDoc) -> Result<(), StoreError> {
        let _: EventDoc =
            self.db.fluent().update().in_col(EVENTS).document_id(event_doc_id(&doc.id)).object(doc).execute().await?;
        Ok(())
    }

    /// Events with a status, oldest first.
    pub async fn events_with_status(&self, status: &str) -> Result<Vec<EventDoc>, StoreError> {
        let docs = self
            .db
            .fluent()
            .select()
            .from(EVENTS)
            .filter(|q| q.for_all([q.field("status").eq(status)]))
            .obj()
            .query()
            .await?;
        Ok(docs)
    }

    /// A student record.
    pub async fn student(&self, key: &str) -> Result<Option<StudentDoc>, StoreError> {
        Ok(self.db.fluent().select().by_id_in(STUDENTS).obj().one(key).await?)
    }

    /// Saves the LMS user id of a student for an adapter. Only that one field is written (the
    /// mask), so no read is needed first.
    pub async fn set_lms_user(&self, key: &str, lms: &str, user_id: &str) -> Result<(), StoreError> {
        let field = format!("lms_user_ids.{lms}");
        let mut doc = StudentDoc::empty(key);
        doc.lms_user_ids.insert(lms.to_owned(), user_id.to_owned());
        let _: StudentDoc = self
            .db
            .fluent()
            .update()
            .fields([field.as_str()])
            .in_col(STUDENTS)
            .document_id(key)
            .object(&doc)
            .execute()
            .await?;
        Ok(())
    }

    /// One enrollment.
    pub async fn enrollment(&self, doc_id: &str) -> Result<Option<EnrollmentDoc>, StoreError> {
        Ok(self.db.fluent().select().by_id_in(ENROLLMENTS).obj().one(doc_id).await?)
    }

    /// A student's enrollments.
    pub async fn enrollments_of(&self, student_key: &str) -> Result<Vec<EnrollmentDoc>, StoreError> {
        let docs = self
            .db
            .fluent()
            .select()
            .from(ENROLLMENTS)
            .filter(|q| q.for_all([q.field("student_key").eq(student_key)]))
            .obj()
            .query()
            .await?;
        Ok(docs)
    }

    /// Active enrollments whose access ended at or before `now` (composite index
    /// `access` + `access_until`, see deploy/firestore.indexes.json).
    pub async fn expired_enrollments(&self, now: Timestamp) -> Result<Vec<EnrollmentDoc>, StoreError> {
        let stream = self
            .db
            .fluent()
            .select()
            .from(ENROLLMENTS)
            .filter(|q| q.for_all([q.field("access").eq("active"), q.field("access_until").less_than_or_equal(now)]))
            .obj::<EnrollmentDoc>()
            .stream_query_with_errors()
            .await?;
        Ok(stream.try_collect().await?)
    }

    /// Enrollments with LMS actions pending since before `before`.
    pub async fn stale_pending(&self, before: Timestamp) -> Result<Vec<EnrollmentDoc>, StoreError> {
        let docs = self
            .db
            .fluent()
            .select()
            .from(ENROLLMENTS)
            .filter(|q| q.for_all([q.field("pending_since").less_than_or_equal(before)]))
            .obj()
            .query()
            .await?;
        Ok(docs)
    }
}
