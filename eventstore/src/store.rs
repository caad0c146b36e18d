//! [`EventStore`]: the handle services and projections share. It appends through the
//! `ordershop_store` Function and reads heads, unique indexes and streams.

use crate::append::{Append, AppendError, Appended};
use crate::codec::RawEntry;
use crate::entry_id::EntryId;
use crate::function::{
    as_string, call_loading_functions, id_out_of_reach, interpret_reply, load_library,
    query_loading_functions, FcallArgs, STORE_LIBRARY,
};
use crate::keys::{self, Stream, UniqueIndex};
use crate::replication::{AckReplicas, Replicated};
use ordershop_domain::entity::EntityState;
use ordershop_domain::{EntityKind, Head};
use ordershop_redis::{RedisConfig, RedisConnection};
use redis::streams::StreamRangeReply;
use redis::Value;
use std::collections::HashMap;
use std::sync::Arc;
use uuid::Uuid;

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
            Some(Arc::new(Replicated::new(
                ack,
                RedisConnection::new(config)?,
            )))
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
