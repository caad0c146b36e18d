//! `Idempotency-Key`: a client that retries a command after a timeout sends the same key, and
//! the command is carried out at most once — a repeat gets the first answer (marked with
//! `Idempotent-Replayed: true`) and appends nothing. The key is scoped to the entity type, and
//! bound to the request it was first used with (method, path and body): reusing it for another
//! request is refused (422). The store keeps the answer atomically with the append, for a day.

use crate::commands::IdempotencyKey;
use crate::error::ApiError;
use ordershop_domain::EntityKind;
use ordershop_eventstore::keys;

/// Longest key accepted.
pub const MAX_KEY_LEN: usize = 200;

/// The request's key (the header's value), if it sent one; 400 when it is not 1–200 of
/// `A-Z a-z 0-9 - _ . :`.
pub fn key_of(header: Option<&[u8]>) -> Result<Option<String>, ApiError> {
    let Some(value) = header else {
        return Ok(None);
    };
    let key = std::str::from_utf8(value).unwrap_or_default();
    let sane = !key.is_empty()
        && key.len() <= MAX_KEY_LEN
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'));
    if !sane {
        return Err(ApiError::bad_request(format!(
            "the Idempotency-Key header must be 1 to {MAX_KEY_LEN} characters of A-Z, a-z, 0-9, \
             `-`, `_`, `.` and `:`"
        )));
    }
    Ok(Some(key.to_owned()))
}

/// The key as the command service uses it: scoped to `kind`, bound to the request (`method`,
/// `path` without its query, and body).
pub fn scoped(
    kind: EntityKind,
    key: Option<String>,
    method: &str,
    path: &str,
    body: Option<&serde_json::Value>,
) -> Option<IdempotencyKey> {
    let key = key?;
    let canonical = body.map(ToString::to_string).unwrap_or_default();
    Some(IdempotencyKey {
        key: keys::idempotency(kind.as_str(), &key),
        fingerprint: fingerprint(&[method, path, &canonical]),
    })
}

/// FNV-1a (64 bits) over the parts: a stable digest that tells two requests apart. Not a
/// security boundary (the key is the client's own), so a cryptographic hash is not needed.
fn fingerprint(parts: &[&str]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in part.bytes().chain([0u8]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_tell_requests_apart_and_are_stable() {
        let a = fingerprint(&["POST", "/order", r#"{"a":1}"#]);
        assert_eq!(a, fingerprint(&["POST", "/order", r#"{"a":1}"#]));
        assert_ne!(a, fingerprint(&["POST", "/order", r#"{"a":2}"#]));
        assert_ne!(a, fingerprint(&["POST", "/orde", r#"r{"a":1}"#]));
        assert_eq!(fingerprint(&[]), "cbf29ce484222325");
    }
}
