//! A service's whole OpenAPI document: its own operations plus what every service shares (the
//! operational endpoints, the schemas and responses of [`crate::openapi`], the `USER-TOKEN`
//! scheme). Apart from the schemas so that the handlers it lists (`http`, `service`) and the
//! schemas they name do not import each other in a circle.

use utoipa::{
    openapi::{
        security::{ApiKey, ApiKeyValue, SecurityScheme},
        server::ServerBuilder,
        OpenApi as Document, RefOr, Response,
    },
    Modify, OpenApi,
};

use crate::openapi::{
    request_id_header, BadRequest, Empty, Health, InternalError, MethodNotAllowed, NotFound, NotReady, PayloadTooLarge,
    Ready, ReadyChecks, RequestTimeout, Unauthorized, Unavailable, UnsupportedMediaType,
};

// ---------------------------------------------------------------- the document

/// What every service's document has: the operational endpoints, the shared schemas and
/// responses, the `USER-TOKEN` scheme and the tags.
#[derive(OpenApi)]
#[openapi(
    paths(crate::http::health, crate::service::ready, crate::service::metrics, crate::http::openapi_json),
    components(
        schemas(crate::http::ErrorBody, Empty, Health, Ready, ReadyChecks, NotReady),
        responses(
            Unauthorized, BadRequest, MethodNotAllowed, NotFound, PayloadTooLarge, RequestTimeout,
            UnsupportedMediaType, Unavailable, InternalError
        )
    ),
    tags(
        (name = "contract", description = "The HTTP contract"),
        (name = "operations", description = "Health, readiness, metrics, this document")
    ),
    modifiers(&Shared)
)]
struct SharedApi;

/// The parts no annotation states: the security scheme, and the `X-Request-Id` header on
/// every response (one definition instead of one per response).
struct Shared;

impl Modify for Shared {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "UserToken",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "USER-TOKEN",
                "The `access_token` of a user (see the user service's `GET /`). Every service checks it.",
            ))),
        );
    }
}

/// Adds the header every response carries to every response of the document.
fn add_request_id_headers(doc: &mut Document) {
    let add = |r: &mut RefOr<Response>| {
        if let RefOr::T(r) = r {
            r.headers.entry("X-Request-Id".into()).or_insert_with(request_id_header);
        }
    };
    for item in doc.paths.paths.values_mut() {
        for op in
            [&mut item.get, &mut item.post, &mut item.put, &mut item.patch, &mut item.delete].into_iter().flatten()
        {
            op.responses.responses.values_mut().for_each(add);
        }
    }
    if let Some(c) = doc.components.as_mut() {
        c.responses.values_mut().for_each(add);
    }
}

const COMMON_DESCRIPTION: &str = "Common to every HTTP service of HomeShopping Moa: responses are \
`application/json; charset=utf-8` (UTF-8 written as is), except `/metrics`. The contract endpoints \
require the `USER-TOKEN` header; `/health`, `/ready`, `/metrics` and `/openapi.json` do not. Errors \
are `{\"result\": <reason phrase>, \"hint\": <sentence>}`, except the contract's `404 {}` for an \
unknown item. A method a path does not list answers `405` (components/responses/MethodNotAllowed); \
an unknown path answers `404` (components/responses/NotFound). Every response carries `X-Request-Id`. \
Generated from the code (utoipa).";

/// A service's whole document: its own operations (`service`, from its `#[derive(OpenApi)]`)
/// plus everything shared, with its title, description and default port.
pub fn document(mut service: Document, title: &str, description: &str, default_port: u16) -> Document {
    service.merge(SharedApi::openapi());
    service.info.title = title.to_string();
    service.info.version = env!("CARGO_PKG_VERSION").to_string();
    service.info.description = Some(format!("{description}\n\n{COMMON_DESCRIPTION}"));
    service.info.license = None;
    service.info.contact = None;
    service.servers = Some(vec![ServerBuilder::new()
        .url(format!("http://localhost:{default_port}"))
        .description(Some("default port"))
        .build()]);
    add_request_id_headers(&mut service);
    service
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_documented_examples_are_the_contracts() {
        let doc = document(SharedApi::openapi(), "t", "d", 1);
        let v = serde_json::to_value(&doc).unwrap();
        assert_eq!(v["openapi"], "3.1.0");
        assert_eq!(
            v["components"]["responses"]["Unauthorized"]["content"]["application/json"]["example"],
            json!({"result": "Unauthorized", "hint": "USER-TOKEN header is missing"})
        );
        assert!(v["components"]["responses"]["Unavailable"]["headers"]["X-Request-Id"].is_object());
        assert!(v["paths"]["/health"]["get"]["responses"]["200"]["headers"]["X-Request-Id"].is_object());
    }
}
