//! The CRM: its view of each customer, and the messages of the original sample, sent once each,
//! including those due while the CRM was down.

use crate::support::{delivered, drain, eventually, step_stream_by_stream, stream_entries, Shop};
use ordershop_domain::{Action, EntityKind};
use ordershop_eventstore::Stream;
use ordershop_operations::group_status;
use ordershop_projections::message_text::CustomerMessage;
use ordershop_projections::{
    run_until_stopped, Crm, CrmMailer, MsgDelivery, ProjectionName, RunnerOptions,
};
use ordershop_readmodel::keys::{self, CrmSegment};
use redis::AsyncCommands;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// (kind, to) of every delivered message, counted.
async fn delivered_by_kind_and_address(shop: &Shop) -> BTreeMap<(String, String), u64> {
    let mut counts = BTreeMap::new();
    let mut ids = BTreeSet::new();
    for m in delivered(&mut shop.conn().await).await {
        assert!(
            ids.insert(m["msg_id"].clone()),
            "{} delivered twice",
            m["msg_id"]
        );
        *counts
            .entry((m["kind"].clone(), m["to"].clone()))
            .or_insert(0) += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn messages_due_while_the_crm_was_down_are_sent_once_and_earlier_ones_not_again() {
    let shop = Shop::start().await;
    let widget = shop.create_product("Widget", 250).await;
    shop.create_inventory(widget, 100).await;

    // Before the downtime: the CRM runs and its messages are delivered.
    let early = shop.create_customer("Early").await;
    shop.create_order(early, vec![widget]).await.unwrap();
    let mut crm = shop.runner(Crm, "crm-before").await;
    let mut mailer = shop.runner(CrmMailer, "mailer-before").await;
    let mut msg = shop.runner(MsgDelivery, "msg-before").await;
    drain(&mut crm).await;
    drain(&mut mailer).await;
    drain(&mut msg).await;
    drop(crm);
    drop(mailer);
    let before = delivered(&mut shop.conn().await).await.len();
    assert_eq!(before, 3, "welcome, confirmation, payment request");

    // Downtime: 5 customers and 3 orders.
    let mut customers = Vec::new();
    for i in 0..5 {
        customers.push(shop.create_customer(&format!("Down{i}")).await);
    }
    for buyer in &customers[..3] {
        shop.create_order(*buyer, vec![widget, widget])
            .await
            .unwrap();
    }

    let stop = CancellationToken::new();
    let tasks: Vec<_> = [
        ProjectionName::Crm,
        ProjectionName::CrmMailer,
        ProjectionName::MsgDelivery,
    ]
    .into_iter()
    .map(|projection| {
        tokio::spawn(run_until_stopped(
            shop.config.clone(),
            projection,
            RunnerOptions {
                consumer: format!("{projection}-after"),
                block: Duration::from_millis(100),
                ..RunnerOptions::default()
            },
            stop.clone(),
            Default::default(),
        ))
    })
    .collect();
    eventually(
        "the CRM and the message service to catch up",
        Duration::from_secs(60),
        || async {
            let status = group_status(&shop.config).await.expect("status");
            status[1..].iter().all(|g| g.behind() == 0)
                && delivered(&mut shop.conn().await).await.len() == before + 5 + 3 * 2
        },
    )
    .await;
    stop.cancel();
    for task in tasks {
        task.await.expect("task ends").expect("stops cleanly");
    }

    let counts = delivered_by_kind_and_address(&shop).await;
    let count = |kind: &str, to: &str| counts.get(&(kind.to_owned(), to.to_owned())).copied();
    assert_eq!(count("welcome", "early@example.com"), Some(1));
    assert_eq!(count("order_confirmation", "early@example.com"), Some(1));
    assert_eq!(count("payment_request", "early@example.com"), Some(1));
    for i in 0..5 {
        let to = format!("down{i}@example.com");
        assert_eq!(count("welcome", &to), Some(1), "{to}");
        let orders = if i < 3 { Some(1) } else { None };
        assert_eq!(count("order_confirmation", &to), orders, "{to}");
        assert_eq!(count("payment_request", &to), orders, "{to}");
    }
    assert_eq!(counts.values().sum::<u64>(), 3 + 5 + 3 * 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_crm_view_tracks_orders_amounts_billings_and_segments() {
    let shop = Shop::start().await;
    let widget = shop.create_product("Widget", 250).await;
    let gadget = shop.create_product("Gadget", 1000).await;
    shop.create_inventory(widget, 100).await;
    shop.create_inventory(gadget, 100).await;
    let ada = shop.create_customer("Ada").await;
    let bob = shop.create_customer("Bob").await;
    let carl = shop.create_customer("Carl").await;
    let paid = shop.create_order(ada, vec![widget, widget]).await.unwrap();
    shop.create_billing(paid).await;
    let open = shop.create_order(ada, vec![gadget]).await.unwrap();
    shop.delete_customer(bob).await;
    let cancelled = shop.create_order(carl, vec![widget]).await.unwrap();
    shop.delete_order(cancelled).await;

    let mut crm = shop.runner(Crm, "crm").await;
    let mut mailer = shop.runner(CrmMailer, "mailer").await;
    drain(&mut crm).await;
    drain(&mut mailer).await;
    let mut conn = shop.conn().await;
    let reader = conn.clone();
    let sent: BTreeMap<String, String> = conn.hgetall(keys::crm_messages_sent()).await.unwrap();
    let hash = |id: uuid::Uuid| {
        let mut conn = reader.clone();
        async move {
            let h: BTreeMap<String, String> = conn.hgetall(keys::crm_customer(id)).await.unwrap();
            h
        }
    };
    let ada_view = hash(ada.0).await;
    let last_order_entry: String = {
        let reply: redis::streams::StreamRangeReply = conn
            .xrange_all(Stream::new(EntityKind::Order, Action::Created).key())
            .await
            .unwrap();
        reply
            .ids
            .iter()
            .find(|e| {
                e.get::<String>("entity")
                    .is_some_and(|j| j.contains(&open.to_string()))
            })
            .map(|e| e.id.clone())
            .unwrap()
    };
    let expected: BTreeMap<String, String> = [
        ("id", ada.to_string()),
        ("name", "Ada".into()),
        ("email", "ada@example.com".into()),
        ("status", "active".into()),
        ("orders", "2".into()),
        ("units", "3".into()),
        ("amount_ordered", "1500".into()),
        ("amount_billed", "500".into()),
        ("unbilled_orders", "1".into()),
        ("last_order_id", open.to_string()),
        ("last_order_entry", last_order_entry.clone()),
        (
            "last_order_at",
            last_order_entry.split('-').next().unwrap().to_owned(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    assert_eq!(ada_view, expected);
    assert_eq!(sent[&ada.to_string()], "6");
    let bought: BTreeMap<String, u64> = conn
        .hgetall(keys::crm_customer_products(ada.0))
        .await
        .unwrap();
    assert_eq!(
        bought,
        BTreeMap::from([(widget.to_string(), 2), (gadget.to_string(), 1)])
    );

    let bob_view = hash(bob.0).await;
    assert_eq!(bob_view["status"], "deleted");
    assert_eq!(sent[&bob.to_string()], "2", "welcome and goodbye");
    let carl_view = hash(carl.0).await;
    assert!(
        !carl_view.contains_key("orders"),
        "a deleted order does not count"
    );
    assert_eq!(carl_view["last_order_id"], cancelled.to_string());
    assert_eq!(sent[&carl.to_string()], "3");

    let segment = |s: CrmSegment| {
        let mut conn = reader.clone();
        async move {
            let m: BTreeSet<String> = conn.smembers(s.key()).await.unwrap();
            m
        }
    };
    let ids = |ids: &[uuid::Uuid]| ids.iter().map(ToString::to_string).collect::<BTreeSet<_>>();
    assert_eq!(segment(CrmSegment::All).await, ids(&[ada.0, bob.0, carl.0]));
    assert_eq!(segment(CrmSegment::Active).await, ids(&[ada.0, carl.0]));
    assert_eq!(segment(CrmSegment::Deleted).await, ids(&[bob.0]));
    assert_eq!(segment(CrmSegment::Unbilled).await, ids(&[ada.0]));

    let texts: Vec<(String, String)> = stream_entries(&mut conn, &keys::outbox())
        .await
        .into_iter()
        .filter(|m| m["customer_id"] == ada.to_string())
        .map(|m| {
            let text = CustomerMessage::from_facts(&m["kind"], |f| m.get(f).map(String::as_str))
                .map(|message| message.text())
                .unwrap_or_else(|e| panic!("{e}: {m:?}"));
            (m["kind"].clone(), text)
        })
        .collect();
    let has = |kind: &str, text: &str| texts.iter().any(|(k, t)| k == kind && t.contains(text));
    assert!(
        has("welcome", "Hello Ada, welcome to OrderShop!"),
        "{texts:?}"
    );
    assert!(has("order_confirmation", ": 2 x Widget."), "{texts:?}");
    assert!(has("order_confirmation", ": 1 x Gadget."), "{texts:?}");
    assert!(has("payment_request", "please pay 10.00"), "{texts:?}");
    assert!(has("receipt", "payment of 5.00"), "{texts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_about_orders_read_before_their_customer_wait_for_the_customer() {
    let shop = Shop::start().await;
    let widget = shop.create_product("Widget", 199).await;
    shop.create_inventory(widget, 100).await;
    let ada = shop.create_customer("Ada").await;
    let order = shop.create_order(ada, vec![widget]).await.unwrap();
    shop.create_billing(order).await;

    let mut mailer = shop.runner(CrmMailer, "mailer").await;
    let streams = |kind| Stream::of_kind(kind).map(|s| s.key());
    step_stream_by_stream(&mut mailer, &streams(EntityKind::Billing)).await;
    assert_eq!(
        shop.xlen(&keys::outbox()).await,
        0,
        "the receipt waits for its order"
    );
    step_stream_by_stream(&mut mailer, &streams(EntityKind::Order)).await;
    assert_eq!(
        shop.xlen(&keys::outbox()).await,
        0,
        "all wait for the customer"
    );
    step_stream_by_stream(&mut mailer, &streams(EntityKind::Customer)).await;
    drain(&mut mailer).await;
    let mut crm = shop.runner(Crm, "crm").await;
    drain(&mut crm).await;

    let mut conn = shop.conn().await;
    let outbox = stream_entries(&mut conn, &keys::outbox()).await;
    let kinds: BTreeSet<&str> = outbox.iter().map(|m| m["kind"].as_str()).collect();
    assert_eq!(
        kinds,
        BTreeSet::from([
            "order_confirmation",
            "payment_request",
            "receipt",
            "welcome"
        ])
    );
    assert!(outbox.iter().all(|m| m["to"] == "ada@example.com"));
    let receipt = outbox.iter().find(|m| m["kind"] == "receipt").unwrap();
    let text = CustomerMessage::from_facts("receipt", |f| receipt.get(f).map(String::as_str))
        .map(|message| message.text())
        .unwrap_or_else(|e| panic!("{e}: {receipt:?}"));
    assert!(text.contains("payment of 1.99"), "{receipt:?}");
    let view: BTreeMap<String, String> = conn.hgetall(keys::crm_customer(ada.0)).await.unwrap();
    let sent: Option<String> = conn
        .hget(keys::crm_messages_sent(), ada.to_string())
        .await
        .unwrap();
    assert_eq!(sent.as_deref(), Some("4"));
    assert_eq!(view["amount_billed"], "199");
}

/// A billing's plan names the billing's link and the order's record, not the counters of the
/// order's customer (the record holds those): the Function finds them before it writes and
/// answers them, and the runner calls again declaring them (what keeps a Redis Cluster from
/// running the call beside keys that have not moved yet while the shop's slot moves).
#[tokio::test]
async fn a_billing_answers_its_orders_customer_keys_before_writing_then_applies() {
    use ordershop_projections::projection::{Entry, Mode, Projection};
    let shop = Shop::start().await;
    let widget = shop.create_product("Widget", 250).await;
    shop.create_inventory(widget, 10).await;
    let ada = shop.create_customer("Ada").await;
    let order = shop.create_order(ada, vec![widget]).await.expect("ordered");
    let mut crm = shop.runner(Crm, "crm").await;
    drain(&mut crm).await;
    let billing = shop.create_billing(order).await;

    let raw = shop
        .store
        .read_stream(
            Stream::new(EntityKind::Billing, Action::Created),
            ordershop_eventstore::EntryId::ZERO,
            None,
            10,
        )
        .await
        .expect("read");
    let plan = Crm
        .decode(&Entry::from(raw[0].clone()))
        .expect("a billing plan");
    let mut conn = shop.conn().await;
    let reply: redis::Value = Crm
        .apply_call(Mode::Live, &[&plan], &[])
        .query_async(&mut conn)
        .await
        .expect("FCALL crm_apply");
    let redis::Value::Array(items) = reply else {
        panic!("{reply:?}");
    };
    assert_eq!(items.first(), Some(&redis::Value::Int(-3)), "{items:?}");
    let named: BTreeSet<String> = items[1..]
        .iter()
        .filter_map(|k| redis::from_redis_value_ref::<String>(k).ok())
        .collect();
    assert!(named.contains(&keys::crm_customer(ada.0)), "{named:?}");
    assert!(named.contains(&CrmSegment::Unbilled.key()), "{named:?}");
    let linked: Option<String> = conn
        .hget(keys::crm_billing_orders(), billing.0.to_string())
        .await
        .expect("HGET");
    assert_eq!(linked, None, "nothing was written");

    drain(&mut crm).await;
    let billed: Option<String> = conn
        .hget(keys::crm_customer(ada.0), "amount_billed")
        .await
        .expect("HGET");
    assert_eq!(billed.as_deref(), Some("250"));
}
