use actix_web::{http::StatusCode, web, HttpRequest, HttpResponse};
use common::{auth, http, input::ItemId, replica::feed::Replicas, service::Core, ApiError};

use crate::store::{AlarmWriter, WriteAlarm};

/// `POST /` `{"item_id": 50}` or `{"item_id": "50"}` → `201 {}`.
pub async fn set(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<Replicas>,
    core: web::Data<Core>,
    writer: web::Data<AlarmWriter>,
) -> Result<HttpResponse, ApiError> {
    write(req, body, state, core, writer, true).await?;
    Ok(http::empty(StatusCode::CREATED))
}

/// `DELETE /` with the same body → `200 {}`, whether or not the alarm was set.
pub async fn clear(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<Replicas>,
    core: web::Data<Core>,
    writer: web::Data<AlarmWriter>,
) -> Result<HttpResponse, ApiError> {
    write(req, body, state, core, writer, false).await?;
    Ok(http::empty(StatusCode::OK))
}

async fn write(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<Replicas>,
    core: web::Data<Core>,
    writer: web::Data<AlarmWriter>,
    set: bool,
) -> Result<(), ApiError> {
    let user = auth::authenticate(&req, &state.users).await?;
    let raw = http::read_body(&req, body, core.settings.body_limit, core.settings.body_timeout).await?;
    let ItemId(item_id) = ItemId::from_body(&http::parse_json_object(&req, &raw)?)?;
    state
        .items
        .get(item_id)
        .await
        .map_err(|e| ApiError::from_dependency(e, "this item"))?
        .ok_or(ApiError::NotFoundEmpty)?;
    // alarm.user_id and alarm.item_id are `integer` in the provided schema.
    let (Ok(user_id), Ok(item_id)) = (i32::try_from(user.id), i32::try_from(item_id)) else {
        return Err(ApiError::BadRequest("ids above 2147483647 cannot be stored in the alarm table".into()));
    };
    let write = writer.submit(WriteAlarm { user_id, item_id, set, request_id: common::service::request_id(&req) });
    let rows = common::error::within_write_deadline(core.settings.write_timeout, write)
        .await
        .map_err(|e| ApiError::from_dependency(e, "saving this alarm"))?;
    // Read-your-writes: our own replica has the change before we answer.
    state.alarms.apply_rows(&rows);
    Ok(())
}

/// `GET /`: the items the caller has alarms on, id descending, each with `is_alarm_set: true`.
pub async fn list(req: HttpRequest, state: web::Data<Replicas>) -> Result<HttpResponse, ApiError> {
    let user = auth::authenticate(&req, &state.users).await?;
    let alarmed = state.alarms.items_of(user.id).await.map_err(|e| ApiError::from_dependency(e, "your alarms"))?;
    let ids: Vec<i64> = alarmed.iter().rev().copied().collect();
    let body = state
        .items
        .render_ids(&ids, &|_| true)
        .await
        .map_err(|e| ApiError::from_dependency(e, "the items of your alarms"))?;
    Ok(http::json_bytes(StatusCode::OK, body))
}
