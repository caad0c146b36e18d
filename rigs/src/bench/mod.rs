//! `ordershop-rigs bench`: measures each of our paths next to its bare baseline, in the same run,
//! against the same private redis-server, and prints both and their ratio.
//!
//! Machines are noisy and small (2 cores shared by the client, the shop and Redis), so absolute
//! numbers mean little from one machine to the next: what the bench is for is the ratio of a
//! path to the bare Redis (or bare actix-web) work it cannot beat, measured alternately in the
//! same process. Each figure is the median of `--runs` runs. Nothing here asserts a speed; the
//! targets are printed beside the figures with `pass`/`miss`.
//!
//! The private redis-server runs without persistence (AOF off, no RDB snapshots): the bench
//! measures our code and Redis's in-memory work, not the disk.
//!
//! One file per measured path: [`append`] (guarded appends vs bare XADD), [`replay`]
//! (entity-cache rebuild and CRM catch-up vs bare XRANGE + HSET/SADD, the projector's peak RSS),
//! [`gateway`] (order creation through the whole shop vs a bare actix-web handler, query
//! latencies), [`memory`] (Redis bytes per event); [`workload`] writes the realistic event log
//! they replay.

pub mod append;
pub mod gateway;
pub mod memory;
pub mod processes;
pub mod replay;
pub mod workload;

use anyhow::Context;
use comfy_table::{presets::UTF8_FULL_CONDENSED, Cell, CellAlignment, Table};
use indicatif::{ProgressBar, ProgressStyle};
use ordershop::local_redis::LocalRedis;
use ordershop_eventstore::EventStore;
use ordershop_redis::RedisConfig;
use ordershop_redis::RedisConnection;
use serde::Serialize;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

/// The paths `--only` can select.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum BenchPath {
    Append,
    Gateway,
    /// One client ordering in sequence, the roles as separate processes.
    OneClient,
    /// 32 connections ordering 2 products, the roles as separate processes.
    FlashSale,
    Queries,
    Replay,
    Memory,
}

/// What to measure and how big.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Events in the log the rebuild and catch-up replay.
    pub events: u64,
    /// Small sizes everywhere (CI, smoke tests).
    pub quick: bool,
    /// Runs per figure (the median is reported).
    pub runs: usize,
    pub only: Vec<BenchPath>,
    /// On a private Redis Cluster, in [`CLUSTER_NAMESPACE`] (the append path only).
    pub cluster: bool,
    /// Show progress on stderr.
    pub progress: bool,
}

/// The namespace of `bench --cluster`: all of its keys on one primary.
pub const CLUSTER_NAMESPACE: &str = "bench";

impl BenchOptions {
    fn wants(&self, path: BenchPath) -> bool {
        self.only.is_empty() || self.only.contains(&path)
    }

    /// Operations per append measurement.
    fn append_ops(&self) -> u64 {
        if self.quick {
            2_000
        } else {
            20_000
        }
    }

    /// Requests per gateway measurement.
    fn gateway_requests(&self) -> u64 {
        if self.quick {
            300
        } else {
            3_000
        }
    }

    /// Sizes of the order lists the query latencies are measured at.
    fn query_sizes(&self) -> Vec<u64> {
        if self.quick {
            vec![100, 1_000]
        } else {
            vec![1_000, 10_000]
        }
    }

    /// The smaller log the projector's peak RSS is compared at.
    fn small_log(&self) -> u64 {
        (self.events / 10).max(1_000)
    }
}

/// Whether a figure is better high (throughput) or low (latency, bytes, seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Better {
    Higher,
    Lower,
}

/// One line of the results: our figure, its bare baseline, their ratio, the target.
#[derive(Debug, Clone, Serialize)]
pub struct Measurement {
    pub path: String,
    pub unit: &'static str,
    pub better: Better,
    /// Median of the runs.
    pub ours: f64,
    pub bare: Option<f64>,
    /// `ours / bare`.
    pub ratio: Option<f64>,
    pub target: Option<Target>,
    pub pass: Option<bool>,
    pub ours_runs: Vec<f64>,
    pub bare_runs: Vec<f64>,
    pub note: String,
}

/// A target, either on the ratio to the baseline or on our absolute figure.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "on", content = "value")]
pub enum Target {
    RatioAtLeast(f64),
    RatioAtMost(f64),
    AtMost(f64),
    AtLeast(f64),
}

impl Target {
    fn check(self, ours: f64, ratio: Option<f64>) -> Option<bool> {
        match self {
            Target::RatioAtLeast(t) => ratio.map(|r| r >= t),
            Target::RatioAtMost(t) => ratio.map(|r| r <= t),
            Target::AtMost(t) => Some(ours <= t),
            Target::AtLeast(t) => Some(ours >= t),
        }
    }

    fn describe(self, unit: &str) -> String {
        match self {
            Target::RatioAtLeast(t) => format!("≥ {t}× bare"),
            Target::RatioAtMost(t) => format!("≤ {t}× bare"),
            Target::AtMost(t) => format!("≤ {t} {unit}"),
            Target::AtLeast(t) => format!("≥ {t} {unit}"),
        }
    }
}

impl Measurement {
    /// A figure with a bare baseline; medians and ratio computed here.
    pub fn compared(
        path: impl Into<String>,
        unit: &'static str,
        better: Better,
        ours_runs: Vec<f64>,
        bare_runs: Vec<f64>,
        target: Option<Target>,
    ) -> Self {
        let ours = median(&ours_runs);
        let bare = (!bare_runs.is_empty()).then(|| median(&bare_runs));
        let ratio = bare.filter(|b| *b > 0.0).map(|b| ours / b);
        Self {
            path: path.into(),
            unit,
            better,
            ours,
            bare,
            ratio,
            pass: target.and_then(|t| t.check(ours, ratio)),
            target,
            ours_runs,
            bare_runs,
            note: String::new(),
        }
    }

    /// A figure without a baseline.
    pub fn alone(
        path: impl Into<String>,
        unit: &'static str,
        better: Better,
        runs: Vec<f64>,
        target: Option<Target>,
    ) -> Self {
        Self::compared(path, unit, better, runs, Vec::new(), target)
    }

    pub fn with_note(mut self, note: impl Into<String>) -> Self {
        self.note = note.into();
        self
    }
}

/// Everything a bench run measured.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub events: u64,
    pub quick: bool,
    pub runs: usize,
    pub cpus: usize,
    /// 1-minute load average when the bench started.
    pub load_average: Option<f64>,
    pub elapsed_secs: f64,
    pub measurements: Vec<Measurement>,
}

/// The median (the mean of the two middle values for an even count); 0 for no values.
pub fn median(values: &[f64]) -> f64 {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    match n {
        0 => 0.0,
        _ if n % 2 == 1 => sorted[n / 2],
        _ => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// What every path gets: the private server, a store and a plain connection on it.
pub struct BenchEnv {
    /// The private server's URL.
    pub url: String,
    pub redis: RedisConfig,
    pub store: EventStore,
    pub conn: RedisConnection,
    pub progress: Progress,
}

impl BenchEnv {
    /// Empties the server (between paths, so each starts from a known state).
    pub async fn flush(&self) -> anyhow::Result<()> {
        let _: () = redis::cmd("FLUSHALL")
            .query_async(&mut self.conn.clone())
            .await
            .context("FLUSHALL")?;
        self.store.load_functions().await?;
        Ok(())
    }
}

/// Progress lines (and bars) on stderr, hidden when stderr is not a terminal or `--quiet`.
#[derive(Clone)]
pub struct Progress {
    show: bool,
}

impl Progress {
    pub fn step(&self, what: &str) {
        if self.show {
            eprintln!("bench: {what}");
        }
    }

    pub fn bar(&self, len: u64, what: &str) -> ProgressBar {
        if !self.show || !std::io::stderr().is_terminal() {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::new(len);
        bar.set_style(
            ProgressStyle::with_template(&format!(
                "{what} [{{bar:40}}] {{pos}}/{{len}} ({{per_sec}}, eta {{eta}})"
            ))
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar
    }
}

/// Runs the selected paths and returns what they measured.
pub async fn run_bench(options: &BenchOptions) -> anyhow::Result<BenchReport> {
    let started = std::time::Instant::now();
    let load_average = load_average();
    let folder = tempfile::Builder::new()
        .prefix("ordershop-bench-")
        .tempdir()
        .context("cannot create a temporary folder for the bench's redis-server")?;
    let measurements = if options.cluster {
        let cluster = tokio::task::spawn_blocking(|| ordershop_testkit::RedisCluster::start(3))
            .await
            .context("starting the bench's Redis Cluster")?;
        run_paths(options, &cluster.url()).await?
    } else {
        let server = LocalRedis::start_without_persistence(folder.path()).await?;
        let result = run_paths(options, &server.url()).await;
        server
            .stop()
            .await
            .context("stopping the bench's redis-server")?;
        result?
    };
    Ok(BenchReport {
        events: options.events,
        quick: options.quick,
        runs: options.runs,
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        load_average,
        elapsed_secs: started.elapsed().as_secs_f64(),
        measurements,
    })
}

async fn run_paths(options: &BenchOptions, url: &str) -> anyhow::Result<Vec<Measurement>> {
    let redis = RedisConfig::new(url.to_owned())?;
    let store = EventStore::connect(&redis)
        .await
        .context("connecting to the bench's redis-server")?;
    let conn = ordershop_redis::RedisConnection::connect(&redis).await?;
    let env = BenchEnv {
        url: url.to_owned(),
        redis,
        store,
        conn,
        progress: Progress {
            show: options.progress,
        },
    };
    let mut all = Vec::new();
    if options.wants(BenchPath::Append) {
        env.flush().await?;
        all.extend(append::measure(&env, options).await?);
    }
    if options.wants(BenchPath::Gateway) || options.wants(BenchPath::Queries) {
        env.flush().await?;
        all.extend(gateway::measure(&env, options).await?);
    }
    if options.wants(BenchPath::OneClient) || options.wants(BenchPath::FlashSale) {
        env.flush().await?;
        all.extend(processes::measure(&env, options).await?);
    }
    if options.wants(BenchPath::Replay) || options.wants(BenchPath::Memory) {
        env.flush().await?;
        all.extend(replay::measure(&env, options).await?);
    }
    Ok(all)
}

fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// A figure with a sensible number of digits.
fn figure(value: f64) -> String {
    if value >= 100.0 {
        format!("{value:.0}")
    } else if value >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

/// The results as an aligned table.
pub fn table(report: &BenchReport) -> Table {
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED).set_header(vec![
        "path", "unit", "ours", "bare", "ratio", "target", "result", "note",
    ]);
    let right = |s: String| Cell::new(s).set_alignment(CellAlignment::Right);
    for m in &report.measurements {
        table.add_row(vec![
            Cell::new(&m.path),
            Cell::new(m.unit),
            right(figure(m.ours)),
            right(m.bare.map_or_else(|| "-".to_owned(), figure)),
            right(
                m.ratio
                    .map_or_else(|| "-".to_owned(), |r| format!("{r:.2}×")),
            ),
            Cell::new(
                m.target
                    .map_or_else(|| "-".to_owned(), |t| t.describe(m.unit)),
            ),
            Cell::new(match m.pass {
                Some(true) => "pass",
                Some(false) => "MISS",
                None => "-",
            }),
            Cell::new(&m.note),
        ]);
    }
    table
}

/// `ordershop-rigs bench`: runs, then prints the table (or JSON).
pub async fn bench(options: BenchOptions, json: bool) -> anyhow::Result<ExitCode> {
    let report = run_bench(&options).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "ordershop-rigs bench: {} events, {} run(s) per figure (median), {} CPUs, load average {} \
             at start, {:.0} s",
            report.events,
            report.runs,
            report.cpus,
            report
                .load_average
                .map_or_else(|| "?".to_owned(), |l| format!("{l:.2}")),
            report.elapsed_secs
        );
        println!("{}", table(&report));
    }
    Ok(ExitCode::SUCCESS)
}

/// Operations per second of `ops` operations done in `elapsed`.
pub fn per_sec(ops: u64, elapsed: Duration) -> f64 {
    ops as f64 / elapsed.as_secs_f64().max(1e-9)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_of_an_odd_and_an_even_count() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&[]), 0.0);
    }

    #[test]
    fn targets_check_the_ratio_or_the_figure() {
        let m = Measurement::compared(
            "x",
            "ops/s",
            Better::Higher,
            vec![80.0],
            vec![100.0],
            Some(Target::RatioAtLeast(0.8)),
        );
        assert_eq!(m.ratio, Some(0.8));
        assert_eq!(m.pass, Some(true));
        let m = Measurement::alone(
            "y",
            "ms",
            Better::Lower,
            vec![61.0],
            Some(Target::AtMost(60.0)),
        );
        assert_eq!(m.pass, Some(false));
    }
}
