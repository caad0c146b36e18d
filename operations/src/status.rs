//! `status`: per projection group, its consumers, pending entries, lag, last delivered ID and
//! dead-lettered count, from XINFO (Redis 7 reports each group's lag per stream). The CLI
//! prints it as a table or JSON and exits non-zero when a group is behind a threshold; the
//! console shows it; [`gauges`](crate::gauges) keeps a process's metrics current from it.

use crate::error::OperationError;
use ordershop_eventstore::EntryId;
use ordershop_projections::read::{pairs, text};
use ordershop_projections::runner::consumers;
use ordershop_projections::runner::health::{self, LastError};
use ordershop_projections::ProjectionName;
use ordershop_readmodel::keys;
use ordershop_redis::RedisConfig;
use ordershop_redis::RedisConnection;
use redis::Value;
use serde::Serialize;
use std::collections::BTreeMap;

/// How long a group may go without any consumer's heartbeat before it counts as down: three
/// heartbeat intervals.
pub const DOWN_AFTER: std::time::Duration =
    std::time::Duration::from_secs(3 * health::BEAT_EVERY.as_secs());

/// One consumer of a group, summed over the group's streams.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConsumerStatus {
    pub name: String,
    /// Entries delivered to it and not yet acknowledged.
    pub pending: u64,
    /// Milliseconds since it last read (the shortest over the streams).
    pub idle_ms: u64,
    /// Milliseconds since it last said it was alive (a running consumer does every 5 s);
    /// `None` when it never did (a consumer of a build without heartbeats).
    pub heartbeat_age_ms: Option<u64>,
}

/// The state of one projection's consumer group, summed over its streams.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupStatus {
    pub projection: ProjectionName,
    /// The group's name (`projection.name()`).
    pub group: &'static str,
    /// Streams the group reads, and how many of them do not have the group yet (no consumer of
    /// the projection has started since the stream appeared).
    pub streams: usize,
    pub streams_without_group: usize,
    pub consumers: Vec<ConsumerStatus>,
    /// Entries delivered to a consumer and not acknowledged yet.
    pub pending: u64,
    /// Entries not yet delivered to the group (Redis 7's per-group lag; counted by hand in the
    /// rare case Redis cannot tell, after entries were deleted from a stream).
    pub lag: u64,
    /// The highest ID delivered to the group over its streams (IDs are store-wide, so this is
    /// how far the projection has read); `None` when nothing was delivered yet.
    #[serde(serialize_with = "as_text")]
    pub last_delivered: Option<EntryId>,
    /// Entries parked in the projection's dead-letter stream now (`dead-letters list` shows
    /// them).
    pub dead_lettered: u64,
    /// Parked entries an operator retried successfully, and discarded (`dead-letters`).
    pub dead_letters_retried: u64,
    pub dead_letters_discarded: u64,
    /// A rebuild holds the projection's pause lease.
    pub paused: bool,
    /// No consumer of the group has said it is alive within [`DOWN_AFTER`]: the projection is
    /// stopped (or stuck), whatever its lag says now.
    pub down: bool,
    /// What went wrong last, if anything ever did.
    pub last_error: Option<LastError>,
}

impl GroupStatus {
    /// Entries the projection has not finished with: not delivered yet, or delivered and not
    /// acknowledged.
    pub fn behind(&self) -> u64 {
        self.lag + self.pending
    }

    /// Whether the group is more than `threshold` entries behind.
    pub fn is_behind(&self, threshold: u64) -> bool {
        self.behind() > threshold
    }
}

fn as_text<S: serde::Serializer>(id: &Option<EntryId>, s: S) -> Result<S::Ok, S::Error> {
    match id {
        Some(id) => s.serialize_some(&id.to_string()),
        None => s.serialize_none(),
    }
}

/// Whether there is a shop at all where `conn` points: the store's clock, or any event stream.
/// An empty Redis, or a wrong namespace, has neither.
pub async fn shop_exists(conn: &mut RedisConnection) -> Result<bool, OperationError> {
    let mut keys = vec![ordershop_eventstore::keys::clock()];
    keys.extend(ordershop_eventstore::Stream::all().iter().map(|s| s.key()));
    let found: u64 = redis::cmd("EXISTS").arg(&keys).query_async(conn).await?;
    Ok(found > 0)
}

/// The status of every projection's group.
pub async fn group_status(redis: &RedisConfig) -> Result<Vec<GroupStatus>, OperationError> {
    let mut conn = ordershop_redis::RedisConnection::connect(redis).await?;
    statuses(&mut conn).await
}

/// The status of every projection's group, over a connection the caller holds.
pub async fn statuses(conn: &mut RedisConnection) -> Result<Vec<GroupStatus>, OperationError> {
    let mut all = Vec::with_capacity(ProjectionName::ALL.len());
    for projection in ProjectionName::ALL {
        all.push(status_of(conn, projection).await?);
    }
    Ok(all)
}

fn int(value: Option<&&Value>) -> Option<u64> {
    match value {
        Some(Value::Int(n)) => u64::try_from(*n).ok(),
        Some(other) => text(other)?.parse().ok(),
        None => None,
    }
}

/// How many entries behind a group status counts exactly.
const COUNT_PAGE: u64 = 10_000;

/// The status of one projection's group.
pub async fn status_of(
    conn: &mut RedisConnection,
    projection: ProjectionName,
) -> Result<GroupStatus, OperationError> {
    let group = projection.name();
    let streams = projection.streams();
    let mut status = GroupStatus {
        projection,
        group,
        streams: streams.len(),
        streams_without_group: 0,
        consumers: Vec::new(),
        pending: 0,
        lag: 0,
        last_delivered: None,
        dead_lettered: 0,
        dead_letters_retried: 0,
        dead_letters_discarded: 0,
        paused: false,
        down: false,
        last_error: None,
    };
    let mut by_name: BTreeMap<String, ConsumerStatus> = BTreeMap::new();
    for stream in &streams {
        let groups: Result<Value, redis::RedisError> = redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(stream)
            .query_async(conn)
            .await;
        let groups = match groups {
            Ok(groups) => groups,
            // The stream does not exist yet: nothing to read.
            Err(e) if e.detail().is_some_and(|d| d.contains("no such key")) => {
                status.streams_without_group += 1;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let Value::Array(groups) = groups else {
            return Err(OperationError::protocol(
                "XINFO GROUPS",
                format!("{groups:?}"),
            ));
        };
        let info = groups.iter().find_map(|g| {
            let fields: BTreeMap<String, &Value> = pairs(g)?
                .into_iter()
                .filter_map(|(k, v)| Some((text(k)?, v)))
                .collect();
            (fields.get("name").and_then(|n| text(n)).as_deref() == Some(group)).then_some(fields)
        });
        let Some(info) = info else {
            // No group yet: a consumer would start from the beginning, so all of it is lag.
            status.streams_without_group += 1;
            let len: u64 = redis::cmd("XLEN").arg(stream).query_async(conn).await?;
            status.lag += len;
            continue;
        };
        status.pending += int(info.get("pending")).unwrap_or(0);
        let last = info
            .get("last-delivered-id")
            .and_then(|v| text(v))
            .and_then(|s| s.parse::<EntryId>().ok())
            .unwrap_or(EntryId::ZERO);
        if last > EntryId::ZERO {
            status.last_delivered = status.last_delivered.max(Some(last));
        }
        // Redis's own `lag` comes from a read counter that goes wrong after a restart from a
        // rewritten AOF (a group that has read everything can report hundreds behind for good).
        // A group whose last delivered ID is the stream's last entry is 0 behind; otherwise we
        // count the entries after it ourselves, exactly up to one page (so `--max-lag` is exact
        // where it matters and the 5-second gauge refresh stays cheap); a backlog longer than a
        // page is reported as Redis's figure, or the page, whichever is larger.
        let top: Vec<(String, Value)> = redis::cmd("XREVRANGE")
            .arg(stream)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async::<Vec<(String, Value)>>(conn)
            .await?;
        let top = top.first().and_then(|(id, _)| id.parse::<EntryId>().ok());
        status.lag += match top {
            None => 0,
            Some(top) if last >= top => 0,
            Some(_) => {
                let counted = count_after(conn, stream, last).await?;
                if counted < COUNT_PAGE {
                    counted
                } else {
                    counted.max(int(info.get("lag")).unwrap_or(0))
                }
            }
        };

        for consumer in consumers::list(conn, stream, group).await? {
            let idle_ms = consumer.idle_ms.unwrap_or(0);
            let entry = by_name
                .entry(consumer.name.clone())
                .or_insert(ConsumerStatus {
                    name: consumer.name,
                    pending: 0,
                    idle_ms,
                    heartbeat_age_ms: None,
                });
            entry.pending += consumer.pending.unwrap_or(0);
            entry.idle_ms = entry.idle_ms.min(idle_ms);
        }
    }
    let (last_error, beats) = health::read(conn, group).await?;
    let now = health::now_ms();
    for (name, consumer) in &mut by_name {
        consumer.heartbeat_age_ms = beats.get(name).map(|at| now.saturating_sub(*at));
    }
    status.last_error = last_error;
    status.consumers = by_name.into_values().collect();
    status.dead_lettered = redis::cmd("XLEN")
        .arg(keys::dead_letters(group))
        .query_async(conn)
        .await?;
    let paused: u64 = redis::cmd("EXISTS")
        .arg(keys::projection_paused(group))
        .query_async(conn)
        .await?;
    status.paused = paused == 1;
    // A group that exists but whose consumers have all gone quiet. (A group not made yet is
    // lag, not down: its projection never started.)
    status.down = status.streams_without_group < status.streams && !any_alive(&beats, now);
    (status.dead_letters_retried, status.dead_letters_discarded) =
        crate::dead_letters::actions(conn, projection).await?;
    Ok(status)
}

/// Whether any of a group's heartbeats (consumer -> unix ms) is younger than [`DOWN_AFTER`].
fn any_alive(beats: &std::collections::HashMap<String, u64>, now_ms: u64) -> bool {
    let bound = DOWN_AFTER.as_millis() as u64;
    beats.values().any(|at| now_ms.saturating_sub(*at) <= bound)
}

/// Whether `projection` is down: no consumer of it said it was alive within [`DOWN_AFTER`].
pub async fn is_down(
    conn: &mut RedisConnection,
    projection: ProjectionName,
) -> Result<bool, OperationError> {
    let (_, beats) = health::read(conn, projection.name()).await?;
    Ok(!any_alive(&beats, health::now_ms()))
}

/// Entries of a stream after `after`, counted up to [`COUNT_PAGE`].
async fn count_after(
    conn: &mut RedisConnection,
    stream: &str,
    after: EntryId,
) -> Result<u64, OperationError> {
    let ids: Vec<Value> = redis::cmd("XRANGE")
        .arg(stream)
        .arg(format!("({after}"))
        .arg("+")
        .arg("COUNT")
        .arg(COUNT_PAGE)
        .query_async(conn)
        .await?;
    Ok(ids.len() as u64)
}
