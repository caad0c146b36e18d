//! "Acknowledged means replicated": an append counts as done only once `N` replicas hold it.
//!
//! Replication in Redis is asynchronous; a failover loses what the promoted replica had not
//! received. With [`AckReplicas`] set, every guarded append is sent in one pipeline with a
//! wait for its replication, on a connection of its own (a waiting command blocks its
//! connection, so the store's other reads do not queue behind it):
//! - `WAITAOF 0 N <timeout>` on servers that have it (Redis 7.2+, Valkey): `N` replicas have
//!   written the append to their append-only file (which they therefore must keep, and should
//!   fsync `always`: with `everysec` each acknowledgement waits up to a second for their fsync);
//! - `WAIT N <timeout>` on Redis 7.0, or when asked for ([`AckWait::Wait`]): `N` replicas have
//!   received it (in memory).
//!
//! Which one is used is read from the server's `INFO` at the first append, and logged.

use ordershop_redis::ServerVersion;
use redis::Value;
use std::fmt;
use std::time::Duration;

/// How many replicas must confirm an append, how, and how long to wait for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AckReplicas {
    pub replicas: u32,
    pub timeout: Duration,
    pub wait: AckWait,
}

/// Which confirmation to ask the replicas for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AckWait {
    /// `WAITAOF` where the server has it, else `WAIT`.
    #[default]
    Auto,
    /// `WAIT`: in the replicas' memory.
    Wait,
    /// `WAITAOF`: in the replicas' append-only files (`WAIT` on a server without it, with a
    /// warning).
    WaitAof,
}

impl AckWait {
    /// Parses `auto`, `wait` or `waitaof`.
    pub fn parse(text: &str) -> Option<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "auto" => Some(Self::Auto),
            "wait" => Some(Self::Wait),
            "waitaof" => Some(Self::WaitAof),
            _ => None,
        }
    }

    /// The command to use on `server`.
    pub fn on(self, server: &ServerVersion) -> WaitCommand {
        match (self, WaitCommand::for_server(server)) {
            (AckWait::Wait, _) => WaitCommand::Wait,
            (AckWait::WaitAof, WaitCommand::Wait) => {
                tracing::warn!(%server, "WAITAOF was asked for, but the server lacks it: using WAIT");
                WaitCommand::Wait
            }
            (_, best) => best,
        }
    }
}

/// The command that waits for replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitCommand {
    /// `WAIT`: the replicas received the write.
    Wait,
    /// `WAITAOF`: the replicas wrote it to their append-only file.
    WaitAof,
}

impl WaitCommand {
    /// `WAITAOF` on the servers that have it (Redis and Valkey from 7.2), else `WAIT`.
    pub fn for_server(server: &ServerVersion) -> Self {
        if server.version >= (7, 2, 0) {
            WaitCommand::WaitAof
        } else {
            WaitCommand::Wait
        }
    }

    /// The commands to send after the write; the last one's reply tells how many replicas
    /// confirmed. `WAITAOF` goes after a `WAIT`: asked together with the write, a replica
    /// reports its fsync only with its next once-a-second acknowledgement (seen on Valkey
    /// 8.1: about 1 s per command), while after the `WAIT` it has already fsynced (0.4 ms).
    pub(crate) fn commands(self, ack: AckReplicas) -> Vec<redis::Cmd> {
        let timeout_ms = ack.timeout.as_millis().max(1) as u64;
        let mut wait = redis::cmd("WAIT");
        wait.arg(ack.replicas).arg(timeout_ms);
        match self {
            WaitCommand::Wait => vec![wait],
            WaitCommand::WaitAof => {
                let mut wait_aof = redis::cmd("WAITAOF");
                wait_aof.arg(0).arg(ack.replicas).arg(timeout_ms);
                vec![wait, wait_aof]
            }
        }
    }

    /// How many replicas the reply says confirmed.
    pub(crate) fn confirmed(self, reply: &Value) -> Option<u32> {
        let count = match (self, reply) {
            (WaitCommand::Wait, Value::Int(n)) => *n,
            (WaitCommand::WaitAof, Value::Array(counts)) => match counts.get(1) {
                Some(Value::Int(n)) => *n,
                _ => return None,
            },
            _ => return None,
        };
        u32::try_from(count).ok()
    }
}

impl fmt::Display for WaitCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WaitCommand::Wait => "WAIT",
            WaitCommand::WaitAof => "WAITAOF",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ordershop_redis::ServerKind;

    #[test]
    fn waitaof_where_the_server_has_it() {
        let server = |server, version| ServerVersion { server, version };
        assert_eq!(
            WaitCommand::for_server(&server(ServerKind::Redis, (7, 0, 15))),
            WaitCommand::Wait
        );
        assert_eq!(
            WaitCommand::for_server(&server(ServerKind::Redis, (7, 2, 0))),
            WaitCommand::WaitAof
        );
        assert_eq!(
            WaitCommand::for_server(&server(ServerKind::Valkey, (8, 1, 8))),
            WaitCommand::WaitAof
        );
        let ack = AckReplicas {
            replicas: 2,
            timeout: Duration::from_millis(750),
            wait: AckWait::Auto,
        };
        let valkey = server(ServerKind::Valkey, (8, 1, 8));
        assert_eq!(AckWait::Wait.on(&valkey), WaitCommand::Wait);
        assert_eq!(AckWait::Auto.on(&valkey), WaitCommand::WaitAof);
        assert_eq!(
            AckWait::WaitAof.on(&server(ServerKind::Redis, (7, 0, 15))),
            WaitCommand::Wait
        );
        assert_eq!(AckWait::parse(" WAITAOF"), Some(AckWait::WaitAof));
        assert_eq!(AckWait::parse("sometimes"), None);
        let commands = WaitCommand::WaitAof.commands(ack);
        let packed: Vec<String> = commands
            .iter()
            .map(|c| String::from_utf8_lossy(&c.get_packed_command()).replace("\r\n", " "))
            .collect();
        assert_eq!(packed.len(), 2, "{packed:?}");
        assert!(packed[0].ends_with("WAIT $1 2 $3 750 "), "{packed:?}");
        assert!(
            packed[1].ends_with("WAITAOF $1 0 $1 2 $3 750 "),
            "{packed:?}"
        );
        assert_eq!(
            WaitCommand::WaitAof.confirmed(&Value::Array(vec![Value::Int(0), Value::Int(1)])),
            Some(1)
        );
        assert_eq!(WaitCommand::Wait.confirmed(&Value::Int(2)), Some(2));
        assert_eq!(WaitCommand::Wait.confirmed(&Value::Nil), None);
    }
}
