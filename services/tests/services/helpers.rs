//! Starting roles for a test: a private redis-server, each role's real app on its own port,
//! and helpers to look at what the roles wrote.

use ordershop_domain::entity::EntityState;
use ordershop_domain::{Action, EntityKind, Head};
use ordershop_eventstore::{EntryId, EventStore, StoredEvent, Stream};
use ordershop_readmodel::keys;
use ordershop_redis::RedisConfig;
use ordershop_services::config::{Config, Role};
pub use ordershop_testkit::eventually as wait_for;
use ordershop_testkit::RedisServer;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::net::TcpListener;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub const DOMAIN_SERVICES: [Role; 5] = [
    Role::CustomerService,
    Role::ProductService,
    Role::InventoryService,
    Role::OrderService,
    Role::BillingService,
];

/// A role's server running in this process.
pub struct Running {
    pub url: String,
    shutdown: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Running {
    /// Stops the server gracefully and waits until it has stopped listening.
    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("the server stops within 30 s")
            .expect("the server task did not panic")
            .expect("the server stopped without error");
    }
}

/// The configuration a test role gets: the test's Redis, a short consistency timeout (no
/// projector runs in these tests).
pub fn config_for(role: Role, redis_url: &str, extra: &[(&str, &str)]) -> Config {
    let mut vars: HashMap<String, String> = HashMap::from([
        ("REDIS_URL".to_owned(), redis_url.to_owned()),
        (
            "ORDERSHOP_CONSISTENCY_TIMEOUT_MS".to_owned(),
            "50".to_owned(),
        ),
        ("ORDERSHOP_HTTP_WORKERS".to_owned(), "2".to_owned()),
    ]);
    for (k, v) in extra {
        vars.insert((*k).to_owned(), (*v).to_owned());
    }
    Config::from_lookup(role, |name| vars.get(name).cloned()).expect("valid test config")
}

/// Serves `role` with `config` on a free loopback port.
pub fn start_role(role: Role, config: Config) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    let url = format!("http://{}", listener.local_addr().expect("local address"));
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(ordershop_services::serve(
        role,
        config,
        listener,
        shutdown.clone(),
        Default::default(),
    ));
    Running {
        url,
        shutdown,
        task,
    }
}

/// A private Redis and the roles a test started on it.
pub struct Shop {
    pub redis: RedisServer,
    pub store: EventStore,
    pub http: reqwest::Client,
    roles: HashMap<Role, Running>,
}

impl Shop {
    /// Starts the given roles; a gateway among them is pointed at the others.
    pub async fn start(roles: &[Role]) -> Shop {
        Self::start_with(roles, &[]).await
    }

    pub async fn start_with(roles: &[Role], extra: &[(&str, &str)]) -> Shop {
        let redis = RedisServer::start();
        let store = EventStore::connect(&RedisConfig::new(redis.url()).expect("url"))
            .await
            .expect("store connects");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .no_proxy()
            .build()
            .expect("http client");
        let mut shop = Shop {
            redis,
            store,
            http,
            roles: HashMap::new(),
        };
        for role in roles.iter().filter(|r| **r != Role::Gateway) {
            let config = config_for(*role, &shop.redis.url(), extra);
            shop.roles.insert(*role, start_role(*role, config));
        }
        if roles.contains(&Role::Gateway) {
            let mut config = config_for(Role::Gateway, &shop.redis.url(), extra);
            for (role, running) in &shop.roles {
                config.set_peer_url(*role, running.url.clone());
            }
            // Services the test did not start are unreachable, not someone else's port 500x.
            for role in Role::ALL {
                if role != Role::Gateway && !shop.roles.contains_key(&role) {
                    config.set_peer_url(
                        role,
                        format!("http://127.0.0.1:{}", ordershop_testkit::free_port()),
                    );
                }
            }
            shop.roles
                .insert(Role::Gateway, start_role(Role::Gateway, config));
        }
        for role in roles {
            shop.wait_healthy(*role).await;
        }
        shop
    }

    pub fn url(&self, role: Role) -> &str {
        &self.roles[&role].url
    }

    /// The base URL that serves the commands of `kind`: its service, or the gateway.
    pub fn command_url(&self, kind: EntityKind, via_gateway: bool) -> &str {
        if via_gateway {
            self.url(Role::Gateway)
        } else {
            self.url(Role::owner_of(kind))
        }
    }

    pub async fn stop(&mut self, role: Role) {
        if let Some(running) = self.roles.remove(&role) {
            running.stop().await;
        }
    }

    pub async fn wait_healthy(&self, role: Role) {
        let url = format!("{}/health", self.url(role));
        let http = self.http.clone();
        wait_for(
            &format!("{role} to be healthy"),
            Duration::from_secs(30),
            || {
                let (http, url) = (http.clone(), url.clone());
                async move {
                    matches!(http.get(&url).send().await, Ok(r) if r.status() == StatusCode::OK)
                }
            },
        )
        .await;
    }

    /// Sends a request with a JSON body (or none) and returns status, headers and JSON body.
    pub async fn call(&self, method: Method, url: &str, body: Option<&Value>) -> Reply {
        let mut request = self.http.request(method, url);
        if let Some(body) = body {
            request = request.json(body);
        }
        Reply::from(request.send().await.expect("request answered")).await
    }

    /// Sends raw bytes as the body.
    pub async fn call_raw(&self, method: Method, url: &str, body: Vec<u8>) -> Reply {
        let request = self
            .http
            .request(method, url)
            .header("content-type", "application/json")
            .body(body);
        Reply::from(request.send().await.expect("request answered")).await
    }

    pub async fn post(&self, url: &str, body: &Value) -> Reply {
        self.call(Method::POST, url, Some(body)).await
    }

    /// Creates one entity through its service and returns its id.
    pub async fn create(&self, kind: EntityKind, path: &str, body: Value) -> Uuid {
        let reply = self
            .post(&format!("{}{path}", self.url(Role::owner_of(kind))), &body)
            .await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "create {path}: {:?}",
            reply.body
        );
        reply.ids()[0]
    }

    pub async fn redis(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.redis.url())
            .expect("url")
            .get_multiplexed_async_connection()
            .await
            .expect("redis connects")
    }

    /// XLEN of every event stream and of the outbox.
    pub async fn stream_lengths(&self) -> BTreeMap<String, u64> {
        let mut conn = self.redis().await;
        let mut names: Vec<String> = Stream::all().iter().map(Stream::key).collect();
        names.push(keys::outbox());
        let mut lengths = BTreeMap::new();
        for name in names {
            let len: u64 = redis::cmd("XLEN")
                .arg(&name)
                .query_async(&mut conn)
                .await
                .expect("XLEN");
            lengths.insert(name, len);
        }
        lengths
    }

    pub async fn xlen(&self, kind: EntityKind, action: Action) -> u64 {
        self.stream_lengths().await[&Stream::new(kind, action).key()]
    }

    /// Every event of one stream, decoded.
    pub async fn events(&self, kind: EntityKind, action: Action) -> Vec<StoredEvent> {
        self.store
            .read_stream(Stream::new(kind, action), EntryId::ZERO, None, 10_000)
            .await
            .expect("read stream")
            .iter()
            .map(|e| e.decode().expect("a valid event"))
            .collect()
    }

    pub async fn head<T: EntityState>(&self, id: Uuid) -> Head<T> {
        self.store.head::<T>(id).await.expect("head")
    }
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Reply {
    async fn from(response: reqwest::Response) -> Reply {
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.expect("body read");
        let body = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
            Value::String(format!("<not JSON: {}>", String::from_utf8_lossy(&bytes)))
        });
        Reply {
            status,
            headers,
            body,
        }
    }

    pub fn ids(&self) -> Vec<Uuid> {
        serde_json::from_value(self.body.clone())
            .unwrap_or_else(|e| panic!("expected a list of ids, got {:?}: {e}", self.body))
    }

    /// The `X-Ordershop-Versions` header, as `kind:id:version` strings.
    pub fn versions(&self) -> Vec<String> {
        let value = self
            .headers
            .get("x-ordershop-versions")
            .unwrap_or_else(|| panic!("no versions header: {:?}", self.headers));
        value
            .to_str()
            .expect("ASCII header")
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// Asserts a JSON error answer: the status, the error code, and a non-empty detail.
    pub fn assert_error(&self, status: u16, code: &str, context: &str) {
        assert_eq!(self.status.as_u16(), status, "{context}: {:?}", self.body);
        assert_eq!(
            self.body["error"].as_str(),
            Some(code),
            "{context}: {:?}",
            self.body
        );
        let detail = self.body["detail"].as_str().unwrap_or_default();
        assert!(
            !detail.is_empty(),
            "{context}: no detail in {:?}",
            self.body
        );
        assert_eq!(
            self.headers
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("application/json"),
            "{context}"
        );
    }
}
