use actix_web::{http::StatusCode, web, HttpRequest, HttpResponse};
use common::{
    auth, http,
    input::{self, ItemId},
    replica::feed::Replicas,
    service::Core,
    ApiError,
};

use crate::store::{RecordView, ViewWriter};

/// `GET /`: every item, id descending, with the caller's `is_alarm_set`
/// (optionally one page: `?limit=&offset=`).
pub async fn list(req: HttpRequest, state: web::Data<Replicas>) -> Result<HttpResponse, ApiError> {
    let user = auth::authenticate(&req, &state.users).await?;
    let page = input::parse_page(req.query_string())?;
    let alarmed = state.alarms.items_of(user.id).await.map_err(|e| ApiError::from_dependency(e, "your alarms"))?;
    Ok(http::json_bytes(StatusCode::OK, state.items.render_page(&alarmed, page)))
}

/// `GET /{item_id}`: one item, and a view recorded for `/visit`.
pub async fn detail(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<Replicas>,
    views: web::Data<ViewWriter>,
    core: web::Data<Core>,
) -> Result<HttpResponse, ApiError> {
    let user = auth::authenticate(&req, &state.users).await?;
    let ItemId(id) = ItemId::from_path(&path)?;
    let item = state
        .items
        .get(id)
        .await
        .map_err(|e| ApiError::from_dependency(e, "this item"))?
        .ok_or(ApiError::NotFoundEmpty)?;
    let alarmed = state.alarms.items_of(user.id).await.map_err(|e| ApiError::from_dependency(e, "your alarms"))?;
    // The view is committed before we answer: a 200 means it will show in /visit.
    let view =
        views.submit(RecordView { user_id: user.id, item_id: id, request_id: common::service::request_id(&req) });
    common::error::within_write_deadline(core.settings.write_timeout, view)
        .await
        .map_err(|e| ApiError::from_dependency(e, "recording this view"))?;
    Ok(http::json_bytes(StatusCode::OK, state.items.render_one(&item, alarmed.contains(&id))))
}
