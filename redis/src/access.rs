//! The start-up check: tells a refused password or certificate, a server too old, or a server
//! that would evict keys (fatal: retrying will not fix them) from a Redis that is merely not up
//! yet (tolerated: the roles wait for it).

use crate::config::{RedisConfig, CA_FILE};
use crate::connection::RedisConnection;
use crate::server::ServerVersion;
use std::fmt;

impl RedisConfig {
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
            conn.query_shop_node::<String>(redis::cmd("INFO").arg("server").arg("memory"))
                .await
        };
        let result = tokio::time::timeout(self.connection_timeout * 3, ping).await;
        match result {
            Ok(Ok(info)) => match (ServerVersion::from_info(&info), evicts(&info)) {
                (Err(reason), _) => Err(denied(Refusal::UnsupportedServer, reason)),
                (Ok(_), Some(policy)) => Err(denied(Refusal::EvictingServer, policy.to_owned())),
                (Ok(version), None) => Ok(Reachability::Answered(version)),
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
    /// The server deletes keys when it is full (a `maxmemory-policy` other than `noeviction`):
    /// it would delete events from the log. `reason` holds the policy.
    EvictingServer,
}

/// The eviction policy an `INFO memory` answer reports, when it is not `noeviction` (a server
/// that reports none is taken at its default, `noeviction`).
fn evicts(info: &str) -> Option<&str> {
    info.lines()
        .find_map(|line| line.strip_prefix("maxmemory_policy:"))
        .map(str::trim)
        .filter(|policy| *policy != "noeviction")
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
            Refusal::EvictingServer => write!(
                f,
                "Redis at {server} deletes keys when it is full (maxmemory-policy {reason}), which \
                 would delete events from the log; set maxmemory-policy to noeviction (CONFIG SET \
                 maxmemory-policy noeviction, and in its configuration file): a full Redis then \
                 refuses writes (507) instead"
            ),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_noeviction_keeps_every_key() {
        let info =
            |policy: &str| format!("# Memory\r\nused_memory:1\r\nmaxmemory_policy:{policy}\r\n");
        assert_eq!(evicts(&info("noeviction")), None);
        assert_eq!(evicts(&info("allkeys-lru")), Some("allkeys-lru"));
        assert_eq!(evicts(&info("volatile-ttl")), Some("volatile-ttl"));
        assert_eq!(evicts("# Server\r\nredis_version:7.0.15\r\n"), None);
    }
}
