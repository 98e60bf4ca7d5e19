//! PostgreSQL: the bb8 pool (owned by the store actor) and the migration runner.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use bb8::ManageConnection;
use bb8_postgres::PostgresConnectionManager;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row, Statement};

use crate::error::{Error, Result};

pub type Pool = bb8::Pool<PreparingManager>;

/// A pooled connection: a `tokio_postgres::Client` (which it derefs to) that keeps the
/// statements it prepared for [`PgClient::query_prepared`]. The request-path statements (an
/// RPC answer, an alarm batch, an outbox drain, a hot-copy write) run thousands of times a
/// second; sent as text each time, PostgreSQL parsed and planned every one (in a cold pass,
/// parsing and planning were ~40 % of the user database's CPU, with a second round trip for
/// the unnamed prepare). Named once per connection, they are bound and executed.
///
/// With standbys (`scripts/up --pg-standbys`) the URL lists every member with
/// `target_session_attrs=read-write`, so a connection is only ever opened to the primary. A
/// connection whose server stops taking writes (a primary being demoted in a switchover answers
/// SQLSTATE 25006 until it restarts as a standby) is marked and dropped when it returns to the
/// pool ([`PgClient::note_error`]), so the next one is opened to the new primary; one whose
/// server died is closed and dropped the same way.
pub struct PgClient {
    client: tokio_postgres::Client,
    statements: Mutex<HashMap<String, Statement>>,
    read_only: AtomicBool,
}

/// More than the code has distinct statements: a bound, should one ever be built from data.
const MAX_PREPARED: usize = 64;

impl PgClient {
    fn new(client: tokio_postgres::Client) -> Self {
        PgClient { client, statements: Mutex::new(HashMap::new()), read_only: AtomicBool::new(false) }
    }

    /// Notes what an error of this connection says about its server: a server that refuses
    /// writes (SQLSTATE 25006 read_only_sql_transaction) is no primary any more, and the
    /// connection is dropped by the pool instead of being handed out again.
    pub fn note_error(&self, e: &tokio_postgres::Error) {
        if e.code() == Some(&SqlState::READ_ONLY_SQL_TRANSACTION) && !self.read_only.swap(true, Ordering::Relaxed) {
            log::warn!("the database server refuses writes (no primary any more): the connection is dropped");
        }
    }

    /// True once [`PgClient::note_error`] saw the server refuse writes.
    pub fn is_read_only(&self) -> bool {
        self.read_only.load(Ordering::Relaxed)
    }

    /// `sql` prepared on this connection, once.
    pub async fn prepared(&self, sql: &str) -> std::result::Result<Statement, tokio_postgres::Error> {
        if let Some(s) = self.statements.lock().unwrap_or_else(|p| p.into_inner()).get(sql) {
            return Ok(s.clone());
        }
        let statement = self.client.prepare(sql).await?;
        let mut statements = self.statements.lock().unwrap_or_else(|p| p.into_inner());
        if statements.len() >= MAX_PREPARED {
            statements.clear();
        }
        statements.insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }

    /// Forgets `sql`'s statement, so that it is prepared again: after any failure, in case
    /// the statement itself is what failed.
    pub fn forget(&self, sql: &str) {
        self.statements.lock().unwrap_or_else(|p| p.into_inner()).remove(sql);
    }

    /// Runs `sql` as a statement prepared on this connection (see [`PgClient`]). A statement
    /// whose result type a schema change altered since it was prepared (another instance's
    /// migration in a rolling deploy, an operator's `ALTER`) is refused before it runs
    /// ("cached plan must not change result type"): it is prepared again and run once more.
    pub async fn query_prepared(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> std::result::Result<Vec<Row>, tokio_postgres::Error> {
        let statement = self.prepared(sql).await.inspect_err(|e| self.note_error(e))?;
        match self.client.query(&statement, params).await.inspect_err(|e| self.note_error(e)) {
            Err(e) if e.code() == Some(&SqlState::FEATURE_NOT_SUPPORTED) => {
                log::info!("a prepared statement is prepared again: {e}");
                self.forget(sql);
                let statement = self.prepared(sql).await?;
                self.client.query(&statement, params).await.inspect_err(|_| self.forget(sql))
            }
            Err(e) => {
                self.forget(sql);
                Err(e)
            }
            rows => rows,
        }
    }
}

impl std::ops::Deref for PgClient {
    type Target = tokio_postgres::Client;
    fn deref(&self) -> &Self::Target {
        &self.client
    }
}

impl std::ops::DerefMut for PgClient {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.client
    }
}

/// bb8-postgres's manager, handing out [`PgClient`]s.
pub struct PreparingManager(PostgresConnectionManager<NoTls>);

impl ManageConnection for PreparingManager {
    type Connection = PgClient;
    type Error = tokio_postgres::Error;

    async fn connect(&self) -> std::result::Result<PgClient, Self::Error> {
        self.0.connect().await.map(PgClient::new)
    }

    async fn is_valid(&self, conn: &mut PgClient) -> std::result::Result<(), Self::Error> {
        self.0.is_valid(&mut conn.client).await
    }

    fn has_broken(&self, conn: &mut PgClient) -> bool {
        conn.is_read_only() || self.0.has_broken(&mut conn.client)
    }
}

/// One step of a service's own database schema, of one of two kinds:
/// - a versioned migration (tables, indexes, triggers, backfills): applied once, in version
///   order, each in its own transaction, and recorded in `moa_migrations`;
/// - a function file ([`Migration::function`], version [`FUNCTION`]): the one, live definition
///   of one SQL function, named after it (`*/sql/functions/<name>.sql`, an idempotent
///   `CREATE OR REPLACE FUNCTION`), applied on every start after the versioned migrations, like
///   Flyway's repeatable migrations. Editing the file changes the function at the next start,
///   without a new migration. See [`migrate`] and docs/architecture.md, "Where the SQL lives".
pub struct Migration {
    pub version: i32,
    pub name: &'static str,
    pub sql: &'static str,
}

/// The version of a function file: it has none (it is never recorded in `moa_migrations`).
pub const FUNCTION: i32 = 0;

impl Migration {
    /// The function file of SQL function `name` (whose definition `sql` is).
    pub const fn function(name: &'static str, sql: &'static str) -> Migration {
        Migration { version: FUNCTION, name, sql }
    }

    pub const fn is_function(&self) -> bool {
        self.version == FUNCTION
    }
}

/// The change-capture objects every domain database gets (outbox, versions, trigger function).
pub const CHANGE_CAPTURE: Migration =
    Migration { version: 1, name: "change capture", sql: include_str!("../sql/0001_change_capture.sql") };

/// The table other domains' replicas are persisted in (see `replica::persist`).
pub const REPLICA_TABLE: Migration =
    Migration { version: 2, name: "persisted replicas", sql: include_str!("../sql/0002_replica.sql") };

/// Delete-on-publish outbox and a one-statement capture trigger (after the two above).
pub const LEAN_OUTBOX: Migration =
    Migration { version: 3, name: "lean outbox", sql: include_str!("../sql/0003_lean_outbox.sql") };

/// The owner epoch (`moa_epoch()`) and the epoch of persisted replicas (after the three above).
pub const OWNER_EPOCH: Migration =
    Migration { version: 20, name: "owner epoch", sql: include_str!("../sql/0020_owner_epoch.sql") };
/// Tombstones collected after a retention period, and the horizon replicas compare with
/// (`moa_collect_tombstones`, `moa_tombstone_horizon`; see `store::CollectTombstones`).
pub const TOMBSTONES: Migration =
    Migration { version: 22, name: "tombstone collection", sql: include_str!("../sql/0022_collect_tombstones.sql") };
/// Outbox rows that could not be delivered back off instead of holding back the rows after
/// them (`attempts`, `next_attempt_at`; see `amqp::outbox::DrainOutbox`).
pub const OUTBOX_RETRY: Migration =
    Migration { version: 21, name: "outbox retry back-off", sql: include_str!("../sql/0021_outbox_retry.sql") };

/// The hot copy of the user and alarm caches (`moa_cache_entry`; see `replica::cache::hot_copy`).
pub const CACHE_ENTRIES: Migration =
    Migration { version: 24, name: "cache hot copy", sql: include_str!("../sql/0024_cache_entry.sql") };
/// Complete read models of other domains' kinds (`moa_read_model`; see `replica::read_model`).
pub const READ_MODELS: Migration =
    Migration { version: 25, name: "read models", sql: include_str!("../sql/0025_read_model.sql") };
/// Users keyed by their token's hash, not the token: the old user rows of the hot copy and
/// the read model are dropped (see `token::token_hash`).
pub const TOKEN_HASHES: Migration =
    Migration { version: 26, name: "token hashes", sql: include_str!("../sql/0026_token_hash.sql") };
/// The SQL functions every domain database gets, with the shared migrations above (which
/// every service lists); [`migrate`] applies them itself, before the service's own functions.
pub const FUNCTIONS: [Migration; 6] = [
    Migration::function("moa_capture_key", include_str!("../sql/functions/moa_capture_key.sql")),
    Migration::function("moa_capture", include_str!("../sql/functions/moa_capture.sql")),
    Migration::function("moa_epoch", include_str!("../sql/functions/moa_epoch.sql")),
    Migration::function("moa_max_version", include_str!("../sql/functions/moa_max_version.sql")),
    Migration::function("moa_tombstone_horizon", include_str!("../sql/functions/moa_tombstone_horizon.sql")),
    Migration::function("moa_collect_tombstones", include_str!("../sql/functions/moa_collect_tombstones.sql")),
];

/// TCP keepalive of every database connection: an idle connection whose server vanished
/// without a reset (a partition, a host that froze: its packets dropped) is found dead after
/// [`KEEPALIVE_IDLE`] + [`KEEPALIVE_RETRIES`] × [`KEEPALIVE_INTERVAL`], 8 s, instead of the
/// kernel's two hours.
pub const KEEPALIVE_IDLE: Duration = Duration::from_secs(5);
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(1);
pub const KEEPALIVE_RETRIES: u32 = 3;
/// `tcp_user_timeout` of every database connection: data sent and not acknowledged for this
/// long (a statement sent into a partition) fails the connection, instead of the kernel's
/// ~15 minutes of retransmissions. The callers' own deadlines answer sooner (a request's 503
/// comes from its deadline, `DB_TIMEOUT_MS`, `WRITE_TIMEOUT_MS`); this one frees the
/// connection and the task that waits on it.
pub const TCP_USER_TIMEOUT: Duration = Duration::from_secs(5);

/// Builds the pool without connecting: a service starts (and reports not-ready) while its
/// database is down, and the pool connects when it returns. Every connection runs with
/// `statement_timeout` = `statement_timeout`, so one stuck statement (a lock an operator
/// holds, a runaway plan) is cancelled rather than holding its connection, and every
/// request queued behind it, for ever; and with `jit = off`: the statements are request-sized,
/// and where the planner's estimates are inflated (a merged read of a few hundred tokens, with
/// no statistics for the token index, costs out at 0.5 % of the table per token) PostgreSQL
/// compiled them first, 200+ ms, past the RPC timeout, for a statement that runs in 20 ms.
/// Its sockets have keepalives and a `tcp_user_timeout` ([`TCP_USER_TIMEOUT`]).
pub fn pool(url: &str, size: u32, timeout: Duration, statement_timeout: Duration) -> Result<Pool> {
    let mut config = connect_config(url, timeout)?;
    // Appended to the URL's own `options`, if any, so the URL cannot lose it by accident.
    let options = format!(
        "{} -c statement_timeout={} -c jit=off",
        config.get_options().unwrap_or_default(),
        statement_timeout.as_millis()
    );
    config.options(options.trim_start());
    config.application_name("homeshopping-moa");
    let manager = PreparingManager(PostgresConnectionManager::new(config, NoTls));
    Ok(bb8::Pool::builder()
        .max_size(size)
        .min_idle(Some(2.min(size)))
        .connection_timeout(timeout)
        .test_on_check_out(false)
        .retry_connection(false)
        .build_unchecked(manager))
}

/// `url` as a connection's configuration with the socket deadlines every connection of ours
/// has: `connect_timeout`, TCP keepalive ([`KEEPALIVE_IDLE`]...) and [`TCP_USER_TIMEOUT`].
pub fn connect_config(url: &str, connect_timeout: Duration) -> Result<tokio_postgres::Config> {
    let mut config: tokio_postgres::Config =
        url.parse().map_err(|e| Error::Config(format!("bad database URL: {e}")))?;
    config
        .connect_timeout(connect_timeout)
        .keepalives(true)
        .keepalives_idle(KEEPALIVE_IDLE)
        .keepalives_interval(KEEPALIVE_INTERVAL)
        .keepalives_retries(KEEPALIVE_RETRIES)
        .tcp_user_timeout(TCP_USER_TIMEOUT);
    Ok(config)
}

/// The login role of a database URL (`postgres://item_service:...@host/db` → `item_service`).
pub fn url_user(url: &str) -> Result<String> {
    let config: tokio_postgres::Config = url.parse().map_err(|e| Error::Config(format!("bad database URL: {e}")))?;
    config.get_user().map(str::to_string).ok_or_else(|| Error::Config("the database URL names no user".into()))
}

/// What the service's runtime role may do, granted by the owner after every migration step
/// (`sql/runtime_grants.sql`; docs/security.md, "PostgreSQL: a role per service").
const RUNTIME_GRANTS: &str = include_str!("../sql/runtime_grants.sql");

/// The applied migrations `versioned` does not know, by version and name: a newer binary's
/// (a rolled-back or older instance of a rolling deploy must not run on that schema, nor put
/// its own, older functions back). A row a known migration's name has under another version is
/// known (the renumbering moves it).
fn unknown_applied<'a>(applied: &'a [(i32, String)], versioned: &[&Migration]) -> Vec<&'a (i32, String)> {
    applied
        .iter()
        .filter(|(version, name)| !versioned.iter().any(|m| m.version == *version || m.name == name))
        .collect()
}

fn schema_ahead(unknown: &[&(i32, String)]) -> Error {
    let listed: Vec<String> = unknown.iter().map(|(v, n)| format!("{v} ({n})")).collect();
    Error::SchemaAhead(format!(
        "the database has migrations this binary does not know: {}; a newer version of the service migrated it \
         (run that version, or restore the database)",
        listed.join(", ")
    ))
}

async fn applied_migrations(conn: &tokio_postgres::Client) -> Result<Vec<(i32, String)>> {
    Ok(conn
        .query("SELECT version, name FROM moa_migrations", &[])
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect())
}

/// How many of `migrations` the database still lacks, read through `pool` (the runtime role):
/// [`Error::SchemaAhead`] when it has one this binary does not know.
pub async fn pending_migrations(pool: &Pool, migrations: &[Migration]) -> Result<usize> {
    let versioned: Vec<&Migration> = migrations.iter().filter(|m| !m.is_function()).collect();
    let conn = pool.get().await?;
    let applied = match applied_migrations(&conn).await {
        Err(Error::Db(e)) if e.code() == Some(&SqlState::UNDEFINED_TABLE) => Vec::new(),
        other => other?,
    };
    let unknown = unknown_applied(&applied, &versioned);
    if !unknown.is_empty() {
        return Err(schema_ahead(&unknown));
    }
    Ok(versioned.iter().filter(|m| !applied.iter().any(|(v, _)| *v == m.version)).count())
}

/// Applies the versioned `migrations` not yet applied, then every function file ([`FUNCTIONS`]
/// and the function files in `migrations`), then grants `runtime_role` (when it is not the
/// migrating login itself) what it uses, all under an advisory lock so that two instances
/// starting together do not race. Returns how many versioned migrations were applied. `pool`
/// logs in as the database's owner role. A database with a migration this binary does not know
/// is refused before anything is applied ([`Error::SchemaAhead`]): neither migrations nor
/// function files.
///
/// Function files are applied twice when migrations are pending:
/// - before them, only the functions that do not exist yet, with `check_function_bodies` off:
///   a migration that creates a trigger needs its function, and a backfill may call one, while
///   the tables a SQL-language body reads may only be created by a later migration (the
///   forward reference pg_dump also turns the check off for);
/// - after them, every one (`CREATE OR REPLACE`, bodies checked against the final schema), in
///   one transaction: the file always wins, and a changed file takes effect at this start.
///
/// Functions that exist are left alone before the migrations, so a migration may still DROP
/// one whose return type a new file changes (CREATE OR REPLACE cannot), and the file then
/// creates it again after. A migration must not call a function whose current body needs a
/// later migration's tables.
pub async fn migrate(pool: &Pool, migrations: &[Migration], runtime_role: Option<&str>) -> Result<usize> {
    let (own_functions, versioned): (Vec<&Migration>, Vec<&Migration>) =
        migrations.iter().partition(|m| m.is_function());
    let functions: Vec<&Migration> = FUNCTIONS.iter().chain(own_functions).collect();
    let mut names: Vec<&str> = functions.iter().map(|f| f.name).collect();
    names.sort_unstable();
    if let Some(twice) = names.windows(2).find(|w| w[0] == w[1]) {
        return Err(Error::Config(format!("SQL function {} has two function files", twice[0])));
    }
    let mut conn = pool.get().await?;
    // The lock is per session; it is released with this connection's checkout below.
    // Migrations (and waiting for another instance's) may take minutes on a large database
    // (a capture migration builds an index over a whole table; the user one also writes a
    // version row per existing user): no statement timeout for this session until it is
    // reset below.
    conn.batch_execute(
        "SET statement_timeout = 0;
         SELECT pg_advisory_lock(4242001);
         CREATE TABLE IF NOT EXISTS moa_migrations (
             version int PRIMARY KEY, name text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now())",
    )
    .await?;
    let result = async {
        // Versions were renumbered (1, 2, 3, 10.., 20..) so that their order is the order they
        // apply in; a database migrated before knows some by their old numbers (100, 101, 2..):
        // move those to the new ones, by name (through negatives: the version is the key).
        let names: Vec<&str> = versioned.iter().map(|m| m.name).collect();
        let versions: Vec<i32> = versioned.iter().map(|m| m.version).collect();
        let moved = conn
            .execute(
                "UPDATE moa_migrations m SET version = -v.version
                 FROM unnest($1::text[], $2::int4[]) AS v(name, version)
                 WHERE m.name = v.name AND m.version <> v.version",
                &[&names, &versions],
            )
            .await?;
        if moved > 0 {
            conn.execute("UPDATE moa_migrations SET version = -version WHERE version < 0", &[]).await?;
            log::info!("renumbered {moved} applied migrations to the current numbering");
        }
        let applied = applied_migrations(&conn).await?;
        let unknown = unknown_applied(&applied, &versioned);
        if !unknown.is_empty() {
            return Err(schema_ahead(&unknown));
        }
        let done: Vec<i32> = applied.iter().map(|(v, _)| *v).collect();
        let pending: Vec<&Migration> = versioned.into_iter().filter(|m| !done.contains(&m.version)).collect();
        if !pending.is_empty() {
            create_missing_functions(&mut conn, &functions).await?;
        }
        for m in &pending {
            log::info!("applying migration {} ({})", m.version, m.name);
            let tx = conn.transaction().await?;
            // "trigger ... does not exist, skipping" (DROP ... IF EXISTS) is not news at a first start.
            tx.batch_execute("SET LOCAL client_min_messages = warning").await?;
            tx.batch_execute(m.sql).await?;
            tx.execute("INSERT INTO moa_migrations (version, name) VALUES ($1, $2)", &[&m.version, &m.name]).await?;
            tx.commit().await?;
        }
        let tx = conn.transaction().await?;
        for f in &functions {
            tx.batch_execute(f.sql).await.map_err(|e| function_error(f, e))?;
        }
        tx.commit().await?;
        log::info!("{} SQL functions defined from their function files", functions.len());
        let migrator = session_user(&conn).await?;
        if let Some(role) = runtime_role.filter(|r| *r != migrator) {
            let tx = conn.transaction().await?;
            tx.execute("SELECT set_config('moa.runtime_role', $1, true)", &[&role]).await?;
            tx.batch_execute(RUNTIME_GRANTS).await?;
            tx.commit().await?;
            log::info!("runtime role {role} granted what it uses");
        }
        Ok::<_, Error>(pending.len())
    }
    .await;
    conn.batch_execute("SELECT pg_advisory_unlock(4242001); RESET statement_timeout").await?;
    result
}

/// The role this session logged in as.
async fn session_user(conn: &tokio_postgres::Client) -> Result<String> {
    Ok(conn.query_one("SELECT session_user::text", &[]).await?.get(0))
}

/// Creates the functions of `functions` that do not exist yet, bodies unchecked (see [`migrate`]).
async fn create_missing_functions(conn: &mut tokio_postgres::Client, functions: &[&Migration]) -> Result<()> {
    let names: Vec<&str> = functions.iter().map(|f| f.name).collect();
    let existing: Vec<String> = conn
        .query(
            "SELECT DISTINCT proname::text FROM pg_proc WHERE proname = ANY($1) AND pg_function_is_visible(oid)",
            &[&names],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let tx = conn.transaction().await?;
    tx.batch_execute("SET LOCAL check_function_bodies = off").await?;
    for f in functions.iter().filter(|f| !existing.iter().any(|e| e == f.name)) {
        log::info!("creating SQL function {} before the migrations that use it", f.name);
        tx.batch_execute(f.sql).await.map_err(|e| function_error(f, e))?;
    }
    tx.commit().await?;
    Ok(())
}

/// Names the function file a failed definition came from; the database error stays the source.
fn function_error(f: &Migration, e: tokio_postgres::Error) -> Error {
    log::warn!("defining SQL function {} from its function file (sql/functions/{}.sql) failed: {e}", f.name, f.name);
    Error::Db(e)
}

/// Where the schema comes from at a service's start: the owner role's pool when the service
/// was given `<PREFIX>_DATABASE_MIGRATE_URL` (it migrates, then grants `runtime_role`), else
/// nobody: the service waits until `<binary> migrate` has applied what it needs.
pub struct SchemaSource {
    pub owner: Option<Pool>,
    pub runtime_role: String,
}

/// Waits until the database answers and its schema is this binary's, retrying with a short
/// pause: migrated through the owner's pool if there is one, then checked through the runtime
/// pool (which must see every migration applied: that also proves its grants). The service
/// serves 503 for what needs its database meanwhile. A database still starting
/// next to the service is normal for the first seconds (info); one still unreachable after
/// [`PATIENCE`] is a warning, repeated every tenth attempt (debug in between), so a clean
/// start logs no warning and an outage at start neither floods the log nor goes unsaid.
/// Returns only [`Error::SchemaAhead`]: a schema newer than this binary, which waiting does
/// not fix.
pub async fn migrate_when_reachable(pool: &Pool, source: SchemaSource, migrations: &'static [Migration]) -> Result<()> {
    const PATIENCE: Duration = Duration::from_secs(10);
    let started = std::time::Instant::now();
    let mut delay = Duration::from_millis(200);
    let mut late_attempts = 0u32;
    loop {
        let attempt = async {
            let applied = match &source.owner {
                Some(owner) => migrate(owner, migrations, Some(&source.runtime_role)).await?,
                None => 0,
            };
            match pending_migrations(pool, migrations).await? {
                0 => Ok(applied),
                n => Err(Error::DbUnavailable(format!(
                    "{n} migrations not applied yet{}",
                    if source.owner.is_none() { " (run the binary's `migrate` step as the owner role)" } else { "" }
                ))),
            }
        };
        match attempt.await {
            Ok(n) => {
                log::info!("database schema up to date ({n} migrations applied now)");
                return Ok(());
            }
            Err(e @ Error::SchemaAhead(_)) => return Err(e),
            Err(e) if started.elapsed() < PATIENCE => {
                log::info!("database not ready for migrations yet: {e}; retrying in {delay:?}");
            }
            Err(e) => {
                if late_attempts.is_multiple_of(10) {
                    log::warn!(
                        "database still not ready for migrations after {:?}: {e}; retrying every {delay:?}",
                        started.elapsed()
                    );
                } else {
                    log::debug!("database not ready for migrations yet: {e}");
                }
                late_attempts += 1;
            }
        }
        // jittered: instances that lost the database together do not retry in lockstep
        tokio::time::sleep(crate::backoff::jitter(delay)).await;
        delay = (delay * 2).min(Duration::from_secs(3));
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;

    /// The names of the functions `sql` creates (`CREATE [OR REPLACE] FUNCTION [schema.]name`),
    /// in order, lower-cased; `--` comments are skipped. A scanner, not a parser: enough for our
    /// migration and function files, which keep each such header on its own lines.
    fn created_functions(sql: &str) -> Vec<String> {
        let code: String = sql.lines().map(|l| l.split("--").next().unwrap_or("")).collect::<Vec<_>>().join("\n");
        let code = code.to_lowercase().replace('(', " (");
        let words: Vec<&str> = code.split_whitespace().collect();
        let mut names = Vec::new();
        for (i, w) in words.iter().enumerate() {
            if *w != "create" {
                continue;
            }
            let rest = &words[i + 1..];
            let name = match rest {
                ["function", name, ..] => name,
                ["or", "replace", "function", name, ..] => name,
                _ => continue,
            };
            names.push(name.rsplit('.').next().unwrap_or(name).trim_matches('"').to_string());
        }
        names
    }

    fn workspace() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("common lives in the workspace").to_path_buf()
    }

    /// The `.sql` files directly in `dir` (none if it does not exist), sorted.
    fn sql_files(dir: &Path) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        files.retain(|p| p.extension().is_some_and(|e| e == "sql"));
        files.sort();
        files
    }

    /// Every domain's directory (the workspace members with a `src/store.rs`) and `common`.
    fn domains() -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(workspace())
            .expect("the workspace is readable")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.join("src/store.rs").is_file() || p.ends_with("common"))
            .collect();
        dirs.sort();
        dirs
    }

    fn stem(p: &Path) -> String {
        p.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_string()
    }

    #[test]
    fn the_scanner_finds_every_spelling_of_create_function() {
        let sql = "-- CREATE FUNCTION in_a_comment()\nCREATE OR REPLACE FUNCTION a(x int)\n\
                   create function public.\"b\"() returns int\nCREATE  OR  REPLACE\n  FUNCTION c\n(\n\
                   SELECT 'create table'; CREATE TRIGGER t EXECUTE FUNCTION a();";
        assert_eq!(created_functions(sql), ["a", "b", "c"]);
    }

    /// One place per function: each function file defines exactly the function it is named
    /// after, no function has two files, and no versioned migration defines one (a later
    /// migration silently replacing an earlier definition is what the files replace).
    #[test]
    fn every_sql_function_is_defined_in_exactly_one_function_file() {
        let mut owner: std::collections::BTreeMap<String, PathBuf> = Default::default();
        let mut files = 0;
        for dir in domains() {
            for file in sql_files(&dir.join("sql/functions")) {
                files += 1;
                let sql = std::fs::read_to_string(&file).expect("readable");
                assert_eq!(
                    created_functions(&sql),
                    [stem(&file)],
                    "{} defines only the function it is named after",
                    file.display()
                );
                if let Some(other) = owner.insert(stem(&file), file.clone()) {
                    panic!("{} is defined in {} and {}", stem(&file), other.display(), file.display());
                }
            }
            let versioned = [dir.join("sql"), dir.join("migrations")];
            for file in versioned.iter().flat_map(|d| sql_files(d)) {
                let sql = std::fs::read_to_string(&file).expect("readable");
                let defined = created_functions(&sql);
                assert!(
                    defined.is_empty(),
                    "{} is a versioned migration but defines {defined:?}: move the definition to sql/functions/<name>.sql",
                    file.display()
                );
            }
        }
        assert!(files >= FUNCTIONS.len(), "the function files were found ({files})");
    }

    /// Every function file is applied: the shared ones by [`FUNCTIONS`], a domain's by its
    /// `MIGRATIONS` list (checked in the text of its `src/store.rs`: common cannot see it).
    #[test]
    fn every_function_file_is_registered() {
        let shared: Vec<String> =
            sql_files(&workspace().join("common/sql/functions")).iter().map(|p| stem(p)).collect();
        let mut registered: Vec<String> = FUNCTIONS.iter().map(|f| f.name.to_string()).collect();
        registered.sort();
        assert_eq!(registered, shared, "common::db::FUNCTIONS lists common/sql/functions");
        for f in &FUNCTIONS {
            assert!(f.is_function());
            assert_eq!(created_functions(f.sql), [f.name]);
        }
        for dir in domains().into_iter().filter(|d| !d.ends_with("common")) {
            let store = std::fs::read_to_string(dir.join("src/store.rs")).expect("readable");
            for file in sql_files(&dir.join("sql/functions")) {
                let name = stem(&file);
                let entry = format!("Migration::function(\"{name}\", include_str!(\"../sql/functions/{name}.sql\"))");
                assert!(store.contains(&entry), "{} lists {entry}", dir.join("src/store.rs").display());
            }
        }
    }
}
