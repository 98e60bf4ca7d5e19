//! The user service's endpoints.

use actix_web::web;
use common::http;

mod users;
pub mod visits;

/// The user service's own operations; [`common::api_document::document`] adds the shared ones.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(users::list, users::list_by_post, visits::recent),
    components(schemas(user_kind::UserList, user_kind::User))
)]
pub struct UserApi;

/// This service's OpenAPI document, served at `GET /openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    common::api_document::document(
        <UserApi as utoipa::OpenApi>::openapi().merge_from(<item_kind::api::ItemShapes as utoipa::OpenApi>::openapi()),
        "HomeShopping Moa user service",
        "Users (user_db) and each user's recently viewed items.",
        7001,
    )
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/")
            .route(web::get().to(users::list))
            .route(web::post().to(users::list_by_post))
            .default_service(web::to(http::method_not_allowed)),
    )
    .service(
        web::resource("/visit").route(web::get().to(visits::recent)).default_service(web::to(http::method_not_allowed)),
    );
}
