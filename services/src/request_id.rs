//! Request ids: every request gets one, so that one order can be followed through the logs from
//! the gateway to the CRM's message.
//!
//! A client may send `X-Request-Id`; a sane value (1 to 128 characters of letters, digits and
//! `-_.:`) is kept, anything else is replaced by a new UUID. The id is put in the request's
//! tracing span and echoed in the response; the gateway forwards it to the domain service, which
//! stores it on every event it appends (the entry field `request_id`); the projections log it
//! with each event they apply and the CRM copies it onto the messages it writes.

use std::fmt;
use uuid::Uuid;

/// Longest client-chosen id kept.
const MAX_LEN: usize = 128;

/// The id of one request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RequestId(String);

impl RequestId {
    /// The client's id when it is sane, else a new one.
    pub fn from_header(value: Option<&[u8]>) -> Self {
        value
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(Self::parse)
            .unwrap_or_else(Self::new_random)
    }

    /// A client-chosen id, if it is sane.
    pub fn parse(value: &str) -> Option<Self> {
        let sane = !value.is_empty()
            && value.len() <= MAX_LEN
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
        sane.then(|| Self(value.to_owned()))
    }

    pub fn new_random() -> Self {
        Self(Uuid::new_v4().to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sane_client_id_is_kept_and_anything_else_replaced() {
        let kept = RequestId::from_header(Some(b"order-42:retry.1_a"));
        assert_eq!(kept.as_str(), "order-42:retry.1_a");
        for bad in [
            &b""[..],
            b"has space",
            b"new\nline",
            b"\xff\xfe",
            &[b'a'; 129][..],
        ] {
            let replaced = RequestId::from_header(Some(bad));
            assert!(Uuid::parse_str(replaced.as_str()).is_ok(), "{bad:?}");
        }
        assert!(Uuid::parse_str(RequestId::from_header(None).as_str()).is_ok());
    }
}
