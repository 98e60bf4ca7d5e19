//! What a cached kind is: the [`Group`] trait (how one cache entry groups the owner's rows, and
//! what it keeps of each) and the entry's [`Members`]. A leaf of the replica module: the
//! caches (`cache/`) and the read models (`read_model.rs`) are both written over it.

use std::{
    collections::{BTreeMap, BTreeSet},
    marker::PhantomData,
    sync::Arc,
};

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::{
    entity::{pair_key, parse_pair_key, Entity, VersionedRow},
    settings::Domain,
};

/// What one cache holds per entry, and how its rows are grouped.
pub trait Group: Send + Sync + 'static {
    /// The owner's row type. Its [`Entity`] impl is the one place the kind's name and owner
    /// are written; the group reads them from it (and never sets its own).
    type Row: Entity;
    const KIND: &'static str = <Self::Row as Entity>::KIND;
    const OWNER: Domain = <Self::Row as Entity>::OWNER;
    /// What lookups read, derived from the entry's members when they change (not on every hit).
    type View: Clone + Send + Sync + 'static;
    /// What an entry keeps of each row besides its version: only what the view needs (nothing
    /// for an alarm, whose item id is its member key), not the row as the owner sent it.
    type Kept: Clone + Send + Sync + Serialize + DeserializeOwned + 'static;
    /// The group (user id) a row key belongs to, and the member (item id; 0 for a user) it is.
    fn place(key: &str) -> Option<(i64, i64)>;
    /// What the entry keeps of `row` (a tombstone too: its version matters, not its data).
    fn keep(row: &VersionedRow) -> Self::Kept;
    /// The view of a group's members (tombstones included: `deleted` members).
    fn view(members: &Members<Self::Kept>) -> Self::View;
    /// The group a row key belongs to.
    fn group_of(key: &str) -> Option<i64> {
        Self::place(key).map(|(group, _)| group)
    }
    /// Lookup names whose remembered "no" a row makes wrong (a new user's token).
    fn lookups_answered_by(_row: &VersionedRow) -> Vec<String> {
        Vec::new()
    }
    /// The owner's key of a group's member: the inverse of [`Group::place`].
    fn key(group: i64, member: i64) -> String;
    /// The name a row is found by besides its group (a user's token's hash), as the owner's
    /// rows carry it: a tombstone's too (its data is the last state), so that a merged lookup
    /// gives each asker the tombstone its own question would have got. The read model keeps
    /// the name of live rows only.
    fn lookup(_row: &VersionedRow) -> Option<String> {
        None
    }
    /// The name of the rows a [`crate::store::query::Query::Lookup`] key finds: what
    /// [`Group::lookup`] gives them (a token's hash, for a token; the key itself by default).
    fn lookup_name(key: &str) -> String {
        key.to_string()
    }
}

/// A kind of pairs keyed `"<group>:<member>"` (one user's alarms: user id, item id), viewed
/// as the set of members a live row pairs with the group. An entry keeps nothing of a row but
/// its version and tombstone flag: the key says everything the view needs.
pub struct PairSet<R>(PhantomData<R>);

impl<R: Entity> Group for PairSet<R> {
    type Row = R;
    /// The members with a live row.
    type View = Arc<BTreeSet<i64>>;
    type Kept = ();

    fn place(key: &str) -> Option<(i64, i64)> {
        parse_pair_key(key)
    }

    fn keep(_: &VersionedRow) {}

    fn key(group: i64, member: i64) -> String {
        pair_key(group, member)
    }

    fn view(members: &Members<()>) -> Arc<BTreeSet<i64>> {
        Arc::new(members.iter().filter(|(_, m)| !m.deleted).map(|(member, _)| member).collect())
    }
}

/// One member (row) of an entry: its version, whether it is a tombstone, and what the
/// group keeps of it. Short field names: this is also the hot copy's JSON.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Held<K> {
    #[serde(rename = "v")]
    pub version: i64,
    #[serde(rename = "d", default)]
    pub deleted: bool,
    #[serde(rename = "k")]
    pub kept: K,
}

/// An entry's members, sorted by member key (item id for alarms): a boxed slice, not a
/// `BTreeMap`, whose smallest node holds 11 slots (most users have one row or a few alarms, and
/// an entry is replaced, not edited, on every change). In the hot copy, a JSON object keyed
/// by member.
#[derive(Clone, Debug, PartialEq)]
pub struct Members<K>(pub(crate) Box<[(i64, Held<K>)]>);

impl<K> Default for Members<K> {
    fn default() -> Self {
        Members(Box::new([]))
    }
}

impl<K: Clone> Members<K> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn get(&self, member: i64) -> Option<&Held<K>> {
        self.0.binary_search_by_key(&member, |(m, _)| *m).ok().map(|i| &self.0[i].1)
    }

    /// A copy with `member` set to `held`.
    pub(crate) fn with(&self, member: i64, held: Held<K>) -> Self {
        let mut v = self.0.to_vec();
        match v.binary_search_by_key(&member, |(m, _)| *m) {
            Ok(i) => v[i].1 = held,
            Err(i) => v.insert(i, (member, held)),
        }
        Members(v.into_boxed_slice())
    }
}

impl<K> Members<K> {
    /// Members in key order.
    pub fn iter(&self) -> impl Iterator<Item = (i64, &Held<K>)> {
        self.0.iter().map(|(m, h)| (*m, h))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<K: Serialize> Serialize for Members<K> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(m, h)| (m, h)))
    }
}

impl<'de, K: Deserialize<'de>> Deserialize<'de> for Members<K> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let map = BTreeMap::<i64, Held<K>>::deserialize(d)?;
        Ok(Members(map.into_iter().collect()))
    }
}
