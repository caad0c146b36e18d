//! Every key of the log, built from typed parts: the event streams, the store's clock, the
//! write-side heads and unique indexes, idempotency records. Nowhere else formats a log key
//! (the read models' keys are built in `ordershop_readmodel::keys`).
//!
//! The names of the event streams are a contract with other programs (see
//! docs/adr/0001-keys-and-ids.md); the rest are internal.
//!
//! A shop may live in a [`Namespace`] (`ORDERSHOP_NAMESPACE`): then every key of it, the read
//! models' too, starts with `{<name>}:`, so that all of one shop's keys share one hash slot of
//! a Redis Cluster and several shops share one Redis without seeing each other
//! (docs/adr/0006-one-slot-per-shop.md). Without one, every key is exactly as the contract says.
//! A process serves one shop: its namespace is set once, at start, before any key is built.

use ordershop_domain::{Action, EntityKind};
use std::fmt;
use std::str::FromStr;
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

/// Prefix shared by all event streams.
pub const STREAM_PREFIX: &str = "events:";

/// One event stream: `events:<type>_<action>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Stream {
    pub kind: EntityKind,
    pub action: Action,
}

impl Stream {
    pub const fn new(kind: EntityKind, action: Action) -> Self {
        Self { kind, action }
    }

    /// The three streams of one entity type.
    pub fn of_kind(kind: EntityKind) -> [Stream; 3] {
        Action::ALL.map(|action| Stream::new(kind, action))
    }

    /// All fifteen streams of the store.
    pub fn all() -> Vec<Stream> {
        EntityKind::ALL
            .into_iter()
            .flat_map(Stream::of_kind)
            .collect()
    }

    /// The stream's key: `events:<type>_<action>` (in the shop's namespace).
    pub fn key(&self) -> String {
        named(&self.name())
    }

    /// The stream's name without the namespace: `events:<type>_<action>`.
    pub fn name(&self) -> String {
        format!("{STREAM_PREFIX}{}_{}", self.kind, self.action)
    }
}

impl fmt::Display for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.key())
    }
}

/// A stream's key (in the shop's namespace) or its bare name.
impl FromStr for Stream {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bare = namespace().strip(s).unwrap_or(s);
        let rest = bare
            .strip_prefix(STREAM_PREFIX)
            .ok_or_else(|| format!("`{s}` is not an event stream (no `{STREAM_PREFIX}` prefix)"))?;
        let (kind, action) = rest.rsplit_once('_').ok_or_else(|| {
            format!("`{s}` is not an event stream (expected events:<type>_<action>)")
        })?;
        Ok(Stream::new(kind.parse()?, action.parse()?))
    }
}

/// The store's clock: the last entry ID issued, shared by every stream.
pub fn clock() -> String {
    named("es:clock")
}

/// Write-side heads of one entity type: Hash of id -> `<version>:<entity JSON>` (JSON empty once
/// deleted). Maintained atomically with each append; commands decide on it.
pub fn heads(kind: EntityKind) -> String {
    named(&format!("es:head:{kind}"))
}

/// Write-side uniqueness constraints, enforced by the append.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UniqueIndex {
    /// product id -> its one inventory record id.
    InventoryByProduct,
    /// order id -> its one billing id.
    BillingByOrder,
}

impl UniqueIndex {
    pub fn name(self) -> &'static str {
        match self {
            UniqueIndex::InventoryByProduct => "inventory_by_product",
            UniqueIndex::BillingByOrder => "billing_by_order",
        }
    }

    /// Hash of value -> owning entity id.
    pub fn key(self) -> String {
        named(&format!("es:unique:{}", self.name()))
    }
}

/// What an append made under a client's idempotency key answered: `<fingerprint>\n<response>`,
/// kept for a day. `scope` separates services (e.g. the entity type).
pub fn idempotency(scope: &str, key: &str) -> String {
    named(&format!("es:idem:{scope}:{key}"))
}

/// Name of the Redis Function library that holds the store's scripts.
pub const FUNCTION_LIBRARY: &str = "ordershop_store";

/// Hash of stream -> entry ID below which a consumer group has acknowledged every entry,
/// recorded by the group's runner: where a group that went missing (a failover to a replica
/// that never saw it, `XGROUP DESTROY`) is created again. `es:checkpoint:<group>`.
pub fn group_checkpoint(group: &str) -> String {
    named(&format!("es:checkpoint:{group}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_names_are_exact_and_parse_back() {
        assert_eq!(
            Stream::new(EntityKind::Order, Action::Created).key(),
            "events:order_created"
        );
        assert_eq!(Stream::all().len(), 15);
        for stream in Stream::all() {
            assert_eq!(stream.key().parse::<Stream>(), Ok(stream));
        }
        assert!("events:orders_created".parse::<Stream>().is_err());
        assert!("order_created".parse::<Stream>().is_err());
    }

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
