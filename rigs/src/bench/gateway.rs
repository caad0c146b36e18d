//! The whole shop over HTTP: order creation through the gateway next to a bare actix-web handler
//! that does one Redis Function call per request, both driven by the load generator at 32
//! connections; and the latency of `GET /orders` and `GET /report` with 1,000 and 10,000
//! orders in the entity cache.
//!
//! The shop runs in this process, every role on a free loopback port, as `ordershop up` runs it
//! (same `start_role`, same default of 2 HTTP workers per role, the gateway running the
//! commands in-process), against the bench's Redis. The
//! bare server gets the same 2 workers. The orders the queries list are written through the
//! store (pipelined guarded appends) and projected by the shop's own entity-cache worker; the
//! queries are timed once every projection has caught up, so they do not compete with it.

use super::workload::{append_all, ShopModel};
use super::{BenchEnv, BenchOptions, BenchPath, Better, Measurement, Target};
use crate::load::{run_load, LoadOptions, LoadReport, Workload};
use actix_web::{web, App, HttpResponse, HttpServer};
use anyhow::Context;
use ordershop_domain::EntityKind;
use ordershop_eventstore::function::load_library;
use ordershop_projections::ProjectionName;
use ordershop_readmodel::CacheReader;
use ordershop_redis::RedisConnection;
use ordershop_services::config::{Config, Role};
use std::collections::HashMap;
use std::net::TcpListener;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Concurrent connections of the order-creation measurement.
const CONNECTIONS: usize = 32;
/// The bare baseline's trivial Function.
const BARE_LIBRARY: &str =
    "#!lua name=ordershop_bench\nredis.register_function('bench_noop', function(keys, args) return 1 end)\n";
/// How long the bench waits for the shop to start or its projections to catch up.
const WAIT: Duration = Duration::from_secs(300);

/// The shop running in this process.
struct InProcessShop {
    gateway: String,
    shutdown: CancellationToken,
    tasks: JoinSet<anyhow::Result<()>>,
}

pub(super) fn listener() -> anyhow::Result<TcpListener> {
    TcpListener::bind("127.0.0.1:0").context("cannot bind a loopback port")
}

impl InProcessShop {
    async fn start(redis_url: &str) -> anyhow::Result<Self> {
        let mut listeners = Vec::new();
        let mut env: HashMap<String, String> = HashMap::new();
        env.insert("REDIS_URL".into(), redis_url.to_owned());
        for role in Role::ALL {
            let l = listener()?;
            let addr = l.local_addr()?;
            if let Some(var) = role.url_var() {
                env.insert(var.to_owned(), format!("http://{addr}"));
            }
            listeners.push((role, l, addr));
        }
        let shutdown = CancellationToken::new();
        let mut tasks = JoinSet::new();
        let mut gateway = String::new();
        for (role, l, addr) in listeners {
            let mut vars = env.clone();
            vars.insert("ORDERSHOP_LISTEN".into(), addr.to_string());
            let mut config = Config::from_lookup(role, |name| vars.get(name).cloned())?;
            if role == Role::Gateway {
                gateway = format!("http://{addr}");
                config.in_process_commands = ordershop::run::local_commands(Role::ALL);
            }
            ordershop::run::start_role(&mut tasks, role, &config, l, &shutdown)?;
        }
        let shop = Self {
            gateway,
            shutdown,
            tasks,
        };
        shop.wait_healthy().await?;
        Ok(shop)
    }

    async fn wait_healthy(&self) -> anyhow::Result<()> {
        wait_healthy(&self.gateway, Instant::now() + WAIT).await
    }

    async fn stop(mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        while let Some(done) = self.tasks.join_next().await {
            done.context("a role panicked")??;
        }
        Ok(())
    }
}

/// Waits until `GET <url>/health` answers 2xx, or fails at `deadline`.
pub(super) async fn wait_healthy(url: &str, deadline: Instant) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    loop {
        let ok = client
            .get(format!("{url}/health"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if ok {
            return Ok(());
        }
        if Instant::now() > deadline {
            anyhow::bail!("{url} did not become healthy in time");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The bare baseline: `POST /orders` parses the JSON body, makes one FCALL, answers an id.
async fn bare_order(
    _body: web::Json<serde_json::Value>,
    conn: web::Data<RedisConnection>,
) -> HttpResponse {
    let called: redis::RedisResult<i64> = redis::cmd("FCALL")
        .arg("bench_noop")
        .arg(0)
        .query_async(&mut conn.get_ref().clone())
        .await;
    match called {
        Ok(_) => HttpResponse::Ok().json([uuid::Uuid::new_v4().to_string()]),
        Err(_) => HttpResponse::ServiceUnavailable().finish(),
    }
}

pub(super) async fn with_bare_server<T>(
    env: &BenchEnv,
    run: impl AsyncFnOnce(String) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let mut conn = env.conn.clone();
    load_library(&mut conn, BARE_LIBRARY).await?;
    let data = web::Data::new(conn);
    let l = listener()?;
    let url = format!("http://{}", l.local_addr()?);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .route("/orders", web::post().to(bare_order))
    })
    .workers(ordershop_services::config::DEFAULT_HTTP_WORKERS)
    .listen(l)?
    .run();
    let handle = server.handle();
    let serving = tokio::spawn(server);
    let result = run(url).await;
    handle.stop(true).await;
    serving.await.context("the bare server panicked")??;
    result
}

fn load_options(base_url: String, requests: u64, seed: bool) -> LoadOptions {
    LoadOptions {
        base_url,
        connections: CONNECTIONS,
        requests: Some(requests),
        duration: None,
        workload: Workload::Orders,
        seed,
        progress: false,
        ..LoadOptions::default()
    }
}

/// Waits until every projection has caught up, then checks through the gateway's cache reader
/// that the entity cache lists at least `orders` orders.
pub(super) async fn wait_projected(env: &BenchEnv, orders: u64) -> anyhow::Result<()> {
    let deadline = Instant::now() + WAIT;
    loop {
        let groups = ordershop_operations::group_status(&env.redis).await?;
        if groups.len() == ProjectionName::ALL.len() && groups.iter().all(|g| g.behind() == 0) {
            break;
        }
        if Instant::now() > deadline {
            anyhow::bail!("the projections did not catch up in time");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if orders > 0 {
        let listed = CacheReader::new(env.conn.clone())
            .list(EntityKind::Order)
            .await?
            .len() as u64;
        if listed < orders {
            anyhow::bail!("the entity cache lists {listed} orders, not {orders}");
        }
    }
    Ok(())
}

/// Latency in ms of `count` sequential GETs of `path` (all must succeed).
pub(super) async fn get_latencies(
    base: &str,
    path: &str,
    count: usize,
) -> anyhow::Result<Vec<f64>> {
    let client = reqwest::Client::new();
    let mut latencies = Vec::with_capacity(count);
    for _ in 0..count {
        let started = Instant::now();
        let response = client.get(format!("{base}{path}")).send().await?;
        let status = response.status();
        let body = response.bytes().await?;
        latencies.push(started.elapsed().as_secs_f64() * 1000.0);
        if !status.is_success() {
            anyhow::bail!("GET {path} answered {status}");
        }
        if body.is_empty() {
            anyhow::bail!("GET {path} answered an empty body");
        }
    }
    Ok(latencies)
}

pub async fn measure(env: &BenchEnv, options: &BenchOptions) -> anyhow::Result<Vec<Measurement>> {
    let url = env.url.clone();
    env.progress.step("gateway: starting the shop in-process");
    let shop = InProcessShop::start(&url).await?;
    let result = measure_with(env, options, &shop).await;
    shop.stop().await?;
    result
}

async fn measure_with(
    env: &BenchEnv,
    options: &BenchOptions,
    shop: &InProcessShop,
) -> anyhow::Result<Vec<Measurement>> {
    let mut rows = Vec::new();
    let runs = options.runs.max(1);
    if options.wants(BenchPath::Queries) {
        let mut model = ShopModel::new();
        append_all(&env.store, &model.seed(100, 50)?).await?;
        let mut written = 0u64;
        let gets = if options.quick { 5 } else { 20 };
        for size in options.query_sizes() {
            env.progress
                .step(&format!("queries: {size} orders in the entity cache"));
            let more = model.orders_only(size.saturating_sub(written) as usize)?;
            append_all(&env.store, &more).await?;
            written = size;
            wait_projected(env, size).await?;
            for path in ["/orders", "/report"] {
                // One warm-up request, then the timed ones.
                get_latencies(&shop.gateway, path, 1).await?;
                let mut all = Vec::new();
                for _ in 0..runs {
                    all.extend(get_latencies(&shop.gateway, path, gets).await?);
                }
                let target = (path == "/orders" && size >= 10_000).then_some(Target::AtMost(30.0));
                rows.push(
                    Measurement::alone(
                        format!("GET {path}, {size} orders"),
                        "ms",
                        Better::Lower,
                        all,
                        target,
                    )
                    .with_note(format!("median of {} requests", gets * runs)),
                );
            }
        }
    }
    if options.wants(BenchPath::Gateway) {
        let requests = options.gateway_requests();
        let mut ours: Vec<LoadReport> = Vec::new();
        let mut bare: Vec<LoadReport> = Vec::new();
        for run in 1..=runs {
            env.progress.step(&format!(
                "gateway: run {run}/{runs}, {requests} orders at {CONNECTIONS} connections"
            ));
            ours.push(
                run_load(&load_options(shop.gateway.clone(), requests, true))
                    .await
                    .context("loading the shop")?,
            );
            // Let the projections drain so that the bare run does not compete with them.
            wait_projected(env, 0).await?;
            bare.push(
                with_bare_server(env, async |base| {
                    run_load(&load_options(base, requests, false)).await
                })
                .await
                .context("loading the bare server")?,
            );
        }
        let ok_rate = |r: &Vec<LoadReport>| r.iter().map(|x| x.successes_per_sec).collect();
        let p = |r: &Vec<LoadReport>, f: fn(&LoadReport) -> f64| r.iter().map(f).collect();
        let errors: Vec<f64> = ours.iter().map(|r| r.error_count() as f64).collect();
        let statuses: Vec<String> = ours
            .iter()
            .flat_map(|r| r.errors.iter().map(|(s, n)| format!("{s}: {n}")))
            .collect();
        rows.push(Measurement::compared(
            format!("gateway: POST /orders, {CONNECTIONS} conn"),
            "orders/s",
            Better::Higher,
            ok_rate(&ours),
            ok_rate(&bare),
            Some(Target::RatioAtLeast(0.25)),
        ));
        rows.push(Measurement::compared(
            format!("gateway: p50 latency, {CONNECTIONS} conn"),
            "ms",
            Better::Lower,
            p(&ours, |r| r.latency.p50_ms),
            p(&bare, |r| r.latency.p50_ms),
            None,
        ));
        rows.push(Measurement::compared(
            format!("gateway: p99 latency, {CONNECTIONS} conn"),
            "ms",
            Better::Lower,
            p(&ours, |r| r.latency.p99_ms),
            p(&bare, |r| r.latency.p99_ms),
            Some(Target::AtMost(20.0)),
        ));
        rows.push(
            Measurement::alone(
                format!("gateway: errors, {CONNECTIONS} conn"),
                "requests",
                Better::Lower,
                vec![errors.iter().copied().fold(0.0, f64::max)],
                Some(Target::AtMost(0.0)),
            )
            .with_note(if statuses.is_empty() {
                format!("worst of {runs} runs of {requests}")
            } else {
                statuses.join(", ")
            }),
        );
    }
    Ok(rows)
}
