//! Building the engine and running the server from validated settings (`settings`).

use crate::auth::PushAuth;
use crate::cli::{ServeArgs, ServiceArgs, StoreArgs};
use crate::clock::{Clock, SystemClock};
use crate::engine::{Engine, MissingLookup, SourceLookup};
use crate::hotmart_api::HotmartApi;
use crate::http::{router, warn_if_unauthenticated, AppState, Reconciler};
use crate::lms::moodle::Moodle;
use crate::lms::talentlms::TalentLms;
use crate::lms::Lms;
use crate::publish::EventPublisher;
use crate::settings::{LmsSettings, ServeSettings, ServiceSettings};
use crate::store::FirestoreStore;
use crate::stripe_api::StripeApi;
use anyhow::Context;
use std::sync::Arc;
use std::time::Duration;

/// One rustls provider for the whole process, chosen explicitly: the Google stack links
/// aws-lc-rs and jsonwebtoken/reqwest link ring, and rustls panics on first use when it has to
/// pick between two on its own.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// Connects to Firestore.
pub async fn store(args: &StoreArgs) -> anyhow::Result<FirestoreStore> {
    connect(&args.gcp_project).await
}

async fn connect(project: &str) -> anyhow::Result<FirestoreStore> {
    FirestoreStore::connect(project).await.with_context(|| format!("connecting to Firestore for project {project}"))
}

/// The configured LMS adapter.
pub fn lms(settings: &LmsSettings) -> anyhow::Result<Arc<dyn Lms>> {
    match settings {
        LmsSettings::TalentLms { url, api_key, max_calls_per_second, timeout } => Ok(Arc::new(
            TalentLms::new(url, api_key.expose().to_owned(), *max_calls_per_second)
                .context("building the TalentLMS client")?
                .with_timeout(*timeout),
        )),
        LmsSettings::Moodle { config, .. } => {
            Ok(Arc::new(Moodle::new(config.clone()).context("building the Moodle client")?))
        }
    }
}

/// The engine from settings.
pub async fn engine(args: &ServiceArgs) -> anyhow::Result<Engine> {
    engine_at(args, Arc::new(SystemClock)).await
}

/// The engine from settings, reading time from `clock` (`sweep --at`).
pub async fn engine_at(args: &ServiceArgs, clock: Arc<dyn Clock>) -> anyhow::Result<Engine> {
    let settings = ServiceSettings::from_args(args)?;
    engine_with(&settings, lms(&settings.lms)?, clock).await
}

/// What resolves Stripe events that name only a charge: its API, or, without a key, a lookup
/// that names the missing setting in the reason of each event it could not resolve.
pub fn stripe_lookup(settings: &ServiceSettings) -> anyhow::Result<Arc<dyn SourceLookup>> {
    Ok(match &settings.stripe {
        Some(config) => Arc::new(StripeApi::new(config.clone()).context("building the Stripe API client")?),
        None => Arc::new(MissingLookup { source: "stripe", setting: "STRIPE_API_KEY" }),
    })
}

async fn engine_with(settings: &ServiceSettings, lms: Arc<dyn Lms>, clock: Arc<dyn Clock>) -> anyhow::Result<Engine> {
    Ok(Engine {
        deactivate_idle_users: settings.deactivate_idle_users,
        pepper: settings.pepper.clone(),
        lookup: Some(stripe_lookup(settings)?),
        unenrol_at_end: matches!(settings.lms, LmsSettings::Moodle { unenrol_at_end: true, .. }),
        ..Engine::new(connect(&settings.project).await?, lms, clock)
    })
}

/// `lms-bridge serve`: validates the settings, then serves until SIGTERM or Ctrl-C.
pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let settings = ServeSettings::from_args(&args)?;
    let auth = PushAuth::new(settings.push);
    warn_if_unauthenticated(&auth);
    // The LMS is checked before anything else is connected: a wrong token or URL is the
    // one line a misconfigured start prints.
    let lms = lms(&settings.service.lms)?;
    lms.startup_check().await?;
    let engine = engine_with(&settings.service, lms, Arc::new(SystemClock)).await?;
    let reconciler = match settings.reconcile {
        None => None,
        Some(reconcile) => {
            let publish = &reconcile.publish;
            let publisher = EventPublisher::connect(
                &settings.service.project,
                &publish.topic,
                publish.emulator_host.as_deref(),
                publish.per_second,
            )
            .await?;
            Some(Reconciler {
                api: HotmartApi::new(reconcile.api).context("building the Hotmart API client")?,
                publisher: Arc::new(publisher),
                days: reconcile.days,
            })
        }
    };
    let state = Arc::new(AppState {
        engine,
        auth,
        project: settings.service.project.clone(),
        subscription: settings.subscription,
        reconciler,
    });
    let listener = tokio::net::TcpListener::bind((settings.listen.as_str(), settings.port))
        .await
        .with_context(|| format!("listening on {}:{}", settings.listen, settings.port))?;
    tracing::info!(port = settings.port, "lms-bridge serving");
    axum::serve(listener, router(state)).with_graceful_shutdown(shutdown_signal()).await.context("serving")?;
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on SIGTERM (Cloud Run) or Ctrl-C; in-flight requests then get 10 s to finish.
pub(crate) async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: finishing in-flight requests (10 s at most)");
    tokio::spawn(async {
        tokio::time::sleep(Duration::from_secs(10)).await;
        tracing::warn!("in-flight requests did not finish within 10 s; exiting");
        std::process::exit(1);
    });
}
