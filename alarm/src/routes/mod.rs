//! The alarm service's endpoints.

use actix_web::web;
use common::http;

mod alarms;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/")
            .route(web::post().to(alarms::set))
            .route(web::get().to(alarms::list))
            .route(web::delete().to(alarms::clear))
            .default_service(web::to(http::method_not_allowed)),
    );
}
