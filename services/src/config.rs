//! Typed configuration of an HTTP role, read from environment variables with defaults.
//!
//! Every variable is parsed once, at start-up, into a [`Config`] for one role; a bad value is an
//! error that names the variable. [`Config::from_lookup`] takes any lookup function so tests
//! build a config without touching the process environment. Secrets (the Redis password, credentials in
//! a peer URL, the API token) never reach `Debug` output.

use ordershop_eventstore::{AckReplicas, AckWait};
use ordershop_redis::config::DEFAULT_REDIS_URL;
use ordershop_redis::url::redact;
use ordershop_redis::{RedisConfig, RedisConfigError};
use std::collections::BTreeMap;
use std::fmt;

pub use crate::role::Role;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

pub const REDIS_URL: &str = "REDIS_URL";
pub const LISTEN: &str = "ORDERSHOP_LISTEN";
pub const BODY_LIMIT: &str = "ORDERSHOP_BODY_LIMIT";
pub const HTTP_WORKERS: &str = "ORDERSHOP_HTTP_WORKERS";
pub const CONSISTENCY_TIMEOUT_MS: &str = "ORDERSHOP_CONSISTENCY_TIMEOUT_MS";
pub const API_TOKEN: &str = "ORDERSHOP_API_TOKEN";
pub const ACK_REPLICAS: &str = "ORDERSHOP_ACK_REPLICAS";
pub const ACK_TIMEOUT_MS: &str = "ORDERSHOP_ACK_TIMEOUT_MS";
pub const ACK_WAIT: &str = "ORDERSHOP_ACK_WAIT";
pub const CONSISTENCY_NOTICES: &str = "ORDERSHOP_CONSISTENCY_NOTICES";
pub const REQUEST_TIMEOUT_MS: &str = "ORDERSHOP_REQUEST_TIMEOUT_MS";
pub const MAX_CONNECTIONS: &str = "ORDERSHOP_MAX_CONNECTIONS";
pub const FEED_MAX_VIEWERS: &str = "ORDERSHOP_FEED_MAX_VIEWERS";
pub const FEED_MAX_PER_CLIENT: &str = "ORDERSHOP_FEED_MAX_PER_CLIENT";
pub const FEED_STALL_MS: &str = "ORDERSHOP_FEED_STALL_MS";
pub const ALLOWED_ORIGINS: &str = "ORDERSHOP_ALLOWED_ORIGINS";
pub const ALLOWED_HOSTS: &str = "ORDERSHOP_ALLOWED_HOSTS";
pub const RATE_LIMIT: &str = "ORDERSHOP_RATE_LIMIT";
pub const CONSUMER: &str = "ORDERSHOP_CONSUMER";
pub const CLAIM_IDLE_MS: &str = "ORDERSHOP_CLAIM_IDLE_MS";
pub const MAX_DELIVERIES: &str = "ORDERSHOP_MAX_DELIVERIES";
pub const BATCH: &str = "ORDERSHOP_BATCH";
/// `up`: `1` runs its private server with `appendfsync always`.
pub const STRICT_DURABILITY: &str = "ORDERSHOP_STRICT_DURABILITY";
/// `json` for JSON log lines (read before anything else, to set up logging).
pub const LOG_FORMAT: &str = "ORDERSHOP_LOG_FORMAT";
/// `up` and the operator commands: the shop's folder (read by the command line).
pub const DATA_DIR: &str = "ORDERSHOP_DATA_DIR";
/// `up`: the gateway's port (read by the command line).
pub const PORT: &str = "ORDERSHOP_PORT";
/// The server binary `up` (and the tests and rigs) start.
pub const SERVER_BIN: &str = "REDIS_SERVER_BIN";
/// The log level (read by `tracing-subscriber`).
pub const RUST_LOG: &str = "RUST_LOG";

/// Every environment variable the shop reads but the roles' URL variables, in one list (see
/// [`variables`]): the README's configuration table must document exactly these (checked by a
/// test), and no code reads one that is not here.
pub const VARIABLES: &[&str] = &[
    REDIS_URL,
    ordershop_redis::namespace::NAMESPACE_VAR,
    ordershop_redis::config::CA_FILE,
    ordershop_redis::config::CLIENT_CERT,
    ordershop_redis::config::CLIENT_KEY,
    LISTEN,
    BODY_LIMIT,
    HTTP_WORKERS,
    CONSISTENCY_TIMEOUT_MS,
    CONSISTENCY_NOTICES,
    API_TOKEN,
    ACK_REPLICAS,
    ACK_TIMEOUT_MS,
    ACK_WAIT,
    REQUEST_TIMEOUT_MS,
    MAX_CONNECTIONS,
    FEED_MAX_VIEWERS,
    FEED_MAX_PER_CLIENT,
    FEED_STALL_MS,
    ALLOWED_ORIGINS,
    ALLOWED_HOSTS,
    RATE_LIMIT,
    CONSUMER,
    CLAIM_IDLE_MS,
    MAX_DELIVERIES,
    BATCH,
    STRICT_DURABILITY,
    LOG_FORMAT,
    DATA_DIR,
    PORT,
    SERVER_BIN,
    RUST_LOG,
];

/// Every environment variable the shop reads: [`VARIABLES`] and each role's URL variable
/// ([`Role::url_var`]).
pub fn variables() -> impl Iterator<Item = &'static str> {
    VARIABLES
        .iter()
        .copied()
        .chain(Role::ALL.into_iter().filter_map(Role::url_var))
}

/// Shortest API token accepted (a shorter one is a start-up error, not a weak lock).
pub const MIN_API_TOKEN_CHARS: usize = 16;

pub const DEFAULT_BODY_LIMIT: usize = 256 * 1024;
pub const DEFAULT_HTTP_WORKERS: usize = 2;
pub const DEFAULT_CONSISTENCY_TIMEOUT: Duration = Duration::from_millis(5_000);
pub const DEFAULT_ACK_TIMEOUT: Duration = Duration::from_millis(1_000);
/// How long a client has to send a request's head, and then its body.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_millis(5_000);
/// Open connections a role accepts at most (beyond: the kernel's queue, then refusal).
pub const DEFAULT_MAX_CONNECTIONS: usize = 1_024;
/// Event-feed viewers one client address may hold open at once.
pub const DEFAULT_FEED_MAX_PER_CLIENT: usize = 32;
/// How long a feed viewer may leave a frame untaken before it is disconnected.
pub const DEFAULT_FEED_STALL: Duration = Duration::from_secs(30);
/// actix-server refuses more workers than this.
const MAX_HTTP_WORKERS: usize = 512;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{var}=`{value}` is invalid: {reason}")]
    Invalid {
        var: &'static str,
        /// The value as given, with any password hidden.
        value: String,
        reason: String,
    },
    #[error(transparent)]
    Redis(#[from] RedisConfigError),
}

/// The configuration of one role.
#[derive(Clone)]
pub struct Config {
    /// The role this configuration was read for.
    pub role: Role,
    pub redis: RedisConfig,
    /// Where the role listens: `ORDERSHOP_LISTEN`, else `127.0.0.1:<its default port>`.
    pub listen: SocketAddr,
    /// Base URL (no trailing slash) of each role other roles call.
    peers: BTreeMap<Role, String>,
    /// Largest request body accepted, in bytes.
    pub body_limit: usize,
    /// `ORDERSHOP_REQUEST_TIMEOUT_MS`: a client must send a request's head within this, then
    /// its body within this again (else 408 and the connection is closed).
    pub request_timeout: Duration,
    /// `ORDERSHOP_MAX_CONNECTIONS`: open connections the role serves at once.
    pub max_connections: usize,
    /// HTTP worker threads per server.
    pub http_workers: usize,
    /// `ORDERSHOP_FEED_MAX_VIEWERS` (default: a quarter of the connections),
    /// `ORDERSHOP_FEED_MAX_PER_CLIENT` and `ORDERSHOP_FEED_STALL_MS`: what event-feed viewers
    /// may take, so that commands and queries always have connections.
    pub feed: crate::gateway::feed::FeedLimits,
    /// `ORDERSHOP_ALLOWED_ORIGINS` and `ORDERSHOP_ALLOWED_HOSTS` (comma-separated): browser
    /// origins that may send commands, and host names a loopback role answers to, besides the
    /// shop's own ([`crate::cross_site`]).
    pub allowed_origins: Vec<String>,
    pub allowed_hosts: Vec<String>,
    /// `ORDERSHOP_RATE_LIMIT`: requests per second one client address may send (unset: no
    /// limit), see [`crate::rate_limit`].
    pub rate_limit: Option<u32>,
    /// How long the gateway waits for the entity cache to apply a command's events.
    pub consistency_timeout: Duration,
    /// `ORDERSHOP_CONSISTENCY_NOTICES` (`on`, the default, or `off`): whether the gateway's
    /// read-your-writes waits are woken by the entity cache's notices, or poll.
    pub consistency_notices: bool,
    /// The Function libraries of the projection worker this process runs beside the role (set
    /// by the launcher, not the environment): `/health` is ready only once they are loaded.
    pub worker_libraries: Vec<&'static str>,
    /// The domain services that run in the same process as this gateway (set by `up`, not the
    /// environment): the gateway runs their commands in-process instead of over HTTP.
    pub in_process_commands: Vec<Role>,
    /// `ORDERSHOP_API_TOKEN`: when set, mutating requests must carry it as a bearer token.
    pub api_token: Option<ApiToken>,
    /// `ORDERSHOP_ACK_REPLICAS` (default 0), `ORDERSHOP_ACK_TIMEOUT_MS` (default 1000) and
    /// `ORDERSHOP_ACK_WAIT` (`auto`, `wait` or `waitaof`): a command is answered 2xx only once
    /// that many replicas confirm its append.
    pub ack_replicas: AckReplicas,
    /// The projection worker's consumer-group settings (`ORDERSHOP_CONSUMER`,
    /// `ORDERSHOP_CLAIM_IDLE_MS`, `ORDERSHOP_MAX_DELIVERIES`, `ORDERSHOP_BATCH`).
    pub worker: WorkerSettings,
}

/// A projection worker's consumer-group settings; unset ones keep the runner's defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkerSettings {
    /// The consumer's name (default `<hostname>-<role>-<port>`, stable across restarts of one
    /// instance, so that it first finishes its own pending entries).
    pub consumer: Option<String>,
    /// How long an entry must sit with a dead consumer before another one takes it over.
    pub claim_idle: Option<Duration>,
    /// Deliveries after which a failing entry is dead-lettered (at least 1).
    pub max_deliveries: Option<u64>,
    /// Entries read per stream per step (1 to 10,000).
    pub batch: Option<usize>,
}

/// What a process reads before any role's configuration: how to log, and (for `up`) how
/// strictly its private server syncs to disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProcessSettings {
    /// `ORDERSHOP_LOG_FORMAT=json`: JSON log lines.
    pub json_logs: bool,
    /// `ORDERSHOP_STRICT_DURABILITY=1`: `appendfsync always` for `up`'s private server.
    pub strict_durability: bool,
}

impl ProcessSettings {
    pub fn from_env() -> Self {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        Self {
            json_logs: lookup(LOG_FORMAT).is_some_and(|v| v.trim().eq_ignore_ascii_case("json")),
            strict_durability: lookup(STRICT_DURABILITY).is_some_and(|v| v.trim() == "1"),
        }
    }
}

/// A secret every mutating request must present (`Authorization: Bearer <token>`). Its
/// `Debug` output is redacted; it is compared in constant time ([`crate::auth`]).
#[derive(Clone, PartialEq, Eq)]
pub struct ApiToken(String);

impl ApiToken {
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiToken(***)")
    }
}

impl Config {
    /// Reads `role`'s configuration from the process environment.
    pub fn from_env(role: Role) -> Result<Self, ConfigError> {
        Self::from_lookup(role, |name| std::env::var(name).ok())
    }

    /// Reads `role`'s configuration through `lookup` (variable name -> value). Unset and empty
    /// variables take their defaults, but for `ORDERSHOP_API_TOKEN`: set and blank is an error.
    pub fn from_lookup(
        role: Role,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let redis = RedisConfig::new(get(REDIS_URL).unwrap_or_else(|| DEFAULT_REDIS_URL.into()))?
            .with_tls_from(get)?;
        redis.check_namespace()?;
        // Set means set: a blank token must not quietly turn authentication off.
        let api_token = match lookup(API_TOKEN) {
            Some(token) => Some(parse_token(&token)?),
            None => None,
        };
        let listen = match get(LISTEN) {
            Some(value) => parse_listen(value.trim())?,
            None => SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), role.default_port()),
        };
        let mut peers = BTreeMap::new();
        for role in Role::ALL {
            let Some(var) = role.url_var() else { continue };
            let url = match get(var) {
                Some(url) => parse_peer_url(var, url.trim())?,
                None => format!("http://127.0.0.1:{}", role.default_port()),
            };
            peers.insert(role, url);
        }
        let body_limit = parse_number(get(BODY_LIMIT), BODY_LIMIT, DEFAULT_BODY_LIMIT, 1, None)?;
        let request_timeout_ms = parse_number(
            get(REQUEST_TIMEOUT_MS),
            REQUEST_TIMEOUT_MS,
            DEFAULT_REQUEST_TIMEOUT.as_millis() as usize,
            1,
            Some(600_000),
        )?;
        let max_connections = parse_number(
            get(MAX_CONNECTIONS),
            MAX_CONNECTIONS,
            DEFAULT_MAX_CONNECTIONS,
            1,
            Some(1_000_000),
        )?;
        let http_workers = parse_number(
            get(HTTP_WORKERS),
            HTTP_WORKERS,
            DEFAULT_HTTP_WORKERS,
            1,
            Some(MAX_HTTP_WORKERS),
        )?;
        let feed = crate::gateway::feed::FeedLimits {
            max_viewers: parse_number(
                get(FEED_MAX_VIEWERS),
                FEED_MAX_VIEWERS,
                (max_connections / 4).max(1),
                1,
                Some(max_connections),
            )?,
            max_per_client: parse_number(
                get(FEED_MAX_PER_CLIENT),
                FEED_MAX_PER_CLIENT,
                DEFAULT_FEED_MAX_PER_CLIENT,
                1,
                Some(max_connections),
            )?,
            stall: Duration::from_millis(parse_number(
                get(FEED_STALL_MS),
                FEED_STALL_MS,
                DEFAULT_FEED_STALL.as_millis() as usize,
                100,
                Some(3_600_000),
            )? as u64),
        };
        let list = |name: &str| -> Vec<String> {
            get(name)
                .map(|v| {
                    v.split(',')
                        .map(str::trim)
                        .filter(|item| !item.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default()
        };
        let allowed_origins = list(ALLOWED_ORIGINS);
        if let Some(bad) = allowed_origins.iter().find(|o| !o.contains("://")) {
            return Err(ConfigError::Invalid {
                var: ALLOWED_ORIGINS,
                value: bad.clone(),
                reason: "an origin is `<scheme>://<host>[:<port>]`".into(),
            });
        }
        let allowed_hosts = list(ALLOWED_HOSTS);
        let rate_limit = match get(RATE_LIMIT) {
            Some(value) => {
                Some(parse_number(Some(value), RATE_LIMIT, 0, 1, Some(1_000_000))? as u32)
            }
            None => None,
        };
        let consistency_ms = parse_number(
            get(CONSISTENCY_TIMEOUT_MS),
            CONSISTENCY_TIMEOUT_MS,
            DEFAULT_CONSISTENCY_TIMEOUT.as_millis() as usize,
            0,
            Some(3_600_000),
        )?;
        let ack_replicas = parse_number(get(ACK_REPLICAS), ACK_REPLICAS, 0, 0, Some(64))?;
        let ack_timeout_ms = parse_number(
            get(ACK_TIMEOUT_MS),
            ACK_TIMEOUT_MS,
            DEFAULT_ACK_TIMEOUT.as_millis() as usize,
            1,
            Some(60_000),
        )?;
        let consistency_notices = match get(CONSISTENCY_NOTICES).as_deref().map(str::trim) {
            None | Some("on") => true,
            Some("off") => false,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    var: CONSISTENCY_NOTICES,
                    value: other.to_owned(),
                    reason: "expected on or off".into(),
                })
            }
        };
        let ack_wait = match get(ACK_WAIT) {
            Some(value) => AckWait::parse(&value).ok_or_else(|| ConfigError::Invalid {
                var: ACK_WAIT,
                value: value.clone(),
                reason: "expected auto, wait or waitaof".into(),
            })?,
            None => AckWait::Auto,
        };
        Ok(Self {
            role,
            redis,
            listen,
            peers,
            body_limit,
            request_timeout: Duration::from_millis(request_timeout_ms as u64),
            max_connections,
            http_workers,
            feed,
            allowed_origins,
            allowed_hosts,
            rate_limit,
            consistency_timeout: Duration::from_millis(consistency_ms as u64),
            consistency_notices,
            worker_libraries: Vec::new(),
            in_process_commands: Vec::new(),
            api_token,
            ack_replicas: AckReplicas {
                replicas: ack_replicas as u32,
                timeout: Duration::from_millis(ack_timeout_ms as u64),
                wait: ack_wait,
            },
            worker: WorkerSettings {
                consumer: get(CONSUMER).map(|name| name.trim().to_owned()),
                claim_idle: optional_number(get(CLAIM_IDLE_MS), CLAIM_IDLE_MS)?
                    .map(|ms| Duration::from_millis(ms as u64)),
                max_deliveries: optional_number(get(MAX_DELIVERIES), MAX_DELIVERIES)?
                    .map(|n| (n as u64).max(1)),
                batch: optional_number(get(BATCH), BATCH)?.map(|n| n.clamp(1, 10_000)),
            },
        })
    }

    /// Where `role` listens when every role runs in one process (`ordershop up`): the gateway
    /// on `ORDERSHOP_LISTEN` (the address clients are given), every other role on the host
    /// and port of its URL variable, so that the gateway reaches it where it was told to. A
    /// URL naming a host rather than an address means all interfaces.
    pub fn address_of(&self, role: Role) -> SocketAddr {
        let default = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), role.default_port());
        if role == Role::Gateway {
            return if self.role == Role::Gateway {
                self.listen
            } else {
                default
            };
        }
        let Some(url) = self
            .peer_url(role)
            .and_then(|u| reqwest::Url::parse(u).ok())
        else {
            return default;
        };
        let port = url.port_or_known_default().unwrap_or(role.default_port());
        let host = url.host_str().unwrap_or_default();
        let ip = match host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        {
            Ok(ip) => ip,
            Err(_) if host == "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
            Err(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        };
        SocketAddr::new(ip, port)
    }

    /// Base URL of a role other roles call (no trailing slash).
    pub fn peer_url(&self, role: Role) -> Option<&str> {
        self.peers.get(&role).map(String::as_str)
    }

    /// Points `role` at another base URL (used by tests and the all-in-one launcher, which
    /// know the ports they bound).
    pub fn set_peer_url(&mut self, role: Role, url: impl Into<String>) {
        let url = url.into();
        self.peers
            .insert(role, url.trim_end_matches('/').to_owned());
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let peers: BTreeMap<&str, String> = self
            .peers
            .iter()
            .map(|(role, url)| (role.as_str(), redact(url)))
            .collect();
        f.debug_struct("Config")
            .field("role", &self.role)
            .field("redis", &self.redis)
            .field("listen", &self.listen)
            .field("peers", &peers)
            .field("body_limit", &self.body_limit)
            .field("http_workers", &self.http_workers)
            .field("feed", &self.feed)
            .field("allowed_origins", &self.allowed_origins)
            .field("allowed_hosts", &self.allowed_hosts)
            .field("rate_limit", &self.rate_limit)
            .field("consistency_timeout", &self.consistency_timeout)
            .field("worker_libraries", &self.worker_libraries)
            .field("in_process_commands", &self.in_process_commands)
            .field("api_token", &self.api_token)
            .finish()
    }
}

/// A token fit for an `Authorization` header: printable ASCII without spaces, so what a client
/// sends can equal it.
fn parse_token(value: &str) -> Result<ApiToken, ConfigError> {
    let token = value.trim();
    let invalid = |reason: String| ConfigError::Invalid {
        var: API_TOKEN,
        value: "***".to_owned(),
        reason,
    };
    if token.is_empty() {
        return Err(invalid(format!(
            "it is set but blank; set a token of at least {MIN_API_TOKEN_CHARS} characters, or \
             unset it to run without authentication"
        )));
    }
    if token.chars().count() < MIN_API_TOKEN_CHARS {
        return Err(invalid(format!(
            "a token needs at least {MIN_API_TOKEN_CHARS} characters"
        )));
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid(
            "expected printable ASCII without spaces".to_owned(),
        ));
    }
    Ok(ApiToken::new(token))
}

fn parse_listen(value: &str) -> Result<SocketAddr, ConfigError> {
    value.parse().map_err(|_| ConfigError::Invalid {
        var: LISTEN,
        value: value.to_owned(),
        reason: "expected ip:port, e.g. 0.0.0.0:5000".to_owned(),
    })
}

fn parse_peer_url(var: &'static str, value: &str) -> Result<String, ConfigError> {
    let invalid = |reason: String| ConfigError::Invalid {
        var,
        value: redact(value),
        reason,
    };
    let url = reqwest::Url::parse(value).map_err(|e| invalid(e.to_string()))?;
    if url.scheme() != "http" {
        return Err(invalid(
            "expected an http:// URL (the services talk plain HTTP to each other)".into(),
        ));
    }
    if url.host_str().is_none() {
        return Err(invalid("the URL has no host".into()));
    }
    Ok(value.trim_end_matches('/').to_owned())
}

/// A whole number if `var` is set (unset: `None`, the runner's default applies).
fn optional_number(value: Option<String>, var: &'static str) -> Result<Option<usize>, ConfigError> {
    value
        .map(|v| parse_number(Some(v), var, 0, 0, None))
        .transpose()
}

fn parse_number(
    value: Option<String>,
    var: &'static str,
    default: usize,
    min: usize,
    max: Option<usize>,
) -> Result<usize, ConfigError> {
    let Some(value) = value else {
        return Ok(default);
    };
    let invalid = |reason: String| ConfigError::Invalid {
        var,
        value: value.clone(),
        reason,
    };
    let n: usize = value
        .trim()
        .parse()
        .map_err(|_| invalid("expected a whole number".into()))?;
    if n < min {
        return Err(invalid(format!("must be at least {min}")));
    }
    if let Some(max) = max {
        if n > max {
            return Err(invalid(format!("must be at most {max}")));
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The environment variables a text names: `ORDERSHOP_*`, `REDIS_*`, `*_URL` and
    /// `RUST_LOG` in backticks (the README) or quotes (the code).
    fn variables_in(text: &str, quote: char) -> std::collections::BTreeSet<String> {
        text.split(quote)
            .skip(1)
            .step_by(2)
            .filter(|word| {
                word.len() > "_URL".len()
                    && !word.starts_with('_')
                    && !word.ends_with('_')
                    && word
                        .chars()
                        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
                    && (word.starts_with("ORDERSHOP_")
                        || word.starts_with("REDIS_")
                        || word.ends_with("_URL")
                        || *word == "RUST_LOG")
            })
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn the_readme_documents_exactly_the_variables_the_shop_reads() {
        let registry: std::collections::BTreeSet<String> = variables().map(str::to_owned).collect();
        assert_eq!(
            registry.len(),
            variables().count(),
            "a variable is listed twice"
        );
        let readme = include_str!("../../README.md");
        let section = readme
            .split("\n## Configuration\n")
            .nth(1)
            .and_then(|rest| rest.split("\n## ").next())
            .expect("the README has a Configuration section");
        // The first column of the table: what it documents.
        let documented: std::collections::BTreeSet<String> = section
            .lines()
            .filter(|line| line.starts_with("| `"))
            .filter_map(|line| line.split(" | ").next())
            .flat_map(|cell| variables_in(cell, '`'))
            .collect();
        assert_eq!(
            documented, registry,
            "the README's configuration table and config::variables() differ"
        );
    }

    #[test]
    fn the_code_reads_no_variable_that_is_not_registered() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut unregistered = Vec::new();
        let mut stack: Vec<std::path::PathBuf> = [
            "src",
            "services/src",
            "projections/src",
            "redis/src",
            "eventstore/src",
            "readmodel/src",
            "telemetry/src",
        ]
        .iter()
        .map(|dir| root.join(dir))
        .collect();
        while let Some(path) = stack.pop() {
            if path.is_dir() {
                let entries = std::fs::read_dir(&path).expect("a source folder");
                stack.extend(entries.filter_map(|e| e.ok().map(|e| e.path())));
            } else if path.extension().is_some_and(|e| e == "rs") {
                let code = std::fs::read_to_string(&path).expect("a source file");
                for name in variables_in(&code, '"') {
                    if !variables().any(|known| known == name) {
                        unregistered.push(format!("{name} in {}", path.display()));
                    }
                }
            }
        }
        assert!(
            unregistered.is_empty(),
            "not in config::variables(): {unregistered:?}"
        );
    }
    use std::collections::HashMap;

    fn config_for(role: Role, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::from_lookup(role, |name| vars.get(name).cloned())
    }

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        config_for(Role::Gateway, vars)
    }

    #[test]
    fn defaults_need_no_environment() {
        let c = config(&[]).unwrap();
        assert_eq!(c.redis.redacted_url(), "redis://127.0.0.1:6379");
        assert_eq!(c.listen.to_string(), "127.0.0.1:5000");
        let cache = config_for(Role::EntityCache, &[]).unwrap();
        assert_eq!(cache.listen.to_string(), "127.0.0.1:5008");
        assert_eq!(
            c.peer_url(Role::OrderService),
            Some("http://127.0.0.1:5004")
        );
        assert_eq!(c.peer_url(Role::MsgService), Some("http://127.0.0.1:5006"));
        assert_eq!(c.peer_url(Role::CrmService), Some("http://127.0.0.1:5007"));
        assert_eq!(c.peer_url(Role::Gateway), None);
        assert_eq!(c.body_limit, 256 * 1024);
        assert_eq!(c.http_workers, 2);
        assert_eq!(c.consistency_timeout, Duration::from_secs(5));
    }

    #[test]
    fn variables_override_defaults() {
        let c = config(&[
            ("REDIS_URL", "redis://shop:pw@redis:6379/0"),
            ("ORDERSHOP_LISTEN", "0.0.0.0:6000"),
            ("ORDER_SERVICE_URL", "http://order-service:5004/"),
            ("ORDERSHOP_BODY_LIMIT", "1024"),
            ("ORDERSHOP_HTTP_WORKERS", "4"),
            ("ORDERSHOP_CONSISTENCY_TIMEOUT_MS", "250"),
            ("PRODUCT_SERVICE_URL", ""),
        ])
        .unwrap();
        assert_eq!(c.listen.to_string(), "0.0.0.0:6000");
        assert_eq!(
            c.peer_url(Role::OrderService),
            Some("http://order-service:5004")
        );
        assert_eq!(
            c.peer_url(Role::ProductService),
            Some("http://127.0.0.1:5002"),
            "an empty variable takes the default"
        );
        assert_eq!(c.body_limit, 1024);
        assert_eq!(c.http_workers, 4);
        assert_eq!(c.consistency_timeout, Duration::from_millis(250));
    }

    #[test]
    fn in_one_process_each_role_listens_where_its_url_points() {
        let c = config_for(
            Role::CustomerService,
            &[
                ("ORDERSHOP_LISTEN", "127.0.0.1:7000"),
                ("CUSTOMER_SERVICE_URL", "http://127.0.0.1:7001"),
                ("ORDER_SERVICE_URL", "http://order-service:7004"),
            ],
        )
        .unwrap();
        assert_eq!(
            c.address_of(Role::CustomerService).to_string(),
            "127.0.0.1:7001"
        );
        assert_eq!(c.address_of(Role::OrderService).to_string(), "0.0.0.0:7004");
        assert_eq!(
            c.address_of(Role::EntityCache).to_string(),
            "127.0.0.1:5008"
        );
        assert_eq!(c.address_of(Role::Gateway).to_string(), "127.0.0.1:5000");
        let g = config(&[("ORDERSHOP_LISTEN", "127.0.0.1:7000")]).unwrap();
        assert_eq!(g.address_of(Role::Gateway).to_string(), "127.0.0.1:7000");
    }

    #[test]
    fn secrets_never_reach_debug_output() {
        let c = config(&[
            ("REDIS_URL", "redis://shop:s3cret@redis:6379"),
            ("CRM_SERVICE_URL", "http://admin:hunter2@crm:5007"),
            ("ORDERSHOP_API_TOKEN", "t0ken-xyz-0123456789"),
        ])
        .unwrap();
        let debug = format!("{c:?}");
        assert!(!debug.contains("s3cret"), "{debug}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(!debug.contains("t0ken-xyz"), "{debug}");
        assert_eq!(
            c.api_token.as_ref().map(ApiToken::expose),
            Some("t0ken-xyz-0123456789")
        );
        assert_eq!(config(&[]).unwrap().api_token, None);
        let err = config(&[("ORDERSHOP_API_TOKEN", "has space in it, long enough")]).unwrap_err();
        assert!(!err.to_string().contains("has space"), "{err}");
    }

    #[test]
    fn a_blank_or_short_api_token_is_a_start_up_error_not_no_authentication() {
        for blank in ["", "   "] {
            let err = config(&[("ORDERSHOP_API_TOKEN", blank)]).unwrap_err();
            let text = err.to_string();
            assert!(text.starts_with("ORDERSHOP_API_TOKEN="), "{text}");
            assert!(text.contains("set but blank"), "{text}");
        }
        let err = config(&[("ORDERSHOP_API_TOKEN", "short")]).unwrap_err();
        assert!(err.to_string().contains("at least 16 characters"), "{err}");
        assert!(!err.to_string().contains("short\""), "{err}");
    }

    #[test]
    fn bad_values_are_errors_naming_the_variable() {
        for (var, value) in [
            ("ORDERSHOP_HTTP_WORKERS", "0"),
            ("ORDERSHOP_HTTP_WORKERS", "many"),
            ("ORDERSHOP_BODY_LIMIT", "-1"),
            ("ORDERSHOP_CONSISTENCY_TIMEOUT_MS", "1.5"),
            ("ORDERSHOP_ACK_REPLICAS", "-1"),
            ("ORDERSHOP_ACK_REPLICAS", "65"),
            ("ORDERSHOP_ACK_TIMEOUT_MS", "0"),
            ("ORDERSHOP_ACK_WAIT", "fsync"),
            ("ORDERSHOP_CONSISTENCY_NOTICES", "sometimes"),
            ("ORDERSHOP_REQUEST_TIMEOUT_MS", "0"),
            ("ORDERSHOP_MAX_CONNECTIONS", "none"),
            ("ORDERSHOP_FEED_MAX_VIEWERS", "0"),
            ("ORDERSHOP_FEED_MAX_PER_CLIENT", "lots"),
            ("ORDERSHOP_FEED_STALL_MS", "10"),
            ("ORDERSHOP_ALLOWED_ORIGINS", "admin.example.com"),
            ("ORDERSHOP_RATE_LIMIT", "0"),
            ("ORDERSHOP_LISTEN", "5000"),
            ("ORDERSHOP_LISTEN", "0.0.0.0:http"),
            ("ORDER_SERVICE_URL", "https://order-service"),
            ("ORDER_SERVICE_URL", "not a url"),
            ("REDIS_URL", "http://redis:6379"),
        ] {
            let err = config(&[(var, value)]).unwrap_err().to_string();
            assert!(err.contains(var), "{var}={value}: {err}");
        }
    }

    #[test]
    fn roles_round_trip_through_their_names() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
        }
        assert!("gateway-service".parse::<Role>().is_err());
        let ports: std::collections::BTreeSet<u16> =
            Role::ALL.iter().map(|r| r.default_port()).collect();
        assert_eq!(ports.len(), Role::ALL.len(), "ports are distinct");
    }
}
