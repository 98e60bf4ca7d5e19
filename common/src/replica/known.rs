//! One interface over everything a service knows of an entity kind (the item catalog, the user
//! and alarm caches): the feed, readiness, metrics and the start-up tasks go through
//! [`super::Replicas::all`], the kinds the service's `startup.rs` declared ([`super::kinds`]).

use futures_util::future::BoxFuture;

use crate::{entity::VersionedRow, settings::Domain};

pub trait Known: Send + Sync {
    /// The entity kind, as in change events (`"item"`).
    fn kind(&self) -> &'static str;
    /// The domain whose `*.events` exchange speaks for this kind.
    fn owner(&self) -> Domain;
    /// Who answers misses: the owner's name, or "own database".
    fn source_name(&self) -> &'static str;
    /// Ready to answer (`/ready`).
    fn is_warm(&self) -> bool;
    /// The newest owner version seen.
    fn max_version(&self) -> i64;
    /// Change events: (applied, stale or duplicate).
    fn apply_rows(&self, rows: &[VersionedRow]) -> (usize, usize);
    /// `(gauge, value)` describing its size, for `/metrics`.
    fn size(&self) -> (&'static str, f64);
    /// Loads the persisted copy, at start.
    fn restore(&self) -> BoxFuture<'_, ()>;
    /// Watches the owner's epoch for as long as the service runs.
    fn watch_owner(&self) -> BoxFuture<'_, ()>;
    /// The feed (re)subscribed: catch up on what may have been missed.
    fn resubscribed(&self) -> BoxFuture<'_, ()>;
    /// Where its read model in the own database stands, if it has one (`/ready`).
    fn read_model(&self) -> Option<String> {
        None
    }
}

impl<E: crate::entity::Entity, I: super::Index<E>> Known for super::Replica<E, I> {
    fn kind(&self) -> &'static str {
        E::KIND
    }
    fn owner(&self) -> Domain {
        E::OWNER
    }
    fn source_name(&self) -> &'static str {
        self.owner_name()
    }
    fn is_warm(&self) -> bool {
        super::Replica::is_warm(self)
    }
    fn max_version(&self) -> i64 {
        super::Replica::max_version(self)
    }
    fn apply_rows(&self, rows: &[VersionedRow]) -> (usize, usize) {
        super::Replica::apply_rows(self, rows)
    }
    fn size(&self) -> (&'static str, f64) {
        ("moa_replica_rows", self.len() as f64)
    }
    fn restore(&self) -> BoxFuture<'_, ()> {
        Box::pin(super::Replica::restore(self))
    }
    fn watch_owner(&self) -> BoxFuture<'_, ()> {
        Box::pin(super::Replica::watch_owner(self))
    }
    fn resubscribed(&self) -> BoxFuture<'_, ()> {
        // Whatever changed while the queue did not exist: by digest or snapshot.
        Box::pin(self.sync_until_done())
    }
}

impl<G: super::cache::Group> Known for super::GroupCache<G> {
    fn kind(&self) -> &'static str {
        G::KIND
    }
    fn owner(&self) -> Domain {
        G::OWNER
    }
    fn source_name(&self) -> &'static str {
        self.owner_name()
    }
    fn is_warm(&self) -> bool {
        super::GroupCache::is_warm(self)
    }
    fn max_version(&self) -> i64 {
        super::GroupCache::max_version(self)
    }
    fn apply_rows(&self, rows: &[VersionedRow]) -> (usize, usize) {
        super::GroupCache::apply_rows(self, rows)
    }
    fn size(&self) -> (&'static str, f64) {
        ("moa_cache_entries", self.len() as f64)
    }
    fn restore(&self) -> BoxFuture<'_, ()> {
        Box::pin(super::GroupCache::restore(self))
    }
    fn watch_owner(&self) -> BoxFuture<'_, ()> {
        Box::pin(super::GroupCache::watch_owner(self))
    }
    fn resubscribed(&self) -> BoxFuture<'_, ()> {
        // Every entry is asked again at its next use.
        Box::pin(super::GroupCache::resubscribed(self))
    }
    fn read_model(&self) -> Option<String> {
        super::GroupCache::read_model(self).map(|m| m.describe())
    }
}
