//! Command-line arguments. Every setting also reads from its environment name (shown by
//! `--help`); secrets come from the environment only (docs/contracts.md lists them all).

use crate::auth::PushAuthMode;
use crate::pubsub_setup::{Expiration, PLAN};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// Secrets are read from the environment only (a process's arguments show in `ps`).
const SECRETS_HELP: &str = "Secrets, from the environment only:
  TALENTLMS_API_KEY         the TalentLMS API key
  PUSH_VERIFICATION_TOKEN   the ?token= pushes and sweeps must carry (serve)
  STUDENT_KEY_PEPPER        student keys are HMAC-SHA256 of the email under it
  HOTMART_HOTTOK            the expected hottok (normalize; or --hottok-file)
  HOTMART_HEADER_HOTTOK     the hottok that came with the body (normalize; or --header-hottok-file)
  HOTMART_CLIENT_ID         Hotmart API credentials (backfill, reconcile, serve's /tasks/reconcile)
  HOTMART_CLIENT_SECRET
  HOTMART_BASIC             optional: the Basic token Hotmart shows with them (else derived)
  ADMIN_CSRF_KEY            the admin console's CSRF token key (admin)";

/// Keeps Hotmart and the LMS in step.
#[derive(Debug, Parser)]
#[command(name = "lms-bridge", version, about, after_help = SECRETS_HELP)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Read a raw webhook body on stdin and print the normalized event JSON.
    Normalize(NormalizeArgs),
    /// Run the HTTP server (Pub/Sub push, scheduler sweep).
    Serve(ServeArgs),
    /// Product → course mappings.
    Mappings {
        /// What to do with them.
        #[command(subcommand)]
        command: MappingsCommand,
        /// Where the state is, and the LMS (to apply events kept while a product had no mapping).
        #[command(flatten)]
        service: ServiceArgs,
    },
    /// End access whose time is up and retry LMS actions left pending.
    Sweep(SweepArgs),
    /// Show what lms-bridge knows about a student.
    Student {
        /// What to do.
        #[command(subcommand)]
        command: StudentCommand,
    },
    /// Give access to the buyers and subscribers who existed before the bridge: Hotmart's
    /// sales and subscriptions (API, or the CSV sales export) published as events.
    Backfill(BackfillArgs),
    /// Find webhooks lost before the edge: re-read recent sales and subscriptions and publish
    /// the facts the state lacks (what Cloud Scheduler runs hourly via /tasks/reconcile).
    Reconcile(ReconcileArgs),
    /// Compare the access the state says with the LMS's users and enrollments; `--fix` brings
    /// the LMS back in step.
    Drift(DriftArgs),
    /// Pub/Sub resources.
    Pubsub {
        /// What to do.
        #[command(subcommand)]
        command: PubsubCommand,
    },
    /// Replay a history of raw webhooks (one body per line on stdin) through the engine,
    /// in memory, and print what the system would show at each probe time.
    Simulate(SimulateArgs),
    /// Run the admin web console (its own Cloud Run service, behind Identity-Aware Proxy).
    Admin(AdminArgs),
    /// Re-run stored events through the current code.
    #[command(group(clap::ArgGroup::new("which").required(true).multiple(true).args(["quarantined", "unmapped", "failed"])))]
    Replay {
        /// Re-normalize the quarantined (unparsed) events and apply those that now parse.
        #[arg(long)]
        quarantined: bool,
        /// Apply the events kept while their product had no mapping (those that have one now).
        #[arg(long)]
        unmapped: bool,
        /// Apply again the events kept as failed (a refund that named a charge no known grant
        /// had; a look-up that needed a setting): those that now resolve are applied.
        #[arg(long)]
        failed: bool,
        /// Where the state is, and the LMS.
        #[command(flatten)]
        service: ServiceArgs,
    },
}

/// `mappings` subcommands.
#[derive(Debug, Subcommand)]
pub enum MappingsCommand {
    /// Insert or replace the mappings of a TOML file (`[[product]]` tables).
    Import {
        /// The file.
        file: PathBuf,
    },
    /// Print every mapping as JSON lines.
    List,
}

/// `pubsub` subcommands.
#[derive(Debug, Subcommand)]
pub enum PubsubCommand {
    /// Create the topic, the dead-letter topic and the push subscription (idempotent).
    Setup(PubsubSetupArgs),
}

/// Arguments of `lms-bridge pubsub setup`. Every default is the plan of `deploy/pubsub.env`
/// (the file `deploy/gcp.sh` sources): change it there, not here.
#[derive(Debug, Args)]
pub struct PubsubSetupArgs {
    /// GCP project.
    #[arg(long, env = "GCP_PROJECT")]
    pub gcp_project: String,
    /// Topic for normalized events.
    #[arg(long, env = "PUBSUB_TOPIC", default_value = PLAN.topic)]
    pub topic: String,
    /// Where undeliverable messages go.
    #[arg(long, env = "PUBSUB_DEAD_LETTER_TOPIC", default_value = PLAN.dead_letter_topic)]
    pub dead_letter_topic: String,
    /// Pull subscription that keeps dead letters for inspection.
    #[arg(long, env = "PUBSUB_DEAD_LETTER_SUBSCRIPTION", default_value = PLAN.dead_letter_subscription)]
    pub dead_letter_subscription: String,
    /// The push subscription.
    #[arg(long, env = "PUBSUB_SUBSCRIPTION", default_value = PLAN.subscription)]
    pub subscription: String,
    /// The backend's push URL, e.g. https://SERVICE/pubsub/push.
    #[arg(long, env = "PUSH_ENDPOINT")]
    pub push_endpoint: String,
    /// Service account whose OIDC token Pub/Sub attaches (absent: no token, emulator only).
    #[arg(long, env = "PUSH_SERVICE_ACCOUNT")]
    pub push_service_account: Option<String>,
    /// Audience of that token (default: the push endpoint without its query).
    #[arg(long, env = "PUSH_AUDIENCE")]
    pub push_audience: Option<String>,
    /// Seconds Pub/Sub waits for an answer: covers the slowest LMS round trip.
    #[arg(long, default_value_t = PLAN.ack_deadline_seconds)]
    pub ack_deadline_seconds: i32,
    /// Deliveries before a message is dead-lettered.
    #[arg(long, default_value_t = PLAN.max_delivery_attempts)]
    pub max_delivery_attempts: i32,
    /// First redelivery delay (then exponential).
    #[arg(long, default_value_t = PLAN.min_retry_delay_seconds)]
    pub min_backoff_seconds: i64,
    /// Longest redelivery delay.
    #[arg(long, default_value_t = PLAN.max_retry_delay_seconds)]
    pub max_backoff_seconds: i64,
    /// How long both subscriptions keep unacknowledged messages.
    #[arg(long, default_value_t = PLAN.message_retention_seconds)]
    pub message_retention_seconds: i64,
    /// How long the events topic keeps messages: a subscription can seek back that far.
    #[arg(long, default_value_t = PLAN.topic_retention_seconds)]
    pub topic_retention_seconds: i64,
    /// When an idle subscription is deleted: `never`, or seconds without activity.
    #[arg(long, default_value_t = PLAN.expiration)]
    pub expiration: Expiration,
    /// The emulator, when set.
    #[arg(long, env = "PUBSUB_EMULATOR_HOST")]
    pub pubsub_emulator_host: Option<String>,
}

/// `student` subcommands.
#[derive(Debug, Subcommand)]
pub enum StudentCommand {
    /// Courses, grants, access and pending actions of the student with this email.
    Show {
        /// The student's email (any case, spaces trimmed).
        email: String,
        /// Where the state is.
        #[command(flatten)]
        store: StoreArgs,
    },
    /// The student key of this email (what logs and document ids show), under
    /// `STUDENT_KEY_PEPPER` when set.
    Key {
        /// The student's email (any case, spaces trimmed).
        email: String,
        /// The pepper.
        #[command(flatten)]
        keys: KeyArgs,
    },
}

/// How student keys are derived from emails.
#[derive(Debug, Args, Clone)]
pub struct KeyArgs {
    /// `STUDENT_KEY_PEPPER` (a secret, environment only): student keys are HMAC-SHA256 of
    /// the email under it, the same at the edge. Without it, plain sha256.
    #[arg(skip = Secret::from_env("STUDENT_KEY_PEPPER"))]
    pub student_key_pepper: Option<Secret>,
}

impl KeyArgs {
    /// The pepper, if set and not blank.
    pub fn pepper(&self) -> Option<lms_bridge_shared::Pepper> {
        self.student_key_pepper.as_ref().and_then(|s| lms_bridge_shared::Pepper::new(s.expose()))
    }
}

/// Arguments of `lms-bridge sweep`.
#[derive(Debug, Args)]
pub struct SweepArgs {
    /// Sweep as if it were this time (RFC 3339), e.g. to end access due at a given moment, or
    /// to see what a later sweep will do. Default: now.
    #[arg(long, value_name = "RFC3339")]
    pub at: Option<String>,
    /// State and LMS.
    #[command(flatten)]
    pub service: ServiceArgs,
}

/// Arguments of `lms-bridge simulate`.
#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// The product mappings (the TOML of `mappings import`).
    #[arg(long)]
    pub mappings: PathBuf,
    /// A probe time (RFC 3339), repeatable; default: the latest envelope time in the input.
    #[arg(long = "at", value_name = "RFC3339")]
    pub at: Vec<String>,
    /// First print one line per input line: its event, change, status and LMS actions.
    #[arg(long)]
    pub timeline: bool,
    /// The platform that sent the bodies: hotmart, stripe, or std:NAME (also std-NAME) for a
    /// Standard Webhooks sender. The bodies are not verified.
    #[arg(long, default_value = "hotmart")]
    pub source: String,
}

/// What `normalize --help` adds after the flags.
const NORMALIZE_HELP: &str = "Secrets, from the environment only (comma-separated during a rotation):
  HOTMART_HOTTOK              --source hotmart (unset: the body is normalized unchecked)
  STRIPE_WEBHOOK_SECRET       --source stripe (unset: refused, a signature needs its secret)
  STD_WEBHOOK_SECRET_<NAME>   --source std:NAME (unset: refused, likewise)
  HOTMART_HEADER_HOTTOK       the X-HOTMART-HOTTOK that came with the body (or --header)
Exit status: 0 and the event on stdout; 2 and one line on stderr when the body is refused or
the input is bad; 1 when stdin cannot be read.";

/// Arguments of `lms-bridge normalize`. Secrets never come from the command line (anyone on
/// the machine can read a process's arguments with `ps`): the source's own setting
/// (`HOTMART_HOTTOK`, `STRIPE_WEBHOOK_SECRET`, `STD_WEBHOOK_SECRET_<NAME>`) is read from the
/// environment, or, for Hotmart, the expected hottok from `--hottok-file`.
#[derive(Debug, Args)]
#[command(after_help = NORMALIZE_HELP)]
pub struct NormalizeArgs {
    /// The platform that sent the body: hotmart, stripe, or std:NAME (also std-NAME) for a
    /// Standard Webhooks sender.
    #[arg(long, default_value = "hotmart")]
    pub source: String,
    /// A header that came with the body, as `Name: value` (repeatable): what the source's
    /// signature or token check reads (`webhook-id`, `Stripe-Signature`, `X-HOTMART-HOTTOK`, …).
    #[arg(long = "header", value_name = "NAME: VALUE", value_parser = crate::commands::normalize::header_arg)]
    pub headers: Vec<Secret>,
    /// The time the body arrived (RFC 3339), for the timestamp tolerance and `received_at`;
    /// default: now.
    #[arg(long, value_name = "RFC3339")]
    pub now: Option<String>,
    /// Hotmart: a file holding the expected hottok (instead of HOTMART_HOTTOK in the
    /// environment); when a hottok is given, the body is only accepted with it as the header value.
    #[arg(long, value_name = "FILE")]
    pub hottok_file: Option<PathBuf>,
    /// Hotmart: a file holding the X-HOTMART-HOTTOK header value that came with the body
    /// (instead of `--header` or HOTMART_HEADER_HOTTOK in the environment).
    #[arg(long, value_name = "FILE")]
    pub header_hottok_file: Option<PathBuf>,
}

/// A secret setting. Read from the environment only (never a flag: arguments show in `ps`);
/// its `Debug` never shows it, so neither does any argument struct holding one.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The environment variable `name`, if set (possibly empty).
    pub fn from_env(name: &str) -> Option<Self> {
        std::env::var(name).ok().map(Self)
    }

    /// The value, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether it is empty or blank.
    pub fn is_blank(&self) -> bool {
        self.0.trim().is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Where the state lives.
#[derive(Debug, Args, Clone)]
pub struct StoreArgs {
    /// GCP project of the Firestore database.
    #[arg(long, env = "GCP_PROJECT")]
    pub gcp_project: String,
    /// How the store's student keys are derived.
    #[command(flatten)]
    pub keys: KeyArgs,
}

/// Which LMS, and how to reach it.
#[derive(Debug, Args, Clone)]
pub struct LmsArgs {
    /// The LMS adapter.
    #[arg(long, env = "LMS", value_enum, default_value = "talentlms")]
    pub lms: LmsKind,
    /// TalentLMS base URL, e.g. `https://acme.talentlms.com`.
    #[arg(long, env = "TALENTLMS_URL")]
    pub talentlms_url: Option<String>,
    /// TalentLMS API key: `TALENTLMS_API_KEY` in the environment only (a secret).
    #[arg(skip = Secret::from_env("TALENTLMS_API_KEY"))]
    pub talentlms_api_key: Option<Secret>,
    /// Client-side pace for TalentLMS calls, shared by the whole process (TalentLMS allows
    /// 200 per 5 s; the default leaves room for other integrations).
    #[arg(long, env = "TALENTLMS_MAX_CALLS_PER_SECOND", default_value_t = 30)]
    pub talentlms_max_calls_per_second: u32,
    /// How long one TalentLMS call may take before it counts as failed (and is retried: the
    /// retry finds what a slow call did).
    #[arg(long, env = "TALENTLMS_TIMEOUT_SECONDS", default_value_t = 10)]
    pub talentlms_timeout_seconds: u64,
    /// Moodle: the site's exact wwwroot, e.g. `https://school.example/moodle` (Moodle
    /// redirects any other host, port or scheme).
    #[arg(long, env = "MOODLE_URL")]
    pub moodle_url: Option<String>,
    /// Moodle web service token: `MOODLE_TOKEN` in the environment only (a secret).
    #[arg(skip = Secret::from_env("MOODLE_TOKEN"))]
    pub moodle_token: Option<Secret>,
    /// The Moodle role enrolments give (5 is *student* on a standard site).
    #[arg(long, env = "MOODLE_STUDENT_ROLE_ID", default_value_t = crate::lms::moodle::DEFAULT_STUDENT_ROLE_ID)]
    pub moodle_student_role_id: u32,
    /// Client-side pace for Moodle calls, shared by the whole process.
    #[arg(long, env = "MOODLE_MAX_CALLS_PER_SECOND", default_value_t = crate::lms::moodle::DEFAULT_MAX_CALLS_PER_SECOND)]
    pub moodle_max_calls_per_second: u32,
    /// How long one Moodle call may take before it counts as failed.
    #[arg(long, env = "MOODLE_TIMEOUT_SECONDS", default_value_t = 10)]
    pub moodle_timeout_seconds: u64,
    /// Moodle ends each enrolment at its end date by itself (`timeend`): the sweep records the
    /// end without calling Moodle. Set this to also unenrol at the end, to be sure.
    #[arg(long, env = "MOODLE_UNENROL_AT_END", default_value_t = false)]
    pub moodle_unenrol_at_end: bool,
    /// Deactivate LMS users left without any active course (seats cost money).
    #[arg(long, env = "DEACTIVATE_IDLE_USERS", default_value_t = false)]
    pub deactivate_idle_users: bool,
}

/// The LMS adapters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LmsKind {
    /// TalentLMS (`TALENTLMS_URL`, `TALENTLMS_API_KEY`).
    Talentlms,
    /// Moodle (`MOODLE_URL`, `MOODLE_TOKEN`).
    Moodle,
}

/// State and LMS: what the engine needs.
#[derive(Debug, Args, Clone)]
pub struct ServiceArgs {
    /// Where the state is.
    #[command(flatten)]
    pub store: StoreArgs,
    /// The LMS.
    #[command(flatten)]
    pub lms: LmsArgs,
    /// Stripe's API base URL (tests point it at a fake).
    #[arg(long, env = "STRIPE_API_URL", default_value = crate::stripe_api::API_URL)]
    pub stripe_api_url: String,
    /// `STRIPE_API_KEY` (environment only; a secret): a restricted key with read access to
    /// charges, invoices and Checkout Sessions, to find the grant of a Stripe refund or dispute
    /// that names only its charge. Without it such events wait for their purchase, then fail.
    #[arg(skip = Secret::from_env("STRIPE_API_KEY"))]
    pub stripe_api_key: Option<Secret>,
}

/// Arguments of `lms-bridge serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Listen port (Cloud Run sets PORT).
    #[arg(long, env = "PORT", default_value_t = 8080)]
    pub port: u16,
    /// Listen address.
    #[arg(long, env = "LISTEN_ADDR", default_value = "0.0.0.0")]
    pub listen: String,
    /// State and LMS.
    #[command(flatten)]
    pub service: ServiceArgs,
    /// How push and scheduler tokens are checked.
    #[arg(long, env = "PUSH_AUTH", value_enum, default_value = "oidc")]
    pub push_auth: PushAuthMode,
    /// Expected `aud` of push and scheduler tokens (the service URL).
    #[arg(long, env = "PUSH_AUDIENCE")]
    pub push_audience: Option<String>,
    /// Expected `email` of push and scheduler tokens.
    #[arg(long, env = "PUSH_SERVICE_ACCOUNT")]
    pub push_service_account: Option<String>,
    /// Where Google's token signing keys are.
    #[arg(long, env = "OIDC_JWKS_URL", default_value = "https://www.googleapis.com/oauth2/v3/certs")]
    pub oidc_jwks_url: String,
    /// The push subscription (name, or `projects/P/subscriptions/S`): pushes naming another are
    /// refused. Required with `PUSH_AUTH=oidc` and `cloud-run`.
    #[arg(long, env = "PUBSUB_SUBSCRIPTION")]
    pub pubsub_subscription: Option<String>,
    /// `PUSH_VERIFICATION_TOKEN` (environment only; a secret): the `?token=` pushes and sweeps
    /// must carry. Required with `PUSH_AUTH=cloud-run`; checked whenever set.
    #[arg(skip = Secret::from_env("PUSH_VERIFICATION_TOKEN"))]
    pub push_verification_token: Option<Secret>,
    /// `K_SERVICE`, which Cloud Run sets: `PUSH_AUTH=none` is refused there.
    #[arg(skip = std::env::var("K_SERVICE").ok().filter(|s| !s.trim().is_empty()))]
    pub cloud_run_service: Option<String>,
    /// Hotmart's API, for `POST /tasks/reconcile` (off without credentials).
    #[command(flatten)]
    pub hotmart: HotmartApiArgs,
    /// Where reconcile publishes.
    #[command(flatten)]
    pub publish: PublishArgs,
    /// Days `POST /tasks/reconcile` re-reads.
    #[arg(long, env = "RECONCILE_DAYS", default_value_t = crate::jobs::reconcile::DEFAULT_DAYS)]
    pub reconcile_days: u32,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests: a panic is the failure report")]
    use super::*;

    #[test]
    fn debug_of_the_arguments_never_shows_a_secret() {
        let mut cli =
            Cli::try_parse_from(["lms-bridge", "serve", "--gcp-project", "p", "--push-auth", "cloud-run"]).unwrap();
        let Command::Serve(args) = &mut cli.command else { panic!("serve") };
        args.service.lms.talentlms_api_key = Some(Secret::new("api-key-CANARY"));
        args.service.stripe_api_key = Some(Secret::new("rk_test_CANARY"));
        args.push_verification_token = Some(Secret::new("verification-CANARY"));
        let serve = format!("{cli:?} {cli:#?}");
        assert!(serve.contains("[redacted]"), "{serve}");
        assert_eq!(Secret::new("CANARY").to_string(), "[redacted]");
        // A header value may be a token (X-HOTMART-HOTTOK): it is never shown either.
        let normalize =
            Cli::try_parse_from(["lms-bridge", "normalize", "--header", "X-HOTMART-HOTTOK: CANARY"]).unwrap();
        let Command::Normalize(args) = &normalize.command else { panic!("normalize") };
        assert_eq!(args.headers.first().map(Secret::expose), Some("X-HOTMART-HOTTOK: CANARY"));
        let text = format!("{serve} {normalize:?}");
        assert!(!text.contains("CANARY"), "{text}");
    }

    #[test]
    fn secrets_are_not_flags() {
        for args in [
            &["lms-bridge", "serve", "--gcp-project", "p", "--talentlms-api-key", "k"][..],
            &["lms-bridge", "serve", "--gcp-project", "p", "--push-verification-token", "t"],
            &["lms-bridge", "sweep", "--gcp-project", "p", "--talentlms-api-key", "k"],
            &["lms-bridge", "serve", "--gcp-project", "p", "--stripe-api-key", "k"],
            &["lms-bridge", "normalize", "--hottok", "t"],
            &["lms-bridge", "normalize", "--header-hottok", "t"],
        ] {
            assert!(Cli::try_parse_from(args).is_err(), "{args:?}");
        }
    }
}

/// Hotmart's REST API.
#[derive(Debug, Args, Clone)]
pub struct HotmartApiArgs {
    /// The API's base URL (the sandbox: https://sandbox.hotmart.com).
    #[arg(long, env = "HOTMART_API_URL", default_value = crate::hotmart_api::API_URL)]
    pub hotmart_api_url: String,
    /// The token service's base URL.
    #[arg(long, env = "HOTMART_AUTH_URL", default_value = crate::hotmart_api::AUTH_URL)]
    pub hotmart_auth_url: String,
    /// Calls a minute, for everything using these credentials (Hotmart allows 500).
    #[arg(long, env = "HOTMART_API_RATE_PER_MINUTE", default_value_t = 500)]
    pub hotmart_api_rate_per_minute: u32,
    /// Rows a page (Hotmart serves at most 500).
    #[arg(long, env = "HOTMART_API_PAGE_SIZE", default_value_t = 500)]
    pub hotmart_api_page_size: u32,
    /// `HOTMART_CLIENT_ID` (environment only: it comes from Secret Manager with the secret).
    #[arg(skip = Secret::from_env("HOTMART_CLIENT_ID"))]
    pub hotmart_client_id: Option<Secret>,
    /// `HOTMART_CLIENT_SECRET` (environment only).
    #[arg(skip = Secret::from_env("HOTMART_CLIENT_SECRET"))]
    pub hotmart_client_secret: Option<Secret>,
    /// `HOTMART_BASIC` (environment only, optional).
    #[arg(skip = Secret::from_env("HOTMART_BASIC"))]
    pub hotmart_basic: Option<Secret>,
}

/// Where found facts are published.
#[derive(Debug, Args, Clone)]
pub struct PublishArgs {
    /// The events topic (the edge's).
    #[arg(long, env = "PUBSUB_TOPIC", default_value = PLAN.topic)]
    pub pubsub_topic: String,
    /// The Pub/Sub emulator, when set.
    #[arg(long, env = "PUBSUB_EMULATOR_HOST")]
    pub pubsub_emulator_host: Option<String>,
    /// Events published a second at most: live webhooks share the subscription and the LMS.
    #[arg(long, env = "PUBLISH_PER_SECOND", default_value_t = 50)]
    pub publish_per_second: u32,
}

/// How the admin console knows who is asking (`ADMIN_AUTH`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AdminAuthMode {
    /// Identity-Aware Proxy's signed header (`x-goog-iap-jwt-assertion`, ES256), verified here
    /// too, and the operator's email looked up in the allowlists.
    Iap,
    /// Nobody is asked: every request is an operator named `local`. Local runs only.
    None,
}

/// Arguments of `lms-bridge admin`.
#[derive(Debug, Args)]
pub struct AdminArgs {
    /// HTTP port.
    #[arg(long, env = "PORT", default_value_t = 8080)]
    pub port: u16,
    /// Address to listen on.
    #[arg(long, env = "LISTEN_ADDR", default_value = "0.0.0.0")]
    pub listen: String,
    /// Where the state is (Firestore).
    #[command(flatten)]
    pub store: StoreArgs,
    /// Where admin events (grants and revocations by hand, retries, replays) are published:
    /// the events topic, so the backend applies them like any other event.
    #[command(flatten)]
    pub publish: PublishArgs,
    /// How requests are authenticated.
    #[arg(long, env = "ADMIN_AUTH", value_enum, default_value = "iap")]
    pub admin_auth: AdminAuthMode,
    /// The IAP audience the signed header must name: `/projects/NUMBER/locations/REGION/services/SERVICE`
    /// for IAP on Cloud Run (or `/projects/NUMBER/global/backendServices/ID` behind a load balancer).
    #[arg(long, env = "ADMIN_IAP_AUDIENCE")]
    pub admin_iap_audience: Option<String>,
    /// Where IAP's public keys are.
    #[arg(long, env = "ADMIN_IAP_JWKS_URL", default_value = "https://www.gstatic.com/iap/verify/public_key-jwk")]
    pub admin_iap_jwks_url: String,
    /// Emails allowed to act (grant, revoke, retry, replay, edit mappings), comma-separated.
    #[arg(long, env = "ADMIN_OPERATORS", default_value = "")]
    pub admin_operators: String,
    /// Emails allowed to look, comma-separated.
    #[arg(long, env = "ADMIN_VIEWERS", default_value = "")]
    pub admin_viewers: String,
    /// `ADMIN_CSRF_KEY` (a secret, environment only): the key of the forms' CSRF tokens, the
    /// same on every instance. Without it a random key per process (forms posted to another
    /// instance are refused: local runs only).
    #[arg(skip = Secret::from_env("ADMIN_CSRF_KEY"))]
    pub admin_csrf_key: Option<Secret>,
    /// Cloud Run's `K_SERVICE`: set, the console never runs open.
    #[arg(skip = std::env::var("K_SERVICE").ok().filter(|s| !s.trim().is_empty()))]
    pub cloud_run_service: Option<String>,
}

/// Where a backfill reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackfillFrom {
    /// Hotmart's REST API (`HOTMART_CLIENT_ID`, `HOTMART_CLIENT_SECRET`).
    HotmartApi,
    /// Hotmart's detailed sales export (a `;`-separated CSV file).
    Csv,
}

/// Arguments of `lms-bridge backfill`.
#[derive(Debug, Args)]
pub struct BackfillArgs {
    /// Where to read.
    #[arg(long, value_enum)]
    pub from: BackfillFrom,
    /// The export file (with `--from csv`).
    pub file: Option<PathBuf>,
    /// Start of the period (API): YYYY-MM-DD (UTC) or RFC 3339. Required: Hotmart's own
    /// default ranges are undocumented, so the walk never relies on them.
    #[arg(long, value_name = "DATE")]
    pub since: Option<String>,
    /// End of the period (API), default now. Run again without it, an unfinished run with the
    /// same other arguments is resumed.
    #[arg(long, value_name = "DATE")]
    pub until: Option<String>,
    /// Only this Hotmart product id (repeatable; default all).
    #[arg(long = "product", value_name = "ID")]
    pub products: Vec<String>,
    /// Days per query window (at most 360, what Hotmart serves).
    #[arg(long, default_value_t = 30)]
    pub window_days: u32,
    /// Publish nothing: print the access the facts give, as `simulate` does.
    #[arg(long)]
    pub dry_run: bool,
    /// The mappings to judge access by (with `--dry-run`).
    #[arg(long, value_name = "FILE")]
    pub mappings: Option<PathBuf>,
    /// Probe time for `--dry-run` (RFC 3339, repeatable; default now).
    #[arg(long = "at", value_name = "RFC3339")]
    pub at: Vec<String>,
    /// GCP project of the state and the topic (not needed with `--dry-run`).
    #[arg(long, env = "GCP_PROJECT")]
    pub gcp_project: Option<String>,
    /// How student keys are derived.
    #[command(flatten)]
    pub keys: KeyArgs,
    /// Hotmart's API.
    #[command(flatten)]
    pub hotmart: HotmartApiArgs,
    /// The events topic.
    #[command(flatten)]
    pub publish: PublishArgs,
}

/// Arguments of `lms-bridge reconcile`.
#[derive(Debug, Args, Clone)]
pub struct ReconcileArgs {
    /// Days re-read before now.
    #[arg(long, env = "RECONCILE_DAYS", default_value_t = crate::jobs::reconcile::DEFAULT_DAYS)]
    pub days: u32,
    /// Where the state is.
    #[command(flatten)]
    pub store: StoreArgs,
    /// Hotmart's API.
    #[command(flatten)]
    pub hotmart: HotmartApiArgs,
    /// The events topic.
    #[command(flatten)]
    pub publish: PublishArgs,
}

/// Arguments of `lms-bridge drift`.
#[derive(Debug, Args)]
pub struct DriftArgs {
    /// Queue and run the LMS actions that bring the LMS back in step.
    #[arg(long)]
    pub fix: bool,
    /// Only this student (repeatable; default every student with an enrollment).
    #[arg(long = "email", value_name = "EMAIL")]
    pub emails: Vec<String>,
    /// State and LMS.
    #[command(flatten)]
    pub service: ServiceArgs,
}
