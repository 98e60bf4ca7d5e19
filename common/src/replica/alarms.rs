//! The alarm book: which items each user has an alarm on.

use std::collections::{BTreeSet, HashMap};

use crate::{
    entity::Alarm,
    error::Result,
    replica::{row_value, Index, Replica},
    store::Query,
};

pub type AlarmBook = Replica<Alarm, AlarmIndex>;

#[derive(Default)]
pub struct AlarmIndex {
    by_user: HashMap<i64, BTreeSet<i64>>,
}

impl Index<Alarm> for AlarmIndex {
    fn update(&mut self, key: &(i64, i64), _old: Option<&Alarm>, new: Option<&Alarm>) {
        let (user, item) = *key;
        if new.is_some() {
            self.by_user.entry(user).or_default().insert(item);
        } else if let Some(items) = self.by_user.get_mut(&user) {
            items.remove(&item);
            if items.is_empty() {
                self.by_user.remove(&user);
            }
        }
    }
}

impl AlarmBook {
    /// The items `user_id` has alarms on. From memory once the replica is warm; before
    /// that (cold start) the owner is asked for this user's alarms.
    pub async fn items_of(&self, user_id: i64) -> Result<BTreeSet<i64>> {
        if self.is_warm() {
            self.hit();
            return Ok(self.read().index.by_user.get(&user_id).cloned().unwrap_or_default());
        }
        let rows = self.fetch(Query::Prefix { entity: "alarm".into(), prefix: format!("{user_id}:") }).await?;
        Ok(rows
            .iter()
            .filter_map(row_value::<Alarm>)
            .filter(|a| a.user_id == Some(user_id))
            .filter_map(|a| a.item_id)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entity::raw_json;
    use crate::entity::{pair_key, VersionedRow};
    use serde_json::json;
    use std::sync::atomic::Ordering;

    fn row(id: i64, user: i64, item: i64, v: i64, deleted: bool) -> VersionedRow {
        VersionedRow {
            key: pair_key(user, item),
            version: v,
            deleted,
            data: raw_json(&json!({"id": id, "user_id": user, "item_id": item, "created": "2020-01-01T00:00:00"})),
            epoch: None,
        }
    }

    #[tokio::test]
    async fn set_clear_and_set_again_follow_the_versions() {
        let b = AlarmBook::detached();
        b.warm.store(true, Ordering::Release);
        b.apply_rows(&[row(1, 10, 5, 1, false), row(2, 10, 6, 2, false), row(3, 11, 5, 3, false)]);
        assert_eq!(b.items_of(10).await.unwrap(), BTreeSet::from([5, 6]));
        b.apply_rows(&[row(1, 10, 5, 4, true)]);
        assert_eq!(b.items_of(10).await.unwrap(), BTreeSet::from([6]));
        b.apply_rows(&[row(1, 10, 5, 2, false)]);
        assert_eq!(b.items_of(10).await.unwrap(), BTreeSet::from([6]), "a stale set after the clear is dropped");
        b.apply_rows(&[row(9, 10, 5, 8, false)]);
        assert_eq!(b.items_of(10).await.unwrap(), BTreeSet::from([5, 6]));
        assert_eq!(b.items_of(99).await.unwrap(), BTreeSet::new());
    }

    #[tokio::test]
    async fn a_cold_book_asks_the_owner_and_fails_when_it_cannot() {
        let b = AlarmBook::detached();
        assert!(b.items_of(1).await.is_err());
    }
}
