//! A launch-day history of Hotmart webhooks: many students, each with a story over one-off,
//! fixed-term and subscription products (renewals, refused renewals paid again, refunds,
//! chargebacks, disputes, cancellations, plan switches, late payments), then delivery noise
//! on top — resends under new ids, exact duplicates and pairs delivered out of order.
//!
//! Every business time lies in the minutes before the run starts and every paid-through date
//! weeks after it, so a webhook applied when it arrives and the same webhook applied at its
//! creation time (what `lms-bridge simulate` does) meet the same rules; the run's sweep at a
//! fixed later time then ends what is over for both alike.

use crate::webhooks::{Webhook, DAY_MS};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

/// The catalogue the history buys from (course ids the sandbox must know: 201–205).
pub const MAPPINGS: &str = r#"[[product]]
source = "hotmart"
product_id = "9101"
courses = ["201"]
policy = { type = "lifetime" }

[[product]]
source = "hotmart"
product_id = "9102"
courses = ["202"]
policy = { type = "fixed_days", days = 30 }

[[product]]
source = "hotmart"
product_id = "9103"
courses = ["203"]
policy = { type = "subscription", grace_days = 3 }
dispute = "suspend"
plans = { "124" = ["203", "204"] }

[[product]]
source = "hotmart"
product_id = "9104"
courses = ["201", "205"]
policy = { type = "lifetime" }
chargeback = "revoke_grant"
"#;

/// The courses of [`MAPPINGS`], for the sandbox.
pub const COURSES: &str = "201,202,203,204,205";

/// Days after the history's start at which the run sweeps and compares: past every fixed term
/// (30 days) and unrenewed subscription (30 + 3 days), before every renewal's end (60 days).
pub const PROBE_DAYS: i64 = 45;

/// One webhook to send.
#[derive(Clone, Debug)]
pub struct Sent {
    /// Hotmart's id of the webhook (the event is `hotmart:{id}`).
    pub id: String,
    /// The buyer.
    pub email: String,
    /// The body as Hotmart posts it.
    pub body: Vec<u8>,
    /// What it is, for the report (`approve`, `refund`, `duplicate`, …).
    pub kind: &'static str,
}

/// A generated history: the webhooks in the order they are sent.
#[derive(Clone, Debug)]
pub struct History {
    /// In sending order; a student's webhooks keep their relative order.
    pub webhooks: Vec<Sent>,
    /// The time every business date is near (Unix ms).
    pub start_ms: i64,
    /// How many students.
    pub students: usize,
}

impl History {
    /// The probe time: [`PROBE_DAYS`] after the start.
    pub fn probe_ms(&self) -> i64 {
        self.start_ms + PROBE_DAYS * DAY_MS
    }

    /// How many of the webhooks are of `kind`.
    pub fn count(&self, kind: &str) -> usize {
        self.webhooks.iter().filter(|w| w.kind == kind).count()
    }
}

/// Builds the events of one student, with business times from a shared clock.
struct Story<'a> {
    rng: &'a mut StdRng,
    email: String,
    student: usize,
    clock: &'a mut i64,
    events: Vec<Sent>,
    start_ms: i64,
}

impl Story<'_> {
    /// The next business time (10 ms after the last one of the whole history).
    fn tick(&mut self) -> i64 {
        *self.clock += 10;
        *self.clock
    }

    fn push(&mut self, kind: &'static str, webhook: Webhook) {
        let id = format!("chaos-{}-{}", self.student, self.events.len());
        let body = webhook.id(&id).buyer(&self.email).bytes();
        self.events.push(Sent { id, email: self.email.clone(), body, kind });
    }

    fn chance(&mut self, p: f64) -> bool {
        self.rng.gen_bool(p)
    }

    /// A one-off purchase of `product` under transaction `tx`, approved now.
    fn one_off(&mut self, product: u64, tx: &str) -> i64 {
        let at = self.tick();
        self.push("approve", Webhook::purchase_approved().product(product).transaction(tx).at(at).approved_at(at - 5));
        at
    }

    /// A fact about the one-off purchase `tx` (`sample` names the Hotmart event).
    fn about_one_off(&mut self, kind: &'static str, sample: &str, product: u64, tx: &str, approved: i64) {
        let at = self.tick();
        self.push(kind, Webhook::sample(sample).product(product).transaction(tx).at(at).approved_at(approved));
    }

    fn lifetime(&mut self) {
        let tx = format!("HPC{}L", self.student);
        let approved = self.one_off(9101, &tx);
        if self.chance(0.08) {
            self.about_one_off("dispute", "purchase_protest", 9101, &tx, approved);
        }
        if self.chance(0.15) {
            self.about_one_off("refund", "purchase_refunded", 9101, &tx, approved);
        } else if self.chance(0.06) {
            self.about_one_off("chargeback", "purchase_chargeback", 9101, &tx, approved);
        } else if self.chance(0.1) {
            self.about_one_off("complete", "purchase_complete", 9101, &tx, approved);
        }
    }

    fn bundle(&mut self) {
        let tx = format!("HPC{}B", self.student);
        let approved = self.one_off(9104, &tx);
        if self.chance(0.2) {
            self.about_one_off("chargeback", "purchase_chargeback", 9104, &tx, approved);
        }
    }

    fn fixed_term(&mut self) {
        let tx = format!("HPC{}F", self.student);
        let approved = self.one_off(9102, &tx);
        if self.chance(0.1) {
            self.about_one_off("refund", "purchase_refunded", 9102, &tx, approved);
        }
    }

    /// A subscription charge (recurrence `n`) under `tx`, paid through `days` after the start.
    fn charge(&mut self, code: &str, tx: &str, n: u32, days: i64) -> i64 {
        let at = self.tick();
        let webhook = Webhook::subscription_charge()
            .product(9103)
            .subscriber_code(code)
            .transaction(tx)
            .recurrence(n)
            .at(at)
            .approved_at(at - 5)
            .ordered_at(at - 50)
            .next_charge(self.start_ms + days * DAY_MS);
        self.push(if n == 1 { "approve" } else { "renewal" }, webhook);
        at
    }

    /// A fact about the subscription charge `tx`, from a one-off sample given the subscription.
    fn about_charge(&mut self, kind: &'static str, sample: &str, code: &str, tx: &str, approved: Option<i64>) {
        let at = self.tick();
        let code = code.to_owned();
        let webhook = Webhook::sample(sample).product(9103).transaction(tx).at(at).edit(move |raw| {
            raw["data"]["subscription"] = json!({
                "status": "ACTIVE", "plan": { "id": 123, "name": "Mensal" }, "subscriber": { "code": code },
            });
            match approved {
                Some(ms) => raw["data"]["purchase"]["approved_date"] = ms.into(),
                None => {
                    raw["data"]["purchase"].as_object_mut().map(|p| p.remove("approved_date"));
                }
            }
        });
        self.push(kind, webhook);
    }

    fn subscription(&mut self) {
        let code = format!("SUBC{}", self.student);
        let first = format!("HPC{}S1", self.student);
        let mut paid_through = 30;
        let mut last = (first.clone(), self.charge(&code, &first, 1, paid_through));
        if self.chance(0.1) {
            let at = self.tick();
            self.push(
                "late",
                Webhook::sample("subscription_purchase_delayed").product(9103).subscriber_code(&code).at(at),
            );
        }
        if self.chance(0.5) {
            if self.chance(0.3) {
                // The renewal's card is refused first, then paid under a new transaction.
                let refused = format!("HPC{}S2", self.student);
                self.about_charge("refused", "purchase_canceled", &code, &refused, None);
            }
            let tx = format!("HPC{}S3", self.student);
            paid_through = 60;
            last = (tx.clone(), self.charge(&code, &tx, 2, paid_through));
        }
        if self.chance(0.2) {
            let at = self.tick();
            let (code, email) = (code.clone(), self.email.clone());
            self.push(
                "plan_switch",
                Webhook::sample("switch_plan").at(at).edit(move |raw| {
                    raw["data"]["switch_plan_date"] = (at - 5).into();
                    raw["data"]["subscription"]["subscriber_code"] = code.into();
                    raw["data"]["subscription"]["product"]["id"] = 9103.into();
                    raw["data"]["subscription"]["user"]["email"] = email.into();
                }),
            );
        }
        if self.chance(0.08) {
            self.about_charge("dispute", "purchase_protest", &code, &last.0, Some(last.1));
            if self.chance(0.5) {
                // Settled: the charge approved again, later than the dispute.
                let at = self.tick();
                self.about_charge("settled", "purchase_approved", &code, &last.0, Some(at));
            }
        }
        if self.chance(0.1) {
            self.about_charge("refund", "purchase_refunded", &code, &last.0, Some(last.1));
        } else if self.chance(0.2) {
            let at = self.tick();
            self.push(
                "cancel",
                Webhook::subscription_cancellation()
                    .product(9103)
                    .subscriber_code(&code)
                    .at(at)
                    .cancelled_at(at - 5)
                    .next_charge(self.start_ms + paid_through * DAY_MS),
            );
        }
    }
}

/// A history of exactly `webhooks` webhooks from `seed`, its business times just before
/// `start_ms`.
pub fn generate(webhooks: usize, seed: u64, start_ms: i64) -> History {
    let mut rng = StdRng::seed_from_u64(seed);
    // Stories fill 85 % of the history; resends (5 %) and exact duplicates (10 %) the rest.
    let stories_target = webhooks * 85 / 100;
    let mut clock = start_ms - 10 * webhooks as i64 - 60_000;
    let mut stories: Vec<Vec<Sent>> = Vec::new();
    let mut total = 0;
    while total < stories_target.max(1) {
        let student = stories.len();
        let email = format!("chaos-{student}@example.com");
        let mut story = Story { rng: &mut rng, email, student, clock: &mut clock, events: Vec::new(), start_ms };
        match story.rng.gen_range(0..100) {
            0..35 => story.lifetime(),
            35..45 => story.bundle(),
            45..60 => story.fixed_term(),
            _ => story.subscription(),
        }
        // Some students also buy a second product.
        if story.rng.gen_bool(0.1) {
            story.lifetime();
        }
        let mut events = story.events;
        // A pair delivered out of order (a refund before its approval, say).
        if events.len() >= 2 && rng.gen_bool(0.1) {
            let i = rng.gen_range(0..events.len() - 1);
            events.swap(i, i + 1);
        }
        total += events.len();
        stories.push(events);
    }

    // Interleave the stories at random, each keeping its own order.
    let mut cursors: Vec<usize> = vec![0; stories.len()];
    let mut open: Vec<usize> = (0..stories.len()).collect();
    let mut sent: Vec<Sent> = Vec::with_capacity(webhooks);
    while !open.is_empty() {
        let pick = rng.gen_range(0..open.len());
        let s = open[pick];
        sent.push(stories[s][cursors[s]].clone());
        cursors[s] += 1;
        if cursors[s] == stories[s].len() {
            open.swap_remove(pick);
        }
    }
    sent.truncate(webhooks);

    // Resends under a new id (Hotmart's manual resend), then exact duplicates, each after its
    // original.
    let resends = (webhooks - sent.len()) / 3;
    for n in 0..resends {
        let i = rng.gen_range(0..sent.len());
        let original = sent[i].clone();
        let id = format!("{}-resend{n}", original.id);
        let mut raw: serde_json::Value = serde_json::from_slice(&original.body).unwrap();
        raw["id"] = id.clone().into();
        let at = rng.gen_range(i + 1..=sent.len());
        sent.insert(at, Sent { id, email: original.email, body: raw.to_string().into_bytes(), kind: "resend" });
    }
    while sent.len() < webhooks {
        let i = rng.gen_range(0..sent.len());
        let copy = Sent { kind: "duplicate", ..sent[i].clone() };
        let at = rng.gen_range(i + 1..=sent.len());
        sent.insert(at, copy);
    }
    History { webhooks: sent, start_ms, students: stories.len() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_history_has_the_size_asked_and_every_kind_of_fact() {
        let history = generate(2_000, 7, 1_800_000_000_000);
        assert_eq!(history.webhooks.len(), 2_000);
        for kind in ["approve", "renewal", "refused", "refund", "chargeback", "dispute", "settled", "cancel"] {
            assert!(history.count(kind) > 0, "no {kind} in {:?}", history.webhooks.len());
        }
        for kind in ["plan_switch", "late", "complete", "resend", "duplicate"] {
            assert!(history.count(kind) > 0, "no {kind}");
        }
        let duplicates = history.count("duplicate") as f64 / 2_000.0;
        assert!((0.08..=0.12).contains(&duplicates), "{duplicates}");
        // Every business time is before the start; the same seed gives the same history.
        assert_eq!(generate(2_000, 7, 1_800_000_000_000).webhooks[1_999].body, history.webhooks[1_999].body);
    }
}
