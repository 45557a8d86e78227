//! The validated settings of the binary: the arguments (`cli`, flags and environment) checked
//! once, before anything connects, into types that cannot hold a missing or blank value. Every
//! refusal names the setting, so a deploy fails at start-up with the reason, never later on the
//! first event. docs/contracts.md#settings lists them all.

use crate::auth::{Expected, PushAuthConfig, PushAuthMode, PushCheck, MIN_REFRESH};
use crate::cli::{HotmartApiArgs, LmsArgs, LmsKind, PublishArgs, Secret, ServeArgs, ServiceArgs};
use crate::hotmart_api::{HotmartApiConfig, MAX_PAGE_SIZE};
use crate::stripe_api::StripeApiConfig;
use lms_bridge_shared::Pepper;
use std::num::NonZeroU32;

/// A setting that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    /// Required (here, or with the other settings given) and not set.
    #[error("{0} is not set")]
    Missing(&'static str),
    /// Set, but empty or blank.
    #[error("{0} is set but empty")]
    Blank(&'static str),
    /// Set to a value that cannot work.
    #[error("{name} {reason}")]
    Invalid {
        /// The setting's environment name.
        name: &'static str,
        /// What is wrong, as the rest of a sentence.
        reason: String,
    },
    /// A combination that is unsafe where the process runs.
    #[error("{0}")]
    Refused(String),
}

/// A required text setting, trimmed.
fn required(value: Option<&str>, name: &'static str) -> Result<String, SettingsError> {
    match value.map(str::trim) {
        None => Err(SettingsError::Missing(name)),
        Some("") => Err(SettingsError::Blank(name)),
        Some(value) => Ok(value.to_owned()),
    }
}

/// A required secret, never blank.
fn required_secret(value: Option<&Secret>, name: &'static str) -> Result<Secret, SettingsError> {
    match value {
        None => Err(SettingsError::Missing(name)),
        Some(secret) if secret.is_blank() => Err(SettingsError::Blank(name)),
        Some(secret) => Ok(secret.clone()),
    }
}

/// The LMS and how to reach it.
#[derive(Debug, Clone)]
pub enum LmsSettings {
    /// TalentLMS.
    TalentLms {
        /// The portal's base URL.
        url: String,
        /// The API key.
        api_key: Secret,
        /// The client-side pace.
        max_calls_per_second: u32,
        /// One call's timeout.
        timeout: std::time::Duration,
    },
    /// Moodle.
    Moodle {
        /// The site, its token, role, pace and timeout.
        config: crate::lms::moodle::MoodleConfig,
        /// Unenrol at the end of access even though Moodle ends it by itself.
        unenrol_at_end: bool,
    },
}

impl LmsSettings {
    /// From the arguments.
    pub fn from_args(args: &LmsArgs) -> Result<Self, SettingsError> {
        match args.lms {
            LmsKind::Talentlms => {
                let url = required(args.talentlms_url.as_deref(), "TALENTLMS_URL")?;
                if !(url.starts_with("https://") || url.starts_with("http://")) {
                    return Err(SettingsError::Invalid {
                        name: "TALENTLMS_URL",
                        reason: "must be an http(s) URL, e.g. https://acme.talentlms.com".to_owned(),
                    });
                }
                if args.talentlms_max_calls_per_second == 0 {
                    return Err(SettingsError::Invalid {
                        name: "TALENTLMS_MAX_CALLS_PER_SECOND",
                        reason: "must be at least 1".to_owned(),
                    });
                }
                if !(1..=120).contains(&args.talentlms_timeout_seconds) {
                    return Err(SettingsError::Invalid {
                        name: "TALENTLMS_TIMEOUT_SECONDS",
                        reason: "must be between 1 and 120".to_owned(),
                    });
                }
                Ok(Self::TalentLms {
                    url,
                    api_key: required_secret(args.talentlms_api_key.as_ref(), "TALENTLMS_API_KEY")?,
                    max_calls_per_second: args.talentlms_max_calls_per_second,
                    timeout: std::time::Duration::from_secs(args.talentlms_timeout_seconds),
                })
            }
            LmsKind::Moodle => {
                let url = required(args.moodle_url.as_deref(), "MOODLE_URL")?;
                if !(url.starts_with("https://") || url.starts_with("http://")) {
                    return Err(SettingsError::Invalid {
                        name: "MOODLE_URL",
                        reason: "must be the site's http(s) wwwroot, e.g. https://school.example/moodle".to_owned(),
                    });
                }
                if args.moodle_student_role_id == 0 {
                    return Err(SettingsError::Invalid {
                        name: "MOODLE_STUDENT_ROLE_ID",
                        reason: "must be a role id (5 is student on a standard site)".to_owned(),
                    });
                }
                if !(1..=100).contains(&args.moodle_max_calls_per_second) {
                    return Err(SettingsError::Invalid {
                        name: "MOODLE_MAX_CALLS_PER_SECOND",
                        reason: "must be between 1 and 100".to_owned(),
                    });
                }
                if !(1..=120).contains(&args.moodle_timeout_seconds) {
                    return Err(SettingsError::Invalid {
                        name: "MOODLE_TIMEOUT_SECONDS",
                        reason: "must be between 1 and 120".to_owned(),
                    });
                }
                let token = required_secret(args.moodle_token.as_ref(), "MOODLE_TOKEN")?;
                Ok(Self::Moodle {
                    config: crate::lms::moodle::MoodleConfig {
                        url,
                        token,
                        student_role_id: args.moodle_student_role_id,
                        max_calls_per_second: args.moodle_max_calls_per_second,
                        timeout: std::time::Duration::from_secs(args.moodle_timeout_seconds),
                    },
                    unenrol_at_end: args.moodle_unenrol_at_end,
                })
            }
        }
    }
}

/// Hotmart's API, from its settings: both credentials are required.
pub fn hotmart_api(args: &HotmartApiArgs) -> Result<HotmartApiConfig, SettingsError> {
    let client_id = required_secret(args.hotmart_client_id.as_ref(), "HOTMART_CLIENT_ID")?;
    let secret = required_secret(args.hotmart_client_secret.as_ref(), "HOTMART_CLIENT_SECRET")?;
    if !(1..=MAX_PAGE_SIZE).contains(&args.hotmart_api_page_size) {
        return Err(SettingsError::Invalid {
            name: "HOTMART_API_PAGE_SIZE",
            reason: format!("must be 1 to {MAX_PAGE_SIZE}"),
        });
    }
    if args.hotmart_api_rate_per_minute == 0 {
        return Err(SettingsError::Invalid {
            name: "HOTMART_API_RATE_PER_MINUTE",
            reason: "must be at least 1".into(),
        });
    }
    for (name, url) in [("HOTMART_API_URL", &args.hotmart_api_url), ("HOTMART_AUTH_URL", &args.hotmart_auth_url)] {
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(SettingsError::Invalid { name, reason: "must be an http(s) URL".into() });
        }
    }
    Ok(HotmartApiConfig {
        auth_url: args.hotmart_auth_url.trim_end_matches('/').to_owned(),
        api_url: args.hotmart_api_url.trim_end_matches('/').to_owned(),
        basic: args.hotmart_basic.clone().filter(|b| !b.is_blank()),
        max_results: args.hotmart_api_page_size,
        rate_per_minute: args.hotmart_api_rate_per_minute,
        ..HotmartApiConfig::new(client_id.expose().trim(), secret)
    })
}

/// Stripe's API, when `STRIPE_API_KEY` is set (none: Stripe events are resolved from the state
/// alone).
pub fn stripe_api(args: &ServiceArgs) -> Result<Option<StripeApiConfig>, SettingsError> {
    let Some(key) = &args.stripe_api_key else { return Ok(None) };
    let key = required_secret(Some(key), "STRIPE_API_KEY")?;
    if key.expose().trim().starts_with("pk_") {
        return Err(SettingsError::Invalid {
            name: "STRIPE_API_KEY",
            reason: "is a publishable key; use a restricted key (rk_…) with read access".into(),
        });
    }
    let url = args.stripe_api_url.trim();
    // The key travels with every call: plain http only to this machine (the tests' fake).
    let usable = reqwest::Url::parse(url).is_ok_and(|u| {
        u.host_str().is_some_and(|h| !h.is_empty())
            && (u.scheme() == "https" || (u.scheme() == "http" && crate::lms::loopback_host(&u)))
    });
    if !usable {
        return Err(SettingsError::Invalid {
            name: "STRIPE_API_URL",
            reason: "must be an https URL (http only for a loopback host)".into(),
        });
    }
    Ok(Some(StripeApiConfig { url: url.trim_end_matches('/').to_owned(), key, timeout: crate::stripe_api::TIMEOUT }))
}

/// Where jobs publish the facts they find.
#[derive(Debug, Clone)]
pub struct PublishSettings {
    /// The events topic.
    pub topic: String,
    /// The emulator, when set.
    pub emulator_host: Option<String>,
    /// The pace.
    pub per_second: NonZeroU32,
}

impl PublishSettings {
    /// From the arguments.
    pub fn from_args(args: &PublishArgs) -> Result<Self, SettingsError> {
        Ok(Self {
            topic: required(Some(&args.pubsub_topic), "PUBSUB_TOPIC")?,
            emulator_host: args.pubsub_emulator_host.clone().filter(|h| !h.trim().is_empty()),
            per_second: NonZeroU32::new(args.publish_per_second)
                .ok_or(SettingsError::Invalid { name: "PUBLISH_PER_SECOND", reason: "must be at least 1".into() })?,
        })
    }
}

/// `POST /tasks/reconcile`: on when Hotmart API credentials are set.
#[derive(Debug, Clone)]
pub struct ReconcileSettings {
    /// The API.
    pub api: HotmartApiConfig,
    /// The topic.
    pub publish: PublishSettings,
    /// Days re-read.
    pub days: u32,
}

/// What the engine needs: the state, the student keys, the LMS.
#[derive(Debug, Clone)]
pub struct ServiceSettings {
    /// The GCP project of the Firestore database.
    pub project: String,
    /// The student-key pepper, when set.
    pub pepper: Option<Pepper>,
    /// The LMS.
    pub lms: LmsSettings,
    /// Deactivate LMS users the bridge created once they have no active course.
    pub deactivate_idle_users: bool,
    /// Stripe's API, when `STRIPE_API_KEY` is set.
    pub stripe: Option<StripeApiConfig>,
}

impl ServiceSettings {
    /// From the arguments.
    pub fn from_args(args: &ServiceArgs) -> Result<Self, SettingsError> {
        Ok(Self {
            project: required(Some(&args.store.gcp_project), "GCP_PROJECT")?,
            pepper: args.store.keys.pepper(),
            lms: LmsSettings::from_args(&args.lms)?,
            deactivate_idle_users: args.lms.deactivate_idle_users,
            stripe: stripe_api(args)?,
        })
    }
}

/// `lms-bridge serve`: the service, where to listen, and how pushes are authenticated.
#[derive(Debug, Clone)]
pub struct ServeSettings {
    /// Listen address.
    pub listen: String,
    /// Listen port.
    pub port: u16,
    /// State and LMS.
    pub service: ServiceSettings,
    /// How push and scheduler requests are checked.
    pub push: PushAuthConfig,
    /// The one subscription whose pushes are accepted (`projects/P/subscriptions/S`), when
    /// push auth is on.
    pub subscription: Option<String>,
    /// Reconciliation, when Hotmart API credentials are set.
    pub reconcile: Option<ReconcileSettings>,
}

impl ServeSettings {
    /// From the arguments; every missing or unsafe combination is an error naming it.
    pub fn from_args(args: &ServeArgs) -> Result<Self, SettingsError> {
        let service = ServiceSettings::from_args(&args.service)?;
        let mode = args.push_auth;
        if mode == PushAuthMode::None {
            if let Some(service) = &args.cloud_run_service {
                return Err(SettingsError::Refused(format!(
                    "PUSH_AUTH=none is refused on Cloud Run (K_SERVICE={service} is set): use PUSH_AUTH=cloud-run or oidc"
                )));
            }
        }
        let expected = || -> Result<Expected, SettingsError> {
            Ok(Expected {
                audience: required(args.push_audience.as_deref(), "PUSH_AUDIENCE")?,
                email: required(args.push_service_account.as_deref(), "PUSH_SERVICE_ACCOUNT")?,
            })
        };
        let check = match mode {
            PushAuthMode::None => PushCheck::None,
            PushAuthMode::Oidc => PushCheck::Oidc(expected()?),
            PushAuthMode::CloudRun => PushCheck::CloudRun(expected()?),
        };
        let verification_token = match &args.push_verification_token {
            Some(token) => Some(required_secret(Some(token), "PUSH_VERIFICATION_TOKEN")?.expose().to_owned()),
            None if mode == PushAuthMode::CloudRun => {
                return Err(SettingsError::Invalid {
                    name: "PUSH_VERIFICATION_TOKEN",
                    reason: "is not set (required with PUSH_AUTH=cloud-run)".to_owned(),
                })
            }
            None => None,
        };
        let subscription = match args.pubsub_subscription.as_deref().map(str::trim) {
            Some("") | None if mode != PushAuthMode::None => {
                return Err(SettingsError::Invalid {
                    name: "PUBSUB_SUBSCRIPTION",
                    reason: "is not set (required with PUSH_AUTH=oidc and cloud-run)".to_owned(),
                })
            }
            Some("") | None => None,
            Some(full) if full.starts_with("projects/") => Some(full.to_owned()),
            Some(name) if name.contains('/') => {
                return Err(SettingsError::Invalid {
                    name: "PUBSUB_SUBSCRIPTION",
                    reason: "must be a subscription name or projects/P/subscriptions/S".to_owned(),
                })
            }
            Some(name) => Some(format!("projects/{}/subscriptions/{name}", service.project)),
        };
        let push = PushAuthConfig {
            check,
            jwks_url: args.oidc_jwks_url.clone(),
            verification_token,
            min_refresh: MIN_REFRESH,
        };
        let reconcile = match (&args.hotmart.hotmart_client_id, &args.hotmart.hotmart_client_secret) {
            (None, None) => None,
            _ => Some(ReconcileSettings {
                api: hotmart_api(&args.hotmart)?,
                publish: PublishSettings::from_args(&args.publish)?,
                days: args.reconcile_days,
            }),
        };
        Ok(Self { listen: args.listen.clone(), port: args.port, service, push, subscription, reconcile })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests: a panic is the failure report")]
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn serve(args: &[&str], key: Option<&str>, token: Option<&str>) -> Result<ServeSettings, SettingsError> {
        let mut argv = vec!["lms-bridge", "serve", "--gcp-project", "p"];
        if !args.contains(&"--talentlms-url") {
            argv.extend(["--talentlms-url", "https://x.talentlms.com"]);
        }
        argv.extend_from_slice(args);
        let mut cli = Cli::try_parse_from(argv).unwrap();
        let Command::Serve(serve) = &mut cli.command else { panic!("serve") };
        serve.service.lms.talentlms_api_key = key.map(Secret::new);
        serve.push_verification_token = token.map(Secret::new);
        serve.cloud_run_service = None;
        ServeSettings::from_args(serve)
    }

    fn moodle(args: &[&str], token: Option<&str>) -> Result<ServeSettings, SettingsError> {
        let mut argv = vec!["lms-bridge", "serve", "--gcp-project", "p", "--push-auth", "none", "--lms", "moodle"];
        argv.extend_from_slice(args);
        let mut cli = Cli::try_parse_from(argv).unwrap();
        let Command::Serve(serve) = &mut cli.command else { panic!("serve") };
        serve.service.lms.moodle_token = token.map(Secret::new);
        serve.cloud_run_service = None;
        ServeSettings::from_args(serve)
    }

    #[test]
    fn the_stripe_key_goes_only_over_https_or_to_this_machine() {
        let mut argv = vec!["lms-bridge", "serve", "--gcp-project", "p", "--talentlms-url", "https://x.talentlms.com"];
        argv.extend(["--push-auth", "none"]);
        let mut cli = Cli::try_parse_from(argv).unwrap();
        let Command::Serve(serve) = &mut cli.command else { panic!("serve") };
        let service = &mut serve.service;
        assert!(stripe_api(service).unwrap().is_none(), "no key, no look-ups");
        service.stripe_api_key = Some(Secret::new("rk_test_1"));
        for (url, ok) in [
            ("https://api.stripe.com", true),
            ("http://127.0.0.1:9999", true),
            ("http://localhost:9999/", true),
            ("http://api.stripe.com", false),
            ("ftp://127.0.0.1", false),
            ("api.stripe.com", false),
        ] {
            service.stripe_api_url = url.to_owned();
            let result = stripe_api(service);
            assert_eq!(result.is_ok(), ok, "{url}: {result:?}");
            if let Err(e) = result {
                assert!(e.to_string().starts_with("STRIPE_API_URL must be") && !e.to_string().contains("rk_"), "{e}");
            }
        }
        service.stripe_api_key = Some(Secret::new("pk_live_1"));
        service.stripe_api_url = "https://api.stripe.com".to_owned();
        assert!(stripe_api(service).unwrap_err().to_string().contains("publishable key"));
    }

    #[test]
    fn moodle_needs_its_site_and_token_and_names_what_is_wrong() {
        let site = ["--moodle-url", "https://school.example/moodle"];
        let cases: [(&[&str], Option<&str>, &str); 5] = [
            (&[], Some("t"), "MOODLE_URL is not set"),
            (&site, None, "MOODLE_TOKEN is not set"),
            (&["--moodle-url", "school.example"], Some("t"), "MOODLE_URL must be"),
            (&[&site[..], &["--moodle-student-role-id", "0"]].concat(), Some("t"), "MOODLE_STUDENT_ROLE_ID must be"),
            (&[&site[..], &["--moodle-timeout-seconds", "0"]].concat(), Some("t"), "MOODLE_TIMEOUT_SECONDS must be"),
        ];
        for (args, token, expected) in cases {
            let error = moodle(args, token).unwrap_err().to_string();
            assert!(error.starts_with(expected), "{args:?}: {error}");
            assert!(!error.contains("tok"), "{error}");
        }
        let ok = moodle(&[&site[..], &["--moodle-unenrol-at-end"]].concat(), Some("tok-1")).unwrap();
        let LmsSettings::Moodle { config, unenrol_at_end } = &ok.service.lms else { panic!("moodle") };
        assert_eq!((config.url.as_str(), config.token.expose(), config.student_role_id), (site[1], "tok-1", 5));
        assert!(*unenrol_at_end);
    }

    fn admin(args: &[&str], cloud_run: bool) -> Result<AdminSettings, SettingsError> {
        let mut argv = vec!["lms-bridge", "admin", "--gcp-project", "p"];
        argv.extend_from_slice(args);
        let mut cli = Cli::try_parse_from(argv).unwrap();
        let Command::Admin(admin) = &mut cli.command else { panic!("admin") };
        admin.cloud_run_service = cloud_run.then(|| "lms-bridge-admin".to_owned());
        AdminSettings::from_args(admin)
    }

    #[test]
    fn the_console_refuses_to_run_open_on_cloud_run_or_with_nobody_allowed() {
        let refusal = |args: &[&str], cloud_run| admin(args, cloud_run).unwrap_err().to_string();
        assert!(refusal(&["--admin-auth", "none"], true).starts_with("ADMIN_AUTH is none on Cloud Run"));
        assert!(matches!(admin(&["--admin-auth", "none"], false).unwrap().gate, AdminGate::Open));
        assert!(refusal(&["--admin-iap-audience", "/projects/1/x"], true).contains("ADMIN_VIEWERS are both empty"));
        assert_eq!(refusal(&["--admin-operators", "ops@example.com"], true), "ADMIN_IAP_AUDIENCE is not set");
        assert!(refusal(&["--admin-operators", "ops@example.com,not an email", "--admin-iap-audience", "a"], true)
            .starts_with("ADMIN_OPERATORS has an entry that is not an email"));
        let ok = admin(
            &[
                "--admin-operators",
                " Ops@Example.com ",
                "--admin-viewers",
                "v@example.com",
                "--admin-iap-audience",
                "a",
            ],
            true,
        )
        .unwrap();
        let AdminGate::Iap { operators, viewers, .. } = ok.gate else { panic!("iap") };
        assert!(operators.contains("ops@example.com") && viewers.contains("v@example.com"));
    }

    #[test]
    fn every_refusal_names_its_setting() {
        let oidc = ["--push-auth", "oidc", "--push-audience", "https://b", "--push-service-account", "a@b"];
        type Case<'a> = (&'a [&'a str], Option<&'a str>, Option<&'a str>, &'a str);
        let cases: [Case<'_>; 7] = [
            (&["--push-auth", "none"], None, None, "TALENTLMS_API_KEY is not set"),
            (&["--push-auth", "none"], Some("  "), None, "TALENTLMS_API_KEY is set but empty"),
            (
                &["--push-auth", "none", "--talentlms-url", "acme.talentlms.com"],
                Some("k"),
                None,
                "TALENTLMS_URL must be",
            ),
            (&["--push-auth", "oidc"], Some("k"), None, "PUSH_AUDIENCE is not set"),
            (&oidc, Some("k"), None, "PUBSUB_SUBSCRIPTION is not set"),
            (&["--push-auth", "none"], Some("k"), Some(""), "PUSH_VERIFICATION_TOKEN is set but empty"),
            (&["--push-auth", "none", "--pubsub-subscription", "a/b"], Some("k"), None, "PUBSUB_SUBSCRIPTION must be"),
        ];
        for (args, key, token, expected) in cases {
            let error = serve(args, key, token).unwrap_err().to_string();
            assert!(error.starts_with(expected), "{args:?}: {error}");
        }
    }

    #[test]
    fn valid_settings_are_typed_and_complete() {
        let oidc = [
            "--push-auth",
            "cloud-run",
            "--push-audience",
            "https://b",
            "--push-service-account",
            "a@b",
            "--pubsub-subscription",
            "lms-bridge-push",
        ];
        let settings = serve(&oidc, Some("k"), Some("t")).unwrap();
        assert_eq!(settings.subscription.as_deref(), Some("projects/p/subscriptions/lms-bridge-push"));
        assert!(matches!(settings.push.check, PushCheck::CloudRun(_)));
        let LmsSettings::TalentLms { url, api_key, .. } = &settings.service.lms else { panic!("talentlms") };
        assert_eq!((url.as_str(), api_key.expose()), ("https://x.talentlms.com", "k"));
        assert!(!format!("{settings:?}").contains("\"t\""), "the token never shows in Debug");
    }
}

/// `lms-bridge admin`, validated.
#[derive(Debug, Clone)]
pub struct AdminSettings {
    /// The port.
    pub port: u16,
    /// The address.
    pub listen: String,
    /// The GCP project of the Firestore database.
    pub project: String,
    /// The student-key pepper, when set.
    pub pepper: Option<Pepper>,
    /// Where admin events go.
    pub publish: PublishSettings,
    /// Who may look and act.
    pub gate: AdminGate,
    /// The CSRF key; `None`: a random one per process.
    pub csrf_key: Option<Secret>,
}

/// How the console knows who asks.
#[derive(Debug, Clone)]
pub enum AdminGate {
    /// `ADMIN_AUTH=none`: everyone is the operator `local`.
    Open,
    /// Identity-Aware Proxy's signed header, and the allowlists.
    Iap {
        /// The audience the header must name.
        audience: String,
        /// IAP's keys.
        jwks_url: String,
        /// Emails that may act (lowercased).
        operators: std::collections::BTreeSet<String>,
        /// Emails that may look (lowercased).
        viewers: std::collections::BTreeSet<String>,
    },
}

/// A comma-separated list of emails, lowercased; each must look like one.
fn email_list(text: &str, name: &'static str) -> Result<std::collections::BTreeSet<String>, SettingsError> {
    let mut emails = std::collections::BTreeSet::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let email = lms_bridge_shared::Email::parse(item).map_err(|_| SettingsError::Invalid {
            name,
            reason: format!("has an entry that is not an email (entry {})", emails.len() + 1),
        })?;
        emails.insert(email.as_str().to_owned());
    }
    Ok(emails)
}

impl AdminSettings {
    /// From the arguments. On Cloud Run (`K_SERVICE` set) the console never runs open.
    pub fn from_args(args: &crate::cli::AdminArgs) -> Result<Self, SettingsError> {
        let on_cloud_run = args.cloud_run_service.is_some();
        let gate = match args.admin_auth {
            crate::cli::AdminAuthMode::None if on_cloud_run => {
                return Err(SettingsError::Invalid {
                    name: "ADMIN_AUTH",
                    reason: "is none on Cloud Run (K_SERVICE is set): the console would be open to anyone who reaches it; use iap".into(),
                })
            }
            crate::cli::AdminAuthMode::None => AdminGate::Open,
            crate::cli::AdminAuthMode::Iap => {
                let operators = email_list(&args.admin_operators, "ADMIN_OPERATORS")?;
                let viewers = email_list(&args.admin_viewers, "ADMIN_VIEWERS")?;
                if operators.is_empty() && viewers.is_empty() {
                    return Err(SettingsError::Invalid {
                        name: "ADMIN_OPERATORS",
                        reason: "and ADMIN_VIEWERS are both empty: nobody could use the console".into(),
                    });
                }
                AdminGate::Iap {
                    audience: required(args.admin_iap_audience.as_deref(), "ADMIN_IAP_AUDIENCE")?,
                    jwks_url: required(Some(&args.admin_iap_jwks_url), "ADMIN_IAP_JWKS_URL")?,
                    operators,
                    viewers,
                }
            }
        };
        Ok(Self {
            port: args.port,
            listen: args.listen.clone(),
            project: required(Some(&args.store.gcp_project), "GCP_PROJECT")?,
            pepper: args.store.keys.pepper(),
            publish: PublishSettings::from_args(&args.publish)?,
            gate,
            csrf_key: args.admin_csrf_key.clone().filter(|k| !k.is_blank()),
        })
    }
}
