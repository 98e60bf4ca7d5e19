//! The user directory: who a `USER-TOKEN` belongs to.

use std::{
    collections::{BTreeSet, HashMap},
    sync::Mutex,
};

use bytes::Bytes;

use crate::{
    entity::User,
    error::Result,
    replica::{row_value, Index, Page, Replica},
    store::Query,
};

pub type UserDirectory = Replica<User, UserIndex>;

#[derive(Default)]
pub struct UserIndex {
    by_token: HashMap<String, i64>,
    /// Live user ids, for the id-descending list.
    ids: BTreeSet<i64>,
    /// The full list body, built once per change (100k users are ~8 MB of JSON).
    list_cache: Mutex<Option<Bytes>>,
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
            self.ids.insert(*key);
        } else {
            self.ids.remove(key);
        }
        *self.list_cache.get_mut().unwrap_or_else(|p| p.into_inner()) = None;
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

    /// `{"count": n, "payload": [users, id descending]}`, or one page of it. The whole list is
    /// serialized once per change and then served from that copy.
    pub fn render_list(&self, page: Page) -> Bytes {
        let state = self.read();
        let whole = page == Page::default();
        if whole {
            if let Some(body) = state.index.list_cache.lock().unwrap_or_else(|p| p.into_inner()).clone() {
                return body;
            }
        }
        let ids = state.index.ids.iter().rev().skip(page.offset).take(page.limit.unwrap_or(usize::MAX));
        let users: Vec<&User> = ids.filter_map(|id| state.rows.get(id)?.value.as_ref()).collect();
        let mut body = Vec::with_capacity(users.len() * 100 + 32);
        body.extend_from_slice(format!("{{\"count\":{},\"payload\":", users.len()).as_bytes());
        let _ = serde_json::to_writer(&mut body, &users);
        body.push(b'}');
        let body = Bytes::from(body);
        if whole {
            *state.index.list_cache.lock().unwrap_or_else(|p| p.into_inner()) = Some(body.clone());
        }
        body
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

    #[test]
    fn the_list_is_id_descending_without_deleted_users() {
        let d = UserDirectory::detached();
        d.apply_rows(&[row(1, 1, "a", false), row(5, 2, "b", false), row(3, 3, "c", true)]);
        let v: serde_json::Value = serde_json::from_slice(&d.render_list(Page::default())).unwrap();
        let ids: Vec<i64> = v["payload"].as_array().unwrap().iter().map(|u| u["id"].as_i64().unwrap()).collect();
        assert_eq!(ids, vec![5, 1]);
    }

    #[test]
    fn the_cached_list_follows_changes_and_pages_slice_it() {
        let d = UserDirectory::detached();
        d.apply_rows(&[row(1, 1, "a", false), row(2, 2, "b", false)]);
        let ids = |body: &[u8]| -> Vec<i64> {
            let v: serde_json::Value = serde_json::from_slice(body).unwrap();
            assert_eq!(v["count"].as_u64().unwrap() as usize, v["payload"].as_array().unwrap().len());
            v["payload"].as_array().unwrap().iter().map(|u| u["id"].as_i64().unwrap()).collect()
        };
        assert_eq!(ids(&d.render_list(Page::default())), vec![2, 1]);
        d.apply_rows(&[row(3, 3, "c", false)]);
        assert_eq!(ids(&d.render_list(Page::default())), vec![3, 2, 1], "a change invalidates the cached body");
        d.apply_rows(&[row(2, 4, "b", true)]);
        assert_eq!(ids(&d.render_list(Page::default())), vec![3, 1]);
        assert_eq!(ids(&d.render_list(Page { limit: Some(1), offset: 1 })), vec![1]);
        let first = &d.render_list(Page::default())[..];
        assert!(String::from_utf8_lossy(first).starts_with(r#"{"count":2,"payload":[{"id":3,"name":"#), "field order");
    }

    #[tokio::test]
    async fn an_unknown_token_with_the_owner_unreachable_is_an_error_not_a_no() {
        let d = UserDirectory::detached();
        assert!(d.by_token("nobody").await.is_err());
    }
}
