//! The admin console's reads and its audit trail: Firestore only (the console runs over the
//! production state, never in memory), kept apart from the engine's [`StateStore`] port.
//!
//! [`StateStore`]: super::StateStore

use super::docs::{AuditDoc, EnrollmentDoc, EventDoc, EventStatus};
use super::firestore::{AUDIT, ENROLLMENTS, EVENTS};
use super::{FirestoreStore, StoreError};
use futures::TryStreamExt;
use lms_bridge_shared::{StudentKey, Timestamp};
use serde::Deserialize;
use std::collections::BTreeMap;

/// Counted for the overview without reading whole records.
#[derive(Deserialize)]
struct StatusOnly {
    status: EventStatus,
}

impl FirestoreStore {
    /// A student's events, newest first, at most `limit`.
    pub async fn events_of(&self, key: &StudentKey, limit: usize) -> Result<Vec<EventDoc>, StoreError> {
        // One equality filter: the automatic index serves it; sorted here.
        let mut docs: Vec<EventDoc> = self
            .db
            .fluent()
            .select()
            .from(EVENTS)
            .filter(|q| q.for_all([q.field("student_key").eq(key.as_str())]))
            .obj()
            .query()
            .await?;
        docs.sort_by(|a, b| b.processed_at.cmp(&a.processed_at).then_with(|| b.id.cmp(&a.id)));
        docs.truncate(limit);
        Ok(docs)
    }

    /// How many events were recorded since `since`, by status.
    pub async fn event_counts_since(&self, since: Timestamp) -> Result<BTreeMap<&'static str, u64>, StoreError> {
        let stream = self
            .db
            .fluent()
            .select()
            .fields(["status"])
            .from(EVENTS)
            .filter(|q| q.for_all([q.field("processed_at").greater_than_or_equal(since)]))
            .obj::<StatusOnly>()
            .stream_query_with_errors()
            .await?;
        let docs: Vec<StatusOnly> = stream.try_collect().await?;
        let mut counts = BTreeMap::new();
        for doc in docs {
            *counts.entry(doc.status.as_str()).or_insert(0) += 1;
        }
        Ok(counts)
    }

    /// Enrollments with failed LMS actions, oldest failure first, at most `limit`.
    pub async fn enrollments_with_failed(&self, now: Timestamp, limit: u32) -> Result<Vec<EnrollmentDoc>, StoreError> {
        self.enrollments_up_to("failed_since", now, false, None, limit).await
    }

    /// One enrollment, outside any transaction.
    pub async fn enrollment(&self, doc_id: &str) -> Result<Option<EnrollmentDoc>, StoreError> {
        Ok(self.db.fluent().select().by_id_in(ENROLLMENTS).obj().one(doc_id).await?)
    }

    /// Records what an operator did.
    pub async fn put_audit(&self, doc: &AuditDoc) -> Result<(), StoreError> {
        self.db.fluent().update().in_col(AUDIT).document_id(&doc.id).object(doc).execute::<()>().await?;
        Ok(())
    }

    /// What operators did about a student, newest first.
    pub async fn audit_of(&self, key: &StudentKey) -> Result<Vec<AuditDoc>, StoreError> {
        let mut docs: Vec<AuditDoc> = self
            .db
            .fluent()
            .select()
            .from(AUDIT)
            .filter(|q| q.for_all([q.field("student_key").eq(key.as_str())]))
            .obj()
            .query()
            .await?;
        docs.sort_by_key(|d| std::cmp::Reverse(d.at));
        Ok(docs)
    }

    /// The latest things operators did, newest first.
    pub async fn recent_audit(&self, limit: u32) -> Result<Vec<AuditDoc>, StoreError> {
        let stream = self
            .db
            .fluent()
            .select()
            .from(AUDIT)
            .order(|o| o.fields([o.field("at").descending()]))
            .limit(limit)
            .obj::<AuditDoc>()
            .stream_query_with_errors()
            .await?;
        Ok(stream.try_collect().await?)
    }
}
