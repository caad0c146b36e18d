//! Limits a client meets at the gateway: a batch has a maximum size (above it: 413 and nothing
//! appended), the services' internal headers never reach the client, so an answer stays small
//! whatever the list size, and a client that sends its request too slowly is cut off.

use crate::helpers::{Layout, Shop};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

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

/// Clients that trickle a request (its body, or its head) are answered 408 and disconnected
/// once the request timeout has passed, and do not hold the role: others are served meanwhile,
/// and nothing is appended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_requests_are_cut_off_and_others_are_served_meanwhile() {
    let shop = Shop::start_with(
        Layout::OneProcess,
        &[("ORDERSHOP_REQUEST_TIMEOUT_MS", "500")],
    )
    .await;
    let before = shop.stream_lengths().await;
    let addr = shop.url("gateway").trim_start_matches("http://").to_owned();

    // Fifty clients announce a 250 KB body and send ten bytes of it; one never ends its head.
    let started = Instant::now();
    let mut slow = Vec::new();
    for _ in 0..50 {
        let mut stream = TcpStream::connect(&addr).await.expect("connects");
        stream
            .write_all(
                b"POST /customers HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
                  Content-Length: 250000\r\n\r\n[{\"name\": ",
            )
            .await
            .expect("sends");
        slow.push(stream);
    }
    let mut half_head = TcpStream::connect(&addr).await.expect("connects");
    half_head
        .write_all(b"GET /customers HTTP/1.1\r\nHost: sh")
        .await
        .expect("sends");

    // Meanwhile another client is served as usual.
    let (status, _) = shop.get("/customers").await;
    assert_eq!(
        status, 200,
        "the shop serves others while slow clients hang on"
    );

    // Each slow client gets its 408 and is disconnected (read to the end: the server closed).
    for (n, stream) in slow.iter_mut().chain([&mut half_head]).enumerate() {
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut answer))
            .await
            .unwrap_or_else(|_| panic!("slow client {n} is still connected after 20 s"))
            .expect("reads");
        let text = String::from_utf8_lossy(&answer);
        assert!(
            text.starts_with("HTTP/1.1 408"),
            "slow client {n} is told it was too slow: {text}"
        );
    }
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(500),
        "not cut off before the timeout: {took:?}"
    );
    assert_eq!(shop.stream_lengths().await, before, "nothing appended");
}

/// With `ORDERSHOP_RATE_LIMIT`, a client over its rate gets 429 with `Retry-After` (nothing it
/// asked for is done), other clients are served as usual, and health checks are never limited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_over_its_rate_limit_is_told_to_slow_down_and_others_are_not() {
    let shop = Shop::start_with(Layout::OneProcess, &[("ORDERSHOP_RATE_LIMIT", "5")]).await;
    let before = shop.stream_lengths().await;
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for i in 0..30 {
        let response = shop
            .http
            .post(shop.gateway("/customer"))
            .json(&json!({"name": format!("R{i}"), "email": format!("r{i}@example.com")}))
            .send()
            .await
            .expect("POST");
        if response.status() == 429 {
            retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let body: serde_json::Value = response.json().await.expect("a JSON error");
            assert_eq!(body["error"], "rate_limited", "{body}");
            statuses.push(429);
        } else {
            statuses.push(response.status().as_u16());
        }
    }
    let accepted = statuses.iter().filter(|s| **s == 200).count();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    assert!(limited > 0 && accepted >= 10, "{statuses:?}");
    assert_eq!(accepted + limited, 30, "{statuses:?}");
    assert!(retry_after.is_some_and(|s| s.parse::<u64>().is_ok_and(|n| n >= 1)));
    let after = shop.stream_lengths().await;
    assert_eq!(
        after["events:customer_created"] - before["events:customer_created"],
        accepted as u64,
        "only the accepted requests appended"
    );
    // Health is never limited; another client address has its own allowance.
    let (status, _) = shop.get("/health").await;
    assert_eq!(status, 200);
    let other = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .build()
        .expect("a client");
    let answer = other
        .get(shop.gateway("/customers"))
        .send()
        .await
        .expect("GET");
    assert_eq!(answer.status(), 200);
}
