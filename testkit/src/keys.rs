//! Redis keys by pattern, for tests and rigs that compare or reset a projection's state: a
//! canonical dump (so two states compare with `==`), and deletion by SCAN + UNLINK (never
//! `KEYS` or `FLUSHALL`, so it works on a big keyspace and leaves other keys alone).

use redis::aio::ConnectionLike;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

/// Keys per SCAN step.
const SCAN_COUNT: u64 = 1_000;
/// Keys per UNLINK.
const UNLINK_CHUNK: usize = 500;

/// Every key of a dump with its value in canonical form: Sets sorted, Hashes as sorted objects,
/// Lists in order, Strings as strings, Sorted Sets as `[member, score]` pairs in order.
pub type KeyDump = BTreeMap<String, Value>;

/// The keys matching `pattern` (a pattern without `*` names one key, which may not exist).
pub async fn matching_keys(
    conn: &mut impl ConnectionLike,
    pattern: &str,
) -> redis::RedisResult<BTreeSet<String>> {
    if !pattern.contains('*') {
        return Ok(BTreeSet::from([pattern.to_owned()]));
    }
    let mut keys = BTreeSet::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, found): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(SCAN_COUNT)
            .query_async(conn)
            .await?;
        keys.extend(found);
        if next == 0 {
            return Ok(keys);
        }
        cursor = next;
    }
}

/// A canonical dump of every key matching the patterns.
pub async fn try_dump(
    conn: &mut impl ConnectionLike,
    patterns: &[impl AsRef<str>],
) -> redis::RedisResult<KeyDump> {
    let mut keys = BTreeSet::new();
    for pattern in patterns {
        keys.extend(matching_keys(conn, pattern.as_ref()).await?);
    }
    let mut out = KeyDump::new();
    for key in keys {
        let kind: String = redis::cmd("TYPE").arg(&key).query_async(conn).await?;
        let value = match kind.as_str() {
            "none" => continue,
            "set" => {
                let members: BTreeSet<String> =
                    redis::cmd("SMEMBERS").arg(&key).query_async(conn).await?;
                json!(members)
            }
            "hash" => {
                let map: BTreeMap<String, String> =
                    redis::cmd("HGETALL").arg(&key).query_async(conn).await?;
                json!(map)
            }
            "list" => {
                let items: Vec<String> = redis::cmd("LRANGE")
                    .arg(&key)
                    .arg(0)
                    .arg(-1)
                    .query_async(conn)
                    .await?;
                json!(items)
            }
            "string" => {
                let s: String = redis::cmd("GET").arg(&key).query_async(conn).await?;
                json!(s)
            }
            "zset" => {
                let items: Vec<(String, String)> = redis::cmd("ZRANGE")
                    .arg(&key)
                    .arg(0)
                    .arg(-1)
                    .arg("WITHSCORES")
                    .query_async(conn)
                    .await?;
                json!(items)
            }
            other => json!(format!("<{other}>")),
        };
        out.insert(key, value);
    }
    Ok(out)
}

/// [`try_dump`] for a test: panics if Redis fails.
pub async fn dump(conn: &mut impl ConnectionLike, patterns: &[impl AsRef<str>]) -> KeyDump {
    try_dump(conn, patterns).await.expect("dumping keys")
}

/// Deletes every key matching `pattern`; returns how many were deleted.
pub async fn unlink_matching(
    conn: &mut impl ConnectionLike,
    pattern: &str,
) -> redis::RedisResult<u64> {
    let keys: Vec<String> = matching_keys(conn, pattern).await?.into_iter().collect();
    let mut deleted = 0;
    for chunk in keys.chunks(UNLINK_CHUNK) {
        let n: u64 = redis::cmd("UNLINK").arg(chunk).query_async(conn).await?;
        deleted += n;
    }
    Ok(deleted)
}

/// [`unlink_matching`] for every pattern, for a test: panics if Redis fails.
pub async fn wipe(conn: &mut impl ConnectionLike, patterns: &[impl AsRef<str>]) {
    for pattern in patterns {
        unlink_matching(conn, pattern.as_ref())
            .await
            .expect("deleting keys");
    }
}
