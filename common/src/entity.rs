//! The records each domain publishes, and the one wire shape every change, snapshot row
//! and RPC answer shares: [`VersionedRow`].

use serde::{de::DeserializeOwned, Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::settings::Domain;

/// A JSON document kept as its text: rows pass through snapshots, RPC answers, events and the
/// persisted replicas without being taken apart, and are parsed once, straight into the entity.
pub type RawJson = Box<RawValue>;

/// `value` as a [`RawJson`] (serializing a `Value` cannot fail).
pub fn raw_json(value: &serde_json::Value) -> RawJson {
    serde_json::value::to_raw_value(value).unwrap_or_else(|_| unreachable!("a Value always serializes"))
}

/// The owner database's epoch (`moa_epoch()`): versions are comparable only within one.
pub type Epoch = std::sync::Arc<str>;

/// One entity's state at one version, as stored in `moa_entity_version`, sent in snapshot
/// pages and RPC answers, and (with an event id) published as a change event. `data` is the
/// row as `to_jsonb` wrote it; for a deletion it is the last state (so its key can be read).
/// `epoch` is the owner database's epoch when the row was read; every row from an owner has
/// one (`None` only in unit tests, where it means "the replica's current epoch").
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VersionedRow {
    pub key: String,
    pub version: i64,
    pub deleted: bool,
    pub data: RawJson,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<Epoch>,
}

impl VersionedRow {
    /// The row's data as `T`.
    pub fn parse<T: DeserializeOwned>(&self) -> serde_json::Result<T> {
        serde_json::from_str(self.data.get())
    }
}

/// A change event as published on `<domain>.events`: the trigger's row plus the relay's
/// event id (and, when a service made the change, its request id).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChangeEvent {
    pub event_id: String,
    pub entity: String,
    /// The HTTP request that caused the change, when a service made it (for the logs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    pub key: String,
    pub version: i64,
    pub deleted: bool,
    pub data: RawJson,
    /// The owner's epoch, added by the relay when it publishes (read from the database in the
    /// same transaction). An event without one is refused: its version means nothing.
    pub epoch: Epoch,
}

impl ChangeEvent {
    pub fn into_row(self) -> VersionedRow {
        VersionedRow {
            key: self.key,
            version: self.version,
            deleted: self.deleted,
            data: self.data,
            epoch: Some(self.epoch),
        }
    }
}

/// The change events of one message on a `*.events` or `user.visits` exchange: the relay
/// publishes an array of events (in commit order, as many as one drain had for that
/// exchange); a single event object is accepted too (e.g. published by hand). Returns the
/// events that parse and a reason for each element that does not.
pub fn parse_change_events(data: &[u8]) -> (Vec<ChangeEvent>, Vec<String>) {
    let is_array = data.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[');
    if !is_array {
        return match serde_json::from_slice::<ChangeEvent>(data) {
            Ok(e) => (vec![e], vec![]),
            Err(e) => (vec![], vec![format!("not a change event: {e}")]),
        };
    }
    let elements: Vec<&serde_json::value::RawValue> = match serde_json::from_slice(data) {
        Ok(v) => v,
        Err(e) => return (vec![], vec![format!("not an array of change events: {e}")]),
    };
    let mut events = Vec::with_capacity(elements.len());
    let mut bad = Vec::new();
    for (i, raw) in elements.into_iter().enumerate() {
        match serde_json::from_str::<ChangeEvent>(raw.get()) {
            Ok(e) => events.push(e),
            Err(e) => bad.push(format!("element {i} is not a change event: {e}")),
        }
    }
    (events, bad)
}

/// A record type one domain owns and others replicate.
pub trait Entity: DeserializeOwned + Clone + Send + Sync + 'static {
    /// `entity` as written by the capture trigger.
    const KIND: &'static str;
    const OWNER: Domain;
    type Key: Eq + std::hash::Hash + Clone + Ord + Send + Sync + std::fmt::Debug;
    /// None for a row the replica cannot index (e.g. an alarm with a NULL user).
    fn key(&self) -> Option<Self::Key>;
    /// The key from the key text the capture trigger wrote (`"5"`, `"3:7"`), so a replica can
    /// tell a row is not news without parsing its data.
    fn parse_key(key: &str) -> Option<Self::Key>;
}

/// Parses the key text of a (user, item) pair (see [`pair_key`]).
pub fn parse_pair_key(key: &str) -> Option<(i64, i64)> {
    let (user, item) = key.split_once(':')?;
    Some((user.parse().ok()?, item.parse().ok()?))
}

/// `item(id bigint pk, name varchar not null, broadcaster varchar not null, category varchar NULL, price integer not null)`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Item {
    pub id: i64,
    pub name: String,
    pub broadcaster: String,
    pub category: Option<String>,
    pub price: i32,
}

impl Entity for Item {
    const KIND: &'static str = "item";
    const OWNER: Domain = Domain::new("item");
    type Key = i64;
    fn key(&self) -> Option<i64> {
        Some(self.id)
    }
    fn parse_key(key: &str) -> Option<i64> {
        key.parse().ok()
    }
}

/// `"user"(id bigint pk, name varchar not null, access_token varchar not null)`; also the
/// user service's list entries, as they are written (see `crate::openapi`).
#[derive(Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
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
            .field("access_token", &crate::token::token_fingerprint(&self.access_token))
            .finish()
    }
}

/// A user as every service knows it (the user row is not an [`Entity`]: it never leaves
/// user_db as it is): the user service's row with its token replaced by
/// [`crate::token::token_hash`] (see [`user_outward`]). What events, RPC answers, caches, hot copies
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
/// service declares it its user entity's [`crate::store::query::OwnEntity::outward`], so it is
/// applied to every change event the relay publishes and every row the store answers a
/// [`crate::store::query::Query`] with, and no token travels beyond the user service but in its
/// own list (the contract's `GET /`). A user row that does not read as one (none should) loses
/// its data rather than carry a token.
pub fn user_outward(data: &RawJson) -> RawJson {
    let known = serde_json::from_str::<User>(data.get()).ok().map(|u| KnownUser {
        id: u.id,
        name: u.name,
        token_hash: crate::token::token_hash(&u.access_token),
    });
    match known {
        Some(k) => serde_json::value::to_raw_value(&k).unwrap_or_else(|_| raw_json(&serde_json::Value::Null)),
        None => raw_json(&serde_json::Value::Null),
    }
}

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

/// The key text the capture trigger writes for a (user, item) pair: alarms, recent visits.
pub fn pair_key(user_id: i64, item_id: i64) -> String {
    format!("{user_id}:{item_id}")
}

/// A view of an item by a user, recorded by the item service and stored by the user service.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ViewEvent {
    pub event_id: String,
    pub user_id: i64,
    pub item_id: i64,
    /// Microseconds since the Unix epoch, from the item database's clock.
    pub viewed_at_us: i64,
    /// The item outbox's sequence: orders views recorded in the same microsecond.
    pub seq: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_is_named_and_owned_where_its_row_type_says() {
        use crate::replica::cache::Group;
        assert_eq!(crate::replica::users::Users::KIND, KnownUser::KIND, "a group's kind is its row's");
        assert_eq!(crate::replica::alarms::Alarms::OWNER, Alarm::OWNER);
    }

    #[test]
    fn a_change_event_reads_the_trigger_payload() {
        let raw = r#"{"event_id":"e1","entity":"item","key":"5","version":9,"deleted":false,"epoch":"e",
            "data":{"id":5,"name":"냄비","broadcaster":"gsshop","category":null,"price":0}}"#;
        let ev: ChangeEvent = serde_json::from_str(raw).unwrap();
        assert_eq!(ev.version, 9);
        let item: Item = ev.into_row().parse().unwrap();
        assert_eq!(item.category, None);
        assert_eq!(item.key(), Some(5));
    }

    #[test]
    fn a_message_is_one_event_or_an_array_of_them_and_bad_elements_are_named() {
        let ev = r#"{"event_id":"e1","entity":"item","key":"5","version":9,"deleted":false,"epoch":"e",
            "data":{"id":5,"name":"n","broadcaster":"b","category":null,"price":0}}"#;
        let (one, bad) = parse_change_events(ev.as_bytes());
        assert_eq!((one.len(), bad.len()), (1, 0));
        let (two, bad) = parse_change_events(format!(" [{ev},{ev}]").as_bytes());
        assert_eq!((two.len(), bad.len()), (2, 0));
        let (good, bad) = parse_change_events(format!(r#"[{ev},{{"entity":"item"}},{ev}]"#).as_bytes());
        assert_eq!(good.len(), 2, "the valid elements are kept");
        assert_eq!(bad.len(), 1);
        assert!(bad[0].starts_with("element 1 "), "{bad:?}");
        let (none, bad) = parse_change_events(b"[not json");
        assert!(none.is_empty() && bad.len() == 1);
        let (none, bad) = parse_change_events(b"{}");
        assert!(none.is_empty() && bad.len() == 1);
    }

    #[test]
    fn an_alarm_without_user_or_item_has_no_key() {
        let a = Alarm { id: 1, item_id: Some(3), user_id: None };
        assert_eq!(a.key(), None);
        assert_eq!(Alarm { id: 1, item_id: Some(3), user_id: Some(2) }.key(), Some((2, 3)));
        assert_eq!(pair_key(2, 3), "2:3");
        assert_eq!(Alarm::parse_key("2:3"), Some((2, 3)));
        assert_eq!(Alarm::parse_key("null:3"), None);
        assert_eq!(Item::parse_key("17"), Some(17));
    }

    #[test]
    fn a_user_row_leaves_with_the_tokens_hash_and_a_malformed_one_with_nothing() {
        let row = raw_json(&serde_json::json!({"id": 3, "name": "n", "access_token": "secret-token"}));
        let out = user_outward(&row);
        assert!(!out.get().contains("secret-token"), "{}", out.get());
        let known: KnownUser = serde_json::from_str(out.get()).unwrap();
        assert_eq!(known, KnownUser { id: 3, name: "n".into(), token_hash: crate::token::token_hash("secret-token") });
        let odd = raw_json(&serde_json::json!({"access_token": "secret-token"}));
        assert_eq!(user_outward(&odd).get(), "null");
    }

    #[test]
    fn user_debug_output_hides_the_token() {
        let u = User { id: 1, name: "a".into(), access_token: "secret-token-value".into() };
        assert!(!format!("{u:?}").contains("secret-token-value"));
    }
}
