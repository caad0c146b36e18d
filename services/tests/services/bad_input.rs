//! Bad input on every command route, sent to the owning service directly and through the
//! gateway: always the right 4xx with a JSON `{error, detail}` body, and nothing appended.

use crate::helpers::{Shop, DOMAIN_SERVICES};
use ordershop_domain::EntityKind;
use ordershop_services::config::Role;
use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

enum Body {
    None,
    Json(Value),
    Raw(Vec<u8>),
}

struct Case {
    what: &'static str,
    kind: EntityKind,
    method: Method,
    path: String,
    body: Body,
    status: u16,
    code: &'static str,
}

fn case(
    what: &'static str,
    kind: EntityKind,
    method: Method,
    path: impl Into<String>,
    body: Body,
    status: u16,
    code: &'static str,
) -> Case {
    Case {
        what,
        kind,
        method,
        path: path.into(),
        body,
        status,
        code,
    }
}

fn raw(text: &str) -> Body {
    Body::Raw(text.as_bytes().to_vec())
}

/// Every case, given a live customer, product and order. (A table: one case per line.)
#[rustfmt::skip]
fn cases(customer: Uuid, product: Uuid, order: Uuid) -> Vec<Case> {
    use EntityKind::{Billing, Customer, Inventory, Order, Product};
    let unknown = Uuid::new_v4();
    let ada = json!({"name": "Ada", "email": "ada@example.com"});
    let (post, put, delete) = (Method::POST, Method::PUT, Method::DELETE);
    vec![
        // Not JSON, or not the right shape: 400.
        case("malformed JSON", Customer, post.clone(), "/customer", raw(r#"{"name": "Ada","#), 400, "bad_request"),
        case("empty body", Customer, post.clone(), "/customers", raw(""), 400, "bad_request"),
        case("a string", Customer, post.clone(), "/customer", Body::Json(json!("Ada")), 400, "bad_request"),
        case("null", Product, post.clone(), "/product", Body::Json(Value::Null), 400, "bad_request"),
        case("missing field", Customer, post.clone(), "/customers", Body::Json(json!({"name": "Ada"})), 400, "bad_request"),
        case("mistyped field", Customer, post.clone(), "/customer", Body::Json(json!({"name": 5, "email": "a@example.com"})), 400, "bad_request"),
        case("a list with a malformed item", Customer, post.clone(), "/customers", Body::Json(json!([ada, {"name": "Bob"}])), 400, "bad_request"),
        case("price as a string", Product, post.clone(), "/product", Body::Json(json!({"name": "W", "price": "10"})), 400, "bad_request"),
        case("price as a float", Product, post.clone(), "/products", Body::Json(json!({"name": "W", "price": 1.5})), 400, "bad_request"),
        // A whole number, however large, is a number: out of range (422), like "huge price".
        case("price beyond u64", Product, post.clone(), "/product", raw(r#"{"name": "W", "price": 99999999999999999999999}"#), 422, "invalid"),
        case("price beyond f64", Product, post.clone(), "/product", raw(r#"{"name": "W", "price": 1e400}"#), 400, "bad_request"),
        case("amount as a float", Inventory, post.clone(), "/inventory", Body::Json(json!({"product_id": product, "amount": 2.5})), 400, "bad_request"),
        case("amount beyond u64", Inventory, post.clone(), "/inventory", raw(&format!(r#"{{"product_id": "{product}", "amount": 1000000000000000000000000000000}}"#)), 422, "invalid"),
        case("product id not a UUID", Inventory, post.clone(), "/inventory", Body::Json(json!({"product_id": "nope", "amount": 1})), 400, "bad_request"),
        case("missing amount", Inventory, post.clone(), "/inventory", Body::Json(json!({"product_id": product})), 400, "bad_request"),
        case("product ids not a list", Order, post.clone(), "/order", Body::Json(json!({"product_ids": product, "customer_id": customer})), 400, "bad_request"),
        case("customer id a number", Order, post.clone(), "/orders", Body::Json(json!({"product_ids": [product], "customer_id": 5})), 400, "bad_request"),
        case("done not a boolean", Billing, post.clone(), "/billing", Body::Json(json!({"order_id": order, "done": "yes"})), 400, "bad_request"),
        case("missing order id", Billing, post.clone(), "/billings", Body::Json(json!({"done": true})), 400, "bad_request"),
        case("PUT with an invalid id", Customer, put.clone(), "/customer/not-a-uuid", Body::Json(ada.clone()), 400, "bad_request"),
        case("DELETE with an invalid id", Order, delete.clone(), "/order/42", Body::None, 400, "bad_request"),
        case("PUT without a body", Product, put.clone(), format!("/product/{product}"), Body::None, 400, "bad_request"),
        // Well-formed but invalid: 422.
        case("bad email", Customer, post.clone(), "/customer", Body::Json(json!({"name": "Ada", "email": "ada"})), 422, "invalid"),
        case("a name of nothing but invisible characters", Customer, post.clone(), "/customer", Body::Json(json!({"name": "\u{200B}\u{2060}\u{3164}", "email": "ada@example.com"})), 422, "invalid"),
        case("a right-to-left override in a name", Customer, post.clone(), "/customer", Body::Json(json!({"name": "Bob\u{202E}gnp.exe", "email": "bob@example.com"})), 422, "invalid"),
        case("a zero-width space in an email", Customer, post.clone(), "/customer", Body::Json(json!({"name": "Ada", "email": "ada\u{200B}@example.com"})), 422, "invalid"),
        case("empty name", Customer, post.clone(), "/customer", Body::Json(json!({"name": "  ", "email": "ada@example.com"})), 422, "invalid"),
        case("a list with one invalid item", Customer, post.clone(), "/customers", Body::Json(json!([ada, {"name": "Bob", "email": "bob@"}])), 422, "invalid"),
        case("negative price", Product, post.clone(), "/product", Body::Json(json!({"name": "W", "price": -5})), 422, "invalid"),
        case("zero price", Product, post.clone(), "/product", Body::Json(json!({"name": "W", "price": 0})), 422, "invalid"),
        case("huge price", Product, post.clone(), "/product", Body::Json(json!({"name": "W", "price": 1_000_000_000_000_u64})), 422, "invalid"),
        case("negative amount", Inventory, post.clone(), "/inventory", Body::Json(json!({"product_id": product, "amount": -1})), 422, "invalid"),
        case("huge amount", Inventory, post.clone(), "/inventory", Body::Json(json!({"product_id": product, "amount": 1_000_000_000_000_000_u64})), 422, "invalid"),
        case("no products", Order, post.clone(), "/order", Body::Json(json!({"product_ids": [], "customer_id": customer})), 422, "invalid"),
        case("body id differs from the path", Customer, put.clone(), format!("/customer/{customer}"), Body::Json(json!({"id": unknown, "name": "Ada", "email": "ada@example.com"})), 422, "invalid"),
        case("unknown product for stock", Inventory, post.clone(), "/inventory", Body::Json(json!({"product_id": unknown, "amount": 1})), 422, "unknown_reference"),
        case("unknown customer", Order, post.clone(), "/order", Body::Json(json!({"product_ids": [product], "customer_id": unknown})), 422, "unknown_reference"),
        case("unknown product", Order, post.clone(), "/orders", Body::Json(json!({"product_ids": [product, unknown], "customer_id": customer})), 422, "unknown_reference"),
        case("unknown order", Billing, post.clone(), "/billing", Body::Json(json!({"order_id": unknown})), 422, "unknown_reference"),
        // Unknown ids on PUT and DELETE: 404.
        case("PUT unknown customer", Customer, put.clone(), format!("/customer/{unknown}"), Body::Json(ada.clone()), 404, "not_found"),
        case("DELETE unknown customer", Customer, delete.clone(), format!("/customer/{unknown}"), Body::None, 404, "not_found"),
        case("PUT unknown product", Product, put.clone(), format!("/product/{unknown}"), Body::Json(json!({"name": "W", "price": 5})), 404, "not_found"),
        case("DELETE unknown product", Product, delete.clone(), format!("/product/{unknown}"), Body::None, 404, "not_found"),
        case("PUT unknown stock", Inventory, put.clone(), format!("/inventory/{unknown}"), Body::Json(json!({"product_id": product, "amount": 1})), 404, "not_found"),
        case("DELETE unknown stock", Inventory, delete.clone(), format!("/inventory/{unknown}"), Body::None, 404, "not_found"),
        case("PUT unknown order", Order, put.clone(), format!("/order/{unknown}"), Body::Json(json!({"product_ids": [product], "customer_id": customer})), 404, "not_found"),
        case("DELETE unknown order", Order, delete.clone(), format!("/order/{unknown}"), Body::None, 404, "not_found"),
        case("PUT unknown billing", Billing, put.clone(), format!("/billing/{unknown}"), Body::Json(json!({"order_id": order})), 404, "not_found"),
        case("DELETE unknown billing", Billing, delete.clone(), format!("/billing/{unknown}"), Body::None, 404, "not_found"),
        // The routes themselves.
        case("unknown route", Customer, Method::GET, "/nope", Body::None, 404, "not_found"),
        case("wrong method", Customer, Method::PATCH, "/customer", Body::Json(ada.clone()), 405, "method_not_allowed"),
        case("wrong method on an id", Order, Method::POST, format!("/order/{order}"), Body::Json(ada), 405, "method_not_allowed"),
        // Too large: 413.
        case("a 10 MB body", Customer, post.clone(), "/customers", Body::Raw(ten_megabytes()), 413, "payload_too_large"),
        case("a 10 MB PUT", Order, put, format!("/order/{order}"), Body::Raw(ten_megabytes()), 413, "payload_too_large"),
    ]
}

/// Ten megabytes of a JSON list of customers.
fn ten_megabytes() -> Vec<u8> {
    let item = br#"{"name": "Ada", "email": "ada@example.com"},"#;
    let mut body = b"[".to_vec();
    while body.len() < 10 * 1024 * 1024 {
        body.extend_from_slice(item);
    }
    body.extend_from_slice(br#"{"name": "Ada", "email": "ada@example.com"}]"#);
    body
}

async fn every_case_is_refused(via_gateway: bool) {
    let mut roles = DOMAIN_SERVICES.to_vec();
    if via_gateway {
        roles.push(Role::Gateway);
    }
    let shop = Shop::start(&roles).await;
    let customer = shop
        .create(
            EntityKind::Customer,
            "/customer",
            json!({"name": "Ada", "email": "ada@example.com"}),
        )
        .await;
    let product = shop
        .create(
            EntityKind::Product,
            "/product",
            json!({"name": "W", "price": 10}),
        )
        .await;
    shop.create(
        EntityKind::Inventory,
        "/inventory",
        json!({"product_id": product, "amount": 10}),
    )
    .await;
    let order = shop
        .create(
            EntityKind::Order,
            "/order",
            json!({"product_ids": [product], "customer_id": customer}),
        )
        .await;
    let before = shop.stream_lengths().await;

    let route = if via_gateway { "gateway" } else { "service" };
    for case in cases(customer, product, order) {
        let url = format!("{}{}", shop.command_url(case.kind, via_gateway), case.path);
        let reply = match case.body {
            Body::None => shop.call(case.method, &url, None).await,
            Body::Json(value) => shop.call(case.method, &url, Some(&value)).await,
            Body::Raw(bytes) => shop.call_raw(case.method, &url, bytes).await,
        };
        let context = format!("{} via the {route}", case.what);
        reply.assert_error(case.status, case.code, &context);
        assert_eq!(
            shop.stream_lengths().await,
            before,
            "{context}: nothing appended"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_to_the_services_is_a_json_4xx_and_appends_nothing() {
    every_case_is_refused(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_through_the_gateway_is_a_json_4xx_and_appends_nothing() {
    every_case_is_refused(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_queries_refuse_invalid_ids_and_unknown_routes() {
    let shop = Shop::start(&[Role::Gateway]).await;
    let gateway = shop.url(Role::Gateway);
    for path in [
        "/customer/nope",
        "/product/1",
        "/inventory/x",
        "/order/-",
        "/billing/zz",
    ] {
        shop.call(Method::GET, &format!("{gateway}{path}"), None)
            .await
            .assert_error(400, "bad_request", path);
    }
    shop.call(Method::GET, &format!("{gateway}/customer"), None)
        .await
        .assert_error(405, "method_not_allowed", "GET /customer");
    shop.call(Method::DELETE, &format!("{gateway}/report"), None)
        .await
        .assert_error(405, "method_not_allowed", "DELETE /report");
    shop.call(Method::GET, &format!("{gateway}/customers/1/2"), None)
        .await
        .assert_error(404, "not_found", "unknown route");
}
