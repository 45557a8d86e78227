//! Stacks a test starts in one line: a backend with its own LMS sandbox and project, beside
//! the Firestore emulator and test issuer every test of the binary shares.

use crate::backend::{Backend, Firestore, Issuer, Sandbox};
use crate::mappings::Mappings;
use serde_json::Value;
use std::sync::OnceLock;

/// The Firestore emulator of this test binary (started on first use).
pub fn firestore() -> &'static Firestore {
    static FIRESTORE: OnceLock<Firestore> = OnceLock::new();
    FIRESTORE.get_or_init(Firestore::start)
}

/// The test issuer of this test binary (started on first use).
pub fn issuer() -> &'static Issuer {
    static ISSUER: OnceLock<Issuer> = OnceLock::new();
    ISSUER.get_or_init(Issuer::start)
}

/// A backend (`lms-bridge serve`, OIDC pushes) in project `t-{name}`, with its own sandbox
/// and `mappings` imported, and a valid push token.
pub struct BackendStack {
    /// Its LMS.
    pub sandbox: Sandbox,
    /// The backend.
    pub backend: Backend,
    /// A valid push token for it.
    pub token: String,
}

impl BackendStack {
    /// Starts one.
    pub fn start(name: &str, mappings: &Mappings) -> Self {
        Self::start_with(name, mappings, &[], &[])
    }

    /// Starts one with extra sandbox arguments and backend environment.
    pub fn start_with(name: &str, mappings: &Mappings, sandbox_args: &[&str], env: &[(&str, &str)]) -> Self {
        let (firestore, issuer) = (firestore(), issuer());
        let sandbox = Sandbox::start(sandbox_args);
        let backend = Backend::start(&format!("t-{name}"), firestore, &sandbox, issuer, env);
        backend.import_mappings(&mappings.toml());
        let token = issuer.token(&backend.url);
        Self { sandbox, backend, token }
    }

    /// Pushes `event` (message id `m-{its id}`) with the valid token: status and answer.
    pub fn push(&self, event: &Value) -> (u16, Value) {
        self.backend.push_with(event, &format!("m-{}", event["id"]), Some(&self.token))
    }

    /// The same, which must answer 200: the answer.
    pub fn push_ok(&self, event: &Value) -> Value {
        let (status, body) = self.push(event);
        assert_eq!(status, 200, "{body}");
        body
    }
}
