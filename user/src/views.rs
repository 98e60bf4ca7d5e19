//! The view consumer: stores each view from the shared `user.views` queue exactly once
//! (acked only after it is committed; duplicates are recognised by event id).
//!
//! Only a view that can never be stored is dead-lettered: one that does not parse, or one
//! the database refuses for its content. A view that cannot be stored *yet* (user_db down,
//! restarting, out of connections, ...) is held and retried by the consumer for as long
//! as the outage lasts (`common::amqp::consume`), so no outage, however long, sends a view
//! that was answered 200 to `dead-letters`.

use std::sync::Arc;

use actix::Addr;
use common::{amqp::consume, entity::Entity, service::Core, store::Store};
use futures_util::future::BoxFuture;
use item_kind::{Item, ViewEvent, VIEWS};
use lapin::message::Delivery;

use crate::{recent::VisitBook, store::RecordVisit};

pub struct ViewRecorder {
    store: Addr<Store>,
    /// This instance's recent views, updated at once with what it stores.
    visits: Arc<VisitBook>,
    metrics: common::telemetry::Metrics,
    /// The login views must be published with: the item service's.
    publisher: String,
}

/// A view event the user service can store: well-formed, with a UUID event id.
pub fn parse_view(data: &[u8]) -> Result<ViewEvent, String> {
    let v: ViewEvent = serde_json::from_slice(data).map_err(|e| format!("not a view event: {e}"))?;
    let id = v.event_id.as_bytes();
    let uuid_shaped = id.len() == 36
        && id.iter().enumerate().all(
            |(i, b)| {
                if [8, 13, 18, 23].contains(&i) {
                    *b == b'-'
                } else {
                    b.is_ascii_hexdigit()
                }
            },
        );
    if !uuid_shaped {
        return Err(format!("view event id is not a UUID: {:?}", v.event_id));
    }
    Ok(v)
}

/// Whether the database refused a view for what it holds: SQLSTATE class 22 (data exception,
/// e.g. a time out of range) or 23 (integrity constraint). Storing it again would fail again.
/// Every other failure may pass — no connection, the server starting up or shutting down
/// (57P01, 57P03), too many connections (53300), a serialization failure, even a function
/// missing during a deploy — so the view waits for it instead of being dead-lettered.
fn refused_for_its_content(e: &common::error::Error) -> bool {
    match e {
        common::error::Error::Db(e) => {
            e.as_db_error().is_some_and(|db| matches!(db.code().code().get(..2), Some("22" | "23")))
        }
        _ => false,
    }
}

impl consume::Handler for ViewRecorder {
    fn handle<'a>(&'a self, delivery: &'a Delivery) -> BoxFuture<'a, consume::Outcome> {
        Box::pin(async move {
            // Only the item service records views: a message put into user.views another way
            // (the default exchange reaches any queue by name), or published without the item
            // service's login, is not one (docs/security.md).
            if let Err((reason, why)) = consume::check_origin(delivery, VIEWS.exchange, &self.publisher) {
                return consume::Outcome::Refuse(reason, why);
            }
            let view = match parse_view(&delivery.data) {
                Ok(v) => v,
                Err(why) => {
                    self.metrics.inc("moa_events_dead_lettered_total", String::new(), 1.0);
                    return consume::Outcome::DeadLetter(why);
                }
            };
            let (user, item) = (view.user_id, view.item_id);
            let request_id = consume::request_id_of(delivery);
            match self.store.send(RecordVisit { view, request_id: request_id.clone() }).await {
                Ok(Ok((new, rows))) => {
                    self.visits.apply_rows(&rows);
                    let outcome = if new { "stored" } else { "duplicate" };
                    log::info!(target: "moa::access", "[{}] view of item {item} by user {user} {outcome}", request_id);
                    self.metrics.inc("moa_views_total", format!("outcome=\"{outcome}\""), 1.0);
                    consume::Outcome::Ack
                }
                Ok(Err(e)) if refused_for_its_content(&e) => {
                    self.metrics.inc("moa_events_dead_lettered_total", String::new(), 1.0);
                    consume::Outcome::DeadLetter(format!("user_db refuses this view: {e}"))
                }
                Ok(Err(e)) => consume::Outcome::Retry(format!("cannot store a view yet: {e}")),
                Err(e) => consume::Outcome::Retry(e.to_string()),
            }
        })
    }
}

/// How many views one instance stores concurrently (each is one short transaction).
const VIEW_CONCURRENCY: usize = 32;

pub fn start(core: &Core, visits: Arc<VisitBook>) {
    core.metrics.describe("moa_views_total", "counter", "views consumed by the user service, stored or duplicate");
    let publisher = core.bus.identity().owner(Item::OWNER).to_string();
    let recorder = ViewRecorder { store: core.store.clone(), visits, metrics: core.metrics.clone(), publisher };
    consume::start(
        &core.bus,
        "view recorder",
        consume::Source::Shared(VIEWS.queue),
        core.settings.prefetch,
        // Views are independent (stored once by event id, latest view wins): store many at once.
        VIEW_CONCURRENCY,
        Arc::new(recorder),
        core.metrics.clone(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_views_are_refused_before_reaching_the_database() {
        assert!(parse_view(b"not json").is_err());
        assert!(parse_view(br#"{"event_id":"x","user_id":1,"item_id":2,"viewed_at_us":1,"seq":1}"#).is_err());
        assert!(parse_view(br#"{"event_id":"0b6f6c1e-8a47-4f0e-9d1a-2f4c7f1e9a00","user_id":"1","item_id":2,"viewed_at_us":1,"seq":1}"#).is_err());
        let ok = parse_view(
            br#"{"event_id":"0b6f6c1e-8a47-4f0e-9d1a-2f4c7f1e9a00","user_id":1,"item_id":2,"viewed_at_us":1,"seq":1}"#,
        )
        .unwrap();
        assert_eq!((ok.user_id, ok.item_id), (1, 2));
    }
}
