//! The live event feed behind `GET /events/stream`: every appended event, in ID order across
//! all streams, as Server-Sent Events.
//!
//! One tail per gateway process reads new entries with a blocking `XREAD` on a connection of its
//! own and broadcasts them to every viewer over a bounded ring ([`BUFFER`] events, shared: 200
//! viewers cost one ring, not 200 copies). A viewer that falls more than the ring behind (one
//! that does not read) is dropped; it can resume with `Last-Event-ID`, and the shop never waits
//! for it. A viewer that asks to resume (`Last-Event-ID`, or `?since=<entry id>`) first gets the
//! events after that ID from the log itself (the store's merged replay), then the live ones,
//! each exactly once: it subscribes before it replays, the replay stops at the last ID issued
//! when it started, and live events at or below the last ID sent are skipped.

use ordershop_domain::{Action, EntityKind};
use ordershop_eventstore::{
    EntryId, EventStore, RawEntry, RedisConfig, RedisConnection, StoredEvent, Stream,
};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, OnceCell};
use tracing::{debug, warn};
use uuid::Uuid;

/// Events the shared ring holds; a viewer further behind is dropped.
pub const BUFFER: usize = 4096;
/// How long one blocking read of the tail waits.
const BLOCK: Duration = Duration::from_secs(2);
/// Entries one read of the tail takes per stream.
const READ_COUNT: usize = 500;

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
}

impl FeedEvent {
    fn from_stored(event: &StoredEvent) -> Self {
        FeedEvent {
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
        }
    }

    /// The SSE frame: `id`, `event` (`<type>_<action>`), `data` (one line of JSON).
    pub fn frame(&self) -> String {
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
        Stream::all()
            .into_iter()
            .filter(|s| self.kinds.is_empty() || self.kinds.contains(&s.kind))
            .filter(|s| self.actions.is_empty() || self.actions.contains(&s.action))
            .collect()
    }
}

/// The process's tail of the log and its broadcast ring.
pub struct Feed {
    store: EventStore,
    redis: RedisConfig,
    sender: broadcast::Sender<Arc<FeedEvent>>,
    started: OnceCell<()>,
}

impl Feed {
    /// `store` serves replays; the tail gets a connection of its own to `redis` (it blocks).
    pub fn new(store: EventStore, redis: RedisConfig) -> Self {
        let (sender, _) = broadcast::channel(BUFFER);
        Feed {
            store,
            redis,
            sender,
            started: OnceCell::new(),
        }
    }

    pub fn store(&self) -> &EventStore {
        &self.store
    }

    /// A receiver of every event appended from now on (starting the tail on first use: the
    /// tail has read the last ID issued before this returns, so nothing appended after the
    /// call is missed).
    pub async fn subscribe(&self) -> Result<broadcast::Receiver<Arc<FeedEvent>>, String> {
        self.started
            .get_or_try_init(|| async {
                let from = self
                    .store
                    .last_issued()
                    .await
                    .map_err(|e| format!("cannot read the log: {e}"))?;
                let conn = RedisConnection::new(&self.redis)
                    .map_err(|e| format!("cannot connect to Redis: {e}"))?;
                tokio::spawn(tail(conn, self.sender.clone(), Stream::all(), from));
                Ok::<(), String>(())
            })
            .await?;
        Ok(self.sender.subscribe())
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

    /// A viewer of the events `filter` accepts: live from now, or, with `resume`, exactly the
    /// events after that entry ID first (from the log), then live.
    pub async fn open(
        &self,
        filter: FeedFilter,
        resume: Option<EntryId>,
    ) -> Result<Viewer, String> {
        let live = self.subscribe().await?;
        let replay = match resume {
            Some(after) => Some(
                self.store
                    .replay(filter.streams(), after)
                    .await
                    .map_err(|e| format!("cannot read the log: {e}"))?,
            ),
            None => None,
        };
        Ok(Viewer {
            replay,
            backlog: std::collections::VecDeque::new(),
            live,
            filter,
            last: resume.unwrap_or(EntryId::ZERO),
            done: false,
        })
    }
}

/// Where a viewer is in the feed: replaying the log up to the last ID issued when it
/// connected, then live.
pub struct Viewer {
    replay: Option<ordershop_eventstore::Replay>,
    backlog: std::collections::VecDeque<Arc<FeedEvent>>,
    live: tokio::sync::broadcast::Receiver<Arc<FeedEvent>>,
    filter: FeedFilter,
    last: EntryId,
    done: bool,
}

/// How long a quiet feed waits before it sends a keep-alive comment.
const KEEP_ALIVE: std::time::Duration = std::time::Duration::from_secs(15);

impl Viewer {
    /// The next SSE frame, or `None` when the viewer is to be disconnected.
    pub async fn next_frame(&mut self) -> Option<String> {
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
                match replay.next_batch().await {
                    Ok(Some(batch)) => {
                        for raw in batch {
                            let Ok(event) = raw.decode() else { continue };
                            let event = FeedEvent::from_stored(&event);
                            if self.filter.accepts(&event) {
                                self.backlog.push_back(Arc::new(event));
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
                        return Some(format!(": the log cannot be read: {e}\n\n"));
                    }
                }
                continue;
            }
            match tokio::time::timeout(KEEP_ALIVE, self.live.recv()).await {
                Err(_) => return Some(": keep-alive\n\n".to_owned()),
                Ok(Ok(event)) => {
                    if event.entry_id > self.last && self.filter.accepts(&event) {
                        self.last = event.entry_id;
                        return Some(event.frame());
                    }
                }
                Ok(Err(RecvError::Lagged(missed))) => {
                    self.done = true;
                    return Some(format!(
                        ": dropped: {missed} events behind; reconnect with Last-Event-ID: {}\n\n",
                        self.last
                    ));
                }
                Ok(Err(RecvError::Closed)) => return None,
            }
        }
    }
}

/// Reads every entry appended after `from` and broadcasts it, in ID order, for the life of the
/// process. Errors (Redis away) are retried after a pause; the cursors keep their place.
async fn tail(
    mut conn: RedisConnection,
    sender: broadcast::Sender<Arc<FeedEvent>>,
    streams: Vec<Stream>,
    from: EntryId,
) {
    let mut cursors: HashMap<String, EntryId> = streams.iter().map(|s| (s.key(), from)).collect();
    let keys: Vec<String> = streams.iter().map(Stream::key).collect();
    let mut backoff =
        ordershop_eventstore::Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    loop {
        let mut cmd = redis::cmd("XREAD");
        cmd.arg("COUNT")
            .arg(READ_COUNT)
            .arg("BLOCK")
            .arg(BLOCK.as_millis() as u64)
            .arg("STREAMS")
            .arg(&keys);
        for key in &keys {
            cmd.arg(cursors.get(key).copied().unwrap_or(from).to_string());
        }
        let reply: redis::Value = match cmd.query_async(&mut conn).await {
            Ok(reply) => reply,
            Err(e) => {
                let pause = backoff.next_pause();
                warn!(error = %e, retry_in = ?pause, "the event feed cannot read the log");
                tokio::time::sleep(pause).await;
                continue;
            }
        };
        backoff.reset();
        let mut events = Vec::new();
        for (stream, entries) in parse_xread(&reply) {
            let Ok(parsed) = stream.parse::<Stream>() else {
                continue;
            };
            for (id, fields) in entries {
                cursors.insert(stream.clone(), id);
                let raw = RawEntry {
                    stream: parsed,
                    id,
                    fields,
                };
                match raw.decode() {
                    Ok(event) => events.push(FeedEvent::from_stored(&event)),
                    Err(e) => debug!(error = %e, "the event feed skips an entry it cannot read"),
                }
            }
        }
        events.sort_by_key(|e| e.entry_id);
        for event in events {
            // No viewer: nothing to do.
            let _ = sender.send(Arc::new(event));
        }
    }
}

type XreadEntries = Vec<(String, Vec<(EntryId, HashMap<String, redis::Value>)>)>;

/// `XREAD`'s reply in either protocol: per stream, its entries.
fn parse_xread(reply: &redis::Value) -> XreadEntries {
    use redis::Value;
    let text = |v: &Value| match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    };
    let per_stream: Vec<(&Value, &Value)> = match reply {
        Value::Array(items) => items
            .iter()
            .filter_map(|item| match item {
                Value::Array(pair) if pair.len() == 2 => Some((&pair[0], &pair[1])),
                _ => None,
            })
            .collect(),
        Value::Map(pairs) => pairs.iter().map(|(k, v)| (k, v)).collect(),
        _ => Vec::new(),
    };
    per_stream
        .into_iter()
        .filter_map(|(name, entries)| {
            let name = text(name)?;
            let Value::Array(entries) = entries else {
                return None;
            };
            let entries = entries
                .iter()
                .filter_map(|entry| {
                    let Value::Array(parts) = entry else {
                        return None;
                    };
                    let id: EntryId = text(parts.first()?)?.parse().ok()?;
                    let fields = match parts.get(1)? {
                        Value::Array(flat) => flat
                            .chunks(2)
                            .filter_map(|kv| Some((text(kv.first()?)?, kv.get(1)?.clone())))
                            .collect(),
                        Value::Map(map) => map
                            .iter()
                            .filter_map(|(k, v)| Some((text(k)?, v.clone())))
                            .collect(),
                        _ => return None,
                    };
                    Some((id, fields))
                })
                .collect();
            Some((name, entries))
        })
        .collect()
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
