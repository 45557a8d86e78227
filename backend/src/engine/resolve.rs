//! Completing an event that names only a charge or a grant: a refund or a dispute that names
//! only its charge, a subscription update that names no student, a one-off purchase whose
//! product is only in the platform's API. The charge index (`charges/{source}__{charge id}`)
//! gives the grant, the grant's record its product and owner, and the source's API (when it
//! has a [`SourceLookup`]) what the event's platform no longer links (docs/access-rules.md).
//!
//! An event that stays incomplete is asked to be redelivered while it is young (its purchase
//! may simply not have arrived yet), then recorded as failed, whole, for replay.

use super::{ApplyError, Engine};
use crate::store::StateStore;
use async_trait::async_trait;
use lms_bridge_shared::event::{Product, Student};
use lms_bridge_shared::{grant_key, ChargeId, Event, GrantId, ProductId, Timestamp};
use std::sync::Arc;
use std::time::Duration;

/// How long after the edge received it an unresolved event is answered 503 (Pub/Sub redelivers
/// it) rather than recorded as failed: a refund may overtake its purchase by a few seconds,
/// and Pub/Sub's back-off gives it several more tries within this.
pub const RESOLVE_PATIENCE: Duration = Duration::from_secs(10 * 60);

/// Why a source's API could not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    /// Worth another try later (rate limit, outage, timeout): the delivery is retried.
    #[error("{0}")]
    Transient(String),
    /// Cannot work as configured (no key, a key refused): the event is left unresolved, with
    /// this as part of its reason.
    #[error("{0}")]
    Unavailable(String),
}

/// What a payment platform's API can say that its events do not. Read-only.
#[async_trait]
pub trait SourceLookup: Send + Sync {
    /// The source (`Event::source`) whose ids it knows.
    fn source(&self) -> &str;

    /// Ids the platform links to `charge` that the charge index may know it by, the most
    /// specific first (a Stripe payment intent's invoice, then the intent itself); empty when
    /// it knows none.
    async fn charge_aliases(&self, charge: &ChargeId) -> Result<Vec<ChargeId>, LookupError>;

    /// The product a grant was bought as, when the platform can say (a Stripe one-off
    /// purchase: its Checkout Session's line item).
    async fn grant_product(&self, grant: &GrantId) -> Result<Option<ProductId>, LookupError>;
}

/// The lookup of a source whose API settings are not set: every question is answered with
/// the setting that is missing, so an unresolved event's reason names it.
#[derive(Debug, Clone, Copy)]
pub struct MissingLookup {
    /// The source.
    pub source: &'static str,
    /// The setting that would turn the lookup on.
    pub setting: &'static str,
}

impl MissingLookup {
    fn error(&self) -> LookupError {
        LookupError::Unavailable(format!("no {} API lookup: {} is not set", self.source, self.setting))
    }
}

#[async_trait]
impl SourceLookup for MissingLookup {
    fn source(&self) -> &str {
        self.source
    }

    async fn charge_aliases(&self, _charge: &ChargeId) -> Result<Vec<ChargeId>, LookupError> {
        Err(self.error())
    }

    async fn grant_product(&self, _grant: &GrantId) -> Result<Option<ProductId>, LookupError> {
        Err(self.error())
    }
}

/// What resolution made of an event.
#[derive(Debug)]
pub(super) enum Resolved {
    /// Complete. `aliases` are the charge ids the event named before the source's API gave
    /// the one the grant knows: indexed too, so a redelivery or a later dispute needs no call.
    Ready { event: Box<Event>, aliases: Vec<ChargeId> },
    /// Still incomplete, and why (in words for the event's record).
    Unresolved(String),
}

/// A product known by its id alone.
fn product(id: ProductId) -> Product {
    Product { id, name: None, offer: None, plan: None }
}

/// Whether an event acts on access without saying on whose grant.
pub(super) fn needs_resolving(event: &Event) -> bool {
    event.change.affects_access() && !(event.student.is_some() && event.product.is_some() && event.grant_id.is_some())
}

/// Whether the edge received the event less than [`RESOLVE_PATIENCE`] before `now`.
pub(super) fn is_young(event: &Event, now: Timestamp) -> bool {
    let age = now.unix_millis().saturating_sub(event.received_at.unix_millis());
    u128::try_from(age).map_or(true, |age| age < RESOLVE_PATIENCE.as_millis())
}

impl<S: StateStore> Engine<S> {
    fn lookup_for(&self, event: &Event) -> Option<&Arc<dyn SourceLookup>> {
        self.lookup.as_ref().filter(|l| l.source() == event.source.as_str())
    }

    /// Fills in the grant id, product and student an event lacks, from the state and the
    /// source's API. Store failures and transient API failures are errors (retry the delivery).
    pub(super) async fn resolve(&self, original: &Event) -> Result<Resolved, ApplyError> {
        let mut event = original.clone();
        let source = event.source.as_str().to_owned();
        let lookup = self.lookup_for(&event);
        let mut aliases = Vec::new();
        // Why the source's API could not help, added to the reason.
        let mut notes: Vec<String> = Vec::new();
        let mut note = |e: LookupError| -> Result<(), ApplyError> {
            match e {
                LookupError::Transient(_) => Err(ApplyError::Lookup(e)),
                LookupError::Unavailable(why) => {
                    if !notes.contains(&why) {
                        notes.push(why);
                    }
                    Ok(())
                }
            }
        };

        if let (None, Some(charge)) = (&event.grant_id, &event.charge) {
            let named = charge.id.clone();
            let mut found = self.store.charge(&source, named.as_str()).await?;
            if let (None, Some(lookup)) = (&found, lookup) {
                match lookup.charge_aliases(&named).await {
                    Ok(ids) => {
                        for id in ids {
                            found = self.store.charge(&source, id.as_str()).await?;
                            if found.is_some() {
                                aliases.push(named.clone());
                                break;
                            }
                        }
                    }
                    Err(e) => note(e)?,
                }
            }
            if let Some(doc) = found {
                event.grant_id = Some(doc.grant_id);
                // The rules must act on the charge the grant knows, not on an alias of it (a
                // payment intent standing for its invoice).
                if let Some(charge) = &mut event.charge {
                    charge.id = doc.charge_id;
                }
            }
        }

        if let Some(grant_id) = event.grant_id.clone() {
            if event.student.is_none() || event.product.is_none() {
                if let Some(doc) = self.store.grant(&grant_key(&event.source, &grant_id)).await? {
                    if event.product.is_none() {
                        event.product = Some(product(doc.state.product_id.clone()));
                    }
                    if let (None, Some(owner)) = (&event.student, &doc.state.owner) {
                        let key = owner.email.student_key_with(self.pepper.as_ref());
                        event.student = Some(Student { key, ..Student::new(owner.email.clone()) });
                    }
                }
            }
            if event.product.is_none() {
                if let Some(lookup) = lookup {
                    match lookup.grant_product(&grant_id).await {
                        Ok(Some(id)) => event.product = Some(product(id)),
                        Ok(None) => {}
                        Err(e) => note(e)?,
                    }
                }
            }
        }

        let missing = match (&event.grant_id, &event.charge) {
            (None, Some(charge)) => Some(format!("names charge {} that no known grant has", charge.id)),
            (None, None) => Some("names neither a grant nor a charge".to_owned()),
            (Some(grant), _) if event.student.is_none() => {
                Some(format!("names grant {grant} that no known purchase has (no student)"))
            }
            (Some(grant), _) if event.product.is_none() => {
                Some(format!("names grant {grant} whose product is unknown"))
            }
            (Some(_), _) => None,
        };
        match missing {
            None => {
                let student = event.student_key().map(ToString::to_string).unwrap_or_default();
                let grant = event.grant_id.as_ref().map(ToString::to_string).unwrap_or_default();
                tracing::info!(event_id = %event.id, student = %student, grant = %grant, aliases = aliases.len(), "event resolved to its grant");
                Ok(Resolved::Ready { event: Box::new(event), aliases })
            }
            Some(what) => {
                let mut reason = format!("{what}; replay it once its purchase is known");
                for why in notes {
                    reason.push_str(&format!(" ({why})"));
                }
                Ok(Resolved::Unresolved(reason))
            }
        }
    }
}
