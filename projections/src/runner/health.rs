//! Why a projection stopped, readable from any host: each group keeps in Redis its last error
//! (`<group>:last_error`: kind, message, the entry it was about, when, which consumer) and a
//! heartbeat per consumer (`<group>:heartbeats`: consumer -> unix ms, written every
//! [`BEAT_EVERY`] while it runs). The operator's `status` and the `/metrics` gauges
//! (`ordershop-operations`) read them with [`read`].
//! Writing them is best effort: a Redis that cannot take the record cannot take the work
//! either, and the log line says the same.

use crate::error::ProjectionError;
use ordershop_eventstore::EntryId;
use ordershop_readmodel::keys;
use ordershop_redis::RedisConnection;
use serde::Serialize;
use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How often a running consumer records that it is alive.
pub const BEAT_EVERY: Duration = Duration::from_secs(5);

/// What went wrong last in a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LastError {
    /// `entry` (one entry could not be applied: it stays pending, then is parked), or `step`
    /// (a whole step failed: Redis unreachable, a Function missing or failing, ...).
    pub kind: String,
    pub message: String,
    /// `<stream> <entry id>` for an `entry` error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entry: Option<String>,
    /// Unix milliseconds.
    pub at_ms: u64,
    pub consumer: String,
}

/// Now in unix milliseconds: the clock heartbeats and errors are stamped with, so their ages
/// are measured on it too.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Records `message` as the group's last error.
pub(crate) async fn record_error(
    conn: &mut RedisConnection,
    group: &str,
    consumer: &str,
    kind: &str,
    message: &str,
    entry: Option<(&str, EntryId)>,
) {
    let mut cmd = redis::cmd("HSET");
    cmd.arg(keys::projection_last_error(group))
        .arg("kind")
        .arg(kind)
        .arg("message")
        .arg(message)
        .arg("at_ms")
        .arg(now_ms())
        .arg("consumer")
        .arg(consumer)
        .arg("entry")
        .arg(entry.map_or_else(String::new, |(stream, id)| format!("{stream} {id}")));
    let _: Result<i64, _> = cmd.query_async(conn).await;
}

/// Records that `consumer` is alive now.
pub(crate) async fn beat(conn: &mut RedisConnection, group: &str, consumer: &str) {
    let _: Result<i64, _> = redis::cmd("HSET")
        .arg(keys::projection_heartbeats(group))
        .arg(consumer)
        .arg(now_ms())
        .query_async(conn)
        .await;
}

/// Drops a consumer's heartbeat (it was removed from the group).
pub(crate) async fn forget(
    conn: &mut RedisConnection,
    group: &str,
    consumer: &str,
) -> Result<(), ProjectionError> {
    let _: i64 = redis::cmd("HDEL")
        .arg(keys::projection_heartbeats(group))
        .arg(consumer)
        .query_async(conn)
        .await?;
    Ok(())
}

/// The group's last error and its consumers' heartbeats (consumer -> unix ms).
pub async fn read(
    conn: &mut RedisConnection,
    group: &str,
) -> Result<(Option<LastError>, HashMap<String, u64>), ProjectionError> {
    let (error, beats): (HashMap<String, String>, HashMap<String, u64>) = redis::pipe()
        .cmd("HGETALL")
        .arg(keys::projection_last_error(group))
        .cmd("HGETALL")
        .arg(keys::projection_heartbeats(group))
        .query_async(conn)
        .await?;
    let last = (!error.is_empty()).then(|| {
        let get = |name: &str| error.get(name).cloned().unwrap_or_default();
        LastError {
            kind: get("kind"),
            message: get("message"),
            entry: error.get("entry").filter(|e| !e.is_empty()).cloned(),
            at_ms: error.get("at_ms").and_then(|v| v.parse().ok()).unwrap_or(0),
            consumer: get("consumer"),
        }
    });
    Ok((last, beats))
}
