//! Read-your-writes: after a command succeeded, the gateway waits until the entity cache has
//! applied every entity version the command produced, so the client's next query sees it.
//!
//! The projector advances `keys::applied_versions(names::ENTITY_CACHE, kind)` (entity id -> highest
//! version applied, kept after deletes) atomically with each cache write; the gateway polls it
//! with a short doubling backoff until every version is reached or the timeout passes.

use crate::versions::VersionStamp;
use ordershop_domain::EntityKind;
use ordershop_eventstore::Backoff;
use ordershop_eventstore::RedisConnection;
use ordershop_readmodel::{keys, names};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::time::Instant;
use uuid::Uuid;

const FIRST_PAUSE: Duration = Duration::from_millis(1);
const MAX_PAUSE: Duration = Duration::from_millis(20);

/// How a wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consistency {
    /// The cache has applied every version.
    Applied,
    /// The timeout passed with this many entities still behind.
    TimedOut { behind: usize },
}

/// Waits until the entity cache has applied each of these versions (or a later one).
pub async fn wait_until_applied(
    conn: &RedisConnection,
    versions: &[VersionStamp],
    timeout: Duration,
) -> Result<Consistency, redis::RedisError> {
    // The highest version wanted per entity, grouped by kind (one HMGET per kind).
    let mut wanted: BTreeMap<EntityKind, BTreeMap<Uuid, u64>> = BTreeMap::new();
    for stamp in versions {
        let version = wanted
            .entry(stamp.kind)
            .or_default()
            .entry(stamp.id)
            .or_default();
        *version = (*version).max(stamp.version);
    }
    let deadline = Instant::now() + timeout;
    let mut backoff = Backoff::new(FIRST_PAUSE, MAX_PAUSE);
    loop {
        let behind = count_behind(conn, &wanted).await?;
        if behind == 0 {
            return Ok(Consistency::Applied);
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(Consistency::TimedOut { behind });
        }
        tokio::time::sleep(backoff.next_pause().min(deadline - now)).await;
    }
}

async fn count_behind(
    conn: &RedisConnection,
    wanted: &BTreeMap<EntityKind, BTreeMap<Uuid, u64>>,
) -> Result<usize, redis::RedisError> {
    if wanted.is_empty() {
        return Ok(0);
    }
    let mut pipe = redis::pipe();
    for (kind, ids) in wanted {
        pipe.cmd("HMGET")
            .arg(keys::applied_versions(names::ENTITY_CACHE, *kind))
            .arg(ids.keys().map(Uuid::to_string).collect::<Vec<_>>());
    }
    let applied: Vec<Vec<Option<String>>> = pipe.query_async(&mut conn.clone()).await?;
    Ok(wanted
        .values()
        .zip(applied)
        .flat_map(|(ids, applied)| ids.values().copied().zip(applied))
        .filter(|(want, have)| {
            let have = have.as_deref().and_then(|v| v.trim().parse::<u64>().ok());
            have.is_none_or(|have| have < *want)
        })
        .count())
}
