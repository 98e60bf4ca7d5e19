//! PostgreSQL: the bb8 pool (owned by the store actor) and the migration runner.

use std::time::Duration;

use bb8_postgres::PostgresConnectionManager;
use tokio_postgres::NoTls;

use crate::error::{Error, Result};

pub type Pool = bb8::Pool<PostgresConnectionManager<NoTls>>;

/// One schema change of a service's own database. Applied once, in order, in a transaction.
pub struct Migration {
    pub version: i32,
    pub name: &'static str,
    pub sql: &'static str,
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
/// them (`attempts`, `next_attempt_at`; see `store::DrainOutbox`).
pub const OUTBOX_RETRY: Migration =
    Migration { version: 21, name: "outbox retry back-off", sql: include_str!("../sql/0021_outbox_retry.sql") };

/// The hot copy of the user and alarm caches (`moa_cache_entry`; see `replica::cache`).
pub const CACHE_ENTRIES: Migration =
    Migration { version: 24, name: "cache hot copy", sql: include_str!("../sql/0024_cache_entry.sql") };

/// Builds the pool without connecting: a service starts (and reports not-ready) while its
/// database is down, and the pool connects when it returns. Every connection runs with
/// `statement_timeout` = `statement_timeout`, so one stuck statement (a lock an operator
/// holds, a runaway plan) is cancelled rather than holding its connection, and every
/// request queued behind it, for ever.
pub fn pool(url: &str, size: u32, timeout: Duration, statement_timeout: Duration) -> Result<Pool> {
    let mut config: tokio_postgres::Config =
        url.parse().map_err(|e| Error::Config(format!("bad database URL: {e}")))?;
    config.connect_timeout(timeout);
    // Appended to the URL's own `options`, if any, so the URL cannot lose it by accident.
    let options =
        format!("{} -c statement_timeout={}", config.get_options().unwrap_or_default(), statement_timeout.as_millis());
    config.options(options.trim_start());
    config.application_name("homeshopping-moa");
    let manager = PostgresConnectionManager::new(config, NoTls);
    Ok(bb8::Pool::builder()
        .max_size(size)
        .min_idle(Some(2.min(size)))
        .connection_timeout(timeout)
        .test_on_check_out(false)
        .retry_connection(false)
        .build_unchecked(manager))
}

/// Applies `migrations` not yet applied, under an advisory lock so that two instances
/// starting together do not race. Returns how many were applied.
pub async fn migrate(pool: &Pool, migrations: &[Migration]) -> Result<usize> {
    let mut conn = pool.get().await?;
    // The lock is per session; it is released with this connection's checkout below.
    // Migrations (and waiting for another instance's) may take minutes on a large database
    // (the capture migration writes a version row per existing row): no statement timeout
    // for this session until it is reset below.
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
        let names: Vec<&str> = migrations.iter().map(|m| m.name).collect();
        let versions: Vec<i32> = migrations.iter().map(|m| m.version).collect();
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
        let mut applied = 0;
        for m in migrations {
            let done =
                conn.query_opt("SELECT 1 FROM moa_migrations WHERE version = $1", &[&m.version]).await?.is_some();
            if done {
                continue;
            }
            log::info!("applying migration {} ({})", m.version, m.name);
            let tx = conn.transaction().await?;
            // "trigger ... does not exist, skipping" (DROP ... IF EXISTS) is not news at a first start.
            tx.batch_execute("SET LOCAL client_min_messages = warning").await?;
            tx.batch_execute(m.sql).await?;
            tx.execute("INSERT INTO moa_migrations (version, name) VALUES ($1, $2)", &[&m.version, &m.name]).await?;
            tx.commit().await?;
            applied += 1;
        }
        Ok::<_, Error>(applied)
    }
    .await;
    conn.batch_execute("SELECT pg_advisory_unlock(4242001); RESET statement_timeout").await?;
    result
}

/// Waits until the database answers and migrations are applied, retrying with a short pause.
/// The service serves 503 for what needs its database meanwhile. A database still starting
/// next to the service is normal for the first seconds (info); one still unreachable after
/// [`PATIENCE`] is a warning, repeated every tenth attempt (debug in between), so a clean
/// start logs no warning and an outage at start neither floods the log nor goes unsaid.
pub async fn migrate_when_reachable(pool: &Pool, migrations: &'static [Migration]) {
    const PATIENCE: Duration = Duration::from_secs(10);
    let started = std::time::Instant::now();
    let mut delay = Duration::from_millis(200);
    let mut late_attempts = 0u32;
    loop {
        match migrate(pool, migrations).await {
            Ok(n) => {
                log::info!("database schema up to date ({n} migrations applied now)");
                return;
            }
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
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(3));
    }
}
