//! The lms-bridge edge: the Cloudflare Worker the payment platform posts webhooks to.
//!
//! Thin glue: every rule comes from `lms-bridge-shared`.

use worker::{event, Context, Env, Method, Request, Response, Result};

/// Every error answer: `{"error":{"code","message"}}` with the status.
fn error(status: u16, code: &str, message: &str) -> Result<Response> {
    let body = serde_json::json!({ "error": { "code": code, "message": message } });
    Ok(Response::from_json(&body)?.with_status(status))
}

#[event(fetch)]
async fn fetch(req: Request, _env: Env, _ctx: Context) -> Result<Response> {
    match (req.method(), req.path().as_str()) {
        (Method::Get, "/healthz") => Response::from_json(&serde_json::json!({ "status": "ok" })),
        (_, "/healthz") => error(405, "method_not_allowed", "use GET"),
        _ => error(404, "not_found", "no such route"),
    }
}
