//! Request/reply over RabbitMQ with Direct Reply-to: the fallback a service uses when its
//! replica cannot answer (unknown token or item, cold cache) and the way it loads snapshots.
//!
//! Replies are at-most-once, so every call has a timeout and the caller turns a timeout into
//! a 503 naming the owner; RPC is never the source of truth.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use actix::Addr;
use futures_util::StreamExt;
use lapin::{
    options::{BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions},
    types::FieldTable,
    BasicProperties, Channel, Confirmation,
};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::{
    amqp::{topology, Bus},
    entity::VersionedRow,
    error::{Error, Result},
    settings::Domain,
    store::{Query, Store},
    telemetry::Metrics,
};

const REPLY_TO: &str = "amq.rabbitmq.reply-to";

/// When the question was published (µs since the Unix epoch, the asker's clock), carried by
/// the question and echoed by the reply: lets the `debug` log say where a slow question spent
/// its time (in the broker, with the owner, or on the way back).
const SENT_AT: &str = "x-sent-at-us";

/// A question or answer slower than this is logged at `debug` (see [`SENT_AT`]).
const SLOW: Duration = Duration::from_millis(50);

fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// Headers carrying `us` as [`SENT_AT`].
fn sent_at(us: i64) -> FieldTable {
    let mut h = FieldTable::default();
    h.insert(SENT_AT.into(), lapin::types::AMQPValue::LongLongInt(us));
    h
}

/// The [`SENT_AT`] of a question or a reply, if it carries one.
fn sent_at_of(props: &BasicProperties) -> Option<i64> {
    match props.headers().as_ref()?.inner().get(SENT_AT)? {
        lapin::types::AMQPValue::LongLongInt(us) => Some(*us),
        _ => None,
    }
}

fn ms_since(us: i64) -> f64 {
    (now_us() - us) as f64 / 1000.0
}

#[derive(Debug, Serialize, Deserialize)]
struct Reply {
    ok: bool,
    #[serde(default)]
    rows: Vec<VersionedRow>,
    #[serde(default)]
    error: Option<String>,
}

/// What settles a call: the owner's reply, or the broker's return of the question (no queue
/// of the owner's), which may reach it through another call's confirm (see [`returned_to`]).
enum Answer {
    Reply(Vec<u8>),
    Returned,
}

type Pending = Arc<Mutex<HashMap<String, oneshot::Sender<Answer>>>>;

/// Whose question a returned message is: `None` for the call `id` itself, or the other call's
/// id. lapin hands a returned message to the next confirm it settles, and a confirm the broker
/// sends for several questions at once (`multiple`) settles them in no set order, so the
/// return of one question can come with the confirm of another (lapin 4.12,
/// `Acknowledgements::complete_pending_before`). The question's correlation id says whose it
/// is.
fn returned_to<'a>(returned: &'a lapin::message::BasicReturnMessage, id: &str) -> Option<&'a str> {
    another_call(returned.properties.correlation_id().as_ref().map(|c| c.as_str()), id)
}

/// The correlation id of a returned question if it is not `id`'s (one without is taken as
/// `id`'s own: it cannot be told to anyone else).
fn another_call<'a>(correlation: Option<&'a str>, id: &str) -> Option<&'a str> {
    correlation.filter(|c| *c != id)
}

/// Sends [`Query`]s to the owning domain's RPC queue and waits (bounded) for the reply.
#[derive(Clone)]
pub struct RpcClient {
    channel: Arc<Mutex<Option<Channel>>>,
    pending: Pending,
    next_id: Arc<AtomicU64>,
    prefix: String,
    metrics: Metrics,
}

impl RpcClient {
    pub fn start(bus: &Bus, instance_id: &str, metrics: Metrics) -> RpcClient {
        let client = RpcClient {
            channel: Arc::new(Mutex::new(None)),
            pending: Arc::new(Mutex::new(HashMap::new())),
            next_id: Arc::new(AtomicU64::new(1)),
            prefix: instance_id.to_string(),
            metrics,
        };
        let c = client.clone();
        let bus2 = bus.clone();
        bus.run_on_each_connection("rpc client", move |link| {
            let c = c.clone();
            let bus = bus2.clone();
            async move {
                let ch = link.conn.create_channel().await?;
                topology::declare_shared(&ch).await?;
                // Questions are published mandatory and confirmed: one sent before its owner has
                // declared its queue (services started together, an owner not started yet on a
                // fresh broker) comes back at once instead of waiting out the timeout.
                ch.confirm_select(ConfirmSelectOptions::default()).await?;
                // Direct Reply-to: consume the pseudo-queue, no-ack, on the publishing channel.
                let mut replies = ch
                    .basic_consume(
                        REPLY_TO.into(),
                        "rpc-replies".into(),
                        BasicConsumeOptions { no_ack: true, ..Default::default() },
                        FieldTable::default(),
                    )
                    .await?;
                c.set_channel(Some(ch));
                let result = async {
                    loop {
                        tokio::select! {
                            next = replies.next() => {
                                let Some(delivery) = next else { return Ok(()) };
                                let delivery = delivery?;
                                if let Some(id) = delivery.properties.correlation_id() {
                                    let waiter = c.lock_pending().remove(id.as_str());
                                    match waiter {
                                        Some(tx) => {
                                            let _ = tx.send(Answer::Reply(delivery.data));
                                        }
                                        None => log::debug!(
                                            "rpc client: the reply to {id} came {:.1} ms after the question, too late",
                                            sent_at_of(&delivery.properties).map_or(f64::NAN, ms_since)
                                        ),
                                    }
                                }
                            }
                            _ = bus.lost(link.generation) => return Ok(()),
                        }
                    }
                }
                .await;
                c.set_channel(None);
                result
            }
        });
        client
    }

    /// A client that is never connected: every call fails with [`Error::BusDown`] (unit tests).
    #[cfg(test)]
    pub(crate) fn detached() -> RpcClient {
        RpcClient {
            channel: Arc::new(Mutex::new(None)),
            pending: Arc::new(Mutex::new(HashMap::new())),
            next_id: Arc::new(AtomicU64::new(1)),
            prefix: "test".into(),
            metrics: Metrics::default(),
        }
    }

    fn set_channel(&self, ch: Option<Channel>) {
        if let Ok(mut g) = self.channel.lock() {
            *g = ch;
        }
    }

    fn lock_pending(&self) -> std::sync::MutexGuard<'_, HashMap<String, oneshot::Sender<Answer>>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Asks `owner` and waits at most `timeout`. RabbitMQ down → [`Error::BusDown`] at once;
    /// no queue of the owner's on the broker → [`Error::RpcNoOwner`] at once (the broker returns
    /// the question); no answer in time → [`Error::RpcTimeout`].
    pub async fn call(&self, owner: Domain, query: &Query, timeout: Duration) -> Result<Vec<VersionedRow>> {
        let started = std::time::Instant::now();
        let result = self.call_inner(owner, query, timeout).await;
        self.metrics.rpc_call(owner.name(), &result, started.elapsed());
        result
    }

    async fn call_inner(&self, owner: Domain, query: &Query, timeout: Duration) -> Result<Vec<VersionedRow>> {
        let ch = self
            .channel
            .lock()
            .ok()
            .and_then(|g| g.clone())
            .filter(|c| c.status().connected())
            .ok_or(Error::BusDown)?;
        let id = format!("{}-{}", self.prefix, self.next_id.fetch_add(1, Ordering::Relaxed));
        let (tx, rx) = oneshot::channel();
        self.lock_pending().insert(id.clone(), tx);
        let body = serde_json::to_vec(query)?;
        // Any failure from here on (a publish refused, a reply that never comes) is the
        // broker's or the owner's, and reaches the caller as a 503 naming it.
        let props = BasicProperties::default()
            .with_reply_to(REPLY_TO.into())
            .with_correlation_id(id.as_str().into())
            .with_content_type("application/json".into())
            .with_headers(sent_at(now_us()))
            // A request nobody picked up in time is dropped by the broker, not answered late.
            .with_expiration(timeout.as_millis().to_string().into());
        let mandatory = BasicPublishOptions { mandatory: true, ..Default::default() };
        let outcome = tokio::time::timeout(timeout, async {
            let confirm =
                ch.basic_publish("".into(), topology::rpc_queue(owner).into(), mandatory, &body, props).await?;
            let mut rx = std::pin::pin!(rx);
            // The broker's confirm comes before the reply (the question is routed first), but
            // either may be read first: a reply settles the call whatever the confirm says.
            tokio::select! {
                biased;
                answer = &mut rx => return answer.map_err(|_| Error::BusDown),
                confirmed = confirm => match confirmed? {
                    Confirmation::Ack(None) | Confirmation::NotRequested => {}
                    Confirmation::Ack(Some(returned)) => match returned_to(&returned, &id) {
                        None => {
                            log::debug!(
                                "rpc client: the broker returned {id} (to {:?}): {} {}",
                                returned.routing_key.as_str(),
                                returned.reply_code,
                                returned.reply_text.as_str()
                            );
                            return Err(Error::RpcNoOwner(owner.name()));
                        }
                        // Another call's question: that call is told, this one waits on.
                        Some(theirs) => {
                            if let Some(tx) = self.lock_pending().remove(theirs) {
                                let _ = tx.send(Answer::Returned);
                            }
                        }
                    },
                    Confirmation::Nack(_) => {
                        return Err(Error::RpcFailed(owner.name(), "the broker refused the question".into()))
                    }
                },
            }
            rx.await.map_err(|_| Error::BusDown)
        })
        .await;
        let raw = match outcome {
            Ok(Ok(Answer::Reply(raw))) => raw,
            Ok(Ok(Answer::Returned)) => {
                self.lock_pending().remove(&id);
                return Err(Error::RpcNoOwner(owner.name()));
            }
            Ok(Err(e)) => {
                self.lock_pending().remove(&id);
                return Err(e);
            }
            Err(_) => {
                self.lock_pending().remove(&id);
                log::debug!("rpc client: {} did not answer {id} within {timeout:?}", owner.name());
                return Err(Error::RpcTimeout(owner.name()));
            }
        };
        // An unreadable reply is the owner failing to answer (a 503 naming it), not our fault.
        let reply: Reply = serde_json::from_slice(&raw)
            .map_err(|e| Error::RpcFailed(owner.name(), format!("unreadable reply: {e}")))?;
        if reply.ok {
            Ok(reply.rows)
        } else {
            Err(Error::RpcFailed(owner.name(), reply.error.unwrap_or_default()))
        }
    }
}

/// Answers [`Query`]s about `domain`'s entities from its store.
/// It starts answering once the store has applied its migrations: before that every answer
/// would be an error, and a request left in the queue is answered in time (or expires there).
pub fn serve(bus: &Bus, domain: Domain, store: Addr<Store>, migrated: Arc<AtomicBool>, prefetch: u16) {
    let bus2 = bus.clone();
    bus.run_on_each_connection("rpc server", move |link| {
        let store = store.clone();
        let bus = bus2.clone();
        let migrated = migrated.clone();
        async move {
            while !migrated.load(Ordering::SeqCst) {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            let ch = topology::declare_rpc_queue(&link.conn, domain).await?;
            ch.basic_qos(prefetch, BasicQosOptions::default()).await?;
            let queue = topology::rpc_queue(domain);
            let mut requests = ch
                .basic_consume(queue.into(), format!("rpc-server-{}", link.generation).into(), BasicConsumeOptions::default(), FieldTable::default())
                .await?;
            log::info!("rpc server: answering on {queue}");
            loop {
                tokio::select! {
                    next = requests.next() => {
                        let Some(delivery) = next else {
                            // Cancelled by the broker: the queue went away with its node.
                            // Declared again on this connection's node (run_on_each_connection
                            // starts this over while the connection lives).
                            log::warn!("rpc server: {queue} went away; declaring it again");
                            let _ = ch.close(200, "rpc queue gone".into()).await;
                            return Ok(());
                        };
                        let delivery = delivery?;
                        let ch = ch.clone();
                        let store = store.clone();
                        // Answer concurrently: a slow snapshot page does not hold up a token lookup.
                        tokio::spawn(async move {
                            let taken = std::time::Instant::now();
                            let sent = sent_at_of(&delivery.properties);
                            // Past the asker's own timeout (the question's expiration) nobody
                            // waits for the answer: a hung database holds this task no longer.
                            let deadline = answer_deadline(&delivery.properties);
                            let reply = match tokio::time::timeout(deadline, answer(domain, &store, &delivery.data)).await {
                                Ok(reply) => reply,
                                Err(_) => Reply { ok: false, rows: vec![], error: Some(format!("not answered within {} ms", deadline.as_millis())) },
                            };
                            let took = taken.elapsed().as_secs_f64() * 1000.0;
                            let waited = sent.map_or(0.0, ms_since) - took;
                            let slow = SLOW.as_secs_f64() * 1000.0;
                            if took > slow || waited > slow {
                                log::debug!(
                                    "rpc server: a question waited {waited:.1} ms before it was taken, answered in {took:.1} ms"
                                );
                            }
                            if let (Some(to), Some(id)) = (delivery.properties.reply_to(), delivery.properties.correlation_id()) {
                                let body = serde_json::to_vec(&reply).unwrap_or_default();
                                let headers = sent.map(sent_at).unwrap_or_default();
                                let props = BasicProperties::default()
                                    .with_correlation_id(id.clone())
                                    .with_headers(headers)
                                    .with_content_type("application/json".into());
                                if let Err(e) = ch.basic_publish("".into(), to.clone(), BasicPublishOptions::default(), &body, props).await {
                                    log::warn!("rpc server: could not reply: {e}");
                                }
                            }
                            let _ = delivery.acker.ack(BasicAckOptions::default()).await;
                        });
                    }
                    _ = bus.lost(link.generation) => return Ok(()),
                }
            }
        }
    });
}

/// How long the owner works on a question: the asker's timeout, which it sends as the
/// message's expiration; [`ANSWER_DEADLINE`] for a question without one.
fn answer_deadline(properties: &BasicProperties) -> std::time::Duration {
    properties
        .expiration()
        .as_ref()
        .and_then(|ms| ms.as_str().parse::<u64>().ok())
        .map_or(ANSWER_DEADLINE, std::time::Duration::from_millis)
        .min(ANSWER_DEADLINE)
}

/// The longest an owner works on one question (the longest an asker waits: a snapshot page's
/// `SNAPSHOT_TIMEOUT_MS` default).
const ANSWER_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

async fn answer(domain: Domain, store: &Addr<Store>, body: &[u8]) -> Reply {
    let fail = |error: String| Reply { ok: false, rows: vec![], error: Some(error) };
    let query: Query = match serde_json::from_slice(body) {
        Ok(q) => q,
        Err(e) => return fail(format!("bad request: {e}")),
    };
    let owned = match domain {
        Domain::Item => ["item"].as_slice(),
        Domain::Alarm => ["alarm"].as_slice(),
        Domain::User => ["user"].as_slice(),
    };
    if !owned.contains(&query.entity()) {
        return fail(format!("{} is not owned by the {} service", query.entity(), domain.name()));
    }
    match store.send(query).await {
        Ok(Ok(rows)) => Reply { ok: true, rows, error: None },
        Ok(Err(e)) => fail(e.to_string()),
        Err(e) => fail(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_owner_works_on_a_question_as_long_as_its_asker_waits() {
        let asked = |ms: &str| BasicProperties::default().with_expiration(ms.into());
        assert_eq!(answer_deadline(&asked("300")), std::time::Duration::from_millis(300));
        assert_eq!(answer_deadline(&asked("soon")), ANSWER_DEADLINE, "not a number: the longest");
        assert_eq!(answer_deadline(&asked("99999999")), ANSWER_DEADLINE, "never longer");
        assert_eq!(answer_deadline(&BasicProperties::default()), ANSWER_DEADLINE);
    }

    #[test]
    fn a_returned_question_is_told_to_the_call_whose_id_it_carries() {
        assert_eq!(another_call(Some("item-1-7"), "item-1-7"), None, "its own");
        assert_eq!(another_call(Some("item-1-6"), "item-1-7"), Some("item-1-6"), "another call's");
        assert_eq!(another_call(None, "item-1-7"), None, "no id: taken as its own");
    }

    /// The publish time a question carries is read back by the owner and from the echoed
    /// reply; a message without it (an older asker) reads as none, not as the epoch.
    #[test]
    fn the_publish_time_travels_in_the_headers() {
        let stamped = now_us();
        let question = BasicProperties::default().with_headers(sent_at(stamped));
        assert_eq!(sent_at_of(&question), Some(stamped));
        assert!((0.0..1_000.0).contains(&ms_since(stamped)), "{} ms", ms_since(stamped));
        assert_eq!(sent_at_of(&BasicProperties::default()), None);
        let mut other = FieldTable::default();
        other.insert(SENT_AT.into(), lapin::types::AMQPValue::LongString("soon".into()));
        assert_eq!(sent_at_of(&BasicProperties::default().with_headers(other)), None, "not a number: none");
    }
}
