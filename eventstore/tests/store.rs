//! The event store against a real, private redis-server.

use futures::future::join_all;
use ordershop_domain::decide::{self, OrderContext, OrderDraft};
use ordershop_domain::{
    Action, Change, Customer, CustomerId, Email, EntityKind, Head, Inventory, InventoryId, Money,
    Name, OrderId, Product, ProductId, Quantity,
};
use ordershop_eventstore::{Append, AppendError, EntryId, EventStore, Stream, UniqueIndex};
use ordershop_redis::RedisConfig;
use ordershop_testkit::RedisServer;
use std::collections::{BTreeMap, HashMap};
use std::time::{SystemTime, UNIX_EPOCH};
use uuid::Uuid;

async fn store(server: &RedisServer) -> EventStore {
    let config = RedisConfig::new(server.url()).expect("valid url");
    EventStore::connect(&config).await.expect("store connects")
}

fn customer(name: &str) -> Customer {
    Customer {
        id: CustomerId::new(),
        name: Name::parse("name", name).unwrap(),
        email: Email::parse(&format!("{name}@example.com")).unwrap(),
    }
}

fn product(price: u64) -> Product {
    Product {
        id: ProductId::new(),
        name: Name::parse("name", "widget").unwrap(),
        price: Money::from_minor(price).expect("an amount"),
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

async fn xlen_all(store: &EventStore) -> BTreeMap<String, u64> {
    let mut conn = store.connection();
    let mut lens = BTreeMap::new();
    for stream in Stream::all() {
        let len: u64 = redis::cmd("XLEN")
            .arg(stream.key())
            .query_async(&mut conn)
            .await
            .unwrap();
        lens.insert(stream.key(), len);
    }
    lens
}

/// A writer in another OS process: this test binary, re-run with the server's URL in the
/// environment, appends `CHILD_EVENTS` events and prints the IDs it was given.
const CHILD_URL_VAR: &str = "ORDERSHOP_TEST_CHILD_WRITER_URL";
const CHILD_OUT_VAR: &str = "ORDERSHOP_TEST_CHILD_WRITER_OUT";
const CHILD_EVENTS: usize = 4_000;
const TASKS: usize = 8;
const EVENTS_PER_TASK: usize = 2_000;

/// One event of writer `writer`, number `n`: the name records who wrote it and when.
fn writer_change(writer: usize, n: usize) -> Change {
    let tag = format!("w{writer}n{n}");
    match n % 3 {
        0 => Change::created(customer(&tag)),
        1 => Change::created(Product {
            name: Name::parse("name", &tag).unwrap(),
            ..product(100)
        }),
        _ => Change::created(Inventory {
            id: InventoryId::new(),
            product_id: ProductId::new(),
            amount: Quantity::new(n as u32).expect("a quantity"),
        }),
    }
}

async fn write_events(store: EventStore, writer: usize, count: usize) -> Vec<EntryId> {
    let mut ids = Vec::with_capacity(count);
    for n in 0..count {
        let appended = store
            .append_guarded(&Append::new().change(writer_change(writer, n)))
            .await
            .unwrap_or_else(|e| panic!("writer {writer} event {n}: {e}"));
        ids.push(appended[0].entry_id);
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_writer() {
    // Only does something when run as the second process of the concurrency test.
    let Ok(url) = std::env::var(CHILD_URL_VAR) else {
        return;
    };
    let store = EventStore::connect(&RedisConfig::new(url).unwrap())
        .await
        .unwrap();
    let ids = write_events(store, 99, CHILD_EVENTS).await;
    let lines: Vec<String> = ids.iter().map(EntryId::to_string).collect();
    let out = std::env::var(CHILD_OUT_VAR).expect("output file named");
    std::fs::write(out, lines.join("\n")).expect("child writes its IDs");
}

fn entity_tag(change: &Change) -> String {
    match &change.entity {
        ordershop_domain::Entity::Customer(c) => c.name.as_str().to_owned(),
        ordershop_domain::Entity::Product(p) => p.name.as_str().to_owned(),
        ordershop_domain::Entity::Inventory(_) => String::new(),
        other => panic!("unexpected entity {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ids_are_strictly_increasing_across_streams_tasks_and_processes() {
    let server = RedisServer::start();
    let started_ms = now_ms();

    // Given a second OS process appending at the same time...
    let exe = std::env::current_exe().unwrap();
    let out = server.data_dir().join("child-ids.txt");
    let child = tokio::process::Command::new(exe)
        .args(["--exact", "child_writer", "--test-threads", "1"])
        .env(CHILD_URL_VAR, server.url())
        .env(CHILD_OUT_VAR, &out)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("child writer starts");

    // ...and 8 tasks here, each on its own connection.
    let mut tasks = Vec::new();
    for writer in 0..TASKS {
        let store = store(&server).await;
        tasks.push(tokio::spawn(write_events(store, writer, EVENTS_PER_TASK)));
    }
    let mut per_writer: HashMap<usize, Vec<EntryId>> = HashMap::new();
    for (writer, task) in tasks.into_iter().enumerate() {
        per_writer.insert(writer, task.await.unwrap());
    }
    let status = child.wait_with_output().await.unwrap().status;
    assert!(status.success(), "child writer failed");
    let child_ids: Vec<EntryId> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|s| s.parse().unwrap())
        .collect();
    assert_eq!(child_ids.len(), CHILD_EVENTS, "child wrote all its events");
    per_writer.insert(99, child_ids);
    let finished_ms = now_ms();

    // Then every writer saw strictly increasing IDs, within a second of the wall clock.
    for (writer, ids) in &per_writer {
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "writer {writer} saw IDs go backwards"
        );
        for id in ids {
            assert!(
                id.ms + 1000 >= started_ms && id.ms <= finished_ms + 1000,
                "ID {id} is not within a second of the wall clock"
            );
        }
    }

    // And the merged replay holds exactly those 20,000 events, in ID order, each writer's in
    // the order it appended them.
    let store = store(&server).await;
    let replay = store
        .replay(Stream::all(), EntryId::ZERO)
        .await
        .unwrap()
        .collect_all()
        .await
        .unwrap();
    assert_eq!(replay.len(), TASKS * EVENTS_PER_TASK + CHILD_EVENTS);
    assert!(replay.windows(2).all(|w| w[0].id < w[1].id));
    let mut all_ids: Vec<EntryId> = per_writer.values().flatten().copied().collect();
    all_ids.sort();
    let replay_ids: Vec<EntryId> = replay.iter().map(|e| e.id).collect();
    assert_eq!(
        replay_ids, all_ids,
        "replay returns exactly the appended IDs, in order"
    );
    let mut last_n: HashMap<usize, usize> = HashMap::new();
    for entry in &replay {
        let event = entry.decode().unwrap();
        let tag = entity_tag(&event.change);
        if let Some((w, n)) = tag
            .strip_prefix('w')
            .and_then(|t| t.split_once('n'))
            .map(|(w, n)| (w.parse::<usize>().unwrap(), n.parse::<usize>().unwrap()))
        {
            if let Some(previous) = last_n.insert(w, n) {
                assert!(previous < n, "writer {w}'s events replay in append order");
            }
        }
    }
    assert_eq!(last_n.len(), TASKS + 1, "every writer's events were found");
}

#[tokio::test]
async fn a_stale_expectation_is_a_reported_conflict() {
    let server = RedisServer::start();
    let store = store(&server).await;
    let ada = customer("ada");
    store
        .append_guarded(&Append::new().change(Change::created(ada.clone())))
        .await
        .unwrap();

    // Creating it again ("must not exist yet") conflicts.
    let err = store
        .append_guarded(&Append::new().change(Change::created(ada.clone())))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            AppendError::VersionConflict { kind: EntityKind::Customer, id, expected: 0, actual: 1 } if id == ada.id.0
        ),
        "{err}"
    );

    // Updating with the right version works; with the old one it conflicts.
    let update = |version| {
        Append::new()
            .expect(EntityKind::Customer, ada.id.0, version)
            .change(Change::updated(ada.clone()))
    };
    let appended = store.append_guarded(&update(1)).await.unwrap();
    assert_eq!(appended[0].version, 2);
    let err = store.append_guarded(&update(1)).await.unwrap_err();
    assert!(
        matches!(
            err,
            AppendError::VersionConflict {
                expected: 1,
                actual: 2,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(xlen_all(&store).await["events:customer_updated"], 1);
}

#[tokio::test]
async fn a_multi_entity_append_with_one_bad_expectation_appends_nothing() {
    let server = RedisServer::start();
    let store = store(&server).await;
    let ada = customer("ada");
    let widget = product(250);
    let stock = Inventory {
        id: InventoryId::new(),
        product_id: widget.id,
        amount: Quantity::new(5).expect("a quantity"),
    };
    store
        .append_guarded(
            &Append::new()
                .change(Change::created(ada.clone()))
                .change(Change::created(widget.clone()))
                .change(Change::created(stock.clone())),
        )
        .await
        .unwrap();
    let before = xlen_all(&store).await;

    // An order that expects the inventory at a version it is not at.
    let changes = decide::create_order(
        OrderId::new(),
        OrderDraft::new(ada.id, vec![widget.id]).unwrap(),
        &OrderContext {
            customer: Some(ada.clone()),
            products: [(widget.id, Some(widget.clone()))].into(),
            stock: [(widget.id, stock.clone())].into(),
        },
    )
    .unwrap();
    let err = store
        .append_guarded(
            &Append::new()
                .expect(EntityKind::Customer, ada.id.0, 1)
                .expect(EntityKind::Inventory, stock.id.0, 7)
                .changes(changes),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            AppendError::VersionConflict {
                kind: EntityKind::Inventory,
                expected: 7,
                actual: 1,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(xlen_all(&store).await, before, "no stream grew");
    let head = store.head::<Inventory>(stock.id.0).await.unwrap();
    assert_eq!(head, Head::new(1, Some(stock)), "the head did not move");
}

/// Places one order the way a service does: read the heads, decide, append guarded by the
/// versions read; on a conflict, read again and decide again.
async fn place_order(
    store: &EventStore,
    customer: CustomerId,
    product: ProductId,
    stock_id: InventoryId,
) -> Result<(), String> {
    for _ in 0..64 {
        let c = store.head::<Customer>(customer.0).await.unwrap();
        let p = store.head::<Product>(product.0).await.unwrap();
        let s = store.head::<Inventory>(stock_id.0).await.unwrap();
        let ctx = OrderContext {
            customer: c.entity.clone(),
            products: [(product, p.entity.clone())].into(),
            stock: s.entity.clone().map(|s| (product, s)).into_iter().collect(),
        };
        let draft = OrderDraft::new(customer, vec![product]).unwrap();
        let changes =
            decide::create_order(OrderId::new(), draft, &ctx).map_err(|e| e.to_string())?;
        let append = Append::new()
            .expect(EntityKind::Customer, customer.0, c.version)
            .expect(EntityKind::Product, product.0, p.version)
            .expect(EntityKind::Inventory, stock_id.0, s.version)
            .changes(changes);
        match store.append_guarded(&append).await {
            Ok(_) => return Ok(()),
            Err(AppendError::VersionConflict { .. }) => continue,
            Err(e) => panic!("append failed: {e}"),
        }
    }
    Err("gave up after 64 conflicts".into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_buyers_for_the_last_ten_units_never_oversell() {
    let server = RedisServer::start();
    let store = store(&server).await;
    let buyer = customer("buyer");
    let widget = product(100);
    let stock = Inventory {
        id: InventoryId::new(),
        product_id: widget.id,
        amount: Quantity::new(10).expect("a quantity"),
    };
    store
        .append_guarded(
            &Append::new()
                .change(Change::created(buyer.clone()))
                .change(Change::created(widget.clone()))
                .change(Change::created(stock.clone())),
        )
        .await
        .unwrap();

    let mut attempts = Vec::new();
    for _ in 0..50 {
        let store = store.clone();
        let (b, w, s) = (buyer.id, widget.id, stock.id);
        attempts.push(tokio::spawn(
            async move { place_order(&store, b, w, s).await },
        ));
    }
    let results: Vec<Result<(), String>> = join_all(attempts)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    let won = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(won, 10, "exactly ten orders succeed: {results:?}");
    assert!(
        results
            .iter()
            .filter_map(|r| r.as_ref().err())
            .all(|e| e.contains("out of stock")),
        "the others are out of stock: {results:?}"
    );

    // Stock ends at 0 and the log agrees: 10 orders, 10 decrements, never below zero.
    let head = store.head::<Inventory>(stock.id.0).await.unwrap();
    assert_eq!(
        head.entity.map(|s| s.amount),
        Some(Quantity::new(0).expect("a quantity"))
    );
    let log = store
        .replay(
            Stream::of_kind(EntityKind::Inventory).to_vec(),
            EntryId::ZERO,
        )
        .await
        .unwrap()
        .collect_all()
        .await
        .unwrap();
    let amounts: Vec<u32> = log
        .iter()
        .map(|e| match e.decode().unwrap().change.entity {
            ordershop_domain::Entity::Inventory(i) => i.amount.get(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(amounts, (0..=10).rev().collect::<Vec<u32>>());
    assert_eq!(xlen_all(&store).await["events:order_created"], 10);
}

#[tokio::test]
async fn replaying_a_types_three_streams_rebuilds_its_state() {
    let server = RedisServer::start();
    let store = store(&server).await;
    let kept = customer("kept");
    let gone = customer("gone");
    let back = customer("back");
    let renamed = Customer {
        name: Name::parse("name", "renamed").unwrap(),
        ..kept.clone()
    };
    let steps: Vec<(Customer, Action, u64)> = vec![
        (kept.clone(), Action::Created, 0),
        (gone.clone(), Action::Created, 0),
        (back.clone(), Action::Created, 0),
        (gone.clone(), Action::Updated, 1),
        (renamed.clone(), Action::Updated, 1),
        (gone.clone(), Action::Deleted, 2),
        (back.clone(), Action::Deleted, 1),
        (back.clone(), Action::Created, 2),
    ];
    for (c, action, expected) in steps {
        let change = Change {
            action,
            entity: c.clone().into(),
        };
        store
            .append_guarded(
                &Append::new()
                    .expect(EntityKind::Customer, c.id.0, expected)
                    .change(change),
            )
            .await
            .unwrap();
    }

    let entries = store
        .replay(
            Stream::of_kind(EntityKind::Customer).to_vec(),
            EntryId::ZERO,
        )
        .await
        .unwrap()
        .collect_all()
        .await
        .unwrap();
    let mut state: BTreeMap<Uuid, Head<Customer>> = BTreeMap::new();
    for entry in &entries {
        let event = entry.decode().unwrap();
        let head = state.remove(&event.entity_id()).unwrap_or_default();
        state.insert(event.entity_id(), head.apply(event.version, &event.change));
    }
    assert_eq!(state[&kept.id.0], Head::new(2, Some(renamed)));
    assert_eq!(
        state[&gone.id.0],
        Head::new(3, None),
        "the update before the delete did not resurrect it"
    );
    assert_eq!(
        state[&back.id.0],
        Head::new(3, Some(back.clone())),
        "re-created"
    );

    // The write-side heads agree with the replay.
    for (id, head) in &state {
        assert_eq!(&store.head::<Customer>(*id).await.unwrap(), head);
    }
}

#[tokio::test]
async fn bad_entries_give_errors_naming_the_entry() {
    let server = RedisServer::start();
    let store = store(&server).await;
    let mut conn = store.connection();
    /// (entry ID, fields, what the error must say)
    type BadEntry<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
    let bad: [BadEntry; 4] = [
        (
            "1-1",
            &[
                ("event_id", "8c6b1f2e-7c4a-4f7e-9b0e-2f5d7c1a9e01"),
                ("version", "1"),
            ],
            "missing field `entity`",
        ),
        (
            "1-2",
            &[
                ("event_id", "8c6b1f2e-7c4a-4f7e-9b0e-2f5d7c1a9e02"),
                ("entity", "{not json"),
                ("version", "1"),
            ],
            "not a valid customer JSON",
        ),
        (
            "1-3",
            &[("event_id", "nope"), ("entity", "{}"), ("version", "1")],
            "not a UUID",
        ),
        (
            "1-4",
            &[
                ("event_id", "8c6b1f2e-7c4a-4f7e-9b0e-2f5d7c1a9e04"),
                ("entity", "{}"),
                ("version", "x"),
            ],
            "`version` is not a number",
        ),
    ];
    for (id, fields, _) in &bad {
        let mut cmd = redis::cmd("XADD");
        cmd.arg("events:customer_created").arg(*id);
        for (k, v) in *fields {
            cmd.arg(*k).arg(*v);
        }
        let _: String = cmd.query_async(&mut conn).await.unwrap();
    }
    let entries = store
        .read_stream(
            Stream::new(EntityKind::Customer, Action::Created),
            EntryId::ZERO,
            None,
            10,
        )
        .await
        .unwrap();
    assert_eq!(entries.len(), bad.len());
    for (entry, (id, _, why)) in entries.iter().zip(&bad) {
        let err = entry.decode().unwrap_err().to_string();
        assert!(err.contains(id), "error names the entry {id}: {err}");
        assert!(err.contains("events:customer_created"), "{err}");
        assert!(err.contains(why), "{err} should say {why}");
    }
}

#[tokio::test]
async fn an_entry_added_by_hand_above_the_clock_never_makes_an_append_fail_halfway() {
    let server = RedisServer::start();
    let store = store(&server).await;
    let mut conn = store.connection();
    // Someone writes far in the future of one stream, outside the store.
    let far = now_ms() + 3_600_000;
    let _: String = redis::cmd("XADD")
        .arg("events:product_created")
        .arg(format!("{far}-5"))
        .arg("event_id")
        .arg(Uuid::new_v4().to_string())
        .query_async(&mut conn)
        .await
        .unwrap();

    // An append that writes that stream after another one succeeds: its event in that stream
    // goes past the entry, and the append's IDs still increase.
    let appended = store
        .append_guarded(
            &Append::new()
                .change(Change::created(customer("first")))
                .change(Change::created(product(100))),
        )
        .await
        .unwrap();
    assert_eq!(appended.len(), 2);
    assert!(appended[1].entry_id > EntryId::new(far, 5));
    assert!(appended[1].entry_id > appended[0].entry_id);
    let products: u64 = redis::cmd("XLEN")
        .arg("events:product_created")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(products, 2, "both entries are there");
    // And the clock moved on: later appends stay above it too.
    let later = store
        .append_guarded(&Append::new().change(Change::created(customer("later"))))
        .await
        .unwrap();
    assert!(later[0].entry_id > appended[1].entry_id);
}

#[tokio::test]
async fn a_pipelined_append_guards_each_append_on_its_own() {
    let server = RedisServer::start();
    let store = store(&server).await;
    let ada = customer("ada");
    let created = Append::new().change(Change {
        action: Action::Created,
        entity: ada.clone().into(),
    });
    let other = customer("bob");
    let appends = vec![
        created.clone(),
        // The same creation again: the first one made the customer exist, so this one conflicts.
        created,
        Append::new().change(Change {
            action: Action::Created,
            entity: other.into(),
        }),
    ];
    let results = store
        .append_guarded_pipelined(&appends)
        .await
        .expect("the pipeline runs");
    assert_eq!(results.len(), 3);
    let first = results[0].as_ref().expect("first append succeeds");
    assert!(matches!(
        results[1],
        Err(AppendError::VersionConflict { actual: 1, .. })
    ));
    let third = results[2].as_ref().expect("third append succeeds");
    assert!(first[0].entry_id < third[0].entry_id);
    let head = store.head::<Customer>(ada.id.0).await.expect("head");
    assert_eq!(head.version, 1);
    assert!(store
        .append_guarded_pipelined(&[])
        .await
        .expect("empty")
        .is_empty());
}

#[tokio::test]
async fn heads_by_unique_reads_the_index_and_the_heads_it_names_in_one_step() {
    let server = RedisServer::start();
    let store = store(&server).await;
    let (held, free) = (ProductId::new(), ProductId::new());
    let record = Inventory {
        id: InventoryId::new(),
        product_id: held,
        amount: Quantity::parse("amount", 7).unwrap(),
    };
    store
        .append_guarded(
            &Append::new()
                .claim(UniqueIndex::InventoryByProduct, held.0, record.id.0)
                .change(Change {
                    action: Action::Created,
                    entity: record.clone().into(),
                }),
        )
        .await
        .expect("append");

    let found = store
        .heads_by_unique::<Inventory>(UniqueIndex::InventoryByProduct, &[free.0, held.0])
        .await
        .expect("read");
    assert_eq!(found.len(), 2);
    assert!(found[0].is_none(), "nobody holds the free product");
    let (owner, head) = found[1].clone().expect("the held product's record");
    assert_eq!(owner, record.id.0);
    assert_eq!(head.version, 1);
    assert_eq!(head.entity.as_ref(), Some(&record));
    assert!(store
        .heads_by_unique::<Inventory>(UniqueIndex::InventoryByProduct, &[])
        .await
        .expect("empty")
        .is_empty());

    // A server that lost its Functions gets them back on the first call.
    let mut conn = redis::Client::open(server.url())
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("connects");
    let _: () = redis::cmd("FUNCTION")
        .arg("FLUSH")
        .query_async(&mut conn)
        .await
        .expect("FUNCTION FLUSH");
    let again = store
        .heads_by_unique::<Inventory>(UniqueIndex::InventoryByProduct, &[held.0])
        .await
        .expect("read after FUNCTION FLUSH");
    assert_eq!(
        again[0].as_ref().map(|(owner, _)| *owner),
        Some(record.id.0)
    );
}

#[tokio::test]
async fn one_append_can_carry_the_events_of_several_requests_each_with_its_request_id() {
    let server = RedisServer::start();
    let store = store(&server).await;
    let (ada, bob, cyd) = (customer("ada"), customer("bob"), customer("cyd"));
    let created = |c: &Customer| Change {
        action: Action::Created,
        entity: c.clone().into(),
    };
    let mut append = Append::new();
    let first = append.changes_for_request([created(&ada), created(&bob)], Some("req-1"));
    let second = append.changes_for_request([created(&cyd)], None);
    assert_eq!((first, second), (0..2, 2..3));
    store.append_guarded(&append).await.expect("append");

    let mut conn = redis::Client::open(server.url())
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("connects");
    let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg("events:customer_created")
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .expect("XRANGE");
    let tags: Vec<Option<String>> = reply
        .ids
        .iter()
        .map(|e| e.get::<String>("request_id"))
        .collect();
    assert_eq!(
        tags,
        vec![Some("req-1".to_owned()), Some("req-1".to_owned()), None]
    );
}

#[tokio::test]
async fn an_entry_the_store_cannot_append_after_refuses_the_append_whole_and_names_itself() {
    for (top, what) in [
        (
            "18446744073709551615-18446744073709551615".to_owned(),
            "the end of the ID space",
        ),
        (
            format!("{}-0", now_ms() + 30 * 24 * 3_600_000),
            "a month ahead",
        ),
    ] {
        let server = RedisServer::start();
        let store = store(&server).await;
        let mut conn = store.connection();
        let ada = customer("ada");
        store
            .append_guarded(&Append::new().change(Change::created(ada.clone())))
            .await
            .unwrap();
        let _: String = redis::cmd("XADD")
            .arg("events:product_created")
            .arg(&top)
            .arg("event_id")
            .arg(Uuid::new_v4().to_string())
            .query_async(&mut conn)
            .await
            .unwrap();
        let before = xlen_all(&store).await;
        let clock_before = store.last_issued().await.unwrap();

        // An append that writes another stream first, then the blocked one: refused whole.
        let widget = product(100);
        let err = store
            .append_guarded(
                &Append::new()
                    .expect(EntityKind::Customer, ada.id.0, 1)
                    .change(Change::updated(customer_named(&ada, "ada 2")))
                    .change(Change::created(widget.clone())),
            )
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, AppendError::Blocked { .. }), "{what}: {text}");
        assert!(
            text.contains("events:product_created") && text.contains(&top),
            "{what}: {text}"
        );
        assert_eq!(xlen_all(&store).await, before, "{what}: nothing appended");
        assert_eq!(
            store.head::<Customer>(ada.id.0).await.unwrap().version,
            1,
            "{what}: no head moved"
        );
        let clock = store.last_issued().await.unwrap();
        assert!(
            clock.ms < now_ms() + 60_000,
            "{what}: the clock is not pinned ahead: {clock} (was {clock_before})"
        );
        // Other streams still take appends, with IDs above what was taken back.
        let later = store
            .append_guarded(&Append::new().change(Change::created(customer("bob"))))
            .await
            .unwrap();
        assert!(later[0].entry_id > clock_before);

        // Deleting the entry is not enough (the stream's last ID stays there)...
        let _: u64 = redis::cmd("XDEL")
            .arg("events:product_created")
            .arg(&top)
            .query_async(&mut conn)
            .await
            .unwrap();
        let still = store
            .append_guarded(&Append::new().change(Change::created(widget.clone())))
            .await
            .unwrap_err();
        assert!(
            matches!(still, AppendError::Blocked { .. }),
            "{what}: {still}"
        );
        // ...once the operator also brings the last ID back (here the stream held nothing else,
        // so removing the empty stream does it on Redis and Valkey alike; see
        // docs/projections.md for a stream with other entries), the stream takes appends.
        let _: u64 = redis::cmd("DEL")
            .arg("events:product_created")
            .query_async(&mut conn)
            .await
            .unwrap();
        store
            .append_guarded(&Append::new().change(Change::created(widget)))
            .await
            .unwrap();
    }
}

fn customer_named(customer: &Customer, name: &str) -> Customer {
    Customer {
        name: Name::parse("name", name).expect("a name"),
        ..customer.clone()
    }
}
