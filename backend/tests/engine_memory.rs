//! The engine over the in-memory store and a recording LMS: no emulator, no network.

#![allow(clippy::unwrap_used, reason = "tests: a panic is the failure report")]

use async_trait::async_trait;
use futures::future::BoxFuture;
use lms_bridge_backend::clock::{Clock, ManualClock};
use lms_bridge_backend::commands::parse_mappings;
use lms_bridge_backend::engine::{ApplyError, Engine, Outcome};
use lms_bridge_backend::lms::{Enrolled, EnsuredUser, Lms, LmsError, LmsStudent, LmsUserId};
use lms_bridge_backend::store::docs::{
    ChargeDoc, EnrollmentDoc, EventDoc, EventStatus, GrantDoc, JobDoc, JobKind, LmsAccount, StudentDoc,
};
use lms_bridge_backend::store::{MemoryStore, StateStore, StoreError, Tx};
use lms_bridge_shared::admin::{HandAction, HandChange};
use lms_bridge_shared::source::hotmart;
use lms_bridge_shared::AdminNote;
use lms_bridge_shared::{CourseId, ProductMapping, StudentKey, Timestamp};
use std::sync::{Arc, Mutex};

/// Records every call; every call succeeds.
#[derive(Default)]
struct RecordingLms {
    calls: Mutex<Vec<String>>,
}

impl RecordingLms {
    fn record(&self, call: String) {
        self.calls.lock().unwrap().push(call);
    }

    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.calls.lock().unwrap())
    }
}

#[async_trait]
impl Lms for RecordingLms {
    fn name(&self) -> &'static str {
        "recording"
    }

    async fn ensure_user(&self, student: &LmsStudent) -> Result<EnsuredUser, LmsError> {
        self.record(format!("ensure_user {}", student.key));
        Ok(EnsuredUser { id: LmsUserId(format!("user-{}", student.key)), created: true, learner: true })
    }

    async fn enroll(&self, user: &LmsUserId, course: &CourseId) -> Result<Enrolled, LmsError> {
        self.record(format!("enroll {} {course}", user.0));
        Ok(Enrolled::Now)
    }

    async fn unenroll(&self, user: &LmsUserId, course: &CourseId) -> Result<(), LmsError> {
        self.record(format!("unenroll {} {course}", user.0));
        Ok(())
    }

    async fn set_active(&self, user: &LmsUserId, active: bool) -> Result<(), LmsError> {
        self.record(format!("set_active {} {active}", user.0));
        Ok(())
    }
}

const MAPPING: &str = r#"
[[product]]
source = "hotmart"
product_id = "4774438"
courses = ["101"]
policy = { type = "lifetime" }
"#;

#[tokio::test]
async fn a_purchase_enrolls_once_and_its_redelivery_does_nothing() {
    let received_at = Timestamp::from_unix_millis(1_763_994_200_000).unwrap();
    let body = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/hotmart/purchase_approved.json"))
        .unwrap();
    let event = hotmart::normalize(&body, received_at).unwrap();

    let store = MemoryStore::new();
    for mapping in parse_mappings(MAPPING).unwrap() {
        store.put_mapping(&mapping, received_at).await.unwrap();
    }
    let lms = Arc::new(RecordingLms::default());
    let clock = Arc::new(ManualClock::new(received_at));
    let engine = Engine::new(store, lms.clone(), clock.clone());

    assert_eq!(engine.apply(&event).await.unwrap(), Outcome::Applied);
    let calls = lms.take();
    assert_eq!(calls.iter().filter(|c| c.starts_with("enroll ") && c.ends_with(" 101")).count(), 1, "{calls:?}");
    assert!(calls.iter().all(|c| !c.starts_with("unenroll")), "{calls:?}");

    let key = event.student_key().unwrap().clone();
    let enrollments = engine.store.enrollments_of(&key).await.unwrap();
    assert_eq!(enrollments.len(), 1);
    assert!(enrollments[0].pending.is_empty(), "every action done: {:?}", enrollments[0].pending);
    let student = engine.store.student(&key).await.unwrap().unwrap();
    assert_eq!(student.lms_user_ids.get("recording"), Some(&format!("user-{key}")));
    let record = engine.store.event(event.id.as_str()).await.unwrap().unwrap();
    assert_eq!(record.processed_at, received_at, "the engine's time is the injected clock's");

    clock.advance(std::time::Duration::from_secs(60));
    assert_eq!(engine.apply(&event).await.unwrap(), Outcome::Duplicate);
    assert_eq!(lms.take(), Vec::<String>::new());
    let report = engine.sweep().await.unwrap();
    assert_eq!((report.ended, report.retried, report.errors, report.complete), (0, 0, 0, true));
    assert_eq!(lms.take(), Vec::<String>::new());
}

/// An LMS whose calls can be held until the test answers them, and that refuses one user.
#[derive(Default)]
struct ScriptedLms {
    /// Calls for this user id fail (transiently) every time.
    refuse: Mutex<Option<String>>,
    /// When set, each enroll/unenroll waits here for the test's answer.
    hold: Mutex<bool>,
    held: Mutex<Vec<tokio::sync::oneshot::Sender<Result<(), LmsError>>>>,
    done: Mutex<Vec<String>>,
}

impl ScriptedLms {
    async fn call(&self, what: String, user: &LmsUserId) -> Result<(), LmsError> {
        if self.refuse.lock().unwrap().as_deref() == Some(user.0.as_str()) {
            return Err(LmsError::Transient { message: "this user always fails".into(), retry_after: None });
        }
        if *self.hold.lock().unwrap() {
            let (tx, rx) = tokio::sync::oneshot::channel();
            self.held.lock().unwrap().push(tx);
            rx.await.unwrap_or(Err(LmsError::Transient { message: "dropped".into(), retry_after: None }))?;
        }
        self.done.lock().unwrap().push(what);
        Ok(())
    }

    /// Waits until `n` calls are held.
    async fn held(&self, n: usize) {
        for _ in 0..500 {
            if self.held.lock().unwrap().len() >= n {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("{n} held calls expected");
    }

    fn answer(&self, index: usize, result: Result<(), LmsError>) {
        let tx = self.held.lock().unwrap().remove(index);
        tx.send(result).ok();
    }
}

#[async_trait]
impl Lms for ScriptedLms {
    fn name(&self) -> &'static str {
        "scripted"
    }
    async fn ensure_user(&self, student: &LmsStudent) -> Result<EnsuredUser, LmsError> {
        Ok(EnsuredUser { id: LmsUserId(format!("user-{}", student.email)), created: true, learner: true })
    }
    async fn enroll(&self, user: &LmsUserId, course: &CourseId) -> Result<Enrolled, LmsError> {
        self.call(format!("enroll {} {course}", user.0), user).await.map(|()| Enrolled::Now)
    }
    async fn unenroll(&self, user: &LmsUserId, course: &CourseId) -> Result<(), LmsError> {
        self.call(format!("unenroll {} {course}", user.0), user).await
    }
    async fn set_active(&self, _user: &LmsUserId, _active: bool) -> Result<(), LmsError> {
        Ok(())
    }
}

const FIXED_TERM: &str = r#"
[[product]]
source = "hotmart"
product_id = "4774440"
courses = ["103"]
policy = { type = "fixed_days", days = 1 }
"#;

/// A one-day purchase of course 103 by `email`, approved at `at`.
fn fixed_term_purchase(email: &str, at: Timestamp) -> lms_bridge_shared::Event {
    let mut raw: serde_json::Value = serde_json::from_slice(
        &std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/hotmart/purchase_approved.json"))
            .unwrap(),
    )
    .unwrap();
    raw["id"] = format!("buy-{email}").into();
    raw["creation_date"] = at.unix_millis().into();
    raw["data"]["buyer"]["email"] = email.into();
    raw["data"]["product"]["id"] = 4774440.into();
    raw["data"]["purchase"]["transaction"] = format!("HP-{email}").into();
    raw["data"]["purchase"]["approved_date"] = at.unix_millis().into();
    hotmart::normalize(raw.to_string().as_bytes(), at).unwrap()
}

async fn scripted_engine(start: Timestamp) -> (Arc<Engine<MemoryStore>>, Arc<ScriptedLms>, Arc<ManualClock>) {
    let store = MemoryStore::new();
    for mapping in parse_mappings(FIXED_TERM).unwrap() {
        store.put_mapping(&mapping, start).await.unwrap();
    }
    let lms = Arc::new(ScriptedLms::default());
    let clock = Arc::new(ManualClock::new(start));
    (Arc::new(Engine::new(store, lms.clone(), clock.clone())), lms, clock)
}

#[tokio::test]
async fn one_enrollment_that_always_fails_does_not_stop_the_sweep_and_is_given_up_after_its_attempts() {
    let t0 = Timestamp::from_unix_millis(1_767_225_600_000).unwrap();
    let (engine, lms, clock) = scripted_engine(t0).await;
    // The poison ends first, so a sweep that stops at its first error would end nothing else.
    let poison = "poison@example.com";
    engine.apply(&fixed_term_purchase(poison, t0)).await.unwrap();
    for i in 0..49 {
        let at = Timestamp::from_unix_millis(t0.unix_millis() + 60_000 + i).unwrap();
        clock.set(at);
        engine.apply(&fixed_term_purchase(&format!("s{i}@example.com"), at)).await.unwrap();
    }
    *lms.refuse.lock().unwrap() = Some(format!("user-{poison}"));
    lms.done.lock().unwrap().clear();

    clock.advance(std::time::Duration::from_secs(2 * 86_400));
    let report = engine.sweep().await.unwrap();
    assert_eq!((report.ended, report.errors, report.complete), (50, 1, true), "{report:?}");
    let unenrolled = lms.done.lock().unwrap().iter().filter(|c| c.starts_with("unenroll ")).count();
    assert_eq!(unenrolled, 49, "every other student unenrolled in the same sweep");

    // Retried by each later sweep until the attempts cap, then moved to `failed` for good.
    let key = lms_bridge_shared::Email::parse(poison).unwrap().student_key();
    for _ in 0..engine.max_attempts {
        clock.advance(std::time::Duration::from_secs(600));
        engine.sweep().await.unwrap();
    }
    let doc = engine.store.enrollments_of(&key).await.unwrap().remove(0);
    assert!(doc.pending.is_empty(), "{:?}", doc.pending);
    assert_eq!(doc.failed.len(), 1, "given up: {:?}", doc.failed);
    assert_eq!(doc.failed[0].last_error.as_deref(), Some("LMS unavailable: this user always fails"));
    clock.advance(std::time::Duration::from_secs(600));
    assert_eq!(engine.sweep().await.unwrap().errors, 0, "a given-up action is not retried");
}

#[tokio::test]
async fn a_runner_whose_lease_ran_out_never_releases_the_claim_of_the_runner_that_took_over() {
    let t0 = Timestamp::from_unix_millis(1_767_225_600_000).unwrap();
    let (engine, lms, clock) = scripted_engine(t0).await;
    *lms.hold.lock().unwrap() = true;
    let event = fixed_term_purchase("ana@example.com", t0);
    let key = event.student_key().unwrap().clone();
    let doc_id = format!("{key}__103");

    // Runner A (the first delivery) holds the enroll call past its lease on the engine's clock.
    let a = tokio::spawn({
        let (engine, event) = (engine.clone(), event.clone());
        async move { engine.apply(&event).await }
    });
    lms.held(1).await;
    clock.advance(engine.lease + std::time::Duration::from_secs(1));
    // Runner B (a redelivery) takes the actions over and is held too.
    let b = tokio::spawn({
        let (engine, doc_id) = (engine.clone(), doc_id.clone());
        async move { engine.run_pending(&doc_id).await }
    });
    lms.held(2).await;
    // A's call fails; A finishes its own claim only.
    lms.answer(0, Err(LmsError::Transient { message: "slow LMS".into(), retry_after: None }));
    assert!(a.await.unwrap().is_err());
    // B still holds the actions: a third runner must not run them beside B.
    let c = engine.run_pending(&doc_id).await;
    assert!(matches!(c, Err(ApplyError::Busy(_))), "{c:?}");
    lms.answer(0, Ok(()));
    b.await.unwrap().unwrap();
    assert_eq!(lms.done.lock().unwrap().clone(), vec![format!("enroll user-ana@example.com 103")]);
    let doc = engine.store.enrollments_of(&key).await.unwrap().remove(0);
    assert!(doc.pending.is_empty(), "{:?}", doc.pending);
}

#[tokio::test]
async fn an_lms_call_that_outlasts_the_lease_is_abandoned_and_left_for_the_next_runner() {
    let t0 = Timestamp::from_unix_millis(1_767_225_600_000).unwrap();
    let (engine, lms, _clock) = scripted_engine(t0).await;
    let mut engine = Arc::try_unwrap(engine).ok().unwrap();
    engine.lease = std::time::Duration::from_secs(2);
    *lms.hold.lock().unwrap() = true;
    let event = fixed_term_purchase("ana@example.com", t0);
    let started = std::time::Instant::now();
    let result = engine.apply(&event).await;
    assert!(started.elapsed() < std::time::Duration::from_secs(2), "stopped before the lease ended");
    assert!(result.is_err(), "{result:?}");
    let key = event.student_key().unwrap().clone();
    let doc = engine.store.enrollments_of(&key).await.unwrap().remove(0);
    assert_eq!(doc.pending.len(), 1, "left pending for the next runner");
    assert!(doc.pending[0].lease.is_none() && doc.pending[0].leased_until.is_none(), "{:?}", doc.pending);
}

/// The memory store, with `set_lms_user` failing while `down` is set, and transactions
/// while `tx_down` is.
#[derive(Default)]
struct FlakyStore {
    inner: MemoryStore,
    down: std::sync::atomic::AtomicBool,
    tx_down: std::sync::atomic::AtomicBool,
}

#[async_trait]
impl StateStore for FlakyStore {
    async fn transaction<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'t> Fn(&'t mut dyn Tx) -> BoxFuture<'t, Result<T, StoreError>> + Send + Sync + 'static,
    {
        if self.tx_down.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(StoreError::Unavailable("injected".into()));
        }
        self.inner.transaction(f).await
    }
    async fn mapping(&self, source: &str, product: &str) -> Result<Option<ProductMapping>, StoreError> {
        self.inner.mapping(source, product).await
    }
    async fn put_mapping(&self, mapping: &ProductMapping, now: Timestamp) -> Result<(), StoreError> {
        self.inner.put_mapping(mapping, now).await
    }
    async fn list_mappings(&self) -> Result<Vec<ProductMapping>, StoreError> {
        self.inner.list_mappings().await
    }
    async fn event(&self, event_id: &str) -> Result<Option<EventDoc>, StoreError> {
        self.inner.event(event_id).await
    }
    async fn put_event(&self, doc: &EventDoc) -> Result<(), StoreError> {
        self.inner.put_event(doc).await
    }
    async fn events_with_status(&self, status: EventStatus) -> Result<Vec<EventDoc>, StoreError> {
        self.inner.events_with_status(status).await
    }
    async fn student(&self, key: &StudentKey) -> Result<Option<StudentDoc>, StoreError> {
        self.inner.student(key).await
    }
    async fn set_lms_user(&self, key: &StudentKey, lms: &str, account: &LmsAccount) -> Result<(), StoreError> {
        if self.down.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(StoreError::Unavailable("injected".into()));
        }
        self.inner.set_lms_user(key, lms, account).await
    }
    async fn enrollments_of(&self, student_key: &StudentKey) -> Result<Vec<EnrollmentDoc>, StoreError> {
        self.inner.enrollments_of(student_key).await
    }
    async fn expired_enrollments(
        &self,
        now: Timestamp,
        from: Option<Timestamp>,
        limit: u32,
    ) -> Result<Vec<EnrollmentDoc>, StoreError> {
        self.inner.expired_enrollments(now, from, limit).await
    }
    async fn stale_pending(
        &self,
        before: Timestamp,
        from: Option<Timestamp>,
        limit: u32,
    ) -> Result<Vec<EnrollmentDoc>, StoreError> {
        self.inner.stale_pending(before, from, limit).await
    }
    async fn grant(&self, key: &str) -> Result<Option<GrantDoc>, StoreError> {
        self.inner.grant(key).await
    }
    async fn charge(&self, source: &str, charge_id: &str) -> Result<Option<ChargeDoc>, StoreError> {
        self.inner.charge(source, charge_id).await
    }
    async fn enrollments_after(
        &self,
        after: Option<&StudentKey>,
        limit: u32,
    ) -> Result<Vec<EnrollmentDoc>, StoreError> {
        self.inner.enrollments_after(after, limit).await
    }
    async fn job(&self, id: &str) -> Result<Option<JobDoc>, StoreError> {
        self.inner.job(id).await
    }
    async fn put_job(&self, doc: &JobDoc) -> Result<(), StoreError> {
        self.inner.put_job(doc).await
    }
    async fn recent_jobs(&self, kind: JobKind, limit: u32) -> Result<Vec<JobDoc>, StoreError> {
        self.inner.recent_jobs(kind, limit).await
    }
}

#[tokio::test]
async fn a_store_failure_while_running_lms_actions_is_a_store_failure_not_an_lms_one() {
    let t0 = Timestamp::from_unix_millis(1_767_225_600_000).unwrap();
    let store = FlakyStore::default();
    for mapping in parse_mappings(FIXED_TERM).unwrap() {
        store.put_mapping(&mapping, t0).await.unwrap();
    }
    store.down.store(true, std::sync::atomic::Ordering::SeqCst);
    let lms = Arc::new(ScriptedLms::default());
    let engine = Engine::new(store, lms.clone(), Arc::new(ManualClock::new(t0)));
    let event = fixed_term_purchase("ana@example.com", t0);

    let result = engine.apply(&event).await;
    assert!(matches!(result, Err(ApplyError::Store(StoreError::Unavailable(_)))), "{result:?}");
    let key = event.student_key().unwrap().clone();
    let doc = engine.store.enrollments_of(&key).await.unwrap().remove(0);
    assert_eq!(doc.pending[0].last_error.as_deref(), Some("store unavailable: injected"), "{:?}", doc.pending);
    assert!(lms.done.lock().unwrap().is_empty());

    engine.store.down.store(false, std::sync::atomic::Ordering::SeqCst);
    engine.run_pending(&format!("{key}__103")).await.unwrap();
    assert_eq!(lms.done.lock().unwrap().clone(), vec!["enroll user-ana@example.com 103".to_owned()]);
}

#[tokio::test]
async fn the_sweep_counts_what_it_could_not_end_and_says_when_it_could_not_get_past_it() {
    let t0 = Timestamp::from_unix_millis(1_767_225_600_000).unwrap();
    let store = FlakyStore::default();
    for mapping in parse_mappings(FIXED_TERM).unwrap() {
        store.put_mapping(&mapping, t0).await.unwrap();
    }
    let clock = Arc::new(ManualClock::new(t0));
    let engine = Engine::new(store, Arc::new(ScriptedLms::default()), clock.clone());
    // A full page of enrollments ending at one time.
    for i in 0..100 {
        engine.apply(&fixed_term_purchase(&format!("s{i}@example.com"), t0)).await.unwrap();
    }
    clock.advance(std::time::Duration::from_secs(2 * 86_400));

    // While none can be ended, each is counted once and the query cannot move past them.
    engine.store.tx_down.store(true, std::sync::atomic::Ordering::SeqCst);
    let report = engine.sweep().await.unwrap();
    assert_eq!((report.ended, report.errors, report.complete), (0, 100, false), "{report:?}");

    engine.store.tx_down.store(false, std::sync::atomic::Ordering::SeqCst);
    let report = engine.sweep().await.unwrap();
    assert_eq!((report.ended, report.errors, report.complete), (100, 0, true), "{report:?}");
}

fn by_hand(event: &lms_bridge_shared::Event, id: &str, change: HandChange, at: Timestamp) -> lms_bridge_shared::Event {
    HandAction {
        id: id.to_owned(),
        student: event.student.clone().unwrap(),
        course: CourseId::parse("101").unwrap(),
        note: AdminNote { by: "ops@example.com".into(), reason: "test".into() },
        at,
        change,
    }
    .event(None)
    .unwrap()
}

#[tokio::test]
async fn a_revocation_by_hand_holds_against_old_facts_and_yields_to_new_ones() {
    let t0 = Timestamp::from_unix_millis(1_763_994_200_000).unwrap();
    let body = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/hotmart/purchase_approved.json"))
        .unwrap();
    let purchase = hotmart::normalize(&body, t0).unwrap();
    let store = MemoryStore::new();
    for mapping in parse_mappings(MAPPING).unwrap() {
        store.put_mapping(&mapping, t0).await.unwrap();
    }
    let lms = Arc::new(RecordingLms::default());
    let clock = Arc::new(ManualClock::new(t0));
    let engine = Engine::new(store, lms.clone(), clock.clone());
    let key = purchase.student_key().unwrap().clone();
    async fn access(engine: &Engine<MemoryStore>, key: &StudentKey) -> Vec<String> {
        engine.store.enrollments_of(key).await.unwrap().iter().map(|d| format!("{:?}", d.access)).collect()
    }
    engine.apply(&purchase).await.unwrap();
    assert_eq!(access(&engine, &key).await, ["Active"]);
    lms.take();

    // Revoked by hand an hour later: unenrolled.
    clock.advance(std::time::Duration::from_secs(3600));
    let block = by_hand(&purchase, "b1", HandChange::Block, clock.now());
    assert_eq!(engine.apply(&block).await.unwrap(), Outcome::Applied);
    assert_eq!(access(&engine, &key).await, ["Inactive"]);
    assert!(lms.take().iter().any(|c| c.starts_with("unenroll") && c.ends_with(" 101")));

    // The same purchase resent under a new envelope id: an old fact, still no access.
    let mut raw: serde_json::Value = serde_json::from_slice(&body).unwrap();
    raw["id"] = "resent-envelope".into();
    let resend = hotmart::normalize(raw.to_string().as_bytes(), clock.now()).unwrap();
    engine.apply(&resend).await.unwrap();
    assert_eq!(access(&engine, &key).await, ["Inactive"]);
    assert!(lms.take().is_empty());

    // A grant by hand after the revocation gives the course again, until the day chosen.
    clock.advance(std::time::Duration::from_secs(60));
    let until = clock.now().plus_days(10);
    let grant = by_hand(&purchase, "g1", HandChange::Grant { until: Some(until) }, clock.now());
    assert_eq!(engine.apply(&grant).await.unwrap(), Outcome::Applied);
    assert_eq!(access(&engine, &key).await, ["Active"]);
    assert!(lms.take().iter().any(|c| c.starts_with("enroll") && c.ends_with(" 101")));
    let record = engine.store.event(grant.id.as_str()).await.unwrap().unwrap();
    assert_eq!(record.admin.unwrap().by, "ops@example.com");
    assert_eq!(record.decisions.len(), 1, "{:?}", record.decisions);
    clock.advance(std::time::Duration::from_secs(11 * 86_400));
    engine.sweep().await.unwrap();
    assert_eq!(access(&engine, &key).await, ["Inactive"], "the grant by hand ends on its day");

    // A retry with nothing failed changes nothing; a block from a webhook source is refused.
    let retry = by_hand(&purchase, "r1", HandChange::Retry, clock.now());
    assert!(matches!(engine.apply(&retry).await.unwrap(), Outcome::Ignored(_)));
    let mut forged = by_hand(&purchase, "f1", HandChange::Block, clock.now());
    forged.source = lms_bridge_shared::SourceName::parse("hotmart").unwrap();
    forged.id = lms_bridge_shared::EventId::parse("hotmart:forged-block").unwrap();
    assert!(matches!(engine.apply(&forged).await.unwrap(), Outcome::Failed(_)));
}

/// An LMS that ends access by itself at the date given with the enrol (as Moodle does); its
/// enrols fail while `down` is set.
#[derive(Default)]
struct EndDatesLms {
    down: Mutex<bool>,
    calls: Mutex<Vec<String>>,
}

#[async_trait]
impl Lms for EndDatesLms {
    fn name(&self) -> &'static str {
        "end-dates"
    }
    fn enforces_end_dates(&self) -> bool {
        true
    }
    async fn ensure_user(&self, student: &LmsStudent) -> Result<EnsuredUser, LmsError> {
        Ok(EnsuredUser { id: LmsUserId(format!("user-{}", student.key)), created: true, learner: true })
    }
    async fn enroll(&self, user: &LmsUserId, course: &CourseId) -> Result<Enrolled, LmsError> {
        self.enroll_until(user, course, None).await
    }
    async fn enroll_until(
        &self,
        _user: &LmsUserId,
        course: &CourseId,
        until: Option<Timestamp>,
    ) -> Result<Enrolled, LmsError> {
        if *self.down.lock().unwrap() {
            return Err(LmsError::Transient { message: "down".into(), retry_after: None });
        }
        self.calls.lock().unwrap().push(format!("enroll {course} until {until:?}"));
        Ok(Enrolled::Now)
    }
    async fn unenroll(&self, _user: &LmsUserId, course: &CourseId) -> Result<(), LmsError> {
        self.calls.lock().unwrap().push(format!("unenroll {course}"));
        Ok(())
    }
    async fn set_active(&self, user: &LmsUserId, active: bool) -> Result<(), LmsError> {
        self.calls.lock().unwrap().push(format!("set_active {} {active}", user.0));
        Ok(())
    }
}

/// With an LMS that ends access itself: an enrol that could not run before the end is not run
/// after it (it would read "no end" and give the course for good), the end calls nothing, and
/// a learner left with no course is still deactivated.
#[tokio::test]
async fn an_lms_that_ends_access_itself_never_gets_a_late_enrol_and_idle_learners_still_stop() {
    let t0 = Timestamp::from_unix_millis(1_767_225_600_000).unwrap();
    let store = MemoryStore::new();
    for mapping in parse_mappings(FIXED_TERM).unwrap() {
        store.put_mapping(&mapping, t0).await.unwrap();
    }
    let lms = Arc::new(EndDatesLms::default());
    let clock = Arc::new(ManualClock::new(t0));
    let engine = Engine { deactivate_idle_users: true, ..Engine::new(store, lms.clone(), clock.clone()) };

    // Enrolled at once while the LMS is up: the end goes with the enrol.
    engine.apply(&fixed_term_purchase("on-time@example.com", t0)).await.unwrap();
    let end = Timestamp::from_unix_millis(t0.unix_millis() + 86_400_000).unwrap();
    assert_eq!(*lms.calls.lock().unwrap(), [format!("enroll 103 until {:?}", Some(end))]);
    lms.calls.lock().unwrap().clear();

    // The LMS is down when the second student buys: the enrol waits.
    *lms.down.lock().unwrap() = true;
    assert!(engine.apply(&fixed_term_purchase("late@example.com", t0)).await.is_err());
    *lms.down.lock().unwrap() = false;

    // Two days later both accesses have ended: the sweep records it, unenrols no one, runs no
    // late enrol, and deactivates both idle learners.
    clock.advance(std::time::Duration::from_secs(2 * 86_400));
    let report = engine.sweep().await.unwrap();
    assert_eq!(report.ended, 2, "{report:?}");
    let calls = lms.calls.lock().unwrap().clone();
    assert!(!calls.iter().any(|c| c.starts_with("enroll") || c.starts_with("unenroll")), "{calls:?}");
    let key = lms_bridge_shared::Email::parse("late@example.com").unwrap().student_key();
    let on_time = lms_bridge_shared::Email::parse("on-time@example.com").unwrap().student_key();
    let deactivated: std::collections::BTreeSet<&String> =
        calls.iter().filter(|c| c.starts_with("set_active") && c.ends_with(" false")).collect();
    let expected = [format!("set_active user-{key} false"), format!("set_active user-{on_time} false")];
    assert_eq!(deactivated, expected.iter().collect(), "{calls:?}");
    let doc = engine.store.enrollments_of(&key).await.unwrap().remove(0);
    assert!(doc.pending.is_empty() && doc.failed.is_empty(), "{doc:?}");
    assert_eq!(doc.access, lms_bridge_shared::Access::Inactive);
}
