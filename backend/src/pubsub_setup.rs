//! `lms-bridge pubsub setup`: the topic, the dead-letter topic and the push subscription,
//! created idempotently with the official `google-cloud-pubsub` crate, against the emulator
//! (`PUBSUB_EMULATOR_HOST`) or real GCP (application default credentials).

use crate::cli::PubsubSetupArgs;
use anyhow::Context;
use google_cloud_gax::error::rpc::Code;
use google_cloud_pubsub::client::{SubscriptionAdmin, TopicAdmin};
use google_cloud_pubsub::model::push_config::OidcToken;
use google_cloud_pubsub::model::{DeadLetterPolicy, PushConfig, RetryPolicy};

fn exists(error: &google_cloud_pubsub::Error) -> bool {
    error.status().is_some_and(|s| s.code == Code::AlreadyExists)
}

async fn clients(args: &PubsubSetupArgs) -> anyhow::Result<(TopicAdmin, SubscriptionAdmin)> {
    match args.pubsub_emulator_host.as_deref().filter(|h| !h.is_empty()) {
        Some(host) => {
            let endpoint = format!("http://{host}");
            let anonymous = || google_cloud_auth::credentials::anonymous::Builder::new().build();
            let topics = TopicAdmin::builder().with_endpoint(&endpoint).with_credentials(anonymous()).build().await?;
            let subscriptions =
                SubscriptionAdmin::builder().with_endpoint(&endpoint).with_credentials(anonymous()).build().await?;
            Ok((topics, subscriptions))
        }
        None => Ok((TopicAdmin::builder().build().await?, SubscriptionAdmin::builder().build().await?)),
    }
}

/// Creates what is missing; what exists is left as it is (its push endpoint is refreshed).
pub async fn setup(args: &PubsubSetupArgs) -> anyhow::Result<String> {
    let (topics, subscriptions) = clients(args).await.context("building the Pub/Sub clients")?;
    let project = &args.gcp_project;
    let topic = format!("projects/{project}/topics/{}", args.topic);
    let dead_letter = format!("projects/{project}/topics/{}", args.dead_letter_topic);
    let mut report = Vec::new();
    for name in [&topic, &dead_letter] {
        match topics.create_topic().set_name(name.clone()).send().await {
            Ok(_) => report.push(format!("created {name}")),
            Err(e) if exists(&e) => report.push(format!("exists  {name}")),
            Err(e) => return Err(e).with_context(|| format!("creating {name}")),
        }
    }
    // Dead letters need a subscription of their own, or Pub/Sub drops them.
    let dead_letter_sub = format!("projects/{project}/subscriptions/{}", args.dead_letter_subscription);
    match subscriptions
        .create_subscription()
        .set_name(dead_letter_sub.clone())
        .set_topic(dead_letter.clone())
        .set_ack_deadline_seconds(60)
        .send()
        .await
    {
        Ok(_) => report.push(format!("created {dead_letter_sub}")),
        Err(e) if exists(&e) => report.push(format!("exists  {dead_letter_sub}")),
        Err(e) => return Err(e).with_context(|| format!("creating {dead_letter_sub}")),
    }

    let mut push = PushConfig::new().set_push_endpoint(args.push_endpoint.clone());
    if let Some(account) = args.push_service_account.as_deref().filter(|a| !a.is_empty()) {
        let audience = args.push_audience.clone().unwrap_or_else(|| args.push_endpoint.clone());
        push = push.set_oidc_token(OidcToken::new().set_service_account_email(account).set_audience(audience));
    }
    let subscription = format!("projects/{project}/subscriptions/{}", args.subscription);
    let retry = RetryPolicy::new()
        .set_minimum_backoff(google_cloud_wkt::Duration::clamp(args.min_backoff_seconds, 0))
        .set_maximum_backoff(google_cloud_wkt::Duration::clamp(args.max_backoff_seconds, 0));
    let created = subscriptions
        .create_subscription()
        .set_name(subscription.clone())
        .set_topic(topic.clone())
        .set_push_config(push.clone())
        .set_ack_deadline_seconds(args.ack_deadline_seconds)
        .set_enable_message_ordering(true)
        .set_retry_policy(retry)
        .set_dead_letter_policy(
            DeadLetterPolicy::new()
                .set_dead_letter_topic(dead_letter.clone())
                .set_max_delivery_attempts(args.max_delivery_attempts),
        )
        .send()
        .await;
    match created {
        Ok(_) => report.push(format!("created {subscription} -> {}", args.push_endpoint)),
        Err(e) if exists(&e) => {
            subscriptions
                .modify_push_config()
                .set_subscription(subscription.clone())
                .set_push_config(push)
                .send()
                .await
                .with_context(|| format!("updating the push endpoint of {subscription}"))?;
            report.push(format!("exists  {subscription} (push endpoint set to {})", args.push_endpoint));
        }
        Err(e) => return Err(e).with_context(|| format!("creating {subscription}")),
    }
    Ok(report.join("\n") + "\n")
}
