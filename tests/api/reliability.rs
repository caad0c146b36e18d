//! Faults against real processes: Redis killed with SIGKILL in the middle of a burst, Redis gone
//! and back. What was acknowledged stays, nothing hangs, and every role recovers by itself.

use crate::helpers::{dump, eventually, run_cli, wait_all_caught_up, Layout, Shop, CACHE_KEYS};
use ordershop_domain::{Action, Entity, EntityKind};
use ordershop_eventstore::{EntryId, EventStore, Stream};
use ordershop_redis::RedisConfig;
use ordershop_testkit::{RedisOptions, RedisServer};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(120);

fn strict_redis() -> RedisServer {
    RedisServer::start_with(RedisOptions {
        appendonly: true,
        appendfsync: "always",
        extra: Vec::new(),
    })
}

pub(crate) fn kill_redis(shop: &Shop) {
    let pid = shop.redis.pid().expect("redis runs");
    let status = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

/// Every order created in the log, with its units per product, and every inventory record's
/// amounts in log order.
pub(crate) async fn log_facts(
    store: &EventStore,
) -> (BTreeMap<String, Vec<String>>, BTreeMap<String, Vec<u32>>) {
    let mut orders = BTreeMap::new();
    let mut stock: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    let streams = vec![
        Stream::new(EntityKind::Order, Action::Created),
        Stream::new(EntityKind::Inventory, Action::Created),
        Stream::new(EntityKind::Inventory, Action::Updated),
    ];
    let entries = store
        .replay(streams, EntryId::ZERO)
        .await
        .expect("replay")
        .collect_all()
        .await
        .expect("replay");
    for entry in entries {
        match entry.decode().expect("valid event").change.entity {
            Entity::Order(o) => {
                orders.insert(
                    o.id.to_string(),
                    o.product_ids.iter().map(ToString::to_string).collect(),
                );
            }
            Entity::Inventory(i) => stock
                .entry(i.product_id.to_string())
                .or_default()
                .push(i.amount.get()),
            _ => {}
        }
    }
    (orders, stock)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_orders_survive_a_redis_crash_in_strict_mode() {
    const INITIAL: u32 = 100_000;
    let mut shop = Shop::start_on(strict_redis(), Layout::ProcessPerRole, &[]).await;
    let customers = shop
        .create("/customers", json!([{"name": "A", "email": "a@example.com"}, {"name": "B", "email": "b@example.com"}]))
        .await;
    let products = shop
        .create(
            "/products",
            json!([{"name": "P0", "price": 100}, {"name": "P1", "price": 200}]),
        )
        .await;
    shop.create(
        "/inventory",
        json!([{"product_id": products[0], "amount": INITIAL}, {"product_id": products[1], "amount": INITIAL}]),
    )
    .await;

    // A burst of orders from 8 clients; Redis is killed with SIGKILL once 150 were acknowledged.
    let acknowledged: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let refused = AtomicUsize::new(0);
    let burst = async {
        let clients = (0..8).map(|c| {
            let (shop, acknowledged, refused, customers, products) = (&shop, &acknowledged, &refused, &customers, &products);
            async move {
                for n in 0..60 {
                    let body = json!({"customer_id": customers[c % 2], "product_ids": [products[n % 2], products[(n + c) % 2]]});
                    let (status, ids) = shop.post("/order", body).await;
                    if status == 200 {
                        let id = ids[0].as_str().unwrap_or_default().to_owned();
                        acknowledged.lock().unwrap_or_else(|e| e.into_inner()).push(id);
                    } else {
                        assert!(status == 503 || status == 409, "a refused order is 503 (or a conflict), got {status}: {ids}");
                        refused.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
        });
        futures::future::join_all(clients).await;
    };
    let crash = async {
        eventually("150 acknowledged orders", DEADLINE, || {
            let n = acknowledged.lock().map(|a| a.len()).unwrap_or(0);
            std::future::ready(n >= 150)
        })
        .await;
        kill_redis(&shop);
    };
    tokio::join!(burst, crash);
    let acknowledged = acknowledged.into_inner().unwrap_or_else(|e| e.into_inner());
    assert!(
        refused.load(Ordering::SeqCst) > 0,
        "some orders met the dead Redis"
    );

    // Redis comes back on the same data folder; every role reconnects by itself.
    shop.redis.restart();
    eventually("an order to succeed again", DEADLINE, || async {
        shop.post(
            "/order",
            json!({"customer_id": customers[0], "product_ids": [products[0]]}),
        )
        .await
        .0 == 200
    })
    .await;

    // Every acknowledged order is in the log, and the stock is the log's arithmetic.
    let store = shop.store().await;
    let (orders, stock) = log_facts(&store).await;
    let missing: Vec<&String> = acknowledged
        .iter()
        .filter(|id| !orders.contains_key(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "acknowledged orders missing from the log: {missing:?}"
    );
    for product in &products {
        let taken = orders.values().flatten().filter(|p| *p == product).count() as u32;
        let amounts = &stock[product];
        assert_eq!(
            amounts.last().copied(),
            Some(INITIAL - taken),
            "stock of {product} is the log's arithmetic"
        );
        assert!(
            amounts.windows(2).all(|w| w[1] < w[0]),
            "stock only went down, never below zero"
        );
    }

    // The projections converge to exactly the log's state.
    wait_all_caught_up(&shop).await;
    let mut conn = shop.redis().await;
    let live = dump(&mut conn, &CACHE_KEYS).await;
    let (code, out, err) = run_cli(&shop, &["rebuild", "entity-cache", "--yes"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        dump(&mut conn, &CACHE_KEYS).await,
        live,
        "the cache equals a rebuild"
    );
    assert_listed_orders_are_the_logs(&shop).await;
}

/// `GET /orders` lists exactly the orders the log holds.
pub(crate) async fn assert_listed_orders_are_the_logs(shop: &Shop) {
    let (orders, _) = log_facts(&shop.store().await).await;
    let (_, listed) = shop.get("/orders").await;
    let listed: BTreeSet<String> = listed
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|o| o["id"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(
        listed,
        orders.keys().cloned().collect::<BTreeSet<String>>(),
        "GET /orders shows the log's orders"
    );
}

/// A shop of one process per role on a strict-durability Redis, with one customer ("Before"),
/// every projection caught up.
async fn shop_with_a_customer() -> Shop {
    let shop = Shop::start_on(strict_redis(), Layout::ProcessPerRole, &[]).await;
    shop.create(
        "/customer",
        json!({"name": "Before", "email": "before@example.com"}),
    )
    .await;
    wait_all_caught_up(&shop).await;
    shop
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_commands_fail_fast_and_every_role_recovers() {
    let mut shop = shop_with_a_customer().await;

    kill_redis(&shop);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .expect("client");
    for (method, path, body) in [
        (
            reqwest::Method::POST,
            "/customer",
            json!({"name": "During", "email": "during@example.com"}),
        ),
        (reqwest::Method::GET, "/customers", Value::Null),
        (reqwest::Method::GET, "/report", Value::Null),
    ] {
        let response = client
            .request(method.clone(), shop.gateway(path))
            .json(&body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path} must answer, not hang: {e}"));
        assert_eq!(response.status().as_u16(), 503, "{method} {path}");
        let body: Value = response.json().await.expect("a JSON error");
        assert_eq!(body["error"], "unavailable", "{body}");
    }
    for role in [
        "gateway",
        "order-service",
        "entity-cache",
        "crm-service",
        "msg-service",
    ] {
        let status = client
            .get(format!("{}/health", shop.url(role)))
            .send()
            .await
            .map(|r| r.status().as_u16());
        assert_eq!(
            status.ok(),
            Some(503),
            "{role} is not healthy without Redis"
        );
    }

    shop.redis.restart();
    for role in crate::helpers::ROLES {
        shop.wait_healthy(role).await;
    }
    let after = shop
        .create(
            "/customer",
            json!({"name": "After", "email": "after@example.com"}),
        )
        .await;
    assert_eq!(
        shop.get(&format!("/customer/{}", after[0])).await.1["name"],
        "After"
    );
    wait_all_caught_up(&shop).await;
    let emails = shop.emails(None).await;
    let welcomes: Vec<&Value> = emails.iter().filter(|m| m["kind"] == "welcome").collect();
    assert_eq!(
        welcomes.len(),
        2,
        "one welcome each for Before and After: {emails:?}"
    );
    let store = EventStore::connect(&RedisConfig::new(shop.redis.url()).expect("url"))
        .await
        .expect("store");
    let (orders, _) = log_facts(&store).await;
    assert!(orders.is_empty());
    let (code, out, _) = run_cli(&shop, &["status", "--max-lag", "0"]);
    assert_eq!(code, 0, "caught up: {out}");
}

async fn post_with_key(
    shop: &Shop,
    path: &str,
    key: &str,
    body: &Value,
) -> (u16, Option<String>, Value) {
    let response = shop
        .http
        .post(shop.gateway(path))
        .header("Idempotency-Key", key)
        .json(body)
        .send()
        .await
        .expect("POST");
    let status = response.status().as_u16();
    let replayed = response
        .headers()
        .get("idempotent-replayed")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (
        status,
        replayed,
        response.json().await.unwrap_or(Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_command_with_an_idempotency_key_is_done_once() {
    let shop = Shop::start(Layout::ProcessPerRole).await;
    let customer = shop
        .create(
            "/customer",
            json!({"name": "Ida", "email": "ida@example.com"}),
        )
        .await;
    let product = shop
        .create("/product", json!({"name": "Once", "price": 100}))
        .await;
    shop.create(
        "/inventory",
        json!({"product_id": product[0], "amount": 10}),
    )
    .await;
    let order = json!({"customer_id": customer[0], "product_ids": [product[0], product[0]]});
    let before = shop.stream_lengths().await;

    // The first request, then its retry: the same answer, one append.
    let (status, replayed, first) = post_with_key(&shop, "/order", "retry-1", &order).await;
    assert_eq!((status, replayed), (200, None), "{first}");
    let (status, replayed, again) = post_with_key(&shop, "/order", "retry-1", &order).await;
    assert_eq!((status, replayed.as_deref()), (200, Some("true")));
    assert_eq!(again, first, "the repeat answers the first ids");
    let after = shop.stream_lengths().await;
    assert_eq!(
        after["events:order_created"],
        before["events:order_created"] + 1
    );
    assert_eq!(
        after["events:inventory_updated"],
        before["events:inventory_updated"] + 1
    );
    let (_, stock) = shop.get("/inventory").await;
    assert_eq!(stock[0]["amount"], 8, "the stock was taken once");

    // Repeats racing each other: still one append.
    let racing = futures::future::join_all(
        (0..10).map(|_| post_with_key(&shop, "/order", "race-1", &order)),
    )
    .await;
    let answers: BTreeSet<String> = racing
        .iter()
        .map(|(s, _, body)| format!("{s} {body}"))
        .collect();
    assert_eq!(
        answers.len(),
        1,
        "every racer got the same answer: {answers:?}"
    );
    assert_eq!(
        shop.stream_lengths().await["events:order_created"],
        before["events:order_created"] + 2
    );

    // The same key for another request is refused and appends nothing.
    let lengths = shop.stream_lengths().await;
    let other = json!({"customer_id": customer[0], "product_ids": [product[0]]});
    let (status, _, body) = post_with_key(&shop, "/order", "retry-1", &other).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"], "idempotency_key_reused");
    assert_eq!(shop.stream_lengths().await, lengths);

    // A malformed key is a 400; a delete retried after it succeeded answers `true` again.
    let (status, _, body) = post_with_key(&shop, "/order", "no spaces allowed", &order).await;
    assert_eq!(status, 400, "{body}");
    let first_id = first[0].as_str().unwrap_or_default().to_owned();
    for attempt in 0..2 {
        let response = shop
            .http
            .delete(shop.gateway(&format!("/order/{first_id}")))
            .header("Idempotency-Key", "delete-1")
            .send()
            .await
            .expect("DELETE");
        assert_eq!(response.status().as_u16(), 200, "attempt {attempt}");
        assert_eq!(
            response.json::<Value>().await.unwrap_or_default(),
            json!(true)
        );
    }
    assert_eq!(shop.stream_lengths().await["events:order_deleted"], 1);
}

/// After Redis restarts, each role's connection is dead; the first request on it is sent again
/// on a new connection instead of failing: every role's first `/health`, and the message
/// service's first `GET /emails`, answer 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_request_after_a_redis_restart_succeeds() {
    let mut shop = shop_with_a_customer().await;

    shop.redis.restart();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .expect("client");
    for role in crate::helpers::ROLES {
        let response = client
            .get(format!("{}/health", shop.url(role)))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{role} answers: {e}"));
        let status = response.status().as_u16();
        let body = response.text().await.unwrap_or_default();
        assert_eq!(
            status, 200,
            "{role}'s first /health after the restart: {body}"
        );
    }
    let emails = client
        .get(format!("{}/emails", shop.url("msg-service")))
        .send()
        .await
        .expect("msg-service answers");
    assert_eq!(emails.status().as_u16(), 200);
}

/// An entry written by hand at the end of the ID space makes appends to its stream impossible:
/// the shop says so plainly (500 `log_blocked`, naming the stream and the entry, nothing
/// appended), never a "retry later" 503, and other streams go on working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_at_the_end_of_the_id_space_is_named_not_retried() {
    let shop = Shop::start(Layout::OneProcess).await;
    let mut conn = shop.redis().await;
    let top = "18446744073709551615-18446744073709551615";
    let _: String = redis::cmd("XADD")
        .arg("events:product_created")
        .arg(top)
        .arg("event_id")
        .arg("by-hand")
        .query_async(&mut conn)
        .await
        .expect("XADD");
    let before = shop.stream_lengths().await;
    let (status, body) = shop
        .post("/product", json!({"name": "Tea", "price": 450}))
        .await;
    assert_eq!(status, 500, "{body}");
    assert_eq!(body["error"], "log_blocked", "{body}");
    let detail = body["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("events:product_created") && detail.contains(top),
        "{detail}"
    );
    assert_eq!(shop.stream_lengths().await, before, "nothing appended");
    // `status` says so, and a check with --max-lag fails.
    let (code, _, err) = run_cli(&shop, &["status", "--max-lag", "1000"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("blocked: appends to events:product_created are refused") && err.contains(top),
        "{err}"
    );
    // Customers live in other streams.
    shop.create(
        "/customer",
        json!({"name": "Ada", "email": "ada@example.com"}),
    )
    .await;
}
