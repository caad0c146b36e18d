//! The domain's rules, one given/when/then test each.
//!
//! Everything here goes through the crate's public API: validated values, the `decide` functions
//! and `Head::apply`. The helpers at the top build valid entities and read changes back, so each
//! test states only what its rule is about.

use ordershop_domain::decide::{
    self, BillingDraft, CustomerDraft, InventoryDraft, OrderContext, OrderDraft, ProductDraft,
};
use ordershop_domain::value::{
    MAX_EMAIL_CHARS, MAX_NAME_CHARS, MAX_ORDER_ITEMS, MAX_PRICE_MINOR, MAX_QUANTITY,
};
use ordershop_domain::{
    Action, Billing, BillingId, Change, Customer, CustomerId, DomainError, Email, Entity,
    EntityKind, Head, Inventory, InventoryId, Money, Name, Order, OrderId, Product, ProductId,
    Quantity,
};
use std::collections::BTreeMap;

// ---------------------------------------------------------------------------------------------
// Builders

fn name(raw: &str) -> Name {
    Name::parse("name", raw).expect("valid name")
}

fn email(raw: &str) -> Email {
    Email::parse(raw).expect("valid email")
}

fn customer() -> Customer {
    Customer {
        id: CustomerId::new(),
        name: name("Ada Lovelace"),
        email: email("ada@example.com"),
    }
}

fn customer_draft(n: &str, e: &str) -> CustomerDraft {
    CustomerDraft {
        name: name(n),
        email: email(e),
    }
}

/// A product priced `price` minor units.
fn product(price: u64) -> Product {
    Product {
        id: ProductId::new(),
        name: name("Widget"),
        price: Money::from_minor(price).expect("an amount"),
    }
}

fn product_draft(n: &str, price: u64) -> ProductDraft {
    ProductDraft {
        name: name(n),
        price: Money::from_minor(price).expect("an amount"),
    }
}

/// The inventory record of `product`, holding `amount` units.
fn stock_of(product: &Product, amount: u32) -> Inventory {
    Inventory {
        id: InventoryId::new(),
        product_id: product.id,
        amount: Quantity::new(amount).expect("a quantity"),
    }
}

fn inventory_draft(product_id: ProductId, amount: u32) -> InventoryDraft {
    InventoryDraft {
        product_id,
        amount: Quantity::new(amount).expect("a quantity"),
    }
}

fn order_draft(customer: &Customer, products: &[&Product]) -> OrderDraft {
    OrderDraft::new(customer.id, products.iter().map(|p| p.id).collect()).expect("valid draft")
}

/// An order already placed by `customer` for one unit per listed product.
fn order(customer: &Customer, products: &[&Product]) -> Order {
    Order {
        id: OrderId::new(),
        product_ids: products.iter().map(|p| p.id).collect(),
        customer_id: customer.id,
        total: products.iter().map(|p| p.price).sum(),
    }
}

/// What an order command sees: the customer, the products (all existing) and their stock.
fn ctx(customer: &Customer, products: &[&Product], stock: &[&Inventory]) -> OrderContext {
    OrderContext {
        customer: Some(customer.clone()),
        products: products
            .iter()
            .map(|p| (p.id, Some((*p).clone())))
            .collect(),
        stock: stock_map(stock),
    }
}

fn stock_map(stock: &[&Inventory]) -> BTreeMap<ProductId, Inventory> {
    stock.iter().map(|i| (i.product_id, (*i).clone())).collect()
}

fn billing(order: &Order) -> Billing {
    Billing {
        id: BillingId::new(),
        order_id: order.id,
        done: false,
    }
}

/// The inventory changes among `changes`, by product: each must be an update of a whole record;
/// the map holds the amount it leaves.
fn stock_after(changes: &[Change]) -> BTreeMap<ProductId, u32> {
    let mut after = BTreeMap::new();
    for change in changes {
        if let Entity::Inventory(inventory) = &change.entity {
            assert_eq!(change.action, Action::Updated, "stock moves are updates");
            let previous = after.insert(inventory.product_id, inventory.amount.get());
            assert!(previous.is_none(), "one change per inventory record");
        }
    }
    after
}

/// The single order change among `changes`, which must come first.
fn order_change(changes: &[Change]) -> (Action, Order) {
    match changes.first() {
        Some(Change {
            action,
            entity: Entity::Order(order),
        }) => (*action, order.clone()),
        other => panic!("expected the order change first, got {other:?}"),
    }
}

fn invalid_field(result: Result<impl std::fmt::Debug, DomainError>) -> &'static str {
    match result {
        Err(DomainError::Invalid { field, .. }) => field,
        other => panic!("expected Invalid, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Validation

#[test]
fn a_name_must_not_be_empty() {
    for blank in ["", "   ", "\t\n"] {
        assert_eq!(
            invalid_field(Name::parse("name", blank)),
            "name",
            "{blank:?}"
        );
    }
}

#[test]
fn a_name_is_trimmed() {
    let parsed = Name::parse("name", "  Ada  ").unwrap();

    assert_eq!(parsed.as_str(), "Ada");
}

#[test]
fn a_name_is_at_most_max_name_chars_long() {
    let longest = "é".repeat(MAX_NAME_CHARS);
    let too_long = "é".repeat(MAX_NAME_CHARS + 1);

    assert!(Name::parse("name", &longest).is_ok());
    assert_eq!(invalid_field(Name::parse("name", &too_long)), "name");
}

#[test]
fn a_name_has_no_control_characters() {
    assert_eq!(invalid_field(Name::parse("name", "Ada\u{7}")), "name");
}

#[test]
fn names_and_emails_refuse_invisible_and_direction_changing_characters() {
    for sneaky in [
        '\u{200B}', '\u{200D}', '\u{FEFF}', '\u{2060}', '\u{3164}', '\u{2800}', '\u{202E}',
    ] {
        // Alone (a name that looks empty), and inside an otherwise fine value.
        let alone = sneaky.to_string();
        assert_eq!(
            invalid_field(Name::parse("name", &alone)),
            "name",
            "{sneaky:?}"
        );
        let inside = format!("Bob{sneaky}gnp.exe");
        assert_eq!(
            invalid_field(Name::parse("name", &inside)),
            "name",
            "{sneaky:?}"
        );
        let email = format!("bob{sneaky}@example.com");
        assert_eq!(invalid_field(Email::parse(&email)), "email", "{sneaky:?}");
    }
    // Letters of other scripts and emoji stay welcome.
    for fine in ["Zoë", "李雷", "Ada 🚀", "Ольга"] {
        assert!(Name::parse("name", fine).is_ok(), "{fine}");
    }
}

#[test]
fn a_validation_error_names_the_field_it_was_given() {
    assert_eq!(invalid_field(Name::parse("title", "")), "title");
}

#[test]
fn an_email_must_be_plausible() {
    for good in [
        "ada@example.com",
        "a.b+c@mail.example.org",
        "  ada@example.com  ",
    ] {
        assert!(Email::parse(good).is_ok(), "{good:?} was refused");
    }
    for bad in [
        "",
        "ada",
        "@example.com",
        "ada@",
        "ada@example",
        "ada@@example.com",
        "ada@exa@mple.com",
        "a da@example.com",
        "ada@example..com",
        "ada@.example.com",
        "ada@example.com.",
    ] {
        assert_eq!(invalid_field(Email::parse(bad)), "email", "{bad:?}");
    }
}

#[test]
fn an_email_is_trimmed_and_bounded() {
    assert_eq!(
        Email::parse(" ada@example.com ").unwrap().as_str(),
        "ada@example.com"
    );
    let too_long = format!("{}@example.com", "a".repeat(MAX_EMAIL_CHARS));
    assert_eq!(invalid_field(Email::parse(&too_long)), "email");
}

#[test]
fn a_price_must_be_greater_than_zero() {
    assert_eq!(Money::price(1).map(Money::minor), Ok(1));
    for bad in [0, -1, i128::MIN] {
        assert_eq!(invalid_field(Money::price(bad)), "price", "{bad}");
    }
}

#[test]
fn a_price_is_at_most_max_price() {
    let max = i128::from(MAX_PRICE_MINOR);

    assert_eq!(Money::price(max).map(Money::minor), Ok(MAX_PRICE_MINOR));
    assert_eq!(invalid_field(Money::price(max + 1)), "price");
}

#[test]
fn an_amount_must_be_zero_or_more() {
    assert_eq!(Quantity::parse("amount", 0).map(Quantity::get), Ok(0));
    assert_eq!(Quantity::parse("amount", 7).map(Quantity::get), Ok(7));
    assert_eq!(invalid_field(Quantity::parse("amount", -1)), "amount");
}

#[test]
fn an_amount_is_at_most_max_quantity() {
    let max = i128::from(MAX_QUANTITY);

    assert_eq!(
        Quantity::parse("amount", max).map(Quantity::get),
        Ok(MAX_QUANTITY)
    );
    assert_eq!(invalid_field(Quantity::parse("amount", max + 1)), "amount");
}

#[test]
fn an_order_needs_at_least_one_product() {
    let result = OrderDraft::new(CustomerId::new(), vec![]);

    assert_eq!(invalid_field(result), "product_ids");
}

#[test]
fn an_order_lists_at_most_max_order_items() {
    let a = ProductId::new();

    assert!(OrderDraft::new(CustomerId::new(), vec![a; MAX_ORDER_ITEMS]).is_ok());
    let result = OrderDraft::new(CustomerId::new(), vec![a; MAX_ORDER_ITEMS + 1]);
    assert_eq!(invalid_field(result), "product_ids");
}

// ---------------------------------------------------------------------------------------------
// Customers

#[test]
fn creating_a_customer_records_it() {
    let id = CustomerId::new();

    let changes = decide::create_customer(id, customer_draft("Ada", "ada@example.com"));

    assert_eq!(
        changes,
        vec![Change::created(Customer {
            id,
            name: name("Ada"),
            email: email("ada@example.com"),
        })]
    );
}

#[test]
fn updating_a_customer_replaces_its_fields() {
    let current = customer();

    let changes = decide::update_customer(
        Some(&current),
        current.id,
        customer_draft("Grace", "grace@example.org"),
    )
    .unwrap();

    assert_eq!(
        changes,
        vec![Change::updated(Customer {
            id: current.id,
            name: name("Grace"),
            email: email("grace@example.org"),
        })]
    );
}

#[test]
fn updating_an_unknown_customer_is_not_found() {
    let id = CustomerId::new();

    let result = decide::update_customer(None, id, customer_draft("Ada", "ada@example.com"));

    assert_eq!(
        result,
        Err(DomainError::NotFound {
            kind: EntityKind::Customer,
            id: id.0
        })
    );
}

#[test]
fn deleting_an_unknown_customer_is_not_found() {
    let id = CustomerId::new();

    let result = decide::delete_customer(None, id);

    assert_eq!(
        result,
        Err(DomainError::NotFound {
            kind: EntityKind::Customer,
            id: id.0
        })
    );
}

#[test]
fn deleting_a_customer_records_its_last_state() {
    let current = customer();

    let changes = decide::delete_customer(Some(&current), current.id).unwrap();

    assert_eq!(changes, vec![Change::deleted(current)]);
}

// ---------------------------------------------------------------------------------------------
// Products

#[test]
fn creating_a_product_records_it() {
    let id = ProductId::new();

    let changes = decide::create_product(id, product_draft("Widget", 250));

    assert_eq!(
        changes,
        vec![Change::created(Product {
            id,
            name: name("Widget"),
            price: Money::from_minor(250).expect("an amount"),
        })]
    );
}

#[test]
fn updating_a_product_replaces_its_fields() {
    let current = product(100);

    let changes =
        decide::update_product(Some(&current), current.id, product_draft("Gadget", 999)).unwrap();

    assert_eq!(
        changes,
        vec![Change::updated(Product {
            id: current.id,
            name: name("Gadget"),
            price: Money::from_minor(999).expect("an amount"),
        })]
    );
}

#[test]
fn updating_an_unknown_product_is_not_found() {
    let id = ProductId::new();

    let result = decide::update_product(None, id, product_draft("Widget", 1));

    assert_eq!(
        result,
        Err(DomainError::NotFound {
            kind: EntityKind::Product,
            id: id.0
        })
    );
}

#[test]
fn deleting_an_unknown_product_is_not_found() {
    let id = ProductId::new();

    let result = decide::delete_product(None, id);

    assert_eq!(
        result,
        Err(DomainError::NotFound {
            kind: EntityKind::Product,
            id: id.0
        })
    );
}

#[test]
fn deleting_a_product_records_its_last_state() {
    let current = product(100);

    let changes = decide::delete_product(Some(&current), current.id).unwrap();

    assert_eq!(changes, vec![Change::deleted(current)]);
}

// ---------------------------------------------------------------------------------------------
// Inventory

#[test]
fn creating_inventory_records_the_stock_of_a_product() {
    let widget = product(100);
    let id = InventoryId::new();

    let changes =
        decide::create_inventory(id, inventory_draft(widget.id, 0), Some(&widget), None).unwrap();

    assert_eq!(
        changes,
        vec![Change::created(Inventory {
            id,
            product_id: widget.id,
            amount: Quantity::new(0).expect("a quantity"),
        })]
    );
}

#[test]
fn inventory_needs_an_existing_product() {
    let missing = ProductId::new();

    let result =
        decide::create_inventory(InventoryId::new(), inventory_draft(missing, 5), None, None);

    assert_eq!(
        result,
        Err(DomainError::UnknownReference {
            kind: EntityKind::Product,
            id: missing.0
        })
    );
}

#[test]
fn a_product_has_at_most_one_inventory_record() {
    let widget = product(100);
    let existing = InventoryId::new();

    let result = decide::create_inventory(
        InventoryId::new(),
        inventory_draft(widget.id, 5),
        Some(&widget),
        Some(existing),
    );

    assert_eq!(
        result,
        Err(DomainError::InventoryExists {
            product_id: widget.id.0,
            inventory_id: existing.0
        })
    );
}

#[test]
fn updating_inventory_sets_the_new_amount() {
    let current = stock_of(&product(100), 5);

    let changes = decide::update_inventory(
        Some(&current),
        current.id,
        inventory_draft(current.product_id, 12),
    )
    .unwrap();

    assert_eq!(
        changes,
        vec![Change::updated(Inventory {
            amount: Quantity::new(12).expect("a quantity"),
            ..current
        })]
    );
}

#[test]
fn updating_inventory_cannot_change_its_product() {
    let current = stock_of(&product(100), 5);

    let result = decide::update_inventory(
        Some(&current),
        current.id,
        inventory_draft(ProductId::new(), 5),
    );

    assert_eq!(invalid_field(result), "product_id");
}

#[test]
fn updating_unknown_inventory_is_not_found() {
    let id = InventoryId::new();

    let result = decide::update_inventory(None, id, inventory_draft(ProductId::new(), 1));

    assert_eq!(
        result,
        Err(DomainError::NotFound {
            kind: EntityKind::Inventory,
            id: id.0
        })
    );
}

#[test]
fn deleting_unknown_inventory_is_not_found() {
    let id = InventoryId::new();

    let result = decide::delete_inventory(None, id);

    assert_eq!(
        result,
        Err(DomainError::NotFound {
            kind: EntityKind::Inventory,
            id: id.0
        })
    );
}

#[test]
fn deleting_inventory_records_its_last_state() {
    let current = stock_of(&product(100), 5);

    let changes = decide::delete_inventory(Some(&current), current.id).unwrap();

    assert_eq!(changes, vec![Change::deleted(current)]);
}

// ---------------------------------------------------------------------------------------------
// Orders: placing

#[test]
fn an_order_needs_a_customer() {
    let ada = customer();
    let a = product(100);
    let a_stock = stock_of(&a, 5);
    let mut context = ctx(&ada, &[&a], &[&a_stock]);
    context.customer = None; // unknown or deleted

    let result = decide::create_order(OrderId::new(), order_draft(&ada, &[&a]), &context);

    assert_eq!(
        result,
        Err(DomainError::UnknownReference {
            kind: EntityKind::Customer,
            id: ada.id.0
        })
    );
}

#[test]
fn an_order_needs_the_customer_it_names() {
    let ada = customer();
    let someone_else = customer();
    let a = product(100);
    let a_stock = stock_of(&a, 5);
    let context = ctx(&someone_else, &[&a], &[&a_stock]);

    let result = decide::create_order(OrderId::new(), order_draft(&ada, &[&a]), &context);

    assert_eq!(
        result,
        Err(DomainError::UnknownReference {
            kind: EntityKind::Customer,
            id: ada.id.0
        })
    );
}

#[test]
fn an_order_needs_existing_products() {
    let ada = customer();
    let a = product(100);
    let unknown = product(100);
    let a_stock = stock_of(&a, 5);
    let context = ctx(&ada, &[&a], &[&a_stock]); // `unknown` was never looked up

    let result = decide::create_order(OrderId::new(), order_draft(&ada, &[&a, &unknown]), &context);

    assert_eq!(
        result,
        Err(DomainError::UnknownReference {
            kind: EntityKind::Product,
            id: unknown.id.0
        })
    );
}

#[test]
fn an_order_cannot_list_a_deleted_product() {
    let ada = customer();
    let a = product(100);
    let a_stock = stock_of(&a, 5);
    let mut context = ctx(&ada, &[&a], &[&a_stock]);
    context.products.insert(a.id, None); // looked up, found deleted

    let result = decide::create_order(OrderId::new(), order_draft(&ada, &[&a]), &context);

    assert_eq!(
        result,
        Err(DomainError::UnknownReference {
            kind: EntityKind::Product,
            id: a.id.0
        })
    );
}

#[test]
fn an_order_needs_enough_stock() {
    let ada = customer();
    let a = product(100);
    let a_stock = stock_of(&a, 0);
    let context = ctx(&ada, &[&a], &[&a_stock]);

    let result = decide::create_order(OrderId::new(), order_draft(&ada, &[&a]), &context);

    assert_eq!(
        result,
        Err(DomainError::OutOfStock {
            product_id: a.id.0,
            requested: 1,
            available: 0
        })
    );
}

#[test]
fn a_product_listed_twice_needs_two_units() {
    let ada = customer();
    let a = product(100);
    let a_stock = stock_of(&a, 1);
    let context = ctx(&ada, &[&a], &[&a_stock]);

    let result = decide::create_order(OrderId::new(), order_draft(&ada, &[&a, &a]), &context);

    assert_eq!(
        result,
        Err(DomainError::OutOfStock {
            product_id: a.id.0,
            requested: 2,
            available: 1
        })
    );
}

#[test]
fn a_product_without_an_inventory_record_has_no_stock() {
    let ada = customer();
    let a = product(100);
    let context = ctx(&ada, &[&a], &[]);

    let result = decide::create_order(OrderId::new(), order_draft(&ada, &[&a]), &context);

    assert_eq!(
        result,
        Err(DomainError::OutOfStock {
            product_id: a.id.0,
            requested: 1,
            available: 0
        })
    );
}

#[test]
fn a_refused_order_takes_nothing_even_when_other_products_are_in_stock() {
    let ada = customer();
    let plenty = product(100);
    let none_left = product(100);
    let plenty_stock = stock_of(&plenty, 10);
    let none_left_stock = stock_of(&none_left, 0);
    let context = ctx(
        &ada,
        &[&plenty, &none_left],
        &[&plenty_stock, &none_left_stock],
    );

    let result = decide::create_order(
        OrderId::new(),
        order_draft(&ada, &[&plenty, &none_left]),
        &context,
    );

    // All or nothing: a refusal carries no changes at all, not even the in-stock product's.
    assert!(
        matches!(result, Err(DomainError::OutOfStock { product_id, .. }) if product_id == none_left.id.0)
    );
}

#[test]
fn an_order_takes_one_unit_per_listed_product() {
    let ada = customer();
    let a = product(100);
    let b = product(250);
    let a_stock = stock_of(&a, 5);
    let b_stock = stock_of(&b, 3);
    let context = ctx(&ada, &[&a, &b], &[&a_stock, &b_stock]);
    let id = OrderId::new();

    let changes = decide::create_order(id, order_draft(&ada, &[&a, &b, &a]), &context).unwrap();

    let (action, placed) = order_change(&changes);
    assert_eq!(action, Action::Created);
    assert_eq!(placed.id, id);
    assert_eq!(placed.customer_id, ada.id);
    assert_eq!(placed.product_ids, vec![a.id, b.id, a.id]);
    assert_eq!(
        changes.len(),
        3,
        "the order and one change per stocked product"
    );
    assert_eq!(
        stock_after(&changes),
        BTreeMap::from([(a.id, 3), (b.id, 2)])
    );
    assert!(changes[1..].contains(&Change::updated(Inventory {
        amount: Quantity::new(3).expect("a quantity"),
        ..a_stock
    })));
    assert!(changes[1..].contains(&Change::updated(Inventory {
        amount: Quantity::new(2).expect("a quantity"),
        ..b_stock
    })));
}

#[test]
fn an_order_may_take_the_last_units() {
    let ada = customer();
    let a = product(100);
    let a_stock = stock_of(&a, 2);
    let context = ctx(&ada, &[&a], &[&a_stock]);

    let changes =
        decide::create_order(OrderId::new(), order_draft(&ada, &[&a, &a]), &context).unwrap();

    assert_eq!(stock_after(&changes), BTreeMap::from([(a.id, 0)]));
}

#[test]
fn an_order_total_is_the_sum_of_its_prices_counting_repeats() {
    let ada = customer();
    let a = product(199);
    let b = product(1_000);
    let a_stock = stock_of(&a, 5);
    let b_stock = stock_of(&b, 5);
    let context = ctx(&ada, &[&a, &b], &[&a_stock, &b_stock]);

    let changes = decide::create_order(
        OrderId::new(),
        order_draft(&ada, &[&a, &a, &b, &a]),
        &context,
    )
    .unwrap();

    let (_, placed) = order_change(&changes);
    assert_eq!(
        placed.total,
        Money::from_minor(199 * 3 + 1_000).expect("an amount")
    );
}

// ---------------------------------------------------------------------------------------------
// Orders: changing

#[test]
fn updating_an_unknown_order_is_not_found() {
    let ada = customer();
    let a = product(100);
    let a_stock = stock_of(&a, 5);
    let context = ctx(&ada, &[&a], &[&a_stock]);
    let id = OrderId::new();

    let result = decide::update_order(None, id, order_draft(&ada, &[&a]), &context);

    assert_eq!(
        result,
        Err(DomainError::NotFound {
            kind: EntityKind::Order,
            id: id.0
        })
    );
}

#[test]
fn updating_an_order_gives_back_old_units_and_takes_new_ones_as_a_net_move() {
    let ada = customer();
    let a = product(100);
    let b = product(200);
    let c = product(300);
    let current = order(&ada, &[&a, &a, &b]);
    let a_stock = stock_of(&a, 10);
    let b_stock = stock_of(&b, 10);
    let c_stock = stock_of(&c, 10);
    let context = ctx(&ada, &[&a, &b, &c], &[&a_stock, &b_stock, &c_stock]);

    let changes = decide::update_order(
        Some(&current),
        current.id,
        order_draft(&ada, &[&a, &c]),
        &context,
    )
    .unwrap();

    let (action, changed) = order_change(&changes);
    assert_eq!(action, Action::Updated);
    assert_eq!(changed.id, current.id);
    assert_eq!(changed.product_ids, vec![a.id, c.id]);
    assert_eq!(
        changed.total,
        Money::from_minor(100 + 300).expect("an amount")
    );
    // A: 2 held, 1 wanted -> +1; B: 1 held, 0 wanted -> +1; C: 0 held, 1 wanted -> -1.
    assert_eq!(
        stock_after(&changes),
        BTreeMap::from([(a.id, 11), (b.id, 11), (c.id, 9)])
    );
}

#[test]
fn updating_an_order_leaves_unchanged_products_stock_alone() {
    let ada = customer();
    let a = product(100);
    let b = product(200);
    let current = order(&ada, &[&a, &b]);
    let a_stock = stock_of(&a, 4);
    let b_stock = stock_of(&b, 4);
    let context = ctx(&ada, &[&a, &b], &[&a_stock, &b_stock]);

    let changes = decide::update_order(
        Some(&current),
        current.id,
        order_draft(&ada, &[&b, &a, &b]),
        &context,
    )
    .unwrap();

    // A is held once and wanted once: no change to its record. B takes one more.
    assert_eq!(stock_after(&changes), BTreeMap::from([(b.id, 3)]));
}

#[test]
fn updating_an_order_reuses_the_units_it_already_holds() {
    let ada = customer();
    let a = product(100);
    let current = order(&ada, &[&a, &a]);
    let a_stock = stock_of(&a, 0); // the order holds the last two units
    let context = ctx(&ada, &[&a], &[&a_stock]);

    let changes = decide::update_order(
        Some(&current),
        current.id,
        order_draft(&ada, &[&a, &a]),
        &context,
    )
    .unwrap();

    assert_eq!(changes.len(), 1, "only the order itself changes");
    assert_eq!(stock_after(&changes), BTreeMap::new());
}

#[test]
fn updating_an_order_beyond_the_stock_is_out_of_stock() {
    let ada = customer();
    let a = product(100);
    let current = order(&ada, &[&a]);
    let a_stock = stock_of(&a, 1);
    let context = ctx(&ada, &[&a], &[&a_stock]);

    let result = decide::update_order(
        Some(&current),
        current.id,
        order_draft(&ada, &[&a, &a, &a]),
        &context,
    );

    // The order holds one unit already, so it needs two more and only one is left.
    assert_eq!(
        result,
        Err(DomainError::OutOfStock {
            product_id: a.id.0,
            requested: 2,
            available: 1
        })
    );
}

#[test]
fn updating_an_order_to_a_product_without_inventory_is_out_of_stock() {
    let ada = customer();
    let a = product(100);
    let c = product(300);
    let current = order(&ada, &[&a]);
    let a_stock = stock_of(&a, 5);
    let context = ctx(&ada, &[&a, &c], &[&a_stock]);

    let result = decide::update_order(
        Some(&current),
        current.id,
        order_draft(&ada, &[&c]),
        &context,
    );

    assert_eq!(
        result,
        Err(DomainError::OutOfStock {
            product_id: c.id.0,
            requested: 1,
            available: 0
        })
    );
}

#[test]
fn updating_an_order_needs_its_customer_and_products() {
    let ada = customer();
    let a = product(100);
    let unknown = product(100);
    let current = order(&ada, &[&a]);
    let a_stock = stock_of(&a, 5);

    let mut no_customer = ctx(&ada, &[&a], &[&a_stock]);
    no_customer.customer = None;
    let result = decide::update_order(
        Some(&current),
        current.id,
        order_draft(&ada, &[&a]),
        &no_customer,
    );
    assert_eq!(
        result,
        Err(DomainError::UnknownReference {
            kind: EntityKind::Customer,
            id: ada.id.0
        })
    );

    let context = ctx(&ada, &[&a], &[&a_stock]);
    let result = decide::update_order(
        Some(&current),
        current.id,
        order_draft(&ada, &[&unknown]),
        &context,
    );
    assert_eq!(
        result,
        Err(DomainError::UnknownReference {
            kind: EntityKind::Product,
            id: unknown.id.0
        })
    );
}

#[test]
fn an_order_cannot_change_customer() {
    let ada = customer();
    let bob = customer();
    let a = product(100);
    let current = order(&ada, &[&a]);
    let a_stock = stock_of(&a, 5);

    let result = decide::update_order(
        Some(&current),
        current.id,
        order_draft(&bob, &[&a]),
        &ctx(&bob, &[&a], &[&a_stock]),
    );

    assert!(
        matches!(
            result,
            Err(DomainError::Invalid {
                field: "customer_id",
                ..
            })
        ),
        "{result:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Orders: deleting

#[test]
fn a_billed_order_cannot_be_deleted() {
    let ada = customer();
    let a = product(100);
    let current = order(&ada, &[&a]);
    let billing_id = BillingId::new();

    let result = decide::delete_order(
        Some(&current),
        current.id,
        &stock_map(&[&stock_of(&a, 1)]),
        Some(billing_id),
    );

    assert_eq!(
        result,
        Err(DomainError::OrderBilled {
            order_id: current.id.0,
            billing_id: billing_id.0
        })
    );
}

#[test]
fn deleting_an_unknown_order_is_not_found() {
    let id = OrderId::new();

    let result = decide::delete_order(None, id, &BTreeMap::new(), None);

    assert_eq!(
        result,
        Err(DomainError::NotFound {
            kind: EntityKind::Order,
            id: id.0
        })
    );
}

#[test]
fn deleting_an_order_gives_all_its_units_back() {
    let ada = customer();
    let a = product(100);
    let b = product(200);
    let current = order(&ada, &[&a, &b, &a]);
    let a_stock = stock_of(&a, 0);
    let b_stock = stock_of(&b, 7);

    let changes = decide::delete_order(
        Some(&current),
        current.id,
        &stock_map(&[&a_stock, &b_stock]),
        None,
    )
    .unwrap();

    assert_eq!(changes[0], Change::deleted(current.clone()));
    assert_eq!(
        stock_after(&changes),
        BTreeMap::from([(a.id, 2), (b.id, 8)])
    );
}

#[test]
fn deleting_an_order_skips_products_whose_inventory_record_is_gone() {
    let ada = customer();
    let a = product(100);
    let gone = product(200);
    let current = order(&ada, &[&a, &gone, &gone]);
    let a_stock = stock_of(&a, 3);

    let changes =
        decide::delete_order(Some(&current), current.id, &stock_map(&[&a_stock]), None).unwrap();

    assert_eq!(changes[0], Change::deleted(current.clone()));
    assert_eq!(stock_after(&changes), BTreeMap::from([(a.id, 4)]));
}

#[test]
fn giving_stock_back_never_leaves_a_record_above_max_quantity() {
    let ada = customer();
    let a = product(100);
    let current = order(&ada, &[&a]);
    // After the order took its unit, the record was set back to the largest valid amount.
    let a_stock = stock_of(&a, MAX_QUANTITY);

    let result = decide::delete_order(Some(&current), current.id, &stock_map(&[&a_stock]), None);

    // Whatever the domain decides (refuse, or cap), no record may hold more than MAX_QUANTITY.
    if let Ok(changes) = result {
        for (product_id, amount) in stock_after(&changes) {
            assert!(
                amount <= MAX_QUANTITY,
                "product {product_id} would hold {amount} > {MAX_QUANTITY} units"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Billing

#[test]
fn billing_an_order_records_it() {
    let placed = order(&customer(), &[&product(100)]);
    let id = BillingId::new();
    let draft = BillingDraft {
        order_id: placed.id,
        done: false,
    };

    let changes = decide::create_billing(id, draft, Some(&placed), None).unwrap();

    assert_eq!(
        changes,
        vec![Change::created(Billing {
            id,
            order_id: placed.id,
            done: false,
        })]
    );
}

#[test]
fn billing_needs_an_existing_order() {
    let missing = OrderId::new();
    let draft = BillingDraft {
        order_id: missing,
        done: true,
    };

    let result = decide::create_billing(BillingId::new(), draft, None, None);

    assert_eq!(
        result,
        Err(DomainError::UnknownReference {
            kind: EntityKind::Order,
            id: missing.0
        })
    );
}

#[test]
fn an_order_is_billed_at_most_once() {
    let placed = order(&customer(), &[&product(100)]);
    let draft = BillingDraft {
        order_id: placed.id,
        done: true,
    };

    let result = decide::create_billing(
        BillingId::new(),
        draft,
        Some(&placed),
        Some(BillingId::new()),
    );

    assert_eq!(
        result,
        Err(DomainError::AlreadyBilled {
            order_id: placed.id.0
        })
    );
}

#[test]
fn updating_a_billing_sets_done() {
    let current = billing(&order(&customer(), &[&product(100)]));
    let draft = BillingDraft {
        order_id: current.order_id,
        done: true,
    };

    let changes = decide::update_billing(Some(&current), current.id, draft).unwrap();

    assert_eq!(
        changes,
        vec![Change::updated(Billing {
            done: true,
            ..current
        })]
    );
}

#[test]
fn updating_a_billing_cannot_change_its_order() {
    let current = billing(&order(&customer(), &[&product(100)]));
    let draft = BillingDraft {
        order_id: OrderId::new(),
        done: true,
    };

    let result = decide::update_billing(Some(&current), current.id, draft);

    assert_eq!(invalid_field(result), "order_id");
}

#[test]
fn updating_an_unknown_billing_is_not_found() {
    let id = BillingId::new();
    let draft = BillingDraft {
        order_id: OrderId::new(),
        done: true,
    };

    let result = decide::update_billing(None, id, draft);

    assert_eq!(
        result,
        Err(DomainError::NotFound {
            kind: EntityKind::Billing,
            id: id.0
        })
    );
}

#[test]
fn deleting_an_unknown_billing_is_not_found() {
    let id = BillingId::new();

    let result = decide::delete_billing(None, id);

    assert_eq!(
        result,
        Err(DomainError::NotFound {
            kind: EntityKind::Billing,
            id: id.0
        })
    );
}

#[test]
fn deleting_a_billing_records_its_last_state() {
    let current = billing(&order(&customer(), &[&product(100)]));

    let changes = decide::delete_billing(Some(&current), current.id).unwrap();

    assert_eq!(changes, vec![Change::deleted(current)]);
}

// ---------------------------------------------------------------------------------------------
// Head::apply

/// Folds `(version, change)` pairs into a head, in the order given.
fn replay<'a>(
    head: Head<Customer>,
    log: impl IntoIterator<Item = &'a (u64, Change)>,
) -> Head<Customer> {
    log.into_iter()
        .fold(head, |head, (version, change)| head.apply(*version, change))
}

fn renamed(c: &Customer, to: &str) -> Customer {
    Customer {
        name: name(to),
        ..c.clone()
    }
}

#[test]
fn a_new_head_never_existed() {
    let head = Head::<Customer>::default();

    assert_eq!(head, Head::new(0, None));
    assert!(!head.is_deleted());
}

#[test]
fn created_updated_deleted_gives_the_latest_state() {
    let ada = customer();
    let grace = renamed(&ada, "Grace");

    let created = Head::<Customer>::default().apply(1, &Change::created(ada.clone()));
    assert_eq!(created, Head::new(1, Some(ada.clone())));
    assert!(!created.is_deleted());

    let updated = created.apply(2, &Change::updated(grace.clone()));
    assert_eq!(updated, Head::new(2, Some(grace.clone())));

    let deleted = updated.apply(3, &Change::deleted(grace));
    assert_eq!(deleted, Head::new(3, None));
    assert!(deleted.is_deleted());
}

#[test]
fn a_change_at_or_below_the_heads_version_is_ignored() {
    let ada = customer();
    let log = [
        (1, Change::created(ada.clone())),
        (2, Change::updated(renamed(&ada, "Grace"))),
    ];
    let head = replay(Head::default(), &log);

    let replayed = replay(head.clone(), &log);
    let same_version = head
        .clone()
        .apply(2, &Change::updated(renamed(&ada, "Other")));
    let older = head.clone().apply(1, &Change::deleted(ada.clone()));

    assert_eq!(replayed, head);
    assert_eq!(same_version, head);
    assert_eq!(older, head);
}

#[test]
fn a_stale_update_after_a_delete_does_not_resurrect() {
    let ada = customer();
    let head = replay(
        Head::default(),
        &[
            (1, Change::created(ada.clone())),
            (3, Change::deleted(ada.clone())),
        ],
    );

    let after = head.apply(2, &Change::updated(renamed(&ada, "Grace")));

    assert_eq!(after, Head::new(3, None));
    assert!(after.is_deleted());
}

#[test]
fn a_re_create_after_a_delete_brings_the_entity_back() {
    let ada = customer();
    let reborn = renamed(&ada, "Ada Again");
    let deleted = replay(
        Head::default(),
        &[
            (1, Change::created(ada.clone())),
            (2, Change::deleted(ada.clone())),
        ],
    );

    let head = deleted.apply(3, &Change::created(reborn.clone()));

    assert_eq!(head, Head::new(3, Some(reborn)));
    assert!(!head.is_deleted());
}

#[test]
fn a_change_for_another_kind_is_ignored() {
    let ada = customer();
    let head = Head::<Customer>::default().apply(1, &Change::created(ada.clone()));

    let after = head
        .clone()
        .apply(2, &Change::deleted(product(100)))
        .apply(3, &Change::updated(stock_of(&product(100), 1)));

    assert_eq!(after, head);
    let untouched = Head::<Product>::default().apply(1, &Change::created(ada));
    assert_eq!(untouched, Head::default());
}

#[test]
fn is_deleted_only_once_an_existing_entity_was_deleted() {
    let ada = customer();

    assert!(!Head::<Customer>::new(0, None).is_deleted());
    assert!(!Head::new(4, Some(ada)).is_deleted());
    assert!(Head::<Customer>::new(4, None).is_deleted());
}
