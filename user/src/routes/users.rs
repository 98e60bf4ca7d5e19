use actix_web::{http::StatusCode, web, HttpRequest, HttpResponse};
use common::{auth, entity::User, http, replica::feed::Replicas, ApiError};
use serde::Serialize;

#[derive(Serialize)]
struct UserList {
    count: usize,
    payload: Vec<User>,
}

/// `GET /` (and `POST /`, as the original spec's example sends): every user, id descending.
pub async fn list(req: HttpRequest, state: web::Data<Replicas>) -> Result<HttpResponse, ApiError> {
    auth::authenticate(&req, &state.users).await?;
    let payload = state.users.all_desc();
    Ok(http::json(StatusCode::OK, &UserList { count: payload.len(), payload }))
}
