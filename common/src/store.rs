//! The store actor: the only code that runs SQL against a service's own database.
//!
//! It owns the bb8 pool. Handlers, the RPC server and the outbox relay send it messages;
//! each message's work runs as its own future, so the actor never serializes requests.
//! Domain crates add their own messages with `impl Handler<TheirMessage> for Store`.

use std::{sync::Arc, time::Duration};

use actix::prelude::*;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio::sync::Notify;
use tokio_postgres::{
    types::{FromSql, Type},
    AsyncMessage, NoTls,
};

use crate::{
    db::{self, Migration, Pool},
    entity::{Epoch, RawJson, VersionedRow},
    error::{Error, Result},
    settings::Settings,
    tasks::Tasks,
};

pub struct Store {
    pool: Pool,
    /// Where every statement runs (see [`Store::run`]).
    db: tokio::runtime::Handle,
    database_url: String,
    /// Woken by NOTIFY moa_outbox (a change was committed) so the relay need not wait for its poll.
    outbox_wake: Arc<Notify>,
    migrations: &'static [Migration],
    /// Where this start's schema comes from (taken by the migrations task).
    schema_source: Option<db::SchemaSource>,
    /// The domain's own SQL for some entities' prefix reads (see [`PrefixRead`]).
    prefix_reads: &'static [PrefixRead],
    migrated: Arc<std::sync::atomic::AtomicBool>,
    /// Owns the migrations and the LISTEN session.
    tasks: Tasks,
}

/// A domain's own answer to [`Query::Prefix`] for one of its entities: SQL function
/// `function(p_prefixes text[])`, returning the `(key, version, deleted, data)` rows of every
/// prefix, defined in the domain's function file `sql/functions/<function>.sql` (listed in its
/// migrations). Without one, a prefix read is the ranges of `moa_entity_version` keys starting
/// with the prefixes; a
/// domain whose entity also has rows outside that table (alarms loaded before capture existed,
/// read as version 0: alarm/sql/functions/moa_alarm_rows.sql) reads them here too.
#[derive(Debug, Clone, Copy)]
pub struct PrefixRead {
    pub entity: &'static str,
    pub function: &'static str,
    /// The domain's answer to [`Query::Snapshot`] of the entity, if its rows are not all in
    /// `moa_entity_version`: `snapshot(p_after text, p_limit integer)`, returning one page of
    /// `(key, version, deleted, data)` rows after the key `p_after` in the function's own
    /// key order (alarm/sql/functions/moa_alarm_page.sql). Read models backfill from it.
    pub snapshot: Option<&'static str>,
}

impl Store {
    /// A store whose prefix reads of the entities in `prefix_reads` call the domain's own
    /// function (see [`PrefixRead`]); every other read is the shared one.
    pub fn new(
        settings: &Settings,
        migrations: &'static [Migration],
        prefix_reads: &'static [PrefixRead],
        tasks: &Tasks,
    ) -> Result<Self> {
        let db = db_runtime()?;
        // The pool's own tasks (its reaper, connection set-up) belong on that runtime too.
        let _inside = db.enter();
        Ok(Store {
            pool: db::pool(
                &settings.database_url,
                settings.db_pool_size,
                settings.db_timeout,
                settings.db_statement_timeout,
            )?,
            db,
            database_url: settings.database_url.clone(),
            outbox_wake: Arc::new(Notify::new()),
            migrations,
            schema_source: Some(schema_source(&settings.database_url, settings.database_migrate_url.as_deref())?),
            prefix_reads,
            migrated: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            tasks: tasks.clone(),
        })
    }

    /// The pool, for every message handler (the shared ones here and the domains'): no
    /// connection before this start's migrations are applied (see [`MigratedPool`]).
    pub fn pool(&self) -> MigratedPool {
        MigratedPool { pool: self.pool.clone(), migrated: self.migrated.clone() }
    }

    /// Runs a message's database work on the database runtime and answers with its result:
    /// what every handler returns. The actor itself only hands work out, so the System
    /// arbiter (which also runs the AMQP consumers, the relay and the replica feeds) is not
    /// where statements are built, sent and their rows decoded, and that work spreads over
    /// the runtime's threads. The work runs to its end even if the asker stops waiting,
    /// as a future run in the actor's context did.
    pub fn run<T, F>(&self, work: F) -> ResponseFuture<Result<T>>
    where
        T: Send + 'static,
        F: std::future::Future<Output = Result<T>> + Send + 'static,
    {
        let task = self.db.spawn(work);
        Box::pin(async move {
            task.await.map_err(|e| {
                log::error!("store: a database task failed: {e}");
                Error::StoreGone
            })?
        })
    }

    /// The database runtime, for work a handler starts that outlives its message (e.g. a
    /// streamed list's producer).
    pub fn db_runtime(&self) -> tokio::runtime::Handle {
        self.db.clone()
    }

    pub fn outbox_wake(&self) -> Arc<Notify> {
        self.outbox_wake.clone()
    }

    pub fn migrated_flag(&self) -> Arc<std::sync::atomic::AtomicBool> {
        self.migrated.clone()
    }
}

/// The owner's pool (one connection, dropped once the migrations are applied) if the service
/// migrates itself, and the runtime role to grant.
fn schema_source(database_url: &str, migrate_url: Option<&str>) -> Result<db::SchemaSource> {
    let owner =
        migrate_url.map(|url| db::pool(url, 1, Duration::from_secs(10), Duration::from_secs(60))).transpose()?;
    Ok(db::SchemaSource { owner, runtime_role: db::url_user(database_url)? })
}

impl Actor for Store {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(4096);
        let pool = self.pool.clone();
        let migrations = self.migrations;
        let migrated = self.migrated.clone();
        let wake = self.outbox_wake.clone();
        let source = self.schema_source.take();
        self.tasks.spawn_once_on(&self.db, "migrations", async move {
            let Some(source) = source else { return };
            if let Err(e) = db::migrate_when_reachable(&pool, source, migrations).await {
                // Nothing was served from this database yet (not ready until migrated): the
                // process ends, so an orchestrator keeps the newer version's instances.
                log::error!("refusing to start: {e}");
                std::process::exit(78);
            }
            migrated.store(true, std::sync::atomic::Ordering::SeqCst);
            // Anything committed while nobody listened is picked up by the relay's poll too.
            wake.notify_one();
        });
        let url = self.database_url.clone();
        let wake = self.outbox_wake.clone();
        self.tasks.spawn_on(&self.db, "outbox listener", listen_for_outbox(url, wake));
    }
}

/// The process's database runtime: a multi-thread tokio runtime with one worker per CPU
/// (at least two), shared by every store of the process, built on first use and kept for
/// the process's life (a runtime cannot be dropped from async code).
fn db_runtime() -> Result<tokio::runtime::Handle> {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    if let Some(rt) = RUNTIME.get() {
        return Ok(rt.handle().clone());
    }
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get()).max(2);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name("moa-db")
        .enable_all()
        .build()
        .map_err(|e| Error::Config(format!("cannot start the database runtime: {e}")))?;
    Ok(RUNTIME.get_or_init(|| rt).handle().clone())
}

/// Keeps a LISTEN moa_outbox session open (reconnecting as needed) and turns every
/// notification into a wake-up. NOTIFY is not stored, so this is a wake-up only: the
/// outbox table is the truth and the relay also polls it. A lost session is a warning once
/// (then debug while the database stays away, and info when it is back), so an outage
/// neither floods the log nor goes unsaid.
async fn listen_for_outbox(url: String, wake: Arc<Notify>) {
    let mut failing = false;
    loop {
        let session = async {
            let (client, mut connection) = db::connect_config(&url, Duration::from_secs(10))?.connect(NoTls).await?;
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
            // Ends by itself when `client` is dropped (this session ending, or the listener
            // being stopped): a connection closes when its last client is gone.
            let driver = tokio::spawn(async move {
                let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
                while let Some(msg) = messages.next().await {
                    match msg {
                        Ok(AsyncMessage::Notification(_)) => {
                            if tx.send(()).is_err() {
                                return None;
                            }
                        }
                        Ok(_) => {}
                        Err(e) => return Some(e),
                    }
                }
                None
            });
            client.batch_execute("LISTEN moa_outbox").await?;
            if std::mem::take(&mut failing) {
                log::info!("outbox listener: listening again");
            }
            // A missed notification between reconnects is covered by this wake-up and the poll.
            wake.notify_one();
            while rx.recv().await.is_some() {
                wake.notify_one();
            }
            match driver.await {
                Ok(Some(e)) => Err::<(), Error>(Error::Db(e)),
                _ => Err(Error::DbUnavailable("the LISTEN session ended".into())),
            }
        };
        if let Err(e) = session.await {
            if failing {
                log::debug!("outbox listener: still cannot listen: {e}");
            } else {
                log::warn!("outbox listener: {e}; retrying every second (the relay polls the outbox meanwhile)");
                failing = true;
            }
        }
        tokio::time::sleep(crate::backoff::jitter(Duration::from_secs(1))).await;
    }
}

/// Liveness of the database: `SELECT 1` on a pooled connection.
#[derive(Message)]
#[rtype(result = "Result<()>")]
pub struct Ping;

impl Handler<Ping> for Store {
    type Result = ResponseFuture<Result<()>>;

    fn handle(&mut self, _: Ping, _: &mut Context<Self>) -> Self::Result {
        let pool = self.pool.clone();
        let migrated = self.migrated.clone();
        self.run(async move {
            let conn = pool.get().await?;
            conn.simple_query("SELECT 1").await?;
            if !migrated.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(Error::DbUnavailable("migrations not applied yet".into()));
            }
            Ok(())
        })
    }
}

/// A read of this domain's versioned entities: what snapshots and the RPC fallback ask for.
/// The same enum is the RPC request body (`{"method": "get", "entity": "item", "keys": ["5"]}`).
#[derive(Debug, Clone, Serialize, Deserialize, Message, PartialEq)]
#[rtype(result = "Result<Vec<VersionedRow>>")]
#[serde(tag = "method", rename_all = "snake_case")]
pub enum Query {
    /// One page of every entity (tombstones included), keys ascending, after `after`.
    Snapshot { entity: String, after: Option<String>, limit: u32 },
    /// The given keys; keys never seen are simply absent.
    Get { entity: String, keys: Vec<String> },
    /// Every key starting with one of `prefixes` (an alarm prefix `"<user_id>:"` is a user's
    /// alarms), keys ascending.
    /// The only read of alarms (with `Epoch`): its [`PrefixRead`] also answers the alarms loaded
    /// before capture existed, which have no version row, so `Snapshot`, `Get`, `Digest` and
    /// `Buckets` of alarms would miss those.
    /// Several prefixes in one query: cache misses of many requests asked together
    /// (`replica::misses`); each caller takes the rows whose key starts with its own.
    Prefix { entity: String, prefixes: Vec<String> },
    /// The users holding these access tokens (several: see `Prefix`).
    UsersByToken { tokens: Vec<String> },
    /// A digest of every version the entity has (tombstones included), per bucket of `width`
    /// consecutive versions, so that a replica restored from its own copy can tell which
    /// buckets differ without being sent every row. Answered as rows
    /// ([`crate::replica::digest::BucketDigest::from_row`]) so that it travels the path every
    /// other query does (store, RPC, timeouts).
    Digest { entity: String, width: i64 },
    /// One page of the rows whose versions fall in the given buckets (see `Digest`), versions
    /// ascending, after version `after`.
    Buckets { entity: String, width: i64, buckets: Vec<i64>, after: i64, limit: u32 },
    /// The owner's epoch and the newest version it has handed out, as one row: key `epoch`,
    /// version = that newest version, data = the entity's tombstone horizon (the newest
    /// collected tombstone's version, a JSON number; see [`CollectTombstones`]). Cheap (no
    /// table scan): replicas ask it every few seconds to notice a restored or re-created owner.
    Epoch { entity: String },
}

impl Query {
    /// What is asked, for logs: "prefix", "token", ...
    pub fn kind(&self) -> &'static str {
        match self {
            Query::Snapshot { .. } => "snapshot",
            Query::Get { .. } => "key",
            Query::Prefix { .. } => "prefix",
            Query::UsersByToken { .. } => "token",
            Query::Digest { .. } => "digest",
            Query::Buckets { .. } => "bucket",
            Query::Epoch { .. } => "epoch",
        }
    }

    /// Whether the answer is the entity's rows (not digests or the epoch mark): what
    /// [`crate::entity::outward`] rewrites before the rows leave the store.
    pub fn answers_rows(&self) -> bool {
        !matches!(self, Query::Digest { .. } | Query::Epoch { .. })
    }

    pub fn entity(&self) -> &str {
        match self {
            Query::Snapshot { entity, .. }
            | Query::Get { entity, .. }
            | Query::Prefix { entity, .. }
            | Query::Digest { entity, .. }
            | Query::Buckets { entity, .. }
            | Query::Epoch { entity } => entity,
            Query::UsersByToken { .. } => "user",
        }
    }
}

/// A versioned row and the owner's epoch, read once per statement (an InitPlan).
const ROW_COLUMNS: &str = "key, version, deleted, data, (SELECT moa_epoch())";

/// Ends a LATERAL subquery that reads the rows of one part of a merged read (one token, one
/// prefix): `OFFSET 0` keeps it from being flattened into a join, so each part stays the index
/// probe it is alone. Flattened, the planner (which has no statistics for these expressions:
/// the token index is partial) estimated 0.5 % of the table per token and, for 256 tokens at
/// 1M users, hashed the whole table: 400 ms, past the RPC timeout, for what takes 20 ms.
const PROBE_EACH: &str = "OFFSET 0";

type Conn = bb8::PooledConnection<'static, crate::db::PreparingManager>;

/// A connection for reads that must not run before the migrations (a snapshot taken before
/// the backfill would look empty): "not yet" instead.
/// Runs `sql` in a transaction of its own exempt from `DB_STATEMENT_TIMEOUT_MS`: for work off
/// every request's path that reads or changes whole tables (the persisted copy at start,
/// periodic collection), which the request-sized timeout would cut short.
pub async fn query_untimed(
    client: &mut tokio_postgres::Client,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<Vec<tokio_postgres::Row>> {
    let tx = client.transaction().await?;
    tx.batch_execute("SET LOCAL statement_timeout = 0").await?;
    let rows = tx.query(sql, params).await?;
    tx.commit().await?;
    Ok(rows)
}

/// The pool as domain handlers get it: a connection only once the migrations of this start
/// are applied, `Error::NotMigrated` (a 503, or a message held and tried again) before. A
/// handler must neither run against an older schema nor take the connections the migration
/// needs: at a restart under load, the views and writes queued for the new instance took every
/// connection of the pool while the migration waited for one.
#[derive(Clone)]
pub struct MigratedPool {
    pool: Pool,
    migrated: Arc<std::sync::atomic::AtomicBool>,
}

impl MigratedPool {
    pub async fn get(&self) -> Result<Conn> {
        if !self.migrated.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(Error::NotMigrated);
        }
        Ok(self.pool.get_owned().await?)
    }
}

/// A `json`/`jsonb` column as its text, unparsed (see [`RawJson`]).
pub struct RawJsonColumn(pub RawJson);

impl<'a> FromSql<'a> for RawJsonColumn {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> std::result::Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        // jsonb's binary form is a version byte (1) and the text.
        let text = match (ty == &Type::JSONB, raw.split_first()) {
            (false, _) => raw,
            (true, Some((1, text))) => text,
            (true, _) => return Err("unsupported jsonb format version".into()),
        };
        Ok(RawJsonColumn(RawValue::from_string(std::str::from_utf8(text)?.to_owned())?))
    }

    /// SQL NULL is JSON `null`: a row with nothing to say beyond its key (an unversioned
    /// alarm, `moa_alarm_rows`).
    fn from_sql_null(_: &Type) -> std::result::Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(RawJsonColumn(RawValue::from_string("null".to_owned())?))
    }

    fn accepts(ty: &Type) -> bool {
        ty == &Type::JSON || ty == &Type::JSONB
    }
}

/// `key, version, deleted, data, epoch` rows as [`VersionedRow`]s.
pub fn to_rows(rows: Vec<tokio_postgres::Row>) -> Result<Vec<VersionedRow>> {
    to_rows_at(rows, 0)
}

/// Like [`to_rows`], for rows whose `key, version, deleted, data, epoch` start at column
/// `first`. Rows of one statement share one epoch, so it is allocated once.
pub fn to_rows_at(rows: Vec<tokio_postgres::Row>, first: usize) -> Result<Vec<VersionedRow>> {
    let mut epoch: Option<Epoch> = None;
    rows.into_iter()
        .map(|r| {
            let text: &str = r.try_get(first + 4)?;
            let e = match &epoch {
                Some(e) if &**e == text => e.clone(),
                _ => epoch.insert(Epoch::from(text)).clone(),
            };
            Ok(VersionedRow {
                key: r.try_get(first)?,
                version: r.try_get(first + 1)?,
                deleted: r.try_get(first + 2)?,
                data: r.try_get::<_, RawJsonColumn>(first + 3)?.0,
                epoch: Some(e),
            })
        })
        .collect()
}

impl Handler<Query> for Store {
    type Result = ResponseFuture<Result<Vec<VersionedRow>>>;

    fn handle(&mut self, q: Query, _: &mut Context<Self>) -> Self::Result {
        let pool = self.pool();
        let domain_read = self.prefix_reads.iter().find(|r| r.entity == q.entity()).copied();
        let prefix_read = domain_read.map(|r| r.function);
        let snapshot_read = domain_read.and_then(|r| r.snapshot);
        let handed = std::time::Instant::now();
        self.run(async move {
            let started = std::time::Instant::now();
            let conn = pool.get().await?;
            let pooled = std::time::Instant::now();
            let timing = QueryTiming { handed, started, pooled };
            let rows = match &q {
                Query::Snapshot { after, limit, .. } if snapshot_read.is_some() => {
                    let limit = i32::try_from(*limit).unwrap_or(i32::MAX).clamp(1, 100_000);
                    // The function's name is the domain's constant, never a request's.
                    let function = snapshot_read.unwrap_or_default();
                    conn.query_prepared(&format!("SELECT {ROW_COLUMNS} FROM {function}($1, $2)"), &[after, &limit])
                        .await?
                }
                Query::Snapshot { entity, after, limit } => {
                    let limit = i64::from(*limit).clamp(1, 100_000);
                    conn.query_prepared(
                        &format!(
                            "SELECT {ROW_COLUMNS} FROM moa_entity_version
                             WHERE entity = $1 AND ($2::text IS NULL OR key > $2)
                             ORDER BY key LIMIT $3"
                        ),
                        &[entity, after, &limit],
                    )
                    .await?
                }
                Query::Get { entity, keys } => {
                    conn.query_prepared(
                        &format!("SELECT {ROW_COLUMNS} FROM moa_entity_version WHERE entity = $1 AND key = ANY($2)"),
                        &[entity, keys],
                    )
                    .await?
                }
                Query::Prefix { entity, prefixes } => match prefix_read {
                    // The function's name is the domain's constant, never a request's.
                    Some(function) => {
                        conn.query_prepared(
                            &format!("SELECT {ROW_COLUMNS} FROM {function}($1) ORDER BY key"),
                            &[prefixes],
                        )
                        .await?
                    }
                    None => {
                        // Ranges on the primary key: [prefix, prefix + U+FFFF) for each, one
                        // index probe per prefix (see `PROBE_EACH`).
                        conn.query_prepared(
                            &format!(
                                "SELECT {ROW_COLUMNS} FROM (SELECT DISTINCT unnest($2::text[]) AS p) p
                                 CROSS JOIN LATERAL (SELECT * FROM moa_entity_version v
                                     WHERE v.entity = $1 AND v.key >= p.p AND v.key < p.p || chr(65535)
                                     {PROBE_EACH}) v
                                 ORDER BY key"
                            ),
                            &[entity, prefixes],
                        )
                        .await?
                    }
                },
                Query::Digest { entity, width } => {
                    // md5 of the bucket's versions in order, as text: the replica computes the
                    // same string from what it holds (see replica::digest).
                    conn.query_prepared(
                        "SELECT (version / $2)::text, count(*), false,
                                to_jsonb(md5(string_agg(version::text, ',' ORDER BY version))),
                                (SELECT moa_epoch())
                         FROM moa_entity_version WHERE entity = $1 GROUP BY version / $2",
                        &[entity, &(*width).max(1)],
                    )
                    .await?
                }
                Query::Buckets { entity, width, buckets, after, limit } => {
                    let limit = i64::from(*limit).clamp(1, 100_000);
                    conn.query_prepared(
                        &format!(
                            "SELECT {ROW_COLUMNS} FROM moa_entity_version
                             WHERE entity = $1 AND version / $2 = ANY($3) AND version > $4
                             ORDER BY version LIMIT $5"
                        ),
                        &[entity, &(*width).max(1), buckets, after, &limit],
                    )
                    .await?
                }
                Query::Epoch { entity } => {
                    conn.query_prepared(
                        "SELECT 'epoch', moa_max_version(), false, to_jsonb(moa_tombstone_horizon($1)), e.epoch
                         FROM (SELECT moa_epoch() AS epoch) e",
                        &[entity],
                    )
                    .await?
                }
                Query::UsersByToken { tokens } => {
                    conn.query_prepared(
                        &format!(
                            "SELECT {ROW_COLUMNS} FROM (SELECT DISTINCT unnest($1::text[]) AS t) t
                             CROSS JOIN LATERAL (SELECT * FROM moa_entity_version v
                                 WHERE v.entity = 'user' AND v.data->>'access_token' = t.t {PROBE_EACH}) v"
                        ),
                        &[tokens],
                    )
                    .await?
                }
            };
            timing.log_if_slow(&q);
            let mut rows = to_rows(rows)?;
            if q.answers_rows() {
                for row in &mut rows {
                    if let Some(data) = crate::entity::outward(q.entity(), &row.data) {
                        row.data = data;
                    }
                }
            }
            Ok(rows)
        })
    }
}

/// Where a slow RPC answer spent its time in the store, logged at debug beside the RPC
/// server's own line (`common::amqp::rpc`): the rest of that line's time is the actor's
/// mailbox (the System arbiter, shared with the consumers) and the rows' decoding.
struct QueryTiming {
    handed: std::time::Instant,
    started: std::time::Instant,
    pooled: std::time::Instant,
}

impl QueryTiming {
    const SLOW: std::time::Duration = std::time::Duration::from_millis(50);

    fn log_if_slow(&self, q: &Query) {
        let ran = self.pooled.elapsed();
        if self.handed.elapsed() > Self::SLOW && log::log_enabled!(log::Level::Debug) {
            let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
            log::debug!(
                "store: a slow {} read waited {:.1} ms for the database runtime, {:.1} ms for a connection, and ran {:.1} ms",
                q.kind(),
                ms(self.started - self.handed),
                ms(self.pooled - self.started),
                ms(ran)
            );
        }
    }
}

/// A transaction for bookkeeping that may be lost in a crash without harm: outbox deletions
/// (a row not deleted is published again; consumers drop duplicates) and persisted
/// replica rows (re-synced from the owner). Its commit does not wait for the WAL flush, so it
/// neither waits for nor adds to the flushes the requests' own commits wait on.
pub(crate) async fn bookkeeping<'c>(
    conn: &'c mut bb8::PooledConnection<'_, crate::db::PreparingManager>,
) -> Result<tokio_postgres::Transaction<'c>> {
    bookkeeping_with(conn, "").await
}

/// [`bookkeeping`], with more `SET LOCAL`s sent in the same round trip.
async fn bookkeeping_with<'c>(
    conn: &'c mut bb8::PooledConnection<'_, crate::db::PreparingManager>,
    more_settings: &str,
) -> Result<tokio_postgres::Transaction<'c>> {
    let tx = conn.transaction().await?;
    tx.batch_execute(&format!("SET LOCAL synchronous_commit = off; {more_settings}")).await?;
    Ok(tx)
}

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

/// An outbox payload as it may leave: a change event's data through
/// [`crate::entity::outward`] (a user's token becomes its hash). Views and other kinds'
/// events pass unparsed: only a payload naming an entity `outward` rewrites is taken apart.
fn outward_event(body: String) -> String {
    #[derive(Deserialize)]
    struct Head<'a> {
        #[serde(borrow)]
        entity: Option<std::borrow::Cow<'a, str>>,
    }
    let entity = match serde_json::from_str::<Head>(&body) {
        Ok(Head { entity: Some(e) }) if crate::entity::rewritten_outward(&e) => e.into_owned(),
        _ => return body,
    };
    let Ok(mut event) = serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&body) else {
        return body;
    };
    if let Some(data) = event.get("data").and_then(|d| serde_json::value::to_raw_value(d).ok()) {
        if let Some(out) = crate::entity::outward(&entity, &data) {
            let value = serde_json::from_str(out.get()).unwrap_or(serde_json::Value::Null);
            event.insert("data".into(), value);
        }
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

/// Which of the outbox's rows a relay lane publishes (`amqp::relay`): views apart from the
/// change events, so that slow views never hold up a change event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboxLane {
    /// Rows of every exchange but the views'.
    Changes,
    /// Rows of the views exchange.
    Views,
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
        Box::pin(async move {
            // Before the migrations the outbox may not have its columns yet: "not yet"
            // (`NotMigrated`), which the relay does not report as a failure.
            let mut conn = pool.get().await?;
            // The outbox's statistics say empty (it is, after each vacuum), so the planner
            // would scan the heap and sort; under load the heap holds thousands of rows deleted
            // since the last vacuum, and the index on id reaches the oldest live ones at once.
            // Fresh rows walk the primary key past the (few) backing-off ones; due rows come
            // from the partial index `moa_outbox_retry`.
            // Each lane skips the other's rows ($2: the views exchange, $3: this lane is views').
            let pick = match msg.rows {
                DrainRows::Fresh => {
                    "SELECT id FROM moa_outbox WHERE attempts = 0 AND (exchange = $2) = $3
                     ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED"
                }
                DrainRows::Due => {
                    "SELECT id FROM moa_outbox WHERE attempts > 0 AND next_attempt_at <= now() AND (exchange = $2) = $3
                     ORDER BY next_attempt_at, id LIMIT $1 FOR UPDATE SKIP LOCKED"
                }
            };
            let views = msg.lane == OutboxLane::Views;
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
            let rows = match tx.query(&drain, &[&msg.limit, &crate::amqp::topology::VIEWS_EXCHANGE, &views]).await {
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
                        body: outward_event(r.try_get::<_, String>(3)?).into_bytes(),
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

/// Upserts replica rows, keeping the newer version of each. Rows of an epoch other than the
/// persisted copy's current one (`moa_replica_epoch`, set by [`ResetReplica`]) never replace a
/// row of the current epoch, and are never loaded.
#[derive(Message)]
#[rtype(result = "Result<u64>")]
pub struct PersistReplica {
    pub entity: &'static str,
    pub rows: Vec<VersionedRow>,
}

impl Handler<PersistReplica> for Store {
    type Result = ResponseFuture<Result<u64>>;

    fn handle(&mut self, msg: PersistReplica, _: &mut Context<Self>) -> Self::Result {
        let pool = self.pool();
        self.run(async move {
            let mut conn = pool.get().await?;
            let tx = bookkeeping(&mut conn).await?;
            let written = upsert_replica_rows(&tx, msg.entity, &msg.rows).await?;
            tx.commit().await?;
            Ok(written)
        })
    }
}

async fn upsert_replica_rows(tx: &tokio_postgres::Transaction<'_>, entity: &str, rows: &[VersionedRow]) -> Result<u64> {
    let mut written = 0;
    for chunk in rows.chunks(5000) {
        let keys: Vec<&str> = chunk.iter().map(|r| r.key.as_str()).collect();
        let versions: Vec<i64> = chunk.iter().map(|r| r.version).collect();
        let deleted: Vec<bool> = chunk.iter().map(|r| r.deleted).collect();
        let data: Vec<&str> = chunk.iter().map(|r| r.data.get()).collect();
        let epochs: Vec<&str> = chunk.iter().map(|r| r.epoch.as_deref().unwrap_or("")).collect();
        written += tx
            .execute(
                "INSERT INTO moa_replica AS r (entity, key, version, deleted, data, epoch)
                 SELECT DISTINCT ON (k) $1, k, v, d, j::jsonb, e
                 FROM unnest($2::text[], $3::int8[], $4::bool[], $5::text[], $6::text[]) AS t(k, v, d, j, e)
                 ORDER BY k, v DESC
                 ON CONFLICT (entity, key) DO UPDATE
                    SET version = EXCLUDED.version, deleted = EXCLUDED.deleted, data = EXCLUDED.data,
                        epoch = EXCLUDED.epoch
                    WHERE (r.epoch = EXCLUDED.epoch AND r.version < EXCLUDED.version)
                       OR (r.epoch <> EXCLUDED.epoch AND EXCLUDED.epoch =
                           (SELECT epoch FROM moa_replica_epoch WHERE entity = $1))",
                &[&entity, &keys, &versions, &deleted, &data, &epochs],
            )
            .await?;
    }
    Ok(written)
}

/// Replaces the persisted copy of `entity` with `rows` of a new owner epoch: the owner was
/// re-created or restored, and what was persisted belongs to its old history.
#[derive(Message)]
#[rtype(result = "Result<u64>")]
pub struct ResetReplica {
    pub entity: &'static str,
    pub epoch: Epoch,
    pub rows: Vec<VersionedRow>,
}

impl Handler<ResetReplica> for Store {
    type Result = ResponseFuture<Result<u64>>;

    fn handle(&mut self, msg: ResetReplica, _: &mut Context<Self>) -> Self::Result {
        let pool = self.pool();
        self.run(async move {
            let mut conn = pool.get().await?;
            let tx = bookkeeping(&mut conn).await?;
            tx.execute(
                "INSERT INTO moa_replica_epoch (entity, epoch) VALUES ($1, $2)
                 ON CONFLICT (entity) DO UPDATE SET epoch = EXCLUDED.epoch",
                &[&msg.entity, &&*msg.epoch],
            )
            .await?;
            tx.execute("DELETE FROM moa_replica WHERE entity = $1 AND epoch <> $2", &[&msg.entity, &&*msg.epoch])
                .await?;
            let written = upsert_replica_rows(&tx, msg.entity, &msg.rows).await?;
            tx.commit().await?;
            Ok(written)
        })
    }
}

/// Every persisted replica row of `entity` in the persisted copy's epoch.
#[derive(Message)]
#[rtype(result = "Result<Vec<VersionedRow>>")]
pub struct LoadReplica {
    pub entity: &'static str,
}

impl Handler<LoadReplica> for Store {
    type Result = ResponseFuture<Result<Vec<VersionedRow>>>;

    fn handle(&mut self, msg: LoadReplica, _: &mut Context<Self>) -> Self::Result {
        let pool = self.pool();
        self.run(async move {
            let mut conn = pool.get().await?;
            // One read of the whole persisted copy (1M alarms at scale) at start.
            let rows = query_untimed(
                &mut conn,
                "SELECT r.key, r.version, r.deleted, r.data, r.epoch
                 FROM moa_replica r JOIN moa_replica_epoch e ON e.entity = r.entity AND e.epoch = r.epoch
                 WHERE r.entity = $1",
                &[&msg.entity],
            )
            .await?;
            to_rows(rows)
        })
    }
}

/// Writes cache entries into the hot copy (`moa_cache_entry`): `clear` first drops every
/// entry of the cache (its owner's history changed), then each group is saved (`Some((epoch,
/// rows as JSON))`) or deleted (`None`: evicted).
#[derive(Message, Clone)]
#[rtype(result = "Result<()>")]
pub struct SaveCacheEntries {
    pub cache: &'static str,
    pub clear: bool,
    pub entries: std::collections::BTreeMap<i64, Option<(String, String)>>,
}

impl Handler<SaveCacheEntries> for Store {
    type Result = ResponseFuture<Result<()>>;

    fn handle(&mut self, msg: SaveCacheEntries, _: &mut Context<Self>) -> Self::Result {
        let pool = self.pool();
        self.run(async move {
            let mut conn = pool.get().await?;
            // Several thousand entries a second while a cold cache fills: prepared once.
            let (delete, upsert) =
                (conn.prepared(DELETE_CACHE_ENTRIES).await?, conn.prepared(UPSERT_CACHE_ENTRIES).await?);
            let tx = bookkeeping(&mut conn).await?;
            if msg.clear {
                tx.execute("DELETE FROM moa_cache_entry WHERE cache = $1", &[&msg.cache]).await?;
            }
            let (mut groups, mut epochs, mut rows, mut gone) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for (group, entry) in &msg.entries {
                match entry {
                    Some((epoch, json)) => {
                        groups.push(*group);
                        epochs.push(epoch.as_str());
                        rows.push(json.as_str());
                    }
                    None => gone.push(*group),
                }
            }
            let written = async {
                if !gone.is_empty() {
                    tx.execute(&delete, &[&msg.cache, &gone]).await?;
                }
                if !groups.is_empty() {
                    tx.execute(&upsert, &[&msg.cache, &groups, &epochs, &rows]).await?;
                }
                tx.commit().await
            }
            .await;
            if written.is_err() {
                conn.forget(DELETE_CACHE_ENTRIES);
                conn.forget(UPSERT_CACHE_ENTRIES);
            }
            Ok(written?)
        })
    }
}

const DELETE_CACHE_ENTRIES: &str = "DELETE FROM moa_cache_entry WHERE cache = $1 AND grp = ANY($2)";
const UPSERT_CACHE_ENTRIES: &str = "INSERT INTO moa_cache_entry (cache, grp, epoch, entry, saved_at)
     SELECT $1, g, e, r::jsonb, now() FROM unnest($2::int8[], $3::text[], $4::text[]) AS t(g, e, r)
     ON CONFLICT (cache, grp) DO UPDATE
        SET epoch = EXCLUDED.epoch, entry = EXCLUDED.entry, saved_at = EXCLUDED.saved_at";

/// The `limit` most recently saved entries of a cache's hot copy: `(group, epoch, rows as
/// JSON)`. Older entries beyond the limit (left behind by evictions a crash did not write)
/// are deleted.
#[derive(Message)]
#[rtype(result = "Result<Vec<(i64, String, String)>>")]
pub struct LoadCacheEntries {
    pub cache: &'static str,
    pub limit: u64,
}

impl Handler<LoadCacheEntries> for Store {
    type Result = ResponseFuture<Result<Vec<(i64, String, String)>>>;

    fn handle(&mut self, msg: LoadCacheEntries, _: &mut Context<Self>) -> Self::Result {
        let pool = self.pool();
        self.run(async move {
            let mut conn = pool.get().await?;
            let limit = i64::try_from(msg.limit).unwrap_or(i64::MAX);
            let rows = query_untimed(
                &mut conn,
                "SELECT grp, epoch, entry::text FROM moa_cache_entry WHERE cache = $1
                 ORDER BY saved_at DESC LIMIT $2",
                &[&msg.cache, &limit],
            )
            .await?;
            query_untimed(
                &mut conn,
                "DELETE FROM moa_cache_entry WHERE cache = $1 AND grp IN (
                     SELECT grp FROM moa_cache_entry WHERE cache = $1 ORDER BY saved_at DESC OFFSET $2)",
                &[&msg.cache, &limit],
            )
            .await?;
            rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?))).collect()
        })
    }
}

/// Collects the tombstones older than `retention` (`moa_collect_tombstones`,
/// `common/sql/0022_collect_tombstones.sql`); answers how many. Run periodically by every
/// instance (they take turns), off every request's path: exempt from the statement timeout.
#[derive(Message)]
#[rtype(result = "Result<i64>")]
pub struct CollectTombstones {
    pub retention: Duration,
}

impl Handler<CollectTombstones> for Store {
    type Result = ResponseFuture<Result<i64>>;

    fn handle(&mut self, msg: CollectTombstones, _: &mut Context<Self>) -> Self::Result {
        let pool = self.pool();
        self.run(async move {
            let mut conn = pool.get().await?;
            let sql = "SELECT moa_collect_tombstones(make_interval(secs => $1))";
            let rows = query_untimed(&mut conn, sql, &[&msg.retention.as_secs_f64()]).await?;
            let row = rows.first().ok_or_else(|| Error::Malformed("moa_collect_tombstones answered no row".into()))?;
            Ok(row.try_get(0)?)
        })
    }
}

/// How long a tombstone is kept: a replica away (and its persisted copy) for longer rebuilds
/// from its owner's snapshot when it comes back, instead of catching up by digest.
pub const TOMBSTONE_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
/// How often each instance collects tombstones.
pub const TOMBSTONE_COLLECTION_EVERY: Duration = Duration::from_secs(3600);

/// The periodic collection (owned by the service's [`crate::tasks::Tasks`]). A failure (the
/// database down) is retried at the next period.
pub async fn collect_tombstones_periodically(store: Addr<Store>) {
    loop {
        tokio::time::sleep(TOMBSTONE_COLLECTION_EVERY).await;
        match store.send(CollectTombstones { retention: TOMBSTONE_RETENTION }).await {
            Ok(Ok(n)) if n > 0 => {
                log::info!("collected {n} tombstones older than {} days", TOMBSTONE_RETENTION.as_secs() / 86400)
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => log::info!("tombstone collection failed, retried in an hour: {e}"),
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_json_column_is_its_text_and_sql_null_is_json_null() {
        let col = RawJsonColumn::from_sql(&Type::JSONB, b"\x01{\"a\": 1}").unwrap();
        assert_eq!(col.0.get(), r#"{"a": 1}"#);
        assert_eq!(RawJsonColumn::from_sql(&Type::JSON, b"[1]").unwrap().0.get(), "[1]");
        assert!(RawJsonColumn::from_sql(&Type::JSONB, b"\x02{}").is_err(), "an unknown jsonb format is refused");
        assert_eq!(RawJsonColumn::from_sql_null(&Type::JSONB).unwrap().0.get(), "null");
    }
}
