//! Replaying the log: the entity-cache rebuild and the CRM's catch-up on a backlog, each next to
//! a bare baseline that reads the same streams with XRANGE and writes the same fields with
//! pipelined HSET/SADD; and the projector's peak RSS at two sizes of the log.
//!
//! - rebuild: [`rebuild_projection`] (wipe, replay merged in ID order, one Function call per
//!   256 events that checks versions and maintains the indexes);
//! - CRM catch-up: a fresh `crm` consumer group over the backlog, driven by the production
//!   [`Runner`] (XREADGROUP, apply, XACK per batch) until it is idle; its baseline makes the
//!   same plans (`crm::plan`) from the same entries read with XRANGE, and sends the writes they
//!   list as plain pipelined commands (no Function, no checks, no reads, no group);
//! - bare: for each stream, XRANGE in chunks of 2,000, parse each entity's JSON, then one
//!   pipeline per chunk of `HSET bench:bare:<type>_entity:<id> <its scalar fields>` and
//!   `SADD bench:bare:<type>_ids <id>` — the writes an entity cache cannot avoid, with none of
//!   the ordering, versioning, indexes or acknowledgement;
//! - peak RSS: `ordershop rebuild entity-cache` (run by `ordershop-rigs shop`, through the
//!   `ordershop` library) in a child process against the bench's Redis,
//!   its `VmHWM` read from `/proc/<pid>/status` while it runs, at [`BenchOptions::small_log`]
//!   events and at `--events`.
//!
//! Each side starts from an empty projection, wiped outside the clock.

use super::workload::{append_all, write_until, ShopModel};
use super::{per_sec, BenchEnv, BenchOptions, BenchPath, Better, Measurement, Target};
use anyhow::Context;
use ordershop_eventstore::RawEntry;
use ordershop_eventstore::Stream;
use ordershop_operations::rebuild_projection;
use ordershop_projections::crm::{self, Delta, Upsert};
use ordershop_projections::{Crm, EntityCache, ProjectionName, Replayable, Runner, RunnerOptions};
use ordershop_redis::RedisConnection;
use ordershop_testkit::unlink_matching;
use redis::streams::{StreamId, StreamRangeReply};
use redis::Value;
use std::time::{Duration, Instant};

/// Entries per XRANGE of the bare baseline (the same chunk as the store's replay).
const CHUNK: usize = ordershop_eventstore::replay::DEFAULT_CHUNK;
/// Prefix of the bare baseline's keys.
const BARE_PREFIX: &str = "bench:bare:";
/// Longest a child rebuild may take.
const CHILD_DEADLINE: Duration = Duration::from_secs(1800);

/// Deletes every key matching the patterns (SCAN + UNLINK).
async fn wipe(conn: &RedisConnection, patterns: &[impl AsRef<str>]) -> anyhow::Result<()> {
    let mut conn = conn.clone();
    for pattern in patterns {
        unlink_matching(&mut conn, pattern.as_ref()).await?;
    }
    Ok(())
}

async fn stream_lengths(conn: &RedisConnection, streams: &[Stream]) -> anyhow::Result<u64> {
    let mut pipe = redis::pipe();
    for s in streams {
        pipe.cmd("XLEN").arg(s.key());
    }
    let lengths: Vec<u64> = pipe.query_async(&mut conn.clone()).await?;
    Ok(lengths.iter().sum())
}

/// Reads each of `streams` with XRANGE in chunks of [`CHUNK`] and, per chunk, sends one
/// pipeline that `write` fills from the chunk's entries: the loop both bare baselines share.
/// Returns the entries read.
async fn replay_pipelined(
    conn: &RedisConnection,
    streams: &[Stream],
    mut write: impl FnMut(&mut redis::Pipeline, Stream, StreamId) -> anyhow::Result<()>,
) -> anyhow::Result<u64> {
    let mut conn = conn.clone();
    let mut entries = 0u64;
    for stream in streams {
        let key = stream.key();
        let length: u64 = redis::cmd("XLEN").arg(&key).query_async(&mut conn).await?;
        let mut after = "-".to_owned();
        for _ in 0..(length / CHUNK as u64 + 2) {
            let reply: StreamRangeReply = redis::cmd("XRANGE")
                .arg(&key)
                .arg(&after)
                .arg("+")
                .arg("COUNT")
                .arg(CHUNK)
                .query_async(&mut conn)
                .await?;
            let n = reply.ids.len();
            let mut pipe = redis::pipe();
            for entry in reply.ids {
                after = format!("({}", entry.id);
                write(&mut pipe, *stream, entry)?;
            }
            if n > 0 {
                let () = pipe.query_async(&mut conn).await?;
            }
            entries += n as u64;
            if n < CHUNK {
                break;
            }
        }
    }
    Ok(entries)
}

/// The bare baseline over `streams`; returns the entries it read.
async fn bare_replay(conn: &RedisConnection, streams: &[Stream]) -> anyhow::Result<u64> {
    replay_pipelined(conn, streams, |pipe, stream, entry| {
        let Some(Value::BulkString(json)) = entry.map.get("entity") else {
            return Ok(());
        };
        let Ok(serde_json::Value::Object(fields)) = serde_json::from_slice(json) else {
            return Ok(());
        };
        let Some(id) = fields.get("id").and_then(|v| v.as_str()) else {
            return Ok(());
        };
        let kind = stream.kind;
        let hset = pipe
            .cmd("HSET")
            .arg(format!("{BARE_PREFIX}{kind}_entity:{id}"));
        for (name, value) in &fields {
            match value {
                serde_json::Value::String(s) => {
                    hset.arg(name).arg(s);
                }
                serde_json::Value::Number(n) => {
                    hset.arg(name).arg(n.to_string());
                }
                serde_json::Value::Bool(b) => {
                    hset.arg(name).arg(b.to_string());
                }
                _ => {}
            }
        }
        hset.ignore();
        pipe.cmd("SADD")
            .arg(format!("{BARE_PREFIX}{kind}_ids"))
            .arg(id)
            .ignore();
        Ok(())
    })
    .await
}

/// The CRM catch-up's fair baseline over `streams`: the same entries read with XRANGE and
/// decoded, the same plans made (`crm::plan`, the CRM's own rules), and the writes those plans
/// make sent as plain pipelined commands, one pipeline per chunk — with no Function, no version
/// check, no read of what a record counted before (each order counted as first seen, unbilled),
/// no consumer group. Returns the entries it read.
async fn bare_crm_replay(conn: &RedisConnection, streams: &[Stream]) -> anyhow::Result<u64> {
    let counters = |pipe: &mut redis::Pipeline, deltas: &[Delta]| {
        for d in deltas {
            pipe.cmd("HINCRBY")
                .arg(&d.key)
                .arg(&d.field)
                .arg(d.n)
                .ignore();
            if let Some((set, member)) = &d.follow {
                pipe.cmd("SADD").arg(set).arg(member).ignore();
            }
        }
    };
    replay_pipelined(conn, streams, |pipe, stream, entry| {
        let raw = RawEntry {
            stream,
            id: entry.id.parse().map_err(anyhow::Error::msg)?,
            fields: entry.map,
        };
        let Ok(event) = raw.decode() else {
            return Ok(());
        };
        let plan = crm::plan(&event);
        pipe.cmd("HSET")
            .arg(&plan.guard.key)
            .arg(plan.guard.id.to_string())
            .arg(plan.guard.v)
            .ignore();
        for op in plan.ops.iter().chain(&plan.always) {
            match op {
                Upsert::Hset { key, fields } | Upsert::Max { key, fields, .. } => {
                    let hset = pipe.cmd("HSET").arg(key);
                    for (name, value) in fields {
                        hset.arg(*name).arg(value);
                    }
                    hset.ignore();
                }
                Upsert::Sadd { key, member } => {
                    pipe.cmd("SADD").arg(key).arg(member).ignore();
                }
                Upsert::Srem { key, member } => {
                    pipe.cmd("SREM").arg(key).arg(member).ignore();
                }
                Upsert::Count {
                    record,
                    always,
                    unlinked,
                    ..
                } => {
                    pipe.cmd("HSET").arg(record).arg("seen").arg(1).ignore();
                    counters(pipe, always);
                    counters(pipe, unlinked);
                }
                Upsert::Link { links, id, to, .. } => {
                    if let Some(order) = to {
                        pipe.cmd("HSET")
                            .arg(links)
                            .arg(id.to_string())
                            .arg(order.to_string())
                            .ignore();
                    }
                }
            }
        }
        Ok(())
    })
    .await
}

/// Time of one bare CRM replay, from an empty CRM view, which it leaves empty.
async fn time_bare_crm(conn: &RedisConnection, streams: &[Stream]) -> anyhow::Result<f64> {
    wipe(conn, &Crm.state_patterns()).await?;
    let started = Instant::now();
    let n = bare_crm_replay(conn, streams).await?;
    let elapsed = started.elapsed();
    wipe(conn, &Crm.state_patterns()).await?;
    Ok(per_sec(n, elapsed))
}

/// Time of one bare replay, started from no bare keys.
async fn time_bare(conn: &RedisConnection, streams: &[Stream]) -> anyhow::Result<(u64, f64)> {
    wipe(conn, &[format!("{BARE_PREFIX}*")]).await?;
    let started = Instant::now();
    let n = bare_replay(conn, streams).await?;
    let elapsed = started.elapsed();
    wipe(conn, &[format!("{BARE_PREFIX}*")]).await?;
    Ok((n, per_sec(n, elapsed)))
}

/// The entity-cache rebuild, from an empty cache; returns (events/s, seconds).
async fn time_rebuild(env: &BenchEnv) -> anyhow::Result<(f64, f64)> {
    wipe(&env.conn, &EntityCache.state_patterns()).await?;
    let report = rebuild_projection(&env.redis, ProjectionName::EntityCache, &mut |_, _| {})
        .await
        .context("rebuilding the entity cache")?;
    let secs = report.elapsed.as_secs_f64();
    Ok((per_sec(report.replayed, report.elapsed), secs))
}

/// The CRM view catching up on the whole log from a fresh group and an empty view.
async fn time_crm_catch_up(env: &BenchEnv, events: u64) -> anyhow::Result<f64> {
    let mut conn = env.conn.clone();
    let _: redis::RedisResult<Value> = redis::cmd("DEL")
        .arg(ordershop_eventstore::keys::group_checkpoint(
            ProjectionName::Crm.name(),
        ))
        .query_async(&mut conn)
        .await;
    for stream in ProjectionName::Crm.streams() {
        let _: redis::RedisResult<Value> = redis::cmd("XGROUP")
            .arg("DESTROY")
            .arg(&stream)
            .arg(ProjectionName::Crm.name())
            .query_async(&mut conn)
            .await;
    }
    wipe(&env.conn, &Crm.state_patterns()).await?;
    let options = RunnerOptions {
        consumer: "bench".to_owned(),
        block: Duration::ZERO,
        ..RunnerOptions::default()
    };
    let mut runner = Runner::from_connection(env.conn.clone(), Crm, options);
    runner.setup().await?;
    let started = Instant::now();
    let mut read = 0u64;
    // Each step reads at least one entry until idle; the bound only guards against a bug.
    for _ in 0..events.saturating_mul(2).saturating_add(100) {
        let step = runner.step().await.context("CRM catch-up step")?;
        if step.is_idle() {
            break;
        }
        read += step.read as u64;
    }
    let elapsed = started.elapsed();
    if read < events {
        anyhow::bail!("the CRM read {read} entries of a backlog of {events}");
    }
    Ok(per_sec(read, elapsed))
}

/// Peak RSS in MiB of `ordershop rebuild entity-cache` against the bench's Redis.
async fn child_rebuild_rss(env: &BenchEnv) -> anyhow::Result<f64> {
    let mut child = crate::shop::shop_command(&["rebuild", "entity-cache", "--yes"])?
        .env("REDIS_URL", &env.url)
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .context("cannot start `ordershop rebuild entity-cache`")?;
    let pid = child.id().context("the child rebuild has no pid")?;
    let status_file = format!("/proc/{pid}/status");
    let deadline = Instant::now() + CHILD_DEADLINE;
    let mut peak_kib = 0u64;
    loop {
        // VmHWM only grows, so the last reading before the exit is the peak (to within the
        // last 10 ms of the process's life, when it only frees memory).
        if let Ok(status) = std::fs::read_to_string(&status_file) {
            if let Some(kib) = status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            {
                peak_kib = peak_kib.max(kib);
            }
        }
        if let Some(status) = child.try_wait()? {
            if !status.success() {
                anyhow::bail!("`ordershop rebuild entity-cache` exited with {status}");
            }
            break;
        }
        if Instant::now() > deadline {
            child.kill().await?;
            anyhow::bail!("`ordershop rebuild entity-cache` took too long");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    if peak_kib == 0 {
        anyhow::bail!("could not read the child rebuild's VmHWM from {status_file}");
    }
    Ok(peak_kib as f64 / 1024.0)
}

pub async fn measure(env: &BenchEnv, options: &BenchOptions) -> anyhow::Result<Vec<Measurement>> {
    let mut rows = Vec::new();
    let runs = options.runs.max(1);
    let replay = options.wants(BenchPath::Replay);
    let mut model = ShopModel::new();
    append_all(&env.store, &model.seed(1_000, 200)?).await?;

    let small = options.small_log().min(options.events);
    env.progress
        .step(&format!("replay: writing a log of {small} events"));
    let bar = env.progress.bar(small, "writing events");
    write_until(&env.store, &mut model, small, &bar).await?;

    if options.wants(BenchPath::Memory) {
        rows.extend(super::memory::measure(env).await?);
    }
    if !replay {
        return Ok(rows);
    }
    env.progress.step(&format!(
        "replay: peak RSS of a child rebuild of {small} events"
    ));
    let small_rss = child_rebuild_rss(env).await?;

    let target = options.events;
    env.progress
        .step(&format!("replay: writing the log up to {target} events"));
    let bar = env.progress.bar(target, "writing events");
    write_until(&env.store, &mut model, target, &bar).await?;
    let all_streams = ProjectionName::EntityCache.event_streams();
    let total = stream_lengths(&env.conn, &all_streams).await?;
    env.progress.step(&format!(
        "replay: peak RSS of a child rebuild of {total} events"
    ));
    let big_rss = child_rebuild_rss(env).await?;
    rows.push(
        Measurement::compared(
            format!("projector peak RSS, rebuild of {total} events"),
            "MiB",
            Better::Lower,
            vec![big_rss],
            vec![small_rss],
            Some(Target::RatioAtMost(1.2)),
        )
        .with_note(format!(
            "bare column: the same rebuild of {small} events; child process, VmHWM"
        )),
    );

    let mut ours = Vec::new();
    let mut bare = Vec::new();
    let mut secs = Vec::new();
    for run in 1..=runs {
        env.progress.step(&format!(
            "replay: entity-cache rebuild of {total} events, run {run}/{runs}"
        ));
        let (rate, s) = time_rebuild(env).await?;
        ours.push(rate);
        secs.push(s);
        env.progress.step(&format!(
            "replay: bare XRANGE + HSET/SADD, run {run}/{runs}"
        ));
        bare.push(time_bare(&env.conn, &all_streams).await?.1);
    }
    rows.push(Measurement::compared(
        format!("entity-cache rebuild, {total} events"),
        "events/s",
        Better::Higher,
        ours,
        bare,
        Some(Target::RatioAtLeast(0.7)),
    ));
    let time_target = (total >= 1_000_000).then_some(Target::AtMost(60.0));
    rows.push(
        Measurement::alone(
            format!("entity-cache rebuild, {total} events"),
            "s",
            Better::Lower,
            secs,
            time_target,
        )
        .with_note("target applies to 1,000,000 events"),
    );

    let crm_streams = ProjectionName::Crm.event_streams();
    let backlog = stream_lengths(&env.conn, &crm_streams).await?;
    let mut ours = Vec::new();
    let mut bare = Vec::new();
    for run in 1..=runs {
        env.progress.step(&format!(
            "replay: CRM catch-up on {backlog} events, run {run}/{runs}"
        ));
        ours.push(time_crm_catch_up(env, backlog).await?);
        env.progress.step(&format!(
            "replay: the CRM's writes pipelined without a Function, run {run}/{runs}"
        ));
        bare.push(time_bare_crm(&env.conn, &crm_streams).await?);
    }
    rows.push(
        Measurement::compared(
            format!("CRM catch-up, {backlog} events"),
            "events/s",
            Better::Higher,
            ours,
            bare,
            Some(Target::RatioAtLeast(0.5)),
        )
        .with_note("production runner from 0; bare: the same plans' writes, pipelined"),
    );
    Ok(rows)
}
