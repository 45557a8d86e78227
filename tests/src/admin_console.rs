//! The admin console (`lms-bridge admin`) as a process, behind the IAP stand-in.

use crate::backend::{backend_bin, Firestore};
use crate::process::{free_port, http_ok, Service};
use std::process::Command;
use std::time::Duration;

/// A running console.
pub struct AdminConsole {
    _service: Service,
    /// `http://127.0.0.1:port` (straight to the console, no IAP in front).
    pub url: String,
}

impl AdminConsole {
    /// Starts `lms-bridge admin` over this project's state, publishing to the Pub/Sub
    /// emulator at `pubsub_host`; `env` sets the rest (`ADMIN_AUTH`, the allowlists, …).
    pub fn start(project: &str, firestore: &Firestore, pubsub_host: &str, env: &[(&str, &str)]) -> Self {
        let port = free_port();
        let url = format!("http://127.0.0.1:{port}");
        let mut command = Command::new(backend_bin());
        command
            .arg("admin")
            .env("GCP_PROJECT", project)
            .env("FIRESTORE_EMULATOR_HOST", &firestore.host)
            .env("PUBSUB_EMULATOR_HOST", pubsub_host)
            .env("PORT", port.to_string())
            .env("LISTEN_ADDR", "127.0.0.1")
            .env_remove("K_SERVICE");
        command.envs(env.iter().copied());
        let mut service = Service::spawn(&format!("admin-{project}"), command);
        let health = format!("{url}/healthz");
        service.wait_until(Duration::from_secs(60), || http_ok(&health));
        Self { _service: service, url }
    }
}
