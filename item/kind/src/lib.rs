//! The item domain's entity kinds: [`Item`] (owned by the item service, replicated whole by
//! the alarm and user services as the [`ItemCatalog`]) and the [`ViewEvent`] the item service
//! records and the user service stores.

use std::collections::{BTreeMap, BTreeSet};

use common::{
    amqp::topology::WorkStream,
    entity::{Entity, VersionedRow},
    input::Page,
    replica::{row_value, Index, KindContext, Replica, Wrapper},
    settings::Domain,
    store::query::Query,
    Result,
};
use serde::{Deserialize, Serialize};

pub mod api;

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

/// Where views go: the item service records each in its outbox for `item.views`; the user
/// service's instances share the durable `user.views` queue and store each once.
pub const VIEWS: WorkStream = WorkStream { exchange: "item.views", queue: "user.views" };

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

/// Every item, whole, in memory (the catalog is small and every list reads all of it), each
/// kept with its JSON already serialized: a [`Replica`] with the item list's own index.
pub struct ItemCatalog(Replica<Item, ItemIndex>);

impl std::ops::Deref for ItemCatalog {
    type Target = Replica<Item, ItemIndex>;
    fn deref(&self) -> &Replica<Item, ItemIndex> {
        &self.0
    }
}

impl Wrapper for ItemCatalog {
    type Inner = Replica<Item, ItemIndex>;
    fn inner(&self) -> &Replica<Item, ItemIndex> {
        &self.0
    }
    fn wrap(inner: Replica<Item, ItemIndex>, _: &KindContext<'_>) -> Self {
        ItemCatalog(inner)
    }
}

#[derive(Default)]
pub struct ItemIndex {
    /// id → `{"id":..,"name":..,"broadcaster":..,"category":..,"price":..,"is_alarm_set":`
    fragments: BTreeMap<i64, Box<str>>,
}

/// The item object without its closing `true}` / `false}`.
pub fn fragment(item: &Item) -> Box<str> {
    let mut s = serde_json::to_string(item).unwrap_or_else(|_| "{".into());
    s.pop(); // the closing brace
    s.push_str(",\"is_alarm_set\":");
    s.into_boxed_str()
}

impl Index<Item> for ItemIndex {
    fn update(&mut self, key: &i64, _old: Option<&Item>, new: Option<&Item>) {
        match new {
            Some(item) => {
                self.fragments.insert(*key, fragment(item));
            }
            None => {
                self.fragments.remove(key);
            }
        }
    }
}

fn push_item(out: &mut Vec<u8>, frag: &str, alarm_set: bool) {
    out.extend_from_slice(frag.as_bytes());
    out.extend_from_slice(if alarm_set { b"true}" } else { b"false}" });
}

/// What the catalog knows of an id.
pub enum Known {
    Live(Item),
    Deleted,
    Unknown,
}

impl ItemCatalog {
    /// A catalog with no way to reach its owner (tests).
    pub fn detached() -> Self {
        ItemCatalog(Replica::detached())
    }

    fn known(&self, id: i64) -> Known {
        match self.read().rows.get(&id) {
            Some(slot) => match &slot.value {
                Some(item) => Known::Live(item.clone()),
                None => Known::Deleted,
            },
            None => Known::Unknown,
        }
    }

    /// The item, asking the owner on a miss. `Ok(None)`: it does not exist.
    pub async fn get(&self, id: i64) -> Result<Option<Item>> {
        match self.known(id) {
            Known::Live(item) => {
                self.hit();
                Ok(Some(item))
            }
            Known::Deleted => Ok(None),
            Known::Unknown => {
                let holds = |rows: &[VersionedRow]| rows.iter().filter_map(row_value::<Item>).find(|i| i.id == id);
                let q = Query::Get { entity: Item::KIND.into(), keys: vec![id.to_string()] };
                let rows = self.fetch_once(format!("item:{id}"), q, |rows| holds(rows).is_some()).await?;
                Ok(holds(&rows))
            }
        }
    }

    /// One page of the id-descending list; the default page is the whole list.
    pub fn render_page(&self, alarmed: &BTreeSet<i64>, page: Page) -> Vec<u8> {
        let state = self.read();
        let frags = &state.index.fragments;
        let total = frags.len();
        let n = total.saturating_sub(page.offset).min(page.limit.unwrap_or(usize::MAX));
        let mut out = Vec::with_capacity(n * 200 + 32);
        out.extend_from_slice(format!("{{\"count\":{n},\"payload\":[").as_bytes());
        for (i, (id, frag)) in frags.iter().rev().skip(page.offset).take(n).enumerate() {
            if i > 0 {
                out.push(b',');
            }
            push_item(&mut out, frag, alarmed.contains(id));
        }
        out.extend_from_slice(b"]}");
        out
    }

    /// `{"payload": item}`.
    pub fn render_one(&self, item: &Item, alarm_set: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(b"{\"payload\":");
        push_item(&mut out, &fragment(item), alarm_set);
        out.push(b'}');
        out
    }

    /// A list envelope of the given ids in the given order. Ids the catalog has never seen are
    /// asked of the owner in one request; ids of deleted items are left out.
    pub async fn render_ids(&self, ids: &[i64], alarmed: &dyn Fn(i64) -> bool) -> Result<Vec<u8>> {
        let missing: Vec<String> = {
            let state = self.read();
            ids.iter().filter(|id| !state.rows.contains_key(id)).map(|id| id.to_string()).collect()
        };
        if !missing.is_empty() {
            let _: Vec<VersionedRow> = self.fetch(Query::Get { entity: Item::KIND.into(), keys: missing }).await?;
        } else {
            self.hit();
        }
        let state = self.read();
        let live: Vec<(i64, &str)> =
            ids.iter().filter_map(|id| state.index.fragments.get(id).map(|f| (*id, &**f))).collect();
        let mut out = Vec::with_capacity(live.len() * 200 + 32);
        out.extend_from_slice(format!("{{\"count\":{},\"payload\":[", live.len()).as_bytes());
        for (i, (id, frag)) in live.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            push_item(&mut out, frag, alarmed(*id));
        }
        out.extend_from_slice(b"]}");
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::entity::raw_json;
    use serde_json::{json, Value};

    fn row(id: i64, v: i64, category: Option<&str>) -> VersionedRow {
        VersionedRow {
            key: id.to_string(),
            version: v,
            deleted: false,
            data: raw_json(
                &json!({"id": id, "name": format!("상품 {id}"), "broadcaster": "cjmall", "category": category, "price": 1000 * id}),
            ),
            epoch: None,
        }
    }

    #[test]
    fn the_list_is_id_descending_with_the_callers_flags() {
        let c = ItemCatalog::detached();
        c.apply_rows(&[row(1, 1, Some("패션·잡화")), row(3, 2, None), row(2, 3, Some("식품"))]);
        let body = c.render_page(&BTreeSet::from([2]), Page::default());
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["count"], 3);
        let ids: Vec<i64> = v["payload"].as_array().unwrap().iter().map(|i| i["id"].as_i64().unwrap()).collect();
        assert_eq!(ids, vec![3, 2, 1]);
        assert_eq!(v["payload"][1]["is_alarm_set"], true);
        assert_eq!(v["payload"][0]["is_alarm_set"], false);
        assert_eq!(v["payload"][0]["category"], Value::Null);
        assert!(String::from_utf8(body).unwrap().contains("패션·잡화"), "Korean is written as is");
    }

    #[test]
    fn pages_slice_the_descending_list() {
        let c = ItemCatalog::detached();
        c.apply_rows(&(1..=5).map(|i| row(i, i, None)).collect::<Vec<_>>());
        let ids = |page: Page| -> Vec<i64> {
            let v: Value = serde_json::from_slice(&c.render_page(&BTreeSet::new(), page)).unwrap();
            assert_eq!(v["count"].as_u64().unwrap() as usize, v["payload"].as_array().unwrap().len());
            v["payload"].as_array().unwrap().iter().map(|i| i["id"].as_i64().unwrap()).collect()
        };
        assert_eq!(ids(Page::default()), vec![5, 4, 3, 2, 1]);
        assert_eq!(ids(Page { limit: Some(2), offset: 0 }), vec![5, 4]);
        assert_eq!(ids(Page { limit: Some(2), offset: 3 }), vec![2, 1]);
        assert_eq!(ids(Page { limit: None, offset: 4 }), vec![1]);
        assert_eq!(ids(Page { limit: Some(3), offset: 9 }), Vec::<i64>::new());
        assert_eq!(ids(Page { limit: Some(0), offset: 0 }), Vec::<i64>::new());
    }

    #[test]
    fn one_item_has_the_single_envelope() {
        let c = ItemCatalog::detached();
        let item = Item { id: 7, name: "a\"b".into(), broadcaster: "x".into(), category: None, price: 0 };
        let v: Value = serde_json::from_slice(&c.render_one(&item, true)).unwrap();
        assert_eq!(
            v,
            json!({"payload": {"id": 7, "name": "a\"b", "broadcaster": "x", "category": null, "price": 0, "is_alarm_set": true}})
        );
    }

    #[test]
    fn what_the_item_renderers_write_is_the_documented_types() {
        use crate::api::{ItemEnvelope, ItemList};
        let c = ItemCatalog::detached();
        let item = Item { id: 7, name: "a\"b".into(), broadcaster: "x".into(), category: None, price: 0 };
        let one: ItemEnvelope = serde_json::from_slice(&c.render_one(&item, true)).unwrap();
        assert_eq!(one.payload.id, 7);
        let item = Item { category: Some("패션·잡화".into()), id: 8, ..item };
        assert_eq!(one.payload.category, None);
        let row = VersionedRow {
            key: "8".into(),
            version: 1,
            deleted: false,
            data: raw_json(&serde_json::to_value(&item).unwrap()),
            epoch: None,
        };
        c.apply_rows(&[row]);
        let list: ItemList = serde_json::from_slice(&c.render_page(&BTreeSet::from([8]), Page::default())).unwrap();
        assert_eq!(list.count, 1);
        assert!(list.payload[0].is_alarm_set);
    }

    #[test]
    fn the_kind_is_named_and_owned_by_its_row_type() {
        assert_eq!(<ItemCatalog as common::replica::Known>::kind(&ItemCatalog::detached()), "item");
        assert_eq!(Item::OWNER, Domain::new("item"));
        assert_eq!(Item::parse_key("17"), Some(17));
    }
}
