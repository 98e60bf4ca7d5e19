//! Recent views in memory: every user service instance keeps each user's latest view per
//! item, fed by `user.visits` (changes of the `recent_visit` table, whichever instance stored
//! the view), so `/visit` is answered without a database round trip.

use std::{
    collections::{BTreeSet, HashMap},
    sync::Arc,
};

use common::{
    amqp::consume,
    entity::{parse_change_events, Entity},
    replica::{Index, Replica, Source},
    service::Core,
    settings::Domain,
};
use futures_util::future::BoxFuture;
use lapin::message::Delivery;
use serde::Deserialize;
use user_kind::KnownUser;

/// Fanout exchange of changes to users' recent views (`recent_visit`'s capture, migration
/// 0012), in `rabbitmq/definitions.json.in`; bound by user service instances only.
pub const VISITS_EXCHANGE: &str = "user.visits";

/// A row of `recent_visit`: the latest view of an item by a user.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Visit {
    pub user_id: i64,
    pub item_id: i64,
    pub viewed_at_us: Option<i64>,
    pub seq: i64,
}

impl Entity for Visit {
    const KIND: &'static str = "visit";
    const OWNER: Domain = KnownUser::OWNER;
    type Key = (i64, i64);
    fn key(&self) -> Option<(i64, i64)> {
        Some((self.user_id, self.item_id))
    }
    fn parse_key(key: &str) -> Option<(i64, i64)> {
        common::entity::parse_pair_key(key)
    }
}

#[derive(Default)]
pub struct VisitIndex {
    /// user → (viewed at, sequence, item), oldest first.
    by_user: HashMap<i64, BTreeSet<(i64, i64, i64)>>,
}

fn order(v: &Visit) -> (i64, i64, i64) {
    (v.viewed_at_us.unwrap_or(0), v.seq, v.item_id)
}

impl Index<Visit> for VisitIndex {
    fn update(&mut self, key: &(i64, i64), old: Option<&Visit>, new: Option<&Visit>) {
        let user = key.0;
        if let Some(old) = old {
            if let Some(set) = self.by_user.get_mut(&user) {
                set.remove(&order(old));
                // A user whose views are all gone (deleted with the user, trimmed) leaves no
                // empty set behind: the map holds the users with views, not every user ever seen.
                if set.is_empty() && new.is_none() {
                    self.by_user.remove(&user);
                }
            }
        }
        if let Some(new) = new {
            self.by_user.entry(user).or_default().insert(order(new));
        }
    }
}

pub type VisitBook = Replica<Visit, VisitIndex>;

/// The `limit` items `user_id` viewed most recently, newest first; None until the book is loaded.
pub fn recent(book: &VisitBook, user_id: i64, limit: usize) -> Option<Vec<i64>> {
    if !book.is_warm() {
        return None;
    }
    let state = book.read();
    Some(
        state
            .index
            .by_user
            .get(&user_id)
            .map(|set| set.iter().rev().take(limit).map(|(_, _, item)| *item).collect())
            .unwrap_or_default(),
    )
}

struct VisitFeed {
    book: Arc<VisitBook>,
    /// The login visit events must be published with: the user service's own.
    publisher: String,
}

impl consume::Handler for VisitFeed {
    fn handle<'a>(&'a self, delivery: &'a Delivery) -> BoxFuture<'a, consume::Outcome> {
        Box::pin(async move {
            // Only what came through user.visits (which only the user service may publish to),
            // with the user service's login.
            if let Err((reason, why)) = consume::check_origin(delivery, VISITS_EXCHANGE, &self.publisher) {
                return consume::Outcome::Refuse(reason, why);
            }
            let (events, mut bad) = parse_change_events(&delivery.data);
            let mut rows = Vec::with_capacity(events.len());
            for event in events {
                if event.entity == Visit::KIND {
                    rows.push(event.into_row());
                } else {
                    bad.push(format!("not a visit event: {}", event.entity));
                }
            }
            self.book.apply_rows(&rows);
            if bad.is_empty() {
                consume::Outcome::Ack
            } else {
                consume::Outcome::DeadLetter(bad.join("; "))
            }
        })
    }

    fn on_subscribed(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.book.sync_until_done())
    }
}

/// Starts this instance's visit book: own queue bound to `user.visits`, then the snapshot.
pub fn start(core: &Core) -> Arc<VisitBook> {
    let book = Arc::new(VisitBook::new(Source::Local(core.store.clone()), &core.settings, core.metrics.clone()));
    let source = consume::Source::Instance {
        name: format!("user.visits.{}", core.settings.instance_id),
        bind_to: vec![VISITS_EXCHANGE],
    };
    consume::start(
        &core.bus,
        "visit feed",
        source,
        core.settings.prefetch,
        1,
        Arc::new(VisitFeed {
            book: book.clone(),
            publisher: core.bus.identity().owner(core.settings.domain).to_string(),
        }),
        core.metrics.clone(),
    );
    // user_db re-created or restored: the book is rebuilt from it.
    let b = book.clone();
    core.tasks.spawn("visit book epoch watch", async move { b.watch_owner().await });
    book
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latest_view_of_each_item_wins_and_three_are_shown() {
        let mut index = VisitIndex::default();
        let v = |item, at, seq| Visit { user_id: 1, item_id: item, viewed_at_us: Some(at), seq };
        // A, B, C, A → A, C, B
        index.update(&(1, 10), None, Some(&v(10, 1, 1)));
        index.update(&(1, 20), None, Some(&v(20, 2, 2)));
        index.update(&(1, 30), None, Some(&v(30, 3, 3)));
        index.update(&(1, 10), Some(&v(10, 1, 1)), Some(&v(10, 4, 4)));
        let got: Vec<i64> = index.by_user[&1].iter().rev().map(|t| t.2).collect();
        assert_eq!(got, vec![10, 30, 20]);
    }

    #[test]
    fn a_user_whose_views_are_all_deleted_leaves_no_empty_set() {
        let mut index = VisitIndex::default();
        let v = |user, item| Visit { user_id: user, item_id: item, viewed_at_us: Some(item), seq: item };
        index.update(&(1, 10), None, Some(&v(1, 10)));
        index.update(&(1, 20), None, Some(&v(1, 20)));
        index.update(&(2, 10), None, Some(&v(2, 10)));
        index.update(&(1, 10), Some(&v(1, 10)), None);
        assert_eq!(index.by_user[&1].len(), 1);
        index.update(&(1, 20), Some(&v(1, 20)), None);
        assert!(!index.by_user.contains_key(&1), "user 1's emptied set is gone");
        assert_eq!(index.by_user.len(), 1, "user 2 keeps theirs");
    }
}
