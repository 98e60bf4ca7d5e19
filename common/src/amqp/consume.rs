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

use std::{sync::Arc, time::Duration};

use futures_util::{future::BoxFuture, StreamExt};
use lapin::{
    message::Delivery,
    options::{
        BasicAckOptions, BasicConsumeOptions, BasicQosOptions, BasicRejectOptions, QueueBindOptions,
        QueueDeclareOptions,
    },
    types::FieldTable,
};

use crate::amqp::{topology, Bus};

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
    DeadLetter(String),
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

/// Consumes `source` on every connection, at most `concurrency` deliveries at a time.
pub fn start<H: Handler>(
    bus: &Bus,
    name: &'static str,
    source: Source,
    prefetch: u16,
    concurrency: usize,
    handler: Arc<H>,
) {
    let bus2 = bus.clone();
    bus.run_on_each_connection(name, move |link| {
        let handler = handler.clone();
        let source = source.clone();
        let bus = bus2.clone();
        async move {
            let ch = link.conn.create_channel().await?;
            topology::declare_shared(&ch).await?;
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
            // Bound and consuming first, then re-sync: nothing that changes from here on is missed.
            let h = handler.clone();
            tokio::spawn(async move { h.on_subscribed().await });
            // Up to `concurrency` deliveries in flight: handlers are idempotent and
            // order-independent (versions, event ids), so they need not wait for each other.
            let work = consumer.for_each_concurrent(concurrency, |delivery| {
                let handler = handler.clone();
                async move {
                    match delivery {
                        Ok(delivery) => {
                            let outcome = handle_until_settled(name, handler.as_ref(), &delivery).await;
                            settle(name, &delivery, outcome).await;
                        }
                        Err(e) => log::warn!("{name}: consumer error: {e}"),
                    }
                }
            });
            tokio::select! {
                _ = work => Ok(()),
                _ = bus.lost(link.generation) => Ok(()),
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
        }
    }
}

/// How a delivery ends: there is no "requeue".
enum Settled {
    Ack,
    DeadLetter(String),
}

async fn settle(name: &str, delivery: &Delivery, settled: Settled) {
    let result = match settled {
        Settled::Ack => delivery.acker.ack(BasicAckOptions::default()).await,
        Settled::DeadLetter(why) => {
            log::error!("{name}: dead-lettering a message: {why}");
            delivery.acker.reject(BasicRejectOptions { requeue: false }).await
        }
    };
    if let Err(e) = result {
        // The channel is gone; the broker redelivers the message to the next consumer.
        log::warn!("{name}: could not settle a delivery: {e}");
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
