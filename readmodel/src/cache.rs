//! The entity cache's Hash codec: how an entity is laid out in `<type>_entity:<id>` (scalar
//! fields as strings, as in the original sample) and read back. An order's product ids live in
//! their own List, `order_product_ids:<id>`, so they are passed separately.
//!
//! The projector writes with [`entity_fields`]; [`crate::CacheReader`] reads with
//! [`entity_from_fields`]. Beside the Hashes the cache keeps each live entity's JSON as the API
//! serves it ([`entity_document`]), so that a list is served without decoding anything.

use ordershop_domain::{
    Billing, Customer, Email, Entity, EntityKind, Inventory, Money, Name, Order, Product, Quantity,
};
use std::collections::HashMap;
use uuid::Uuid;

/// The scalar fields of an entity, as the cache Hash stores them.
pub fn entity_fields(entity: &Entity) -> Vec<(&'static str, String)> {
    match entity {
        Entity::Customer(c) => vec![
            ("id", c.id.to_string()),
            ("name", c.name.to_string()),
            ("email", c.email.to_string()),
        ],
        Entity::Product(p) => vec![
            ("id", p.id.to_string()),
            ("name", p.name.to_string()),
            ("price", p.price.minor().to_string()),
        ],
        Entity::Inventory(i) => vec![
            ("id", i.id.to_string()),
            ("product_id", i.product_id.to_string()),
            ("amount", i.amount.get().to_string()),
        ],
        Entity::Order(o) => vec![
            ("id", o.id.to_string()),
            ("customer_id", o.customer_id.to_string()),
            ("total", o.total.minor().to_string()),
        ],
        Entity::Billing(b) => vec![
            ("id", b.id.to_string()),
            ("order_id", b.order_id.to_string()),
            ("done", b.done.to_string()),
        ],
    }
}

/// An entity as the API shows it: its JSON object, fields in name order.
pub fn entity_json(entity: &Entity) -> serde_json::Value {
    let value = match entity {
        Entity::Customer(e) => serde_json::to_value(e),
        Entity::Product(e) => serde_json::to_value(e),
        Entity::Inventory(e) => serde_json::to_value(e),
        Entity::Order(e) => serde_json::to_value(e),
        Entity::Billing(e) => serde_json::to_value(e),
    };
    // These plain structs (strings, integers, ids) always serialise.
    value.unwrap_or_default()
}

/// [`entity_json`] as text: what `entity-cache:documents:<type>` holds for the entity.
pub fn entity_document(entity: &Entity) -> String {
    entity_json(entity).to_string()
}

/// An order's product ids, as its List stores them (one entry per unit).
pub fn order_product_ids(order: &Order) -> Vec<String> {
    order.product_ids.iter().map(ToString::to_string).collect()
}

/// A cache Hash that does not hold a valid entity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cached {kind} {key} is corrupt: {reason}")]
pub struct CacheDecodeError {
    pub kind: EntityKind,
    pub key: String,
    pub reason: String,
}

/// Reads an entity back from its cache Hash (and, for an order, its product-id List).
pub fn entity_from_fields(
    kind: EntityKind,
    fields: &HashMap<String, String>,
    product_ids: &[String],
) -> Result<Entity, CacheDecodeError> {
    let key = fields.get("id").cloned().unwrap_or_default();
    let fail = |reason: String| CacheDecodeError {
        kind,
        key: key.clone(),
        reason,
    };
    let text = |name: &str| {
        fields
            .get(name)
            .map(String::as_str)
            .ok_or_else(|| fail(format!("missing field `{name}`")))
    };
    let uuid = |name: &str| -> Result<Uuid, CacheDecodeError> {
        Uuid::parse_str(text(name)?).map_err(|e| fail(format!("field `{name}`: {e}")))
    };
    let number = |name: &str| -> Result<u64, CacheDecodeError> {
        text(name)?
            .parse()
            .map_err(|_| fail(format!("field `{name}` is not a number")))
    };
    let name =
        |field: &'static str| Name::parse(field, text(field)?).map_err(|e| fail(e.to_string()));
    Ok(match kind {
        EntityKind::Customer => Entity::Customer(Customer {
            id: uuid("id")?.into(),
            name: name("name")?,
            email: Email::parse(text("email")?).map_err(|e| fail(e.to_string()))?,
        }),
        EntityKind::Product => Entity::Product(Product {
            id: uuid("id")?.into(),
            name: name("name")?,
            price: Money::from_minor(number("price")?).map_err(|e| fail(e.to_string()))?,
        }),
        EntityKind::Inventory => Entity::Inventory(Inventory {
            id: uuid("id")?.into(),
            product_id: uuid("product_id")?.into(),
            amount: u32::try_from(number("amount")?)
                .map_err(|_| fail("amount too large".into()))
                .and_then(|n| Quantity::new(n).map_err(|e| fail(e.to_string())))?,
        }),
        EntityKind::Order => Entity::Order(Order {
            id: uuid("id")?.into(),
            customer_id: uuid("customer_id")?.into(),
            total: Money::from_minor(number("total")?).map_err(|e| fail(e.to_string()))?,
            product_ids: product_ids
                .iter()
                .map(|p| Uuid::parse_str(p).map(Into::into))
                .collect::<Result<_, _>>()
                .map_err(|e| fail(format!("product id: {e}")))?,
        }),
        EntityKind::Billing => Entity::Billing(Billing {
            id: uuid("id")?.into(),
            order_id: uuid("order_id")?.into(),
            done: match text("done")? {
                "true" => true,
                "false" => false,
                other => return Err(fail(format!("field `done` is not a boolean: `{other}`"))),
            },
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ordershop_domain::{CustomerId, OrderId, ProductId};

    fn round_trip(entity: Entity, product_ids: &[String]) {
        let fields: HashMap<String, String> = entity_fields(&entity)
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        assert_eq!(
            entity_from_fields(entity.kind(), &fields, product_ids),
            Ok(entity)
        );
    }

    #[test]
    fn every_kind_round_trips_through_its_hash() {
        let p = ProductId::new();
        let order = Order {
            id: OrderId::new(),
            product_ids: vec![p, p],
            customer_id: CustomerId::new(),
            total: Money::from_minor(500).expect("an amount"),
        };
        let ids = order_product_ids(&order);
        round_trip(Entity::Order(order), &ids);
        round_trip(
            Entity::Customer(Customer {
                id: CustomerId::new(),
                name: Name::parse("name", "Ada").unwrap(),
                email: Email::parse("ada@example.com").unwrap(),
            }),
            &[],
        );
        round_trip(
            Entity::Billing(Billing {
                id: ordershop_domain::BillingId::new(),
                order_id: OrderId::new(),
                done: true,
            }),
            &[],
        );
    }

    #[test]
    fn a_corrupt_hash_is_an_error_naming_the_field() {
        let fields: HashMap<String, String> =
            [("id", Uuid::nil().to_string()), ("name", "x".into())]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect();
        let err = entity_from_fields(EntityKind::Product, &fields, &[]).unwrap_err();
        assert!(err.to_string().contains("price"), "{err}");
    }
}
