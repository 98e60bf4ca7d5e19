//! The HTTP side of the contract in one place: content type, envelopes, the error body,
//! bounded JSON bodies, and the routes every service has (`/health`, unknown routes).

use actix_web::{
    http::{header, StatusCode},
    web, HttpRequest, HttpResponse, ResponseError,
};
use futures_util::StreamExt;
use serde::Serialize;

use crate::error::ApiError;

pub const JSON_UTF8: &str = "application/json; charset=utf-8";

/// `{}`: the contract's body for 201 / 200 on alarm writes and 404 on unknown items.
pub fn empty(status: StatusCode) -> HttpResponse {
    HttpResponse::build(status).content_type(JSON_UTF8).body("{}")
}

/// A JSON body from bytes that are already serialized.
pub fn json_bytes(status: StatusCode, body: impl actix_web::body::MessageBody + 'static) -> HttpResponse {
    HttpResponse::build(status).content_type(JSON_UTF8).body(body)
}

/// A JSON body (serde_json writes UTF-8 as is: Korean is not `\u`-escaped).
pub fn json<T: Serialize>(status: StatusCode, value: &T) -> HttpResponse {
    match serde_json::to_vec(value) {
        Ok(body) => json_bytes(status, body),
        Err(e) => ApiError::Internal(format!("serializing a response: {e}")).error_response(),
    }
}

/// A client's `X-Request-Id`, when it is one we can carry into log lines and events as is:
/// 1 to 64 characters of `[A-Za-z0-9._:-]` (UUIDs, W3C trace ids, `instance-123`). Anything
/// else (quotes, spaces, brackets, control characters, longer) is replaced by an id of ours.
pub fn client_request_id(value: Option<&header::HeaderValue>) -> Option<&str> {
    let v = value?.to_str().ok()?;
    let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-');
    (!v.is_empty() && v.len() <= 64 && v.bytes().all(allowed)).then_some(v)
}

/// Every error except the contract's `{}` bodies: the HTTP reason phrase and one sentence
/// saying what was wrong (also the OpenAPI documents' `ErrorBody`).
#[derive(Serialize, utoipa::ToSchema)]
#[schema(examples(json!({"result": "Unauthorized", "hint": "USER-TOKEN header is missing"})))]
pub struct ErrorBody<'a> {
    /// The HTTP reason phrase of the status.
    result: &'a str,
    /// What was wrong, in one sentence.
    hint: String,
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status()
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status();
        if let ApiError::Internal(detail) = self {
            log::error!("internal error: {detail}");
        }
        match self.hint() {
            None => empty(status),
            Some(hint) => {
                let body = ErrorBody { result: status.canonical_reason().unwrap_or("Error"), hint };
                let mut resp = json(status, &body);
                if status == StatusCode::SERVICE_UNAVAILABLE {
                    resp.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
                }
                if matches!(status, StatusCode::REQUEST_TIMEOUT | StatusCode::PAYLOAD_TOO_LARGE) {
                    // The rest of the body was never read: the connection cannot carry
                    // another request, and a slow client must not keep it.
                    resp.head_mut().set_connection_type(actix_web::http::ConnectionType::Close);
                }
                resp
            }
        }
    }
}

/// Reads a request body of at most `limit` bytes within `deadline`. A larger one is refused
/// with 413 as soon as the limit is crossed (the declared Content-Length is checked first),
/// so nothing is buffered past it; one not complete within `deadline` (a client that
/// declares 100 bytes and sends one) is a 408, and the connection is closed.
pub async fn read_body(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
    deadline: std::time::Duration,
) -> Result<Vec<u8>, ApiError> {
    let too_large = || ApiError::PayloadTooLarge(format!("request body is larger than {limit} bytes"));
    if let Some(len) =
        req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok())
    {
        if len > limit {
            return Err(too_large());
        }
    }
    let read = async {
        let mut body = Vec::new();
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|e| ApiError::BadRequest(format!("could not read the request body: {e}")))?;
            if body.len() + chunk.len() > limit {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    };
    match tokio::time::timeout(deadline, read).await {
        Ok(result) => result,
        Err(_) => {
            Err(ApiError::RequestTimeout(format!("the request body did not arrive within {} ms", deadline.as_millis())))
        }
    }
}

/// Parses a JSON object body. A content type, when given, must be JSON; a missing one is
/// accepted because the original specification's curl examples send none.
pub fn parse_json_object(
    req: &HttpRequest,
    body: &[u8],
) -> Result<serde_json::Map<String, serde_json::Value>, ApiError> {
    if let Some(ct) = req.headers().get(header::CONTENT_TYPE) {
        let ct = ct.to_str().unwrap_or("").to_ascii_lowercase();
        let essence = ct.split(';').next().unwrap_or("").trim();
        let is_json = essence == "application/json" || essence.ends_with("+json");
        // curl -d sends form encoding by default; the original spec's examples rely on that.
        let is_form_default = essence == "application/x-www-form-urlencoded";
        if !(is_json || is_form_default || essence.is_empty()) {
            return Err(ApiError::UnsupportedMediaType(format!(
                "the request body must be JSON (Content-Type: application/json), got {essence:?}"
            )));
        }
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::BadRequest("the request body is missing; send a JSON object".into()));
    }
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("the request body is not valid JSON: {e}")))?;
    match value {
        serde_json::Value::Object(map) => Ok(map),
        _ => Err(ApiError::BadRequest("the request body must be a JSON object".into())),
    }
}

/// Liveness: the process answers. No auth, no dependencies.
#[utoipa::path(get, path = "/health", tag = "operations", operation_id = "health", security(()),
    summary = "Liveness: the process answers", description = "No token, no dependency checked.",
    responses((status = 200, description = "Alive", body = crate::openapi::Health)))]
pub async fn health() -> HttpResponse {
    json_bytes(StatusCode::OK, r#"{"status":"ok"}"#)
}

/// Unknown route → 404 with the error body (405 where the path exists with another method is
/// handled per resource by [`method_not_allowed`]).
pub async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound(format!("no route for {} {}", req.method(), req.path())))
}

pub async fn method_not_allowed(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed(format!("{} is not allowed on {}", req.method(), req.path())))
}

/// Turns actix's own extractor errors (bad query strings and the like) into the contract's body.
pub fn query_error_handler(err: actix_web::error::QueryPayloadError, _req: &HttpRequest) -> actix_web::Error {
    ApiError::BadRequest(format!("bad query string: {err}")).into()
}

#[cfg(test)]
mod tests {
    use actix_web::http::header::HeaderValue;

    use super::client_request_id;

    fn id(v: &str) -> Option<String> {
        client_request_id(Some(&HeaderValue::from_str(v).unwrap())).map(str::to_string)
    }

    #[test]
    fn a_client_request_id_is_kept_only_when_short_and_of_the_safe_characters() {
        for ok in ["a", "0f8fad5b-d9cb-469f-a165-70867728950e", "item-1.7:42_x", &"x".repeat(64)] {
            assert_eq!(id(ok).as_deref(), Some(ok), "{ok}");
        }
        for bad in [
            "",
            &"x".repeat(65),
            "a b",
            "a\"b",
            "[forged] GET /",
            "{\"json\":1}",
            "a\\b",
            "a\tb",
            "<script>",
            "id;rm",
            "a/b",
            "a%0Ab",
        ] {
            assert_eq!(id(bad), None, "{bad:?}");
        }
        assert_eq!(client_request_id(None), None);
        // not visible ASCII: refused before the character check
        assert_eq!(client_request_id(Some(&HeaderValue::from_bytes("é".as_bytes()).unwrap())), None);
    }
}

/// `GET /openapi.json`: this document (served from bytes serialized once at start).
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    operation_id = "openapi",
    summary = "This document",
    security(()),
    responses((status = 200, description = "The OpenAPI 3.1 document of this service", body = Object))
)]
pub async fn openapi_json(doc: actix_web::web::Data<OpenApiJson>) -> actix_web::HttpResponse {
    json_bytes(actix_web::http::StatusCode::OK, doc.0.clone())
}

/// The serialized document, shared by the workers.
pub struct OpenApiJson(pub bytes::Bytes);

impl OpenApiJson {
    pub fn new(doc: &utoipa::openapi::OpenApi) -> crate::Result<Self> {
        let body = serde_json::to_vec(doc)
            .map_err(|e| crate::Error::Config(format!("cannot serialize the OpenAPI document: {e}")))?;
        Ok(OpenApiJson(body.into()))
    }
}
