//! The web console: its page and reads over HTTP, the dead-letter actions with and without the
//! token, an entity's history, and the page itself in a real headless Chromium.

use crate::helpers::{
    append_by_hand, run_cli, wait_all_caught_up, wait_for_length, Layout, Shop, CATCH_UP,
};
use crate::webdriver::{self, Browser};
use ordershop_readmodel::keys;
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;

const TOKEN: &str = "console-token-4b1e-77c9";

/// A shop with a token whose projections park a poison entry after 3 deliveries.
async fn shop_with_token() -> Shop {
    Shop::start_with(
        Layout::OneProcess,
        &[
            ("ORDERSHOP_API_TOKEN", TOKEN),
            ("ORDERSHOP_CLAIM_IDLE_MS", "100"),
            ("ORDERSHOP_MAX_DELIVERIES", "3"),
        ],
    )
    .await
}

/// A request with the token; the status and the JSON answer.
async fn with_token(shop: &Shop, method: Method, path: &str, body: Value) -> (u16, Value) {
    shop.send_as(Some(TOKEN), method, path, body).await
}

/// Creates with the token; the new ids.
async fn create(shop: &Shop, path: &str, body: Value) -> Vec<String> {
    let (status, ids) = with_token(shop, Method::POST, path, body.clone()).await;
    assert_eq!(status, 200, "POST {path} {body}: {ids}");
    ids.as_array()
        .map(|ids| {
            ids.iter()
                .filter_map(|id| id.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// A customer, a product with stock, and an order of it; returns (customer, product, order).
async fn a_little_shop(shop: &Shop) -> (String, String, String) {
    let customer = create(
        shop,
        "/customer",
        json!({"name": "Ada", "email": "ada@example.com"}),
    )
    .await
    .remove(0);
    let product = create(shop, "/product", json!({"name": "Lamp", "price": 2500}))
        .await
        .remove(0);
    create(
        shop,
        "/inventory",
        json!({"product_id": product, "amount": 10}),
    )
    .await;
    let order = create(
        shop,
        "/order",
        json!({"customer_id": customer, "product_ids": [product]}),
    )
    .await
    .remove(0);
    (customer, product, order)
}

/// `GET /dead-letters?projection=entity-cache`.
async fn parked(shop: &Shop) -> Vec<Value> {
    let (status, list) = shop.get("/dead-letters?projection=entity-cache").await;
    assert_eq!(status, 200, "{list}");
    list.as_array().cloned().unwrap_or_default()
}

/// Parks a poison entry in the entity cache's dead letters; returns its source entry ID.
async fn park_a_poison_entry(shop: &Shop) -> String {
    let mut conn = shop.redis().await;
    let poison = append_by_hand(&mut conn, "{not json").await;
    let dead = keys::dead_letters("entity-cache");
    wait_for_length(shop, "XLEN", &dead, "the poison entry to be parked", |n| {
        n == 1
    })
    .await;
    poison
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_and_its_reads_over_http() {
    let shop = shop_with_token().await;

    // The page and its files, from the binary; the page says the feed needs the token.
    let page = shop
        .http
        .get(shop.gateway("/"))
        .send()
        .await
        .expect("GET /");
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-type"]
        .to_str()
        .is_ok_and(|t| t.starts_with("text/html")));
    // Its own script and style only, never framed, never sniffed (the browser test below
    // checks that the page works under this policy).
    let header = |name: &str| {
        page.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let policy = header("content-security-policy");
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(policy.contains(directive), "{directive} in {policy}");
    }
    assert_eq!(header("x-content-type-options"), "nosniff");
    assert_eq!(header("x-frame-options"), "DENY");
    let html = page.text().await.unwrap_or_default();
    assert!(
        html.contains(r#"name="ordershop-token-required" content="true""#),
        "{html}"
    );
    for file in ["console.js", "console.css"] {
        let (status, _) = shop.get(&format!("/console/{file}")).await;
        assert_eq!(status, 200, "{file}");
    }
    let (status, body) = shop.get("/console/nothing.js").await;
    assert_eq!(status, 404, "{body}");

    // An entity's history: every event, oldest first, with its version.
    let (customer, product, order) = a_little_shop(&shop).await;
    let (_, stock) = shop.get("/inventory").await;
    let stock_id = stock[0]["id"].as_str().unwrap_or_default().to_owned();
    let (status, body) = with_token(
        &shop,
        Method::PUT,
        &format!("/inventory/{stock_id}"),
        json!({"product_id": product, "amount": 7}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, history) = shop.get(&format!("/inventory/{stock_id}/events")).await;
    assert_eq!(status, 200, "{history}");
    let steps: Vec<(String, u64)> = history
        .as_array()
        .map(|events| {
            events
                .iter()
                .map(|e| {
                    (
                        e["action"].as_str().unwrap_or_default().to_owned(),
                        e["version"].as_u64().unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    // Created with 10, the order took one, then set to 7.
    assert_eq!(
        steps,
        [
            ("created".to_owned(), 1),
            ("updated".to_owned(), 2),
            ("updated".to_owned(), 3)
        ],
        "{history}"
    );
    assert_eq!(history[2]["entity"]["amount"], 7, "{history}");
    // An entry that mentions the record but cannot be read (written by hand) is skipped, not
    // a 500 for the record's history from then on.
    let _: String = redis::cmd("XADD")
        .arg("events:inventory_updated")
        .arg("*")
        .arg("event_id")
        .arg("by-hand")
        .arg("entity")
        .arg(format!(r#"{{"id": "{stock_id}", "amount": "#))
        .query_async(&mut shop.redis().await)
        .await
        .expect("XADD");
    let (status, again) = shop.get(&format!("/inventory/{stock_id}/events")).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again, history, "the same three events");
    let (status, history) = shop.get(&format!("/order/{order}/events")).await;
    assert_eq!(status, 200);
    assert_eq!(history[0]["entity"]["customer_id"], customer.as_str());
    let (status, none) = shop
        .get(&format!("/order/{}/events", uuid::Uuid::new_v4()))
        .await;
    assert_eq!((status, none), (200, json!([])));
    let (status, _) = shop.get("/order/not-an-id/events").await;
    assert_eq!(status, 400);

    // The overview is the report of the command line; the projections are its status.
    wait_all_caught_up(&shop).await;
    let (status, overview) = shop.get("/overview").await;
    assert_eq!(status, 200, "{overview}");
    let (code, out, err) = run_cli(&shop, &["report", "--json"]);
    assert_eq!(code, 0, "{err}");
    let report: Value = serde_json::from_str(&out).expect("report --json is JSON");
    assert_eq!(overview["totals"], report["totals"]);
    assert_eq!(overview["totals"]["orders"], 1);
    assert_eq!(overview["totals"]["units_in_stock"], 7);
    // Cut to the rows a table shows, with the full counts beside them.
    let (status, cut) = shop.get("/overview?rows=1").await;
    assert_eq!(status, 200, "{cut}");
    assert_eq!(cut["counts"]["orders"], 1, "{cut}");
    assert_eq!(
        cut["counts"]["customers"],
        overview["customers"].as_array().map_or(0, Vec::len)
    );
    assert!(
        cut["customers"].as_array().is_some_and(|c| c.len() <= 1),
        "{cut}"
    );
    assert_eq!(cut["totals"], overview["totals"]);
    for bad in ["0", "10001", "all"] {
        let (status, _) = shop.get(&format!("/overview?rows={bad}")).await;
        assert_eq!(status, 400, "rows={bad}");
    }
    let (status, groups) = shop.get("/projections").await;
    assert_eq!(status, 200);
    let names: Vec<&str> = groups
        .as_array()
        .map(|g| g.iter().filter_map(|g| g["group"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(
        names,
        ["entity-cache", "crm", "crm-mailer", "msg-service"],
        "{groups}"
    );
    let (status, _) = shop.get("/dead-letters?projection=nothing").await;
    assert_eq!(status, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_retried_and_discarded_over_http_with_the_token() {
    let shop = shop_with_token().await;
    let poison = park_a_poison_entry(&shop).await;
    let letters = parked(&shop).await;
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0]["source_id"], poison.as_str());
    let id = letters[0]["id"].as_str().unwrap_or_default().to_owned();

    // Without the token: refused, nothing changes.
    for action in ["retry", "discard"] {
        let (status, body) = shop
            .post(
                &format!("/dead-letters/entity-cache/{id}/{action}"),
                json!({}),
            )
            .await;
        assert_eq!(status, 401, "{action}: {body}");
    }
    assert_eq!(parked(&shop).await, letters, "nothing changed");

    // Malformed and unknown: named.
    let (status, body) = with_token(
        &shop,
        Method::POST,
        "/dead-letters/entity-cache/yesterday/retry",
        json!({}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = with_token(
        &shop,
        Method::POST,
        &format!("/dead-letters/nothing/{id}/discard"),
        json!({}),
    )
    .await;
    assert_eq!(status, 404, "{body}");

    // A retry that fails again parks it again, once, under a new ID.
    let (status, outcome) = with_token(
        &shop,
        Method::POST,
        &format!("/dead-letters/entity-cache/{id}/retry"),
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "{outcome}");
    assert_eq!(outcome["outcome"], "parked_again", "{outcome}");
    let again = parked(&shop).await;
    assert_eq!(again.len(), 1, "parked again, not twice: {again:?}");
    assert_eq!(again[0]["retries"], 1);
    let new_id = again[0]["id"].as_str().unwrap_or_default().to_owned();
    assert_eq!(outcome["id"], new_id.as_str());
    assert_ne!(new_id, id);

    // Discard: gone; a second discard is a 404; status counts it.
    let path = format!("/dead-letters/entity-cache/{new_id}/discard");
    let (status, body) = with_token(&shop, Method::POST, &path, json!({})).await;
    assert_eq!((status, body), (200, json!({"discarded": true})));
    let (status, body) = with_token(&shop, Method::POST, &path, json!({})).await;
    assert_eq!(status, 404, "{body}");
    assert!(parked(&shop).await.is_empty());
    let (_, groups) = shop.get("/projections").await;
    let cache = groups
        .as_array()
        .and_then(|g| g.iter().find(|g| g["group"] == "entity-cache"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(cache["dead_lettered"], 0, "{groups}");
    assert_eq!(cache["dead_letters_discarded"], 1, "{groups}");
}

/// What the page shows for one total (`data-total`).
async fn total(browser: &Browser, name: &str) -> Option<String> {
    browser.text(&format!("[data-total=\"{name}\"]")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_in_a_real_browser() {
    if let Some(reason) = webdriver::unavailable() {
        ordershop_testkit::skip("browser", "the_console_in_a_real_browser", &reason);
        return;
    }
    let shop = shop_with_token().await;
    let (customer, _, _) = a_little_shop(&shop).await;
    park_a_poison_entry(&shop).await;
    wait_all_caught_up(&shop).await;

    let browser = Browser::start().await;
    browser.open(&shop.gateway("/")).await;
    // The feed needs the token: the page asks for it, then goes live.
    let input = browser
        .wait_for("#token-input", Duration::from_secs(5), "the token form")
        .await;
    browser.type_into(&input, TOKEN).await;
    let save = browser
        .wait_for("#token-save", Duration::from_secs(1), "the token button")
        .await;
    browser.click(&save).await;
    browser
        .wait_for_text("#feed-status", Duration::from_secs(5), "the feed", |t| {
            t == "live"
        })
        .await;

    // An order created over HTTP shows up in the feed within a second.
    let (_, products) = shop.get("/products").await;
    let product = products[0]["id"].as_str().unwrap_or_default().to_owned();
    let order = create(
        &shop,
        "/order",
        json!({"customer_id": customer, "product_ids": [product]}),
    )
    .await
    .remove(0);
    browser
        .wait_for(
            &format!("li[data-entity=\"{order}\"][data-kind=\"order\"]"),
            Duration::from_secs(1),
            "the new order in the feed",
        )
        .await;

    // The numbers on the page are those of GET /report.
    wait_all_caught_up(&shop).await;
    let (_, report) = shop.get("/report").await;
    let count = |list: &str| report[list].as_array().map_or(0, Vec::len).to_string();
    let stock: u64 = report["inventory"]
        .as_array()
        .map(|all| all.iter().filter_map(|i| i["amount"].as_u64()).sum())
        .unwrap_or_default();
    for (name, expected) in [
        ("customers", count("customers")),
        ("products", count("products")),
        ("orders", count("orders")),
        ("billings", count("billings")),
        ("units_in_stock", stock.to_string()),
    ] {
        browser
            .wait_for_text(
                &format!("[data-total=\"{name}\"]"),
                Duration::from_secs(10),
                &format!("{name} as GET /report says"),
                |t| t == expected,
            )
            .await;
    }
    assert_eq!(total(&browser, "orders").await.as_deref(), Some("2"));

    // A click on the order shows its history.
    let link = browser
        .wait_for(
            &format!("[data-entity=\"{order}\"]"),
            Duration::from_secs(1),
            "a link to the order",
        )
        .await;
    browser.click(&link).await;
    browser
        .wait_for_text("#history", Duration::from_secs(5), "the history", |t| {
            t.contains(&order[..8]) && t.contains("created")
        })
        .await;

    // The parked entry is listed and can be discarded from the page.
    let discard = browser
        .wait_for(
            "[data-dead-letter^=\"entity-cache/\"] [data-action=\"discard\"]",
            Duration::from_secs(10),
            "the parked entry's discard button",
        )
        .await;
    // The README's picture is taken here: ORDERSHOP_CONSOLE_SCREENSHOT=<file.png>.
    if let Some(file) = std::env::var_os("ORDERSHOP_CONSOLE_SCREENSHOT") {
        std::fs::write(file, browser.screenshot().await).expect("the screenshot is written");
    }
    browser.click(&discard).await;
    // Discarding asks first, naming the entry.
    let question = browser.accept_confirmation(Duration::from_secs(5)).await;
    assert!(question.contains("entity-cache/"), "{question}");
    crate::helpers::eventually("the discard to remove the entry", CATCH_UP, || async {
        parked(&shop).await.is_empty()
    })
    .await;
    // The CRM's groups parked the same entry too: only the entity cache's row goes.
    browser
        .wait_for_none(
            "[data-dead-letter^=\"entity-cache/\"]",
            Duration::from_secs(10),
            "the page to drop the discarded entry",
        )
        .await;
    browser
        .wait_for(
            "[data-dead-letter^=\"crm/\"]",
            Duration::from_secs(1),
            "the CRM's parked entry to stay",
        )
        .await;

    // Nothing went wrong in the page's console.
    let problems: Vec<Value> = browser
        .console_log()
        .await
        .into_iter()
        .filter(|entry| entry["level"] == "SEVERE" || entry["level"] == "WARNING")
        .collect();
    assert!(problems.is_empty(), "the console logged: {problems:?}");
}

/// Operators acting on one parked entry at once: exactly one action takes it, the others are
/// told it is gone; nothing is parked twice, a discarded entry never comes back, and the
/// counters count what happened once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_retries_and_discards_of_one_dead_letter_take_it_once() {
    let shop = shop_with_token().await;
    park_a_poison_entry(&shop).await;
    let letters = parked(&shop).await;
    assert_eq!(letters.len(), 1, "{letters:?}");
    let id = letters[0]["id"].as_str().unwrap_or_default().to_owned();
    let actions = [
        "retry", "discard", "retry", "discard", "retry", "discard", "retry", "discard",
    ];
    let answers = futures::future::join_all(actions.iter().map(|action| {
        let path = format!("/dead-letters/entity-cache/{id}/{action}");
        let shop = &shop;
        async move {
            (
                *action,
                with_token(shop, Method::POST, &path, json!({})).await,
            )
        }
    }))
    .await;
    let took: Vec<&(&str, (u16, Value))> = answers.iter().filter(|(_, (s, _))| *s == 200).collect();
    assert_eq!(took.len(), 1, "exactly one action takes it: {answers:?}");
    assert!(
        answers.iter().all(|(_, (s, _))| *s == 200 || *s == 404),
        "{answers:?}"
    );
    let now = parked(&shop).await;
    let (_, groups) = shop.get("/projections").await;
    let cache = groups
        .as_array()
        .and_then(|g| g.iter().find(|g| g["group"] == "entity-cache"))
        .cloned()
        .unwrap_or_default();
    match took[0].0 {
        "discard" => {
            assert!(now.is_empty(), "a discarded entry stays gone: {now:?}");
            assert_eq!(cache["dead_letters_discarded"], 1, "{groups}");
        }
        _ => {
            assert_eq!(now.len(), 1, "parked again once: {now:?}");
            assert_eq!(now[0]["retries"], 1, "{now:?}");
            assert_eq!(cache["dead_letters_discarded"], 0, "{groups}");
        }
    }
    assert_eq!(
        cache["dead_letters_retried"], 0,
        "a poison entry never applies: {groups}"
    );
}
