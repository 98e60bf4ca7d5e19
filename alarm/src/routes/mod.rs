//! The alarm service's endpoints.

use actix_web::web;
use common::http;

mod alarms;

/// The alarm service's own operations; [`common::api_document::document`] adds the shared ones.
#[derive(utoipa::OpenApi)]
#[openapi(paths(alarms::set, alarms::list, alarms::clear), components(schemas(alarms::AlarmRequest)))]
pub struct AlarmApi;

/// This service's OpenAPI document, served at `GET /openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    common::api_document::document(
        <AlarmApi as utoipa::OpenApi>::openapi().merge_from(<item_kind::api::ItemShapes as utoipa::OpenApi>::openapi()),
        "HomeShopping Moa alarm service",
        "The calling user's alarms on items (alarm_db).",
        6001,
    )
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/")
            .route(web::post().to(alarms::set))
            .route(web::get().to(alarms::list))
            .route(web::delete().to(alarms::clear))
            .default_service(web::to(http::method_not_allowed)),
    );
}
