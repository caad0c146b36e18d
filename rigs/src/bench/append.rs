//! Guarded appends through the store next to bare XADDs of the same payload, from the same
//! client library (redis-rs, one multiplexed `RedisConnection` shared by every task) at the
//! same concurrency.
//!
//! - single event: a customer sign-up (`append_guarded`: one FCALL that checks the head, issues
//!   the ID, XADDs, updates the head) vs `XADD * event_id .. entity .. version ..`;
//! - an order with its stock changes (one order event and two inventory updates, each task on
//!   its own products so that no append conflicts) vs `MULTI`, the same three XADDs, `EXEC`;
//! - the pipelined path (`append_guarded_pipelined`, 100 appends per round trip) vs a pipeline
//!   of 100 bare XADDs.
//!
//! Payloads are built before the clock starts, for both sides.

use super::{per_sec, workload::ShopModel, BenchEnv, BenchOptions, Better, Measurement, Target};
use anyhow::Context;
use ordershop_eventstore::codec::encode_entity;
use ordershop_eventstore::{Append, EventStore};
use ordershop_redis::RedisConnection;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;
use tokio::task::JoinSet;

/// Concurrent tasks of the concurrent measurements.
const TASKS: usize = 16;
/// Appends per pipeline on the pipelined path.
const PIPELINE: usize = 100;
/// Stream the bare XADDs go to (not an OrderShop stream: nothing reads it), in the shop's
/// namespace (so on a cluster, on the same primary as the shop's keys).
const BARE_STREAM: &str = "bench:bare:events";

/// One event's stream fields, as the store writes them.
#[derive(Clone)]
struct Payload {
    event_id: String,
    entity: String,
    version: String,
}

fn payloads(append: &Append) -> Vec<Payload> {
    append
        .events
        .iter()
        .map(|e| Payload {
            event_id: e.event_id.to_string(),
            entity: encode_entity(&e.change.entity),
            version: e.version.to_string(),
        })
        .collect()
}

fn xadd(pipe: &mut redis::Pipeline, p: &Payload) {
    pipe.cmd("XADD")
        .arg(ordershop_redis::namespace::named(BARE_STREAM))
        .arg("*")
        .arg("event_id")
        .arg(&p.event_id)
        .arg("entity")
        .arg(&p.entity)
        .arg("version")
        .arg(&p.version)
        .ignore();
}

/// Runs each queue on its own task, items in order; returns items per second overall.
async fn drive<T, F, Fut>(queues: Vec<Vec<T>>, op: F) -> anyhow::Result<f64>
where
    T: Send + 'static,
    F: Fn(T) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let total: u64 = queues.iter().map(|q| q.len() as u64).sum();
    let op = Arc::new(op);
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for queue in queues {
        let op = Arc::clone(&op);
        tasks.spawn(async move {
            for item in queue {
                op(item).await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.context("a bench task panicked")??;
    }
    Ok(per_sec(total, started.elapsed()))
}

fn split<T>(items: Vec<T>, tasks: usize) -> Vec<Vec<T>> {
    let mut queues: Vec<Vec<T>> = (0..tasks.max(1)).map(|_| Vec::new()).collect();
    let n = queues.len();
    for (i, item) in items.into_iter().enumerate() {
        queues[i % n].push(item);
    }
    queues
}

async fn guarded(store: &EventStore, queues: Vec<Vec<Append>>) -> anyhow::Result<f64> {
    let store = store.clone();
    drive(queues, move |append: Append| {
        let store = store.clone();
        async move {
            store
                .append_guarded(&append)
                .await
                .context("guarded append")?;
            Ok(())
        }
    })
    .await
}

/// Bare: each item is one command (one XADD) or, with several payloads, one MULTI/EXEC.
async fn bare(conn: &RedisConnection, queues: Vec<Vec<Vec<Payload>>>) -> anyhow::Result<f64> {
    let conn = conn.clone();
    drive(queues, move |events: Vec<Payload>| {
        let mut conn = conn.clone();
        async move {
            let mut pipe = redis::pipe();
            if events.len() > 1 {
                pipe.atomic();
            }
            for p in &events {
                xadd(&mut pipe, p);
            }
            let () = pipe.query_async(&mut conn).await.context("bare XADD")?;
            Ok(())
        }
    })
    .await
}

/// Sign-ups of new customers, one event each.
fn sign_ups(model: &mut ShopModel, n: u64) -> anyhow::Result<Vec<Append>> {
    model.seed(n as usize, 0)
}

/// Orders of two units with their two stock changes, decided by the domain; each queue has its
/// own two products, so the queues never contend, and versions follow each other within a
/// queue.
async fn order_queues(
    env: &BenchEnv,
    tasks: usize,
    per_task: u64,
) -> anyhow::Result<Vec<Vec<Append>>> {
    let mut model = ShopModel::new();
    let seed = model.seed(1, tasks * 2)?;
    super::workload::append_all(&env.store, &seed).await?;
    let customer = *model.customer_ids().first().context("no customer seeded")?;
    let products = model.product_ids();
    let mut queues = Vec::with_capacity(tasks);
    for own in products.chunks(2).take(tasks) {
        let mut queue = Vec::with_capacity(per_task as usize);
        for _ in 0..per_task {
            queue.push(model.order(customer, own.to_vec())?);
        }
        queues.push(queue);
    }
    Ok(queues)
}

pub async fn measure(env: &BenchEnv, options: &BenchOptions) -> anyhow::Result<Vec<Measurement>> {
    let ops = options.append_ops();
    let runs = options.runs.max(1);
    let mut single_seq = (Vec::new(), Vec::new());
    let mut single_conc = (Vec::new(), Vec::new());
    let mut order_seq = (Vec::new(), Vec::new());
    let mut order_conc = (Vec::new(), Vec::new());
    let mut piped = (Vec::new(), Vec::new());
    for run in 1..=runs {
        env.progress.step(&format!(
            "append: run {run}/{runs} ({ops} appends per figure)"
        ));
        for (tasks, out) in [(1, &mut single_seq), (TASKS, &mut single_conc)] {
            env.flush().await?;
            let appends = sign_ups(&mut ShopModel::new(), ops)?;
            let bare_items: Vec<Vec<Payload>> = appends.iter().map(payloads).collect();
            out.0
                .push(guarded(&env.store, split(appends, tasks)).await?);
            out.1.push(bare(&env.conn, split(bare_items, tasks)).await?);
        }
        for (tasks, out) in [(1, &mut order_seq), (TASKS, &mut order_conc)] {
            env.flush().await?;
            let per_task = (ops / 3 / tasks as u64).max(1);
            let queues = order_queues(env, tasks, per_task).await?;
            let bare_queues: Vec<Vec<Vec<Payload>>> = queues
                .iter()
                .map(|q| q.iter().map(payloads).collect())
                .collect();
            out.0.push(guarded(&env.store, queues).await?);
            out.1.push(bare(&env.conn, bare_queues).await?);
        }
        env.flush().await?;
        let appends = sign_ups(&mut ShopModel::new(), ops)?;
        let batches: Vec<Vec<Append>> = appends.chunks(PIPELINE).map(<[_]>::to_vec).collect();
        let bare_batches: Vec<Vec<Payload>> = batches
            .iter()
            .map(|b| b.iter().flat_map(payloads).collect())
            .collect();
        let store = env.store.clone();
        let ours = drive(vec![batches], move |batch: Vec<Append>| {
            let store = store.clone();
            async move {
                for result in store.append_guarded_pipelined(&batch).await? {
                    result.context("pipelined guarded append")?;
                }
                Ok(())
            }
        })
        .await?;
        let conn = env.conn.clone();
        let theirs = drive(vec![bare_batches], move |batch: Vec<Payload>| {
            let mut conn = conn.clone();
            async move {
                let mut pipe = redis::pipe();
                for p in &batch {
                    xadd(&mut pipe, p);
                }
                let () = pipe.query_async(&mut conn).await.context("bare XADD")?;
                Ok(())
            }
        })
        .await?;
        // Per event, not per pipeline.
        piped.0.push(ours * PIPELINE as f64);
        piped.1.push(theirs * PIPELINE as f64);
    }
    env.flush().await?;
    Ok(vec![
        Measurement::compared(
            "append: 1 event, sequential",
            "appends/s",
            Better::Higher,
            single_seq.0,
            single_seq.1,
            None,
        ),
        Measurement::compared(
            format!("append: 1 event, {TASKS} tasks"),
            "appends/s",
            Better::Higher,
            single_conc.0,
            single_conc.1,
            Some(Target::RatioAtLeast(0.5)),
        ),
        Measurement::compared(
            "append: order + 2 stock, sequential",
            "appends/s",
            Better::Higher,
            order_seq.0,
            order_seq.1,
            None,
        )
        .with_note("bare: MULTI + 3 XADD + EXEC"),
        Measurement::compared(
            format!("append: order + 2 stock, {TASKS} tasks"),
            "appends/s",
            Better::Higher,
            order_conc.0,
            order_conc.1,
            None,
        )
        .with_note("bare: MULTI + 3 XADD + EXEC"),
        Measurement::compared(
            format!("append: pipelined, {PIPELINE} per round trip"),
            "events/s",
            Better::Higher,
            piped.0,
            piped.1,
            None,
        ),
    ])
}
