//! The live event feed behind `GET /events/stream`: every appended event, in ID order across
//! all streams, as Server-Sent Events.
//!
//! One tail per gateway process follows the log ([`Follow`]: merged replays up to the last ID
//! issued, woken by a blocking `XREAD` on a connection of its own) and broadcasts each event, in
//! ID order and once, over bounded rings ([`BUFFER`] events each, shared: 200 viewers cost one
//! ring, not 200 copies; one ring of every event and one per entity type, so a viewer of one
//! type is not woken for the others). Each event's frame is encoded once for all viewers. A viewer that asks to resume (`Last-Event-ID`, or `?since=<entry id>`) first
//! gets the events after that ID from the log itself, page by page, then the live ones, each
//! exactly once: it subscribes before it replays, the replay stops at the last ID issued when it
//! started, and live events at or below the last ID sent are skipped. A viewer that falls more
//! than the ring behind is not dropped: it goes back to the log from the last event it was sent,
//! and rejoins the ring when it has caught up. So a viewer sees exactly the merged log.
//!
//! Viewers have a budget of their own ([`FeedLimits`]), so that commands and queries always have
//! connections: a cap on concurrent viewers in all and per client address (over it: 503 with
//! `Retry-After`), and a viewer that does not take what it was sent within the stall bound is
//! disconnected. Replays read through a connection of their own, a page at a time, a few at once,
//! so that they never queue in front of a command's round trip.

use actix_web::web::Bytes;
use ordershop_domain::{Action, EntityKind};
use ordershop_eventstore::{
    EntryId, EventStore, Follow, RawEntry, Replay, StoreError, StoredEvent, Stream,
};
use ordershop_redis::{RedisConfig, RedisConnection};
use serde::Serialize;
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{broadcast, OnceCell, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use uuid::Uuid;

/// Events the shared ring holds; a viewer further behind goes back to the log.
pub const BUFFER: usize = 4096;
/// Entries a viewer's replay holds at once, over all the streams it reads.
const REPLAY_PAGE: usize = 512;
/// Replay pages read at the same time, over all viewers.
const CONCURRENT_REPLAY_READS: usize = 2;
/// How long a quiet feed waits before it sends a keep-alive comment.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// How often the viewers are looked at for clients that left or stopped reading.
const WATCH_EVERY: Duration = Duration::from_secs(1);
/// How long a refused viewer is asked to wait before it tries again.
pub const RETRY_AFTER_SECS: u64 = 5;

/// What viewers may take of the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeedLimits {
    /// Viewers connected at once, in all.
    pub max_viewers: usize,
    /// Viewers connected at once from one client address.
    pub max_per_client: usize,
    /// A viewer that leaves a frame untaken this long is disconnected.
    pub stall: Duration,
}

impl Default for FeedLimits {
    fn default() -> Self {
        FeedLimits {
            max_viewers: 256,
            max_per_client: 32,
            stall: Duration::from_secs(30),
        }
    }
}

/// One event as the feed sends it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FeedEvent {
    /// The entry ID (also the SSE `id:`).
    pub id: String,
    pub stream: String,
    pub event_id: Uuid,
    pub entity: serde_json::Value,
    pub version: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(skip)]
    pub entry_id: EntryId,
    #[serde(skip)]
    pub kind: EntityKind,
    #[serde(skip)]
    pub action: Action,
    #[serde(skip)]
    pub entity_id: Uuid,
    /// The SSE frame, encoded once and shared by every viewer it is sent to.
    #[serde(skip)]
    encoded: Bytes,
}

impl FeedEvent {
    fn from_stored(event: &StoredEvent) -> Self {
        let mut feed_event = FeedEvent {
            id: event.id.to_string(),
            stream: event.stream.key(),
            event_id: event.event_id,
            entity: ordershop_readmodel::cache::entity_json(&event.change.entity),
            version: event.version,
            request_id: event.request_id.clone(),
            entry_id: event.id,
            kind: event.kind(),
            action: event.change.action,
            entity_id: event.entity_id(),
            encoded: Bytes::new(),
        };
        feed_event.encoded = Bytes::from(feed_event.encode());
        feed_event
    }

    /// The entry as the feed sends it, or `None` for one it cannot read (skipped, as the
    /// rebuilds skip it).
    fn from_raw(raw: &RawEntry) -> Option<Self> {
        match raw.decode() {
            Ok(event) => Some(FeedEvent::from_stored(&event)),
            Err(e) => {
                debug!(error = %e, "the event feed skips an entry it cannot read");
                None
            }
        }
    }

    /// The SSE frame: `id`, `event` (`<type>_<action>`), `data` (one line of JSON). A cheap
    /// clone of bytes encoded once.
    pub fn frame(&self) -> Bytes {
        self.encoded.clone()
    }

    fn encode(&self) -> String {
        let data = serde_json::to_string(self).unwrap_or_else(|_| "{}".to_owned());
        format!(
            "id: {}\nevent: {}_{}\ndata: {data}\n\n",
            self.id, self.kind, self.action
        )
    }
}

/// Which events a viewer wants.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FeedFilter {
    pub kinds: Vec<EntityKind>,
    pub actions: Vec<Action>,
    pub entity: Option<Uuid>,
}

impl FeedFilter {
    pub fn accepts(&self, event: &FeedEvent) -> bool {
        (self.kinds.is_empty() || self.kinds.contains(&event.kind))
            && (self.actions.is_empty() || self.actions.contains(&event.action))
            && self.entity.is_none_or(|id| id == event.entity_id)
    }

    /// The streams the filter can match.
    pub fn streams(&self) -> Vec<Stream> {
        Stream::selected(&self.kinds, &self.actions)
    }
}

/// Why a viewer was not let in.
#[derive(Debug, thiserror::Error)]
pub enum FeedRefusal {
    #[error("the event feed has {0} viewers, as many as it takes; retry later")]
    Full(usize),
    #[error(
        "this client already has {0} event feeds open, as many as one client may; retry later"
    )]
    ClientFull(usize),
    #[error("the event feed cannot read the log: {0}")]
    Unavailable(String),
}

/// The broadcast rings: one of every event, and one per entity type, so that a viewer of one
/// type is not woken for every event of the others.
#[derive(Clone)]
struct Rings {
    all: broadcast::Sender<Arc<FeedEvent>>,
    by_kind: [broadcast::Sender<Arc<FeedEvent>>; 5],
}

impl Rings {
    fn new() -> Self {
        Rings {
            all: broadcast::channel(BUFFER).0,
            by_kind: std::array::from_fn(|_| broadcast::channel(BUFFER).0),
        }
    }

    fn kind(&self, kind: EntityKind) -> &broadcast::Sender<Arc<FeedEvent>> {
        let i = EntityKind::ALL.iter().position(|k| *k == kind).unwrap_or(0);
        &self.by_kind[i]
    }

    /// The ring a viewer of `filter` listens to: its type's when it names exactly one.
    fn for_filter(&self, filter: &FeedFilter) -> &broadcast::Sender<Arc<FeedEvent>> {
        match filter.kinds.as_slice() {
            [kind] => self.kind(*kind),
            _ => &self.all,
        }
    }

    fn send(&self, event: Arc<FeedEvent>) {
        // A ring with no viewer: nothing to do.
        let _ = self.kind(event.kind).send(event.clone());
        let _ = self.all.send(event);
    }
}

/// The process's tail of the log, its broadcast rings, and its viewers' budget.
pub struct Feed {
    /// Reads for replays and the tail: a connection of its own, so that a long read never
    /// waits in line in front of a command.
    store: EventStore,
    redis: RedisConfig,
    rings: Rings,
    started: OnceCell<()>,
    limits: FeedLimits,
    viewers: Arc<Mutex<Viewers>>,
    replay_reads: Arc<Semaphore>,
    shutdown: CancellationToken,
}

/// The viewers connected now: how many per client, and what the stall watchdog needs.
#[derive(Default)]
struct Viewers {
    next_id: u64,
    per_client: HashMap<IpAddr, usize>,
    open: HashMap<u64, Watched>,
}

/// One viewer as the watchdog sees it.
struct Watched {
    /// Milliseconds since `epoch` when the viewer's last frame was handed to the connection and
    /// not yet taken (0: it is being read).
    waiting_since: Arc<AtomicU64>,
    /// A duplicate of the connection's socket, to see that the client left and to shut it down
    /// (`None`: not closable).
    socket: Option<std::net::TcpStream>,
    /// Ends the viewer's stream (its client left), so that its place is given back at once.
    gone: CancellationToken,
}

impl Feed {
    /// Replays and the tail get connections of their own to `redis`; `shutdown` ends every
    /// viewer's stream (so that a stopping gateway does not wait for its viewers).
    pub fn new(
        redis: RedisConfig,
        limits: FeedLimits,
        shutdown: CancellationToken,
    ) -> Result<Self, redis::RedisError> {
        Ok(Feed {
            store: EventStore::from_connection(RedisConnection::new(&redis)?),
            redis,
            rings: Rings::new(),
            started: OnceCell::new(),
            limits,
            viewers: Arc::new(Mutex::new(Viewers::default())),
            replay_reads: Arc::new(Semaphore::new(CONCURRENT_REPLAY_READS)),
            shutdown,
        })
    }

    pub fn store(&self) -> &EventStore {
        &self.store
    }

    pub fn limits(&self) -> FeedLimits {
        self.limits
    }

    /// A receiver of every event `filter` may accept appended from now on (starting the tail
    /// and the stall watchdog on first use: the tail has read the last ID issued before this
    /// returns, so nothing appended after the call is missed).
    pub async fn subscribe(
        &self,
        filter: &FeedFilter,
    ) -> Result<broadcast::Receiver<Arc<FeedEvent>>, String> {
        self.started
            .get_or_try_init(|| async {
                let from = self
                    .store
                    .last_issued()
                    .await
                    .map_err(|e| format!("cannot read the log: {e}"))?;
                let wake = RedisConnection::new(&self.redis)
                    .map_err(|e| format!("cannot connect to Redis: {e}"))?;
                let follow = Follow::new(self.store.clone(), wake, Stream::all(), from);
                tokio::spawn(tail(follow, self.rings.clone(), self.shutdown.clone()));
                tokio::spawn(watch_stalls(
                    self.viewers.clone(),
                    self.limits.stall,
                    self.shutdown.clone(),
                ));
                Ok::<(), String>(())
            })
            .await?;
        Ok(self.rings.for_filter(filter).subscribe())
    }

    /// Where a viewer that wants the last `n` events of the streams `filter` reads starts: after
    /// the (n+1)-th newest of them (the log's start when there are no more than `n`).
    pub async fn start_of_last(&self, filter: &FeedFilter, n: usize) -> Result<EntryId, String> {
        let streams = filter.streams();
        let mut pipe = redis::pipe();
        for stream in &streams {
            pipe.cmd("XREVRANGE")
                .arg(stream.key())
                .arg("+")
                .arg("-")
                .arg("COUNT")
                .arg(n + 1);
        }
        // IDs only: the entries' fields are not kept.
        let replies: Vec<Vec<(String, redis::Value)>> = pipe
            .query_async(&mut self.store.connection())
            .await
            .map_err(|e| format!("cannot read the log: {e}"))?;
        let mut ids: Vec<EntryId> = replies
            .iter()
            .flatten()
            .filter_map(|(id, _)| id.parse().ok())
            .collect();
        ids.sort_unstable_by(|a, b| b.cmp(a));
        Ok(ids.get(n).copied().unwrap_or(EntryId::ZERO))
    }

    /// Takes a viewer's place in the budget for a client at `client`, or says why not. The
    /// place is given back when the returned [`Admission`] is dropped.
    pub fn admit(&self, client: Option<IpAddr>) -> Result<Admission, FeedRefusal> {
        let mut viewers = lock(&self.viewers);
        if viewers.open.len() >= self.limits.max_viewers {
            return Err(FeedRefusal::Full(viewers.open.len()));
        }
        if let Some(client) = client {
            let open = viewers.per_client.get(&client).copied().unwrap_or(0);
            if open >= self.limits.max_per_client {
                return Err(FeedRefusal::ClientFull(open));
            }
            *viewers.per_client.entry(client).or_default() += 1;
        }
        viewers.next_id += 1;
        let id = viewers.next_id;
        let waiting_since = Arc::new(AtomicU64::new(0));
        let gone = CancellationToken::new();
        viewers.open.insert(
            id,
            Watched {
                waiting_since: waiting_since.clone(),
                socket: None,
                gone: gone.clone(),
            },
        );
        Ok(Admission {
            id,
            client,
            waiting_since,
            gone,
            viewers: self.viewers.clone(),
        })
    }

    /// A viewer of the events `filter` accepts: live from now, or, with `resume`, exactly the
    /// events after that entry ID first (from the log), then live.
    pub async fn open(
        &self,
        admission: Admission,
        filter: FeedFilter,
        resume: Option<EntryId>,
    ) -> Result<Viewer, FeedRefusal> {
        let live = self
            .subscribe(&filter)
            .await
            .map_err(FeedRefusal::Unavailable)?;
        let mut viewer = Viewer {
            store: self.store.clone(),
            replay_reads: self.replay_reads.clone(),
            replay: None,
            backlog: VecDeque::new(),
            live,
            filter,
            last: resume.unwrap_or(EntryId::ZERO),
            shutdown: self.shutdown.clone(),
            admission,
            done: false,
        };
        if resume.is_some() {
            viewer
                .start_replay()
                .await
                .map_err(|e| FeedRefusal::Unavailable(e.to_string()))?;
        }
        Ok(viewer)
    }
}

fn lock(viewers: &Mutex<Viewers>) -> std::sync::MutexGuard<'_, Viewers> {
    // The map stays consistent whatever panicked while holding it: each change is one step.
    viewers
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A viewer's place in the feed's budget; dropping it gives the place back.
pub struct Admission {
    id: u64,
    client: Option<IpAddr>,
    waiting_since: Arc<AtomicU64>,
    gone: CancellationToken,
    viewers: Arc<Mutex<Viewers>>,
}

impl Admission {
    /// Lets the stall watchdog shut the viewer's connection down: `socket` is a duplicate of
    /// the connection's socket (shutting it down ends the connection, whoever holds it).
    pub fn closable_by(&self, socket: std::net::TcpStream) {
        if let Some(watched) = lock(&self.viewers).open.get_mut(&self.id) {
            watched.socket = Some(socket);
        }
    }

    /// The viewer's next frame is being asked for: the client is reading.
    fn reading(&self) {
        self.waiting_since.store(0, Ordering::Relaxed);
    }

    /// A frame was handed to the connection: until the next one is asked for, the client has
    /// not taken it.
    fn handed_over(&self) {
        self.waiting_since
            .store(epoch_ms().max(1), Ordering::Relaxed);
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        let mut viewers = lock(&self.viewers);
        viewers.open.remove(&self.id);
        if let Some(client) = self.client {
            if let Some(open) = viewers.per_client.get_mut(&client) {
                *open = open.saturating_sub(1);
                if *open == 0 {
                    viewers.per_client.remove(&client);
                }
            }
        }
    }
}

fn epoch_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Every [`WATCH_EVERY`] (or quarter of the stall bound, if shorter): ends the stream of a viewer
/// whose client has left (an idle feed writes nothing that would notice it for up to the
/// keep-alive period, and its place in the budget would be held meanwhile), and shuts down the
/// connection of a viewer that left a frame untaken for longer than `stall`.
async fn watch_stalls(viewers: Arc<Mutex<Viewers>>, stall: Duration, shutdown: CancellationToken) {
    let period = (stall / 4).clamp(Duration::from_millis(50), WATCH_EVERY);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(period) => {}
        }
        let now = epoch_ms();
        let stall_ms = stall.as_millis() as u64;
        let mut viewers = lock(&viewers);
        for watched in viewers.open.values_mut() {
            if let Some(socket) = &watched.socket {
                // Nothing to read and the peer's end closed: the client is gone. (The socket is
                // non-blocking already: tokio made it so.)
                let mut probe = [0u8; 1];
                if matches!(socket.peek(&mut probe), Ok(0)) {
                    watched.gone.cancel();
                    watched.socket = None;
                    continue;
                }
            }
            let since = watched.waiting_since.load(Ordering::Relaxed);
            if since == 0 || now.saturating_sub(since) < stall_ms {
                continue;
            }
            if let Some(socket) = watched.socket.take() {
                info!(
                    stalled_ms = now.saturating_sub(since),
                    "closing an event-feed viewer that does not read"
                );
                watched.gone.cancel();
                if let Err(e) = socket.shutdown(std::net::Shutdown::Both) {
                    debug!(error = %e, "the stalled viewer's connection was already gone");
                }
            }
        }
    }
}

/// Where a viewer is in the feed: replaying the log up to the last ID issued when it
/// connected (or when it fell behind the ring), then live.
pub struct Viewer {
    store: EventStore,
    replay_reads: Arc<Semaphore>,
    replay: Option<Replay>,
    backlog: VecDeque<Arc<FeedEvent>>,
    live: broadcast::Receiver<Arc<FeedEvent>>,
    filter: FeedFilter,
    /// The last event sent (or passed over): nothing at or below it is sent again.
    last: EntryId,
    shutdown: CancellationToken,
    admission: Admission,
    done: bool,
}

impl Viewer {
    /// Replays the log from after the last event sent up to the last ID issued now. Live
    /// events up to there are skipped as duplicates, so the ring is rejoined seamlessly.
    async fn start_replay(&mut self) -> Result<(), StoreError> {
        let streams = self.filter.streams();
        let chunk = (REPLAY_PAGE / streams.len().max(1)).max(8);
        let replay = self.store.replay(streams, self.last).await?;
        self.replay = Some(replay.with_chunk(chunk));
        Ok(())
    }

    /// The next SSE frame, or `None` when the viewer is to be disconnected. Marks the viewer
    /// as reading while it waits, and as owing a read once the frame is handed over.
    pub async fn next_frame(&mut self) -> Option<Bytes> {
        self.admission.reading();
        let (shutdown, gone) = (self.shutdown.clone(), self.admission.gone.clone());
        let frame = tokio::select! {
            frame = self.produce() => frame,
            _ = shutdown.cancelled() => None,
            _ = gone.cancelled() => None,
        };
        self.admission.handed_over();
        frame
    }

    async fn produce(&mut self) -> Option<Bytes> {
        use tokio::sync::broadcast::error::RecvError;
        if self.done {
            return None;
        }
        loop {
            if let Some(event) = self.backlog.pop_front() {
                self.last = event.entry_id;
                return Some(event.frame());
            }
            if let Some(replay) = &mut self.replay {
                let page = {
                    let _permit = self.replay_reads.acquire().await.ok()?;
                    replay.next_batch().await
                };
                match page {
                    Ok(Some(batch)) => {
                        for raw in batch {
                            if raw.id <= self.last {
                                continue;
                            }
                            match FeedEvent::from_raw(&raw) {
                                Some(event) if self.filter.accepts(&event) => {
                                    self.backlog.push_back(Arc::new(event));
                                }
                                // Skipped, but passed: it is never looked at again.
                                _ => self.last = raw.id,
                            }
                        }
                    }
                    Ok(None) => {
                        // Everything up to here came from the log; live events at or below it
                        // are duplicates.
                        self.last = self.last.max(replay.until());
                        self.replay = None;
                    }
                    Err(e) => {
                        self.done = true;
                        return Some(Bytes::from(format!(
                            ": the log cannot be read: {e}; reconnect with Last-Event-ID: {}\n\n",
                            self.last
                        )));
                    }
                }
                continue;
            }
            match tokio::time::timeout(KEEP_ALIVE, self.live.recv()).await {
                Err(_) => return Some(Bytes::from_static(b": keep-alive\n\n")),
                Ok(Ok(event)) => {
                    if event.entry_id > self.last && self.filter.accepts(&event) {
                        self.last = event.entry_id;
                        return Some(event.frame());
                    }
                }
                Ok(Err(RecvError::Lagged(missed))) => {
                    // The ring moved on without this viewer: take up live from now and fetch
                    // what it missed from the log.
                    debug!(
                        missed,
                        "an event-feed viewer fell behind the ring; reading the log"
                    );
                    self.live = self.live.resubscribe();
                    if let Err(e) = self.start_replay().await {
                        self.done = true;
                        return Some(Bytes::from(format!(
                            ": the log cannot be read: {e}; reconnect with Last-Event-ID: {}\n\n",
                            self.last
                        )));
                    }
                }
                Ok(Err(RecvError::Closed)) => return None,
            }
        }
    }
}

/// Follows the log from where the feed started and broadcasts every entry, in ID order and
/// once, until shutdown. Errors (Redis away) are retried after a pause; the follower keeps its
/// place.
async fn tail(mut follow: Follow, rings: Rings, shutdown: CancellationToken) {
    let mut backoff =
        ordershop_redis::Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    loop {
        let batch = tokio::select! {
            _ = shutdown.cancelled() => return,
            batch = follow.next_batch() => batch,
        };
        match batch {
            Ok(batch) => {
                backoff.reset();
                for raw in &batch {
                    if let Some(event) = FeedEvent::from_raw(raw) {
                        rings.send(Arc::new(event));
                    }
                }
            }
            Err(e) => {
                let pause = backoff.next_pause();
                warn!(error = %e, retry_in = ?pause, "the event feed cannot read the log");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(pause) => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filter_keeps_what_it_names_and_reads_only_the_streams_it_can_match() {
        let filter = FeedFilter {
            kinds: vec![EntityKind::Order],
            actions: vec![Action::Created],
            entity: None,
        };
        assert_eq!(
            filter.streams(),
            [Stream::new(EntityKind::Order, Action::Created)]
        );
        assert_eq!(FeedFilter::default().streams().len(), 15);
    }
}
