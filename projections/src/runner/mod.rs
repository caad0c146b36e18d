//! The consumer-group runner every projection uses.
//!
//! One [`Runner`] is one consumer of one projection's group. Each [`step`](Runner::step)
//! processes one batch, from the first source that has something, in this order:
//!
//! 1. a batch a rebuild refused (held in memory, retried as is);
//! 2. its own pending entries, once after a start or an error (`XREADGROUP ... 0`);
//! 3. entries another (dead) consumer left pending longer than `claim_idle` (`XAUTOCLAIM`),
//!    checked every `claim_idle / 2`;
//! 4. new entries (`XREADGROUP ... >` with `BLOCK`).
//!
//! A batch is sorted by entry ID (the store's IDs are global, so that is the true order), applied
//! by the projection's Function in one atomic call (state + versions applied), and only then
//! acknowledged. An entry that cannot be applied stays pending and comes back through step 3;
//! once Redis has delivered it `max_deliveries` times it is moved to the projection's dead-letter
//! stream. docs/projections.md spells out what each step guarantees.
//!
//! Where each part lives: `options` (how a consumer consumes, and its name), `step` (where a
//! batch comes from), `apply` (what happens to a batch), [`consumers`] (the group's consumer
//! list, which the operator's `status` reads too), [`health`] (each group's last error and
//! heartbeats), `supervise` (keeping a consumer running through errors) and `metrics` (what a
//! running consumer counts). This module holds the runner itself and the entry point that
//! starts one by name. The group's pending, lag and down gauges are not the runner's: they are
//! read as `status` reads them, by `ordershop-operations` (its `gauges`).

mod apply;
pub mod consumers;
pub mod health;
mod metrics;
mod options;
mod step;
mod supervise;

pub use consumers::FORGET_AFTER;
pub use options::{default_consumer_name, RunnerOptions};
pub use step::{Source, StepReport};

use crate::error::ProjectionError;
use crate::projection::{Entry, Projection};
use crate::{with_projection, ProjectionName};
use ordershop_eventstore::function::load_library;
use ordershop_eventstore::keys::group_checkpoint;
use ordershop_eventstore::EntryId;
use ordershop_redis::RedisConfig;
use ordershop_redis::RedisConnection;
use ordershop_telemetry::Metrics;
use redis::Value;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// The runner's own Function library: the checkpoint, atomic dead-lettering (`dead_letter`),
/// and what the operator's tools call (`lease_renew`, `lease_release` for a rebuild;
/// `dead_letter_settle`, `dead_letter_repark` for the dead-letter actions), which load it
/// themselves where no consumer ran yet.
pub const RUNNER_LIBRARY_SOURCE: &str = include_str!("../lua/runner.lua");

/// Most events applied by one Function call, so that one call never blocks Redis for long (a
/// rebuild's batches are cut to it too).
pub const MAX_EVENTS_PER_CALL: usize = 256;

/// One consumer of one projection's group, driven step by step.
pub struct Runner<P: Projection> {
    projection: P,
    conn: RedisConnection,
    options: RunnerOptions,
    streams: Vec<String>,
    /// Some while re-reading this consumer's own pending entries: the last ID read per stream.
    history: Option<HashMap<String, EntryId>>,
    held: Option<Vec<Entry>>,
    claim_cursors: HashMap<String, String>,
    next_claim: Option<Instant>,
    next_cleanup: Option<Instant>,
    ready: bool,
}

/// How often a running consumer records its group's checkpoint.
pub const CHECKPOINT_EVERY: Duration = Duration::from_secs(5);

impl<P: Projection> Runner<P> {
    /// Connects, loads the Functions and creates the group on every stream (idempotently).
    pub async fn connect(
        redis: &RedisConfig,
        projection: P,
        mut options: RunnerOptions,
    ) -> Result<Self, ProjectionError> {
        // A blocking read must answer before the connection's response timeout fires.
        let longest = redis
            .response_timeout
            .saturating_sub(redis.response_timeout / 4);
        if options.block > longest {
            warn!(group = projection.name(), block = ?options.block, ?longest,
                  "read block longer than the Redis response timeout allows; shortened");
            options.block = longest;
        }
        let conn = ordershop_redis::RedisConnection::connect(redis).await?;
        let mut runner = Self::from_connection(conn, projection, options);
        runner.setup().await?;
        Ok(runner)
    }

    /// Wraps a connection; the first step loads the Functions and creates the groups.
    pub fn from_connection(conn: RedisConnection, projection: P, options: RunnerOptions) -> Self {
        let streams = projection.streams();
        Self {
            projection,
            conn,
            options,
            streams,
            history: None,
            held: None,
            claim_cursors: HashMap::new(),
            next_claim: None,
            next_cleanup: None,
            ready: false,
        }
    }

    pub fn options(&self) -> &RunnerOptions {
        &self.options
    }

    fn group(&self) -> &'static str {
        self.projection.name()
    }

    /// Loads the Function libraries and creates the group on each stream, from the start of the
    /// stream, creating the stream if needed. Safe to repeat, and repeated after any error: a
    /// Redis restarted without persistence comes back without them.
    pub async fn setup(&mut self) -> Result<(), ProjectionError> {
        load_library(&mut self.conn, RUNNER_LIBRARY_SOURCE).await?;
        load_library(&mut self.conn, self.projection.library()).await?;
        let checkpoint: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(group_checkpoint(self.projection.name()))
            .query_async(&mut self.conn)
            .await?;
        for stream in &self.streams {
            // A group that is missing (never made, or gone with a failover or by hand) starts
            // from the group's own checkpoint, else from the start of the stream; never from
            // its end (`$`), which would skip what it had not applied yet.
            let from = checkpoint.get(stream).map_or("0", String::as_str);
            let created: Result<Value, redis::RedisError> = redis::cmd("XGROUP")
                .arg("CREATE")
                .arg(stream)
                .arg(self.projection.name())
                .arg(from)
                .arg("MKSTREAM")
                .query_async(&mut self.conn)
                .await;
            match created {
                Ok(_) if from != "0" => warn!(
                    group = self.projection.name(),
                    stream, from, "the group was missing; created again from its checkpoint"
                ),
                Ok(_) => debug!(group = self.projection.name(), stream, "created group"),
                Err(e) if e.code() == Some("BUSYGROUP") => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.ready = true;
        if self.history.is_none() {
            self.history = Some(HashMap::new());
        }
        Ok(())
    }

    /// Records the group's checkpoint (see [`group_checkpoint`]): for each stream, the entry
    /// below which everything is acknowledged. Cheap (one Function call); the runner records
    /// it every [`CHECKPOINT_EVERY`] and when it stops.
    pub async fn record_checkpoint(&mut self) -> Result<(), ProjectionError> {
        let mut keys = Vec::with_capacity(self.streams.len() + 1);
        keys.push(group_checkpoint(self.projection.name()));
        keys.extend(self.streams.iter().cloned());
        let _: i64 = redis::cmd("FCALL")
            .arg("checkpoint")
            .arg(keys.len())
            .arg(&keys)
            .arg(self.projection.name())
            .query_async(&mut self.conn)
            .await?;
        Ok(())
    }

    /// Processes one batch (see the module docs for the order of sources). After an error the
    /// runner starts over from its own pending entries at the next step.
    pub async fn step(&mut self) -> Result<StepReport, ProjectionError> {
        let streams = self.streams.clone();
        self.step_with(&streams).await
    }

    /// Like [`step`](Self::step), but reads new entries only from `streams` (a subset of the
    /// projection's streams, in the given order). For tests and tools that need to feed a
    /// projection its streams in a chosen order.
    pub async fn step_only(&mut self, streams: &[String]) -> Result<StepReport, ProjectionError> {
        self.step_with(streams).await
    }
}

/// Runs one consumer of `projection` until `shutdown` is cancelled, finishing the batch in hand.
/// Redis going away is logged and retried with back-off; nothing is acknowledged that was not
/// applied, so nothing is lost meanwhile. What it applies and dead-letters is counted in
/// `metrics` (the group's pending, lag and dead-letter gauges are refreshed beside it, by
/// whoever starts the role: `ordershop-operations`' `gauges`).
pub async fn run_until_stopped(
    redis: RedisConfig,
    projection: ProjectionName,
    options: RunnerOptions,
    shutdown: CancellationToken,
    metrics: Arc<Metrics>,
) -> Result<(), ProjectionError> {
    let observed = metrics::Observed::new(metrics);
    with_projection!(projection, p => {
        supervise::run(redis, p, options, shutdown, observed).await
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ordershop_readmodel::keys;

    #[test]
    fn the_runner_library_is_named_as_the_key_scheme_says() {
        assert!(
            RUNNER_LIBRARY_SOURCE.starts_with(&format!("#!lua name={}\n", keys::RUNNER_LIBRARY))
        );
    }
}
