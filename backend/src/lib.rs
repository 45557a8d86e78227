//! The lms-bridge backend: Pub/Sub push intake, Firestore state, LMS provisioning, and the
//! operator commands. Rooms: `http` (the surface), `auth` (push tokens), `engine` (applying
//! events and the sweep), `store` (the state port: Firestore, in memory), `clock`, `lms`
//! (adapters), `cli` (arguments) and `commands` (what each operator command does).

pub mod auth;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod engine;
pub mod hotmart_api;
pub mod http;
pub mod lms;
pub mod logging;
pub mod pubsub_setup;
pub mod service;
pub mod simulate;
pub mod store;
