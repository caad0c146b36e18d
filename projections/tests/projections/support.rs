//! Test support: a shop on a private redis-server that appends realistic events (decided by the
//! domain, appended guarded like a service does) and runners driven step by step; the canonical
//! dump of a projection's keys and the async wait-with-deadline come from the testkit.

use ordershop_domain::decide::{
    self, BillingDraft, CustomerDraft, InventoryDraft, OrderContext, OrderDraft, ProductDraft,
};
use ordershop_domain::entity::EntityState;
use ordershop_domain::{
    Billing, BillingId, Change, Customer, CustomerId, Email, EntityKind, Inventory, InventoryId,
    Money, Name, Order, OrderId, Product, ProductId, Quantity,
};
use ordershop_eventstore::{Append, Appended, EventStore, Stream, UniqueIndex};
use ordershop_projections::mailer::MessageKind;
use ordershop_projections::{Projection, ProjectionName, Runner, RunnerOptions, StepReport};
use ordershop_readmodel::keys;
use ordershop_redis::RedisConfig;
use ordershop_redis::RedisConnection;
pub use ordershop_testkit::{dump, eventually, wipe, KeyDump};
use ordershop_testkit::{RedisOptions, RedisServer};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use uuid::Uuid;

/// Logs to the test's output when `RUST_LOG` is set (e.g. `RUST_LOG=ordershop_projections=debug`).
pub fn init_logs() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}

pub struct Shop {
    pub server: RedisServer,
    pub config: RedisConfig,
    pub store: EventStore,
}

impl Shop {
    pub async fn start() -> Self {
        Self::start_with(RedisOptions::default()).await
    }

    pub async fn start_with(options: RedisOptions) -> Self {
        init_logs();
        let server = RedisServer::start_with(options);
        let config = RedisConfig::new(server.url()).expect("valid url");
        let store = EventStore::connect(&config).await.expect("store connects");
        Self {
            server,
            config,
            store,
        }
    }

    pub async fn conn(&self) -> RedisConnection {
        ordershop_redis::RedisConnection::connect(&self.config)
            .await
            .expect("connects")
    }

    pub fn options(&self, consumer: &str) -> RunnerOptions {
        RunnerOptions {
            consumer: consumer.to_owned(),
            block: Duration::ZERO,
            batch: 50,
            claim_idle: Duration::from_secs(60),
            max_deliveries: 5,
        }
    }

    /// A runner driven step by step (no blocking reads).
    pub async fn runner<P: Projection>(&self, projection: P, consumer: &str) -> Runner<P> {
        self.runner_with(projection, self.options(consumer)).await
    }

    pub async fn runner_with<P: Projection>(
        &self,
        projection: P,
        options: RunnerOptions,
    ) -> Runner<P> {
        Runner::connect(&self.config, projection, options)
            .await
            .expect("runner starts")
    }

    async fn version(&self, kind: EntityKind, id: Uuid) -> u64 {
        async fn v<T: EntityState>(store: &EventStore, id: Uuid) -> u64 {
            store.head::<T>(id).await.expect("head").version
        }
        match kind {
            EntityKind::Customer => v::<Customer>(&self.store, id).await,
            EntityKind::Product => v::<Product>(&self.store, id).await,
            EntityKind::Inventory => v::<Inventory>(&self.store, id).await,
            EntityKind::Order => v::<Order>(&self.store, id).await,
            EntityKind::Billing => v::<Billing>(&self.store, id).await,
        }
    }

    async fn entity<T: EntityState>(&self, id: Uuid) -> Option<T> {
        self.store.head::<T>(id).await.expect("head").entity
    }

    /// Appends `changes` the way a service does: expecting the current version of every entity
    /// they touch and of every entity in `context` (what the decision read).
    pub async fn commit(
        &self,
        base: Append,
        changes: Vec<Change>,
        context: &[(EntityKind, Uuid)],
    ) -> Vec<Appended> {
        let mut touched: Vec<(EntityKind, Uuid)> = context.to_vec();
        touched.extend(changes.iter().map(|c| (c.entity.kind(), c.entity.id())));
        let mut append = base;
        let mut seen = BTreeSet::new();
        for (kind, id) in touched {
            if seen.insert((kind, id)) {
                append = append.expect(kind, id, self.version(kind, id).await);
            }
        }
        self.store
            .append_guarded(&append.changes(changes))
            .await
            .expect("append succeeds")
    }

    pub async fn create_customer(&self, name: &str) -> CustomerId {
        let id = CustomerId::new();
        let changes = decide::create_customer(id, customer_draft(name));
        self.commit(Append::new(), changes, &[]).await;
        id
    }

    pub async fn update_customer(&self, id: CustomerId, name: &str) {
        let current = self.entity::<Customer>(id.0).await;
        let changes = decide::update_customer(current.as_ref(), id, customer_draft(name))
            .expect("customer exists");
        self.commit(Append::new(), changes, &[]).await;
    }

    pub async fn delete_customer(&self, id: CustomerId) {
        let current = self.entity::<Customer>(id.0).await;
        let changes = decide::delete_customer(current.as_ref(), id).expect("customer exists");
        self.commit(Append::new(), changes, &[]).await;
    }

    /// Creates a deleted customer again under the same id (a later version of a `created`).
    pub async fn recreate_customer(&self, id: CustomerId, name: &str) {
        let draft = customer_draft(name);
        let changes = vec![Change::created(Customer {
            id,
            name: draft.name,
            email: draft.email,
        })];
        self.commit(Append::new(), changes, &[]).await;
    }

    pub async fn create_product(&self, name: &str, price: u64) -> ProductId {
        let id = ProductId::new();
        let changes = decide::create_product(id, product_draft(name, price));
        self.commit(Append::new(), changes, &[]).await;
        id
    }

    pub async fn update_product(&self, id: ProductId, name: &str, price: u64) {
        let current = self.entity::<Product>(id.0).await;
        let changes = decide::update_product(current.as_ref(), id, product_draft(name, price))
            .expect("product exists");
        self.commit(Append::new(), changes, &[]).await;
    }

    pub async fn delete_product(&self, id: ProductId) {
        let current = self.entity::<Product>(id.0).await;
        let changes = decide::delete_product(current.as_ref(), id).expect("product exists");
        self.commit(Append::new(), changes, &[]).await;
    }

    pub async fn create_inventory(&self, product: ProductId, amount: u32) -> InventoryId {
        let id = InventoryId::new();
        let current = self.entity::<Product>(product.0).await;
        let draft = InventoryDraft {
            product_id: product,
            amount: Quantity::new(amount).expect("a quantity"),
        };
        let changes =
            decide::create_inventory(id, draft, current.as_ref(), None).expect("inventory decided");
        let base = Append::new().claim(UniqueIndex::InventoryByProduct, product.0, id.0);
        self.commit(base, changes, &[(EntityKind::Product, product.0)])
            .await;
        id
    }

    async fn order_context(
        &self,
        customer: CustomerId,
        products: &[ProductId],
    ) -> (OrderContext, Vec<(EntityKind, Uuid)>) {
        let mut ctx = OrderContext {
            customer: self.entity::<Customer>(customer.0).await,
            ..OrderContext::default()
        };
        let mut read = vec![(EntityKind::Customer, customer.0)];
        let distinct: Vec<ProductId> = products
            .iter()
            .copied()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let owners = self
            .store
            .unique_owners(
                UniqueIndex::InventoryByProduct,
                &distinct.iter().map(|p| p.0).collect::<Vec<_>>(),
            )
            .await
            .expect("owners");
        for (product, owner) in distinct.iter().zip(owners) {
            ctx.products
                .insert(*product, self.entity::<Product>(product.0).await);
            read.push((EntityKind::Product, product.0));
            if let Some(inventory) = owner {
                if let Some(record) = self.entity::<Inventory>(inventory).await {
                    ctx.stock.insert(*product, record);
                    read.push((EntityKind::Inventory, inventory));
                }
            }
        }
        (ctx, read)
    }

    pub async fn create_order(
        &self,
        customer: CustomerId,
        products: Vec<ProductId>,
    ) -> Option<OrderId> {
        let id = OrderId::new();
        let (ctx, read) = self.order_context(customer, &products).await;
        let draft = OrderDraft::new(customer, products).expect("valid draft");
        let changes = decide::create_order(id, draft, &ctx).ok()?;
        self.commit(Append::new(), changes, &read).await;
        Some(id)
    }

    pub async fn update_order(&self, id: OrderId, products: Vec<ProductId>) -> bool {
        let Some(current) = self.entity::<Order>(id.0).await else {
            return false;
        };
        let mut all = products.clone();
        all.extend(current.product_ids.iter().copied());
        let (ctx, read) = self.order_context(current.customer_id, &all).await;
        let draft = OrderDraft::new(current.customer_id, products).expect("valid draft");
        match decide::update_order(Some(&current), id, draft, &ctx) {
            Ok(changes) => {
                self.commit(Append::new(), changes, &read).await;
                true
            }
            Err(_) => false,
        }
    }

    pub async fn delete_order(&self, id: OrderId) {
        let current = self.entity::<Order>(id.0).await.expect("order exists");
        let (ctx, read) = self
            .order_context(current.customer_id, &current.product_ids)
            .await;
        let billing = self
            .store
            .unique_owners(UniqueIndex::BillingByOrder, &[id.0])
            .await
            .expect("owners")
            .pop()
            .flatten()
            .map(BillingId);
        let changes =
            decide::delete_order(Some(&current), id, &ctx.stock, billing).expect("order decided");
        self.commit(
            Append::new().claim(UniqueIndex::BillingByOrder, id.0, id.0),
            changes,
            &read,
        )
        .await;
    }

    pub async fn create_billing(&self, order: OrderId) -> BillingId {
        let id = BillingId::new();
        let current = self.entity::<Order>(order.0).await;
        let existing = self
            .store
            .unique_owners(UniqueIndex::BillingByOrder, &[order.0])
            .await
            .expect("owners")
            .pop()
            .flatten()
            .map(BillingId::from);
        let draft = BillingDraft {
            order_id: order,
            done: false,
        };
        let changes =
            decide::create_billing(id, draft, current.as_ref(), existing).expect("billable");
        let base = Append::new().claim(UniqueIndex::BillingByOrder, order.0, id.0);
        self.commit(base, changes, &[(EntityKind::Order, order.0)])
            .await;
        id
    }

    pub async fn update_billing(&self, id: BillingId, done: bool) {
        let current = self.entity::<Billing>(id.0).await.expect("billing exists");
        let draft = BillingDraft {
            order_id: current.order_id,
            done,
        };
        let changes = decide::update_billing(Some(&current), id, draft).expect("decided");
        self.commit(Append::new(), changes, &[]).await;
    }

    pub async fn delete_billing(&self, id: BillingId) {
        let current = self.entity::<Billing>(id.0).await.expect("billing exists");
        let changes = decide::delete_billing(Some(&current), id).expect("decided");
        let base = Append::new().release(UniqueIndex::BillingByOrder, current.order_id.0, id.0);
        self.commit(base, changes, &[]).await;
    }

    pub async fn xlen(&self, key: &str) -> u64 {
        redis::cmd("XLEN")
            .arg(key)
            .query_async(&mut self.store.connection())
            .await
            .expect("XLEN")
    }

    /// Number of events in the log.
    pub async fn log_len(&self) -> u64 {
        let mut total = 0;
        for stream in Stream::all() {
            total += self.xlen(&stream.key()).await;
        }
        total
    }

    /// Ids of the live entities of a kind, according to the write side's heads.
    pub async fn live_ids(&self, kind: EntityKind) -> BTreeSet<String> {
        let heads: BTreeMap<String, String> = redis::cmd("HGETALL")
            .arg(ordershop_eventstore::keys::heads(kind))
            .query_async(&mut self.store.connection())
            .await
            .expect("heads");
        heads
            .into_iter()
            .filter(|(_, head)| !head.ends_with(':'))
            .map(|(id, _)| id)
            .collect()
    }
}

pub fn customer_draft(name: &str) -> CustomerDraft {
    CustomerDraft {
        name: Name::parse("name", name).expect("valid name"),
        email: Email::parse(&format!(
            "{}@example.com",
            name.to_lowercase().replace(char::is_whitespace, ".")
        ))
        .expect("valid"),
    }
}

pub fn product_draft(name: &str, price: u64) -> ProductDraft {
    ProductDraft {
        name: Name::parse("name", name).expect("valid name"),
        price: Money::from_minor(price).expect("an amount"),
    }
}

/// Steps a runner until it has caught up; returns the sum of its reports.
pub async fn drain<P: Projection>(runner: &mut Runner<P>) -> StepReport {
    let mut total = StepReport::default();
    for _ in 0..100_000 {
        let report = runner.step().await.expect("step succeeds");
        total.read += report.read;
        total.applied += report.applied;
        total.skipped += report.skipped;
        total.acked += report.acked;
        total.failed += report.failed;
        total.dead_lettered += report.dead_lettered;
        if report.is_idle() {
            return total;
        }
    }
    panic!("runner never caught up");
}

/// Asserts two dumps are equal, naming the first differing key.
pub fn assert_same_state(left: &KeyDump, right: &KeyDump) {
    if left == right {
        return;
    }
    let keys: BTreeSet<&String> = left.keys().chain(right.keys()).collect();
    for key in keys {
        let (a, b) = (left.get(key), right.get(key));
        if a != b {
            panic!(
                "states differ ({} vs {} keys); first difference at `{key}`:\n  left:  {a:?}\n  right: {b:?}",
                left.len(),
                right.len()
            );
        }
    }
}

/// The delivered messages (`GET /emails`), as (msg_id, kind, to) in delivery order.
pub async fn delivered(conn: &mut RedisConnection) -> Vec<BTreeMap<String, String>> {
    stream_entries(conn, &keys::delivered()).await
}

pub async fn stream_entries(
    conn: &mut RedisConnection,
    key: &str,
) -> Vec<BTreeMap<String, String>> {
    let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(key)
        .arg("-")
        .arg("+")
        .query_async(conn)
        .await
        .expect("XRANGE");
    reply
        .ids
        .into_iter()
        .map(|entry| {
            entry
                .map
                .into_iter()
                .map(|(k, v)| {
                    let v: String = redis::from_redis_value(v).unwrap_or_default();
                    (k, v)
                })
                .collect()
        })
        .collect()
}

/// Makes every entry of a projection's streams new again for its group (as if nothing had been
/// delivered): the strongest redelivery there is.
pub async fn redeliver_everything(conn: &mut RedisConnection, projection: ProjectionName) {
    for stream in projection.streams() {
        let _: () = redis::cmd("XGROUP")
            .arg("SETID")
            .arg(&stream)
            .arg(projection.name())
            .arg("0")
            .query_async(conn)
            .await
            .expect("XGROUP SETID");
    }
}

/// A small deterministic random source (xorshift), so workloads are reproducible.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    pub fn pick<T: Copy>(&mut self, items: &[T]) -> Option<T> {
        (!items.is_empty()).then(|| items[self.below(items.len())])
    }
}

/// A mixed workload of realistic commands (customers, products, stock, orders, billings, with
/// updates, deletes and re-creates) until at least `events` events are appended.
pub async fn workload(shop: &Shop, events: u64, seed: u64) {
    let mut rng = Rng::new(seed);
    let start = shop.log_len().await;
    let mut customers: Vec<CustomerId> = Vec::new();
    let mut deleted_customers: Vec<CustomerId> = Vec::new();
    let mut products: Vec<ProductId> = Vec::new();
    let mut orders: Vec<OrderId> = Vec::new();
    let mut unbilled: Vec<OrderId> = Vec::new();
    let mut billings: Vec<BillingId> = Vec::new();
    for i in 0..8 {
        customers.push(shop.create_customer(&format!("Customer{seed}x{i}")).await);
    }
    for i in 0..6 {
        let p = shop
            .create_product(&format!("Product{i}"), 100 + 25 * i as u64)
            .await;
        shop.create_inventory(p, 1_000_000).await;
        products.push(p);
    }
    let mut n = 0u64;
    loop {
        // Checking the log's length costs 15 round trips: do it every few commands.
        if n.is_multiple_of(8) && shop.log_len().await - start >= events {
            break;
        }
        n += 1;
        match rng.below(100) {
            0..=7 => customers.push(shop.create_customer(&format!("New{seed}x{n}")).await),
            8..=15 => {
                if let Some(c) = rng.pick(&customers) {
                    shop.update_customer(c, &format!("Renamed{seed}x{n}")).await;
                }
            }
            16..=18 => {
                if customers.len() > 3 {
                    let c = customers.swap_remove(rng.below(customers.len()));
                    shop.delete_customer(c).await;
                    deleted_customers.push(c);
                }
            }
            19..=20 => {
                if let Some(c) = deleted_customers.pop() {
                    shop.recreate_customer(c, &format!("Back{seed}x{n}")).await;
                    customers.push(c);
                }
            }
            21..=25 => {
                if let Some(p) = rng.pick(&products) {
                    shop.update_product(p, &format!("Product{n}"), 50 + (n % 40) * 10)
                        .await;
                }
            }
            26..=60 => {
                let Some(c) = rng.pick(&customers) else {
                    continue;
                };
                let items: Vec<ProductId> = (0..1 + rng.below(4))
                    .filter_map(|_| rng.pick(&products))
                    .collect();
                if let Some(o) = shop.create_order(c, items).await {
                    orders.push(o);
                    unbilled.push(o);
                }
            }
            61..=68 => {
                if let Some(o) = rng.pick(&orders) {
                    let items: Vec<ProductId> = (0..1 + rng.below(3))
                        .filter_map(|_| rng.pick(&products))
                        .collect();
                    shop.update_order(o, items).await;
                }
            }
            69..=73 => {
                // Only an unbilled order can be deleted.
                if !unbilled.is_empty() {
                    let o = unbilled.swap_remove(rng.below(unbilled.len()));
                    orders.retain(|x| *x != o);
                    shop.delete_order(o).await;
                }
            }
            74..=88 => {
                if !unbilled.is_empty() {
                    let o = unbilled.swap_remove(rng.below(unbilled.len()));
                    billings.push(shop.create_billing(o).await);
                }
            }
            89..=93 => {
                if let Some(b) = rng.pick(&billings) {
                    shop.update_billing(b, n.is_multiple_of(2)).await;
                }
            }
            _ => {
                if !billings.is_empty() {
                    let b = billings.swap_remove(rng.below(billings.len()));
                    shop.delete_billing(b).await;
                }
            }
        }
    }
}

/// How many messages the CRM must send for the log as it stands: one welcome per customer
/// created, one goodbye per customer deleted, a confirmation and a payment request per order
/// created, a receipt per billing created.
pub async fn expected_messages(shop: &Shop) -> BTreeMap<&'static str, u64> {
    use ordershop_domain::Action;
    let len = |kind, action| async move { shop.xlen(&Stream::new(kind, action).key()).await };
    let orders = len(EntityKind::Order, Action::Created).await;
    BTreeMap::from([
        ("welcome", len(EntityKind::Customer, Action::Created).await),
        ("goodbye", len(EntityKind::Customer, Action::Deleted).await),
        ("order_confirmation", orders),
        ("payment_request", orders),
        ("receipt", len(EntityKind::Billing, Action::Created).await),
    ])
}

/// Counts delivered messages per kind, asserting no message id was delivered twice.
pub async fn delivered_once_each(conn: &mut RedisConnection) -> BTreeMap<&'static str, u64> {
    let mut ids = BTreeSet::new();
    let mut per_kind: BTreeMap<&'static str, u64> = BTreeMap::new();
    for kind in MessageKind::ALL {
        per_kind.insert(kind.as_str(), 0);
    }
    for m in delivered(conn).await {
        let id = m.get("msg_id").cloned().unwrap_or_default();
        assert!(ids.insert(id.clone()), "message {id} delivered twice");
        let kind = m.get("kind").map(String::as_str).unwrap_or_default();
        if let Some(k) = MessageKind::ALL.iter().find(|k| k.as_str() == kind) {
            *per_kind.entry(k.as_str()).or_default() += 1;
        }
    }
    per_kind
}

/// Drops a projection's group on every stream, so the next runner starts from the beginning.
pub async fn reset_group(conn: &mut RedisConnection, projection: ProjectionName) {
    // Forgotten with its checkpoint, else the group would come back from there.
    let _: () = redis::cmd("DEL")
        .arg(ordershop_eventstore::keys::group_checkpoint(
            projection.name(),
        ))
        .query_async(conn)
        .await
        .expect("DEL checkpoint");
    for stream in projection.streams() {
        // A stream nobody wrote to has no group to drop.
        let _: Result<u64, _> = redis::cmd("XGROUP")
            .arg("DESTROY")
            .arg(&stream)
            .arg(projection.name())
            .query_async(conn)
            .await;
    }
}

/// Feeds a runner its streams round-robin in the given order, one step (one batch) per stream
/// per round, until a whole round reads nothing.
pub async fn step_round_robin<P: Projection>(runner: &mut Runner<P>, streams: &[String]) {
    loop {
        let mut read = 0;
        for stream in streams {
            read += runner
                .step_only(std::slice::from_ref(stream))
                .await
                .expect("step succeeds")
                .read;
        }
        if read == 0 {
            return;
        }
    }
}

/// Feeds a runner one stream after the other, each to its end, in the given order.
pub async fn step_stream_by_stream<P: Projection>(runner: &mut Runner<P>, streams: &[String]) {
    for stream in streams {
        while runner
            .step_only(std::slice::from_ref(stream))
            .await
            .expect("step succeeds")
            .read
            > 0
        {}
    }
}

/// Shuffles a list with the test's deterministic random source.
pub fn shuffled<T: Clone>(items: &[T], seed: u64) -> Vec<T> {
    let mut rng = Rng::new(seed);
    let mut out = items.to_vec();
    for i in (1..out.len()).rev() {
        out.swap(i, rng.below(i + 1));
    }
    out
}
