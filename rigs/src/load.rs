//! `ordershop-rigs load`: a load generator that drives a running shop over HTTP as real clients do.
//!
//! It first creates fake customers, products and stock through the gateway (the `fake` crate
//! makes the names, emails and prices), then sends orders from `connections` concurrent
//! clients — with some order updates, deletes and billings in the `mixed` workload — until it
//! has sent `requests` requests or `duration` has passed. Each client keeps its own orders so
//! that it updates, bills or deletes only orders that exist and are unbilled: on a correct shop
//! every request succeeds, and any error is the shop's.
//!
//! Latencies go into an HDR histogram (the `hdrhistogram` crate: constant memory whatever the
//! number of requests, exact to 3 significant digits, and per-client histograms merge without
//! keeping every sample), recorded in microseconds for every request, failed ones included.

use anyhow::Context;
use fake::faker::internet::en::SafeEmail;
use fake::faker::lorem::en::Words;
use fake::faker::name::en::Name;
use fake::Fake;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Entities created per request while seeding.
const SEED_CHUNK: usize = 100;
/// Highest latency the histogram holds (longer ones are clamped to it): 60 s in µs.
const MAX_LATENCY_US: u64 = 60_000_000;

/// What the clients send after seeding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Workload {
    /// Only `POST /orders`.
    Orders,
    /// Mostly `POST /orders`; about 10% order updates, 5% deletes and 10% billings.
    Mixed,
}

/// How to load the shop.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// The gateway, e.g. `http://127.0.0.1:5000`.
    pub base_url: String,
    pub connections: usize,
    /// Stop after this many requests (after seeding)...
    pub requests: Option<u64>,
    /// ...or after this long, whichever comes first.
    pub duration: Option<Duration>,
    pub customers: usize,
    pub products: usize,
    /// Units of stock per product (large enough that orders do not run out).
    pub stock: u32,
    pub workload: Workload,
    /// Create customers, products and stock first. Without it, orders name random ids (for a
    /// server that does not check them, e.g. the benchmark's bare baseline).
    pub seed: bool,
    /// Show a progress bar on stderr (when it is a terminal).
    pub progress: bool,
    /// Per-request timeout.
    pub timeout: Duration,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            base_url: "http://127.0.0.1:5000".to_owned(),
            connections: 32,
            requests: None,
            duration: None,
            customers: 100,
            products: 50,
            stock: 1_000_000,
            workload: Workload::Mixed,
            seed: true,
            progress: true,
            timeout: Duration::from_secs(30),
        }
    }
}

/// Latency percentiles, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Latency {
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

impl Latency {
    fn of(histogram: &Histogram<u64>) -> Self {
        let ms = |us: u64| us as f64 / 1000.0;
        if histogram.is_empty() {
            return Self::default();
        }
        Self {
            p50_ms: ms(histogram.value_at_quantile(0.50)),
            p90_ms: ms(histogram.value_at_quantile(0.90)),
            p99_ms: ms(histogram.value_at_quantile(0.99)),
            p999_ms: ms(histogram.value_at_quantile(0.999)),
            max_ms: ms(histogram.max()),
            mean_ms: histogram.mean() / 1000.0,
        }
    }

    /// The percentiles of latencies measured elsewhere, in milliseconds.
    pub fn of_samples(samples_ms: &[f64]) -> anyhow::Result<Self> {
        let mut histogram = Histogram::<u64>::new_with_bounds(1, MAX_LATENCY_US, 3)
            .map_err(|e| anyhow::anyhow!("latency histogram: {e:?}"))?;
        for ms in samples_ms {
            let us = ((ms * 1000.0) as u64).clamp(1, MAX_LATENCY_US);
            histogram.saturating_record(us);
        }
        Ok(Self::of(&histogram))
    }
}

/// What a load run measured (seeding excluded).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoadReport {
    pub target: String,
    pub workload: Workload,
    pub connections: usize,
    pub requests: u64,
    pub successes: u64,
    /// Failed requests by HTTP status, or `transport` when no response came.
    pub errors: BTreeMap<String, u64>,
    /// Requests sent, by operation (`create_order`, `update_order`, `delete_order`, `bill_order`).
    pub operations: BTreeMap<String, u64>,
    pub elapsed_secs: f64,
    pub requests_per_sec: f64,
    pub successes_per_sec: f64,
    pub latency: Latency,
}

impl LoadReport {
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

impl std::fmt::Display for LoadReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{} requests ({:?}) from {} connections to {} in {:.2} s",
            self.requests, self.workload, self.connections, self.target, self.elapsed_secs
        )?;
        writeln!(
            f,
            "  {:.1} requests/s, {} successes ({:.1}/s), {} errors",
            self.requests_per_sec,
            self.successes,
            self.successes_per_sec,
            self.error_count()
        )?;
        for (status, count) in &self.errors {
            writeln!(f, "    {status}: {count}")?;
        }
        let ops: Vec<String> = self
            .operations
            .iter()
            .map(|(op, n)| format!("{op} {n}"))
            .collect();
        writeln!(f, "  operations: {}", ops.join(", "))?;
        write!(
            f,
            "  latency: p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms",
            self.latency.p50_ms,
            self.latency.p90_ms,
            self.latency.p99_ms,
            self.latency.p999_ms,
            self.latency.max_ms
        )
    }
}

/// The catalogue the clients order from.
#[derive(Debug, Clone, Default)]
struct Catalogue {
    customers: Vec<String>,
    products: Vec<String>,
}

/// Runs the load and reports what it measured.
pub async fn run_load(options: &LoadOptions) -> anyhow::Result<LoadReport> {
    let connections = options.connections.max(1);
    let client = reqwest::Client::builder()
        .timeout(options.timeout)
        .pool_max_idle_per_host(connections)
        .build()
        .context("cannot build the HTTP client")?;
    let base = options.base_url.trim_end_matches('/').to_owned();
    let catalogue = if options.seed {
        seed(&client, &base, options)
            .await
            .with_context(|| format!("seeding the shop at {base}"))?
    } else {
        Catalogue {
            customers: (0..options.customers.max(1))
                .map(|_| uuid::Uuid::new_v4().to_string())
                .collect(),
            products: (0..options.products.max(1))
                .map(|_| uuid::Uuid::new_v4().to_string())
                .collect(),
        }
    };
    let catalogue = Arc::new(catalogue);
    let requests = match (options.requests, options.duration) {
        (None, None) => Some(1_000),
        (r, _) => r,
    };
    let deadline = options.duration.map(|d| Instant::now() + d);
    let bar = progress_bar(options.progress, requests, options.duration);
    let issued = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..connections {
        let client = client.clone();
        let base = base.clone();
        let catalogue = Arc::clone(&catalogue);
        let issued = Arc::clone(&issued);
        let bar = bar.clone();
        let workload = options.workload;
        let tally = Tally::new()?;
        tasks.spawn(async move {
            let mut state = Client {
                http: client,
                base,
                catalogue,
                rng: StdRng::seed_from_u64(worker as u64 ^ rand::random::<u64>()),
                unbilled: Vec::new(),
                tally,
            };
            loop {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    break;
                }
                if let Some(limit) = requests {
                    if issued.fetch_add(1, Ordering::Relaxed) >= limit {
                        break;
                    }
                }
                state.one_request(workload).await;
                if deadline.is_some() {
                    bar.set_position(started.elapsed().as_secs());
                } else {
                    bar.inc(1);
                }
            }
            state.tally
        });
    }
    let mut total = Tally::new()?;
    while let Some(tally) = tasks.join_next().await {
        total.merge(tally.context("a load client panicked")?)?;
    }
    let elapsed = started.elapsed().as_secs_f64().max(1e-9);
    bar.finish_and_clear();
    let requests = total.histogram.len();
    Ok(LoadReport {
        target: base,
        workload: options.workload,
        connections,
        requests,
        successes: total.successes,
        errors: total.errors,
        operations: total.operations,
        elapsed_secs: elapsed,
        requests_per_sec: requests as f64 / elapsed,
        successes_per_sec: total.successes as f64 / elapsed,
        latency: Latency::of(&total.histogram),
    })
}

fn progress_bar(show: bool, requests: Option<u64>, duration: Option<Duration>) -> ProgressBar {
    if !show || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let (len, template) = match (requests, duration) {
        (Some(n), _) => (
            n,
            "load [{bar:40}] {pos}/{len} requests ({per_sec}, eta {eta})",
        ),
        (None, Some(d)) => (d.as_secs().max(1), "load [{bar:40}] {pos}/{len} s"),
        (None, None) => (0, "load {pos}"),
    };
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar
}

/// Counts and latencies of one client (merged at the end).
struct Tally {
    histogram: Histogram<u64>,
    successes: u64,
    errors: BTreeMap<String, u64>,
    operations: BTreeMap<String, u64>,
}

impl Tally {
    fn new() -> anyhow::Result<Self> {
        // 1 µs to 60 s at 3 significant digits.
        let histogram = Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)
            .map_err(|e| anyhow::anyhow!("latency histogram: {e:?}"))?;
        Ok(Self {
            histogram,
            successes: 0,
            errors: BTreeMap::new(),
            operations: BTreeMap::new(),
        })
    }

    fn record(&mut self, operation: &'static str, latency: Duration, outcome: Result<(), String>) {
        let us = (latency.as_micros() as u64).clamp(1, MAX_LATENCY_US);
        self.histogram.saturating_record(us);
        *self.operations.entry(operation.to_owned()).or_default() += 1;
        match outcome {
            Ok(()) => self.successes += 1,
            Err(status) => *self.errors.entry(status).or_default() += 1,
        }
    }

    fn merge(&mut self, other: Tally) -> anyhow::Result<()> {
        self.histogram
            .add(&other.histogram)
            .map_err(|e| anyhow::anyhow!("merging latency histograms: {e:?}"))?;
        self.successes += other.successes;
        for (k, v) in other.errors {
            *self.errors.entry(k).or_default() += v;
        }
        for (k, v) in other.operations {
            *self.operations.entry(k).or_default() += v;
        }
        Ok(())
    }
}

/// One simulated client: its connection pool share, its own orders, its tally.
struct Client {
    http: reqwest::Client,
    base: String,
    catalogue: Arc<Catalogue>,
    rng: StdRng,
    /// Orders this client placed that are not billed: (order id, customer id).
    unbilled: Vec<(String, String)>,
    tally: Tally,
}

impl Client {
    fn pick<'a>(&mut self, list: &'a [String]) -> &'a str {
        let i = self.rng.random_range(0..list.len().max(1));
        list.get(i).map_or("", String::as_str)
    }

    fn basket(&mut self) -> Vec<String> {
        let catalogue = Arc::clone(&self.catalogue);
        let units = self.rng.random_range(1..=3);
        (0..units)
            .map(|_| self.pick(&catalogue.products).to_owned())
            .collect()
    }

    async fn one_request(&mut self, workload: Workload) {
        let roll: u32 = self.rng.random_range(0..100);
        let catalogue = Arc::clone(&self.catalogue);
        let mixed = workload == Workload::Mixed && !self.unbilled.is_empty();
        if mixed && roll < 10 {
            let i = self.rng.random_range(0..self.unbilled.len());
            let (order, customer) = self.unbilled[i].clone();
            let body = json!({"product_ids": self.basket(), "customer_id": customer});
            let url = format!("{}/order/{order}", self.base);
            let req = self.http.put(url).json(&body);
            self.send("update_order", req).await;
        } else if mixed && roll < 15 {
            let i = self.rng.random_range(0..self.unbilled.len());
            let (order, _) = self.unbilled.swap_remove(i);
            let req = self.http.delete(format!("{}/order/{order}", self.base));
            self.send("delete_order", req).await;
        } else if mixed && roll < 25 {
            let i = self.rng.random_range(0..self.unbilled.len());
            let (order, _) = self.unbilled.swap_remove(i);
            let body = json!({"order_id": order});
            let req = self
                .http
                .post(format!("{}/billings", self.base))
                .json(&body);
            self.send("bill_order", req).await;
        } else {
            let customer = self.pick(&catalogue.customers).to_owned();
            let body = json!({"product_ids": self.basket(), "customer_id": customer});
            let req = self.http.post(format!("{}/orders", self.base)).json(&body);
            if let Some(Value::Array(ids)) = self.send("create_order", req).await {
                if workload == Workload::Mixed {
                    if let Some(id) = ids.first().and_then(Value::as_str) {
                        self.unbilled.push((id.to_owned(), customer));
                    }
                }
            }
        }
    }

    /// Sends one request, records it, and returns the JSON answer of a success.
    async fn send(
        &mut self,
        operation: &'static str,
        req: reqwest::RequestBuilder,
    ) -> Option<Value> {
        let started = Instant::now();
        let result = req.send().await;
        let (outcome, body) = match result {
            Ok(response) if response.status().is_success() => {
                match response.json::<Value>().await {
                    Ok(body) => (Ok(()), Some(body)),
                    Err(_) => (Err("bad body".to_owned()), None),
                }
            }
            Ok(response) => {
                let status = response.status().as_u16().to_string();
                // Read the body so the connection is reused.
                let _ = response.bytes().await;
                (Err(status), None)
            }
            Err(e) if e.is_timeout() => (Err("timeout".to_owned()), None),
            Err(_) => (Err("transport".to_owned()), None),
        };
        self.tally.record(operation, started.elapsed(), outcome);
        body
    }
}

/// Creates the customers, products and stock, in lists of [`SEED_CHUNK`].
async fn seed(
    client: &reqwest::Client,
    base: &str,
    options: &LoadOptions,
) -> anyhow::Result<Catalogue> {
    let mut rng = StdRng::seed_from_u64(rand::random());
    let customers: Vec<Value> = (0..options.customers.max(1))
        .map(|i| {
            let name: String = Name().fake_with_rng(&mut rng);
            let email: String = SafeEmail().fake_with_rng(&mut rng);
            // A numbered local part keeps emails distinct however the faker draws.
            json!({"name": name, "email": format!("{i}.{email}")})
        })
        .collect();
    let products: Vec<Value> = (0..options.products.max(1))
        .map(|_| {
            let words: Vec<String> = Words(1..3).fake_with_rng(&mut rng);
            let price: u64 = rng.random_range(100..=20_000);
            json!({"name": words.join(" "), "price": price})
        })
        .collect();
    let customer_ids = create_all(client, base, "/customers", &customers).await?;
    let product_ids = create_all(client, base, "/products", &products).await?;
    let stock: Vec<Value> = product_ids
        .iter()
        .map(|id| json!({"product_id": id, "amount": options.stock}))
        .collect();
    create_all(client, base, "/inventory", &stock).await?;
    Ok(Catalogue {
        customers: customer_ids,
        products: product_ids,
    })
}

async fn create_all(
    client: &reqwest::Client,
    base: &str,
    path: &str,
    bodies: &[Value],
) -> anyhow::Result<Vec<String>> {
    let mut ids = Vec::with_capacity(bodies.len());
    for chunk in bodies.chunks(SEED_CHUNK) {
        let response = client
            .post(format!("{base}{path}"))
            .json(&chunk)
            .send()
            .await
            .with_context(|| format!("POST {path}"))?;
        let status = response.status();
        let body: Value = response
            .json()
            .await
            .with_context(|| format!("POST {path}: reading the answer"))?;
        if !status.is_success() {
            anyhow::bail!("POST {path} answered {status}: {body}");
        }
        let created: Vec<String> = serde_json::from_value(body)
            .with_context(|| format!("POST {path}: the answer is not a list of ids"))?;
        ids.extend(created);
    }
    Ok(ids)
}

/// `ordershop-rigs load`: runs the load and prints the report (text or JSON).
pub async fn load(options: LoadOptions, json: bool) -> anyhow::Result<std::process::ExitCode> {
    let report = run_load(&options).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{report}");
    }
    Ok(std::process::ExitCode::SUCCESS)
}
