//! Self-signed service-account JWTs for Pub/Sub (RS256 via Web Crypto), cached per isolate.
//!
//! Google accepts a JWT signed by the service account's own key as an access token for its
//! APIs, so there is no token-exchange round trip: one signature per hour per isolate.

use lms_bridge_shared::pubsub::ServiceAccountKey;
use std::cell::RefCell;
use web_sys::{CryptoKey, WorkerGlobalScope};
use worker::js_sys::{Array, Object, Reflect, Uint8Array};
use worker::wasm_bindgen::{JsCast, JsValue};
use worker::wasm_bindgen_futures::JsFuture;

/// Renew this long before expiry, so a token never expires in flight.
const RENEW_BEFORE_SECS: i64 = 300;
const ALGORITHM: &str = "RSASSA-PKCS1-v1_5";

struct Cached {
    client_email: String,
    token: String,
    expires_at: i64,
}

thread_local! {
    // A Worker isolate is single-threaded: this is the per-isolate cache.
    static CACHE: RefCell<Option<Cached>> = const { RefCell::new(None) };
}

fn now_secs() -> i64 {
    (worker::Date::now().as_millis() / 1000) as i64
}

/// A valid bearer token for `key`, signed now or reused from the cache.
pub async fn bearer(key: &ServiceAccountKey) -> Result<String, &'static str> {
    let now = now_secs();
    let cached = CACHE.with_borrow(|c| {
        c.as_ref()
            .filter(|c| c.client_email == key.client_email && c.expires_at - now > RENEW_BEFORE_SECS)
            .map(|c| c.token.clone())
    });
    if let Some(token) = cached {
        return Ok(token);
    }
    let (input, expires_at) = key.jwt_signing_input(now);
    let signature = sign(key, input.as_bytes()).await?;
    use base64::Engine as _;
    let token = format!("{input}.{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(signature));
    CACHE.with_borrow_mut(|c| {
        *c = Some(Cached { client_email: key.client_email.clone(), token: token.clone(), expires_at });
    });
    Ok(token)
}

/// Signs with Web Crypto. Errors are fixed texts: the runtime's messages are not needed to
/// act, and a key's bytes must never ride along in one.
async fn sign(key: &ServiceAccountKey, data: &[u8]) -> Result<Vec<u8>, &'static str> {
    let der = key.private_key_der().map_err(|_| crate::config::KEY_NOT_PEM)?;
    let crypto_key = import(&der).await.map_err(|_| "the private key could not be imported (not PKCS#8 RSA)")?;
    sign_with(&crypto_key, data).await.map_err(|_| "Web Crypto could not sign")
}

async fn import(der: &[u8]) -> Result<CryptoKey, JsValue> {
    let subtle = worker::js_sys::global().unchecked_into::<WorkerGlobalScope>().crypto()?.subtle();
    let algorithm = Object::new();
    Reflect::set(&algorithm, &"name".into(), &ALGORITHM.into())?;
    Reflect::set(&algorithm, &"hash".into(), &"SHA-256".into())?;
    let usages = Array::of1(&"sign".into());
    let der = Uint8Array::from(der);
    let imported = subtle.import_key_with_object("pkcs8", &der, &algorithm, false, &usages)?;
    Ok(JsFuture::from(imported).await?.unchecked_into())
}

async fn sign_with(crypto_key: &CryptoKey, data: &[u8]) -> Result<Vec<u8>, JsValue> {
    let subtle = worker::js_sys::global().unchecked_into::<WorkerGlobalScope>().crypto()?.subtle();
    let signed = JsFuture::from(subtle.sign_with_str_and_u8_array(ALGORITHM, crypto_key, data)?).await?;
    Ok(Uint8Array::new(&signed).to_vec())
}
