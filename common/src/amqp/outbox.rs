//! The outbox's side in the store: the messages the relay ([`super::relay`]) sends the store
//! actor to take rows out of `moa_outbox` ([`DrainOutbox`]: lent to the publisher, deleted once
//! the broker confirmed them, backed off when it refused them) and to count what waits
//! ([`OutboxBacklog`]). They live beside the relay, their only sender, so that the outbox's
//! SQL and the publishing that depends on it read together.

use actix::prelude::*;
use serde::Deserialize;

use crate::{
    error::{Error, Result},
    store::{
        bookkeeping, bookkeeping_with,
        query::{outward_of, OwnEntity},
        Store,
    },
};

/// An outbox row being published.
#[derive(Debug, Clone)]
pub struct OutboxRow {
    pub id: i64,
    pub event_id: String,
    pub exchange: String,
    /// The payload with `event_id` (and for views `seq`) merged in, ready to publish.
    pub body: Vec<u8>,
    pub request_id: Option<String>,
    /// When the change was committed (ms since the epoch), for the publish-latency histogram.
    pub created_ms: f64,
}

/// An outbox payload as it may leave: a change event's data through its entity's
/// [`OwnEntity::outward`] (a user's token becomes its hash). Views and other kinds' events pass
/// unparsed: only a payload naming an entity `own` rewrites is taken apart.
fn outward_event(body: String, own: &[OwnEntity]) -> String {
    #[derive(Deserialize)]
    struct Head<'a> {
        #[serde(borrow)]
        entity: Option<std::borrow::Cow<'a, str>>,
    }
    let outward = match serde_json::from_str::<Head>(&body) {
        Ok(Head { entity: Some(e) }) => match outward_of(own, &e) {
            Some(outward) => outward,
            None => return body,
        },
        _ => return body,
    };
    let Ok(mut event) = serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&body) else {
        return body;
    };
    if let Some(data) = event.get("data").and_then(|d| serde_json::value::to_raw_value(d).ok()) {
        let value = serde_json::from_str(outward(&data).get()).unwrap_or(serde_json::Value::Null);
        event.insert("data".into(), value);
    }
    serde_json::to_string(&event).unwrap_or(body)
}

/// What a drain's publisher reports: the rows the broker confirmed, the rows it refused
/// (they back off, see [`DrainOutbox`]), and the error that stopped it, if any. Rows in
/// neither list (the connection was lost, the confirms did not come in time) were not the
/// rows' fault: they are simply taken again by the next drain.
#[derive(Default)]
pub struct Published {
    pub sent: Vec<i64>,
    pub refused: Vec<i64>,
    /// Why the refused rows were refused, kept in `moa_outbox.last_error` for operators.
    pub refused_because: String,
    pub error: Option<Error>,
}

/// Which outbox rows a drain takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrainRows {
    /// Rows never tried, oldest first: the normal flow.
    Fresh,
    /// Rows the broker refused before whose back-off has passed, longest waiting first.
    /// Drained one at a time, so that a row the broker keeps refusing fails alone.
    Due,
}

/// Which of the outbox's rows a relay lane publishes (`amqp::relay`): work (such as views)
/// apart from the change events, so that slow work never holds up a change event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboxLane {
    /// Rows of every exchange but the work streams'.
    Changes,
    /// Rows of the service's work streams ([`crate::amqp::topology::WorkStream`]).
    Work,
}

/// Publishes outbox rows through `publish` and deletes them once the broker has confirmed
/// them, in one transaction that lends the rows to the publisher: they are deleted with
/// `FOR UPDATE SKIP LOCKED` (another relay of this database skips them meanwhile; a relay
/// that dies mid-drain releases them with its session) and the deletion commits only if every
/// row was confirmed. Otherwise it is rolled back, the confirmed rows alone are deleted, and
/// the rows the broker refused count an attempt and back off (1 s, doubling, at most 60 s)
/// until `next_attempt_at`: fresh rows never wait behind them, and nothing is dropped.
/// Answers how many rows were drained and what the publisher reported.
#[derive(Message)]
#[rtype(result = "Result<(usize, Published)>")]
pub struct DrainOutbox {
    pub lane: OutboxLane,
    /// The exchanges of the work streams this service publishes (the rest are change events).
    pub work: std::sync::Arc<[&'static str]>,
    pub rows: DrainRows,
    pub limit: i64,
    pub publish: Box<dyn FnOnce(Vec<OutboxRow>) -> futures_util::future::LocalBoxFuture<'static, Published> + Send>,
}

/// Longest back-off of a refused outbox row, in seconds.
const OUTBOX_MAX_BACKOFF_S: f64 = 60.0;

impl Handler<DrainOutbox> for Store {
    type Result = ResponseFuture<Result<(usize, Published)>>;

    fn handle(&mut self, msg: DrainOutbox, _: &mut Context<Self>) -> Self::Result {
        let pool = self.pool();
        let own = self.own_entities;
        Box::pin(async move {
            // Before the migrations the outbox may not have its columns yet: "not yet"
            // (`NotMigrated`), which the relay does not report as a failure.
            let mut conn = pool.get().await?;
            // The outbox's statistics say empty (it is, after each vacuum), so the planner
            // would scan the heap and sort; under load the heap holds thousands of rows deleted
            // since the last vacuum, and the index on id reaches the oldest live ones at once.
            // Fresh rows walk the primary key past the (few) backing-off ones; due rows come
            // from the partial index `moa_outbox_retry`.
            // Each lane skips the other's rows ($2: the work exchanges, $3: this lane is work's).
            let pick = match msg.rows {
                DrainRows::Fresh => {
                    "SELECT id FROM moa_outbox WHERE attempts = 0 AND (exchange = ANY($2)) = $3
                     ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED"
                }
                DrainRows::Due => {
                    "SELECT id FROM moa_outbox WHERE attempts > 0 AND next_attempt_at <= now() AND (exchange = ANY($2)) = $3
                     ORDER BY next_attempt_at, id LIMIT $1 FOR UPDATE SKIP LOCKED"
                }
            };
            let work = msg.lane == OutboxLane::Work;
            let sql = format!(
                "DELETE FROM moa_outbox o
                 WHERE o.id = ANY(ARRAY({pick}))
                 RETURNING o.id, o.event_id::text, o.exchange,
                           (o.payload || jsonb_build_object('event_id', o.event_id::text, 'seq', o.id,
                                                             'epoch', (SELECT moa_epoch()))
                            || CASE WHEN o.request_id IS NULL THEN '{{}}'::jsonb
                               ELSE jsonb_build_object('request_id', o.request_id) END)::text,
                           o.request_id, (extract(epoch FROM o.created_at) * 1000)::float8"
            );
            let drain = conn.prepared(&sql).await?;
            let tx = bookkeeping_with(&mut conn, "SET LOCAL enable_seqscan = off;").await?;
            let rows = match tx.query(&drain, &[&msg.limit, &&*msg.work, &work]).await {
                Ok(rows) => rows,
                Err(e) => {
                    drop(tx);
                    conn.forget(&sql);
                    return Err(e.into());
                }
            };
            let mut rows = rows
                .into_iter()
                .map(|r| {
                    Ok(OutboxRow {
                        id: r.try_get(0)?,
                        event_id: r.try_get(1)?,
                        exchange: r.try_get(2)?,
                        body: outward_event(r.try_get::<_, String>(3)?, own).into_bytes(),
                        request_id: r.try_get(4)?,
                        created_ms: r.try_get(5)?,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            if rows.is_empty() {
                tx.commit().await?;
                return Ok((0, Published::default()));
            }
            rows.sort_by_key(|r| r.id);
            let drained = rows.len();
            let published = (msg.publish)(rows).await;
            if published.sent.len() == drained {
                tx.commit().await?;
                return Ok((drained, published));
            }
            tx.rollback().await?;
            if published.sent.is_empty() && published.refused.is_empty() {
                return Ok((drained, published));
            }
            let tx = bookkeeping(&mut conn).await?;
            if !published.sent.is_empty() {
                tx.execute("DELETE FROM moa_outbox WHERE id = ANY($1)", &[&published.sent]).await?;
            }
            if !published.refused.is_empty() {
                let waits = tx
                    .query(
                        "UPDATE moa_outbox
                         SET attempts = attempts + 1,
                             next_attempt_at = now() + least($3, power(2, least(attempts, 30))) * interval '1 second',
                             last_error = left($2, 500)
                         WHERE id = ANY($1)
                         RETURNING id, exchange, attempts",
                        &[&published.refused, &published.refused_because, &OUTBOX_MAX_BACKOFF_S],
                    )
                    .await?;
                // One line per refusal, not per row: a refused batch can hold hundreds.
                let mut exchanges = std::collections::BTreeSet::new();
                let mut attempts_max = 0;
                for w in &waits {
                    exchanges.insert(w.try_get::<_, String>(1)?);
                    attempts_max = attempts_max.max(w.try_get::<_, i32>(2)?);
                }
                let first = waits.first().map(|w| w.try_get::<_, i64>(0)).transpose()?.unwrap_or_default();
                log::warn!(
                    "outbox: the broker refused {} row(s) (first id {first}, to {}; attempt {attempts_max}): {}; \
                     they are retried one at a time after a back-off while later rows go on",
                    waits.len(),
                    exchanges.into_iter().collect::<Vec<_>>().join(", "),
                    published.refused_because
                );
            }
            tx.commit().await?;
            Ok((drained, published))
        })
    }
}

/// How many outbox rows wait to be published (for /metrics and /ready detail).
#[derive(Message)]
#[rtype(result = "Result<i64>")]
pub struct OutboxBacklog;

impl Handler<OutboxBacklog> for Store {
    type Result = ResponseFuture<Result<i64>>;

    fn handle(&mut self, _: OutboxBacklog, _: &mut Context<Self>) -> Self::Result {
        let pool = self.pool();
        self.run(async move {
            let conn = pool.get().await?;
            let row = conn.query_one("SELECT count(*) FROM moa_outbox", &[]).await?;
            Ok(row.try_get(0)?)
        })
    }
}
