//! Every key outside the log, built from typed parts: the entity cache (the original sample's
//! layout plus indexes), the CRM view, the CRM's outbox and the message service's mail sink,
//! and the projections' own bookkeeping (applied versions, dead letters, pause leases). Nowhere
//! else formats one of these keys (the log's keys are built in `ordershop_eventstore::keys`).
//!
//! The entity cache's `<type>_ids` and `<type>_entity:<id>` are a contract with other programs
//! (see docs/adr/0001-keys-and-ids.md); the rest are internal. docs/projections.md says what
//! each key holds.

use ordershop_domain::EntityKind;
use ordershop_redis::namespace::named;
use uuid::Uuid;

// ---------------------------------------------------------------------------------------------
// Entity cache (the original sample's layout, plus indexes)

/// Set of the ids of every live entity of a type: `<type>_ids`.
pub fn entity_ids(kind: EntityKind) -> String {
    named(&format!("{kind}_ids"))
}

/// Hash of an entity's scalar fields: `<type>_entity:<id>`.
pub fn entity(kind: EntityKind, id: Uuid) -> String {
    named(&format!("{kind}_entity:{id}"))
}

/// List of an order's product ids, one per unit: `order_product_ids:<id>`.
pub fn order_product_ids(order: Uuid) -> String {
    named(&format!("order_product_ids:{order}"))
}

/// Hash of id -> the live entity's JSON as the API serves it: `entity-cache:documents:<type>`.
/// Written with the entity's Hash in the same Function call, so that a list is one read with
/// nothing to decode.
pub fn entity_documents(kind: EntityKind) -> String {
    named(&format!("entity-cache:documents:{kind}"))
}

/// Set of the ids of orders that have no billing: `orders_unbilled`.
pub fn orders_unbilled() -> String {
    named("orders_unbilled")
}

/// Set of the ids of orders that have a billing: `orders_billed`.
pub fn orders_billed() -> String {
    named("orders_billed")
}

/// Hash of entity id -> version applied by a projection, kept after deletes so that a late,
/// older event cannot resurrect an entity.
pub fn applied_versions(projection: &str, kind: EntityKind) -> String {
    named(&format!("{projection}:versions:{kind}"))
}

/// Stream of entries a projection gave up on after too many deliveries.
pub fn dead_letters(projection: &str) -> String {
    named(&format!("{projection}:dead"))
}

/// Hash of a projection's last error: `kind`, `message`, `entry`, `at_ms`, `consumer`.
pub fn projection_last_error(projection: &str) -> String {
    named(&format!("{projection}:last_error"))
}

/// Hash of consumer name -> unix ms when it last said it was alive.
pub fn projection_heartbeats(projection: &str) -> String {
    named(&format!("{projection}:heartbeats"))
}

/// Hash of what operators did to a projection's dead letters: `retried` (applied on retry),
/// `discarded`.
pub fn dead_letter_actions(projection: &str) -> String {
    named(&format!("{projection}:dead:actions"))
}

// ---------------------------------------------------------------------------------------------
// Messages (CRM outbox and the message service's mail sink)

/// Stream of customer messages to deliver, written by the CRM atomically with its state
/// change (and by `POST /email`); consumed by the message service's group.
pub fn outbox() -> String {
    named("crm:outbox")
}

/// Set of the message ids already delivered: the message service's dedupe.
pub fn delivered_ids() -> String {
    named("msg:delivered_ids")
}

/// Stream of delivered messages, in delivery order: what `GET /emails` lists.
pub fn delivered() -> String {
    named("msg:emails")
}

// ---------------------------------------------------------------------------------------------
// Projections (projections/): runner bookkeeping, entity-cache internals, the CRM view and the
// CRM's mailer. See docs/projections.md for what each key holds.

/// Names of the projections' Redis Function libraries (the `#!lua name=` line of each source in
/// `projections/src/lua/`).
pub const ENTITY_CACHE_LIBRARY: &str = "ordershop_entity_cache";
pub const CRM_LIBRARY: &str = "ordershop_crm";
pub const CRM_MAILER_LIBRARY: &str = "ordershop_crm_mailer";
pub const MSG_LIBRARY: &str = "ordershop_msg";
pub const RUNNER_LIBRARY: &str = "ordershop_runner";

/// A SCAN MATCH pattern for every key that starts with `prefix` (a key prefix built here, so
/// already in the shop's namespace).
pub fn prefix_pattern(prefix: &str) -> String {
    format!("{prefix}*")
}

/// String holding the token of the rebuild that pauses a projection: `<projection>:paused`.
/// While it exists, the projection's Function refuses live batches (they are retried later).
/// It carries an expiry (a lease) that the rebuild keeps renewing.
pub fn projection_paused(projection: &str) -> String {
    named(&format!("{projection}:paused"))
}

/// Pattern for every entity Hash of a type (`<type>_entity:*`), for wiping the cache.
pub fn entity_pattern(kind: EntityKind) -> String {
    prefix_pattern(&named(&format!("{kind}_entity:")))
}

/// Pattern for every order's product-id List (`order_product_ids:*`).
pub fn order_product_ids_pattern() -> String {
    prefix_pattern(&named("order_product_ids:"))
}

/// Hash of order id -> number of live billings of that order, as a projection has seen them.
/// It lets the unbilled/billed indexes converge whatever order billings and orders arrive in.
pub fn billings_per_order(projection: &str) -> String {
    named(&format!("{projection}:billings_per_order"))
}

/// Prefix of the CRM's per-customer Hash (`crm:customer:<id>`): profile, status and counters.
pub fn crm_customer_prefix() -> String {
    named("crm:customer:")
}

/// Prefix of the CRM's per-customer Hash of product id -> units bought (`crm:customer_products:<id>`).
pub fn crm_customer_products_prefix() -> String {
    named("crm:customer_products:")
}

/// Prefix of the CRM's record of an order (`crm:order:<id>`): what it counts for its customer,
/// and its number of live billings.
pub fn crm_order_prefix() -> String {
    named("crm:order:")
}

/// Prefix of the mailer's messages waiting for a customer's address (`crm:mail:waiting_customer:<id>`).
pub fn crm_waiting_customer_prefix() -> String {
    named("crm:mail:waiting_customer:")
}

/// Prefix of the mailer's receipts waiting for their order (`crm:mail:waiting_order:<id>`).
pub fn crm_waiting_order_prefix() -> String {
    named("crm:mail:waiting_order:")
}

pub fn crm_customer(id: Uuid) -> String {
    format!("{}{id}", crm_customer_prefix())
}

pub fn crm_customer_products(id: Uuid) -> String {
    format!("{}{id}", crm_customer_products_prefix())
}

pub fn crm_order(id: Uuid) -> String {
    format!("{}{id}", crm_order_prefix())
}

/// Hash of live billing id -> its order id, as the CRM has seen them.
pub fn crm_billing_orders() -> String {
    named("crm:billing_orders")
}

/// Hash of customer id -> the entry ID of its latest order as fixed-width text (the rank that
/// decides the CRM's `last_order_*` fields).
pub fn crm_last_order_ranks() -> String {
    named("crm:last_order_ranks")
}

/// The CRM's customer segments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CrmSegment {
    /// Every customer the CRM has a profile of.
    All,
    Active,
    Deleted,
    /// Customers with at least one live order that has no live billing.
    Unbilled,
}

impl CrmSegment {
    pub const ALL: [CrmSegment; 4] = [
        CrmSegment::All,
        CrmSegment::Active,
        CrmSegment::Deleted,
        CrmSegment::Unbilled,
    ];

    pub fn name(self) -> &'static str {
        match self {
            CrmSegment::All => "all",
            CrmSegment::Active => "active",
            CrmSegment::Deleted => "deleted",
            CrmSegment::Unbilled => "unbilled",
        }
    }

    /// Set of customer ids: `crm:segment:<name>`.
    pub fn key(self) -> String {
        named(&format!("crm:segment:{}", self.name()))
    }
}

/// Set of the ids of every message the CRM's mailer has written to the outbox: its dedupe.
pub fn crm_sent_ids() -> String {
    named("crm:mail:sent_ids")
}

/// Hash of customer id -> messages the mailer wrote to the outbox for them.
pub fn crm_messages_sent() -> String {
    named("crm:mail:sent_per_customer")
}

/// Hash of `<type>:<id>` -> what the mailer knows of an entity (JSON, latest version): a
/// customer's name and address, an order's customer and total, a product's name.
pub fn crm_mail_directory() -> String {
    named("crm:mail:directory")
}

pub fn crm_waiting_for_customer(id: Uuid) -> String {
    format!("{}{id}", crm_waiting_customer_prefix())
}

pub fn crm_waiting_for_order(id: Uuid) -> String {
    format!("{}{id}", crm_waiting_order_prefix())
}

#[cfg(test)]
mod projection_key_tests {
    use super::*;

    #[test]
    fn projection_keys_are_named_as_documented() {
        let id = Uuid::nil();
        assert_eq!(projection_paused("crm"), "crm:paused");
        assert_eq!(entity_pattern(EntityKind::Order), "order_entity:*");
        assert_eq!(order_product_ids_pattern(), "order_product_ids:*");
        assert_eq!(
            billings_per_order("entity-cache"),
            "entity-cache:billings_per_order"
        );
        assert_eq!(
            crm_customer(id),
            "crm:customer:00000000-0000-0000-0000-000000000000"
        );
        assert_eq!(
            crm_waiting_for_order(id),
            "crm:mail:waiting_order:00000000-0000-0000-0000-000000000000"
        );
        assert_eq!(CrmSegment::Unbilled.key(), "crm:segment:unbilled");
        // A prefix pattern of one family never matches another family's keys.
        assert!(!crm_customer_products(id).starts_with(&crm_customer_prefix()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
