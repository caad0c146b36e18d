//! Merged replay of several streams in global ID order.
//!
//! Because every ID comes from one store-wide clock, merging streams by ID gives the true order
//! of events. The replay reads each stream in chunks and only hands out entries up to the
//! smallest "last ID read" of the streams that may still hold more, so an entry is never handed
//! out before an earlier entry of another stream. It stops at the last ID issued when it began.

use crate::codec::RawEntry;
use crate::entry_id::EntryId;
use crate::keys::Stream;
use crate::store::{EventStore, StoreError};
use std::collections::VecDeque;

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
        }
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

    async fn refill(&mut self) -> Result<(), StoreError> {
        for cursor in &mut self.cursors {
            if cursor.exhausted || !cursor.buffer.is_empty() {
                continue;
            }
            let entries = self
                .store
                .read_stream(cursor.stream, cursor.last, Some(self.until), DEFAULT_CHUNK)
                .await?;
            if entries.len() < DEFAULT_CHUNK {
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
