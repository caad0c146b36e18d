//! `ordershop report`: what the shop holds, read from the projections (the entity cache for
//! products, stock, orders and billings; the CRM view for customers and segments), with how far
//! each projection is behind the log. Tables for people, `--json` for machines.

use crate::admin::shop_redis;
use anstream::println;
use anstyle::{AnsiColor, Style};
use comfy_table::{presets::UTF8_FULL_CONDENSED, Cell, CellAlignment, ContentArrangement, Table};
use ordershop_domain::{format_minor, Entity, EntityKind};
use ordershop_eventstore::RedisConfig;
use ordershop_projections::group_status;
use ordershop_readmodel::{CacheReader, CrmReader, CrmSegment};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::process::ExitCode;
use uuid::Uuid;

/// Terminal width the tables are laid out for.
const WIDTH: u16 = 100;

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
pub async fn load(redis: &RedisConfig) -> anyhow::Result<Report> {
    let conn = ordershop_eventstore::RedisConnection::connect(redis).await?;
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
    let cache = CacheReader::new(conn);
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

    let projections = group_status(redis)
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

fn money(minor: u64) -> String {
    format_minor(minor)
}

fn short(id: &str) -> String {
    id.chars().take(8).collect()
}

fn new_table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_width(WIDTH)
        .set_header(header.iter().map(Cell::new));
    t
}

fn right(value: impl ToString) -> Cell {
    Cell::new(value.to_string()).set_alignment(CellAlignment::Right)
}

fn heading(title: &str, shown: usize, total: usize) {
    let bold = Style::new().bold();
    if shown < total {
        println!("\n{bold}{title}{bold:#} (first {shown} of {total})");
    } else {
        println!("\n{bold}{title}{bold:#}");
    }
}

/// Prints the report as tables, at most `limit` rows per table (the totals cover every row).
pub fn print_tables(report: &Report, limit: usize) {
    let t = &report.totals;
    let customers = report.customers.iter().take(limit);
    heading("Customers", customers.len(), report.customers.len());
    let mut table = new_table(&[
        "name", "email", "status", "orders", "ordered", "billed", "unbilled",
    ]);
    for c in customers {
        table.add_row(vec![
            Cell::new(&c.name),
            Cell::new(&c.email),
            Cell::new(&c.status),
            right(c.orders),
            right(money(c.amount_ordered)),
            right(money(c.amount_billed)),
            right(money(c.amount_unbilled)),
        ]);
    }
    table.add_row(vec![
        Cell::new(format!("total: {}", t.customers)),
        Cell::new(""),
        Cell::new(format!("{} active", t.active_customers)),
        right(report.customers.iter().map(|c| c.orders).sum::<u64>()),
        right(money(
            report.customers.iter().map(|c| c.amount_ordered).sum(),
        )),
        right(money(
            report.customers.iter().map(|c| c.amount_billed).sum(),
        )),
        right(money(
            report.customers.iter().map(|c| c.amount_unbilled).sum(),
        )),
    ]);
    println!("{table}");

    let products = report.products.iter().take(limit);
    heading("Products", products.len(), report.products.len());
    let mut table = new_table(&["name", "id", "price", "stock"]);
    for p in products {
        table.add_row(vec![
            Cell::new(&p.name),
            Cell::new(short(&p.id)),
            right(money(p.price)),
            right(p.stock.map_or_else(|| "-".to_owned(), |s| s.to_string())),
        ]);
    }
    table.add_row(vec![
        Cell::new(format!("total: {}", t.products)),
        Cell::new(""),
        Cell::new(""),
        right(t.units_in_stock),
    ]);
    println!("{table}");

    let orders = report.orders.iter().take(limit);
    heading("Orders", orders.len(), report.orders.len());
    let mut table = new_table(&["order", "customer", "items", "total", "billed"]);
    for o in orders {
        table.add_row(vec![
            Cell::new(short(&o.id)),
            Cell::new(if o.customer.is_empty() {
                short(&o.customer_id)
            } else {
                o.customer.clone()
            }),
            right(o.items),
            right(money(o.total)),
            Cell::new(if o.billed { "billed" } else { "unbilled" }),
        ]);
    }
    table.add_row(vec![
        Cell::new(format!("total: {}", t.orders)),
        Cell::new(""),
        right(report.orders.iter().map(|o| o.items).sum::<u64>()),
        right(money(t.amount_ordered)),
        Cell::new(format!(
            "{} billed, {} unbilled",
            t.billed_orders, t.unbilled_orders
        )),
    ]);
    println!("{table}");

    let billings = report.billings.iter().take(limit);
    heading("Billing", billings.len(), report.billings.len());
    let mut table = new_table(&["billing", "order", "customer", "amount", "done"]);
    for b in billings {
        table.add_row(vec![
            Cell::new(short(&b.id)),
            Cell::new(short(&b.order_id)),
            Cell::new(&b.customer),
            right(money(b.amount)),
            Cell::new(if b.done { "yes" } else { "no" }),
        ]);
    }
    table.add_row(vec![
        Cell::new(format!("total: {}", t.billings)),
        Cell::new(""),
        Cell::new(""),
        right(money(t.amount_billed)),
        Cell::new(format!("{} unbilled", money(t.amount_unbilled))),
    ]);
    println!("{table}");

    heading("CRM segments", 0, 0);
    let mut table = new_table(&["segment", "customers"]);
    for segment in CrmSegment::ALL {
        let n = report.segments.get(segment.name()).copied().unwrap_or(0);
        table.add_row(vec![Cell::new(segment.name()), right(n)]);
    }
    println!("{table}");

    let lagging: Vec<&ProjectionLag> = report.projections.iter().filter(|p| p.behind > 0).collect();
    let status = if lagging.is_empty() {
        Style::new().fg_color(Some(AnsiColor::Green.into()))
    } else {
        Style::new().fg_color(Some(AnsiColor::Yellow.into()))
    };
    let lags: Vec<String> = report
        .projections
        .iter()
        .map(|p| {
            let dead = if p.dead_lettered > 0 {
                format!(", {} dead-lettered", p.dead_lettered)
            } else {
                String::new()
            };
            format!("{} {} behind{dead}", p.projection, p.behind)
        })
        .collect();
    println!("\n{status}projections: {}{status:#}", lags.join(" · "));
}

pub async fn run(json: bool, limit: usize) -> anyhow::Result<ExitCode> {
    let redis = shop_redis()?;
    let report = match load(&redis).await {
        Ok(report) => report,
        Err(e) => {
            eprintln!(
                "error: cannot read the shop from Redis at {}: {}",
                redis.redacted_url(),
                root_cause(&e)
            );
            return Ok(ExitCode::from(2));
        }
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else if report.is_empty() {
        println!("The shop is empty: no customers, products or orders yet.");
    } else {
        print_tables(&report, limit);
    }
    Ok(ExitCode::SUCCESS)
}

fn root_cause(e: &anyhow::Error) -> String {
    e.chain()
        .last()
        .map(ToString::to_string)
        .unwrap_or_default()
}
