//! A test Identity-Aware Proxy for the admin console: a P-256 key, served as a JWKS, that signs
//! the ES256 assertions IAP puts in `x-goog-iap-jwt-assertion`. The console runs with
//! `ADMIN_IAP_JWKS_URL` = [`TestIap::jwks_url`] and `ADMIN_IAP_AUDIENCE` = the audience given to
//! [`TestIap::start`]; requests carry [`TestIap::token`].

use crate::process::free_port;
use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Value};
use std::time::{SystemTime, UNIX_EPOCH};

/// The `kid` of the test key.
pub const KID: &str = "test-iap-key-1";
/// The `iss` of every IAP assertion.
pub const ISSUER: &str = "https://cloud.google.com/iap";
/// The request header the assertion goes in.
pub const HEADER: &str = "x-goog-iap-jwt-assertion";

/// A test IAP: its key and where its JWKS is served.
pub struct TestIap {
    key: EcdsaKeyPair,
    rng: SystemRandom,
    audience: String,
    jwks_url: String,
}

impl TestIap {
    /// Generates a key and serves its JWKS on a free loopback port, for assertions naming
    /// `audience` (what the console gets as `ADMIN_IAP_AUDIENCE`).
    pub fn start(audience: &str) -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
        // The public key is an uncompressed SEC1 point: 0x04, then X and Y, 32 bytes each.
        let point = key.public_key().as_ref();
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let jwks = json!({ "keys": [{
            "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": KID,
            "x": b64.encode(&point[1..33]), "y": b64.encode(&point[33..65]),
        }]})
        .to_string();
        let port = free_port();
        let server = tiny_http::Server::http(("127.0.0.1", port)).unwrap();
        std::thread::spawn(move || {
            for request in server.incoming_requests() {
                let _ = request.respond(tiny_http::Response::from_string(jwks.clone()));
            }
        });
        Self { key, rng, audience: audience.to_owned(), jwks_url: format!("http://127.0.0.1:{port}/public_key-jwk") }
    }

    /// The JWKS URL (`ADMIN_IAP_JWKS_URL`).
    pub fn jwks_url(&self) -> &str {
        &self.jwks_url
    }

    /// The audience the assertions name.
    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// The claims IAP signs for `email`: issued now, valid ten minutes.
    pub fn claims(&self, email: &str) -> Value {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        json!({
            "iss": ISSUER, "aud": self.audience, "iat": now, "exp": now + 600,
            "sub": format!("accounts.google.com:{}", subject_number(email)), "email": email,
        })
    }

    /// These claims under this header, signed ES256 with the test key (for forged and broken
    /// assertions; [`TestIap::token`] for good ones).
    pub fn sign(&self, header: &Value, claims: &Value) -> String {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let input = format!("{}.{}", b64.encode(header.to_string()), b64.encode(claims.to_string()));
        let signature = self.key.sign(&self.rng, input.as_bytes()).unwrap();
        format!("{input}.{}", b64.encode(signature.as_ref()))
    }

    /// A valid assertion for `email`.
    pub fn token(&self, email: &str) -> String {
        self.sign(&json!({ "alg": "ES256", "kid": KID, "typ": "JWT" }), &self.claims(email))
    }
}

/// A stable numeric id per email, as IAP's `sub` is per user.
fn subject_number(email: &str) -> u64 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(email.trim().to_lowercase().as_bytes());
    digest.iter().take(6).fold(0, |n, byte| n << 8 | u64::from(*byte))
}
