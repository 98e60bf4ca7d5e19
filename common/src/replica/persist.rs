//! Write-behind persistence of other domains' replicas into the service's own database, and
//! the restore at start. The hot path only clones changed rows into a channel; one task
//! batches them into upserts and retries while the database is down.

use std::time::Duration;

use actix::Addr;
use tokio::sync::mpsc;

use crate::{
    entity::VersionedRow,
    store::{LoadReplica, PersistReplica, Store},
};

#[derive(Clone)]
pub struct Persister {
    entity: &'static str,
    store: Addr<Store>,
    tx: mpsc::UnboundedSender<Vec<VersionedRow>>,
}

impl Persister {
    pub fn start(entity: &'static str, store: Addr<Store>) -> Persister {
        let (tx, mut rx) = mpsc::unbounded_channel::<Vec<VersionedRow>>();
        let s = store.clone();
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut batch = first;
                while let Ok(more) = rx.try_recv() {
                    batch.extend(more);
                }
                loop {
                    match s.send(PersistReplica { entity, rows: batch.clone() }).await {
                        Ok(Ok(_)) => break,
                        Ok(Err(e)) => {
                            log::debug!("{entity} replica: cannot persist {} rows yet: {e}", batch.len());
                            tokio::time::sleep(Duration::from_secs(1)).await;
                            // Fold in what arrived meanwhile; the upsert keeps the newest version.
                            while let Ok(more) = rx.try_recv() {
                                batch.extend(more);
                            }
                        }
                        Err(_) => return,
                    }
                }
            }
        });
        Persister { entity, store, tx }
    }

    pub fn save(&self, rows: Vec<VersionedRow>) {
        if !rows.is_empty() {
            let _ = self.tx.send(rows);
        }
    }

    /// The rows persisted before this start, retrying until the database answers.
    pub async fn load(&self) -> Vec<VersionedRow> {
        let mut delay = Duration::from_millis(200);
        loop {
            match self.store.send(LoadReplica { entity: self.entity }).await {
                Ok(Ok(rows)) => return rows,
                Ok(Err(e)) => log::debug!("{} replica: cannot load the persisted copy yet: {e}", self.entity),
                Err(_) => return Vec::new(),
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(3));
        }
    }
}
