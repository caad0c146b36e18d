//! A private replicated Redis: one primary, its replicas and the sentinels that watch them,
//! every process on a free loopback port with its own data folder, stopped when dropped.
//!
//! Every server keeps an append-only file fsynced at every write (so `WAITAOF` counts its
//! replicas without waiting for a once-a-second fsync) and a config
//! file in its data folder, which the sentinels rewrite when they turn a server into a replica
//! or a primary, as in production. The sentinels declare the primary down after
//! [`DOWN_AFTER`], so a failover takes a few seconds.

use crate::{free_port, server_bin, wait_until, RedisOptions, RedisServer};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The name the sentinels know the primary under.
pub const PRIMARY_NAME: &str = "shop-primary";
/// How long the primary must be silent before the sentinels call it down.
pub const DOWN_AFTER: Duration = Duration::from_millis(1_000);
/// How long setting up (replicas in sync, sentinels aware of each other) may take.
const SETTLE: Duration = Duration::from_secs(30);

/// The replicas and sentinels of a primary; which server is the primary now is
/// [`ReplicatedRedis::primary_port`]'s answer.
pub struct ReplicatedRedis {
    replicas: Vec<RedisServer>,
    sentinels: Vec<Sentinel>,
}

struct Sentinel {
    child: Option<Child>,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The options of a server of the set: an append-only file fsynced at every write, quick
/// replication; a replica of `127.0.0.1:<replica_of>` if given.
pub fn server_options(replica_of: Option<u16>) -> RedisOptions {
    let mut extra = vec![
        "--repl-diskless-sync-delay".to_owned(),
        "0".to_owned(),
        "--repl-ping-replica-period".to_owned(),
        "1".to_owned(),
    ];
    if let Some(port) = replica_of {
        extra.extend([
            "--replicaof".to_owned(),
            "127.0.0.1".to_owned(),
            port.to_string(),
        ]);
    }
    RedisOptions {
        appendonly: true,
        appendfsync: "always",
        extra,
    }
}

impl ReplicatedRedis {
    /// Starts a primary, `replicas` replicas and `sentinels` sentinels (quorum: a majority), and
    /// waits until the replicas are in sync and every sentinel knows all the others. Returns
    /// the primary (for the caller to kill or restart) and the rest.
    pub fn start(replicas: usize, sentinels: usize) -> (RedisServer, Self) {
        let primary = RedisServer::start_with(server_options(None)).with_config_file();
        let primary_port = primary.port();
        let servers = (0..replicas)
            .map(|_| RedisServer::start_with(server_options(Some(primary_port))).with_config_file())
            .collect();
        let quorum = sentinels / 2 + 1;
        let sentinels: Vec<Sentinel> = (0..sentinels)
            .map(|_| Sentinel::start(primary_port, quorum))
            .collect();
        let cluster = Self {
            replicas: servers,
            sentinels,
        };
        wait_until("the replicas to be in sync", SETTLE, || {
            info(primary_port, "replication")
                .is_some_and(|info| info.matches("state=online").count() == replicas)
                && cluster.replicas.iter().all(|r| replica_ready(r.port()))
        });
        for sentinel in &cluster.sentinels {
            wait_until(
                "every sentinel to know the replicas and the other sentinels",
                SETTLE,
                || {
                    let knows = |what: &str| {
                        query(sentinel.port, &["SENTINEL", what, PRIMARY_NAME])
                            .map(|reply| match reply {
                                redis::Value::Array(items) => items.len(),
                                _ => 0,
                            })
                            .unwrap_or(0)
                    };
                    knows("replicas") == replicas
                        && knows("sentinels") == cluster.sentinels.len() - 1
                },
            );
        }
        (primary, cluster)
    }

    /// `redis+sentinel://127.0.0.1:<port>,.../shop-primary`.
    pub fn url(&self) -> String {
        let sentinels: Vec<String> = self
            .sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect();
        format!("redis+sentinel://{}/{PRIMARY_NAME}", sentinels.join(","))
    }

    /// The servers started as replicas.
    pub fn replicas(&self) -> &[RedisServer] {
        &self.replicas
    }

    pub fn replicas_mut(&mut self) -> &mut [RedisServer] {
        &mut self.replicas
    }

    /// The port of the primary the sentinels name now, once they agree: every sentinel names
    /// the same one and none is in the middle of a failover (else `None`; right after a
    /// failover a sentinel may still name the old primary, or a replica it is promoting).
    pub fn primary_port(&self) -> Option<u16> {
        let mut agreed = None;
        for sentinel in &self.sentinels {
            let reply = query(sentinel.port, &["SENTINEL", "MASTER", PRIMARY_NAME])?;
            let flat: Vec<String> = redis::from_redis_value(reply).ok()?;
            let field = |name: &str| {
                flat.chunks(2)
                    .find(|pair| pair.first().map(String::as_str) == Some(name))
                    .and_then(|pair| pair.get(1).cloned())
            };
            if field("flags").is_some_and(|f| f.contains("failover_in_progress")) {
                return None;
            }
            let port: u16 = field("port")?.parse().ok()?;
            match agreed {
                None => agreed = Some(port),
                Some(other) if other != port => return None,
                Some(_) => {}
            }
        }
        agreed
    }

    /// Asks a sentinel for a failover to a replica now (`SENTINEL FAILOVER`).
    pub fn switch_over(&self) -> Result<(), String> {
        let sentinel = self.sentinels.first().ok_or("no sentinel")?;
        query(sentinel.port, &["SENTINEL", "FAILOVER", PRIMARY_NAME])
            .map(drop)
            .ok_or_else(|| "the sentinel refused the failover".to_owned())
    }
}

impl Sentinel {
    fn start(primary_port: u16, quorum: usize) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("ordershop-sentinel-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a sentinel folder: {e}"));
        let port = free_port();
        let conf: PathBuf = dir.path().join("sentinel.conf");
        let text = format!(
            "port {port}\nbind 127.0.0.1\ndir {dir}\nlogfile {dir}/sentinel.log\n\
             sentinel monitor {PRIMARY_NAME} 127.0.0.1 {primary_port} {quorum}\n\
             sentinel down-after-milliseconds {PRIMARY_NAME} {down}\n\
             sentinel failover-timeout {PRIMARY_NAME} 10000\n\
             sentinel parallel-syncs {PRIMARY_NAME} 2\n",
            dir = dir.path().display(),
            down = DOWN_AFTER.as_millis(),
        );
        std::fs::write(&conf, text).unwrap_or_else(|e| panic!("cannot write {conf:?}: {e}"));
        let child = Command::new(server_bin())
            .arg(&conf)
            .arg("--sentinel")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run `{} --sentinel`: {e}", server_bin()));
        let sentinel = Self {
            child: Some(child),
            port,
            _dir: dir,
        };
        wait_until("a sentinel to answer", SETTLE, || {
            query(port, &["PING"]).is_some()
        });
        sentinel
    }
}

/// One command to `127.0.0.1:port` on a new connection, with short timeouts.
pub fn query(port: u16, args: &[&str]) -> Option<redis::Value> {
    try_query(port, args).ok()
}

/// [`query`], with the error when there is one.
pub fn try_query(port: u16, args: &[&str]) -> Result<redis::Value, redis::RedisError> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}"))?;
    let mut conn = client.get_connection_with_timeout(Duration::from_millis(500))?;
    conn.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut cmd = redis::cmd(args[0]);
    for arg in &args[1..] {
        cmd.arg(*arg);
    }
    cmd.query(&mut conn)
}

/// Whether the replica on `port` is in sync with its primary and done with the append-only
/// file rewrite that follows a full sync (until then it confirms no `WAITAOF`).
pub fn replica_ready(port: u16) -> bool {
    let link = info(port, "replication").is_some_and(|i| i.contains("master_link_status:up"));
    let persisted = info(port, "persistence").is_some_and(|i| {
        i.contains("aof_rewrite_in_progress:0")
            && i.contains("aof_rewrite_scheduled:0")
            && i.contains("loading:0")
    });
    link && persisted
}

/// `INFO <section>` of the server on `port`.
pub fn info(port: u16, section: &str) -> Option<String> {
    redis::from_redis_value(query(port, &["INFO", section])?).ok()
}
