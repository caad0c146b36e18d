//! Redis memory per event: `MEMORY USAGE <stream> SAMPLES 0` (exact) of our fifteen streams,
//! divided by their entries, next to the same entries (the same `event_id`, `entity`, `version`
//! values) added with a bare `XADD <stream> * ...` to copies of the streams. What differs is
//! only what the store adds to an entry: its explicit store-wide IDs. The write side's heads
//! (`es:head:<type>`, one field per entity, not per event) are reported beside, per event.

use super::{BenchEnv, Better, Measurement, Target};
use ordershop_domain::EntityKind;
use ordershop_eventstore::{keys, Stream};
use ordershop_redis::RedisConnection;
use redis::streams::StreamRangeReply;
use redis::Value;

/// Entries copied per round trip.
const CHUNK: usize = 2_000;
/// Prefix of the bare copies.
const BARE_PREFIX: &str = "bench:bare:";

async fn memory_usage(conn: &mut RedisConnection, key: &str) -> anyhow::Result<u64> {
    let bytes: Option<u64> = redis::cmd("MEMORY")
        .arg("USAGE")
        .arg(key)
        .arg("SAMPLES")
        .arg(0)
        .query_async(conn)
        .await?;
    Ok(bytes.unwrap_or_default())
}

/// Copies a stream's entries to `<bare prefix><stream>` with auto IDs; returns the count.
async fn copy_bare(conn: &mut RedisConnection, stream: &str) -> anyhow::Result<u64> {
    let length: u64 = redis::cmd("XLEN").arg(stream).query_async(conn).await?;
    let mut after = "-".to_owned();
    let mut copied = 0;
    for _ in 0..(length / CHUNK as u64 + 2) {
        let reply: StreamRangeReply = redis::cmd("XRANGE")
            .arg(stream)
            .arg(&after)
            .arg("+")
            .arg("COUNT")
            .arg(CHUNK)
            .query_async(conn)
            .await?;
        let n = reply.ids.len();
        let mut pipe = redis::pipe();
        for entry in &reply.ids {
            after = format!("({}", entry.id);
            let field = |name: &str| match entry.map.get(name) {
                Some(Value::BulkString(b)) => b.clone(),
                _ => Vec::new(),
            };
            pipe.cmd("XADD")
                .arg(format!("{BARE_PREFIX}{stream}"))
                .arg("*")
                .arg("event_id")
                .arg(field("event_id"))
                .arg("entity")
                .arg(field("entity"))
                .arg("version")
                .arg(field("version"))
                .ignore();
        }
        if n > 0 {
            let () = pipe.query_async(conn).await?;
        }
        copied += n as u64;
        if n < CHUNK {
            break;
        }
    }
    Ok(copied)
}

pub async fn measure(env: &BenchEnv) -> anyhow::Result<Vec<Measurement>> {
    env.progress
        .step("memory: MEMORY USAGE of the streams and of bare copies");
    let mut conn = env.conn.clone();
    let mut ours = 0u64;
    let mut bare = 0u64;
    let mut entries = 0u64;
    for stream in Stream::all() {
        let key = stream.key();
        ours += memory_usage(&mut conn, &key).await?;
        entries += copy_bare(&mut conn, &key).await?;
        let copy = format!("{BARE_PREFIX}{key}");
        bare += memory_usage(&mut conn, &copy).await?;
        let _: u64 = redis::cmd("UNLINK")
            .arg(&copy)
            .query_async(&mut conn)
            .await?;
    }
    let mut heads = 0u64;
    for kind in EntityKind::ALL {
        heads += memory_usage(&mut conn, &keys::heads(kind)).await?;
    }
    let per = |bytes: u64| bytes as f64 / entries.max(1) as f64;
    Ok(vec![
        Measurement::compared(
            format!("Redis bytes per event, {entries} events"),
            "bytes",
            Better::Lower,
            vec![per(ours)],
            vec![per(bare)],
            Some(Target::RatioAtMost(1.3)),
        )
        .with_note("streams only; bare: XADD * of the same fields"),
        Measurement::alone(
            "write-side heads per event",
            "bytes",
            Better::Lower,
            vec![per(heads)],
            None,
        )
        .with_note("es:head:* (latest state per entity), spread over the events"),
    ])
}
