//! A realistic event log for the replay benchmarks, written through the store's real append.
//!
//! A small model of a shop (customers, products with stock, live orders) decides each next
//! command the way the services would — an order takes stock from each product it lists, an
//! update or delete gives stock back, a billing claims its order — and turns it into an
//! [`Append`] with the versions it expects. The appends go through
//! [`EventStore::append_guarded_pipelined`], so every event is a real, guarded event in the
//! real format with store-wide IDs: what the projector replays is what the shop would have
//! written. The model is the only writer, so its expectations always hold; a failed append is a
//! bug and stops the bench.

use anyhow::Context;
use fake::faker::internet::en::SafeEmail;
use fake::faker::lorem::en::Words;
use fake::faker::name::en::Name as FakeName;
use fake::Fake;
use indicatif::ProgressBar;
use ordershop_domain::{
    Action, Billing, BillingId, Change, Customer, CustomerId, Email, Entity, EntityKind, Inventory,
    InventoryId, Money, Name, Order, OrderId, Product, ProductId, Quantity,
};
use ordershop_eventstore::{Append, EventStore, UniqueIndex};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use uuid::Uuid;

/// Appends per pipeline while writing the log.
const PIPELINE: usize = 500;
/// Stock each product starts with: enough that no order of a 1M-event log runs out.
const START_STOCK: u32 = 100_000_000;

struct LiveOrder {
    order: Order,
    billed: bool,
}

/// The writer's model of the shop.
pub struct ShopModel {
    rng: StdRng,
    customers: Vec<Customer>,
    products: Vec<Product>,
    inventory: Vec<Inventory>,
    orders: Vec<LiveOrder>,
    /// Latest version of every entity written.
    versions: HashMap<Uuid, u64>,
    /// Events written so far.
    pub events: u64,
}

fn name(raw: &str) -> anyhow::Result<Name> {
    Name::parse("name", raw).map_err(|e| anyhow::anyhow!("generated name `{raw}`: {e}"))
}

fn fake_customer(rng: &mut StdRng, n: usize) -> anyhow::Result<Customer> {
    let full: String = FakeName().fake_with_rng(rng);
    let email: String = SafeEmail().fake_with_rng(rng);
    let email = format!("{n}.{email}");
    Ok(Customer {
        id: CustomerId::new(),
        name: name(&full)?,
        email: Email::parse(&email).map_err(|e| anyhow::anyhow!("generated email: {e}"))?,
    })
}

impl ShopModel {
    pub fn new() -> Self {
        Self {
            rng: StdRng::seed_from_u64(7),
            customers: Vec::new(),
            products: Vec::new(),
            inventory: Vec::new(),
            orders: Vec::new(),
            versions: HashMap::new(),
            events: 0,
        }
    }

    /// The appends that create `customers` customers and `products` products with stock.
    pub fn seed(&mut self, customers: usize, products: usize) -> anyhow::Result<Vec<Append>> {
        let mut appends = Vec::with_capacity(customers + products * 2);
        for _ in 0..customers {
            appends.push(self.new_customer()?);
        }
        for _ in 0..products {
            let words: Vec<String> = Words(1..3).fake_with_rng(&mut self.rng);
            let product = Product {
                id: ProductId::new(),
                name: name(&words.join(" "))?,
                price: Money::from_minor(self.rng.random_range(100..=20_000))?,
            };
            let inventory = Inventory {
                id: InventoryId::new(),
                product_id: product.id,
                amount: Quantity::new(START_STOCK)?,
            };
            appends.push(self.record(Append::new().change(created(product.clone().into()))));
            appends.push(
                self.record(
                    Append::new()
                        .claim(
                            UniqueIndex::InventoryByProduct,
                            product.id.0,
                            inventory.id.0,
                        )
                        .change(created(inventory.clone().into())),
                ),
            );
            self.products.push(product);
            self.inventory.push(inventory);
        }
        Ok(appends)
    }

    fn version(&self, id: Uuid) -> u64 {
        self.versions.get(&id).copied().unwrap_or_default()
    }

    /// Notes the versions an append will give its entities, and counts its events.
    fn record(&mut self, append: Append) -> Append {
        for e in &append.events {
            self.versions.insert(e.change.entity.id(), e.version);
        }
        self.events += append.events.len() as u64;
        append
    }

    fn new_customer(&mut self) -> anyhow::Result<Append> {
        let customer = fake_customer(&mut self.rng, self.customers.len())?;
        self.customers.push(customer.clone());
        Ok(self.record(Append::new().change(created(customer.into()))))
    }

    /// Adds `delta` units to the stock of the products (by index), expecting their versions.
    fn stock_changes(&mut self, mut append: Append, deltas: &HashMap<usize, i64>) -> Append {
        let mut touched: Vec<(&usize, &i64)> = deltas.iter().filter(|(_, d)| **d != 0).collect();
        touched.sort();
        for (&i, &delta) in touched {
            let Some(inventory) = self.inventory.get_mut(i) else {
                continue;
            };
            let amount = (i64::from(inventory.amount.get()) + delta)
                .clamp(0, i64::from(ordershop_domain::value::MAX_QUANTITY));
            // Within 0..=MAX_QUANTITY, so always a quantity.
            inventory.amount = Quantity::new(amount as u32).unwrap_or_default();
            let id = inventory.id.0;
            let version = self.versions.get(&id).copied().unwrap_or_default();
            append = append
                .expect(EntityKind::Inventory, id, version)
                .change(Change {
                    action: Action::Updated,
                    entity: inventory.clone().into(),
                });
        }
        append
    }

    fn basket(&mut self) -> Vec<usize> {
        let units = self.rng.random_range(1..=3);
        (0..units)
            .map(|_| self.rng.random_range(0..self.products.len().max(1)))
            .collect()
    }

    fn order_of(&mut self, id: OrderId, customer: CustomerId, basket: &[usize]) -> Order {
        Order {
            id,
            product_ids: basket
                .iter()
                .filter_map(|i| self.products.get(*i).map(|p| p.id))
                .collect(),
            customer_id: customer,
            total: basket
                .iter()
                .filter_map(|i| self.products.get(*i).map(|p| p.price))
                .sum(),
        }
    }

    fn product_index(&self, id: ProductId) -> Option<usize> {
        self.products.iter().position(|p| p.id == id)
    }

    /// The next command of a busy shop: mostly orders (each with its stock changes), some
    /// order updates, deletes and billings, a few customer sign-ups and changes.
    pub fn next_append(&mut self) -> anyhow::Result<Append> {
        if self.customers.is_empty() || self.products.is_empty() {
            anyhow::bail!("seed the model first");
        }
        let roll = self.rng.random_range(0..100);
        let unbilled: Vec<usize> = self
            .orders
            .iter()
            .enumerate()
            .rev()
            .take(64)
            .filter(|(_, o)| !o.billed)
            .map(|(i, _)| i)
            .collect();
        if roll < 3 {
            return self.new_customer();
        }
        if roll < 6 {
            let i = self.rng.random_range(0..self.customers.len());
            let full: String = FakeName().fake_with_rng(&mut self.rng);
            self.customers[i].name = name(&full)?;
            let customer = self.customers[i].clone();
            let version = self.version(customer.id.0);
            return Ok(self.record(
                Append::new()
                    .expect(EntityKind::Customer, customer.id.0, version)
                    .change(Change {
                        action: Action::Updated,
                        entity: customer.into(),
                    }),
            ));
        }
        if let Some(&at) = unbilled.first() {
            if roll < 16 {
                // Bill an unbilled order.
                self.orders[at].billed = true;
                let order_id = self.orders[at].order.id;
                let billing = Billing {
                    id: BillingId::new(),
                    order_id,
                    done: self.rng.random_bool(0.5),
                };
                let version = self.version(order_id.0);
                return Ok(self.record(
                    Append::new()
                        .expect(EntityKind::Order, order_id.0, version)
                        .claim(UniqueIndex::BillingByOrder, order_id.0, billing.id.0)
                        .change(created(billing.into())),
                ));
            }
            if roll < 24 {
                // Change an unbilled order's basket: stock back for the old, taken for the new.
                let old = self.orders[at].order.clone();
                let basket = self.basket();
                let changed = self.order_of(old.id, old.customer_id, &basket);
                let mut deltas: HashMap<usize, i64> = HashMap::new();
                for p in &old.product_ids {
                    if let Some(i) = self.product_index(*p) {
                        *deltas.entry(i).or_default() += 1;
                    }
                }
                for i in &basket {
                    *deltas.entry(*i).or_default() -= 1;
                }
                self.orders[at].order = changed.clone();
                let version = self.version(old.id.0);
                let append = Append::new()
                    .expect(EntityKind::Order, old.id.0, version)
                    .change(Change {
                        action: Action::Updated,
                        entity: changed.into(),
                    });
                let append = self.stock_changes(append, &deltas);
                return Ok(self.record(append));
            }
            if roll < 28 {
                // Delete an unbilled order, giving its stock back.
                let gone = self.orders.swap_remove(at).order;
                let mut deltas: HashMap<usize, i64> = HashMap::new();
                for p in &gone.product_ids {
                    if let Some(i) = self.product_index(*p) {
                        *deltas.entry(i).or_default() += 1;
                    }
                }
                let version = self.version(gone.id.0);
                let append = Append::new()
                    .expect(EntityKind::Order, gone.id.0, version)
                    .change(Change {
                        action: Action::Deleted,
                        entity: gone.into(),
                    });
                let append = self.stock_changes(append, &deltas);
                return Ok(self.record(append));
            }
        }
        // Place an order.
        let customer = self.customers[self.rng.random_range(0..self.customers.len())].id;
        let basket = self.basket();
        let order = self.order_of(OrderId::new(), customer, &basket);
        let mut deltas: HashMap<usize, i64> = HashMap::new();
        for i in &basket {
            *deltas.entry(*i).or_default() -= 1;
        }
        let append = Append::new().change(created(order.clone().into()));
        let append = self.stock_changes(append, &deltas);
        // Keep the live list bounded: old orders stay in the log, the model forgets them.
        if self.orders.len() >= 4_096 {
            self.orders.swap_remove(0);
        }
        self.orders.push(LiveOrder {
            order,
            billed: false,
        });
        Ok(self.record(append))
    }

    /// The appends of `count` new orders only (for filling the order lists of query benches).
    pub fn orders_only(&mut self, count: usize) -> anyhow::Result<Vec<Append>> {
        if self.customers.is_empty() || self.products.is_empty() {
            anyhow::bail!("seed the model first");
        }
        let mut appends = Vec::with_capacity(count);
        for _ in 0..count {
            let customer = self.customers[self.rng.random_range(0..self.customers.len())].id;
            let basket = self.basket();
            let order = self.order_of(OrderId::new(), customer, &basket);
            appends.push(self.record(Append::new().change(created(order.into()))));
        }
        Ok(appends)
    }
}

impl Default for ShopModel {
    fn default() -> Self {
        Self::new()
    }
}

fn created(entity: Entity) -> Change {
    Change {
        action: Action::Created,
        entity,
    }
}

/// Appends all of `appends`, in pipelines of [`PIPELINE`], in order.
pub async fn append_all(store: &EventStore, appends: &[Append]) -> anyhow::Result<()> {
    for chunk in appends.chunks(PIPELINE) {
        for result in store.append_guarded_pipelined(chunk).await? {
            result.context("the bench's own append was refused")?;
        }
    }
    Ok(())
}

/// Writes commands from the model until the log holds at least `target` events.
pub async fn write_until(
    store: &EventStore,
    model: &mut ShopModel,
    target: u64,
    bar: &ProgressBar,
) -> anyhow::Result<()> {
    bar.set_length(target);
    bar.set_position(model.events);
    // Each append writes at least one event, so this many rounds always suffice.
    let rounds = target.saturating_sub(model.events) / PIPELINE as u64 + 1;
    for _ in 0..rounds {
        if model.events >= target {
            break;
        }
        let mut batch = Vec::with_capacity(PIPELINE);
        while batch.len() < PIPELINE && model.events < target {
            batch.push(model.next_append()?);
        }
        append_all(store, &batch).await?;
        bar.set_position(model.events);
    }
    bar.finish_and_clear();
    Ok(())
}
