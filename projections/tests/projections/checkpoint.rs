//! A consumer group that goes missing — a failover to a replica that never received it, or
//! `XGROUP DESTROY` — is created again from the group's durable checkpoint: what it had not
//! acknowledged is read again, what it had is not, and nothing is skipped (never from `$`).

use crate::support::{drain, Shop};
use ordershop_domain::EntityKind;
use ordershop_eventstore::{keys, Stream};
use ordershop_projections::{EntityCache, ProjectionName};
use redis::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_group_starts_again_from_its_checkpoint() {
    let shop = Shop::start().await;
    let group = ProjectionName::EntityCache.name();
    let created = Stream::new(EntityKind::Customer, ordershop_domain::Action::Created).key();
    let mut runner = shop.runner(EntityCache, "cache-1").await;
    for i in 0..20 {
        shop.create_customer(&format!("Early {i}")).await;
    }
    assert_eq!(drain(&mut runner).await.applied, 20);

    // Five more; another consumer reads three of them and dies before acknowledging them.
    for i in 0..5 {
        shop.create_customer(&format!("Late {i}")).await;
    }
    let mut conn = shop.conn().await;
    let _: Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg(group)
        .arg("ghost")
        .arg("COUNT")
        .arg(3)
        .arg("STREAMS")
        .arg(&created)
        .arg(">")
        .query_async(&mut conn)
        .await
        .expect("XREADGROUP");
    runner.record_checkpoint().await.expect("checkpoint");
    let recorded: Option<String> = redis::cmd("HGET")
        .arg(keys::group_checkpoint(group))
        .arg(&created)
        .query_async(&mut conn)
        .await
        .expect("HGET");
    assert!(recorded.is_some(), "a checkpoint for {created}");

    // The group vanishes from every stream.
    for stream in Stream::all() {
        let _: Value = redis::cmd("XGROUP")
            .arg("DESTROY")
            .arg(stream.key())
            .arg(group)
            .query_async(&mut conn)
            .await
            .expect("XGROUP DESTROY");
    }
    assert!(
        runner.step().await.is_err(),
        "the step meets the missing group"
    );
    let after = drain(&mut runner).await;
    assert_eq!(
        after.read, 5,
        "exactly the five entries after the checkpoint are read again: the ghost's three \
         unacknowledged ones and the two nobody had read"
    );
    assert_eq!(shop.live_ids(EntityKind::Customer).await.len(), 25);
}
