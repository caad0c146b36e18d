//! Starting a whole shop for a test: a private redis-server and the real `ordershop` binary,
//! either as one process (`ordershop up`) or one process per role (`ordershop serve <role>`),
//! every role on a free loopback port.

use ordershop_eventstore::{EventStore, Stream};
use ordershop_redis::namespace::{Namespace, NAMESPACE_VAR};
use ordershop_redis::{RedisConfig, RedisConnection};
pub use ordershop_testkit::{dump, eventually};
use ordershop_testkit::{free_port, RedisCluster, RedisServer};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const ROLES: [&str; 9] = [
    "gateway",
    "customer-service",
    "product-service",
    "inventory-service",
    "order-service",
    "billing-service",
    "msg-service",
    "crm-service",
    "entity-cache",
];

/// Key patterns of the entity cache: what "the cache's state" means in comparisons (its
/// runner's bookkeeping — heartbeats, last error, dead letters — is not state).
pub const CACHE_KEYS: [&str; 12] = [
    "customer_ids",
    "product_ids",
    "inventory_ids",
    "order_ids",
    "billing_ids",
    "*_entity:*",
    "order_product_ids:*",
    "orders_unbilled",
    "orders_billed",
    "entity-cache:versions:*",
    "entity-cache:billings_per_order",
    "entity-cache:documents:*",
];

/// How the shop's roles are laid out in processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `ordershop up` with REDIS_URL set: every role in one process.
    OneProcess,
    /// `ordershop serve <role>`: one process per role.
    ProcessPerRole,
}

/// The Redis a shop runs on: its own server, a server it shares with other shops (each in its
/// own namespace), or a cluster.
pub enum Backing {
    Own(RedisServer),
    Shared(Arc<RedisServer>),
    Cluster(Arc<RedisCluster>),
}

impl From<RedisServer> for Backing {
    fn from(server: RedisServer) -> Self {
        Backing::Own(server)
    }
}

/// The server (a cluster's first node).
impl std::ops::Deref for Backing {
    type Target = RedisServer;
    fn deref(&self) -> &RedisServer {
        match self {
            Backing::Own(server) => server,
            Backing::Shared(server) => server,
            Backing::Cluster(cluster) => &cluster.nodes()[0],
        }
    }
}

/// Restarting or killing the server is for a shop that owns it.
impl std::ops::DerefMut for Backing {
    fn deref_mut(&mut self) -> &mut RedisServer {
        match self {
            Backing::Own(server) => server,
            _ => panic!("only a shop that owns its Redis may restart or kill it"),
        }
    }
}

pub struct Shop {
    pub redis: Backing,
    /// The shop's key namespace (`ORDERSHOP_NAMESPACE` among its extra environment).
    pub namespace: Namespace,
    /// The REDIS_URL the roles get (the server's own URL, or a Sentinel URL).
    redis_url: String,
    /// Where the test's own checks connect, when not to `redis` (after a failover).
    checks_on: std::sync::Mutex<Option<String>>,
    pub layout: Layout,
    extra_env: Vec<(String, String)>,
    ports: HashMap<&'static str, u16>,
    processes: std::sync::Mutex<HashMap<&'static str, Child>>,
    log_dir: tempfile::TempDir,
    pub http: reqwest::Client,
}

/// The variable that holds a role's URL, e.g. `CUSTOMER_SERVICE_URL`.
pub fn env_var_of(role: &str) -> String {
    format!("{}_URL", role.to_uppercase().replace('-', "_"))
}

impl Shop {
    pub async fn start(layout: Layout) -> Shop {
        Shop::start_with(layout, &[]).await
    }

    /// Starts a shop whose processes also get the given environment.
    pub async fn start_with(layout: Layout, extra_env: &[(&str, &str)]) -> Shop {
        Shop::start_on(RedisServer::start(), layout, extra_env).await
    }

    /// Starts a shop on a given (private) redis-server.
    pub async fn start_on(redis: RedisServer, layout: Layout, extra_env: &[(&str, &str)]) -> Shop {
        let url = redis.url();
        Shop::start_on_url(redis, url, layout, extra_env).await
    }

    /// Starts a shop whose roles reach Redis by `redis_url` (e.g. a Sentinel URL whose primary
    /// is `redis`).
    pub async fn start_on_url(
        redis: impl Into<Backing>,
        redis_url: String,
        layout: Layout,
        extra_env: &[(&str, &str)],
    ) -> Shop {
        let redis = redis.into();
        let namespace = extra_env
            .iter()
            .find(|(name, _)| *name == NAMESPACE_VAR)
            .map(|(_, value)| Namespace::parse(value).expect("a valid namespace"))
            .unwrap_or_default();
        // The test's own checks reach a cluster through the cluster URL.
        let checks_on = matches!(redis, Backing::Cluster(_)).then(|| redis_url.clone());
        let ports = ROLES
            .iter()
            .copied()
            .zip(ordershop_testkit::free_ports(ROLES.len()))
            .collect();
        let shop = Shop {
            redis,
            namespace,
            redis_url,
            checks_on: std::sync::Mutex::new(checks_on),
            layout,
            extra_env: extra_env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            ports,
            processes: std::sync::Mutex::new(HashMap::new()),
            log_dir: tempfile::tempdir().expect("log folder"),
            // Idle connections are dropped before the server's keep-alive (5 s) closes them, so
            // a request after a pause (a test running a CLI command) never lands on a
            // connection the server is closing ("IncompleteMessage").
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .pool_idle_timeout(Duration::from_secs(2))
                .build()
                .expect("http client"),
        };
        match layout {
            Layout::OneProcess => shop.spawn("up", &["up"]),
            Layout::ProcessPerRole => {
                for role in ROLES {
                    shop.spawn(role, &["serve", role]);
                }
            }
        }
        for role in ROLES {
            shop.wait_healthy(role).await;
        }
        shop
    }

    fn env(&self) -> Vec<(String, String)> {
        let mut env = vec![
            ("REDIS_URL".to_owned(), self.redis_url.clone()),
            ("RUST_LOG".to_owned(), "info".to_owned()),
            (
                "ORDERSHOP_DATA_DIR".to_owned(),
                self.log_dir.path().join("data").display().to_string(),
            ),
        ];
        for role in ROLES {
            env.push((env_var_of(role), self.url(role)));
        }
        env.extend(self.extra_env.iter().cloned());
        env
    }

    /// Starts `ordershop <args>` with the shop's environment; its log goes to a file.
    fn spawn(&self, name: &'static str, args: &[&str]) {
        let port = self
            .ports
            .get(name)
            .copied()
            .unwrap_or(self.ports["gateway"]);
        self.spawn_listening(name, args, port);
    }

    fn spawn_listening(&self, name: &'static str, args: &[&str], port: u16) {
        let log_path = self.log_dir.path().join(format!("{name}.log"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .expect("log file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_ordershop"));
        command
            .args(args)
            .envs(self.env())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log);
        command.env("ORDERSHOP_LISTEN", format!("127.0.0.1:{port}"));
        let child = command.spawn().expect("the ordershop binary starts");
        self.children().insert(name, child);
    }

    fn children(&self) -> std::sync::MutexGuard<'_, HashMap<&'static str, Child>> {
        self.processes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The process id of a role started as its own process.
    pub fn pid(&self, name: &str) -> Option<u32> {
        self.children().get(name).map(Child::id)
    }

    pub fn url(&self, role: &str) -> String {
        format!("http://127.0.0.1:{}", self.ports[role])
    }

    pub fn gateway(&self, path: &str) -> String {
        format!("{}{path}", self.url("gateway"))
    }

    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.log_dir.path().join(format!("{name}.log"))).unwrap_or_default()
    }

    pub async fn wait_healthy(&self, role: &str) {
        let url = format!("{}/health", self.url(role));
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = self.http.get(&url).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            if Instant::now() > deadline {
                let names: Vec<&str> = self.children().keys().copied().collect();
                let logs: Vec<String> = names
                    .iter()
                    .map(|n| format!("--- {n}\n{}", self.log(n)))
                    .collect();
                panic!(
                    "{role} did not become healthy at {url}\n{}",
                    logs.join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Kills a role's process with SIGKILL (only with one process per role).
    pub fn kill(&self, role: &'static str) {
        assert_eq!(
            self.layout,
            Layout::ProcessPerRole,
            "kill needs one process per role"
        );
        let child = self.children().remove(role);
        if let Some(mut child) = child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops a role's process gracefully (SIGTERM) and waits for it to exit.
    pub fn stop(&self, role: &'static str) {
        assert_eq!(
            self.layout,
            Layout::ProcessPerRole,
            "stop needs one process per role"
        );
        let child = self.children().remove(role);
        if let Some(mut child) = child {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(20);
            while child.try_wait().ok().flatten().is_none() {
                if Instant::now() > deadline {
                    let _ = child.kill();
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.wait();
        }
    }

    /// Starts another instance of a role, on a port of its own, under `name`.
    pub async fn start_instance(&self, name: &'static str, role: &'static str) {
        let port = free_port();
        self.spawn_listening(name, &["serve", role], port);
        let url = format!("http://127.0.0.1:{port}/health");
        eventually(
            &format!("{name} to become healthy"),
            Duration::from_secs(60),
            || {
                let check = self.http.get(&url).send();
                async move { check.await.is_ok_and(|r| r.status().is_success()) }
            },
        )
        .await;
    }

    /// Starts a role's process again (after `kill` or `stop`).
    pub async fn start_role(&self, role: &'static str) {
        self.spawn(role, &["serve", role]);
        self.wait_healthy(role).await;
    }

    /// Points the test's own checks (and the CLI commands it runs) at another server, e.g. the
    /// primary after a failover.
    pub fn check_on(&self, url: String) {
        *self.checks_on.lock().unwrap_or_else(|e| e.into_inner()) = Some(url);
    }

    /// The URL of the server the test's checks read.
    pub fn checks_url(&self) -> String {
        self.checks_on
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .unwrap_or_else(|| self.redis.url())
    }

    pub async fn store(&self) -> EventStore {
        EventStore::connect(&RedisConfig::new(self.checks_url()).expect("url"))
            .await
            .expect("store connects")
    }

    /// A connection for the test's own checks. Replies may take long on a loaded machine (the
    /// client library's default gives up after 500 ms); a test's deadline bounds the wait.
    pub async fn redis(&self) -> redis::aio::MultiplexedConnection {
        let config =
            redis::AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(30)));
        redis::Client::open(self.checks_url())
            .expect("url")
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .expect("redis connects")
    }

    /// A connection that reaches a cluster too (for the test's checks of a namespaced shop).
    pub fn connection(&self) -> RedisConnection {
        let mut config = RedisConfig::new(self.checks_url()).expect("url");
        config.response_timeout = Duration::from_secs(30);
        RedisConnection::new(&config).expect("a connection")
    }

    /// The key of `bare` in the shop's namespace.
    pub fn key(&self, bare: &str) -> String {
        self.namespace.key(bare)
    }

    /// XLEN of every event stream of the shop, by stream name (without the namespace).
    pub async fn stream_lengths(&self) -> BTreeMap<String, u64> {
        let mut conn = self.connection();
        let mut lens = BTreeMap::new();
        for stream in Stream::all() {
            let len: u64 = redis::cmd("XLEN")
                .arg(self.key(&stream.name()))
                .query_async(&mut conn)
                .await
                .expect("XLEN");
            lens.insert(stream.name(), len);
        }
        lens
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let response = self.http.get(self.gateway(path)).send().await.expect("GET");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn send(&self, method: reqwest::Method, path: &str, body: Value) -> (u16, Value) {
        self.send_as(None, method, path, body).await
    }

    /// [`Shop::send`] with `Authorization: Bearer <token>` when a token is given.
    pub async fn send_as(
        &self,
        token: Option<&str>,
        method: reqwest::Method,
        path: &str,
        body: Value,
    ) -> (u16, Value) {
        let mut request = self.http.request(method, self.gateway(path)).json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(reqwest::Method::POST, path, body).await
    }

    /// POSTs and returns the new ids, asserting a 200.
    pub async fn create(&self, path: &str, body: Value) -> Vec<String> {
        let (status, ids) = self.post(path, body.clone()).await;
        assert_eq!(status, 200, "POST {path} {body}: {ids}");
        ids.as_array()
            .expect("a list of ids")
            .iter()
            .map(|v| v.as_str().expect("id").to_owned())
            .collect()
    }

    /// Messages the message service delivered (optionally to one address).
    pub async fn emails(&self, to: Option<&str>) -> Vec<Value> {
        let mut request = self.http.get(format!("{}/emails", self.url("msg-service")));
        if let Some(to) = to {
            request = request.query(&[("to", to)]);
        }
        let response = request.send().await.expect("GET /emails");
        let status = response.status();
        let body: Value = response.json().await.expect("JSON");
        assert!(status.is_success(), "GET /emails: {status} {body}");
        body.as_array().cloned().unwrap_or_default()
    }
}

impl Drop for Shop {
    fn drop(&mut self) {
        for (_, child) in self.children().iter_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// How long a projection may take to catch up in a test.
pub const CATCH_UP: Duration = Duration::from_secs(120);

/// Waits until one projection's group has been delivered and has acknowledged every entry.
pub async fn wait_caught_up(shop: &Shop, projection: ordershop_projections::ProjectionName) {
    let group = projection.name();
    let streams = projection.streams();
    let conn = shop.redis().await;
    eventually(&format!("{group} to catch up"), CATCH_UP, || {
        let streams = streams.clone();
        let mut conn = conn.clone();
        async move { caught_up(&mut conn, group, &streams).await }
    })
    .await;
}

/// Waits until every projection has caught up.
pub async fn wait_all_caught_up(shop: &Shop) {
    if shop.namespace.name().is_some() {
        // The test's own key names carry no namespace: ask the shop's operator command.
        eventually("the shop's projections to catch up", CATCH_UP, || async {
            run_cli(shop, &["status", "--max-lag", "0"]).0 == 0
        })
        .await;
        return;
    }
    for projection in ordershop_projections::ProjectionName::ALL {
        wait_caught_up(shop, projection).await;
    }
}

/// True when a consumer group has been delivered every entry of its streams and acked them all.
pub async fn caught_up(
    conn: &mut redis::aio::MultiplexedConnection,
    group: &str,
    streams: &[String],
) -> bool {
    for stream in streams {
        let exists: bool = redis::cmd("EXISTS")
            .arg(stream)
            .query_async(conn)
            .await
            .unwrap_or(false);
        if !exists {
            continue;
        }
        let groups: redis::Value = match redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(stream)
            .query_async(conn)
            .await
        {
            Ok(v) => v,
            Err(_) => return false,
        };
        let Some(info) = group_info(&groups, group) else {
            return false;
        };
        let pending = info
            .get("pending")
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(u64::MAX);
        // Read up to the stream's last entry (Redis's own `lag` can be wrong after a restart
        // from a rewritten AOF or on a promoted replica, so it is not trusted here).
        let top: Vec<String> = match redis::cmd("XREVRANGE")
            .arg(stream)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async::<redis::streams::StreamRangeReply>(conn)
            .await
        {
            Ok(reply) => reply.ids.into_iter().map(|e| e.id).collect(),
            Err(_) => return false,
        };
        let delivered = info.get("last-delivered-id").cloned().unwrap_or_default();
        let lag = match top.first() {
            Some(top) if entry_order(&delivered) < entry_order(top) => 1,
            _ => 0,
        };
        if pending != 0 || lag != 0 {
            return false;
        }
    }
    true
}

/// An entry ID as `(ms, seq)`, for comparisons (`(0, 0)` if unreadable).
fn entry_order(id: &str) -> (u64, u64) {
    let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
    (ms.parse().unwrap_or(0), seq.parse().unwrap_or(0))
}

fn group_info(groups: &redis::Value, name: &str) -> Option<HashMap<String, String>> {
    let redis::Value::Array(groups) = groups else {
        return None;
    };
    for group in groups {
        let fields: Vec<&redis::Value> = match group {
            redis::Value::Array(items) => items.iter().collect(),
            redis::Value::Map(pairs) => pairs.iter().flat_map(|(k, v)| [k, v]).collect(),
            _ => continue,
        };
        let mut map = HashMap::new();
        for pair in fields.chunks(2) {
            if let [k, v] = pair {
                let text = |v: &redis::Value| match v {
                    redis::Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
                    redis::Value::SimpleString(s) => s.clone(),
                    redis::Value::Int(i) => i.to_string(),
                    _ => String::new(),
                };
                map.insert(text(k), text(v));
            }
        }
        if map.get("name").map(String::as_str) == Some(name) {
            return Some(map);
        }
    }
    None
}

/// Runs `ordershop <args>` against the shop's Redis and returns (exit code, stdout, stderr).
pub fn run_cli(shop: &Shop, args: &[&str]) -> (i32, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ordershop"));
    if let Some(name) = shop.namespace.name() {
        command.env(NAMESPACE_VAR, name);
    }
    let output = command
        .args(args)
        .env("REDIS_URL", shop.checks_url())
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .expect("the ordershop binary runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Waits until `command key` (XLEN, HLEN, ...) answers a length `wanted` accepts.
pub async fn wait_for_length(
    shop: &Shop,
    command: &str,
    key: &str,
    what: &str,
    wanted: impl Fn(u64) -> bool,
) {
    let conn = shop.redis().await;
    eventually(what, CATCH_UP, || {
        let (mut conn, command, key) = (conn.clone(), command.to_owned(), key.to_owned());
        let accepted = async move {
            redis::cmd(&command)
                .arg(&key)
                .query_async::<u64>(&mut conn)
                .await
                .unwrap_or(0)
        };
        let wanted = &wanted;
        async move { wanted(accepted.await) }
    })
    .await;
}

/// Appends an event to `events:customer_created` by hand, outside the store: its entity as
/// given (valid or not); returns the entry ID.
pub async fn append_by_hand(conn: &mut redis::aio::MultiplexedConnection, entity: &str) -> String {
    redis::cmd("XADD")
        .arg("events:customer_created")
        .arg("*")
        .arg("event_id")
        .arg(uuid::Uuid::new_v4().to_string())
        .arg("entity")
        .arg(entity)
        .arg("version")
        .arg("1")
        .query_async(conn)
        .await
        .expect("XADD")
}
