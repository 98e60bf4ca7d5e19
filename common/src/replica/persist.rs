//! Write-behind persistence of other domains' replicas into the service's own database, and
//! the restore at start. The hot path only clones changed rows into a channel; one task
//! batches them into upserts and retries while the database is down. A new owner epoch
//! replaces the whole persisted copy ([`Persister::reset`]), in order with the saves.
//!
//! The store's side of it ([`PersistReplica`], [`ResetReplica`], [`LoadReplica`]: the SQL of
//! `moa_replica`) is here too, beside the [`Persister`] that is its only sender.

use std::time::Duration;

use actix::prelude::*;
use tokio::sync::mpsc;

use crate::{
    entity::{Epoch, VersionedRow},
    error::Result,
    store::{bookkeeping, query::to_rows, query_untimed, Store},
};

enum Command {
    Save(Vec<VersionedRow>),
    Reset(Epoch, Vec<VersionedRow>),
}

#[derive(Clone)]
pub struct Persister {
    entity: &'static str,
    store: Addr<Store>,
    tx: mpsc::UnboundedSender<Command>,
}

impl Persister {
    pub fn start(entity: &'static str, store: Addr<Store>, tasks: &crate::tasks::Tasks) -> Persister {
        let (tx, rx) = mpsc::unbounded_channel::<Command>();
        tasks.spawn("replica persister", write_behind(entity, store.clone(), rx));
        Persister { entity, store, tx }
    }

    pub fn save(&self, rows: Vec<VersionedRow>) {
        if !rows.is_empty() {
            let _ = self.tx.send(Command::Save(rows));
        }
    }

    /// From now on the persisted copy is of `epoch` and holds `rows` (plus what is saved after).
    pub fn reset(&self, epoch: Epoch, rows: Vec<VersionedRow>) {
        let _ = self.tx.send(Command::Reset(epoch, rows));
    }

    /// The rows persisted before this start (of the persisted copy's epoch), retrying until
    /// the database answers.
    pub async fn load(&self) -> Vec<VersionedRow> {
        let mut delay = Duration::from_millis(200);
        loop {
            match self.store.send(LoadReplica { entity: self.entity }).await {
                Ok(Ok(rows)) => return rows,
                Ok(Err(e)) => log::debug!("{} replica: cannot load the persisted copy yet: {e}", self.entity),
                Err(_) => return Vec::new(),
            }
            tokio::time::sleep(crate::backoff::jitter(delay)).await;
            delay = (delay * 2).min(Duration::from_secs(3));
        }
    }
}

/// Applies the commands in order; saves that queue up meanwhile are merged into one upsert,
/// and a reset takes its turn in order (it drops the rows of other epochs).
async fn write_behind(entity: &'static str, store: Addr<Store>, mut rx: mpsc::UnboundedReceiver<Command>) {
    let mut next = rx.recv().await;
    while let Some(cmd) = next.take() {
        let mut batch = match cmd {
            Command::Save(rows) => rows,
            Command::Reset(epoch, rows) => {
                let mut delay = Duration::from_millis(200);
                loop {
                    match store.send(ResetReplica { entity, epoch: epoch.clone(), rows: rows.clone() }).await {
                        Ok(Ok(_)) => break,
                        Ok(Err(e)) => {
                            not_yet(&e, format_args!("{entity} replica: cannot replace the persisted copy yet: {e}"));
                            tokio::time::sleep(crate::backoff::jitter(delay)).await;
                            delay = (delay * 2).min(Duration::from_secs(3));
                        }
                        Err(_) => return,
                    }
                }
                next = rx.recv().await;
                continue;
            }
        };
        // Fold in the saves queued behind it; a reset waits for the next round.
        next = fold_saves(&mut rx, &mut batch);
        loop {
            match store.send(PersistReplica { entity, rows: batch.clone() }).await {
                Ok(Ok(_)) => break,
                Ok(Err(e)) => {
                    not_yet(&e, format_args!("{entity} replica: cannot persist {} rows yet: {e}", batch.len()));
                    tokio::time::sleep(crate::backoff::jitter(Duration::from_secs(1))).await;
                    if next.is_some() {
                        continue;
                    }
                    // Fold in what arrived meanwhile; the upsert keeps the newest version.
                    next = fold_saves(&mut rx, &mut batch);
                }
                Err(_) => return,
            }
        }
        if next.is_none() {
            next = rx.recv().await;
        }
    }
}

/// A write of the persisted copy that must wait: expected (`debug`) while this start's
/// migrations run (the first start after loading a large dump spends seconds there), `warn`
/// otherwise.
fn not_yet(e: &crate::Error, message: std::fmt::Arguments<'_>) {
    if matches!(e, crate::Error::NotMigrated) {
        log::debug!("{message}");
    } else {
        log::warn!("{message}");
    }
}

/// Moves the saves waiting in `rx` into `batch`, up to the first reset, which it returns.
fn fold_saves(rx: &mut mpsc::UnboundedReceiver<Command>, batch: &mut Vec<VersionedRow>) -> Option<Command> {
    loop {
        match rx.try_recv() {
            Ok(Command::Save(more)) => batch.extend(more),
            Ok(reset @ Command::Reset(..)) => return Some(reset),
            Err(_) => return None,
        }
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
