use actix_web::{body::BodyStream, http::StatusCode, web, HttpRequest, HttpResponse};
use common::{http, input, openapi, service::Core, ApiError};
use user_kind::{auth, UserDirectory};

use crate::list::{StreamUsers, UserLists};

/// `GET /` (and `POST /`, as the original spec's example sends): every user, id descending
/// (optionally one page: `?limit=&offset=`), streamed from user_db page by page
/// ([`crate::list`]): user_db down is a `503` naming it.
#[utoipa::path(get, path = "/", tag = "contract", operation_id = "listUsers", security(("UserToken" = [])),
    summary = "Every user, id descending",
    params(
        ("limit" = Option<u64>, Query, description = "At most this many users (an addition to the contract; absent: all)."),
        ("offset" = Option<u64>, Query, description = "Skip this many users of the id-descending list (default 0).")
    ),
    responses(
        (status = 200, description = "Every user (or one page)", body = user_kind::UserList),
        openapi::InputReadErrors
    ))]
pub async fn list(
    req: HttpRequest,
    users: web::Data<UserDirectory>,
    core: web::Data<Core>,
    lists: web::Data<UserLists>,
) -> Result<HttpResponse, ApiError> {
    auth::authenticate(&req, &users).await?;
    let page = input::parse_page(req.query_string())?;
    let unavailable = |e| ApiError::from_dependency(e, "the user list");
    let turn = lists.turn().await.map_err(unavailable)?;
    // user_db's first answer within DB_TIMEOUT_MS: a database that stopped answering is a 503
    // by then (the producer ends when its connection does: db::TCP_USER_TIMEOUT, the
    // keepalive). Writing the first page after that answer is not held to it.
    let tokens = lists.tokens;
    let (answered, first_answer) = tokio::sync::oneshot::channel();
    let mut open = std::pin::pin!(async {
        core.store.send(StreamUsers { page, turn, tokens, answered }).await.map_err(common::Error::from)?
    });
    let opened = common::error::within_own_database_deadline(core.settings.db_timeout, async {
        tokio::select! {
            body = &mut open => body.map(Some),
            _ = first_answer => Ok(None),
        }
    })
    .await
    .map_err(unavailable)?;
    let body = match opened {
        Some(body) => body,
        None => open.await.map_err(unavailable)?,
    };
    Ok(match body.rest {
        // It fitted in one page: sent with a Content-Length, as before.
        None => http::json_bytes(StatusCode::OK, body.head),
        Some(rest) => {
            let pages = futures_util::stream::unfold((Some(body.head), rest), |(head, mut rest)| async move {
                let next = match head {
                    Some(head) => Ok(head),
                    None => rest.recv().await?,
                };
                Some((next, (None, rest)))
            });
            http::json_bytes(StatusCode::OK, BodyStream::new(pages))
        }
    })
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
        (status = 200, description = "Every user (or one page)", body = user_kind::UserList),
        openapi::InputReadErrors
    ))]
pub async fn list_by_post(
    req: HttpRequest,
    users: web::Data<UserDirectory>,
    core: web::Data<Core>,
    lists: web::Data<UserLists>,
) -> Result<HttpResponse, ApiError> {
    list(req, users, core, lists).await
}
