//! Each service's OpenAPI document, generated with utoipa from the handlers' annotations
//! (`#[utoipa::path]` on every handler) and the types below, so there is one definition of
//! every schema and response the three services share, and the document cannot drift from
//! what a handler is declared to answer. `e2e/tests/api/openapi.rs` checks it against what
//! the services really answer.
//!
//! Most handlers write their JSON straight from pre-rendered bytes (the item list is the hot
//! path), so the response shapes are declared here as types; the unit tests below check that
//! what the renderers write is exactly these types (unknown fields are refused), and the
//! examples are the contract's (`../shared/spec/api.md`). The document is assembled from them
//! in [`crate::api_document`].

use serde::Deserialize;
use serde_json::json;
// For the exported macros, so a kind crate needs no utoipa import of its own for them.
pub use utoipa;
use utoipa::{
    openapi::{
        header::HeaderBuilder,
        schema::{ObjectBuilder, Type},
        ContentBuilder, RefOr, Response, ResponseBuilder,
    },
    ToSchema,
};

/// Exactly `{}`: the contract's body of 201/200 on alarm writes and of 404 on unknown items.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({})))]
pub struct Empty {}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    Ok,
}

/// `GET /health`: the process answers.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"status": "ok"})))]
pub struct Health {
    pub status: HealthStatus,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CheckState {
    Ok,
    Down,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReplicaState {
    Warm,
    Cold,
}

/// What `/ready` checked.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadyChecks {
    /// Own database reachable and migrated.
    pub database: CheckState,
    /// The RabbitMQ connection is up.
    pub rabbitmq: CheckState,
    /// Each in-memory replica (item, user, alarm): `warm` once its snapshot (or persisted
    /// copy) is loaded.
    pub replicas: std::collections::BTreeMap<String, ReplicaState>,
    /// Each read model of another domain's kind in the own database (item: `user`, `alarm`;
    /// alarm: `user`; user: `alarm`): `loading`, `building (N rows copied)`, `complete, catching
    /// up` or `complete`. Never a reason for 503: misses go to the owner until it is complete.
    pub read_models: std::collections::BTreeMap<String, String>,
    /// `ok`, or `differs from <login>` when another service's RPC answers name another
    /// `TOKEN_HASH_KEY` than this one's (a reason for 503: no token it sends is found here).
    pub token_key: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReadyStatus {
    Ready,
}

/// `GET /ready` when the service is ready.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"status": "ready", "checks": {"database": "ok", "rabbitmq": "ok",
    "replicas": {"item": "warm", "user": "warm", "alarm": "warm"},
    "read_models": {"alarm": "complete", "user": "complete"}, "token_key": "ok"}})))]
pub struct Ready {
    pub status: ReadyStatus,
    pub checks: ReadyChecks,
}

/// `GET /ready` when it is not: the error body plus the individual checks.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"result": "Service Unavailable", "hint": "not ready: RabbitMQ not connected",
    "checks": {"database": "ok", "rabbitmq": "down", "replicas": {"item": "warm", "user": "warm", "alarm": "warm"},
    "read_models": {"alarm": "building (120000 rows copied)", "user": "complete"}, "token_key": "ok"}})))]
pub struct NotReady {
    /// Always `Service Unavailable`.
    pub result: String,
    /// What is missing.
    pub hint: String,
    pub checks: ReadyChecks,
}

// ---------------------------------------------------------------- shared responses

/// The `X-Request-Id` header every response carries (added to every response by [`Shared`]).
pub(crate) fn request_id_header() -> utoipa::openapi::header::Header {
    HeaderBuilder::new()
        .schema(ObjectBuilder::new().schema_type(Type::String))
        .description(Some(
            "The request id: the client's `X-Request-Id` when it is 1 to 64 characters of \
             `[A-Za-z0-9._:-]`, else one made by the service. Also in every log line of the request.",
        ))
        .build()
}

/// An error response: the error body (or `{}`), with an example of it.
pub fn error_response(description: &str, schema: &str, example: Option<serde_json::Value>) -> RefOr<Response> {
    let content =
        ContentBuilder::new().schema(Some(utoipa::openapi::Ref::from_schema_name(schema))).example(example).build();
    ResponseBuilder::new().description(description).content("application/json", content).into()
}

pub fn error(result: &str, hint: &str) -> Option<serde_json::Value> {
    Some(json!({"result": result, "hint": hint}))
}

/// Declares unit structs naming the shared responses (`#/components/responses/<Name>`), each
/// built by the expression given, for handlers' `responses((status = 401, response = Unauthorized))`.
/// Exported for the kinds' own responses (`item_kind::api::ItemNotFound`).
#[macro_export]
macro_rules! responses {
    ($($(#[$doc:meta])* $name:ident => $build:expr;)*) => {
        $(
            $(#[$doc])*
            pub struct $name;
            impl<'r> $crate::openapi::utoipa::ToResponse<'r> for $name {
                fn response() -> (&'r str, $crate::openapi::utoipa::openapi::RefOr<$crate::openapi::utoipa::openapi::Response>) {
                    (stringify!($name), $build)
                }
            }
        )*
    };
}

responses! {
    /// 401: the token check, done by every contract endpoint before anything else.
    Unauthorized => error_response(
        "USER-TOKEN missing, empty, repeated, malformed or not any user's token. Checked before anything else.",
        "ErrorBody",
        error("Unauthorized", "USER-TOKEN header is missing"),
    );
    /// 400: malformed input.
    BadRequest => error_response(
        "Malformed input; the hint says what.",
        "ErrorBody",
        error("Bad Request", "item id must be an integer, got \"abc\""),
    );
    /// 405, on any path, for a method the path does not list.
    MethodNotAllowed => error_response(
        "Any method not listed for a path (e.g. `PUT /`). Documented here because OpenAPI has no place \
         for methods a path does not have.",
        "ErrorBody",
        error("Method Not Allowed", "PUT is not allowed on /"),
    );
    /// 404 with the error body: no such route.
    NotFound => error_response(
        "No such route (e.g. `GET /nope`).",
        "ErrorBody",
        error("Not Found", "no route for GET /nope"),
    );
    /// 413: a body over `BODY_LIMIT_BYTES`.
    PayloadTooLarge => error_response(
        "Request body larger than BODY_LIMIT_BYTES (default 16384).",
        "ErrorBody",
        error("Payload Too Large", "request body is larger than 16384 bytes"),
    );
    /// 408: the body did not arrive within `BODY_TIMEOUT_MS`.
    RequestTimeout => error_response(
        "The declared body did not arrive within BODY_TIMEOUT_MS (default 5000); the connection is closed.",
        "ErrorBody",
        error("Request Timeout", "the request body did not arrive within 5000 ms"),
    );
    /// 415: a body that is not JSON.
    UnsupportedMediaType => error_response(
        "A Content-Type other than JSON (`application/json`, `*/*+json`), `application/x-www-form-urlencoded` \
         (what `curl -d` sends) or none.",
        "ErrorBody",
        error("Unsupported Media Type", "the request body must be JSON (Content-Type: application/json), got \"text/xml\""),
    );
    /// 503: a dependency needed for this answer is down.
    Unavailable => {
        let RefOr::T(mut r) = error_response(
            "A dependency needed for this answer is down (own database, or the owning service / RabbitMQ \
             on a cache miss); the hint names it. Answered within the RPC timeout (default 300 ms) or the \
             database timeout (default 2 s).",
            "ErrorBody",
            error("Service Unavailable", "the user service is unavailable and this USER-TOKEN is not cached here; try again shortly"),
        ) else {
            unreachable!("error_response builds the response itself")
        };
        r.headers.insert(
            "Retry-After".into(),
            HeaderBuilder::new()
                .schema(ObjectBuilder::new().schema_type(Type::Integer).examples([json!(1)]))
                .description(Some("Seconds to wait before retrying (always 1)."))
                .build(),
        );
        RefOr::T(r)
    };
    /// 500: our fault, logged.
    InternalError => error_response(
        "An unexpected failure on our side (logged; the body carries no detail).",
        "ErrorBody",
        error("Internal Server Error", "the server failed to handle this request; it has been logged"),
    );
}

/// Declares the shared error-response sets for handlers' `responses(...)`: each a unit struct
/// whose [`utoipa::IntoResponses`] lists `status => response` pairs, every one a reference to
/// the shared response of that name (`#/components/responses/<Name>`, declared above, or a
/// kind's own). Exported for the kinds' own sets (`item_kind::api::ItemErrors`).
#[macro_export]
macro_rules! error_sets {
    ($($(#[$doc:meta])* $name:ident = [$($status:literal => $response:ident),* $(,)?];)*) => {
        $(
            $(#[$doc])*
            pub struct $name;
            impl $crate::openapi::utoipa::IntoResponses for $name {
                fn responses() -> std::collections::BTreeMap<
                    String,
                    $crate::openapi::utoipa::openapi::RefOr<$crate::openapi::utoipa::openapi::Response>,
                > {
                    [$((
                        $status.to_string(),
                        $crate::openapi::utoipa::openapi::RefOr::Ref(
                            $crate::openapi::utoipa::openapi::Ref::from_response_name(stringify!($response)),
                        ),
                    )),*]
                    .into_iter()
                    .collect()
                }
            }
        )*
    };
}

error_sets! {
    /// An authenticated read: the token check, our failures, a dependency down.
    ReadErrors = [401 => Unauthorized, 500 => InternalError, 503 => Unavailable];
    /// A read with input (a page, an item id in the path): [`ReadErrors`] and 400.
    InputReadErrors = [400 => BadRequest, 401 => Unauthorized, 500 => InternalError, 503 => Unavailable];
}
