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
    /// The owner's RPC queue does not exist: no instance of it has started on this broker
    /// (services started together, or the owner is down and its queue went with a node).
    /// Known at once from the broker, not after the timeout.
    #[error("{0} service is not listening (no RPC queue)")]
    RpcNoOwner(&'static str),
    /// Another service hashes tokens with another `TOKEN_HASH_KEY` (it names them).
    #[error("TOKEN_HASH_KEY differs from {0}'s")]
    TokenKeyMismatch(String),
    #[error("malformed message: {0}")]
    Malformed(String),
    #[error("store actor is gone")]
    StoreGone,
    /// The service is starting: its database answers but the migrations are not applied yet.
    #[error("database migrations not applied yet")]
    NotMigrated,
    /// The database holds a migration this binary does not know (a newer version migrated it):
    /// the service refuses to start on it (`db::migrate_when_reachable`).
    #[error("database schema is newer than this binary: {0}")]
    SchemaAhead(String),
    /// A deadline passed: `what` (a dependency, named for the caller) did not answer in time.
    #[error("{what} did not answer within {} ms", .after.as_millis())]
    Deadline { what: String, after: std::time::Duration },
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

impl Error {
    /// The database refused the statement itself (a constraint, a bad value), as opposed to
    /// not being reachable or not answering in time: running the same statement again will
    /// fail again. A statement cancelled by `statement_timeout`, a server shutting down or out
    /// of resources is the database's condition, not the statement's (see [`Error::db_unavailable`]).
    pub fn is_statement_error(&self) -> bool {
        matches!(self, Error::Db(e) if e.as_db_error().is_some()) && !self.db_unavailable()
    }

    /// A database error that says the database cannot answer now, rather than that the
    /// statement is wrong: SQLSTATE class 08 (connection), 53 (insufficient resources),
    /// 57 (operator intervention: `statement_timeout` is 57014 query_canceled, shutdowns are
    /// 57P01–57P03) and 58 (system error), and 25006 read_only_sql_transaction: the server is
    /// no primary (any more), as during a failover or switchover (`scripts/up --pg-standbys`).
    pub fn db_unavailable(&self) -> bool {
        match self {
            Error::Db(e) => match e.code() {
                Some(code) if *code == tokio_postgres::error::SqlState::READ_ONLY_SQL_TRANSACTION => true,
                Some(code) => ["08", "53", "57", "58"].iter().any(|class| code.code().starts_with(class)),
                // No SQLSTATE: the connection itself failed (closed, reset, timed out).
                None => true,
            },
            Error::DbUnavailable(_) | Error::StoreGone | Error::NotMigrated => true,
            _ => false,
        }
    }

    /// `statement_timeout` cancelled the statement (SQLSTATE 57014).
    pub fn is_statement_timeout(&self) -> bool {
        matches!(self, Error::Db(e) if e.code() == Some(&tokio_postgres::error::SqlState::QUERY_CANCELED))
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
            Error::RpcNoOwner(d) => Error::RpcNoOwner(d),
            Error::RpcFailed(d, s) => Error::RpcFailed(d, s.clone()),
            Error::TokenKeyMismatch(s) => Error::TokenKeyMismatch(s.clone()),
            Error::Malformed(s) => Error::Malformed(s.clone()),
            Error::StoreGone => Error::StoreGone,
            Error::NotMigrated => Error::NotMigrated,
            Error::SchemaAhead(s) => Error::SchemaAhead(s.clone()),
            Error::Deadline { what, after } => Error::Deadline { what: what.clone(), after: *after },
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
    /// The client did not send its request body in time (`BODY_TIMEOUT_MS`).
    #[error("{0}")]
    RequestTimeout(String),
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
            ApiError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
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
    /// a dependency that failed or did not answer is a 503 naming it, never a wrong answer
    /// and never a 500. Only our own faults (a malformed answer of our own code, I/O,
    /// configuration) are 500s.
    pub fn from_dependency(e: Error, what: &str) -> Self {
        match e {
            Error::RpcTimeout(d) | Error::RpcNoOwner(d) => ApiError::Unavailable(format!(
                "the {d} service is unavailable and {what} is not cached here; try again shortly"
            )),
            Error::RpcFailed(d, detail) => {
                log::warn!("the {d} service failed to answer for {what}: {detail}");
                ApiError::Unavailable(format!("the {d} service could not answer for {what}; try again shortly"))
            }
            Error::BusDown => ApiError::Unavailable(format!(
                "RabbitMQ is unavailable and {what} is not cached here; try again shortly"
            )),
            // A deployment fault, said as such: no retry helps until an operator fixes it.
            Error::TokenKeyMismatch(peers) => ApiError::Unavailable(format!(
                "{what} cannot be checked: this service's TOKEN_HASH_KEY differs from {peers}'s (an operator must set one key on every service)"
            )),
            Error::Amqp(e) => {
                log::warn!("RabbitMQ failed while asking for {what}: {e}");
                ApiError::Unavailable(format!("RabbitMQ failed while asking for {what}; try again shortly"))
            }
            Error::Deadline { what: late, after } => {
                log::warn!("{late} did not answer within {} ms for {what}", after.as_millis());
                ApiError::Unavailable(format!(
                    "{late} did not answer within {} ms for {what}; try again shortly",
                    after.as_millis()
                ))
            }
            e @ (Error::Db(_) | Error::DbUnavailable(_) | Error::StoreGone | Error::NotMigrated) => {
                let db = own_database();
                if e.is_statement_timeout() {
                    log::warn!("{db}: a statement for {what} was cancelled by statement_timeout: {e}");
                    return ApiError::Unavailable(format!(
                        "{db} did not finish {what} in time (statement timeout); try again shortly"
                    ));
                }
                if e.db_unavailable() {
                    log::warn!("{db} unavailable for {what}: {e}");
                } else {
                    // The database refused the statement: a schema that is not what this
                    // build expects (a restore in progress) or a bug. Still the database's
                    // answer, so a 503 naming it; logged loudly.
                    log::error!("{db} refused a statement for {what}: {e}");
                }
                ApiError::Unavailable(format!("{db} is unavailable; try again shortly"))
            }
            other @ (Error::Config(_) | Error::SchemaAhead(_) | Error::Malformed(_) | Error::Io(_)) => {
                ApiError::Internal(format!("{what}: {other}"))
            }
        }
    }
}

/// Runs a call to the own database (a write through its coalescer, a read through the store)
/// with a deadline: past `after`, [`Error::Deadline`] naming the database, so a stuck or
/// partitioned database costs the caller `after`, not its whole patience (a pooled connection
/// to a server that stopped answering is handed out at once, and its socket notices only after
/// `db::TCP_USER_TIMEOUT` or the keepalive). A write may still commit afterwards; the writes
/// this guards (alarm set/clear, recording a view) are safe to repeat.
pub async fn within_own_database_deadline<T>(
    after: std::time::Duration,
    call: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    match tokio::time::timeout(after, call).await {
        Ok(result) => result,
        Err(_) => Err(Error::Deadline { what: own_database().to_string(), after }),
    }
}

/// The own database's name for hints (`the alarm service's database (alarm_db)`): set once
/// at start by [`name_own_database`]; a process runs one service, so it has one database.
static OWN_DATABASE: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Names the own database in the hints of 503s, from the service's domain and database URL.
pub fn name_own_database(service: &str, database_url: &str) {
    let db = database_url.rsplit('/').next().unwrap_or("").split('?').next().unwrap_or("");
    let name = if db.is_empty() {
        format!("the {service} service's database")
    } else {
        format!("the {service} service's database ({db})")
    };
    let _ = OWN_DATABASE.set(name);
}

fn own_database() -> &'static str {
    OWN_DATABASE.get().map(String::as_str).unwrap_or("this service's database")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_dependency_failure_is_a_503_naming_it() {
        let cases = [
            (Error::RpcTimeout("user"), "user service"),
            (Error::RpcNoOwner("alarm"), "alarm service"),
            (Error::RpcFailed("item", "database down".into()), "item service"),
            (Error::BusDown, "RabbitMQ"),
            (Error::DbUnavailable("no connection within the timeout".into()), "database"),
            (Error::StoreGone, "database"),
            (Error::NotMigrated, "database"),
            (
                Error::Deadline {
                    what: "the alarm service's database".into(),
                    after: std::time::Duration::from_millis(5),
                },
                "the alarm service's database did not answer within 5 ms",
            ),
        ];
        for (e, named) in cases {
            let shown = e.to_string();
            let api = ApiError::from_dependency(e, "this test");
            assert_eq!(api.status(), StatusCode::SERVICE_UNAVAILABLE, "{shown}");
            let hint = api.hint().unwrap_or_default();
            assert!(hint.contains(named), "{shown}: {hint}");
        }
    }

    #[test]
    fn our_own_faults_stay_500s() {
        let api = ApiError::from_dependency(Error::Malformed("3 answers for 2 requests".into()), "this test");
        assert_eq!(api.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn unavailable_databases_are_not_statement_errors() {
        assert!(Error::DbUnavailable("x".into()).db_unavailable());
        assert!(!Error::DbUnavailable("x".into()).is_statement_error());
        assert!(!Error::BusDown.db_unavailable());
    }
}
