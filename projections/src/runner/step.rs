//! Where a step's batch comes from: the held batch, this consumer's own pending entries, entries
//! claimed from a consumer that left them pending, or new entries, in that order (the module
//! docs of [`runner`](super) say why). A step that fails forgets what it held and starts over
//! from its own pending entries, because everything read and not acknowledged is still there.

use super::{consumers, Runner};
use crate::error::ProjectionError;
use crate::projection::Projection;
use crate::read::{parse_xautoclaim, parse_xreadgroup, Read};
use ordershop_eventstore::EntryId;
use redis::Value;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tracing::info;

/// Where a step's batch came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Source {
    /// A batch a rebuild's pause refused earlier.
    Held,
    /// This consumer's own pending entries (after a start or an error).
    Pending,
    /// Entries taken over from a consumer that left them pending.
    Claimed,
    /// New entries.
    #[default]
    New,
}

/// What one step did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StepReport {
    pub source: Source,
    /// Entries read (including entries deleted from their stream since delivery).
    pub read: usize,
    /// Events that changed the projection's state.
    pub applied: u64,
    /// Events already in the state (redeliveries, older versions).
    pub skipped: u64,
    pub acked: usize,
    /// Entries that failed and stay pending for a later retry.
    pub failed: usize,
    pub dead_lettered: usize,
    /// A rebuild holds the pause lease: the batch is held and retried later.
    pub paused: bool,
}

impl StepReport {
    /// Nothing new to read and nothing left over: the consumer has caught up.
    pub fn is_idle(&self) -> bool {
        self.source == Source::New && self.read == 0
    }
}

impl<P: Projection> Runner<P> {
    pub(super) async fn step_with(
        &mut self,
        new_from: &[String],
    ) -> Result<StepReport, ProjectionError> {
        match self.try_step(new_from).await {
            Ok(report) => Ok(report),
            Err(e) => {
                // Whatever was read and not acknowledged is in this consumer's pending list:
                // start over from there once Redis is back.
                self.held = None;
                self.history = Some(HashMap::new());
                // Cheap to redo, and needed if Redis came back without Functions or groups.
                self.ready = false;
                Err(e)
            }
        }
    }

    async fn try_step(&mut self, new_from: &[String]) -> Result<StepReport, ProjectionError> {
        if !self.ready {
            self.setup().await?;
        }
        if let Some(held) = self.held.take() {
            let read = Read {
                entries: held,
                gone: Vec::new(),
            };
            return self.process(Source::Held, read).await;
        }
        if self.history.is_some() {
            let read = self.read_history().await?;
            if !read.is_empty() {
                return self.process(Source::Pending, read).await;
            }
            self.history = None;
        }
        if self.next_claim.is_none_or(|at| Instant::now() >= at) {
            let read = self.claim().await?;
            if !read.is_empty() {
                return self.process(Source::Claimed, read).await;
            }
        }
        let read = self.read_new(new_from).await?;
        self.process(Source::New, read).await
    }

    async fn read_history(&mut self) -> Result<Read, ProjectionError> {
        let cursors = self.history.clone().unwrap_or_default();
        let mut cmd = self.xreadgroup(None);
        for stream in &self.streams {
            cmd.arg(stream);
        }
        for stream in &self.streams {
            cmd.arg(
                cursors
                    .get(stream)
                    .copied()
                    .unwrap_or(EntryId::ZERO)
                    .to_string(),
            );
        }
        let reply: Value = cmd.query_async(&mut self.conn).await?;
        let read = parse_xreadgroup(&reply)?;
        let history = self.history.get_or_insert_with(HashMap::new);
        for (stream, id) in read
            .entries
            .iter()
            .map(|e| (&e.stream, e.id))
            .chain(read.gone.iter().map(|(s, id)| (s, *id)))
        {
            let last = history.entry(stream.clone()).or_insert(EntryId::ZERO);
            *last = (*last).max(id);
        }
        Ok(read)
    }

    async fn read_new(&mut self, streams: &[String]) -> Result<Read, ProjectionError> {
        if streams.is_empty() {
            return Ok(Read::default());
        }
        let block = (!self.options.block.is_zero()).then_some(self.options.block);
        let mut cmd = self.xreadgroup(block);
        for stream in streams {
            cmd.arg(stream);
        }
        for _ in streams {
            cmd.arg(">");
        }
        let reply: Value = cmd.query_async(&mut self.conn).await?;
        parse_xreadgroup(&reply)
    }

    fn xreadgroup(&self, block: Option<Duration>) -> redis::Cmd {
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(self.group())
            .arg(&self.options.consumer)
            .arg("COUNT")
            .arg(self.options.batch.max(1));
        if let Some(block) = block {
            cmd.arg("BLOCK").arg(block.as_millis().max(1) as u64);
        }
        cmd.arg("STREAMS");
        cmd
    }

    /// Takes over entries pending longer than `claim_idle` (a dead consumer's, or this one's
    /// own failed entries), one page per stream.
    async fn claim(&mut self) -> Result<Read, ProjectionError> {
        let mut read = Read::default();
        let mut more = false;
        let min_idle = self.options.claim_idle.as_millis() as u64;
        for stream in self.streams.clone() {
            let cursor = self
                .claim_cursors
                .get(&stream)
                .cloned()
                .unwrap_or_else(|| "0-0".to_owned());
            let reply: Value = redis::cmd("XAUTOCLAIM")
                .arg(&stream)
                .arg(self.group())
                .arg(&self.options.consumer)
                .arg(min_idle)
                .arg(&cursor)
                .arg("COUNT")
                .arg(self.options.batch.max(1))
                .query_async(&mut self.conn)
                .await?;
            let (next, claimed) = parse_xautoclaim(&stream, &reply)?;
            more |= next != "0-0";
            if !claimed.entries.is_empty() {
                info!(
                    group = self.group(),
                    stream,
                    count = claimed.entries.len(),
                    "claimed entries left pending by another consumer"
                );
            }
            self.claim_cursors.insert(stream, next);
            read.entries.extend(claimed.entries);
        }
        // With more pages to go, claim again at the next step; else wait half the idle time.
        self.next_claim = (!more).then(|| Instant::now() + self.options.claim_idle / 2);
        if self.next_cleanup.is_none_or(|at| Instant::now() >= at) {
            let group = self.group();
            for stream in &self.streams {
                consumers::forget_gone(&mut self.conn, stream, group, &self.options.consumer)
                    .await?;
            }
            self.next_cleanup = Some(Instant::now() + consumers::CLEANUP_EVERY);
        }
        Ok(read)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idle_report_is_a_new_read_of_nothing() {
        assert!(StepReport::default().is_idle());
        let pending = StepReport {
            source: Source::Pending,
            ..StepReport::default()
        };
        assert!(!pending.is_idle());
    }
}
