//! The entity cache (the entity-cache role): the original sample's `<type>_ids` Sets and
//! `<type>_entity:<id>` Hashes, an order's product ids in their own List, and the indexes the
//! gateway's queries need (unbilled and billed orders), so that no query scans the log.
//!
//! It is state-based: every event carries the whole entity, so the Function
//! (`lua/entity_cache.lua`) applies an event iff its version is above the version applied for
//! that entity, and records the new version in the same atomic step. The gateway polls those
//! versions for read-your-writes.

use crate::projection::{Entry, Mode, Projection, Replayable};
use ordershop_domain::{Entity, EntityKind};
use ordershop_eventstore::{StoredEvent, Stream};
use ordershop_readmodel::{cache, keys};

const NAME: &str = ordershop_readmodel::names::ENTITY_CACHE;
const LIBRARY: &str = concat!(
    "#!lua name=ordershop_entity_cache\n",
    include_str!("lua/lease.lua"),
    include_str!("lua/entity_cache.lua")
);

/// The entity-cache projection.
#[derive(Debug, Clone, Copy, Default)]
pub struct EntityCache;

/// 1-based position of a kind in the Function's key table and in its notices.
use ordershop_readmodel::applied::kind_number as kind_index;

impl Projection for EntityCache {
    type Event = StoredEvent;

    fn name(&self) -> &'static str {
        NAME
    }

    fn streams(&self) -> Vec<String> {
        self.event_streams().iter().map(Stream::key).collect()
    }

    fn library(&self) -> &'static str {
        LIBRARY
    }

    fn library_name(&self) -> &'static str {
        keys::ENTITY_CACHE_LIBRARY
    }

    fn decode(&self, entry: &Entry) -> Result<StoredEvent, String> {
        entry.decode_event()
    }

    fn apply_call(
        &self,
        mode: Mode<'_>,
        events: &[&StoredEvent],
        _more_keys: &[String],
    ) -> redis::Cmd {
        let mut keys_table: Vec<String> = Vec::with_capacity(19 + events.len() * 2);
        keys_table.push(keys::projection_paused(NAME));
        keys_table.extend(
            EntityKind::ALL
                .iter()
                .map(|k| keys::applied_versions(NAME, *k)),
        );
        keys_table.extend(EntityKind::ALL.iter().map(|k| keys::entity_ids(*k)));
        keys_table.push(keys::orders_unbilled());
        keys_table.push(keys::orders_billed());
        keys_table.push(keys::billings_per_order(NAME));
        keys_table.extend(EntityKind::ALL.iter().map(|k| keys::entity_documents(*k)));

        let mut args: Vec<String> = mode.header().into();
        args.push(ordershop_readmodel::applied::channel());
        for event in events {
            let entity = &event.change.entity;
            let kind = entity.kind();
            keys_table.push(keys::entity(kind, entity.id()));
            args.push(kind_index(kind).to_string());
            args.push(event.change.action.as_str().to_owned());
            args.push(entity.id().to_string());
            args.push(event.version.to_string());
            args.push(cache::entity_document(entity));
            let fields = cache::entity_fields(entity);
            args.push(fields.len().to_string());
            for (name, value) in fields {
                args.push(name.to_owned());
                args.push(value);
            }
            if let Entity::Order(order) = entity {
                keys_table.push(keys::order_product_ids(order.id.0));
                let products = cache::order_product_ids(order);
                args.push(products.len().to_string());
                args.extend(products);
            } else {
                args.push("0".to_owned());
            }
        }
        let mut cmd = redis::cmd("FCALL");
        cmd.arg("cache_apply")
            .arg(keys_table.len())
            .arg(keys_table)
            .arg(args);
        cmd
    }
}

impl Replayable for EntityCache {
    fn event_streams(&self) -> Vec<Stream> {
        Stream::all()
    }

    fn state_patterns(&self) -> Vec<String> {
        let mut patterns = Vec::new();
        for kind in EntityKind::ALL {
            patterns.push(keys::entity_ids(kind));
            patterns.push(keys::entity_pattern(kind));
            patterns.push(keys::applied_versions(NAME, kind));
            patterns.push(keys::entity_documents(kind));
        }
        patterns.push(keys::order_product_ids_pattern());
        patterns.push(keys::orders_unbilled());
        patterns.push(keys::orders_billed());
        patterns.push(keys::billings_per_order(NAME));
        patterns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_library_is_named_as_the_key_scheme_says() {
        assert!(LIBRARY.starts_with(&format!("#!lua name={}\n", keys::ENTITY_CACHE_LIBRARY)));
    }

    #[test]
    fn kinds_are_numbered_as_the_function_expects() {
        assert_eq!(kind_index(EntityKind::Customer), 1);
        assert_eq!(kind_index(EntityKind::Order), 4);
        assert_eq!(kind_index(EntityKind::Billing), 5);
    }
}
