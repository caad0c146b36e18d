//! A realistic event log for the replay benchmarks, written through the store's real append.
//!
//! A small model of a shop (customers, products with stock, live orders) picks each next
//! command the way a busy shop's clients would, and the domain decides it: the changes come
//! from [`ordershop_domain::decide`] given the model's current state, exactly as a service gets
//! them (an order takes stock from each product it lists, an update or delete gives stock back,
//! a billing claims its order). A command the domain refuses (say, out of stock) writes
//! nothing, as a shop would answer 409, and the model picks another. The changes become an
//! [`Append`] expecting the versions of the entities they update; the appends go through
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
use ordershop_domain::decide::{
    self, BillingDraft, CustomerDraft, InventoryDraft, OrderContext, OrderDraft, ProductDraft,
};
use ordershop_domain::{
    Action, BillingId, Change, Customer, CustomerId, DomainError, Email, Entity, EntityKind,
    Inventory, InventoryId, Money, Name, Order, OrderId, Product, ProductId, Quantity,
};
use ordershop_eventstore::{Append, EventStore, UniqueIndex};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, HashMap};
use uuid::Uuid;

/// Appends per pipeline while writing the log.
const PIPELINE: usize = 500;
/// Stock each product starts with: enough that no order of a 1M-event log runs out.
const START_STOCK: u32 = 100_000_000;
/// Refused commands in a row after which the model gives up (its shop has run dry).
const MAX_REFUSALS: usize = 1_000;

struct LiveOrder {
    order: Order,
    billed: bool,
}

/// The writer's model of the shop.
pub struct ShopModel {
    rng: StdRng,
    customers: Vec<Customer>,
    /// Where each customer is in `customers`.
    customer_at: HashMap<CustomerId, usize>,
    products: Vec<Product>,
    /// Where each product is in `products`.
    product_at: HashMap<ProductId, usize>,
    /// The stock record of each product.
    stock: BTreeMap<ProductId, Inventory>,
    orders: Vec<LiveOrder>,
    /// Latest version of every entity written.
    versions: HashMap<Uuid, u64>,
    /// Events written so far.
    pub events: u64,
}

fn name(raw: &str) -> anyhow::Result<Name> {
    Name::parse("name", raw).map_err(|e| anyhow::anyhow!("generated name `{raw}`: {e}"))
}

fn customer_draft(rng: &mut StdRng, n: usize) -> anyhow::Result<CustomerDraft> {
    let full: String = FakeName().fake_with_rng(rng);
    let email: String = SafeEmail().fake_with_rng(rng);
    let email = format!("{n}.{email}");
    Ok(CustomerDraft {
        name: name(&full)?,
        email: Email::parse(&email).map_err(|e| anyhow::anyhow!("generated email: {e}"))?,
    })
}

/// What the model makes of a decision: the changes to append, or `None` when the domain
/// refused the command. A refusal of input the model generated itself is a bug.
fn decided(result: Result<Vec<Change>, DomainError>) -> anyhow::Result<Option<Vec<Change>>> {
    match result {
        Ok(changes) => Ok(Some(changes)),
        Err(DomainError::OutOfStock { .. }) => Ok(None),
        Err(e) => Err(anyhow::anyhow!(
            "the domain refused the model's command: {e}"
        )),
    }
}

impl ShopModel {
    pub fn new() -> Self {
        Self {
            rng: StdRng::seed_from_u64(7),
            customers: Vec::new(),
            customer_at: HashMap::new(),
            products: Vec::new(),
            product_at: HashMap::new(),
            stock: BTreeMap::new(),
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
            let draft = ProductDraft {
                name: name(&words.join(" "))?,
                price: Money::from_minor(self.rng.random_range(100..=20_000))?,
            };
            let product_id = ProductId::new();
            let changes = decide::create_product(product_id, draft);
            appends.push(self.commit(Append::new(), changes));
            let inventory_id = InventoryId::new();
            let draft = InventoryDraft {
                product_id,
                amount: Quantity::new(START_STOCK)?,
            };
            let product = self.product_at.get(&product_id).map(|&i| &self.products[i]);
            let changes = decide::create_inventory(inventory_id, draft, product, None)
                .context("the domain refused the model's stock")?;
            let claim = Append::new().claim(
                UniqueIndex::InventoryByProduct,
                product_id.0,
                inventory_id.0,
            );
            appends.push(self.commit(claim, changes));
        }
        Ok(appends)
    }

    fn version(&self, id: Uuid) -> u64 {
        self.versions.get(&id).copied().unwrap_or_default()
    }

    /// Turns decided changes into an append on `base`: it expects the current version of every
    /// entity they update or delete (a created one must not exist yet). The model takes the
    /// changes into its state, notes the versions the append gives its entities and counts its
    /// events.
    fn commit(&mut self, base: Append, changes: Vec<Change>) -> Append {
        let mut append = base;
        for change in &changes {
            if change.action != Action::Created {
                let (kind, id) = (change.entity.kind(), change.entity.id());
                append = append.expect(kind, id, self.version(id));
            }
            self.take(change);
        }
        let append = append.changes(changes);
        for e in &append.events {
            self.versions.insert(e.change.entity.id(), e.version);
        }
        self.events += append.events.len() as u64;
        append
    }

    /// Takes a change into the model's customers, products and stock (orders are kept by the
    /// commands that change them, which know whether they are billed).
    fn take(&mut self, change: &Change) {
        match &change.entity {
            Entity::Customer(c) => match self.customer_at.get(&c.id) {
                Some(&i) => self.customers[i] = c.clone(),
                None => {
                    self.customer_at.insert(c.id, self.customers.len());
                    self.customers.push(c.clone());
                }
            },
            Entity::Product(p) => match self.product_at.get(&p.id) {
                Some(&i) => self.products[i] = p.clone(),
                None => {
                    self.product_at.insert(p.id, self.products.len());
                    self.products.push(p.clone());
                }
            },
            Entity::Inventory(i) => {
                self.stock.insert(i.product_id, i.clone());
            }
            Entity::Order(_) | Entity::Billing(_) => {}
        }
    }

    fn new_customer(&mut self) -> anyhow::Result<Append> {
        let draft = customer_draft(&mut self.rng, self.customers.len())?;
        let changes = decide::create_customer(CustomerId::new(), draft);
        Ok(self.commit(Append::new(), changes))
    }

    fn basket(&mut self) -> Vec<ProductId> {
        let units = self.rng.random_range(1..=3);
        (0..units)
            .map(|_| self.products[self.rng.random_range(0..self.products.len())].id)
            .collect()
    }

    /// What an order command over `product_ids` needs to know: the customer, the products and
    /// their stock records, from the model.
    fn order_context(&self, customer: CustomerId, product_ids: &[ProductId]) -> OrderContext {
        let mut ctx = OrderContext {
            customer: self
                .customer_at
                .get(&customer)
                .map(|&i| self.customers[i].clone()),
            ..OrderContext::default()
        };
        for id in product_ids {
            let product = self.product_at.get(id).map(|&i| self.products[i].clone());
            ctx.products.insert(*id, product);
            if let Some(record) = self.stock.get(id) {
                ctx.stock.insert(*id, record.clone());
            }
        }
        ctx
    }

    /// Places an order of a random customer; `None` when the domain refuses it.
    fn place_order(&mut self) -> anyhow::Result<Option<Append>> {
        let customer = self.customers[self.rng.random_range(0..self.customers.len())].id;
        let basket = self.basket();
        self.try_order(customer, basket)
    }

    /// An order of `customer` for one unit of each product in `basket`, decided by the domain;
    /// an error if it refuses.
    pub fn order(
        &mut self,
        customer: CustomerId,
        basket: Vec<ProductId>,
    ) -> anyhow::Result<Append> {
        self.try_order(customer, basket)?
            .context("the domain refused the model's order: out of stock")
    }

    /// The customers created so far, in order.
    pub fn customer_ids(&self) -> Vec<CustomerId> {
        self.customers.iter().map(|c| c.id).collect()
    }

    /// The products created so far, in order.
    pub fn product_ids(&self) -> Vec<ProductId> {
        self.products.iter().map(|p| p.id).collect()
    }

    fn try_order(
        &mut self,
        customer: CustomerId,
        basket: Vec<ProductId>,
    ) -> anyhow::Result<Option<Append>> {
        let ctx = self.order_context(customer, &basket);
        let draft = OrderDraft::new(customer, basket)?;
        let Some(changes) = decided(decide::create_order(OrderId::new(), draft, &ctx))? else {
            return Ok(None);
        };
        let order = match changes.first().map(|c| &c.entity) {
            Some(Entity::Order(order)) => order.clone(),
            _ => anyhow::bail!("the domain placed an order without an order"),
        };
        let append = self.commit(Append::new(), changes);
        // Keep the live list bounded: old orders stay in the log, the model forgets them.
        if self.orders.len() >= 4_096 {
            self.orders.swap_remove(0);
        }
        self.orders.push(LiveOrder {
            order,
            billed: false,
        });
        Ok(Some(append))
    }

    /// The next command of a busy shop: mostly orders (each with its stock changes), some
    /// order updates, deletes and billings, a few customer sign-ups and changes.
    pub fn next_append(&mut self) -> anyhow::Result<Append> {
        if self.customers.is_empty() || self.products.is_empty() {
            anyhow::bail!("seed the model first");
        }
        for _ in 0..MAX_REFUSALS {
            if let Some(append) = self.next_command()? {
                return Ok(append);
            }
        }
        anyhow::bail!("the domain refused {MAX_REFUSALS} commands of the model in a row")
    }

    /// One command, decided by the domain; `None` when it refused.
    fn next_command(&mut self) -> anyhow::Result<Option<Append>> {
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
            return self.new_customer().map(Some);
        }
        if roll < 6 {
            let i = self.rng.random_range(0..self.customers.len());
            let current = self.customers[i].clone();
            let full: String = FakeName().fake_with_rng(&mut self.rng);
            let draft = CustomerDraft {
                name: name(&full)?,
                email: current.email.clone(),
            };
            let changes = decide::update_customer(Some(&current), current.id, draft)?;
            return Ok(Some(self.commit(Append::new(), changes)));
        }
        if let Some(&at) = unbilled.first() {
            if roll < 16 {
                // Bill an unbilled order.
                let order = self.orders[at].order.clone();
                let billing_id = BillingId::new();
                let draft = BillingDraft {
                    order_id: order.id,
                    done: self.rng.random_bool(0.5),
                };
                let changes = decide::create_billing(billing_id, draft, Some(&order), None)?;
                self.orders[at].billed = true;
                let base = Append::new()
                    .expect(EntityKind::Order, order.id.0, self.version(order.id.0))
                    .claim(UniqueIndex::BillingByOrder, order.id.0, billing_id.0);
                return Ok(Some(self.commit(base, changes)));
            }
            if roll < 24 {
                // Change an unbilled order's basket: stock back for the old, taken for the new.
                let old = self.orders[at].order.clone();
                let basket = self.basket();
                let mut listed = old.product_ids.clone();
                listed.extend(&basket);
                let ctx = self.order_context(old.customer_id, &listed);
                let draft = OrderDraft::new(old.customer_id, basket)?;
                let Some(changes) = decided(decide::update_order(Some(&old), old.id, draft, &ctx))?
                else {
                    return Ok(None);
                };
                if let Some(Entity::Order(changed)) = changes.first().map(|c| &c.entity) {
                    self.orders[at].order = changed.clone();
                }
                return Ok(Some(self.commit(Append::new(), changes)));
            }
            if roll < 28 {
                // Delete an unbilled order, giving its stock back.
                let gone = self.orders[at].order.clone();
                let stock = self
                    .order_context(gone.customer_id, &gone.product_ids)
                    .stock;
                let Some(changes) =
                    decided(decide::delete_order(Some(&gone), gone.id, &stock, None))?
                else {
                    return Ok(None);
                };
                self.orders.swap_remove(at);
                return Ok(Some(self.commit(Append::new(), changes)));
            }
        }
        self.place_order()
    }

    /// The appends of `count` new orders only, each with its stock changes (for filling the
    /// order lists of query benches).
    pub fn orders_only(&mut self, count: usize) -> anyhow::Result<Vec<Append>> {
        if self.customers.is_empty() || self.products.is_empty() {
            anyhow::bail!("seed the model first");
        }
        let mut appends = Vec::with_capacity(count);
        let mut refusals = 0;
        while appends.len() < count {
            match self.place_order()? {
                Some(append) => appends.push(append),
                None if refusals < MAX_REFUSALS => refusals += 1,
                None => anyhow::bail!("the domain refused {MAX_REFUSALS} of the model's orders"),
            }
        }
        Ok(appends)
    }
}

impl Default for ShopModel {
    fn default() -> Self {
        Self::new()
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
