//! Exactly-once effect: delivering the same entries again (after a crash before the ack, a
//! reclaim, or an operator resetting a group) changes no state and writes no message again.

use crate::support::{
    assert_same_state, delivered_once_each, drain, dump, expected_messages, redeliver_everything,
    workload, Shop,
};
use ordershop_projections::{Crm, CrmMailer, EntityCache, MsgDelivery, ProjectionName, Replayable};
use ordershop_readmodel::keys;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redelivering_every_entry_changes_nothing_and_sends_nothing_again() {
    let shop = Shop::start().await;
    workload(&shop, 600, 3).await;
    let mut cache = shop.runner(EntityCache, "cache-1").await;
    let mut crm = shop.runner(Crm, "crm-1").await;
    let mut mailer = shop.runner(CrmMailer, "mailer-1").await;
    let mut msg = shop.runner(MsgDelivery, "msg-1").await;
    let first = drain(&mut cache).await;
    // Some are skipped already: with a backlog, an entity's update can be read in an earlier
    // batch than its creation, and then the (older) creation changes nothing.
    assert!(first.applied > 0, "{first:?}");
    drain(&mut crm).await;
    drain(&mut mailer).await;
    drain(&mut msg).await;

    let mut conn = shop.conn().await;
    let cache_state = dump(&mut conn, &EntityCache.state_patterns()).await;
    let crm_state = dump(&mut conn, &Crm.state_patterns()).await;
    let outbox = shop.xlen(&keys::outbox()).await;
    let sent = delivered_once_each(&mut conn).await;
    assert_eq!(sent, expected_messages(&shop).await);

    for projection in ProjectionName::ALL {
        redeliver_everything(&mut conn, projection).await;
    }
    // Other consumers, as after a restart under another name.
    let mut cache = shop.runner(EntityCache, "cache-2").await;
    let mut crm = shop.runner(Crm, "crm-2").await;
    let mut mailer = shop.runner(CrmMailer, "mailer-2").await;
    let mut msg = shop.runner(MsgDelivery, "msg-2").await;
    let again = drain(&mut cache).await;
    assert_eq!(again.applied, 0, "{again:?}");
    assert_eq!(again.skipped as usize, again.read);
    let again = drain(&mut crm).await;
    assert_eq!(again.applied, 0, "{again:?}");
    let again = drain(&mut mailer).await;
    assert_eq!(again.applied, 0, "{again:?}");
    let again = drain(&mut msg).await;
    assert_eq!(again.applied, 0, "no message delivered twice: {again:?}");

    assert_same_state(
        &dump(&mut conn, &EntityCache.state_patterns()).await,
        &cache_state,
    );
    assert_same_state(&dump(&mut conn, &Crm.state_patterns()).await, &crm_state);
    assert_eq!(
        shop.xlen(&keys::outbox()).await,
        outbox,
        "no second outbox entry"
    );
    assert_eq!(delivered_once_each(&mut conn).await, sent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_message_written_twice_to_the_outbox_is_delivered_once() {
    let shop = Shop::start().await;
    let mut conn = shop.conn().await;
    for _ in 0..2 {
        let _: String = redis::cmd("XADD")
            .arg(keys::outbox())
            .arg("*")
            .arg(&[
                ("msg_id", "direct-1"),
                ("to", "ada@example.com"),
                ("msg", "hello"),
                ("kind", "direct"),
            ])
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    let mut msg = shop.runner(MsgDelivery, "msg").await;
    let report = drain(&mut msg).await;
    assert_eq!((report.applied, report.skipped), (1, 1));
    let delivered = crate::support::delivered(&mut conn).await;
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0]["msg_id"], "direct-1");
    assert_eq!(delivered[0]["to"], "ada@example.com");
    assert_eq!(delivered[0]["kind"], "direct");
    assert!(delivered[0]["delivered_at"].parse::<u64>().unwrap() > 1_600_000_000_000);
}
