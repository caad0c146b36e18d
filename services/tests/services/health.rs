//! `/health` on every role, and a role that starts while Redis is down.

use crate::helpers::{config_for, start_role, wait_for, Shop};
use ordershop_domain::{Action, EntityKind};
use ordershop_services::config::Role;
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_role_reports_ok_with_its_name() {
    let shop = Shop::start(&Role::ALL).await;
    for role in Role::ALL {
        let reply = shop
            .call(Method::GET, &format!("{}/health", shop.url(role)), None)
            .await;
        assert_eq!(
            (reply.status, &reply.body),
            (
                StatusCode::OK,
                &json!({"status": "ok", "role": role.as_str()})
            ),
            "{role}"
        );
        // Every role answers unknown routes with JSON.
        shop.call(
            Method::GET,
            &format!("{}/no/such/route", shop.url(role)),
            None,
        )
        .await
        .assert_error(404, "not_found", role.as_str());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_starts_while_redis_is_down_and_recovers_when_it_is_back() {
    let mut shop = Shop::start(&[]).await;
    shop.redis.kill();
    let service = start_role(
        Role::CustomerService,
        config_for(Role::CustomerService, &shop.redis.url(), &[]),
    );
    let health = format!("{}/health", service.url);
    let reply = shop.call(Method::GET, &health, None).await;
    assert_eq!(
        reply.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{:?}",
        reply.body
    );
    assert_eq!(reply.body["status"], json!("unavailable"));
    assert_eq!(reply.body["role"], json!("customer-service"));
    let customer = json!({"name": "Ada", "email": "ada@example.com"});
    shop.post(&format!("{}/customer", service.url), &customer)
        .await
        .assert_error(503, "unavailable", "a command while Redis is down");

    // Redis comes back (empty: it kept no data), and so does the service, Function included.
    shop.redis.restart();
    let http = shop.http.clone();
    wait_for(
        "the service to be healthy again",
        Duration::from_secs(30),
        || {
            let (http, health) = (http.clone(), health.clone());
            async move {
                matches!(http.get(&health).send().await, Ok(r) if r.status() == StatusCode::OK)
            }
        },
    )
    .await;
    let reply = shop
        .post(&format!("{}/customer", service.url), &customer)
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    assert_eq!(shop.xlen(EntityKind::Customer, Action::Created).await, 1);
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_answers_503_while_redis_is_down() {
    let mut shop = Shop::start(&[Role::Gateway]).await;
    shop.redis.kill();
    let gateway = shop.url(Role::Gateway).to_owned();
    for path in ["/customers", "/report", "/orders/unbilled"] {
        shop.call(Method::GET, &format!("{gateway}{path}"), None)
            .await
            .assert_error(503, "unavailable", path);
    }
    let reply = shop
        .call(Method::GET, &format!("{gateway}/health"), None)
        .await;
    assert_eq!(
        reply.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{:?}",
        reply.body
    );
}
