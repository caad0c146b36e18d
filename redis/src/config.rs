//! Where and how to reach Redis: typed configuration from `REDIS_URL` (and, for TLS,
//! `REDIS_CA_FILE`, `REDIS_CLIENT_CERT`, `REDIS_CLIENT_KEY`), with the password kept out of
//! `Debug` output and logs. Every connection of the shop is a
//! [`RedisConnection`](crate::connection::RedisConnection) made from a [`RedisConfig`], so TLS
//! settings apply to all of them. TLS is rustls with the `ring` provider (no C toolchain beyond
//! `cc`, no cmake).

use crate::url::{redact, ClusterTarget, SentinelTarget, Target};
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

    /// Parses what [`RedisConnection`](crate::connection::RedisConnection) will connect with
    /// (every address, and the certificates), so a bad URL or certificate fails at start-up.
    fn validate(&self) -> Result<(), redis::RedisError> {
        let infos = match &self.target {
            Target::Direct => vec![self.url.as_str().into_connection_info()?],
            Target::Cluster(cluster) => cluster.seed_infos()?,
            Target::Sentinel(sentinel) => sentinel
                .addresses()
                .into_iter()
                .map(IntoConnectionInfo::into_connection_info)
                .collect::<Result<_, _>>()?,
        };
        if let (Some(certificates), Some(info)) = (&self.tls, infos.into_iter().next()) {
            install_tls_provider();
            redis::Client::build_with_tls(info, certificates.clone())?;
        }
        Ok(())
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
        if self.is_cluster() && crate::namespace::namespace().name().is_none() {
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
    /// server: [`RedisConnection`](crate::connection::RedisConnection) asks the sentinels).
    pub(crate) fn client(&self) -> Result<redis::Client, redis::RedisError> {
        if self.url.starts_with("rediss") {
            install_tls_provider();
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
}

/// The process-wide rustls provider; an error only means one is installed already.
fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
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
