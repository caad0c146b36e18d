//! `ordershop report`: what the shop holds, read from the projections (the entity cache for
//! products, stock, orders and billings; the CRM view for customers and segments), with how far
//! each projection is behind the log. Tables for people, `--json` for machines.

use crate::admin::shop_redis;
use anstream::println;
use anstyle::{AnsiColor, Style};
use comfy_table::{presets::UTF8_FULL_CONDENSED, Cell, CellAlignment, ContentArrangement, Table};
use ordershop_domain::format_minor;
use ordershop_operations::report::{load, ProjectionLag, Report};
use ordershop_readmodel::CrmSegment;
use std::process::ExitCode;

/// Terminal width the tables are laid out for.
const WIDTH: u16 = 100;

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
    let loaded = match ordershop_redis::RedisConnection::connect(&redis).await {
        Ok(conn) => load(&conn).await.map_err(anyhow::Error::from),
        Err(e) => Err(anyhow::Error::from(e)),
    };
    let report = match loaded {
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
