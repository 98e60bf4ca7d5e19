use actix_web::{http::StatusCode, web, HttpRequest, HttpResponse};
use alarm_kind::AlarmBook;
use common::{http, openapi, service::Core, ApiError};
use item_kind::{
    api::{ItemId, ItemIdValue, ItemList, ItemWriteErrors},
    ItemCatalog,
};
use serde::Deserialize;
use user_kind::{auth, UserDirectory};
use utoipa::ToSchema;

use crate::{
    lists::AlarmLists,
    store::{AlarmWriter, WriteAlarm},
};

/// What the alarm routes read of each kind: the caller (by token), the item (that it exists),
/// the caller's alarms.
type Reads = (web::Data<UserDirectory>, web::Data<ItemCatalog>, web::Data<AlarmBook>);

/// The body of `POST /` and `DELETE /` on the alarm service.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(examples(json!({"item_id": 50}), json!({"item_id": "50"})))]
// The document's description only: the handler reads the raw body with `ItemId::from_body`, so
// that a bad id gets the contract's hint rather than serde's.
#[allow(dead_code)]
pub struct AlarmRequest {
    // described by ItemIdValue's schema (a doc comment here would wrap it in another oneOf)
    #[schema(inline)]
    pub item_id: ItemIdValue,
}

/// The body of a set and of a clear, as the documents describe it.
const ALARM_BODY: &str = "`item_id` as a JSON number or as a string of digits (the original specification sends a \
    string). Sent with `Content-Type: application/json`; `application/x-www-form-urlencoded` (curl -d's default) \
    and no Content-Type are accepted too, the body still being JSON. At most BODY_LIMIT_BYTES (default 16384).";

/// `POST /` `{"item_id": 50}` or `{"item_id": "50"}` → `201 {}`.
#[utoipa::path(post, path = "/", tag = "contract", operation_id = "setAlarm", security(("UserToken" = [])),
    summary = "Set the caller's alarm on an item (idempotent)",
    description = "Setting an alarm that is already set is still `201 {}` and leaves one alarm row.",
    request_body(content = AlarmRequest, description = ALARM_BODY,
        examples(("number" = (value = json!({"item_id": 50}))), ("string" = (value = json!({"item_id": "50"}))))),
    responses(
        (status = 201, description = "Set: exactly `{}`", body = openapi::Empty),
        ItemWriteErrors
    ))]
pub async fn set(
    req: HttpRequest,
    body: web::Payload,
    reads: Reads,
    core: web::Data<Core>,
    writer: web::Data<AlarmWriter>,
) -> Result<HttpResponse, ApiError> {
    write(req, body, reads, core, writer, true).await?;
    Ok(http::empty(StatusCode::CREATED))
}

/// `DELETE /` with the same body → `200 {}`, whether or not the alarm was set.
#[utoipa::path(delete, path = "/", tag = "contract", operation_id = "clearAlarm", security(("UserToken" = [])),
    summary = "Clear the caller's alarm on an item (idempotent)",
    description = "Clearing an alarm that is not set is also `200 {}`.",
    request_body(content = AlarmRequest, description = ALARM_BODY,
        examples(("number" = (value = json!({"item_id": 50}))), ("string" = (value = json!({"item_id": "50"}))))),
    responses(
        (status = 200, description = "Cleared (or was not set): exactly `{}`", body = openapi::Empty),
        ItemWriteErrors
    ))]
pub async fn clear(
    req: HttpRequest,
    body: web::Payload,
    reads: Reads,
    core: web::Data<Core>,
    writer: web::Data<AlarmWriter>,
) -> Result<HttpResponse, ApiError> {
    write(req, body, reads, core, writer, false).await?;
    Ok(http::empty(StatusCode::OK))
}

async fn write(
    req: HttpRequest,
    body: web::Payload,
    (users, items, alarms): Reads,
    core: web::Data<Core>,
    writer: web::Data<AlarmWriter>,
    set: bool,
) -> Result<(), ApiError> {
    let user = auth::authenticate(&req, &users).await?;
    let raw = http::read_body(&req, body, core.settings.body_limit, core.settings.body_timeout).await?;
    let ItemId(item_id) = ItemId::from_body(&http::parse_json_object(&req, &raw)?)?;
    items.get(item_id).await.map_err(|e| ApiError::from_dependency(e, "this item"))?.ok_or(ApiError::NotFoundEmpty)?;
    // alarm.user_id and alarm.item_id are `integer` in the provided schema.
    let (Ok(user_id), Ok(item_id)) = (i32::try_from(user.id), i32::try_from(item_id)) else {
        return Err(ApiError::BadRequest("ids above 2147483647 cannot be stored in the alarm table".into()));
    };
    let write = writer.submit(WriteAlarm { user_id, item_id, set, request_id: common::service::request_id(&req) });
    let rows = common::error::within_own_database_deadline(core.settings.write_timeout, write)
        .await
        .map_err(|e| ApiError::from_dependency(e, "saving this alarm"))?;
    // Read-your-writes: our own replica has the change before we answer.
    alarms.apply_rows(&rows);
    Ok(())
}

/// `GET /`: the items the caller has alarms on, id descending, each with `is_alarm_set: true`.
#[utoipa::path(get, path = "/", tag = "contract", operation_id = "listAlarms", security(("UserToken" = [])),
    summary = "The items the caller has alarms on, id descending (is_alarm_set always true)",
    description = "Items deleted from item_db are left out. Read from alarm_db, so every instance gives the same \
        answer at once after a write; while alarm_db is down, from this instance's memory.",
    responses(
        (status = 200, description = "The alarmed items", body = ItemList),
        openapi::ReadErrors
    ))]
pub async fn list(
    req: HttpRequest,
    (users, items, alarms): Reads,
    lists: web::Data<AlarmLists>,
) -> Result<HttpResponse, ApiError> {
    let user = auth::authenticate(&req, &users).await?;
    let alarmed =
        lists.items_of(user.id, &alarms).await.map_err(|e| ApiError::from_dependency(e, "the list of your alarms"))?;
    let ids: Vec<i64> = alarmed.iter().rev().copied().collect();
    let body = items
        .render_ids(&ids, &|_| true)
        .await
        .map_err(|e| ApiError::from_dependency(e, "the items of your alarms"))?;
    Ok(http::json_bytes(StatusCode::OK, body))
}
