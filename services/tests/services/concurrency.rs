//! Many buyers at once through the order service: the guarded append never oversells.

use crate::helpers::{Shop, DOMAIN_SERVICES};
use futures::future::join_all;
use ordershop_domain::{Action, Entity, EntityKind, Inventory, Quantity};
use ordershop_services::config::Role;
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_orders_for_the_last_ten_units_sell_exactly_ten() {
    let shop = Shop::start(&DOMAIN_SERVICES).await;
    let customer = shop
        .create(
            EntityKind::Customer,
            "/customer",
            json!({"name": "Buyer", "email": "buyer@example.com"}),
        )
        .await;
    let product = shop
        .create(
            EntityKind::Product,
            "/product",
            json!({"name": "Widget", "price": 100}),
        )
        .await;
    let stock = shop
        .create(
            EntityKind::Inventory,
            "/inventory",
            json!({"product_id": product, "amount": 10}),
        )
        .await;

    let url = format!("{}/order", shop.url(Role::OrderService));
    let body = json!({"product_ids": [product], "customer_id": customer});
    let replies = join_all((0..50).map(|_| shop.post(&url, &body))).await;

    let won = replies
        .iter()
        .filter(|r| r.status == StatusCode::OK)
        .count();
    assert_eq!(won, 10, "exactly ten orders succeed");
    for reply in replies.iter().filter(|r| r.status != StatusCode::OK) {
        reply.assert_error(409, "out_of_stock", "a buyer too late");
    }

    // Stock ends at 0; the log holds ten orders and ten decrements, never below zero.
    let head = shop.head::<Inventory>(stock).await;
    assert_eq!(
        head.entity.map(|r| r.amount),
        Some(Quantity::new(0).expect("a quantity"))
    );
    assert_eq!(head.version, 11);
    assert_eq!(shop.xlen(EntityKind::Order, Action::Created).await, 10);
    let amounts: Vec<u32> = shop
        .events(EntityKind::Inventory, Action::Updated)
        .await
        .iter()
        .map(|e| match &e.change.entity {
            Entity::Inventory(r) => r.amount.get(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(amounts, (0..10).rev().collect::<Vec<u32>>());
}
