//! The rules of lms-bridge, shared by the edge (Wasm) and the backend (native).
//!
//! Pure code only: no I/O, no clock, no async runtime. Callers pass `now` in, so the same
//! functions run inside a Cloudflare Worker, on Cloud Run and in property tests.

pub mod admin;
pub mod event;
pub mod explain;
pub mod ids;
pub mod policy;
pub mod pubsub;
pub mod rules;
pub mod source;
pub mod timestamp;

pub use event::{AdminNote, Change, Charge, Event, EventError, RevokeReason, SCHEMA};
pub use ids::{ChargeId, CourseId, Email, EventId, GrantId, IdError, Pepper, ProductId, SourceName, StudentKey};
pub use policy::{AccessPolicy, ChargebackPolicy, DisputePolicy, ProductMapping};
pub use rules::{grant_key, Access, Decision, Enrollment, Grant, LmsAction};
pub use timestamp::Timestamp;
