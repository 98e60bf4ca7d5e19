//! The item kind as the HTTP contract shows it, wherever it appears (the item list, one item,
//! the alarm list, `/visit`): its OpenAPI shapes, the contract's `404 {}` for an unknown item,
//! the error sets of the operations that name an item, and the item id clients send. Every
//! service answers with items, so each merges [`ItemShapes`] into its document.

use common::{
    error_sets,
    input::{body_integer, path_integer},
    openapi::{error_response, utoipa},
    responses, ApiError,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::{
    openapi::{
        schema::{KnownFormat, ObjectBuilder, OneOfBuilder, Schema, SchemaFormat, Type},
        RefOr,
    },
    ToSchema,
};

/// The item shapes and responses every service's document lists (merged by each service).
#[derive(utoipa::OpenApi)]
#[openapi(components(schemas(ItemView, ItemList, ItemEnvelope), responses(ItemNotFound)))]
pub struct ItemShapes;

/// The contract's item example (api.md, "Item object, everywhere it appears").
fn item_example() -> serde_json::Value {
    json!({"id": 50, "name": "...", "broadcaster": "cjmall", "category": "패션·잡화", "price": 78900, "is_alarm_set": true})
}

/// An item, the same wherever it appears: the item list, one item, the alarm list, `/visit`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Item, examples(item_example))]
pub struct ItemView {
    #[schema(examples(50))]
    pub id: i64,
    pub name: String,
    #[schema(examples("cjmall"))]
    pub broadcaster: String,
    /// `null` for an item without one (always present).
    #[schema(required = true, examples("패션·잡화"))]
    pub category: Option<String>,
    #[schema(examples(78900))]
    pub price: i32,
    /// Whether the calling user has an alarm on this item (always true in the alarm list).
    pub is_alarm_set: bool,
}

/// List envelope of items.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"count": 1, "payload": [item_example()]})))]
pub struct ItemList {
    /// The number of entries in `payload`.
    pub count: u64,
    pub payload: Vec<ItemView>,
}

/// Single envelope of an item.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"payload": item_example()})))]
pub struct ItemEnvelope {
    pub payload: ItemView,
}

/// An item id in a request body: a number or a string of digits.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum ItemIdValue {
    Number(i64),
    Digits(String),
}

// By hand: the derive cannot put a pattern on an enum variant.
impl utoipa::PartialSchema for ItemIdValue {
    fn schema() -> RefOr<Schema> {
        OneOfBuilder::new()
            .description(Some(
                "An existing item's id, as a JSON number or a string of digits (the original specification \
                 sends a string). Floats, null, booleans, arrays, objects, non-digit strings and values beyond \
                 64 bits are 400; ids beyond the alarm table's `integer` range (2147483647) are 400 too; ids of \
                 no item (negative ones included) are `404 {}`.",
            ))
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64))),
            )
            .item(ObjectBuilder::new().schema_type(Type::String).pattern(Some("^-?[0-9]+$")).max_length(Some(20)))
            .into()
    }
}

impl ToSchema for ItemIdValue {}

responses! {
    /// 404 `{}`: the contract's answer for an unknown item.
    ItemNotFound => error_response(
        "No item with this id (also negative ids and 0): exactly `{}`.",
        "Empty",
        Some(json!({})),
    );
}

error_sets! {
    /// One item by id: the shared `InputReadErrors` and the contract's `404 {}`.
    ItemErrors = [
        400 => BadRequest, 401 => Unauthorized, 404 => ItemNotFound, 500 => InternalError, 503 => Unavailable,
    ];
    /// A write with a JSON body naming an item: [`ItemErrors`] and the body's own failures.
    ItemWriteErrors = [
        400 => BadRequest, 401 => Unauthorized, 404 => ItemNotFound, 408 => RequestTimeout,
        413 => PayloadTooLarge, 415 => UnsupportedMediaType, 500 => InternalError, 503 => Unavailable,
    ];
}

/// An item id as the client sent it, checked to be an integer of the `bigint` range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ItemId(pub i64);

impl ItemId {
    /// From a path segment: `/50` → 50; anything but an integer is a 400.
    pub fn from_path(segment: &str) -> Result<ItemId, ApiError> {
        path_integer(segment, "item id").map(ItemId)
    }

    /// From the `item_id` field of a JSON body: a number (`50`) or a string of digits (`"50"`).
    pub fn from_body(body: &serde_json::Map<String, Value>) -> Result<ItemId, ApiError> {
        body_integer(body, "item_id").map(ItemId)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_ids_come_from_paths_and_bodies_and_their_hints_name_them() {
        assert_eq!(ItemId::from_path("50").unwrap(), ItemId(50));
        assert!(
            matches!(ItemId::from_path("abc"), Err(ApiError::BadRequest(h)) if h == "item id must be an integer, got \"abc\"")
        );
        let body = |v: Value| ItemId::from_body(v.as_object().unwrap());
        assert_eq!(body(json!({"item_id": "50"})).unwrap(), ItemId(50));
        assert!(
            matches!(body(json!({})), Err(ApiError::BadRequest(h)) if h == "item_id is missing from the request body")
        );
    }

    #[test]
    fn the_documented_item_is_the_contracts_example() {
        let doc = <ItemShapes as utoipa::OpenApi>::openapi();
        let v = serde_json::to_value(&doc).unwrap();
        assert_eq!(v["components"]["schemas"]["Item"]["examples"][0], item_example());
        let required = v["components"]["schemas"]["Item"]["required"].as_array().unwrap();
        assert!(required.contains(&json!("category")), "category is always there, maybe null: {required:?}");
        let item: ItemView = serde_json::from_value(item_example()).unwrap();
        assert_eq!(item.price, 78900);
        assert_eq!(v["components"]["responses"]["ItemNotFound"]["content"]["application/json"]["example"], json!({}));
    }

    #[test]
    fn a_body_item_id_is_documented_as_a_number_or_digits() {
        #[derive(Deserialize, ToSchema)]
        #[allow(dead_code)]
        struct Body {
            #[schema(inline)]
            item_id: ItemIdValue,
        }
        let _: Body = serde_json::from_value(json!({"item_id": "50"})).unwrap();
        let doc = utoipa::openapi::OpenApiBuilder::new()
            .components(Some(utoipa::openapi::ComponentsBuilder::new().schema_from::<Body>().build()))
            .build();
        let item_id = &serde_json::to_value(&doc).unwrap()["components"]["schemas"]["Body"]["properties"]["item_id"];
        assert_eq!(item_id["oneOf"].as_array().map(Vec::len), Some(2), "a number or a string: {item_id}");
    }
}
