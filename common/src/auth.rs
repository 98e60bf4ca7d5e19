//! The `USER-TOKEN` check every endpoint makes.

use actix_web::HttpRequest;

use std::sync::OnceLock;

use hmac::{Mac, SimpleHmac};
use sha2::Sha256;

use crate::{entity::KnownUser, error::ApiError, replica::UserDirectory};

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

/// A short, stable, non-reversible tag of a token for logs (FNV-1a, 32 bits).
pub fn token_fingerprint(token: &str) -> String {
    let mut h: u32 = 0x811c_9dc5;
    for b in token.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    format!("tok#{h:08x}")
}

/// The key of [`token_hash`] when `TOKEN_HASH_KEY` is not set: fine for one machine's
/// development stack (every service there uses it), never for a deployment (docs/security.md).
pub const DEVELOPMENT_TOKEN_KEY: &str = "moa-local-development-token-key";

/// The process's token key, installed once at start from the settings.
static TOKEN_KEY: OnceLock<Vec<u8>> = OnceLock::new();

/// Installs the key every [`token_hash`] of this process uses (the first call wins: a process
/// runs one service with one key).
pub fn install_token_key(key: &str) {
    let _ = TOKEN_KEY.set(key.as_bytes().to_vec());
}

/// What other services know of a token: HMAC-SHA256 under the deployment's shared
/// `TOKEN_HASH_KEY`, its first 128 bits in hex. The user service sends this instead of the
/// token in its events and answers; every service hashes a request's `USER-TOKEN` to look it
/// up, so caches, hot copies and read models never hold a token. Keyed, so that a copy of a
/// consumer's database without the key cannot be searched for a guessed token.
pub fn token_hash(token: &str) -> String {
    let key = TOKEN_KEY.get().map(Vec::as_slice).unwrap_or(DEVELOPMENT_TOKEN_KEY.as_bytes());
    // An HMAC accepts a key of any length.
    let mut mac = <SimpleHmac<Sha256> as hmac::KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(token.as_bytes());
    let digest = mac.finalize().into_bytes();
    let mut out = String::with_capacity(32);
    for b in &digest[..16] {
        out.push_str(&format!("{b:02x}"));
    }
    out
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

    #[test]
    fn the_token_hash_is_keyed_hmac_sha256_cut_to_128_bits() {
        // `printf t | openssl dgst -sha256 -hmac moa-local-development-token-key`, cut to 32 hex
        // digits (no key is installed in unit tests).
        let h = token_hash("t");
        assert_eq!(h, "2ce8c71b021ef9edef8812a9af25dc0a");
        assert!(h.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(h, token_hash("t"), "stable");
        assert_ne!(h, token_hash("u"));
        assert!(!h.contains('t'));
    }

    #[test]
    fn fingerprints_do_not_reveal_the_token() {
        let fp = token_fingerprint("ae0d863d-6963-41a2-919e-66e0695be7d7");
        assert!(fp.starts_with("tok#") && fp.len() == 12);
        assert!(!fp.contains("ae0d"));
        assert_eq!(fp, token_fingerprint("ae0d863d-6963-41a2-919e-66e0695be7d7"));
    }
}
