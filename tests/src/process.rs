//! Child processes in their own process group, logged to `target/test-logs/`, stopped whole.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A port that was free a moment ago, for a service the test starts on it.
///
/// It is taken from below Linux's ephemeral range (32768–60999): a port the kernel hands out
/// with `bind(0)` is also what it gives the next outgoing connection, so under a busy suite a
/// service told to listen there could find it taken. Each test process walks its own stretch
/// of 10000–32767 (seeded by its pid) and skips what it cannot bind.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 10_000;
    const SPAN: u32 = 32_768 - LOW;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        std::process::id().wrapping_mul(7919) % SPAN,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..SPAN {
        let offset = NEXT.fetch_add(1, Ordering::SeqCst) % SPAN;
        let port = u16::try_from(LOW + offset).expect("below 32768");
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Fails the test with an install hint when a required program is missing.
pub fn require(program: &str, hint: &str) -> PathBuf {
    let path = PathBuf::from(program);
    if path.is_absolute() {
        assert!(path.exists(), "{program} is missing: {hint}");
        return path;
    }
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join(program)).find(|c| c.exists()))
        .unwrap_or_default();
    found.unwrap_or_else(|| panic!("{program} is not on PATH: {hint}"))
}

/// Stops the group `group` when this test process ends, however it ends: services shared by
/// a test binary live in statics, which are never dropped.
fn watch(group: u32) {
    let script = format!(
        "while kill -0 {parent} 2>/dev/null; do sleep 0.5; done; \
         env kill -TERM -- -{group} 2>/dev/null; sleep 3; env kill -KILL -- -{group} 2>/dev/null",
        parent = std::process::id()
    );
    use std::os::unix::process::CommandExt;
    let _ = Command::new("sh")
        .args(["-c", &script])
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
}

/// A running service; dropping it stops its whole process group.
pub struct Service {
    name: String,
    child: Option<Child>,
    /// Where its output goes.
    pub log: PathBuf,
    /// The log's length when this run started: earlier runs' lines come before it.
    log_from: u64,
}

impl Service {
    /// Starts `command` in a new process group, output appended to `target/test-logs/{name}.log`.
    pub fn spawn(name: &str, mut command: Command) -> Self {
        let dir = crate::repo_root().join("target/test-logs");
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join(format!("{name}.log"));
        let out = std::fs::OpenOptions::new().create(true).append(true).open(&log).unwrap();
        let log_from = out.metadata().map(|m| m.len()).unwrap_or(0);
        let err = out.try_clone().unwrap();
        use std::os::unix::process::CommandExt;
        let child = command
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        watch(child.id());
        Self { name: name.to_owned(), child: Some(child), log, log_from }
    }

    /// What this run wrote to its log (not the earlier runs appended before it).
    pub fn output(&self) -> String {
        let all = std::fs::read(&self.log).unwrap_or_default();
        let from = usize::try_from(self.log_from).unwrap_or(0).min(all.len());
        String::from_utf8_lossy(&all[from..]).into_owned()
    }

    /// Stops the whole group: TERM, then KILL after 5 s.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        let group = format!("-{}", child.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).stderr(Stdio::null()).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // Children (gcloud's Java, workerd) may outlive the leader: always sweep the group.
        let _ = Command::new("kill").args(["-KILL", "--", &group]).stderr(Stdio::null()).status();
        let _ = child.wait();
    }

    /// Kills the whole group with SIGKILL at once: a crash, no shutdown of any kind.
    pub fn crash(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        let group = format!("-{}", child.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).stderr(Stdio::null()).status();
        let _ = child.wait();
    }

    /// Sends SIGTERM to the leader only and waits up to `timeout` for it to exit by itself.
    pub fn terminate(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let child = self.child.as_mut()?;
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// The tail of the log, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Panics with the log tail unless `ready` turns true within `timeout`.
    pub fn wait_until(&mut self, timeout: Duration, mut ready: impl FnMut() -> bool) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if ready() {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!("{} exited with {status} before it was ready:\n{}", self.name, self.log_tail());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("{} was not ready within {timeout:?}:\n{}", self.name, self.log_tail());
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether `GET url` answers with a success status.
pub fn http_ok(url: &str) -> bool {
    reqwest::blocking::Client::new()
        .get(url)
        .timeout(Duration::from_secs(2))
        .send()
        .is_ok_and(|r| r.status().is_success())
}
