//! The `USER-TOKEN` check every endpoint makes.

use actix_web::HttpRequest;

use common::{error::ApiError, token::token_fingerprint};

use crate::{KnownUser, UserDirectory};

pub const HEADER: &str = "USER-TOKEN";
/// Longer tokens are refused without a lookup (ours are 36 characters).
pub const MAX_TOKEN_LEN: usize = 128;

/// A token as sent by the client: present, non-empty, printable ASCII, bounded.
#[derive(Clone, PartialEq, Eq)]
pub struct UserToken(String);

impl UserToken {
    pub fn parse(req: &HttpRequest) -> Result<UserToken, ApiError> {
        let mut values = req.headers().get_all(HEADER);
        let Some(value) = values.next() else {
            return Err(ApiError::Unauthorized("USER-TOKEN header is missing".into()));
        };
        if values.next().is_some() {
            return Err(ApiError::Unauthorized("send exactly one USER-TOKEN header".into()));
        }
        let Ok(text) = value.to_str() else {
            return Err(ApiError::Unauthorized("USER-TOKEN must be printable ASCII".into()));
        };
        let text = text.trim();
        if text.is_empty() {
            return Err(ApiError::Unauthorized("USER-TOKEN header is empty".into()));
        }
        if text.len() > MAX_TOKEN_LEN || !text.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ApiError::Unauthorized("USER-TOKEN is not a valid access token".into()));
        }
        Ok(UserToken(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for UserToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "UserToken({})", token_fingerprint(&self.0))
    }
}

/// The calling user, or 401 (unknown token) / 503 (cannot tell: the user service and the
/// cache both cannot answer).
pub async fn authenticate(req: &HttpRequest, users: &UserDirectory) -> Result<KnownUser, ApiError> {
    let token = UserToken::parse(req)?;
    match users.by_token(token.as_str()).await {
        Ok(Some(user)) => Ok(user),
        Ok(None) => Err(ApiError::Unauthorized("USER-TOKEN does not belong to any user".into())),
        Err(e) => Err(ApiError::from_dependency(e, "this USER-TOKEN")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn parse(req: TestRequest) -> Result<UserToken, ApiError> {
        UserToken::parse(&req.to_http_request())
    }

    #[test]
    fn missing_empty_and_odd_tokens_are_401_with_a_hint() {
        let e = parse(TestRequest::default()).unwrap_err();
        assert!(matches!(e, ApiError::Unauthorized(ref h) if h.contains("missing")));
        let e = parse(TestRequest::default().insert_header((HEADER, ""))).unwrap_err();
        assert!(matches!(e, ApiError::Unauthorized(ref h) if h.contains("empty")));
        let long = "a".repeat(MAX_TOKEN_LEN + 1);
        assert!(parse(TestRequest::default().insert_header((HEADER, long.as_str()))).is_err());
        assert!(parse(TestRequest::default().insert_header((HEADER, "a b"))).is_err());
        let ok = parse(TestRequest::default().insert_header(("user-token", " abc "))).unwrap();
        assert_eq!(ok.as_str(), "abc");
    }
}
