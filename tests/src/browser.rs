//! A real browser for the admin console's tests: Debian's headless Chromium driven through
//! ChromeDriver (WebDriver) with fantoccini, behind a blocking API for tests that are otherwise
//! synchronous. Every failure panics with what was asked (the selector), the page's URL and the
//! tail of its source.
//!
//! ```no_run
//! use lms_bridge_tests::browser::Browser;
//! use std::time::Duration;
//! let browser = Browser::start();
//! browser.goto("http://127.0.0.1:8080/");
//! browser.fill("#name", "Ana");
//! browser.submit("form#greet");
//! browser.wait_for_text("#result", "Ana", Duration::from_secs(5));
//! let png = browser.screenshot("greet");
//! ```

use crate::process::{free_port, http_ok, require, Service};
use fantoccini::elements::Element;
use fantoccini::error::CmdError;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{json, Value};
use std::future::Future;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// Debian's Chromium (package `chromium`).
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// Debian's ChromeDriver (package `chromium-driver`, always the same version as `chromium`).
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The window of a desktop browser.
pub const DESKTOP: (u32, u32) = (1280, 900);
/// The viewport of a phone (an iPhone 12–15's CSS pixels).
pub const MOBILE: (u32, u32) = (390, 844);
/// How long `click`, `fill`, `select`, `submit` and `text` wait for their element to appear.
pub const FIND_TIMEOUT: Duration = Duration::from_secs(5);

const INSTALL_HINT: &str = "run `make setup` (scripts/setup.sh installs Debian's chromium and chromium-driver)";

/// The flags every session starts Chromium with. The machine's network is closed: without the
/// background-networking ones Chromium keeps trying to reach Google and misbehaves.
const CHROMIUM_FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
];

/// A headless Chromium session with its own ChromeDriver and a fresh profile; dropping it ends
/// the session and stops both.
pub struct Browser {
    runtime: tokio::runtime::Runtime,
    client: Option<Client>,
    driver: Service,
    profile: PathBuf,
}

impl Browser {
    /// Starts ChromeDriver on a free port (log: `target/test-logs/chromedriver.log`) and opens a
    /// session in a 1280×900 window. Panics with an install hint when Chromium or ChromeDriver
    /// is missing.
    pub fn start() -> Self {
        let chromium = require(CHROMIUM, INSTALL_HINT);
        let chromedriver = require(CHROMEDRIVER, INSTALL_HINT);

        let port = free_port();
        let mut command = Command::new(chromedriver);
        // Add --enable-chrome-logs to see Chromium's own stderr there too (mostly D-Bus noise).
        command.arg(format!("--port={port}"));
        let mut driver = Service::spawn("chromedriver", command);
        let base = format!("http://127.0.0.1:{port}");
        driver.wait_until(Duration::from_secs(20), || http_ok(&format!("{base}/status")));

        let profile = profile_dir();
        let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|f| (*f).to_owned()).collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        args.push(format!("--window-size={},{}", DESKTOP.0, DESKTOP.1));
        let capabilities = json!({
            "browserName": "chrome",
            "pageLoadStrategy": "normal",
            "timeouts": { "implicit": 0, "pageLoad": 30_000, "script": 10_000 },
            "goog:chromeOptions": { "binary": chromium, "args": args },
        });
        let Value::Object(capabilities) = capabilities else { unreachable!("an object literal") };

        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let session =
            runtime.block_on(ClientBuilder::new(HttpConnector::new()).capabilities(capabilities).connect(&base));
        let client = session.unwrap_or_else(|e| {
            panic!("opening a Chromium session through chromedriver failed: {e}\n{}", driver.log_tail())
        });
        let browser = Self { runtime, client: Some(client), driver, profile };
        browser.resize(DESKTOP);
        browser
    }

    fn client(&self) -> &Client {
        self.client.as_ref().expect("the session is open until drop")
    }

    /// Runs one WebDriver exchange to completion.
    fn run<T>(&self, future: impl Future<Output = Result<T, CmdError>>) -> Result<T, CmdError> {
        self.runtime.block_on(future)
    }

    /// Panics with what failed, the page URL and the tail of its source.
    fn fail(&self, what: &str, error: &dyn std::fmt::Display) -> ! {
        let url = self.run(self.client().current_url()).map_or_else(|e| format!("(unknown: {e})"), |u| u.to_string());
        let source = self.run(self.client().source()).unwrap_or_else(|e| format!("(unavailable: {e})"));
        panic!("browser: {what} on {url}: {error}\n--- page source, last 3000 bytes ---\n{}", tail(&source, 3000))
    }

    /// The first element matching `css`, waiting up to [`FIND_TIMEOUT`] for it to appear.
    fn find(&self, css: &str) -> Element {
        let wait = self.client().wait().at_most(FIND_TIMEOUT).every(Duration::from_millis(50));
        self.run(wait.for_element(Locator::Css(css)))
            .unwrap_or_else(|e| self.fail(&format!("no element matches `{css}` within {FIND_TIMEOUT:?}"), &e))
    }

    /// Opens `url` and waits for it to load.
    pub fn goto(&self, url: &str) {
        if let Err(e) = self.run(self.client().goto(url)) {
            self.fail(&format!("opening {url}"), &e);
        }
    }

    /// Clicks the element matching `css` (a link or a button: the navigation it starts is
    /// waited for).
    pub fn click(&self, css: &str) {
        let element = self.find(css);
        if let Err(e) = self.run(element.click()) {
            self.fail(&format!("clicking `{css}`"), &e);
        }
    }

    /// Replaces the value of the field matching `css` with `text`, typed as a person would.
    pub fn fill(&self, css: &str, text: &str) {
        let element = self.find(css);
        let typed = self.run(async {
            element.clear().await?;
            element.send_keys(text).await
        });
        if let Err(e) = typed {
            self.fail(&format!("filling `{css}` with {text:?}"), &e);
        }
    }

    /// Chooses the option with value `value` in the `<select>` matching `css`.
    pub fn select(&self, css: &str, value: &str) {
        let element = self.find(css);
        if let Err(e) = self.run(element.select_by_value(value)) {
            self.fail(&format!("selecting {value:?} in `{css}`"), &e);
        }
    }

    /// Submits a form as a person would. `css` matches the form, one of its submit buttons, or
    /// a field inside it: a button is clicked; for a form (or a field's form), its first submit
    /// button is clicked, or `requestSubmit()` called when it has none (which still runs the
    /// browser's validation). The navigation it starts is waited for (ChromeDriver finishes a
    /// pending navigation before it runs the next command).
    pub fn submit(&self, css: &str) {
        const BUTTONS: &str = "button[type=submit], button:not([type]), input[type=submit], input[type=image]";
        let element = self.find(css);
        let submitted = self.run(async {
            let matches = "return arguments[0].matches(arguments[1]);";
            if self.client().execute(matches, vec![serde_json::to_value(&element)?, json!(BUTTONS)]).await? == true {
                return element.click().await.map(|()| true);
            }
            let form = if element.tag_name().await?.eq_ignore_ascii_case("form") {
                element
            } else {
                match element.find_all(Locator::XPath("ancestor::form[1]")).await?.into_iter().next() {
                    Some(form) => form,
                    None => return Ok(false),
                }
            };
            match form.find_all(Locator::Css(BUTTONS)).await?.first() {
                Some(button) => button.click().await?,
                None => {
                    let args = vec![serde_json::to_value(&form)?];
                    self.client().execute("arguments[0].requestSubmit();", args).await?;
                }
            }
            Ok(true)
        });
        match submitted {
            Ok(true) => {}
            Ok(false) => self.fail(&format!("submitting `{css}`"), &"it is neither a form nor inside one"),
            Err(e) => self.fail(&format!("submitting `{css}`"), &e),
        }
    }

    /// The rendered text of the element matching `css` (as a person sees it: hidden parts are
    /// left out).
    pub fn text(&self, css: &str) -> String {
        let element = self.find(css);
        self.run(element.text()).unwrap_or_else(|e| self.fail(&format!("reading the text of `{css}`"), &e))
    }

    /// Whether an element matches `css` now (no waiting).
    pub fn exists(&self, css: &str) -> bool {
        self.run(self.client().find_all(Locator::Css(css)))
            .map(|all| !all.is_empty())
            .unwrap_or_else(|e| self.fail(&format!("looking for `{css}`"), &e))
    }

    /// The page's current HTML (the DOM serialized, after scripts ran).
    pub fn source(&self) -> String {
        self.run(self.client().source()).unwrap_or_else(|e| self.fail("reading the page source", &e))
    }

    /// Waits until the first element matching `css` exists and its text contains `needle`;
    /// returns that text. Panics after `timeout` with the last text seen.
    pub fn wait_for_text(&self, css: &str, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        let mut last = None;
        loop {
            let seen = self.run(async {
                match self.client().find_all(Locator::Css(css)).await?.first() {
                    Some(element) => element.text().await.map(Some),
                    None => Ok(None),
                }
            });
            match seen {
                Ok(Some(text)) if text.contains(needle) => return text,
                Ok(seen) => last = seen,
                // The page was replaced between the lookup and the read: look again.
                Err(e) if e.is_stale_element_reference() => {}
                Err(e) => self.fail(&format!("waiting for {needle:?} in `{css}`"), &e),
            }
            if Instant::now() > deadline {
                let last = last.map_or_else(|| "no element matched".to_owned(), |t| format!("its text was {t:?}"));
                self.fail(
                    &format!("waiting for {needle:?} in `{css}`"),
                    &format!("not there after {timeout:?}: {last}"),
                );
            }
            self.runtime.block_on(async { tokio::time::sleep(Duration::from_millis(50)).await });
        }
    }

    /// The URL of the page now (after redirects).
    pub fn current_url(&self) -> String {
        self.run(self.client().current_url())
            .map(|u| u.to_string())
            .unwrap_or_else(|e| self.fail("reading the current URL", &e))
    }

    /// Runs `script` (a function body: `return …` gives the value) in the page.
    pub fn execute(&self, script: &str) -> Value {
        self.run(self.client().execute(script, vec![]))
            .unwrap_or_else(|e| self.fail(&format!("running the script {script:?}"), &e))
    }

    /// Saves a PNG of the viewport to `target/screenshots/{name}.png` and returns its path.
    pub fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.run(self.client().screenshot()).unwrap_or_else(|e| self.fail("taking a screenshot", &e));
        let dir = crate::repo_root().join("target/screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        path
    }

    /// Makes the viewport a phone's, 390×844 CSS pixels (the page re-lays itself out).
    pub fn mobile(&self) {
        self.resize(MOBILE);
    }

    /// Makes the viewport a desktop's again, 1280×900 (the size a session starts with).
    pub fn desktop(&self) {
        self.resize(DESKTOP);
    }

    /// The viewport's size in CSS pixels (`innerWidth`, `innerHeight`).
    pub fn viewport(&self) -> (u32, u32) {
        let size = self.execute("return [window.innerWidth, window.innerHeight];");
        let dimension = |i: usize| size[i].as_u64().and_then(|v| u32::try_from(v).ok()).unwrap_or(0);
        (dimension(0), dimension(1))
    }

    /// Sets the window so that the viewport is `width`×`height`: the window is set first, then
    /// corrected by whatever the browser keeps for itself around the page.
    fn resize(&self, (width, height): (u32, u32)) {
        let client = self.client();
        if let Err(e) = self.run(client.set_window_size(width, height)) {
            self.fail(&format!("resizing the window to {width}×{height}"), &e);
        }
        let (inner_width, inner_height) = self.viewport();
        if (inner_width, inner_height) != (width, height) {
            let outer = (width + width.saturating_sub(inner_width), height + height.saturating_sub(inner_height));
            if let Err(e) = self.run(client.set_window_size(outer.0, outer.1)) {
                self.fail(&format!("resizing the window to {}×{}", outer.0, outer.1), &e);
            }
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            let _ =
                self.runtime.block_on(async { tokio::time::timeout(Duration::from_secs(10), client.close()).await });
        }
        self.driver.stop();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// A new, empty Chromium profile directory for one session.
fn profile_dir() -> PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("lms-bridge-chromium-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The last `max` bytes of `text`, cut at a character boundary.
fn tail(text: &str, max: usize) -> &str {
    let mut start = text.len().saturating_sub(max);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}
