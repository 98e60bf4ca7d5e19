//! The alarm domain's entity kind: [`Alarm`] (owned by the alarm service) and the alarm book,
//! which items each user has an alarm on: a bounded cache with one entry per user holding, per
//! item, the version of that user's alarm row (set or cleared) and nothing else; see
//! `common::replica::cache`. The item and user services replicate it.

use std::collections::BTreeSet;
use std::sync::Arc;

use common::{
    entity::{parse_pair_key, Entity},
    replica::{
        cache::{members_of, Entry, Found, Group, GroupCache},
        group::PairSet,
        KindContext, Wrapper,
    },
    settings::Domain,
    store::query::Query,
    Result,
};
use serde::{Deserialize, Serialize};

/// The cache memory tests count what an entry costs (`common::heap_meter`).
#[cfg(test)]
#[global_allocator]
static METER: common::heap_meter::Meter = common::heap_meter::Meter;

/// `alarm(id integer pk, item_id integer, user_id integer, created timestamp)`, keyed by
/// (user, item): that pair is what "the user has an alarm on the item" means.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Alarm {
    pub id: i64,
    pub item_id: Option<i64>,
    pub user_id: Option<i64>,
}

impl Entity for Alarm {
    const KIND: &'static str = "alarm";
    const OWNER: Domain = Domain::new("alarm");
    type Key = (i64, i64);
    fn key(&self) -> Option<(i64, i64)> {
        Some((self.user_id?, self.item_id?))
    }
    fn parse_key(key: &str) -> Option<(i64, i64)> {
        parse_pair_key(key)
    }
}

/// One user's alarms: the pairs `"<user_id>:<item_id>"`, viewed as the item ids with an alarm
/// (nothing kept but each pair's version and tombstone flag).
pub type Alarms = PairSet<Alarm>;

/// The alarm book: a [`GroupCache`] of [`Alarms`], one entry per user.
pub struct AlarmBook(GroupCache<Alarms>);

impl std::ops::Deref for AlarmBook {
    type Target = GroupCache<Alarms>;
    fn deref(&self) -> &GroupCache<Alarms> {
        &self.0
    }
}

impl Wrapper for AlarmBook {
    type Inner = GroupCache<Alarms>;
    fn inner(&self) -> &GroupCache<Alarms> {
        &self.0
    }
    fn wrap(inner: GroupCache<Alarms>, _: &KindContext<'_>) -> Self {
        AlarmBook(inner)
    }
}

fn of_user(user_id: i64) -> Query {
    Query::Prefix { entity: Alarm::KIND.into(), prefixes: vec![format!("{user_id}:")] }
}

impl AlarmBook {
    /// A book with no way to reach its owner (tests).
    pub fn detached() -> Self {
        AlarmBook(GroupCache::detached())
    }

    /// The items `user_id` has alarms on: from the cache, or one question to the owner for all
    /// of this user's alarms. An old entry is served when the owner cannot answer.
    pub async fn items_of(&self, user_id: i64) -> Result<Arc<BTreeSet<i64>>> {
        let stale = match self.cached(user_id) {
            Some(Found::Current(e)) => {
                self.hit();
                return Ok(e.view.clone());
            }
            Some(Found::Stale(e)) => Some(e),
            None => None,
        };
        if let (Some(_), Some(e)) = (&stale, self.owner_recently_failed()) {
            return self.stale_or(stale, e);
        }
        match self.fetch(format!("alarms:{user_id}"), of_user(user_id), |_| vec![user_id], |_| true).await {
            Ok(rows) => Ok(match self.cached(user_id) {
                Some(Found::Current(e)) => e.view.clone(),
                // Not kept (an answer of another owner epoch): the answer itself.
                _ => Alarms::view(&members_of::<Alarms>(user_id, &rows)),
            }),
            Err(e) => self.stale_or(stale, e),
        }
    }

    /// The owner's own read (the alarm list): from its source now, within `timeout`, the
    /// answer kept as the user's entry.
    pub async fn read_through(&self, user_id: i64, timeout: std::time::Duration) -> Result<Arc<BTreeSet<i64>>> {
        Ok(self.read_group(user_id, of_user(user_id), timeout).await?.view.clone())
    }

    /// The cached entry of any generation, or `err`: the source is known not to answer.
    pub fn cached_only(&self, user_id: i64, err: common::Error) -> Result<Arc<BTreeSet<i64>>> {
        let cached = match self.cached(user_id) {
            Some(Found::Current(e) | Found::Stale(e)) => Some(e),
            None => None,
        };
        self.stale_or(cached, err)
    }

    fn stale_or(&self, stale: Option<Arc<Entry<Alarms>>>, err: common::Error) -> Result<Arc<BTreeSet<i64>>> {
        match stale {
            Some(entry) => {
                self.served_stale(&err);
                Ok(entry.view.clone())
            }
            None => Err(err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::entity::{pair_key, raw_json, VersionedRow};
    use serde_json::json;

    fn row(id: i64, user: i64, item: i64, v: i64, deleted: bool) -> VersionedRow {
        VersionedRow {
            key: pair_key(user, item),
            version: v,
            deleted,
            data: raw_json(&json!({"id": id, "user_id": user, "item_id": item, "created": "2020-01-01T00:00:00"})),
            epoch: None,
        }
    }

    fn items(b: &AlarmBook, user: i64) -> Option<Vec<i64>> {
        match b.cached(user) {
            Some(Found::Current(e)) => Some(e.view.iter().copied().collect()),
            _ => None,
        }
    }

    #[test]
    fn set_clear_and_set_again_follow_the_versions() {
        let b = AlarmBook::detached();
        let g = b.current_generation();
        b.fill(&[10], &[row(1, 10, 5, 1, false), row(2, 10, 6, 2, false)], g);
        assert_eq!(items(&b, 10), Some(vec![5, 6]));
        b.apply_rows(&[row(1, 10, 5, 4, true)]);
        assert_eq!(items(&b, 10), Some(vec![6]));
        b.apply_rows(&[row(1, 10, 5, 2, false)]);
        assert_eq!(items(&b, 10), Some(vec![6]), "a stale set after the clear is dropped");
        b.apply_rows(&[row(9, 10, 5, 8, false)]);
        assert_eq!(items(&b, 10), Some(vec![5, 6]));
        b.apply_rows(&[row(3, 11, 5, 3, false)]);
        assert_eq!(items(&b, 11), None, "an uncached user's event makes no entry");
    }

    #[test]
    fn an_empty_answer_is_an_entry_and_events_after_it_count() {
        let b = AlarmBook::detached();
        let g = b.current_generation();
        b.fill(&[20], &[], g);
        assert_eq!(items(&b, 20), Some(vec![]));
        b.apply_rows(&[row(1, 20, 3, 5, false)]);
        assert_eq!(items(&b, 20), Some(vec![3]));
    }

    #[test]
    fn a_set_that_committed_while_the_answer_travelled_is_not_lost() {
        let b = AlarmBook::detached();
        let g = b.current_generation();
        b.apply_rows(&[row(1, 30, 4, 9, false)]);
        b.fill(&[30], &[row(2, 30, 7, 3, false)], g);
        assert_eq!(items(&b, 30), Some(vec![4, 7]));
    }

    #[tokio::test]
    async fn an_uncached_user_with_the_owner_unreachable_is_an_error_and_an_old_entry_is_served() {
        let b = AlarmBook::detached();
        assert!(b.items_of(1).await.is_err());
        b.fill(&[2], &[row(1, 2, 8, 1, false)], 0);
        assert_eq!(b.items_of(2).await.unwrap().iter().copied().collect::<Vec<_>>(), vec![8]);
    }

    #[test]
    fn an_alarm_without_user_or_item_has_no_key() {
        let a = Alarm { id: 1, item_id: Some(3), user_id: None };
        assert_eq!(a.key(), None);
        assert_eq!(Alarm { id: 1, item_id: Some(3), user_id: Some(2) }.key(), Some((2, 3)));
        assert_eq!(Alarm::parse_key("2:3"), Some((2, 3)));
        assert_eq!(Alarm::parse_key("null:3"), None);
        assert_eq!(Alarms::OWNER, Alarm::OWNER, "a group's owner is its row's");
    }

    /// An entry keeps what the view needs, not the rows as sent: 10,000 users with 10 alarms
    /// each must stay under 1 KiB per user, everything counted (the cache's bookkeeping, the
    /// member map, the view). Keeping the rows as sent took ~3.1 KiB per user (docs/performance.md).
    #[test]
    fn a_users_alarm_entry_costs_a_few_hundred_bytes_not_its_rows() {
        let users = 10_000_i64;
        let book = AlarmBook::detached();
        let g = book.current_generation();
        let answers: Vec<Vec<VersionedRow>> = (0..users)
            .map(|u| (0..10).map(|i| row(u * 10 + i, u, 1000 + i * 7, u * 10 + i + 1, false)).collect())
            .collect();
        let ((), bytes) = common::heap_meter::net_bytes(|| {
            for (u, rows) in answers.iter().enumerate() {
                book.fill(&[u as i64], rows, g);
            }
        });
        assert_eq!(book.len(), users as u64);
        let per_user = bytes / users as isize;
        println!("alarm cache: {bytes} bytes for {users} users x 10 alarms = {per_user} bytes per user");
        assert!(per_user < 1024, "{per_user} bytes per user");
        let Some(Found::Current(e)) = book.cached(7) else { panic!("user 7 cached") };
        assert_eq!(e.view.len(), 10);
    }
}
