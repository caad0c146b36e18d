//! A flash sale: many clients buying one product at once, through the gateway. The guarded
//! append sells exactly the stock; the others get a clear 409, and nobody a 5xx or a timeout;
//! orders committed together in one append keep their own answers and request ids.

use crate::helpers::{Layout, Shop};
use serde_json::{json, Value};

const CLIENTS: usize = 64;
const ORDERS_EACH: usize = 3;
const STOCK: u64 = 100;

/// A shop's one buyer and products with this stock each: (customer id, product ids, inventory
/// record ids).
async fn buyer_and_products(shop: &Shop, stock: &[u64]) -> (String, Vec<String>, Vec<String>) {
    let customer = shop
        .create(
            "/customers",
            json!([{"name": "Buyer", "email": "buyer@example.com"}]),
        )
        .await;
    let products = shop
        .create(
            "/products",
            Value::Array(
                (0..stock.len())
                    .map(|n| json!({"name": format!("P{n}"), "price": 100 + n}))
                    .collect(),
            ),
        )
        .await;
    let records = shop
        .create(
            "/inventory",
            Value::Array(
                products
                    .iter()
                    .zip(stock)
                    .map(|(product, amount)| json!({"product_id": product, "amount": amount}))
                    .collect(),
            ),
        )
        .await;
    (customer[0].clone(), products, records)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_four_clients_buying_the_last_hundred_units_get_exactly_a_hundred() {
    oversell(&Shop::start(Layout::OneProcess).await).await;
}

/// 64 clients buy the last 100 units of a product at once: exactly 100 are sold, the others
/// get a clear 409, the stock ends at 0.
pub async fn oversell(shop: &Shop) {
    let (customer, product, _) = buyer_and_products(shop, &[STOCK]).await;

    let body = json!({"customer_id": customer, "product_ids": [product[0]]});
    let clients = (0..CLIENTS).map(|_| {
        let (shop, body) = (shop, body.clone());
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

/// Orders bought at once are committed in groups (one append for many requests): each request
/// still gets its own answer — its own order id, the stock versions its own order produced —
/// and each event in the log carries the id of the request that caused it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn orders_committed_together_keep_their_own_answers_and_request_ids() {
    const BUYERS: usize = 48;
    let shop = Shop::start(Layout::OneProcess).await;
    let (customer, product, record) = buyer_and_products(&shop, &[1_000]).await;

    let body = json!({"customer_id": customer, "product_ids": [product[0], product[0]]});
    let buyers = (0..BUYERS).map(|n| {
        let (shop, body) = (&shop, body.clone());
        async move {
            let request_id = format!("buyer-{n}");
            let response = shop
                .http
                .post(shop.gateway("/order"))
                .header("X-Request-Id", &request_id)
                .json(&body)
                .send()
                .await
                .expect("POST /order");
            assert_eq!(response.status(), 200, "{request_id}");
            let ids: Value = response.json().await.expect("JSON");
            (request_id, ids[0].as_str().expect("an order id").to_owned())
        }
    });
    let bought: Vec<(String, String)> = futures::future::join_all(buyers).await;

    // Every order is in the log once, tagged with its own request, and its stock move too.
    let conn = shop.redis().await;
    let entries = |stream: &'static str| {
        let mut conn = conn.clone();
        async move {
            let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
                .arg(stream)
                .arg("-")
                .arg("+")
                .query_async(&mut conn)
                .await
                .expect("XRANGE");
            reply
                .ids
                .into_iter()
                .map(|e| {
                    let field = |name: &str| e.get::<String>(name).unwrap_or_default();
                    (field("entity"), field("request_id"), field("version"))
                })
                .collect::<Vec<(String, String, String)>>()
        }
    };
    let orders = entries("events:order_created").await;
    assert_eq!(orders.len(), BUYERS);
    for (request_id, order_id) in &bought {
        let tagged: Vec<&(String, String, String)> = orders
            .iter()
            .filter(|(entity, _, _)| entity.contains(order_id.as_str()))
            .collect();
        assert_eq!(tagged.len(), 1, "order {order_id} is in the log once");
        assert_eq!(&tagged[0].1, request_id, "order {order_id}'s request id");
    }
    let moves = entries("events:inventory_updated").await;
    assert_eq!(moves.len(), BUYERS, "one stock move per order");
    let mut tags: Vec<&str> = moves.iter().map(|(_, r, _)| r.as_str()).collect();
    tags.sort_unstable();
    let mut expected: Vec<&str> = bought.iter().map(|(r, _)| r.as_str()).collect();
    expected.sort_unstable();
    assert_eq!(
        tags, expected,
        "each stock move carries its order's request id"
    );
    let versions: Vec<u64> = moves
        .iter()
        .map(|(_, _, v)| v.parse().expect("a version"))
        .collect();
    assert_eq!(
        versions,
        (2..2 + BUYERS as u64).collect::<Vec<_>>(),
        "the record's versions follow each other"
    );
    let (_, stock) = shop.get(&format!("/inventory/{}", record[0])).await;
    assert_eq!(stock["amount"], 1_000 - 2 * BUYERS as u64, "{stock}");
}

/// Grouped creates and single-command updates and deletes of orders on the same products, at
/// once: every request is answered (none waits for a group that nobody commits), and the stock
/// is the log's arithmetic.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn grouped_creates_and_single_updates_on_the_same_products_all_get_answers() {
    const CLIENTS: usize = 24;
    const ROUNDS: usize = 8;
    let shop = Shop::start(Layout::OneProcess).await;
    let (customer, products, _) = buyer_and_products(&shop, &[10_000, 10_000]).await;
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(20))
        .build()
        .expect("client");

    let clients = (0..CLIENTS).map(|c| {
        let (shop, client, customer, products) = (&shop, &client, &customer, &products);
        async move {
            let order = |n: usize| {
                json!({"customer_id": customer, "product_ids": [products[n % 2], products[(n + c) % 2]]})
            };
            let mut mine: Vec<String> = Vec::new();
            for n in 0..ROUNDS {
                let (method, path, body) = match (n % 3, mine.last()) {
                    (1, Some(id)) => (reqwest::Method::PUT, format!("/order/{id}"), order(n + 1)),
                    (2, Some(id)) => (reqwest::Method::DELETE, format!("/order/{id}"), Value::Null),
                    _ => (reqwest::Method::POST, "/order".to_owned(), order(n)),
                };
                let response = client
                    .request(method.clone(), shop.gateway(&path))
                    .json(&body)
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("{method} {path} got no answer: {e}"));
                let status = response.status().as_u16();
                assert!(status == 200 || status == 409, "{method} {path}: {status}");
                if status == 200 && method == reqwest::Method::POST {
                    let ids: Value = response.json().await.expect("JSON");
                    mine.push(ids[0].as_str().expect("id").to_owned());
                } else if status == 200 && method == reqwest::Method::DELETE {
                    mine.pop();
                }
            }
        }
    });
    futures::future::join_all(clients).await;

    let (orders, stock) = crate::reliability::log_facts(&shop.store().await).await;
    assert!(!orders.is_empty());
    let (_, inventory) = shop.get("/inventory").await;
    for record in inventory.as_array().expect("records") {
        let product = record["product_id"].as_str().expect("product");
        assert_eq!(
            record["amount"].as_u64(),
            stock[product].last().map(|a| u64::from(*a)),
            "the cache shows the log's stock of {product}"
        );
    }
}

/// `If-Match` makes a PUT or DELETE conditional on the version a GET answered in `ETag`: of ten
/// concurrent PUTs made against the same version, exactly one lands; the others get 412 and
/// append nothing. Through the gateway's in-process commands and over HTTP to the services.
async fn if_match_lets_one_of_concurrent_writers_win(layout: Layout) {
    let shop = Shop::start(layout).await;
    let id = shop
        .create(
            "/customer",
            json!({"name": "Ada", "email": "ada@example.com"}),
        )
        .await
        .remove(0);
    let path = format!("/customer/{id}");
    let etag_of = |response: &reqwest::Response| {
        response
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let got = shop
        .http
        .get(shop.gateway(&path))
        .send()
        .await
        .expect("GET");
    let tag = etag_of(&got).expect("GET of an entity answers with an ETag");
    assert_eq!(tag, "\"1\"");

    let before = shop.stream_lengths().await;
    let writers = (0..10).map(|i| {
        let request = shop
            .http
            .put(shop.gateway(&path))
            .header("If-Match", tag.as_str())
            .json(&json!({"name": format!("Ada {i}"), "email": "ada@example.com"}));
        async move {
            let response = request.send().await.expect("PUT");
            (response.status().as_u16(), etag_of(&response))
        }
    });
    let answers = futures::future::join_all(writers).await;
    let won: Vec<&(u16, Option<String>)> = answers.iter().filter(|(s, _)| *s == 200).collect();
    let refused = answers.iter().filter(|(s, _)| *s == 412).count();
    assert_eq!((won.len(), refused), (1, 9), "{answers:?}");
    assert_eq!(
        won[0].1.as_deref(),
        Some("\"2\""),
        "the winner's new version"
    );
    let after = shop.stream_lengths().await;
    assert_eq!(
        after["events:customer_updated"],
        before["events:customer_updated"] + 1,
        "only the winner appended"
    );

    // A DELETE against the old version is refused; against the current one it goes through.
    let delete = |tag: &'static str| {
        shop.http
            .delete(shop.gateway(&path))
            .header("If-Match", tag)
            .send()
    };
    let stale = delete("\"1\"").await.expect("DELETE");
    assert_eq!(stale.status(), 412);
    let body: Value = stale.json().await.expect("a JSON error");
    assert_eq!(body["error"], "precondition_failed");
    assert_eq!(shop.stream_lengths().await, after, "nothing appended");
    // What is not one of the shop's entity tags matches no version.
    let garbage = delete("yesterday").await.expect("DELETE");
    assert_eq!(garbage.status(), 412);
    assert_eq!(delete("\"2\"").await.expect("DELETE").status(), 200);
    assert_eq!(shop.get(&path).await, (200, Value::Null));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn if_match_in_one_process() {
    if_match_lets_one_of_concurrent_writers_win(Layout::OneProcess).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn if_match_over_http_to_the_services() {
    if_match_lets_one_of_concurrent_writers_win(Layout::ProcessPerRole).await;
}
