//! Every key of the log, built from typed parts: the event streams, the store's clock, the
//! write-side heads and unique indexes, idempotency records. Nowhere else formats a log key
//! (the read models' keys are built in `ordershop_readmodel::keys`).
//!
//! The names of the event streams are a contract with other programs (see
//! docs/adr/0001-keys-and-ids.md); the rest are internal.
//!
//! Every key is built in the shop's namespace (`ordershop_redis::namespace`); without one, every
//! key is exactly as the contract says.

use ordershop_domain::{Action, EntityKind};
use ordershop_redis::namespace::{named, namespace};
use std::fmt;
use std::str::FromStr;

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

    /// The streams of these entity types and actions, where an empty list means all of them:
    /// what a filter on types and actions reads.
    pub fn selected(kinds: &[EntityKind], actions: &[Action]) -> Vec<Stream> {
        Stream::all()
            .into_iter()
            .filter(|s| kinds.is_empty() || kinds.contains(&s.kind))
            .filter(|s| actions.is_empty() || actions.contains(&s.action))
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
}
