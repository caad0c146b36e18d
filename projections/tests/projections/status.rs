//! `status`: per group, consumers, pending entries, lag, last delivered ID, dead letters.

use crate::support::{drain, Shop};
use ordershop_operations::group_status;
use ordershop_projections::{EntityCache, ProjectionName};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_consumers_pending_entries_and_lag() {
    let shop = Shop::start().await;
    for i in 0..4 {
        shop.create_customer(&format!("C{i}")).await;
    }
    // No consumer yet: no group, everything is lag.
    let status = group_status(&shop.config).await.unwrap();
    let names: Vec<ProjectionName> = status.iter().map(|g| g.projection).collect();
    assert_eq!(names, ProjectionName::ALL);
    let cache = &status[0];
    assert_eq!(cache.group, "entity-cache");
    assert_eq!(cache.streams, 15);
    assert_eq!(cache.streams_without_group, 15);
    assert_eq!(cache.lag, 4);
    assert_eq!(cache.last_delivered, None);
    assert!(cache.is_behind(3) && !cache.is_behind(4));

    // A consumer that read a batch of 2 and died: 2 pending, 2 still lag.
    let mut dying = shop
        .runner_with(
            EntityCache,
            ordershop_projections::RunnerOptions {
                batch: 2,
                ..shop.options("dying")
            },
        )
        .await;
    let mut conn = shop.conn().await;
    let streams = ProjectionName::EntityCache.streams();
    let _: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg("entity-cache")
        .arg("dying")
        .arg("COUNT")
        .arg(2)
        .arg("STREAMS")
        .arg(&streams)
        .arg(vec![">"; streams.len()])
        .query_async(&mut conn)
        .await
        .unwrap();
    let status = group_status(&shop.config).await.unwrap();
    let cache = &status[0];
    assert_eq!(cache.streams_without_group, 0);
    assert_eq!(cache.pending, 2);
    assert_eq!(cache.lag, 2);
    assert_eq!(cache.behind(), 4);
    assert_eq!(cache.consumers.len(), 1);
    assert_eq!(cache.consumers[0].name, "dying");
    assert_eq!(cache.consumers[0].pending, 2);
    assert!(cache.last_delivered.is_some());
    assert_eq!(cache.dead_lettered, 0);
    assert!(!cache.paused);

    // It comes back under the same name: its own pending entries first, then the rest.
    let first = dying.step().await.unwrap();
    assert_eq!(first.source, ordershop_projections::Source::Pending);
    assert_eq!(first.applied, 2);
    drain(&mut dying).await;
    let status = group_status(&shop.config).await.unwrap();
    assert_eq!(status[0].behind(), 0);
    assert_eq!(
        status[0].last_delivered,
        Some(shop.store.last_issued().await.unwrap())
    );
    assert!(status[0].consumers[0].idle_ms < 60_000);
    // What `ordershop status --json` prints.
    let json = serde_json::to_value(&status[0]).unwrap();
    assert_eq!(json["projection"], "entity-cache");
    assert_eq!(json["lag"], 0);
    assert_eq!(
        json["last_delivered"],
        shop.store.last_issued().await.unwrap().to_string()
    );
}

/// After a restart from a rewritten AOF, Redis's per-group read counter can be wrong, and its
/// `lag` with it: a group that has read every entry reports entries behind for good. Status
/// must not believe it. `XGROUP SETID ... ENTRIESREAD` puts a group in that state directly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_that_read_everything_is_not_behind_whatever_redis_counts() {
    let shop = Shop::start().await;
    for i in 0..5 {
        shop.create_customer(&format!("C{i}")).await;
    }
    let mut cache = shop.runner(EntityCache, "live").await;
    drain(&mut cache).await;
    let mut conn = shop.conn().await;
    let stream = "events:customer_created";
    let _: () = redis::cmd("XGROUP")
        .arg("SETID")
        .arg(stream)
        .arg("entity-cache")
        .arg("$")
        .arg("ENTRIESREAD")
        .arg(0)
        .query_async(&mut conn)
        .await
        .unwrap();
    let status = group_status(&shop.config).await.unwrap();
    assert_eq!(status[0].lag, 0, "{:?}", status[0]);

    // Two more customers, not read yet: exactly 2 behind, counted, not taken from Redis.
    shop.create_customer("C5").await;
    shop.create_customer("C6").await;
    let status = group_status(&shop.config).await.unwrap();
    assert_eq!(status[0].lag, 2, "{:?}", status[0]);
}
