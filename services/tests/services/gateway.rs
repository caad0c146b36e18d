//! The gateway: forwarding, a stopped service, queries on an empty cache, and the
//! read-your-writes wait. (Queries over real data need the projector; the root crate's suite
//! covers them.)

use crate::helpers::{Shop, DOMAIN_SERVICES};
use ordershop_domain::{Action, EntityKind};
use ordershop_readmodel::keys;
use ordershop_redis::RedisConfig;
use ordershop_services::config::Role;
use ordershop_services::connection::lazy_connection;
use ordershop_services::gateway::consistency::{AppliedWatch, Consistency};
use ordershop_services::versions::VersionStamp;
use ordershop_testkit::eventually;
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::time::Duration;
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_are_forwarded_and_their_answer_relayed() {
    let shop = Shop::start(&[Role::CustomerService, Role::Gateway]).await;
    let gateway = shop.url(Role::Gateway).to_owned();
    let reply = shop
        .post(
            &format!("{gateway}/customers"),
            &json!([{"name": "Ada", "email": "ada@example.com"}]),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    let id = reply.ids()[0];
    // The service's versions header is for the gateway's read-your-writes, not for clients.
    assert!(
        reply.headers.get("x-ordershop-versions").is_none(),
        "an internal header reached the client: {:?}",
        reply.headers
    );
    assert_eq!(shop.xlen(EntityKind::Customer, Action::Created).await, 1);

    let reply = shop
        .call(
            Method::PUT,
            &format!("{gateway}/customer/{id}?source=test"),
            Some(&json!({"id": id, "name": "Ada", "email": "ada@example.org"})),
        )
        .await;
    assert_eq!((reply.status, &reply.body), (StatusCode::OK, &json!(true)));
    let reply = shop
        .call(Method::DELETE, &format!("{gateway}/customer/{id}"), None)
        .await;
    assert_eq!((reply.status, &reply.body), (StatusCode::OK, &json!(true)));
    assert_eq!(shop.xlen(EntityKind::Customer, Action::Deleted).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_service_is_503_and_the_other_routes_keep_working() {
    let mut roles = DOMAIN_SERVICES.to_vec();
    roles.push(Role::Gateway);
    let mut shop = Shop::start(&roles).await;
    let gateway = shop.url(Role::Gateway).to_owned();
    let order = json!({"product_ids": [Uuid::new_v4()], "customer_id": Uuid::new_v4()});

    // Reaches the order service while it runs.
    shop.post(&format!("{gateway}/order"), &order)
        .await
        .assert_error(422, "unknown_reference", "order service up");

    shop.stop(Role::OrderService).await;
    let before = shop.stream_lengths().await;
    let id = Uuid::new_v4();
    for (method, path) in [
        (Method::POST, "/order".to_owned()),
        (Method::POST, "/orders".to_owned()),
        (Method::PUT, format!("/order/{id}")),
        (Method::DELETE, format!("/order/{id}")),
    ] {
        let reply = shop
            .call(method.clone(), &format!("{gateway}{path}"), Some(&order))
            .await;
        reply.assert_error(503, "unavailable", &format!("{method} {path}"));
        assert_eq!(reply.body["detail"], json!("order-service unreachable"));
    }

    // Everything else still works: other commands, queries, health.
    let reply = shop
        .post(
            &format!("{gateway}/customer"),
            &json!({"name": "Ada", "email": "ada@example.com"}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    assert_eq!(reply.ids().len(), 1);
    let reply = shop
        .call(Method::GET, &format!("{gateway}/orders"), None)
        .await;
    assert_eq!((reply.status, &reply.body), (StatusCode::OK, &json!([])));
    let reply = shop
        .call(Method::GET, &format!("{gateway}/health"), None)
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let mut after = shop.stream_lengths().await;
    assert_eq!(after.remove("events:customer_created"), Some(1));
    let mut expected = before;
    expected.remove("events:customer_created");
    assert_eq!(after, expected, "only the customer was appended");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_answer_from_the_entity_cache() {
    let shop = Shop::start(&[Role::Gateway]).await;
    let gateway = shop.url(Role::Gateway).to_owned();
    for path in [
        "/customers",
        "/products",
        "/inventory",
        "/orders",
        "/billings",
        "/orders/unbilled",
    ] {
        let reply = shop
            .call(Method::GET, &format!("{gateway}{path}"), None)
            .await;
        assert_eq!(
            (reply.status, &reply.body),
            (StatusCode::OK, &json!([])),
            "{path}"
        );
    }
    let id = Uuid::new_v4();
    for item in ["customer", "product", "inventory", "order", "billing"] {
        let reply = shop
            .call(Method::GET, &format!("{gateway}/{item}/{id}"), None)
            .await;
        assert_eq!(
            (reply.status, &reply.body),
            (StatusCode::OK, &json!(null)),
            "an unknown {item} is null, as in the original"
        );
    }
    let reply = shop
        .call(Method::GET, &format!("{gateway}/report"), None)
        .await;
    assert_eq!(
        (reply.status, &reply.body),
        (
            StatusCode::OK,
            &json!({"products": [], "inventory": [], "customers": [], "orders": [], "billings": []})
        )
    );
}

/// A request waiting (up to 30 s) for these versions, in a task of its own.
fn spawn_waiter(
    watch: &AppliedWatch,
    conn: &ordershop_redis::RedisConnection,
    versions: &[VersionStamp],
) -> tokio::task::JoinHandle<Result<Consistency, redis::RedisError>> {
    let (watch, conn, versions) = (watch.clone(), conn.clone(), versions.to_vec());
    tokio::spawn(async move {
        watch
            .wait_until_applied(&conn, &versions, Duration::from_secs(30))
            .await
    })
}

/// A watch whose subscription to the cache's notices is up.
async fn subscribed_watch(conn: &ordershop_redis::RedisConnection) -> AppliedWatch {
    let watch = AppliedWatch::start(conn.clone());
    eventually("the watch to subscribe", Duration::from_secs(10), || {
        std::future::ready(watch.is_subscribed())
    })
    .await;
    watch
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_consistency_wait_ends_once_the_cache_applied_every_version() {
    let shop = Shop::start(&[]).await;
    let conn = lazy_connection(&RedisConfig::new(shop.redis.url()).unwrap()).unwrap();
    let watch = subscribed_watch(&conn).await;
    let (order, stock) = (Uuid::new_v4(), Uuid::new_v4());
    let versions = [
        VersionStamp {
            kind: EntityKind::Order,
            id: order,
            version: 1,
        },
        VersionStamp {
            kind: EntityKind::Inventory,
            id: stock,
            version: 4,
        },
        VersionStamp {
            kind: EntityKind::Inventory,
            id: stock,
            version: 5,
        },
    ];
    let applied = |kind| keys::applied_versions(ordershop_readmodel::names::ENTITY_CACHE, kind);
    let mut redis = shop.redis().await;

    // Nothing applied yet: the wait gives up at its timeout.
    let outcome = watch
        .wait_until_applied(&conn, &versions, Duration::from_millis(30))
        .await
        .unwrap();
    assert_eq!(outcome, Consistency::TimedOut { behind: 2 });

    // The order is applied, the stock only up to version 4 of 5.
    let _: () = redis::cmd("HSET")
        .arg(applied(EntityKind::Order))
        .arg(order.to_string())
        .arg(1)
        .query_async(&mut redis)
        .await
        .unwrap();
    let _: () = redis::cmd("HSET")
        .arg(applied(EntityKind::Inventory))
        .arg(stock.to_string())
        .arg(4)
        .query_async(&mut redis)
        .await
        .unwrap();
    let outcome = watch
        .wait_until_applied(&conn, &versions, Duration::from_millis(30))
        .await
        .unwrap();
    assert_eq!(outcome, Consistency::TimedOut { behind: 1 });

    // A waiter is under way when the projector catches up (to a later version, even) and says
    // so on the notices channel, as its Function does after each batch.
    let waiter = spawn_waiter(&watch, &conn, &versions);
    let _: () = redis::cmd("HSET")
        .arg(applied(EntityKind::Inventory))
        .arg(stock.to_string())
        .arg(6)
        .query_async(&mut redis)
        .await
        .unwrap();
    let inventory = ordershop_readmodel::applied::kind_number(EntityKind::Inventory);
    // Published until the waiter has heard it (it may register after a first notice).
    eventually(
        "the waiter to hear the notice",
        Duration::from_secs(10),
        || {
            let mut redis = redis.clone();
            let finished = waiter.is_finished();
            async move {
                let _: i64 = redis::cmd("PUBLISH")
                    .arg(ordershop_readmodel::applied::channel())
                    .arg(format!("{inventory}:{stock}:6"))
                    .query_async(&mut redis)
                    .await
                    .unwrap();
                finished
            }
        },
    )
    .await;
    assert_eq!(waiter.await.unwrap().unwrap(), Consistency::Applied);
    assert_eq!(
        watch
            .wait_until_applied(&conn, &[], Duration::ZERO)
            .await
            .unwrap(),
        Consistency::Applied,
        "no versions: nothing to wait for"
    );
}

/// Without a subscription (lost, or never made), a waiter still sees what the cache applied:
/// it reads again at each loss and polls meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_subscription_falls_back_to_reading() {
    let shop = Shop::start(&[]).await;
    let conn = lazy_connection(&RedisConfig::new(shop.redis.url()).unwrap()).unwrap();
    let watch = subscribed_watch(&conn).await;
    let id = Uuid::new_v4();
    let versions = [VersionStamp {
        kind: EntityKind::Customer,
        id,
        version: 1,
    }];
    let mut redis = shop.redis().await;
    let waiter = spawn_waiter(&watch, &conn, &versions);
    // The subscription is cut; then the version is applied without any notice.
    let _: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query_async(&mut redis)
        .await
        .unwrap();
    let _: () = redis::cmd("HSET")
        .arg(keys::applied_versions(
            ordershop_readmodel::names::ENTITY_CACHE,
            EntityKind::Customer,
        ))
        .arg(id.to_string())
        .arg(1)
        .query_async(&mut redis)
        .await
        .unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(20), waiter)
        .await
        .expect("the waiter ends well before its timeout")
        .unwrap()
        .unwrap();
    assert_eq!(outcome, Consistency::Applied);
    let polling = AppliedWatch::without_subscription();
    assert_eq!(
        polling
            .wait_until_applied(&conn, &versions, Duration::from_secs(5))
            .await
            .unwrap(),
        Consistency::Applied
    );
}

/// Redis at `maxmemory` refuses writes: the client is told the store is full (507
/// `storage_full`, with Redis's words), not that Redis is unreachable, and nothing is appended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_out_of_memory_is_reported_as_storage_full_and_appends_nothing() {
    let shop = Shop::start(&[Role::CustomerService, Role::Gateway]).await;
    let gateway = shop.url(Role::Gateway).to_owned();
    let mut conn = shop.redis().await;
    let before = shop.stream_lengths().await;
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg(1)
        .query_async(&mut conn)
        .await
        .unwrap();
    let reply = shop
        .post(
            &format!("{gateway}/customers"),
            &json!({"name": "Ada", "email": "ada@example.com"}),
        )
        .await;
    reply.assert_error(507, "storage_full", "a write at maxmemory");
    let detail = reply.body["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("maxmemory"), "Redis's words: {detail}");
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg(0)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(shop.stream_lengths().await, before, "nothing appended");
    let reply = shop
        .post(
            &format!("{gateway}/customers"),
            &json!({"name": "Ada", "email": "ada@example.com"}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
}
