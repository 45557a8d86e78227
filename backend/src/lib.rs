//! The lms-bridge backend: command-line interface now; the push intake, Firestore store and
//! LMS adapters join it as their issues land.

pub mod cli;
pub mod normalize;
