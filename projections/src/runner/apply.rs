//! What happens to a batch, wherever it came from: applied in ID order through the
//! projection's Function, at most [`MAX_EVENTS_PER_CALL`] events a call, acknowledged only once
//! applied; a rebuild's refusal holds it; an entry that fails stays pending until Redis has
//! delivered it `max_deliveries` times, then goes to the dead-letter stream. Acknowledging only
//! after applying is what makes delivery at-least-once; the Functions' version checks make the
//! effect exactly-once.

use super::{Runner, Source, StepReport, MAX_EVENTS_PER_CALL};
use crate::error::ProjectionError;
use crate::projection::{call_function, CallOutcome, Entry, Mode, Projection};
use crate::read::Read;
use ordershop_eventstore::function::is_missing_function;
use ordershop_eventstore::EntryId;
use ordershop_readmodel::keys;
use redis::{ErrorKind, Value};
use std::collections::BTreeMap;
use tracing::{debug, error, info, warn};

impl<P: Projection> Runner<P> {
    /// Applies a batch in ID order, acks what was applied, and deals with what failed.
    pub(super) async fn process(
        &mut self,
        source: Source,
        read: Read,
    ) -> Result<StepReport, ProjectionError> {
        let mut report = StepReport {
            source,
            read: read.len(),
            ..StepReport::default()
        };
        if !read.gone.is_empty() {
            // Pending entries the stream no longer holds (deleted or trimmed by hand): nothing
            // to apply, but say so, since they were never applied.
            for (stream, id) in &read.gone {
                warn!(
                    group = self.group(),
                    %stream,
                    %id,
                    "a pending entry is no longer in its stream; acknowledged without applying it"
                );
            }
            report.acked += self.ack(read.gone.iter().map(|(s, id)| (s, *id))).await?;
        }
        let mut entries = read.entries;
        entries.sort_by_key(|e| e.id);

        let mut decoded = Vec::with_capacity(entries.len());
        let mut poison: Vec<(Entry, String)> = Vec::new();
        for entry in entries {
            match self.projection.decode(&entry) {
                Ok(event) => decoded.push((entry, event)),
                Err(reason) => poison.push((entry, reason)),
            }
        }

        let mut rest = decoded.into_iter().peekable();
        while rest.peek().is_some() {
            let chunk: Vec<(Entry, P::Event)> = rest.by_ref().take(MAX_EVENTS_PER_CALL).collect();
            let events: Vec<&P::Event> = chunk.iter().map(|(_, e)| e).collect();
            let outcome = match self.call(&events).await {
                Ok(outcome) => outcome,
                Err(ProjectionError::Redis(e))
                    if is_server_reply(&e) && !is_missing_function(&e) =>
                {
                    // The batch failed as a whole (e.g. a corrupt key): find the culprit by
                    // applying one event at a time, so the others are not held back.
                    warn!(group = self.group(), error = %e, "batch failed; retrying one by one");
                    for (entry, event) in chunk {
                        match self.call(&[&event]).await {
                            Ok(CallOutcome::Done { applied, skipped }) => {
                                report.applied += applied;
                                report.skipped += skipped;
                                report.acked += self.ack([(&entry.stream, entry.id)]).await?;
                                self.log_applied(&entry);
                            }
                            // Paused meanwhile: it stays pending and comes back when claimed.
                            Ok(_) => report.failed += 1,
                            Err(ProjectionError::Redis(e)) if is_server_reply(&e) => {
                                poison.push((entry, e.to_string()))
                            }
                            Err(e) => return Err(e),
                        }
                    }
                    continue;
                }
                Err(e) => return Err(e),
            };
            match outcome {
                CallOutcome::Done { applied, skipped } => {
                    report.applied += applied;
                    report.skipped += skipped;
                    report.acked += self
                        .ack(chunk.iter().map(|(e, _)| (&e.stream, e.id)))
                        .await?;
                    for (entry, _) in &chunk {
                        self.log_applied(entry);
                    }
                }
                CallOutcome::Paused => {
                    debug!(
                        group = self.group(),
                        "paused by a rebuild; holding the batch"
                    );
                    let mut held: Vec<Entry> = chunk.into_iter().map(|(e, _)| e).collect();
                    held.extend(rest.map(|(e, _)| e));
                    held.extend(poison.into_iter().map(|(e, _)| e));
                    self.held = Some(held);
                    report.paused = true;
                    return Ok(report);
                }
                CallOutcome::LeaseLost => {
                    return Err(ProjectionError::protocol(
                        self.group(),
                        "a live batch was answered as a rebuild's",
                    ))
                }
            }
        }

        for (entry, reason) in poison {
            super::health::record_error(
                &mut self.conn,
                self.projection.name(),
                &self.options.consumer,
                "entry",
                &reason,
                Some((&entry.stream, entry.id)),
            )
            .await;
            if self.dead_letter_if_exhausted(&entry, &reason).await? {
                report.dead_lettered += 1;
            } else {
                report.failed += 1;
            }
        }
        if report.read > 0 {
            debug!(group = self.group(), consumer = %self.options.consumer, ?report, "step");
        }
        Ok(report)
    }

    /// One line per entry processed, with the ids that let an operator follow a request: the
    /// event's `event_id` and `request_id` (an outbox message carries both of its cause).
    fn log_applied(&self, entry: &Entry) {
        info!(
            group = self.group(),
            stream = %entry.stream,
            id = %entry.id,
            event_id = entry.text("event_id").unwrap_or(""),
            request_id = entry.text("request_id").unwrap_or(""),
            msg_id = entry.text("msg_id").unwrap_or(""),
            "processed"
        );
    }

    async fn call(&mut self, events: &[&P::Event]) -> Result<CallOutcome, ProjectionError> {
        Ok(call_function(&mut self.conn, &self.projection, Mode::Live, events).await?)
    }

    async fn ack<'a>(
        &mut self,
        entries: impl IntoIterator<Item = (&'a String, EntryId)>,
    ) -> Result<usize, ProjectionError> {
        let mut per_stream: BTreeMap<&String, Vec<String>> = BTreeMap::new();
        for (stream, id) in entries {
            per_stream.entry(stream).or_default().push(id.to_string());
        }
        if per_stream.is_empty() {
            return Ok(0);
        }
        let mut pipe = redis::pipe();
        for (stream, ids) in &per_stream {
            pipe.cmd("XACK").arg(*stream).arg(self.group()).arg(ids);
        }
        let acked: Vec<usize> = pipe.query_async(&mut self.conn).await?;
        Ok(acked.into_iter().sum())
    }

    /// Moves a failing entry to the dead-letter stream once Redis has delivered it
    /// `max_deliveries` times; before that it stays pending and is retried after `claim_idle`.
    async fn dead_letter_if_exhausted(
        &mut self,
        entry: &Entry,
        reason: &str,
    ) -> Result<bool, ProjectionError> {
        let id = entry.id.to_string();
        let reply: Value = redis::cmd("XPENDING")
            .arg(&entry.stream)
            .arg(self.group())
            .arg(&id)
            .arg(&id)
            .arg(1)
            .query_async(&mut self.conn)
            .await?;
        let deliveries = match &reply {
            Value::Array(rows) => match rows.first() {
                Some(Value::Array(row)) => match row.get(3) {
                    Some(Value::Int(n)) => u64::try_from(*n).unwrap_or(0),
                    _ => 0,
                },
                // No longer pending: another consumer dealt with it.
                _ => return Ok(false),
            },
            _ => 0,
        };
        if deliveries < self.options.max_deliveries {
            warn!(
                group = self.group(),
                stream = %entry.stream,
                id = %entry.id,
                deliveries,
                reason,
                "entry failed; it stays pending and will be retried"
            );
            return Ok(false);
        }
        let mut cmd = redis::cmd("FCALL");
        cmd.arg("dead_letter")
            .arg(2)
            .arg(&entry.stream)
            .arg(keys::dead_letters(self.group()))
            .arg(self.group())
            .arg(&id)
            .arg("source_stream")
            .arg(&entry.stream)
            .arg("source_id")
            .arg(&id)
            .arg("reason")
            .arg(reason)
            .arg("deliveries")
            .arg(deliveries)
            .arg("consumer")
            .arg(&self.options.consumer);
        for (name, value) in entry.field_bytes() {
            cmd.arg(name).arg(value);
        }
        let moved: i64 = cmd.query_async(&mut self.conn).await?;
        if moved == 1 {
            error!(
                group = self.group(),
                stream = %entry.stream,
                id = %entry.id,
                deliveries,
                reason,
                dead_letters = %keys::dead_letters(self.group()),
                "entry dead-lettered after too many deliveries"
            );
        }
        Ok(moved == 1)
    }
}

/// The server answered with an error about the entry (as opposed to the connection failing, or
/// the cluster being in the middle of a change). Only these hint at a poison entry.
fn is_server_reply(e: &redis::RedisError) -> bool {
    matches!(e.kind(), ErrorKind::Server(_) | ErrorKind::Extension) && !is_cluster_in_flux(e)
}

/// Answers that say the cluster (or the server) is changing under the call — a slot moving
/// (`MOVED`, `ASK`, `TRYAGAIN`, a script that meets a key the node no longer serves), a primary
/// being elected, a replica not yet promoted, a dataset loading. They say nothing about the
/// entries: the step fails as a whole and is retried, nothing is split, parked or counted
/// towards dead-lettering for them.
fn is_cluster_in_flux(e: &redis::RedisError) -> bool {
    use redis::ServerErrorKind as K;
    matches!(
        e.kind(),
        ErrorKind::Server(
            K::Moved
                | K::Ask
                | K::TryAgain
                | K::ClusterDown
                | K::MasterDown
                | K::BusyLoading
                | K::ReadOnly
        )
    ) || {
        let text = e.to_string();
        text.contains("non local key") || text.contains("TRYAGAIN") || text.contains("MOVED ")
    }
}
