//! The cache's hot copy: its entries persisted write-behind in the own database
//! (`moa_cache_entry`) and restored at start as entries of an old generation, so that a service
//! restarted while an owner is down still answers for the users it had cached. Both sides are
//! here: the cache's (`EntryPersister`, the restore) and the store's ([`SaveCacheEntries`],
//! [`LoadCacheEntries`]), since nothing else writes or reads that table.

use std::{
    collections::BTreeMap,
    sync::{atomic::Ordering, Arc, Mutex, RwLock},
    time::Duration,
};

use actix::prelude::*;

use super::{Entry, EntryMap, Group, GroupCache, Members};
use crate::{
    entity::Epoch,
    error::Result,
    store::{bookkeeping, query_untimed, Store},
    tasks::Tasks,
};

impl<G: Group> GroupCache<G> {
    /// Marks groups for the hot copy's next write ([`HOT_COPY_EVERY`]), which reads their
    /// entries as they are then.
    pub(super) fn save(&self, groups: impl IntoIterator<Item = i64>) {
        let Some(p) = &self.persister else { return };
        p.dirty.lock().unwrap_or_else(|p| p.into_inner()).groups.extend(groups);
    }

    /// Loads the persisted hot copy: entries of generation 0, served only while the owner does
    /// not answer. A cache with a hot copy is ready at once (the owner may be down).
    pub async fn restore(&self) {
        self.load_hot_copy().await;
        self.mark_restored();
    }

    /// The hot copy is loaded (or given up on): the cache may report ready.
    pub fn mark_restored(&self) {
        self.restored.store(true, Ordering::Release);
    }

    /// Loads the hot copy into the cache; see [`Self::restore`].
    pub async fn load_hot_copy(&self) -> Vec<G::View> {
        let mut views = Vec::new();
        let Some(p) = &self.persister else { return views };
        // Bounded: with the own database down the copy cannot be read, and the owner answers.
        let Some(loaded) = p.load(self.restore_limit, self.restore_timeout).await else { return views };
        let Some(epoch) = loaded.first().map(|(_, e, _)| Epoch::from(e.as_str())) else { return views };
        {
            let _guard = self.lock();
            let mine = self.epoch.read().unwrap_or_else(|p| p.into_inner()).clone();
            if mine.as_ref().is_some_and(|m| *m != epoch) {
                return views;
            }
            *self.epoch.write().unwrap_or_else(|p| p.into_inner()) = Some(epoch.clone());
            for (group, e, json) in loaded {
                if Epoch::from(e.as_str()) != epoch || self.entries.contains(group) {
                    continue;
                }
                // An entry this version cannot read (an older format) is simply not restored.
                let Ok(members) = serde_json::from_str::<Members<G::Kept>>(&json) else { continue };
                self.max_version
                    .fetch_max(members.iter().map(|(_, m)| m.version).max().unwrap_or(0), Ordering::Relaxed);
                let entry = Entry::<G>::new(members, 0);
                views.push(entry.view.clone());
                self.entries.insert(group, Arc::new(entry));
            }
        }
        if !views.is_empty() {
            self.warm.store(true, Ordering::Release);
            log::info!("{} cache: {} entries restored from the own database (epoch {epoch})", G::KIND, views.len());
        }
        views
    }
}

/// How often the hot copy is written: the entries filled or changed since, read from the
/// cache as they are then (a crash loses at most this much of the copy, which is a copy).
/// Often, so that each write is small: while a cold cache fills (thousands of new users a
/// second) a write every 500 ms upserted ~4,000 rows in one statement, a burst of one core in
/// item_db that held every request's RPC answers back (cold-pass p99 34-43 ms, against
/// 25-28 ms with no hot copy at all; docs/performance.md).
pub const HOT_COPY_EVERY: Duration = Duration::from_millis(100);

/// At most this many entries per hot-copy transaction: a larger write goes as several, one
/// after the other, each a short statement instead of one long burst.
const HOT_COPY_CHUNK: usize = 256;

/// What the hot copy's next write must do: empty it first (a reset), and save or delete
/// (evicted) these groups. A set of ids: memory bounded by the cache, however fast it changes.
#[derive(Default)]
pub(super) struct Dirty {
    pub(super) clear: bool,
    pub(super) groups: std::collections::HashSet<i64>,
}

/// Writes the cache's changed entries into `moa_cache_entry` every [`HOT_COPY_EVERY`], at most
/// [`HOT_COPY_CHUNK`] per transaction, off the request path; what could not be written is
/// tried again next time.
pub(super) struct EntryPersister {
    cache: &'static str,
    store: Addr<Store>,
    pub(super) dirty: Arc<Mutex<Dirty>>,
}

impl EntryPersister {
    pub(super) fn start<G: Group>(
        cache: &'static str,
        store: Addr<Store>,
        tasks: &Tasks,
        dirty: Arc<Mutex<Dirty>>,
        entries: Arc<EntryMap<G>>,
        epoch: Arc<RwLock<Option<Epoch>>>,
    ) -> EntryPersister {
        let (s, d) = (store.clone(), dirty.clone());
        tasks.spawn_finishing("cache hot copy", move |stop| write_periodically(cache, s, d, entries, epoch, stop));
        EntryPersister { cache, store, dirty }
    }

    /// The `limit` most recently saved entries. Waits for the migrations however long they
    /// take (the service is not ready before them anyway); a database that does not answer is
    /// given `patience`, then the start goes on without the copy.
    async fn load(&self, limit: u64, patience: Duration) -> Option<Vec<(i64, String, String)>> {
        let mut delay = Duration::from_millis(200);
        let mut failing_since: Option<std::time::Instant> = None;
        loop {
            match self.store.send(LoadCacheEntries { cache: self.cache, limit }).await {
                Ok(Ok(rows)) => return Some(rows),
                Ok(Err(crate::Error::NotMigrated)) => failing_since = None,
                Ok(Err(e)) => {
                    let since = *failing_since.get_or_insert_with(std::time::Instant::now);
                    if since.elapsed() >= patience {
                        log::warn!("{} cache: the hot copy could not be read: {e}; starting without it", self.cache);
                        return None;
                    }
                    log::debug!("{} cache: cannot load the hot copy yet: {e}", self.cache);
                }
                Err(_) => return None,
            }
            tokio::time::sleep(crate::backoff::jitter(delay)).await;
            delay = (delay * 2).min(Duration::from_secs(1));
        }
    }
}

async fn write_periodically<G: Group>(
    cache: &'static str,
    store: Addr<Store>,
    dirty: Arc<Mutex<Dirty>>,
    entries: Arc<EntryMap<G>>,
    epoch: Arc<RwLock<Option<Epoch>>>,
    stop: tokio_util::sync::CancellationToken,
) {
    loop {
        // At a graceful stop, one last write: a restart then restores what was cached at the
        // end, not what was cached up to HOT_COPY_EVERY before it.
        let stopping = tokio::select! {
            _ = tokio::time::sleep(HOT_COPY_EVERY) => false,
            _ = stop.cancelled() => true,
        };
        let taken = std::mem::take(&mut *dirty.lock().unwrap_or_else(|p| p.into_inner()));
        let (mut clear, mut groups) = (taken.clear, taken.groups.into_iter().collect::<Vec<i64>>());
        while clear || !groups.is_empty() {
            let chunk = groups.split_off(groups.len().saturating_sub(HOT_COPY_CHUNK));
            // The epoch read with the entries it labels (not once per tick: most ticks of an
            // idle cache have nothing to write).
            let epoch = epoch.read().unwrap_or_else(|p| p.into_inner()).as_deref().unwrap_or_default().to_string();
            let held: Vec<(i64, Option<Arc<Entry<G>>>)> = chunk.iter().map(|&g| (g, entries.get(g))).collect();
            // Serialized on the blocking pool, not on this runtime's thread, which also
            // hands out the RPC answers every cold request waits for.
            let serialized = tokio::task::spawn_blocking(move || {
                held.into_iter()
                    .map(|(group, entry)| {
                        let saved = entry.and_then(|entry| {
                            serde_json::to_string(&entry.members).ok().map(|json| (epoch.clone(), json))
                        });
                        (group, saved)
                    })
                    .collect::<BTreeMap<_, _>>()
            })
            .await;
            let Ok(saved) = serialized else { return };
            match store.send(SaveCacheEntries { cache, clear, entries: saved }).await {
                Ok(Ok(())) => clear = false,
                Ok(Err(e)) => {
                    let left = chunk.len() + groups.len();
                    log::warn!("{cache} cache: cannot write {left} hot-copy entries yet: {e}");
                    let mut d = dirty.lock().unwrap_or_else(|p| p.into_inner());
                    // A reset since then has cleared the copy anyway: these would be stale.
                    if !d.clear {
                        d.clear = clear;
                        d.groups.extend(chunk);
                        d.groups.extend(groups);
                    }
                    break;
                }
                Err(_) => return,
            }
        }
        if stopping {
            return;
        }
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

#[cfg(test)]
mod tests {
    use super::super::{merge, tests::alarm_row};
    use super::*;

    #[test]
    fn the_hot_copy_format_round_trips_and_an_unreadable_entry_is_not_restored() {
        let mut members: Members<()> = Members::new();
        merge::<crate::replica::fixtures::Pairs>(&mut members, 5, &alarm_row(1, 5, 3));
        let json = serde_json::to_string(&members).unwrap();
        assert_eq!(json, r#"{"5":{"v":3,"d":false,"k":null}}"#);
        assert_eq!(serde_json::from_str::<Members<()>>(&json).unwrap(), members);
        // The format before entries were compacted: a list of rows as the owner sent them.
        let old = serde_json::to_string(&[alarm_row(1, 5, 3)]).unwrap();
        assert!(serde_json::from_str::<Members<()>>(&old).is_err());
    }
}
