//! Feeds replicas from this instance's own queue, bound to the fanout exchanges of the
//! entities it replicates, and re-syncs them from snapshots each time it (re)subscribes.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use lapin::message::Delivery;

use crate::{
    amqp::{consume, topology, Bus},
    entity::{parse_change_events, Alarm, Entity, Item, User},
    replica::{AlarmBook, ItemCatalog, UserDirectory},
    settings::Settings,
    telemetry::Metrics,
};

/// What a service knows of the three entity kinds (its own from its store, the others from
/// their owners), each read from memory on the hot path: the whole item catalog, and bounded
/// caches of users and alarms.
#[derive(Clone)]
pub struct Replicas {
    pub items: Arc<ItemCatalog>,
    pub users: Arc<UserDirectory>,
    pub alarms: Arc<AlarmBook>,
}

impl Replicas {
    pub fn all_warm(&self) -> bool {
        self.items.is_warm() && self.users.is_warm() && self.alarms.is_warm()
    }

    /// `(entity, warm, owner)` of each replica, for /ready.
    pub fn status(&self) -> Vec<(&'static str, bool, &'static str)> {
        vec![
            ("item", self.items.is_warm(), self.items.owner_name()),
            ("user", self.users.is_warm(), self.users.owner_name()),
            ("alarm", self.alarms.is_warm(), self.alarms.owner_name()),
        ]
    }

    fn exchanges(&self) -> Vec<&'static str> {
        [Item::OWNER, User::OWNER, Alarm::OWNER].map(topology::events_exchange).to_vec()
    }
}

struct Feed {
    replicas: Replicas,
    metrics: Metrics,
}

impl consume::Handler for Feed {
    fn handle<'a>(&'a self, delivery: &'a Delivery) -> BoxFuture<'a, consume::Outcome> {
        Box::pin(async move {
            // Only the owner's exchange speaks for the owner's entities: the broker sets the
            // exchange a message came through, and each service may publish only to its own
            // (docs/security.md). A message put into this queue another way (through the
            // default exchange, which every service may use for RPC) is refused.
            let via = delivery.exchange.as_str();
            let (events, mut bad) = parse_change_events(&delivery.data);
            let (mut items, mut users, mut alarms) = (Vec::new(), Vec::new(), Vec::new());
            for event in events {
                log::debug!(
                    "[{}] {} {} v{}",
                    event.request_id.clone().unwrap_or_else(|| consume::request_id_of(delivery)),
                    event.entity,
                    event.key,
                    event.version
                );
                let (rows, owner) = match event.entity.as_str() {
                    "item" => (&mut items, Item::OWNER),
                    "user" => (&mut users, User::OWNER),
                    "alarm" => (&mut alarms, Alarm::OWNER),
                    other => {
                        bad.push(format!("event for an entity not replicated here: {other}"));
                        continue;
                    }
                };
                if via != topology::events_exchange(owner) {
                    bad.push(format!(
                        "{} event that did not come through {}",
                        event.entity,
                        topology::events_exchange(owner)
                    ));
                    continue;
                }
                rows.push(event.into_row());
            }
            // One lock per entity and message: the relay sends whole drains in one message.
            for (entity, rows, (applied, _)) in [
                ("item", items.len(), self.replicas.items.apply_rows(&items)),
                ("user", users.len(), self.replicas.users.apply_rows(&users)),
                ("alarm", alarms.len(), self.replicas.alarms.apply_rows(&alarms)),
            ] {
                let labels = format!("entity=\"{entity}\"");
                if applied > 0 {
                    self.metrics.inc("moa_events_applied_total", labels.clone(), applied as f64);
                }
                if rows > applied {
                    self.metrics.inc("moa_events_stale_total", labels, (rows - applied) as f64);
                }
            }
            if bad.is_empty() {
                return consume::Outcome::Ack;
            }
            // The valid events are applied; the message is kept in the dead-letter queue.
            self.metrics.inc("moa_events_dead_lettered_total", String::new(), 1.0);
            consume::Outcome::DeadLetter(bad.join("; "))
        })
    }

    fn on_subscribed(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            // Whatever changed while this queue did not exist: the catalog re-syncs (digest or
            // snapshot); the caches ask again for each entry before its next use.
            self.replicas.users.resubscribed().await;
            self.replicas.alarms.resubscribed().await;
            self.replicas.items.sync_until_done().await;
        })
    }
}

/// Starts this instance's replica feed.
pub fn start(bus: &Bus, settings: &Settings, replicas: Replicas, metrics: Metrics) {
    let source = consume::Source::Instance {
        name: format!("{}.replica.{}", settings.domain.name(), settings.instance_id),
        bind_to: replicas.exchanges(),
    };
    consume::start(bus, "replica feed", source, settings.prefetch, 1, Arc::new(Feed { replicas, metrics }));
}
