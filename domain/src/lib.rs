//! The pure domain of OrderShop.
//!
//! Everything here decides or applies; nothing performs I/O. A command handler gets the current
//! state of every entity it needs (looked up by the caller), and returns the changes to append
//! or a [`DomainError`] the caller can act on. [`apply`](head::Head::apply) folds a change into
//! an entity's state, which is how both the write side and every projection rebuild state.

pub mod decide;
pub mod entity;
pub mod error;
pub mod head;
pub mod ids;
pub mod kind;
pub mod value;

pub use decide::Change;
pub use entity::{Billing, Customer, Entity, Inventory, Order, Product};
pub use error::DomainError;
pub use head::Head;
pub use ids::{BillingId, CustomerId, InventoryId, OrderId, ProductId};
pub use kind::{Action, EntityKind};
pub use value::{format_minor, Email, Money, Name, Quantity};
