//! The outbox relay: publishes what the capture triggers (and the view recorder) queued in
//! `moa_outbox`, with publisher confirms, and marks rows sent only after the broker acked
//! them. Wakes on NOTIFY and also polls, so a missed notification delays nothing for long.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use actix::Addr;
use lapin::{
    options::{BasicPublishOptions, ConfirmSelectOptions},
    BasicProperties, Channel,
};
use tokio::sync::Notify;

use crate::{
    amqp::{topology, Bus},
    error::{Error, Result},
    store::{ClaimOutbox, OutboxRow, PurgeSentOutbox, SettleOutbox, Store},
    telemetry::Metrics,
};

const BATCH: i64 = 500;
const LEASE: Duration = Duration::from_secs(15);

#[derive(Clone)]
pub struct OutboxRelay {
    store: Addr<Store>,
    channel: Arc<Mutex<Option<Channel>>>,
    /// Serializes drains: the relay task and a shutdown flush never publish the same rows twice.
    draining: Arc<tokio::sync::Mutex<()>>,
    metrics: Metrics,
}

impl OutboxRelay {
    pub fn start(bus: &Bus, store: Addr<Store>, wake: Arc<Notify>, poll: Duration, metrics: Metrics) -> OutboxRelay {
        let relay = OutboxRelay {
            store,
            channel: Arc::new(Mutex::new(None)),
            draining: Arc::new(tokio::sync::Mutex::new(())),
            metrics,
        };
        let r = relay.clone();
        let bus2 = bus.clone();
        bus.run_on_each_connection("outbox relay", move |link| {
            let r = r.clone();
            let wake = wake.clone();
            let bus = bus2.clone();
            async move {
                let ch = link.conn.create_channel().await?;
                topology::declare_shared(&ch).await?;
                ch.confirm_select(ConfirmSelectOptions::default()).await?;
                r.set_channel(Some(ch));
                let result = async {
                    let mut last_purge = Instant::now();
                    loop {
                        r.drain().await?;
                        if last_purge.elapsed() > Duration::from_secs(60) {
                            last_purge = Instant::now();
                            let _ = r.store.send(PurgeSentOutbox { older_than: Duration::from_secs(3600) }).await;
                        }
                        tokio::select! {
                            _ = wake.notified() => {}
                            _ = tokio::time::sleep(poll) => {}
                            _ = bus.lost(link.generation) => return Ok(()),
                        }
                    }
                }
                .await;
                r.set_channel(None);
                result
            }
        });
        relay
    }

    fn set_channel(&self, ch: Option<Channel>) {
        if let Ok(mut g) = self.channel.lock() {
            *g = ch;
        }
    }

    /// Publishes everything unsent, batch by batch. Returns how many rows were sent.
    /// A database error is not fatal to the relay (it retries on the next wake-up);
    /// a broker error is (the component restarts on a fresh channel).
    pub async fn drain(&self) -> Result<usize> {
        let _guard = self.draining.lock().await;
        let mut total = 0;
        loop {
            let Some(ch) = self.channel.lock().ok().and_then(|g| g.clone()) else {
                return Err(Error::BusDown);
            };
            let rows = match self.store.send(ClaimOutbox { limit: BATCH, lease: LEASE }).await {
                Ok(Ok(rows)) => rows,
                Ok(Err(e)) => {
                    log::debug!("outbox relay: cannot read the outbox: {e}");
                    return Ok(total);
                }
                Err(e) => return Err(e.into()),
            };
            if rows.is_empty() {
                return Ok(total);
            }
            let n = rows.len();
            let (sent, failed, broker_error) = publish_batch(&ch, &rows).await;
            let n_sent = sent.len();
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs_f64() * 1000.0)
                .unwrap_or(0.0);
            for row in rows.iter().filter(|r| sent.contains(&r.id)) {
                // Commit → broker confirm: how long a change waited to leave this service.
                let secs = ((now_ms - row.created_ms) / 1000.0).max(0.0);
                self.metrics.observe("moa_outbox_publish_seconds", String::new(), secs);
            }
            self.metrics.outbox_published(n_sent as u64);
            if let Ok(Err(e)) = self.store.send(SettleOutbox { sent, failed }).await {
                // Not marked sent: they are published again after the lease; consumers drop duplicates.
                log::warn!("outbox relay: could not mark rows sent: {e}");
            }
            total += n_sent;
            if let Some(e) = broker_error {
                return Err(e);
            }
            if n_sent < n || n < BATCH as usize {
                return Ok(total);
            }
        }
    }

    /// Graceful shutdown: publish what the broker will take within `budget`.
    pub async fn flush(&self, budget: Duration) {
        match tokio::time::timeout(budget, self.drain()).await {
            Ok(Ok(n)) => log::info!("outbox relay: flushed {n} events before exit"),
            Ok(Err(e)) => {
                log::warn!("outbox relay: flush stopped: {e}; the rest is sent on next start")
            }
            Err(_) => {
                log::warn!("outbox relay: flush budget spent; the rest is sent on next start")
            }
        }
    }
}

/// Publishes every row (persistent, mandatory), then awaits every confirm.
async fn publish_batch(ch: &Channel, rows: &[OutboxRow]) -> (Vec<i64>, Vec<i64>, Option<Error>) {
    let mut sent = Vec::with_capacity(rows.len());
    let mut failed = Vec::new();
    let mut confirms = Vec::with_capacity(rows.len());
    for row in rows {
        let mut props = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type("application/json".into())
            .with_message_id(row.event_id.as_str().into());
        if let Some(rid) = &row.request_id {
            props = props.with_headers(crate::amqp::consume::request_id_header(rid));
        }
        // mandatory: a view with no queue bound comes back instead of vanishing.
        let opts = BasicPublishOptions { mandatory: true, ..Default::default() };
        match ch.basic_publish(row.exchange.as_str().into(), "".into(), opts, &row.body, props).await {
            Ok(confirm) => confirms.push((row.id, row.exchange.as_str(), confirm)),
            Err(e) => {
                failed.extend(rows.iter().map(|r| r.id).filter(|id| !confirms.iter().any(|(c, _, _)| c == id)));
                return (sent, failed, Some(e.into()));
            }
        }
    }
    let mut broker_error = None;
    for (id, exchange, confirm) in confirms {
        match confirm.await {
            Ok(c) if c.is_ack() => {
                if c.take_message().is_some() {
                    // Unroutable. Change events with no replica queue bound are fine to drop
                    // (every replica re-syncs from a snapshot when it subscribes); a view is not.
                    if exchange == topology::VIEWS_EXCHANGE {
                        failed.push(id);
                    } else {
                        sent.push(id);
                    }
                } else {
                    sent.push(id);
                }
            }
            Ok(_) => failed.push(id),
            Err(e) => {
                failed.push(id);
                broker_error.get_or_insert(e.into());
            }
        }
    }
    (sent, failed, broker_error)
}
