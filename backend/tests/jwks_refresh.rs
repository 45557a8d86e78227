//! The JWKS cache of the push verifier against a local key server that counts its fetches:
//! single flight, the minimum interval (also when the server fails), `Cache-Control: max-age`,
//! and cached keys served while a fetch is in flight.

#![allow(clippy::unwrap_used, reason = "tests: a panic is the failure report")]

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use base64::Engine as _;
use lms_bridge_backend::auth::{AuthError, Expected, PushAuth, PushAuthConfig, PushCheck};
use serde_json::json;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const KID: &str = "known-kid";

/// How the key server answers.
struct Behaviour {
    fetches: AtomicUsize,
    /// 200 or an error status.
    status: AtomicUsize,
    /// Milliseconds to wait before answering.
    delay_ms: AtomicU64,
    cache_control: &'static str,
}

struct KeyServer {
    behaviour: Arc<Behaviour>,
    url: String,
}

impl KeyServer {
    async fn start(cache_control: &'static str) -> Self {
        let behaviour = Arc::new(Behaviour {
            fetches: AtomicUsize::new(0),
            status: AtomicUsize::new(200),
            delay_ms: AtomicU64::new(0),
            cache_control,
        });
        let b = behaviour.clone();
        let app = Router::new().route(
            "/certs",
            get(move || {
                let b = b.clone();
                async move {
                    b.fetches.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(b.delay_ms.load(Ordering::SeqCst))).await;
                    let status = StatusCode::from_u16(b.status.load(Ordering::SeqCst) as u16).unwrap();
                    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
                    let jwks = json!({ "keys": [{
                        "kty": "RSA", "alg": "RS256", "use": "sig", "kid": KID,
                        "n": b64.encode([0xc3_u8; 256]), "e": "AQAB",
                    }]});
                    (status, [(header::CACHE_CONTROL, b.cache_control)], jwks.to_string()).into_response()
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/certs?key=secret-query", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { behaviour, url }
    }

    fn fetches(&self) -> usize {
        self.behaviour.fetches.load(Ordering::SeqCst)
    }
}

fn verifier(url: &str, min_refresh: Duration) -> Arc<PushAuth> {
    Arc::new(PushAuth::new(PushAuthConfig {
        check: PushCheck::Oidc(Expected {
            audience: "https://backend".into(),
            email: "push@p.iam.gserviceaccount.com".into(),
        }),
        jwks_url: url.to_owned(),
        verification_token: None,
        min_refresh,
    }))
}

/// A token naming `kid`; its signature is garbage (these tests are about fetching keys).
fn token(kid: &str) -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = json!({ "alg": "RS256", "kid": kid, "typ": "JWT" });
    let claims = json!({ "iss": "https://accounts.google.com", "aud": "https://backend", "exp": 4_000_000_000_u64 });
    format!("{}.{}.{}", b64.encode(header.to_string()), b64.encode(claims.to_string()), b64.encode([7_u8; 256]))
}

async fn verify(auth: &PushAuth, kid: &str) -> Result<(), AuthError> {
    auth.verify(Some(&format!("Bearer {}", token(kid))), None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_with_an_unknown_kid_make_one_fetch() {
    let server = KeyServer::start("public, max-age=3600").await;
    server.behaviour.delay_ms.store(200, Ordering::SeqCst);
    let auth = verifier(&server.url, Duration::from_secs(30));
    let requests = (0..50).map(|i| {
        let auth = auth.clone();
        tokio::spawn(async move { verify(&auth, &format!("forged-{}", i % 5)).await })
    });
    for result in futures::future::join_all(requests).await {
        match result.unwrap() {
            Err(AuthError::Invalid(reason)) => assert_eq!(reason, "unknown kid"),
            other => panic!("unexpected: {other:?}"),
        }
    }
    assert_eq!(server.fetches(), 1, "one fetch for 50 concurrent requests");
    assert_eq!(auth.jwks_fetches(), 1);
    // The known kid is served from the cache: still one fetch.
    assert!(matches!(verify(&auth, KID).await, Err(AuthError::Invalid(r)) if r == "bad signature"));
    assert_eq!(server.fetches(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_first_fetch_is_shared_by_concurrent_requests_with_a_known_kid() {
    let server = KeyServer::start("max-age=3600").await;
    server.behaviour.delay_ms.store(200, Ordering::SeqCst);
    let auth = verifier(&server.url, Duration::from_secs(30));
    let requests = (0..20).map(|_| {
        let auth = auth.clone();
        tokio::spawn(async move { verify(&auth, KID).await })
    });
    for result in futures::future::join_all(requests).await {
        assert!(matches!(result.unwrap(), Err(AuthError::Invalid(r)) if r == "bad signature"));
    }
    assert_eq!(server.fetches(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_key_server_is_asked_at_most_once_per_minimum_interval() {
    let server = KeyServer::start("max-age=3600").await;
    server.behaviour.status.store(500, Ordering::SeqCst);
    let interval = Duration::from_millis(400);
    let auth = verifier(&server.url, interval);
    let started = Instant::now();
    let mut answers = 0;
    while started.elapsed() < Duration::from_millis(1_500) {
        let requests = (0..10).map(|i| {
            let auth = auth.clone();
            tokio::spawn(async move { verify(&auth, &format!("kid-{i}")).await })
        });
        for result in futures::future::join_all(requests).await {
            match result.unwrap() {
                // A retryable failure (503 to Pub/Sub), naming neither the URL nor its query.
                Err(AuthError::Jwks(reason)) => {
                    assert_eq!(reason, "HTTP 500");
                    answers += 1;
                }
                other => panic!("unexpected: {other:?}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let elapsed = started.elapsed();
    let allowed = (elapsed.as_millis() / interval.as_millis()) as usize + 1;
    assert!(answers > 200, "{answers} requests answered");
    assert!(
        (2..=allowed).contains(&server.fetches()),
        "{} fetches in {elapsed:?} (interval {interval:?}): tried again after the interval, never more often",
        server.fetches()
    );
    // Once the server is back, the next attempt after the interval gets the keys.
    server.behaviour.status.store(200, Ordering::SeqCst);
    tokio::time::sleep(interval).await;
    assert!(matches!(verify(&auth, KID).await, Err(AuthError::Invalid(r)) if r == "bad signature"));
}

#[tokio::test]
async fn cache_control_max_age_sets_when_the_keys_are_fetched_again() {
    let short = KeyServer::start("public, max-age=1, must-revalidate").await;
    let auth = verifier(&short.url, Duration::from_millis(50));
    verify(&auth, KID).await.unwrap_err();
    verify(&auth, KID).await.unwrap_err();
    assert_eq!(short.fetches(), 1, "fresh for max-age");
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    verify(&auth, KID).await.unwrap_err();
    assert_eq!(short.fetches(), 2, "refetched once max-age passed");

    let long = KeyServer::start("public, max-age=3600").await;
    let auth = verifier(&long.url, Duration::from_millis(50));
    verify(&auth, KID).await.unwrap_err();
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    verify(&auth, KID).await.unwrap_err();
    assert_eq!(long.fetches(), 1, "still fresh");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_fetch_does_not_hold_up_requests_whose_key_is_cached() {
    let server = KeyServer::start("max-age=3600").await;
    let auth = verifier(&server.url, Duration::ZERO);
    verify(&auth, KID).await.unwrap_err();
    assert_eq!(server.fetches(), 1);
    server.behaviour.delay_ms.store(2_000, Ordering::SeqCst);
    let slow = {
        let auth = auth.clone();
        tokio::spawn(async move { verify(&auth, "new-kid").await })
    };
    while server.fetches() < 2 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let started = Instant::now();
    assert!(matches!(verify(&auth, KID).await, Err(AuthError::Invalid(r)) if r == "bad signature"));
    assert!(started.elapsed() < Duration::from_millis(500), "cached key answered during the fetch");
    assert!(!slow.is_finished(), "the fetch was still running");
    assert!(matches!(slow.await.unwrap(), Err(AuthError::Invalid(r)) if r == "unknown kid"));
}
