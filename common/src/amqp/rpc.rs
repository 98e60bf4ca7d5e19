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
    amqp::{
        consume::{count_refused, Refused},
        identity::{self, Identity},
        topology, Bus,
    },
    entity::VersionedRow,
    error::{Error, Result},
    settings::Domain,
    store::{query::Query, Store},
    telemetry::Metrics,
};

const REPLY_TO: &str = "amq.rabbitmq.reply-to";

/// What the broker turns [`REPLY_TO`] into in a question (`amq.rabbitmq.reply-to.<channel>`):
/// the only reply address the server answers. Any other would let a question (whose body any
/// service may write) have the owner publish its answer into a queue of the asker's choosing.
const DIRECT_REPLY_PREFIX: &str = "amq.rabbitmq.reply-to.";

/// The most keys, tokens, prefixes or buckets one question may name (a coalesced batch of
/// misses names at most `batch::MAX_BATCH`).
pub const MAX_KEYS: usize = 10_000;
/// The most rows one question may ask for or be answered with: a page of a snapshot or of
/// buckets, a prefix read. The store caps its pages at this too.
pub const MAX_PAGE_ROWS: u32 = 100_000;
/// The narrowest digest bucket a question may ask for: each bucket is one answer row.
pub const MIN_DIGEST_WIDTH: i64 = 256;
/// The largest question body (bytes).
pub const MAX_QUESTION_BYTES: usize = 1 << 20;

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

/// The token key id an answer carries ([`crate::token::TOKEN_KEY_HEADER`]), if any.
fn key_id_of(props: &BasicProperties) -> Option<String> {
    match props.headers().as_ref()?.inner().get(crate::token::TOKEN_KEY_HEADER)? {
        lapin::types::AMQPValue::LongString(s) => Some(s.to_string()),
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

/// A call waiting for its answer: whose login the answer must carry, and where it goes.
struct Waiter {
    owner: Domain,
    tx: oneshot::Sender<Answer>,
}

type Pending = Arc<Mutex<HashMap<String, Waiter>>>;

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
    /// Questions carry this service's login; answers must carry their owner's.
    identity: Identity,
}

impl RpcClient {
    pub fn start(bus: &Bus, instance_id: &str, metrics: Metrics) -> RpcClient {
        let client = RpcClient {
            channel: Arc::new(Mutex::new(None)),
            pending: Arc::new(Mutex::new(HashMap::new())),
            next_id: Arc::new(AtomicU64::new(1)),
            prefix: instance_id.to_string(),
            metrics,
            identity: bus.identity().clone(),
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
                                if let (Some(theirs), Some(publisher)) = (key_id_of(&delivery.properties), identity::publisher_of(&delivery.properties)) {
                                    crate::token::note_peer_key(publisher, &theirs);
                                }
                                if let Some(id) = delivery.properties.correlation_id() {
                                    let waiter = c.take_waiter(id.as_str(), identity::publisher_of(&delivery.properties));
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

    /// A client that is never connected: every call fails with [`Error::BusDown`] (tests).
    pub fn detached() -> RpcClient {
        let domain = Domain::all()[0];
        RpcClient {
            channel: Arc::new(Mutex::new(None)),
            pending: Arc::new(Mutex::new(HashMap::new())),
            next_id: Arc::new(AtomicU64::new(1)),
            prefix: "test".into(),
            metrics: Metrics::default(),
            // A domain's conventional login with no overrides is always an identity.
            identity: Identity::new(domain, &crate::amqp::identity::conventional_login(domain), None)
                .unwrap_or_else(|_| unreachable!()),
        }
    }

    /// The call `id` is waiting for, if `publisher` (the answer's `user_id`) is its owner's
    /// login. An answer from anyone else is refused and counted, and the call waits on for
    /// its owner's (or times out).
    fn take_waiter(&self, id: &str, publisher: Option<&str>) -> Option<oneshot::Sender<Answer>> {
        let mut pending = self.lock_pending();
        let owner = pending.get(id)?.owner;
        let expected = self.identity.owner(owner);
        if publisher != Some(expected) {
            drop(pending);
            count_refused(&self.metrics, "rpc client", Refused::Publisher);
            log::warn!("rpc client: refused an answer to {id} published by {publisher:?}, not {expected:?}");
            return None;
        }
        pending.remove(id).map(|w| w.tx)
    }

    fn set_channel(&self, ch: Option<Channel>) {
        if let Ok(mut g) = self.channel.lock() {
            *g = ch;
        }
    }

    fn lock_pending(&self) -> std::sync::MutexGuard<'_, HashMap<String, Waiter>> {
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
        self.lock_pending().insert(id.clone(), Waiter { owner, tx });
        let body = serde_json::to_vec(query)?;
        // Any failure from here on (a publish refused, a reply that never comes) is the
        // broker's or the owner's, and reaches the caller as a 503 naming it.
        let props = self
            .identity
            .stamp(BasicProperties::default())
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
                            if let Some(w) = self.lock_pending().remove(theirs) {
                                let _ = w.tx.send(Answer::Returned);
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
/// It answers only to a Direct Reply-to address and only questions within the caps
/// ([`MAX_KEYS`], ...); every answer carries this service's login.
pub fn serve(
    bus: &Bus,
    domain: Domain,
    owned: Arc<[&'static str]>,
    store: Addr<Store>,
    migrated: Arc<AtomicBool>,
    prefetch: u16,
    metrics: Metrics,
) {
    let bus2 = bus.clone();
    bus.run_on_each_connection("rpc server", move |link| {
        let store = store.clone();
        let bus = bus2.clone();
        let migrated = migrated.clone();
        let metrics = metrics.clone();
        let owned = owned.clone();
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
                        let metrics = metrics.clone();
                        let owned = owned.clone();
                        let identity = bus.identity().clone();
                        let Some(to) = reply_address(&delivery.properties) else {
                            count_refused(&metrics, "rpc server", Refused::ReplyTo);
                            log::warn!(
                                "rpc server: refused a question asking for its answer at {:?}, not a Direct Reply-to address",
                                delivery.properties.reply_to().as_ref().map(|r| r.as_str())
                            );
                            let _ = delivery.acker.ack(BasicAckOptions::default()).await;
                            continue;
                        };
                        // Answer concurrently: a slow snapshot page does not hold up a token lookup.
                        tokio::spawn(async move {
                            let taken = std::time::Instant::now();
                            let sent = sent_at_of(&delivery.properties);
                            // Past the asker's own timeout (the question's expiration) nobody
                            // waits for the answer: a hung database holds this task no longer.
                            let deadline = answer_deadline(&delivery.properties);
                            let reply = match tokio::time::timeout(deadline, answer(domain, &owned, &store, &delivery.data, &metrics)).await {
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
                            if let Some(id) = delivery.properties.correlation_id() {
                                let body = serde_json::to_vec(&reply).unwrap_or_default();
                                let mut headers = sent.map(sent_at).unwrap_or_default();
                                headers.insert(crate::token::TOKEN_KEY_HEADER.into(), lapin::types::AMQPValue::LongString(crate::token::key_id().into()));
                                let props = identity
                                    .stamp(BasicProperties::default())
                                    .with_correlation_id(id.clone())
                                    .with_headers(headers)
                                    .with_content_type("application/json".into());
                                if let Err(e) = ch.basic_publish("".into(), to.as_str().into(), BasicPublishOptions::default(), &body, props).await {
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

/// The question's reply address, if it is a Direct Reply-to one.
fn reply_address(props: &BasicProperties) -> Option<String> {
    let to = props.reply_to().as_ref()?.as_str();
    to.starts_with(DIRECT_REPLY_PREFIX).then(|| to.to_string())
}

/// Why `query` asks for more than one answer may hold, if it does.
fn oversized(query: &Query) -> Option<String> {
    let too_many = |what: &str, n: usize| (n > MAX_KEYS).then(|| format!("{n} {what}, more than {MAX_KEYS}"));
    let too_long =
        |limit: u32| (limit > MAX_PAGE_ROWS).then(|| format!("a page of {limit} rows, more than {MAX_PAGE_ROWS}"));
    let too_narrow = |width: i64| {
        (width < MIN_DIGEST_WIDTH).then(|| format!("digest buckets {width} wide, under {MIN_DIGEST_WIDTH}"))
    };
    match query {
        Query::Snapshot { limit, .. } => too_long(*limit),
        Query::Get { keys, .. } => too_many("keys", keys.len()),
        Query::Lookup { keys, .. } => too_many("keys", keys.len()),
        Query::Prefix { prefixes, .. } if prefixes.iter().any(String::is_empty) => {
            Some("an empty prefix (the whole table: read it by snapshot pages)".into())
        }
        Query::Prefix { prefixes, .. } => too_many("prefixes", prefixes.len()),
        Query::Digest { width, .. } => too_narrow(*width),
        Query::Buckets { width, buckets, limit, .. } => {
            too_narrow(*width).or_else(|| too_many("buckets", buckets.len())).or_else(|| too_long(*limit))
        }
        Query::Epoch { .. } => None,
    }
}

/// Why `query` is not this service's to answer: its kind is not among those it owns.
fn not_owned(query: &Query, owned: &[&str], domain: Domain) -> Option<String> {
    (!owned.contains(&query.entity()))
        .then(|| format!("{} is not owned by the {} service", query.entity(), domain.name()))
}

/// The answer to one question: refused when malformed, too large, or of a kind this service
/// does not own (`owned`: the kinds its `startup.rs` declares `own`).
async fn answer(domain: Domain, owned: &[&str], store: &Addr<Store>, body: &[u8], metrics: &Metrics) -> Reply {
    let fail = |error: String| Reply { ok: false, rows: vec![], error: Some(error) };
    let refuse = |why: String| {
        count_refused(metrics, "rpc server", Refused::Oversized);
        log::warn!("rpc server: refused a question: {why}");
        fail(format!("question too large: {why}"))
    };
    if body.len() > MAX_QUESTION_BYTES {
        return refuse(format!("{} bytes, more than {MAX_QUESTION_BYTES}", body.len()));
    }
    let query: Query = match serde_json::from_slice(body) {
        Ok(q) => q,
        Err(e) => return fail(format!("bad request: {e}")),
    };
    if let Some(why) = oversized(&query) {
        return refuse(why);
    }
    if let Some(why) = not_owned(&query, owned, domain) {
        return fail(why);
    }
    match store.send(query).await {
        // A prefix read has no page: a prefix matching more than a page is refused whole.
        Ok(Ok(rows)) if rows.len() > MAX_PAGE_ROWS as usize => {
            refuse(format!("{} rows answer it, more than {MAX_PAGE_ROWS}", rows.len()))
        }
        Ok(Ok(rows)) => Reply { ok: true, rows, error: None },
        Ok(Err(e)) => fail(e.to_string()),
        Err(e) => fail(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_owner_answers_only_the_kinds_it_declared_its_own() {
        let item = Domain::new("item");
        let ask = |entity: &str| Query::Get { entity: entity.into(), keys: vec!["1".into()] };
        assert_eq!(not_owned(&ask("item"), &["item"], item), None);
        assert_eq!(
            not_owned(&ask("alarm"), &["item"], item).as_deref(),
            Some("alarm is not owned by the item service")
        );
        assert!(not_owned(&ask("item"), &[], item).is_some(), "nothing declared, nothing answered");
    }

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

    /// An answer is taken only from its owner's login; anyone else's leaves the call waiting.
    #[test]
    fn an_answer_is_taken_only_from_the_owners_login() {
        let client = RpcClient::detached();
        let (tx, _rx) = oneshot::channel();
        client.lock_pending().insert("c-1".into(), Waiter { owner: Domain::new("user"), tx });
        assert!(client.take_waiter("c-1", Some("alarm-service")).is_none(), "another service's login");
        assert!(client.take_waiter("c-1", None).is_none(), "no login at all");
        assert!(client.take_waiter("c-1", Some("user-service")).is_some(), "the owner's");
        assert!(client.lock_pending().is_empty());
        assert!(client
            .metrics
            .render()
            .contains(r#"moa_amqp_refused_total{consumer="rpc client",reason="publisher"} 2"#));
    }

    #[test]
    fn questions_past_the_caps_are_oversized_and_the_backfills_questions_are_not() {
        let page = |limit| Query::Snapshot { entity: "user".into(), after: None, limit };
        assert!(oversized(&page(MAX_PAGE_ROWS)).is_none());
        assert!(oversized(&page(MAX_PAGE_ROWS + 1)).is_some());
        let keys = |n: usize| (0..n).map(|i| i.to_string()).collect::<Vec<_>>();
        assert!(oversized(&Query::Get { entity: "item".into(), keys: keys(MAX_KEYS) }).is_none());
        assert!(oversized(&Query::Lookup { entity: "user".into(), keys: keys(MAX_KEYS + 1) }).is_some());
        let prefix = |p: &str| Query::Prefix { entity: "alarm".into(), prefixes: vec!["7:".into(), p.into()] };
        assert!(oversized(&prefix("8:")).is_none());
        assert!(oversized(&prefix("")).unwrap().contains("empty prefix"));
        let width = crate::replica::digest::WIDTH;
        assert!(oversized(&Query::Digest { entity: "user".into(), width }).is_none());
        assert!(oversized(&Query::Digest { entity: "user".into(), width: MIN_DIGEST_WIDTH - 1 }).is_some());
        let buckets = |limit| Query::Buckets { entity: "user".into(), width, buckets: vec![1, 2], after: 0, limit };
        assert!(oversized(&buckets(20_000)).is_none());
        assert!(oversized(&buckets(MAX_PAGE_ROWS + 1)).is_some());
        assert!(oversized(&Query::Epoch { entity: "user".into() }).is_none());
    }

    #[test]
    fn only_a_direct_reply_to_address_is_answered() {
        let to = |r: &str| reply_address(&BasicProperties::default().with_reply_to(r.into()));
        assert!(to("amq.rabbitmq.reply-to.g1h2AA5yZXdAaG9zdAAAAAAAAAAB").is_some());
        assert_eq!(to("item.replica.x"), None);
        assert_eq!(to("amq.rabbitmq.reply-to"), None, "the pseudo-queue itself is the asker's, not an address");
        assert_eq!(reply_address(&BasicProperties::default()), None);
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
