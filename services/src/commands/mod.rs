//! The application layer of the domain services: what happens between a validated request and
//! the log.
//!
//! Every command follows one loop: read the heads it needs through a [`Snapshot`] (which
//! remembers the version of every head it read), let the pure domain decide, and append the
//! changes guarded by ALL those versions, plus any unique claims. If anything it read changed
//! in the meantime the store refuses the append and the loop reads again and decides again, a
//! bounded number of times with a small jittered backoff ([`RetryPolicy`]). So no decision is
//! ever taken on stale state, and an order and all its stock changes land in one atomic append
//! (no oversell).
//!
//! What each entity type reads and decides is in [`plans`]; this module is the loop. Orders
//! take a wider path: those of one product are committed in groups, one read and one append for
//! all the orders queued on it ([`batch`]).
//!
//! The layer reads and appends through [`CommandStore`], not Redis itself: [`CommandService`]
//! is generic over it (the [`EventStore`] by default), so the same command logic runs on the
//! in-memory store of `ordershop-testkit` in tests without a redis-server.

mod batch;
mod hot;
mod plans;
mod retry;

use crate::versions::VersionStamp;
use ordershop_domain::entity::EntityState;
use ordershop_domain::{DomainError, EntityKind, Head};
use ordershop_eventstore::append::IdempotencyRecord;
use ordershop_eventstore::{
    Append, AppendError, CommandStore, EventStore, StoreError, UniqueIndex,
};
use ordershop_telemetry::Metrics;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

use hot::HotEntities;
pub use plans::EntityCommands;
pub use retry::RetryPolicy;

/// Why a command was not carried out.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CommandError {
    /// The domain refused it (a 4xx for the client).
    #[error(transparent)]
    Domain(#[from] DomainError),
    /// The data it needed kept changing under it; nothing was appended.
    #[error("gave up after {attempts} attempts, the last on: {last}")]
    Contended { attempts: u32, last: String },
    /// Reading the store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The idempotency key was used before for a different request; nothing was appended.
    #[error("the Idempotency-Key was already used for a different request")]
    IdempotencyKeyReused,
    /// Appending failed for another reason than a conflict.
    #[error(transparent)]
    Append(AppendError),
    /// The client's `If-Match` names other versions than the entity's; nothing was appended.
    #[error("the {kind} is at version {current}, not {wanted} (If-Match); nothing was changed")]
    PreconditionFailed {
        kind: EntityKind,
        current: u64,
        wanted: crate::precondition::IfMatch,
    },
}

/// How long the answer of a command made under an `Idempotency-Key` is kept.
pub const IDEMPOTENCY_TTL: Duration = Duration::from_secs(24 * 3600);

/// A client's `Idempotency-Key`, scoped to the service, and what identifies its request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey {
    /// The Redis key the answer is kept under.
    pub key: String,
    /// A digest of the request (method, path, body).
    pub fingerprint: String,
}

/// What a successful command wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Written {
    /// The ids of the entities the command was about (the new ids, for a create).
    pub ids: Vec<Uuid>,
    /// Every entity version the append produced, the order's stock changes included.
    pub versions: Vec<VersionStamp>,
    /// The answer of an earlier request with the same `Idempotency-Key`: nothing was appended now.
    pub replayed: bool,
}

impl Written {
    /// What an append will have written, known before it runs (ids and versions are decided
    /// by the command), so it can be kept under an idempotency key in the same atomic step.
    fn planned(ids: Vec<Uuid>, append: &Append) -> Self {
        Self::of_events(ids, &append.events)
    }

    /// What these events of an append wrote, for the request whose ids these are.
    fn of_events(ids: Vec<Uuid>, events: &[ordershop_eventstore::append::PendingEvent]) -> Self {
        Self {
            ids,
            versions: events
                .iter()
                .map(|e| VersionStamp {
                    kind: e.change.entity.kind(),
                    id: e.change.entity.id(),
                    version: e.version,
                })
                .collect(),
            replayed: false,
        }
    }

    /// The stored form: the ids, a newline, the versions header value.
    fn encode(&self) -> String {
        let ids: Vec<String> = self.ids.iter().map(Uuid::to_string).collect();
        format!(
            "{}\n{}",
            ids.join(","),
            crate::versions::header_value(&self.versions)
        )
    }

    fn decode(stored: &str) -> Option<Self> {
        let (ids, versions) = stored.split_once('\n')?;
        Some(Self {
            ids: ids
                .split(',')
                .filter(|s| !s.is_empty())
                .map(Uuid::parse_str)
                .collect::<Result<_, _>>()
                .ok()?,
            versions: crate::versions::parse_header(versions).ok()?,
            replayed: true,
        })
    }
}

/// The command side of one domain service: creates, updates and deletes entities of any type
/// that implements [`EntityCommands`].
#[derive(Clone)]
pub struct CommandService<S = EventStore> {
    store: S,
    retry: RetryPolicy,
    /// Turns on the entities this process's commands collide on.
    hot: HotEntities,
    /// Orders waiting to be committed in groups ([`CommandService::create_orders`]).
    groups: batch::OrderGroups,
    metrics: Option<Arc<Metrics>>,
    /// Recorded on every event appended (the entry field `request_id`).
    request_id: Option<String>,
    /// The request's `Idempotency-Key`, if it sent one.
    idempotency: Option<IdempotencyKey>,
    /// The request's `If-Match`, for the entity a `PUT` or `DELETE` is about.
    if_match: Option<crate::precondition::IfMatch>,
}

impl<S: CommandStore> CommandService<S> {
    pub fn new(store: S) -> Self {
        Self {
            store,
            retry: RetryPolicy::default(),
            hot: HotEntities::default(),
            groups: batch::OrderGroups::default(),
            metrics: None,
            request_id: None,
            idempotency: None,
            if_match: None,
        }
    }

    /// A handle whose update or delete is carried out only if the entity is at a version
    /// `if_match` accepts (see [`crate::precondition`]).
    pub fn with_precondition(mut self, if_match: Option<crate::precondition::IfMatch>) -> Self {
        self.if_match = if_match;
        self
    }

    /// A handle whose commands happen at most once for this key (see [`IdempotencyKey`]).
    pub fn with_idempotency(mut self, key: Option<IdempotencyKey>) -> Self {
        self.idempotency = key;
        self
    }

    /// Counts appended events and append conflicts in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// A handle for one request: what it appends carries `request_id`.
    pub fn for_request(&self, request_id: Option<&str>) -> Self {
        let mut service = self.clone();
        service.request_id = request_id.map(str::to_owned);
        service
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    /// Creates one entity per draft, all in one append (all or none). Returns the new ids in
    /// the order of the drafts.
    pub async fn create<T: EntityCommands>(
        &self,
        drafts: Vec<T::Draft>,
    ) -> Result<Written, CommandError> {
        let items: Vec<(Uuid, T::Draft)> =
            drafts.into_iter().map(|d| (Uuid::new_v4(), d)).collect();
        if items.is_empty() {
            return Ok(Written::default());
        }
        let ids: Vec<Uuid> = items.iter().map(|(id, _)| *id).collect();
        let (store, items_ref) = (&self.store, &items);
        self.run(ids, move || T::plan_create(store, items_ref))
            .await
    }

    pub async fn update<T: EntityCommands>(
        &self,
        id: Uuid,
        draft: T::Draft,
    ) -> Result<Written, CommandError> {
        let (store, draft) = (&self.store, &draft);
        let plan = move || async move {
            let append = T::plan_update(store, id, draft).await?;
            self.check_precondition(T::KIND, id, &append)?;
            Ok(append)
        };
        self.run(vec![id], plan).await
    }

    pub async fn delete<T: EntityCommands>(&self, id: Uuid) -> Result<Written, CommandError> {
        let store = &self.store;
        let plan = move || async move {
            let append = T::plan_delete(store, id).await?;
            self.check_precondition(T::KIND, id, &append)?;
            Ok(append)
        };
        self.run(vec![id], plan).await
    }

    /// Refuses a planned change whose entity is not at a version the request's `If-Match`
    /// accepts. The version checked is the one the append is guarded by, so the check holds
    /// at the moment of the append.
    fn check_precondition(
        &self,
        kind: EntityKind,
        id: Uuid,
        append: &Append,
    ) -> Result<(), CommandError> {
        let Some(wanted) = &self.if_match else {
            return Ok(());
        };
        let current = append
            .expectations
            .iter()
            .find(|e| e.kind == kind && e.id == id)
            .map_or(0, |e| e.version);
        if wanted.accepts(current) {
            Ok(())
        } else {
            Err(CommandError::PreconditionFailed {
                kind,
                current,
                wanted: wanted.clone(),
            })
        }
    }

    /// The answer recorded under the request's idempotency key, if there is one.
    async fn recorded_answer(&self) -> Result<Option<Written>, CommandError> {
        let Some(idempotency) = &self.idempotency else {
            return Ok(None);
        };
        match self.store.idempotent_answer(&idempotency.key).await? {
            None => Ok(None),
            Some((fingerprint, _)) if fingerprint != idempotency.fingerprint => {
                Err(CommandError::IdempotencyKeyReused)
            }
            Some((_, response)) => Ok(Written::decode(&response)),
        }
    }

    /// The read-decide-append loop. A repeat of a request made under the same idempotency key
    /// gets the first answer: looked up before deciding (the entity may be gone since), and
    /// checked again atomically by the append itself (for repeats racing each other).
    async fn run<F, Fut>(&self, ids: Vec<Uuid>, mut plan: F) -> Result<Written, CommandError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Append, CommandError>>,
    {
        if let Some(answer) = self.recorded_answer().await? {
            return Ok(answer);
        }
        let mut retries = self.retry.start(self.metrics.as_deref());
        let mut turn: Option<hot::Turn> = None;
        while retries.next().await.is_some() {
            let mut append = plan().await?.request_id(self.request_id.as_deref());
            if append.events.is_empty() {
                return Ok(Written::planned(ids, &append));
            }
            // Decided on an entity other commands of this process are queueing for: queue
            // too, and decide again in turn.
            if turn.is_none() {
                if let Some(e) = append
                    .expectations
                    .iter()
                    .find(|e| self.hot.is_taken(e.kind, e.id))
                {
                    turn = Some(self.hot.turn(e.kind, e.id).await);
                    continue;
                }
            }
            let written = Written::planned(ids.clone(), &append);
            if let Some(idempotency) = &self.idempotency {
                append = append.idempotent(IdempotencyRecord {
                    key: idempotency.key.clone(),
                    fingerprint: idempotency.fingerprint.clone(),
                    response: written.encode(),
                    ttl_ms: IDEMPOTENCY_TTL.as_millis() as u64,
                });
            }
            match self.store.append_guarded(&append).await {
                Err(AppendError::Duplicate { response }) => {
                    return Written::decode(&response).ok_or_else(|| {
                        CommandError::Append(AppendError::Protocol(format!(
                            "unreadable idempotent answer `{response}`"
                        )))
                    });
                }
                Err(AppendError::KeyReused) => return Err(CommandError::IdempotencyKeyReused),
                Ok(appended) => {
                    self.record_appended(&appended, retries.attempts());
                    return Ok(written);
                }
                Err(e) if retries.retry_after(&e) => {
                    // Lost a race on this entity: wait for its turn (one turn held at a time).
                    if let AppendError::VersionConflict { kind, id, .. } = &e {
                        if !turn
                            .as_ref()
                            .is_some_and(|t| HotEntities::covers(t, *kind, *id))
                        {
                            drop(turn.take());
                            turn = Some(self.hot.turn(*kind, *id).await);
                        }
                    }
                }
                Err(e) => return Err(CommandError::Append(e)),
            }
        }
        Err(retries.gave_up())
    }

    /// Logs and counts what an append wrote, and the attempts it took.
    fn record_appended(&self, appended: &[ordershop_eventstore::Appended], attempts: u32) {
        if let Some(metrics) = &self.metrics {
            metrics.command_attempts(attempts);
        }
        for event in appended {
            tracing::info!(stream = %event.stream.key(), entry_id = %event.entry_id,
                event_id = %event.event_id, version = event.version, "appended");
            if let Some(metrics) = &self.metrics {
                metrics.event_appended(event.stream.key());
            }
        }
    }
}

/// The ids, sorted, each once.
fn distinct(ids: impl IntoIterator<Item = Uuid>) -> Vec<Uuid> {
    let mut ids: Vec<Uuid> = ids.into_iter().collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// The heads a command has read, with their versions: the expectations of its append.
pub struct Snapshot<'a, S> {
    store: &'a S,
    read: Vec<(EntityKind, Uuid, u64)>,
}

impl<'a, S: CommandStore> Snapshot<'a, S> {
    pub fn new(store: &'a S) -> Self {
        Self {
            store,
            read: Vec::new(),
        }
    }

    /// Reads the heads of these entities (duplicates read once) and remembers their versions.
    pub async fn heads<T: EntityState>(
        &mut self,
        ids: impl IntoIterator<Item = Uuid>,
    ) -> Result<BTreeMap<Uuid, Head<T>>, StoreError> {
        let ids = distinct(ids);
        let heads = self.store.heads::<T>(&ids).await?;
        for (id, head) in ids.iter().zip(&heads) {
            self.read.push((T::KIND, *id, head.version));
        }
        Ok(ids.into_iter().zip(heads).collect())
    }

    pub async fn head<T: EntityState>(&mut self, id: Uuid) -> Result<Head<T>, StoreError> {
        Ok(self.heads::<T>([id]).await?.remove(&id).unwrap_or_default())
    }

    /// Who holds each of these values of a unique index (values nobody holds are absent). Not
    /// an expectation: a claim in the append guards the index itself.
    pub async fn owners(
        &self,
        index: UniqueIndex,
        values: impl IntoIterator<Item = Uuid>,
    ) -> Result<BTreeMap<Uuid, Uuid>, StoreError> {
        let values = distinct(values);
        let owners = self.store.unique_owners(index, &values).await?;
        Ok(values
            .into_iter()
            .zip(owners)
            .filter_map(|(value, owner)| owner.map(|o| (value, o)))
            .collect())
    }

    /// The entities of type `T` a unique index names for these values (values nobody holds
    /// are absent), read with their index in one round trip; their versions are remembered.
    pub async fn heads_by_unique<T: EntityState>(
        &mut self,
        index: UniqueIndex,
        values: impl IntoIterator<Item = Uuid>,
    ) -> Result<BTreeMap<Uuid, (Uuid, Head<T>)>, StoreError> {
        let values = distinct(values);
        let found = self.store.heads_by_unique::<T>(index, &values).await?;
        let mut held = BTreeMap::new();
        for (value, owner) in values.into_iter().zip(found) {
            if let Some((owner, head)) = owner {
                self.read.push((T::KIND, owner, head.version));
                held.insert(value, (owner, head));
            }
        }
        Ok(held)
    }

    /// Takes in what another snapshot read (reads made side by side, in one round trip).
    pub fn merge(&mut self, other: Snapshot<'_, S>) {
        self.read.extend(other.read);
    }

    /// An append that expects every head read to still be at the version read.
    pub fn into_append(self) -> Append {
        self.read
            .into_iter()
            .fold(Append::new(), |append, (kind, id, version)| {
                append.expect(kind, id, version)
            })
    }
}
