//! The item service's endpoints.

use actix_web::web;
use common::http;

mod items;

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
