//! The jobs that find facts themselves: `backfill` (the buyers who existed before the bridge)
//! and `reconcile` (webhooks lost before they reached the edge). Both read Hotmart's REST API
//! (or its CSV export), turn what they read into the normalized events the edge would have
//! published (`crate::backfill`), leave out the facts the state already holds, and publish the
//! rest to the events topic: one intake path, so the access rules decide exactly as for
//! webhooks, per student in order, and a fact told twice is applied once. Each run keeps a
//! `jobs/{id}` record: what it was asked, where it is, what it found.

pub mod backfill;
pub mod progress;
pub mod reconcile;

use crate::backfill::{
    sale_events, subscription_events, ChargeRecord, CsvError, RecordError, SaleRecord, SubscriptionRecord,
};
use crate::clock::Clock;
use crate::hotmart_api::{HotmartApi, HotmartApiError, Sale, Subscription};
use crate::publish::{EventPublisher, PublishError};
use crate::store::docs::{JobCounts, JobDoc, JobKind, JobStatus};
use crate::store::{StateStore, StoreError};
use lms_bridge_shared::{grant_key, Event, EventId, Pepper, Timestamp};
use std::collections::HashSet;

/// Known-fact lookups in flight at once.
const KNOWN_LOOKUPS: usize = 16;

/// Why a job stopped.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The state store failed; the job resumes from its last checkpoint.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Hotmart's API failed past its retries, or refused the credentials or the query.
    #[error("Hotmart API: {0}")]
    Api(#[from] HotmartApiError),
    /// Publishing failed; the page is published again on resume (duplicates are no-ops).
    #[error(transparent)]
    Publish(#[from] PublishError),
    /// The export cannot be read at all.
    #[error("CSV export: {0}")]
    Csv(#[from] CsvError),
    /// What was asked cannot be done.
    #[error("{0}")]
    BadInput(String),
}

/// Where the facts a job finds go.
pub enum Destination {
    /// To the events topic.
    Publish(std::sync::Arc<EventPublisher>),
    /// Nowhere: kept for `--dry-run`, which prints the access they give.
    DryRun(Vec<Event>),
}

/// Takes the facts a job finds: keys their students as the deployment does, leaves out what
/// the state already holds, and sends the rest to the [`Destination`].
pub struct FactSink<'a, S> {
    store: Option<&'a S>,
    /// Where new facts go.
    pub destination: Destination,
    pepper: Option<Pepper>,
    /// Event ids already sent by this run (pages can repeat rows while Hotmart inserts).
    sent: HashSet<EventId>,
}

impl<'a, S: StateStore> FactSink<'a, S> {
    /// A sink; without a store (a dry run with no state at hand) every fact counts as new.
    pub fn new(store: Option<&'a S>, destination: Destination, pepper: Option<Pepper>) -> Self {
        Self { store, destination, pepper, sent: HashSet::new() }
    }

    /// Offers the facts of one page; counts what was known and what was sent.
    pub async fn offer(&mut self, counts: &mut JobCounts, events: Vec<Event>) -> Result<(), JobError> {
        counts.facts += events.len() as u64;
        let mut candidates = Vec::with_capacity(events.len());
        for mut event in events {
            event.key_student(self.pepper.as_ref());
            if self.sent.contains(&event.id) {
                counts.known += 1;
            } else {
                candidates.push(event);
            }
        }
        // The lookups of a page run side by side, 16 at a time (each is two or three reads);
        // the publishing order is kept.
        let mut known = Vec::with_capacity(candidates.len());
        if let Some(store) = self.store {
            for chunk in candidates.chunks(KNOWN_LOOKUPS) {
                let mut lookups = Vec::with_capacity(chunk.len());
                for event in chunk {
                    lookups.push(knows(store, event));
                }
                known.extend(futures::future::try_join_all(lookups).await?);
            }
        } else {
            known.resize(candidates.len(), false);
        }
        let mut fresh = Vec::new();
        for (event, known) in candidates.into_iter().zip(known) {
            if known {
                counts.known += 1;
            } else {
                fresh.push(event);
            }
        }
        match &mut self.destination {
            Destination::Publish(publisher) => publisher.publish(&fresh).await?,
            Destination::DryRun(kept) => kept.extend(fresh.iter().cloned()),
        }
        counts.published += fresh.len() as u64;
        self.sent.extend(fresh.into_iter().map(|e| e.id));
        Ok(())
    }
}

/// Whether the state already holds the fact `event` states: the event itself was recorded
/// (under this id), or its grant's facts would not change by it (the same fact came by
/// webhook, under another id, or an earlier revocation already stands).
pub async fn knows<S: StateStore>(store: &S, event: &Event) -> Result<bool, StoreError> {
    if store.event(event.id.as_str()).await?.is_some() {
        return Ok(true);
    }
    let (Some(product), Some(grant)) = (&event.product, &event.grant_id) else { return Ok(false) };
    // Without a mapping the backend keeps the event as `unmapped`: it must get there.
    let Some(mapping) = store.mapping(event.source.as_str(), product.id.as_str()).await? else { return Ok(false) };
    let Some(record) = store.grant(&grant_key(&event.source, grant)).await? else { return Ok(false) };
    let mut facts = record.state;
    Ok(!facts.record(event, &mapping).unwrap_or(true))
}

/// A job's record and its checkpoints. Without a store (a dry run) it only counts.
pub struct JobRun<'a, S> {
    store: Option<&'a S>,
    clock: &'a dyn Clock,
    /// The record.
    pub doc: JobDoc,
}

impl<'a, S: StateStore> JobRun<'a, S> {
    /// A new run, or the interrupted one with the same id (resumed from its cursor).
    pub async fn start(
        store: Option<&'a S>,
        clock: &'a dyn Clock,
        id: String,
        kind: JobKind,
        params: String,
    ) -> Result<Self, JobError> {
        let now = clock.now();
        if let Some(store) = store {
            if let Some(mut doc) = store.job(&id).await? {
                if doc.status == JobStatus::Running && doc.params == params {
                    doc.updated_at = now;
                    return Ok(Self { store: Some(store), clock, doc });
                }
            }
        }
        let doc = JobDoc {
            id,
            kind,
            status: JobStatus::Running,
            params,
            cursor: None,
            counts: JobCounts::default(),
            errors: Vec::new(),
            started_at: now,
            updated_at: now,
            finished_at: None,
        };
        let mut run = Self { store, clock, doc };
        run.save().await?;
        Ok(run)
    }

    /// Whether this run picks up an interrupted one.
    pub fn resumed(&self) -> bool {
        self.doc.cursor.is_some()
    }

    /// Saves the position to resume from (what is before it is done).
    pub async fn checkpoint(&mut self, cursor: String) -> Result<(), JobError> {
        self.doc.cursor = Some(cursor);
        self.save().await
    }

    /// Ends the run.
    pub async fn finish(&mut self, status: JobStatus) -> Result<(), JobError> {
        self.doc.status = status;
        self.doc.finished_at = Some(self.clock.now());
        self.save().await
    }

    /// Saves the record as it is (its counts and errors), keeping its position.
    pub async fn save(&mut self) -> Result<(), JobError> {
        self.doc.updated_at = self.clock.now();
        if let Some(store) = self.store {
            store.put_job(&self.doc).await?;
        }
        Ok(())
    }
}

/// A subscription with its charges, read for the facts: a charge that cannot be read is left
/// out and reported (the others still count), a subscription that cannot be read is reported.
pub async fn subscription_record(
    api: &HotmartApi,
    subscription: &Subscription,
    errors: &mut Vec<String>,
) -> Result<Option<SubscriptionRecord>, HotmartApiError> {
    let code = &subscription.subscriber_code;
    let purchases = match api.subscription_purchases(code).await {
        Ok(purchases) => purchases,
        // Listed, then gone (or a sandbox that lists what it cannot show): nothing to say.
        Err(HotmartApiError::NotFound { .. }) => Vec::new(),
        Err(e) => return Err(e),
    };
    let mut charges = Vec::new();
    for purchase in &purchases {
        match ChargeRecord::from_api(&purchase.item.0) {
            Ok(charge) => charges.push(charge),
            Err(e) => errors.push(row_error(&format!("subscription {code}, charge {}", purchase.transaction), &e)),
        }
    }
    match SubscriptionRecord::from_api(&subscription.item.0, charges) {
        Ok(record) => Ok(Some(record)),
        Err(e) => {
            errors.push(row_error(&format!("subscription {code}"), &e));
            Ok(None)
        }
    }
}

/// The facts of one page of sales. Sales that belong to a subscription state nothing on their
/// own (their grant is the subscription): they are returned apart, for the caller to find
/// their subscription or to count them as skipped.
pub fn sale_facts(sales: &[Sale], doc: &mut JobDoc, now: Timestamp) -> (Vec<Event>, Vec<SaleRecord>) {
    doc.counts.records += sales.len() as u64;
    let mut events = Vec::new();
    let mut of_subscriptions = Vec::new();
    for sale in sales {
        match SaleRecord::from_api(&sale.item.0) {
            Ok(record) if record.is_subscription == Some(true) => of_subscriptions.push(record),
            Ok(record) => {
                let found = sale_events(&record, now);
                if found.is_empty() {
                    doc.counts.skipped += 1;
                }
                events.extend(found);
            }
            Err(e) => doc.error(row_error(&format!("sale {}", sale.transaction), &e)),
        }
    }
    (events, of_subscriptions)
}

/// The facts of some subscriptions, each read with its charges.
pub async fn subscription_facts(
    api: &HotmartApi,
    subscriptions: &[Subscription],
    doc: &mut JobDoc,
    now: Timestamp,
) -> Result<Vec<Event>, HotmartApiError> {
    doc.counts.records += subscriptions.len() as u64;
    let mut events = Vec::new();
    for subscription in subscriptions {
        let mut errors = Vec::new();
        if let Some(record) = subscription_record(api, subscription, &mut errors).await? {
            events.extend(subscription_events(&record, now));
        }
        errors.into_iter().for_each(|e| doc.error(e));
    }
    Ok(events)
}

/// A record error with the record it is about.
pub fn row_error(record: &str, error: &RecordError) -> String {
    format!("{record}: {error}")
}

/// Milliseconds in a day.
pub const DAY_MS: i64 = 86_400_000;

/// `at` moved by `days` (negative: back).
pub fn days_from(at: Timestamp, days: i64) -> Timestamp {
    Timestamp::from_unix_millis(at.unix_millis().saturating_add(days.saturating_mul(DAY_MS))).unwrap_or(at)
}
