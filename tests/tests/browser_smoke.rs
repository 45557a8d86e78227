//! The browser harness proven on a tiny page served by this test, through the IAP stand-in:
//! the page sees the assertion the proxy adds (and never one the client forged), a form POST
//! answered with a redirect and a cookie comes back to the browser unchanged, the phone size
//! is a phone's, and screenshots are PNG files of the window's size.

#![allow(clippy::unwrap_used, reason = "test code: a panic is the failure report")]

use axum::extract::Form;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect};
use axum::routing::{get, post};
use lms_bridge_tests::browser::{Browser, DESKTOP, MOBILE};
use lms_bridge_tests::iap_proxy::{IapProxy, ASSERTION_HEADER};
use lms_bridge_tests::process::free_port;
use serde::Deserialize;
use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

/// The page server: dropped, it stops.
struct Site {
    _runtime: tokio::runtime::Runtime,
    url: String,
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// What the page shows of the identity header it received.
fn assertion_of(headers: &HeaderMap) -> String {
    headers.get(ASSERTION_HEADER).map_or_else(|| "none".to_owned(), |v| escape(v.to_str().unwrap_or("?")))
}

async fn home(headers: HeaderMap) -> Html<String> {
    Html(format!(
        "<!doctype html><title>smoke</title>\
         <p>assertion: <span id=assertion>{}</span></p>\
         <form id=greet method=post action=/greet>\
         <input id=name name=name required>\
         <select id=color name=color><option value=red>Red</option><option value=blue>Blue</option></select>\
         <button>Send</button></form>",
        assertion_of(&headers)
    ))
}

#[derive(Deserialize)]
struct Greeting {
    name: String,
    color: String,
}

/// Post/redirect/get, with a cookie: what the console's forms will do.
async fn greet(Form(greeting): Form<Greeting>) -> impl IntoResponse {
    let query = format!("name={}&color={}", encode(&greeting.name), encode(&greeting.color));
    ([(header::SET_COOKIE, "greeted=yes; Path=/; HttpOnly; SameSite=Lax")], Redirect::to(&format!("/greeted?{query}")))
}

async fn greeted(
    headers: HeaderMap,
    axum::extract::Query(query): axum::extract::Query<HashMap<String, String>>,
) -> impl IntoResponse {
    let cookie = headers.get(header::COOKIE).map_or("", |v| v.to_str().unwrap_or("?"));
    let page = format!(
        "<!doctype html><p id=result>Hello, {}! You chose {}.</p><p id=cookie>{}</p><p id=assertion>{}</p>",
        escape(query.get("name").map_or("", String::as_str)),
        escape(query.get("color").map_or("", String::as_str)),
        escape(cookie),
        assertion_of(&headers),
    );
    (StatusCode::OK, Html(page))
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => char::from(b).to_string(),
            b' ' => "+".to_owned(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn site() -> Site {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let listener = std::net::TcpListener::bind(("127.0.0.1", free_port())).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    listener.set_nonblocking(true).unwrap();
    let app = axum::Router::new().route("/", get(home)).route("/greet", post(greet)).route("/greeted", get(greeted));
    runtime.spawn(async move {
        axum::serve(tokio::net::TcpListener::from_std(listener).unwrap(), app).await.unwrap();
    });
    Site { _runtime: runtime, url }
}

/// Checks the PNG signature and returns the image's size from its header chunk.
fn png_size(path: &Path) -> (u32, u32) {
    let png = std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "{} is not a PNG", path.display());
    assert_eq!(&png[12..16], b"IHDR", "{}: no IHDR chunk first", path.display());
    let number = |at: usize| u32::from_be_bytes(png[at..at + 4].try_into().unwrap());
    (number(16), number(20))
}

#[test]
fn browser_drives_a_page_through_the_iap_proxy() {
    let started = Instant::now();
    let browser = Browser::start();
    let opened = started.elapsed();
    let site = site();
    let proxy = IapProxy::start(&site.url, || Some("token-of-ana".to_owned()));

    // Outside the browser: a header the client sends is replaced, or removed, never passed on.
    let client = reqwest::blocking::Client::new();
    let forged = || client.get(proxy.url()).header(ASSERTION_HEADER, "forged").send().unwrap().text().unwrap();
    assert!(forged().contains("<span id=assertion>token-of-ana</span>"), "the proxy passed a forged assertion on");
    proxy.set_assertion(None);
    assert!(forged().contains("<span id=assertion>none</span>"), "the proxy passed a forged assertion on");
    proxy.set_assertion(Some("token-of-ana".to_owned()));

    browser.goto(proxy.url());
    assert_eq!(browser.text("#assertion"), "token-of-ana");
    assert_eq!(browser.viewport(), DESKTOP);
    assert_eq!(png_size(&browser.screenshot("browser-smoke-desktop")), DESKTOP);

    // A form POST, answered 303 with a cookie: the browser follows it, not the proxy.
    browser.fill("#name", "Ana Souza");
    browser.select("#color", "blue");
    browser.submit("form#greet");
    let result = browser.wait_for_text("#result", "Hello, Ana Souza!", Duration::from_secs(10));
    assert_eq!(result, "Hello, Ana Souza! You chose blue.");
    assert_eq!(browser.current_url(), format!("{}/greeted?name=Ana+Souza&color=blue", proxy.url()));
    assert_eq!(browser.text("#cookie"), "greeted=yes");
    assert_eq!(browser.text("#assertion"), "token-of-ana");

    // Another identity mid-test, then none.
    proxy.set_header_fn(|| Some("token-of-bruno".to_owned()));
    browser.goto(proxy.url());
    assert_eq!(browser.text("#assertion"), "token-of-bruno");
    proxy.set_assertion(None);
    browser.goto(proxy.url());
    assert_eq!(browser.text("#assertion"), "none");

    browser.mobile();
    assert_eq!(browser.viewport(), MOBILE);
    let phone = browser.screenshot("browser-smoke-mobile");
    assert_eq!(png_size(&phone), MOBILE, "{}", phone.display());
    browser.desktop();
    assert_eq!(browser.viewport(), DESKTOP);

    drop(browser);
    eprintln!("browser smoke: session open after {opened:?}, whole test {:?}", started.elapsed());
}
