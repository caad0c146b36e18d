//! A runner survives Redis going away and coming back: it logs, backs off, reconnects, recreates
//! what a Redis restarted without data lacks (Functions, groups), and loses nothing.

use crate::support::{eventually, Shop};
use ordershop_domain::EntityKind;
use ordershop_eventstore::EventStore;
use ordershop_projections::{run_until_stopped, ProjectionName, RunnerOptions};
use ordershop_readmodel::keys;
use ordershop_testkit::RedisOptions;
use redis::AsyncCommands;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

async fn cached(shop: &Shop, id: uuid::Uuid) -> bool {
    let Ok(mut conn) = ordershop_redis::RedisConnection::connect(&shop.config).await else {
        return false;
    };
    conn.sismember(keys::entity_ids(EntityKind::Customer), id.to_string())
        .await
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_survives_redis_restarting() {
    let mut shop = Shop::start_with(RedisOptions {
        appendonly: true,
        appendfsync: "always",
        ..RedisOptions::default()
    })
    .await;
    let stop = CancellationToken::new();
    let runner = tokio::spawn(run_until_stopped(
        shop.config.clone(),
        ProjectionName::EntityCache,
        RunnerOptions {
            consumer: "cache".into(),
            block: Duration::from_millis(100),
            ..RunnerOptions::default()
        },
        stop.clone(),
        Default::default(),
    ));
    let before = shop.create_customer("Before").await;
    eventually("the first customer cached", Duration::from_secs(20), || {
        cached(&shop, before.0)
    })
    .await;

    // With its data kept (AOF): the runner carries on.
    shop.server.restart();
    shop.store = EventStore::connect(&shop.config).await.expect("reconnects");
    let after = shop.create_customer("After").await;
    eventually(
        "a customer created after the restart",
        Duration::from_secs(30),
        || cached(&shop, after.0),
    )
    .await;

    // Without its data (a fresh server): Functions and groups are recreated.
    shop.server.kill();
    let _ = std::fs::remove_dir_all(shop.server.data_dir().join("appendonlydir"));
    shop.server.restart();
    shop.store = EventStore::connect(&shop.config).await.expect("reconnects");
    let fresh = shop.create_customer("Fresh").await;
    eventually(
        "a customer created on an empty server",
        Duration::from_secs(30),
        || cached(&shop, fresh.0),
    )
    .await;

    stop.cancel();
    tokio::time::timeout(Duration::from_secs(10), runner)
        .await
        .expect("stops in time")
        .expect("task ends")
        .expect("stops cleanly");
}
