//! Commands decide changes. Each function takes the validated input and the current state of
//! every entity it needs (looked up by the caller), and returns the changes to append, in the
//! persisted created/updated/deleted + whole-entity shape, or the reason it refuses.
//!
//! The caller appends the changes with the versions of the states it passed in as expectations,
//! so a decision taken on stale state is rejected by the store and retried on fresh state.

use crate::entity::{Billing, Customer, Entity, Inventory, Order, Product};
use crate::error::DomainError;
use crate::ids::{BillingId, CustomerId, InventoryId, OrderId, ProductId};
use crate::kind::{Action, EntityKind};
use crate::value::{Email, Money, Name, Quantity, MAX_ORDER_ITEMS};
use std::collections::BTreeMap;

/// One change to append: an action and the whole entity after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub action: Action,
    pub entity: Entity,
}

impl Change {
    pub fn created(entity: impl Into<Entity>) -> Self {
        Self {
            action: Action::Created,
            entity: entity.into(),
        }
    }
    pub fn updated(entity: impl Into<Entity>) -> Self {
        Self {
            action: Action::Updated,
            entity: entity.into(),
        }
    }
    pub fn deleted(entity: impl Into<Entity>) -> Self {
        Self {
            action: Action::Deleted,
            entity: entity.into(),
        }
    }
}

fn not_found(kind: EntityKind, id: uuid::Uuid) -> DomainError {
    DomainError::NotFound { kind, id }
}

// ---------------------------------------------------------------------------------------------
// Customers

/// A validated customer body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerDraft {
    pub name: Name,
    pub email: Email,
}

pub fn create_customer(id: CustomerId, draft: CustomerDraft) -> Vec<Change> {
    vec![Change::created(Customer {
        id,
        name: draft.name,
        email: draft.email,
    })]
}

pub fn update_customer(
    current: Option<&Customer>,
    id: CustomerId,
    draft: CustomerDraft,
) -> Result<Vec<Change>, DomainError> {
    current.ok_or_else(|| not_found(EntityKind::Customer, id.0))?;
    Ok(vec![Change::updated(Customer {
        id,
        name: draft.name,
        email: draft.email,
    })])
}

pub fn delete_customer(
    current: Option<&Customer>,
    id: CustomerId,
) -> Result<Vec<Change>, DomainError> {
    let customer = current.ok_or_else(|| not_found(EntityKind::Customer, id.0))?;
    Ok(vec![Change::deleted(customer.clone())])
}

// ---------------------------------------------------------------------------------------------
// Products

/// A validated product body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductDraft {
    pub name: Name,
    pub price: Money,
}

pub fn create_product(id: ProductId, draft: ProductDraft) -> Vec<Change> {
    vec![Change::created(Product {
        id,
        name: draft.name,
        price: draft.price,
    })]
}

pub fn update_product(
    current: Option<&Product>,
    id: ProductId,
    draft: ProductDraft,
) -> Result<Vec<Change>, DomainError> {
    current.ok_or_else(|| not_found(EntityKind::Product, id.0))?;
    Ok(vec![Change::updated(Product {
        id,
        name: draft.name,
        price: draft.price,
    })])
}

pub fn delete_product(
    current: Option<&Product>,
    id: ProductId,
) -> Result<Vec<Change>, DomainError> {
    let product = current.ok_or_else(|| not_found(EntityKind::Product, id.0))?;
    Ok(vec![Change::deleted(product.clone())])
}

// ---------------------------------------------------------------------------------------------
// Inventory

/// A validated inventory body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InventoryDraft {
    pub product_id: ProductId,
    pub amount: Quantity,
}

/// Creates the stock record of a product. `existing` is the product's current inventory
/// record, if it has one.
pub fn create_inventory(
    id: InventoryId,
    draft: InventoryDraft,
    product: Option<&Product>,
    existing: Option<InventoryId>,
) -> Result<Vec<Change>, DomainError> {
    if product.is_none() {
        return Err(DomainError::UnknownReference {
            kind: EntityKind::Product,
            id: draft.product_id.0,
        });
    }
    if let Some(inventory_id) = existing {
        return Err(DomainError::InventoryExists {
            product_id: draft.product_id.0,
            inventory_id: inventory_id.0,
        });
    }
    Ok(vec![Change::created(Inventory {
        id,
        product_id: draft.product_id,
        amount: draft.amount,
    })])
}

pub fn update_inventory(
    current: Option<&Inventory>,
    id: InventoryId,
    draft: InventoryDraft,
) -> Result<Vec<Change>, DomainError> {
    let inventory = current.ok_or_else(|| not_found(EntityKind::Inventory, id.0))?;
    if inventory.product_id != draft.product_id {
        return Err(DomainError::invalid(
            "product_id",
            format!(
                "an inventory record's product cannot change (record {id} holds product {}); \
                 delete it and create another",
                inventory.product_id
            ),
        ));
    }
    Ok(vec![Change::updated(Inventory {
        id,
        product_id: draft.product_id,
        amount: draft.amount,
    })])
}

pub fn delete_inventory(
    current: Option<&Inventory>,
    id: InventoryId,
) -> Result<Vec<Change>, DomainError> {
    let inventory = current.ok_or_else(|| not_found(EntityKind::Inventory, id.0))?;
    Ok(vec![Change::deleted(inventory.clone())])
}

// ---------------------------------------------------------------------------------------------
// Orders

/// A validated order body: at least one product id, each listed once per unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderDraft {
    pub customer_id: CustomerId,
    pub product_ids: Vec<ProductId>,
}

impl OrderDraft {
    pub fn new(customer_id: CustomerId, product_ids: Vec<ProductId>) -> Result<Self, DomainError> {
        if product_ids.is_empty() {
            return Err(DomainError::invalid(
                "product_ids",
                "must list at least one product",
            ));
        }
        if product_ids.len() > MAX_ORDER_ITEMS {
            return Err(DomainError::invalid(
                "product_ids",
                format!("must list at most {MAX_ORDER_ITEMS} units"),
            ));
        }
        Ok(Self {
            customer_id,
            product_ids,
        })
    }
}

/// What an order command needs to know besides the order itself: the customer, every product it
/// lists (before and after the change) and their stock records.
#[derive(Debug, Clone, Default)]
pub struct OrderContext {
    pub customer: Option<Customer>,
    /// Current state of each product; `None` for unknown or deleted products.
    pub products: BTreeMap<ProductId, Option<Product>>,
    /// The inventory record of each product that has one.
    pub stock: BTreeMap<ProductId, Inventory>,
}

fn units(product_ids: &[ProductId]) -> BTreeMap<ProductId, u64> {
    let mut counts = BTreeMap::new();
    for id in product_ids {
        *counts.entry(*id).or_insert(0) += 1;
    }
    counts
}

/// Checks the customer and products of a draft and prices it.
fn price_order(draft: &OrderDraft, ctx: &OrderContext) -> Result<Money, DomainError> {
    if ctx.customer.as_ref().map(|c| c.id) != Some(draft.customer_id) {
        return Err(DomainError::UnknownReference {
            kind: EntityKind::Customer,
            id: draft.customer_id.0,
        });
    }
    draft
        .product_ids
        .iter()
        .map(|id| match ctx.products.get(id) {
            Some(Some(product)) => Ok(product.price),
            _ => Err(DomainError::UnknownReference {
                kind: EntityKind::Product,
                id: id.0,
            }),
        })
        .sum::<Result<Money, DomainError>>()
}

/// Moves stock by `delta` units per product (negative takes, positive gives back) and returns
/// the inventory changes. Taking more than a record holds is out of stock; giving back to a
/// product without a record is a no-op (its record was deleted).
fn move_stock(
    delta: &BTreeMap<ProductId, i64>,
    stock: &BTreeMap<ProductId, Inventory>,
) -> Result<Vec<Change>, DomainError> {
    let mut changes = Vec::new();
    for (product_id, &d) in delta {
        if d == 0 {
            continue;
        }
        let Some(record) = stock.get(product_id) else {
            if d < 0 {
                return Err(DomainError::OutOfStock {
                    product_id: product_id.0,
                    requested: d.unsigned_abs(),
                    available: 0,
                });
            }
            continue;
        };
        let available = i64::from(record.amount.get());
        let after = available + d;
        if after < 0 {
            return Err(DomainError::OutOfStock {
                product_id: product_id.0,
                requested: d.unsigned_abs(),
                available: available as u64,
            });
        }
        // Giving back never fails; a record already at the ceiling stays there.
        let amount = Quantity::clamped(after);
        changes.push(Change::updated(Inventory {
            amount,
            ..record.clone()
        }));
    }
    Ok(changes)
}

/// Places an order: one unit of stock per listed product id, all or nothing.
pub fn create_order(
    id: OrderId,
    draft: OrderDraft,
    ctx: &OrderContext,
) -> Result<Vec<Change>, DomainError> {
    let total = price_order(&draft, ctx)?;
    let delta = units(&draft.product_ids)
        .into_iter()
        .map(|(p, n)| (p, -(n as i64)))
        .collect();
    let stock_changes = move_stock(&delta, &ctx.stock)?;
    let mut changes = vec![Change::created(Order {
        id,
        product_ids: draft.product_ids,
        customer_id: draft.customer_id,
        total,
    })];
    changes.extend(stock_changes);
    Ok(changes)
}

/// Changes an order: gives back the old units and takes the new ones, as one net move.
pub fn update_order(
    current: Option<&Order>,
    id: OrderId,
    draft: OrderDraft,
    ctx: &OrderContext,
) -> Result<Vec<Change>, DomainError> {
    let order = current.ok_or_else(|| not_found(EntityKind::Order, id.0))?;
    if order.customer_id != draft.customer_id {
        return Err(DomainError::invalid(
            "customer_id",
            format!(
                "an order's customer cannot change (order {id} belongs to customer {}); \
                 delete it and order again",
                order.customer_id
            ),
        ));
    }
    let total = price_order(&draft, ctx)?;
    let mut delta: BTreeMap<ProductId, i64> = BTreeMap::new();
    for (p, n) in units(&order.product_ids) {
        *delta.entry(p).or_insert(0) += n as i64;
    }
    for (p, n) in units(&draft.product_ids) {
        *delta.entry(p).or_insert(0) -= n as i64;
    }
    let stock_changes = move_stock(&delta, &ctx.stock)?;
    let mut changes = vec![Change::updated(Order {
        id,
        product_ids: draft.product_ids,
        customer_id: draft.customer_id,
        total,
    })];
    changes.extend(stock_changes);
    Ok(changes)
}

/// Deletes an order and gives its units back to the products that still have stock records.
/// A billed order cannot be deleted (`billing` is the order's current billing, if any): its
/// billing would be left pointing at nothing.
pub fn delete_order(
    current: Option<&Order>,
    id: OrderId,
    stock: &BTreeMap<ProductId, Inventory>,
    billing: Option<BillingId>,
) -> Result<Vec<Change>, DomainError> {
    let order = current.ok_or_else(|| not_found(EntityKind::Order, id.0))?;
    if let Some(billing) = billing {
        return Err(DomainError::OrderBilled {
            order_id: id.0,
            billing_id: billing.0,
        });
    }
    let delta = units(&order.product_ids)
        .into_iter()
        .map(|(p, n)| (p, n as i64))
        .collect();
    let stock_changes = move_stock(&delta, stock)?;
    let mut changes = vec![Change::deleted(order.clone())];
    changes.extend(stock_changes);
    Ok(changes)
}

// ---------------------------------------------------------------------------------------------
// Billing

/// A validated billing body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BillingDraft {
    pub order_id: OrderId,
    pub done: bool,
}

/// Bills an order, at most once. `existing` is the order's current billing, if any.
pub fn create_billing(
    id: BillingId,
    draft: BillingDraft,
    order: Option<&Order>,
    existing: Option<BillingId>,
) -> Result<Vec<Change>, DomainError> {
    if order.is_none() {
        return Err(DomainError::UnknownReference {
            kind: EntityKind::Order,
            id: draft.order_id.0,
        });
    }
    if existing.is_some() {
        return Err(DomainError::AlreadyBilled {
            order_id: draft.order_id.0,
        });
    }
    Ok(vec![Change::created(Billing {
        id,
        order_id: draft.order_id,
        done: draft.done,
    })])
}

pub fn update_billing(
    current: Option<&Billing>,
    id: BillingId,
    draft: BillingDraft,
) -> Result<Vec<Change>, DomainError> {
    let billing = current.ok_or_else(|| not_found(EntityKind::Billing, id.0))?;
    if billing.order_id != draft.order_id {
        return Err(DomainError::invalid(
            "order_id",
            format!(
                "a billing's order cannot change (billing {id} is for order {}); \
                 delete it and bill the other order",
                billing.order_id
            ),
        ));
    }
    Ok(vec![Change::updated(Billing {
        id,
        order_id: draft.order_id,
        done: draft.done,
    })])
}

pub fn delete_billing(
    current: Option<&Billing>,
    id: BillingId,
) -> Result<Vec<Change>, DomainError> {
    let billing = current.ok_or_else(|| not_found(EntityKind::Billing, id.0))?;
    Ok(vec![Change::deleted(billing.clone())])
}
