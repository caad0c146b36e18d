//! Rebuild: wiping a projection and replaying the log gives the live state byte for byte, a CRM
//! rebuild never writes a message again (nor loses one it had not written yet), and a rebuild
//! is safe while the projection's consumers run.

use crate::support::{
    assert_same_state, delivered_once_each, drain, dump, eventually, expected_messages, workload,
    Shop,
};
use ordershop_domain::EntityKind;
use ordershop_operations::{group_status, rebuild_projection, OperationError};
use ordershop_projections::{
    run_until_stopped, Crm, CrmMailer, EntityCache, MsgDelivery, ProjectionName, Replayable,
    RunnerOptions,
};
use ordershop_readmodel::keys;
use redis::AsyncCommands;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuilding_the_cache_gives_a_byte_identical_state() {
    let shop = Shop::start().await;
    workload(&shop, 800, 5).await;
    let mut cache = shop.runner(EntityCache, "cache").await;
    drain(&mut cache).await;
    let mut conn = shop.conn().await;
    let patterns = EntityCache.state_patterns();
    let live = dump(&mut conn, &patterns).await;

    // Damage it: a lost Hash, a stray id, a wrong version, a stray entity.
    let some_order: String = conn
        .srandmember(keys::entity_ids(EntityKind::Order))
        .await
        .unwrap();
    let _: () = conn
        .del(keys::entity(EntityKind::Order, some_order.parse().unwrap()))
        .await
        .unwrap();
    let _: () = conn
        .sadd(keys::entity_ids(EntityKind::Customer), "bogus")
        .await
        .unwrap();
    let _: () = conn
        .hset(
            keys::applied_versions("entity-cache", EntityKind::Order),
            &some_order,
            999,
        )
        .await
        .unwrap();
    let _: () = conn
        .hset(keys::entity(EntityKind::Product, Uuid::new_v4()), "id", "x")
        .await
        .unwrap();

    let mut seen: Vec<(u64, u64)> = Vec::new();
    let report = rebuild_projection(&shop.config, ProjectionName::EntityCache, &mut |d, t| {
        seen.push((d, t))
    })
    .await
    .expect("rebuild succeeds");
    assert_same_state(&dump(&mut conn, &patterns).await, &live);

    let events = shop.log_len().await;
    assert_eq!(report.replayed, events);
    assert_eq!(report.invalid, 0);
    assert!(report.wiped_keys > 0);
    assert!(
        seen.windows(2).all(|w| w[0].0 <= w[1].0),
        "progress never goes back"
    );
    assert!(seen.iter().all(|(d, t)| d <= t), "{seen:?}");
    assert_eq!(seen.last(), Some(&(events, events)));
    let text = report.to_string();
    assert!(
        text.starts_with("rebuilt entity-cache in ")
            && text.contains(&format!(": replayed {events} entries (the log up to ")),
        "{text}"
    );

    // The live consumer carries on from where it was.
    let id = shop.create_customer("Later").await;
    drain(&mut cache).await;
    let live: bool = conn
        .sismember(keys::entity_ids(EntityKind::Customer), id.to_string())
        .await
        .unwrap();
    assert!(live);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuilding_the_crm_gives_the_same_view_and_sends_no_message_again() {
    let shop = Shop::start().await;
    workload(&shop, 500, 6).await;
    let mut crm = shop.runner(Crm, "crm").await;
    let mut mailer = shop.runner(CrmMailer, "mailer").await;
    let mut msg = shop.runner(MsgDelivery, "msg").await;
    drain(&mut crm).await;
    drain(&mut mailer).await;
    drain(&mut msg).await;
    let mut conn = shop.conn().await;
    let patterns = Crm.state_patterns();
    let live = dump(&mut conn, &patterns).await;
    let outbox = shop.xlen(&keys::outbox()).await;
    let sent = delivered_once_each(&mut conn).await;
    assert_eq!(sent, expected_messages(&shop).await);

    rebuild_projection(&shop.config, ProjectionName::Crm, &mut |_, _| {})
        .await
        .expect("rebuild succeeds");
    assert_same_state(&dump(&mut conn, &patterns).await, &live);
    assert_eq!(shop.xlen(&keys::outbox()).await, outbox, "nothing written");

    drain(&mut crm).await;
    drain(&mut mailer).await;
    drain(&mut msg).await;
    assert_eq!(shop.xlen(&keys::outbox()).await, outbox);
    assert_eq!(
        delivered_once_each(&mut conn).await,
        sent,
        "nothing re-sent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crm_rebuilt_while_behind_still_sends_what_it_had_not_sent() {
    let shop = Shop::start().await;
    let ada = shop.create_customer("Ada").await;
    let mut crm = shop.runner(Crm, "crm").await;
    let mut mailer = shop.runner(CrmMailer, "mailer").await;
    let mut msg = shop.runner(MsgDelivery, "msg").await;
    drain(&mut crm).await;
    drain(&mut mailer).await;

    // Events the CRM has not seen when the rebuild runs.
    let bob = shop.create_customer("Bob").await;
    let widget = shop.create_product("Widget", 1250).await;
    shop.create_inventory(widget, 10).await;
    let order = shop.create_order(bob, vec![widget, widget]).await.unwrap();
    shop.create_billing(order).await;
    shop.create_order(ada, vec![widget]).await.unwrap();
    rebuild_projection(&shop.config, ProjectionName::Crm, &mut |_, _| {})
        .await
        .expect("rebuild succeeds");
    assert_eq!(
        shop.xlen(&keys::outbox()).await,
        1,
        "only Ada's welcome so far"
    );

    drain(&mut crm).await;
    drain(&mut mailer).await;
    drain(&mut msg).await;
    let mut conn = shop.conn().await;
    assert_eq!(
        delivered_once_each(&mut conn).await,
        expected_messages(&shop).await
    );
    let texts: Vec<String> = crate::support::delivered(&mut conn)
        .await
        .into_iter()
        .filter(|m| m["to"] == "bob@example.com")
        .map(|m| m["msg"].clone())
        .collect();
    assert!(texts.iter().any(|t| t.contains("2 x Widget")), "{texts:?}");
    assert!(
        texts.iter().any(|t| t.contains("please pay 25.00")),
        "{texts:?}"
    );
    assert!(
        texts.iter().any(|t| t.contains("payment of 25.00")),
        "{texts:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rebuilds_while_the_consumers_run_lose_nothing() {
    let shop = Shop::start().await;
    let stop = CancellationToken::new();
    let tasks: Vec<_> = ProjectionName::ALL
        .into_iter()
        .map(|projection| {
            tokio::spawn(run_until_stopped(
                shop.config.clone(),
                projection,
                RunnerOptions {
                    consumer: format!("{projection}-live"),
                    block: Duration::from_millis(100),
                    ..RunnerOptions::default()
                },
                stop.clone(),
                Default::default(),
            ))
        })
        .collect();
    let rebuilds = async {
        eventually("some history", Duration::from_secs(60), || async {
            shop.log_len().await > 300
        })
        .await;
        for projection in [ProjectionName::EntityCache, ProjectionName::Crm] {
            rebuild_projection(&shop.config, projection, &mut |_, _| {})
                .await
                .expect("rebuild succeeds");
        }
    };
    tokio::join!(workload(&shop, 1_500, 8), rebuilds);
    eventually(
        "every group to catch up",
        Duration::from_secs(120),
        || async {
            group_status(&shop.config)
                .await
                .expect("status")
                .iter()
                .all(|g| g.behind() == 0 && !g.paused)
        },
    )
    .await;
    stop.cancel();
    for task in tasks {
        task.await.expect("task ends").expect("stops cleanly");
    }

    let mut conn = shop.conn().await;
    let cache = dump(&mut conn, &EntityCache.state_patterns()).await;
    let crm = dump(&mut conn, &Crm.state_patterns()).await;
    for projection in [ProjectionName::EntityCache, ProjectionName::Crm] {
        rebuild_projection(&shop.config, projection, &mut |_, _| {})
            .await
            .expect("rebuild succeeds");
    }
    assert_same_state(
        &cache,
        &dump(&mut conn, &EntityCache.state_patterns()).await,
    );
    assert_same_state(&crm, &dump(&mut conn, &Crm.state_patterns()).await);
    assert_eq!(
        delivered_once_each(&mut conn).await,
        expected_messages(&shop).await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_pauses_live_batches_and_refuses_what_it_cannot_do() {
    let shop = Shop::start().await;
    let err = rebuild_projection(&shop.config, ProjectionName::MsgDelivery, &mut |_, _| {})
        .await
        .unwrap_err();
    assert!(
        matches!(err, OperationError::NotRebuildable("msg-service")),
        "{err}"
    );

    // Another rebuild holds the lease: a second one is refused, live batches are held.
    let mut conn = shop.conn().await;
    let _: () = conn
        .set(keys::projection_paused("entity-cache"), "someone-else")
        .await
        .unwrap();
    let err = rebuild_projection(&shop.config, ProjectionName::EntityCache, &mut |_, _| {})
        .await
        .unwrap_err();
    assert!(
        matches!(err, OperationError::RebuildRunning("entity-cache")),
        "{err}"
    );

    let id = shop.create_customer("Held").await;
    let mut cache = shop.runner(EntityCache, "cache").await;
    let report = cache.step().await.unwrap();
    assert!(
        report.paused && report.applied == 0 && report.acked == 0,
        "{report:?}"
    );
    let report = cache.step().await.unwrap();
    assert!(report.paused, "still held: {report:?}");

    let _: () = conn
        .del(keys::projection_paused("entity-cache"))
        .await
        .unwrap();
    let report = cache.step().await.unwrap();
    assert_eq!((report.applied, report.acked), (1, 1), "{report:?}");
    let cached: bool = conn
        .sismember(keys::entity_ids(EntityKind::Customer), id.to_string())
        .await
        .unwrap();
    assert!(cached);
}
