//! Who is asking the admin console: Identity-Aware Proxy's signed header
//! (`x-goog-iap-jwt-assertion`), verified as Google's "Securing your app with signed headers"
//! says. IAP strips the unsigned identity headers clients send, but if IAP is ever off or
//! bypassed those headers are forgeable; the signed one is not, so it is the only one read.
//!
//! Checked: the algorithm is ES256 and nothing else; the `kid` is one of IAP's published keys
//! and the signature is that key's; `iss` is IAP; `aud` is this service; `exp` is in the future,
//! `iat` (required) and `nbf` (when present) are not, with 30 s of clock skew; `sub` and `email`
//! are present. The email is the plain `email` claim: the `accounts.google.com:` prefixed form
//! belongs to the unsigned `x-goog-authenticated-user-email` header, never read here.
//!
//! Nothing here puts the token, a claim value or the key URL's query into an error text: every
//! [`IapError`] is safe to log and to answer.

use crate::auth::{describe, LEEWAY_SECS};
use crate::jwks::{JwksCache, MIN_REFRESH};
use jsonwebtoken::{Algorithm, Validation};
use serde::Deserialize;

/// The request header IAP puts its signed assertion in.
pub const HEADER: &str = "x-goog-iap-jwt-assertion";
/// The `iss` of every IAP assertion.
pub const ISSUER: &str = "https://cloud.google.com/iap";
/// Where IAP publishes its public keys, as a JWK set.
pub const DEFAULT_JWKS_URL: &str = "https://www.gstatic.com/iap/verify/public_key-jwk";

/// Why a request's identity was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IapError {
    /// No assertion header (the request did not come through IAP).
    #[error("missing IAP assertion")]
    Missing,
    /// Malformed, wrongly signed, for another audience, out of its validity period, or without
    /// an identity. The text is a fixed description.
    #[error("invalid IAP assertion: {0}")]
    Invalid(String),
    /// IAP's keys could not be fetched: a failure on our side (503), not the caller's (401).
    #[error("cannot fetch IAP's signing keys: {0}")]
    Keys(String),
}

/// The verified user.
#[derive(Clone, PartialEq, Eq)]
pub struct Identity {
    /// The `email` claim, trimmed and lowercased (the allowlists compare it).
    pub email: String,
    /// The `sub` claim: IAP's stable id of the user (`accounts.google.com:NUMBER`).
    pub subject: String,
}

/// Both fields identify a person: a `{:?}` in a log line must not.
impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity").field("email", &"<redacted>").field("subject", &"<redacted>").finish()
    }
}

#[derive(Deserialize)]
struct Claims {
    /// Issued at: a token issued in the future is not valid yet (jsonwebtoken checks only `exp`
    /// and `nbf`).
    iat: Option<u64>,
    sub: Option<String>,
    email: Option<String>,
}

/// The IAP assertion verifier of one console (one audience).
pub struct IapVerifier {
    keys: JwksCache,
    validation: Validation,
}

impl std::fmt::Debug for IapVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IapVerifier").field("audience", &self.validation.aud).field("keys", &self.keys).finish()
    }
}

fn invalid(reason: &str) -> IapError {
    IapError::Invalid(reason.to_owned())
}

/// The claim's email, normalized, when it is a plain address: not empty on either side of one
/// `@`, with no whitespace and no `:` (the `accounts.google.com:` form is not a claim value).
fn plain_email(claim: &str) -> Option<String> {
    let email = claim.trim().to_lowercase();
    let (local, domain) = email.split_once('@')?;
    let plain = !local.is_empty()
        && !domain.is_empty()
        && !domain.contains('@')
        && !email.contains(':')
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    plain.then_some(email)
}

impl IapVerifier {
    /// A verifier for `audience` (`/projects/NUMBER/locations/REGION/services/SERVICE` for IAP on
    /// Cloud Run, `/projects/NUMBER/global/backendServices/ID` behind a load balancer), with
    /// IAP's keys from `jwks_url` ([`DEFAULT_JWKS_URL`] outside tests).
    pub fn new(audience: String, jwks_url: String) -> Self {
        let mut validation = Validation::new(Algorithm::ES256);
        // Settings refuse a blank audience; should one get here anyway, it matches no token
        // (an empty set of audiences), not the tokens whose `aud` is blank too.
        let audiences: Vec<String> = Some(audience).filter(|a| !a.trim().is_empty()).into_iter().collect();
        validation.set_audience(&audiences);
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        // Off by default in jsonwebtoken: a token must not be used before its `nbf`.
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_SECS;
        Self { keys: JwksCache::new(jwks_url, MIN_REFRESH), validation }
    }

    /// Checks the value of the [`HEADER`] header and returns who sent the request.
    pub async fn verify(&self, header: Option<&str>) -> Result<Identity, IapError> {
        let token = header.map(str::trim).filter(|t| !t.is_empty()).ok_or(IapError::Missing)?;
        let jwt_header = jsonwebtoken::decode_header(token).map_err(|e| IapError::Invalid(describe(&e)))?;
        // Before any key is looked up: the algorithm is ours to choose, never the token's.
        if jwt_header.alg != Algorithm::ES256 {
            return Err(invalid("wrong algorithm"));
        }
        let kid = jwt_header.kid.ok_or_else(|| invalid("no kid"))?;
        let key = self.keys.key(&kid).await.map_err(|e| IapError::Keys(e.0))?.ok_or_else(|| invalid("unknown kid"))?;
        let claims: Claims =
            jsonwebtoken::decode(token, &key, &self.validation).map_err(|e| IapError::Invalid(describe(&e)))?.claims;
        let iat = claims.iat.ok_or_else(|| invalid("no iat"))?;
        if iat > jsonwebtoken::get_current_timestamp().saturating_add(LEEWAY_SECS) {
            return Err(invalid("not valid yet"));
        }
        let subject = claims.sub.filter(|s| !s.trim().is_empty()).ok_or_else(|| invalid("no sub"))?;
        let email = claims.email.ok_or_else(|| invalid("no email"))?;
        let email = plain_email(&email).ok_or_else(|| invalid("email is not a plain address"))?;
        Ok(Identity { email, subject })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;
    use axum::routing::get;
    use axum::Router;
    use base64::Engine as _;
    use jsonwebtoken::{EncodingKey, Header};
    use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
    use serde_json::{json, Value};

    const KID: &str = "iap-test-key";
    const RSA_KID: &str = "rsa-key";
    const AUDIENCE: &str = "/projects/123456/locations/europe-west1/services/lms-bridge-admin";
    const EMAIL: &str = "alice@example.com";

    /// A P-256 key pair: PKCS#8 to sign, the public point as JWK coordinates.
    struct P256 {
        pkcs8: Vec<u8>,
        x: String,
        y: String,
    }

    impl P256 {
        fn generate() -> Self {
            let rng = ring::rand::SystemRandom::new();
            let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
            let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
            // Uncompressed SEC1: 0x04, then X and Y, 32 bytes each.
            let point = pair.public_key().as_ref();
            let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
            Self { pkcs8: pkcs8.as_ref().to_vec(), x: b64.encode(&point[1..33]), y: b64.encode(&point[33..65]) }
        }

        fn sign(&self, kid: Option<&str>, claims: &Value) -> String {
            let mut header = Header::new(Algorithm::ES256);
            header.kid = kid.map(str::to_owned);
            jsonwebtoken::encode(&header, claims, &EncodingKey::from_ec_der(&self.pkcs8)).unwrap()
        }
    }

    /// Serves `body` with `status` at `/jwk` on a loopback port; returns the URL.
    async fn serve(status: StatusCode, body: String) -> String {
        let app = Router::new().route("/jwk", get(move || async move { (status, body) }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwk?key=secret-query", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        url
    }

    /// A fake IAP: a key, and its JWKS served over HTTP (with an RSA key beside it, as a
    /// mixed set would have).
    struct Iap {
        key: P256,
        url: String,
    }

    impl Iap {
        async fn start() -> Self {
            let key = P256::generate();
            let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
            let jwks = json!({ "keys": [
                { "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": KID, "x": key.x, "y": key.y },
                { "kty": "RSA", "alg": "RS256", "use": "sig", "kid": RSA_KID, "n": b64.encode([0xc3_u8; 256]), "e": "AQAB" },
            ]});
            let url = serve(StatusCode::OK, jwks.to_string()).await;
            Self { key, url }
        }

        fn verifier(&self) -> IapVerifier {
            IapVerifier::new(AUDIENCE.to_owned(), self.url.clone())
        }

        fn token(&self, claims: &Value) -> String {
            self.key.sign(Some(KID), claims)
        }
    }

    fn now() -> u64 {
        jsonwebtoken::get_current_timestamp()
    }

    /// The claims IAP signs for `EMAIL`.
    fn claims() -> Value {
        json!({
            "iss": ISSUER, "aud": AUDIENCE, "iat": now(), "exp": now() + 600,
            "sub": "accounts.google.com:1234567890", "email": EMAIL, "hd": "example.com",
        })
    }

    /// Claims to set (`null`: to remove).
    type Changes = [(&'static str, Value)];

    fn with(changes: &Changes) -> Value {
        let mut claims = claims();
        for (name, value) in changes {
            if value.is_null() {
                claims.as_object_mut().unwrap().remove(*name);
            } else {
                claims[*name] = value.clone();
            }
        }
        claims
    }

    /// A token from parts, with any header and signature.
    fn forge(header: &Value, claims: &Value, signature: &[u8]) -> String {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!("{}.{}.{}", b64.encode(header.to_string()), b64.encode(claims.to_string()), b64.encode(signature))
    }

    /// Verifies `token` (the `case` of a table), expects a refusal whose text quotes neither the
    /// token nor a claim value, and returns it.
    async fn refusal_of(verifier: &IapVerifier, token: &str, case: &str) -> IapError {
        let error = match verifier.verify(Some(token)).await {
            Ok(_) => panic!("{case}: accepted a token it must refuse"),
            Err(error) => error,
        };
        let text = error.to_string();
        for secret in [token, "alice", "example.com", "1234567890", "123456", "secret-query", "127.0.0.1"] {
            assert!(!text.contains(secret), "{text:?} quotes {secret:?}");
        }
        error
    }

    async fn refusal(verifier: &IapVerifier, token: &str) -> IapError {
        refusal_of(verifier, token, "a forged token").await
    }

    #[tokio::test]
    async fn a_good_assertion_names_its_user() {
        let iap = Iap::start().await;
        let verifier = iap.verifier();
        let identity = verifier.verify(Some(&iap.token(&claims()))).await.unwrap();
        assert_eq!(identity.email, EMAIL);
        assert_eq!(identity.subject, "accounts.google.com:1234567890");
        // The header's value may carry spaces; the email is compared lowercased and trimmed.
        let shouting = iap.token(&with(&[("email", json!("  Alice@Example.COM "))]));
        let identity = verifier.verify(Some(&format!(" {shouting} "))).await.unwrap();
        assert_eq!(identity.email, EMAIL);
        // Clock skew: `exp` up to 30 s past, `iat` up to 30 s ahead are still fine.
        let skewed = iap.token(&with(&[("exp", json!(now() - 10)), ("iat", json!(now() + 10))]));
        verifier.verify(Some(&skewed)).await.unwrap();
        assert_eq!(verifier.keys.fetches(), 1, "the key set is cached");
        let debug = format!("{identity:?} {verifier:?}");
        assert!(!debug.contains("alice") && !debug.contains("secret-query"), "{debug}");
    }

    #[tokio::test]
    async fn every_claim_is_checked() {
        let iap = Iap::start().await;
        let verifier = iap.verifier();
        let cases: [(&str, &Changes, &str); 13] = [
            ("another audience", &[("aud", json!("/projects/123456/global/backendServices/9"))], "wrong audience"),
            ("audiences without ours", &[("aud", json!(["/projects/1/apps/other"]))], "wrong audience"),
            ("no audience", &[("aud", Value::Null)], "a required claim is missing"),
            ("another issuer", &[("iss", json!("https://accounts.google.com"))], "wrong issuer"),
            ("no issuer", &[("iss", Value::Null)], "a required claim is missing"),
            ("expired", &[("exp", json!(now() - 120))], "expired"),
            ("no expiry", &[("exp", Value::Null)], "a required claim is missing"),
            ("issued in the future", &[("iat", json!(now() + 120))], "not valid yet"),
            ("no iat", &[("iat", Value::Null)], "no iat"),
            ("not before the future", &[("nbf", json!(now() + 120))], "not valid yet"),
            ("no email", &[("email", Value::Null)], "no email"),
            (
                "the unsigned header's form",
                &[("email", json!("accounts.google.com:alice@example.com"))],
                "email is not a plain address",
            ),
            ("no subject", &[("sub", Value::Null)], "a required claim is missing"),
        ];
        for (case, changes, reason) in cases {
            let error = refusal_of(&verifier, &iap.token(&with(changes)), case).await;
            assert_eq!(error, IapError::Invalid(reason.to_owned()), "{case}");
        }
        for email in ["", "  ", "alice", "@example.com", "alice@", "a@b@example.com", "alice @example.com"] {
            let error = refusal_of(&verifier, &iap.token(&with(&[("email", json!(email))])), email).await;
            assert_eq!(error, IapError::Invalid("email is not a plain address".into()), "{email:?}");
        }
    }

    #[tokio::test]
    async fn only_es256_from_a_published_key_is_accepted() {
        let iap = Iap::start().await;
        let verifier = iap.verifier();
        let claims = claims();
        let invalid = |reason: &str| IapError::Invalid(reason.to_owned());

        assert_eq!(refusal(&verifier, &iap.key.sign(Some("rotated-away"), &claims)).await, invalid("unknown kid"));
        assert_eq!(refusal(&verifier, &iap.key.sign(None, &claims)).await, invalid("no kid"));
        // Another P-256 key under IAP's kid.
        let impostor = P256::generate().sign(Some(KID), &claims);
        assert_eq!(refusal(&verifier, &impostor).await, invalid("bad signature"));
        // IAP's signature over other claims.
        let signed = iap.token(&claims);
        let (header, rest) = signed.split_once('.').unwrap();
        let (_, signature) = rest.split_once('.').unwrap();
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mallory = b64.encode(with(&[("email", json!("mallory@example.com"))]).to_string());
        let tampered = format!("{header}.{mallory}.{signature}");
        assert_eq!(refusal(&verifier, &tampered).await, invalid("bad signature"));

        // The algorithm comes from us, never from the token: RS256 (even naming the RSA key in
        // the set), HS256 keyed with IAP's public key, ES384, and "none".
        for (alg, kid) in [("RS256", RSA_KID), ("RS256", KID), ("HS256", KID), ("ES384", KID), ("PS256", RSA_KID)] {
            let token = forge(&json!({ "alg": alg, "kid": kid, "typ": "JWT" }), &claims, &[7; 64]);
            assert_eq!(refusal_of(&verifier, &token, alg).await, invalid("wrong algorithm"), "{alg} {kid}");
        }
        let hmac_header = Header { kid: Some(KID.to_owned()), ..Header::new(Algorithm::HS256) };
        let confused =
            jsonwebtoken::encode(&hmac_header, &claims, &EncodingKey::from_secret(iap.key.x.as_bytes())).unwrap();
        assert_eq!(refusal(&verifier, &confused).await, invalid("wrong algorithm"));
        for unsigned in [
            forge(&json!({ "alg": "none", "kid": KID }), &claims, &[]),
            forge(&json!({ "alg": "none", "kid": KID }), &claims, &[]).trim_end_matches('.').to_owned(),
            forge(&json!({ "kid": KID }), &claims, &[7; 64]),
        ] {
            assert!(matches!(refusal_of(&verifier, &unsigned, &unsigned).await, IapError::Invalid(_)), "{unsigned}");
        }
    }

    #[tokio::test]
    async fn a_missing_or_garbled_header_is_refused() {
        let iap = Iap::start().await;
        let verifier = iap.verifier();
        assert_eq!(verifier.verify(None).await, Err(IapError::Missing));
        assert_eq!(verifier.verify(Some("   ")).await, Err(IapError::Missing));
        for garbage in ["garbage", "a.b", "a.b.c", "Bearer x.y.z", "..", "eyJ.eyJ.sig", "\u{0}.\u{0}.\u{0}"] {
            assert!(matches!(refusal_of(&verifier, garbage, garbage).await, IapError::Invalid(_)), "{garbage:?}");
        }
        assert_eq!(verifier.keys.fetches(), 0, "nothing fetched for tokens that cannot be IAP's");
    }

    #[tokio::test]
    async fn keys_that_cannot_be_fetched_are_our_failure_not_the_callers() {
        let iap = Iap::start().await;
        let token = iap.token(&claims());
        let down = IapVerifier::new(AUDIENCE.to_owned(), serve(StatusCode::SERVICE_UNAVAILABLE, String::new()).await);
        assert_eq!(refusal(&down, &token).await, IapError::Keys("HTTP 503".into()));
        let not_a_set = IapVerifier::new(AUDIENCE.to_owned(), serve(StatusCode::OK, "<html>".into()).await);
        assert_eq!(refusal(&not_a_set, &token).await, IapError::Keys("the answer is not a JWK set".into()));
        // Nobody listening: a port that was bound, then released.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let unreachable = IapVerifier::new(AUDIENCE.to_owned(), format!("http://{closed}/jwk"));
        assert_eq!(refusal(&unreachable, &token).await, IapError::Keys("cannot connect".into()));
    }

    /// The whole-chain and browser tests sign with the harness's `TestIap`: its tokens must be
    /// what this verifier accepts.
    #[tokio::test]
    async fn the_test_harness_signs_assertions_this_verifier_accepts() {
        let iap = lms_bridge_tests::iap::TestIap::start(AUDIENCE);
        let verifier = IapVerifier::new(AUDIENCE.to_owned(), iap.jwks_url().to_owned());
        let identity = verifier.verify(Some(&iap.token("Bob@Example.com"))).await.unwrap();
        assert_eq!(identity.email, "bob@example.com");
        let blank = IapVerifier::new(" ".to_owned(), iap.jwks_url().to_owned());
        let blank_token = iap.sign(&json!({ "alg": "ES256", "kid": lms_bridge_tests::iap::KID }), &{
            let mut claims = iap.claims("bob@example.com");
            claims["aud"] = json!(" ");
            claims
        });
        assert_eq!(refusal(&blank, &blank_token).await, IapError::Invalid("wrong audience".into()));
        let elsewhere = IapVerifier::new("/projects/1/global/backendServices/2".to_owned(), iap.jwks_url().to_owned());
        assert_eq!(
            refusal(&elsewhere, &iap.token("bob@example.com")).await,
            IapError::Invalid("wrong audience".into())
        );
    }
}
