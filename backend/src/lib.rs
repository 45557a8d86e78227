//! The lms-bridge backend: Pub/Sub push intake, Firestore state, LMS provisioning, and the
//! operator commands. Rooms: `http` (the surface), `auth` (push tokens), `jwks` (token issuers'
//! keys, cached), `admin` (the console, IAP), `engine` (applying events and the sweep), `store`
//! (the state port: Firestore, in memory), `clock`, `lms` (adapters), `cli` (arguments),
//! `settings` (the arguments validated), `stripe_api` (Stripe's API, read-only, to resolve
//! refunds and disputes that name only their charge), `scrub` (outside services' messages made
//! safe for errors and logs), `commands` (what each operator command does) and
//! `backfill` (Hotmart API sales and subscriptions, and the CSV export, as normalized events).

pub mod admin;
pub mod auth;
pub mod backfill;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod engine;
pub mod hotmart_api;
pub mod http;
pub mod jobs;
pub mod jwks;
pub mod lms;
pub mod logging;
pub mod publish;
pub mod pubsub_setup;
mod scrub;
pub mod service;
pub mod settings;
pub mod simulate;
pub mod store;
pub mod stripe_api;

/// The rules crate, for builds outside this workspace (the fuzz targets in `fuzz/`) that reach it
/// through the backend.
pub use lms_bridge_shared as shared;
