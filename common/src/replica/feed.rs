//! Feeds replicas from this instance's own queue, bound to the fanout exchanges of the
//! entities it replicates, and re-syncs them from snapshots each time it (re)subscribes.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use lapin::message::Delivery;

use crate::{
    amqp::{consume, identity::Identity, topology, Bus},
    entity::parse_change_events,
    replica::Replicas,
    settings::Settings,
    telemetry::Metrics,
};

struct Feed {
    replicas: Replicas,
    metrics: Metrics,
    identity: Identity,
}

impl consume::Handler for Feed {
    fn handle<'a>(&'a self, delivery: &'a Delivery) -> BoxFuture<'a, consume::Outcome> {
        Box::pin(async move {
            // Only the owner speaks for the owner's entities: the message must come through the
            // owner's exchange (the broker sets the exchange a message came through, and each
            // service may publish only to its own) with the owner's login as user_id (checked
            // by the broker), docs/security.md. A message put into this queue another way
            // (through the default exchange, which every service may use for RPC) is refused.
            let via = delivery.exchange.as_str();
            let kinds = self.replicas.all();
            let owner = kinds.iter().map(|k| k.owner()).find(|d| topology::events_exchange(*d) == via);
            let Some(owner) = owner else {
                return consume::Outcome::Refuse(
                    consume::Refused::Exchange,
                    format!("change events that came through {via:?}, no owner's events exchange"),
                );
            };
            let exchange = topology::events_exchange(owner);
            if let Err((reason, why)) = consume::check_origin(delivery, exchange, self.identity.owner(owner)) {
                return consume::Outcome::Refuse(reason, why);
            }
            let (events, mut bad) = parse_change_events(&delivery.data);
            let mut rows: Vec<Vec<_>> = kinds.iter().map(|_| Vec::new()).collect();
            for event in events {
                log::debug!(
                    "[{}] {} {} v{}",
                    event.request_id.clone().unwrap_or_else(|| consume::request_id_of(delivery)),
                    event.entity,
                    event.key,
                    event.version
                );
                let Some(i) = kinds.iter().position(|k| k.kind() == event.entity) else {
                    bad.push(format!("event for an entity not replicated here: {}", event.entity));
                    continue;
                };
                let exchange = topology::events_exchange(kinds[i].owner());
                if via != exchange {
                    bad.push(format!("{} event that did not come through {exchange}", event.entity));
                    continue;
                }
                rows[i].push(event.into_row());
            }
            // One lock per entity and message: the relay sends whole drains in one message.
            for (kind, rows) in kinds.iter().zip(&rows) {
                let (applied, _) = kind.apply_rows(rows);
                let labels = format!("entity=\"{}\"", kind.kind());
                if applied > 0 {
                    self.metrics.inc("moa_events_applied_total", labels.clone(), applied as f64);
                }
                if rows.len() > applied {
                    self.metrics.inc("moa_events_stale_total", labels, (rows.len() - applied) as f64);
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
            futures_util::future::join_all(self.replicas.all().iter().map(|k| k.resubscribed())).await;
        })
    }
}

/// Starts this instance's replica feed.
pub fn start(bus: &Bus, settings: &Settings, replicas: Replicas, metrics: Metrics) {
    let source = consume::Source::Instance {
        name: format!("{}.replica.{}", settings.domain.name(), settings.instance_id),
        bind_to: replicas.exchanges(),
    };
    let feed = Feed { replicas, metrics: metrics.clone(), identity: bus.identity().clone() };
    consume::start(bus, "replica feed", source, settings.prefetch, 1, Arc::new(feed), metrics);
}
