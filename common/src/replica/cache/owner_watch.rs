//! The owner watch: every `EPOCH_PROBE_MS` (and at once when a row of an unknown epoch or a
//! resubscription asks for it) the cache asks its owner's epoch and newest version. Another
//! epoch resets the cache; versions above the owner's newest are repaired entry by entry
//! (owner wins). It lives apart from the lookups: it is a task of its own, run for as long as
//! the service runs, and touches the entries only to reset or repair them.

use std::{sync::atomic::Ordering, time::Duration};

use super::{Group, GroupCache};
use crate::entity::Epoch;

impl<G: Group> GroupCache<G> {
    /// Forgets everything: the owner's history changed. Entries filled by answers still in
    /// flight are of the old generation, so they are asked again before use.
    fn reset(&self, epoch: Option<Epoch>, why: &str) {
        {
            let _guard = self.lock();
            self.generation.fetch_add(1, Ordering::AcqRel);
            self.entries.clear();
            self.recent.invalidate_all();
            self.lookups.invalidate_all();
            self.max_version.store(0, Ordering::Relaxed);
            *self.epoch.write().unwrap_or_else(|p| p.into_inner()) = epoch.clone();
        }
        if let Some(p) = &self.persister {
            let mut dirty = p.dirty.lock().unwrap_or_else(|p| p.into_inner());
            dirty.clear = true;
            dirty.groups.clear();
        }
        log::warn!("{} cache reset ({} owner {}): {why}", G::KIND, self.source.owner_name(), G::OWNER.name());
        self.metrics.inc("moa_cache_resets_total", format!("entity=\"{}\"", G::KIND), 1.0);
    }

    /// Owner wins: the entries holding a version above the owner's newest (which the owner
    /// never handed out: an event forged, or replayed from another history) are dropped, and
    /// only they, to be read again from the read model or the owner at their next use; so are
    /// such rows among the recent events and every remembered answer. Not a reset: a stream of
    /// such events would otherwise empty the whole cache at each one.
    fn repair_above(&self, newest: i64, seen: i64) {
        let dropped = std::cell::RefCell::new(Vec::new());
        {
            let _guard = self.lock();
            self.entries.map.retain(|group, e| {
                let keep = e.members.iter().all(|(_, m)| m.version <= newest);
                if !keep {
                    dropped.borrow_mut().push(*group);
                }
                keep
            });
            for (_, held) in self.recent.iter() {
                held.lock().unwrap_or_else(|p| p.into_inner()).0.retain(|(_, row)| row.version <= newest);
            }
            self.lookups.invalidate_all();
            self.max_version.store(newest, Ordering::Relaxed);
        }
        let dropped = dropped.into_inner();
        // Not in the cache any more: deleted from the hot copy at its next write.
        self.save(dropped.iter().copied());
        log::warn!(
            "{} cache: it saw version {seen} but the owner ({}) has handed out versions up to {newest} only; \
             {} entries above that dropped, to be read again",
            G::KIND,
            self.source.owner_name(),
            dropped.len()
        );
        self.metrics.inc("moa_cache_repaired_total", format!("entity=\"{}\"", G::KIND), dropped.len() as f64);
    }

    /// Watches the owner for as long as the service runs: every `EPOCH_PROBE_MS`, and at once
    /// after a resubscription or a row of an unknown epoch, it asks the owner's epoch and
    /// newest version. The first answer makes the cache ready; another epoch, or a newest
    /// version below one seen here, resets it. An owner that does not answer is left alone.
    pub async fn watch_owner(&self) {
        // The epoch answer may take a moment at start (an owner starting beside us): as long
        // as the catalog's owner check, not a request's RPC timeout.
        let timeout = self.lookup_timeout.max(Duration::from_secs(2));
        let mut cold_rounds: u32 = 0;
        loop {
            // After the hot copy is loaded, as the catalog's first sync: by then the own
            // database is migrated, and the owners starting beside us have had that long too.
            let (subscribed, restored) =
                (self.subscribed.load(Ordering::Acquire), self.restored.load(Ordering::Acquire));
            if subscribed && restored {
                self.check_with_owner(timeout).await;
            }
            // Readiness waits for this: every 5 s while cold, say what it still waits for.
            if !self.is_warm() {
                cold_rounds += 1;
                if cold_rounds.is_multiple_of(25) {
                    log::info!(
                        "{} cache still cold after {} checks: feed subscribed {subscribed}, hot copy loaded {restored}, \
                         last epoch check with {}: {}",
                        G::KIND,
                        cold_rounds,
                        self.source.owner_name(),
                        self.last_check.lock().unwrap_or_else(|p| p.into_inner()).as_deref().unwrap_or("none yet")
                    );
                }
            }
            // Until the first answer, ask often: readiness waits for it.
            // Jittered: instances started together do not probe the owner in step.
            let wait =
                crate::backoff::jitter(if self.is_warm() { self.probe_interval } else { Duration::from_millis(200) });
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.check_owner.notified() => {}
            }
        }
    }

    async fn check_with_owner(&self, timeout: Duration) {
        // What was seen before asking: a version seen later may be newer than the answer.
        let seen = self.max_version();
        let owner = match self.source.owner_mark(G::KIND, timeout).await {
            Ok(owner) => owner,
            Err(e) => {
                log::debug!("{} cache: epoch check with {} failed: {e}", G::KIND, self.source.owner_name());
                *self.last_check.lock().unwrap_or_else(|p| p.into_inner()) = Some(format!("failed: {e}"));
                return;
            }
        };
        *self.last_check.lock().unwrap_or_else(|p| p.into_inner()) = Some(format!("answered (epoch {})", owner.epoch));
        if let Some(model) = &self.read_model {
            model.observe_owner(&owner);
        }
        match self.epoch() {
            Some(e) if e != owner.epoch => {
                self.reset(Some(owner.epoch.clone()), &format!("the owner's epoch changed ({e} -> {})", owner.epoch))
            }
            _ if seen > owner.max_version => self.repair_above(owner.max_version, seen),
            None => {
                self.same_epoch(Some(&owner.epoch));
            }
            _ => {}
        }
        if !self.warm.swap(true, Ordering::AcqRel) {
            log::info!("{} cache ready: {} answers (epoch {})", G::KIND, self.source.owner_name(), owner.epoch);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{tests::alarm_row, Found};
    use crate::replica::{fixtures::Pairs, GroupCache};

    /// Owner wins, for the entries that hold a version the owner never handed out, and only
    /// for them: the rest of the cache stays (a reset would be a denial of service).
    #[test]
    fn a_version_above_the_owners_newest_drops_that_entry_alone() {
        let book = GroupCache::<Pairs>::detached();
        let g = book.current_generation();
        book.fill(&[1], &[alarm_row(1, 5, 3)], g);
        book.fill(&[2], &[alarm_row(2, 5, 4), alarm_row(2, 6, 900)], g);
        book.apply_rows(&[alarm_row(1, 7, 8)]);
        assert_eq!(book.max_version(), 900);
        book.repair_above(10, 900);
        assert!(matches!(book.cached(1), Some(Found::Current(_))), "an entry within the owner's history stays");
        assert!(book.cached(2).is_none(), "the entry holding version 900 is dropped");
        assert_eq!(book.max_version(), 10);
        assert_eq!(book.len(), 1);
    }
}
