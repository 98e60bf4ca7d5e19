//! Complete read models of other domains' kinds (users, alarm sets), on disk in the service's
//! own database (`moa_read_model`, common/sql/0025_read_model.sql), behind the bounded memory
//! caches ([`super::cache`]). A lookup has three tiers: memory, then this read model (an
//! index probe), then the owner over RPC, the last only while the read model is not known to
//! be complete and current. So a user the service never saw is answered while the owner, its
//! database or RabbitMQ is down, and memory still follows the active users, not the data.
//!
//! Written once for every kind: a kind is its [`Group`] (how a row is placed, kept, looked
//! up); the read model stores [`ReadRow`]s and answers the same [`Query`]s the owner does.
//!
//! A read model moves through phases, owned by one task per kind (`read model <kind>`):
//! - **Building**: a first start, or a new owner epoch, copies the owner's rows page by page
//!   (`Query::Snapshot`, keyset-paginated; each page and the cursor after it in one
//!   transaction, so a backfill killed half way resumes after its last page). Events are
//!   written all along; versions reconcile them with the pages. Misses go to the owner.
//! - **CatchingUp**: complete, but events may have been missed (a start: the instance's queue
//!   did not exist while it was down; a re-subscription; a write that could not be made). The
//!   owner's digest is compared with the read model's, per bucket of versions, and the
//!   owner's rows replace the buckets that differ. Misses ask the owner first and fall back
//!   to the read model when the owner does not answer (its data cannot change meanwhile).
//! - **Current**: misses read the read model, and ask the owner only if the own database
//!   does not answer. The digest is compared again every `READ_MODEL_CHECK_MS`.
//!
//! Events are written behind (`read model <kind> writer`): every row the feed delivers, in
//! one multi-row upsert per flush (no transaction per event), a row applied only over an
//! older version of its key. A miss answer read before an event was written is corrected by
//! the cache's window of recent events, as for answers from the owner.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicU8, Ordering},
        Arc, Mutex, RwLock,
    },
    time::{Duration, Instant},
};

use actix::{Addr, Context, Handler, Message, ResponseFuture};
use serde_json::value::RawValue;
use tokio::sync::Notify;

use super::{
    digest::{differing, BucketDigest, WIDTH},
    group::Group,
    OwnerMark, Source,
};
use crate::{
    amqp::rpc::RpcClient,
    backoff::OWNER_RETRY_AFTER,
    entity::{Epoch, VersionedRow},
    error::{Error, Result},
    settings::{Domain, Settings},
    store::{query::Query, Store},
    tasks::Tasks,
    telemetry::Metrics,
};

/// One row of a read model: what the kind needs of an owner's row, not the row.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadRow {
    pub grp: i64,
    pub member: i64,
    pub version: i64,
    pub deleted: bool,
    /// The name a lookup finds the row by (a user's token), `None` for a tombstone.
    pub lookup: Option<String>,
    /// What the kind keeps of the row, as JSON (`None`: nothing, as for an alarm).
    pub kept: Option<String>,
    pub epoch: Option<Epoch>,
}

impl ReadRow {
    /// The read-model row of an owner's row of kind `G`; `None` for a key the kind does not place.
    pub fn of<G: Group>(row: &VersionedRow) -> Option<ReadRow> {
        let (grp, member) = G::place(&row.key)?;
        let kept =
            (!row.deleted).then(|| serde_json::to_string(&G::keep(row)).ok()).flatten().filter(|json| json != "null");
        let lookup = if row.deleted { None } else { G::lookup(row) };
        Some(ReadRow {
            grp,
            member,
            version: row.version,
            deleted: row.deleted,
            lookup,
            kept,
            epoch: row.epoch.clone(),
        })
    }
}

/// Where a read model stands; see the module's documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    /// Its state is not read from the database yet.
    Loading = 0,
    Building = 1,
    CatchingUp = 2,
    Current = 3,
}

impl Phase {
    fn from_u8(v: u8) -> Phase {
        match v {
            1 => Phase::Building,
            2 => Phase::CatchingUp,
            3 => Phase::Current,
            _ => Phase::Loading,
        }
    }

    /// Every owner row is in the read model (some events may still be caught up on).
    pub fn is_complete(self) -> bool {
        matches!(self, Phase::CatchingUp | Phase::Current)
    }
}

/// Repaired groups held for the cache in front at most (see `repaired_groups`).
const MAX_REPAIRED_GROUPS: usize = 100_000;
/// Rows held for the writer at most; past it they are dropped and the digest catches up.
const MAX_PENDING: usize = 200_000;
/// How long the writer gathers events before a flush (they also come in arrays per message).
const WRITE_EVERY: Duration = Duration::from_millis(20);
/// Differing rows above which a catch-up rebuilds instead of replacing buckets.
const REBUILD_ABOVE: i64 = 200_000;
/// How often a backfill says how far it got.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// A complete read model of one kind, in the own database; see the module's documentation.
pub struct ReadModel {
    kind: &'static str,
    owner: Domain,
    store: Addr<Store>,
    rpc: RpcClient,
    key_of: fn(i64, i64) -> String,
    /// The name a lookup key finds rows by ([`Group::lookup_name`]).
    lookup_name: fn(&str) -> String,
    read_row: fn(&VersionedRow) -> Option<ReadRow>,
    phase: AtomicU8,
    epoch: RwLock<Option<Epoch>>,
    /// The newest version written, or the owner's newest at the last catch-up if higher:
    /// below the owner's tombstone horizon means deletions may have been missed.
    max_version: AtomicI64,
    /// The reset generation of the state this instance follows ([`ReadModelState::generation`]).
    generation: AtomicI64,
    copied: AtomicU64,
    /// Moves when every row may have changed under what was read from them before: a reset,
    /// or the end of a catching-up phase in which rows were read while the owner did not
    /// answer (`stale_reads`). A cache in front counts it in its generation, so an entry read
    /// from stale rows is asked again instead of kept.
    revision: AtomicU64,
    /// Rows were read while catching up with the owner down (possibly behind the owner).
    stale_reads: AtomicBool,
    /// Moves at each catch-up that replaced rows; the groups it replaced wait in
    /// `repaired_groups` for the cache in front, which drops just those entries (the owner's
    /// rows win for what differed, and every other entry stays).
    repairs: AtomicU64,
    repaired_groups: Mutex<Vec<i64>>,
    /// Moves at every [`Self::fall_behind`]: a catch-up that started before the last one ends
    /// in another catch-up, not in `Current` (events missed after its digest were not in it).
    behind: AtomicU64,
    cursor: Mutex<Option<String>>,
    /// A reset the owner's epoch watch asked for: (epoch, why), done by the model's task.
    reset_wanted: Mutex<Option<(Epoch, String)>>,
    pending: Mutex<Vec<ReadRow>>,
    /// When the owner last failed a miss while catching up (see [`OWNER_RETRY_AFTER`]).
    owner_failed_at: Mutex<Option<Instant>>,
    writer_wake: Notify,
    builder_wake: Notify,
    local_timeout: Duration,
    rpc_timeout: Duration,
    page_timeout: Duration,
    page_rows: u32,
    page_pause: Duration,
    check_every: Duration,
    metrics: Metrics,
}

impl ReadModel {
    /// The read model of kind `G` (owned by another domain), with its task and writer.
    pub fn start<G: Group>(
        store: Addr<Store>,
        rpc: RpcClient,
        settings: &Settings,
        metrics: Metrics,
        tasks: &Tasks,
    ) -> Arc<ReadModel> {
        let model = Arc::new(Self::new::<G>(store, rpc, settings, metrics));
        let m = Arc::clone(&model);
        tasks.spawn(task_name(G::KIND, false), async move { m.run().await });
        let m = Arc::clone(&model);
        tasks.spawn_finishing(task_name(G::KIND, true), move |stop| async move { m.write_behind(stop).await });
        model
    }

    fn new<G: Group>(store: Addr<Store>, rpc: RpcClient, settings: &Settings, metrics: Metrics) -> ReadModel {
        ReadModel {
            kind: G::KIND,
            owner: G::OWNER,
            store,
            rpc,
            key_of: G::key,
            lookup_name: G::lookup_name,
            read_row: ReadRow::of::<G>,
            phase: AtomicU8::new(Phase::Loading as u8),
            epoch: RwLock::new(None),
            max_version: AtomicI64::new(0),
            generation: AtomicI64::new(0),
            copied: AtomicU64::new(0),
            revision: AtomicU64::new(0),
            stale_reads: AtomicBool::new(false),
            repairs: AtomicU64::new(0),
            repaired_groups: Mutex::new(Vec::new()),
            behind: AtomicU64::new(0),
            cursor: Mutex::new(None),
            reset_wanted: Mutex::new(None),
            pending: Mutex::new(Vec::new()),
            owner_failed_at: Mutex::new(None),
            writer_wake: Notify::new(),
            builder_wake: Notify::new(),
            local_timeout: settings.own_read_timeout,
            rpc_timeout: settings.rpc_timeout,
            page_timeout: settings.snapshot_timeout,
            page_rows: settings.read_model_page_rows,
            page_pause: settings.read_model_page_pause,
            check_every: settings.read_model_check,
            metrics,
        }
    }

    pub fn kind(&self) -> &'static str {
        self.kind
    }

    pub fn owner(&self) -> Domain {
        self.owner
    }

    pub fn phase(&self) -> Phase {
        Phase::from_u8(self.phase.load(Ordering::Acquire))
    }

    fn set_phase(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::Release);
        let labels = format!("entity=\"{}\"", self.kind);
        self.metrics.set("moa_read_model_complete", labels.clone(), if phase.is_complete() { 1.0 } else { 0.0 });
        self.metrics.set("moa_read_model_phase", labels, f64::from(phase as u8));
    }

    /// From `Current` to `CatchingUp` (events may have been missed); any other phase stays.
    fn fall_behind(&self, why: &str) {
        self.behind.fetch_add(1, Ordering::AcqRel);
        let was = self.phase.compare_exchange(
            Phase::Current as u8,
            Phase::CatchingUp as u8,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
        if was.is_ok() {
            log::info!("read model {}: catching up with {} ({why})", self.kind, self.owner.name());
            self.set_phase(Phase::CatchingUp);
            self.builder_wake.notify_one();
        }
    }

    /// See the field: a cache's entries read before a change of it are asked again.
    pub fn revision(&self) -> u64 {
        self.revision.load(Ordering::Acquire)
    }

    /// How many catch-ups replaced rows (see the field).
    pub fn repairs(&self) -> u64 {
        self.repairs.load(Ordering::Acquire)
    }

    /// The groups replaced since the last call: their entries are to be read again.
    pub fn take_repaired_groups(&self) -> Vec<i64> {
        std::mem::take(&mut *self.repaired_groups.lock().unwrap_or_else(|p| p.into_inner()))
    }

    pub fn epoch(&self) -> Option<Epoch> {
        self.epoch.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn max_version(&self) -> i64 {
        self.max_version.load(Ordering::Relaxed)
    }

    /// What `/ready` and `scripts/status` show.
    pub fn describe(&self) -> String {
        match self.phase() {
            Phase::Loading => "loading".into(),
            Phase::Building => format!("building ({} rows copied)", self.copied.load(Ordering::Relaxed)),
            Phase::CatchingUp => "complete, catching up".into(),
            Phase::Current => "complete".into(),
        }
    }

    /// Rows the feed delivered (any epoch: rows of another are dropped when written).
    pub fn note(&self, rows: &[VersionedRow]) {
        let read: Vec<ReadRow> = rows.iter().filter_map(self.read_row).collect();
        if read.is_empty() {
            return;
        }
        let dropped = {
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            if pending.len() + read.len() > MAX_PENDING {
                pending.clear();
                true
            } else {
                pending.extend(read);
                false
            }
        };
        if dropped {
            self.fall_behind("more events waiting to be written than it holds");
        }
        self.writer_wake.notify_one();
    }

    /// The feed (re)subscribed: events may have been missed while this instance had no queue.
    pub fn resubscribed(&self) {
        self.fall_behind("the feed subscribed again");
    }

    /// What the owner said of itself (its epoch watch): a new epoch, or history this read
    /// model cannot have followed, rebuilds it; a version above the owner's newest catches up
    /// (the owner's rows win).
    pub(crate) fn observe_owner(&self, owner: &OwnerMark) {
        let phase = self.phase();
        if phase == Phase::Loading {
            return;
        }
        let why = match self.epoch() {
            None => Some("no read model yet".to_string()),
            Some(e) if e != owner.epoch => Some(format!("the owner's epoch changed ({e} -> {})", owner.epoch)),
            Some(_) if phase.is_complete() && self.max_version() < owner.horizon => Some(format!(
                "it followed the owner up to version {} but the owner collected tombstones up to {}",
                self.max_version(),
                owner.horizon
            )),
            Some(_) => {
                if self.max_version() > owner.max_version {
                    self.fall_behind("it holds a version above the owner's newest");
                }
                None
            }
        };
        if let Some(why) = why {
            let mut wanted = self.reset_wanted.lock().unwrap_or_else(|p| p.into_inner());
            if wanted.as_ref().is_none_or(|(e, _)| *e != owner.epoch) {
                *wanted = Some((owner.epoch.clone(), why));
                self.builder_wake.notify_one();
            }
        }
    }

    /// A miss: from the read model while it is current, from the owner otherwise (see the
    /// module's documentation). Questions other than lookups go to the owner.
    pub(crate) async fn query(&self, q: Query, timeout: Duration) -> Result<Vec<VersionedRow>> {
        let lookup = matches!(q, Query::Lookup { .. } | Query::Prefix { .. });
        if !lookup {
            return self.rpc.call(self.owner, &q, timeout).await;
        }
        let tier = |t: &str| {
            self.metrics.inc("moa_read_model_lookups_total", format!("entity=\"{}\",tier=\"{t}\"", self.kind), 1.0)
        };
        match self.phase() {
            Phase::Current => match self.read(&q).await {
                Ok(rows) => {
                    tier("disk");
                    Ok(rows)
                }
                Err(local) => {
                    log::debug!(
                        "read model {}: the own database did not answer ({local}); asking the owner",
                        self.kind
                    );
                    tier("owner");
                    self.rpc.call(self.owner, &q, self.rpc_timeout).await
                }
            },
            Phase::CatchingUp => {
                // An owner that did not answer a moment ago is not waited for again at every miss.
                let owner = match self.owner_recently_failed() {
                    Some(e) => Err(e),
                    None => self.rpc.call(self.owner, &q, self.rpc_timeout).await,
                };
                match owner {
                    Ok(rows) => {
                        tier("owner");
                        Ok(rows)
                    }
                    Err(owner) => {
                        self.note_owner_failed();
                        match self.read(&q).await {
                            Ok(rows) => {
                                self.stale_reads.store(true, Ordering::Release);
                                tier("disk_while_owner_down");
                                Ok(rows)
                            }
                            Err(_) => Err(owner),
                        }
                    }
                }
            }
            Phase::Building | Phase::Loading => {
                tier("owner");
                self.rpc.call(self.owner, &q, self.rpc_timeout).await
            }
        }
    }

    fn owner_recently_failed(&self) -> Option<Error> {
        let at = *self.owner_failed_at.lock().unwrap_or_else(|p| p.into_inner());
        at.filter(|t| t.elapsed() < OWNER_RETRY_AFTER)
            .map(|_| Error::RpcFailed(self.owner.name(), "it did not answer a moment ago".into()))
    }

    fn note_owner_failed(&self) {
        *self.owner_failed_at.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
    }

    /// A lookup answered from the read model, as the owner's rows.
    async fn read(&self, q: &Query) -> Result<Vec<VersionedRow>> {
        let by = match q {
            // The read model holds what the owner sends: a key's name (a token's hash), never
            // the key.
            Query::Lookup { keys, .. } => ReadBy::Lookup(keys.iter().map(|k| (self.lookup_name)(k)).collect()),
            Query::Prefix { prefixes, .. } => {
                ReadBy::Groups(prefixes.iter().filter_map(|p| p.strip_suffix(':')?.parse().ok()).collect())
            }
            _ => return Err(Error::Malformed(format!("a read model does not answer {} questions", q.kind()))),
        };
        let epoch = self.epoch().ok_or_else(|| Error::DbUnavailable("the read model has no epoch yet".into()))?;
        let rows = match tokio::time::timeout(
            self.local_timeout,
            self.store.send(ReadReadModel { kind: self.kind, by }),
        )
        .await
        {
            Ok(answer) => answer??,
            Err(_) => return Err(Error::DbUnavailable("the read model did not answer in time".into())),
        };
        rows.into_iter()
            .map(|(grp, member, version, deleted, kept)| {
                let data = RawValue::from_string(kept.unwrap_or_else(|| "null".into()))
                    .map_err(|e| Error::Malformed(format!("a read model row's data: {e}")))?;
                Ok(VersionedRow { key: (self.key_of)(grp, member), version, deleted, data, epoch: Some(epoch.clone()) })
            })
            .collect()
    }

    /// The model's task: loads its state, then builds, catches up and checks, for as long as
    /// the service runs.
    async fn run(self: Arc<Self>) {
        let mut failures: u32 = 0;
        let mut last_check = Instant::now();
        let mut progress = Progress::new(self.copied.load(Ordering::Relaxed));
        loop {
            let wanted = self.reset_wanted.lock().unwrap_or_else(|p| p.into_inner()).take();
            let step = match (wanted, self.phase()) {
                (_, Phase::Loading) => match self.store.send(LoadReadModelState { kind: self.kind }).await {
                    Ok(Ok(state)) => {
                        self.adopt(state);
                        progress = Progress::new(self.copied.load(Ordering::Relaxed));
                        Ok(())
                    }
                    Ok(Err(e)) => Err(e),
                    Err(_) => return,
                },
                (Some((epoch, why)), _) => self.reset(epoch, &why).await.map(|()| {
                    progress = Progress::new(0);
                }),
                (None, Phase::Building) => self.build_step(&mut progress).await,
                (None, Phase::CatchingUp) => {
                    let behind = self.behind.load(Ordering::Acquire);
                    self.catch_up().await.map(|()| {
                        last_check = Instant::now();
                        // Fallen behind again meanwhile: the digest compared was older than
                        // what was missed since, so this phase goes on with another catch-up.
                        if self.phase() == Phase::CatchingUp && self.behind.load(Ordering::Acquire) == behind {
                            self.set_phase(Phase::Current);
                            if self.stale_reads.swap(false, Ordering::AcqRel) {
                                self.revision.fetch_add(1, Ordering::AcqRel);
                            }
                            log::info!("read model {}: complete and current", self.kind);
                        }
                    })
                }
                (None, Phase::Current) => {
                    let due = self.check_every.saturating_sub(last_check.elapsed());
                    let timed_out = tokio::select! {
                        _ = tokio::time::sleep(due) => true,
                        _ = self.builder_wake.notified() => false,
                    };
                    if timed_out && self.phase() == Phase::Current {
                        last_check = Instant::now();
                        self.catch_up().await
                    } else {
                        Ok(())
                    }
                }
            };
            match step {
                Ok(()) => failures = 0,
                Err(e) => {
                    failures += 1;
                    let level =
                        if failures == 1 || failures.is_multiple_of(30) { log::Level::Info } else { log::Level::Debug };
                    log::log!(level, "read model {}: {} ({e}); trying again", self.kind, self.describe());
                    let wait = retry_wait(failures);
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = self.builder_wake.notified() => {}
                    }
                }
            }
        }
    }

    fn adopt(&self, state: Option<ReadModelState>) {
        self.generation.store(state.as_ref().map_or(0, |s| s.generation), Ordering::Release);
        match state {
            None => {
                log::info!("read model {}: none yet; it is built once {} answers", self.kind, self.owner.name());
                self.set_phase(Phase::Building);
            }
            Some(s) => {
                *self.epoch.write().unwrap_or_else(|p| p.into_inner()) = Some(Epoch::from(s.epoch.as_str()));
                self.max_version.store(s.max_version, Ordering::Relaxed);
                self.copied.store(u64::try_from(s.copied).unwrap_or(0), Ordering::Relaxed);
                *self.cursor.lock().unwrap_or_else(|p| p.into_inner()) = s.cursor.clone();
                if s.complete {
                    log::info!("read model {}: complete ({} rows copied); catching up", self.kind, s.copied);
                    self.set_phase(Phase::CatchingUp);
                } else {
                    if s.cursor.is_some() {
                        log::info!(
                            "read model {}: backfill resumes after {} rows (epoch {})",
                            self.kind,
                            s.copied,
                            s.epoch
                        );
                    }
                    self.set_phase(Phase::Building);
                }
            }
        }
        self.builder_wake.notify_one();
    }

    async fn reset(&self, epoch: Epoch, why: &str) -> Result<()> {
        if self.epoch().is_none() {
            log::info!("read model {}: built from {} ({why})", self.kind, self.owner.name());
        } else {
            log::warn!("read model {}: rebuilt from {} ({why})", self.kind, self.owner.name());
        }
        let seen = self.generation.load(Ordering::Acquire);
        let (state, reset) = self.store.send(ResetReadModel { kind: self.kind, epoch, seen }).await??;
        if reset {
            self.metrics.inc("moa_read_model_rebuilds_total", format!("entity=\"{}\"", self.kind), 1.0);
        } else {
            log::info!("read model {}: another instance of this service reset it already", self.kind);
        }
        self.adopt(Some(state));
        self.revision.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    /// One page of the backfill, written with the cursor after it.
    async fn build_step(&self, progress: &mut Progress) -> Result<()> {
        let Some(epoch) = self.epoch() else {
            // The owner's epoch watch names the epoch to build (observe_owner).
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = self.builder_wake.notified() => {}
            }
            return Ok(());
        };
        let after = self.cursor.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let q = Query::Snapshot { entity: self.kind.into(), after: after.clone(), limit: self.page_rows };
        let page = self.rpc.call(self.owner, &q, self.page_timeout).await?;
        if let Some(other) = page.iter().find_map(|r| r.epoch.as_ref().filter(|e| **e != epoch)) {
            return Err(Error::RpcFailed(self.owner.name(), format!("a page of another epoch ({other})")));
        }
        let complete = page.len() < self.page_rows as usize;
        let cursor = page.last().map(|r| r.key.clone()).or(after);
        let rows: Vec<ReadRow> = page.iter().filter_map(self.read_row).collect();
        let n = page.len() as u64;
        let newest = rows.iter().map(|r| r.version).max().unwrap_or(0);
        self.store
            .send(WriteReadModel {
                kind: self.kind,
                epoch: epoch.clone(),
                rows,
                progress: Some(PageDone {
                    cursor: cursor.clone(),
                    rows: n as i64,
                    complete,
                    generation: self.generation.load(Ordering::Acquire),
                }),
            })
            .await?
            .inspect_err(|_| {
                // Reset meanwhile (by another instance), or the database: read the state again.
                self.set_phase(Phase::Loading);
            })?;
        *self.cursor.lock().unwrap_or_else(|p| p.into_inner()) = cursor;
        self.max_version.fetch_max(newest, Ordering::Relaxed);
        let copied = self.copied.fetch_add(n, Ordering::Relaxed) + n;
        self.metrics.set("moa_read_model_rows_copied", format!("entity=\"{}\"", self.kind), copied as f64);
        if complete {
            log::info!(
                "read model {}: backfill from {} complete, {copied} rows in {:.1} s; catching up",
                self.kind,
                self.owner.name(),
                progress.started.elapsed().as_secs_f64()
            );
            self.set_phase(Phase::CatchingUp);
        } else {
            progress.tell(self.kind, copied);
            if !self.page_pause.is_zero() {
                tokio::time::sleep(self.page_pause).await;
            }
        }
        Ok(())
    }

    /// Compares the owner's digest with the read model's and replaces the buckets that differ
    /// with the owner's rows (whatever their versions: the owner's rows win).
    async fn catch_up(&self) -> Result<()> {
        let Some(epoch) = self.epoch() else { return Ok(()) };
        let mark = self.owner_mark().await?;
        if mark.epoch != epoch {
            self.observe_owner(&mark);
            return Ok(());
        }
        let owner_rows = self
            .rpc
            .call(self.owner, &Query::Digest { entity: self.kind.into(), width: WIDTH }, self.page_timeout)
            .await?;
        let owner: Vec<BucketDigest> = owner_rows.iter().filter_map(BucketDigest::from_row).collect();
        let mine: HashMap<i64, BucketDigest> = self
            .store
            .send(DigestReadModel { kind: self.kind, width: WIDTH })
            .await??
            .into_iter()
            .map(|d| (d.bucket, d))
            .collect();
        let (mut buckets, rows) = differing(&owner, &mine);
        let owners: HashSet<i64> = owner.iter().map(|d| d.bucket).collect();
        buckets.extend(mine.keys().filter(|b| !owners.contains(b)));
        if buckets.is_empty() {
            self.note_synced(mark.max_version).await;
            return Ok(());
        }
        if rows > REBUILD_ABOVE {
            *self.reset_wanted.lock().unwrap_or_else(|p| p.into_inner()) =
                Some((epoch, format!("{rows} rows differ from the owner's")));
            return Ok(());
        }
        let mut fetched: Vec<VersionedRow> = Vec::new();
        let mut after = 0;
        loop {
            let q = Query::Buckets {
                entity: self.kind.into(),
                width: WIDTH,
                buckets: buckets.clone(),
                after,
                limit: self.page_rows,
            };
            let page = self.rpc.call(self.owner, &q, self.page_timeout).await?;
            let full = page.len() >= self.page_rows as usize;
            after = page.last().map_or(after, |r| r.version);
            fetched.extend(page);
            if !full {
                break;
            }
        }
        if fetched.iter().any(|r| r.epoch.as_ref().is_some_and(|e| *e != epoch)) {
            return Err(Error::RpcFailed(self.owner.name(), "bucket rows of another epoch".into()));
        }
        let rows: Vec<ReadRow> = fetched.iter().filter_map(self.read_row).collect();
        let n = rows.len();
        let (replaced, groups) = self
            .store
            .send(ReplaceReadModelBuckets {
                kind: self.kind,
                epoch,
                width: WIDTH,
                buckets: buckets.clone(),
                upto: mark.max_version,
                rows,
            })
            .await??;
        log::info!(
            "read model {}: {} bucket(s) differed from {}'s; {replaced} row(s) removed, {n} written, {} group(s) changed",
            self.kind,
            buckets.len(),
            self.owner.name(),
            groups.len()
        );
        self.metrics.inc("moa_read_model_repaired_rows_total", format!("entity=\"{}\"", self.kind), n as f64);
        // Groups first, then the count the cache watches: it never sees the count without them.
        if !groups.is_empty() {
            let mut waiting = self.repaired_groups.lock().unwrap_or_else(|p| p.into_inner());
            if waiting.len() + groups.len() > MAX_REPAIRED_GROUPS {
                // Not taken for that long (no lookups): every entry is made old instead, so
                // what waits here stays bounded.
                waiting.clear();
                self.revision.fetch_add(1, Ordering::AcqRel);
            } else {
                waiting.extend(groups);
                self.repairs.fetch_add(1, Ordering::AcqRel);
            }
        }
        self.note_synced(mark.max_version).await;
        Ok(())
    }

    /// The read model holds the owner's history up to `version`.
    async fn note_synced(&self, version: i64) {
        let before = self.max_version.fetch_max(version, Ordering::Relaxed);
        if version > before {
            if let Some(epoch) = self.epoch() {
                let _ = self.store.send(WriteReadModelMark { kind: self.kind, epoch, version }).await;
            }
        }
    }

    /// The owner's epoch, newest version and horizon, asked as every replica asks it.
    async fn owner_mark(&self) -> Result<OwnerMark> {
        let owner = Source::Remote { rpc: self.rpc.clone(), owner: self.owner };
        owner.owner_mark(self.kind, self.rpc_timeout.max(Duration::from_secs(2))).await
    }

    /// Writes the events the feed delivered, batched, until the service stops (then once more).
    async fn write_behind(self: Arc<Self>, stop: tokio_util::sync::CancellationToken) {
        let mut failures: u32 = 0;
        loop {
            let stopping = tokio::select! {
                _ = self.writer_wake.notified() => false,
                _ = stop.cancelled() => true,
            };
            if !stopping {
                tokio::time::sleep(WRITE_EVERY).await;
            }
            loop {
                let rows = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()));
                if rows.is_empty() {
                    break;
                }
                match self.write_events(&rows).await {
                    Ok(()) => failures = 0,
                    Err(e) => {
                        failures += 1;
                        if failures == 1 {
                            log::warn!("read model {}: cannot write {} event row(s) yet: {e}", self.kind, rows.len());
                        }
                        let kept = {
                            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
                            let fits = pending.len() + rows.len() <= MAX_PENDING;
                            if fits {
                                let newer = std::mem::replace(&mut *pending, rows);
                                pending.extend(newer);
                            }
                            fits
                        };
                        if !kept {
                            self.fall_behind("events could not be written");
                        }
                        if stopping {
                            return;
                        }
                        tokio::time::sleep(retry_wait(failures)).await;
                    }
                }
            }
            if stopping {
                return;
            }
        }
    }

    /// Writes the rows of the read model's epoch among `rows` (the caller keeps them, to try
    /// again if the write fails).
    async fn write_events(&self, rows: &[ReadRow]) -> Result<()> {
        let Some(epoch) = self.epoch() else { return Ok(()) };
        let rows: Vec<ReadRow> =
            rows.iter().filter(|r| r.epoch.as_ref().is_none_or(|e| *e == epoch)).cloned().collect();
        if rows.is_empty() {
            return Ok(());
        }
        let newest = rows.iter().map(|r| r.version).max().unwrap_or(0);
        self.store.send(WriteReadModel { kind: self.kind, epoch, rows, progress: None }).await??;
        self.max_version.fetch_max(newest, Ordering::Relaxed);
        Ok(())
    }
}

/// `read model <kind>` or `read model <kind> writer`: a task's name is `'static`, and a read
/// model is built once per kind and process, so the few bytes are leaked once each.
fn task_name(kind: &'static str, writer: bool) -> &'static str {
    let name = if writer { format!("read model {kind} writer") } else { format!("read model {kind}") };
    Box::leak(name.into_boxed_str())
}

/// A backfill's progress, said every [`PROGRESS_EVERY`].
struct Progress {
    started: Instant,
    told: Instant,
    told_rows: u64,
}

impl Progress {
    fn new(rows: u64) -> Progress {
        Progress { started: Instant::now(), told: Instant::now(), told_rows: rows }
    }

    fn tell(&mut self, kind: &str, rows: u64) {
        let since = self.told.elapsed();
        if since >= PROGRESS_EVERY {
            let rate = (rows.saturating_sub(self.told_rows)) as f64 / since.as_secs_f64();
            log::info!("read model {kind}: building, {rows} rows copied ({rate:.0} rows/s)");
            self.told = Instant::now();
            self.told_rows = rows;
        }
    }
}

// ----------------------------------------------------------------------- store messages

/// A read model's state row.
#[derive(Debug, Clone)]
pub struct ReadModelState {
    pub epoch: String,
    /// Counts the resets of this kind's read model: instances sharing the database (several
    /// instances of a service) reset it once, and a page of a generation since reset is refused.
    pub generation: i64,
    pub complete: bool,
    pub cursor: Option<String>,
    pub copied: i64,
    pub max_version: i64,
}

/// A kind's state row, as [`ReadModelState::of`] reads it.
const STATE: &str =
    "SELECT epoch, complete, cursor, copied, max_version, generation FROM moa_read_model_state WHERE kind = $1";

impl ReadModelState {
    fn of(r: &tokio_postgres::Row) -> ReadModelState {
        ReadModelState {
            epoch: r.get(0),
            complete: r.get(1),
            cursor: r.get(2),
            copied: r.get(3),
            max_version: r.get(4),
            generation: r.get(5),
        }
    }
}

#[derive(Message)]
#[rtype(result = "Result<Option<ReadModelState>>")]
pub struct LoadReadModelState {
    pub kind: &'static str,
}

impl Handler<LoadReadModelState> for Store {
    type Result = ResponseFuture<Result<Option<ReadModelState>>>;

    fn handle(&mut self, msg: LoadReadModelState, _: &mut Context<Self>) -> Self::Result {
        let pool = self.pool();
        self.run(async move {
            let conn = pool.get().await?;
            Ok(conn.query_opt(STATE, &[&msg.kind]).await?.as_ref().map(ReadModelState::of))
        })
    }
}

/// Empties a kind's read model and starts it again for `epoch`, unless another instance
/// sharing the database did since this one read generation `seen` (then its reset stands: it
/// is this one's too). Answers the state to go on from.
#[derive(Message)]
#[rtype(result = "Result<(ReadModelState, bool)>")]
pub struct ResetReadModel {
    pub kind: &'static str,
    pub epoch: Epoch,
    pub seen: i64,
}

impl Handler<ResetReadModel> for Store {
    type Result = ResponseFuture<Result<(ReadModelState, bool)>>;

    fn handle(&mut self, msg: ResetReadModel, _: &mut Context<Self>) -> Self::Result {
        let pool = self.pool();
        self.run(async move {
            let mut conn = pool.get().await?;
            let tx = conn.transaction().await?;
            // One reset at a time per kind, across the instances sharing this database.
            tx.execute("SELECT pg_advisory_xact_lock(hashtext('moa_read_model ' || $1))", &[&msg.kind]).await?;
            let now = tx.query_opt(STATE, &[&msg.kind]).await?.as_ref().map(ReadModelState::of);
            let epoch: &str = &msg.epoch;
            if let Some(state) = now.filter(|s| s.generation != msg.seen && s.epoch == epoch) {
                tx.commit().await?;
                return Ok((state, false));
            }
            tx.execute("DELETE FROM moa_read_model WHERE kind = $1", &[&msg.kind]).await?;
            let generation: i64 = tx
                .query_one(
                    "INSERT INTO moa_read_model_state (kind, epoch) VALUES ($1, $2)
                     ON CONFLICT (kind) DO UPDATE SET epoch = EXCLUDED.epoch, complete = false, cursor = NULL,
                         copied = 0, max_version = 0, started_at = now(), completed_at = NULL,
                         generation = moa_read_model_state.generation + 1
                     RETURNING generation",
                    &[&msg.kind, &epoch],
                )
                .await?
                .get(0);
            tx.commit().await?;
            let state = ReadModelState {
                epoch: epoch.to_string(),
                complete: false,
                cursor: None,
                copied: 0,
                max_version: 0,
                generation,
            };
            Ok((state, true))
        })
    }
}

/// A backfill page done: the cursor after it and whether it was the last.
#[derive(Debug, Clone)]
pub struct PageDone {
    pub cursor: Option<String>,
    pub rows: i64,
    pub complete: bool,
    /// The reset the backfill belongs to: refused if the read model was reset since.
    pub generation: i64,
}

/// Rows of `epoch` written to a kind's read model, each only over an older version of its
/// key, with a backfill page's progress in the same transaction. Nothing is written if the
/// read model's epoch is another (it was reset meanwhile): a page then fails.
#[derive(Message)]
#[rtype(result = "Result<()>")]
pub struct WriteReadModel {
    pub kind: &'static str,
    pub epoch: Epoch,
    pub rows: Vec<ReadRow>,
    pub progress: Option<PageDone>,
}

const UPSERT: &str = "INSERT INTO moa_read_model AS r (kind, grp, member, version, deleted, lookup, kept)
     SELECT DISTINCT ON (g, m) $1, g, m, v, d, l, k
     FROM unnest($2::int8[], $3::int8[], $4::int8[], $5::bool[], $6::text[], $7::text[]) AS t(g, m, v, d, l, k)
     WHERE EXISTS (SELECT 1 FROM moa_read_model_state s WHERE s.kind = $1 AND s.epoch = $8)
     ORDER BY g, m, v DESC
     ON CONFLICT (kind, grp, member) DO UPDATE
        SET version = EXCLUDED.version, deleted = EXCLUDED.deleted, lookup = EXCLUDED.lookup, kept = EXCLUDED.kept
        WHERE r.version < EXCLUDED.version";

async fn upsert(tx: &tokio_postgres::Transaction<'_>, kind: &str, epoch: &str, rows: &[ReadRow]) -> Result<u64> {
    let mut written = 0;
    for chunk in rows.chunks(10_000) {
        let grp: Vec<i64> = chunk.iter().map(|r| r.grp).collect();
        let member: Vec<i64> = chunk.iter().map(|r| r.member).collect();
        let version: Vec<i64> = chunk.iter().map(|r| r.version).collect();
        let deleted: Vec<bool> = chunk.iter().map(|r| r.deleted).collect();
        let lookup: Vec<Option<&str>> = chunk.iter().map(|r| r.lookup.as_deref()).collect();
        let kept: Vec<Option<&str>> = chunk.iter().map(|r| r.kept.as_deref()).collect();
        written += tx.execute(UPSERT, &[&kind, &grp, &member, &version, &deleted, &lookup, &kept, &epoch]).await?;
    }
    Ok(written)
}

impl Handler<WriteReadModel> for Store {
    type Result = ResponseFuture<Result<()>>;

    fn handle(&mut self, msg: WriteReadModel, _: &mut Context<Self>) -> Self::Result {
        let pool = self.pool();
        self.run(async move {
            let mut conn = pool.get().await?;
            // A durable commit (synchronous_commit as the database has it, not `bookkeeping`'s
            // off): the feed has acknowledged these events, so a commit the database then lost
            // in a crash, or that a promoted standby never received, would be a hole nothing
            // refills until the next digest check (READ_MODEL_CHECK_MS): the owner's epoch
            // survives a failover, and later events carry the read model's version past it.
            // One flush per writer batch (every 20 ms at most), not per event.
            let tx = conn.transaction().await?;
            let epoch: &str = &msg.epoch;
            upsert(&tx, msg.kind, epoch, &msg.rows).await?;
            let newest = msg.rows.iter().map(|r| r.version).max().unwrap_or(0);
            let updated = match &msg.progress {
                Some(page) => {
                    tx.execute(
                        "UPDATE moa_read_model_state
                         SET cursor = $3, copied = copied + $4, complete = $5, max_version = greatest(max_version, $6),
                             completed_at = CASE WHEN $5 THEN now() END
                         WHERE kind = $1 AND epoch = $2 AND generation = $7",
                        &[&msg.kind, &epoch, &page.cursor, &page.rows, &page.complete, &newest, &page.generation],
                    )
                    .await?
                }
                None => {
                    tx.execute(
                        "UPDATE moa_read_model_state SET max_version = greatest(max_version, $3)
                         WHERE kind = $1 AND epoch = $2 AND max_version < $3",
                        &[&msg.kind, &epoch, &newest],
                    )
                    .await?;
                    1
                }
            };
            if updated == 0 {
                return Err(Error::Malformed(format!("the {} read model is no longer of epoch {epoch}", msg.kind)));
            }
            tx.commit().await?;
            Ok(())
        })
    }
}

/// The state's newest version raised to at least `version` (a catch-up's mark).
#[derive(Message)]
#[rtype(result = "Result<()>")]
struct WriteReadModelMark {
    kind: &'static str,
    epoch: Epoch,
    version: i64,
}

impl Handler<WriteReadModelMark> for Store {
    type Result = ResponseFuture<Result<()>>;

    fn handle(&mut self, msg: WriteReadModelMark, _: &mut Context<Self>) -> Self::Result {
        let pool = self.pool();
        self.run(async move {
            let conn = pool.get().await?;
            conn.execute(
                "UPDATE moa_read_model_state SET max_version = greatest(max_version, $3) WHERE kind = $1 AND epoch = $2",
                &[&msg.kind, &&*msg.epoch, &msg.version],
            )
            .await?;
            Ok(())
        })
    }
}

/// How a lookup finds its rows.
#[derive(Debug, Clone)]
pub enum ReadBy {
    /// By the rows' lookup names (users by token).
    Lookup(Vec<String>),
    /// Every row of these groups (a user's alarms).
    Groups(Vec<i64>),
}

/// (group, member, version, deleted, kept) of the rows a lookup finds.
type ReadModelRow = (i64, i64, i64, bool, Option<String>);

#[derive(Message)]
#[rtype(result = "Result<Vec<ReadModelRow>>")]
pub struct ReadReadModel {
    pub kind: &'static str,
    pub by: ReadBy,
}

impl Handler<ReadReadModel> for Store {
    type Result = ResponseFuture<Result<Vec<ReadModelRow>>>;

    fn handle(&mut self, msg: ReadReadModel, _: &mut Context<Self>) -> Self::Result {
        let pool = self.pool();
        self.run(async move {
            let conn = pool.get().await?;
            let rows = match &msg.by {
                ReadBy::Lookup(names) => {
                    conn.query_prepared(
                        "SELECT grp, member, version, deleted, kept FROM moa_read_model
                         WHERE kind = $1 AND lookup = ANY($2)",
                        &[&msg.kind, names],
                    )
                    .await?
                }
                ReadBy::Groups(groups) => {
                    conn.query_prepared(
                        "SELECT grp, member, version, deleted, kept FROM moa_read_model
                         WHERE kind = $1 AND grp = ANY($2) ORDER BY grp, member",
                        &[&msg.kind, groups],
                    )
                    .await?
                }
            };
            Ok(rows.iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4))).collect())
        })
    }
}

/// The read model's digest of versions per bucket, as the owner computes its own
/// ([`Query::Digest`]); unversioned rows (version 0: alarms loaded before capture) are in no
/// bucket, at the owner either.
#[derive(Message)]
#[rtype(result = "Result<Vec<BucketDigest>>")]
pub struct DigestReadModel {
    pub kind: &'static str,
    pub width: i64,
}

impl Handler<DigestReadModel> for Store {
    type Result = ResponseFuture<Result<Vec<BucketDigest>>>;

    fn handle(&mut self, msg: DigestReadModel, _: &mut Context<Self>) -> Self::Result {
        let pool = self.pool();
        self.run(async move {
            let conn = pool.get().await?;
            let rows = conn
                .query(
                    "SELECT version / $2, count(*), md5(string_agg(version::text, ',' ORDER BY version))
                     FROM moa_read_model WHERE kind = $1 AND version > 0 GROUP BY version / $2",
                    &[&msg.kind, &msg.width.max(1)],
                )
                .await?;
            Ok(rows.iter().map(|r| BucketDigest { bucket: r.get(0), rows: r.get(1), md5: r.get(2) }).collect())
        })
    }
}

/// The owner's rows of some buckets in place of the read model's: every versioned row of
/// those buckets up to the owner's newest version at the digest (`upto`; newer events are
/// kept) is removed, then the owner's rows are written. Answers how many were removed, and
/// the groups whose rows changed (a row removed and not written back as it was, or written
/// new): the entries a cache in front must read again.
#[derive(Message)]
#[rtype(result = "Result<(u64, Vec<i64>)>")]
pub struct ReplaceReadModelBuckets {
    pub kind: &'static str,
    pub epoch: Epoch,
    pub width: i64,
    pub buckets: Vec<i64>,
    pub upto: i64,
    pub rows: Vec<ReadRow>,
}

impl Handler<ReplaceReadModelBuckets> for Store {
    type Result = ResponseFuture<Result<(u64, Vec<i64>)>>;

    fn handle(&mut self, msg: ReplaceReadModelBuckets, _: &mut Context<Self>) -> Self::Result {
        let pool = self.pool();
        self.run(async move {
            let mut conn = pool.get().await?;
            let tx = conn.transaction().await?;
            let epoch: &str = &msg.epoch;
            let removed = tx
                .query(
                    "DELETE FROM moa_read_model
                     WHERE kind = $1 AND version > 0 AND version <= $2 AND version / $3 = ANY($4)
                       AND EXISTS (SELECT 1 FROM moa_read_model_state s WHERE s.kind = $1 AND s.epoch = $5)
                     RETURNING grp, member, version, deleted, kept",
                    &[&msg.kind, &msg.upto, &msg.width.max(1), &msg.buckets, &epoch],
                )
                .await?;
            upsert(&tx, msg.kind, epoch, &msg.rows).await?;
            tx.commit().await?;
            let before: HashSet<RowState> = removed
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get::<_, Option<String>>(4)))
                .collect();
            Ok((removed.len() as u64, changed_groups(&before, &msg.rows)))
        })
    }
}

/// The pause after the `failures`-th failure in a row of the model's task or its writer: 200 ms
/// more per failure up to 2 s, jittered.
fn retry_wait(failures: u32) -> Duration {
    crate::backoff::jitter(Duration::from_millis(200 * u64::from(failures.min(10))))
}

/// A read model row as a catch-up compares it: group, member, version, tombstone, kept data.
type RowState = (i64, i64, i64, bool, Option<String>);

/// The groups of the rows that differ between `before` (removed by a catch-up) and `after`
/// (the owner's rows written in their place), sorted, once each.
fn changed_groups(before: &HashSet<RowState>, after: &[ReadRow]) -> Vec<i64> {
    let after: HashSet<RowState> =
        after.iter().map(|r| (r.grp, r.member, r.version, r.deleted, r.kept.clone())).collect();
    let changed: std::collections::BTreeSet<i64> = before.symmetric_difference(&after).map(|r| r.0).collect();
    changed.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entity::raw_json;
    use crate::replica::fixtures::{Named as Users, Pairs as Alarms};
    use serde_json::json;

    #[test]
    fn a_catch_up_names_only_the_groups_whose_rows_changed() {
        let state = |g: i64, m: i64, v: i64, kept: &str| (g, m, v, false, Some(kept.to_string()));
        let row = |g: i64, m: i64, v: i64, kept: &str| ReadRow {
            grp: g,
            member: m,
            version: v,
            deleted: false,
            lookup: None,
            kept: Some(kept.into()),
            epoch: None,
        };
        let before: HashSet<RowState> =
            [state(1, 0, 5, "a"), state(2, 0, 6, "b"), state(3, 0, 9_000, "forged"), state(4, 0, 7, "old")].into();
        // 1 unchanged, 2 gone (tombstone collected), 3 back to the owner's row, 4 same version
        // but other data, 5 new.
        let after = [row(1, 0, 5, "a"), row(3, 0, 8, "real"), row(4, 0, 7, "new"), row(5, 0, 10, "e")];
        assert_eq!(changed_groups(&before, &after), vec![2, 3, 4, 5]);
        assert!(changed_groups(&before, &[]).len() == 4, "all removed, none written back");
    }

    fn row(key: &str, version: i64, deleted: bool, data: serde_json::Value) -> VersionedRow {
        VersionedRow { key: key.into(), version, deleted, data: raw_json(&data), epoch: Some(Epoch::from("e1")) }
    }

    #[test]
    fn a_user_row_keeps_its_id_name_and_token_hash_and_is_found_by_the_hash() {
        let r = ReadRow::of::<Users>(&row("7", 3, false, json!({"id": 7, "name": "이름", "token_hash": "h7", "x": 1})))
            .unwrap();
        assert_eq!((r.grp, r.member, r.version, r.deleted), (7, 0, 3, false));
        assert_eq!(r.lookup.as_deref(), Some("h7"));
        let kept: serde_json::Value = serde_json::from_str(r.kept.as_deref().unwrap()).unwrap();
        assert_eq!(kept, json!({"id": 7, "name": "이름", "token_hash": "h7"}), "only what the kind keeps");
        assert_eq!(Users::key(r.grp, r.member), "7");
    }

    #[test]
    fn a_tombstone_keeps_nothing_and_is_found_by_no_token() {
        let r = ReadRow::of::<Users>(&row("7", 4, true, json!({"id": 7, "name": "a", "token_hash": "h7"}))).unwrap();
        assert!(r.deleted);
        assert_eq!(r.lookup, None);
        assert_eq!(r.kept, None);
    }

    #[test]
    fn an_alarm_row_is_its_user_and_item_and_nothing_else() {
        let r = ReadRow::of::<Alarms>(&row("12:50", 0, false, serde_json::Value::Null)).unwrap();
        assert_eq!((r.grp, r.member, r.version), (12, 50, 0));
        assert_eq!((r.lookup, r.kept), (None, None));
        assert_eq!(Alarms::key(12, 50), "12:50");
        assert_eq!(ReadRow::of::<Alarms>(&row("12:null", 5, false, serde_json::Value::Null)), None);
    }

    #[test]
    fn only_a_current_read_model_reads_before_asking_the_owner() {
        assert!(!Phase::Loading.is_complete());
        assert!(!Phase::Building.is_complete());
        assert!(Phase::CatchingUp.is_complete());
        assert!(Phase::Current.is_complete());
        for p in [Phase::Loading, Phase::Building, Phase::CatchingUp, Phase::Current] {
            assert_eq!(Phase::from_u8(p as u8), p);
        }
    }
}
