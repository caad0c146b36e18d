//! `ordershop-rigs chaos`: a bounded fault-injection run. It starts a private redis-server and
//! every role as its own process (`ordershop-rigs shop serve <role>`: the `ordershop serve` of the
//! `ordershop` library), drives a mixed load over HTTP, kills (SIGKILL) and restarts the
//! projector, the CRM and the order service over and over, then checks the invariants the shop
//! promises and prints what it did and what it verified. Exit status 1 if an invariant fails.
//!
//! The checks read the shop the way its own parts do: the log through the event store's replay,
//! the stock in the entity cache through the gateway's [`CacheReader`], the delivered messages
//! through the message service's `GET /emails`, and each projection's state against a rebuild
//! through the projections' own rebuild.

use anyhow::{bail, Context};
use ordershop::local_redis::LocalRedis;
use ordershop_domain::{Action, Entity, EntityKind, Head, Inventory, Order};
use ordershop_eventstore::{EntryId, EventStore, Stream};
use ordershop_operations::{group_status, rebuild_projection};
use ordershop_projections::{Crm, EntityCache, ProjectionName, Replayable};
use ordershop_readmodel::CacheReader;
use ordershop_redis::RedisConfig;
use ordershop_services::config::Role;
use ordershop_testkit::try_dump;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::process::{ExitCode, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::process::Child;

/// The roles killed and restarted, in turn.
const VICTIMS: [Role; 3] = [Role::EntityCache, Role::CrmService, Role::OrderService];
/// Stock each product starts with: small enough that some orders run out.
const INITIAL_STOCK: u32 = 2_000;

#[derive(Debug, Clone)]
pub struct ChaosOptions {
    pub seconds: u64,
    pub clients: usize,
    /// Pause between two kills.
    pub kill_every: Duration,
    pub seed: u64,
}

/// The shop's processes, on free loopback ports.
struct Processes {
    env: Vec<(String, String)>,
    ports: HashMap<Role, u16>,
    children: HashMap<Role, Child>,
    logs: std::path::PathBuf,
}

impl Processes {
    fn url(&self, role: Role) -> String {
        format!("http://127.0.0.1:{}", self.ports[&role])
    }

    fn spawn(&mut self, role: Role) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.logs.join(format!("{role}.log")))?;
        let child = crate::shop::shop_command(&["serve", role.as_str()])?
            .envs(self.env.iter().cloned())
            .env(
                "ORDERSHOP_LISTEN",
                format!("127.0.0.1:{}", self.ports[&role]),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {role}"))?;
        self.children.insert(role, child);
        Ok(())
    }

    async fn kill(&mut self, role: Role) -> anyhow::Result<()> {
        if let Some(mut child) = self.children.remove(&role) {
            child.kill().await?;
        }
        Ok(())
    }

    async fn wait_healthy(&self, http: &reqwest::Client, role: Role) -> anyhow::Result<()> {
        let url = format!("{}/health", self.url(role));
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if http
                .get(&url)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{role} did not become healthy within 60 s (see {})",
                    self.logs.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

/// What the load did, and what it was told.
#[derive(Default)]
struct Ledger {
    statuses: BTreeMap<u16, u64>,
    transport_errors: u64,
    /// Ids the shop acknowledged creating, per kind.
    created: BTreeMap<&'static str, Vec<String>>,
    customers: Vec<String>,
    products: Vec<String>,
    orders: Vec<String>,
}

impl Ledger {
    fn record(&mut self, status: Option<u16>) {
        match status {
            Some(s) => *self.statuses.entry(s).or_default() += 1,
            None => self.transport_errors += 1,
        }
    }
}

/// One invariant checked at the end.
struct Check {
    what: String,
    ok: bool,
    detail: String,
}

async fn send(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    body: Value,
) -> (Option<u16>, Value) {
    match http.request(method, url).json(&body).send().await {
        Ok(r) => {
            let status = r.status().as_u16();
            (Some(status), r.json().await.unwrap_or(Value::Null))
        }
        Err(_) => (None, Value::Null),
    }
}

fn first_id(body: &Value) -> Option<String> {
    body.get(0).and_then(Value::as_str).map(str::to_owned)
}

/// One client: a random mix of commands until the deadline.
async fn client(
    http: reqwest::Client,
    gateway: String,
    ledger: &Mutex<Ledger>,
    seed: u64,
    until: Instant,
) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut n = 0u64;
    while Instant::now() < until {
        n += 1;
        let (customers, products, orders) = {
            let l = ledger.lock().unwrap_or_else(|e| e.into_inner());
            (l.customers.clone(), l.products.clone(), l.orders.clone())
        };
        let pick =
            |rng: &mut StdRng, v: &[String]| v.get(rng.random_range(0..v.len().max(1))).cloned();
        let roll = rng.random_range(0..100);
        let (kind, method, path, body) = if roll < 20 || customers.is_empty() {
            let body = json!({"name": format!("Chaos {seed}-{n}"), "email": format!("c{seed}x{n}@example.com")});
            (
                "customer",
                reqwest::Method::POST,
                "/customer".to_owned(),
                body,
            )
        } else if roll < 65 {
            let items: Vec<String> = (0..rng.random_range(1..4))
                .filter_map(|_| pick(&mut rng, &products))
                .collect();
            let body = json!({"customer_id": pick(&mut rng, &customers), "product_ids": items});
            ("order", reqwest::Method::POST, "/order".to_owned(), body)
        } else if roll < 75 {
            let Some(order) = pick(&mut rng, &orders) else {
                continue;
            };
            let (_, current) = send(
                &http,
                reqwest::Method::GET,
                format!("{gateway}/order/{order}"),
                Value::Null,
            )
            .await;
            if current.is_null() {
                continue;
            }
            let items: Vec<String> = (0..rng.random_range(1..4))
                .filter_map(|_| pick(&mut rng, &products))
                .collect();
            let body = json!({"customer_id": current["customer_id"], "product_ids": items});
            ("", reqwest::Method::PUT, format!("/order/{order}"), body)
        } else if roll < 80 {
            let Some(order) = pick(&mut rng, &orders) else {
                continue;
            };
            (
                "",
                reqwest::Method::DELETE,
                format!("/order/{order}"),
                Value::Null,
            )
        } else if roll < 95 {
            let Some(order) = pick(&mut rng, &orders) else {
                continue;
            };
            (
                "billing",
                reqwest::Method::POST,
                "/billing".to_owned(),
                json!({"order_id": order}),
            )
        } else {
            let Some(customer) = pick(&mut rng, &customers) else {
                continue;
            };
            (
                "",
                reqwest::Method::DELETE,
                format!("/customer/{customer}"),
                Value::Null,
            )
        };
        let (status, answer) = send(&http, method, format!("{gateway}{path}"), body).await;
        let mut l = ledger.lock().unwrap_or_else(|e| e.into_inner());
        l.record(status);
        if status == Some(200) && !kind.is_empty() {
            if let Some(id) = first_id(&answer) {
                l.created.entry(kind).or_default().push(id.clone());
                match kind {
                    "customer" => l.customers.push(id),
                    "order" => l.orders.push(id),
                    _ => {}
                }
            }
        }
    }
}

async fn wait_caught_up(redis: &RedisConfig) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let groups = group_status(redis).await?;
        if groups.len() == ProjectionName::ALL.len() && groups.iter().all(|g| g.behind() == 0) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the projections did not catch up within 180 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Checks the invariants against the log, the projections and the mail sink.
async fn verify(
    redis: &RedisConfig,
    http: &reqwest::Client,
    msg_service: &str,
    ledger: &Ledger,
) -> anyhow::Result<Vec<Check>> {
    let store = EventStore::connect(redis).await?;
    let mut conn = store.connection();
    let cache = CacheReader::new(conn.clone());
    let mut checks = Vec::new();

    // The log, replayed: final heads of orders and inventory, and ids created per kind.
    let entries = store
        .replay(Stream::all(), EntryId::ZERO)
        .await?
        .collect_all()
        .await?;
    let mut created: HashMap<EntityKind, HashSet<String>> = HashMap::new();
    let mut counts: HashMap<(EntityKind, Action), u64> = HashMap::new();
    let mut orders: HashMap<String, Head<Order>> = HashMap::new();
    let mut stock: HashMap<String, Head<Inventory>> = HashMap::new();
    let mut lowest = i64::MAX;
    for entry in &entries {
        let event = entry.decode()?;
        let id = event.entity_id().to_string();
        *counts
            .entry((event.kind(), event.stream.action))
            .or_default() += 1;
        if event.stream.action == Action::Created {
            created.entry(event.kind()).or_default().insert(id.clone());
        }
        match &event.change.entity {
            Entity::Order(_) => {
                let head = orders.remove(&id).unwrap_or_default();
                orders.insert(id, head.apply(event.version, &event.change));
            }
            Entity::Inventory(i) => {
                lowest = lowest.min(i64::from(i.amount.get()));
                let head = stock.remove(&id).unwrap_or_default();
                stock.insert(id, head.apply(event.version, &event.change));
            }
            _ => {}
        }
    }

    let mut missing = Vec::new();
    for (kind, ids) in &ledger.created {
        let kind: EntityKind = kind.parse().map_err(anyhow::Error::msg)?;
        let logged = created.get(&kind).cloned().unwrap_or_default();
        missing.extend(ids.iter().filter(|id| !logged.contains(*id)).cloned());
    }
    let acked: usize = ledger.created.values().map(Vec::len).sum();
    checks.push(Check {
        what: "no acknowledged write is missing from the log".into(),
        ok: missing.is_empty(),
        detail: format!("{acked} acknowledged creations, {} missing", missing.len()),
    });

    // Stock: never negative, and equal to the log's arithmetic (initial less live orders' units).
    let mut units: HashMap<String, i64> = HashMap::new();
    for order in orders.values().filter_map(|h| h.entity.as_ref()) {
        for p in &order.product_ids {
            *units.entry(p.to_string()).or_default() += 1;
        }
    }
    let mut wrong = Vec::new();
    for record in stock.values().filter_map(|h| h.entity.as_ref()) {
        let expected = i64::from(INITIAL_STOCK)
            - units
                .get(&record.product_id.to_string())
                .copied()
                .unwrap_or(0);
        let cached = match cache.get(EntityKind::Inventory, record.id.0).await? {
            Some(Entity::Inventory(cached)) => Some(i64::from(cached.amount.get())),
            _ => None,
        };
        if i64::from(record.amount.get()) != expected || cached != Some(expected) {
            wrong.push(format!(
                "{}: log {}, cache {cached:?}, expected {expected}",
                record.product_id, record.amount
            ));
        }
    }
    checks.push(Check {
        what: "stock never negative and equal to the log's arithmetic".into(),
        ok: wrong.is_empty() && lowest >= 0,
        detail: if wrong.is_empty() {
            format!("{} records, lowest amount seen {lowest}", stock.len())
        } else {
            wrong.join("; ")
        },
    });

    // Projections equal a rebuild from scratch.
    for (name, patterns, projection) in [
        (
            "entity cache",
            EntityCache.state_patterns(),
            ProjectionName::EntityCache,
        ),
        ("CRM view", Crm.state_patterns(), ProjectionName::Crm),
    ] {
        let live = try_dump(&mut conn, &patterns).await?;
        let report = rebuild_projection(redis, projection, &mut |_, _| {}).await?;
        let rebuilt = try_dump(&mut conn, &patterns).await?;
        let differing = live
            .iter()
            .filter(|(k, v)| rebuilt.get(*k) != Some(v))
            .count()
            + rebuilt.keys().filter(|k| !live.contains_key(*k)).count();
        checks.push(Check {
            what: format!("{name} equals a rebuild from the log"),
            ok: differing == 0,
            detail: format!(
                "{} keys compared after replaying {} events, {differing} differ",
                live.len(),
                report.replayed
            ),
        });
    }

    // Each customer message delivered exactly once.
    let delivered: Vec<Value> = http
        .get(format!("{msg_service}/emails"))
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .context("GET /emails from the message service")?
        .json()
        .await
        .context("GET /emails: not a list of messages")?;
    let mut seen = HashSet::new();
    let mut duplicates = 0;
    let mut kinds: HashMap<String, u64> = HashMap::new();
    for message in &delivered {
        let field = |name: &str| message[name].as_str().unwrap_or_default().to_owned();
        if !seen.insert(field("msg_id")) {
            duplicates += 1;
        }
        *kinds.entry(field("kind")).or_default() += 1;
    }
    let expected = [
        (
            "welcome",
            counts.get(&(EntityKind::Customer, Action::Created)),
        ),
        (
            "goodbye",
            counts.get(&(EntityKind::Customer, Action::Deleted)),
        ),
        (
            "order_confirmation",
            counts.get(&(EntityKind::Order, Action::Created)),
        ),
        (
            "payment_request",
            counts.get(&(EntityKind::Order, Action::Created)),
        ),
        (
            "receipt",
            counts.get(&(EntityKind::Billing, Action::Created)),
        ),
    ];
    let mismatched: Vec<String> = expected
        .iter()
        .filter_map(|(kind, n)| {
            let want = n.copied().unwrap_or(0);
            let got = kinds.get(*kind).copied().unwrap_or(0);
            (want != got).then(|| format!("{kind}: {got} delivered, {want} due"))
        })
        .collect();
    checks.push(Check {
        what: "each customer message delivered exactly once".into(),
        ok: duplicates == 0 && mismatched.is_empty(),
        detail: if mismatched.is_empty() {
            format!("{} messages, {duplicates} duplicates", delivered.len())
        } else {
            mismatched.join("; ")
        },
    });
    Ok(checks)
}

pub async fn run(options: ChaosOptions) -> anyhow::Result<ExitCode> {
    let dir = tempfile::Builder::new()
        .prefix("ordershop-chaos-")
        .tempdir()?;
    let redis = LocalRedis::start(dir.path(), "always", None).await?;
    let redis_config = RedisConfig::new(redis.url())?;
    let mut processes = Processes {
        env: Vec::new(),
        ports: HashMap::new(),
        children: HashMap::new(),
        logs: dir.path().to_owned(),
    };
    // Hold every listener until all ports are chosen, so no two roles get the same one.
    let listeners = Role::ALL
        .iter()
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()?;
    for (role, listener) in Role::ALL.into_iter().zip(&listeners) {
        processes.ports.insert(role, listener.local_addr()?.port());
    }
    drop(listeners);
    processes.env = vec![
        ("REDIS_URL".into(), redis.url()),
        ("ORDERSHOP_CLAIM_IDLE_MS".into(), "1000".into()),
        ("RUST_LOG".into(), "warn".into()),
    ];
    for role in Role::ALL {
        if let Some(var) = role.url_var() {
            processes.env.push((var.to_owned(), processes.url(role)));
        }
    }
    let result = drive(&mut processes, &redis_config, &options).await;
    for role in Role::ALL {
        let _ = processes.kill(role).await;
    }
    redis.stop().await?;
    result
}

async fn drive(
    processes: &mut Processes,
    redis: &RedisConfig,
    options: &ChaosOptions,
) -> anyhow::Result<ExitCode> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()?;
    for role in Role::ALL {
        processes.spawn(role)?;
    }
    for role in Role::ALL {
        processes.wait_healthy(&http, role).await?;
    }
    let gateway = processes.url(Role::Gateway);
    eprintln!(
        "chaos: shop up ({} roles as processes, logs in {})",
        Role::ALL.len(),
        processes.logs.display()
    );

    let ledger = Mutex::new(Ledger::default());
    let products: Vec<Value> = (0..5)
        .map(|i| json!({"name": format!("Chaos product {i}"), "price": 100 + i * 50}))
        .collect();
    let (status, ids) = send(
        &http,
        reqwest::Method::POST,
        format!("{gateway}/products"),
        Value::Array(products),
    )
    .await;
    let product_ids: Vec<String> = ids
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    if status != Some(200) || product_ids.len() != 5 {
        bail!("could not create the products: {status:?} {ids}");
    }
    let stock: Vec<Value> = product_ids
        .iter()
        .map(|p| json!({"product_id": p, "amount": INITIAL_STOCK}))
        .collect();
    let (status, ids) = send(
        &http,
        reqwest::Method::POST,
        format!("{gateway}/inventory"),
        Value::Array(stock),
    )
    .await;
    if status != Some(200) {
        bail!("could not create the stock: {status:?} {ids}");
    }
    {
        let mut l = ledger.lock().unwrap_or_else(|e| e.into_inner());
        l.products = product_ids.clone();
        l.created.insert("product", product_ids);
    }

    let until = Instant::now() + Duration::from_secs(options.seconds);
    let clients = (0..options.clients).map(|c| {
        client(
            http.clone(),
            gateway.clone(),
            &ledger,
            options.seed + c as u64,
            until,
        )
    });
    let load = futures::future::join_all(clients);
    let mut kills: BTreeMap<&'static str, u64> = BTreeMap::new();
    let chaos = async {
        let mut turn = 0;
        while Instant::now() + options.kill_every < until {
            tokio::time::sleep(options.kill_every).await;
            let victim = VICTIMS[turn % VICTIMS.len()];
            turn += 1;
            processes.kill(victim).await?;
            *kills.entry(victim.as_str()).or_default() += 1;
            processes.spawn(victim)?;
            processes.wait_healthy(&http, victim).await?;
        }
        anyhow::Ok(())
    };
    let (_, chaos) = tokio::join!(load, chaos);
    chaos?;
    eprintln!("chaos: load over, waiting for the projections to catch up");
    wait_caught_up(redis).await?;

    let ledger = ledger.into_inner().unwrap_or_else(|e| e.into_inner());
    let msg_service = processes.url(Role::MsgService);
    let checks = verify(redis, &http, &msg_service, &ledger).await?;

    println!("Did:");
    let requests: u64 = ledger.statuses.values().sum();
    let statuses: Vec<String> = ledger
        .statuses
        .iter()
        .map(|(s, n)| format!("{s}: {n}"))
        .collect();
    println!(
        "  {} s of mixed load from {} clients: {requests} requests ({})",
        options.seconds,
        options.clients,
        statuses.join(", ")
    );
    if ledger.transport_errors > 0 {
        println!("  {} requests got no answer", ledger.transport_errors);
    }
    for (role, n) in &kills {
        println!("  killed (SIGKILL) and restarted {role} {n} time(s)");
    }
    println!("Verified:");
    let mut all_ok = true;
    for check in &checks {
        all_ok &= check.ok;
        println!(
            "  [{}] {} ({})",
            if check.ok { "ok" } else { "FAILED" },
            check.what,
            check.detail
        );
    }
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
