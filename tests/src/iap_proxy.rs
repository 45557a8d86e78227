//! A stand-in for Identity-Aware Proxy in front of the admin console: an HTTP reverse proxy on
//! loopback that forwards every request to the console and adds the signed identity header
//! IAP adds (`x-goog-iap-jwt-assertion`), after removing any the client sent. Responses come
//! back as the console gave them: status, headers (`set-cookie`, `location`), body; redirects
//! are not followed.
//!
//! ```no_run
//! use lms_bridge_tests::iap_proxy::IapProxy;
//! let proxy = IapProxy::start("http://127.0.0.1:8089", || Some("eyJ...".to_owned()));
//! let console = proxy.url(); // give this to the browser
//! proxy.set_assertion(None); // from now on: no identity, as if IAP were bypassed
//! ```

use crate::process::free_port;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// The header IAP signs the user's identity into.
pub const ASSERTION_HEADER: &str = "x-goog-iap-jwt-assertion";

/// What gives the assertion for each request (`None`: no header).
type HeaderFn = Arc<dyn Fn() -> Option<String> + Send + Sync>;

/// A running proxy; dropping it stops it.
pub struct IapProxy {
    runtime: Option<tokio::runtime::Runtime>,
    header: Arc<RwLock<HeaderFn>>,
    url: String,
}

#[derive(Clone)]
struct Shared {
    upstream: String,
    header: Arc<RwLock<HeaderFn>>,
    client: reqwest::Client,
}

impl IapProxy {
    /// Starts forwarding `http://127.0.0.1:{free port}` to `upstream` (`http://host:port`,
    /// maybe with a path prefix); `header` is called for each request and gives the value of
    /// `x-goog-iap-jwt-assertion`, or `None` to send none.
    pub fn start(upstream: &str, header: impl Fn() -> Option<String> + Send + Sync + 'static) -> Self {
        let header: Arc<RwLock<HeaderFn>> = Arc::new(RwLock::new(Arc::new(header)));
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let shared =
            Shared { upstream: upstream.trim_end_matches('/').to_owned(), header: Arc::clone(&header), client };
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let listener = std::net::TcpListener::bind(("127.0.0.1", free_port())).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        listener.set_nonblocking(true).unwrap();
        let app = axum::Router::new().fallback(forward).with_state(shared);
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
        Self { runtime: Some(runtime), header, url }
    }

    /// `http://127.0.0.1:port`, the address to give the browser instead of the upstream's.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// From the next request on, `header` gives the assertion (another user, an expired
    /// token, none at all).
    pub fn set_header_fn(&self, header: impl Fn() -> Option<String> + Send + Sync + 'static) {
        *self.header.write().unwrap() = Arc::new(header);
    }

    /// From the next request on, every request carries `assertion` (`None`: no header).
    pub fn set_assertion(&self, assertion: Option<String>) {
        self.set_header_fn(move || assertion.clone());
    }
}

impl Drop for IapProxy {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

/// Headers that belong to one connection, not to the message (RFC 9110 §7.6.1).
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all("connection")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::try_from(name.trim()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    ] {
        headers.remove(name);
    }
}

async fn forward(State(shared): State<Shared>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let url = format!("{}{path}", shared.upstream);
    let body = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(body) => body,
        Err(e) => {
            return (StatusCode::BAD_REQUEST, format!("iap proxy: reading the request body: {e}")).into_response()
        }
    };

    // The Host header goes through as the browser sent it, as Google's load balancer does.
    let mut headers = parts.headers;
    strip_hop_by_hop(&mut headers);
    headers.remove("content-length"); // set anew for the body sent
    headers.remove(ASSERTION_HEADER);
    let assertion = {
        let header = Arc::clone(&shared.header.read().unwrap());
        header()
    };
    if let Some(assertion) = assertion {
        match HeaderValue::try_from(assertion) {
            Ok(value) => {
                headers.insert(ASSERTION_HEADER, value);
            }
            Err(e) => {
                let message = format!("iap proxy: the assertion is not a header value: {e}");
                return (StatusCode::INTERNAL_SERVER_ERROR, message).into_response();
            }
        }
    }

    let sent = shared.client.request(parts.method, &url).headers(headers).body(body).send().await;
    let answer = match sent {
        Ok(answer) => answer,
        Err(e) => return (StatusCode::BAD_GATEWAY, format!("iap proxy: {url}: {e}")).into_response(),
    };
    let status = answer.status();
    let mut headers = answer.headers().clone();
    strip_hop_by_hop(&mut headers);
    let body = match answer.bytes().await {
        Ok(body) => body,
        Err(e) => {
            return (StatusCode::BAD_GATEWAY, format!("iap proxy: {url}: reading the answer: {e}")).into_response()
        }
    };
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}
