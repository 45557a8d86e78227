//! Publishing normalized events to the events topic, for the jobs that find facts themselves
//! (backfill, reconcile): the same message the edge publishes (data = the event JSON, the same
//! attributes, ordering key = the student key), so they reach the backend through the one
//! intake path, in order per student, deduplicated and applied exactly like webhooks.

use google_cloud_pubsub::client::Publisher;
use google_cloud_pubsub::model::Message;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use lms_bridge_shared::pubsub::PubsubMessage;
use lms_bridge_shared::Event;
use std::num::NonZeroU32;

/// Publishing failed for at least one event (others of the batch may be published: a job
/// publishes the page again, and duplicates are no-ops).
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The client could not be built (credentials, endpoint).
    #[error("cannot reach Pub/Sub topic {topic}: {message}")]
    Connect {
        /// The topic.
        topic: String,
        /// Why.
        message: String,
    },
    /// Pub/Sub refused or did not answer.
    #[error("publishing event {event_id} to Pub/Sub failed: {message}")]
    Publish {
        /// The event that was not published.
        event_id: String,
        /// Why.
        message: String,
    },
}

/// A publisher to the events topic, paced.
pub struct EventPublisher {
    publisher: Publisher,
    pace: DefaultDirectRateLimiter,
}

impl EventPublisher {
    /// A publisher to `projects/{project}/topics/{topic}`: the emulator at `emulator_host`
    /// when given, else GCP with application default credentials. At most `per_second`
    /// events a second: a backfill of thousands must not starve the live webhooks, which
    /// share the subscription and the LMS pace.
    pub async fn connect(
        project: &str,
        topic: &str,
        emulator_host: Option<&str>,
        per_second: NonZeroU32,
    ) -> Result<Self, PublishError> {
        let name = format!("projects/{project}/topics/{topic}");
        let builder = Publisher::builder(name.clone());
        let built = match emulator_host.filter(|h| !h.trim().is_empty()) {
            Some(host) => {
                builder
                    .with_endpoint(format!("http://{host}"))
                    .with_credentials(google_cloud_auth::credentials::anonymous::Builder::new().build())
                    .build()
                    .await
            }
            None => builder.build().await,
        };
        let publisher = built.map_err(|e| PublishError::Connect { topic: name, message: e.to_string() })?;
        Ok(Self { publisher, pace: RateLimiter::direct(Quota::per_second(per_second)) })
    }

    /// Publishes `events` in order, waiting until Pub/Sub has accepted every one.
    pub async fn publish(&self, events: &[Event]) -> Result<(), PublishError> {
        let mut pending = Vec::with_capacity(events.len());
        for event in events {
            self.pace.until_ready().await;
            let key = event.student_key().map(ToString::to_string);
            let mut message = Message::new().set_data(event.to_json()).set_attributes(PubsubMessage::attributes(event));
            if let Some(key) = &key {
                message = message.set_ordering_key(key.clone());
            }
            pending.push((event, key, self.publisher.publish(message)));
        }
        let mut first_error = None;
        for (event, key, published) in pending {
            if let Err(e) = published.await {
                // A failed ordering key is paused by the client; resume it so a later run can
                // publish that student's events again.
                if let Some(key) = key {
                    self.publisher.resume_publish(key);
                }
                first_error
                    .get_or_insert(PublishError::Publish { event_id: event.id.to_string(), message: e.to_string() });
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}
