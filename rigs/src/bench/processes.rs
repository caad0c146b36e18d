//! The shop with its roles as separate processes (`ordershop serve <role>` ×9, each on its own
//! loopback port, as docker-compose runs them), under two loads:
//!
//! - **one client** placing orders one after another over 50 products: the latency of an order
//!   (p50/p90/p99/p99.9), next to `GET /health` on the gateway sent the same way — one request
//!   through the same HTTP stack that does no work, the floor an order's latency sits on;
//! - **a flash sale**: 32 connections ordering 2 products for a fixed time: orders/s and
//!   latency, next to the bare actix-web + one-FCALL server of the gateway path at 32
//!   connections for the same time.
//!
//! The roles run as `ordershop-rigs shop serve <role>`: the product's own code (see
//! [`crate::shop`]), one process per role.

use super::gateway::{get_latencies, listener, wait_healthy, wait_projected, with_bare_server};
use super::{BenchEnv, BenchOptions, BenchPath, Better, Measurement, Target};
use crate::load::{run_load, Latency, LoadOptions, LoadReport, Workload};
use anyhow::Context;
use ordershop_services::config::Role;
use std::time::{Duration, Instant};
use tokio::process::Child;

/// How long the roles may take to become healthy.
const START: Duration = Duration::from_secs(60);
/// Connections of the flash sale.
const FLASH_CONNECTIONS: usize = 32;
/// Products the flash sale orders.
const FLASH_PRODUCTS: usize = 2;

/// Nine role processes on free loopback ports; killed when dropped.
struct ProcessShop {
    children: Vec<(Role, Child)>,
    urls: Vec<(Role, String)>,
    gateway: String,
}

impl ProcessShop {
    async fn start(redis_url: &str) -> anyhow::Result<Self> {
        let mut addrs = Vec::new();
        for role in Role::ALL {
            // Bound and released: the role binds the same port a moment later.
            addrs.push((role, listener()?.local_addr()?));
        }
        let mut children = Vec::new();
        for (role, addr) in &addrs {
            let mut command = crate::shop::shop_command(&["serve", role.as_str()])?;
            command
                .env("REDIS_URL", redis_url)
                .env("ORDERSHOP_LISTEN", addr.to_string())
                .env("RUST_LOG", "warn")
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .kill_on_drop(true);
            for (peer, peer_addr) in &addrs {
                if let Some(var) = peer.url_var() {
                    command.env(var, format!("http://{peer_addr}"));
                }
            }
            let child = command
                .spawn()
                .with_context(|| format!("cannot start the {role} process"))?;
            children.push((*role, child));
        }
        let urls: Vec<(Role, String)> = addrs
            .iter()
            .map(|(role, addr)| (*role, format!("http://{addr}")))
            .collect();
        let gateway = urls
            .iter()
            .find(|(role, _)| *role == Role::Gateway)
            .map(|(_, url)| url.clone())
            .unwrap_or_default();
        let shop = Self {
            children,
            urls,
            gateway,
        };
        shop.wait_healthy().await?;
        Ok(shop)
    }

    async fn wait_healthy(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + START;
        for (role, url) in &self.urls {
            wait_healthy(url, deadline)
                .await
                .with_context(|| format!("starting {role}"))?;
        }
        Ok(())
    }

    async fn stop(mut self) {
        for (_, child) in &mut self.children {
            let _ = child.kill().await;
        }
    }
}

fn orders(base_url: String, connections: usize, products: usize) -> LoadOptions {
    LoadOptions {
        base_url,
        connections,
        products,
        workload: Workload::Orders,
        seed: true,
        progress: false,
        ..LoadOptions::default()
    }
}

/// The four percentile rows of `ours` against `bare`, and their targets.
fn percentiles(
    what: &str,
    ours: &[Latency],
    bare: &[Latency],
    p50: Option<Target>,
    p99: Option<Target>,
) -> Vec<Measurement> {
    type Percentile = fn(&Latency) -> f64;
    let pick = |list: &[Latency], f: Percentile| list.iter().map(f).collect::<Vec<_>>();
    let rows: [(&str, Percentile, Option<Target>); 4] = [
        ("p50", |l| l.p50_ms, p50),
        ("p90", |l| l.p90_ms, None),
        ("p99", |l| l.p99_ms, p99),
        ("p99.9", |l| l.p999_ms, None),
    ];
    rows.into_iter()
        .map(|(name, f, target)| {
            Measurement::compared(
                format!("{what}: {name} latency"),
                "ms",
                Better::Lower,
                pick(ours, f),
                pick(bare, f),
                target,
            )
        })
        .collect()
}

fn errors_row(what: &str, reports: &[LoadReport]) -> Measurement {
    let statuses: Vec<String> = reports
        .iter()
        .flat_map(|r| r.errors.iter().map(|(s, n)| format!("{s}: {n}")))
        .collect();
    Measurement::alone(
        format!("{what}: errors"),
        "requests",
        Better::Lower,
        vec![reports
            .iter()
            .map(|r| r.error_count() as f64)
            .fold(0.0, f64::max)],
        Some(Target::AtMost(0.0)),
    )
    .with_note(if statuses.is_empty() {
        format!("worst of {} runs", reports.len())
    } else {
        statuses.join(", ")
    })
}

pub async fn measure(env: &BenchEnv, options: &BenchOptions) -> anyhow::Result<Vec<Measurement>> {
    env.progress
        .step("processes: starting the nine roles as processes");
    let shop = ProcessShop::start(&env.url).await?;
    let result = measure_with(env, options, &shop).await;
    shop.stop().await;
    result
}

async fn measure_with(
    env: &BenchEnv,
    options: &BenchOptions,
    shop: &ProcessShop,
) -> anyhow::Result<Vec<Measurement>> {
    let runs = options.runs.max(1);
    let mut rows = Vec::new();
    if options.wants(BenchPath::OneClient) {
        let count: u64 = if options.quick { 300 } else { 1_500 };
        let mut ours = Vec::new();
        let mut floor = Vec::new();
        let mut rates = Vec::new();
        for run in 1..=runs {
            env.progress.step(&format!(
                "one client: run {run}/{runs}, {count} orders in sequence over 50 products"
            ));
            let report = run_load(&LoadOptions {
                requests: Some(count),
                ..orders(shop.gateway.clone(), 1, 50)
            })
            .await
            .context("one client ordering")?;
            rates.push(report.successes_per_sec);
            ours.push(report);
            wait_projected(env, 0).await?;
            let health = get_latencies(&shop.gateway, "/health", count as usize).await?;
            floor.push(Latency::of_samples(&health)?);
        }
        let latencies: Vec<Latency> = ours.iter().map(|r| r.latency).collect();
        rows.extend(percentiles(
            "one client, POST /orders vs GET /health",
            &latencies,
            &floor,
            Some(Target::AtMost(2.0)),
            Some(Target::AtMost(5.0)),
        ));
        rows.push(Measurement::alone(
            "one client: orders/s",
            "orders/s",
            Better::Higher,
            rates,
            None,
        ));
        rows.push(errors_row("one client", &ours));
    }
    if options.wants(BenchPath::FlashSale) {
        let duration = Duration::from_secs(if options.quick { 3 } else { 10 });
        let mut ours = Vec::new();
        let mut bare = Vec::new();
        for run in 1..=runs {
            env.progress.step(&format!(
                "flash sale: run {run}/{runs}, {FLASH_CONNECTIONS} connections on \
                 {FLASH_PRODUCTS} products for {duration:?}"
            ));
            ours.push(
                run_load(&LoadOptions {
                    duration: Some(duration),
                    ..orders(shop.gateway.clone(), FLASH_CONNECTIONS, FLASH_PRODUCTS)
                })
                .await
                .context("the flash sale")?,
            );
            wait_projected(env, 0).await?;
            bare.push(
                with_bare_server(env, async |base| {
                    run_load(&LoadOptions {
                        duration: Some(duration),
                        seed: false,
                        ..orders(base, FLASH_CONNECTIONS, FLASH_PRODUCTS)
                    })
                    .await
                })
                .await
                .context("loading the bare server")?,
            );
        }
        let rate = |r: &[LoadReport]| r.iter().map(|x| x.successes_per_sec).collect();
        rows.push(Measurement::compared(
            format!("flash sale, {FLASH_CONNECTIONS} conn, {FLASH_PRODUCTS} products: orders/s"),
            "orders/s",
            Better::Higher,
            rate(&ours),
            rate(&bare),
            Some(Target::AtLeast(4_000.0)),
        ));
        let latencies = |r: &[LoadReport]| r.iter().map(|x| x.latency).collect::<Vec<_>>();
        rows.extend(percentiles(
            "flash sale",
            &latencies(&ours),
            &latencies(&bare),
            None,
            Some(Target::AtMost(20.0)),
        ));
        rows.push(errors_row("flash sale", &ours));
    }
    Ok(rows)
}
