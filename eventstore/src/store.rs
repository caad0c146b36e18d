//! [`EventStore`]: the handle services and projections share. It appends through the
//! `ordershop_store` Function and reads heads, unique indexes and streams.

use crate::append::{Append, AppendError, Appended};
use crate::codec::{encode_entity, RawEntry};
use crate::entry_id::EntryId;
use crate::keys::{self, Stream, UniqueIndex};
use crate::replication::{AckReplicas, WaitCommand};
use ordershop_domain::entity::EntityState;
use ordershop_domain::{Action, EntityKind, Head};
use ordershop_redis::{RedisConfig, RedisConnection, ServerVersion};
use redis::streams::StreamRangeReply;
use redis::Value;
use std::collections::HashMap;
use std::sync::Arc;
use uuid::Uuid;

/// The Function library, loaded at start-up.
pub const STORE_LIBRARY: &str = include_str!("lua/store.lua");

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("event store unavailable")]
    Redis(#[from] redis::RedisError),
    #[error("corrupt head of {kind} {id}: {reason}")]
    CorruptHead {
        kind: EntityKind,
        id: Uuid,
        reason: String,
    },
    #[error("corrupt unique index {index} for {value}: {reason}")]
    CorruptUnique {
        index: &'static str,
        value: Uuid,
        reason: String,
    },
    #[error(transparent)]
    Decode(#[from] crate::codec::DecodeError),
    /// Redis answered something this build does not expect (e.g. another build's Function).
    #[error("unexpected answer from Redis: {0}")]
    Protocol(String),
    /// A recorded answer's append is not (yet) confirmed by the replicas asked for.
    #[error(transparent)]
    NotReplicated(AppendError),
}

/// A cheap, cloneable handle on the store (one multiplexed, self-healing connection).
#[derive(Clone)]
pub struct EventStore {
    conn: RedisConnection,
    /// Set when appends must be confirmed by replicas.
    replicated: Option<Arc<Replicated>>,
}

/// What acknowledging after replication needs: its own connection (a waiting command blocks
/// it) and the wait command the server has, found at the first append.
struct Replicated {
    ack: AckReplicas,
    conn: RedisConnection,
    command: tokio::sync::OnceCell<WaitCommand>,
}

impl EventStore {
    /// Connects, then loads the store's Function library (idempotently).
    pub async fn connect(config: &RedisConfig) -> Result<Self, StoreError> {
        let conn = RedisConnection::connect(config).await?;
        let store = Self::from_connection(conn);
        store.load_functions().await?;
        Ok(store)
    }

    /// Wraps an existing connection; call [`load_functions`](Self::load_functions) once.
    pub fn from_connection(conn: RedisConnection) -> Self {
        Self {
            conn,
            replicated: None,
        }
    }

    /// Acknowledges appends only once `ack.replicas` replicas confirm them (none: as before).
    /// The waits go over a second connection to the same Redis, made on first use.
    pub fn with_ack_replicas(
        mut self,
        config: &RedisConfig,
        ack: AckReplicas,
    ) -> Result<Self, StoreError> {
        self.replicated = if ack.replicas == 0 {
            None
        } else {
            Some(Arc::new(Replicated {
                ack,
                conn: RedisConnection::new(config)?,
                command: tokio::sync::OnceCell::new(),
            }))
        };
        Ok(self)
    }

    pub fn connection(&self) -> RedisConnection {
        self.conn.clone()
    }

    /// Loads (or replaces with this build's version) the store's Function library. Replacing
    /// is atomic, so running writers never see a half-loaded library.
    pub async fn load_functions(&self) -> Result<(), StoreError> {
        load_library(&mut self.conn.clone(), STORE_LIBRARY).await?;
        Ok(())
    }

    /// Appends every event of `append` if, and only if, every expectation and claim holds.
    /// Each event gets a new store-wide entry ID, strictly greater than any issued before.
    pub async fn append_guarded(&self, append: &Append) -> Result<Vec<Appended>, AppendError> {
        if let Some(replicated) = &self.replicated {
            return replicated.append(append).await;
        }
        let command = FcallArgs::build(append).command();
        let reply = call_loading_functions(&mut self.conn.clone(), &command).await?;
        interpret_reply(append, reply)
    }

    /// Several guarded appends in one round trip: one pipeline of `append_guarded` calls. Each
    /// append is atomic and guarded on its own (a later one sees the earlier ones' writes), and
    /// its result is in the same position of the answer; the pipeline as a whole is not a
    /// transaction. For bulk writers (imports, benchmarks); a command handler uses
    /// [`append_guarded`](Self::append_guarded).
    pub async fn append_guarded_pipelined(
        &self,
        appends: &[Append],
    ) -> Result<Vec<Result<Vec<Appended>, AppendError>>, AppendError> {
        if appends.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for append in appends {
            pipe.add_command(FcallArgs::build(append).command());
        }
        let replies = query_loading_functions(&mut self.conn.clone(), &pipe).await?;
        if replies.len() != appends.len() {
            return Err(AppendError::Protocol(format!(
                "{} replies to {} appends",
                replies.len(),
                appends.len()
            )));
        }
        Ok(appends
            .iter()
            .zip(replies)
            .map(|(append, reply)| interpret_reply(append, reply?))
            .collect())
    }

    /// What was recorded under an idempotency key: `(fingerprint, response)`, if anything.
    /// With replicas to wait for, an answer is given only once the replicas confirm what it
    /// answers for (else [`StoreError::NotReplicated`]).
    pub async fn idempotent_answer(
        &self,
        key: &str,
    ) -> Result<Option<(String, String)>, StoreError> {
        let stored: Option<String> = redis::cmd("GET")
            .arg(key)
            .query_async(&mut self.conn.clone())
            .await?;
        if let (Some(_), Some(replicated)) = (&stored, &self.replicated) {
            replicated.confirm_recorded(key).await?;
        }
        Ok(stored.and_then(|s| {
            s.split_once('\n')
                .map(|(fingerprint, response)| (fingerprint.to_owned(), response.to_owned()))
        }))
    }

    /// The head (latest version and state) of each entity, in the order of `ids`.
    pub async fn heads<T: EntityState>(&self, ids: &[Uuid]) -> Result<Vec<Head<T>>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let raw: Vec<Option<Vec<u8>>> = redis::cmd("HMGET")
            .arg(keys::heads(T::KIND))
            .arg(ids.iter().map(Uuid::to_string).collect::<Vec<_>>())
            .query_async(&mut self.conn.clone())
            .await?;
        ids.iter()
            .zip(raw)
            .map(|(id, value)| parse_head::<T>(*id, value.as_deref()))
            .collect()
    }

    pub async fn head<T: EntityState>(&self, id: Uuid) -> Result<Head<T>, StoreError> {
        Ok(self.heads::<T>(&[id]).await?.pop().unwrap_or_default())
    }

    /// Who holds each value of a unique index, in the order of `values`.
    pub async fn unique_owners(
        &self,
        index: UniqueIndex,
        values: &[Uuid],
    ) -> Result<Vec<Option<Uuid>>, StoreError> {
        if values.is_empty() {
            return Ok(Vec::new());
        }
        let raw: Vec<Option<String>> = redis::cmd("HMGET")
            .arg(index.key())
            .arg(values.iter().map(Uuid::to_string).collect::<Vec<_>>())
            .query_async(&mut self.conn.clone())
            .await?;
        raw.into_iter()
            .zip(values)
            .map(|(owner, value)| match owner {
                None => Ok(None),
                Some(s) => Uuid::parse_str(&s)
                    .map(Some)
                    .map_err(|e| StoreError::CorruptUnique {
                        index: index.name(),
                        value: *value,
                        reason: e.to_string(),
                    }),
            })
            .collect()
    }

    /// For each value of a unique index, in order: who holds it, and that entity's head; one
    /// round trip (the `heads_by_unique` Function) instead of two.
    pub async fn heads_by_unique<T: EntityState>(
        &self,
        index: UniqueIndex,
        values: &[Uuid],
    ) -> Result<Vec<Option<(Uuid, Head<T>)>>, StoreError> {
        if values.is_empty() {
            return Ok(Vec::new());
        }
        let mut cmd = redis::cmd("FCALL");
        cmd.arg("heads_by_unique")
            .arg(2)
            .arg(index.key())
            .arg(keys::heads(T::KIND))
            .arg(values.iter().map(Uuid::to_string).collect::<Vec<_>>());
        let raw: Vec<Option<Vec<u8>>> =
            call_loading_functions(&mut self.conn.clone(), &cmd).await?;
        if raw.len() != values.len() * 2 {
            return Err(StoreError::Protocol(format!(
                "heads_by_unique answered {} items for {} values",
                raw.len(),
                values.len()
            )));
        }
        raw.chunks(2)
            .zip(values)
            .map(|(pair, value)| {
                let Some(owner) = &pair[0] else {
                    return Ok(None);
                };
                let owner = std::str::from_utf8(owner)
                    .ok()
                    .and_then(|s| Uuid::parse_str(s).ok())
                    .ok_or_else(|| StoreError::CorruptUnique {
                        index: index.name(),
                        value: *value,
                        reason: format!("owner `{}` is not a UUID", String::from_utf8_lossy(owner)),
                    })?;
                Ok(Some((owner, parse_head::<T>(owner, pair[1].as_deref())?)))
            })
            .collect()
    }

    /// Up to `count` entries of one stream, after `after` (exclusive) and up to `until`.
    pub async fn read_stream(
        &self,
        stream: Stream,
        after: EntryId,
        until: Option<EntryId>,
        count: usize,
    ) -> Result<Vec<RawEntry>, StoreError> {
        let end = until.map_or_else(|| "+".to_owned(), |id| id.to_string());
        let reply: StreamRangeReply = redis::cmd("XRANGE")
            .arg(stream.key())
            .arg(format!("({after}"))
            .arg(end)
            .arg("COUNT")
            .arg(count)
            .query_async(&mut self.conn.clone())
            .await?;
        raw_entries(stream, reply)
    }

    /// For each `(stream, after)`, up to `count` entries after `after` (exclusive) and up to
    /// `until`, all read in one round trip.
    pub async fn read_streams(
        &self,
        reads: &[(Stream, EntryId)],
        until: EntryId,
        count: usize,
    ) -> Result<Vec<Vec<RawEntry>>, StoreError> {
        let mut pipe = redis::pipe();
        for (stream, after) in reads {
            pipe.cmd("XRANGE")
                .arg(stream.key())
                .arg(format!("({after}"))
                .arg(until.to_string())
                .arg("COUNT")
                .arg(count);
        }
        let replies: Vec<StreamRangeReply> = pipe.query_async(&mut self.conn.clone()).await?;
        reads
            .iter()
            .zip(replies)
            .map(|((stream, _), reply)| raw_entries(*stream, reply))
            .collect()
    }

    /// The streams the store can no longer append to, with the last ID that blocks each: an ID
    /// at the end of the ID space or more than a day ahead of the server's clock, left by an
    /// entry written without the store (see `xadd` in `lua/store.lua`, which refuses appends
    /// past such an ID by the same rule).
    pub async fn blocked_streams(&self) -> Result<Vec<(Stream, String)>, StoreError> {
        let mut conn = self.conn.clone();
        let (now_s, _): (u64, u64) = redis::cmd("TIME").query_async(&mut conn).await?;
        let mut blocked = Vec::new();
        for stream in Stream::all() {
            let info: Result<HashMap<String, Value>, redis::RedisError> = redis::cmd("XINFO")
                .arg("STREAM")
                .arg(stream.key())
                .query_async(&mut conn)
                .await;
            // No such stream: nothing can block it.
            let Ok(info) = info else { continue };
            let Some(last) = info.get("last-generated-id").and_then(as_string) else {
                continue;
            };
            if id_out_of_reach(&last, now_s * 1000) {
                blocked.push((stream, last));
            }
        }
        Ok(blocked)
    }

    /// The last entry ID the store issued (zero for an empty store).
    pub async fn last_issued(&self) -> Result<EntryId, StoreError> {
        let last: Option<String> = redis::cmd("GET")
            .arg(keys::clock())
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(last.and_then(|s| s.parse().ok()).unwrap_or(EntryId::ZERO))
    }

    /// Every event of one entity, oldest first. The log has no per-entity index, so this reads
    /// the entity type's three streams whole (one pass over that type's events); an entry whose
    /// JSON does not even mention the id is skipped before it is decoded, and one that cannot be
    /// decoded is skipped.
    pub async fn history(
        &self,
        kind: EntityKind,
        id: Uuid,
    ) -> Result<Vec<crate::codec::StoredEvent>, StoreError> {
        let needle = id.hyphenated().to_string();
        let mut replay = self
            .replay(Stream::of_kind(kind).to_vec(), EntryId::ZERO)
            .await?;
        let mut events = Vec::new();
        while let Some(batch) = replay.next_batch().await? {
            for entry in batch.iter().filter(|e| e.mentions(&needle)) {
                // An entry that cannot be read (written by hand, say) is skipped, as the feed
                // and the rebuilds skip it: it is no event of this entity's.
                let Ok(event) = entry.decode() else { continue };
                if event.entity_id() == id {
                    events.push(event);
                }
            }
        }
        Ok(events)
    }
}

/// `FUNCTION LOAD REPLACE` of a library's source.
pub async fn load_library(
    conn: &mut RedisConnection,
    source: &str,
) -> Result<(), redis::RedisError> {
    let _: String = redis::cmd("FUNCTION")
        .arg("LOAD")
        .arg("REPLACE")
        .arg(source)
        .query_async(conn)
        .await?;
    Ok(())
}

/// Sends one call to a store Function; when the server lost its Functions (e.g. restarted
/// without persistence), loads the library and sends it again.
async fn call_loading_functions<T: redis::FromRedisValue>(
    conn: &mut RedisConnection,
    cmd: &redis::Cmd,
) -> Result<T, redis::RedisError> {
    match cmd.query_async(conn).await {
        Err(e) if is_missing_function(&e) => {
            load_library(conn, STORE_LIBRARY).await?;
            cmd.query_async(conn).await
        }
        other => other,
    }
}

/// Sends a pipeline of store calls (their errors kept one by one). A server without the
/// Function fails every call alike, so none ran: then the library is loaded and the pipeline
/// sent again.
async fn query_loading_functions(
    conn: &mut RedisConnection,
    pipe: &redis::Pipeline,
) -> Result<Vec<redis::RedisResult<Value>>, redis::RedisError> {
    let replies: Vec<redis::RedisResult<Value>> = pipe.query_async(conn).await?;
    if replies
        .first()
        .is_some_and(|r| r.as_ref().is_err_and(is_missing_function))
    {
        load_library(conn, STORE_LIBRARY).await?;
        return pipe.query_async(conn).await;
    }
    Ok(replies)
}

pub fn is_missing_function(e: &redis::RedisError) -> bool {
    e.to_string().contains("Function not found")
}

fn parse_head<T: EntityState>(id: Uuid, value: Option<&[u8]>) -> Result<Head<T>, StoreError> {
    let corrupt = |reason: String| StoreError::CorruptHead {
        kind: T::KIND,
        id,
        reason,
    };
    let Some(value) = value else {
        return Ok(Head::default());
    };
    let split = value
        .iter()
        .position(|b| *b == b':')
        .ok_or_else(|| corrupt("no `:` after the version".into()))?;
    let version = std::str::from_utf8(&value[..split])
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or_else(|| corrupt("version is not a number".into()))?;
    let json = &value[split + 1..];
    if json.is_empty() {
        return Ok(Head::new(version, None));
    }
    let entity: T = serde_json::from_slice(json).map_err(|e| corrupt(e.to_string()))?;
    Ok(Head::new(version, Some(entity)))
}

pub(crate) fn raw_entries(
    stream: Stream,
    reply: StreamRangeReply,
) -> Result<Vec<RawEntry>, StoreError> {
    reply
        .ids
        .into_iter()
        .map(|entry| {
            let id = entry
                .id
                .parse()
                .map_err(
                    |e: crate::entry_id::ParseEntryIdError| crate::codec::DecodeError {
                        stream: stream.key(),
                        id: entry.id.clone(),
                        reason: e.to_string(),
                    },
                )?;
            Ok(RawEntry {
                stream,
                id,
                fields: entry.map,
            })
        })
        .collect()
}

/// The flat KEYS/ARGV encoding of an [`Append`] (see `lua/store.lua`).
struct FcallArgs {
    keys: Vec<String>,
    args: Vec<String>,
}

impl FcallArgs {
    fn build(append: &Append) -> Self {
        let mut keys = vec![keys::clock()];
        let mut index: HashMap<String, usize> = HashMap::new();
        let mut key_index = |key: String, keys: &mut Vec<String>| -> String {
            let i = *index.entry(key.clone()).or_insert_with(|| {
                keys.push(key);
                keys.len()
            });
            i.to_string()
        };
        let mut args = Vec::with_capacity(
            4 + append.metadata.len() * 2
                + append.expectations.len() * 3
                + append.claims.len() * 4
                + append.events.len() * 8
                + 1,
        );
        match &append.idempotency {
            Some(record) => {
                args.push("1".to_owned());
                args.push(key_index(record.key.clone(), &mut keys));
                args.push(record.fingerprint.clone());
                args.push(record.response.clone());
                args.push(record.ttl_ms.max(1).to_string());
            }
            None => args.push("0".to_owned()),
        }
        args.push(append.metadata.len().to_string());
        for (name, value) in &append.metadata {
            args.push((*name).to_owned());
            args.push(value.clone());
        }
        args.push(append.expectations.len().to_string());
        for e in &append.expectations {
            args.push(key_index(keys::heads(e.kind), &mut keys));
            args.push(e.id.to_string());
            args.push(e.version.to_string());
        }
        args.push(append.claims.len().to_string());
        for c in &append.claims {
            args.push(key_index(c.index.key(), &mut keys));
            args.push(c.value.to_string());
            args.push(c.owner.to_string());
            args.push(if c.release { "release" } else { "claim" }.to_owned());
        }
        args.push(append.events.len().to_string());
        for e in &append.events {
            let kind = e.change.entity.kind();
            let stream = Stream::new(kind, e.change.action);
            args.push(key_index(stream.key(), &mut keys));
            args.push(key_index(keys::heads(kind), &mut keys));
            args.push(e.change.entity.id().to_string());
            args.push(e.event_id.to_string());
            args.push(e.version.to_string());
            args.push(encode_entity(&e.change.entity));
            args.push(
                if e.change.action == Action::Deleted {
                    "1"
                } else {
                    "0"
                }
                .to_owned(),
            );
        }
        // Each event's own request id, last (see store.lua): only when some event has one.
        if append.events.iter().any(|e| e.request_id.is_some()) {
            args.push(append.events.len().to_string());
            for e in &append.events {
                args.push(e.request_id.clone().unwrap_or_default());
            }
        }
        Self { keys, args }
    }

    fn command(&self) -> redis::Cmd {
        let mut cmd = redis::cmd("FCALL");
        cmd.arg("append_guarded")
            .arg(self.keys.len())
            .arg(&self.keys)
            .arg(&self.args);
        cmd
    }
}

impl Replicated {
    /// The wait command of the server, read from its INFO at the first use and logged.
    async fn command(&self) -> Result<WaitCommand, redis::RedisError> {
        let command = self
            .command
            .get_or_try_init(|| async {
                let info: String = self
                    .conn
                    .query_shop_node(redis::cmd("INFO").arg("server"))
                    .await?;
                let command = ServerVersion::from_info(&info)
                    .map(|server| {
                        let command = self.ack.wait.on(&server);
                        tracing::info!(%server, %command, replicas = self.ack.replicas,
                            timeout = ?self.ack.timeout,
                            "appends are acknowledged once replicas confirm them");
                        command
                    })
                    .unwrap_or(WaitCommand::Wait);
                Ok::<_, redis::RedisError>(command)
            })
            .await?;
        Ok(*command)
    }

    /// The append and its wait, in one pipeline on the waiting connection.
    async fn append(&self, append: &Append) -> Result<Vec<Appended>, AppendError> {
        let command = self.command().await?;
        let mut pipe = redis::pipe();
        pipe.ignore_errors()
            .add_command(FcallArgs::build(append).command());
        for wait in command.commands(self.ack) {
            pipe.add_command(wait);
        }
        let replies = query_loading_functions(&mut self.conn.clone(), &pipe).await?;
        let mut replies = replies.into_iter();
        let (Some(call), Some(wait)) = (replies.next(), replies.next_back()) else {
            return Err(AppendError::Protocol(
                "no reply to the append or its wait".into(),
            ));
        };
        let outcome = interpret_reply(append, call?);
        // Only what was written (or answered from an earlier write) needs its replicas.
        if matches!(outcome, Ok(_) | Err(AppendError::Duplicate { .. })) {
            self.check(command, &wait?)?;
        }
        outcome
    }

    /// Touches a recorded idempotency answer (its expiry, unchanged) and waits, so that the
    /// answer is confirmed only once everything up to it is on the replicas.
    async fn confirm_recorded(&self, key: &str) -> Result<(), StoreError> {
        let command = self.command().await?;
        let mut conn = self.conn.clone();
        let ttl: i64 = redis::cmd("PTTL").arg(key).query_async(&mut conn).await?;
        let mut pipe = redis::pipe();
        if ttl > 0 {
            pipe.cmd("PEXPIRE").arg(key).arg(ttl).ignore();
        }
        for wait in command.commands(self.ack) {
            pipe.add_command(wait);
        }
        let replies: Vec<Value> = pipe.query_async(&mut conn).await?;
        let last = replies.last().cloned().unwrap_or(Value::Nil);
        self.check(command, &last)
            .map_err(StoreError::NotReplicated)
    }

    fn check(&self, command: WaitCommand, reply: &Value) -> Result<(), AppendError> {
        let confirmed = command.confirmed(reply).ok_or_else(|| {
            AppendError::Protocol(format!("unexpected reply to {command}: {reply:?}"))
        })?;
        if confirmed < self.ack.replicas {
            return Err(AppendError::NotReplicated {
                wanted: self.ack.replicas,
                confirmed,
                command,
            });
        }
        Ok(())
    }
}

fn as_i64(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        Value::SimpleString(s) => s.parse().ok(),
        _ => None,
    }
}

/// Whether the store cannot append after `id` (the rule of `xadd` in `lua/store.lua`): either
/// part too long for Lua's numbers to hold exactly, or more than a day ahead of `now_ms`.
fn id_out_of_reach(id: &str, now_ms: u64) -> bool {
    const MAX_AHEAD_MS: u64 = 24 * 3600 * 1000;
    const MAX_EXACT: u64 = 9_007_199_254_740_991;
    let Some((ms, seq)) = id.split_once('-') else {
        return false;
    };
    if ms.len() > 15 || seq.len() > 15 {
        return true;
    }
    match (ms.parse::<u64>(), seq.parse::<u64>()) {
        (Ok(ms), Ok(seq)) => seq >= MAX_EXACT || ms > now_ms + MAX_AHEAD_MS,
        _ => false,
    }
}

fn as_string(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

fn interpret_reply(append: &Append, reply: Value) -> Result<Vec<Appended>, AppendError> {
    let protocol = |what: &str| AppendError::Protocol(format!("{what}: {reply:?}"));
    let Value::Array(items) = &reply else {
        return Err(protocol("not an array"));
    };
    let status = items
        .first()
        .and_then(as_i64)
        .ok_or_else(|| protocol("no status"))?;
    let position = || {
        items
            .get(1)
            .and_then(as_i64)
            .and_then(|i| usize::try_from(i - 1).ok())
            .ok_or_else(|| protocol("no position"))
    };
    match status {
        2 => Err(AppendError::Duplicate {
            response: items.get(1).and_then(as_string).unwrap_or_default(),
        }),
        -2 => Err(AppendError::KeyReused),
        -3 => Err(AppendError::Blocked {
            stream: items.get(1).and_then(as_string).unwrap_or_default(),
            entry: items.get(2).and_then(as_string).unwrap_or_default(),
        }),
        1 => {
            if items.len() != append.events.len() + 1 {
                return Err(protocol("wrong number of IDs"));
            }
            append
                .events
                .iter()
                .zip(&items[1..])
                .map(|(event, id)| {
                    let entry_id = as_string(id)
                        .and_then(|s| s.parse().ok())
                        .ok_or_else(|| protocol("bad entry ID"))?;
                    Ok(Appended {
                        stream: Stream::new(event.change.entity.kind(), event.change.action),
                        entry_id,
                        event_id: event.event_id,
                        entity_id: event.change.entity.id(),
                        version: event.version,
                    })
                })
                .collect()
        }
        0 => {
            let e = append
                .expectations
                .get(position()?)
                .ok_or_else(|| protocol("bad expectation index"))?;
            let actual = items.get(2).and_then(as_i64).unwrap_or_default();
            Err(AppendError::VersionConflict {
                kind: e.kind,
                id: e.id,
                expected: e.version,
                actual: actual.max(0) as u64,
            })
        }
        -1 => {
            let c = append
                .claims
                .get(position()?)
                .ok_or_else(|| protocol("bad claim index"))?;
            Err(AppendError::UniqueConflict {
                index: c.index,
                value: c.value,
                holder: items.get(2).and_then(as_string).unwrap_or_default(),
            })
        }
        _ => Err(protocol("unknown status")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_out_of_reach_at_the_end_of_the_id_space_or_a_day_ahead() {
        let now = 1_800_000_000_000;
        assert!(id_out_of_reach(
            "18446744073709551615-18446744073709551615",
            now
        ));
        assert!(id_out_of_reach(&format!("{}-0", now + 25 * 3_600_000), now));
        assert!(!id_out_of_reach(&format!("{}-0", now + 3_600_000), now));
        assert!(!id_out_of_reach(&format!("{now}-999"), now));
        assert!(!id_out_of_reach("0-0", now));
    }
}
