//! Building the engine and running the server from validated settings.

use crate::auth::{PushAuth, PushAuthMode};
use crate::cli::{LmsArgs, ServeArgs, ServiceArgs, StoreArgs};
use crate::clock::SystemClock;
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
    match args.lms.as_str() {
        "talentlms" => {
            let url =
                args.talentlms_url.as_deref().filter(|u| !u.trim().is_empty()).context("TALENTLMS_URL is not set")?;
            let key = args
                .talentlms_api_key
                .clone()
                .filter(|k| !k.trim().is_empty())
                .context("TALENTLMS_API_KEY is not set")?;
            Ok(Arc::new(
                TalentLms::new(url, key, args.talentlms_max_calls_per_second)
                    .context("building the TalentLMS client")?,
            ))
        }
        other => bail!("unknown LMS {other:?} (known: talentlms)"),
    }
}

/// The engine from settings.
pub async fn engine(args: &ServiceArgs) -> anyhow::Result<Engine> {
    let lms = lms(&args.lms)?;
    Ok(Engine {
        deactivate_idle_users: args.lms.deactivate_idle_users,
        ..Engine::new(store(&args.store).await?, lms, Arc::new(SystemClock))
    })
}

/// `lms-bridge serve`: validates the settings, then serves until SIGTERM or Ctrl-C.
pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let auth = match args.push_auth {
        PushAuthMode::None => {
            PushAuth::new(PushAuthMode::None, String::new(), String::new(), args.oidc_jwks_url.clone())
        }
        mode => {
            let audience = args.push_audience.clone().filter(|a| !a.is_empty()).context("PUSH_AUDIENCE is not set")?;
            let account = args
                .push_service_account
                .clone()
                .filter(|a| !a.is_empty())
                .context("PUSH_SERVICE_ACCOUNT is not set")?;
            PushAuth::new(mode, audience, account, args.oidc_jwks_url.clone())
        }
    };
    warn_if_unauthenticated(&auth);
    let engine = engine(&args.service).await?;
    let state = Arc::new(AppState { engine, auth, project: args.service.store.gcp_project.clone() });
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
