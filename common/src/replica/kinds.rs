//! Which entity kinds a service knows, declared once in its `startup.rs`: the kinds it owns
//! (read from its own store) and the kinds it replicates from their owners (a bounded cache in
//! front of a read model, or a whole catalog). [`Kinds`] builds each declared kind with
//! [`Replicated::build`], which the kind's own module writes; the service then subscribes to
//! the owners' exchanges of those kinds only, and its handlers take each kind as
//! `web::Data<TheKind>`.

use std::sync::Arc;

use actix::Addr;
use actix_web::web;

use futures_util::future::BoxFuture;

use super::{cache::Group, read_model::ReadModel, Known, Source};
use crate::{
    amqp::{rpc::RpcClient, topology::WorkStream},
    entity::VersionedRow,
    error::{Error, Result},
    replica::cache::hot_copy::SaveCacheEntries,
    settings::{Domain, Settings},
    store::Store,
    tasks::Tasks,
    telemetry::Metrics,
};

/// What building a kind's replica may use: the service's settings, store, RPC client,
/// metrics and tasks.
pub struct KindContext<'a> {
    pub settings: &'a Settings,
    pub store: &'a Addr<Store>,
    pub rpc: &'a RpcClient,
    pub metrics: &'a Metrics,
    pub tasks: &'a Tasks,
}

impl KindContext<'_> {
    /// Where `owner`'s rows are read: the own store for the own domain, the owner over RPC
    /// otherwise (a whole catalog, which keeps its own persisted copy).
    pub fn source(&self, owner: Domain) -> Source {
        if owner == self.settings.domain {
            Source::Local(self.store.clone())
        } else {
            Source::Remote { rpc: self.rpc.clone(), owner }
        }
    }

    /// Where a cached kind's misses are read: the own store for the own domain; for another
    /// domain's kind a complete read model in the own database (`READ_MODELS`) in front of the
    /// owner, or the owner alone.
    pub fn cached_source<G: Group>(&self) -> Source {
        if G::OWNER == self.settings.domain || !self.settings.read_models {
            return self.source(G::OWNER);
        }
        // Its cache keeps no hot copy (`Replicated for GroupCache`): a copy an earlier run left,
        // with READ_MODELS=0, is dropped, so that it is never restored stale later.
        let own = self.store.clone();
        self.tasks.spawn_once("hot copy dropped", async move {
            // Once the store has migrated (it refuses until then), retried until it is done.
            loop {
                let clear = SaveCacheEntries { cache: G::KIND, clear: true, entries: Default::default() };
                match own.send(clear).await.map_err(Error::from).and_then(|r| r) {
                    Ok(()) => break,
                    Err(e) => log::debug!("{} cache: the hot copy of an earlier run not dropped yet: {e}", G::KIND),
                }
                tokio::time::sleep(crate::backoff::jitter(std::time::Duration::from_secs(1))).await;
            }
        });
        Source::Replicated(ReadModel::start::<G>(
            self.store.clone(),
            self.rpc.clone(),
            self.settings,
            self.metrics.clone(),
            self.tasks,
        ))
    }
}

/// An entity kind as a service knows it (the item catalog, the user directory, the alarm
/// book): built from the service's parts by its own module.
pub trait Replicated: Known + Sized + 'static {
    fn build(cx: &KindContext<'_>) -> Self;
}

/// A whole catalog (every row in memory, [`super::Replica`]): another domain's keeps a
/// persisted copy in the own database for restarts while its owner is down.
impl<E: crate::entity::Entity, I: super::Index<E> + 'static> Replicated for super::Replica<E, I> {
    fn build(cx: &KindContext<'_>) -> Self {
        let catalog = super::Replica::new(cx.source(E::OWNER), cx.settings, cx.metrics.clone());
        if E::OWNER == cx.settings.domain {
            catalog
        } else {
            catalog.with_persistence(cx.store.clone(), cx.tasks)
        }
    }
}

/// A bounded cache of a kind grouped per user ([`super::GroupCache`]), with a hot copy
/// (`moa_cache_entry`: another domain's hot entries, kept for a restart while the owner is down)
/// only when its misses go to another domain's owner alone: not for the own domain, and not
/// beside a read model, which has every entry on disk already, so that a hot copy would only
/// write each new entry a second time (half of item_db's work in a cold pass, docs/performance.md).
impl<G: Group> Replicated for super::GroupCache<G> {
    fn build(cx: &KindContext<'_>) -> Self {
        let source = cx.cached_source::<G>();
        let hot_copy = matches!(source, Source::Remote { .. }).then(|| (cx.store.clone(), cx.tasks));
        super::GroupCache::new(source, cx.settings, cx.metrics.clone(), hot_copy)
    }
}

/// A kind with methods of its own around a catalog or cache ([`Wrapper`]).
impl<W: Wrapper> Replicated for W {
    fn build(cx: &KindContext<'_>) -> Self {
        W::wrap(W::Inner::build(cx), cx)
    }
}

/// A kind with methods of its own over a platform catalog or cache (a newtype over
/// [`super::Replica`] or [`super::GroupCache`], written beside the kind's owner): known as the
/// kind it wraps, and built from it ([`Wrapper::wrap`]). `apply_rows` and `restore` may add
/// to the inner kind's (the user directory indexes its users' tokens).
pub trait Wrapper: Send + Sync + 'static {
    type Inner: Known + Replicated;
    fn inner(&self) -> &Self::Inner;
    /// This kind around an inner one built for the service.
    fn wrap(inner: Self::Inner, cx: &KindContext<'_>) -> Self;
    fn apply_rows(&self, rows: &[VersionedRow]) -> (usize, usize) {
        self.inner().apply_rows(rows)
    }
    fn restore(&self) -> BoxFuture<'_, ()> {
        self.inner().restore()
    }
}

impl<W: Wrapper> Known for W {
    fn kind(&self) -> &'static str {
        self.inner().kind()
    }
    fn owner(&self) -> Domain {
        self.inner().owner()
    }
    fn source_name(&self) -> &'static str {
        self.inner().source_name()
    }
    fn is_warm(&self) -> bool {
        self.inner().is_warm()
    }
    fn max_version(&self) -> i64 {
        Known::max_version(self.inner())
    }
    fn apply_rows(&self, rows: &[VersionedRow]) -> (usize, usize) {
        Wrapper::apply_rows(self, rows)
    }
    fn size(&self) -> (&'static str, f64) {
        self.inner().size()
    }
    fn restore(&self) -> BoxFuture<'_, ()> {
        Wrapper::restore(self)
    }
    fn watch_owner(&self) -> BoxFuture<'_, ()> {
        self.inner().watch_owner()
    }
    fn resubscribed(&self) -> BoxFuture<'_, ()> {
        self.inner().resubscribed()
    }
    fn read_model(&self) -> Option<String> {
        self.inner().read_model()
    }
}

/// Gives the handlers one kind as `web::Data<TheKind>`.
type RegisterData = Arc<dyn Fn(&mut web::ServiceConfig) + Send + Sync>;

/// What a service knows, each kind once: the one list the feed, `/ready`, `/metrics` and the
/// start-up tasks go through, and what the handlers are given.
#[derive(Clone, Default)]
pub struct Replicas {
    kinds: Vec<Arc<dyn Known>>,
    /// Each kind as `web::Data<TheKind>`, for the handlers.
    handler_data: Vec<RegisterData>,
}

impl Replicas {
    /// Every kind this service knows.
    pub fn all(&self) -> &[Arc<dyn Known>] {
        &self.kinds
    }

    /// The kinds `domain` owns among those declared: what its RPC server answers.
    pub fn owned_by(&self, domain: Domain) -> std::sync::Arc<[&'static str]> {
        self.kinds.iter().filter(|k| k.owner() == domain).map(|k| k.kind()).collect()
    }

    /// `(entity, warm, source)` of each kind, for /ready.
    pub fn status(&self) -> Vec<(&'static str, bool, &'static str)> {
        self.kinds.iter().map(|k| (k.kind(), k.is_warm(), k.source_name())).collect()
    }

    /// The owners' `*.events` exchanges of these kinds, each once: what the feed binds.
    pub(crate) fn exchanges(&self) -> Vec<&'static str> {
        let mut exchanges: Vec<&'static str> =
            self.kinds.iter().map(|k| crate::amqp::topology::events_exchange(k.owner())).collect();
        exchanges.sort_unstable();
        exchanges.dedup();
        exchanges
    }

    /// Gives the handlers each kind as `web::Data<TheKind>`.
    pub fn register(&self, cfg: &mut web::ServiceConfig) {
        for register in &self.handler_data {
            register(cfg);
        }
    }

    fn add<R: Replicated>(&mut self, kind: R) -> Arc<R> {
        let kind = Arc::new(kind);
        self.kinds.push(kind.clone());
        let data = web::Data::from(kind.clone());
        self.handler_data.push(Arc::new(move |cfg: &mut web::ServiceConfig| {
            cfg.app_data(data.clone());
        }));
        kind
    }
}

/// A service's declaration of the kinds it knows ([`Kinds::own`], [`Kinds::replicate`]),
/// checked against each kind's owner.
pub struct Kinds<'a> {
    cx: KindContext<'a>,
    replicas: Replicas,
    work: Vec<WorkStream>,
    wrong: Vec<String>,
}

impl<'a> Kinds<'a> {
    pub(crate) fn new(cx: KindContext<'a>) -> Self {
        Kinds { cx, replicas: Replicas::default(), work: Vec::new(), wrong: Vec::new() }
    }

    /// A kind this service owns: read from its own store.
    pub fn own<R: Replicated>(&mut self) -> &mut Self {
        self.add::<R>(true)
    }

    /// Another domain's kind this service keeps a replica of.
    pub fn replicate<R: Replicated>(&mut self) -> &mut Self {
        self.add::<R>(false)
    }

    /// A stream of work this service publishes through its outbox (the item service's views):
    /// each row a message of its own, on a relay lane of its own, kept until it is routed.
    pub fn publish_work(&mut self, stream: WorkStream) -> &mut Self {
        self.work.push(stream);
        self
    }

    fn add<R: Replicated>(&mut self, owned: bool) -> &mut Self {
        let kind = R::build(&self.cx);
        let declared: Vec<&'static str> = self.replicas.kinds.iter().map(|k| k.kind()).collect();
        if let Some(wrong) = misdeclared(&declared, kind.kind(), kind.owner(), owned, self.cx.settings.domain) {
            self.wrong.push(wrong);
        }
        self.replicas.add(kind);
        self
    }

    /// The kinds declared, or what is wrong with the declaration.
    /// The declared kinds, and the work streams the service publishes.
    pub(crate) fn finish(self) -> Result<(Replicas, Vec<WorkStream>)> {
        if self.wrong.is_empty() {
            Ok((self.replicas, self.work))
        } else {
            Err(Error::Config(format!(
                "the {} service's kinds: {}",
                self.cx.settings.domain.name(),
                self.wrong.join("; ")
            )))
        }
    }
}

/// What is wrong with declaring kind `name` (owned by `owner`) as `owned` by `domain`, after
/// the kinds `declared`: a kind of no listed domain, a kind declared twice, or in the wrong role.
fn misdeclared(declared: &[&str], name: &str, owner: Domain, owned: bool, domain: Domain) -> Option<String> {
    if !owner.is_listed() {
        return Some(format!("{name}'s owner {} is not a domain of domains.tsv", owner.name()));
    }
    if declared.contains(&name) {
        return Some(format!("{name} is declared twice"));
    }
    (owned != (owner == domain)).then(|| {
        let role = if owned { "owned" } else { "replicated" };
        format!("{name} is declared {role}, but its owner is the {} service", owner.name())
    })
}

#[cfg(test)]
mod tests {
    use super::misdeclared;
    use crate::settings::Domain;

    #[test]
    fn a_kind_is_declared_once_and_owned_only_by_its_owner() {
        assert_eq!(misdeclared(&[], "item", Domain::new("item"), true, Domain::new("item")), None);
        assert_eq!(misdeclared(&["item"], "user", Domain::new("user"), false, Domain::new("item")), None);
        assert_eq!(
            misdeclared(&["item", "user"], "user", Domain::new("user"), false, Domain::new("item")).as_deref(),
            Some("user is declared twice")
        );
        assert_eq!(
            misdeclared(&[], "user", Domain::new("user"), true, Domain::new("item")).as_deref(),
            Some("user is declared owned, but its owner is the user service")
        );
        assert_eq!(
            misdeclared(&[], "item", Domain::new("item"), false, Domain::new("item")).as_deref(),
            Some("item is declared replicated, but its owner is the item service")
        );
        assert_eq!(
            misdeclared(&[], "unlisted", Domain::new("unlisted"), false, Domain::new("item")).as_deref(),
            Some("unlisted's owner unlisted is not a domain of domains.tsv")
        );
    }
}
