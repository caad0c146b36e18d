//! A consumer killed mid-burst: its pending entries are claimed by another instance after the
//! idle time, and the end state is the same as a rebuild from scratch, every message delivered
//! once.

use crate::support::{
    assert_same_state, delivered_once_each, dump, eventually, expected_messages, workload, Shop,
};
use ordershop_domain::EntityKind;
use ordershop_operations::{group_status, rebuild_projection};
use ordershop_projections::{
    run_until_stopped, Crm, EntityCache, ProjectionName, Replayable, RunnerOptions,
};
use ordershop_readmodel::keys;
use redis::AsyncCommands;
use std::collections::BTreeSet;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

fn options(consumer: &str, claim_idle: Duration) -> RunnerOptions {
    RunnerOptions {
        consumer: consumer.to_owned(),
        block: Duration::from_millis(100),
        batch: 50,
        claim_idle,
        max_deliveries: 5,
    }
}

/// Every group has read everything and acknowledged it.
async fn caught_up(shop: &Shop) -> bool {
    group_status(&shop.config)
        .await
        .expect("status")
        .iter()
        .all(|g| g.behind() == 0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_consumer_killed_mid_burst_loses_nothing_and_doubles_nothing() {
    let shop = Shop::start().await;
    let stop = CancellationToken::new();
    let spawn = |projection, consumer: &str, claim_idle| {
        tokio::spawn(run_until_stopped(
            shop.config.clone(),
            projection,
            options(consumer, claim_idle),
            stop.clone(),
            Default::default(),
        ))
    };
    let long = Duration::from_secs(3600);
    let cache_a = spawn(ProjectionName::EntityCache, "cache-a", long);
    let crm_a = spawn(ProjectionName::Crm, "crm-a", long);
    let mailer_a = spawn(ProjectionName::CrmMailer, "mailer-a", long);
    let msg_a = spawn(ProjectionName::MsgDelivery, "msg-a", long);

    let mut conn = shop.conn().await;
    let killer = async {
        let mut conn = conn.clone();
        eventually("orders to flow", Duration::from_secs(60), || {
            let mut conn = conn.clone();
            async move {
                conn.scard::<_, u64>(keys::entity_ids(EntityKind::Order))
                    .await
                    .unwrap_or(0)
                    >= 200
            }
        })
        .await;
        // Make sure the cache consumer dies holding entries: a (pretend) rebuild's pause makes
        // it hold its batch unacknowledged; kill it then. The others die wherever they are.
        let pause = keys::projection_paused("entity-cache");
        let _: () = conn.set(&pause, "crash-test").await.unwrap();
        eventually(
            "the cache consumer to hold a batch",
            Duration::from_secs(60),
            || async { group_status(&shop.config).await.expect("status")[0].pending > 0 },
        )
        .await;
        cache_a.abort();
        crm_a.abort();
        mailer_a.abort();
        msg_a.abort();
        let _: () = conn.del(&pause).await.unwrap();
        group_status(&shop.config).await.expect("status")
    };
    let (_, at_kill) = tokio::join!(workload(&shop, 4_000, 9), killer);
    assert!(at_kill[0].pending > 0, "{:?}", at_kill[0]);

    // A consumer that dies holding entries it never processed.
    let streams = ProjectionName::EntityCache.streams();
    let _: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg("entity-cache")
        .arg("ghost")
        .arg("COUNT")
        .arg(20)
        .arg("STREAMS")
        .arg(&streams)
        .arg(vec![">"; streams.len()])
        .query_async(&mut conn)
        .await
        .unwrap();
    let status = group_status(&shop.config).await.unwrap();
    assert!(
        status[0].pending > 0,
        "entries left pending: {:?}",
        status[0]
    );

    let short = Duration::from_millis(200);
    let cache_b = spawn(ProjectionName::EntityCache, "cache-b", short);
    let crm_b = spawn(ProjectionName::Crm, "crm-b", short);
    let mailer_b = spawn(ProjectionName::CrmMailer, "mailer-b", short);
    let msg_b = spawn(ProjectionName::MsgDelivery, "msg-b", short);
    eventually("every group to catch up", Duration::from_secs(120), || {
        caught_up(&shop)
    })
    .await;
    stop.cancel();
    for task in [cache_b, crm_b, mailer_b, msg_b] {
        task.await.expect("task ends").expect("stops cleanly");
    }

    // Same state as a rebuild from scratch.
    let live_cache = dump(&mut conn, &EntityCache.state_patterns()).await;
    let live_crm = dump(&mut conn, &Crm.state_patterns()).await;
    let outbox = shop.xlen(&keys::outbox()).await;
    for projection in [ProjectionName::EntityCache, ProjectionName::Crm] {
        rebuild_projection(&shop.config, projection, &mut |_, _| {})
            .await
            .expect("rebuild");
    }
    assert_same_state(
        &live_cache,
        &dump(&mut conn, &EntityCache.state_patterns()).await,
    );
    assert_same_state(&live_crm, &dump(&mut conn, &Crm.state_patterns()).await);
    assert_eq!(shop.xlen(&keys::outbox()).await, outbox);
    let live: BTreeSet<String> = conn
        .smembers(keys::entity_ids(EntityKind::Order))
        .await
        .unwrap();
    assert_eq!(live, shop.live_ids(EntityKind::Order).await);

    // Every message delivered exactly once.
    assert_eq!(
        delivered_once_each(&mut conn).await,
        expected_messages(&shop).await
    );
}
