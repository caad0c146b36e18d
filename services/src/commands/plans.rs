//! What each entity type's commands read and decide: one attempt of the command loop, turning
//! drafts into a guarded [`Append`]. Reading goes through a [`Snapshot`], so every head read
//! becomes an expectation of the append.
//!
//! Customers and products read nothing but their own head; inventory records and billings also
//! hold a unique claim (one record per product, one billing per order); orders read their
//! customer, their products and those products' stock, and move the stock in the same append.

use super::{CommandError, Snapshot};
use ordershop_domain::decide::{
    self, BillingDraft, Change, CustomerDraft, InventoryDraft, OrderContext, OrderDraft,
    ProductDraft,
};
use ordershop_domain::entity::EntityState;
use ordershop_domain::{
    Billing, BillingId, Customer, CustomerId, DomainError, Entity, Head, Inventory, InventoryId,
    Order, OrderId, Product, ProductId,
};
use ordershop_eventstore::{Append, CommandStore, StoreError, UniqueIndex};
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use uuid::Uuid;

/// The commands of one entity type: its draft (what a create or an update carries, validated)
/// and how to plan each command.
pub trait EntityCommands: EntityState + Send + Sync {
    type Draft: Clone + Send + Sync;

    /// One attempt at creating an entity per item (new id, draft).
    fn plan_create<S: CommandStore>(
        store: &S,
        items: &[(Uuid, Self::Draft)],
    ) -> impl Future<Output = Result<Append, CommandError>> + Send;

    fn plan_update<S: CommandStore>(
        store: &S,
        id: Uuid,
        draft: &Self::Draft,
    ) -> impl Future<Output = Result<Append, CommandError>> + Send;

    fn plan_delete<S: CommandStore>(
        store: &S,
        id: Uuid,
    ) -> impl Future<Output = Result<Append, CommandError>> + Send;

    /// Creates one entity per draft through `service`: as one command, unless the type has a
    /// better way (orders are committed in groups, see [`super::CommandService::create_orders`]).
    fn create_through<S: CommandStore>(
        service: &super::CommandService<S>,
        drafts: Vec<Self::Draft>,
    ) -> impl Future<Output = Result<super::Written, CommandError>> + Send
    where
        Self: Sized,
    {
        service.create::<Self>(drafts)
    }
}

/// A command that reads only the head of the entity it changes, and optionally gives up the
/// unique value that entity held.
async fn plan_on_own_head<T: EntityState + Send + Sync, S: CommandStore>(
    store: &S,
    id: Uuid,
    decide: impl FnOnce(Option<&T>) -> Result<Vec<Change>, DomainError>,
    releases: impl FnOnce(&T) -> Option<(UniqueIndex, Uuid)>,
) -> Result<Append, CommandError> {
    let mut snapshot = Snapshot::new(store);
    let head = snapshot.head::<T>(id).await?;
    let changes = decide(head.entity.as_ref())?;
    let mut append = snapshot.into_append().changes(changes);
    if let Some((index, value)) = head.entity.as_ref().and_then(releases) {
        append = append.release(index, value, id);
    }
    Ok(append)
}

/// Creates entities that each refer to an entity of type `R` and hold that reference's value of
/// a unique index (one inventory record per product, one billing per order). Items of the same
/// list see each other's claims, so a list cannot claim a value twice.
async fn plan_unique_creates<R, D, S>(
    store: &S,
    items: &[(Uuid, D)],
    index: UniqueIndex,
    reference: impl Fn(&D) -> Uuid,
    decide: impl Fn(Uuid, D, Option<&R>, Option<Uuid>) -> Result<Vec<Change>, DomainError>,
) -> Result<Append, CommandError>
where
    R: EntityState + Send + Sync,
    D: Clone,
    S: CommandStore,
{
    let mut snapshot = Snapshot::new(store);
    let referenced = snapshot
        .heads::<R>(items.iter().map(|(_, d)| reference(d)))
        .await?;
    let mut holders = snapshot
        .owners(index, items.iter().map(|(_, d)| reference(d)))
        .await?;
    let mut changes = Vec::new();
    let mut claims = Vec::new();
    for (id, draft) in items {
        let value = reference(draft);
        let target = referenced.get(&value).and_then(|h| h.entity.as_ref());
        changes.extend(decide(
            *id,
            draft.clone(),
            target,
            holders.get(&value).copied(),
        )?);
        holders.insert(value, *id);
        claims.push((value, *id));
    }
    Ok(claims.into_iter().fold(
        snapshot.into_append().changes(changes),
        |append, (value, owner)| append.claim(index, value, owner),
    ))
}

/// Customers and products: no references, no unique values.
macro_rules! plain_entity_commands {
    ($entity:ident, $id:ident, $draft:ty, $create:path, $update:path, $delete:path) => {
        impl EntityCommands for $entity {
            type Draft = $draft;

            async fn plan_create<S: CommandStore>(
                _store: &S,
                items: &[(Uuid, Self::Draft)],
            ) -> Result<Append, CommandError> {
                Ok(Append::new().changes(
                    items
                        .iter()
                        .flat_map(|(id, draft)| $create($id(*id), draft.clone())),
                ))
            }

            async fn plan_update<S: CommandStore>(
                store: &S,
                id: Uuid,
                draft: &Self::Draft,
            ) -> Result<Append, CommandError> {
                plan_on_own_head::<$entity, S>(
                    store,
                    id,
                    |current| $update(current, $id(id), draft.clone()),
                    |_| None,
                )
                .await
            }

            async fn plan_delete<S: CommandStore>(
                store: &S,
                id: Uuid,
            ) -> Result<Append, CommandError> {
                plan_on_own_head::<$entity, S>(
                    store,
                    id,
                    |current| $delete(current, $id(id)),
                    |_| None,
                )
                .await
            }
        }
    };
}

plain_entity_commands!(
    Customer,
    CustomerId,
    CustomerDraft,
    decide::create_customer,
    decide::update_customer,
    decide::delete_customer
);
plain_entity_commands!(
    Product,
    ProductId,
    ProductDraft,
    decide::create_product,
    decide::update_product,
    decide::delete_product
);

/// Inventory records and billings: each references one entity (a product, an order) that it
/// holds a unique slot of, taken on create and given back on delete.
macro_rules! unique_entity_commands {
    (
        $entity:ident, $id:ident, $draft:ty, $referenced:ident, $index:expr,
        $field:ident, $create:path, $update:path, $delete:path
    ) => {
        impl EntityCommands for $entity {
            type Draft = $draft;

            async fn plan_create<S: CommandStore>(
                store: &S,
                items: &[(Uuid, Self::Draft)],
            ) -> Result<Append, CommandError> {
                plan_unique_creates::<$referenced, _, S>(
                    store,
                    items,
                    $index,
                    |draft| draft.$field.0,
                    |id, draft, referenced, existing| {
                        $create($id(id), draft, referenced, existing.map($id))
                    },
                )
                .await
            }

            async fn plan_update<S: CommandStore>(
                store: &S,
                id: Uuid,
                draft: &Self::Draft,
            ) -> Result<Append, CommandError> {
                plan_on_own_head::<$entity, S>(
                    store,
                    id,
                    |current| $update(current, $id(id), draft.clone()),
                    |_| None,
                )
                .await
            }

            async fn plan_delete<S: CommandStore>(
                store: &S,
                id: Uuid,
            ) -> Result<Append, CommandError> {
                plan_on_own_head::<$entity, S>(
                    store,
                    id,
                    |current| $delete(current, $id(id)),
                    |record| Some(($index, record.$field.0)),
                )
                .await
            }
        }
    };
}

unique_entity_commands!(
    Inventory,
    InventoryId,
    InventoryDraft,
    Product,
    UniqueIndex::InventoryByProduct,
    product_id,
    decide::create_inventory,
    decide::update_inventory,
    decide::delete_inventory
);
unique_entity_commands!(
    Billing,
    BillingId,
    BillingDraft,
    Order,
    UniqueIndex::BillingByOrder,
    order_id,
    decide::create_billing,
    decide::update_billing,
    decide::delete_billing
);

/// The current state of products, keyed for the order context (`None`: unknown or deleted).
async fn read_products<S: CommandStore>(
    snapshot: &mut Snapshot<'_, S>,
    ids: &BTreeSet<ProductId>,
) -> Result<BTreeMap<ProductId, Option<Product>>, StoreError> {
    let heads = snapshot.heads::<Product>(ids.iter().map(|p| p.0)).await?;
    Ok(heads
        .into_iter()
        .map(|(id, head)| (ProductId(id), head.entity))
        .collect())
}

/// The stock record of each of these products that has one.
async fn read_stock<S: CommandStore>(
    snapshot: &mut Snapshot<'_, S>,
    products: &BTreeSet<ProductId>,
) -> Result<BTreeMap<ProductId, Inventory>, StoreError> {
    let records = snapshot
        .heads_by_unique::<Inventory>(
            UniqueIndex::InventoryByProduct,
            products.iter().map(|p| p.0),
        )
        .await?;
    Ok(records
        .into_iter()
        .filter_map(|(product, (_, head))| {
            let record = head.entity?;
            (record.product_id.0 == product).then_some((record.product_id, record))
        })
        .collect())
}

/// What creating orders reads, side by side on the multiplexed connection (one round trip):
/// their customers, their products, and those products' stock with its index.
async fn read_for_orders<'a, 'i, S: CommandStore>(
    store: &'a S,
    items: impl Iterator<Item = &'i (Uuid, OrderDraft)> + Clone,
) -> Result<
    (
        Snapshot<'a, S>,
        BTreeMap<Uuid, Head<Customer>>,
        OrderContext,
    ),
    CommandError,
> {
    let product_ids: BTreeSet<ProductId> = items
        .clone()
        .flat_map(|(_, d)| d.product_ids.iter().copied())
        .collect();
    let (mut snapshot, mut for_products, mut for_stock) = (
        Snapshot::new(store),
        Snapshot::new(store),
        Snapshot::new(store),
    );
    let (customers, products, stock) = tokio::try_join!(
        snapshot.heads::<Customer>(items.map(|(_, d)| d.customer_id.0)),
        read_products(&mut for_products, &product_ids),
        read_stock(&mut for_stock, &product_ids),
    )?;
    snapshot.merge(for_products);
    snapshot.merge(for_stock);
    let ctx = OrderContext {
        customer: None,
        products,
        stock,
    };
    Ok((snapshot, customers, ctx))
}

/// Decides one order on `ctx` and leaves the stock it takes there for the next.
fn decide_order(
    customers: &BTreeMap<Uuid, Head<Customer>>,
    ctx: &mut OrderContext,
    id: Uuid,
    draft: &OrderDraft,
) -> Result<Vec<Change>, DomainError> {
    ctx.customer = customers
        .get(&draft.customer_id.0)
        .and_then(|h| h.entity.clone());
    let decided = decide::create_order(OrderId(id), draft.clone(), ctx)?;
    carry_stock(ctx, &decided);
    Ok(decided)
}

/// Several independent order creates (requests) decided on one read, in turn: each request
/// gets its changes, or the domain's refusal (then it takes no stock from the next ones). The
/// append holds the read's expectations; the caller adds the changes it keeps.
pub(super) async fn plan_order_requests<S: CommandStore>(
    store: &S,
    requests: &[&[(Uuid, OrderDraft)]],
) -> Result<(Append, Vec<Result<Vec<Change>, DomainError>>), CommandError> {
    let (snapshot, customers, mut ctx) =
        read_for_orders(store, requests.iter().flat_map(|r| r.iter())).await?;
    let decided = requests
        .iter()
        .map(|items| {
            let mut trial = ctx.clone();
            let mut changes = Vec::new();
            for (id, draft) in items.iter() {
                changes.extend(decide_order(&customers, &mut trial, *id, draft)?);
            }
            ctx = trial;
            Ok(changes)
        })
        .collect();
    Ok((snapshot.into_append(), decided))
}

/// Folds the stock changes of an order decision into the context, so that the next order of
/// the same list decides on the stock this one leaves.
fn carry_stock(ctx: &mut OrderContext, changes: &[Change]) {
    for change in changes {
        if let Entity::Inventory(record) = &change.entity {
            ctx.stock.insert(record.product_id, record.clone());
        }
    }
}

impl EntityCommands for Order {
    type Draft = OrderDraft;

    async fn plan_create<S: CommandStore>(
        store: &S,
        items: &[(Uuid, OrderDraft)],
    ) -> Result<Append, CommandError> {
        let (snapshot, customers, mut ctx) = read_for_orders(store, items.iter()).await?;
        let mut changes = Vec::new();
        for (id, draft) in items {
            changes.extend(decide_order(&customers, &mut ctx, *id, draft)?);
        }
        Ok(snapshot.into_append().changes(changes))
    }

    fn create_through<S: CommandStore>(
        service: &super::CommandService<S>,
        drafts: Vec<OrderDraft>,
    ) -> impl Future<Output = Result<super::Written, CommandError>> + Send {
        service.create_orders(drafts)
    }

    async fn plan_update<S: CommandStore>(
        store: &S,
        id: Uuid,
        draft: &OrderDraft,
    ) -> Result<Append, CommandError> {
        let mut snapshot = Snapshot::new(store);
        let order = snapshot.head::<Order>(id).await?;
        let Some(current) = order.entity else {
            // The domain says what updating a missing order means (it is not found).
            let changes =
                decide::update_order(None, OrderId(id), draft.clone(), &OrderContext::default())?;
            return Ok(snapshot.into_append().changes(changes));
        };
        let product_ids: BTreeSet<ProductId> = current
            .product_ids
            .iter()
            .chain(&draft.product_ids)
            .copied()
            .collect();
        let ctx = OrderContext {
            customer: snapshot.head::<Customer>(draft.customer_id.0).await?.entity,
            products: read_products(&mut snapshot, &product_ids).await?,
            stock: read_stock(&mut snapshot, &product_ids).await?,
        };
        let changes = decide::update_order(Some(&current), OrderId(id), draft.clone(), &ctx)?;
        Ok(snapshot.into_append().changes(changes))
    }

    async fn plan_delete<S: CommandStore>(store: &S, id: Uuid) -> Result<Append, CommandError> {
        let mut snapshot = Snapshot::new(store);
        let order = snapshot.head::<Order>(id).await?;
        let product_ids: BTreeSet<ProductId> = order
            .entity
            .iter()
            .flat_map(|o| o.product_ids.iter().copied())
            .collect();
        let stock = read_stock(&mut snapshot, &product_ids).await?;
        let billing = snapshot
            .owners(UniqueIndex::BillingByOrder, [id])
            .await?
            .remove(&id)
            .map(BillingId);
        let changes = decide::delete_order(order.entity.as_ref(), OrderId(id), &stock, billing)?;
        // The order takes its own billing slot, so a billing created while it is being deleted
        // makes this append conflict (and a later one finds the slot taken), never a billing of
        // a deleted order.
        Ok(snapshot
            .into_append()
            .claim(UniqueIndex::BillingByOrder, id, id)
            .changes(changes))
    }
}
