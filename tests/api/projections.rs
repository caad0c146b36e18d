//! Projections with the real binary: the CRM misses nothing while stopped, crashes lose and
//! duplicate nothing, and rebuilds give back exactly the live state.

use crate::helpers::{
    append_by_hand, dump, eventually, run_cli, wait_all_caught_up, wait_caught_up, wait_for_length,
    Layout, Shop, CACHE_KEYS, CATCH_UP,
};
use ordershop_domain::{Change, Customer, CustomerId, Email, EntityKind, Name};
use ordershop_eventstore::Append;
use ordershop_projections::ProjectionName;
use ordershop_readmodel::keys;
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Key patterns of the CRM view (its outbox and dead letters excluded: they are logs).
const CRM_KEYS: [&str; 1] = ["crm:*"];

async fn crm_dump(shop: &Shop) -> BTreeMap<String, Value> {
    let mut conn = shop.redis().await;
    let mut state = dump(&mut conn, &CRM_KEYS).await;
    state.retain(|k, _| {
        k != &keys::outbox()
            && ![":dead", ":dead:actions", ":heartbeats", ":last_error"]
                .iter()
                .any(|bookkeeping| k.ends_with(bookkeeping))
    });
    state
}

async fn products_with_stock(shop: &Shop, n: usize, amount: u64) -> Vec<String> {
    let products: Vec<Value> = (0..n)
        .map(|i| json!({"name": format!("Product {i}"), "price": 150 + i}))
        .collect();
    let ids = shop.create("/products", Value::Array(products)).await;
    let stock: Vec<Value> = ids
        .iter()
        .map(|p| json!({"product_id": p, "amount": amount}))
        .collect();
    shop.create("/inventory", Value::Array(stock)).await;
    ids
}

fn count_kind(emails: &[Value], to: &str, kind: &str) -> usize {
    emails
        .iter()
        .filter(|m| m["to"] == to && m["kind"] == kind)
        .count()
}

fn assert_no_duplicate_messages(emails: &[Value]) {
    let mut seen = HashSet::new();
    for m in emails {
        let id = m["msg_id"].as_str().unwrap_or_default().to_owned();
        assert!(seen.insert(id.clone()), "message {id} was delivered twice");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_crm_misses_nothing_and_repeats_nothing() {
    let shop = Shop::start(Layout::ProcessPerRole).await;
    let products = products_with_stock(&shop, 3, 100).await;
    let early = shop
        .create(
            "/customer",
            json!({"name": "Early", "email": "early@example.com"}),
        )
        .await;
    shop.create(
        "/order",
        json!({"customer_id": early[0], "product_ids": [products[0]]}),
    )
    .await;
    wait_all_caught_up(&shop).await;
    let before = shop.emails(None).await;
    assert_eq!(
        before.len(),
        3,
        "welcome, confirmation and payment request: {before:?}"
    );

    // While the CRM is stopped, 5 customers sign up and 3 of them order.
    shop.stop("crm-service");
    let mut emails = Vec::new();
    let mut customers = Vec::new();
    for i in 0..5 {
        let email = format!("late{i}@example.com");
        let id = shop
            .create(
                "/customer",
                json!({"name": format!("Late {i}"), "email": email}),
            )
            .await;
        customers.push((id[0].clone(), email.clone()));
        emails.push(email);
    }
    for (id, _) in customers.iter().take(3) {
        shop.create(
            "/order",
            json!({"customer_id": id, "product_ids": [products[1], products[2]]}),
        )
        .await;
    }
    assert_eq!(
        shop.emails(None).await.len(),
        before.len(),
        "nothing is sent while the CRM is down"
    );

    // Started again, it catches up on everything it missed, once.
    shop.start_role("crm-service").await;
    wait_all_caught_up(&shop).await;
    let after = shop.emails(None).await;
    assert_no_duplicate_messages(&after);
    assert_eq!(after.len(), before.len() + 5 + 3 * 2, "{after:#?}");
    assert_eq!(
        &after[..before.len()],
        &before[..],
        "earlier messages are not sent again"
    );
    for (i, (_, email)) in customers.iter().enumerate() {
        assert_eq!(
            count_kind(&after, email, "welcome"),
            1,
            "one welcome for {email}"
        );
        let orders = usize::from(i < 3);
        assert_eq!(
            count_kind(&after, email, "order_confirmation"),
            orders,
            "{email}"
        );
        assert_eq!(
            count_kind(&after, email, "payment_request"),
            orders,
            "{email}"
        );
    }
    assert_eq!(count_kind(&after, "early@example.com", "welcome"), 1);
}

/// One client's share of the burst: per round a customer, an order, its billing and an update
/// of the customer — five events.
async fn burst_client(
    shop: &Shop,
    client: usize,
    rounds: usize,
    products: &[String],
    done: &AtomicUsize,
) {
    for round in 0..rounds {
        let email = format!("c{client}r{round}@example.com");
        let customer = shop
            .create(
                "/customer",
                json!({"name": format!("C {client} {round}"), "email": email}),
            )
            .await;
        let order = shop
            .create("/order", json!({"customer_id": customer[0], "product_ids": [products[round % products.len()]]}))
            .await;
        shop.create("/billing", json!({"order_id": order[0]})).await;
        let (status, _) = shop
            .send(
                Method::PUT,
                &format!("/customer/{}", customer[0]),
                json!({"name": format!("C {client} {round}!"), "email": email}),
            )
            .await;
        assert_eq!(status, 200);
        done.fetch_add(5, Ordering::SeqCst);
    }
}

/// After a burst of `customers` rounds (all caught up): each of the four messages a round
/// calls for was sent exactly once per round, and the live cache and CRM equal a rebuild from
/// scratch, which sends nothing.
async fn assert_burst_outcome(shop: &Shop, customers: usize) {
    let emails = shop.emails(None).await;
    assert_no_duplicate_messages(&emails);
    let kinds = |kind: &str| emails.iter().filter(|m| m["kind"] == kind).count();
    for kind in [
        "welcome",
        "order_confirmation",
        "payment_request",
        "receipt",
    ] {
        assert_eq!(kinds(kind), customers, "{kind} messages");
    }
    let mut conn = shop.redis().await;
    let cache_live = dump(&mut conn, &CACHE_KEYS).await;
    let crm_live = crm_dump(shop).await;
    assert_eq!(
        cache_live
            .get("customer_ids")
            .and_then(Value::as_array)
            .map(Vec::len),
        Some(customers)
    );
    for projection in ["entity-cache", "crm"] {
        let (code, out, err) = run_cli(shop, &["rebuild", projection, "--yes"]);
        assert_eq!(code, 0, "rebuild {projection}: {out}{err}");
    }
    assert_eq!(
        dump(&mut conn, &CACHE_KEYS).await,
        cache_live,
        "entity cache equals a rebuild"
    );
    assert_eq!(crm_dump(shop).await, crm_live, "CRM equals a rebuild");
    assert_eq!(
        shop.emails(None).await.len(),
        emails.len(),
        "the rebuild sent nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_projectors_mid_burst_loses_and_duplicates_nothing() {
    const CLIENTS: usize = 8;
    const ROUNDS: usize = 125; // 8 clients x 125 rounds x 5 events = 5,000 events
    let shop = Shop::start(Layout::ProcessPerRole).await;
    let products = products_with_stock(&shop, 5, 1_000_000).await;
    let done = AtomicUsize::new(0);

    let burst = async {
        let clients = (0..CLIENTS).map(|c| burst_client(&shop, c, ROUNDS, &products, &done));
        futures::future::join_all(clients).await;
    };
    let crash = async {
        let reached = |n: usize| {
            let done = &done;
            move || async move { done.load(Ordering::SeqCst) >= n }
        };
        // Crash both projectors twice, the way a supervisor would see it: SIGKILL, then
        // start again at once.
        for (what, at) in [
            ("a third of the burst", 1_700),
            ("two thirds of the burst", 3_300),
        ] {
            eventually(what, CATCH_UP, reached(at)).await;
            shop.kill("entity-cache");
            shop.kill("crm-service");
            shop.start_role("entity-cache").await;
            shop.start_role("crm-service").await;
        }
    };
    tokio::join!(burst, crash);
    wait_all_caught_up(&shop).await;

    assert_burst_outcome(&shop, CLIENTS * ROUNDS).await;
}

/// Every projection's group vanishes mid-burst (`XGROUP DESTROY`, as after a failover to a
/// replica that never received them): each comes back from its checkpoint by itself, and the
/// result is the log's state with every message sent exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destroying_the_groups_mid_burst_loses_and_duplicates_nothing() {
    const CLIENTS: usize = 8;
    const ROUNDS: usize = 40; // 8 clients x 40 rounds x 5 events = 1,600 events
    let shop = Shop::start(Layout::OneProcess).await;
    let products = products_with_stock(&shop, 5, 1_000_000).await;
    for projection in ProjectionName::ALL {
        let key = ordershop_eventstore::keys::group_checkpoint(projection.name());
        let what = format!("a checkpoint of {}", projection.name());
        wait_for_length(&shop, "HLEN", &key, &what, |n| n > 0).await;
    }
    let done = AtomicUsize::new(0);
    let burst = async {
        let clients = (0..CLIENTS).map(|c| burst_client(&shop, c, ROUNDS, &products, &done));
        futures::future::join_all(clients).await;
    };
    let destroy = async {
        let halfway = || {
            let done = &done;
            async move { done.load(Ordering::SeqCst) >= 800 }
        };
        eventually("half of the burst", CATCH_UP, halfway).await;
        let mut conn = shop.redis().await;
        for projection in ProjectionName::ALL {
            for stream in projection.streams() {
                let destroyed: Result<i64, _> = redis::cmd("XGROUP")
                    .arg("DESTROY")
                    .arg(&stream)
                    .arg(projection.name())
                    .query_async(&mut conn)
                    .await;
                assert!(destroyed.is_ok(), "XGROUP DESTROY {stream}: {destroyed:?}");
            }
        }
    };
    tokio::join!(burst, destroy);
    wait_all_caught_up(&shop).await;
    let log = shop.log("up");
    for projection in ProjectionName::ALL {
        assert!(
            log.lines()
                .any(|l| l.contains("created again from its checkpoint")
                    && l.contains(&format!("group=\"{}\"", projection.name()))),
            "{} came back from its checkpoint, not from the start",
            projection.name()
        );
    }
    assert_burst_outcome(&shop, CLIENTS * ROUNDS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_entity_cache_is_rebuilt_to_the_same_report() {
    let shop = Shop::start(Layout::ProcessPerRole).await;
    let products = products_with_stock(&shop, 4, 50).await;
    let customers: Vec<Value> = (0..6)
        .map(|i| json!({"name": format!("R {i}"), "email": format!("r{i}@example.com")}))
        .collect();
    let customers = shop.create("/customers", Value::Array(customers)).await;
    let mut orders = Vec::new();
    for (i, c) in customers.iter().enumerate() {
        let order = shop
            .create(
                "/order",
                json!({"customer_id": c, "product_ids": [products[i % 4], products[(i + 1) % 4]]}),
            )
            .await;
        orders.push(order[0].clone());
    }
    shop.create("/billing", json!({"order_id": orders[0]}))
        .await;
    let (status, _) = shop
        .send(
            Method::DELETE,
            &format!("/order/{}", orders[1]),
            Value::Null,
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = shop
        .send(
            Method::DELETE,
            &format!("/customer/{}", customers[5]),
            Value::Null,
        )
        .await;
    assert_eq!(status, 200);
    let (_, before) = shop.get("/report").await;

    // Wipe every entity-cache key, then rebuild.
    let mut conn = shop.redis().await;
    let cache = dump(&mut conn, &CACHE_KEYS).await;
    assert!(!cache.is_empty());
    for key in cache.keys() {
        let _: i64 = redis::cmd("DEL")
            .arg(key)
            .query_async(&mut conn)
            .await
            .expect("DEL");
    }
    let (_, wiped) = shop.get("/report").await;
    assert_eq!(wiped["customers"], json!([]), "the cache is really gone");

    let (code, out, err) = run_cli(&shop, &["rebuild", "entity-cache", "--yes"]);
    assert_eq!(code, 0, "{out}{err}");
    let (_, after) = shop.get("/report").await;
    assert_eq!(sorted(after), sorted(before));
    assert_eq!(dump(&mut conn, &CACHE_KEYS).await, cache);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_entity_cache_instances_build_the_state_one_would() {
    let shop = Shop::start(Layout::ProcessPerRole).await;
    shop.start_instance("entity-cache-2", "entity-cache").await;

    // 10,000 events straight into the log: 2,000 customers, each updated three times, then
    // deleted.
    let store = shop.store().await;
    let customers: Vec<Customer> = (0..2_000)
        .map(|i| Customer {
            id: CustomerId::new(),
            name: Name::parse("name", &format!("Twin {i}")).expect("name"),
            email: Email::parse(&format!("twin{i}@example.com")).expect("email"),
        })
        .collect();
    for c in &customers {
        store
            .append_guarded(&Append::new().change(Change::created(c.clone())))
            .await
            .expect("append");
    }
    for round in 1..=3u64 {
        for c in &customers {
            let renamed = Customer {
                name: Name::parse("name", &format!("{} r{round}", c.name)).expect("name"),
                ..c.clone()
            };
            let append = Append::new()
                .expect(EntityKind::Customer, c.id.0, round)
                .change(Change::updated(renamed));
            store.append_guarded(&append).await.expect("append");
        }
    }
    for c in customers
        .iter()
        .step_by(2)
        .chain(customers.iter().skip(1).step_by(2))
    {
        let append = Append::new()
            .expect(EntityKind::Customer, c.id.0, 4)
            .change(Change::deleted(c.clone()));
        store.append_guarded(&append).await.expect("append");
    }
    wait_caught_up(&shop, ProjectionName::EntityCache).await;

    let mut conn = shop.redis().await;
    let shared = dump(&mut conn, &CACHE_KEYS).await;
    let versions = shared
        .get("entity-cache:versions:customer")
        .and_then(Value::as_object)
        .map(|m| m.len());
    assert_eq!(
        versions,
        Some(2_000),
        "every customer's last version was applied"
    );
    assert!(
        !shared.contains_key("customer_ids"),
        "every customer is gone"
    );
    let (code, out, err) = run_cli(&shop, &["rebuild", "entity-cache", "--yes"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        dump(&mut conn, &CACHE_KEYS).await,
        shared,
        "two instances built what one rebuild builds"
    );
}

/// `status --json`, and the entry of one group in it.
fn group_in_status(shop: &Shop, group: &str) -> (Value, Value) {
    let (code, out, err) = run_cli(shop, &["status", "--json"]);
    assert_eq!(code, 0, "{out}{err}");
    let status: Value = serde_json::from_str(&out).expect("status --json is JSON");
    let entry = status
        .as_array()
        .and_then(|g| g.iter().find(|g| g["group"] == group))
        .cloned()
        .unwrap_or_default();
    (status, entry)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_entry_is_dead_lettered_and_later_events_applied() {
    let shop = Shop::start_with(
        Layout::ProcessPerRole,
        &[
            ("ORDERSHOP_CLAIM_IDLE_MS", "100"),
            ("ORDERSHOP_MAX_DELIVERIES", "3"),
        ],
    )
    .await;
    let mut conn = shop.redis().await;
    let poison = append_by_hand(&mut conn, "{not json").await;
    let after = shop
        .create(
            "/customer",
            json!({"name": "After", "email": "after@example.com"}),
        )
        .await;
    let (_, customer) = shop.get(&format!("/customer/{}", after[0])).await;
    assert_eq!(
        customer["name"], "After",
        "the event after the poison is applied"
    );

    for projection in ["entity-cache", "crm"] {
        let dead = keys::dead_letters(projection);
        let what = format!("{dead} to hold the poison entry");
        wait_for_length(&shop, "XLEN", &dead, &what, |n| n >= 1).await;
        let entries: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
            .arg(&dead)
            .arg("-")
            .arg("+")
            .query_async(&mut conn)
            .await
            .expect("XRANGE");
        let all: Vec<_> = entries.ids.iter().map(|e| &e.map).collect();
        assert_eq!(
            all.len(),
            1,
            "only the poison entry is parked in {dead}: {all:?}"
        );
        let fields = format!("{:?}", entries.ids[0].map);
        assert!(
            fields.contains(&poison),
            "the dead letter names the entry {poison}: {fields}"
        );
    }
    wait_all_caught_up(&shop).await;
    let (status, cache) = group_in_status(&shop, "entity-cache");
    assert_eq!(cache["dead_lettered"], 1, "{status}");
    assert_eq!(cache["lag"], 0, "{status}");
}

/// The JSON with every array sorted, so that two reports compare by content.
fn sorted(value: Value) -> Value {
    match value {
        Value::Array(items) => {
            let mut items: Vec<Value> = items.into_iter().map(sorted).collect();
            items.sort_by_key(|v| v.to_string());
            Value::Array(items)
        }
        Value::Object(map) => Value::Object(map.into_iter().map(|(k, v)| (k, sorted(v))).collect()),
        other => other,
    }
}

/// `dead-letters list --json`, parsed.
fn dead_letters(shop: &Shop, group: &str) -> Vec<Value> {
    let (code, out, err) = run_cli(shop, &["dead-letters", "list", "--json", "--group", group]);
    assert_eq!(code, 0, "{out}{err}");
    let list: Value = serde_json::from_str(&out).expect("dead-letters list --json is JSON");
    list.as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_listed_retried_and_discarded_from_the_command_line() {
    let shop = Shop::start_with(
        Layout::OneProcess,
        &[
            ("ORDERSHOP_CLAIM_IDLE_MS", "100"),
            ("ORDERSHOP_MAX_DELIVERIES", "3"),
        ],
    )
    .await;
    let mut conn = shop.redis().await;
    let dead = keys::dead_letters("entity-cache");

    // A poison entry (its entity is not JSON): it can never be applied.
    let poison = append_by_hand(&mut conn, "{not json").await;
    // A sound event the cache cannot apply for now: its Hash key holds a string, set by hand.
    let fixable = uuid::Uuid::new_v4();
    let cache_key = keys::entity(EntityKind::Customer, fixable);
    let _: () = redis::cmd("SET")
        .arg(&cache_key)
        .arg("in the way")
        .query_async(&mut conn)
        .await
        .expect("SET");
    let entity = json!({"id": fixable, "name": "Fixed", "email": "fixed@example.com"});
    append_by_hand(&mut conn, &entity.to_string()).await;
    wait_for_length(&shop, "XLEN", &dead, "both entries to be parked", |n| {
        n == 2
    })
    .await;

    // list: each with where it came from and why.
    let parked = dead_letters(&shop, "entity-cache");
    assert_eq!(parked.len(), 2, "{parked:?}");
    let bad = parked
        .iter()
        .find(|l| l["source_id"] == poison.as_str())
        .unwrap_or_else(|| panic!("the poison entry is listed: {parked:?}"));
    assert!(
        bad["reason"].as_str().is_some_and(|r| r.contains("entity")),
        "{bad}"
    );
    let stuck = parked
        .iter()
        .find(|l| l["source_id"] != poison.as_str())
        .cloned()
        .unwrap_or_default();
    assert!(
        stuck["reason"]
            .as_str()
            .is_some_and(|r| r.contains("WRONGTYPE")),
        "{stuck}"
    );
    let (code, table, _) = run_cli(&shop, &["dead-letters", "list"]);
    assert_eq!(code, 0);
    assert!(table.contains(&poison), "{table}");

    // retry of an entry that fails again: parked again, once, with the new reason; exit 1.
    let bad_id = bad["id"].as_str().unwrap_or_default().to_owned();
    // Dead-letter IDs are per group (the same ID can be parked in two groups): name the group.
    let (code, out, err) = run_cli(
        &shop,
        &["dead-letters", "retry", &bad_id, "--group", "entity-cache"],
    );
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("failed again"), "{out}");
    let parked = dead_letters(&shop, "entity-cache");
    assert_eq!(parked.len(), 2, "parked again, not twice: {parked:?}");
    let again = parked
        .iter()
        .find(|l| l["source_id"] == poison.as_str())
        .cloned()
        .unwrap_or_default();
    assert_eq!(again["retries"], 1, "{again}");
    assert_ne!(again["id"], bad["id"]);

    // retry of an entry whose cause is gone: applied, removed, visible over HTTP.
    let _: () = redis::cmd("DEL")
        .arg(&cache_key)
        .query_async(&mut conn)
        .await
        .expect("DEL");
    let stuck_id = stuck["id"].as_str().unwrap_or_default().to_owned();
    let (code, out, err) = run_cli(
        &shop,
        &[
            "dead-letters",
            "retry",
            &stuck_id,
            "--group",
            "entity-cache",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("applied"), "{out}");
    let (status, customer) = shop.get(&format!("/customer/{fixable}")).await;
    assert_eq!(status, 200);
    assert_eq!(customer["name"], "Fixed");
    // Retrying what is no longer parked is an error that names it.
    let (code, _, err) = run_cli(
        &shop,
        &[
            "dead-letters",
            "retry",
            &stuck_id,
            "--group",
            "entity-cache",
        ],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains(&stuck_id), "{err}");

    // discard: gone, and status says so, with what was done.
    let (code, out, err) = run_cli(
        &shop,
        &[
            "dead-letters",
            "discard",
            "--all",
            "--group",
            "entity-cache",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(dead_letters(&shop, "entity-cache").is_empty());
    let (status, cache) = group_in_status(&shop, "entity-cache");
    assert_eq!(cache["dead_lettered"], 0, "{status}");
    assert_eq!(cache["dead_letters_retried"], 1, "{status}");
    assert_eq!(cache["dead_letters_discarded"], 1, "{status}");
    // Why it stopped, from Redis: the last failure names its kind, the entry and the cause;
    // each consumer says it is alive.
    let last_error = &cache["last_error"];
    assert_eq!(last_error["kind"], "entry", "{status}");
    let entry = last_error["entry"].as_str().unwrap_or_default();
    assert!(entry.starts_with("events:customer_created "), "{status}");
    assert!(
        last_error["at_ms"].as_u64().is_some_and(|t| t > 0),
        "{status}"
    );
    let consumers = cache["consumers"].as_array().cloned().unwrap_or_default();
    assert!(
        !consumers.is_empty()
            && consumers
                .iter()
                .all(|c| c["heartbeat_age_ms"].as_u64().is_some()),
        "{status}"
    );
    let (code, table, _) = run_cli(&shop, &["status"]);
    assert_eq!(code, 0);
    assert!(table.contains("entry (events:customer_created"), "{table}");
    // The poison entry was also parked by the CRM's groups, which keep theirs.
    assert_eq!(dead_letters(&shop, "crm").len(), 1);
}

/// `ordershop status` never says green by mistake: where there is no shop (an empty Redis, or a
/// namespace the shop does not use) it exits 2; a projection whose consumers stopped sending
/// heartbeats is down (exit 1 under `--max-lag`, `down` in JSON, DOWN in the table); and a
/// reader that closes the pipe early is not an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_tells_no_shop_and_a_stopped_projection_apart_from_a_healthy_one() {
    let shop = Shop::start(Layout::ProcessPerRole).await;
    shop.create(
        "/customer",
        json!({"name": "Ada", "email": "ada@example.com"}),
    )
    .await;
    wait_all_caught_up(&shop).await;
    let (code, out, err) = run_cli(&shop, &["status", "--max-lag", "0"]);
    assert_eq!(code, 0, "a healthy shop: {out}{err}");
    assert!(!out.contains("DOWN"), "{out}");

    // Output into a pipe whose reader has gone (`status | head -1`).
    for args in [
        &["status"][..],
        &["status", "--json"],
        &["dead-letters", "list"],
    ] {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ordershop"))
            .args(args)
            .env("REDIS_URL", shop.checks_url())
            .env("NO_COLOR", "1")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("the ordershop binary runs");
        drop(child.stdout.take());
        let output = child.wait_with_output().expect("it ends");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(!stderr.contains("Broken pipe"), "{args:?}: {stderr}");
    }

    // No shop: another namespace on the same Redis, and an empty Redis.
    let (code, _, err) = run_cli(
        &shop,
        &["--namespace", "nowhere", "status", "--max-lag", "0"],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no shop here"), "{err}");
    let empty = ordershop_testkit::RedisServer::start();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_ordershop"))
        .args(["status", "--max-lag", "0"])
        .env("REDIS_URL", empty.url())
        .stdin(std::process::Stdio::null())
        .output()
        .expect("the ordershop binary runs");
    let err = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{err}");
    assert!(err.contains("no shop here"), "{err}");

    // The CRM stops; its last heartbeats age as they do once nobody renews them (here by
    // twenty seconds at once, instead of waiting for them to).
    shop.stop("crm-service");
    let mut conn = shop.redis().await;
    let beats = keys::projection_heartbeats(ProjectionName::Crm.name());
    let consumers: std::collections::HashMap<String, u64> = redis::cmd("HGETALL")
        .arg(&beats)
        .query_async(&mut conn)
        .await
        .expect("HGETALL");
    assert!(!consumers.is_empty(), "the CRM's consumers sent heartbeats");
    for (consumer, at) in &consumers {
        let _: () = redis::cmd("HSET")
            .arg(&beats)
            .arg(consumer)
            .arg(at.saturating_sub(20_000))
            .query_async(&mut conn)
            .await
            .expect("HSET");
    }
    let (code, _, err) = run_cli(&shop, &["status", "--max-lag", "0"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("down") && err.contains("crm"), "{err}");
    let (code, out, _) = run_cli(&shop, &["status", "--json"]);
    assert_eq!(code, 0);
    let groups: Value = serde_json::from_str(&out).expect("JSON");
    let down = |group: &str| {
        groups
            .as_array()
            .and_then(|all| all.iter().find(|g| g["group"] == group))
            .map(|g| g["down"].clone())
    };
    assert_eq!(down("crm"), Some(json!(true)), "{out}");
    assert_eq!(down("entity-cache"), Some(json!(false)), "{out}");
    let (_, table, _) = run_cli(&shop, &["status"]);
    assert!(table.contains("DOWN"), "{table}");
    // The running projections say so in their metrics too (a stopped one cannot).
    let metrics = format!("{}/metrics", shop.url("entity-cache"));
    eventually(
        "the entity cache's metrics to show the CRM down",
        CATCH_UP,
        || {
            let (http, metrics) = (shop.http.clone(), metrics.clone());
            async move {
                let Ok(response) = http.get(&metrics).send().await else {
                    return false;
                };
                let text = response.text().await.unwrap_or_default();
                text.contains("projection_down{projection=\"crm\"} 1")
                    && text.contains("projection_down{projection=\"entity-cache\"} 0")
            }
        },
    )
    .await;
}
