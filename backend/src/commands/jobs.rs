//! `backfill`, `reconcile` and `drift`: the operator's side of `crate::jobs` and of the
//! engine's drift check. Each prints a JSON summary on stdout (for `--dry-run`, the access
//! lines of `simulate`), and progress on stderr.

use super::CommandError;
use crate::cli::{BackfillArgs, BackfillFrom, DriftArgs, ReconcileArgs};
use crate::clock::{Clock, SystemClock};
use crate::hotmart_api::{HotmartApi, HotmartApiError};
use crate::jobs::backfill::{self, Plan};
use crate::jobs::{reconcile, Destination, FactSink, JobError, JobRun};
use crate::publish::EventPublisher;
use crate::service;
use crate::settings::{self, PublishSettings, SettingsError};
use crate::simulate;
use crate::store::docs::{JobDoc, JobKind, JobStatus};
use crate::store::{FirestoreStore, StateStore};
use lms_bridge_shared::{Email, Event, Pepper, Timestamp};
use serde_json::json;
use std::sync::Arc;

impl From<SettingsError> for CommandError {
    fn from(e: SettingsError) -> Self {
        CommandError::BadInput(e.to_string())
    }
}

impl From<JobError> for CommandError {
    fn from(e: JobError) -> Self {
        match e {
            JobError::BadInput(_) | JobError::Csv(_) | JobError::Api(HotmartApiError::Credentials { .. }) => {
                CommandError::BadInput(e.to_string())
            }
            other => CommandError::Failed(other.into()),
        }
    }
}

/// `YYYY-MM-DD` (UTC; the end of that day when `end_of_day`) or RFC 3339.
pub fn parse_date(text: &str, flag: &str, end_of_day: bool) -> Result<Timestamp, CommandError> {
    let bad = || CommandError::BadInput(format!("{flag} {text:?} is not a date (YYYY-MM-DD or RFC 3339)"));
    if let Ok(at) = Timestamp::parse_rfc3339(text) {
        return Ok(at);
    }
    let time = if end_of_day { "23:59:59.999Z" } else { "00:00:00Z" };
    Timestamp::parse_rfc3339(&format!("{}T{time}", text.trim())).map_err(|_| bad())
}

/// The summary line a job prints.
fn summary(doc: &JobDoc) -> String {
    format!(
        "{}\n",
        json!({
            "job": doc.id,
            "kind": doc.kind,
            "status": doc.status,
            "counts": doc.counts,
            "errors": doc.errors,
        })
    )
}

fn api(args: &crate::cli::HotmartApiArgs) -> Result<HotmartApi, CommandError> {
    let config = settings::hotmart_api(args)?;
    HotmartApi::new(config).map_err(|e| CommandError::BadInput(e.to_string()))
}

async fn publisher(args: &crate::cli::PublishArgs, project: &str) -> Result<Arc<EventPublisher>, CommandError> {
    let publish = PublishSettings::from_args(args)?;
    let publisher =
        EventPublisher::connect(project, &publish.topic, publish.emulator_host.as_deref(), publish.per_second)
            .await
            .map_err(|e| CommandError::Failed(e.into()))?;
    Ok(Arc::new(publisher))
}

fn project(value: Option<&str>) -> Result<String, CommandError> {
    match value.map(str::trim) {
        Some(p) if !p.is_empty() => Ok(p.to_owned()),
        _ => Err(CommandError::BadInput("GCP_PROJECT is not set (needed unless --dry-run)".into())),
    }
}

/// `backfill`.
pub async fn backfill(args: &BackfillArgs) -> Result<String, CommandError> {
    let clock = SystemClock;
    let now = clock.now();
    let csv = match (args.from, &args.file) {
        (BackfillFrom::Csv, Some(path)) => Some(
            std::fs::read(path)
                .map_err(|e| CommandError::BadInput(format!("cannot read the export {}: {e}", path.display())))?,
        ),
        (BackfillFrom::Csv, None) => return Err(CommandError::BadInput("--from csv needs the export FILE".into())),
        (BackfillFrom::HotmartApi, Some(_)) => {
            return Err(CommandError::BadInput("a FILE goes with --from csv, not --from hotmart-api".into()))
        }
        (BackfillFrom::HotmartApi, None) => None,
    };
    if args.dry_run && args.mappings.is_none() {
        return Err(CommandError::BadInput("--dry-run needs --mappings FILE (the access is judged by them)".into()));
    }
    let pepper = args.keys.pepper();
    // A dry run shows what all the facts give, known or not, and touches no state.
    let store = if args.dry_run {
        None
    } else {
        let store_args =
            crate::cli::StoreArgs { gcp_project: project(args.gcp_project.as_deref())?, keys: args.keys.clone() };
        Some(service::store(&store_args).await?)
    };
    let (plan, client) = match &csv {
        Some(bytes) => (Plan::csv(bytes), None),
        None => {
            let client = api(&args.hotmart)?;
            let since = args
                .since
                .as_deref()
                .ok_or_else(|| CommandError::BadInput("--from hotmart-api needs --since DATE".into()))
                .and_then(|s| parse_date(s, "--since", false))?;
            let until = match &args.until {
                Some(text) => parse_date(text, "--until", true)?,
                None => unfinished_until(store.as_ref(), since, &args.products, args.window_days).await?.unwrap_or(now),
            };
            let plan =
                Plan::HotmartApi { since, until, products: args.products.clone(), window_days: args.window_days };
            (plan, Some(client))
        }
    };
    let destination = if args.dry_run {
        Destination::DryRun(Vec::new())
    } else {
        Destination::Publish(publisher(&args.publish, &project(args.gcp_project.as_deref())?).await?)
    };
    let mut run = JobRun::start(store.as_ref(), &clock, plan.job_id(), JobKind::Backfill, plan.params()).await?;
    if run.resumed() {
        eprintln!("lms-bridge: backfill: resuming job {} from its last checkpoint", run.doc.id);
    }
    let mut sink = FactSink::new(store.as_ref(), destination, pepper);
    let result = match (&client, &csv) {
        (Some(client), _) => backfill::from_api(client, &plan, &mut run, &mut sink, now).await,
        (None, Some(bytes)) => backfill::from_csv(bytes, &mut run, &mut sink, now).await,
        (None, None) => Err(JobError::BadInput("nothing to read".into())),
    };
    if let Err(e) = result {
        let _ = fail(&mut run, &e).await;
        return Err(e.into());
    }
    match sink.destination {
        Destination::DryRun(events) => dry_run(args, events, now, &run.doc).await,
        Destination::Publish(_) => Ok(summary(&run.doc)),
    }
}

/// The `until` of an unfinished API backfill with these other arguments, so running the same
/// command again resumes it.
async fn unfinished_until(
    store: Option<&FirestoreStore>,
    since: Timestamp,
    products: &[String],
    window_days: u32,
) -> Result<Option<Timestamp>, CommandError> {
    let Some(store) = store else { return Ok(None) };
    for job in store.recent_jobs(JobKind::Backfill, 50).await? {
        if job.status != JobStatus::Running {
            continue;
        }
        if let Ok(Plan::HotmartApi { since: s, until, products: p, window_days: w }) = serde_json::from_str(&job.params)
        {
            if s == since && p == products && w == window_days {
                return Ok(Some(until));
            }
        }
    }
    Ok(None)
}

/// Records an error that stopped a job. Outages (the store, Pub/Sub, Hotmart past its
/// retries) leave it `running`: the same command resumes it. Anything else (refused
/// credentials, bad input) ends it `failed`: an operator fixes the cause and starts afresh.
async fn fail<S: StateStore>(run: &mut JobRun<'_, S>, error: &JobError) -> Result<(), JobError> {
    run.doc.errors.push(error.to_string());
    match error {
        JobError::Api(HotmartApiError::Credentials { .. }) => run.finish(JobStatus::Failed).await,
        JobError::Store(_) | JobError::Publish(_) | JobError::Api(_) => run.save().await,
        _ => run.finish(JobStatus::Failed).await,
    }
}

/// `--dry-run`: the access the facts give, as `simulate` prints it, then the summary on stderr.
async fn dry_run(
    args: &BackfillArgs,
    events: Vec<Event>,
    now: Timestamp,
    doc: &JobDoc,
) -> Result<String, CommandError> {
    let path = args.mappings.as_ref().ok_or_else(|| CommandError::BadInput("--dry-run needs --mappings".into()))?;
    let mappings = std::fs::read_to_string(path)
        .map_err(|e| CommandError::BadInput(format!("cannot read the mappings file {}: {e}", path.display())))?;
    let mut at = args.at.iter().map(|t| simulate::parse_at(t)).collect::<Result<Vec<_>, _>>()?;
    if at.is_empty() {
        at.push(now);
    }
    let request = simulate::Request { mappings, at, timeline: false, source: "hotmart".into() };
    let report = simulate::run_events(&request, events).await?;
    eprint!("lms-bridge: backfill --dry-run: {}", summary(doc));
    Ok(report.stdout)
}

/// One reconcile run, as `lms-bridge reconcile` and `POST /tasks/reconcile` do it.
pub async fn reconcile_once<S: StateStore>(
    store: &S,
    api: &HotmartApi,
    publisher: Arc<EventPublisher>,
    pepper: Option<Pepper>,
    days: u32,
    clock: &dyn Clock,
) -> Result<JobDoc, JobError> {
    let now = clock.now();
    let id = format!("reconcile-{}", now.unix_millis());
    let params = json!({ "days": days }).to_string();
    let mut run = JobRun::start(Some(store), clock, id, JobKind::Reconcile, params).await?;
    let mut sink = FactSink::new(Some(store), Destination::Publish(publisher), pepper);
    if let Err(e) = reconcile::run(api, days, &mut run, &mut sink, now).await {
        run.doc.errors.push(e.to_string());
        let _ = run.finish(JobStatus::Failed).await;
        return Err(e);
    }
    Ok(run.doc)
}

/// `reconcile`.
pub async fn reconcile(args: &ReconcileArgs) -> Result<String, CommandError> {
    let client = api(&args.hotmart)?;
    let store = service::store(&args.store).await?;
    let publisher = publisher(&args.publish, &args.store.gcp_project).await?;
    let doc = reconcile_once(&store, &client, publisher, args.store.keys.pepper(), args.days, &SystemClock).await?;
    Ok(summary(&doc))
}

/// `drift [--fix]`: one JSON line per difference, then a summary line.
pub async fn drift(args: &DriftArgs) -> Result<String, CommandError> {
    let pepper = args.service.store.keys.pepper();
    let only = args
        .emails
        .iter()
        .map(|e| Email::parse(e).map(|e| e.student_key_with(pepper.as_ref())))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CommandError::BadInput(format!("--email: {e}")))?;
    let engine = service::engine(&args.service).await?;
    let report = engine.drift(args.fix, &only).await.map_err(|e| CommandError::Failed(e.into()))?;
    let mut out = String::new();
    for difference in &report.differences {
        out.push_str(&format!("{}\n", json!(difference)));
    }
    out.push_str(&format!(
        "{}\n",
        json!({
            "students": report.students,
            "differences": report.differences.len(),
            "fixed": report.differences.iter().filter(|d| d.fixed).count(),
            "errors": report.errors,
        })
    ));
    Ok(out)
}
