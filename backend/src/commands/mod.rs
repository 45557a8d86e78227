//! Operator commands: mappings, sweep, student, replay, `normalize` (the edge's step, offline),
//! and the jobs: backfill, reconcile, drift (`jobs`).

pub mod jobs;
pub mod normalize;
pub mod source_arg;

use crate::cli::{KeyArgs, MappingsCommand, ServiceArgs, StoreArgs, SweepArgs};
use crate::clock::{Clock, ManualClock, SystemClock};
use crate::engine::{Engine, Outcome};
use crate::service;
use crate::store::docs::EventStatus;
use crate::store::StateStore;
use lms_bridge_shared::source;
use lms_bridge_shared::{Email, ProductMapping, Timestamp};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

/// Why a command failed: bad input (exit 2) or a failure around us (exit 1).
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The input is wrong; nothing was changed.
    #[error("{0}")]
    BadInput(String),
    /// A dependency failed.
    #[error("{0:#}")]
    Failed(#[from] anyhow::Error),
}

impl CommandError {
    /// The process exit code.
    pub fn exit_code(&self) -> u8 {
        match self {
            CommandError::BadInput(_) => 2,
            CommandError::Failed(_) => 1,
        }
    }
}

impl From<crate::store::StoreError> for CommandError {
    fn from(e: crate::store::StoreError) -> Self {
        CommandError::Failed(e.into())
    }
}

/// A mappings file: `[[product]]` tables.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MappingFile {
    product: Vec<ProductMapping>,
}

/// Parses a mappings file; every product is checked before anything is written.
pub fn parse_mappings(text: &str) -> Result<Vec<ProductMapping>, CommandError> {
    let file: MappingFile = toml::from_str(text)
        .map_err(|e| CommandError::BadInput(format!("invalid mappings file: {}", e.to_string().replace('\n', " "))))?;
    for m in &file.product {
        if m.courses.is_empty() && m.plans.is_empty() {
            return Err(CommandError::BadInput(format!("product {} maps to no course", m.product_id)));
        }
    }
    Ok(file.product)
}

/// `mappings import|list`.
pub async fn mappings(command: &MappingsCommand, args: &ServiceArgs) -> Result<String, CommandError> {
    let store = &args.store;
    match command {
        MappingsCommand::Import { file } => {
            let text = std::fs::read_to_string(file)
                .map_err(|e| CommandError::BadInput(format!("cannot read {}: {e}", file.display())))?;
            let mappings = parse_mappings(&text)?;
            let store = service::store(store).await?;
            let now = SystemClock.now();
            for mapping in &mappings {
                store.put_mapping(mapping, now).await?;
            }
            let mut out = format!("imported {} product mapping(s)\n", mappings.len());
            // Purchases made before their product was mapped are applied now.
            let waiting = store.events_with_status(EventStatus::Unmapped).await?;
            if !waiting.is_empty() {
                match service::engine(args).await {
                    Ok(engine) => {
                        out.push_str(&apply_kept(&engine, EventStatus::Unmapped).await?);
                        // A refund that came while its purchase waited for the mapping could
                        // not find its grant and was kept as failed: it applies now.
                        if !engine.store.events_with_status(EventStatus::Failed).await?.is_empty() {
                            out.push_str(&apply_kept(&engine, EventStatus::Failed).await?);
                        }
                    }
                    Err(e) => out.push_str(&format!(
                        "{} event(s) wait for a mapping; they were not applied ({e:#}): run `lms-bridge replay --unmapped` with the LMS settings\n",
                        waiting.len()
                    )),
                }
            }
            Ok(out)
        }
        MappingsCommand::List => {
            let store = service::store(store).await?;
            let mut out = String::new();
            for mapping in store.list_mappings().await? {
                out.push_str(&serde_json::to_string(&mapping).unwrap_or_default());
                out.push('\n');
            }
            Ok(out)
        }
    }
}

/// `sweep`.
pub async fn sweep(args: &SweepArgs) -> Result<String, CommandError> {
    let clock: Arc<dyn Clock> = match &args.at {
        None => Arc::new(SystemClock),
        Some(at) => {
            let at = Timestamp::parse_rfc3339(at)
                .map_err(|e| CommandError::BadInput(format!("--at is not an RFC 3339 time: {e}")))?;
            Arc::new(ManualClock::new(at))
        }
    };
    let engine = service::engine_at(&args.service, clock).await?;
    let report = engine.sweep().await.map_err(|e| CommandError::Failed(e.into()))?;
    Ok(format!("{}\n", json!(report)))
}

/// `student key EMAIL`.
pub fn student_key(email: &str, keys: &KeyArgs) -> Result<String, CommandError> {
    let email = Email::parse(email).map_err(|e| CommandError::BadInput(e.to_string()))?;
    Ok(format!("{}\n", email.student_key_with(keys.pepper().as_ref())))
}

/// `student show EMAIL`.
pub async fn student_show(email: &str, store: &StoreArgs) -> Result<String, CommandError> {
    let email = Email::parse(email).map_err(|e| CommandError::BadInput(e.to_string()))?;
    let key = email.student_key_with(store.keys.pepper().as_ref());
    let store = service::store(store).await?;
    let student = store.student(&key).await?;
    let enrollments = store.enrollments_of(&key).await?;
    if student.is_none() && enrollments.is_empty() {
        return Err(CommandError::BadInput(format!("no student with that email (key {key})")));
    }
    let now = SystemClock.now();
    let courses: Vec<_> = enrollments
        .iter()
        .map(|e| {
            json!({
                "course": e.course_id,
                "access": e.access,
                "why": lms_bridge_shared::explain::why(&e.state, now),
                "access_until": e.access_until,
                "grants": e.state.grants,
                "pending_actions": e.pending,
                "failed_actions": e.failed,
                "enrolled_before_the_bridge": e.preexisting,
            })
        })
        .collect();
    let out = json!({
        "student": key,
        "email": student.as_ref().and_then(|s| s.email.clone()),
        "name": student.as_ref().and_then(|s| s.name.clone()),
        "lms_user_ids": student.as_ref().map(|s| s.lms_user_ids.clone()).unwrap_or_default(),
        "lms_users_created_by_the_bridge": student.as_ref().map(|s| s.lms_created.clone()).unwrap_or_default(),
        "lms_users_learner": student.map(|s| s.lms_learner).unwrap_or_default(),
        "courses": courses,
    });
    Ok(format!("{}\n", serde_json::to_string_pretty(&out).unwrap_or_default()))
}

/// `replay --unmapped`: apply the events kept while their product had no mapping.
pub async fn replay_unmapped(args: &ServiceArgs) -> Result<String, CommandError> {
    apply_kept(&service::engine(args).await?, EventStatus::Unmapped).await
}

/// `replay --failed`: apply again the events kept as failed (one that named a charge no known
/// grant had, a look-up that was refused), now that their purchase is known or the setting
/// they needed is given.
pub async fn replay_failed(args: &ServiceArgs) -> Result<String, CommandError> {
    apply_kept(&service::engine(args).await?, EventStatus::Failed).await
}

/// Applies every event kept whole with `status`, oldest first; one JSON line per event. An
/// unmapped event whose product still has no mapping, or a failed one that fails again, is
/// kept as it was.
async fn apply_kept(engine: &Engine, status: EventStatus) -> Result<String, CommandError> {
    let mut waiting = engine.store.events_with_status(status).await?;
    waiting.sort_by_key(|doc| doc.received_at);
    let mut out = String::new();
    for doc in waiting {
        let event = doc.event_json.as_deref().and_then(|j| lms_bridge_shared::Event::from_json(j.as_bytes()).ok());
        let line = match event {
            None => json!({ "id": doc.id, "result": "no event kept" }),
            Some(event) => match engine.apply(&event).await.map_err(|e| CommandError::Failed(e.into()))? {
                Outcome::Unmapped(_) => json!({ "id": doc.id, "result": "still unmapped" }),
                Outcome::Failed(reason) => json!({ "id": doc.id, "result": "still failed", "reason": reason }),
                outcome => json!({ "id": doc.id, "result": format!("{outcome:?}").to_lowercase() }),
            },
        };
        out.push_str(&line.to_string());
        out.push('\n');
    }
    Ok(out)
}

/// `replay --quarantined`: re-normalize each quarantined body; apply those that now parse.
pub async fn replay_quarantined(args: &ServiceArgs) -> Result<String, CommandError> {
    use base64::Engine as _;
    let engine = service::engine(args).await?;
    let mut report = Vec::new();
    for mut doc in engine.store.events_with_status(EventStatus::Quarantined).await? {
        let parsed = doc
            .event_json
            .as_deref()
            .and_then(|j| lms_bridge_shared::Event::from_json(j.as_bytes()).ok())
            .and_then(|e| {
                Some((e.source.clone(), base64::engine::general_purpose::STANDARD.decode(e.raw?).ok()?, e.received_at))
            });
        let Some((source_name, raw, received_at)) = parsed else {
            report.push(json!({ "id": doc.id, "result": "no raw body kept" }));
            continue;
        };
        // Verification happened at the edge; here only the normalizer is re-run.
        let Some(source) = source::by_name(source_name.as_str(), &[]) else {
            report.push(json!({ "id": doc.id, "result": format!("unknown source {source_name}") }));
            continue;
        };
        match source.normalize(&raw, received_at) {
            Ok(event) => {
                let outcome = engine.apply(&event).await.map_err(|e| CommandError::Failed(e.into()))?;
                doc.status = EventStatus::Ignored;
                doc.reason = Some(format!("replayed as {}", event.id));
                engine.store.put_event(&doc).await?;
                let result = match outcome {
                    Outcome::Applied => "applied".to_owned(),
                    other => format!("{other:?}").to_lowercase(),
                };
                report.push(json!({ "id": doc.id, "replayed_as": event.id, "result": result }));
            }
            Err(e) => report.push(json!({ "id": doc.id, "result": format!("still unparsed: {e}") })),
        }
    }
    let mut out = String::new();
    for line in report {
        out.push_str(&line.to_string());
        out.push('\n');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapping_files_are_checked_before_import() {
        let ok = r#"
[[product]]
source = "hotmart"
product_id = "4774438"
courses = ["101"]
policy = { type = "subscription", grace_days = 3 }
[product.plans]
"124" = ["101", "102"]
"#;
        let mappings = parse_mappings(ok).unwrap();
        assert_eq!(mappings[0].courses_for(Some("124")).len(), 2);
        assert!(parse_mappings("[[product]]\nsource = \"hotmart\"")
            .unwrap_err()
            .to_string()
            .contains("invalid mappings file"));
        let empty = "[[product]]\nsource=\"hotmart\"\nproduct_id=\"1\"\ncourses=[]\npolicy={type=\"lifetime\"}";
        assert!(parse_mappings(empty).unwrap_err().to_string().contains("maps to no course"));
    }
}
