//! Observability of the real binary: the gateway's OpenAPI document covers every route it
//! serves and is a structurally valid OpenAPI 3 document; `/metrics` counters move by exactly
//! what a known set of requests and events should move them by; a request id follows an order
//! from the gateway to the CRM's delivered message, in the log entries and in the logs.

use crate::helpers::{eventually, Layout, Shop, ROLES};
use ordershop_readmodel::keys;
use ordershop_services::routes::gateway_routes;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

// ------------------------------------------------------------------------------------------
// OpenAPI

/// Every `$ref` in `value`.
fn refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("$ref", Value::String(r)) => out.push(r),
                    _ => refs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

/// Resolves a local JSON pointer (`#/components/schemas/X`).
fn resolve<'a>(document: &'a Value, reference: &str) -> Option<&'a Value> {
    let pointer = reference.strip_prefix('#')?;
    document.pointer(pointer)
}

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// The structural rules of OpenAPI 3 that matter to a client generator.
fn assert_openapi_3(document: &Value) {
    let version = document["openapi"].as_str().expect("`openapi` is a string");
    assert!(version.starts_with("3."), "not OpenAPI 3: {version}");
    assert!(document["info"]["title"].is_string(), "info.title");
    assert!(document["info"]["version"].is_string(), "info.version");
    let paths = document["paths"].as_object().expect("`paths` is an object");
    assert!(!paths.is_empty());
    let mut operation_ids = BTreeSet::new();
    for (path, item) in paths {
        assert!(path.starts_with('/'), "path {path} must start with /");
        let item = item.as_object().expect("a path item is an object");
        let templated: BTreeSet<&str> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            .collect();
        for (method, op) in item {
            assert!(
                METHODS.contains(&method.as_str()),
                "{path}: unknown key {method}"
            );
            let id = op["operationId"].as_str().expect("operationId");
            assert!(operation_ids.insert(id.to_owned()), "duplicate {id}");
            let responses = op["responses"].as_object().expect("responses");
            assert!(!responses.is_empty(), "{method} {path}: no responses");
            for (status, response) in responses {
                assert!(
                    status == "default" || status.parse::<u16>().is_ok(),
                    "{method} {path}: status {status}"
                );
                assert!(
                    response["description"].is_string(),
                    "{method} {path} {status}: description"
                );
            }
            // Every path template variable is a required path parameter.
            let declared: BTreeSet<&str> = op["parameters"]
                .as_array()
                .map(|ps| {
                    ps.iter()
                        .filter(|p| p["in"] == "path")
                        .inspect(|p| assert_eq!(p["required"], json!(true), "{path}: {p}"))
                        .filter_map(|p| p["name"].as_str())
                        .collect()
                })
                .unwrap_or_default();
            assert_eq!(declared, templated, "{method} {path}: path parameters");
            for p in op["parameters"].as_array().into_iter().flatten() {
                assert!(
                    ["path", "query", "header", "cookie"].contains(&p["in"].as_str().unwrap_or("")),
                    "{p}"
                );
                assert!(
                    p["schema"].is_object(),
                    "{method} {path}: {p} has no schema"
                );
            }
        }
    }
    let mut all = Vec::new();
    refs(document, &mut all);
    assert!(!all.is_empty(), "the document uses no shared schemas");
    for reference in all {
        assert!(
            resolve(document, reference).is_some(),
            "unresolved $ref {reference}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_is_openapi_3_and_covers_every_gateway_route() {
    let shop = Shop::start(Layout::OneProcess).await;
    let (status, document) = shop.get("/openapi.json").await;
    assert_eq!(status, 200);
    assert_openapi_3(&document);

    // Every route the gateway registers (its route table) is documented...
    for route in gateway_routes() {
        let method = route.method.as_str().to_lowercase();
        assert!(
            document["paths"][&route.path][&method].is_object(),
            "{} {} is not in /openapi.json",
            route.method.as_str(),
            route.path
        );
    }
    // ...and every documented operation is served: none answers "no route" or "wrong method".
    let nil = uuid::Uuid::nil().to_string();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let paths = document["paths"].as_object().expect("paths");
    for (path, item) in paths {
        let concrete = path.replace("{id}", &nil).replace("{file}", "index.html");
        for method in item.as_object().expect("item").keys() {
            let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let response = client
                .request(method.clone(), shop.gateway(&concrete))
                .body("{}")
                .send()
                .await
                .expect("request");
            let status = response.status().as_u16();
            // The event feed never ends: its head is the answer.
            let endless = response
                .headers()
                .get("content-type")
                .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
            let body: Value = if endless {
                Value::Null
            } else {
                response.json().await.unwrap_or(Value::Null)
            };
            let detail = body["detail"].as_str().unwrap_or("");
            assert!(
                status != 405 && !detail.starts_with("no route for"),
                "{method} {path} is documented but not served: {status} {body}"
            );
            let documented = &document["paths"][path][method.as_str().to_lowercase()];
            assert!(
                documented["responses"][status.to_string()].is_object(),
                "{method} {path} answered {status}, which it does not document"
            );
        }
    }

    // The docs page is served from the binary: its scripts and styles are ours, and it loads
    // this document.
    let page = client
        .get(shop.gateway("/docs/"))
        .send()
        .await
        .expect("docs");
    assert_eq!(page.status(), 200);
    let html = page.text().await.expect("html");
    assert!(html.contains("swagger-ui"), "{html}");
    for external in ["src=\"http", "href=\"http", "src=\"//", "href=\"//"] {
        assert!(
            !html.contains(external),
            "the page loads an external asset: {html}"
        );
    }
    for asset in ["swagger-ui-bundle.js", "swagger-ui.css"] {
        let response = client
            .get(shop.gateway(&format!("/docs/{asset}")))
            .send()
            .await
            .expect("asset");
        assert_eq!(response.status(), 200, "{asset}");
    }
    let init = client
        .get(shop.gateway("/docs/swagger-initializer.js"))
        .send()
        .await
        .expect("initializer")
        .text()
        .await
        .expect("text");
    assert!(init.contains("/openapi.json"), "{init}");
    let redirect = client
        .get(shop.gateway("/docs"))
        .send()
        .await
        .expect("docs");
    assert_eq!(redirect.status(), 308);
}

// ------------------------------------------------------------------------------------------
// Metrics

/// `/metrics` as series -> value (the series with its labels, as the text format writes it).
async fn scrape(shop: &Shop, role: &str) -> BTreeMap<String, f64> {
    let response = shop
        .http
        .get(format!("{}/metrics", shop.url(role)))
        .send()
        .await
        .expect("GET /metrics");
    assert_eq!(response.status(), 200);
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let text = response.text().await.expect("text");
    assert!(text.trim_end().ends_with("# EOF"), "{text}");
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

fn delta(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>, series: &str) -> f64 {
    after.get(series).copied().unwrap_or(0.0) - before.get(series).copied().unwrap_or(0.0)
}

fn http(role: &str, route: &str, method: &str, status: u16) -> String {
    format!(
        r#"http_requests_total{{role="{role}",route="{route}",method="{method}",status="{status}"}}"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_counters_move_by_exactly_the_requests_and_events_made() {
    // Dead-letter at the first failed delivery, so a poison entry is counted at once.
    let shop = Shop::start_with(Layout::OneProcess, &[("ORDERSHOP_MAX_DELIVERIES", "1")]).await;
    let before = scrape(&shop, "gateway").await;

    let customer = shop
        .create(
            "/customer",
            json!({"name": "Ada", "email": "ada@example.com"}),
        )
        .await;
    let product = shop
        .create("/product", json!({"name": "Tea", "price": 450}))
        .await;
    shop.create("/inventory", json!({"product_id": product[0], "amount": 3}))
        .await;
    shop.create(
        "/order",
        json!({"product_ids": [product[0]], "customer_id": customer[0]}),
    )
    .await;
    let (status, _) = shop.get(&format!("/order/{}", uuid::Uuid::nil())).await;
    assert_eq!(status, 200);
    let (status, _) = shop.get("/no/such/route").await;
    assert_eq!(status, 404);
    // A poison entry: the three projections that read the stream dead-letter it.
    let mut conn = shop.redis().await;
    let _: String = redis::cmd("XADD")
        .arg("events:customer_created")
        .arg("*")
        .arg("event_id")
        .arg("not-a-uuid")
        .query_async(&mut conn)
        .await
        .expect("XADD");

    let stream = |s: &str| format!(r#"events_appended_total{{stream="events:{s}"}}"#);
    let projection = |family: &str, p: &str| format!(r#"projection_{family}{{projection="{p}"}}"#);
    let expected: Vec<(String, f64)> = vec![
        (http("gateway", "/customer", "POST", 200), 1.0),
        (http("gateway", "/product", "POST", 200), 1.0),
        (http("gateway", "/inventory", "POST", 200), 1.0),
        (http("gateway", "/order", "POST", 200), 1.0),
        (http("gateway", "/order/{id}", "GET", 200), 1.0),
        (http("gateway", "unmatched", "GET", 404), 1.0),
        // In `up` the gateway runs commands in-process: no HTTP request reaches the service.
        (http("order-service", "/order", "POST", 200), 0.0),
        (
            r#"http_request_duration_seconds_count{role="gateway",route="/order",method="POST"}"#
                .to_owned(),
            1.0,
        ),
        (stream("customer_created"), 1.0),
        (stream("product_created"), 1.0),
        (stream("inventory_created"), 1.0),
        (stream("order_created"), 1.0),
        // The order takes its stock in the same append.
        (stream("inventory_updated"), 1.0),
        (projection("events_applied_total", "entity-cache"), 5.0),
        // The CRM view reads neither stock nor products; its mailer reads products.
        (projection("events_applied_total", "crm"), 2.0),
        (projection("events_applied_total", "crm-mailer"), 3.0),
        // Welcome, order confirmation, payment request.
        (projection("events_applied_total", "msg-service"), 3.0),
        ("messages_delivered_total".to_owned(), 3.0),
        (projection("dead_lettered_total", "entity-cache"), 1.0),
        (projection("dead_lettered_total", "crm"), 1.0),
        (projection("dead_lettered_total", "crm-mailer"), 1.0),
    ];
    let last = std::cell::RefCell::new(BTreeMap::new());
    eventually("the counters to move", WAIT, || {
        let (shop, expected, before, last) = (&shop, &expected, &before, &last);
        async move {
            let now = scrape(shop, "gateway").await;
            let moved = expected
                .iter()
                .all(|(series, want)| delta(before, &now, series) >= *want);
            *last.borrow_mut() = now;
            moved
        }
    })
    .await;
    let after = last.into_inner();
    for (series, want) in &expected {
        assert_eq!(delta(&before, &after, series), *want, "{series}");
    }
    // The other roles of the process serve the same registry.
    let crm = scrape(&shop, "crm-service").await;
    assert_eq!(
        crm.get("messages_delivered_total"),
        after.get("messages_delivered_total")
    );

    // Pending and lag are refreshed in the background: every group catches up to zero.
    eventually(
        "the backlog gauges to reach zero and the parked entry to show",
        WAIT,
        || {
            let shop = &shop;
            async move {
                let now = scrape(shop, "gateway").await;
                let caught_up = ["entity-cache", "crm", "crm-mailer", "msg-service"]
                    .iter()
                    .all(|p| {
                        now.get(&projection("pending", p)) == Some(&0.0)
                            && now.get(&projection("lag", p)) == Some(&0.0)
                    });
                // The poison entry sits parked in each group that reads its stream, and each
                // says when it last failed.
                let parked = ["entity-cache", "crm", "crm-mailer"].iter().all(|p| {
                    now.get(&projection("dead_letters", p)) == Some(&1.0)
                        && now
                            .get(&projection("last_error_time_seconds", p))
                            .is_some_and(|t| *t > 0.0)
                });
                caught_up && parked
            }
        },
    )
    .await;
}

// ------------------------------------------------------------------------------------------
// Request ids

/// The field values of every entry of a stream whose `field` equals `value`.
async fn entries_with(
    conn: &mut redis::aio::MultiplexedConnection,
    stream: &str,
    field: &str,
    value: &str,
) -> Vec<BTreeMap<String, String>> {
    let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(stream)
        .arg("-")
        .arg("+")
        .query_async(conn)
        .await
        .expect("XRANGE");
    reply
        .ids
        .iter()
        .map(|entry| {
            entry
                .map
                .keys()
                .filter_map(|k| Some((k.clone(), entry.get::<String>(k)?)))
                .collect::<BTreeMap<String, String>>()
        })
        .filter(|fields| fields.get(field).map(String::as_str) == Some(value))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_id_follows_an_order_from_the_gateway_to_the_crms_message() {
    let shop = Shop::start(Layout::ProcessPerRole).await;
    let customer = shop
        .create(
            "/customer",
            json!({"name": "Grace", "email": "grace@example.com"}),
        )
        .await;
    let product = shop
        .create("/product", json!({"name": "Tea", "price": 450}))
        .await;
    shop.create("/inventory", json!({"product_id": product[0], "amount": 3}))
        .await;

    let request_id = "order-trace-7f3a";
    let response = shop
        .http
        .post(shop.gateway("/order"))
        .header("X-Request-Id", request_id)
        .json(&json!({"product_ids": [product[0]], "customer_id": customer[0]}))
        .send()
        .await
        .expect("POST /order");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers().get("x-request-id").map(|v| v.as_bytes()),
        Some(request_id.as_bytes())
    );

    // The events of the order's append carry it.
    let mut conn = shop.redis().await;
    let orders = entries_with(&mut conn, "events:order_created", "request_id", request_id).await;
    assert_eq!(orders.len(), 1, "{orders:?}");
    let event_id = orders[0]["event_id"].clone();
    let stock = entries_with(
        &mut conn,
        "events:inventory_updated",
        "request_id",
        request_id,
    )
    .await;
    assert_eq!(stock.len(), 1, "{stock:?}");

    // The CRM's messages about the order carry it and the event, in the outbox and delivered.
    // The mailer writes them on its own time (the answer waited for the entity cache only).
    eventually("the mailer to write the order's messages", WAIT, || {
        let shop = &shop;
        async move {
            let mut conn = shop.redis().await;
            entries_with(&mut conn, &keys::outbox(), "request_id", request_id)
                .await
                .len()
                >= 2
        }
    })
    .await;
    let outbox = entries_with(&mut conn, &keys::outbox(), "request_id", request_id).await;
    let kinds: BTreeSet<&str> = outbox.iter().map(|m| m["kind"].as_str()).collect();
    assert_eq!(
        kinds,
        BTreeSet::from(["order_confirmation", "payment_request"])
    );
    assert!(
        outbox.iter().all(|m| m["event_id"] == event_id),
        "{outbox:?}"
    );
    eventually("the messages to be delivered", WAIT, || {
        let shop = &shop;
        async move {
            let mut conn = shop.redis().await;
            entries_with(&mut conn, &keys::delivered(), "request_id", request_id)
                .await
                .len()
                == 2
        }
    })
    .await;

    // `grep <request id>` over the logs follows the order through every role it crossed.
    for role in [
        "gateway",
        "order-service",
        "entity-cache",
        "crm-service",
        "msg-service",
    ] {
        eventually(&format!("{role} to log the request id"), WAIT, || {
            let found = shop.log(role).contains(request_id);
            async move { found }
        })
        .await;
    }
    assert!(shop.log("crm-service").contains(&event_id));

    // Without a sane id of its own, a request gets a new one.
    let response = shop
        .http
        .get(shop.gateway("/orders"))
        .header("X-Request-Id", "not a sane id")
        .send()
        .await
        .expect("GET");
    let given = response
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .expect("an id");
    assert!(uuid::Uuid::parse_str(given).is_ok(), "{given}");

    // Every role serves its metrics and is healthy.
    for role in ROLES {
        let metrics = shop
            .http
            .get(format!("{}/metrics", shop.url(role)))
            .send()
            .await
            .expect("metrics");
        assert_eq!(metrics.status(), 200, "{role}");
    }
}
