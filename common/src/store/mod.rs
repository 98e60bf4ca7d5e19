//! The store actor: the only code that runs SQL against a service's own database.
//!
//! It owns the bb8 pool. Handlers, the RPC server and the outbox relay send it messages;
//! each message's work runs as its own future, so the actor never serializes requests.
//! Domain crates add their own messages with `impl Handler<TheirMessage> for Store`.
//!
//! This module is the actor itself: its pool (and [`MigratedPool`], the pool as handlers get
//! it), the schema migrations, the database runtime, the LISTEN session that wakes the outbox
//! relay, [`Ping`], the transactions every handler builds on (`bookkeeping`,
//! [`query_untimed`]) and the collection of its own tombstones. The shared messages live
//! beside what sends them: the RPC reads in [`query`], the outbox drain in
//! [`crate::amqp::outbox`], the replicas' persisted copy in [`crate::replica::persist`] and
//! the caches' hot copy in [`crate::replica::cache::hot_copy`].

pub mod query;

use std::{sync::Arc, time::Duration};

use actix::prelude::*;
use futures_util::StreamExt;
use tokio::sync::Notify;
use tokio_postgres::{AsyncMessage, NoTls};

use crate::{
    db::{self, Migration, Pool},
    error::{Error, Result},
    settings::Settings,
    tasks::Tasks,
};
use query::OwnEntity;

pub struct Store {
    pool: Pool,
    /// Where every statement runs (see [`Store::run`]).
    db: tokio::runtime::Handle,
    /// The runtime itself, owned here and shut down by the service's stop ([`DbRuntime::shutdown`]).
    runtime: Arc<DbRuntime>,
    database_url: String,
    /// Woken by NOTIFY moa_outbox (a change was committed) so the relay need not wait for its poll.
    outbox_wake: Arc<Notify>,
    migrations: &'static [Migration],
    /// Where this start's schema comes from (taken by the migrations task).
    schema_source: Option<db::SchemaSource>,
    /// The domain's own SQL for some reads of some entities (see [`OwnEntity`]).
    pub(crate) own_entities: &'static [OwnEntity],
    migrated: Arc<std::sync::atomic::AtomicBool>,
    /// Owns the migrations and the LISTEN session.
    tasks: Tasks,
}

impl Store {
    /// A store whose reads of the entities in `own_entities` call the domain's own functions
    /// where it has them (see [`OwnEntity`]); every other read is the shared one.
    pub fn new(
        settings: &Settings,
        migrations: &'static [Migration],
        own_entities: &'static [OwnEntity],
        tasks: &Tasks,
    ) -> Result<Self> {
        let runtime = Arc::new(DbRuntime::new()?);
        let db = runtime.handle();
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
            runtime,
            database_url: settings.database_url.clone(),
            outbox_wake: Arc::new(Notify::new()),
            migrations,
            schema_source: Some(schema_source(&settings.database_url, settings.database_migrate_url.as_deref())?),
            own_entities,
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

    /// The database runtime as its owner holds it: the service shuts it down at its stop.
    pub fn runtime(&self) -> Arc<DbRuntime> {
        self.runtime.clone()
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

/// A store's database runtime: a multi-thread tokio runtime with one worker per CPU (at
/// least two). Owned by its store and shut down by the service's stop, after every task that
/// uses it has stopped: what is still alive on it then (the pool's connections and reaper,
/// a request's leftovers) is dropped, not left behind. A runtime cannot be dropped from async
/// code, so the shutdown runs on a thread of its own; dropped unshut (a test's store), it
/// shuts down in the background.
pub struct DbRuntime {
    runtime: std::sync::Mutex<Option<tokio::runtime::Runtime>>,
    handle: tokio::runtime::Handle,
}

impl DbRuntime {
    fn new() -> Result<DbRuntime> {
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get()).max(2);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("moa-db")
            .enable_all()
            .build()
            .map_err(|e| Error::Config(format!("cannot start the database runtime: {e}")))?;
        Ok(DbRuntime { handle: rt.handle().clone(), runtime: std::sync::Mutex::new(Some(rt)) })
    }

    pub fn handle(&self) -> tokio::runtime::Handle {
        self.handle.clone()
    }

    /// Shuts the runtime down, waiting at most `grace` for its tasks to yield; answers how many
    /// tasks were alive on it when the stop began (0 after a second call).
    pub async fn shutdown(&self, grace: Duration) -> usize {
        let Some(rt) = self.runtime.lock().unwrap_or_else(|p| p.into_inner()).take() else { return 0 };
        let alive = rt.metrics().num_alive_tasks();
        let (done, stopped) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            rt.shutdown_timeout(grace);
            let _ = done.send(());
        });
        let _ = stopped.await;
        alive
    }
}

impl Drop for DbRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.lock().unwrap_or_else(|p| p.into_inner()).take() {
            rt.shutdown_background();
        }
    }
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
pub(crate) async fn bookkeeping_with<'c>(
    conn: &'c mut bb8::PooledConnection<'_, crate::db::PreparingManager>,
    more_settings: &str,
) -> Result<tokio_postgres::Transaction<'c>> {
    let tx = conn.transaction().await?;
    tx.batch_execute(&format!("SET LOCAL synchronous_commit = off; {more_settings}")).await?;
    Ok(tx)
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

    #[tokio::test]
    async fn the_database_runtime_is_shut_down_by_its_owner_and_drops_what_still_runs_on_it() {
        let runtime = DbRuntime::new().expect("a runtime");
        let dropped = Arc::new(std::sync::atomic::AtomicBool::new(false));
        struct SetOnDrop(Arc<std::sync::atomic::AtomicBool>);
        impl Drop for SetOnDrop {
            fn drop(&mut self) {
                self.0.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        }
        let guard = SetOnDrop(dropped.clone());
        let (started, running) = tokio::sync::oneshot::channel();
        runtime.handle().spawn(async move {
            let _guard = guard;
            let _ = started.send(());
            std::future::pending::<()>().await
        });
        running.await.expect("the task started");
        assert_eq!(runtime.shutdown(Duration::from_secs(1)).await, 1, "the one task alive on it");
        assert!(dropped.load(std::sync::atomic::Ordering::SeqCst), "its future was dropped");
        assert_eq!(runtime.shutdown(Duration::from_secs(1)).await, 0, "a second stop finds nothing");
        let late = runtime.handle().spawn(async {});
        assert!(late.await.is_err(), "nothing runs on it any more");
    }
}
