//! Connecting to Redis: typed configuration from `REDIS_URL` (and, for TLS, `REDIS_CA_FILE`,
//! `REDIS_CLIENT_CERT`, `REDIS_CLIENT_KEY`), with the password kept out of `Debug` output and
//! logs, and a start-up check that tells a refused password or certificate (fatal: it will not
//! fix itself) from a Redis that is merely not up yet (tolerated: the roles wait for it).
//!
//! `REDIS_URL` names one server (`redis://`, `rediss://`, `unix://`) or the sentinels that name
//! the primary (`redis+sentinel://`, `rediss+sentinel://`). Every connection of the shop is a
//! [`RedisConnection`] made from a [`RedisConfig`], so TLS settings apply to all of them. TLS is
//! rustls with the `ring` provider (no C toolchain beyond `cc`, no cmake).

use crate::connection::RedisConnection;
use redis::IntoConnectionInfo;
use std::fmt;
use std::path::Path;
use std::time::Duration;

/// Default URL when `REDIS_URL` is not set.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";
/// A PEM file of the CA certificate(s) to trust for a `rediss://` URL, instead of the system's.
pub const CA_FILE: &str = "REDIS_CA_FILE";
/// A PEM client certificate, for a Redis that checks clients (`tls-auth-clients yes`).
pub const CLIENT_CERT: &str = "REDIS_CLIENT_CERT";
/// The PEM private key of [`CLIENT_CERT`].
pub const CLIENT_KEY: &str = "REDIS_CLIENT_KEY";

/// Where and how to reach Redis.
#[derive(Clone)]
pub struct RedisConfig {
    url: String,
    target: Target,
    /// The CA and client certificate read from the TLS files, when any is set.
    tls: Option<redis::TlsCertificates>,
    /// How long a reply may take before the call fails (redis-rs's default is 500 ms).
    pub response_timeout: Duration,
    /// How long establishing a connection may take.
    pub connection_timeout: Duration,
}

/// Which server a [`RedisConfig`] names.
#[derive(Clone, Debug)]
pub(crate) enum Target {
    /// The one server of the URL.
    Direct,
    /// Whichever server the sentinels name as the primary.
    Sentinel(SentinelTarget),
    /// A Redis Cluster, found from its seed nodes.
    Cluster(ClusterTarget),
}

/// `redis+cluster://[user:password@]host:port[,host:port...]`: some of the cluster's nodes,
/// from which the client learns the rest.
#[derive(Clone)]
pub(crate) struct ClusterTarget {
    /// `(host, port)` of each seed node; the port defaults to 6379.
    pub nodes: Vec<(String, u16)>,
    pub tls: bool,
    pub username: Option<String>,
    pub password: Option<String>,
}

impl fmt::Debug for ClusterTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterTarget")
            .field("nodes", &self.nodes)
            .field("tls", &self.tls)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl ClusterTarget {
    /// Parses what follows `redis+cluster://`.
    fn parse(rest: &str, tls: bool) -> Result<Self, String> {
        let (username, password, rest) = split_userinfo(rest);
        let hosts = rest.trim_end_matches('/');
        if hosts.contains(['/', '?']) {
            return Err(
                "a cluster URL names its nodes only (a cluster has no database numbers)".into(),
            );
        }
        Ok(Self {
            nodes: parse_hosts(hosts, 6379, "node")?,
            tls,
            username,
            password,
        })
    }

    /// The seed nodes for redis-rs, with the credentials (and no `CLIENT SETINFO`).
    pub fn seed_infos(&self) -> Result<Vec<redis::ConnectionInfo>, redis::RedisError> {
        let mut settings = redis::RedisConnectionInfo::default().set_skip_set_lib_name();
        if let Some(user) = &self.username {
            settings = settings.set_username(user);
        }
        if let Some(password) = &self.password {
            settings = settings.set_password(password);
        }
        addresses(&self.nodes, self.tls)
            .into_iter()
            .map(|addr| {
                Ok(redis::IntoConnectionInfo::into_connection_info(addr)?
                    .set_redis_settings(settings.clone()))
            })
            .collect()
    }
}

/// `[user[:password]@]rest`: the user, the password and the rest.
fn split_userinfo(rest: &str) -> (Option<String>, Option<String>, &str) {
    let (userinfo, rest) = match rest.rsplit_once('@') {
        Some((userinfo, rest)) => (Some(userinfo), rest),
        None => (None, rest),
    };
    let (username, password) = match userinfo.map(|u| u.split_once(':')) {
        None => (None, None),
        Some(None) => (userinfo.map(str::to_owned), None),
        Some(Some((user, password))) => (
            (!user.is_empty()).then(|| user.to_owned()),
            (!password.is_empty()).then(|| password.to_owned()),
        ),
    };
    (username, password, rest)
}

/// `host[:port][,host[:port]...]`, each port defaulting to `default_port`.
fn parse_hosts(hosts: &str, default_port: u16, what: &str) -> Result<Vec<(String, u16)>, String> {
    hosts
        .split(',')
        .map(|host| {
            let (name, port) = match host.rsplit_once(':') {
                Some((name, port)) => (
                    name,
                    port.parse::<u16>()
                        .map_err(|_| format!("`{host}`: the port is not a number"))?,
                ),
                None => (host, default_port),
            };
            if name.is_empty() {
                return Err(format!("`{host}` names no {what} host"));
            }
            Ok((name.to_owned(), port))
        })
        .collect()
}

/// Addresses for redis-rs.
fn addresses(hosts: &[(String, u16)], tls: bool) -> Vec<redis::ConnectionAddr> {
    hosts
        .iter()
        .map(|(host, port)| {
            if tls {
                redis::ConnectionAddr::TcpTls {
                    host: host.clone(),
                    port: *port,
                    insecure: false,
                    tls_params: None,
                }
            } else {
                redis::ConnectionAddr::Tcp(host.clone(), *port)
            }
        })
        .collect()
}

/// `redis+sentinel://[user:password@]host:port[,host:port...]/<primary name>`.
#[derive(Clone)]
pub(crate) struct SentinelTarget {
    /// `(host, port)` of each sentinel; the port defaults to 26379.
    pub sentinels: Vec<(String, u16)>,
    /// The name the sentinels monitor the primary under.
    pub master: String,
    pub tls: bool,
    /// Credentials for the primary (the sentinels themselves are asked without any).
    pub username: Option<String>,
    pub password: Option<String>,
}

impl fmt::Debug for SentinelTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SentinelTarget")
            .field("sentinels", &self.sentinels)
            .field("master", &self.master)
            .field("tls", &self.tls)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl SentinelTarget {
    /// Parses what follows `redis+sentinel://`.
    fn parse(rest: &str, tls: bool) -> Result<Self, String> {
        let (username, password, rest) = split_userinfo(rest);
        let Some((hosts, master)) = rest.split_once('/') else {
            return Err(
                "a Sentinel URL ends with /<primary name>, the name the sentinels \
                        monitor it under"
                    .into(),
            );
        };
        let master = master.trim_end_matches('/');
        if master.is_empty() || master.contains(['/', '?']) {
            return Err(format!(
                "`{master}` is not a primary name: a Sentinel URL ends with /<primary name>"
            ));
        }
        let sentinels = parse_hosts(hosts, 26379, "sentinel")?;
        Ok(Self {
            sentinels,
            master: master.to_owned(),
            tls,
            username,
            password,
        })
    }

    /// The sentinels' addresses for redis-rs.
    pub fn addresses(&self) -> Vec<redis::ConnectionAddr> {
        addresses(&self.sentinels, self.tls)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RedisConfigError {
    #[error("REDIS_URL `{url}` is not a valid Redis URL: {reason}")]
    Invalid { url: String, reason: String },
    #[error(
        "REDIS_URL `{url}` names a Redis Cluster: set ORDERSHOP_NAMESPACE (or --namespace), so \
         that all of the shop's keys share one hash slot"
    )]
    NeedsNamespace { url: String },
    #[error("{var}=`{path}`: {reason}")]
    Tls {
        var: &'static str,
        path: String,
        reason: String,
    },
}

impl RedisConfig {
    pub fn new(url: impl Into<String>) -> Result<Self, RedisConfigError> {
        let url = url.into();
        let redacted = redact(&url);
        let invalid = |reason: String| RedisConfigError::Invalid {
            url: redacted.clone(),
            reason,
        };
        let target = if let Some(rest) = url
            .strip_prefix("redis+sentinel://")
            .or_else(|| url.strip_prefix("rediss+sentinel://"))
        {
            Target::Sentinel(
                SentinelTarget::parse(rest, url.starts_with("rediss")).map_err(invalid)?,
            )
        } else if let Some(rest) = url
            .strip_prefix("redis+cluster://")
            .or_else(|| url.strip_prefix("rediss+cluster://"))
        {
            Target::Cluster(ClusterTarget::parse(rest, url.starts_with("rediss")).map_err(invalid)?)
        } else if ["redis://", "rediss://", "unix://"]
            .iter()
            .any(|scheme| url.starts_with(scheme))
        {
            Target::Direct
        } else {
            return Err(invalid(
                "expected redis://, rediss://, unix://, redis+sentinel://, rediss+sentinel://, \
                 redis+cluster:// or rediss+cluster://"
                    .into(),
            ));
        };
        let config = Self {
            url,
            target,
            tls: None,
            response_timeout: Duration::from_secs(5),
            connection_timeout: Duration::from_secs(2),
        };
        config.validate().map_err(|e| invalid(e.to_string()))?;
        Ok(config)
    }

    /// Builds what [`RedisConnection`] would, so a bad URL or certificate fails at start-up.
    fn validate(&self) -> Result<(), redis::RedisError> {
        RedisConnection::new(self).map(drop)
    }

    pub(crate) fn target(&self) -> &Target {
        &self.target
    }

    pub(crate) fn tls_certificates(&self) -> Option<&redis::TlsCertificates> {
        self.tls.as_ref()
    }

    /// The database number the URL selects (0 when it selects none, and with Sentinel).
    pub(crate) fn db(&self) -> i64 {
        match (&self.target, self.url.as_str().into_connection_info()) {
            (Target::Direct, Ok(info)) => info.redis_settings().db(),
            _ => 0,
        }
    }

    /// Whether the URL asks the sentinels for the primary.
    /// A Redis Cluster URL: the shop must then have a namespace ([`RedisConfig::check_namespace`]).
    pub fn is_cluster(&self) -> bool {
        matches!(self.target, Target::Cluster(_))
    }

    /// On a Redis Cluster every key of the shop must share one hash slot, which only a
    /// namespace gives (its hash tag): refuses a cluster URL in a process without one.
    pub fn check_namespace(&self) -> Result<(), RedisConfigError> {
        if self.is_cluster() && crate::keys::namespace().name().is_none() {
            return Err(RedisConfigError::NeedsNamespace {
                url: self.redacted_url(),
            });
        }
        Ok(())
    }

    pub fn uses_sentinel(&self) -> bool {
        matches!(self.target, Target::Sentinel(_))
    }

    /// Adds the TLS files named by `REDIS_CA_FILE`, `REDIS_CLIENT_CERT` and `REDIS_CLIENT_KEY`
    /// (looked up through `lookup`; unset or empty: none). The files are read and checked now,
    /// so a missing or malformed one stops the process at start-up, naming the variable.
    pub fn with_tls_from(
        mut self,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, RedisConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let (ca, cert, key) = (get(CA_FILE), get(CLIENT_CERT), get(CLIENT_KEY));
        if ca.is_none() && cert.is_none() && key.is_none() {
            return Ok(self);
        }
        let tls_error = |var: &'static str, path: &str, reason: String| RedisConfigError::Tls {
            var,
            path: path.to_owned(),
            reason,
        };
        let first = [(CA_FILE, &ca), (CLIENT_CERT, &cert), (CLIENT_KEY, &key)]
            .into_iter()
            .find_map(|(var, v)| Some((var, v.clone()?)));
        if !self.url.starts_with("rediss") {
            let (var, path) = first.unwrap_or((CA_FILE, String::new()));
            return Err(tls_error(
                var,
                &path,
                format!(
                    "TLS files need a rediss:// or rediss+sentinel:// REDIS_URL, but it is `{}`",
                    self.redacted_url()
                ),
            ));
        }
        let read = |var: &'static str, path: &str| {
            std::fs::read(Path::new(path.trim())).map_err(|e| tls_error(var, path, e.to_string()))
        };
        let root_cert = ca.as_deref().map(|p| read(CA_FILE, p)).transpose()?;
        let client_tls = match (&cert, &key) {
            (Some(cert), Some(key)) => Some(redis::ClientTlsConfig {
                client_cert: read(CLIENT_CERT, cert)?,
                client_key: read(CLIENT_KEY, key)?,
            }),
            (None, None) => None,
            (Some(cert), None) => {
                return Err(tls_error(
                    CLIENT_CERT,
                    cert,
                    format!("{CLIENT_KEY} must be set too"),
                ))
            }
            (None, Some(key)) => {
                return Err(tls_error(
                    CLIENT_KEY,
                    key,
                    format!("{CLIENT_CERT} must be set too"),
                ))
            }
        };
        self.tls = Some(redis::TlsCertificates {
            client_tls,
            root_cert,
        });
        // Parses the certificates now: a file that is not PEM fails here, not at first use.
        if let Err(e) = self.validate() {
            let (var, path) = first.unwrap_or((CA_FILE, String::new()));
            return Err(tls_error(var, &path, e.to_string()));
        }
        Ok(self)
    }

    /// The URL with any password replaced by `***`, fit for logs.
    pub fn redacted_url(&self) -> String {
        redact(&self.url)
    }

    /// `host:port` (or the socket path) of the server, for messages; with Sentinel, the
    /// sentinels and the primary's name.
    pub fn server(&self) -> String {
        let rest = self.url.split_once("://").map_or("", |(_, rest)| rest);
        let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
        let hosts = rest.split(['/', '?']).next().unwrap_or(rest).to_owned();
        match &self.target {
            Target::Direct => hosts,
            Target::Sentinel(sentinel) => {
                format!("the primary `{}` of sentinels {hosts}", sentinel.master)
            }
            Target::Cluster(_) => format!("the cluster of {hosts}"),
        }
    }

    /// The user the URL names (`default` when it names none).
    pub fn user(&self) -> String {
        let rest = self.url.split_once("://").map_or("", |(_, rest)| rest);
        match rest.rsplit_once('@') {
            Some((userinfo, _)) => match userinfo.split_once(':') {
                Some((user, _)) if !user.is_empty() => user.to_owned(),
                Some(_) => "default".to_owned(),
                None => userinfo.to_owned(),
            },
            None => "default".to_owned(),
        }
    }

    /// A client for a `redis://`, `rediss://` or `unix://` URL (a Sentinel URL names no one
    /// server: [`RedisConnection`] asks the sentinels).
    pub(crate) fn client(&self) -> Result<redis::Client, redis::RedisError> {
        if self.url.starts_with("rediss") {
            // The process-wide rustls provider; an error only means one is installed already.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        // No `CLIENT SETINFO` on connect: the shop's ACL user is not allowed it, and Redis 7.2+
        // and Valkey would log every connection's refusal in `ACL LOG`.
        match &self.target {
            Target::Direct => {}
            Target::Sentinel(sentinel) => {
                return Err(redis::RedisError::from((
                    redis::ErrorKind::InvalidClientConfig,
                    "a Sentinel URL names no single server",
                    sentinel.master.clone(),
                )))
            }
            Target::Cluster(_) => {
                return Err(redis::RedisError::from((
                    redis::ErrorKind::InvalidClientConfig,
                    "a cluster URL names no single server",
                )))
            }
        }
        let info = self.url.as_str().into_connection_info()?;
        let handshake = info.redis_settings().clone().set_skip_set_lib_name();
        let info = info.set_redis_settings(handshake);
        match &self.tls {
            Some(certificates) => redis::Client::build_with_tls(info, certificates.clone()),
            None => redis::Client::open(info),
        }
    }

    /// Checks at start-up that Redis accepts this configuration's credentials and (for TLS)
    /// that its certificate is trusted, with one PING under a short timeout. A Redis that does
    /// not answer is not an error here (the roles start and report 503 until it is up); a
    /// refusal is, because retrying cannot fix it.
    pub async fn check_access(&self) -> Result<Reachability, AccessDenied> {
        let denied = |refusal, reason: String| AccessDenied {
            server: self.server(),
            user: self.user(),
            refusal,
            reason,
        };
        let conn =
            RedisConnection::new(self).map_err(|e| denied(Refusal::Certificate, e.to_string()))?;
        let ping = async {
            let mut conn = conn.clone();
            redis::cmd("PING").query_async::<String>(&mut conn).await?;
            conn.query_shop_node::<String>(redis::cmd("INFO").arg("server"))
                .await
        };
        let result = tokio::time::timeout(self.connection_timeout * 3, ping).await;
        match result {
            Ok(Ok(info)) => match ServerVersion::from_info(&info) {
                Ok(version) => Ok(Reachability::Answered(version)),
                Err(reason) => Err(denied(Refusal::UnsupportedServer, reason)),
            },
            Ok(Err(e)) => match refusal(&e) {
                Some(kind) => Err(denied(kind, e.to_string())),
                None => Ok(Reachability::Unreachable(e.to_string())),
            },
            Err(_) => Ok(Reachability::Unreachable(format!(
                "no answer within {:?}",
                self.connection_timeout * 3
            ))),
        }
    }
}

/// What the start-up check found when Redis did not refuse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reachability {
    /// The server answered, and is one the shop supports.
    Answered(ServerVersion),
    /// Redis could not be reached (yet): why.
    Unreachable(String),
}

/// Redis refused the credentials, or TLS refused its certificate. Never holds the password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessDenied {
    /// `host:port` of the server.
    pub server: String,
    pub user: String,
    pub refusal: Refusal,
    /// What the client library said.
    pub reason: String,
}

/// What was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Wrong or missing credentials, or a user not allowed to run PING.
    Credentials,
    /// The server's certificate is not trusted (wrong `REDIS_CA_FILE`, wrong host name).
    Certificate,
    /// The server is too old (or not Redis): the shop needs Functions.
    UnsupportedServer,
}

/// The server the shop talks to, from `INFO server`: Redis, or Valkey (which also reports a
/// `redis_version` for compatibility, so `server_name`/`valkey_version` decide).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerVersion {
    pub server: ServerKind,
    /// `(major, minor, patch)`.
    pub version: (u32, u32, u32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerKind {
    Redis,
    Valkey,
}

impl ServerKind {
    /// The oldest release with everything the shop uses (Functions, `XAUTOCLAIM` without
    /// deleted entries' surprises, `FUNCTION LOAD REPLACE`).
    pub const fn minimum(self) -> (u32, u32, u32) {
        match self {
            ServerKind::Redis => (7, 0, 0),
            ServerKind::Valkey => (7, 2, 0),
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            ServerKind::Redis => "Redis",
            ServerKind::Valkey => "Valkey",
        }
    }
}

impl ServerVersion {
    /// Reads the server and its version from an `INFO server` reply, and checks it is one the
    /// shop supports; the error says what was found and what is needed.
    pub fn from_info(info: &str) -> Result<Self, String> {
        let field = |name: &str| {
            info.lines().find_map(|line| {
                let (key, value) = line.trim_end_matches('\r').split_once(':')?;
                (key == name).then(|| value.trim().to_owned())
            })
        };
        let valkey = field("valkey_version");
        let (server, text) = match (field("server_name").as_deref(), valkey) {
            (_, Some(v)) => (ServerKind::Valkey, v),
            (Some(name), None) if name.eq_ignore_ascii_case("valkey") => (
                ServerKind::Valkey,
                field("redis_version").unwrap_or_default(),
            ),
            _ => match field("redis_version") {
                Some(v) => (ServerKind::Redis, v),
                None => {
                    return Err(
                        "the server's INFO names no redis_version: it is not Redis or Valkey"
                            .into(),
                    )
                }
            },
        };
        let mut parts = text.split('.').map(|p| {
            p.chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
                .parse::<u32>()
        });
        let mut next = || parts.next().and_then(Result::ok);
        let (Some(major), minor, patch) = (next(), next(), next()) else {
            return Err(format!(
                "cannot read the version `{text}` of {}",
                server.name()
            ));
        };
        let found = Self {
            server,
            version: (major, minor.unwrap_or(0), patch.unwrap_or(0)),
        };
        if found.version < server.minimum() {
            return Err(format!(
                "found {} {text}; OrderShop needs Redis >= 7.0 or Valkey >= 7.2 (it uses \
                 Functions)",
                server.name(),
            ));
        }
        Ok(found)
    }
}

impl fmt::Display for ServerVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (major, minor, patch) = self.version;
        write!(f, "{} {major}.{minor}.{patch}", self.server.name())
    }
}

impl fmt::Display for AccessDenied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self {
            server,
            user,
            refusal,
            reason,
        } = self;
        match refusal {
            Refusal::Credentials => write!(
                f,
                "Redis at {server} refused the credentials of user `{user}` ({reason})"
            ),
            Refusal::Certificate => write!(
                f,
                "Redis at {server} presented a TLS certificate that is not trusted ({reason}); \
                 check {CA_FILE} and the host name in REDIS_URL"
            ),
            Refusal::UnsupportedServer => write!(f, "the server at {server}: {reason}"),
        }
    }
}

impl std::error::Error for AccessDenied {}

/// Whether `e` is a refusal that retrying cannot fix, and which.
fn refusal(e: &redis::RedisError) -> Option<Refusal> {
    let text = e.to_string();
    let refused_auth = e.kind() == redis::ErrorKind::AuthenticationFailed
        || ["WRONGPASS", "NOAUTH", "NOPERM"]
            .iter()
            .any(|code| e.code() == Some(*code) || text.contains(code));
    if refused_auth {
        return Some(Refusal::Credentials);
    }
    let bad_certificate = ["certificate", "UnknownIssuer", "NotValidForName"]
        .iter()
        .any(|sign| text.contains(sign));
    bad_certificate.then_some(Refusal::Certificate)
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &self.redacted_url())
            .field("tls", &self.tls)
            .field("response_timeout", &self.response_timeout)
            .finish()
    }
}

/// Hides the password of a `scheme://user:password@host` URL.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((userinfo, host)) = rest.rsplit_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => format!("{scheme}://***@{host}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_url_names_its_seed_nodes_and_no_database() {
        let config =
            RedisConfig::new("redis+cluster://shop:s3cret@10.0.0.1:7000,10.0.0.2").unwrap();
        assert!(config.is_cluster());
        let Target::Cluster(cluster) = config.target() else {
            panic!("not a cluster: {:?}", config.target());
        };
        assert_eq!(
            cluster.nodes,
            [("10.0.0.1".to_owned(), 7000), ("10.0.0.2".to_owned(), 6379)]
        );
        assert_eq!(cluster.username.as_deref(), Some("shop"));
        assert!(!format!("{config:?}").contains("s3cret"));
        assert_eq!(config.server(), "the cluster of 10.0.0.1:7000,10.0.0.2");
        for bad in [
            "redis+cluster://h:7000/0",
            "redis+cluster://h:port",
            "redis+cluster://:7000",
        ] {
            assert!(RedisConfig::new(bad).is_err(), "{bad}");
        }
        assert!(RedisConfig::new("rediss+cluster://h:7000").is_ok_and(|c| c.is_cluster()));
    }

    #[test]
    fn passwords_never_reach_debug_output() {
        let config = RedisConfig::new("redis://shop:s3cret@127.0.0.1:6380/0").unwrap();
        let debug = format!("{config:?}");
        assert!(!debug.contains("s3cret"), "{debug}");
        assert!(debug.contains("shop:***@127.0.0.1:6380"), "{debug}");
        assert_eq!(redact("redis://:pw@host:1"), "redis://:***@host:1");
        assert_eq!(redact("redis://host:1"), "redis://host:1");
        assert_eq!(config.server(), "127.0.0.1:6380");
        assert_eq!(config.user(), "shop");
        let anonymous = RedisConfig::new("redis://:pw@h:1").unwrap();
        assert_eq!(
            (anonymous.server().as_str(), anonymous.user().as_str()),
            ("h:1", "default")
        );
    }

    #[test]
    fn tls_files_need_a_tls_url_and_must_exist() {
        let lookup =
            |value: &'static str| move |name: &str| (name == CA_FILE).then(|| value.to_owned());
        let plain = RedisConfig::new("redis://127.0.0.1:6379").unwrap();
        let err = plain.with_tls_from(lookup("/ca.pem")).unwrap_err();
        assert!(err.to_string().contains("rediss://"), "{err}");
        let tls = RedisConfig::new("rediss://127.0.0.1:6379").unwrap();
        let err = tls.with_tls_from(lookup("/no/such/ca.pem")).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("REDIS_CA_FILE=`/no/such/ca.pem`"),
            "{err}"
        );
        let none = RedisConfig::new("rediss://127.0.0.1:6379").unwrap();
        assert!(none.with_tls_from(|_| None).is_ok());
    }

    #[test]
    fn the_server_version_comes_from_info_and_old_servers_are_refused() {
        let info = |lines: &str| format!("# Server\r\n{lines}\r\nredis_mode:standalone\r\n");
        let redis7 = ServerVersion::from_info(&info("redis_version:7.0.15")).unwrap();
        assert_eq!(
            (redis7.server, redis7.version),
            (ServerKind::Redis, (7, 0, 15))
        );
        let valkey = ServerVersion::from_info(&info(
            "redis_version:7.2.4\r\nserver_name:valkey\r\nvalkey_version:8.1.8",
        ))
        .unwrap();
        assert_eq!(valkey.to_string(), "Valkey 8.1.8");
        let old = ServerVersion::from_info(&info("redis_version:6.2.14")).unwrap_err();
        assert!(old.contains("found Redis 6.2.14"), "{old}");
        assert!(old.contains("Redis >= 7.0 or Valkey >= 7.2"), "{old}");
        let old_valkey = ServerVersion::from_info(&info(
            "redis_version:7.0.0\r\nserver_name:valkey\r\nvalkey_version:7.0.2",
        ))
        .unwrap_err();
        assert!(old_valkey.contains("found Valkey 7.0.2"), "{old_valkey}");
        let none = ServerVersion::from_info("# Server\r\nfoo:bar\r\n").unwrap_err();
        assert!(none.contains("not Redis or Valkey"), "{none}");
    }

    #[test]
    fn sentinel_urls_name_the_sentinels_and_the_primary() {
        let config =
            RedisConfig::new("redis+sentinel://shop:pw@10.0.0.1:26379,sentinel-2/shop-primary")
                .unwrap();
        let Target::Sentinel(sentinel) = config.target() else {
            panic!("not a Sentinel target: {config:?}");
        };
        assert_eq!(
            sentinel.sentinels,
            [
                ("10.0.0.1".to_owned(), 26379),
                ("sentinel-2".to_owned(), 26379)
            ]
        );
        assert_eq!(sentinel.master, "shop-primary");
        assert_eq!(sentinel.username.as_deref(), Some("shop"));
        assert_eq!(sentinel.password.as_deref(), Some("pw"));
        assert!(config.uses_sentinel());
        assert!(!format!("{config:?}").contains("pw@"), "{config:?}");
        assert_eq!(
            config.server(),
            "the primary `shop-primary` of sentinels 10.0.0.1:26379,sentinel-2"
        );
        for bad in [
            "redis+sentinel://127.0.0.1:26379",
            "redis+sentinel://127.0.0.1:26379/",
            "redis+sentinel://127.0.0.1:x/shop",
            "redis+sentinel://:26379/shop",
        ] {
            let err = RedisConfig::new(bad).unwrap_err().to_string();
            assert!(err.contains("REDIS_URL"), "{bad}: {err}");
        }
    }

    #[test]
    fn unsupported_urls_are_rejected_with_the_reason() {
        let err = RedisConfig::new("http://127.0.0.1:6379").unwrap_err();
        assert!(err.to_string().contains("redis://"), "{err}");
    }
}
