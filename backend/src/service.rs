//! Building the engine and running the server from validated settings.

use crate::auth::{Expected, PushAuth, PushAuthConfig, PushAuthMode, PushCheck, MIN_REFRESH};
use crate::cli::{LmsArgs, LmsKind, ServeArgs, ServiceArgs, StoreArgs};
use crate::clock::{Clock, SystemClock};
use crate::engine::Engine;
use crate::http::{router, warn_if_unauthenticated, AppState};
use crate::lms::talentlms::TalentLms;
use crate::lms::Lms;
use crate::store::FirestoreStore;
use anyhow::{bail, Context};
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
    FirestoreStore::connect(&args.gcp_project)
        .await
        .with_context(|| format!("connecting to Firestore for project {}", args.gcp_project))
}

/// The configured LMS adapter; a missing URL or key is a start-up error.
pub fn lms(args: &LmsArgs) -> anyhow::Result<Arc<dyn Lms>> {
    match args.lms {
        LmsKind::Talentlms => {
            let url =
                args.talentlms_url.as_deref().filter(|u| !u.trim().is_empty()).context("TALENTLMS_URL is not set")?;
            let key =
                args.talentlms_api_key.as_ref().filter(|k| !k.is_blank()).context("TALENTLMS_API_KEY is not set")?;
            Ok(Arc::new(
                TalentLms::new(url, key.expose().to_owned(), args.talentlms_max_calls_per_second)
                    .context("building the TalentLMS client")?,
            ))
        }
    }
}

/// The engine from settings.
pub async fn engine(args: &ServiceArgs) -> anyhow::Result<Engine> {
    engine_at(args, Arc::new(SystemClock)).await
}

/// The engine from settings, reading time from `clock` (`sweep --at`).
pub async fn engine_at(args: &ServiceArgs, clock: Arc<dyn Clock>) -> anyhow::Result<Engine> {
    let lms = lms(&args.lms)?;
    Ok(Engine {
        deactivate_idle_users: args.lms.deactivate_idle_users,
        pepper: args.store.keys.pepper(),
        ..Engine::new(store(&args.store).await?, lms, clock)
    })
}

/// The push verifier and the expected subscription, from the settings; every missing or
/// unsafe combination is an error naming it.
pub fn push_auth(args: &ServeArgs) -> anyhow::Result<(PushAuth, Option<String>)> {
    let mode = args.push_auth;
    if mode == PushAuthMode::None {
        if let Some(service) = &args.cloud_run_service {
            bail!(
                "PUSH_AUTH=none is refused on Cloud Run (K_SERVICE={service} is set): use PUSH_AUTH=cloud-run or oidc"
            );
        }
    }
    let expected = || -> anyhow::Result<Expected> {
        Ok(Expected {
            audience: args.push_audience.clone().filter(|a| !a.is_empty()).context("PUSH_AUDIENCE is not set")?,
            email: args
                .push_service_account
                .clone()
                .filter(|a| !a.is_empty())
                .context("PUSH_SERVICE_ACCOUNT is not set")?,
        })
    };
    let check = match mode {
        PushAuthMode::None => PushCheck::None,
        PushAuthMode::Oidc => PushCheck::Oidc(expected()?),
        PushAuthMode::CloudRun => PushCheck::CloudRun(expected()?),
    };
    let verification_token = match &args.push_verification_token {
        Some(token) if token.is_blank() => bail!("PUSH_VERIFICATION_TOKEN is set but empty"),
        Some(token) => Some(token.expose().to_owned()),
        None if mode == PushAuthMode::CloudRun => {
            bail!("PUSH_VERIFICATION_TOKEN is not set (required with PUSH_AUTH=cloud-run)")
        }
        None => None,
    };
    let subscription = match args.pubsub_subscription.as_deref().map(str::trim) {
        Some("") | None if mode != PushAuthMode::None => {
            bail!("PUBSUB_SUBSCRIPTION is not set (required with PUSH_AUTH=oidc and cloud-run)")
        }
        Some("") | None => None,
        Some(full) if full.starts_with("projects/") => Some(full.to_owned()),
        Some(name) if name.contains('/') => {
            bail!("PUBSUB_SUBSCRIPTION must be a subscription name or projects/P/subscriptions/S")
        }
        Some(name) => Some(format!("projects/{}/subscriptions/{name}", args.service.store.gcp_project)),
    };
    let config =
        PushAuthConfig { check, jwks_url: args.oidc_jwks_url.clone(), verification_token, min_refresh: MIN_REFRESH };
    Ok((PushAuth::new(config), subscription))
}

/// `lms-bridge serve`: validates the settings, then serves until SIGTERM or Ctrl-C.
pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let (auth, subscription) = push_auth(&args)?;
    warn_if_unauthenticated(&auth);
    let engine = engine(&args.service).await?;
    let state = Arc::new(AppState { engine, auth, project: args.service.store.gcp_project.clone(), subscription });
    let listener = tokio::net::TcpListener::bind((args.listen.as_str(), args.port))
        .await
        .with_context(|| format!("listening on {}:{}", args.listen, args.port))?;
    tracing::info!(port = args.port, "lms-bridge serving");
    axum::serve(listener, router(state)).with_graceful_shutdown(shutdown_signal()).await.context("serving")?;
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on SIGTERM (Cloud Run) or Ctrl-C; in-flight requests then get 10 s to finish.
async fn shutdown_signal() {
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
