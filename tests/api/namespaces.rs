//! Several shops on one Redis, and shops on a Redis Cluster: each shop in its own namespace
//! (`ORDERSHOP_NAMESPACE`) runs the original client's walk and the oversell test, never sees
//! another's events, cache, CRM or messages, and keeps every key in its namespace's one slot.

use crate::contention::oversell;
use crate::helpers::{run_cli, wait_all_caught_up, Backing, Layout, Shop, CACHE_KEYS, CATCH_UP};
use crate::scenario::original_walk;
use ordershop_testkit::{dump, eventually, RedisCluster, RedisServer};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

/// A shop (every role in one process) on `backing`, reached at `url`, in `namespace`.
async fn shop_in(backing: Backing, url: String, namespace: &str) -> Shop {
    Shop::start_on_url(
        backing,
        url,
        Layout::OneProcess,
        &[("ORDERSHOP_NAMESPACE", namespace)],
    )
    .await
}

/// `report --json` of the shop, as its operator sees it.
fn report(shop: &Shop) -> Value {
    let (code, out, err) = run_cli(shop, &["report", "--json"]);
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("report --json: {e}: {out}"))
}

/// The addresses the shop's message service delivered to.
async fn recipients(shop: &Shop) -> BTreeSet<String> {
    shop.emails(None)
        .await
        .iter()
        .filter_map(|m| m["to"].as_str().map(str::to_owned))
        .collect()
}

/// Both shops' walks done: what each shows is its own.
async fn each_sees_only_its_own(walked: &Shop, oversold: &Shop) {
    wait_all_caught_up(walked).await;
    wait_all_caught_up(oversold).await;
    let (walk, sale) = (report(walked), report(oversold));
    let names = |report: &Value| -> BTreeSet<String> {
        report["customers"]
            .as_array()
            .map(|all| {
                all.iter()
                    .filter_map(|c| c["name"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    // The walk's 10 customers (one deleted, which the CRM keeps); the sale's one buyer.
    assert_eq!(names(&walk).len(), 10, "{walk}");
    assert!(names(&walk).iter().all(|n| n.starts_with("Customer ")));
    assert_eq!(names(&sale).len(), 1, "{sale}");
    assert!(names(&walk).is_disjoint(&names(&sale)));
    assert_eq!(walk["totals"]["orders"], 9);
    assert_eq!(sale["totals"]["orders"], 100);
    // Messages: each shop's message service delivered to its own customers only.
    let (walk_mail, sale_mail) = (recipients(walked).await, recipients(oversold).await);
    assert!(!walk_mail.is_empty() && !sale_mail.is_empty());
    assert!(
        walk_mail.is_disjoint(&sale_mail),
        "{walk_mail:?} {sale_mail:?}"
    );
    // Events: each log holds only its own.
    let (walk_log, sale_log) = (
        walked.stream_lengths().await,
        oversold.stream_lengths().await,
    );
    assert_eq!(walk_log["events:customer_created"], 10, "{walk_log:?}");
    assert_eq!(sale_log["events:customer_created"], 1, "{sale_log:?}");
    assert_eq!(sale_log["events:order_created"], 100, "{sale_log:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_shops_share_one_redis_in_two_namespaces() {
    let server = Arc::new(RedisServer::start());
    let start = |namespace| {
        shop_in(
            Backing::Shared(Arc::clone(&server)),
            server.url(),
            namespace,
        )
    };
    let (walked, oversold) = (start("acme").await, start("bolt").await);
    futures::join!(original_walk(&walked), oversell(&oversold));
    each_sees_only_its_own(&walked, &oversold).await;

    // Every key the shops wrote is in one of the two namespaces.
    let mut conn = walked.redis().await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut conn)
        .await
        .expect("KEYS");
    let outside: Vec<&String> = keys
        .iter()
        .filter(|k| !k.starts_with("{acme}:") && !k.starts_with("{bolt}:"))
        .collect();
    assert!(
        outside.is_empty(),
        "keys outside the namespaces: {outside:?}"
    );
    assert!(keys.iter().any(|k| k == "{acme}:events:order_created"));
    assert!(keys.iter().any(|k| k == "{bolt}:customer_ids"));

    // An operator command of one shop acts on that shop only: a rebuild of acme's entity cache
    // gives back acme's state and leaves bolt's untouched.
    let (_, bolt_before) = oversold.get("/orders").await;
    let (code, out, err) = run_cli(&walked, &["rebuild", "entity-cache", "--yes"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(err.contains("namespace acme"), "{err}");
    let (_, acme_orders) = walked.get("/orders").await;
    assert_eq!(acme_orders.as_array().map(Vec::len), Some(9));
    assert_eq!(oversold.get("/orders").await.1, bolt_before);
}

/// Namespaces whose slots two different primaries serve.
fn namespaces_on_two_primaries(cluster: &RedisCluster) -> [(String, usize); 2] {
    let mut found: Vec<(String, usize)> = Vec::new();
    for i in 0.. {
        let name = format!("shop-{i}");
        let owner = cluster.owner_of(cluster.slot_of(&format!("{{{name}}}:")));
        if found.iter().all(|(_, o)| *o != owner) {
            found.push((name, owner));
        }
        if found.len() == 2 {
            break;
        }
    }
    [found[0].clone(), found[1].clone()]
}

/// Two shops on `cluster`, whose slots two different primaries serve: each with its namespace
/// and its primary.
async fn two_shops_on(cluster: &Arc<RedisCluster>) -> [(Shop, String, usize); 2] {
    let [(a, a_node), (b, b_node)] = namespaces_on_two_primaries(cluster);
    let start = |namespace| {
        shop_in(
            Backing::Cluster(Arc::clone(cluster)),
            cluster.url(),
            namespace,
        )
    };
    let (first, second) = (start(&a).await, start(&b).await);
    [(first, a, a_node), (second, b, b_node)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_shops_on_a_cluster_each_keep_to_one_slot_of_their_own_primary() {
    let cluster = Arc::new(RedisCluster::start(3));
    let [(walked, a, a_node), (oversold, b, b_node)] = two_shops_on(&cluster).await;
    futures::join!(original_walk(&walked), oversell(&oversold));
    each_sees_only_its_own(&walked, &oversold).await;

    // Every key is in one of the two namespaces, in its slot, on its primary.
    let slot_of = |name: &str| cluster.slot_of(&format!("{{{name}}}:"));
    let (a_slot, b_slot) = (slot_of(&a), slot_of(&b));
    let mut per_shop: BTreeMap<&str, usize> = BTreeMap::new();
    for (node, key) in cluster.all_keys() {
        let (shop, slot, home) = if key.starts_with(&format!("{{{a}}}:")) {
            (a.as_str(), a_slot, a_node)
        } else if key.starts_with(&format!("{{{b}}}:")) {
            (b.as_str(), b_slot, b_node)
        } else {
            panic!("a key outside the namespaces: {key}");
        };
        assert_eq!(cluster.slot_of(&key), slot, "{key}");
        assert_eq!(node, home, "{key} is on node {node}, its slot on {home}");
        *per_shop.entry(shop).or_default() += 1;
    }
    assert!(per_shop.values().all(|n| *n > 20), "{per_shop:?}");
}

/// The ids of the orders in the shop's log.
async fn logged_orders(shop: &Shop) -> BTreeSet<String> {
    let logged: Vec<(String, BTreeMap<String, String>)> = redis::cmd("XRANGE")
        .arg(shop.key("events:order_created"))
        .arg("-")
        .arg("+")
        .query_async(&mut shop.connection())
        .await
        .expect("XRANGE");
    logged
        .iter()
        .filter_map(|(_, fields)| fields.get("entity"))
        .filter_map(|entity| serde_json::from_str::<Value>(entity).ok())
        .filter_map(|entity| entity["id"].as_str().map(str::to_owned))
        .collect()
}

/// Asserts that every logged order has its cached entity on the node at `owner` (the shop's
/// slot's owner), at the version the log gives it; answers a connection to that node.
async fn cache_holds_every_logged_order(
    shop: &Shop,
    owner: u16,
    in_log: &BTreeSet<String>,
) -> redis::aio::MultiplexedConnection {
    let mut direct = redis::Client::open(format!("redis://127.0.0.1:{owner}"))
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("the new owner answers");
    let mut without_entity = Vec::new();
    for id in in_log {
        let exists: bool = redis::cmd("EXISTS")
            .arg(shop.key(&format!("order_entity:{id}")))
            .query_async(&mut direct)
            .await
            .expect("EXISTS");
        if !exists {
            without_entity.push(id.clone());
        }
    }
    assert!(
        without_entity.is_empty(),
        "logged orders the entity cache does not hold: {without_entity:?}"
    );
    let heads: BTreeMap<String, String> = redis::cmd("HGETALL")
        .arg(shop.key("es:head:order"))
        .query_async(&mut direct)
        .await
        .unwrap_or_default();
    let applied: BTreeMap<String, String> = redis::cmd("HGETALL")
        .arg(shop.key("entity-cache:versions:order"))
        .query_async(&mut direct)
        .await
        .unwrap_or_default();
    if !heads.is_empty() {
        let behind: Vec<(&String, &str, Option<&String>)> = heads
            .iter()
            .map(|(id, head)| (id, head.split(':').next().unwrap_or_default()))
            .filter(|(id, version)| applied.get(*id).map(String::as_str) != Some(*version))
            .map(|(id, version)| (id, version, applied.get(id)))
            .collect();
        assert!(
            behind.is_empty(),
            "orders whose cached version is not the log's: {behind:?}"
        );
    }
    direct
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn moving_a_shops_slot_to_a_new_primary_under_load_loses_nothing() {
    const CLIENTS: usize = 4;
    /// Orders each client places after the move, so that ordering spans it whole.
    const AFTER_THE_MOVE: usize = 25;
    // A fourth primary serves no slot yet: the shop has never met it, nor loaded its Functions
    // there, when its slot moves to it.
    let cluster = Arc::new(RedisCluster::start_with_empty(3, 1));
    let [(name, home), _] = namespaces_on_two_primaries(&cluster);
    let shop = shop_in(Backing::Cluster(Arc::clone(&cluster)), cluster.url(), &name).await;
    let (customer, products) = stocked(&shop).await;

    // Clients order continuously, from before the move (once they are well under way) until
    // after it.
    let moved_flag = std::sync::atomic::AtomicBool::new(false);
    let slot = cluster.slot_of(&format!("{{{name}}}:"));
    let target = 3;
    let (answers, moved) = futures::join!(
        order_until(
            &shop,
            &customer,
            &products,
            CLIENTS,
            &moved_flag,
            AFTER_THE_MOVE
        ),
        move_under_way(&shop, &cluster, slot, (home, target), 1_000, &moved_flag)
    );
    assert_eq!(cluster.owner_of(slot), target);
    let acknowledged: Vec<String> = answers
        .iter()
        .filter(|(status, _)| *status == 200)
        .filter_map(|(_, ids)| ids[0].as_str().map(str::to_owned))
        .collect();
    let unavailable = answers.iter().filter(|(status, _)| *status == 503).count();
    let other: Vec<&(u16, Value)> = answers
        .iter()
        .filter(|(status, _)| *status != 200 && *status != 503)
        .collect();
    println!(
        "slot {slot} moved from node {home} to {target} in {moved:?}: {} orders acknowledged, \
         {unavailable} answered 503",
        acknowledged.len()
    );
    assert!(other.is_empty(), "only 200 or a brief 503: {other:?}");
    assert!(
        acknowledged.len() >= answers.len() / 2,
        "most orders went through: {} of {}",
        acknowledged.len(),
        answers.len()
    );

    // After the move: the shop works on its new primary, and nothing acknowledged is missing.
    let after = shop
        .create(
            "/order",
            json!({"customer_id": customer, "product_ids": [products[0]]}),
        )
        .await
        .remove(0);
    let in_log = logged_orders(&shop).await;
    let missing: Vec<&String> = acknowledged
        .iter()
        .chain([&after])
        .filter(|id| !in_log.contains(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "acknowledged but not in the log: {missing:?}"
    );

    // The projections converge on the log; no message went out twice.
    wait_all_caught_up(&shop).await;
    // The new primary has the Functions now (loaded when a call first found them missing; the
    // projections have called theirs there once they caught up on the orders after the move).
    for library in ["ordershop_store", "ordershop_entity_cache", "ordershop_crm"] {
        let listed = ordershop_testkit::replicated::query(
            cluster.nodes()[target].port(),
            &["FUNCTION", "LIST", "LIBRARYNAME", library],
        );
        assert!(
            matches!(&listed, Some(redis::Value::Array(l)) if !l.is_empty()),
            "{library} on the new primary: {listed:?}"
        );
    }

    let (_, orders) = shop.get("/orders").await;
    assert_eq!(orders.as_array().map(Vec::len), Some(in_log.len()));
    let confirmations = |messages: &[Value]| {
        messages
            .iter()
            .filter(|m| m["kind"] == "order_confirmation")
            .count()
    };
    eventually(
        "a confirmation of every order to be delivered",
        CATCH_UP,
        || async { confirmations(&shop.emails(None).await) >= in_log.len() },
    )
    .await;
    let messages = shop.emails(None).await;
    let ids: BTreeSet<&str> = messages
        .iter()
        .filter_map(|m| m["msg_id"].as_str())
        .collect();
    assert_eq!(ids.len(), messages.len(), "a message was delivered twice");
    assert_eq!(confirmations(&messages), in_log.len());

    // Every read model equals the log: each logged order has its cached entity, at the
    // version the log gives it, on the slot's new owner; and the entity cache and the CRM
    // view equal a rebuild of them from the log.
    let owner = cluster.nodes()[target].port();
    let mut direct = cache_holds_every_logged_order(&shop, owner, &in_log).await;
    let patterns = |bare: &[&str]| -> Vec<String> { bare.iter().map(|p| shop.key(p)).collect() };
    let cache_patterns = patterns(&CACHE_KEYS);
    let crm_patterns = patterns(&["crm:*"]);
    let crm_state = |mut state: BTreeMap<String, Value>| {
        state.retain(|k, _| {
            ![
                ":outbox",
                ":dead",
                ":dead:actions",
                ":heartbeats",
                ":last_error",
            ]
            .iter()
            .any(|bookkeeping| k.ends_with(bookkeeping))
        });
        state
    };
    let cache_live = dump(&mut direct, &cache_patterns).await;
    let crm_live = crm_state(dump(&mut direct, &crm_patterns).await);
    for projection in ["entity-cache", "crm"] {
        let (code, out, err) = run_cli(&shop, &["rebuild", projection, "--yes"]);
        assert_eq!(code, 0, "rebuild {projection}: {out}{err}");
    }
    assert!(
        dump(&mut direct, &cache_patterns).await == cache_live,
        "the entity cache after the move differs from a rebuild from the log"
    );
    assert!(
        crm_state(dump(&mut direct, &crm_patterns).await) == crm_live,
        "the CRM view after the move differs from a rebuild from the log"
    );
}

/// Keys per MIGRATE, as `redis-cli --cluster reshard --cluster-pipeline 100`.
const BATCH: usize = 100;

/// Once the shop's log holds `first` orders, moves `slot` from node `from` to node `to` as
/// redis-cli does, then sets `moved`; answers how long the move took.
async fn move_under_way(
    shop: &Shop,
    cluster: &Arc<RedisCluster>,
    slot: u16,
    (from, to): (usize, usize),
    first: u64,
    moved: &std::sync::atomic::AtomicBool,
) -> std::time::Duration {
    let (conn, key) = (shop.connection(), shop.key("events:order_created"));
    eventually("the first orders", CATCH_UP, || {
        let (mut conn, key) = (conn.clone(), key.clone());
        async move {
            redis::cmd("XLEN")
                .arg(&key)
                .query_async::<u64>(&mut conn)
                .await
                .unwrap_or(0)
                >= first
        }
    })
    .await;
    let cluster = Arc::clone(cluster);
    let took = tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        cluster.move_slot_in_batches(slot, from, to, BATCH);
        started.elapsed()
    })
    .await
    .expect("the slot moved");
    moved.store(true, std::sync::atomic::Ordering::SeqCst);
    took
}

/// Orders from `clients` connections, round-robin over `products`, until `stop` is set and each
/// client has placed `after` more; every answer, in order.
async fn order_until(
    shop: &Shop,
    customer: &str,
    products: &[String],
    clients: usize,
    stop: &std::sync::atomic::AtomicBool,
    after: usize,
) -> Vec<(u16, Value)> {
    let one = |client: usize| async move {
        let (mut answers, mut since_stop) = (Vec::new(), 0);
        for n in 0.. {
            let body = json!({
                "customer_id": customer,
                "product_ids": [products[(client + n) % products.len()]],
            });
            answers.push(shop.post("/order", body).await);
            if stop.load(std::sync::atomic::Ordering::SeqCst) {
                since_stop += 1;
                if since_stop >= after {
                    break;
                }
            }
        }
        answers
    };
    futures::future::join_all((0..clients).map(one))
        .await
        .into_iter()
        .flatten()
        .collect()
}

/// A customer and five products with plenty of stock.
async fn stocked(shop: &Shop) -> (String, Vec<String>) {
    let customer = shop
        .create(
            "/customer",
            json!({"name": "Ann", "email": "ann@example.com"}),
        )
        .await
        .remove(0);
    let mut products = Vec::new();
    for i in 0..5 {
        let product = shop
            .create(
                "/product",
                json!({"name": format!("Box {i}"), "price": 300}),
            )
            .await
            .remove(0);
        shop.create(
            "/inventory",
            json!({"product_id": product, "amount": 1_000_000}),
        )
        .await;
        products.push(product);
    }
    (customer, products)
}

/// A reshard among busy shops: two shops taking orders, and one shop's slot moves onto the
/// primary that serves the other (which has the Functions loaded and is busy meanwhile).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn moving_a_shops_slot_onto_a_busy_primary_loses_nothing_in_either_shop() {
    let cluster = Arc::new(RedisCluster::start(3));
    let [(moved, a, a_node), (staying, _, b_node)] = two_shops_on(&cluster).await;
    let ((a_customer, a_products), (b_customer, b_products)) =
        futures::join!(stocked(&moved), stocked(&staying));
    let stop = std::sync::atomic::AtomicBool::new(false);
    let slot = cluster.slot_of(&format!("{{{a}}}:"));
    let (a_answers, b_answers, _) = futures::join!(
        order_until(&moved, &a_customer, &a_products, 3, &stop, 25),
        order_until(&staying, &b_customer, &b_products, 2, &stop, 25),
        move_under_way(&moved, &cluster, slot, (a_node, b_node), 500, &stop)
    );
    assert_eq!(cluster.owner_of(slot), b_node);

    for (shop, answers, owner) in [(&moved, a_answers, b_node), (&staying, b_answers, b_node)] {
        let odd: Vec<&(u16, Value)> = answers
            .iter()
            .filter(|(status, _)| *status != 200 && *status != 503)
            .collect();
        assert!(odd.is_empty(), "only 200 or a brief 503: {odd:?}");
        let in_log = logged_orders(shop).await;
        let lost: Vec<&str> = answers
            .iter()
            .filter(|(status, _)| *status == 200)
            .filter_map(|(_, ids)| ids[0].as_str())
            .filter(|id| !in_log.contains(*id))
            .collect();
        assert!(lost.is_empty(), "acknowledged but not in the log: {lost:?}");
        wait_all_caught_up(shop).await;
        cache_holds_every_logged_order(shop, cluster.nodes()[owner].port(), &in_log).await;
        let (_, orders) = shop.get("/orders").await;
        assert_eq!(orders.as_array().map(Vec::len), Some(in_log.len()));
    }
}
