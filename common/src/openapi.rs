//! Each service's OpenAPI document, generated with utoipa from the handlers' annotations
//! (`#[utoipa::path]` on every handler) and the types below, so there is one definition of
//! every schema and response the three services share, and the document cannot drift from
//! what a handler is declared to answer. `e2e/tests/api/openapi.rs` checks it against what
//! the services really answer.
//!
//! Most handlers write their JSON straight from pre-rendered bytes (the item list is the hot
//! path), so the response shapes are declared here as types; the unit tests below check that
//! what the renderers write is exactly these types (unknown fields are refused), and the
//! examples are the contract's (`../shared/spec/api.md`).

use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{
    openapi::{
        header::HeaderBuilder,
        schema::{KnownFormat, ObjectBuilder, OneOfBuilder, Schema, SchemaFormat, Type},
        security::{ApiKey, ApiKeyValue, SecurityScheme},
        server::ServerBuilder,
        ContentBuilder, OpenApi as Document, RefOr, Response, ResponseBuilder,
    },
    Modify, OpenApi, ToResponse, ToSchema,
};

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

/// List envelope of users (the user entity is [`crate::entity::User`]).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"count": 1, "payload": [{"id": 10, "name": "...", "access_token": "..."}]})))]
pub struct UserList {
    /// The number of entries in `payload`.
    pub count: u64,
    pub payload: Vec<crate::entity::User>,
}

/// The body of `POST /` and `DELETE /` on the alarm service.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(examples(json!({"item_id": 50}), json!({"item_id": "50"})))]
pub struct AlarmRequest {
    // described by ItemIdValue's schema (a doc comment here would wrap it in another oneOf)
    #[schema(inline)]
    pub item_id: ItemIdValue,
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

/// Exactly `{}`: the contract's body of 201/200 on alarm writes and of 404 on unknown items.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({})))]
pub struct Empty {}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    Ok,
}

/// `GET /health`: the process answers.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"status": "ok"})))]
pub struct Health {
    pub status: HealthStatus,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CheckState {
    Ok,
    Down,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReplicaState {
    Warm,
    Cold,
}

/// What `/ready` checked.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadyChecks {
    /// Own database reachable and migrated.
    pub database: CheckState,
    /// The RabbitMQ connection is up.
    pub rabbitmq: CheckState,
    /// Each in-memory replica (item, user, alarm): `warm` once its snapshot (or persisted
    /// copy) is loaded.
    pub replicas: std::collections::BTreeMap<String, ReplicaState>,
    /// Each read model of another domain's kind in the own database (item: `user`, `alarm`;
    /// alarm: `user`; user: `alarm`): `loading`, `building (N rows copied)`, `complete, catching
    /// up` or `complete`. Never a reason for 503: misses go to the owner until it is complete.
    pub read_models: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReadyStatus {
    Ready,
}

/// `GET /ready` when the service is ready.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"status": "ready", "checks": {"database": "ok", "rabbitmq": "ok",
    "replicas": {"item": "warm", "user": "warm", "alarm": "warm"},
    "read_models": {"alarm": "complete", "user": "complete"}}})))]
pub struct Ready {
    pub status: ReadyStatus,
    pub checks: ReadyChecks,
}

/// `GET /ready` when it is not: the error body plus the individual checks.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"result": "Service Unavailable", "hint": "not ready: RabbitMQ not connected",
    "checks": {"database": "ok", "rabbitmq": "down", "replicas": {"item": "warm", "user": "warm", "alarm": "warm"},
    "read_models": {"alarm": "building (120000 rows copied)", "user": "complete"}}})))]
pub struct NotReady {
    /// Always `Service Unavailable`.
    pub result: String,
    /// What is missing.
    pub hint: String,
    pub checks: ReadyChecks,
}

// ---------------------------------------------------------------- shared responses

/// The `X-Request-Id` header every response carries (added to every response by [`Shared`]).
fn request_id_header() -> utoipa::openapi::header::Header {
    HeaderBuilder::new()
        .schema(ObjectBuilder::new().schema_type(Type::String))
        .description(Some(
            "The request id: the client's `X-Request-Id` when it is 1 to 64 characters of \
             `[A-Za-z0-9._:-]`, else one made by the service. Also in every log line of the request.",
        ))
        .build()
}

/// An error response: the error body (or `{}`), with an example of it.
fn error_response(description: &str, schema: &str, example: Option<serde_json::Value>) -> RefOr<Response> {
    let content =
        ContentBuilder::new().schema(Some(utoipa::openapi::Ref::from_schema_name(schema))).example(example).build();
    ResponseBuilder::new().description(description).content("application/json", content).into()
}

fn error(result: &str, hint: &str) -> Option<serde_json::Value> {
    Some(json!({"result": result, "hint": hint}))
}

/// Declares unit structs naming the shared responses (`#/components/responses/<Name>`), each
/// built by the expression given, for handlers' `responses((status = 401, response = Unauthorized))`.
macro_rules! responses {
    ($($(#[$doc:meta])* $name:ident => $build:expr;)*) => {
        $(
            $(#[$doc])*
            pub struct $name;
            impl<'r> ToResponse<'r> for $name {
                fn response() -> (&'r str, RefOr<Response>) {
                    (stringify!($name), $build)
                }
            }
        )*
    };
}

responses! {
    /// 401: the token check, done by every contract endpoint before anything else.
    Unauthorized => error_response(
        "USER-TOKEN missing, empty, repeated, malformed or not any user's token. Checked before anything else.",
        "ErrorBody",
        error("Unauthorized", "USER-TOKEN header is missing"),
    );
    /// 400: malformed input.
    BadRequest => error_response(
        "Malformed input; the hint says what.",
        "ErrorBody",
        error("Bad Request", "item id must be an integer, got \"abc\""),
    );
    /// 404 `{}`: the contract's answer for an unknown item.
    ItemNotFound => error_response(
        "No item with this id (also negative ids and 0): exactly `{}`.",
        "Empty",
        Some(json!({})),
    );
    /// 405, on any path, for a method the path does not list.
    MethodNotAllowed => error_response(
        "Any method not listed for a path (e.g. `PUT /`). Documented here because OpenAPI has no place \
         for methods a path does not have.",
        "ErrorBody",
        error("Method Not Allowed", "PUT is not allowed on /"),
    );
    /// 404 with the error body: no such route.
    NotFound => error_response(
        "No such route (e.g. `GET /nope`).",
        "ErrorBody",
        error("Not Found", "no route for GET /nope"),
    );
    /// 413: a body over `BODY_LIMIT_BYTES`.
    PayloadTooLarge => error_response(
        "Request body larger than BODY_LIMIT_BYTES (default 16384).",
        "ErrorBody",
        error("Payload Too Large", "request body is larger than 16384 bytes"),
    );
    /// 408: the body did not arrive within `BODY_TIMEOUT_MS`.
    RequestTimeout => error_response(
        "The declared body did not arrive within BODY_TIMEOUT_MS (default 5000); the connection is closed.",
        "ErrorBody",
        error("Request Timeout", "the request body did not arrive within 5000 ms"),
    );
    /// 415: a body that is not JSON.
    UnsupportedMediaType => error_response(
        "A Content-Type other than JSON (`application/json`, `*/*+json`), `application/x-www-form-urlencoded` \
         (what `curl -d` sends) or none.",
        "ErrorBody",
        error("Unsupported Media Type", "the request body must be JSON (Content-Type: application/json), got \"text/xml\""),
    );
    /// 503: a dependency needed for this answer is down.
    Unavailable => {
        let RefOr::T(mut r) = error_response(
            "A dependency needed for this answer is down (own database, or the owning service / RabbitMQ \
             on a cache miss); the hint names it. Answered within the RPC timeout (default 300 ms) or the \
             database timeout (default 2 s).",
            "ErrorBody",
            error("Service Unavailable", "the user service is unavailable and this USER-TOKEN is not cached here; try again shortly"),
        ) else {
            unreachable!("error_response builds the response itself")
        };
        r.headers.insert(
            "Retry-After".into(),
            HeaderBuilder::new()
                .schema(ObjectBuilder::new().schema_type(Type::Integer).examples([json!(1)]))
                .description(Some("Seconds to wait before retrying (always 1)."))
                .build(),
        );
        RefOr::T(r)
    };
    /// 500: our fault, logged.
    InternalError => error_response(
        "An unexpected failure on our side (logged; the body carries no detail).",
        "ErrorBody",
        error("Internal Server Error", "the server failed to handle this request; it has been logged"),
    );
}

/// Declares the shared error-response sets for handlers' `responses(...)`: each a unit struct
/// whose [`utoipa::IntoResponses`] lists `status => response` pairs, every one a reference to
/// the shared response of that name (`#/components/responses/<Name>`, declared above).
macro_rules! error_sets {
    ($($(#[$doc:meta])* $name:ident = [$($status:literal => $response:ident),* $(,)?];)*) => {
        $(
            $(#[$doc])*
            pub struct $name;
            impl utoipa::IntoResponses for $name {
                fn responses() -> std::collections::BTreeMap<String, RefOr<Response>> {
                    [$((
                        $status.to_string(),
                        RefOr::Ref(utoipa::openapi::Ref::from_response_name(stringify!($response))),
                    )),*]
                    .into_iter()
                    .collect()
                }
            }
        )*
    };
}

error_sets! {
    /// An authenticated read: the token check, our failures, a dependency down.
    ReadErrors = [401 => Unauthorized, 500 => InternalError, 503 => Unavailable];
    /// A read with input (a page, an item id in the path): [`ReadErrors`] and 400.
    InputReadErrors = [400 => BadRequest, 401 => Unauthorized, 500 => InternalError, 503 => Unavailable];
    /// One item by id: [`InputReadErrors`] and the contract's `404 {}`.
    ItemErrors = [
        400 => BadRequest, 401 => Unauthorized, 404 => ItemNotFound, 500 => InternalError, 503 => Unavailable,
    ];
    /// A write with a JSON body naming an item: [`ItemErrors`] and the body's own failures.
    ItemWriteErrors = [
        400 => BadRequest, 401 => Unauthorized, 404 => ItemNotFound, 408 => RequestTimeout,
        413 => PayloadTooLarge, 415 => UnsupportedMediaType, 500 => InternalError, 503 => Unavailable,
    ];
}

// ---------------------------------------------------------------- the document

/// What every service's document has: the operational endpoints, the shared schemas and
/// responses, the `USER-TOKEN` scheme and the tags.
#[derive(OpenApi)]
#[openapi(
    paths(crate::http::health, crate::service::ready, crate::service::metrics, openapi_json),
    components(
        schemas(crate::http::ErrorBody, Empty, Health, Ready, ReadyChecks, NotReady, ItemView, ItemList, ItemEnvelope),
        responses(
            Unauthorized, BadRequest, ItemNotFound, MethodNotAllowed, NotFound, PayloadTooLarge,
            RequestTimeout, UnsupportedMediaType, Unavailable, InternalError
        )
    ),
    tags(
        (name = "contract", description = "The HTTP contract"),
        (name = "operations", description = "Health, readiness, metrics, this document")
    ),
    modifiers(&Shared)
)]
struct SharedApi;

/// The parts no annotation states: the security scheme, and the `X-Request-Id` header on
/// every response (one definition instead of one per response).
struct Shared;

impl Modify for Shared {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "UserToken",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "USER-TOKEN",
                "The `access_token` of a user (see the user service's `GET /`). Every service checks it.",
            ))),
        );
    }
}

/// Adds the header every response carries to every response of the document.
fn add_request_id_headers(doc: &mut Document) {
    let add = |r: &mut RefOr<Response>| {
        if let RefOr::T(r) = r {
            r.headers.entry("X-Request-Id".into()).or_insert_with(request_id_header);
        }
    };
    for item in doc.paths.paths.values_mut() {
        for op in
            [&mut item.get, &mut item.post, &mut item.put, &mut item.patch, &mut item.delete].into_iter().flatten()
        {
            op.responses.responses.values_mut().for_each(add);
        }
    }
    if let Some(c) = doc.components.as_mut() {
        c.responses.values_mut().for_each(add);
    }
}

const COMMON_DESCRIPTION: &str = "Common to every HTTP service of HomeShopping Moa: responses are \
`application/json; charset=utf-8` (UTF-8 written as is), except `/metrics`. The contract endpoints \
require the `USER-TOKEN` header; `/health`, `/ready`, `/metrics` and `/openapi.json` do not. Errors \
are `{\"result\": <reason phrase>, \"hint\": <sentence>}`, except the contract's `404 {}` for an \
unknown item. A method a path does not list answers `405` (components/responses/MethodNotAllowed); \
an unknown path answers `404` (components/responses/NotFound). Every response carries `X-Request-Id`. \
Generated from the code (utoipa).";

/// A service's whole document: its own operations (`service`, from its `#[derive(OpenApi)]`)
/// plus everything shared, with its title, description and default port.
pub fn document(mut service: Document, title: &str, description: &str, default_port: u16) -> Document {
    service.merge(SharedApi::openapi());
    service.info.title = title.to_string();
    service.info.version = env!("CARGO_PKG_VERSION").to_string();
    service.info.description = Some(format!("{description}\n\n{COMMON_DESCRIPTION}"));
    service.info.license = None;
    service.info.contact = None;
    service.servers = Some(vec![ServerBuilder::new()
        .url(format!("http://localhost:{default_port}"))
        .description(Some("default port"))
        .build()]);
    add_request_id_headers(&mut service);
    service
}

/// `GET /openapi.json`: this document (served from bytes serialized once at start).
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    operation_id = "openapi",
    summary = "This document",
    security(()),
    responses((status = 200, description = "The OpenAPI 3.1 document of this service", body = Object))
)]
pub async fn openapi_json(doc: actix_web::web::Data<OpenApiJson>) -> actix_web::HttpResponse {
    crate::http::json_bytes(actix_web::http::StatusCode::OK, doc.0.clone())
}

/// The serialized document, shared by the workers.
pub struct OpenApiJson(pub bytes::Bytes);

impl OpenApiJson {
    pub fn new(doc: &Document) -> crate::Result<Self> {
        let body = serde_json::to_vec(doc)
            .map_err(|e| crate::Error::Config(format!("cannot serialize the OpenAPI document: {e}")))?;
        Ok(OpenApiJson(body.into()))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::{entity::Item, replica::items::ItemCatalog, replica::Page};

    #[test]
    fn what_the_item_renderers_write_is_the_documented_types() {
        let c = ItemCatalog::detached();
        let item = Item { id: 7, name: "a\"b".into(), broadcaster: "x".into(), category: None, price: 0 };
        let one: ItemEnvelope = serde_json::from_slice(&c.render_one(&item, true)).unwrap();
        assert_eq!(one.payload.id, 7);
        let item = Item { category: Some("패션·잡화".into()), id: 8, ..item };
        assert_eq!(one.payload.category, None);
        let row = crate::entity::VersionedRow {
            key: "8".into(),
            version: 1,
            deleted: false,
            data: crate::entity::raw_json(&serde_json::to_value(&item).unwrap()),
            epoch: None,
        };
        c.apply_rows(&[row]);
        let list: ItemList = serde_json::from_slice(&c.render_page(&BTreeSet::from([8]), Page::default())).unwrap();
        assert_eq!(list.count, 1);
        assert!(list.payload[0].is_alarm_set);
    }

    #[test]
    fn the_documented_examples_are_the_contracts() {
        let doc = document(SharedApi::openapi(), "t", "d", 1);
        let v = serde_json::to_value(&doc).unwrap();
        assert_eq!(v["openapi"], "3.1.0");
        assert_eq!(v["components"]["schemas"]["Item"]["examples"][0], item_example());
        let required = v["components"]["schemas"]["Item"]["required"].as_array().unwrap();
        assert!(required.contains(&json!("category")), "category is always there, maybe null: {required:?}");
        let item: ItemView = serde_json::from_value(item_example()).unwrap();
        assert_eq!(item.price, 78900);
        let _: AlarmRequest = serde_json::from_value(json!({"item_id": "50"})).unwrap();
        let alarm = utoipa::openapi::OpenApiBuilder::new()
            .components(Some(utoipa::openapi::ComponentsBuilder::new().schema_from::<AlarmRequest>().build()))
            .build();
        let item_id =
            &serde_json::to_value(&alarm).unwrap()["components"]["schemas"]["AlarmRequest"]["properties"]["item_id"];
        assert_eq!(item_id["oneOf"].as_array().map(Vec::len), Some(2), "a number or a string: {item_id}");
        assert_eq!(
            v["components"]["responses"]["Unauthorized"]["content"]["application/json"]["example"],
            json!({"result": "Unauthorized", "hint": "USER-TOKEN header is missing"})
        );
        assert!(v["components"]["responses"]["Unavailable"]["headers"]["X-Request-Id"].is_object());
        assert!(v["paths"]["/health"]["get"]["responses"]["200"]["headers"]["X-Request-Id"].is_object());
    }
}
