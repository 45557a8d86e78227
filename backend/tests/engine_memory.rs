//! The engine over the in-memory store and a recording LMS: no emulator, no network.

#![allow(clippy::unwrap_used, reason = "tests: a panic is the failure report")]

use async_trait::async_trait;
use lms_bridge_backend::clock::ManualClock;
use lms_bridge_backend::commands::parse_mappings;
use lms_bridge_backend::engine::{Engine, Outcome};
use lms_bridge_backend::lms::{Enrolled, EnsuredUser, Lms, LmsError, LmsStudent, LmsUserId};
use lms_bridge_backend::store::{MemoryStore, StateStore};
use lms_bridge_shared::source::hotmart;
use lms_bridge_shared::{CourseId, Timestamp};
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
    let engine = Engine { store, lms: lms.clone(), clock: clock.clone(), deactivate_idle_users: false };

    assert_eq!(engine.apply(&event).await.unwrap(), Outcome::Applied);
    let calls = lms.take();
    assert_eq!(calls.iter().filter(|c| c.starts_with("enroll ") && c.ends_with(" 101")).count(), 1, "{calls:?}");
    assert!(calls.iter().all(|c| !c.starts_with("unenroll")), "{calls:?}");

    let key = event.student_key().unwrap().to_string();
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
    assert_eq!(engine.sweep().await.unwrap(), (0, 0));
    assert_eq!(lms.take(), Vec::<String>::new());
}
