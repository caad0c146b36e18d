//! Merged replay of several streams in global ID order, and following the log past its end.
//!
//! Because every ID comes from one store-wide clock, merging streams by ID gives the true order
//! of events. The replay reads each stream in chunks and only hands out entries up to the
//! smallest "last ID read" of the streams that may still hold more, so an entry is never handed
//! out before an earlier entry of another stream. It stops at the last ID issued when it began.
//!
//! [`Follow`] turns replays into a tail: when one replay is done it waits for any entry after
//! its end, then replays again up to the new last ID issued. The append writes the clock and its
//! entries in one atomic Function call, so every entry at or below the clock is already in its
//! stream when the clock is read: each pass hands out exactly the entries of the merged log in
//! (previous end, new end], whatever the number of writers or streams an append touches.

use crate::codec::RawEntry;
use crate::entry_id::EntryId;
use crate::keys::Stream;
use crate::store::{EventStore, StoreError};
use ordershop_redis::RedisConnection;
use std::collections::VecDeque;
use std::time::Duration;

/// Entries read from one stream per round trip.
pub const DEFAULT_CHUNK: usize = 2_000;

struct Cursor {
    stream: Stream,
    last: EntryId,
    buffer: VecDeque<RawEntry>,
    exhausted: bool,
}

pub struct Replay {
    store: EventStore,
    cursors: Vec<Cursor>,
    until: EntryId,
    chunk: usize,
}

impl EventStore {
    /// Replays the given streams merged in ID order, from after `after` up to the last ID
    /// issued when the replay starts (so appends made during the replay do not disturb it).
    pub async fn replay(&self, streams: Vec<Stream>, after: EntryId) -> Result<Replay, StoreError> {
        let until = self.last_issued().await?;
        Ok(Replay::new(self.clone(), streams, after, until))
    }
}

impl Replay {
    pub fn new(store: EventStore, streams: Vec<Stream>, after: EntryId, until: EntryId) -> Self {
        let cursors = streams
            .into_iter()
            .map(|stream| Cursor {
                stream,
                last: after,
                buffer: VecDeque::new(),
                exhausted: after >= until,
            })
            .collect();
        Self {
            store,
            cursors,
            until,
            chunk: DEFAULT_CHUNK,
        }
    }

    /// Reads at most `chunk` entries of each stream per round trip (at least one), so that
    /// what the replay holds at once is bounded by `chunk` × streams entries.
    pub fn with_chunk(mut self, chunk: usize) -> Self {
        self.chunk = chunk.max(1);
        self
    }

    /// The last ID this replay will reach.
    pub fn until(&self) -> EntryId {
        self.until
    }

    /// The next entries in ID order, or `None` when every stream is done.
    pub async fn next_batch(&mut self) -> Result<Option<Vec<RawEntry>>, StoreError> {
        self.refill().await?;
        // Entries up to `limit` are safe to hand out: every stream that may hold more has been
        // read at least that far.
        let limit = self
            .cursors
            .iter()
            .filter(|c| !c.exhausted)
            .map(|c| c.last)
            .min()
            .unwrap_or(self.until);
        let mut batch: Vec<RawEntry> = Vec::new();
        for cursor in &mut self.cursors {
            while cursor.buffer.front().is_some_and(|e| e.id <= limit) {
                if let Some(entry) = cursor.buffer.pop_front() {
                    batch.push(entry);
                }
            }
        }
        if batch.is_empty()
            && self
                .cursors
                .iter()
                .all(|c| c.exhausted && c.buffer.is_empty())
        {
            return Ok(None);
        }
        batch.sort_unstable_by_key(|e| e.id);
        Ok(Some(batch))
    }

    /// Reads everything that is left and returns it in ID order.
    pub async fn collect_all(mut self) -> Result<Vec<RawEntry>, StoreError> {
        let mut all = Vec::new();
        while let Some(batch) = self.next_batch().await? {
            all.extend(batch);
        }
        Ok(all)
    }

    /// Reads the next chunk of every stream that has run dry, all in one round trip.
    async fn refill(&mut self) -> Result<(), StoreError> {
        let due: Vec<usize> = (0..self.cursors.len())
            .filter(|&i| !self.cursors[i].exhausted && self.cursors[i].buffer.is_empty())
            .collect();
        if due.is_empty() {
            return Ok(());
        }
        let reads: Vec<(Stream, EntryId)> = due
            .iter()
            .map(|&i| (self.cursors[i].stream, self.cursors[i].last))
            .collect();
        let chunks = self
            .store
            .read_streams(&reads, self.until, self.chunk)
            .await?;
        for (i, entries) in due.into_iter().zip(chunks) {
            let cursor = &mut self.cursors[i];
            if entries.len() < self.chunk {
                cursor.exhausted = true;
            }
            if let Some(last) = entries.last() {
                cursor.last = last.id;
            }
            cursor.buffer.extend(entries);
        }
        Ok(())
    }
}

/// How long one wait for new entries blocks before [`Follow::next_batch`] returns empty.
pub const FOLLOW_BLOCK: Duration = Duration::from_secs(2);

/// Every entry of the given streams after a starting ID, merged in ID order, then every entry
/// appended later, each exactly once, for as long as it is asked.
pub struct Follow {
    store: EventStore,
    /// Waits block a connection: this one is the follower's own.
    wake: RedisConnection,
    streams: Vec<Stream>,
    replay: Option<Replay>,
    /// Everything up to here has been handed out.
    position: EntryId,
    /// Where each stream's wait reads from: the position, or past an entry that sits above the
    /// clock (written by hand), so that it does not wake the wait again and again.
    wake_after: Vec<EntryId>,
    chunk: usize,
}

impl Follow {
    /// Follows `streams` from after `after`; `wake` must be a connection no one else uses.
    pub fn new(
        store: EventStore,
        wake: RedisConnection,
        streams: Vec<Stream>,
        after: EntryId,
    ) -> Self {
        let wake_after = vec![after; streams.len()];
        Follow {
            store,
            wake,
            streams,
            replay: None,
            position: after,
            wake_after,
            chunk: DEFAULT_CHUNK,
        }
    }

    /// Reads at most `chunk` entries of each stream per round trip.
    pub fn with_chunk(mut self, chunk: usize) -> Self {
        self.chunk = chunk.max(1);
        self
    }

    /// The last ID handed out (or passed over: nothing at or below it is still to come).
    pub fn position(&self) -> EntryId {
        self.position
    }

    /// The next entries in ID order; empty when nothing new came within [`FOLLOW_BLOCK`]. After
    /// an error (Redis away) the next call starts again from [`position`](Self::position), so
    /// nothing is lost or handed out twice.
    pub async fn next_batch(&mut self) -> Result<Vec<RawEntry>, StoreError> {
        let result = self.advance().await;
        if result.is_err() {
            self.replay = None;
        }
        result
    }

    async fn advance(&mut self) -> Result<Vec<RawEntry>, StoreError> {
        loop {
            let replay = match &mut self.replay {
                Some(replay) => replay,
                None => {
                    let until = self.store.last_issued().await?;
                    self.replay.insert(
                        Replay::new(
                            self.store.clone(),
                            self.streams.clone(),
                            self.position,
                            until,
                        )
                        .with_chunk(self.chunk),
                    )
                }
            };
            match replay.next_batch().await? {
                Some(batch) if !batch.is_empty() => {
                    if let Some(last) = batch.last() {
                        self.position = self.position.max(last.id);
                    }
                    return Ok(batch);
                }
                Some(_) => continue,
                None => {
                    self.position = self.position.max(replay.until());
                    self.replay = None;
                    if !self.wait_for_more().await? {
                        return Ok(Vec::new());
                    }
                }
            }
        }
    }

    /// Blocks until a stream holds an entry past where its wait reads from (true), or
    /// [`FOLLOW_BLOCK`] passed (false).
    async fn wait_for_more(&mut self) -> Result<bool, StoreError> {
        for after in &mut self.wake_after {
            *after = (*after).max(self.position);
        }
        let mut cmd = redis::cmd("XREAD");
        cmd.arg("COUNT")
            .arg(1)
            .arg("BLOCK")
            .arg(FOLLOW_BLOCK.as_millis() as u64)
            .arg("STREAMS");
        for stream in &self.streams {
            cmd.arg(stream.key());
        }
        for after in &self.wake_after {
            cmd.arg(after.to_string());
        }
        let reply: redis::Value = cmd.query_async(&mut self.wake).await?;
        let woken = last_ids(&reply);
        for (key, id) in &woken {
            if let Some(i) = self.streams.iter().position(|s| &s.key() == key) {
                self.wake_after[i] = self.wake_after[i].max(*id);
            }
        }
        Ok(!woken.is_empty())
    }
}

/// Per stream in an `XREAD` reply (either protocol), the ID of its last entry.
fn last_ids(reply: &redis::Value) -> Vec<(String, EntryId)> {
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
            let Value::Array(entries) = entries else {
                return None;
            };
            let last = entries.iter().rev().find_map(|entry| match entry {
                Value::Array(parts) => text(parts.first()?)?.parse::<EntryId>().ok(),
                _ => None,
            })?;
            Some((text(name)?, last))
        })
        .collect()
}
