//! Errors. [`Error`] is what the shared plumbing fails with; [`ApiError`] is what a request
//! fails with, and it alone turns into the contract's error body (see [`crate::http`]).

use actix_web::http::StatusCode;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("configuration: {0}")]
    Config(String),
    #[error("database: {0}")]
    Db(#[from] tokio_postgres::Error),
    #[error("database unavailable: {0}")]
    DbUnavailable(String),
    #[error("amqp: {0}")]
    Amqp(#[from] lapin::Error),
    #[error("rabbitmq is not connected")]
    BusDown,
    #[error("{0} service did not answer in time")]
    RpcTimeout(&'static str),
    #[error("{0} service answered with an error: {1}")]
    RpcFailed(&'static str, String),
    #[error("malformed message: {0}")]
    Malformed(String),
    #[error("store actor is gone")]
    StoreGone,
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

impl Error {
    /// The database refused the statement itself (a constraint, a bad value), as opposed to
    /// not being reachable: running the same statement again will fail again.
    pub fn is_statement_error(&self) -> bool {
        matches!(self, Error::Db(e) if e.as_db_error().is_some())
    }

    /// An error of the same kind, for each of several requests one failure answered (a
    /// coalesced batch): the kind decides the status the caller gets.
    pub fn same_kind(&self) -> Error {
        match self {
            Error::Config(s) => Error::Config(s.clone()),
            Error::Db(e) => Error::DbUnavailable(e.to_string()),
            Error::DbUnavailable(s) => Error::DbUnavailable(s.clone()),
            Error::Amqp(e) => Error::RpcFailed("rabbitmq", e.to_string()),
            Error::BusDown => Error::BusDown,
            Error::RpcTimeout(d) => Error::RpcTimeout(d),
            Error::RpcFailed(d, s) => Error::RpcFailed(d, s.clone()),
            Error::Malformed(s) => Error::Malformed(s.clone()),
            Error::StoreGone => Error::StoreGone,
            Error::Io(e) => Error::Io(std::io::Error::new(e.kind(), e.to_string())),
        }
    }
}

impl From<bb8::RunError<tokio_postgres::Error>> for Error {
    fn from(e: bb8::RunError<tokio_postgres::Error>) -> Self {
        match e {
            bb8::RunError::User(e) => Error::Db(e),
            bb8::RunError::TimedOut => Error::DbUnavailable("no connection within the timeout".into()),
        }
    }
}

impl From<actix::MailboxError> for Error {
    fn from(_: actix::MailboxError) -> Self {
        Error::StoreGone
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::Malformed(e.to_string())
    }
}

/// A request that cannot be answered as asked. Rendered by [`crate::http`] as
/// `{"result": "<reason phrase>", "hint": "..."}`, or as `{}` where the contract says so.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    BadRequest(String),
    /// The contract's `404 {}` for an unknown item.
    #[error("not found")]
    NotFoundEmpty,
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// A dependency needed for this answer is down; the hint names it.
    #[error("{0}")]
    Unavailable(String),
    /// Our own fault; the detail is logged, never sent.
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFoundEmpty | ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The hint sent to the client (None for the contract's empty body).
    pub fn hint(&self) -> Option<String> {
        match self {
            ApiError::NotFoundEmpty => None,
            ApiError::Internal(_) => Some("the server failed to handle this request; it has been logged".into()),
            other => Some(other.to_string()),
        }
    }

    /// Maps an infrastructure failure while answering a request to what the caller sees:
    /// a dependency being down is a 503 naming it, never a wrong answer.
    pub fn from_dependency(e: Error, what: &str) -> Self {
        match e {
            Error::RpcTimeout(d) => ApiError::Unavailable(format!(
                "the {d} service is unavailable and {what} is not cached here; try again shortly"
            )),
            Error::BusDown => ApiError::Unavailable(format!(
                "RabbitMQ is unavailable and {what} is not cached here; try again shortly"
            )),
            Error::Db(_) | Error::DbUnavailable(_) | Error::StoreGone => {
                log::warn!("database unavailable while reading {what}: {e}");
                ApiError::Unavailable("this service's database is unavailable; try again shortly".into())
            }
            other => ApiError::Internal(format!("{what}: {other}")),
        }
    }
}
