//! Kinds for the platform's own unit tests, shaped as the real ones are (which live beside their
//! owners, in `<domain>/kind`, and are tested there): a whole catalog of [`Priced`] rows, a
//! group of pairs ([`Pairs`], one user's alarms) and a group found by a second key ([`Named`],
//! a user by its token's hash). Their owners are real domains of `domains.tsv`.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{
    cache::{Group, Members},
    row_value, Index, Replica,
};
use crate::{
    entity::{parse_pair_key, Entity, VersionedRow},
    settings::Domain,
};

/// A catalog row: an id and a price.
#[derive(Debug, Clone, Deserialize)]
pub struct Priced {
    pub id: i64,
    pub price: i32,
}

impl Entity for Priced {
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

#[derive(Default)]
pub struct NoIndex;

impl Index<Priced> for NoIndex {
    fn update(&mut self, _: &i64, _: Option<&Priced>, _: Option<&Priced>) {}
}

pub type Catalog = Replica<Priced, NoIndex>;

/// A pair row (user, item); its key says everything.
#[derive(Debug, Clone, Deserialize)]
pub struct PairRow {
    pub user_id: Option<i64>,
    pub item_id: Option<i64>,
}

impl Entity for PairRow {
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

/// One user's pairs: the items.
pub type Pairs = super::group::PairSet<PairRow>;

/// A user as replicas know it: the token's hash, never the token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NamedRow {
    pub id: i64,
    pub name: String,
    pub token_hash: String,
}

impl Entity for NamedRow {
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

/// Users by id, found by their token's hash.
pub struct Named;

impl Group for Named {
    type Row = NamedRow;
    type View = Option<Arc<NamedRow>>;
    type Kept = Option<Arc<NamedRow>>;
    fn place(key: &str) -> Option<(i64, i64)> {
        key.parse().ok().map(|id| (id, 0))
    }
    fn keep(row: &VersionedRow) -> Option<Arc<NamedRow>> {
        row_value::<NamedRow>(row).map(Arc::new)
    }
    fn view(members: &Members<Option<Arc<NamedRow>>>) -> Option<Arc<NamedRow>> {
        members.iter().next().and_then(|(_, m)| m.kept.clone())
    }
    fn key(group: i64, _: i64) -> String {
        group.to_string()
    }
    fn lookup(row: &VersionedRow) -> Option<String> {
        row.parse::<NamedRow>().ok().map(|u| u.token_hash)
    }
    fn lookup_name(token: &str) -> String {
        crate::token::token_hash(token)
    }
}
