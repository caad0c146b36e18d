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

use crate::error::ProjectionError;
use crate::projection::{CallOutcome, Entry, Mode, Projection};
use crate::read::{pairs, parse_xautoclaim, parse_xreadgroup, text, Read};
use crate::{Crm, EntityCache, MsgDelivery, ProjectionName};
use ordershop_eventstore::store::{connection_manager, is_missing_function, load_library};
use ordershop_eventstore::{EntryId, RedisConfig};
use ordershop_readmodel::keys;
use ordershop_telemetry::error_chain;
use ordershop_telemetry::Metrics;
use redis::aio::ConnectionManager;
use redis::{ErrorKind, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

/// The runner's own Function library (lease release, atomic dead-lettering).
pub(crate) const RUNNER_LIBRARY_SOURCE: &str = include_str!("lua/runner.lua");

/// A consumer with nothing pending that has not read for this long is removed from its group.
pub const FORGET_AFTER: Duration = Duration::from_secs(24 * 3600);
/// How often a runner looks for such consumers.
const CLEANUP_EVERY: Duration = Duration::from_secs(600);

/// Most events applied by one Function call, so that one call never blocks Redis for long.
pub(crate) const MAX_EVENTS_PER_CALL: usize = 256;

/// How a runner consumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunnerOptions {
    /// The consumer's name within the group. Keep it stable across restarts of the same
    /// instance so that it re-processes its own pending entries first.
    pub consumer: String,
    /// How long a read waits for new entries. Zero: do not block (for step-driven tests).
    pub block: Duration,
    /// Entries read per stream per step.
    pub batch: usize,
    /// How long an entry must have been pending before another consumer takes it over.
    pub claim_idle: Duration,
    /// Deliveries after which an entry that still fails goes to the dead-letter stream.
    pub max_deliveries: u64,
}

impl Default for RunnerOptions {
    fn default() -> Self {
        Self {
            consumer: default_consumer_name(),
            block: Duration::from_secs(2),
            batch: 100,
            claim_idle: Duration::from_secs(30),
            max_deliveries: 5,
        }
    }
}

/// `<hostname>-<pid>`: stable across restarts of a container (same hostname, pid 1), distinct
/// between hosts and processes.
pub fn default_consumer_name() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "ordershop".to_owned());
    format!("{host}-{}", std::process::id())
}

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

/// One consumer of one projection's group, driven step by step.
pub struct Runner<P: Projection> {
    projection: P,
    conn: ConnectionManager,
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
        let conn = connection_manager(redis).await?;
        let mut runner = Self::from_connection(conn, projection, options);
        runner.setup().await?;
        Ok(runner)
    }

    /// Wraps a connection; the first step loads the Functions and creates the groups.
    pub fn from_connection(conn: ConnectionManager, projection: P, options: RunnerOptions) -> Self {
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
        for stream in &self.streams {
            let created: Result<Value, redis::RedisError> = redis::cmd("XGROUP")
                .arg("CREATE")
                .arg(stream)
                .arg(self.projection.name())
                .arg("0")
                .arg("MKSTREAM")
                .query_async(&mut self.conn)
                .await;
            match created {
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

    async fn step_with(&mut self, new_from: &[String]) -> Result<StepReport, ProjectionError> {
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
            self.forget_gone_consumers().await?;
            self.next_cleanup = Some(Instant::now() + CLEANUP_EVERY);
        }
        Ok(read)
    }

    /// Removes from the group the consumers that hold nothing and have not read for
    /// [`FORGET_AFTER`] (instances that stopped for good), so that `status` lists live ones.
    /// Harmless to a consumer that was only quiet: Redis re-creates it at its next read.
    async fn forget_gone_consumers(&mut self) -> Result<(), ProjectionError> {
        for stream in self.streams.clone() {
            let listed: Value = redis::cmd("XINFO")
                .arg("CONSUMERS")
                .arg(&stream)
                .arg(self.group())
                .query_async(&mut self.conn)
                .await?;
            let Value::Array(listed) = listed else {
                continue;
            };
            for consumer in &listed {
                let Some(fields) = pairs(consumer) else {
                    continue;
                };
                let field = |name: &str| {
                    fields
                        .iter()
                        .find(|(k, _)| text(k).as_deref() == Some(name))
                        .map(|(_, v)| *v)
                };
                let number = |name: &str| match field(name) {
                    Some(Value::Int(n)) => u64::try_from(*n).ok(),
                    _ => None,
                };
                let Some(name) = field("name").and_then(text) else {
                    continue;
                };
                let gone = number("pending") == Some(0)
                    && number("idle").is_some_and(|idle| idle > FORGET_AFTER.as_millis() as u64);
                if gone && name != self.options.consumer {
                    let _: i64 = redis::cmd("XGROUP")
                        .arg("DELCONSUMER")
                        .arg(&stream)
                        .arg(self.group())
                        .arg(&name)
                        .query_async(&mut self.conn)
                        .await?;
                    info!(
                        group = self.group(),
                        stream,
                        consumer = name,
                        "forgot a gone consumer"
                    );
                }
            }
        }
        Ok(())
    }

    /// Applies a batch in ID order, acks what was applied, and deals with what failed.
    async fn process(&mut self, source: Source, read: Read) -> Result<StepReport, ProjectionError> {
        let mut report = StepReport {
            source,
            read: read.len(),
            ..StepReport::default()
        };
        if !read.gone.is_empty() {
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
        let cmd = self.projection.apply_call(Mode::Live, events);
        let reply: Value = cmd.query_async(&mut self.conn).await?;
        CallOutcome::parse(self.projection.name(), &reply)
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

/// The server answered with an error (as opposed to the connection failing).
fn is_server_reply(e: &redis::RedisError) -> bool {
    matches!(e.kind(), ErrorKind::Server(_) | ErrorKind::Extension)
}

/// Exponential back-off between retries after errors.
struct Backoff {
    next: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(5);

    fn new() -> Self {
        Self { next: Self::FIRST }
    }

    fn next(&mut self) -> Duration {
        let now = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        now
    }

    fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

/// How often a paused runner retries its held batch.
const PAUSE_POLL: Duration = Duration::from_millis(200);
/// Pause after an empty step when `block` is zero, so an idle runner does not spin.
const IDLE_POLL: Duration = Duration::from_millis(100);

/// Sleeps unless shutdown comes first; true when shutting down.
async fn sleep_or_stop(pause: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        () = shutdown.cancelled() => true,
        () = tokio::time::sleep(pause) => false,
    }
}

/// How often a running consumer refreshes its group's pending and lag gauges.
pub const BACKLOG_REFRESH: Duration = Duration::from_secs(5);

/// Runs one consumer of `projection` until `shutdown` is cancelled, finishing the batch in hand.
/// Redis going away is logged and retried with back-off; nothing is acknowledged that was not
/// applied, so nothing is lost meanwhile. What it applies and dead-letters is counted in
/// `metrics`, and the group's pending and lag are refreshed there every [`BACKLOG_REFRESH`].
pub async fn run_until_stopped(
    redis: RedisConfig,
    projection: ProjectionName,
    options: RunnerOptions,
    shutdown: CancellationToken,
    metrics: Arc<Metrics>,
) -> Result<(), ProjectionError> {
    let observed = Observed {
        projection,
        metrics,
    };
    match projection {
        ProjectionName::EntityCache => run(redis, EntityCache, options, shutdown, observed).await,
        ProjectionName::Crm => run(redis, Crm, options, shutdown, observed).await,
        ProjectionName::MsgDelivery => run(redis, MsgDelivery, options, shutdown, observed).await,
    }
}

/// Where a running consumer records what it did.
struct Observed {
    projection: ProjectionName,
    metrics: Arc<Metrics>,
}

impl Observed {
    fn step(&self, report: &StepReport) {
        let name = self.projection.name();
        if report.applied > 0 {
            self.metrics.events_applied(name, report.applied);
            if self.projection == ProjectionName::MsgDelivery {
                self.metrics.messages_delivered(report.applied);
            }
        }
        if report.dead_lettered > 0 {
            self.metrics
                .dead_lettered(name, report.dead_lettered as u64);
        }
    }

    /// Reads the group's pending and lag (as `status` does); a failure only leaves the gauges
    /// as they were.
    async fn refresh_backlog(&self, conn: &mut ConnectionManager) {
        match crate::status::status_of(conn, self.projection).await {
            Ok(status) => {
                self.metrics
                    .projection_backlog(self.projection.name(), status.pending, status.lag)
            }
            Err(e) => debug!(group = self.projection.name(), error = %error_chain(&e),
                             "cannot refresh the backlog gauges"),
        }
    }
}

async fn run<P: Projection>(
    redis: RedisConfig,
    projection: P,
    options: RunnerOptions,
    shutdown: CancellationToken,
    observed: Observed,
) -> Result<(), ProjectionError> {
    let group = projection.name();
    let consumer = options.consumer.clone();
    let mut backoff = Backoff::new();
    let mut runner = loop {
        if shutdown.is_cancelled() {
            return Ok(());
        }
        match Runner::connect(&redis, projection.clone(), options.clone()).await {
            Ok(runner) => break runner,
            Err(ProjectionError::Redis(e)) if e.kind() == ErrorKind::InvalidClientConfig => {
                return Err(e.into());
            }
            Err(e) => {
                let pause = backoff.next();
                warn!(group, consumer, url = %redis.redacted_url(), error = %error_chain(&e),
                      retry_in = ?pause, "cannot start the projection; retrying");
                if sleep_or_stop(pause, &shutdown).await {
                    return Ok(());
                }
            }
        }
    };
    info!(group, consumer, "projection consumer started");
    backoff.reset();
    let mut next_refresh = Instant::now();
    while !shutdown.is_cancelled() {
        if Instant::now() >= next_refresh {
            observed.refresh_backlog(&mut runner.conn).await;
            next_refresh = Instant::now() + BACKLOG_REFRESH;
        }
        match runner.step().await {
            Ok(report) => {
                observed.step(&report);
                backoff.reset();
                let pause = if report.paused {
                    Some(PAUSE_POLL)
                } else if report.is_idle() && runner.options.block.is_zero() {
                    Some(IDLE_POLL)
                } else {
                    None
                };
                if let Some(pause) = pause {
                    if sleep_or_stop(pause, &shutdown).await {
                        break;
                    }
                }
            }
            Err(e) => {
                let pause = backoff.next();
                warn!(group, consumer, error = %error_chain(&e), retry_in = ?pause,
                      "projection step failed; retrying");
                if sleep_or_stop(pause, &shutdown).await {
                    break;
                }
            }
        }
    }
    info!(group, consumer, "projection consumer stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_runner_library_is_named_as_the_key_scheme_says() {
        assert!(
            RUNNER_LIBRARY_SOURCE.starts_with(&format!("#!lua name={}\n", keys::RUNNER_LIBRARY))
        );
    }

    #[test]
    fn backoff_doubles_up_to_a_ceiling_and_resets() {
        let mut backoff = Backoff::new();
        assert_eq!(backoff.next(), Duration::from_millis(100));
        assert_eq!(backoff.next(), Duration::from_millis(200));
        for _ in 0..10 {
            backoff.next();
        }
        assert_eq!(backoff.next(), Backoff::MAX);
        backoff.reset();
        assert_eq!(backoff.next(), Backoff::FIRST);
    }

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
