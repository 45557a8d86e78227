//! Verify + normalize of a real-size Hotmart payload beside its floor (parsing the same bytes
//! into a `serde_json::Value`), and one decision (record a fact, re-place the grant) on a realistic enrollment.

#![expect(missing_docs, reason = "criterion's macros generate undocumented items")]
#![allow(clippy::unwrap_used, reason = "test code: a panic is the failure report")]

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use lms_bridge_shared::source::{Hotmart, Source};
use lms_bridge_shared::{
    AccessPolicy, CourseId, DisputePolicy, Enrollment, Grant, ProductId, ProductMapping, SourceName, Timestamp,
};
use std::hint::black_box;

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/../tests/fixtures/hotmart/{name}.json", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

fn normalize(c: &mut Criterion) {
    let body = fixture("subscription_purchase_approved");
    let source = Hotmart::new(["a-hottok-of-realistic-length-0123456789".to_string()]);
    let headers = vec![("X-HOTMART-HOTTOK", "a-hottok-of-realistic-length-0123456789")];
    let now = Timestamp::from_unix_millis(1_763_994_192_000).unwrap();
    let mut group = c.benchmark_group("hotmart");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("floor_serde_json_value", |b| {
        b.iter(|| serde_json::from_slice::<serde_json::Value>(black_box(&body)).unwrap())
    });
    group.bench_function("verify_normalize", |b| {
        b.iter(|| {
            source.verify(&headers, black_box(&body), now).unwrap();
            source.normalize(black_box(&body), now).unwrap()
        })
    });
    group.finish();
}

fn decide_bench(c: &mut Criterion) {
    let now = Timestamp::from_unix_millis(1_763_994_192_000).unwrap();
    let course = CourseId::parse("101").unwrap();
    let mapping = ProductMapping {
        source: SourceName::parse("hotmart").unwrap(),
        product_id: ProductId::parse("4774438").unwrap(),
        courses: vec![course.clone()],
        policy: AccessPolicy::Subscription { grace_days: 3 },
        dispute: DisputePolicy::Keep,
        chargeback: Default::default(),
        plans: Default::default(),
    };
    let first = lms_bridge_shared::source::hotmart::normalize(&fixture("subscription_purchase_approved"), now).unwrap();
    let late = lms_bridge_shared::source::hotmart::normalize(&fixture("subscription_purchase_delayed"), now).unwrap();
    let mut grant = Grant::new(&mapping);
    grant.record(&first, &mapping).unwrap();
    let enrollment = Enrollment::default().place(&course, "g", Some(&grant), now).enrollment;
    // One event's whole decision: record the fact, then re-place the grant on its course.
    c.bench_function("decide", |b| {
        b.iter(|| {
            let mut grant = black_box(&grant).clone();
            grant.record(black_box(&late), &mapping).unwrap();
            black_box(&enrollment).place(&course, "g", Some(&grant), now)
        })
    });
}

criterion_group!(benches, normalize, decide_bench);
criterion_main!(benches);
