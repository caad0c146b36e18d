//! A poison entry (not a valid event) is retried, then moved to the projection's dead-letter
//! stream after `max_deliveries`; the events around it are applied all the same.

use crate::support::{stream_entries, Shop};
use ordershop_domain::{Action, EntityKind};
use ordershop_eventstore::{EntryId, Stream};
use ordershop_operations::group_status;
use ordershop_projections::{Crm, EntityCache, RunnerOptions};
use ordershop_readmodel::keys;
use redis::AsyncCommands;
use std::collections::BTreeSet;
use std::time::Duration;
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_entry_is_dead_lettered_and_the_events_after_it_applied() {
    let shop = Shop::start().await;
    let before = shop.create_customer("Before").await;

    // A writer that follows the ID protocol but writes garbage JSON.
    let mut conn = shop.conn().await;
    let last = shop.store.last_issued().await.unwrap();
    let poison_id = EntryId::new(last.ms, last.seq + 1);
    let stream = Stream::new(EntityKind::Customer, Action::Created).key();
    let _: String = redis::cmd("XADD")
        .arg(&stream)
        .arg(poison_id.to_string())
        .arg("event_id")
        .arg(Uuid::new_v4().to_string())
        .arg("entity")
        .arg("{not json")
        .arg("version")
        .arg(1)
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: () = conn
        .set(ordershop_eventstore::keys::clock(), poison_id.to_string())
        .await
        .unwrap();
    let after = shop.create_customer("After").await;

    // Reclaim as soon as an entry failed, so each step is one more delivery.
    let options = |name: &str| RunnerOptions {
        claim_idle: Duration::ZERO,
        max_deliveries: 3,
        ..shop.options(name)
    };
    let mut cache = shop.runner_with(EntityCache, options("cache")).await;
    let mut crm = shop.runner_with(Crm, options("crm")).await;
    let mut dead = 0;
    for _ in 0..10 {
        dead += cache.step().await.unwrap().dead_lettered;
        crm.step().await.unwrap();
    }
    assert_eq!(dead, 1);

    let live: BTreeSet<String> = conn
        .smembers(keys::entity_ids(EntityKind::Customer))
        .await
        .unwrap();
    assert_eq!(
        live,
        BTreeSet::from([before.to_string(), after.to_string()])
    );

    for group in ["entity-cache", "crm"] {
        let letters = stream_entries(&mut conn, &keys::dead_letters(group)).await;
        assert_eq!(letters.len(), 1, "{group}: {letters:?}");
        let letter = &letters[0];
        assert_eq!(letter["source_stream"], stream);
        assert_eq!(letter["source_id"], poison_id.to_string());
        assert_eq!(letter["entity"], "{not json");
        assert!(letter["reason"].contains("entity"), "{}", letter["reason"]);
        assert_eq!(letter["deliveries"], "3");
    }
    let status = group_status(&shop.config).await.unwrap();
    for g in &status[..2] {
        assert_eq!(g.pending, 0, "{g:?}");
        assert_eq!(g.lag, 0, "{g:?}");
        assert_eq!(g.dead_lettered, 1, "{g:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_failing_on_one_event_still_applies_the_others() {
    let shop = Shop::start().await;
    let first = shop.create_customer("First").await;
    let broken = shop.create_customer("Broken").await;
    let last = shop.create_customer("Last").await;
    // Someone wrote a String where the cache keeps this customer's Hash: its HSET fails.
    let mut conn = shop.conn().await;
    let _: () = conn
        .set(keys::entity(EntityKind::Customer, broken.0), "garbage")
        .await
        .unwrap();

    let mut cache = shop
        .runner_with(
            EntityCache,
            RunnerOptions {
                claim_idle: Duration::ZERO,
                max_deliveries: 2,
                ..shop.options("cache")
            },
        )
        .await;
    // The batch fails as a whole; retried one by one, the first event (applied by the failed
    // call before it failed) is skipped, the last one applied, the broken one left pending.
    let report = cache.step().await.unwrap();
    assert_eq!((report.acked, report.failed), (2, 1), "{report:?}");
    let report = cache.step().await.unwrap();
    assert_eq!(report.dead_lettered, 1, "{report:?}");

    let live: BTreeSet<String> = conn
        .smembers(keys::entity_ids(EntityKind::Customer))
        .await
        .unwrap();
    assert_eq!(live, BTreeSet::from([first.to_string(), last.to_string()]));
    let letters = stream_entries(&mut conn, &keys::dead_letters("entity-cache")).await;
    assert!(letters[0]["reason"].contains("WRONGTYPE"), "{letters:?}");
    // The failed event was not marked applied: once the key is fixed, a rebuild restores it.
    let version: Option<u64> = conn
        .hget(
            keys::applied_versions("entity-cache", EntityKind::Customer),
            broken.to_string(),
        )
        .await
        .unwrap();
    assert_eq!(version, None);
}
