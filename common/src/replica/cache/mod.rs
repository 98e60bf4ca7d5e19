//! Bounded caches of users and alarms: one entry per *group* (a user; one user's alarms),
//! filled on a miss by one question to the owner (RPC, or the own database for the owner
//! itself), kept exact by the change events, and evicted by quick_cache when full. Items are not
//! cached this way: the catalog is small and every list reads all of it ([`super::Replica`]).
//!
//! Exact without a full copy, by four rules:
//! - **Events** update a cached entry (the newer version wins) and are dropped for an uncached
//!   one. Every event is also kept for [`RECENT_WINDOW`] in a small side cache, and a miss
//!   answer is merged with it before it is stored: an answer read before an event committed
//!   cannot hide that event, whichever arrives first.
//! - **Generations**: an entry remembers the generation it was filled in. The generation moves
//!   on at every (re)subscription of the feed (events may have been missed while there was
//!   none) and at every reset. An entry of an older generation is asked again before use, and
//!   served as it is only when the owner does not answer.
//! - **Epochs**: a row of another owner epoch, or an owner whose newest version is below one
//!   this cache has seen (a restore, a forged event), resets the cache: everything is asked
//!   again.
//! - **Hot copy**: the entries of other domains' caches are persisted write-behind in the own
//!   database (`moa_cache_entry`) and restored at start as entries of an old generation: a
//!   service restarted while an owner is down still answers for the users it had cached.
//!
//! This module is the cache itself: its entries ([`Entry`], the bounded map), lookups, events
//! and fills. The hot copy is [`hot_copy`] (persisting and restoring entries); the watch of the
//! owner's epoch and newest version, and the repairs it makes, is `owner_watch`.

pub mod hot_copy;
mod owner_watch;

use std::{
    sync::{
        atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering},
        Arc, Mutex, RwLock,
    },
    time::{Duration, Instant},
};

use actix::Addr;

pub use super::group::{Group, Held, Members};
use super::{misses::MissBatcher, read_model::ReadModel, CacheCounters, Source};
use crate::{
    entity::{Epoch, VersionedRow},
    error::{Error, Result},
    settings::Settings,
    store::{query::Query, Store},
    tasks::Tasks,
    telemetry::Metrics,
};
use hot_copy::{Dirty, EntryPersister};

/// How long every event is kept beside the cache, to correct miss answers read before it
/// committed: longer than any lookup may take (RPC_TIMEOUT_MS, DB_TIMEOUT_MS, 2 s by default),
/// short enough that the events held stay few (the alarm write rate times this).
pub const RECENT_WINDOW: Duration = Duration::from_secs(10);

/// The events of one group received in the last [`RECENT_WINDOW`]: per key (and epoch) the
/// newest, with when it came. Not every event: a merge keeps each member's newest version
/// anyway, and a group written thousands of times in the window (one user's alarms set and
/// cleared in a loop) was scanned whole, a clock read per event held, at every new event
/// (12 % of the machine's CPU under the set + clear bench, docs/performance.md).
#[derive(Debug, Default)]
struct RecentRows(Vec<(Instant, VersionedRow)>);

impl RecentRows {
    /// Holds `row`, come at `now`, and lets go of what came `window` or more before it.
    fn note(&mut self, row: &VersionedRow, now: Instant, window: Duration) {
        self.0.retain(|(at, _)| now.saturating_duration_since(*at) < window);
        match self.0.iter_mut().find(|(_, held)| held.key == row.key && held.epoch == row.epoch) {
            Some((_, held)) if held.version > row.version => {}
            Some(slot) => *slot = (now, row.clone()),
            None => self.0.push((now, row.clone())),
        }
    }

    fn rows(&self) -> impl Iterator<Item = &VersionedRow> {
        self.0.iter().map(|(_, row)| row)
    }
}

/// One group's members as the owner last told them, and what lookups read.
pub struct Entry<G: Group> {
    members: Members<G::Kept>,
    pub view: G::View,
    generation: u64,
}

impl<G: Group> Entry<G> {
    fn new(members: Members<G::Kept>, generation: u64) -> Self {
        Entry { view: G::view(&members), members, generation }
    }
}

fn held<G: Group>(row: &VersionedRow) -> Held<G::Kept> {
    Held { version: row.version, deleted: row.deleted, kept: G::keep(row) }
}

/// Merges `row` into `members` when it is newer than what they hold (or new): true if it was.
fn merge<G: Group>(members: &mut Members<G::Kept>, member: i64, row: &VersionedRow) -> bool {
    if members.get(member).is_some_and(|held| held.version >= row.version) {
        return false;
    }
    *members = members.with(member, held::<G>(row));
    true
}

/// The members of `group` among `rows`, the newest version of each: sorted once, not merged
/// row by row (each merge copies the slice).
fn collect<'r, G: Group>(group: i64, rows: impl Iterator<Item = &'r VersionedRow>) -> Members<G::Kept> {
    let mut mine: Vec<(i64, &VersionedRow)> =
        rows.filter_map(|r| G::place(&r.key).filter(|(g, _)| *g == group).map(|(_, m)| (m, r))).collect();
    // Per member, the newest first; of equal versions the first given (as `merge` keeps it).
    mine.sort_by_key(|(m, r)| (*m, std::cmp::Reverse(r.version)));
    mine.dedup_by_key(|(m, _)| *m);
    Members(mine.into_iter().map(|(m, r)| (m, held::<G>(r))).collect())
}

/// The members of `group` in `rows` (an answer not kept, read as it is).
pub fn members_of<G: Group>(group: i64, rows: &[VersionedRow]) -> Members<G::Kept> {
    collect::<G>(group, rows.iter())
}

/// A lookup's answer: fresh (current generation or just asked), or an old entry served
/// because the owner did not answer.
pub enum Found<V> {
    Current(V),
    Stale(V),
}

/// Entries by group, bounded. quick_cache, not moka, on this map: every request reads it
/// (twice for the item list), and a moka get also queues the read for its housekeeping,
/// which cost ~8 % of the item list's CPU; a quick_cache get is a shard read lock and a
/// flag (docs/decisions.md). Inserts note the groups evicted for room in `dirty`, so the
/// hot copy follows the cache and stays its hot set.
pub(crate) struct EntryMap<G: Group> {
    map: quick_cache::sync::Cache<
        i64,
        Arc<Entry<G>>,
        quick_cache::UnitWeighter,
        quick_cache::DefaultHashBuilder,
        EvictedGroups,
    >,
    dirty: Option<Arc<Mutex<Dirty>>>,
}

/// Collects the groups an insert evicted (quick_cache calls this under the shard's lock:
/// the ids are handed to `dirty` after it is released).
#[derive(Clone, Default)]
pub(crate) struct EvictedGroups;

impl<V> quick_cache::Lifecycle<i64, V> for EvictedGroups {
    type RequestState = Vec<i64>;

    fn on_evict(&self, evicted: &mut Vec<i64>, group: i64, _: V) {
        evicted.push(group);
    }
}

/// A configured entry count (`CACHE_ENTRIES`) as quick_cache's item capacity.
pub fn item_capacity(entries: u64) -> usize {
    usize::try_from(entries).unwrap_or(usize::MAX).max(1)
}

impl<G: Group> EntryMap<G> {
    fn new(capacity: u64, dirty: Option<Arc<Mutex<Dirty>>>) -> Self {
        let n = item_capacity(capacity);
        let map = quick_cache::sync::Cache::with(n, n as u64, Default::default(), Default::default(), EvictedGroups);
        EntryMap { map, dirty }
    }

    fn get(&self, group: i64) -> Option<Arc<Entry<G>>> {
        self.map.get(&group)
    }

    fn contains(&self, group: i64) -> bool {
        self.map.contains_key(&group)
    }

    fn insert(&self, group: i64, entry: Arc<Entry<G>>) {
        let mut evicted = Vec::new();
        self.map.insert_with_lifecycle(group, entry, &mut evicted);
        if let (false, Some(d)) = (evicted.is_empty(), &self.dirty) {
            d.lock().unwrap_or_else(|p| p.into_inner()).groups.extend(evicted);
        }
    }

    fn clear(&self) {
        self.map.clear();
    }

    fn len(&self) -> u64 {
        self.map.len() as u64
    }
}

pub struct GroupCache<G: Group> {
    entries: Arc<EntryMap<G>>,
    /// Every event of the last [`RECENT_WINDOW`], by group.
    recent: moka::sync::Cache<i64, Arc<Mutex<RecentRows>>>,
    /// Single flight for misses, and the owner's "no" remembered for `NEGATIVE_CACHE_MS`.
    lookups: moka::future::Cache<String, Arc<Vec<VersionedRow>>>,
    /// Lookup names an event of the last [`RECENT_WINDOW`] answers (a new user's token): a
    /// "no" that raced such an event is asked again, not remembered.
    recent_lookups: moka::sync::Cache<String, ()>,
    /// [`RECENT_WINDOW`], or three lookup timeouts or `NEGATIVE_CACHE_MS` if longer.
    recent_window: Duration,
    /// Read-modify-write of entries (events, fills, resets) one at a time; reads take no lock.
    write: Mutex<()>,
    generation: AtomicU64,
    /// The read model's repair count last acted on ([`Self::drop_repaired`]).
    repairs_seen: AtomicU64,
    /// Shared with the hot copy's writer, which saves entries under it.
    epoch: Arc<RwLock<Option<Epoch>>>,
    max_version: AtomicI64,
    warm: AtomicBool,
    /// False until the hot copy is loaded: a request right after the start must find the
    /// users the copy holds (with their owner down, nothing else answers for them).
    restored: AtomicBool,
    /// Set at the feed's first subscription: the epoch watch starts then (before it, the bus
    /// is not connected and the owners of a system starting together are not up yet).
    subscribed: AtomicBool,
    /// How the last epoch check with the owner ended, for the log while the cache is cold.
    last_check: Mutex<Option<String>>,
    source: Source,
    /// The source, for misses: merged with other requests' while earlier ones are asked.
    misses: MissBatcher,
    lookup_timeout: Duration,
    probe_interval: Duration,
    metrics: Metrics,
    counters: CacheCounters,
    check_owner: tokio::sync::Notify,
    persister: Option<EntryPersister>,
    restore_limit: u64,
    restore_timeout: Duration,
    /// When a question to the owner last failed: for [`OWNER_RETRY_AFTER`] an old entry is
    /// served at once instead of waiting for another timeout.
    owner_failed_at: Mutex<Option<Instant>>,
    /// The complete read model behind this cache, for another domain's kind
    /// ([`super::read_model`]): fed every event, whether its group is cached or not.
    read_model: Option<Arc<ReadModel>>,
}

pub use crate::backoff::OWNER_RETRY_AFTER;

/// A failed miss is logged at `warn` when no other failed for this long before it.
pub const QUIET_AFTER_FAILURE: Duration = Duration::from_secs(10);

impl<G: Group> GroupCache<G> {
    /// A cache of `settings.cache_entries` entries. With `persist`, its entries are kept in
    /// the own database (every `HOT_COPY_EVERY`) and the hottest restored at start.
    pub fn new(source: Source, settings: &Settings, metrics: Metrics, persist: Option<(Addr<Store>, &Tasks)>) -> Self {
        let dirty = persist.as_ref().map(|_| Arc::new(Mutex::new(Dirty::default())));
        let lookup_timeout = match source {
            Source::Local(_) => settings.db_timeout,
            Source::Remote { .. } => settings.rpc_timeout,
            // The read model (the own database's read timeout), then the owner if need be.
            Source::Replicated(_) => settings.own_read_timeout + settings.rpc_timeout,
        };
        let read_model = match &source {
            Source::Replicated(model) => Some(Arc::clone(model)),
            _ => None,
        };
        // At least as long as a "no" is remembered, so that every remembered "no" an event
        // made wrong is asked again (see `fetch`).
        let recent_window = RECENT_WINDOW.max(lookup_timeout * 3).max(settings.negative_ttl);
        let entries = Arc::new(EntryMap::new(settings.cache_entries, dirty.clone()));
        let epoch = Arc::new(RwLock::new(None));
        let persister = persist.zip(dirty).map(|((store, tasks), dirty)| {
            EntryPersister::start(G::KIND, store, tasks, dirty, Arc::clone(&entries), Arc::clone(&epoch))
        });
        GroupCache {
            entries,
            // Idle expiry per group, and each group's rows pruned to the window as they come:
            // memory follows the event rate over RECENT_WINDOW, whatever a group's history.
            recent: moka::sync::Cache::builder()
                .max_capacity(settings.cache_entries.max(10_000))
                .time_to_idle(recent_window)
                .build(),
            lookups: moka::future::Cache::builder().max_capacity(100_000).time_to_live(settings.negative_ttl).build(),
            recent_lookups: moka::sync::Cache::builder().max_capacity(100_000).time_to_live(recent_window).build(),
            recent_window,
            write: Mutex::new(()),
            // Restored entries are of generation 0: never current.
            generation: AtomicU64::new(1),
            repairs_seen: AtomicU64::new(0),
            epoch,
            max_version: AtomicI64::new(0),
            warm: AtomicBool::new(false),
            restored: AtomicBool::new(persister.is_none()),
            subscribed: AtomicBool::new(false),
            last_check: Mutex::new(None),
            lookup_timeout,
            misses: MissBatcher::new(
                source.clone(),
                super::misses::LookupNames { of_key: G::lookup_name, of_row: G::lookup },
            ),
            source,
            probe_interval: settings.epoch_probe,
            counters: CacheCounters::new(&metrics, G::KIND),
            metrics,
            check_owner: tokio::sync::Notify::new(),
            persister,
            restore_limit: settings.cache_restore_entries,
            restore_timeout: settings.snapshot_timeout,
            owner_failed_at: Mutex::new(None),
            read_model,
        }
    }

    /// A cache with no way to reach its owner (tests).
    pub fn detached() -> Self {
        let settings = Settings::from_lookup(G::OWNER, |_| None).unwrap_or_else(|_| unreachable!());
        let rpc = crate::amqp::rpc::RpcClient::detached();
        GroupCache::new(Source::Remote { rpc, owner: G::OWNER }, &settings, Metrics::default(), None)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.write.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Ready to answer: the hot copy is loaded (or given up on), and the owner answered or the
    /// hot copy had entries.
    pub fn is_warm(&self) -> bool {
        let complete = self.read_model.as_ref().is_some_and(|m| m.phase().is_complete());
        (self.warm.load(Ordering::Acquire) || complete) && self.restored.load(Ordering::Acquire)
    }

    /// The read model behind this cache, if it has one.
    pub fn read_model(&self) -> Option<&Arc<ReadModel>> {
        self.read_model.as_ref()
    }

    pub fn owner_name(&self) -> &'static str {
        self.source.owner_name()
    }

    /// The newest owner version this cache has seen (events and answers).
    pub fn max_version(&self) -> i64 {
        self.max_version.load(Ordering::Relaxed)
    }

    pub fn epoch(&self) -> Option<Epoch> {
        self.epoch.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Entries held now.
    pub fn len(&self) -> u64 {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn current_generation(&self) -> u64 {
        // Both only grow: an entry read before either moved is of an older generation.
        let model = self.read_model.as_ref().map_or(0, |m| m.revision());
        self.generation.load(Ordering::Acquire) + model
    }

    /// The cached entry of `group`: `Current` when it is of the current generation.
    pub fn cached(&self, group: i64) -> Option<Found<Arc<Entry<G>>>> {
        self.drop_repaired();
        let e = self.entries.get(group)?;
        Some(if e.generation == self.current_generation() { Found::Current(e) } else { Found::Stale(e) })
    }

    /// The read model's repairs since the last look (one atomic load when there were none):
    /// the entries of the groups a catch-up replaced with the owner's rows are dropped, to be
    /// read again; every other entry stays.
    fn drop_repaired(&self) {
        let Some(model) = &self.read_model else { return };
        let repairs = model.repairs();
        if self.repairs_seen.load(Ordering::Acquire) == repairs
            || self.repairs_seen.swap(repairs, Ordering::AcqRel) == repairs
        {
            return;
        }
        let groups = model.take_repaired_groups();
        if groups.is_empty() {
            // Taken already by the look that saw the repair before this one.
            return;
        }
        {
            let _guard = self.lock();
            for group in &groups {
                self.entries.map.remove(group);
            }
        }
        // Not in the cache any more: deleted from the hot copy at its next write.
        self.save(groups.iter().copied());
        log::info!("{} cache: {} entries the read model repaired dropped, to be read again", G::KIND, groups.len());
    }

    /// The generation to fill an answer asked at `generation` with: an old one (asked again
    /// at its next use) if the read model repaired rows meanwhile, since the answer may have
    /// been read before the repair and its group's entry dropped already.
    fn fill_generation(&self, generation: u64, repairs: u64) -> u64 {
        if self.model_repairs() == repairs {
            generation
        } else {
            0
        }
    }

    fn model_repairs(&self) -> u64 {
        self.read_model.as_ref().map_or(0, |m| m.repairs())
    }

    /// Whether a row of `epoch` belongs to the history this cache holds; adopts the first
    /// epoch it sees. A row of another epoch asks the epoch watch to check the owner now.
    fn same_epoch(&self, epoch: Option<&Epoch>) -> bool {
        let Some(e) = epoch else { return true };
        {
            let mine = self.epoch.read().unwrap_or_else(|p| p.into_inner());
            match mine.as_ref() {
                Some(m) if m == e => return true,
                Some(_) => {
                    self.check_owner.notify_one();
                    return false;
                }
                None => {}
            }
        }
        let mut mine = self.epoch.write().unwrap_or_else(|p| p.into_inner());
        match mine.as_ref() {
            None => {
                *mine = Some(e.clone());
                true
            }
            Some(m) => m == e,
        }
    }

    /// Change events (and the owner's own writes): applied to cached entries, remembered for
    /// [`RECENT_WINDOW`] either way. Answers (applied to cached entries, stale or duplicate).
    pub fn apply_rows(&self, rows: &[VersionedRow]) -> (usize, usize) {
        if let Some(model) = &self.read_model {
            model.note(rows);
        }
        let mut changed = 0;
        let mut stale = 0;
        let mut saves = Vec::new();
        let now = Instant::now();
        {
            let _guard = self.lock();
            for row in rows {
                if !self.same_epoch(row.epoch.as_ref()) {
                    self.metrics.inc("moa_replica_rows_other_epoch_total", format!("entity=\"{}\"", G::KIND), 1.0);
                    continue;
                }
                let Some((group, member)) = G::place(&row.key) else {
                    log::warn!("{} row {} has an unexpected key; ignored", G::KIND, row.key);
                    continue;
                };
                self.max_version.fetch_max(row.version, Ordering::Relaxed);
                {
                    let held = self.recent.get_with(group, Default::default);
                    held.lock().unwrap_or_else(|p| p.into_inner()).note(row, now, self.recent_window);
                }
                self.note_answered_lookups(row);
                let Some(entry) = self.entries.get(group) else { continue };
                let mut members = entry.members.clone();
                if !merge::<G>(&mut members, member, row) {
                    stale += 1;
                    continue;
                }
                let updated = Arc::new(Entry::new(members, entry.generation));
                saves.push(group);
                self.entries.insert(group, updated);
                changed += 1;
            }
        }
        self.save(saves);
        (changed, stale)
    }

    /// Stores the owner's answer for `groups` (asked in generation `generation`), merged with
    /// the events of the last moments, and answers each group's entry.
    pub fn fill(&self, groups: &[i64], answer: &[VersionedRow], generation: u64) -> Vec<(i64, Arc<Entry<G>>)> {
        let mut filled = Vec::new();
        {
            let _guard = self.lock();
            // An answer of another history is not stored (the epoch watch resets the cache);
            // it is still the owner's truth for this request.
            let keep = answer.iter().all(|r| self.same_epoch(r.epoch.as_ref()));
            for &group in groups {
                let recent = self.recent.get(&group);
                // Any event held is a fact of the owner's history: merging one older than the
                // window is still right (newest version wins), it is just not needed.
                let recent: Vec<VersionedRow> = recent
                    .map(|r| r.lock().unwrap_or_else(|p| p.into_inner()).rows().cloned().collect())
                    .unwrap_or_default();
                let recent = recent.iter().filter(|r| self.same_epoch(r.epoch.as_ref()));
                let members = collect::<G>(group, answer.iter().chain(recent));
                let newest = members.iter().map(|(_, m)| m.version).max().unwrap_or(0);
                self.max_version.fetch_max(newest, Ordering::Relaxed);
                let entry = Arc::new(Entry::new(members, generation));
                if keep {
                    self.entries.insert(group, entry.clone());
                }
                filled.push((group, entry));
            }
        }
        self.save(filled.iter().map(|(group, _)| *group));
        filled
    }

    /// Asks the owner `q` for `groups`, single-flight under the name `lookup`, and stores the
    /// answer. `found` tells an answer worth keeping from a "no" remembered for
    /// `NEGATIVE_CACHE_MS`.
    pub async fn fetch(
        &self,
        lookup: String,
        q: Query,
        groups_of: impl Fn(&[VersionedRow]) -> Vec<i64>,
        found: impl Fn(&[VersionedRow]) -> bool,
    ) -> Result<Arc<Vec<VersionedRow>>> {
        let generation = self.current_generation();
        let repairs = self.model_repairs();
        let ask = |q: Query| async {
            self.counters.misses.increment(1);
            let rows = self.misses.query(q, self.lookup_timeout).await?;
            self.fill(&groups_of(&rows), &rows, self.fill_generation(generation, repairs));
            Ok::<_, Error>(Arc::new(rows))
        };
        let mut rows = self.lookups.try_get_with(lookup.clone(), ask(q.clone())).await.map_err(|e| {
            self.owner_failed(&e);
            e.same_kind()
        })?;
        if !found(&rows) && self.recent_lookups.contains_key(&lookup) {
            // A "no" remembered, or read, before an event that says otherwise.
            self.lookups.invalidate(&lookup).await;
            rows = ask(q).await?;
        }
        if found(&rows) {
            // Only "no" answers are remembered: what was found is an entry now.
            self.lookups.invalidate(&lookup).await;
        } else {
            self.counters.negative.increment(1);
        }
        Ok(rows)
    }

    /// The rows of `group` read from the source now (not single-flight: a reader after a
    /// write must not share a question asked before it), stored as the group's entry.
    pub async fn read_group(&self, group: i64, q: Query, timeout: Duration) -> Result<Arc<Entry<G>>> {
        let generation = self.current_generation();
        let repairs = self.model_repairs();
        let rows = self.misses.query(q, timeout).await?;
        let filled = self.fill(&[group], &rows, self.fill_generation(generation, repairs));
        filled.into_iter().next().map(|(_, e)| e).ok_or_else(|| Error::Malformed("a fill without its entry".into()))
    }

    /// Notes that a miss could not be answered: counted, remembered for
    /// [`Self::owner_recently_failed`], and logged at `warn` when it is the first failure for
    /// [`QUIET_AFTER_FAILURE`] (a storm of failed misses, each a `503` to its request, is one
    /// line, not one per request; nothing else logs them at `warn`).
    fn owner_failed(&self, e: &Error) {
        self.counters.miss_failures.increment(1);
        let now = Instant::now();
        let before = self.owner_failed_at.lock().unwrap_or_else(|p| p.into_inner()).replace(now);
        if before.is_none_or(|t| now.saturating_duration_since(t) >= QUIET_AFTER_FAILURE) {
            let owner = match &self.source {
                Source::Local(_) => "the own database".to_string(),
                Source::Remote { owner, .. } => format!("the {} service", owner.name()),
                Source::Replicated(model) => format!("the {} service (and the read model)", model.owner().name()),
            };
            log::warn!(
                "{kind} cache: {owner} did not answer a miss ({e}); a request that needs an uncached {kind} is 503 until it does",
                kind = G::KIND
            );
        }
    }

    /// The last failure to reach the owner, if it was less than [`OWNER_RETRY_AFTER`] ago:
    /// callers holding an old entry serve it without asking (an owner that is down costs
    /// one timeout a second, not one per request).
    pub fn owner_recently_failed(&self) -> Option<Error> {
        let failed_at = *self.owner_failed_at.lock().unwrap_or_else(|p| p.into_inner());
        failed_at.filter(|t| t.elapsed() < OWNER_RETRY_AFTER).map(|_| match &self.source {
            Source::Local(_) => Error::DbUnavailable("the database did not answer a moment ago".into()),
            Source::Remote { owner, .. } => Error::RpcFailed(owner.name(), "it did not answer a moment ago".into()),
            Source::Replicated(model) => {
                Error::RpcFailed(model.owner().name(), "it did not answer a moment ago".into())
            }
        })
    }

    /// Notes the lookups a row answers (a user created with a token just looked up in vain):
    /// for the recent window, a remembered "no" for them is asked again ([`Self::fetch`]).
    fn note_answered_lookups(&self, row: &VersionedRow) {
        for name in G::lookups_answered_by(row) {
            self.recent_lookups.insert(name, ());
        }
    }

    /// Counts a lookup answered from memory.
    pub fn hit(&self) {
        self.counters.hits.increment(1);
    }

    /// Counts (and logs at debug) an old entry served because the owner did not answer.
    pub fn served_stale(&self, why: &Error) {
        log::debug!("{} cache: an entry of an older generation served: {why}", G::KIND);
        self.counters.stale_served.increment(1);
    }

    /// The feed (re)subscribed: events may have been missed while it was not, so every entry
    /// is asked again before its next use. Then the owner's epoch is checked.
    pub async fn resubscribed(&self) {
        if let Some(model) = &self.read_model {
            model.resubscribed();
        }
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.subscribed.store(true, Ordering::Release);
        self.check_owner.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entity::{pair_key, raw_json};
    use serde_json::json;

    pub(super) fn alarm_row(user: i64, item: i64, version: i64) -> VersionedRow {
        VersionedRow {
            key: pair_key(user, item),
            version,
            deleted: false,
            data: raw_json(&json!({"id": version, "user_id": user, "item_id": item, "created": "2026-11-30T10:00:00"})),
            epoch: Some(Epoch::from("0b4c5d3e-2f41-4c7a-9a57-5d6f1e2a3b4c")),
        }
    }

    /// The events held for a group: one per key (the newest version, whatever the order they
    /// came in), the other epoch's apart, and nothing older than the window.
    #[test]
    fn recent_rows_hold_each_keys_newest_event_within_the_window() {
        let window = Duration::from_secs(10);
        let t0 = Instant::now();
        let mut recent = RecentRows::default();
        recent.note(&alarm_row(1, 10, 5), t0, window);
        recent.note(&alarm_row(1, 10, 7), t0, window);
        recent.note(&alarm_row(1, 10, 6), t0, window); // late, older: not held instead of 7
        recent.note(&alarm_row(1, 11, 3), t0, window);
        let mut other = alarm_row(1, 10, 2);
        other.epoch = Some(Epoch::from("another history"));
        recent.note(&other, t0, window);
        let held = |r: &RecentRows| {
            let mut v: Vec<(String, i64)> = r.rows().map(|row| (row.key.clone(), row.version)).collect();
            v.sort();
            v
        };
        assert_eq!(held(&recent), [("1:10".into(), 2), ("1:10".into(), 7), ("1:11".into(), 3)]);
        // 9 s on, item 11 changes again: everything is still within the window.
        recent.note(&alarm_row(1, 11, 8), t0 + Duration::from_secs(9), window);
        assert_eq!(held(&recent), [("1:10".into(), 2), ("1:10".into(), 7), ("1:11".into(), 8)]);
        // 12 s on: the events of t0 are gone, the one of 9 s is held.
        recent.note(&alarm_row(1, 12, 9), t0 + Duration::from_secs(12), window);
        assert_eq!(held(&recent), [("1:11".into(), 8), ("1:12".into(), 9)]);
    }
}
