//! Write-behind persistence of other domains' replicas into the service's own database, and
//! the restore at start. The hot path only clones changed rows into a channel; one task
//! batches them into upserts and retries while the database is down. A new owner epoch
//! replaces the whole persisted copy ([`Persister::reset`]), in order with the saves.

use std::time::Duration;

use actix::Addr;
use tokio::sync::mpsc;

use crate::{
    entity::{Epoch, VersionedRow},
    store::{LoadReplica, PersistReplica, ResetReplica, Store},
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
