//! The user directory: who a `USER-TOKEN` belongs to.

use std::collections::HashMap;

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
        let holds = |rows: &[crate::entity::VersionedRow]| {
            rows.iter().filter_map(row_value::<User>).find(|u| u.access_token == token)
        };
        let q = Query::UserByToken { token: token.to_string() };
        let rows = self.fetch_once(format!("token:{token}"), q, |rows| holds(rows).is_some()).await?;
        Ok(holds(&rows))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entity::raw_json;
    use crate::entity::VersionedRow;
    use serde_json::json;

    fn row(id: i64, v: i64, token: &str, deleted: bool) -> VersionedRow {
        VersionedRow {
            key: id.to_string(),
            version: v,
            deleted,
            data: raw_json(&json!({"id": id, "name": "이름", "access_token": token})),
            epoch: None,
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

    #[tokio::test]
    async fn an_unknown_token_with_the_owner_unreachable_is_an_error_not_a_no() {
        let d = UserDirectory::detached();
        assert!(d.by_token("nobody").await.is_err());
    }
}
