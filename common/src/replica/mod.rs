//! In-memory replicas of entities, own or another domain's, kept current by change events
//! and filled from snapshots; a miss asks the owner (RPC, or the own store) with a timeout.
//!
//! Every row carries the owner's version, and a row is applied only if it is newer than
//! what the replica holds. So events, snapshot pages, RPC answers and duplicates can arrive
//! in any order and the replica converges on the owner's state: "bind, snapshot, then apply
//! what arrived meanwhile" holds without buffering anything.

pub mod alarms;
pub mod digest;
pub mod feed;
pub mod items;
pub mod persist;
pub mod users;

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, Ordering},
        RwLock, RwLockReadGuard,
    },
    time::Duration,
};

use actix::Addr;

use crate::{
    amqp::rpc::RpcClient,
    entity::{Entity, VersionedRow},
    error::{Error, Result},
    settings::{Domain, Settings},
    store::{Query, Store},
    telemetry::Metrics,
};

pub use alarms::{AlarmBook, AlarmIndex};
pub use items::{ItemCatalog, ItemIndex, Page};
pub use users::{UserDirectory, UserIndex};

/// Where a replica's truth lives: this service's own store, or another domain over RPC.
#[derive(Clone)]
pub enum Source {
    Local(Addr<Store>),
    Remote { rpc: RpcClient, owner: Domain },
}

impl Source {
    pub fn owner_name(&self) -> &'static str {
        match self {
            Source::Local(_) => "own database",
            Source::Remote { owner, .. } => owner.name(),
        }
    }

    async fn query(&self, q: Query, timeout: Duration) -> Result<Vec<VersionedRow>> {
        match self {
            Source::Local(store) => match tokio::time::timeout(timeout, store.send(q)).await {
                Ok(r) => r?,
                Err(_) => Err(Error::DbUnavailable("the database did not answer in time".into())),
            },
            Source::Remote { rpc, owner } => rpc.call(*owner, &q, timeout).await,
        }
    }
}

/// Secondary structures a replica keeps beside its rows (token → user, user → items, ...).
pub trait Index<E: Entity>: Default + Send + Sync + 'static {
    fn update(&mut self, key: &E::Key, old: Option<&E>, new: Option<&E>);
}

/// One entity's latest known state; `None` is a tombstone (deleted at `version`).
pub struct Slot<E> {
    pub version: i64,
    pub value: Option<E>,
}

pub struct State<E: Entity, I> {
    pub rows: HashMap<E::Key, Slot<E>>,
    pub index: I,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Changed,
    Stale,
    Ignored,
}

pub struct Replica<E: Entity, I: Index<E>> {
    state: RwLock<State<E, I>>,
    warm: AtomicBool,
    source: Source,
    lookup_timeout: Duration,
    snapshot_timeout: Duration,
    page_size: u32,
    metrics: Metrics,
    /// Set for other domains' replicas: changes are also written to our own database.
    persister: Option<persist::Persister>,
    /// The newest version applied: compared with the owner's, it shows how far behind we are.
    max_version: std::sync::atomic::AtomicI64,
    /// True once the persisted copy is loaded (or there is none to load): the first sync
    /// waits for it, so that it can compare digests instead of reading every row again.
    restored: tokio::sync::watch::Sender<bool>,
}

impl<E: Entity, I: Index<E>> Replica<E, I> {
    pub fn new(source: Source, settings: &Settings, metrics: Metrics) -> Self {
        Replica {
            state: RwLock::new(State { rows: HashMap::new(), index: I::default() }),
            warm: AtomicBool::new(false),
            source,
            lookup_timeout: settings.rpc_timeout,
            snapshot_timeout: settings.snapshot_timeout,
            page_size: settings.snapshot_page_size,
            metrics,
            persister: None,
            max_version: std::sync::atomic::AtomicI64::new(0),
            restored: tokio::sync::watch::Sender::new(true),
        }
    }

    /// Persists this replica in the service's own database (`moa_replica`).
    pub fn with_persistence(mut self, store: Addr<Store>) -> Self {
        self.persister = Some(persist::Persister::start(E::KIND, store));
        self.restored.send_replace(false);
        self
    }

    /// Loads the persisted copy (if any) and, when it had rows, serves from it at once:
    /// the owner may be down, and then its data cannot have changed. The snapshot from the
    /// owner still follows and wins wherever it is newer.
    pub async fn restore(&self) {
        let Some(p) = &self.persister else { return };
        let rows = p.load().await;
        let n = rows.len();
        if n > 0 {
            self.apply_inner(&rows, false);
            self.warm.store(true, Ordering::Release);
            log::info!("{} replica restored from the own database: {n} rows", E::KIND);
        }
        self.restored.send_replace(true);
    }

    /// A replica with no way to reach its owner (unit tests).
    #[cfg(test)]
    pub fn detached() -> Self
    where
        I: Default,
    {
        let settings = Settings::from_lookup(Domain::Item, |_| None).unwrap_or_else(|_| unreachable!());
        let rpc = RpcClient::detached();
        Replica::new(Source::Remote { rpc, owner: E::OWNER }, &settings, Metrics::default())
    }

    pub fn read(&self) -> RwLockReadGuard<'_, State<E, I>> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    pub fn is_warm(&self) -> bool {
        self.warm.load(Ordering::Acquire)
    }

    pub fn owner_name(&self) -> &'static str {
        self.source.owner_name()
    }

    /// The newest owner version this replica has applied.
    pub fn max_version(&self) -> i64 {
        self.max_version.load(Ordering::Relaxed)
    }

    pub fn len(&self) -> usize {
        self.read().rows.values().filter(|s| s.value.is_some()).count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Applies rows (events, snapshot pages, RPC answers): newer versions win, older are dropped.
    pub fn apply_rows(&self, rows: &[VersionedRow]) -> (usize, usize) {
        self.apply_inner(rows, true)
    }

    fn apply_inner(&self, rows: &[VersionedRow], persist: bool) -> (usize, usize) {
        let mut changed = 0;
        let mut stale = 0;
        let mut to_persist = Vec::new();
        {
            let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
            for row in rows {
                match apply_locked(&mut state, row) {
                    Applied::Changed => {
                        changed += 1;
                        self.max_version.fetch_max(row.version, Ordering::Relaxed);
                        if persist && self.persister.is_some() {
                            to_persist.push(row.clone());
                        }
                    }
                    Applied::Stale => stale += 1,
                    Applied::Ignored => {}
                }
            }
        }
        if let Some(p) = &self.persister {
            p.save(to_persist);
        }
        let labels = format!("entity=\"{}\"", E::KIND);
        if changed > 0 {
            self.metrics.inc("moa_replica_rows_applied_total", labels.clone(), changed as f64);
        }
        if stale > 0 {
            self.metrics.inc("moa_replica_rows_stale_total", labels, stale as f64);
        }
        (changed, stale)
    }

    /// Brings the replica level with the owner, then marks it warm: by digest when it already
    /// holds rows (restored, or re-syncing after a broker outage) and little differs, by the
    /// owner's full snapshot otherwise.
    pub async fn sync(&self) -> Result<usize> {
        // Not forever: with the own database down the copy cannot be read, and the owner's
        // snapshot is what the replica needs then.
        let mut restored = self.restored.subscribe();
        let _ = tokio::time::timeout(self.snapshot_timeout, restored.wait_for(|done| *done)).await;
        let started = std::time::Instant::now();
        let held = !self.read().rows.is_empty();
        let how = if held { self.sync_by_digest().await? } else { None };
        let (total, how) = match how {
            Some(synced) => synced,
            None => (self.sync_full().await?, "full snapshot".to_string()),
        };
        self.warm.store(true, Ordering::Release);
        log::info!(
            "{} replica synced from {}: {total} rows in {:?} ({how})",
            E::KIND,
            self.source.owner_name(),
            started.elapsed()
        );
        Ok(total)
    }

    /// Every row of the owner, page by page in key order.
    async fn sync_full(&self) -> Result<usize> {
        let mut after = None;
        let mut total = 0;
        loop {
            let q = Query::Snapshot { entity: E::KIND.into(), after: after.clone(), limit: self.page_size };
            let rows = self.source.query(q, self.snapshot_timeout).await?;
            total += rows.len();
            self.apply_rows(&rows);
            match rows.last() {
                Some(last) if rows.len() as u32 >= self.page_size => after = Some(last.key.clone()),
                _ => return Ok(total),
            }
        }
    }

    /// The owner's rows in the version buckets whose digests differ from this replica's (see
    /// [`digest`]). `None` when most of it differs: the full snapshot is then the cheaper read.
    async fn sync_by_digest(&self) -> Result<Option<(usize, String)>> {
        let width = digest::WIDTH;
        let answer = self.source.query(Query::Digest { entity: E::KIND.into(), width }, self.snapshot_timeout).await?;
        let owner: Vec<digest::BucketDigest> = answer.iter().filter_map(digest::BucketDigest::from_row).collect();
        if owner.len() != answer.len() {
            return Err(Error::RpcFailed(E::OWNER.name(), "a digest row of an unexpected shape".into()));
        }
        let versions: Vec<i64> = self.read().rows.values().map(|s| s.version).collect();
        let mine = digest::BucketDigest::of_versions(versions, width);
        let (buckets, rows) = digest::differing(&owner, &mine);
        let owner_rows: i64 = owner.iter().map(|d| d.rows).sum();
        if rows * 2 > owner_rows {
            return Ok(None);
        }
        let mut after = 0;
        let mut total = 0;
        while !buckets.is_empty() {
            let q = Query::Buckets {
                entity: E::KIND.into(),
                width,
                buckets: buckets.clone(),
                after,
                limit: self.page_size,
            };
            let page = self.source.query(q, self.snapshot_timeout).await?;
            total += page.len();
            self.apply_rows(&page);
            match page.last() {
                Some(last) if page.len() as u32 >= self.page_size => after = last.version,
                _ => break,
            }
        }
        Ok(Some((total, format!("by digest: {} of {} buckets differed", buckets.len(), owner.len()))))
    }

    /// Keeps trying [`Self::sync`] until it succeeds (the owner may be down for a while).
    pub async fn sync_until_done(&self) {
        let mut delay = Duration::from_millis(200);
        loop {
            match self.sync().await {
                Ok(_) => return,
                Err(e) => {
                    log::warn!("{} replica: snapshot from {} failed: {e}; retrying", E::KIND, self.source.owner_name());
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(3));
                }
            }
        }
    }

    /// Asks the owner (a cache miss), applies what it says, and returns its answer.
    pub async fn fetch(&self, q: Query) -> Result<Vec<VersionedRow>> {
        self.metrics.inc("moa_cache_misses_total", format!("entity=\"{}\"", E::KIND), 1.0);
        let rows = self.source.query(q, self.lookup_timeout).await?;
        self.apply_rows(&rows);
        Ok(rows)
    }

    pub(crate) fn hit(&self) {
        self.metrics.inc("moa_cache_hits_total", format!("entity=\"{}\"", E::KIND), 1.0);
    }
}

fn apply_locked<E: Entity, I: Index<E>>(state: &mut State<E, I>, row: &VersionedRow) -> Applied {
    // The version first, by the key text: a row we already have (most of a re-sync after a
    // restore) costs a lookup, not a parse.
    if let Some(slot) = E::parse_key(&row.key).and_then(|k| state.rows.get(&k)) {
        if slot.version >= row.version {
            return Applied::Stale;
        }
    }
    let Ok(value) = row.parse::<E>() else {
        log::warn!("{} row {} has an unexpected shape; ignored", E::KIND, row.key);
        return Applied::Ignored;
    };
    let Some(key) = value.key() else {
        return Applied::Ignored;
    };
    let new = if row.deleted { None } else { Some(value) };
    match state.rows.get_mut(&key) {
        Some(slot) if slot.version >= row.version => Applied::Stale,
        Some(slot) => {
            state.index.update(&key, slot.value.as_ref(), new.as_ref());
            slot.version = row.version;
            slot.value = new;
            Applied::Changed
        }
        None => {
            state.index.update(&key, None, new.as_ref());
            state.rows.insert(key, Slot { version: row.version, value: new });
            Applied::Changed
        }
    }
}

/// Parses a row's data as `E` (for callers that look at RPC answers directly).
pub fn row_value<E: Entity>(row: &VersionedRow) -> Option<E> {
    if row.deleted {
        return None;
    }
    row.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entity::raw_json;
    use crate::entity::Item;
    use serde_json::json;

    fn item_row(id: i64, version: i64, price: i32, deleted: bool) -> VersionedRow {
        VersionedRow {
            key: id.to_string(),
            version,
            deleted,
            data: raw_json(&json!({"id": id, "name": "n", "broadcaster": "b", "category": null, "price": price})),
        }
    }

    fn price(c: &ItemCatalog, id: i64) -> Option<i32> {
        c.read().rows.get(&id).and_then(|s| s.value.as_ref()).map(|i: &Item| i.price)
    }

    #[test]
    fn newer_versions_win_whatever_the_arrival_order() {
        let c = ItemCatalog::detached();
        c.apply_rows(&[item_row(1, 5, 500, false)]);
        assert_eq!(c.apply_rows(&[item_row(1, 3, 300, false)]), (0, 1), "older is dropped");
        assert_eq!(price(&c, 1), Some(500));
        c.apply_rows(&[item_row(1, 7, 700, false)]);
        assert_eq!(price(&c, 1), Some(700));
        assert_eq!(c.apply_rows(&[item_row(1, 7, 700, false)]), (0, 1), "a duplicate changes nothing");
    }

    #[test]
    fn a_tombstone_beats_a_late_older_upsert() {
        let c = ItemCatalog::detached();
        c.apply_rows(&[item_row(2, 10, 1, true)]);
        c.apply_rows(&[item_row(2, 9, 900, false)]);
        assert_eq!(price(&c, 2), None);
        assert!(c.read().rows.contains_key(&2), "the tombstone is kept");
        c.apply_rows(&[item_row(2, 11, 1100, false)]);
        assert_eq!(price(&c, 2), Some(1100), "re-created later");
    }

    #[test]
    fn rows_of_the_wrong_shape_are_ignored() {
        let c = ItemCatalog::detached();
        let bad = VersionedRow { key: "x".into(), version: 1, deleted: false, data: raw_json(&json!({"id": "x"})) };
        assert_eq!(c.apply_rows(&[bad]), (0, 0));
        assert!(c.is_empty());
    }
}
