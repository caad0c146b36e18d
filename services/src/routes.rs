//! The paths of the HTTP API, as one table: which paths belong to which entity type. Both the
//! domain services (which serve the command routes of their own type) and the gateway (which
//! serves all of them) build their routes from it, so the five types never drift apart.

use ordershop_domain::EntityKind;

/// The paths of one entity type, as the original sample named them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntityPaths {
    pub kind: EntityKind,
    /// The list path: `GET` lists, `POST` creates (e.g. `/customers`).
    pub collection: &'static str,
    /// The single-entity path: `POST` creates, `/<item>/{id}` reads, updates and deletes
    /// (e.g. `/customer`). The same as `collection` for inventory.
    pub item: &'static str,
}

pub const ENTITY_PATHS: [EntityPaths; 5] = [
    EntityPaths {
        kind: EntityKind::Customer,
        collection: "/customers",
        item: "/customer",
    },
    EntityPaths {
        kind: EntityKind::Product,
        collection: "/products",
        item: "/product",
    },
    EntityPaths {
        kind: EntityKind::Inventory,
        collection: "/inventory",
        item: "/inventory",
    },
    EntityPaths {
        kind: EntityKind::Order,
        collection: "/orders",
        item: "/order",
    },
    EntityPaths {
        kind: EntityKind::Billing,
        collection: "/billings",
        item: "/billing",
    },
];

/// Orders without a billing (gateway).
pub const UNBILLED_ORDERS: &str = "/orders/unbilled";
/// Every entity of every type (gateway).
pub const REPORT: &str = "/report";
/// Every role.
pub const HEALTH: &str = "/health";
/// msg-service: send a message.
pub const EMAIL: &str = "/email";
/// msg-service: list delivered messages.
pub const EMAILS: &str = "/emails";

impl EntityPaths {
    pub fn of(kind: EntityKind) -> EntityPaths {
        match kind {
            EntityKind::Customer => ENTITY_PATHS[0],
            EntityKind::Product => ENTITY_PATHS[1],
            EntityKind::Inventory => ENTITY_PATHS[2],
            EntityKind::Order => ENTITY_PATHS[3],
            EntityKind::Billing => ENTITY_PATHS[4],
        }
    }

    /// `/<item>/{id}`, as an actix path pattern.
    pub fn with_id(&self) -> String {
        format!("{}/{{id}}", self.item)
    }

    /// The item path when it differs from the collection path.
    pub fn separate_item(&self) -> Option<&'static str> {
        (self.item != self.collection).then_some(self.item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_its_paths() {
        for kind in EntityKind::ALL {
            assert_eq!(EntityPaths::of(kind).kind, kind);
        }
        assert_eq!(EntityPaths::of(EntityKind::Order).with_id(), "/order/{id}");
        assert_eq!(EntityPaths::of(EntityKind::Inventory).separate_item(), None);
    }
}
