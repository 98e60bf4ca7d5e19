//! The user directory: who a `USER-TOKEN` belongs to.

use std::collections::{BTreeMap, HashMap};

use crate::{
    entity::User,
    error::Result,
    replica::{row_value, Index, Replica},
    store::Query,
};

pub type UserDirectory = Replica<User, UserIndex>;

#[derive(Default)]
pub struct UserIndex {
    by_token: HashMap<String, i64>,
}

impl Index<User> for UserIndex {
    fn update(&mut self, key: &i64, old: Option<&User>, new: Option<&User>) {
        if let Some(old) = old {
            if self.by_token.get(&old.access_token) == Some(key) {
                self.by_token.remove(&old.access_token);
            }
        }
        if let Some(new) = new {
            self.by_token.insert(new.access_token.clone(), *key);
        }
    }
}

impl UserDirectory {
    fn cached_by_token(&self, token: &str) -> Option<User> {
        let state = self.read();
        let id = state.index.by_token.get(token)?;
        state.rows.get(id)?.value.clone()
    }

    /// The user holding `token`, asking the owner when it is not known here.
    /// `Ok(None)`: no such user.
    pub async fn by_token(&self, token: &str) -> Result<Option<User>> {
        if let Some(user) = self.cached_by_token(token) {
            self.hit();
            return Ok(Some(user));
        }
        let rows = self.fetch(Query::UserByToken { token: token.to_string() }).await?;
        Ok(rows.iter().filter_map(row_value::<User>).find(|u| u.access_token == token))
    }

    /// Every live user, id descending.
    pub fn all_desc(&self) -> Vec<User> {
        let state = self.read();
        let sorted: BTreeMap<i64, &User> =
            state.rows.iter().filter_map(|(id, slot)| slot.value.as_ref().map(|u| (*id, u))).collect();
        sorted.into_values().rev().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entity::VersionedRow;
    use serde_json::json;

    fn row(id: i64, v: i64, token: &str, deleted: bool) -> VersionedRow {
        VersionedRow {
            key: id.to_string(),
            version: v,
            deleted,
            data: json!({"id": id, "name": "이름", "access_token": token}),
        }
    }

    #[test]
    fn a_changed_token_stops_working_and_the_new_one_works() {
        let d = UserDirectory::detached();
        d.apply_rows(&[row(1, 1, "old", false)]);
        assert_eq!(d.cached_by_token("old").map(|u| u.id), Some(1));
        d.apply_rows(&[row(1, 2, "new", false)]);
        assert!(d.cached_by_token("old").is_none());
        assert_eq!(d.cached_by_token("new").map(|u| u.id), Some(1));
        d.apply_rows(&[row(1, 3, "new", true)]);
        assert!(d.cached_by_token("new").is_none(), "a deleted user's token no longer works");
    }

    #[test]
    fn the_list_is_id_descending_without_deleted_users() {
        let d = UserDirectory::detached();
        d.apply_rows(&[row(1, 1, "a", false), row(5, 2, "b", false), row(3, 3, "c", true)]);
        let ids: Vec<i64> = d.all_desc().iter().map(|u| u.id).collect();
        assert_eq!(ids, vec![5, 1]);
    }

    #[tokio::test]
    async fn an_unknown_token_with_the_owner_unreachable_is_an_error_not_a_no() {
        let d = UserDirectory::detached();
        assert!(d.by_token("nobody").await.is_err());
    }
}
