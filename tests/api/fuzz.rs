//! Generated bad input over HTTP: thousands of requests made by proptest against every command
//! route of one running shop — random methods, JSON of every shape and type, garbage bytes,
//! huge and fractional numbers, deep nesting, bodies over the limit, ids that are not UUIDs or
//! are UUIDs nobody created, wrong content types. Every answer must be below 500, every 4xx a
//! JSON `{error, detail}`, and a rejected request must append nothing (XLEN of every stream
//! unchanged).

use crate::helpers::{Layout, Shop};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// Requests per run: enough to reach every route with many shapes, bounded to keep the suite
/// quick in a debug build.
const CASES: u32 = 3_000;
/// A small body limit, so that bodies over it are cheap to generate.
const BODY_LIMIT: usize = 4096;

/// Entities that exist, so generated references sometimes point at real ones.
#[derive(Debug, Clone)]
struct Known {
    customer: String,
    product: String,
    inventory: String,
    order: String,
    billing: String,
}

#[derive(Debug, Clone)]
struct Request {
    method: reqwest::Method,
    path: String,
    content_type: Option<String>,
    body: Vec<u8>,
}

const FIELDS: [&str; 11] = [
    "id",
    "name",
    "email",
    "price",
    "product_id",
    "amount",
    "product_ids",
    "customer_id",
    "order_id",
    "done",
    "total",
];

fn uuid_text(known: &Known) -> impl Strategy<Value = String> {
    let known = [
        known.customer.clone(),
        known.product.clone(),
        known.inventory.clone(),
        known.order.clone(),
        known.billing.clone(),
    ];
    prop_oneof![
        3 => prop::sample::select(known.to_vec()),
        3 => any::<u128>().prop_map(|n| uuid::Uuid::from_u128(n).to_string()),
        1 => Just(uuid::Uuid::nil().to_string()),
        1 => any::<u128>().prop_map(|n| uuid::Uuid::from_u128(n).to_string().to_uppercase()),
        1 => any::<u128>().prop_map(|n| format!("{{{}}}", uuid::Uuid::from_u128(n))),
        1 => any::<u128>().prop_map(|n| uuid::Uuid::from_u128(n).simple().to_string()),
        2 => "[a-zA-Z0-9 _.%~-]{0,40}",
        1 => "\\PC{0,20}",
    ]
}

/// Any JSON value, with the odd numbers and strings that break parsers.
fn json_value(known: &Known) -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        prop::num::f64::NORMAL.prop_map(Value::from),
        prop::sample::select(vec![0i64, -1, 1, i64::MAX, i64::MIN, u32::MAX as i64 + 1])
            .prop_map(Value::from),
        "\\PC{0,30}".prop_map(Value::from),
        uuid_text(known).prop_map(Value::from),
        Just(Value::from("x".repeat(300))),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    prop::sample::select(FIELDS.to_vec()).prop_map(str::to_owned),
                    "\\PC{0,8}"
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// An object with the fields a body has, each of a random type: the closest misses.
fn entity_like(known: &Known) -> impl Strategy<Value = Value> {
    prop::collection::btree_map(
        prop::sample::select(FIELDS.to_vec()),
        json_value(known),
        0..FIELDS.len(),
    )
    .prop_map(|m| {
        Value::Object(
            m.into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect::<Map<_, _>>(),
        )
    })
}

/// Bodies of the right types for entity `kind` (0 customer .. 4 billing) with values that
/// validation or the domain must refuse (empty or huge names, bad emails, zero and negative
/// numbers, unknown references, an order already billed), and now and then a valid one.
fn typed_body(kind: usize, known: &Known) -> BoxedStrategy<Value> {
    let name = prop_oneof![
        Just(String::new()),
        Just("   ".to_owned()),
        "\\PC{0,20}",
        Just("x".repeat(1000)),
    ];
    let email = prop_oneof![
        Just(String::new()),
        Just("no-at-sign".to_owned()),
        Just("a@example.com".to_owned()),
        "\\PC{0,12}@\\PC{0,12}",
    ];
    let number = prop_oneof![
        -2i64..3,
        any::<i64>(),
        Just(i64::MAX),
        Just(u32::MAX as i64 + 1)
    ];
    let id = uuid_text(known);
    match kind {
        0 => (name, email)
            .prop_map(|(name, email)| json!({"name": name, "email": email}))
            .boxed(),
        1 => (name, number)
            .prop_map(|(name, price)| json!({"name": name, "price": price}))
            .boxed(),
        2 => (id, number)
            .prop_map(|(id, amount)| json!({"product_id": id, "amount": amount}))
            .boxed(),
        3 => (prop::collection::vec(uuid_text(known), 0..4), id)
            .prop_map(|(ids, customer)| json!({"product_ids": ids, "customer_id": customer}))
            .boxed(),
        _ => (id, prop::option::of(any::<bool>()))
            .prop_map(|(order, done)| json!({"order_id": order, "done": done}))
            .boxed(),
    }
}

/// A request aimed at one entity's command routes with a body of its shape.
fn targeted(known: &Known) -> impl Strategy<Value = Request> {
    const COLLECTIONS: [&str; 5] = [
        "/customers",
        "/products",
        "/inventory",
        "/orders",
        "/billings",
    ];
    const ITEMS: [&str; 5] = ["/customer", "/product", "/inventory", "/order", "/billing"];
    let known = known.clone();
    (0usize..5).prop_flat_map(move |kind| {
        let body = prop_oneof![
            3 => typed_body(kind, &known),
            1 => prop::collection::vec(typed_body(kind, &known), 0..3).prop_map(Value::Array),
        ];
        (any::<bool>(), uuid_text(&known), body).prop_map(move |(create, id, body)| {
            let (method, path) = if create {
                (reqwest::Method::POST, COLLECTIONS[kind].to_owned())
            } else {
                (
                    reqwest::Method::PUT,
                    format!("{}/{}", ITEMS[kind], percent_encode(&id)),
                )
            };
            Request {
                method,
                path,
                content_type: Some("application/json".to_owned()),
                body: to_bytes(body),
            }
        })
    })
}

fn to_bytes(value: Value) -> Vec<u8> {
    serde_json::to_vec(&value).unwrap_or_default()
}

fn body(known: &Known) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => entity_like(known).prop_map(to_bytes),
        2 => prop::collection::vec(entity_like(known), 0..4).prop_map(move |v| to_bytes(Value::Array(v))),
        3 => json_value(known).prop_map(to_bytes),
        2 => prop::collection::vec(any::<u8>(), 0..200),
        1 => (1usize..4000).prop_map(|depth| {
            let mut nested = "[".repeat(depth);
            nested.push_str(&"]".repeat(depth));
            nested.into_bytes()
        }),
        1 => prop::sample::select(vec![
            "1e400", "-1e400", "99999999999999999999999999", "{\"price\": 1e400}",
            "{\"amount\": 1.5}", "{\"amount\": -0}", "{\"price\": 12.50}",
            "{\"name\":\"a\",\"email\":\"a@b.c\",\"name\":\"dup\"}", "", "null", "[]", "{}",
            "\u{feff}{}", "{\"name\": \"\\ud800\"}", "[1,]", "{'a': 1}",
        ])
        .prop_map(|s| s.as_bytes().to_vec()),
        1 => (BODY_LIMIT + 1..BODY_LIMIT * 3).prop_map(|n| {
            let mut big = br#"{"name":""#.to_vec();
            big.resize(n, b'a');
            big.extend_from_slice(br#"","email":"a@b.c"}"#);
            big
        }),
    ]
}

fn request(known: &Known) -> impl Strategy<Value = Request> {
    prop_oneof![targeted(known), anything(known)]
}

fn anything(known: &Known) -> impl Strategy<Value = Request> {
    const COLLECTIONS: [&str; 9] = [
        "/customers",
        "/customer",
        "/products",
        "/product",
        "/inventory",
        "/orders",
        "/order",
        "/billings",
        "/billing",
    ];
    const ITEMS: [&str; 5] = ["/customer", "/product", "/inventory", "/order", "/billing"];
    let method = prop::sample::select(vec![
        reqwest::Method::POST,
        reqwest::Method::POST,
        reqwest::Method::PUT,
        reqwest::Method::PUT,
        reqwest::Method::DELETE,
        reqwest::Method::PATCH,
        reqwest::Method::GET,
    ]);
    let path = prop_oneof![
        prop::sample::select(COLLECTIONS.to_vec()).prop_map(str::to_owned),
        (prop::sample::select(ITEMS.to_vec()), uuid_text(known))
            .prop_map(|(item, id)| format!("{item}/{}", percent_encode(&id))),
        (
            prop::sample::select(ITEMS.to_vec()),
            uuid_text(known),
            "[a-z]{0,6}"
        )
            .prop_map(|(item, id, tail)| format!("{item}/{}/{tail}", percent_encode(&id))),
    ];
    let content_type = prop::option::of(prop::sample::select(vec![
        "application/json".to_owned(),
        "application/json; charset=utf-8".to_owned(),
        "text/plain".to_owned(),
        "application/x-www-form-urlencoded".to_owned(),
        "multipart/form-data; boundary=x".to_owned(),
        "garbage/;;=x".to_owned(),
        "application/json; charset=latin1".to_owned(),
    ]));
    (method, path, content_type, body(known)).prop_map(|(method, path, content_type, body)| {
        Request {
            method,
            path,
            content_type,
            body,
        }
    })
}

/// Percent-encodes everything but unreserved characters, so the id arrives as generated.
fn percent_encode(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

async fn send(shop: &Shop, request: &Request) -> Result<(u16, Vec<u8>), String> {
    let mut builder = shop
        .http
        .request(request.method.clone(), shop.gateway(&request.path))
        .body(request.body.clone());
    if let Some(content_type) = &request.content_type {
        builder = builder.header(reqwest::header::CONTENT_TYPE, content_type.as_bytes());
    }
    let response = builder
        .send()
        .await
        .map_err(|e| format!("no answer: {e}"))?;
    let status = response.status().as_u16();
    let body = response
        .bytes()
        .await
        .map_err(|e| format!("broken answer: {e}"))?;
    Ok((status, body.to_vec()))
}

async fn seed(shop: &Shop) -> Known {
    let customer = shop
        .create(
            "/customers",
            json!({"name": "Seed", "email": "seed@example.com"}),
        )
        .await;
    let product = shop
        .create("/products", json!({"name": "Seed", "price": 100}))
        .await;
    let inventory = shop
        .create(
            "/inventory",
            json!({"product_id": product[0], "amount": 1_000_000}),
        )
        .await;
    let order = shop
        .create(
            "/orders",
            json!({"product_ids": [product[0]], "customer_id": customer[0]}),
        )
        .await;
    let billing = shop
        .create("/billings", json!({"order_id": order[0]}))
        .await;
    Known {
        customer: customer[0].clone(),
        product: product[0].clone(),
        inventory: inventory[0].clone(),
        order: order[0].clone(),
        billing: billing[0].clone(),
    }
}

#[test]
fn generated_requests_get_no_5xx_a_json_4xx_and_append_nothing_when_rejected() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let limit = BODY_LIMIT.to_string();
    let shop = runtime.block_on(Shop::start_with(
        Layout::OneProcess,
        &[
            ("ORDERSHOP_BODY_LIMIT", limit.as_str()),
            ("RUST_LOG", "warn"),
        ],
    ));
    let known = runtime.block_on(seed(&shop));
    let lengths = std::cell::RefCell::new(runtime.block_on(shop.stream_lengths()));
    let statuses_seen = std::cell::RefCell::new(BTreeMap::<u16, u32>::new());

    let mut runner = TestRunner::new(Config {
        cases: CASES,
        failure_persistence: None,
        max_shrink_iters: 200,
        ..Config::default()
    });
    let result = runner.run(&request(&known), |request| {
        runtime.block_on(async {
            let (status, body) = send(&shop, &request).await.map_err(TestCaseError::fail)?;
            *statuses_seen.borrow_mut().entry(status).or_default() += 1;
            let shown = String::from_utf8_lossy(&body);
            prop_assert!(status < 500, "{request:?} -> {status} {shown}");
            let after = shop.stream_lengths().await;
            if (400..500).contains(&status) {
                let answer: Value = serde_json::from_slice(&body).map_err(|e| {
                    TestCaseError::fail(format!("{request:?} -> {status}, not JSON ({e}): {shown}"))
                })?;
                prop_assert!(
                    answer["error"].is_string() && answer["detail"].is_string(),
                    "{request:?} -> {status} {answer}"
                );
                prop_assert_eq!(
                    &after,
                    &*lengths.borrow(),
                    "{:?} was rejected with {} but appended",
                    request,
                    status
                );
            }
            *lengths.borrow_mut() = after;
            Ok(())
        })
    });
    if let Err(e) = result {
        panic!("{e}\n--- shop log\n{}", shop.log("up"));
    }
    let statuses = statuses_seen.into_inner();
    println!("statuses of {CASES} generated requests: {statuses:?}");
    assert!(
        statuses.keys().filter(|s| (400..500).contains(*s)).count() >= 4,
        "the generator reaches too few kinds of rejection: {statuses:?}"
    );
}
