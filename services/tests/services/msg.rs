//! The message service: `POST /email` appends one outbox entry; `GET /emails` lists what the
//! delivery consumer recorded.

use crate::helpers::Shop;
use ordershop_readmodel::keys;
use ordershop_services::config::Role;
use redis::streams::StreamRangeReply;
use reqwest::{Method, StatusCode};
use serde_json::json;
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_email_appends_one_outbox_entry() {
    let shop = Shop::start(&[Role::MsgService]).await;
    let base = shop.url(Role::MsgService).to_owned();
    let reply = shop
        .post(
            &format!("{base}/email"),
            &json!({"to": "ada@example.com", "msg": "Hello Ada"}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    let msg_id: Uuid = reply.body["msg_id"].as_str().unwrap().parse().unwrap();

    let mut redis = shop.redis().await;
    let outbox: StreamRangeReply = redis::cmd("XRANGE")
        .arg(keys::outbox())
        .arg("-")
        .arg("+")
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(outbox.ids.len(), 1);
    let entry = &outbox.ids[0];
    assert_eq!(entry.get::<String>("msg_id"), Some(msg_id.to_string()));
    assert_eq!(
        entry.get::<String>("to").as_deref(),
        Some("ada@example.com")
    );
    assert_eq!(entry.get::<String>("msg").as_deref(), Some("Hello Ada"));
    assert_eq!(entry.get::<String>("kind").as_deref(), Some("direct"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_messages_are_refused_and_nothing_is_appended() {
    let shop = Shop::start(&[Role::MsgService]).await;
    let url = format!("{}/email", shop.url(Role::MsgService));
    let cases = [
        (json!({"to": "ada", "msg": "Hello"}), 422, "invalid"),
        (
            json!({"to": "ada@example.com", "msg": "   "}),
            422,
            "invalid",
        ),
        (json!({"msg": "Hello"}), 400, "bad_request"),
        (
            json!({"to": "ada@example.com", "msg": 5}),
            400,
            "bad_request",
        ),
        (json!(["ada@example.com", "Hello"]), 400, "bad_request"),
        (
            json!({"to": "ada@example.com", "msg": "Hello\u{0}Ada"}),
            422,
            "invalid",
        ),
        (
            json!({"to": "ada@example.com", "msg": "Hello \u{1b}[31mAda"}),
            422,
            "invalid",
        ),
    ];
    for (body, status, code) in cases {
        shop.post(&url, &body)
            .await
            .assert_error(status, code, &body.to_string());
    }
    shop.call_raw(Method::POST, &url, b"{\"to\":".to_vec())
        .await
        .assert_error(400, "bad_request", "malformed JSON");
    assert_eq!(shop.stream_lengths().await[&keys::outbox()], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_emails_lists_delivered_messages_in_delivery_order() {
    let shop = Shop::start(&[Role::MsgService]).await;
    let base = shop.url(Role::MsgService).to_owned();
    let reply = shop
        .call(Method::GET, &format!("{base}/emails"), None)
        .await;
    assert_eq!((reply.status, &reply.body), (StatusCode::OK, &json!([])));

    // What the delivery consumer records.
    let mut redis = shop.redis().await;
    for (to, msg, at) in [
        ("ada@example.com", "Welcome", "2025-01-01T00:00:00Z"),
        ("bob@example.com", "Welcome", "2025-01-01T00:00:01Z"),
        ("Ada@Example.com", "Your order", "2025-01-01T00:00:02Z"),
    ] {
        let _: String = redis::cmd("XADD")
            .arg(keys::delivered())
            .arg("*")
            .arg("msg_id")
            .arg(format!("id-{msg}-{to}"))
            .arg("to")
            .arg(to)
            .arg("msg")
            .arg(msg)
            .arg("kind")
            .arg("welcome")
            .arg("delivered_at")
            .arg(at)
            .query_async(&mut redis)
            .await
            .unwrap();
    }
    let reply = shop
        .call(Method::GET, &format!("{base}/emails"), None)
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let all = reply.body.as_array().unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(
        all[0],
        json!({"msg_id": "id-Welcome-ada@example.com", "to": "ada@example.com", "msg": "Welcome",
               "kind": "welcome", "delivered_at": "2025-01-01T00:00:00Z"})
    );
    let reply = shop
        .call(
            Method::GET,
            &format!("{base}/emails?to=ada@example.com"),
            None,
        )
        .await;
    let msgs: Vec<&str> = reply
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["msg"].as_str().unwrap())
        .collect();
    assert_eq!(msgs, ["Welcome", "Your order"]);
}
