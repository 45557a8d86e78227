//! The forgery matrix (issue 13): every way of presenting a false or missing credential, at the
//! edge (workerd, publishing to the real Pub/Sub emulator) and at the backend (`lms-bridge
//! serve`: its push and sweep endpoints, in both token modes), is refused with 401 and a JSON
//! error, and changes nothing: nothing published, no event written, no LMS call. Each matrix
//! ends with the valid credential, which must be accepted and take effect, so a check that
//! could never fail would show. The matrices are printed as tables.

#![allow(clippy::unwrap_used, reason = "test code: a panic is the failure report")]

use base64::Engine as _;
use lms_bridge_tests::backend::{envelope, Backend, Issuer, Sandbox, KID, PUSH_ACCOUNT, VERIFICATION_TOKEN};
use lms_bridge_tests::edge::{Edge, HOTTOK};
use lms_bridge_tests::mappings::{Mappings, SAMPLE_PRODUCT};
use lms_bridge_tests::pubsub_emulator::{Emulator, PROJECT};
use lms_bridge_tests::stack;
use lms_bridge_tests::webhooks::{now_ms, Webhook, DAY_MS};
use rsa::pkcs1::EncodeRsaPublicKey;
use rsa::pkcs1v15::SigningKey;
use rsa::pkcs8::{EncodePublicKey, LineEnding};
use rsa::signature::{SignatureEncoding, Signer};
use rsa::{BigUint, RsaPrivateKey, RsaPublicKey};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// A second hottok edge A accepts (`HOTMART_HOTTOK=new,old` during a rotation).
const ROTATED: &str = "test-hottok-old-51d0";
/// The hottok of another deployment (edge B).
const OTHER_DEPLOYMENT: &str = "deploy-b-hottok-91c2";
const TOPIC: &str = "forgery";

fn b64url(bytes: impl AsRef<[u8]>) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// HMAC-SHA256 (RFC 2104), for the forgeries that need a real MAC.
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > block.len() {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.iter().map(|b| b ^ byte).collect::<Vec<u8>>();
    let inner = Sha256::new().chain_update(pad(0x36)).chain_update(message).finalize();
    Sha256::new().chain_update(pad(0x5c)).chain_update(inner).finalize().into()
}

/// One line of a printed matrix.
struct Row {
    surface: String,
    case: String,
    status: u16,
    effect: String,
    /// What is wrong with the row (empty: as expected).
    wrong: Vec<String>,
}

/// Prints the matrix, then fails with every row that is not as expected.
fn report(title: &str, rows: &[Row]) {
    let width = rows.iter().map(|r| r.case.chars().count()).max().unwrap_or(4).max(4);
    let surface = rows.iter().map(|r| r.surface.len()).max().unwrap_or(7).max(7);
    let mut table = format!("\n{title}\n");
    let _ = writeln!(table, "{:<surface$} | {:<width$} | status | published/written", "surface", "case");
    let _ = writeln!(table, "{}-+-{}-+--------+------------------", "-".repeat(surface), "-".repeat(width));
    for row in rows {
        let mark = if row.wrong.is_empty() { "" } else { "   <-- WRONG" };
        let _ = writeln!(
            table,
            "{:<surface$} | {:<width$} | {:>6} | {}{mark}",
            row.surface, row.case, row.status, row.effect
        );
    }
    // One write, so that matrices printed by parallel tests do not interleave.
    eprint!("{table}");
    let wrong: Vec<String> = rows
        .iter()
        .filter(|r| !r.wrong.is_empty())
        .map(|r| format!("{} / {}: {}", r.surface, r.case, r.wrong.join("; ")))
        .collect();
    assert!(wrong.is_empty(), "{title}: {} row(s) not as expected:\n{}", wrong.len(), wrong.join("\n"));
}

/// What a refusal must look like: 401 and `{"error":{"code":"unauthorized","message":…}}`,
/// quoting none of the secrets.
fn refusal_problems(status: u16, text: &str, secrets: &[&str]) -> Vec<String> {
    let mut wrong = Vec::new();
    if status != 401 {
        wrong.push(format!("status {status}, not 401"));
    }
    match serde_json::from_str::<Value>(text) {
        Ok(body) => {
            if body["error"]["code"] != "unauthorized" {
                wrong.push(format!("error code {}", body["error"]["code"]));
            }
            if body["error"]["message"].as_str().is_none_or(str::is_empty) {
                wrong.push("no error message".to_owned());
            }
        }
        Err(_) => wrong.push(format!("not a JSON body: {}", text.chars().take(120).collect::<String>())),
    }
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        if text.contains(secret) {
            wrong.push("the answer quotes a secret".to_owned());
        }
    }
    wrong
}

/// Posts `body` with exactly these headers: status and text.
fn post(url: &str, headers: &[(String, String)], content_type: &str, body: Vec<u8>) -> (u16, String) {
    let mut request = reqwest::blocking::Client::new()
        .post(url)
        .timeout(Duration::from_secs(60))
        .header("content-type", content_type)
        .body(body);
    for (name, value) in headers {
        request = request.header(name.as_str(), value.as_str());
    }
    let response = request.send().unwrap();
    (response.status().as_u16(), response.text().unwrap_or_default())
}

fn header(name: &str, value: &str) -> (String, String) {
    (name.to_owned(), value.to_owned())
}

// ---------------------------------------------------------------------------------------------
// The edge
// ---------------------------------------------------------------------------------------------

/// An edge request: which edge, the path's query, the headers, and the body's extra fields.
struct EdgeCase {
    case: &'static str,
    on_b: bool,
    query: String,
    headers: Vec<(String, String)>,
    body_hottok: bool,
}

fn edge_case(case: &'static str, headers: Vec<(String, String)>) -> EdgeCase {
    EdgeCase { case, on_b: false, query: String::new(), headers, body_hottok: false }
}

fn hottok(value: &str) -> Vec<(String, String)> {
    vec![header("X-HOTMART-HOTTOK", value)]
}

/// Standard Webhooks headers (`webhook-id`, `-timestamp`, `-signature: v1,…`) signing `body`
/// with `secret`: the shape another kind of source would authenticate with.
fn standard_webhooks(secret: &str, id: &str, body: &[u8]) -> Vec<(String, String)> {
    let timestamp = (now_ms() / 1000).to_string();
    let mut signed = format!("{id}.{timestamp}.").into_bytes();
    signed.extend_from_slice(body);
    let signature = base64::engine::general_purpose::STANDARD.encode(hmac_sha256(secret.as_bytes(), &signed));
    vec![
        header("webhook-id", id),
        header("webhook-timestamp", &timestamp),
        header("webhook-signature", &format!("v1,{signature}")),
    ]
}

#[test]
fn edge_refuses_every_forged_credential_and_publishes_nothing() {
    let started = Instant::now();
    let emulator = Emulator::start();
    let client = emulator.client();
    client.create_topic(TOPIC);
    // Created before any request: whatever any edge publishes lands here.
    client.create_subscription("forgery-all", TOPIC);
    let vars = |hottok: &str| {
        vec![
            ("HOTMART_HOTTOK", hottok.to_owned()),
            ("PUBSUB_EMULATOR_HOST", emulator.host.clone()),
            ("GCP_PROJECT", PROJECT.to_owned()),
            ("PUBSUB_TOPIC", TOPIC.to_owned()),
        ]
    };
    let start = |name: &str, vars: Vec<(&str, String)>| {
        let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        Edge::start(name, &vars)
    };
    // Edge A accepts two tokens (a rotation in progress); edge B is another deployment.
    let edge_a = start("forgery-a", vars(&format!("{HOTTOK},{ROTATED}")));
    let edge_b = start("forgery-b", vars(OTHER_DEPLOYMENT));
    let up = started.elapsed();

    let prefix = &HOTTOK[..HOTTOK.len() - 1];
    let capitalized = format!("T{}", &HOTTOK[1..]);
    let body_for_signing = Webhook::purchase_approved().id("forged-edge-std").bytes();
    let mut cases = vec![
        edge_case("no X-HOTMART-HOTTOK header", vec![]),
        edge_case("empty hottok", hottok("")),
        edge_case("wrong hottok", hottok("nope")),
        edge_case("hottok minus its last character", hottok(prefix)),
        edge_case("hottok plus one character", hottok(&format!("{HOTTOK}x"))),
        edge_case("hottok in upper case", hottok(&HOTTOK.to_uppercase())),
        edge_case("hottok capitalized", hottok(&capitalized)),
        edge_case("the whole rotation setting \"new,old\"", hottok(&format!("{HOTTOK},{ROTATED}"))),
        edge_case("another deployment's hottok (edge B's)", hottok(OTHER_DEPLOYMENT)),
        edge_case("the backend's push verification token", hottok(VERIFICATION_TOKEN)),
        EdgeCase { body_hottok: true, ..edge_case("hottok only in the body", vec![]) },
        EdgeCase { body_hottok: true, ..edge_case("hottok in the body, wrong header", hottok("nope")) },
        EdgeCase { query: format!("?hottok={HOTTOK}"), ..edge_case("hottok only in the query string", vec![]) },
        edge_case("hottok as Authorization: Bearer", vec![header("Authorization", &format!("Bearer {HOTTOK}"))]),
        edge_case("hottok under another header (X-Hottok)", vec![header("X-Hottok", HOTTOK)]),
        edge_case(
            "Standard Webhooks signature keyed with the hottok",
            standard_webhooks(HOTTOK, "msg_forged", &body_for_signing),
        ),
        edge_case("8 KiB hottok", hottok(&"k".repeat(8 * 1024))),
        edge_case("64 KiB hottok", hottok(&"k".repeat(64 * 1024))),
        edge_case("64 KiB hottok starting with the right one", hottok(&format!("{HOTTOK}{}", "k".repeat(64 * 1024)))),
        EdgeCase { on_b: true, ..edge_case("edge A's hottok", hottok(HOTTOK)) },
        EdgeCase { on_b: true, ..edge_case("edge A's second (rotation) hottok", hottok(ROTATED)) },
        EdgeCase { on_b: true, ..edge_case("no X-HOTMART-HOTTOK header", vec![]) },
    ];
    let mut rows = Vec::new();
    let mut ids = Vec::new();
    for (i, case) in cases.iter_mut().enumerate() {
        let (edge, surface) = if case.on_b { (&edge_b, "edge B") } else { (&edge_a, "edge A") };
        let id = format!("forged-edge-{i}");
        let body = if case.case.starts_with("Standard Webhooks") {
            // The signature covers this body exactly.
            body_for_signing.clone()
        } else {
            Webhook::purchase_approved()
                .id(&id)
                .edit(|raw| {
                    if case.body_hottok {
                        raw["hottok"] = HOTTOK.into();
                    }
                })
                .bytes()
        };
        let event_id = format!("hotmart:{}", serde_json::from_slice::<Value>(&body).unwrap()["id"].as_str().unwrap());
        let url = format!("{}/webhooks/hotmart{}", edge.url, case.query);
        let (status, text) = post(&url, &case.headers, "application/json", body);
        let wrong = refusal_problems(status, &text, &[HOTTOK, ROTATED, OTHER_DEPLOYMENT]);
        rows.push(Row {
            surface: surface.to_owned(),
            case: case.case.to_owned(),
            status,
            effect: String::new(),
            wrong,
        });
        ids.push(event_id);
    }
    // One pull after all of them: the edge answers only once it has published, so a forged
    // request that got through is in the subscription by now.
    let pulled = client.pull_exactly("forgery-all", 0, Duration::ZERO, Duration::from_secs(2));
    for (row, id) in rows.iter_mut().zip(&ids) {
        let published = pulled.iter().filter(|m| m.attributes["event_id"] == id.as_str()).count();
        row.effect = if published == 0 { "published: no".to_owned() } else { format!("PUBLISHED x{published}") };
        if published > 0 {
            row.wrong.push("published".to_owned());
        }
    }
    if !pulled.is_empty() {
        rows.push(Row {
            surface: "edge".to_owned(),
            case: "pull after the forgeries".to_owned(),
            status: 0,
            effect: format!("{} message(s)", pulled.len()),
            wrong: vec![format!("{} message(s) reached the topic", pulled.len())],
        });
    }

    // Controls: each edge's own tokens are accepted and published, into the same subscription.
    let controls = [
        ("edge A", &edge_a, HOTTOK, "the valid hottok (control)"),
        ("edge A", &edge_a, ROTATED, "the rotated-in second hottok (control)"),
        ("edge B", &edge_b, OTHER_DEPLOYMENT, "its own hottok (control)"),
    ];
    let mut control_rows = Vec::new();
    for (i, (surface, edge, token, case)) in controls.iter().enumerate() {
        let id = format!("control-edge-{i}");
        let url = format!("{}/webhooks/hotmart", edge.url);
        let body = Webhook::purchase_approved().id(&id).bytes();
        let (status, text) = post(&url, &hottok(token), "application/json", body);
        let mut wrong = Vec::new();
        let answer: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if status != 200 || answer["status"] != "accepted" || answer["via"] != "pubsub" {
            wrong.push(format!("not accepted: {status} {text}"));
        }
        control_rows.push((
            format!("hotmart:{id}"),
            Row { surface: surface.to_string(), case: case.to_string(), status, effect: String::new(), wrong },
        ));
    }
    let pulled = client.pull_exactly("forgery-all", controls.len(), Duration::from_secs(30), Duration::from_secs(1));
    for (id, mut row) in control_rows {
        let published = pulled.iter().filter(|m| m.attributes["event_id"] == id.as_str()).count();
        row.effect = format!("published: {}", if published == 1 { "yes".to_owned() } else { format!("x{published}") });
        if published != 1 {
            row.wrong.push(format!("published {published} times, not once"));
        }
        rows.push(row);
    }
    eprintln!("edge: stack up in {:.1?}, matrix in {:.1?}", up, started.elapsed() - up);
    report("EDGE forgery matrix (POST /webhooks/hotmart)", &rows);
}

// ---------------------------------------------------------------------------------------------
// The backend
// ---------------------------------------------------------------------------------------------

/// How the backend checks tokens.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// `PUSH_AUTH=oidc`: signature against the JWKS, then the claims.
    Oidc,
    /// `PUSH_AUTH=cloud-run` (deployed): Cloud Run IAM checked and removed the signature; the
    /// claims are checked.
    CloudRun,
}

/// A forged request: its label, the Authorization header (None: none), and whether the URL
/// carries the right `?token=`.
struct Forgery {
    case: String,
    authorization: Option<String>,
    query: Query,
}

#[derive(Clone, Copy)]
enum Query {
    Right,
    Missing,
    Wrong,
}

fn now_secs() -> i64 {
    now_ms() / 1000
}

/// A token whose header and claims are these, as the mode receives tokens: RS256-signed with
/// the issuer's key (oidc) or with the signature removed (cloud-run).
fn token(mode: Mode, issuer: &Issuer, header: Value, claims: Value) -> String {
    match mode {
        Mode::Oidc => issuer.sign(header, claims),
        Mode::CloudRun => {
            format!("{}.{}.SIGNATURE_REMOVED_BY_GOOGLE", b64url(header.to_string()), b64url(claims.to_string()))
        }
    }
}

/// Removes a claim.
fn remove(claims: &mut Value, name: &str) {
    claims.as_object_mut().unwrap().remove(name);
}

fn rs256() -> Value {
    json!({ "alg": "RS256", "kid": KID, "typ": "JWT" })
}

/// `header.claims.` signed with HMAC-SHA256 under `secret`.
fn hmac_token(header: &Value, claims: &Value, secret: &[u8]) -> String {
    let input = format!("{}.{}", b64url(header.to_string()), b64url(claims.to_string()));
    let mac = hmac_sha256(secret, input.as_bytes());
    format!("{input}.{}", b64url(mac))
}

/// The issuer's public key, as anyone can read it from the JWKS.
fn public_key(issuer: &Issuer) -> RsaPublicKey {
    let jwks: Value = reqwest::blocking::get(&issuer.jwks_url).unwrap().json().unwrap();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let n = b64.decode(jwks["keys"][0]["n"].as_str().unwrap()).unwrap();
    let e = b64.decode(jwks["keys"][0]["e"].as_str().unwrap()).unwrap();
    RsaPublicKey::new(BigUint::from_bytes_be(&n), BigUint::from_bytes_be(&e)).unwrap()
}

/// Every forged credential for `mode`. Claims-based ones apply to both modes; the signature
/// ones only where the backend checks signatures (in cloud-run mode that is Cloud Run IAM's
/// job, before the request reaches the service).
fn forgeries(mode: Mode, issuer: &Issuer, audience: &str) -> Vec<Forgery> {
    let now = now_secs();
    let valid = Issuer::claims(audience);
    let with = |edit: &dyn Fn(&mut Value)| {
        let mut claims = valid.clone();
        edit(&mut claims);
        token(mode, issuer, rs256(), claims)
    };
    let bearer = |t: &str| Some(format!("Bearer {t}"));
    let good = token(mode, issuer, rs256(), valid.clone());
    let mut list: Vec<(String, Option<String>)> = vec![
        ("no Authorization header".into(), None),
        ("\"Bearer\" and nothing".into(), Some("Bearer".into())),
        ("\"Bearer \" and spaces".into(), Some("Bearer    ".into())),
        ("garbage, not a JWT".into(), bearer("not-a-jwt")),
        ("garbage in three parts".into(), bearer("a.b.c")),
        ("a valid token under Basic".into(), Some(format!("Basic {good}"))),
        ("a valid token with no scheme".into(), Some(good.clone())),
        (
            "expired an hour ago".into(),
            bearer(&with(&|c| {
                c["iat"] = (now - 7200).into();
                c["exp"] = (now - 3600).into();
            })),
        ),
        ("expired 90 s ago (leeway 30 s)".into(), bearer(&with(&|c| c["exp"] = (now - 90).into()))),
        ("no exp".into(), bearer(&with(&|c| remove(c, "exp")))),
        ("nbf an hour ahead".into(), bearer(&with(&|c| c["nbf"] = (now + 3600).into()))),
        (
            "iat an hour ahead".into(),
            bearer(&with(&|c| {
                c["iat"] = (now + 3600).into();
                c["exp"] = (now + 7200).into();
            })),
        ),
        ("wrong iss".into(), bearer(&with(&|c| c["iss"] = "https://accounts.google.com.evil.example".into()))),
        ("iss of another issuer".into(), bearer(&with(&|c| c["iss"] = "https://sts.windows.net/tenant/".into()))),
        ("no iss".into(), bearer(&with(&|c| remove(c, "iss")))),
        ("wrong aud (another service)".into(), bearer(&with(&|c| c["aud"] = "https://other-service.a.run.app".into()))),
        (
            "aud = the push URL (Pub/Sub's default)".into(),
            bearer(&with(&|c| {
                c["aud"] = format!("{audience}/pubsub/push?token={VERIFICATION_TOKEN}").into();
            })),
        ),
        ("no aud".into(), bearer(&with(&|c| remove(c, "aud")))),
        ("wrong email".into(), bearer(&with(&|c| c["email"] = "attacker@evil.example".into()))),
        ("no email".into(), bearer(&with(&|c| remove(c, "email")))),
        ("email_verified false".into(), bearer(&with(&|c| c["email_verified"] = false.into()))),
        ("email_verified \"true\" (a string)".into(), bearer(&with(&|c| c["email_verified"] = "true".into()))),
        ("no email_verified".into(), bearer(&with(&|c| remove(c, "email_verified")))),
        (
            "another service account, all else valid".into(),
            bearer(&with(&|c| {
                c["email"] = "other-sa@lms-bridge-test.iam.gserviceaccount.com".into();
            })),
        ),
    ];
    if mode == Mode::Oidc {
        let b64 = |v: &Value| b64url(v.to_string());
        let public = public_key(issuer);
        let spki = public.to_public_key_pem(LineEnding::LF).unwrap();
        let pkcs1 = public.to_pkcs1_pem(LineEnding::LF).unwrap();
        let hs256 = json!({ "alg": "HS256", "kid": KID, "typ": "JWT" });
        let stranger = RsaPrivateKey::new(&mut rand::thread_rng(), 2048).unwrap();
        let by_stranger = {
            let input = format!("{}.{}", b64(&rs256()), b64(&valid));
            let signature = SigningKey::<Sha256>::new(stranger).sign(input.as_bytes());
            format!("{input}.{}", b64url(signature.to_bytes()))
        };
        let tampered = {
            let parts: Vec<&str> = good.split('.').collect();
            let mut claims = valid.clone();
            claims["email"] = "attacker@evil.example".into();
            format!("{}.{}.{}", parts[0], b64(&claims), parts[2])
        };
        list.extend([
            (
                "unsigned: alg none, empty signature".into(),
                bearer(&format!("{}.{}.", b64(&json!({ "alg": "none", "typ": "JWT" })), b64(&valid))),
            ),
            (
                "alg none with a real signature".into(),
                bearer(&issuer.sign(json!({ "alg": "none", "kid": KID }), valid.clone())),
            ),
            ("RS256 header, empty signature".into(), bearer(&format!("{}.{}.", b64(&rs256()), b64(&valid)))),
            ("HS256 keyed with the public key (SPKI PEM)".into(), bearer(&hmac_token(&hs256, &valid, spki.as_bytes()))),
            (
                "HS256 keyed with the public key (PKCS#1 PEM)".into(),
                bearer(&hmac_token(&hs256, &valid, pkcs1.as_bytes())),
            ),
            (
                "RS256 header, HMAC signature keyed with the PEM".into(),
                bearer(&hmac_token(&rs256(), &valid, spki.as_bytes())),
            ),
            (
                "unknown kid".into(),
                bearer(&issuer.sign(json!({ "alg": "RS256", "kid": "no-such-kid" }), valid.clone())),
            ),
            ("no kid".into(), bearer(&issuer.sign(json!({ "alg": "RS256", "typ": "JWT" }), valid.clone()))),
            ("the known kid, signed by another key".into(), bearer(&by_stranger)),
            ("claims changed after signing".into(), bearer(&tampered)),
        ]);
    }
    let mut forgeries: Vec<Forgery> =
        list.into_iter().map(|(case, authorization)| Forgery { case, authorization, query: Query::Right }).collect();
    forgeries.push(Forgery {
        case: "valid token, no ?token= in the URL".into(),
        authorization: bearer(&good),
        query: Query::Missing,
    });
    forgeries.push(Forgery {
        case: "valid token, wrong ?token= in the URL".into(),
        authorization: bearer(&good),
        query: Query::Wrong,
    });
    forgeries
}

fn url(backend: &Backend, path: &str, query: Query) -> String {
    match query {
        Query::Right => match path {
            "/pubsub/push" => backend.push_endpoint(),
            _ => backend.sweep_endpoint(),
        },
        Query::Missing => format!("{}{path}", backend.url),
        Query::Wrong => format!("{}{path}?token=not-the-verification-token", backend.url),
    }
}

fn lms_calls(sandbox: &Sandbox) -> usize {
    sandbox.state()["calls"].as_array().map_or(0, Vec::len)
}

const STUDENT: &str = "ana.souza@example.com";

fn backend_matrix(mode: Mode) {
    let started = Instant::now();
    let (name, extra): (&str, &[(&str, &str)]) = match mode {
        Mode::Oidc => ("oidc", &[]),
        Mode::CloudRun => ("cloud-run", &[("PUSH_AUTH", "cloud-run")]),
    };
    let (firestore, issuer) = (stack::firestore(), stack::issuer());
    let sandbox = Sandbox::start(&[]);
    let project = format!("t-forgery-{name}-{}", now_ms());
    let backend = Backend::start(&project, firestore, &sandbox, issuer, extra);
    // A one-day term: the control's access ends seconds after it is granted, so the sweep has
    // an enrollment to end, and a forged sweep that ran would show.
    backend.import_mappings(&Mappings::new().fixed_days(SAMPLE_PRODUCT, &["101"], 1).toml());
    let up = started.elapsed();
    let forgeries = forgeries(mode, issuer, &backend.url);
    let valid = token(mode, issuer, rs256(), Issuer::claims(&backend.url));
    let surface = |what: &str| format!("backend {name} {what}");
    let mut rows = Vec::new();

    // Pushes: a real, mapped purchase each, that would enroll the student if accepted.
    let mut calls_before = 0;
    for (i, forgery) in forgeries.iter().enumerate() {
        let id = format!("forged-{name}-{i}");
        let event = Webhook::purchase_approved().id(&id).transaction(&format!("HP-{id}")).now().event();
        let delivery = envelope(&event, &format!("m-{id}"), &backend.subscription());
        let headers: Vec<(String, String)> = forgery.authorization.iter().map(|a| header("Authorization", a)).collect();
        let (status, text) = post(
            &url(&backend, "/pubsub/push", forgery.query),
            &headers,
            "application/json",
            delivery.to_string().into_bytes(),
        );
        let mut wrong = refusal_problems(status, &text, &[VERIFICATION_TOKEN, PUSH_ACCOUNT]);
        let doc = firestore.document(&project, &format!("events/hotmart%3A{id}"));
        let written = !doc["fields"].is_null();
        if written {
            wrong.push("event written".to_owned());
        } else if doc["error"]["code"] != 404 {
            wrong.push(format!("no answer 404 for the event document: {doc}"));
        }
        // Counted per row, so that one forgery that got through does not colour the next.
        let calls = lms_calls(&sandbox) - calls_before;
        calls_before += calls;
        if calls != 0 {
            wrong.push(format!("{calls} LMS call(s)"));
        }
        let effect = format!("event written: {}, LMS calls: +{calls}", if written { "YES" } else { "no" });
        rows.push(Row { surface: surface("push"), case: forgery.case.clone(), status, effect, wrong });
    }

    // The control push: valid token, written and applied. Approved a day ago less a few
    // seconds: under the one-day term, access ends just after.
    let approved = now_ms() - DAY_MS + 4_000;
    let control = Webhook::purchase_approved()
        .id(&format!("control-{name}"))
        .transaction(&format!("HP-control-{name}"))
        .created_and_approved_at(approved)
        .event();
    let delivery = envelope(&control, &format!("m-control-{name}"), &backend.subscription());
    let (status, text) = post(
        &backend.push_endpoint(),
        &[header("Authorization", &format!("Bearer {valid}"))],
        "application/json",
        delivery.to_string().into_bytes(),
    );
    let doc = firestore.document(&project, &format!("events/hotmart%3Acontrol-{name}"));
    let written = !doc["fields"].is_null();
    let calls_after_push = lms_calls(&sandbox);
    let courses = sandbox.courses_of(STUDENT);
    let mut wrong = Vec::new();
    if calls_before != 0 {
        wrong.push(format!("the LMS was called {calls_before} time(s) before the control"));
    }
    if status != 200 {
        wrong.push(format!("not accepted: {text}"));
    }
    if !written || calls_after_push == 0 || courses != ["101"] {
        wrong.push(format!("not applied: document {doc}, {calls_after_push} LMS calls, courses {courses:?}"));
    }
    rows.push(Row {
        surface: surface("push"),
        case: "the valid token (control)".into(),
        status,
        effect: format!(
            "event written: {}, LMS calls: +{}",
            if written { "yes" } else { "NO" },
            calls_after_push - calls_before
        ),
        wrong,
    });

    // Sweeps, once the control's access is due to end: a sweep that ran would unenroll.
    let mut calls_before = calls_after_push;
    let due = approved + DAY_MS + 1_000;
    std::thread::sleep(Duration::from_millis(u64::try_from(due - now_ms()).unwrap_or(0)));
    for forgery in &forgeries {
        let headers: Vec<(String, String)> = forgery.authorization.iter().map(|a| header("Authorization", a)).collect();
        let (status, text) = post(&url(&backend, "/tasks/sweep", forgery.query), &headers, "application/json", vec![]);
        let mut wrong = refusal_problems(status, &text, &[VERIFICATION_TOKEN, PUSH_ACCOUNT]);
        let calls = lms_calls(&sandbox) - calls_before;
        calls_before += calls;
        let courses = sandbox.courses_of(STUDENT);
        if calls != 0 || courses != ["101"] {
            wrong.push(format!("the sweep ran: {calls} LMS call(s), courses {courses:?}"));
        }
        let effect = format!("LMS calls: +{calls}, access {}", if courses.is_empty() { "ENDED" } else { "kept" });
        rows.push(Row { surface: surface("sweep"), case: forgery.case.clone(), status, effect, wrong });
    }
    let (status, text) = post(
        &backend.sweep_endpoint(),
        &[header("Authorization", &format!("Bearer {valid}"))],
        "application/json",
        vec![],
    );
    let answer: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    let calls = lms_calls(&sandbox) - calls_before;
    let courses = sandbox.courses_of(STUDENT);
    let mut wrong = Vec::new();
    if status != 200 || answer["ended"] != 1 || calls == 0 || !courses.is_empty() {
        wrong.push(format!("the sweep did not run: {text}, {calls} LMS call(s), courses {courses:?}"));
    }
    rows.push(Row {
        surface: surface("sweep"),
        case: "the valid token (control)".into(),
        status,
        effect: format!("LMS calls: +{calls}, access {}", if courses.is_empty() { "ended" } else { "KEPT" }),
        wrong,
    });
    eprintln!("backend {name}: stack up in {:.1?}, matrix in {:.1?}", up, started.elapsed() - up);
    let title = match mode {
        Mode::Oidc => "BACKEND forgery matrix, PUSH_AUTH=oidc (POST /pubsub/push, POST /tasks/sweep)",
        Mode::CloudRun => {
            "BACKEND forgery matrix, PUSH_AUTH=cloud-run, signature stripped by Cloud Run IAM (claims checks)"
        }
    };
    report(title, &rows);
}

#[test]
fn backend_oidc_refuses_every_forged_token_and_writes_nothing() {
    assert_eq!(
        hex(&hmac_sha256(&[0x0b; 20], b"Hi There")),
        "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
        "HMAC-SHA256, RFC 4231 test case 1: the HS256 forgeries carry real MACs"
    );
    backend_matrix(Mode::Oidc);
}

#[test]
fn backend_cloud_run_refuses_every_forged_token_and_writes_nothing() {
    backend_matrix(Mode::CloudRun);
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
