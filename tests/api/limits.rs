//! Limits a client meets at the gateway: a batch has a maximum size (above it: 413 and nothing
//! appended), and the services' internal headers never reach the client, so an answer stays
//! small whatever the list size.

use crate::helpers::{Layout, Shop};
use serde_json::{json, Value};

fn customers(n: usize) -> Value {
    (0..n)
        .map(|i| json!({"name": format!("Customer {i}"), "email": format!("c{i}@example.com")}))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_has_a_maximum_and_answers_carry_no_internal_header() {
    let shop = Shop::start(Layout::OneProcess).await;
    let before = shop.stream_lengths().await;

    let answer = shop
        .http
        .post(shop.gateway("/customers"))
        .json(&customers(1_001))
        .send()
        .await
        .expect("POST /customers");
    assert_eq!(answer.status(), 413);
    let body: Value = answer.json().await.expect("a JSON error");
    assert_eq!(body["error"], "batch_too_large", "{body}");
    assert!(
        body["detail"].as_str().is_some_and(|d| d.contains("1000")),
        "{body}"
    );
    assert_eq!(shop.stream_lengths().await, before, "nothing appended");

    let answer = shop
        .http
        .post(shop.gateway("/customers"))
        .json(&customers(1_000))
        .send()
        .await
        .expect("POST /customers");
    assert_eq!(answer.status(), 200);
    let headers = answer.headers().clone();
    assert!(
        headers.get("x-ordershop-versions").is_none(),
        "an internal header reached the client: {headers:?}"
    );
    let header_bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    assert!(
        header_bytes < 1_024,
        "{header_bytes} bytes of headers: {headers:?}"
    );
    let ids: Vec<String> = answer.json().await.expect("a list of ids");
    assert_eq!(ids.len(), 1_000);
    let (_, listed) = shop.get("/customers").await;
    assert_eq!(
        listed.as_array().map(Vec::len),
        Some(1_000),
        "read-your-writes held"
    );
}
