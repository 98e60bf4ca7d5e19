use actix_web::{http::StatusCode, web, HttpRequest, HttpResponse};
use common::{auth, http, input, replica::feed::Replicas, ApiError};

/// `GET /` (and `POST /`, as the original spec's example sends): every user, id descending
/// (optionally one page: `?limit=&offset=`).
pub async fn list(req: HttpRequest, state: web::Data<Replicas>) -> Result<HttpResponse, ApiError> {
    auth::authenticate(&req, &state.users).await?;
    let page = input::parse_page(req.query_string())?;
    let body = state.users.render_list(page);
    Ok(http::json_bytes(StatusCode::OK, body))
}
