//! The original sample's scenario, driven over HTTP against the real binary, once with every
//! role in one process and once with one process per role. The streams and the stock are
//! checked after each step.

use crate::helpers::{Layout, Shop};
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// A small deterministic generator, so the scenario is the same on every run.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

fn xlen_delta(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
) -> BTreeMap<String, u64> {
    after
        .iter()
        .filter_map(|(k, v)| {
            let d = v - before.get(k).copied().unwrap_or(0);
            (d > 0).then(|| (k.clone(), d))
        })
        .collect()
}

fn expect_delta(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
}

/// Stock per product id, as the gateway reports it.
async fn stock(shop: &Shop) -> BTreeMap<String, u64> {
    let (status, inventory) = shop.get("/inventory").await;
    assert_eq!(status, 200);
    inventory
        .as_array()
        .expect("inventory list")
        .iter()
        .map(|i| {
            (
                i["product_id"].as_str().unwrap_or_default().to_owned(),
                i["amount"].as_u64().unwrap_or(u64::MAX),
            )
        })
        .collect()
}

fn units(product_ids: &[String]) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for p in product_ids {
        *counts.entry(p.clone()).or_insert(0) += 1;
    }
    counts
}

/// The original client's walk against a running shop (empty at the start).
pub async fn original_walk(shop: &Shop) {
    let mut rng = Lcg(7);

    // 10 customers, in one POST of a list.
    let before = shop.stream_lengths().await;
    let customers: Vec<Value> = (0..10)
        .map(|i| json!({"name": format!("Customer {i}"), "email": format!("customer{i}@example.com")}))
        .collect();
    let customer_ids = shop.create("/customers", Value::Array(customers)).await;
    assert_eq!(customer_ids.len(), 10);
    assert_eq!(
        xlen_delta(&before, &shop.stream_lengths().await),
        expect_delta(&[("events:customer_created", 10)])
    );
    let (_, listed) = shop.get("/customers").await;
    assert_eq!(
        listed.as_array().map(Vec::len),
        Some(10),
        "read-your-writes: {listed}"
    );

    // 10 products, one POST each (the single-object form).
    let before = shop.stream_lengths().await;
    let mut product_ids = Vec::new();
    for i in 0..10 {
        let ids = shop
            .create(
                "/product",
                json!({"name": format!("Product {i}"), "price": 100 + i * 25}),
            )
            .await;
        product_ids.extend(ids);
    }
    assert_eq!(
        xlen_delta(&before, &shop.stream_lengths().await),
        expect_delta(&[("events:product_created", 10)])
    );

    // Inventory of 100 for each.
    let before = shop.stream_lengths().await;
    let inventory: Vec<Value> = product_ids
        .iter()
        .map(|p| json!({"product_id": p, "amount": 100}))
        .collect();
    shop.create("/inventory", Value::Array(inventory)).await;
    assert_eq!(
        xlen_delta(&before, &shop.stream_lengths().await),
        expect_delta(&[("events:inventory_created", 10)])
    );
    let mut expected_stock: BTreeMap<String, u64> =
        product_ids.iter().map(|p| (p.clone(), 100)).collect();
    assert_eq!(stock(shop).await, expected_stock);

    // 10 orders of 1-10 random products each; each takes its units of stock in the same append.
    let mut orders: Vec<(String, Vec<String>, String)> = Vec::new();
    for _ in 0..10 {
        let n = 1 + rng.below(10) as usize;
        let items: Vec<String> = (0..n)
            .map(|_| product_ids[rng.below(10) as usize].clone())
            .collect();
        let customer = customer_ids[rng.below(10) as usize].clone();
        let before = shop.stream_lengths().await;
        let ids = shop
            .create(
                "/order",
                json!({"product_ids": items, "customer_id": customer}),
            )
            .await;
        let touched = units(&items).len() as u64;
        assert_eq!(
            xlen_delta(&before, &shop.stream_lengths().await),
            expect_delta(&[
                ("events:inventory_updated", touched),
                ("events:order_created", 1)
            ])
        );
        for (p, k) in units(&items) {
            *expected_stock.get_mut(&p).expect("known product") -= k;
        }
        assert_eq!(stock(shop).await, expected_stock, "stock after an order");
        orders.push((ids[0].clone(), items, customer));
    }

    // Update the second order: its old units come back, the new ones are taken.
    let (second, old_items, customer) = orders[1].clone();
    let new_items = vec![
        product_ids[0].clone(),
        product_ids[0].clone(),
        product_ids[9].clone(),
    ];
    let (status, body) = shop
        .send(
            Method::PUT,
            &format!("/order/{second}"),
            json!({"id": second, "product_ids": new_items, "customer_id": customer}),
        )
        .await;
    assert_eq!((status, body), (200, json!(true)));
    for (p, k) in units(&old_items) {
        *expected_stock.get_mut(&p).expect("known") += k;
    }
    for (p, k) in units(&new_items) {
        *expected_stock.get_mut(&p).expect("known") -= k;
    }
    assert_eq!(
        stock(shop).await,
        expected_stock,
        "stock after updating the second order"
    );
    let (_, order) = shop.get(&format!("/order/{second}")).await;
    assert_eq!(order["product_ids"], json!(new_items));
    orders[1].1 = new_items;

    // Delete the third order: its units come back.
    let (third, items, _) = orders[2].clone();
    let before = shop.stream_lengths().await;
    let (status, body) = shop
        .send(Method::DELETE, &format!("/order/{third}"), Value::Null)
        .await;
    assert_eq!((status, body), (200, json!(true)));
    assert_eq!(
        xlen_delta(&before, &shop.stream_lengths().await),
        expect_delta(&[
            ("events:inventory_updated", units(&items).len() as u64),
            ("events:order_deleted", 1)
        ])
    );
    for (p, k) in units(&items) {
        *expected_stock.get_mut(&p).expect("known") += k;
    }
    assert_eq!(
        stock(shop).await,
        expected_stock,
        "stock after deleting the third order"
    );
    assert_eq!(
        shop.get(&format!("/order/{third}")).await,
        (200, Value::Null)
    );

    // Delete the third customer.
    let before = shop.stream_lengths().await;
    let (status, _) = shop
        .send(
            Method::DELETE,
            &format!("/customer/{}", customer_ids[2]),
            Value::Null,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        xlen_delta(&before, &shop.stream_lengths().await),
        expect_delta(&[("events:customer_deleted", 1)])
    );
    assert_eq!(
        shop.get(&format!("/customer/{}", customer_ids[2])).await,
        (200, Value::Null)
    );

    // Bill the first order.
    let before = shop.stream_lengths().await;
    let billing = shop
        .create("/billing", json!({"order_id": orders[0].0}))
        .await;
    assert_eq!(billing.len(), 1);
    assert_eq!(
        xlen_delta(&before, &shop.stream_lengths().await),
        expect_delta(&[("events:billing_created", 1)])
    );

    // 8 orders are unbilled: 10, less the deleted one, less the billed one.
    let (status, unbilled) = shop.get("/orders/unbilled").await;
    assert_eq!(status, 200);
    let unbilled_ids: Vec<&str> = unbilled
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|o| o["id"].as_str())
        .collect();
    assert_eq!(unbilled_ids.len(), 8, "{unbilled}");
    assert!(
        !unbilled_ids.contains(&orders[0].0.as_str()) && !unbilled_ids.contains(&third.as_str())
    );

    // The report holds it all.
    let (status, report) = shop.get("/report").await;
    assert_eq!(status, 200);
    let count = |k: &str| report[k].as_array().map(Vec::len);
    assert_eq!(count("customers"), Some(9));
    assert_eq!(count("products"), Some(10));
    assert_eq!(count("inventory"), Some(10));
    assert_eq!(count("orders"), Some(9));
    assert_eq!(count("billings"), Some(1));
    assert_eq!(report["billings"][0]["order_id"], json!(orders[0].0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_original_scenario_with_every_role_in_one_process() {
    original_walk(&Shop::start(Layout::OneProcess).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_original_scenario_with_a_process_per_role() {
    original_walk(&Shop::start(Layout::ProcessPerRole).await).await;
}
