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

use crate::append::{Append, AppendError, Appended};
use crate::function::{interpret_reply, query_loading_functions, FcallArgs};
use crate::store::StoreError;
use ordershop_redis::{RedisConnection, ServerVersion};
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

/// What acknowledging after replication needs: its own connection (a waiting command blocks
/// it) and the wait command the server has, found at the first append.
pub(crate) struct Replicated {
    ack: AckReplicas,
    conn: RedisConnection,
    command: tokio::sync::OnceCell<WaitCommand>,
}

impl Replicated {
    pub(crate) fn new(ack: AckReplicas, conn: RedisConnection) -> Self {
        Self {
            ack,
            conn,
            command: tokio::sync::OnceCell::new(),
        }
    }

    /// The wait command of the server, read from its INFO at the first use and logged.
    async fn command(&self) -> Result<WaitCommand, redis::RedisError> {
        let command = self
            .command
            .get_or_try_init(|| async {
                let info: String = self
                    .conn
                    .query_shop_node(redis::cmd("INFO").arg("server"))
                    .await?;
                let command = ServerVersion::from_info(&info)
                    .map(|server| {
                        let command = self.ack.wait.on(&server);
                        tracing::info!(%server, %command, replicas = self.ack.replicas,
                            timeout = ?self.ack.timeout,
                            "appends are acknowledged once replicas confirm them");
                        command
                    })
                    .unwrap_or(WaitCommand::Wait);
                Ok::<_, redis::RedisError>(command)
            })
            .await?;
        Ok(*command)
    }

    /// The append and its wait, in one pipeline on the waiting connection.
    pub(crate) async fn append(&self, append: &Append) -> Result<Vec<Appended>, AppendError> {
        let command = self.command().await?;
        let mut pipe = redis::pipe();
        pipe.ignore_errors()
            .add_command(FcallArgs::build(append).command());
        for wait in command.commands(self.ack) {
            pipe.add_command(wait);
        }
        let replies = query_loading_functions(&mut self.conn.clone(), &pipe).await?;
        let mut replies = replies.into_iter();
        let (Some(call), Some(wait)) = (replies.next(), replies.next_back()) else {
            return Err(AppendError::Protocol(
                "no reply to the append or its wait".into(),
            ));
        };
        let outcome = interpret_reply(append, call?);
        // Only what was written (or answered from an earlier write) needs its replicas.
        if matches!(outcome, Ok(_) | Err(AppendError::Duplicate { .. })) {
            self.check(command, &wait?)?;
        }
        outcome
    }

    /// Touches a recorded idempotency answer (its expiry, unchanged) and waits, so that the
    /// answer is confirmed only once everything up to it is on the replicas.
    pub(crate) async fn confirm_recorded(&self, key: &str) -> Result<(), StoreError> {
        let command = self.command().await?;
        let mut conn = self.conn.clone();
        let ttl: i64 = redis::cmd("PTTL").arg(key).query_async(&mut conn).await?;
        let mut pipe = redis::pipe();
        if ttl > 0 {
            pipe.cmd("PEXPIRE").arg(key).arg(ttl).ignore();
        }
        for wait in command.commands(self.ack) {
            pipe.add_command(wait);
        }
        let replies: Vec<Value> = pipe.query_async(&mut conn).await?;
        let last = replies.last().cloned().unwrap_or(Value::Nil);
        self.check(command, &last)
            .map_err(StoreError::NotReplicated)
    }

    fn check(&self, command: WaitCommand, reply: &Value) -> Result<(), AppendError> {
        let confirmed = command.confirmed(reply).ok_or_else(|| {
            AppendError::Protocol(format!("unexpected reply to {command}: {reply:?}"))
        })?;
        if confirmed < self.ack.replicas {
            return Err(AppendError::NotReplicated {
                wanted: self.ack.replicas,
                confirmed,
                command,
            });
        }
        Ok(())
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
