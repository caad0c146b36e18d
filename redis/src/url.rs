//! What `REDIS_URL` names: one server (`redis://`, `rediss://`, `unix://`), the sentinels that
//! name the primary (`redis+sentinel://`, `rediss+sentinel://`), or some nodes of a Redis
//! Cluster (`redis+cluster://`); and the URL with its password hidden, for logs.

use std::fmt;

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
    pub(crate) fn parse(rest: &str, tls: bool) -> Result<Self, String> {
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
    pub(crate) fn parse(rest: &str, tls: bool) -> Result<Self, String> {
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
