//! A shop's key namespace (`ORDERSHOP_NAMESPACE`): every key of a namespaced shop, the log's
//! and the read models', starts with `{<name>}:`, so that all of one shop's keys share one hash
//! slot of a Redis Cluster (where the connection sends its keyless commands) and several shops
//! share one Redis without seeing each other (docs/adr/0006-one-slot-per-shop.md). A process
//! serves one shop: its namespace is set once, at start, before any key is built.

use std::fmt;
use std::sync::OnceLock;

/// The environment variable that names a shop's namespace.
pub const NAMESPACE_VAR: &str = "ORDERSHOP_NAMESPACE";

/// The longest namespace name.
pub const MAX_NAMESPACE_LEN: usize = 64;

/// A shop's key namespace: none (keys as the contract names them), or a name whose hash tag
/// `{<name>}:` starts every key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Namespace(Option<String>);

impl Namespace {
    /// No namespace: every key as the contract names it.
    pub const NONE: Namespace = Namespace(None);

    /// A namespace from its name: 1 to 64 of letters, digits, `-` and `_` (none of which can
    /// end a hash tag or mean something to SCAN's patterns). An empty name is no namespace.
    pub fn parse(name: &str) -> Result<Namespace, String> {
        if name.is_empty() {
            return Ok(Namespace::NONE);
        }
        if name.len() > MAX_NAMESPACE_LEN {
            return Err(format!(
                "the namespace `{name}` is longer than {MAX_NAMESPACE_LEN} characters"
            ));
        }
        if let Some(bad) = name
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
        {
            return Err(format!(
                "the namespace `{name}` contains `{bad}`: use letters, digits, `-` and `_`"
            ));
        }
        Ok(Namespace(Some(name.to_owned())))
    }

    pub fn name(&self) -> Option<&str> {
        self.0.as_deref()
    }

    /// What starts every key of the shop: `{<name>}:`, or nothing.
    pub fn prefix(&self) -> String {
        self.0
            .as_deref()
            .map_or_else(String::new, |name| format!("{{{name}}}:"))
    }

    /// `bare` in this namespace.
    pub fn key(&self, bare: &str) -> String {
        match &self.0 {
            None => bare.to_owned(),
            Some(name) => format!("{{{name}}}:{bare}"),
        }
    }

    /// The bare name of a key of this namespace; `None` for a key outside it.
    pub fn strip<'a>(&self, key: &'a str) -> Option<&'a str> {
        match &self.0 {
            None => Some(key),
            Some(name) => key
                .strip_prefix('{')?
                .strip_prefix(name.as_str())?
                .strip_prefix("}:"),
        }
    }
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name().unwrap_or("(none)"))
    }
}

static CURRENT: OnceLock<Namespace> = OnceLock::new();

/// Sets the process's namespace. Once: a second call with another namespace, or a call after a
/// key was already built (which fixed the namespace to none), is an error.
pub fn use_namespace(namespace: Namespace) -> Result<(), String> {
    let current = CURRENT.get_or_init(|| namespace.clone());
    if *current == namespace {
        Ok(())
    } else {
        Err(format!(
            "the key namespace is already `{current}`: a process serves one shop"
        ))
    }
}

/// The process's namespace (none unless [`use_namespace`] set one).
pub fn namespace() -> &'static Namespace {
    CURRENT.get_or_init(Namespace::default)
}

/// The process's namespace if one was set (or fixed by a key built before), without fixing it.
pub fn namespace_if_set() -> Option<&'static Namespace> {
    CURRENT.get()
}

/// `bare` in the process's namespace: how every key builder, here and in the read models,
/// names its key.
pub fn named(bare: &str) -> String {
    namespace().key(bare)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_namespace_prefixes_a_hash_tag_and_is_stripped_back() {
        let acme = Namespace::parse("acme-1_x").unwrap();
        assert_eq!(
            acme.key("events:order_created"),
            "{acme-1_x}:events:order_created"
        );
        assert_eq!(acme.strip("{acme-1_x}:es:clock"), Some("es:clock"));
        assert_eq!(acme.strip("es:clock"), None);
        assert_eq!(acme.strip("{other}:es:clock"), None);
        assert_eq!(Namespace::NONE.key("es:clock"), "es:clock");
        assert_eq!(Namespace::parse(""), Ok(Namespace::NONE));
        for bad in ["a}b", "{a", "a*", "a b", "ä", &"x".repeat(65)] {
            assert!(Namespace::parse(bad).is_err(), "{bad}");
        }
    }
}
