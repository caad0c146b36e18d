//! Every Redis key OrderShop uses, built from typed parts. Nowhere else formats a key string.
//!
//! The names of the event streams and of the entity cache's Sets and Hashes are a contract
//! with other programs (see docs/adr/0001-keys-and-ids.md); the rest are internal.

use ordershop_domain::{Action, EntityKind};
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

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

    pub fn key(&self) -> String {
        format!("{STREAM_PREFIX}{}_{}", self.kind, self.action)
    }
}

impl fmt::Display for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.key())
    }
}

impl FromStr for Stream {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let rest = s
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
    "es:clock".to_owned()
}

/// Write-side heads of one entity type: Hash of id -> `<version>:<entity JSON>` (JSON empty once
/// deleted). Maintained atomically with each append; commands decide on it.
pub fn heads(kind: EntityKind) -> String {
    format!("es:head:{kind}")
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
        format!("es:unique:{}", self.name())
    }
}

/// Name of the Redis Function library that holds the store's scripts.
pub const FUNCTION_LIBRARY: &str = "ordershop_store";

// ---------------------------------------------------------------------------------------------
// Entity cache (the original sample's layout, plus indexes)

/// Set of the ids of every live entity of a type: `<type>_ids`.
pub fn entity_ids(kind: EntityKind) -> String {
    format!("{kind}_ids")
}

/// Hash of an entity's scalar fields: `<type>_entity:<id>`.
pub fn entity(kind: EntityKind, id: Uuid) -> String {
    format!("{kind}_entity:{id}")
}

/// List of an order's product ids, one per unit: `order_product_ids:<id>`.
pub fn order_product_ids(order: Uuid) -> String {
    format!("order_product_ids:{order}")
}

/// Set of the ids of orders that have no billing: `orders_unbilled`.
pub fn orders_unbilled() -> String {
    "orders_unbilled".to_owned()
}

/// Set of the ids of orders that have a billing: `orders_billed`.
pub fn orders_billed() -> String {
    "orders_billed".to_owned()
}

/// Hash of entity id -> version applied by a projection, kept after deletes so that a late,
/// older event cannot resurrect an entity.
pub fn applied_versions(projection: &str, kind: EntityKind) -> String {
    format!("{projection}:versions:{kind}")
}

/// Stream of entries a projection gave up on after too many deliveries.
pub fn dead_letters(projection: &str) -> String {
    format!("{projection}:dead")
}

// ---------------------------------------------------------------------------------------------
// Messages (CRM outbox and the message service's mail sink)

/// Stream of customer messages to deliver, written by the CRM atomically with its state
/// change (and by `POST /email`); consumed by the message service's group.
pub fn outbox() -> String {
    "crm:outbox".to_owned()
}

/// Set of the message ids already delivered: the message service's dedupe.
pub fn delivered_ids() -> String {
    "msg:delivered_ids".to_owned()
}

/// Stream of delivered messages, in delivery order: what `GET /emails` lists.
pub fn delivered() -> String {
    "msg:emails".to_owned()
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
    fn entity_cache_keys_follow_the_original_layout() {
        let id = Uuid::nil();
        assert_eq!(entity_ids(EntityKind::Customer), "customer_ids");
        assert_eq!(
            entity(EntityKind::Product, id),
            "product_entity:00000000-0000-0000-0000-000000000000"
        );
    }
}
