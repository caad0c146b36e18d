//! A flash sale: many clients buying one product at once, through the gateway. The guarded
//! append sells exactly the stock; the others get a clear 409, and nobody a 5xx or a timeout.

use crate::helpers::{Layout, Shop};
use serde_json::{json, Value};

const CLIENTS: usize = 64;
const ORDERS_EACH: usize = 3;
const STOCK: u64 = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_four_clients_buying_the_last_hundred_units_get_exactly_a_hundred() {
    let shop = Shop::start(Layout::OneProcess).await;
    let customer = shop
        .create(
            "/customers",
            json!([{"name": "Buyer", "email": "buyer@example.com"}]),
        )
        .await;
    let product = shop
        .create("/products", json!([{"name": "Hot", "price": 100}]))
        .await;
    shop.create(
        "/inventory",
        json!([{"product_id": product[0], "amount": STOCK}]),
    )
    .await;

    let body = json!({"customer_id": customer[0], "product_ids": [product[0]]});
    let clients = (0..CLIENTS).map(|_| {
        let (shop, body) = (&shop, body.clone());
        async move {
            let mut answers = Vec::new();
            for _ in 0..ORDERS_EACH {
                answers.push(shop.post("/order", body.clone()).await);
            }
            answers
        }
    });
    let answers: Vec<(u16, Value)> = futures::future::join_all(clients)
        .await
        .into_iter()
        .flatten()
        .collect();

    let sold = answers.iter().filter(|(status, _)| *status == 200).count();
    assert_eq!(sold as u64, STOCK, "exactly the stock is sold");
    for (status, body) in answers.iter().filter(|(status, _)| *status != 200) {
        assert_eq!(
            (*status, body["error"].as_str()),
            (409, Some("out_of_stock")),
            "a buyer too late gets a clear 409: {body}"
        );
    }
    let (_, inventory) = shop.get("/inventory").await;
    assert_eq!(inventory[0]["amount"], 0, "{inventory}");
    let (_, orders) = shop.get("/orders").await;
    assert_eq!(orders.as_array().map(Vec::len), Some(STOCK as usize));
}
