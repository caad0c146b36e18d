//! Read-your-writes: after a command succeeded, the gateway waits until the entity cache has
//! applied every entity version the command produced, so the client's next query sees it.
//!
//! The projector records the version it applied per entity (`keys::applied_versions`) in the
//! same atomic step as each cache write, and publishes after each live batch the versions it
//! now holds (`ordershop_readmodel::applied`). One subscription per gateway process
//! ([`AppliedWatch`]) wakes the requests waiting for those versions. A waiter registers first,
//! then reads the applied versions once (what was applied before it registered), then sleeps
//! until notices cover the rest: no polling, one read per request. Whenever the subscription
//! is lost or made again, waiters read once more (a notice may have been missed); while there
//! is none, they poll with a short backoff. When the gateway's connection moves to another
//! primary (a failover), the subscription is made again there. The consistency timeout bounds
//! every wait.

use crate::versions::VersionStamp;
use futures::StreamExt;
use ordershop_domain::EntityKind;
use ordershop_readmodel::{applied, keys, names};
use ordershop_redis::Backoff;
use ordershop_redis::RedisConnection;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;
use uuid::Uuid;

/// Polling while no subscription is up: 1 ms doubling to 20 ms.
const FIRST_PAUSE: Duration = Duration::from_millis(1);
const MAX_PAUSE: Duration = Duration::from_millis(20);
/// Pauses before subscribing again after losing the subscription.
const RESUBSCRIBE_FIRST: Duration = Duration::from_millis(50);
const RESUBSCRIBE_MAX: Duration = Duration::from_secs(2);

/// How a wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consistency {
    /// The cache has applied every version.
    Applied,
    /// The timeout passed with this many entities still behind.
    TimedOut { behind: usize },
}

type Entity = (EntityKind, Uuid);
/// Per entity: the version each registered waiter wants.
type Registry = HashMap<Entity, Vec<(u64, Arc<Waiter>)>>;

/// The process's waiters and its one subscription to the cache's notices. Cheap to clone.
#[derive(Clone)]
pub struct AppliedWatch {
    inner: Arc<Inner>,
}

struct Inner {
    waiting: Mutex<Registry>,
    subscription: watch::Sender<Subscription>,
}

/// Whether notices arrive now; the generation changes at every subscription and every loss.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Subscription {
    live: bool,
    generation: u64,
}

/// One request's wait: the entities (and versions) it still waits for.
struct Waiter {
    pending: Mutex<HashMap<Entity, u64>>,
    done: Notify,
}

impl Waiter {
    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<Entity, u64>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `entity` is at `version` in the cache: no longer pending if that is enough.
    fn applied(&self, entity: Entity, version: u64) {
        let mut pending = self.pending();
        if pending.get(&entity).is_some_and(|want| *want <= version) {
            pending.remove(&entity);
            if pending.is_empty() {
                self.done.notify_one();
            }
        }
    }

    fn remaining(&self) -> usize {
        self.pending().len()
    }
}

impl AppliedWatch {
    /// Starts the process's subscription (a task that lives as long as the watch).
    pub fn start(conn: RedisConnection) -> Self {
        let watch = Self::without_subscription();
        tokio::spawn(subscribe(Arc::downgrade(&watch.inner), conn));
        watch
    }

    /// A watch that never subscribes: its waiters poll.
    pub fn without_subscription() -> Self {
        let (subscription, _) = watch::channel(Subscription::default());
        Self {
            inner: Arc::new(Inner {
                waiting: Mutex::new(HashMap::new()),
                subscription,
            }),
        }
    }

    /// Whether notices arrive now.
    pub fn is_subscribed(&self) -> bool {
        self.inner.subscription.borrow().live
    }

    /// Waits until the entity cache has applied each of these versions (or a later one).
    pub async fn wait_until_applied(
        &self,
        conn: &RedisConnection,
        versions: &[VersionStamp],
        timeout: Duration,
    ) -> Result<Consistency, redis::RedisError> {
        let mut wanted: HashMap<Entity, u64> = HashMap::new();
        for stamp in versions {
            let version = wanted.entry((stamp.kind, stamp.id)).or_default();
            *version = (*version).max(stamp.version);
        }
        if wanted.is_empty() {
            return Ok(Consistency::Applied);
        }
        let deadline = Instant::now() + timeout;
        let waiter = Arc::new(Waiter {
            pending: Mutex::new(wanted.clone()),
            done: Notify::new(),
        });
        let _registered = Registration::new(&self.inner, &waiter, wanted.keys().copied());
        let mut subscription = self.inner.subscription.subscribe();
        let mut backoff = Backoff::new(FIRST_PAUSE, MAX_PAUSE);
        loop {
            read_applied(conn, &waiter).await?;
            let behind = waiter.remaining();
            if behind == 0 {
                return Ok(Consistency::Applied);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(Consistency::TimedOut { behind });
            }
            let live = subscription.borrow_and_update().live;
            let pause = if live {
                deadline - now
            } else {
                backoff.next_pause().min(deadline - now)
            };
            tokio::select! {
                () = waiter.done.notified() => {
                    if waiter.remaining() == 0 {
                        return Ok(Consistency::Applied);
                    }
                }
                // Subscribed again, or lost: a notice may have been missed; read again.
                _ = subscription.changed() => {}
                () = tokio::time::sleep(pause) => {}
            }
        }
    }
}

impl Inner {
    fn waiting(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A notice: `entity` is at `version` in the cache.
    fn notice(&self, entity: Entity, version: u64) {
        let waiting = self.waiting();
        for (want, waiter) in waiting.get(&entity).into_iter().flatten() {
            if *want <= version {
                waiter.applied(entity, version);
            }
        }
    }

    fn set_live(&self, live: bool) {
        self.subscription.send_modify(|s| {
            s.live = live;
            s.generation += 1;
        });
    }
}

/// A waiter's entries in the registry, removed when the wait ends (however it ends).
struct Registration<'a> {
    inner: &'a Inner,
    waiter: Arc<Waiter>,
    entities: Vec<Entity>,
}

impl<'a> Registration<'a> {
    fn new(inner: &'a Inner, waiter: &Arc<Waiter>, entities: impl Iterator<Item = Entity>) -> Self {
        let entities: Vec<Entity> = entities.collect();
        let mut waiting = inner.waiting();
        let pending = waiter.pending().clone();
        for entity in &entities {
            let want = pending.get(entity).copied().unwrap_or_default();
            waiting
                .entry(*entity)
                .or_default()
                .push((want, Arc::clone(waiter)));
        }
        drop(waiting);
        Self {
            inner,
            waiter: Arc::clone(waiter),
            entities,
        }
    }
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        let mut waiting = self.inner.waiting();
        for entity in &self.entities {
            if let Some(list) = waiting.get_mut(entity) {
                list.retain(|(_, w)| !Arc::ptr_eq(w, &self.waiter));
                if list.is_empty() {
                    waiting.remove(entity);
                }
            }
        }
    }
}

/// Reads the applied versions of what `waiter` still waits for (one HMGET per kind).
async fn read_applied(conn: &RedisConnection, waiter: &Waiter) -> Result<(), redis::RedisError> {
    let mut by_kind: BTreeMap<EntityKind, Vec<Uuid>> = BTreeMap::new();
    for (kind, id) in waiter.pending().keys() {
        by_kind.entry(*kind).or_default().push(*id);
    }
    if by_kind.is_empty() {
        return Ok(());
    }
    let mut pipe = redis::pipe();
    for (kind, ids) in &by_kind {
        pipe.cmd("HMGET")
            .arg(keys::applied_versions(names::ENTITY_CACHE, *kind))
            .arg(ids.iter().map(Uuid::to_string).collect::<Vec<_>>());
    }
    let applied: Vec<Vec<Option<String>>> = pipe.query_async(&mut conn.clone()).await?;
    for ((kind, ids), versions) in by_kind.iter().zip(applied) {
        for (id, version) in ids.iter().zip(versions) {
            if let Some(version) = version.and_then(|v| v.trim().parse::<u64>().ok()) {
                waiter.applied((*kind, *id), version);
            }
        }
    }
    Ok(())
}

/// Holds the process's subscription to the cache's notices, subscribing again (with a growing
/// pause) whenever it is lost, until the watch is dropped.
async fn subscribe(inner: Weak<Inner>, conn: RedisConnection) {
    let mut backoff = Backoff::new(RESUBSCRIBE_FIRST, RESUBSCRIBE_MAX);
    let channel = applied::channel();
    loop {
        if inner.strong_count() == 0 {
            return;
        }
        let subscribed = async {
            let mut pubsub = conn.pubsub().await?;
            pubsub.subscribe(&channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        match subscribed.await {
            Ok(pubsub) => {
                if let Some(alive) = inner.upgrade() {
                    alive.set_live(true);
                }
                backoff.reset();
                let mut messages = pubsub.into_on_message();
                let mut primary = conn.primary_changes();
                primary.borrow_and_update();
                let mut alive_check = tokio::time::interval(RESUBSCRIBE_MAX);
                loop {
                    let message = tokio::select! {
                        message = messages.next() => message,
                        // The primary moved (a failover): subscribe again, on the new one.
                        _ = primary.changed() => None,
                        // The watch is gone, though no notice came to say so.
                        _ = alive_check.tick() => {
                            if inner.strong_count() == 0 {
                                return;
                            }
                            continue;
                        }
                    };
                    let Some(message) = message else { break };
                    let Some(alive) = inner.upgrade() else {
                        return;
                    };
                    let text: String = message.get_payload().unwrap_or_default();
                    for (kind, id, version) in applied::parse_notice(&text) {
                        alive.notice((kind, id), version);
                    }
                }
                match inner.upgrade() {
                    Some(alive) => alive.set_live(false),
                    None => return,
                }
                tracing::warn!(
                    "lost the subscription to the entity cache's notices; subscribing again"
                );
            }
            Err(e) => {
                tracing::debug!(error = %e, "cannot subscribe to the entity cache's notices yet");
            }
        }
        tokio::time::sleep(backoff.next_pause()).await;
    }
}
