//! The user service's endpoints.

use actix_web::web;
use common::http;

mod users;
mod visits;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/")
            .route(web::get().to(users::list))
            .route(web::post().to(users::list))
            .default_service(web::to(http::method_not_allowed)),
    )
    .service(
        web::resource("/visit").route(web::get().to(visits::recent)).default_service(web::to(http::method_not_allowed)),
    );
}
