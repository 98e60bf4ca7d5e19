//! The user domain's entity kind: [`KnownUser`], a user as every service knows it (the user
//! service's [`User`] row with its token replaced by a keyed hash, [`user_outward`]), and the
//! user directory, who a `USER-TOKEN` belongs to: a bounded cache of users (one entry per user),
//! found by the token's keyed hash through an index (see `common::replica::cache`). No token is
//! held here: the user service sends [`KnownUser`]s (hash, not token), and a request's token is
//! hashed once to be looked up (`common::token::token_hash`). Every service replicates it;
//! [`auth`] is the `USER-TOKEN` check every endpoint makes over it.

pub mod auth;

use std::sync::Arc;

use common::{
    entity::{raw_json, Entity, RawJson, VersionedRow},
    error::Error,
    replica::{
        cache::{item_capacity, Found, Group, GroupCache, Members},
        row_value, KindContext, Wrapper,
    },
    settings::Domain,
    store::query::Query,
    token::token_hash,
    Result,
};
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The cache memory tests count what an entry costs (`common::heap_meter`).
#[cfg(test)]
#[global_allocator]
static METER: common::heap_meter::Meter = common::heap_meter::Meter;

/// `"user"(id bigint pk, name varchar not null, access_token varchar not null)`; also the
/// user service's list entries, as they are written (see [`UserList`]).
#[derive(Clone, Serialize, Deserialize, PartialEq, ToSchema)]
#[schema(examples(json!({"id": 10, "name": "...", "access_token": "..."})))]
pub struct User {
    #[schema(examples(10))]
    pub id: i64,
    pub name: String,
    pub access_token: String,
}

impl std::fmt::Debug for User {
    // Tokens never reach logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("access_token", &common::token::token_fingerprint(&self.access_token))
            .finish()
    }
}

/// A user as every service knows it (the user row is not an [`Entity`]: it never leaves
/// user_db as it is): the user service's row with its token replaced by
/// [`common::token::token_hash`] (see [`user_outward`]). What events, RPC answers, caches, hot copies
/// and read models carry, in every service (the user service's own directory included).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct KnownUser {
    pub id: i64,
    pub name: String,
    pub token_hash: String,
}

impl Entity for KnownUser {
    const KIND: &'static str = "user";
    const OWNER: Domain = Domain::new("user");
    type Key = i64;
    fn key(&self) -> Option<i64> {
        Some(self.id)
    }
    fn parse_key(key: &str) -> Option<i64> {
        key.parse().ok()
    }
}

/// A user row as it may leave user_db: its token replaced by its hash, a [`KnownUser`]. The user
/// service declares it its user entity's [`common::store::query::OwnEntity::outward`], so it is
/// applied to every change event the relay publishes and every row the store answers a
/// [`common::store::query::Query`] with, and no token travels beyond the user service but in its
/// own list (the contract's `GET /`). A user row that does not read as one (none should) loses
/// its data rather than carry a token.
pub fn user_outward(data: &RawJson) -> RawJson {
    let known = serde_json::from_str::<User>(data.get()).ok().map(|u| KnownUser {
        id: u.id,
        name: u.name,
        token_hash: common::token::token_hash(&u.access_token),
    });
    match known {
        Some(k) => serde_json::value::to_raw_value(&k).unwrap_or_else(|_| raw_json(&serde_json::Value::Null)),
        None => raw_json(&serde_json::Value::Null),
    }
}

/// List envelope of users: the user service's `GET /` (its entries are [`User`]s, as they are
/// written).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"count": 1, "payload": [{"id": 10, "name": "...", "access_token": "..."}]})))]
pub struct UserList {
    /// The number of entries in `payload`.
    pub count: u64,
    pub payload: Vec<User>,
}

pub struct Users;

impl Group for Users {
    type Row = KnownUser;
    /// The user, or `None`: deleted.
    type View = Option<Arc<KnownUser>>;
    /// The user, parsed once (shared with the view); `None` for a tombstone.
    type Kept = Option<Arc<KnownUser>>;

    fn place(key: &str) -> Option<(i64, i64)> {
        key.parse().ok().map(|id| (id, 0))
    }

    fn keep(row: &VersionedRow) -> Option<Arc<KnownUser>> {
        row_value::<KnownUser>(row).map(Arc::new)
    }

    fn view(members: &Members<Option<Arc<KnownUser>>>) -> Option<Arc<KnownUser>> {
        members.iter().next().and_then(|(_, m)| m.kept.clone())
    }

    fn key(group: i64, _member: i64) -> String {
        group.to_string()
    }

    fn lookup(row: &VersionedRow) -> Option<String> {
        // Only the hash, borrowed: every row of a merged lookup's answer is looked at once.
        #[derive(Deserialize)]
        struct TokenHashOf<'a> {
            #[serde(borrow)]
            token_hash: Option<std::borrow::Cow<'a, str>>,
        }
        serde_json::from_str::<TokenHashOf>(row.data.get()).ok()?.token_hash.map(|h| h.into_owned())
    }

    /// The owner's rows carry a token's hash, never the token.
    fn lookup_name(token: &str) -> String {
        token_hash(token)
    }

    fn lookups_answered_by(row: &VersionedRow) -> Vec<String> {
        row_value::<KnownUser>(row).map(|u| vec![token_lookup(&u.token_hash)]).unwrap_or_default()
    }
}

/// The single-flight key of a lookup by token: its hash (the token itself is not kept).
fn token_lookup(hash: &str) -> String {
    format!("token:{hash}")
}

/// Users by id, plus `tokens`: token hash → user id, checked against the entry on every use
/// (a changed token leaves its old index entry behind, pointing at a user who no longer
/// holds it).
pub struct UserDirectory {
    cache: GroupCache<Users>,
    /// quick_cache, as the entries: read at every request (see `cache::EntryMap`).
    tokens: quick_cache::sync::Cache<String, i64>,
}

impl std::ops::Deref for UserDirectory {
    type Target = GroupCache<Users>;
    fn deref(&self) -> &GroupCache<Users> {
        &self.cache
    }
}

/// The user cache and its token index, as big as the cache; the restore and events also fill
/// the index.
impl Wrapper for UserDirectory {
    type Inner = GroupCache<Users>;
    fn inner(&self) -> &GroupCache<Users> {
        &self.cache
    }
    fn wrap(cache: GroupCache<Users>, cx: &KindContext<'_>) -> Self {
        UserDirectory::new(cache, cx.settings.cache_entries)
    }
    fn apply_rows(&self, rows: &[VersionedRow]) -> (usize, usize) {
        UserDirectory::apply_rows(self, rows)
    }
    fn restore(&self) -> BoxFuture<'_, ()> {
        Box::pin(UserDirectory::restore(self))
    }
}

impl UserDirectory {
    pub fn new(cache: GroupCache<Users>, capacity: u64) -> Self {
        UserDirectory { cache, tokens: quick_cache::sync::Cache::new(item_capacity(capacity)) }
    }

    #[cfg(test)]
    pub fn detached() -> Self {
        UserDirectory::detached_with_capacity(1000)
    }

    #[cfg(test)]
    pub fn detached_with_capacity(tokens: u64) -> Self {
        UserDirectory::new(GroupCache::detached(), tokens)
    }

    fn cached_by_hash(&self, hash: &str) -> Option<Found<KnownUser>> {
        let id = self.tokens.get(hash)?;
        let holds = |u: &Option<Arc<KnownUser>>| u.as_deref().filter(|u| u.token_hash == hash).cloned();
        match self.cache.cached(id)? {
            Found::Current(e) => holds(&e.view).map(Found::Current),
            Found::Stale(e) => holds(&e.view).map(Found::Stale),
        }
    }

    /// Applies user rows (events, the owner's answers) and indexes the tokens of the users
    /// cached.
    pub fn apply_rows(&self, rows: &[VersionedRow]) -> (usize, usize) {
        let applied = self.cache.apply_rows(rows);
        self.index(rows);
        applied
    }

    /// Loads the cache's hot copy and indexes the restored users' tokens.
    pub async fn restore(&self) {
        for user in self.cache.load_hot_copy().await.into_iter().flatten() {
            self.tokens.insert(user.token_hash.clone(), user.id);
        }
        self.cache.mark_restored();
    }

    /// Indexes the token of each cached user these rows are of, as the entry holds it (an event
    /// merged into an answer may have changed it). Users not cached are not indexed: the index
    /// is as big as the cache, and events about every other user would push cached users out.
    fn index(&self, rows: &[VersionedRow]) {
        for id in rows.iter().filter_map(|r| Users::group_of(&r.key)) {
            if let Some(Found::Current(e) | Found::Stale(e)) = self.cache.cached(id) {
                if let Some(user) = &e.view {
                    self.tokens.insert(user.token_hash.clone(), user.id);
                }
            }
        }
    }

    /// The user holding `token`, asking the owner when it is not cached (or cached in an old
    /// generation). `Ok(None)`: no such user. An old entry is served when the owner cannot
    /// answer.
    pub async fn by_token(&self, token: &str) -> Result<Option<KnownUser>> {
        // Hashed with another key than the owner's, no token is found, and "no" would be a 401
        // to every user: a 503 that says why instead (token::note_peer_key logged it).
        let other_keys = common::token::peers_with_other_keys();
        if !other_keys.is_empty() {
            return Err(Error::TokenKeyMismatch(other_keys.join(", ")));
        }
        let hash = token_hash(token);
        let stale = match self.cached_by_hash(&hash) {
            Some(Found::Current(user)) => {
                self.hit();
                return Ok(Some(user));
            }
            Some(Found::Stale(user)) => Some(user),
            None => None,
        };
        if let (Some(user), Some(e)) = (&stale, self.owner_recently_failed()) {
            self.served_stale(&e);
            return Ok(Some(user.clone()));
        }
        let holds =
            |rows: &[VersionedRow]| rows.iter().filter_map(row_value::<KnownUser>).find(|u| u.token_hash == hash);
        let groups = |rows: &[VersionedRow]| rows.iter().filter_map(|r| Users::group_of(&r.key)).collect();
        // The owner is asked by the token itself (it holds the tokens, not their hashes); its
        // answer, like everything it sends, carries the hash.
        let q = Query::Lookup { entity: Users::KIND.into(), keys: vec![token.to_string()] };
        match self.cache.fetch(token_lookup(&hash), q, groups, |rows| holds(rows).is_some()).await {
            Ok(rows) => {
                self.index(&rows);
                // The entry if the answer was kept (an event newer than the answer may have
                // changed it since); the answer itself otherwise.
                Ok(match self.cached_by_hash(&hash) {
                    Some(Found::Current(u)) => Some(u),
                    _ => {
                        if holds(&rows).is_none() {
                            // An old entry said otherwise: the token is no longer this user's.
                            self.tokens.remove(&hash);
                        }
                        holds(&rows)
                    }
                })
            }
            Err(e) => match stale {
                Some(user) => {
                    self.served_stale(&e);
                    Ok(Some(user))
                }
                None => Err(e),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(id: i64, v: i64, token: &str, deleted: bool) -> VersionedRow {
        VersionedRow {
            key: id.to_string(),
            version: v,
            deleted,
            data: raw_json(&json!({"id": id, "name": "이름", "token_hash": token_hash(token)})),
            epoch: None,
        }
    }

    fn current(d: &UserDirectory, token: &str) -> Option<i64> {
        match d.cached_by_hash(&token_hash(token)) {
            Some(Found::Current(u)) => Some(u.id),
            _ => None,
        }
    }

    /// A cached user (entry and token index) costs well under 1 KiB, bookkeeping included.
    #[test]
    fn a_cached_user_costs_a_few_hundred_bytes() {
        let users = 10_000_i64;
        let d = UserDirectory::detached_with_capacity(2 * users as u64);
        let g = d.current_generation();
        let rows: Vec<VersionedRow> =
            (0..users).map(|u| row(u, u + 1, &format!("{:08x}-5a3e-4d0c-9f6b-{u:012x}", u * 7919), false)).collect();
        let ((), bytes) = common::heap_meter::net_bytes(|| {
            for r in &rows {
                d.fill(&[r.key.parse().unwrap()], std::slice::from_ref(r), g);
                d.index(std::slice::from_ref(r));
            }
        });
        assert_eq!(d.len(), users as u64);
        let per_user = bytes / users as isize;
        println!("user cache: {bytes} bytes for {users} users = {per_user} bytes per user");
        assert!(per_user < 1024, "{per_user} bytes per user");
    }

    #[test]
    fn an_event_for_an_uncached_user_is_dropped_and_a_cached_one_is_updated() {
        let d = UserDirectory::detached();
        d.apply_rows(&[row(1, 1, "old", false)]);
        assert_eq!(current(&d, "old"), None, "not cached: the event alone does not make an entry");
        let g = d.current_generation();
        d.fill(&[1], &[row(1, 1, "old", false)], g);
        d.index(&[row(1, 1, "old", false)]);
        assert_eq!(current(&d, "old"), Some(1));
        d.apply_rows(&[row(1, 2, "new", false)]);
        assert_eq!(current(&d, "old"), None, "the old token stops working");
        assert_eq!(current(&d, "new"), Some(1));
        d.apply_rows(&[row(1, 3, "new", true)]);
        assert_eq!(current(&d, "new"), None, "a deleted user's token no longer works");
    }

    #[test]
    fn an_answer_read_before_an_event_is_corrected_by_it() {
        let d = UserDirectory::detached();
        let g = d.current_generation();
        // The event (v2: a new token) arrives while the question is on its way ...
        d.apply_rows(&[row(7, 2, "new", false)]);
        // ... and the answer, read before it committed, says v1.
        let answer = [row(7, 1, "old", false)];
        d.fill(&[7], &answer, g);
        d.index(&answer);
        assert_eq!(current(&d, "old"), None);
        assert_eq!(current(&d, "new"), Some(7));
    }

    #[test]
    fn a_resubscription_makes_every_entry_old_until_asked_again() {
        let d = UserDirectory::detached();
        let g = d.current_generation();
        d.fill(&[1], &[row(1, 1, "t", false)], g);
        d.index(&[row(1, 1, "t", false)]);
        futures_util::FutureExt::now_or_never(d.resubscribed());
        assert!(matches!(d.cached_by_hash(&token_hash("t")), Some(Found::Stale(_))));
    }

    #[tokio::test]
    async fn an_unknown_token_with_the_owner_unreachable_is_an_error_not_a_no() {
        let d = UserDirectory::detached();
        assert!(d.by_token("nobody").await.is_err());
    }

    #[tokio::test]
    async fn an_old_entry_is_served_when_the_owner_cannot_answer() {
        let d = UserDirectory::detached();
        d.fill(&[1], &[row(1, 1, "t", false)], 0);
        d.index(&[row(1, 1, "t", false)]);
        assert_eq!(d.by_token("t").await.unwrap().map(|u| u.id), Some(1));
    }

    #[test]
    fn a_user_row_leaves_with_the_tokens_hash_and_a_malformed_one_with_nothing() {
        let row = raw_json(&serde_json::json!({"id": 3, "name": "n", "access_token": "secret-token"}));
        let out = user_outward(&row);
        assert!(!out.get().contains("secret-token"), "{}", out.get());
        let known: KnownUser = serde_json::from_str(out.get()).unwrap();
        assert_eq!(known, KnownUser { id: 3, name: "n".into(), token_hash: token_hash("secret-token") });
        let odd = raw_json(&serde_json::json!({"access_token": "secret-token"}));
        assert_eq!(user_outward(&odd).get(), "null");
    }

    #[test]
    fn a_row_is_found_by_its_tokens_hash_tombstone_or_not() {
        let mut r = row(7, 3, "t", false);
        assert_eq!(Users::lookup(&r), Some(token_hash("t")));
        r.deleted = true;
        assert_eq!(Users::lookup(&r), Some(token_hash("t")), "a tombstone's data is its last state");
        r.data = raw_json(&serde_json::Value::Null);
        assert_eq!(Users::lookup(&r), None);
        assert_eq!(Users::lookup_name("t"), token_hash("t"));
    }

    #[test]
    fn user_debug_output_hides_the_token() {
        let u = User { id: 1, name: "a".into(), access_token: "secret-token-value".into() };
        assert!(!format!("{u:?}").contains("secret-token-value"));
    }

    #[test]
    fn the_kind_is_named_and_owned_by_its_row_type() {
        assert_eq!(Users::KIND, KnownUser::KIND, "a group's kind is its row's");
        assert_eq!(Users::OWNER, Domain::new("user"));
    }
}
