//! Events that name only a charge or a grant (Stripe refunds, disputes, subscription updates,
//! one-off purchases without their product), resolved by the engine over the in-memory store:
//! the charge index, the grant's record, and a source lookup double standing in for Stripe's API.

#![allow(clippy::unwrap_used, reason = "tests: a panic is the failure report")]

use async_trait::async_trait;
use lms_bridge_backend::clock::{Clock, ManualClock};
use lms_bridge_backend::commands::parse_mappings;
use lms_bridge_backend::engine::{ApplyError, Engine, LookupError, MissingLookup, Outcome, SourceLookup};
use lms_bridge_backend::lms::{Enrolled, EnsuredUser, Lms, LmsError, LmsStudent, LmsUserId};
use lms_bridge_backend::store::docs::EventStatus;
use lms_bridge_backend::store::{MemoryStore, StateStore};
use lms_bridge_shared::event::{Product, Student};
use lms_bridge_shared::{
    Change, Charge, ChargeId, CourseId, Email, Event, EventId, GrantId, Pepper, ProductId, RevokeReason, SourceName,
    Timestamp,
};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const DAY_MS: i64 = 86_400_000;

/// A subscription product (course 201, no grace) and a one-off product for life (course 301).
const MAPPINGS: &str = r#"
[[product]]
source = "stripe"
product_id = "prod_SUB"
courses = ["201"]
policy = { type = "subscription", grace_days = 0 }

[[product]]
source = "stripe"
product_id = "prod_ONE"
courses = ["301"]
policy = { type = "lifetime" }
"#;

/// Records every call by the student's email; every call succeeds.
#[derive(Default)]
struct RecordingLms {
    calls: Mutex<Vec<String>>,
    emails: Mutex<BTreeMap<String, String>>,
}

impl RecordingLms {
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.calls.lock().unwrap())
    }

    fn email(&self, user: &LmsUserId) -> String {
        self.emails.lock().unwrap().get(&user.0).cloned().unwrap_or_default()
    }
}

#[async_trait]
impl Lms for RecordingLms {
    fn name(&self) -> &'static str {
        "recording"
    }

    async fn ensure_user(&self, student: &LmsStudent) -> Result<EnsuredUser, LmsError> {
        let id = format!("user-{}", student.key);
        self.emails.lock().unwrap().insert(id.clone(), student.email.clone());
        Ok(EnsuredUser { id: LmsUserId(id), created: true, learner: true })
    }

    async fn enroll(&self, user: &LmsUserId, course: &CourseId) -> Result<Enrolled, LmsError> {
        self.calls.lock().unwrap().push(format!("enroll {} {course}", self.email(user)));
        Ok(Enrolled::Now)
    }

    async fn unenroll(&self, user: &LmsUserId, course: &CourseId) -> Result<(), LmsError> {
        self.calls.lock().unwrap().push(format!("unenroll {} {course}", self.email(user)));
        Ok(())
    }

    async fn set_active(&self, _user: &LmsUserId, _active: bool) -> Result<(), LmsError> {
        Ok(())
    }
}

/// Stripe's API as a table: the ids behind a charge, the product behind a payment intent.
#[derive(Default)]
struct TableLookup {
    aliases: BTreeMap<String, Vec<String>>,
    products: BTreeMap<String, String>,
    fail: Option<LookupError>,
    calls: AtomicUsize,
}

#[async_trait]
impl SourceLookup for TableLookup {
    fn source(&self) -> &str {
        "stripe"
    }

    async fn charge_aliases(&self, charge: &ChargeId) -> Result<Vec<ChargeId>, LookupError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if let Some(e) = &self.fail {
            return Err(e.clone());
        }
        let ids = self.aliases.get(charge.as_str()).cloned().unwrap_or_default();
        Ok(ids.into_iter().map(|id| ChargeId::parse(id).unwrap()).collect())
    }

    async fn grant_product(&self, grant: &GrantId) -> Result<Option<ProductId>, LookupError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if let Some(e) = &self.fail {
            return Err(e.clone());
        }
        Ok(self.products.get(grant.as_str()).map(|p| ProductId::parse(p).unwrap()))
    }
}

fn at(ms: i64) -> Timestamp {
    Timestamp::from_unix_millis(ms).unwrap()
}

const T0: i64 = 1_767_225_600_000;

struct World {
    engine: Engine<MemoryStore>,
    lms: Arc<RecordingLms>,
    clock: Arc<ManualClock>,
}

async fn world(lookup: Option<Arc<dyn SourceLookup>>) -> World {
    let store = MemoryStore::new();
    for mapping in parse_mappings(MAPPINGS).unwrap() {
        store.put_mapping(&mapping, at(T0)).await.unwrap();
    }
    let lms = Arc::new(RecordingLms::default());
    let clock = Arc::new(ManualClock::new(at(T0)));
    let mut engine = Engine::new(store, lms.clone(), clock.clone());
    engine.pepper = Pepper::new("resolve-test-pepper");
    engine.lookup = lookup;
    World { engine, lms, clock }
}

/// A Stripe event received now (the world's clock), as the edge would publish it.
fn event(w: &World, id: &str, change: Change) -> Event {
    let now = w.clock.now();
    Event {
        schema: Cow::Borrowed(lms_bridge_shared::SCHEMA),
        id: EventId::parse(format!("stripe:{id}")).unwrap(),
        source: SourceName::parse("stripe").unwrap(),
        source_event: "test".into(),
        change,
        occurred_at: now,
        received_at: now,
        effective_at: now,
        clamped: false,
        student: None,
        product: None,
        grant_id: None,
        charge: None,
        subscription: None,
        amount: None,
        raw: None,
        raw_truncated: false,
        raw_sha256: None,
        admin: None,
    }
}

fn student(email: &str) -> Option<Student> {
    Some(Student::new(Email::parse(email).unwrap()))
}

fn product(id: &str) -> Option<Product> {
    Some(Product { id: ProductId::parse(id).unwrap(), name: None, offer: None, plan: None })
}

fn charge(id: &str, next_charge_at: Option<Timestamp>) -> Option<Charge> {
    Some(Charge { id: ChargeId::parse(id).unwrap(), approved_at: None, next_charge_at })
}

fn grant(id: &str) -> Option<GrantId> {
    Some(GrantId::parse(id).unwrap())
}

/// `invoice.paid`: everything named; the subscription paid for 30 days.
fn invoice_paid(w: &World, id: &str, email: &str, subscription: &str, invoice: &str) -> Event {
    let mut e = event(w, id, Change::Approve);
    e.student = student(email);
    e.product = product("prod_SUB");
    e.grant_id = grant(subscription);
    e.charge = charge(invoice, Some(at(w.clock.now().unix_millis() + 30 * DAY_MS)));
    w.engine.keyed(e)
}

/// A refund that names only its charge.
fn refund_of(w: &World, id: &str, charge_id: &str) -> Event {
    let mut e = event(w, id, Change::Revoke { reason: RevokeReason::Refunded });
    e.charge = charge(charge_id, None);
    e
}

/// Round-trips through the JSON the backend reads, so the relaxed completeness check is part of it.
fn as_read(e: &Event) -> Event {
    Event::from_json(&e.to_json()).unwrap()
}

fn key_of(w: &World, email: &str) -> String {
    Email::parse(email).unwrap().student_key_with(w.engine.pepper.as_ref()).to_string()
}

#[tokio::test]
async fn a_refund_naming_only_its_invoice_unenrolls_the_grants_owner() {
    let w = world(None).await;
    let ana = "ana@example.com";
    assert_eq!(w.engine.apply(&invoice_paid(&w, "evt_1", ana, "sub_1", "in_1")).await.unwrap(), Outcome::Applied);
    // Another subscriber, whose grant must not be touched.
    w.engine.apply(&invoice_paid(&w, "evt_2", "bia@example.com", "sub_2", "in_2")).await.unwrap();
    assert_eq!(w.lms.take(), ["enroll ana@example.com 201", "enroll bia@example.com 201"]);

    let refund = as_read(&refund_of(&w, "evt_3", "in_1"));
    assert_eq!(w.engine.apply(&refund).await.unwrap(), Outcome::Applied);
    assert_eq!(w.lms.take(), ["unenroll ana@example.com 201"]);
    let record = w.engine.store.event("stripe:evt_3").await.unwrap().unwrap();
    assert_eq!(record.status, EventStatus::Applied);
    assert_eq!(record.student_key.map(|k| k.to_string()), Some(key_of(&w, ana)), "keyed the engine's way");
    // The refund is a fact of the invoice it named.
    let grant = w.engine.store.grant("stripe__sub_1").await.unwrap().unwrap();
    assert!(grant.state.charges[&ChargeId::parse("in_1").unwrap()].refunded.is_some());
    // Its redelivery is a duplicate.
    assert_eq!(w.engine.apply(&refund).await.unwrap(), Outcome::Duplicate);
}

#[tokio::test]
async fn a_refund_naming_a_payment_intent_is_resolved_through_the_lookup_and_indexed_for_next_time() {
    let lookup = Arc::new(TableLookup {
        aliases: BTreeMap::from([("pi_2".to_owned(), vec!["in_2".to_owned()])]),
        ..TableLookup::default()
    });
    let w = world(Some(lookup.clone())).await;
    w.engine.apply(&invoice_paid(&w, "evt_1", "ana@example.com", "sub_1", "in_2")).await.unwrap();
    w.lms.take();

    let dispute = as_read(&{
        let mut e = event(&w, "evt_2", Change::Dispute);
        e.charge = charge("pi_2", None);
        e
    });
    // The default dispute policy keeps access; what matters is whose grant it lands on.
    let outcome = w.engine.apply(&dispute).await.unwrap();
    assert!(matches!(outcome, Outcome::Applied), "{outcome:?}");
    assert_eq!(lookup.calls.load(Ordering::SeqCst), 1);
    let grant = w.engine.store.grant("stripe__sub_1").await.unwrap().unwrap();
    assert!(grant.state.charges[&ChargeId::parse("in_2").unwrap()].disputed.is_some(), "acted on the invoice");
    assert!(!grant.state.charges.contains_key(&ChargeId::parse("pi_2").unwrap()));
    let indexed = w.engine.store.charge("stripe", "pi_2").await.unwrap().unwrap();
    assert_eq!((indexed.grant_id.as_str(), indexed.charge_id.as_str()), ("sub_1", "in_2"), "an alias of the invoice");

    // The refund of the same payment intent: found in the index, no second call.
    assert_eq!(w.engine.apply(&as_read(&refund_of(&w, "evt_3", "pi_2"))).await.unwrap(), Outcome::Applied);
    assert_eq!(lookup.calls.load(Ordering::SeqCst), 1);
    assert_eq!(w.lms.take(), ["unenroll ana@example.com 201"]);
}

#[tokio::test]
async fn a_subscription_cancellation_naming_no_student_acts_on_the_owner() {
    let w = world(None).await;
    w.engine.apply(&invoice_paid(&w, "evt_1", "ana@example.com", "sub_1", "in_1")).await.unwrap();
    w.lms.take();
    // Deleted today, at the end of a period that ends now: access ends at once.
    let mut cancel = event(&w, "evt_2", Change::Cancel { period_end: Some(w.clock.now()) });
    cancel.grant_id = grant("sub_1");
    cancel.product = product("prod_SUB");
    assert_eq!(w.engine.apply(&as_read(&cancel)).await.unwrap(), Outcome::Applied);
    assert_eq!(w.lms.take(), ["unenroll ana@example.com 201"]);
    let record = w.engine.store.event("stripe:evt_2").await.unwrap().unwrap();
    assert_eq!(record.student_key.map(|k| k.to_string()), Some(key_of(&w, "ana@example.com")));
}

#[tokio::test]
async fn a_one_off_purchase_without_its_product_gets_it_from_the_lookup() {
    let lookup = Arc::new(TableLookup {
        products: BTreeMap::from([("pi_9".to_owned(), "prod_ONE".to_owned())]),
        ..TableLookup::default()
    });
    let w = world(Some(lookup.clone())).await;
    let mut purchase = event(&w, "evt_1", Change::Approve);
    purchase.student = student("caio@example.com");
    purchase.grant_id = grant("pi_9");
    purchase.charge = charge("pi_9", None);
    let purchase = w.engine.keyed(as_read(&purchase));
    assert_eq!(w.engine.apply(&purchase).await.unwrap(), Outcome::Applied);
    assert_eq!(w.lms.take(), ["enroll caio@example.com 301"]);

    // Its refund names the payment intent: the grant itself, in the index.
    assert_eq!(w.engine.apply(&as_read(&refund_of(&w, "evt_2", "pi_9"))).await.unwrap(), Outcome::Applied);
    assert_eq!(w.lms.take(), ["unenroll caio@example.com 301"]);
    assert_eq!(lookup.calls.load(Ordering::SeqCst), 1, "the refund needed no call");
}

#[tokio::test]
async fn an_unresolved_event_is_retried_while_young_then_failed_whole_and_applies_when_replayed() {
    let w = world(Some(Arc::new(MissingLookup { source: "stripe", setting: "STRIPE_API_KEY" }))).await;
    let refund = as_read(&refund_of(&w, "evt_1", "ch_7"));

    // Young: its purchase may be on the way; nothing is recorded.
    match w.engine.apply(&refund).await {
        Err(ApplyError::Unresolved(reason)) => assert!(reason.contains("ch_7"), "{reason}"),
        other => panic!("expected a retryable error, got {other:?}"),
    }
    assert!(w.engine.store.event("stripe:evt_1").await.unwrap().is_none());

    // Eleven minutes later: failed, with a reason that says what to do, kept whole.
    w.clock.advance(Duration::from_secs(11 * 60));
    let Outcome::Failed(reason) = w.engine.apply(&refund).await.unwrap() else { panic!("expected failed") };
    assert!(
        reason.starts_with("names charge ch_7 that no known grant has; replay it once its purchase is known"),
        "{reason}"
    );
    assert!(reason.contains("STRIPE_API_KEY"), "names the missing setting: {reason}");
    let record = w.engine.store.event("stripe:evt_1").await.unwrap().unwrap();
    assert_eq!(record.status, EventStatus::Failed);
    let kept = Event::from_json(record.event_json.unwrap().as_bytes()).unwrap();
    assert_eq!(kept, refund, "kept whole, as received");

    // Its purchase becomes known (a one-off whose grant is the charge); the replay applies.
    let mut purchase = invoice_paid(&w, "evt_2", "duda@example.com", "ch_7", "ch_7");
    purchase.product = product("prod_ONE");
    w.engine.apply(&purchase).await.unwrap();
    assert_eq!(w.engine.apply(&kept).await.unwrap(), Outcome::Applied);
    assert_eq!(w.lms.take(), ["enroll duda@example.com 301", "unenroll duda@example.com 301"]);
}

#[tokio::test]
async fn a_transient_lookup_failure_asks_for_a_redelivery_even_when_old() {
    let lookup = TableLookup { fail: Some(LookupError::Transient("rate limited".into())), ..TableLookup::default() };
    let w = world(Some(Arc::new(lookup))).await;
    let refund = as_read(&refund_of(&w, "evt_1", "pi_1"));
    w.clock.advance(Duration::from_secs(3600));
    assert!(matches!(w.engine.apply(&refund).await, Err(ApplyError::Lookup(LookupError::Transient(_)))));
    assert!(w.engine.store.event("stripe:evt_1").await.unwrap().is_none());
}

#[tokio::test]
async fn an_event_naming_a_grant_nobody_bought_fails_once_old_without_a_lookup() {
    let w = world(None).await;
    let mut cancel = event(&w, "evt_1", Change::Cancel { period_end: None });
    cancel.grant_id = grant("sub_unknown");
    cancel.product = product("prod_SUB");
    let cancel = as_read(&cancel);
    assert!(matches!(w.engine.apply(&cancel).await, Err(ApplyError::Unresolved(_))));
    w.clock.advance(Duration::from_secs(600));
    let Outcome::Failed(reason) = w.engine.apply(&cancel).await.unwrap() else { panic!("expected failed") };
    assert!(reason.contains("sub_unknown") && reason.contains("no student"), "{reason}");
}
