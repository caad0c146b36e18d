//! The JSON the log stores (and the gateway returns) for each entity type, and `/health`'s
//! answer: the schemas of what the gateway answers that no wire type describes. A test checks
//! them against what the domain types serialise to.

use ordershop_domain::EntityKind;
use utoipa::ToSchema;
use uuid::Uuid;

/// A customer.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Customer {
    pub id: Uuid,
    #[schema(schema_with = crate::field_schemas::name)]
    pub name: String,
    #[schema(schema_with = crate::field_schemas::email)]
    pub email: String,
}

/// A product; the price in minor units (`1250` is 12.50).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Product {
    pub id: Uuid,
    #[schema(schema_with = crate::field_schemas::name)]
    pub name: String,
    #[schema(schema_with = crate::field_schemas::price)]
    pub price: i64,
}

/// The stock of one product.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Inventory {
    pub id: Uuid,
    pub product_id: Uuid,
    #[schema(schema_with = crate::field_schemas::amount)]
    pub amount: i64,
}

/// An order: one product id per unit, and its total in minor units.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Order {
    pub id: Uuid,
    #[schema(schema_with = crate::field_schemas::product_ids)]
    pub product_ids: Vec<Uuid>,
    pub customer_id: Uuid,
    #[schema(schema_with = crate::field_schemas::total)]
    pub total: i64,
}

/// The billing of one order.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Billing {
    pub id: Uuid,
    pub order_id: Uuid,
    pub done: bool,
}

/// Every entity of every type.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Report {
    pub products: Vec<Product>,
    pub inventory: Vec<Inventory>,
    pub customers: Vec<Customer>,
    pub orders: Vec<Order>,
    pub billings: Vec<Billing>,
}

/// `/health`'s answer when the role is ready.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct HealthStatus {
    /// `ok`
    pub status: String,
    pub role: String,
}

/// The name of an entity type's schema.
pub(super) fn schema_name(kind: EntityKind) -> &'static str {
    match kind {
        EntityKind::Customer => "Customer",
        EntityKind::Product => "Product",
        EntityKind::Inventory => "Inventory",
        EntityKind::Order => "Order",
        EntityKind::Billing => "Billing",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::entity_json;
    use ordershop_domain::{Entity, Money};
    use std::collections::BTreeSet;
    use utoipa::openapi::{RefOr, Schema};
    use utoipa::PartialSchema;

    fn properties(schema: RefOr<Schema>) -> BTreeSet<String> {
        let value = serde_json::to_value(schema).unwrap();
        value["properties"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect()
    }

    fn keys(entity: &Entity) -> BTreeSet<String> {
        entity_json(entity)
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect()
    }

    #[test]
    fn the_entity_schemas_have_the_fields_the_entities_serialise_to() {
        let id = uuid::Uuid::new_v4();
        let customer = Entity::Customer(ordershop_domain::Customer {
            id: id.into(),
            name: ordershop_domain::Name::parse("name", "Ada").unwrap(),
            email: ordershop_domain::Email::parse("ada@example.com").unwrap(),
        });
        assert_eq!(keys(&customer), properties(Customer::schema()));
        let product = Entity::Product(ordershop_domain::Product {
            id: id.into(),
            name: ordershop_domain::Name::parse("name", "Tea").unwrap(),
            price: Money::price(100).unwrap(),
        });
        assert_eq!(keys(&product), properties(Product::schema()));
        let order = Entity::Order(ordershop_domain::Order {
            id: id.into(),
            product_ids: vec![id.into()],
            customer_id: id.into(),
            total: Money::price(100).unwrap(),
        });
        assert_eq!(keys(&order), properties(Order::schema()));
        let billing = Entity::Billing(ordershop_domain::Billing {
            id: id.into(),
            order_id: id.into(),
            done: false,
        });
        assert_eq!(keys(&billing), properties(Billing::schema()));
    }
}
