//! What the shop holds, read from the projections: the entity cache for products, stock, orders
//! and billings, the CRM view for customers and segments, and how far each projection is behind
//! the log. `ordershop report` prints it; the gateway's console shows it (`GET /overview`).

use crate::error::OperationError;
use crate::status::statuses;
use ordershop_domain::{Entity, EntityKind};
use ordershop_readmodel::{CacheReader, CrmReader};
use ordershop_redis::RedisConnection;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use uuid::Uuid;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CustomerRow {
    pub id: String,
    pub name: String,
    pub email: String,
    pub status: String,
    pub orders: u64,
    pub amount_ordered: u64,
    pub amount_billed: u64,
    pub amount_unbilled: u64,
    /// Messages the CRM wrote to the customer.
    pub messages_sent: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ProductRow {
    pub id: String,
    pub name: String,
    pub price: u64,
    /// Units in stock; `None` when the product has no inventory record.
    pub stock: Option<u64>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct OrderRow {
    pub id: String,
    pub customer_id: String,
    pub customer: String,
    pub items: u64,
    pub total: u64,
    pub billed: bool,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct BillingRow {
    pub id: String,
    pub order_id: String,
    pub customer: String,
    pub amount: u64,
    pub done: bool,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq, Default)]
pub struct Totals {
    pub customers: u64,
    pub active_customers: u64,
    pub products: u64,
    pub units_in_stock: u64,
    pub orders: u64,
    pub billed_orders: u64,
    pub unbilled_orders: u64,
    pub amount_ordered: u64,
    pub amount_billed: u64,
    pub amount_unbilled: u64,
    pub billings: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ProjectionLag {
    pub projection: String,
    /// Entries not yet delivered to the projection plus those delivered and not acknowledged.
    pub behind: u64,
    pub dead_lettered: u64,
}

/// Everything `report` prints. Amounts are minor units.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Report {
    pub customers: Vec<CustomerRow>,
    pub products: Vec<ProductRow>,
    pub orders: Vec<OrderRow>,
    pub billings: Vec<BillingRow>,
    /// CRM segment -> customer count.
    pub segments: BTreeMap<String, u64>,
    pub totals: Totals,
    pub projections: Vec<ProjectionLag>,
}

impl Report {
    pub fn is_empty(&self) -> bool {
        self.customers.is_empty() && self.products.is_empty() && self.orders.is_empty()
    }
}

/// Reads the report from the read models.
pub async fn load(conn: &RedisConnection) -> Result<Report, OperationError> {
    let crm = CrmReader::new(conn.clone());
    let mut customers: Vec<CustomerRow> = crm
        .customers()
        .await?
        .into_iter()
        .map(|c| CustomerRow {
            id: c.id.to_string(),
            amount_unbilled: c.amount_ordered.saturating_sub(c.amount_billed),
            name: c.name,
            email: c.email,
            status: c.status,
            orders: c.orders,
            amount_ordered: c.amount_ordered,
            amount_billed: c.amount_billed,
            messages_sent: c.messages_sent,
        })
        .collect();
    customers.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
    let names: HashMap<String, String> = customers
        .iter()
        .map(|c| (c.id.clone(), c.name.clone()))
        .collect();

    // Products, stock, orders and billings: the gateway's reader of the entity cache.
    let cache = CacheReader::new(conn.clone());
    let stock: HashMap<String, u64> = cache
        .list(EntityKind::Inventory)
        .await?
        .into_iter()
        .filter_map(|e| match e {
            Entity::Inventory(i) => Some((i.product_id.to_string(), u64::from(i.amount.get()))),
            _ => None,
        })
        .collect();
    let mut products: Vec<ProductRow> = cache
        .list(EntityKind::Product)
        .await?
        .into_iter()
        .filter_map(|e| match e {
            Entity::Product(p) => Some(ProductRow {
                id: p.id.to_string(),
                name: p.name.to_string(),
                price: p.price.minor(),
                stock: stock.get(&p.id.to_string()).copied(),
            }),
            _ => None,
        })
        .collect();
    products.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));

    let billed: HashSet<Uuid> = cache.billed_order_ids().await?.into_iter().collect();
    let orders: Vec<OrderRow> = cache
        .list(EntityKind::Order)
        .await?
        .into_iter()
        .filter_map(|e| match e {
            Entity::Order(o) => {
                let customer_id = o.customer_id.to_string();
                Some(OrderRow {
                    id: o.id.to_string(),
                    customer: names.get(&customer_id).cloned().unwrap_or_default(),
                    customer_id,
                    items: o.product_ids.len() as u64,
                    total: o.total.minor(),
                    billed: billed.contains(&o.id.0),
                })
            }
            _ => None,
        })
        .collect();
    let order_totals: HashMap<String, (u64, String)> = orders
        .iter()
        .map(|o| (o.id.clone(), (o.total, o.customer.clone())))
        .collect();

    let billings: Vec<BillingRow> = cache
        .list(EntityKind::Billing)
        .await?
        .into_iter()
        .filter_map(|e| match e {
            Entity::Billing(b) => {
                let order_id = b.order_id.to_string();
                let (amount, customer) = order_totals.get(&order_id).cloned().unwrap_or_default();
                Some(BillingRow {
                    id: b.id.to_string(),
                    order_id,
                    customer,
                    amount,
                    done: b.done,
                })
            }
            _ => None,
        })
        .collect();

    let segments: BTreeMap<String, u64> = crm
        .segment_sizes()
        .await?
        .into_iter()
        .map(|(segment, n)| (segment.name().to_owned(), n))
        .collect();

    let totals = Totals {
        customers: customers.len() as u64,
        active_customers: customers.iter().filter(|c| c.status == "active").count() as u64,
        products: products.len() as u64,
        units_in_stock: products.iter().filter_map(|p| p.stock).sum(),
        orders: orders.len() as u64,
        billed_orders: orders.iter().filter(|o| o.billed).count() as u64,
        unbilled_orders: orders.iter().filter(|o| !o.billed).count() as u64,
        amount_ordered: orders.iter().map(|o| o.total).sum(),
        amount_billed: orders.iter().filter(|o| o.billed).map(|o| o.total).sum(),
        amount_unbilled: orders.iter().filter(|o| !o.billed).map(|o| o.total).sum(),
        billings: billings.len() as u64,
    };

    let projections = statuses(&mut conn.clone())
        .await?
        .into_iter()
        .map(|g| ProjectionLag {
            projection: g.group.to_owned(),
            behind: g.behind(),
            dead_lettered: g.dead_lettered,
        })
        .collect();

    Ok(Report {
        customers,
        products,
        orders,
        billings,
        segments,
        totals,
        projections,
    })
}
