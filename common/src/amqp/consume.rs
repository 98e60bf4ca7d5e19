//! A consumer that survives reconnects and never loses or loops on a message:
//! ack after the effect is committed, dead-letter what cannot be processed, and hold what
//! failed for a passing reason (its store is down), retrying it in place with back-off.
//!
//! A held delivery is never nacked back to the queue: a quorum queue counts every return of
//! a message as a failed delivery, so requeueing a healthy message while its store is down
//! would walk it towards a delivery limit and into `dead-letters` however healthy it is.
//! Holding it instead keeps it unacknowledged on this channel; the channel's prefetch bounds
//! how many are held, so consumption stops by itself while the store is down and resumes
//! when it answers. If the connection drops meanwhile, RabbitMQ gives the held deliveries to
//! the next consumer (see `docs/architecture.md`, "Views").
//!
//! A message that is not its owner's (it did not come through the owner's exchange, or does
//! not carry the owner's login as `user_id`: see [`identity`]) is refused: never applied, and
//! published to `dead-letters` by this consumer with the reason in [`REFUSED_HEADER`]
//! (confirmed; a dead-letter queue at its bound nacks, which is counted), then acked.

use std::{sync::Arc, time::Duration};

use futures_util::{future::BoxFuture, StreamExt};
use lapin::{
    message::Delivery,
    options::{
        BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, BasicRejectOptions,
        ConfirmSelectOptions, QueueBindOptions, QueueDeclareOptions,
    },
    types::{AMQPValue, FieldTable},
    Channel,
};

use crate::{
    amqp::{
        identity::{self, Identity},
        topology, Bus,
    },
    telemetry::Metrics,
};

/// Header of a message a consumer refused and dead-lettered itself: why (see [`Refused`]).
pub const REFUSED_HEADER: &str = "x-moa-refused";
/// Header of a refused message: the `user_id` it came with (`-`: none), as the broker checked it.
pub const PUBLISHED_BY_HEADER: &str = "x-moa-published-by";

/// AMQP headers carrying the request id of the HTTP request that caused a message.
pub fn request_id_header(rid: &str) -> lapin::types::FieldTable {
    let mut headers = FieldTable::default();
    headers.insert("x-request-id".into(), lapin::types::AMQPValue::LongString(rid.into()));
    headers
}

/// The request id a message carries, or "-".
pub fn request_id_of(delivery: &Delivery) -> String {
    delivery
        .properties
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get("x-request-id").cloned())
        .and_then(|v| match v {
            lapin::types::AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
            lapin::types::AMQPValue::ShortString(s) => Some(s.as_str().to_string()),
            _ => None,
        })
        .unwrap_or_else(|| "-".into())
}

/// What to do with a delivery once handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Done (or a harmless duplicate).
    Ack,
    /// Failed for a passing reason (database down): held, and handled again after a back-off,
    /// as long as the connection lasts. Never requeued.
    Retry(String),
    /// Can never succeed (malformed): to the dead-letter queue, visible in the dashboard.
    /// The broker dead-letters it as it was published, `user_id` included, so a replay can
    /// tell whose it is.
    DeadLetter(String),
    /// Not the owner's message (see [`check_origin`]): never applied, dead-lettered by this
    /// consumer with the reason in [`REFUSED_HEADER`], and counted.
    Refuse(Refused, String),
}

/// Why a message was refused: the `reason` label of `moa_amqp_refused_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// It did not come through the owner's exchange (e.g. put into a queue by name through the
    /// default exchange, which every service may write to).
    Exchange,
    /// Its `user_id` is missing or not the owner's login.
    Publisher,
    /// An RPC question asking for a reply anywhere but a Direct Reply-to address.
    ReplyTo,
    /// An RPC question asking for more than an answer may hold.
    Oversized,
}

impl Refused {
    pub fn label(self) -> &'static str {
        match self {
            Refused::Exchange => "exchange",
            Refused::Publisher => "publisher",
            Refused::ReplyTo => "reply_to",
            Refused::Oversized => "oversized",
        }
    }
}

/// Accepts `delivery` only if it came through `exchange` (the broker says which) and carries
/// `owner` as its `user_id` (the broker checked it against the publisher's login).
pub fn check_origin(delivery: &Delivery, exchange: &str, owner: &str) -> Result<(), (Refused, String)> {
    let via = delivery.exchange.as_str();
    if via != exchange {
        return Err((Refused::Exchange, format!("came through {via:?}, not {exchange}")));
    }
    match identity::publisher_of(&delivery.properties) {
        Some(p) if p == owner => Ok(()),
        Some(p) => Err((Refused::Publisher, format!("{exchange} message published by {p:?}, not {owner:?}"))),
        None => Err((Refused::Publisher, format!("{exchange} message without a user_id (its owner is {owner:?})"))),
    }
}

/// Counts a refusal: `moa_amqp_refused_total{consumer, reason}`.
pub fn count_refused(metrics: &Metrics, consumer: &'static str, why: Refused) {
    metrics.inc("moa_amqp_refused_total", [("consumer", consumer), ("reason", why.label())], 1.0);
}

pub trait Handler: Send + Sync + 'static {
    fn handle<'a>(&'a self, delivery: &'a Delivery) -> BoxFuture<'a, Outcome>;
    /// Called each time the consumer is (re)subscribed: replicas re-sync here, because a
    /// per-instance queue misses whatever happened while it did not exist.
    fn on_subscribed(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

/// Where a consumer reads from.
#[derive(Clone, Debug)]
pub enum Source {
    /// A shared durable queue declared by [`topology::declare_shared`].
    Shared(&'static str),
    /// This instance's own queue, removed when it disconnects, bound to these exchanges.
    Instance { name: String, bind_to: Vec<&'static str> },
}

/// How a consumer settles refusals: on a confirmed channel of its own, as this service.
struct Refusals {
    consumer: &'static str,
    queue: String,
    channel: Channel,
    identity: Identity,
    metrics: Metrics,
}

/// Consumes `source` on every connection, at most `concurrency` deliveries at a time.
pub fn start<H: Handler>(
    bus: &Bus,
    name: &'static str,
    source: Source,
    prefetch: u16,
    concurrency: usize,
    handler: Arc<H>,
    metrics: Metrics,
) {
    let bus2 = bus.clone();
    bus.run_on_each_connection(name, move |link| {
        let handler = handler.clone();
        let source = source.clone();
        let bus = bus2.clone();
        let metrics = metrics.clone();
        async move {
            let ch = link.conn.create_channel().await?;
            topology::declare_shared(&ch).await?;
            let refusals_channel = link.conn.create_channel().await?;
            refusals_channel.confirm_select(ConfirmSelectOptions::default()).await?;
            // lapin does not re-apply QoS on recovery; we set it on every new channel.
            ch.basic_qos(prefetch, BasicQosOptions::default()).await?;
            let queue = match &source {
                Source::Shared(q) => q.to_string(),
                Source::Instance { name, bind_to } => {
                    let opts = QueueDeclareOptions { exclusive: true, auto_delete: true, ..Default::default() };
                    ch.queue_declare(name.as_str().into(), opts, topology::dead_letter_args()).await?;
                    for ex in bind_to {
                        ch.queue_bind(
                            name.as_str().into(),
                            (*ex).into(),
                            "".into(),
                            QueueBindOptions::default(),
                            FieldTable::default(),
                        )
                        .await?;
                    }
                    name.clone()
                }
            };
            let consumer = ch
                .basic_consume(
                    queue.as_str().into(),
                    format!("{name}-{}", link.generation).into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await?;
            log::info!("{name}: consuming {queue} (connection {})", link.generation);
            let refusals = Arc::new(Refusals {
                consumer: name,
                queue: queue.clone(),
                channel: refusals_channel,
                identity: bus.identity().clone(),
                metrics,
            });
            // Bound and consuming first, then re-sync: nothing that changes from here on is
            // missed. Part of this connection's component: a reconnect drops it with the
            // rest and the next subscription starts its own, so two never run side by side.
            let resync = handler.on_subscribed();
            // Up to `concurrency` deliveries in flight: handlers are idempotent and
            // order-independent (versions, event ids), so they need not wait for each other.
            let work = consumer.for_each_concurrent(concurrency, |delivery| {
                let handler = handler.clone();
                let refusals = refusals.clone();
                async move {
                    match delivery {
                        Ok(delivery) => {
                            let outcome = handle_until_settled(name, handler.as_ref(), &delivery).await;
                            settle(name, &delivery, outcome, &refusals).await;
                        }
                        Err(e) => log::warn!("{name}: consumer error: {e}"),
                    }
                }
            });
            // The re-sync runs beside the deliveries; done, it waits with them.
            let resync = async move {
                resync.await;
                std::future::pending::<()>().await
            };
            tokio::select! {
                _ = work => Ok(()),
                _ = bus.lost(link.generation) => Ok(()),
                () = resync => Ok(()),
            }
        }
    });
}

/// First pause before a held delivery is handled again.
const HOLD_FIRST_PAUSE: Duration = Duration::from_millis(200);
/// Longest pause between two attempts: how long a store that answers again may wait for
/// the held deliveries to notice.
const HOLD_MAX_PAUSE: Duration = Duration::from_secs(5);

/// The pause before attempt `attempt + 1` (attempt 1 failed: the first pause), doubling up
/// to [`HOLD_MAX_PAUSE`].
fn hold_pause(attempt: u32) -> Duration {
    let doublings = attempt.saturating_sub(1).min(16);
    HOLD_FIRST_PAUSE.saturating_mul(1 << doublings).min(HOLD_MAX_PAUSE)
}

/// Handles `delivery` until the outcome is an ack or a dead-letter: a `Retry` holds the
/// delivery (unacknowledged) and tries again after a back-off, for as long as it takes. The
/// caller drops this future when the connection is lost; the broker then redelivers.
async fn handle_until_settled<H: Handler>(name: &str, handler: &H, delivery: &Delivery) -> Settled {
    let mut attempt: u32 = 0;
    loop {
        attempt += 1;
        match handler.handle(delivery).await {
            Outcome::Retry(why) => {
                // The first failure and then about one line a minute per held delivery:
                // an outage of hours must not flood the log.
                if attempt == 1 || attempt.is_multiple_of(12) {
                    log::warn!("{name}: holding a message (attempt {attempt}) until its store answers: {why}");
                }
                tokio::time::sleep(crate::backoff::jitter(hold_pause(attempt))).await;
            }
            Outcome::Ack => {
                if attempt > 1 {
                    log::info!("{name}: a held message was handled after {attempt} attempts");
                }
                return Settled::Ack;
            }
            Outcome::DeadLetter(why) => return Settled::DeadLetter(why),
            Outcome::Refuse(reason, why) => return Settled::Refuse(reason, why),
        }
    }
}

/// How a delivery ends: there is no "requeue".
enum Settled {
    Ack,
    DeadLetter(String),
    Refuse(Refused, String),
}

async fn settle(name: &str, delivery: &Delivery, settled: Settled, refusals: &Refusals) {
    let result = match settled {
        Settled::Ack => delivery.acker.ack(BasicAckOptions::default()).await,
        Settled::DeadLetter(why) => {
            log::error!("{name}: dead-lettering a message: {why}");
            delivery.acker.reject(BasicRejectOptions { requeue: false }).await
        }
        Settled::Refuse(reason, why) => {
            log::warn!("{name}: refusing a message: {why}");
            count_refused(&refusals.metrics, refusals.consumer, reason);
            match refusals.dead_letter(delivery, &why).await {
                // Kept in `dead-letters`; or refused by it (at its bound): dropped, counted.
                DeadLettered::Taken | DeadLettered::Refused => delivery.acker.ack(BasicAckOptions::default()).await,
                // Our channel failed: the broker dead-letters it as it came. Never applied
                // either way.
                DeadLettered::Failed => delivery.acker.reject(BasicRejectOptions { requeue: false }).await,
            }
        }
    };
    if let Err(e) = result {
        // The channel is gone; the broker redelivers the message to the next consumer.
        log::warn!("{name}: could not settle a delivery: {e}");
    }
}

/// What became of a refused message sent to `dead-letters`.
enum DeadLettered {
    Taken,
    /// Nacked: `dead-letters` is at its bound (`reject-publish`). Counted as
    /// `moa_dead_letters_refused_total`; not handed to the broker's own dead-lettering, which
    /// would slip it past the bound.
    Refused,
    /// The channel failed before the broker said.
    Failed,
}

impl Refusals {
    /// Publishes a copy of `delivery` to `dead-letters` with why it was refused, and waits for
    /// the broker's confirm. The copy carries this service's `user_id` (the broker allows no
    /// other), so a replay never mistakes it for its owner's; the `user_id` it came with is
    /// kept in [`PUBLISHED_BY_HEADER`], for people.
    async fn dead_letter(&self, delivery: &Delivery, why: &str) -> DeadLettered {
        let mut headers = delivery.properties.headers().clone().unwrap_or_default();
        let text = |s: &str| AMQPValue::LongString(s.into());
        headers.insert(REFUSED_HEADER.into(), text(why));
        let published_by = identity::publisher_of(&delivery.properties).unwrap_or("-");
        headers.insert(PUBLISHED_BY_HEADER.into(), text(published_by));
        // Where it died, named as the broker names it when it dead-letters (scripts/dead-letters).
        headers.insert("x-first-death-exchange".into(), text(delivery.exchange.as_str()));
        headers.insert("x-first-death-queue".into(), text(&self.queue));
        headers.insert("x-first-death-reason".into(), text("refused"));
        let props = self.identity.stamp(delivery.properties.clone().with_headers(headers).with_delivery_mode(2));
        let key = delivery.routing_key.as_str();
        let confirm = self
            .channel
            .basic_publish(
                topology::DEAD_LETTERS.into(),
                key.into(),
                BasicPublishOptions::default(),
                &delivery.data,
                props,
            )
            .await;
        let confirmed = match confirm {
            Ok(confirm) => confirm.await,
            Err(e) => Err(e),
        };
        match confirmed {
            Ok(c) if c.is_ack() => DeadLettered::Taken,
            Ok(_) => {
                log::error!("{}: dead-letters refused a refused message (at its bound?); dropped", self.consumer);
                self.metrics.inc("moa_dead_letters_refused_total", [("consumer", self.consumer)], 1.0);
                DeadLettered::Refused
            }
            Err(e) => {
                log::warn!("{}: could not dead-letter a refused message: {e}", self.consumer);
                DeadLettered::Failed
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_deliveries_back_off_from_200_ms_to_5_s() {
        let pauses: Vec<u64> = (1..=8).map(|a| hold_pause(a).as_millis() as u64).collect();
        assert_eq!(pauses, [200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
        assert_eq!(hold_pause(u32::MAX), HOLD_MAX_PAUSE, "no overflow after days of holding");
    }
}
