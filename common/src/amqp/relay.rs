//! The outbox relay: publishes what the capture triggers (and the view recorder) queued in
//! `moa_outbox`, with publisher confirms, and deletes rows only after the broker acked
//! them (see `outbox::DrainOutbox`). Wakes on NOTIFY and also polls, so a missed notification delays nothing for long.
//!
//! Work (a [`topology::WorkStream`]: views) and change events go through lanes of their own
//! (see [`Lane`]).
//!
//! Rows the broker refuses never hold back the others: they back off in the outbox and are
//! retried one at a time (see `outbox::DrainOutbox`), while fresh rows keep flowing.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use actix::Addr;
use futures_util::future::LocalBoxFuture;
use lapin::{
    options::{BasicPublishOptions, ConfirmSelectOptions},
    BasicProperties, Channel,
};
use tokio::sync::Notify;

use crate::{
    amqp::{
        identity::Identity,
        outbox::{DrainOutbox, DrainRows, OutboxLane, OutboxRow, Published},
        topology::{self, WorkStream},
        Bus,
    },
    error::{Error, Result},
    store::Store,
    telemetry::Metrics,
};

const BATCH: i64 = 500;
/// Due retries (rows refused before) per round, each drained alone, before fresh rows get
/// their turn again.
const RETRIES_PER_ROUND: usize = 100;
/// How long a drain waits for the broker's confirms before it gives up (and rolls back, so
/// its rows stay in the outbox for the next drain on a fresh channel).
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(15);

/// Work and change events are drained and published apart, each by a lane of its own with
/// its own channel: a drain waits for the broker's confirms of everything it sent, so a slow
/// work queue (the views', a quorum queue fsyncing) would otherwise hold up the change events
/// behind it, and with them every replica's invalidation.
struct Lane {
    name: &'static str,
    rows: OutboxLane,
    channel: Mutex<Option<Channel>>,
    /// Serializes drains: the relay task and a shutdown flush never publish the same rows twice.
    draining: tokio::sync::Mutex<()>,
    /// The last drain could not reach the database: said once at warn, then at debug.
    db_failing: AtomicBool,
    /// Woken by the other lane when it took the shared wake-up (see [`OutboxRelay::start`]).
    nudge: Notify,
}

impl Lane {
    fn set_channel(&self, ch: Option<Channel>) {
        if let Ok(mut g) = self.channel.lock() {
            *g = ch;
        }
    }
}

#[derive(Clone)]
pub struct OutboxRelay {
    store: Addr<Store>,
    /// The change events' lane, and the work's when the service declared a work stream.
    lanes: Arc<[Lane]>,
    /// The exchanges of the work streams this service publishes; every other row is a change event.
    work: Arc<[&'static str]>,
    metrics: Metrics,
    /// Every message carries this service's login as `user_id` (see [`Identity`]).
    identity: Identity,
}

impl OutboxRelay {
    pub fn start(
        bus: &Bus,
        store: Addr<Store>,
        work: &[WorkStream],
        wake: Arc<Notify>,
        poll: Duration,
        metrics: Metrics,
    ) -> OutboxRelay {
        let lane = |name, rows| Lane {
            name,
            rows,
            channel: Mutex::new(None),
            draining: tokio::sync::Mutex::new(()),
            db_failing: AtomicBool::new(false),
            nudge: Notify::new(),
        };
        let mut lanes = vec![lane("outbox relay (change events)", OutboxLane::Changes)];
        // A service that publishes no work has no work rows: no lane drains nothing for it.
        if !work.is_empty() {
            lanes.push(lane("outbox relay (work)", OutboxLane::Work));
        }
        let relay = OutboxRelay {
            store,
            lanes: lanes.into(),
            work: work.iter().map(|w| w.exchange).collect(),
            metrics,
            identity: bus.identity().clone(),
        };
        for (i, name) in relay.lanes.iter().map(|l| l.name).enumerate() {
            let r = relay.clone();
            let wake = wake.clone();
            let bus2 = bus.clone();
            bus.run_on_each_connection(name, move |link| {
                let r = r.clone();
                let wake = wake.clone();
                let bus = bus2.clone();
                async move {
                    let lane = &r.lanes[i];
                    let other = r.lanes.get(1 - i);
                    let ch = link.conn.create_channel().await?;
                    topology::declare_shared(&ch).await?;
                    ch.confirm_select(ConfirmSelectOptions::default()).await?;
                    lane.set_channel(Some(ch));
                    let result = async {
                        loop {
                            r.drain_lane(lane).await?;
                            tokio::select! {
                                // One wake-up (a NOTIFY) is one permit, taken by one lane:
                                // that lane passes it on to the other, if there is one.
                                _ = wake.notified() => {
                                    if let Some(other) = other {
                                        other.nudge.notify_one();
                                    }
                                }
                                _ = lane.nudge.notified() => {}
                                _ = tokio::time::sleep(poll) => {}
                                _ = bus.lost(link.generation) => return Ok(()),
                            }
                        }
                    }
                    .await;
                    lane.set_channel(None);
                    result
                }
            });
        }
        relay
    }

    /// Publishes everything in the outbox that is due, lane after lane (see [`Self::drain_lane`]).
    pub async fn drain(&self) -> Result<usize> {
        let mut total = 0;
        for lane in self.lanes.iter() {
            total += self.drain_lane(lane).await?;
        }
        Ok(total)
    }

    /// Publishes everything of `lane` in the outbox that is due: fresh rows batch by batch,
    /// oldest first, then rows the broker refused before whose back-off has passed, one at a
    /// time; and again while retries remain. Returns how many rows were sent.
    /// A database error is not fatal to the relay (it retries on the next wake-up);
    /// a broker error is (the component restarts on a fresh channel).
    async fn drain_lane(&self, lane: &Lane) -> Result<usize> {
        let _guard = lane.draining.lock().await;
        let mut total = 0;
        loop {
            // Fresh rows: whole batches while the outbox is full and everything is confirmed.
            loop {
                let Some((n, sent)) = self.drain_once(lane, DrainRows::Fresh, BATCH).await? else {
                    return Ok(total);
                };
                total += sent;
                if sent < n || n < BATCH as usize {
                    break;
                }
            }
            // Rows refused before: alone, so only a row the broker still refuses fails.
            let mut retried = 0;
            while retried < RETRIES_PER_ROUND {
                let Some((n, sent)) = self.drain_once(lane, DrainRows::Due, 1).await? else {
                    return Ok(total);
                };
                total += sent;
                if n == 0 {
                    return Ok(total);
                }
                retried += 1;
            }
        }
    }

    /// One drain transaction. `None`: the database cannot be drained now (logged).
    async fn drain_once(&self, lane: &Lane, rows: DrainRows, limit: i64) -> Result<Option<(usize, usize)>> {
        let Some(ch) = lane.channel.lock().ok().and_then(|g| g.clone()) else {
            return Err(Error::BusDown);
        };
        let metrics = self.metrics.clone();
        let identity = self.identity.clone();
        let work = self.work.clone();
        let publish = move |rows: Vec<OutboxRow>| -> LocalBoxFuture<'static, Published> {
            Box::pin(async move {
                let sent = publish_batch(&ch, &identity, &work, &rows);
                let published = match tokio::time::timeout(CONFIRM_TIMEOUT, sent).await {
                    Ok(p) => p,
                    Err(_) => Published { error: Some(Error::BusDown), ..Published::default() },
                };
                observe_published(&metrics, &rows, &published.sent);
                published
            })
        };
        let drain = DrainOutbox { lane: lane.rows, work: self.work.clone(), rows, limit, publish: Box::new(publish) };
        let (n, published) = match self.store.send(drain).await {
            Ok(Ok(drained)) => drained,
            Ok(Err(Error::NotMigrated)) => {
                // Start-up: the schema is being migrated; the relay is woken when it is done.
                log::debug!("{}: waiting for the migrations", lane.name);
                return Ok(None);
            }
            Ok(Err(e)) => {
                if lane.db_failing.swap(true, Ordering::Relaxed) {
                    log::debug!("{}: still cannot drain the outbox: {e}", lane.name);
                } else {
                    log::warn!("{}: cannot drain the outbox: {e}; retrying on every poll", lane.name);
                }
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        };
        if lane.db_failing.swap(false, Ordering::Relaxed) {
            log::info!("{}: draining the outbox again", lane.name);
        }
        if let Some(e) = published.error {
            return Err(e);
        }
        Ok(Some((n, published.sent.len())))
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

/// Change events per message at most: the relay sends a drain's events for one exchange as
/// one JSON array, so RabbitMQ and every consumer handle one message, not one per change.
const EVENTS_PER_MESSAGE: usize = 256;

/// One AMQP message: the outbox rows it carries and its body.
struct Message<'a> {
    ids: Vec<i64>,
    exchange: &'a str,
    body: Vec<u8>,
    event_id: &'a str,
    request_id: Option<&'a str>,
}

/// Groups rows into messages: consecutive change events of one exchange become one array
/// (in outbox order); a row of a work stream (`work`: a view) is a message of its own (its
/// consumer acks each after storing it, so a bad one can be dead-lettered without taking
/// others along).
fn messages<'a>(rows: &'a [OutboxRow], work: &[&str]) -> Vec<Message<'a>> {
    let mut out: Vec<Message<'_>> = Vec::new();
    for row in rows {
        if work.contains(&row.exchange.as_str()) {
            out.push(Message::new(row, row.body.clone()));
            continue;
        }
        match out.last_mut() {
            // Same exchange, so also an array of change events: append to it.
            Some(m) if m.exchange == row.exchange && m.ids.len() < EVENTS_PER_MESSAGE => {
                m.body.pop(); // the closing ']'
                m.body.push(b',');
                m.body.extend_from_slice(&row.body);
                m.body.push(b']');
                m.ids.push(row.id);
                if m.request_id != row.request_id.as_deref() {
                    // Each event names its own request in its body.
                    m.request_id = None;
                }
            }
            _ => {
                let mut body = Vec::with_capacity(row.body.len() + 2);
                body.push(b'[');
                body.extend_from_slice(&row.body);
                body.push(b']');
                out.push(Message::new(row, body));
            }
        }
    }
    out
}

impl<'a> Message<'a> {
    fn new(row: &'a OutboxRow, body: Vec<u8>) -> Self {
        Message {
            ids: vec![row.id],
            exchange: &row.exchange,
            body,
            event_id: &row.event_id,
            request_id: row.request_id.as_deref(),
        }
    }
}

/// Publishes the rows (persistent, mandatory) as [`messages`], then awaits every confirm.
/// A nack, or a view that no queue took, refuses that message's rows. A channel-level error
/// (the broker closing the channel over something sent on it, e.g. an exchange that does
/// not exist) refuses every row not yet confirmed: which message caused it cannot be told,
/// and each is then retried alone, so only the culprit keeps failing. Any other error (the
/// connection lost) refuses nothing: the rows are simply published again.
async fn publish_batch(ch: &Channel, identity: &Identity, work: &[&str], rows: &[OutboxRow]) -> Published {
    let mut out = Published::default();
    let msgs = messages(rows, work);
    let mut confirms = Vec::with_capacity(msgs.len());
    let mut unconfirmed: Vec<i64> = Vec::new();
    let mut channel_refused = None;
    let mut note = |e: lapin::Error, out: &mut Published| {
        if e.is_amqp_soft_error() && channel_refused.is_none() {
            channel_refused = Some(e.to_string());
        }
        out.error.get_or_insert(e.into());
    };
    for (i, m) in msgs.iter().enumerate() {
        let mut props = identity
            .stamp(BasicProperties::default())
            .with_delivery_mode(2)
            .with_content_type("application/json".into())
            .with_message_id(m.event_id.into());
        if let Some(rid) = m.request_id {
            props = props.with_headers(crate::amqp::consume::request_id_header(rid));
        }
        // mandatory: a view with no queue bound comes back instead of vanishing.
        let opts = BasicPublishOptions { mandatory: true, ..Default::default() };
        match ch.basic_publish(m.exchange.into(), "".into(), opts, &m.body, props).await {
            Ok(confirm) => confirms.push((m, confirm)),
            Err(e) => {
                note(e, &mut out);
                unconfirmed.extend(msgs[i..].iter().flat_map(|m| m.ids.iter().copied()));
                break;
            }
        }
    }
    for (m, confirm) in confirms {
        match confirm.await {
            Ok(c) if c.is_ack() => {
                // Unroutable: change events with no replica queue bound are fine to drop (every
                // replica re-syncs from a snapshot when it subscribes); work is not, it stays.
                let unroutable = c.take_message().is_some();
                if unroutable && work.contains(&m.exchange) {
                    out.refused.extend(m.ids.iter().copied());
                    out.refused_because = format!("no queue is bound to {}", m.exchange);
                } else {
                    out.sent.extend(m.ids.iter().copied());
                }
            }
            Ok(_) => {
                out.refused.extend(m.ids.iter().copied());
                out.refused_because = "nacked by the broker".into();
            }
            Err(e) => {
                note(e, &mut out);
                unconfirmed.extend(m.ids.iter().copied());
            }
        }
    }
    if let Some(why) = channel_refused {
        out.refused.extend(unconfirmed);
        out.refused_because = why;
    }
    out
}

/// Commit → broker confirm: how long each sent change waited to leave this service.
fn observe_published(metrics: &Metrics, rows: &[OutboxRow], sent: &[i64]) {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(0.0);
    let sent: std::collections::HashSet<i64> = sent.iter().copied().collect();
    for row in rows.iter().filter(|r| sent.contains(&r.id)) {
        metrics.observe("moa_outbox_publish_seconds", String::new(), ((now_ms - row.created_ms) / 1000.0).max(0.0));
    }
    metrics.outbox_published(sent.len() as u64);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: i64, exchange: &str, rid: Option<&str>) -> OutboxRow {
        OutboxRow {
            id,
            event_id: format!("e{id}"),
            exchange: exchange.into(),
            body: format!(r#"{{"n":{id}}}"#).into_bytes(),
            request_id: rid.map(Into::into),
            created_ms: 0.0,
        }
    }

    #[test]
    fn change_events_of_one_exchange_share_a_message_and_work_does_not() {
        const VIEWS: &str = "priced.views";
        let rows = [
            row(1, "alarm.events", Some("r1")),
            row(2, "alarm.events", Some("r1")),
            row(3, VIEWS, Some("v")),
            row(4, VIEWS, None),
            row(5, "alarm.events", Some("r2")),
            row(6, "alarm.events", Some("r3")),
            row(7, "user.events", None),
        ];
        let m = messages(&rows, &[VIEWS]);
        let shape: Vec<(&str, Vec<i64>, &str)> =
            m.iter().map(|m| (m.exchange, m.ids.clone(), std::str::from_utf8(&m.body).unwrap())).collect();
        assert_eq!(
            shape,
            vec![
                ("alarm.events", vec![1, 2], r#"[{"n":1},{"n":2}]"#),
                (VIEWS, vec![3], r#"{"n":3}"#),
                (VIEWS, vec![4], r#"{"n":4}"#),
                ("alarm.events", vec![5, 6], r#"[{"n":5},{"n":6}]"#),
                ("user.events", vec![7], r#"[{"n":7}]"#),
            ]
        );
        assert_eq!(m[0].request_id, Some("r1"), "one request: its id is the message's header");
        assert_eq!(m[3].request_id, None, "several requests: each event carries its own");
    }

    #[test]
    fn a_message_holds_at_most_events_per_message() {
        let rows: Vec<OutboxRow> = (0..EVENTS_PER_MESSAGE as i64 + 1).map(|i| row(i, "item.events", None)).collect();
        let m = messages(&rows, &[]);
        assert_eq!(m.iter().map(|m| m.ids.len()).collect::<Vec<_>>(), vec![EVENTS_PER_MESSAGE, 1]);
        let parsed: Vec<serde_json::Value> = serde_json::from_slice(&m[0].body).unwrap();
        assert_eq!(parsed.len(), EVENTS_PER_MESSAGE);
    }
}
