//! Which server the shop talks to (Redis or Valkey, and its version), and the oldest of each
//! it supports.

use std::fmt;

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
