//! `ordershop report` and `ordershop events` against a shop with known contents: the figures,
//! the lag footer, and the order of events.

use crate::helpers::{run_cli, Layout, Shop};
use reqwest::Method;
use serde_json::{json, Value};

/// Two customers, two products with stock, three orders (one billed, one deleted), a deleted
/// customer. Returns (customer ids, product ids, order ids).
async fn known_shop(shop: &Shop) -> (Vec<String>, Vec<String>, Vec<String>) {
    let products = shop
        .create(
            "/products",
            json!([{"name": "Widget", "price": 1250}, {"name": "Gadget", "price": 999}]),
        )
        .await;
    shop.create(
        "/inventory",
        json!([{"product_id": products[0], "amount": 10}, {"product_id": products[1], "amount": 5}]),
    )
    .await;
    let customers = shop
        .create(
            "/customers",
            json!([
                {"name": "Ada", "email": "ada@example.com"},
                {"name": "Bob", "email": "bob@example.com"},
                {"name": "Cy", "email": "cy@example.com"}
            ]),
        )
        .await;
    let mut orders = Vec::new();
    for body in [
        json!({"customer_id": customers[0], "product_ids": [products[0], products[0], products[1]]}),
        json!({"customer_id": customers[0], "product_ids": [products[1]]}),
        json!({"customer_id": customers[1], "product_ids": [products[0]]}),
    ] {
        orders.extend(shop.create("/order", body).await);
    }
    shop.create("/billing", json!({"order_id": orders[0], "done": true}))
        .await;
    let (status, _) = shop
        .send(
            Method::DELETE,
            &format!("/order/{}", orders[2]),
            Value::Null,
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = shop
        .send(
            Method::DELETE,
            &format!("/customer/{}", customers[2]),
            Value::Null,
        )
        .await;
    assert_eq!(status, 200);
    (customers, products, orders)
}

fn find<'a>(rows: &'a Value, key: &str, value: &str) -> &'a Value {
    rows.as_array()
        .and_then(|rows| rows.iter().find(|r| r[key] == value))
        .unwrap_or_else(|| panic!("no row with {key} = {value} in {rows}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_adds_up() {
    let shop = Shop::start(Layout::OneProcess).await;
    let (code, out, _) = run_cli(&shop, &["report"]);
    assert_eq!(code, 0);
    assert!(out.contains("The shop is empty"), "{out}");

    let (_, products, orders) = known_shop(&shop).await;
    // The CRM catches up asynchronously: wait until the report says every projection is caught up.
    let mut report = Value::Null;
    crate::helpers::eventually(
        "the projections to catch up",
        std::time::Duration::from_secs(30),
        || {
            let (code, out, err) = run_cli(&shop, &["report", "--json"]);
            assert_eq!(code, 0, "{err}");
            report = serde_json::from_str(&out).expect("report --json is JSON");
            let caught_up = report["projections"]
                .as_array()
                .is_some_and(|p| p.iter().all(|p| p["behind"] == 0));
            std::future::ready(caught_up)
        },
    )
    .await;

    let totals = &report["totals"];
    assert_eq!(totals["customers"], 3);
    assert_eq!(totals["active_customers"], 2);
    assert_eq!(totals["products"], 2);
    assert_eq!(totals["units_in_stock"], 10 - 2 + 5 - 2);
    assert_eq!(totals["orders"], 2);
    assert_eq!(totals["billed_orders"], 1);
    assert_eq!(totals["unbilled_orders"], 1);
    assert_eq!(totals["amount_ordered"], 1250 * 2 + 999 + 999);
    assert_eq!(totals["amount_billed"], 1250 * 2 + 999);
    assert_eq!(totals["amount_unbilled"], 999);
    assert_eq!(totals["billings"], 1);

    let ada = find(&report["customers"], "name", "Ada");
    assert_eq!(
        (ada["orders"].clone(), ada["amount_ordered"].clone()),
        (json!(2), json!(4498))
    );
    assert_eq!(
        (ada["amount_billed"].clone(), ada["amount_unbilled"].clone()),
        (json!(3499), json!(999))
    );
    let bob = find(&report["customers"], "name", "Bob");
    assert_eq!(bob["orders"], 0, "Bob's only order was deleted");
    assert_eq!(
        find(&report["customers"], "name", "Cy")["status"],
        "deleted"
    );
    assert_eq!(find(&report["products"], "id", &products[0])["stock"], 8);
    assert_eq!(find(&report["products"], "id", &products[1])["stock"], 3);
    assert_eq!(find(&report["orders"], "id", &orders[0])["billed"], true);
    assert_eq!(find(&report["orders"], "id", &orders[0])["items"], 3);
    assert_eq!(
        find(&report["billings"], "order_id", &orders[0])["amount"],
        3499
    );
    assert_eq!(
        report["segments"],
        json!({"all": 3, "active": 2, "deleted": 1, "unbilled": 1})
    );

    // The tables say the same, fit 100 columns, and carry no colour when not on a terminal.
    let (code, out, _) = run_cli(&shop, &["report"]);
    assert_eq!(code, 0);
    for expected in [
        "Customers",
        "Products",
        "Orders",
        "Billing",
        "CRM segments",
        "44.98",
        "34.99",
        "9.99",
        "entity-cache 0 behind",
    ] {
        assert!(out.contains(expected), "report lacks {expected:?}:\n{out}");
    }
    assert!(
        out.lines().all(|l| l.chars().count() <= 100),
        "a line is wider than 100 columns:\n{out}"
    );
    assert!(!out.contains('\u{1b}'), "no escape codes off a terminal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_says_so_in_one_line_when_redis_is_unreachable() {
    let shop = Shop::start(Layout::OneProcess).await;
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_ordershop"))
        .args(["report"])
        .env(
            "REDIS_URL",
            format!("redis://127.0.0.1:{}", ordershop_testkit::free_port()),
        )
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(2));
    let err = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = err.trim().lines().collect();
    assert_eq!(lines.len(), 2, "which Redis, then one line: {err}");
    assert!(lines[0].starts_with("using Redis at "), "{err}");
    assert!(
        lines[1].contains("cannot read the shop from Redis"),
        "{err}"
    );
    drop(shop);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_lists_the_log_in_order_and_filters_it() {
    let shop = Shop::start(Layout::OneProcess).await;
    let (customers, _, orders) = known_shop(&shop).await;
    let (code, out, err) = run_cli(&shop, &["events", "--json"]);
    assert_eq!(code, 0, "{err}");
    let events: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    // 2 products, 2 stock records, 3 customers, 3 orders with 5 stock changes, 1 billing,
    // 1 order deleted with 1 stock change back, 1 customer deleted.
    assert_eq!(events.len(), 2 + 2 + 3 + 3 + 4 + 1 + 2 + 1, "{out}");
    let ids: Vec<&str> = events
        .iter()
        .map(|e| e["id"].as_str().unwrap_or_default())
        .collect();
    let parsed: Vec<(u64, u64)> = ids
        .iter()
        .map(|id| {
            id.split_once('-')
                .map(|(a, b)| (a.parse().unwrap_or(0), b.parse().unwrap_or(0)))
                .unwrap_or_default()
        })
        .collect();
    assert!(
        parsed.windows(2).all(|w| w[0] < w[1]),
        "strictly increasing IDs: {ids:?}"
    );
    let kinds: Vec<String> = events
        .iter()
        .map(|e| {
            format!(
                "{}_{}",
                e["type"].as_str().unwrap_or(""),
                e["action"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert_eq!(&kinds[..2], ["product_created", "product_created"]);
    assert_eq!(kinds.last().map(String::as_str), Some("customer_deleted"));

    let (_, out, _) = run_cli(
        &shop,
        &["events", "--json", "--type", "order", "--id", &orders[2]],
    );
    let mine: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    let actions: Vec<&str> = mine
        .iter()
        .map(|e| e["action"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(actions, ["created", "deleted"]);
    assert!(mine.iter().all(|e| e["entity_id"] == orders[2]));

    let (_, out, _) = run_cli(&shop, &["events", "--json", "--action", "deleted"]);
    assert_eq!(out.lines().count(), 2);
    let (_, out, _) = run_cli(
        &shop,
        &[
            "events", "--json", "--since", "1h", "--type", "customer", "--limit", "2",
        ],
    );
    assert_eq!(out.lines().count(), 2);
    let (_, out, _) = run_cli(
        &shop,
        &["events", "--json", "--until", "1970-01-02T00:00:00Z"],
    );
    assert_eq!(out.lines().count(), 0, "nothing before 1970-01-02");
    let (_, out, _) = run_cli(&shop, &["events", "--id", &customers[0]]);
    assert!(
        out.contains("customer_created") && out.contains("Ada <ada@example.com>"),
        "{out}"
    );
    let (code, _, err) = run_cli(&shop, &["events", "--type", "orders"]);
    assert_eq!(code, 2, "a typo is an error");
    assert!(err.contains("unknown entity type `orders`"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_follow_prints_new_events_as_they_are_appended() {
    use std::io::BufRead;
    let shop = Shop::start(Layout::OneProcess).await;
    let mut follower = std::process::Command::new(env!("CARGO_BIN_EXE_ordershop"))
        .args(["events", "--follow", "--json", "--type", "customer"])
        .env("REDIS_URL", shop.redis.url())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("runs");
    let stdout = follower.stdout.take().expect("stdout");
    let (lines, received) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    for name in ["First", "Second"] {
        let id = shop
            .create(
                "/customer",
                json!({"name": name, "email": format!("{}@example.com", name.to_lowercase())}),
            )
            .await;
        let line = received
            .recv_timeout(std::time::Duration::from_secs(20))
            .expect("the follower prints the new event");
        let event: Value = serde_json::from_str(&line).expect("JSON");
        assert_eq!(event["entity_id"], id[0]);
        assert_eq!(event["entity"]["name"], name);
    }
    let _ = follower.kill();
    let _ = follower.wait();
}
