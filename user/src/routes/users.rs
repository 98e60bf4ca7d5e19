use actix_web::{http::StatusCode, web, HttpRequest, HttpResponse};
use common::{auth, http, input, openapi, replica::feed::Replicas, ApiError};

/// `GET /` (and `POST /`, as the original spec's example sends): every user, id descending
/// (optionally one page: `?limit=&offset=`).
#[utoipa::path(get, path = "/", tag = "contract", operation_id = "listUsers", security(("UserToken" = [])),
    summary = "Every user, id descending",
    params(
        ("limit" = Option<u64>, Query, description = "At most this many users (an addition to the contract; absent: all)."),
        ("offset" = Option<u64>, Query, description = "Skip this many users of the id-descending list (default 0).")
    ),
    responses(
        (status = 200, description = "Every user (or one page)", body = openapi::UserList),
        (status = 400, response = openapi::BadRequest),
        (status = 401, response = openapi::Unauthorized),
        (status = 500, response = openapi::InternalError),
        (status = 503, response = openapi::Unavailable)
    ))]
pub async fn list(req: HttpRequest, state: web::Data<Replicas>) -> Result<HttpResponse, ApiError> {
    auth::authenticate(&req, &state.users).await?;
    let page = input::parse_page(req.query_string())?;
    let body = state.users.render_list(page);
    Ok(http::json_bytes(StatusCode::OK, body))
}

/// `POST /`: the same as `GET /`; its own handler so that the document has one operation
/// (and operation id) per method.
#[utoipa::path(post, path = "/", tag = "contract", operation_id = "listUsersByPost", security(("UserToken" = [])),
    summary = "Same as GET / (the original specification's example uses -X POST)",
    description = "A body is ignored.",
    params(
        ("limit" = Option<u64>, Query, description = "At most this many users (an addition to the contract; absent: all)."),
        ("offset" = Option<u64>, Query, description = "Skip this many users of the id-descending list (default 0).")
    ),
    responses(
        (status = 200, description = "Every user (or one page)", body = openapi::UserList),
        (status = 400, response = openapi::BadRequest),
        (status = 401, response = openapi::Unauthorized),
        (status = 500, response = openapi::InternalError),
        (status = 503, response = openapi::Unavailable)
    ))]
pub async fn list_by_post(req: HttpRequest, state: web::Data<Replicas>) -> Result<HttpResponse, ApiError> {
    list(req, state).await
}
