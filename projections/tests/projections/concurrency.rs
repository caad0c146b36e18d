//! Several instances of one projection share its group's work without applying anything twice
//! or out of order: two entity-cache consumers over 10,000 events end with the state one
//! consumer reaches alone.

use crate::support::{
    assert_same_state, drain, dump, eventually, reset_group, wipe, workload, Shop,
};
use ordershop_domain::EntityKind;
use ordershop_operations::group_status;
use ordershop_projections::{
    run_until_stopped, EntityCache, ProjectionName, Replayable, RunnerOptions,
};
use ordershop_readmodel::keys;
use redis::AsyncCommands;
use std::collections::BTreeSet;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_cache_instances_over_ten_thousand_events_end_as_one_instance_does() {
    let shop = Shop::start().await;
    let stop = CancellationToken::new();
    let instances: Vec<_> = ["cache-a", "cache-b"]
        .into_iter()
        .map(|name| {
            tokio::spawn(run_until_stopped(
                shop.config.clone(),
                ProjectionName::EntityCache,
                RunnerOptions {
                    consumer: name.to_owned(),
                    block: Duration::from_millis(100),
                    batch: 20,
                    ..RunnerOptions::default()
                },
                stop.clone(),
                Default::default(),
            ))
        })
        .collect();
    workload(&shop, 10_000, 21).await;
    eventually(
        "the cache to catch up",
        Duration::from_secs(120),
        || async { group_status(&shop.config).await.expect("status")[0].behind() == 0 },
    )
    .await;
    let status = group_status(&shop.config).await.expect("status");
    let names: BTreeSet<&str> = status[0]
        .consumers
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(
        names,
        BTreeSet::from(["cache-a", "cache-b"]),
        "both took part"
    );
    stop.cancel();
    for instance in instances {
        instance.await.expect("task ends").expect("stops cleanly");
    }

    let mut conn = shop.conn().await;
    let patterns = EntityCache.state_patterns();
    let shared = dump(&mut conn, &patterns).await;
    for kind in EntityKind::ALL {
        let cached: BTreeSet<String> = conn.smembers(keys::entity_ids(kind)).await.unwrap();
        assert_eq!(
            cached,
            shop.live_ids(kind).await,
            "{kind} ids match the log"
        );
    }

    // One instance alone, from scratch, over the same log.
    wipe(&mut conn, &patterns).await;
    reset_group(&mut conn, ProjectionName::EntityCache).await;
    let mut alone = shop.runner(EntityCache, "alone").await;
    drain(&mut alone).await;
    assert_same_state(&shared, &dump(&mut conn, &patterns).await);
}
