use actix_web::{http::StatusCode, web, HttpRequest, HttpResponse};
use alarm_kind::AlarmBook;
use common::{http, input, openapi, service::Core, ApiError};
use item_kind::{
    api::{ItemEnvelope, ItemErrors, ItemId, ItemList},
    ItemCatalog,
};
use user_kind::{auth, UserDirectory};

use crate::store::{RecordView, ViewWriter};

/// What the item routes read of each kind the service declares: the caller (by token), the
/// items, the caller's alarms. A kind declared later joins this tuple.
type Reads = (web::Data<UserDirectory>, web::Data<ItemCatalog>, web::Data<AlarmBook>);

/// `GET /`: every item, id descending, with the caller's `is_alarm_set`
/// (optionally one page: `?limit=&offset=`).
#[utoipa::path(get, path = "/", tag = "contract", operation_id = "listItems", security(("UserToken" = [])),
    summary = "Every item, id descending, with the caller's is_alarm_set",
    description = "Without `limit` and `offset` (the contract's request) the whole list. With them, one page \
        of it; `count` is then the number of items in the page.",
    params(
        ("limit" = Option<u64>, Query, description = "At most this many items (an addition to the contract; absent: all)."),
        ("offset" = Option<u64>, Query, description = "Skip this many items of the id-descending list (default 0).")
    ),
    responses(
        (status = 200, description = "Every item (or one page)", body = ItemList),
        openapi::InputReadErrors
    ))]
pub async fn list(req: HttpRequest, reads: Reads) -> Result<HttpResponse, ApiError> {
    let (users, items, alarms) = reads;
    let user = auth::authenticate(&req, &users).await?;
    let page = input::parse_page(req.query_string())?;
    let alarmed =
        alarms.items_of(user.id).await.map_err(|e| ApiError::from_dependency(e, "the list of your alarms"))?;
    Ok(http::json_bytes(StatusCode::OK, items.render_page(&alarmed, page)))
}

/// `GET /{item_id}`: one item, and a view recorded for `/visit`.
#[utoipa::path(get, path = "/{item_id}", tag = "contract", operation_id = "getItem", security(("UserToken" = [])),
    summary = "One item; records that the caller viewed it",
    description = "The view is committed (item_db outbox) before 200 is sent: a 200 means it will show in the \
        user service's `/visit`. If item_db is down this answers 503.",
    params(("item_id" = i64, Path, example = 50,
        description = "Item id: an integer (optionally negative) of the 64-bit range; anything else is 400.")),
    responses(
        (status = 200, description = "The item in the single envelope", body = ItemEnvelope),
        ItemErrors
    ))]
pub async fn detail(
    req: HttpRequest,
    path: web::Path<String>,
    reads: Reads,
    views: web::Data<ViewWriter>,
    core: web::Data<Core>,
) -> Result<HttpResponse, ApiError> {
    let (users, items, alarms) = reads;
    let user = auth::authenticate(&req, &users).await?;
    let ItemId(id) = ItemId::from_path(&path)?;
    let item =
        items.get(id).await.map_err(|e| ApiError::from_dependency(e, "this item"))?.ok_or(ApiError::NotFoundEmpty)?;
    let alarmed =
        alarms.items_of(user.id).await.map_err(|e| ApiError::from_dependency(e, "the list of your alarms"))?;
    // The view is committed before we answer: a 200 means it will show in /visit.
    let view = views.submit(RecordView {
        user_id: user.id,
        item_id: id,
        request_id: common::service::request_id(&req),
        idempotency_key: idempotency_key(&req),
    });
    common::error::within_own_database_deadline(core.settings.write_timeout, view)
        .await
        .map_err(|e| ApiError::from_dependency(e, "recording this view"))?;
    Ok(http::json_bytes(StatusCode::OK, items.render_one(&item, alarmed.contains(&id))))
}

/// The `Idempotency-Key` header, when it is a usable one (1 to 128 printable ASCII characters;
/// anything else is ignored, so the view still counts as a view of its own).
fn idempotency_key(req: &HttpRequest) -> Option<String> {
    let v = req.headers().get("idempotency-key")?.to_str().ok()?;
    (!v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic())).then(|| v.to_string())
}
