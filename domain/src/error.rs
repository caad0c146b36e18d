//! Domain rejections: values the caller acts on (they become 4xx answers), never infrastructure
//! failures.

use crate::kind::EntityKind;
use uuid::Uuid;

/// Why the domain refused a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// A field failed validation.
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    /// The command targets an entity that does not exist (or was deleted).
    #[error("{kind} {id} not found")]
    NotFound { kind: EntityKind, id: Uuid },
    /// The command refers to another entity that does not exist (or was deleted).
    #[error("unknown {kind} {id}")]
    UnknownReference { kind: EntityKind, id: Uuid },
    /// Not enough stock for an order.
    #[error("out of stock: product {product_id} has {available} unit(s), {requested} requested")]
    OutOfStock {
        product_id: Uuid,
        requested: u64,
        available: u64,
    },
    /// The order already has a billing.
    #[error("order {order_id} is already billed")]
    AlreadyBilled { order_id: Uuid },
    /// The order has a billing, so it cannot be deleted.
    #[error("order {order_id} is billed (billing {billing_id}); delete the billing first")]
    OrderBilled { order_id: Uuid, billing_id: Uuid },
    /// The product already has an inventory record; update that one instead.
    #[error("product {product_id} already has inventory record {inventory_id}")]
    InventoryExists {
        product_id: Uuid,
        inventory_id: Uuid,
    },
}

impl DomainError {
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        DomainError::Invalid {
            field,
            reason: reason.into(),
        }
    }
}
