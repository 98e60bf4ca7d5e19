//! In-memory replicas of entities, own or another domain's, kept current by change events
//! and filled from snapshots; a miss asks the owner (RPC, or the own store) with a timeout.
//!
//! Every row carries the owner's version, and a row is applied only if it is newer than
//! what the replica holds. So events, snapshot pages, RPC answers and duplicates can arrive
//! in any order and the replica converges on the owner's state: "bind, snapshot, then apply
//! what arrived meanwhile" holds without buffering anything.

pub mod cache;
pub mod digest;
pub mod feed;
#[cfg(test)]
pub(crate) mod fixtures;
pub mod group;
pub mod kinds;
pub mod known;
pub mod misses;
pub mod persist;
pub mod read_model;

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, AtomicI64, Ordering},
        Arc, Mutex, RwLock, RwLockReadGuard,
    },
    time::Duration,
};

use actix::Addr;

use crate::{
    amqp::rpc::RpcClient,
    entity::{Entity, Epoch, VersionedRow},
    error::{Error, Result},
    settings::{Domain, Settings},
    store::{query::Query, Store},
    telemetry::Metrics,
};

pub use cache::GroupCache;
pub use kinds::{KindContext, Kinds, Replicas, Replicated, Wrapper};
pub use known::Known;

/// Where a replica's truth lives: this service's own store, or another domain over RPC.
#[derive(Clone)]
pub enum Source {
    Local(Addr<Store>),
    Remote {
        rpc: RpcClient,
        owner: Domain,
    },
    /// Another domain's kind with a complete read model in the own database: the read model
    /// while it is current, the owner otherwise ([`read_model`]).
    Replicated(Arc<read_model::ReadModel>),
}

impl Source {
    pub fn owner_name(&self) -> &'static str {
        match self {
            Source::Local(_) => "own database",
            Source::Remote { owner, .. } => owner.name(),
            Source::Replicated(model) => model.owner().name(),
        }
    }

    pub(crate) async fn query(&self, q: Query, timeout: Duration) -> Result<Vec<VersionedRow>> {
        match self {
            Source::Local(store) => match tokio::time::timeout(timeout, store.send(q)).await {
                Ok(r) => r?,
                Err(_) => Err(self.timed_out()),
            },
            Source::Remote { rpc, owner } => rpc.call(*owner, &q, timeout).await,
            Source::Replicated(model) => model.query(q, timeout).await,
        }
    }

    /// The error of a question this source did not answer in time.
    pub(crate) fn timed_out(&self) -> Error {
        match self {
            Source::Local(_) => Error::DbUnavailable("the database did not answer in time".into()),
            Source::Remote { owner, .. } => Error::RpcTimeout(owner.name()),
            Source::Replicated(model) => Error::RpcTimeout(model.owner().name()),
        }
    }

    /// The owner's epoch, newest version and tombstone horizon for `entity`.
    async fn owner_mark(&self, entity: &str, timeout: Duration) -> Result<OwnerMark> {
        let rows = self.query(Query::Epoch { entity: entity.into() }, timeout).await?;
        match rows.first() {
            Some(VersionedRow { version, epoch: Some(epoch), data, .. }) => {
                Ok(OwnerMark { epoch: epoch.clone(), max_version: *version, horizon: data.get().parse().unwrap_or(0) })
            }
            _ => Err(Error::RpcFailed(self.owner_name(), "an epoch answer of an unexpected shape".into())),
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
    /// The owner epoch the rows belong to; `None` until the owner (or the persisted copy) has
    /// named one.
    pub epoch: Option<Epoch>,
    /// Epochs this replica has left behind: rows still in flight from them are dropped.
    retired: Vec<Epoch>,
}

impl<E: Entity, I: Default> Default for State<E, I> {
    fn default() -> Self {
        State { rows: HashMap::new(), index: I::default(), epoch: None, retired: Vec::new() }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Changed,
    Stale,
    Ignored,
}

/// How a row's epoch relates to what the replica holds.
enum EpochCheck {
    /// The replica's epoch (or a row without one: unit tests).
    Current,
    /// The replica has no epoch yet: the row's becomes it.
    Adopt(Epoch),
    /// An epoch the replica has already left: a late row of an old history.
    Retired,
    /// Another epoch: the owner was re-created or restored; the replica is rebuilt.
    New,
}

fn check_epoch<E: Entity, I>(state: &State<E, I>, epoch: Option<&Epoch>) -> EpochCheck {
    match (epoch, &state.epoch) {
        (None, _) => EpochCheck::Current,
        (Some(e), None) => EpochCheck::Adopt(e.clone()),
        (Some(e), Some(mine)) if e == mine => EpochCheck::Current,
        (Some(e), Some(_)) if state.retired.contains(e) => EpochCheck::Retired,
        (Some(_), Some(_)) => EpochCheck::New,
    }
}

/// What the owner says of itself (`Query::Epoch`).
pub(crate) struct OwnerMark {
    pub(crate) epoch: Epoch,
    pub(crate) max_version: i64,
    /// The newest tombstone the owner has collected (0: none, or an owner that does not say).
    pub(crate) horizon: i64,
}

pub struct Replica<E: Entity, I: Index<E>> {
    state: RwLock<State<E, I>>,
    warm: AtomicBool,
    source: Source,
    lookup_timeout: Duration,
    snapshot_timeout: Duration,
    page_size: u32,
    probe_interval: Duration,
    metrics: Metrics,
    counters: CacheCounters,
    /// Set for other domains' replicas: changes are also written to our own database.
    persister: Option<persist::Persister>,
    /// The newest version applied: compared with the owner's, it shows how far behind we are.
    max_version: AtomicI64,
    /// True once the persisted copy is loaded (or there is none to load): the first sync
    /// waits for it, so that it can compare digests instead of reading every row again.
    restored: tokio::sync::watch::Sender<bool>,
    /// While a rebuild runs: every row that arrived since it began, applied to the new state
    /// before it replaces the live one (the snapshot may have been read before they committed).
    rebuild_buffer: Mutex<Option<Vec<VersionedRow>>>,
    /// Asks the epoch watch ([`Self::watch_owner`]) to check the owner now: a row of an
    /// unknown epoch arrived.
    check_owner: tokio::sync::Notify,
    /// Owner answers of "no such key" (unknown tokens, unknown item ids), remembered for
    /// `NEGATIVE_CACHE_MS`; concurrent misses of one key share one lookup (single flight).
    misses: moka::future::Cache<String, Arc<Vec<VersionedRow>>>,
}

impl<E: Entity, I: Index<E>> Replica<E, I> {
    pub fn new(source: Source, settings: &Settings, metrics: Metrics) -> Self {
        Replica {
            state: RwLock::new(State::default()),
            warm: AtomicBool::new(false),
            // A miss asks the owner: over RPC within RPC_TIMEOUT_MS (a short fallback); in the
            // own database within DB_TIMEOUT_MS, as every other read of it (a loaded database
            // answering a point read in 400 ms is slow, not down).
            lookup_timeout: match source {
                Source::Local(_) => settings.db_timeout,
                Source::Remote { .. } | Source::Replicated(_) => settings.rpc_timeout,
            },
            source,
            snapshot_timeout: settings.snapshot_timeout,
            page_size: settings.snapshot_page_size,
            probe_interval: settings.epoch_probe,
            counters: CacheCounters::new(&metrics, E::KIND),
            metrics,
            persister: None,
            max_version: AtomicI64::new(0),
            restored: tokio::sync::watch::Sender::new(true),
            rebuild_buffer: Mutex::new(None),
            check_owner: tokio::sync::Notify::new(),
            misses: moka::future::Cache::builder().max_capacity(100_000).time_to_live(settings.negative_ttl).build(),
        }
    }

    /// Persists this replica in the service's own database (`moa_replica`).
    pub fn with_persistence(mut self, store: Addr<Store>, tasks: &crate::tasks::Tasks) -> Self {
        self.persister = Some(persist::Persister::start(E::KIND, store, tasks));
        self.restored.send_replace(false);
        self
    }

    /// Loads the persisted copy (if any) and, when it had rows, serves from it at once:
    /// the owner may be down, and then its data cannot have changed. The sync with the
    /// owner still follows: it checks the epoch and wins wherever the owner is newer.
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

    /// A replica with no way to reach its owner (tests).
    pub fn detached() -> Self
    where
        I: Default,
    {
        let settings = Settings::from_lookup(E::OWNER, |_| None).unwrap_or_else(|_| unreachable!());
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

    /// The owner epoch the replica's rows belong to.
    pub fn epoch(&self) -> Option<Epoch> {
        self.read().epoch.clone()
    }

    pub fn len(&self) -> usize {
        self.read().rows.values().filter(|s| s.value.is_some()).count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Applies rows (events, snapshot pages, RPC answers): newer versions of the same epoch
    /// win, older are dropped; a row of a new epoch starts a rebuild (see [`Self::watch_owner`]).
    pub fn apply_rows(&self, rows: &[VersionedRow]) -> (usize, usize) {
        self.apply_inner(rows, true)
    }

    fn lock_buffer(&self) -> std::sync::MutexGuard<'_, Option<Vec<VersionedRow>>> {
        self.rebuild_buffer.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn apply_inner(&self, rows: &[VersionedRow], persist: bool) -> (usize, usize) {
        let mut changed = 0;
        let mut stale = 0;
        let mut other_epoch = 0;
        let mut to_persist = Vec::new();
        let mut adopted = None;
        {
            let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
            let mut buffer = self.lock_buffer();
            for row in rows {
                match check_epoch(&state, row.epoch.as_ref()) {
                    EpochCheck::Current => {}
                    EpochCheck::Adopt(e) => {
                        state.epoch = Some(e.clone());
                        adopted = Some(e);
                    }
                    EpochCheck::Retired => {
                        other_epoch += 1;
                        continue;
                    }
                    EpochCheck::New => {
                        // Kept for the rebuild if one runs; otherwise the rebuild's snapshot
                        // (read after this row committed) has it.
                        if let Some(b) = buffer.as_mut() {
                            b.push(row.clone());
                        }
                        other_epoch += 1;
                        self.check_owner.notify_one();
                        continue;
                    }
                }
                if let Some(b) = buffer.as_mut() {
                    b.push(row.clone());
                }
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
            if let (Some(epoch), true) = (adopted, persist) {
                // First contact with the owner: the persisted copy is of this epoch from now on.
                p.reset(epoch, Vec::new());
            }
            p.save(to_persist);
        }
        let labels = format!("entity=\"{}\"", E::KIND);
        if changed > 0 {
            self.metrics.inc("moa_replica_rows_applied_total", labels.clone(), changed as f64);
        }
        if stale > 0 {
            self.metrics.inc("moa_replica_rows_stale_total", labels.clone(), stale as f64);
        }
        if other_epoch > 0 {
            self.metrics.inc("moa_replica_rows_other_epoch_total", labels, other_epoch as f64);
        }
        (changed, stale)
    }

    /// The owner's epoch and newest version.
    async fn owner_mark(&self) -> Result<OwnerMark> {
        let timeout = self.lookup_timeout.max(self.snapshot_timeout.min(Duration::from_secs(2)));
        self.source.owner_mark(E::KIND, timeout).await
    }

    /// Why the replica must be rebuilt from the owner's snapshot, if it must: the owner has
    /// another epoch (re-created or restored), or it has handed out fewer versions than the
    /// replica holds (a restore that kept the epoch, or a forged row).
    ///
    /// `seen` is the replica's newest version *before* the owner was asked: a version applied
    /// while the question travelled may be newer than the owner's answer without anything
    /// being wrong.
    fn rebuild_reason(&self, owner: &OwnerMark, seen: i64) -> Option<String> {
        let mine = self.read().epoch.clone();
        match mine {
            Some(e) if e != owner.epoch => Some(format!("the owner's epoch changed ({e} -> {})", owner.epoch)),
            _ if seen > owner.max_version => {
                Some(format!("it holds version {seen} but the owner's newest is {}", owner.max_version))
            }
            // Away since before tombstones it never saw were collected: a digest cannot show
            // a deletion whose tombstone is gone (common/sql/0022_collect_tombstones.sql).
            _ if self.max_version() < owner.horizon => Some(format!(
                "its newest version {} is older than the owner's collected tombstones (up to {})",
                self.max_version(),
                owner.horizon
            )),
            _ => None,
        }
    }

    /// Brings the replica level with the owner, then marks it warm: rebuilt from the owner's
    /// snapshot when the owner's epoch changed; by digest when it already holds rows (restored,
    /// or re-syncing after a broker outage) and little differs; by the full snapshot otherwise.
    pub async fn sync(&self) -> Result<usize> {
        // Not forever: with the own database down the copy cannot be read, and the owner's
        // snapshot is what the replica needs then.
        let mut restored = self.restored.subscribe();
        let _ = tokio::time::timeout(self.snapshot_timeout, restored.wait_for(|done| *done)).await;
        let started = std::time::Instant::now();
        let seen = self.max_version();
        let owner = self.owner_mark().await?;
        let (total, how) = if let Some(why) = self.rebuild_reason(&owner, seen) {
            (self.rebuild(&owner.epoch).await?, format!("rebuilt: {why}"))
        } else {
            self.adopt(&owner.epoch);
            let held = !self.read().rows.is_empty();
            match if held { self.sync_by_digest(&owner.epoch).await? } else { None } {
                Some(synced) => synced,
                None => (self.sync_full(&owner.epoch).await?, "full snapshot".to_string()),
            }
        };
        self.warm.store(true, Ordering::Release);
        log::info!(
            "{} replica synced from {} (epoch {}): {total} rows in {:?} ({how})",
            E::KIND,
            self.source.owner_name(),
            owner.epoch,
            started.elapsed()
        );
        Ok(total)
    }

    /// Takes `epoch` as the replica's when it has none yet.
    fn adopt(&self, epoch: &Epoch) {
        let adopted = {
            let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
            if state.epoch.is_none() {
                state.epoch = Some(epoch.clone());
                true
            } else {
                false
            }
        };
        if let (true, Some(p)) = (adopted, &self.persister) {
            p.reset(epoch.clone(), Vec::new());
        }
    }

    /// Checks that a page of the owner's answer is of the epoch the sync started with: if
    /// the owner changed epoch meanwhile, the sync starts over.
    fn same_epoch(&self, rows: &[VersionedRow], epoch: &Epoch) -> Result<()> {
        match rows.iter().find(|r| r.epoch.as_ref().is_some_and(|e| e != epoch)) {
            Some(r) => Err(Error::RpcFailed(
                E::OWNER.name(),
                format!("its epoch changed during the sync ({epoch} -> {})", r.epoch.as_deref().unwrap_or("")),
            )),
            None => Ok(()),
        }
    }

    /// Every row of the owner, page by page in key order, passed to `sink`.
    async fn snapshot_pages(&self, epoch: &Epoch, mut sink: impl FnMut(Vec<VersionedRow>)) -> Result<usize> {
        let mut after = None;
        let mut total = 0;
        loop {
            let q = Query::Snapshot { entity: E::KIND.into(), after: after.clone(), limit: self.page_size };
            let rows = self.source.query(q, self.snapshot_timeout).await?;
            self.same_epoch(&rows, epoch)?;
            total += rows.len();
            let next = match rows.last() {
                Some(last) if rows.len() as u32 >= self.page_size => Some(last.key.clone()),
                _ => None,
            };
            sink(rows);
            match next {
                Some(key) => after = Some(key),
                None => return Ok(total),
            }
        }
    }

    /// Every row of the owner applied to the live state.
    async fn sync_full(&self, epoch: &Epoch) -> Result<usize> {
        self.snapshot_pages(epoch, |rows| {
            self.apply_rows(&rows);
        })
        .await
    }

    /// Replaces the live state with the owner's snapshot of epoch `epoch`, built aside while
    /// the live state keeps answering; rows that arrive meanwhile are applied to the new state
    /// before the swap. The persisted copy is replaced too.
    async fn rebuild(&self, epoch: &Epoch) -> Result<usize> {
        *self.lock_buffer() = Some(Vec::new());
        let mut fresh: State<E, I> = State::default();
        let mut all = Vec::new();
        let keep_rows = self.persister.is_some();
        let read = self
            .snapshot_pages(epoch, |rows| {
                for row in &rows {
                    apply_locked(&mut fresh, row);
                }
                if keep_rows {
                    all.extend(rows);
                }
            })
            .await;
        let total = match read {
            Ok(n) => n,
            Err(e) => {
                *self.lock_buffer() = None;
                return Err(e);
            }
        };
        let max = {
            let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
            let arrived = self.lock_buffer().take().unwrap_or_default();
            for row in arrived.iter().filter(|r| r.epoch.as_ref().is_none_or(|e| e == epoch)) {
                apply_locked(&mut fresh, row);
                if keep_rows {
                    all.push(row.clone());
                }
            }
            fresh.epoch = Some(epoch.clone());
            fresh.retired = std::mem::take(&mut state.retired);
            if let Some(old) = state.epoch.take().filter(|old| old != epoch) {
                fresh.retired.push(old);
                // A handful is plenty: an owner is not restored every minute.
                if fresh.retired.len() > 16 {
                    fresh.retired.remove(0);
                }
            }
            let max = fresh.rows.values().map(|s| s.version).max().unwrap_or(0);
            *state = fresh;
            max
        };
        self.max_version.store(max, Ordering::Relaxed);
        self.misses.invalidate_all();
        if let Some(p) = &self.persister {
            p.reset(epoch.clone(), all);
        }
        self.metrics.inc("moa_replica_rebuilds_total", format!("entity=\"{}\"", E::KIND), 1.0);
        Ok(total)
    }

    /// The owner's rows in the version buckets whose digests differ from this replica's (see
    /// [`digest`]). `None` when most of it differs: the full snapshot is then the cheaper read.
    async fn sync_by_digest(&self, epoch: &Epoch) -> Result<Option<(usize, String)>> {
        let width = digest::WIDTH;
        let answer = self.source.query(Query::Digest { entity: E::KIND.into(), width }, self.snapshot_timeout).await?;
        self.same_epoch(&answer, epoch)?;
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
            self.same_epoch(&page, epoch)?;
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
    /// During a start the owner (or the own database) is often not ready for a few seconds:
    /// that is logged at `info`; failing for longer than [`START_GRACE`] is a `warn`.
    pub async fn sync_until_done(&self) {
        let mut delay = Duration::from_millis(200);
        let started = std::time::Instant::now();
        loop {
            match self.sync().await {
                Ok(_) => return,
                Err(e) => {
                    let level = if started.elapsed() < START_GRACE { log::Level::Info } else { log::Level::Warn };
                    log::log!(
                        level,
                        "{} replica: snapshot from {} failed: {e}; retrying",
                        E::KIND,
                        self.source.owner_name()
                    );
                    tokio::time::sleep(crate::backoff::jitter(delay)).await;
                    delay = (delay * 2).min(Duration::from_secs(3));
                }
            }
        }
    }

    /// Watches the owner for as long as the service runs: every `EPOCH_PROBE_MS` (and at once
    /// when a row of an unknown epoch arrives) it asks the owner's epoch and newest version,
    /// and rebuilds the replica when the owner was re-created or restored, or when the replica
    /// holds a version the owner never handed out. An owner that does not answer is left
    /// alone: its data cannot change while it is down.
    pub async fn watch_owner(&self) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(crate::backoff::jitter(self.probe_interval)) => {}
                _ = self.check_owner.notified() => {}
            }
            // Before the first sync there is nothing to compare; the sync checks the epoch itself.
            if !self.is_warm() || self.read().epoch.is_none() {
                continue;
            }
            let seen = self.max_version();
            let owner = match self.owner_mark().await {
                Ok(o) => o,
                Err(e) => {
                    log::debug!("{} replica: epoch check with {} failed: {e}", E::KIND, self.source.owner_name());
                    continue;
                }
            };
            let Some(why) = self.rebuild_reason(&owner, seen) else { continue };
            log::warn!("{} replica: rebuilding from {}: {why}", E::KIND, self.source.owner_name());
            let started = std::time::Instant::now();
            match self.rebuild(&owner.epoch).await {
                Ok(n) => log::info!(
                    "{} replica rebuilt from {} (epoch {}): {n} rows in {:?}",
                    E::KIND,
                    self.source.owner_name(),
                    owner.epoch,
                    started.elapsed()
                ),
                Err(e) => {
                    log::warn!("{} replica: rebuild from {} failed: {e}; retrying", E::KIND, self.source.owner_name());
                    self.check_owner.notify_one();
                    tokio::time::sleep(crate::backoff::jitter(Duration::from_millis(500))).await;
                }
            }
        }
    }

    /// Asks the owner (a cache miss), applies what it says, and returns its answer.
    pub async fn fetch(&self, q: Query) -> Result<Vec<VersionedRow>> {
        self.counters.misses.increment(1);
        let rows = self.source.query(q, self.lookup_timeout).await?;
        self.apply_rows(&rows);
        Ok(rows)
    }

    /// [`Self::fetch`] for a lookup named `key`, single-flight: concurrent misses of one key
    /// share one question to the owner, and an answer that `found` says holds nothing is
    /// remembered for `NEGATIVE_CACHE_MS` (unknown tokens cannot flood the owner). Callers
    /// look in the replica first, so a remembered "no" never hides a row an event brought.
    pub async fn fetch_once(
        &self,
        key: String,
        q: Query,
        found: impl Fn(&[VersionedRow]) -> bool,
    ) -> Result<Arc<Vec<VersionedRow>>> {
        let rows = self
            .misses
            .try_get_with(key.clone(), async { self.fetch(q).await.map(Arc::new) })
            .await
            .map_err(|e| e.same_kind())?;
        if found(&rows) {
            // Only "no" answers are remembered: a row found is in the replica now.
            self.misses.invalidate(&key).await;
        } else {
            self.counters.negative.increment(1);
        }
        Ok(rows)
    }

    /// Counts a lookup answered from memory.
    pub fn hit(&self) {
        self.counters.hits.increment(1);
    }
}

/// The per-request counters of a cache or replica of one entity kind, registered once: a
/// hit is counted on every request, and looking a series up by name and labels each time
/// cost ~5 % of the item list's CPU.
pub(crate) struct CacheCounters {
    pub hits: metrics::Counter,
    pub misses: metrics::Counter,
    pub negative: metrics::Counter,
    pub miss_failures: metrics::Counter,
    pub stale_served: metrics::Counter,
}

impl CacheCounters {
    pub fn new(metrics: &Metrics, kind: &'static str) -> Self {
        let c = |name| metrics.counter(name, [("entity", kind)]);
        CacheCounters {
            hits: c("moa_cache_hits_total"),
            misses: c("moa_cache_misses_total"),
            negative: c("moa_negative_lookups_total"),
            miss_failures: c("moa_cache_miss_failures_total"),
            stale_served: c("moa_cache_stale_served_total"),
        }
    }
}

/// How long a replica's first sync may fail quietly: the owners and the own database of a
/// system starting together are ready within seconds.
const START_GRACE: Duration = Duration::from_secs(15);

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
    use crate::replica::fixtures::{Catalog, Priced};
    use serde_json::json;

    fn item_row(id: i64, version: i64, price: i32, deleted: bool) -> VersionedRow {
        VersionedRow {
            key: id.to_string(),
            version,
            deleted,
            data: raw_json(&json!({"id": id, "name": "n", "broadcaster": "b", "category": null, "price": price})),
            epoch: None,
        }
    }

    fn price(c: &Catalog, id: i64) -> Option<i32> {
        c.read().rows.get(&id).and_then(|s| s.value.as_ref()).map(|i: &Priced| i.price)
    }

    #[test]
    fn a_replica_below_the_owners_tombstone_horizon_rebuilds_and_one_at_or_above_it_does_not() {
        let c = Catalog::detached();
        c.apply_rows(&[item_row(1, 40, 100, false)]);
        let owner = |horizon| OwnerMark { epoch: Epoch::from("e"), max_version: 100, horizon };
        assert!(c.rebuild_reason(&owner(0), 40).is_none(), "no collection yet");
        assert!(c.rebuild_reason(&owner(40), 40).is_none(), "it saw everything up to the horizon");
        let why = c.rebuild_reason(&owner(41), 40).expect("away since before the collection");
        assert!(why.contains("collected tombstones"), "{why}");
    }

    #[test]
    fn newer_versions_win_whatever_the_arrival_order() {
        let c = Catalog::detached();
        c.apply_rows(&[item_row(1, 5, 500, false)]);
        assert_eq!(c.apply_rows(&[item_row(1, 3, 300, false)]), (0, 1), "older is dropped");
        assert_eq!(price(&c, 1), Some(500));
        c.apply_rows(&[item_row(1, 7, 700, false)]);
        assert_eq!(price(&c, 1), Some(700));
        assert_eq!(c.apply_rows(&[item_row(1, 7, 700, false)]), (0, 1), "a duplicate changes nothing");
    }

    #[test]
    fn a_tombstone_beats_a_late_older_upsert() {
        let c = Catalog::detached();
        c.apply_rows(&[item_row(2, 10, 1, true)]);
        c.apply_rows(&[item_row(2, 9, 900, false)]);
        assert_eq!(price(&c, 2), None);
        assert!(c.read().rows.contains_key(&2), "the tombstone is kept");
        c.apply_rows(&[item_row(2, 11, 1100, false)]);
        assert_eq!(price(&c, 2), Some(1100), "re-created later");
    }

    #[test]
    fn the_first_epoch_is_adopted_and_rows_of_another_are_not_mixed_in() {
        let c = Catalog::detached();
        let a: Epoch = "epoch-a".into();
        let b: Epoch = "epoch-b".into();
        let of = |epoch: &Epoch, row: VersionedRow| VersionedRow { epoch: Some(epoch.clone()), ..row };
        c.apply_rows(&[of(&a, item_row(1, 50, 500, false))]);
        assert_eq!(c.epoch(), Some(a.clone()));
        // The owner was re-created: its versions start again, lower than what we hold.
        assert_eq!(c.apply_rows(&[of(&b, item_row(1, 3, 300, false))]), (0, 0), "not applied to epoch a's rows");
        assert_eq!(price(&c, 1), Some(500));
        assert_eq!(c.epoch(), Some(a.clone()), "the epoch changes only by a rebuild from the owner");
        // A retired epoch's late rows are dropped.
        c.state.write().unwrap().retired.push("epoch-old".into());
        assert_eq!(c.apply_rows(&[of(&"epoch-old".into(), item_row(2, 99, 1, false))]), (0, 0));
        assert_eq!(price(&c, 2), None);
    }

    #[test]
    fn rows_of_the_wrong_shape_are_ignored() {
        let c = Catalog::detached();
        let bad = VersionedRow {
            key: "x".into(),
            version: 1,
            deleted: false,
            data: raw_json(&json!({"id": "x"})),
            epoch: None,
        };
        assert_eq!(c.apply_rows(&[bad]), (0, 0));
        assert!(c.is_empty());
    }
}
