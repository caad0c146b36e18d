//! The command layer on the in-memory store (`ordershop_testkit::MemStore`), no redis-server:
//! the real plans, decisions, group commit and retry policy, with conflicts made on purpose
//! by another writer's append landing between a command's read and its append.

use futures::future::join_all;
use ordershop_domain::decide::{CustomerDraft, InventoryDraft, OrderDraft, ProductDraft};
use ordershop_domain::entity::EntityState;
use ordershop_domain::{
    Action, Change, Customer, CustomerId, DomainError, Email, EntityKind, Head, Inventory,
    InventoryId, Money, Name, Order, Product, ProductId, Quantity,
};
use ordershop_eventstore::{Append, CommandStore, Stream};
use ordershop_services::commands::{CommandError, CommandService, IdempotencyKey};
use ordershop_testkit::MemStore;
use uuid::Uuid;

fn shop() -> (MemStore, CommandService<MemStore>) {
    let store = MemStore::new();
    (store.clone(), CommandService::new(store))
}

fn customer_draft(name: &str, email: &str) -> CustomerDraft {
    CustomerDraft {
        name: Name::parse("name", name).expect("a name"),
        email: Email::parse(email).expect("an email"),
    }
}

fn quantity(units: u32) -> Quantity {
    Quantity::new(units).expect("a quantity")
}

async fn create_customer(service: &CommandService<MemStore>) -> Uuid {
    let written = service
        .create::<Customer>(vec![customer_draft("Ada", "ada@example.com")])
        .await
        .expect("the customer");
    written.ids[0]
}

/// A product with `units` in stock: (product, inventory record).
async fn stocked_product(service: &CommandService<MemStore>, units: u32) -> (Uuid, Uuid) {
    let product = service
        .create::<Product>(vec![ProductDraft {
            name: Name::parse("name", "Widget").expect("a name"),
            price: Money::price(250).expect("a price"),
        }])
        .await
        .expect("the product")
        .ids[0];
    let record = service
        .create::<Inventory>(vec![InventoryDraft {
            product_id: ProductId(product),
            amount: quantity(units),
        }])
        .await
        .expect("the stock")
        .ids[0];
    (product, record)
}

fn order_of(customer: Uuid, product: Uuid, units: usize) -> OrderDraft {
    OrderDraft::new(CustomerId(customer), vec![ProductId(product); units]).expect("an order")
}

/// The stock record's version and amount.
async fn stock(store: &MemStore, record: Uuid) -> (u64, Option<u32>) {
    let head = head::<Inventory>(store, record).await;
    (head.version, head.entity.map(|r| r.amount.get()))
}

/// The head of one entity.
async fn head<T: EntityState>(store: &MemStore, id: Uuid) -> Head<T> {
    store.heads::<T>(&[id]).await.expect("the head").remove(0)
}

fn orders_created(store: &MemStore) -> usize {
    let created = Stream::new(EntityKind::Order, Action::Created);
    store
        .appended()
        .iter()
        .filter(|a| a.stream == created)
        .count()
}

/// Another writer's append setting the stock record to `units`, from `version`.
fn other_writer_sets_stock(record: Uuid, product: Uuid, version: u64, units: u32) -> Append {
    Append::new()
        .expect(EntityKind::Inventory, record, version)
        .change(Change::updated(Inventory {
            id: InventoryId(record),
            product_id: ProductId(product),
            amount: quantity(units),
        }))
}

#[tokio::test]
async fn a_created_customer_is_at_version_one() {
    let (store, service) = shop();
    let written = service
        .create::<Customer>(vec![customer_draft("Ada", "ada@example.com")])
        .await
        .expect("the customer");
    assert_eq!(written.ids.len(), 1);
    assert_eq!(written.versions.len(), 1);
    assert_eq!(written.versions[0].version, 1);
    let head = head::<Customer>(&store, written.ids[0]).await;
    assert_eq!(head.version, 1);
    assert_eq!(
        head.entity.map(|c| c.email.to_string()),
        Some("ada@example.com".to_owned())
    );
}

/// The shop's unique values are an inventory record per product and a billing per order (a
/// customer's email is not unique): a second record for a product is refused.
#[tokio::test]
async fn a_second_stock_record_for_a_product_is_refused() {
    let (store, service) = shop();
    let (product, record) = stocked_product(&service, 3).await;
    let again = service
        .create::<Inventory>(vec![InventoryDraft {
            product_id: ProductId(product),
            amount: quantity(9),
        }])
        .await;
    assert!(
        matches!(again, Err(CommandError::Domain(DomainError::InventoryExists { inventory_id, .. }))
            if inventory_id == record),
        "{again:?}"
    );
    assert_eq!(stock(&store, record).await, (1, Some(3)));
}

/// Another record claims the product between the command's read (no record yet) and its
/// append: the store refuses the claim, and the command decides again on the new state.
#[tokio::test]
async fn a_stock_record_whose_claim_is_taken_meanwhile_is_refused_on_a_fresh_read() {
    let (store, service) = shop();
    let product = service
        .create::<Product>(vec![ProductDraft {
            name: Name::parse("name", "Widget").expect("a name"),
            price: Money::price(250).expect("a price"),
        }])
        .await
        .expect("the product")
        .ids[0];
    let winner = Uuid::new_v4();
    store.before_next_append(
        Append::new()
            .change(Change::created(Inventory {
                id: InventoryId(winner),
                product_id: ProductId(product),
                amount: quantity(1),
            }))
            .claim(
                ordershop_eventstore::UniqueIndex::InventoryByProduct,
                product,
                winner,
            ),
    );
    let lost = service
        .create::<Inventory>(vec![InventoryDraft {
            product_id: ProductId(product),
            amount: quantity(9),
        }])
        .await;
    assert!(
        matches!(lost, Err(CommandError::Domain(DomainError::InventoryExists { inventory_id, .. }))
            if inventory_id == winner),
        "{lost:?}"
    );
    assert_eq!(
        store.refused(),
        1,
        "one refused append, then a fresh decision"
    );
}

#[tokio::test]
async fn an_order_takes_its_units_from_the_stock_in_the_same_append() {
    let (store, service) = shop();
    let customer = create_customer(&service).await;
    let (product, record) = stocked_product(&service, 5).await;
    let written = service
        .create_orders(vec![order_of(customer, product, 2)])
        .await
        .expect("the order");
    assert_eq!(written.ids.len(), 1);
    assert!(written
        .versions
        .iter()
        .any(|v| v.kind == EntityKind::Inventory && v.id == record && v.version == 2));
    assert_eq!(stock(&store, record).await, (2, Some(3)));
    let order = head::<Order>(&store, written.ids[0]).await;
    assert_eq!(order.entity.map(|o| o.total.minor()), Some(500));
}

#[tokio::test]
async fn an_order_for_more_than_the_stock_is_refused_and_takes_nothing() {
    let (store, service) = shop();
    let customer = create_customer(&service).await;
    let (product, record) = stocked_product(&service, 2).await;
    for result in [
        service
            .create_orders(vec![order_of(customer, product, 3)])
            .await,
        service
            .create::<Order>(vec![order_of(customer, product, 3)])
            .await,
    ] {
        assert!(
            matches!(
                result,
                Err(CommandError::Domain(DomainError::OutOfStock {
                    requested: 3,
                    available: 2,
                    ..
                }))
            ),
            "{result:?}"
        );
    }
    assert_eq!(stock(&store, record).await, (1, Some(2)));
    assert_eq!(orders_created(&store), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_concurrent_orders_for_the_last_units_sell_exactly_those() {
    let (store, service) = shop();
    let customer = create_customer(&service).await;
    let (product, record) = stocked_product(&service, 5).await;
    let results = join_all((0..30).map(|n| {
        let service = service.clone();
        tokio::spawn(async move {
            let draft = order_of(customer, product, 1);
            // Both paths at once: the group commit, and commands of their own.
            if n % 2 == 0 {
                service.create_orders(vec![draft]).await
            } else {
                service.create::<Order>(vec![draft]).await
            }
        })
    }))
    .await;
    let mut sold = 0;
    for result in results {
        match result.expect("the task") {
            Ok(_) => sold += 1,
            Err(CommandError::Domain(DomainError::OutOfStock { .. })) => {}
            Err(e) => panic!("neither sold nor out of stock: {e}"),
        }
    }
    assert_eq!(sold, 5);
    assert_eq!(stock(&store, record).await, (6, Some(0)));
    assert_eq!(orders_created(&store), 5);
}

#[tokio::test]
async fn an_update_that_loses_a_race_decides_again_on_the_new_version() {
    let (store, service) = shop();
    let customer = create_customer(&service).await;
    let current = head::<Customer>(&store, customer)
        .await
        .entity
        .expect("the customer");
    store.before_next_append(
        Append::new()
            .expect(EntityKind::Customer, customer, 1)
            .change(Change::updated(current)),
    );
    let written = service
        .update::<Customer>(customer, customer_draft("Grace", "grace@example.com"))
        .await
        .expect("the update, decided again");
    assert_eq!(written.versions[0].version, 3);
    assert_eq!(store.refused(), 1);
    let head = head::<Customer>(&store, customer).await;
    assert_eq!(head.version, 3);
    assert_eq!(
        head.entity.map(|c| c.name.to_string()),
        Some("Grace".into())
    );
}

/// The group commit retries under the same policy: the stock moved between its read and its
/// append, so it reads and decides the group again.
#[tokio::test]
async fn an_order_whose_stock_moved_meanwhile_decides_again() {
    let (store, service) = shop();
    let customer = create_customer(&service).await;
    let (product, record) = stocked_product(&service, 5).await;
    store.before_next_append(other_writer_sets_stock(record, product, 1, 4));
    service
        .create_orders(vec![order_of(customer, product, 2)])
        .await
        .expect("the order, decided again");
    assert_eq!(store.refused(), 1);
    assert_eq!(stock(&store, record).await, (3, Some(2)));

    // Now the other writer leaves fewer units than the next order wants: refused on the
    // fresh read, never oversold.
    store.before_next_append(other_writer_sets_stock(record, product, 3, 1));
    let refused = service
        .create_orders(vec![order_of(customer, product, 2)])
        .await;
    assert!(
        matches!(
            refused,
            Err(CommandError::Domain(DomainError::OutOfStock {
                available: 1,
                ..
            }))
        ),
        "{refused:?}"
    );
    assert_eq!(stock(&store, record).await, (4, Some(1)));
    assert_eq!(orders_created(&store), 1);
}

#[tokio::test]
async fn a_repeat_under_an_idempotency_key_gets_the_first_answer() {
    let (store, service) = shop();
    let key = |fingerprint: &str| IdempotencyKey {
        key: "idem:customer:k1".to_owned(),
        fingerprint: fingerprint.to_owned(),
    };
    let once = service
        .clone()
        .with_idempotency(Some(key("POST /customer ada")));
    let first = once
        .create::<Customer>(vec![customer_draft("Ada", "ada@example.com")])
        .await
        .expect("the first");
    let again = once
        .create::<Customer>(vec![customer_draft("Ada", "ada@example.com")])
        .await
        .expect("the repeat");
    assert!(again.replayed);
    assert_eq!((again.ids, again.versions), (first.ids, first.versions));
    assert_eq!(store.appended().len(), 1);

    let other = service
        .clone()
        .with_idempotency(Some(key("POST /customer grace")))
        .create::<Customer>(vec![customer_draft("Grace", "grace@example.com")])
        .await;
    assert!(matches!(other, Err(CommandError::IdempotencyKeyReused)));
}
