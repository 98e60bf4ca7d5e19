//! The item service's endpoints.

use actix_web::web;
use common::http;

mod items;

/// The item service's own operations; [`common::api_document::document`] adds the shared ones.
#[derive(utoipa::OpenApi)]
#[openapi(paths(items::list, items::detail))]
pub struct ItemApi;

/// This service's OpenAPI document, served at `GET /openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    common::api_document::document(
        <ItemApi as utoipa::OpenApi>::openapi().merge_from(<item_kind::api::ItemShapes as utoipa::OpenApi>::openapi()),
        "HomeShopping Moa item service",
        "Items (item_db), each with the calling user's `is_alarm_set`. Opening an item records a view for \
         the user service's `GET /visit`.",
        5001,
    )
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/").route(web::get().to(items::list)).default_service(web::to(http::method_not_allowed)),
    )
    .service(
        web::resource("/{item_id}")
            .route(web::get().to(items::detail))
            .default_service(web::to(http::method_not_allowed)),
    );
}
