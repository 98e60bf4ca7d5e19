//! What an entity kind is to the platform ([`Entity`]: its name, owner and key; each domain's
//! kinds implement it beside their owner, in `<domain>/kind`), and the one wire shape every
//! change, snapshot row and RPC answer shares: [`VersionedRow`].

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

/// Parses the key text of a pair (see [`pair_key`]).
pub fn parse_pair_key(key: &str) -> Option<(i64, i64)> {
    let (group, member) = key.split_once(':')?;
    Some((group.parse().ok()?, member.parse().ok()?))
}

/// The key text the capture trigger writes for a pair of ids, `"<group>:<member>"` (an alarm:
/// user and item; a recent visit: user and item).
pub fn pair_key(group: i64, member: i64) -> String {
    format!("{group}:{member}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_event_reads_the_trigger_payload() {
        let raw = r#"{"event_id":"e1","entity":"item","key":"5","version":9,"deleted":false,"epoch":"e",
            "data":{"id":5,"name":"냄비","broadcaster":"gsshop","category":null,"price":0}}"#;
        let ev: ChangeEvent = serde_json::from_str(raw).unwrap();
        assert_eq!(ev.version, 9);
        let row = ev.into_row();
        assert_eq!((row.key.as_str(), row.epoch.as_deref()), ("5", Some("e")));
        let data: serde_json::Value = row.parse().unwrap();
        assert_eq!(data["category"], serde_json::Value::Null);
        assert_eq!(pair_key(2, 3), "2:3");
        assert_eq!(parse_pair_key("2:3"), Some((2, 3)));
        assert_eq!(parse_pair_key("null:3"), None);
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
}
