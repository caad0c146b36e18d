//! Per-entity order: an entity's created/updated/deleted events live in three streams, yet the
//! projections end as if they had applied them in ID order, whatever order the streams are read
//! in and whatever the batch size.

use crate::support::{
    assert_same_state, drain, dump, reset_group, shuffled, step_round_robin, step_stream_by_stream,
    wipe, workload, KeyDump, Shop,
};
use ordershop_domain::{Action, EntityKind};
use ordershop_eventstore::Stream;
use ordershop_operations::rebuild_projection;
use ordershop_projections::{
    Crm, CrmMailer, EntityCache, Projection, ProjectionName, Replayable, RunnerOptions,
};
use ordershop_readmodel::keys::{self, CrmSegment};
use redis::AsyncCommands;
use std::collections::{BTreeMap, BTreeSet};

fn key(kind: EntityKind, action: Action) -> String {
    Stream::new(kind, action).key()
}

fn batch_of_one(shop: &Shop, consumer: &str) -> RunnerOptions {
    RunnerOptions {
        batch: 1,
        ..shop.options(consumer)
    }
}

async fn rebuilt_state<P: Replayable>(shop: &Shop, projection: P) -> KeyDump {
    let which: ProjectionName = projection.name().parse().expect("known projection");
    rebuild_projection(&shop.config, which, &mut |_, _| {})
        .await
        .expect("rebuild succeeds");
    dump(&mut shop.conn().await, &projection.state_patterns()).await
}

/// A life of every kind: updates, deletes, a re-created customer, billings replaced.
async fn eventful_history(shop: &Shop) -> History {
    let ada = shop.create_customer("Ada").await;
    shop.update_customer(ada, "Adele").await;
    shop.delete_customer(ada).await;
    shop.recreate_customer(ada, "Ada").await;
    shop.update_customer(ada, "Ada Lovelace").await;
    let bob = shop.create_customer("Bob").await;
    shop.update_customer(bob, "Bobby").await;
    shop.delete_customer(bob).await;

    let widget = shop.create_product("Widget", 250).await;
    shop.update_product(widget, "Widget", 300).await;
    let gadget = shop.create_product("Gadget", 1000).await;
    shop.create_inventory(widget, 100).await;
    shop.create_inventory(gadget, 100).await;

    let billed = shop
        .create_order(ada, vec![widget, widget, gadget])
        .await
        .expect("order placed");
    assert!(shop.update_order(billed, vec![widget]).await);
    let first_billing = shop.create_billing(billed).await;
    shop.delete_billing(first_billing).await;
    let billing = shop.create_billing(billed).await;
    shop.update_billing(billing, true).await;

    let cancelled = shop.create_order(ada, vec![gadget]).await.expect("placed");
    shop.delete_order(cancelled).await;
    let open = shop
        .create_order(ada, vec![widget, gadget])
        .await
        .expect("placed");
    shop.delete_product(gadget).await;
    History {
        ada: ada.to_string(),
        bob: bob.to_string(),
        widget: widget.to_string(),
        billed: billed.to_string(),
        open: open.to_string(),
        billing: billing.to_string(),
    }
}

struct History {
    ada: String,
    bob: String,
    widget: String,
    billed: String,
    open: String,
    billing: String,
}

fn set(items: &[&String]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_ends_as_in_id_order_whatever_order_the_streams_are_read_in() {
    let shop = Shop::start().await;
    let h = eventful_history(&shop).await;
    let mut conn = shop.conn().await;
    let patterns = EntityCache.state_patterns();
    let reference = rebuilt_state(&shop, EntityCache).await;

    // What the gateway will see, spelled out.
    let ids = |kind| {
        let mut conn = conn.clone();
        async move {
            let ids: BTreeSet<String> = conn.smembers(keys::entity_ids(kind)).await.unwrap();
            ids
        }
    };
    assert_eq!(ids(EntityKind::Customer).await, set(&[&h.ada]));
    assert_eq!(ids(EntityKind::Product).await, set(&[&h.widget]));
    assert_eq!(ids(EntityKind::Order).await, set(&[&h.billed, &h.open]));
    assert_eq!(ids(EntityKind::Billing).await, set(&[&h.billing]));
    let ada: BTreeMap<String, String> = conn
        .hgetall(keys::entity(EntityKind::Customer, h.ada.parse().unwrap()))
        .await
        .unwrap();
    assert_eq!(ada["name"], "Ada Lovelace");
    let products: Vec<String> = conn
        .lrange(keys::order_product_ids(h.billed.parse().unwrap()), 0, -1)
        .await
        .unwrap();
    assert_eq!(products, vec![h.widget.clone()]);
    let unbilled: BTreeSet<String> = conn.smembers(keys::orders_unbilled()).await.unwrap();
    assert_eq!(unbilled, set(&[&h.open]));
    let billed: BTreeSet<String> = conn.smembers(keys::orders_billed()).await.unwrap();
    assert_eq!(billed, set(&[&h.billed]));
    let versions: BTreeMap<String, u64> = conn
        .hgetall(keys::applied_versions("entity-cache", EntityKind::Customer))
        .await
        .unwrap();
    assert_eq!(versions[&h.ada], 5, "versions are kept, deletes included");
    assert_eq!(versions[&h.bob], 3);

    let streams = EntityCache.streams();
    let mut reversed = streams.clone();
    reversed.reverse();
    let deletes_first: Vec<String> = [Action::Deleted, Action::Updated, Action::Created]
        .into_iter()
        .flat_map(|a| EntityKind::ALL.map(|k| key(k, a)))
        .collect();
    let orders: [(&str, Vec<String>, bool); 4] = [
        ("reversed, stream by stream", reversed.clone(), false),
        ("deletes first, stream by stream", deletes_first, false),
        ("reversed, round robin", reversed, true),
        ("shuffled, round robin", shuffled(&streams, 7), true),
    ];
    for (what, order, round_robin) in orders {
        wipe(&mut conn, &patterns).await;
        reset_group(&mut conn, ProjectionName::EntityCache).await;
        let mut runner = shop
            .runner_with(EntityCache, batch_of_one(&shop, what))
            .await;
        if round_robin {
            step_round_robin(&mut runner, &order).await;
        } else {
            step_stream_by_stream(&mut runner, &order).await;
        }
        assert_eq!(drain(&mut runner).await.read, 0, "{what}: all read");
        let state = dump(&mut conn, &patterns).await;
        assert_same_state(&state, &reference);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_read_after_its_delete_never_resurrects_the_entity() {
    let shop = Shop::start().await;
    let id = shop.create_customer("Ghost").await;
    shop.update_customer(id, "Ghostly").await;
    shop.delete_customer(id).await;

    let customer = |a| key(EntityKind::Customer, a);
    let mut cache = shop
        .runner_with(EntityCache, batch_of_one(&shop, "cache"))
        .await;
    let mut crm = shop.runner_with(Crm, batch_of_one(&shop, "crm")).await;
    let mut mailer = shop
        .runner_with(CrmMailer, batch_of_one(&shop, "mailer"))
        .await;
    let order = [
        customer(Action::Deleted),
        customer(Action::Updated),
        customer(Action::Created),
    ];
    step_stream_by_stream(&mut cache, &order).await;
    step_stream_by_stream(&mut crm, &order).await;
    step_stream_by_stream(&mut mailer, &order).await;

    let mut conn = shop.conn().await;
    let live: BTreeSet<String> = conn
        .smembers(keys::entity_ids(EntityKind::Customer))
        .await
        .unwrap();
    assert!(live.is_empty(), "deleted customer came back: {live:?}");
    let exists: bool = conn
        .exists(keys::entity(EntityKind::Customer, id.0))
        .await
        .unwrap();
    assert!(!exists);
    let version: u64 = conn
        .hget(
            keys::applied_versions("entity-cache", EntityKind::Customer),
            id.to_string(),
        )
        .await
        .unwrap();
    assert_eq!(version, 3);

    let profile: BTreeMap<String, String> = conn.hgetall(keys::crm_customer(id.0)).await.unwrap();
    assert_eq!(profile["status"], "deleted");
    assert_eq!(profile["name"], "Ghostly");
    let deleted: BTreeSet<String> = conn.smembers(CrmSegment::Deleted.key()).await.unwrap();
    let active: BTreeSet<String> = conn.smembers(CrmSegment::Active.key()).await.unwrap();
    assert!(deleted.contains(&id.to_string()) && active.is_empty());
    // Messages are per event: the welcome still goes out although `created` came last.
    let outbox = crate::support::stream_entries(&mut conn, &keys::outbox()).await;
    let kinds: BTreeSet<&str> = outbox.iter().map(|m| m["kind"].as_str()).collect();
    assert_eq!(kinds, BTreeSet::from(["goodbye", "welcome"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn billings_read_before_their_orders_keep_the_billing_indexes_right() {
    let shop = Shop::start().await;
    let buyer = shop.create_customer("Buyer").await;
    let widget = shop.create_product("Widget", 100).await;
    shop.create_inventory(widget, 100).await;
    let rebilled = shop.create_order(buyer, vec![widget]).await.unwrap();
    let first = shop.create_billing(rebilled).await;
    shop.delete_billing(first).await;
    shop.create_billing(rebilled).await;
    let unbilled = shop.create_order(buyer, vec![widget]).await.unwrap();
    let dropped = shop.create_order(buyer, vec![widget]).await.unwrap();
    let once_billed = shop.create_order(buyer, vec![widget]).await.unwrap();
    let b = shop.create_billing(once_billed).await;
    shop.delete_billing(b).await;
    let dropped_billing = shop.create_billing(dropped).await;
    shop.delete_billing(dropped_billing).await;
    shop.delete_order(dropped).await;

    let billing_first: Vec<String> = [EntityKind::Billing, EntityKind::Order]
        .into_iter()
        .flat_map(|k| [Action::Deleted, Action::Created, Action::Updated].map(|a| key(k, a)))
        .collect();
    let mut conn = shop.conn().await;
    for (what, round_robin) in [("stream by stream", false), ("round robin", true)] {
        wipe(&mut conn, &EntityCache.state_patterns()).await;
        reset_group(&mut conn, ProjectionName::EntityCache).await;
        let mut runner = shop
            .runner_with(EntityCache, batch_of_one(&shop, what))
            .await;
        if round_robin {
            step_round_robin(&mut runner, &billing_first).await;
        } else {
            step_stream_by_stream(&mut runner, &billing_first).await;
        }
        drain(&mut runner).await;
        let unbilled_set: BTreeSet<String> = conn.smembers(keys::orders_unbilled()).await.unwrap();
        let billed_set: BTreeSet<String> = conn.smembers(keys::orders_billed()).await.unwrap();
        assert_eq!(
            unbilled_set,
            set(&[&unbilled.to_string(), &once_billed.to_string()]),
            "{what}"
        );
        // The dropped order's billing was deleted before it: neither billed nor unbilled.
        assert_eq!(billed_set, set(&[&rebilled.to_string()]), "{what}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_crm_view_is_the_same_whatever_order_the_streams_are_read_in() {
    let shop = Shop::start().await;
    workload(&shop, 400, 11).await;
    let mut conn = shop.conn().await;
    let mut reversed = Crm.streams();
    reversed.reverse();
    let mut runner = shop.runner_with(Crm, batch_of_one(&shop, "reversed")).await;
    step_round_robin(&mut runner, &reversed).await;
    drain(&mut runner).await;
    let mut mailer_streams = CrmMailer.streams();
    mailer_streams.reverse();
    let mut mailer = shop
        .runner_with(CrmMailer, batch_of_one(&shop, "mailer-reversed"))
        .await;
    step_round_robin(&mut mailer, &mailer_streams).await;
    drain(&mut mailer).await;
    let live = dump(&mut conn, &Crm.state_patterns()).await;
    let outbox_before = shop.xlen(&keys::outbox()).await;

    let rebuilt = rebuilt_state(&shop, Crm).await;
    assert_same_state(&live, &rebuilt);
    assert_eq!(shop.xlen(&keys::outbox()).await, outbox_before);

    // Every message went out although orders and billings were read before their customers.
    let mut ids = BTreeSet::new();
    for m in crate::support::stream_entries(&mut conn, &keys::outbox()).await {
        assert!(
            ids.insert(m["msg_id"].clone()),
            "{} written twice",
            m["msg_id"]
        );
    }
    let expected: u64 = crate::support::expected_messages(&shop)
        .await
        .values()
        .sum();
    assert_eq!(ids.len() as u64, expected);
    let waiting = dump(
        &mut conn,
        &[
            keys::prefix_pattern(&keys::crm_waiting_customer_prefix()),
            keys::prefix_pattern(&keys::crm_waiting_order_prefix()),
        ],
    )
    .await;
    assert!(waiting.is_empty(), "messages still waiting: {waiting:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_writes_each_entity_once_and_counts_as_one_by_one_would() {
    let shop = Shop::start().await;
    workload(&shop, 600, 5).await;
    let mut conn = shop.conn().await;
    let patterns = EntityCache.state_patterns();
    // Updated streams first: a batch then holds several versions of one entity, newest last,
    // and the creations arrive after them (to be skipped).
    let order: Vec<String> = [Action::Updated, Action::Deleted, Action::Created]
        .into_iter()
        .flat_map(|a| EntityKind::ALL.map(|k| key(k, a)))
        .collect();
    async fn feed(
        runner: &mut ordershop_projections::Runner<EntityCache>,
        order: &[String],
    ) -> (usize, u64, u64) {
        let (mut read, mut applied, mut skipped) = (0, 0, 0);
        for stream in order {
            loop {
                let step = runner
                    .step_only(std::slice::from_ref(stream))
                    .await
                    .expect("step succeeds");
                if step.read == 0 {
                    break;
                }
                (read, applied, skipped) = (
                    read + step.read,
                    applied + step.applied,
                    skipped + step.skipped,
                );
            }
        }
        (read, applied, skipped)
    }

    let mut one_by_one = shop
        .runner_with(EntityCache, batch_of_one(&shop, "one"))
        .await;
    let alone = feed(&mut one_by_one, &order).await;
    let reference = dump(&mut conn, &patterns).await;
    assert!(alone.2 > 0, "some events were skipped: {alone:?}");

    wipe(&mut conn, &patterns).await;
    reset_group(&mut conn, ProjectionName::EntityCache).await;
    let options = RunnerOptions {
        batch: 1_000,
        ..shop.options("batched")
    };
    let mut batched = shop.runner_with(EntityCache, options).await;
    let together = feed(&mut batched, &order).await;
    assert_same_state(&dump(&mut conn, &patterns).await, &reference);
    assert_eq!(together, alone);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_served_from_the_cached_documents_are_the_lists_of_the_entities() {
    use ordershop_readmodel::cache::entity_json;
    use ordershop_readmodel::CacheReader;
    let shop = Shop::start().await;
    workload(&shop, 400, 13).await;
    let mut cache = shop.runner(EntityCache, "cache").await;
    drain(&mut cache).await;
    let mut conn = shop.conn().await;
    let reader = CacheReader::new(conn.clone());
    let parse = |text: String| -> serde_json::Value {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON: {e}: {text}"))
    };
    let entities = |list: Vec<ordershop_domain::Entity>| -> serde_json::Value {
        list.iter().map(entity_json).collect()
    };

    for kind in EntityKind::ALL {
        let expected = entities(reader.list(kind).await.unwrap());
        assert!(expected.as_array().is_some_and(|a| !a.is_empty()), "{kind}");
        assert_eq!(
            parse(reader.list_json(kind).await.unwrap()),
            expected,
            "{kind}"
        );
    }
    let unbilled = entities(reader.unbilled_orders().await.unwrap());
    assert_eq!(
        parse(reader.unbilled_orders_json().await.unwrap()),
        unbilled
    );

    // A cache without its documents (built before they existed) is read entity by entity.
    for kind in EntityKind::ALL {
        let _: () = conn.del(keys::entity_documents(kind)).await.unwrap();
        let expected = entities(reader.list(kind).await.unwrap());
        assert_eq!(
            parse(reader.list_json(kind).await.unwrap()),
            expected,
            "{kind}"
        );
    }
    assert_eq!(
        parse(reader.unbilled_orders_json().await.unwrap()),
        unbilled
    );
}
