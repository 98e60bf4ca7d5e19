//! What other services may know of an access token: its keyed hash ([`token_hash`]), and a
//! short tag for logs ([`token_fingerprint`]). A leaf: it needs nothing else of the crate.

use std::sync::OnceLock;

use hmac::{Mac, SimpleHmac};
use sha2::Sha256;

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
    // Hex without a `format!` per byte: every request's token is hashed once.
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = mac.finalize().into_bytes();
    let mut out = String::with_capacity(32);
    for b in &digest[..16] {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    out
}

/// The header every RPC answer carries with [`key_id`]: a receiver with another key learns it
/// at the first answer (an epoch probe, at the latest, every `EPOCH_PROBE_MS`).
pub const TOKEN_KEY_HEADER: &str = "x-moa-token-key";

/// Names this process's `TOKEN_HASH_KEY` without revealing it: the HMAC of a fixed text under
/// the key, 64 bits in hex. Equal ids: equal keys.
pub fn key_id() -> String {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| token_hash("moa token key id")[..16].to_string()).clone()
}

/// The publishers whose last answer named another key than ours (login → their key id).
static PEERS_WITH_OTHER_KEYS: std::sync::Mutex<Vec<(String, String)>> = std::sync::Mutex::new(Vec::new());
/// Whether that list is not empty: every user lookup asks, and a load of a flag, not a
/// process-wide lock, is what the hot path can afford. Written under the list's lock.
static ANY_PEER_WITH_OTHER_KEY: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Notes the key id `theirs` an answer from `publisher` carried. A mismatch is logged at `error`
/// when it starts; an answer with our key clears it (the peer was restarted with the right one).
pub fn note_peer_key(publisher: &str, theirs: &str) {
    let ours = key_id();
    let mut peers = PEERS_WITH_OTHER_KEYS.lock().unwrap_or_else(|p| p.into_inner());
    let known = peers.iter().position(|(p, _)| p == publisher);
    match (theirs == ours, known) {
        (true, Some(i)) => {
            peers.remove(i);
            log::info!("{publisher} now hashes tokens with this service's TOKEN_HASH_KEY");
        }
        (false, None) => {
            log::error!(
                "{publisher} hashes tokens with another TOKEN_HASH_KEY (key id {theirs}) than this service \
                 ({ours}): no token it sends can be found here, so requests needing a user are 503 and \
                 /ready is 503 until every service has the same key (docs/security.md)"
            );
            peers.push((publisher.to_string(), theirs.to_string()));
        }
        _ => return,
    }
    ANY_PEER_WITH_OTHER_KEY.store(!peers.is_empty(), std::sync::atomic::Ordering::Release);
}

/// The publishers known to hash with another key than ours, if any.
pub fn peers_with_other_keys() -> Vec<String> {
    if !ANY_PEER_WITH_OTHER_KEY.load(std::sync::atomic::Ordering::Acquire) {
        return Vec::new();
    }
    PEERS_WITH_OTHER_KEYS.lock().unwrap_or_else(|p| p.into_inner()).iter().map(|(p, _)| p.clone()).collect()
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn a_peer_with_another_key_is_known_until_it_answers_with_ours() {
        assert_eq!(key_id().len(), 16);
        assert!(!key_id().contains(DEVELOPMENT_TOKEN_KEY));
        note_peer_key("test-peer", "0000000000000000");
        assert_eq!(peers_with_other_keys(), ["test-peer"]);
        note_peer_key("test-peer", "0000000000000000");
        assert_eq!(peers_with_other_keys(), ["test-peer"], "noted once");
        note_peer_key("test-peer", &key_id());
        assert!(peers_with_other_keys().is_empty());
    }

    #[test]
    fn fingerprints_do_not_reveal_the_token() {
        let fp = token_fingerprint("ae0d863d-6963-41a2-919e-66e0695be7d7");
        assert!(fp.starts_with("tok#") && fp.len() == 12);
        assert!(!fp.contains("ae0d"));
        assert_eq!(fp, token_fingerprint("ae0d863d-6963-41a2-919e-66e0695be7d7"));
    }
}
