//! `rebuild <projection>`: wipe one projection's state and rebuild it from the log while the shop
//! keeps running.
//!
//! Strategy: pause that projection's consumers, rebuild in place, resume. The rebuild takes the
//! projection's pause lease (`<projection>:paused`, set with NX and an expiry, holding a random
//! token). From then on every live batch is refused atomically by the projection's Function (its
//! consumers hold the batch, unacknowledged, and retry), so nothing is applied concurrently with
//! the wipe and the replay. The rebuild then wipes the projection's keys, replays its streams
//! merged in ID order up to the last ID issued when it started, through the same Function in
//! rebuild mode (which checks and renews the lease and never touches the outbox), and releases
//! the lease. The consumers resume where they were: events they already had are skipped by
//! version, later ones applied, so the result equals an uninterrupted live projection.
//!
//! The price: while a rebuild runs, readers of that projection see it filling up from empty, and
//! its consumers fall behind (they catch up afterwards). If the rebuild dies, its lease expires
//! after [`LEASE`] and the consumers resume on a partial state: run the rebuild again.

use crate::error::OperationError;
use ordershop_eventstore::function::load_library;
use ordershop_eventstore::{EntryId, EventStore};
use ordershop_projections::projection::{
    call_function, CallOutcome, Entry, Mode, Projection, Replayable,
};
use ordershop_projections::runner::{MAX_EVENTS_PER_CALL, RUNNER_LIBRARY_SOURCE};
use ordershop_projections::{with_projection, ProjectionName};
use ordershop_readmodel::keys;
use ordershop_redis::RedisConfig;
use ordershop_redis::RedisConnection;
use serde::Serialize;
use std::fmt;
use std::time::{Duration, Instant};
use tracing::{info, warn};
use uuid::Uuid;

/// How long a rebuild's pause outlives a rebuild that stopped renewing it.
pub const LEASE: Duration = Duration::from_secs(30);

/// Keys deleted per round trip while wiping.
const WIPE_CHUNK: usize = 1_000;

/// What a rebuild did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RebuildReport {
    pub projection: ProjectionName,
    /// Keys deleted before the replay.
    pub wiped_keys: u64,
    /// Entries replayed (the log up to `until`).
    pub replayed: u64,
    /// Events that changed the rebuilt state.
    pub applied: u64,
    /// Entries that are not valid events (left to the live consumers' dead-letter stream).
    pub invalid: u64,
    /// The last entry ID the rebuild covers; later events are the live consumers' work.
    #[serde(serialize_with = "as_text")]
    pub until: EntryId,
    #[serde(serialize_with = "as_secs")]
    pub elapsed: Duration,
}

impl fmt::Display for RebuildReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count =
            |n: u64, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
        write!(
            f,
            "rebuilt {} in {:.2} s: replayed {} (the log up to {}), {} applied, {} skipped as \
             invalid; {} wiped first",
            self.projection,
            self.elapsed.as_secs_f64(),
            count(self.replayed, "entry", "entries"),
            self.until,
            count(self.applied, "event", "events"),
            count(self.invalid, "entry", "entries"),
            count(self.wiped_keys, "key", "keys"),
        )
    }
}

/// The key patterns a rebuild of `projection` deletes before it replays the log (for the
/// operator to confirm). The message service's delivered log is not rebuildable.
pub fn wiped_key_patterns(projection: ProjectionName) -> Result<Vec<String>, OperationError> {
    with_projection!(
        projection,
        view => Ok(view.state_patterns()),
        sink => Err(OperationError::NotRebuildable(sink.name()))
    )
}

/// Wipes and rebuilds one projection from the log, calling `progress(done, total)` as it goes.
/// Safe while that projection's consumers run (they are paused meanwhile). A CRM rebuild writes
/// no message. The message service's delivered log is a sink, not a view: asking to rebuild it
/// is an error.
pub async fn rebuild_projection(
    redis: &RedisConfig,
    projection: ProjectionName,
    progress: &mut (dyn FnMut(u64, u64) + Send),
) -> Result<RebuildReport, OperationError> {
    with_projection!(
        projection,
        view => rebuild(redis, projection, view, progress).await,
        sink => Err(OperationError::NotRebuildable(sink.name()))
    )
}

async fn rebuild<P: Replayable>(
    redis: &RedisConfig,
    which: ProjectionName,
    projection: P,
    progress: &mut (dyn FnMut(u64, u64) + Send),
) -> Result<RebuildReport, OperationError> {
    let name = projection.name();
    let mut conn = ordershop_redis::RedisConnection::connect(redis).await?;
    load_library(&mut conn, RUNNER_LIBRARY_SOURCE).await?;
    load_library(&mut conn, projection.library()).await?;

    let token = Uuid::new_v4().to_string();
    let lease = Lease {
        key: keys::projection_paused(name),
        token,
    };
    let taken: Option<String> = redis::cmd("SET")
        .arg(&lease.key)
        .arg(&lease.token)
        .arg("NX")
        .arg("PX")
        .arg(LEASE.as_millis() as u64)
        .query_async(&mut conn)
        .await?;
    if taken.is_none() {
        return Err(OperationError::RebuildRunning(name));
    }
    info!(
        projection = name,
        "rebuild started; live consumers are paused"
    );
    let result = rebuild_paused(&mut conn, which, &projection, &lease, progress).await;
    if let Err(e) = lease.release(&mut conn).await {
        warn!(projection = name, error = %e, "could not release the pause lease; it expires by itself");
    }
    if let Ok(report) = &result {
        info!(projection = name, "{report}; live consumers resume");
    }
    result
}

struct Lease {
    key: String,
    token: String,
}

impl Lease {
    fn mode(&self) -> Mode<'_> {
        Mode::Rebuild {
            token: &self.token,
            lease: LEASE,
        }
    }

    async fn renew(
        &self,
        conn: &mut RedisConnection,
        name: &'static str,
    ) -> Result<(), OperationError> {
        let renewed: i64 = redis::cmd("FCALL")
            .arg("lease_renew")
            .arg(1)
            .arg(&self.key)
            .arg(&self.token)
            .arg(LEASE.as_millis() as u64)
            .query_async(conn)
            .await?;
        if renewed == 1 {
            Ok(())
        } else {
            Err(OperationError::LeaseLost(name))
        }
    }

    async fn release(&self, conn: &mut RedisConnection) -> Result<(), redis::RedisError> {
        let _: i64 = redis::cmd("FCALL")
            .arg("lease_release")
            .arg(1)
            .arg(&self.key)
            .arg(&self.token)
            .query_async(conn)
            .await?;
        Ok(())
    }
}

async fn rebuild_paused<P: Replayable>(
    conn: &mut RedisConnection,
    which: ProjectionName,
    projection: &P,
    lease: &Lease,
    progress: &mut (dyn FnMut(u64, u64) + Send),
) -> Result<RebuildReport, OperationError> {
    let name = projection.name();
    let started = Instant::now();
    let wiped_keys = wipe(conn, projection, lease).await?;

    let streams = projection.event_streams();
    let store = EventStore::from_connection(conn.clone());
    let mut replay = store.replay(streams.clone(), EntryId::ZERO).await?;
    let mut pipe = redis::pipe();
    for stream in &streams {
        pipe.cmd("XLEN").arg(stream.key());
    }
    let lengths: Vec<u64> = pipe.query_async(conn).await?;
    let mut total: u64 = lengths.iter().sum();

    let mut report = RebuildReport {
        projection: which,
        wiped_keys,
        replayed: 0,
        applied: 0,
        invalid: 0,
        until: replay.until(),
        elapsed: Duration::ZERO,
    };
    progress(0, total);
    while let Some(batch) = replay.next_batch().await? {
        let mut events = Vec::with_capacity(batch.len());
        for raw in batch {
            report.replayed += 1;
            let entry = Entry::from(raw);
            match projection.decode(&entry) {
                Ok(event) => events.push(event),
                Err(reason) => {
                    report.invalid += 1;
                    warn!(projection = name, stream = %entry.stream, id = %entry.id, reason,
                          "rebuild skips an invalid entry");
                }
            }
        }
        for chunk in events.chunks(MAX_EVENTS_PER_CALL) {
            let refs: Vec<&P::Event> = chunk.iter().collect();
            match call_function(conn, projection, lease.mode(), &refs).await? {
                CallOutcome::Done { applied, .. } => report.applied += applied,
                CallOutcome::LeaseLost => return Err(OperationError::LeaseLost(name)),
                CallOutcome::Paused => {
                    return Err(OperationError::protocol(name, "a rebuild batch was paused"))
                }
            }
        }
        total = total.max(report.replayed);
        progress(report.replayed, total);
    }
    lease.renew(conn, name).await?;
    projection.after_replay(conn).await?;
    lease.renew(conn, name).await?;
    progress(report.replayed, report.replayed);
    report.elapsed = started.elapsed();
    Ok(report)
}

/// Deletes every key of the projection's state (SCAN by pattern, UNLINK in chunks).
async fn wipe<P: Replayable>(
    conn: &mut RedisConnection,
    projection: &P,
    lease: &Lease,
) -> Result<u64, OperationError> {
    let mut wiped = 0;
    for pattern in projection.state_patterns() {
        if !pattern.contains('*') {
            let n: u64 = redis::cmd("UNLINK").arg(&pattern).query_async(conn).await?;
            wiped += n;
            continue;
        }
        let mut cursor: u64 = 0;
        loop {
            let (next, found): (u64, Vec<String>) = conn
                .query_shop_node(
                    redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(&pattern)
                        .arg("COUNT")
                        .arg(WIPE_CHUNK),
                )
                .await?;
            if !found.is_empty() {
                let n: u64 = redis::cmd("UNLINK").arg(&found).query_async(conn).await?;
                wiped += n;
                lease.renew(conn, projection.name()).await?;
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
    }
    Ok(wiped)
}

fn as_text<S: serde::Serializer>(id: &EntryId, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&id.to_string())
}

fn as_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}
