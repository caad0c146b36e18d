//! Each domain service: create (one object and a list), update, delete; the answers, the events
//! in the right streams, the heads, and the versions header.

use crate::helpers::{Shop, DOMAIN_SERVICES};
use ordershop_domain::{
    Action, Billing, Customer, Entity, EntityKind, Inventory, Order, Product, Quantity,
};
use ordershop_services::config::Role;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

/// The same create/update/delete story for the two types that refer to nothing.
async fn plain_crud(
    shop: &Shop,
    kind: EntityKind,
    item: &str,
    collection: &str,
    bodies: [Value; 4],
) {
    let base = shop.url(Role::owner_of(kind));
    let [one, two, three, changed] = bodies;

    // One object on the item path.
    let reply = shop.post(&format!("{base}{item}"), &one).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    let ids = reply.ids();
    assert_eq!(ids.len(), 1);
    let id = ids[0];
    assert_eq!(reply.versions(), vec![format!("{kind}:{id}:1")]);

    // A list on the collection path: one append, the ids in order.
    let reply = shop
        .post(&format!("{base}{collection}"), &json!([two, three]))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    let listed = reply.ids();
    assert_eq!(listed.len(), 2);
    assert_eq!(
        reply.versions(),
        vec![
            format!("{kind}:{}:1", listed[0]),
            format!("{kind}:{}:1", listed[1])
        ]
    );
    let created = shop.events(kind, Action::Created).await;
    assert_eq!(
        created.iter().map(|e| e.entity_id()).collect::<Vec<_>>(),
        vec![id, listed[0], listed[1]],
        "one created event per entity, in order"
    );
    assert!(created.iter().all(|e| e.version == 1));

    // The original client sends the whole entity back, id included.
    let mut whole = changed.clone();
    whole["id"] = json!(id);
    let reply = shop
        .call(Method::PUT, &format!("{base}{item}/{id}"), Some(&whole))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    assert_eq!(reply.body, json!(true));
    assert_eq!(reply.versions(), vec![format!("{kind}:{id}:2")]);
    let updated = shop.events(kind, Action::Updated).await;
    assert_eq!(updated.len(), 1);
    assert_eq!(updated[0].version, 2);
    assert_eq!(updated[0].entity_id(), id);

    let reply = shop
        .call(Method::DELETE, &format!("{base}{item}/{id}"), None)
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    assert_eq!(reply.body, json!(true));
    assert_eq!(reply.versions(), vec![format!("{kind}:{id}:3")]);
    let deleted = shop.events(kind, Action::Deleted).await;
    assert_eq!(deleted.len(), 1);
    assert_eq!((deleted[0].entity_id(), deleted[0].version), (id, 3));
    assert_eq!(shop.xlen(kind, Action::Created).await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customer_service_creates_updates_and_deletes() {
    let shop = Shop::start(&[Role::CustomerService]).await;
    plain_crud(
        &shop,
        EntityKind::Customer,
        "/customer",
        "/customers",
        [
            json!({"name": "Ada", "email": "ada@example.com"}),
            json!({"name": "Bob", "email": "bob@example.com"}),
            json!({"name": "Cy", "email": "cy@example.com"}),
            json!({"name": "Ada L.", "email": "ada@example.org"}),
        ],
    )
    .await;
    let events = shop.events(EntityKind::Customer, Action::Updated).await;
    let Entity::Customer(ada) = &events[0].change.entity else {
        panic!("{events:?}")
    };
    assert_eq!(
        (ada.name.as_str(), ada.email.as_str()),
        ("Ada L.", "ada@example.org")
    );
    let head = shop.head::<Customer>(ada.id.0).await;
    assert_eq!(
        (head.version, head.entity),
        (3, None),
        "deleted at version 3"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn product_service_creates_updates_and_deletes() {
    let shop = Shop::start(&[Role::ProductService]).await;
    plain_crud(
        &shop,
        EntityKind::Product,
        "/product",
        "/products",
        [
            json!({"name": "Widget", "price": 250}),
            json!({"name": "Gadget", "price": 1}),
            json!({"name": "Gizmo", "price": 999}),
            json!({"name": "Widget II", "price": 300, "extra": "ignored"}),
        ],
    )
    .await;
    let events = shop.events(EntityKind::Product, Action::Created).await;
    let Entity::Product(gadget) = &events[1].change.entity else {
        panic!("{events:?}")
    };
    assert_eq!((gadget.name.as_str(), gadget.price.minor()), ("Gadget", 1));
    let updated = shop.events(EntityKind::Product, Action::Updated).await;
    let Entity::Product(widget) = &updated[0].change.entity else {
        panic!("{updated:?}")
    };
    assert_eq!(widget.price.minor(), 300);
    assert!(shop.head::<Product>(gadget.id.0).await.entity.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inventory_service_keeps_one_record_per_product() {
    let shop = Shop::start(&[Role::ProductService, Role::InventoryService]).await;
    let base = shop.url(Role::InventoryService).to_owned();
    let widget = shop
        .create(
            EntityKind::Product,
            "/product",
            json!({"name": "Widget", "price": 100}),
        )
        .await;
    let gadget = shop
        .create(
            EntityKind::Product,
            "/product",
            json!({"name": "Gadget", "price": 100}),
        )
        .await;

    let reply = shop
        .post(
            &format!("{base}/inventory"),
            &json!({"product_id": widget, "amount": 5}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    let record = reply.ids()[0];
    assert_eq!(reply.versions(), vec![format!("inventory:{record}:1")]);

    // A second record for the same product is refused; nothing is appended.
    let reply = shop
        .post(
            &format!("{base}/inventory"),
            &json!({"product_id": widget, "amount": 1}),
        )
        .await;
    reply.assert_error(409, "inventory_exists", "second record");
    // So is a list that names a product twice.
    let reply = shop
        .post(
            &format!("{base}/inventory"),
            &json!([{"product_id": gadget, "amount": 1}, {"product_id": gadget, "amount": 2}]),
        )
        .await;
    reply.assert_error(409, "inventory_exists", "a list naming a product twice");
    assert_eq!(shop.xlen(EntityKind::Inventory, Action::Created).await, 1);

    let reply = shop
        .call(
            Method::PUT,
            &format!("{base}/inventory/{record}"),
            Some(&json!({"id": record, "product_id": widget, "amount": 7})),
        )
        .await;
    assert_eq!((reply.status, &reply.body), (StatusCode::OK, &json!(true)));
    assert_eq!(reply.versions(), vec![format!("inventory:{record}:2")]);
    let head = shop.head::<Inventory>(record).await;
    assert_eq!(
        head.entity.map(|r| r.amount),
        Some(Quantity::new(7).expect("a quantity"))
    );

    // Moving a record to another product is a validation error.
    let reply = shop
        .call(
            Method::PUT,
            &format!("{base}/inventory/{record}"),
            Some(&json!({"product_id": gadget, "amount": 7})),
        )
        .await;
    reply.assert_error(422, "invalid", "moving a record");

    let reply = shop
        .call(Method::DELETE, &format!("{base}/inventory/{record}"), None)
        .await;
    assert_eq!((reply.status, &reply.body), (StatusCode::OK, &json!(true)));
    assert_eq!(shop.xlen(EntityKind::Inventory, Action::Deleted).await, 1);

    // The delete released the product: it may get a record again.
    let reply = shop
        .post(
            &format!("{base}/inventory"),
            &json!({"product_id": widget, "amount": 3}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    assert_eq!(shop.xlen(EntityKind::Inventory, Action::Created).await, 2);
}

/// A customer, a product at `price` and its stock of `amount`.
async fn stocked(shop: &Shop, price: u64, amount: u32) -> (Uuid, Uuid, Uuid) {
    let customer = shop
        .create(
            EntityKind::Customer,
            "/customer",
            json!({"name": "Ada", "email": "ada@example.com"}),
        )
        .await;
    let product = shop
        .create(
            EntityKind::Product,
            "/product",
            json!({"name": "Widget", "price": price}),
        )
        .await;
    let record = shop
        .create(
            EntityKind::Inventory,
            "/inventory",
            json!({"product_id": product, "amount": amount}),
        )
        .await;
    (customer, product, record)
}

fn amount_of(entity: &Entity) -> u32 {
    match entity {
        Entity::Inventory(r) => r.amount.get(),
        other => panic!("not an inventory record: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_service_moves_stock_in_the_same_append() {
    let shop = Shop::start(&DOMAIN_SERVICES).await;
    let base = shop.url(Role::OrderService).to_owned();
    let (customer, widget, widget_stock) = stocked(&shop, 250, 5).await;
    let gadget = shop
        .create(
            EntityKind::Product,
            "/product",
            json!({"name": "Gadget", "price": 100}),
        )
        .await;
    let gadget_stock = shop
        .create(
            EntityKind::Inventory,
            "/inventory",
            json!({"product_id": gadget, "amount": 5}),
        )
        .await;

    // Two units of the widget.
    let reply = shop
        .post(
            &format!("{base}/orders"),
            &json!({"product_ids": [widget, widget], "customer_id": customer}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    let order = reply.ids()[0];
    assert_eq!(
        reply.versions(),
        vec![
            format!("order:{order}:1"),
            format!("inventory:{widget_stock}:2")
        ]
    );
    let created = shop.events(EntityKind::Order, Action::Created).await;
    let Entity::Order(placed) = &created[0].change.entity else {
        panic!("{created:?}")
    };
    assert_eq!(placed.total.minor(), 500, "priced at 2 x 250");
    let stock_events = shop.events(EntityKind::Inventory, Action::Updated).await;
    assert_eq!(stock_events.len(), 1);
    assert_eq!(amount_of(&stock_events[0].change.entity), 3);
    assert_eq!(
        stock_events[0].id,
        ordershop_eventstore::EntryId::new(created[0].id.ms, created[0].id.seq + 1),
        "the order and its stock change were appended together"
    );

    // The original client sends the order back with one product swapped (and its total).
    let mut changed = serde_json::to_value(placed).unwrap();
    changed["product_ids"] = json!([widget, gadget]);
    let reply = shop
        .call(
            Method::PUT,
            &format!("{base}/order/{order}"),
            Some(&changed),
        )
        .await;
    assert_eq!(
        (reply.status, &reply.body),
        (StatusCode::OK, &json!(true)),
        "{:?}",
        reply.body
    );
    let mut versions = reply.versions();
    versions.sort();
    let mut expected = vec![
        format!("order:{order}:2"),
        format!("inventory:{widget_stock}:3"),
        format!("inventory:{gadget_stock}:2"),
    ];
    expected.sort();
    assert_eq!(versions, expected);
    assert_eq!(
        shop.head::<Inventory>(widget_stock)
            .await
            .entity
            .unwrap()
            .amount,
        Quantity::new(4).expect("a quantity")
    );
    assert_eq!(
        shop.head::<Inventory>(gadget_stock)
            .await
            .entity
            .unwrap()
            .amount,
        Quantity::new(4).expect("a quantity")
    );
    assert_eq!(
        shop.head::<Order>(order)
            .await
            .entity
            .unwrap()
            .total
            .minor(),
        350
    );

    // Deleting gives the units back.
    let reply = shop
        .call(Method::DELETE, &format!("{base}/order/{order}"), None)
        .await;
    assert_eq!((reply.status, &reply.body), (StatusCode::OK, &json!(true)));
    assert_eq!(
        shop.head::<Inventory>(widget_stock)
            .await
            .entity
            .unwrap()
            .amount,
        Quantity::new(5).expect("a quantity")
    );
    assert_eq!(
        shop.head::<Inventory>(gadget_stock)
            .await
            .entity
            .unwrap()
            .amount,
        Quantity::new(5).expect("a quantity")
    );
    assert_eq!(shop.xlen(EntityKind::Order, Action::Deleted).await, 1);
    assert_eq!(shop.head::<Order>(order).await.version, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_of_orders_shares_the_stock_and_lands_whole_or_not_at_all() {
    let shop = Shop::start(&DOMAIN_SERVICES).await;
    let base = shop.url(Role::OrderService).to_owned();
    let (customer, widget, stock) = stocked(&shop, 100, 2).await;
    let one = json!({"product_ids": [widget], "customer_id": customer});

    // Three orders for two units: the whole list is refused.
    let before = shop.stream_lengths().await;
    let reply = shop
        .post(&format!("{base}/orders"), &json!([one, one, one]))
        .await;
    reply.assert_error(409, "out_of_stock", "three orders for two units");
    assert_eq!(shop.stream_lengths().await, before, "nothing appended");

    // Two orders for two units: one append, the record moving twice.
    let reply = shop
        .post(&format!("{base}/orders"), &json!([one, one]))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    let ids = reply.ids();
    assert_eq!(ids.len(), 2);
    assert_eq!(
        reply.versions(),
        vec![
            format!("order:{}:1", ids[0]),
            format!("inventory:{stock}:2"),
            format!("order:{}:1", ids[1]),
            format!("inventory:{stock}:3"),
        ]
    );
    let head = shop.head::<Inventory>(stock).await;
    assert_eq!(
        (head.version, head.entity.unwrap().amount),
        (3, Quantity::new(0).expect("a quantity"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn billing_service_bills_an_order_once() {
    let shop = Shop::start(&DOMAIN_SERVICES).await;
    let base = shop.url(Role::BillingService).to_owned();
    let (customer, widget, _) = stocked(&shop, 100, 5).await;
    let order = shop
        .create(
            EntityKind::Order,
            "/order",
            json!({"product_ids": [widget], "customer_id": customer}),
        )
        .await;

    let reply = shop
        .post(&format!("{base}/billing"), &json!({"order_id": order}))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    let billing = reply.ids()[0];
    assert_eq!(reply.versions(), vec![format!("billing:{billing}:1")]);
    let head = shop.head::<Billing>(billing).await;
    assert_eq!(
        head.entity.map(|b| (b.order_id.0, b.done)),
        Some((order, false))
    );

    let reply = shop
        .post(
            &format!("{base}/billings"),
            &json!([{"order_id": order, "done": true}]),
        )
        .await;
    reply.assert_error(409, "already_billed", "billing twice");
    assert_eq!(shop.xlen(EntityKind::Billing, Action::Created).await, 1);

    let reply = shop
        .call(
            Method::PUT,
            &format!("{base}/billing/{billing}"),
            Some(&json!({"order_id": order, "done": true})),
        )
        .await;
    assert_eq!((reply.status, &reply.body), (StatusCode::OK, &json!(true)));
    assert_eq!(reply.versions(), vec![format!("billing:{billing}:2")]);
    assert!(shop.head::<Billing>(billing).await.entity.unwrap().done);

    let reply = shop
        .call(Method::DELETE, &format!("{base}/billing/{billing}"), None)
        .await;
    assert_eq!((reply.status, &reply.body), (StatusCode::OK, &json!(true)));
    assert_eq!(shop.xlen(EntityKind::Billing, Action::Deleted).await, 1);

    // Deleting the billing released the order: it can be billed again.
    let reply = shop
        .post(
            &format!("{base}/billing"),
            &json!({"order_id": order, "done": true}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_list_creates_nothing() {
    let shop = Shop::start(&[Role::CustomerService]).await;
    let before = shop.stream_lengths().await;
    let reply = shop
        .post(
            &format!("{}/customers", shop.url(Role::CustomerService)),
            &json!([]),
        )
        .await;
    assert_eq!((reply.status, &reply.body), (StatusCode::OK, &json!([])));
    assert_eq!(shop.stream_lengths().await, before);
}
