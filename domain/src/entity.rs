//! The five entities, in the shape the log stores them: the whole entity after each change,
//! serialised as JSON with the original sample's field names (plus `total` on orders).

use crate::ids::{BillingId, CustomerId, InventoryId, OrderId, ProductId};
use crate::kind::EntityKind;
use crate::value::{Email, Money, Name, Quantity};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Customer {
    pub id: CustomerId,
    pub name: Name,
    pub email: Email,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Product {
    pub id: ProductId,
    pub name: Name,
    /// Price in minor units.
    pub price: Money,
}

/// The stock of one product. A product has at most one inventory record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inventory {
    pub id: InventoryId,
    pub product_id: ProductId,
    pub amount: Quantity,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    pub id: OrderId,
    /// One entry per unit ordered; a product may repeat.
    pub product_ids: Vec<ProductId>,
    pub customer_id: CustomerId,
    /// Sum of the listed products' prices when the order was last placed or changed, in minor
    /// units. Kept on the order so that later price changes do not rewrite its history.
    #[serde(default)]
    pub total: Money,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Billing {
    pub id: BillingId,
    pub order_id: OrderId,
    pub done: bool,
}

/// Any entity, tagged by its kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entity {
    Customer(Customer),
    Product(Product),
    Inventory(Inventory),
    Order(Order),
    Billing(Billing),
}

impl Entity {
    pub fn kind(&self) -> EntityKind {
        match self {
            Entity::Customer(_) => EntityKind::Customer,
            Entity::Product(_) => EntityKind::Product,
            Entity::Inventory(_) => EntityKind::Inventory,
            Entity::Order(_) => EntityKind::Order,
            Entity::Billing(_) => EntityKind::Billing,
        }
    }

    pub fn id(&self) -> Uuid {
        match self {
            Entity::Customer(e) => e.id.0,
            Entity::Product(e) => e.id.0,
            Entity::Inventory(e) => e.id.0,
            Entity::Order(e) => e.id.0,
            Entity::Billing(e) => e.id.0,
        }
    }
}

/// Ties an entity struct to its kind, so generic code (heads, codecs, replays) can be typed.
pub trait EntityState: Clone + Serialize + for<'de> Deserialize<'de> {
    const KIND: EntityKind;
    fn uuid(&self) -> Uuid;
    fn into_entity(self) -> Entity;
    fn from_entity(entity: Entity) -> Option<Self>;
}

macro_rules! entity_state {
    ($ty:ident) => {
        impl EntityState for $ty {
            const KIND: EntityKind = EntityKind::$ty;
            fn uuid(&self) -> Uuid {
                self.id.0
            }
            fn into_entity(self) -> Entity {
                Entity::$ty(self)
            }
            fn from_entity(entity: Entity) -> Option<Self> {
                match entity {
                    Entity::$ty(e) => Some(e),
                    _ => None,
                }
            }
        }

        impl From<$ty> for Entity {
            fn from(e: $ty) -> Entity {
                Entity::$ty(e)
            }
        }
    };
}

entity_state!(Customer);
entity_state!(Product);
entity_state!(Inventory);
entity_state!(Order);
entity_state!(Billing);
