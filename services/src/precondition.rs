//! Client-side optimistic concurrency over HTTP: `GET /<item>/{id}` answers with an `ETag`, the
//! entity's version (`"3"`), and `PUT` or `DELETE` with `If-Match` carry the change out only if
//! the entity is still at one of the versions given (`*`: at any, as long as it exists). The
//! check runs inside the command's read-decide-append loop against the version the append is
//! guarded by, so it is atomic with the append: a change that lands in between makes the append
//! conflict, the loop reads again, and the check then refuses (412, nothing appended).

use std::fmt;

/// A parsed `If-Match` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IfMatch {
    /// `*`: the entity must exist.
    Any,
    /// One of these versions.
    Versions(Vec<u64>),
}

/// The `ETag` of an entity at `version`.
pub fn etag(version: u64) -> String {
    format!("\"{version}\"")
}

impl IfMatch {
    /// Parses the header's value: `*`, or a comma-separated list of entity tags (`"3"`, with
    /// or without the weak `W/` prefix). A tag that is not one of this shop's can match no
    /// version, so it is kept as a tag that matches nothing (the request then gets 412, as
    /// for any other version the entity is not at).
    pub fn parse(value: &[u8]) -> Self {
        let text = String::from_utf8_lossy(value);
        let text = text.trim();
        if text == "*" {
            return IfMatch::Any;
        }
        let versions = text
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(|tag| {
                let opaque = tag.strip_prefix("W/").unwrap_or(tag);
                opaque
                    .strip_prefix('"')
                    .and_then(|t| t.strip_suffix('"'))
                    .and_then(|t| t.parse::<u64>().ok())
                    // Versions start at 1: 0 is never an entity's.
                    .unwrap_or(0)
            })
            .collect();
        IfMatch::Versions(versions)
    }

    /// Whether an entity at `current` (0: it does not exist) satisfies the condition.
    pub fn accepts(&self, current: u64) -> bool {
        match self {
            IfMatch::Any => current > 0,
            IfMatch::Versions(versions) => current > 0 && versions.contains(&current),
        }
    }
}

impl fmt::Display for IfMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IfMatch::Any => f.write_str("*"),
            IfMatch::Versions(versions) => {
                let tags: Vec<String> = versions.iter().map(|v| etag(*v)).collect();
                if tags.is_empty() {
                    return f.write_str("no entity tag");
                }
                f.write_str(&tags.join(", "))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_parse_and_match_only_the_current_version() {
        let two = IfMatch::parse(br#""2""#);
        assert!(two.accepts(2));
        assert!(!two.accepts(3));
        assert!(!two.accepts(0));
        let either = IfMatch::parse(br#"W/"1", "4""#);
        assert!(either.accepts(4) && either.accepts(1) && !either.accepts(2));
        assert!(IfMatch::parse(b"*").accepts(7));
        assert!(!IfMatch::parse(b"*").accepts(0));
        // What is not a tag of this shop matches no version.
        for bad in [&b"2"[..], b"\"two\"", b"", b"\xff", b"\"0\""] {
            assert!(!IfMatch::parse(bad).accepts(2), "{bad:?}");
        }
        assert_eq!(etag(5), "\"5\"");
    }
}
