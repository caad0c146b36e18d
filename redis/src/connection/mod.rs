//! [`RedisConnection`]: the one connection type every part of the shop talks to Redis through.
//!
//! It is a cheap, cloneable handle on one multiplexed connection to the current primary:
//! - made on first use, so a role starts while Redis is down;
//! - with `REDIS_URL=redis+sentinel://...`, the primary is the server the sentinels name (all
//!   asked at once, the newest settled answer: [`sentinel`]) *and* that says `ROLE master`
//!   itself;
//! - dropped when it turns out dead (a reset, refused or closed socket), when the server says it
//!   is no longer the primary (`READONLY`), is loading its data (`LOADING`) or does not answer
//!   in time; the next command makes a new one, asking the sentinels again. A demoted primary
//!   is thus never written to twice: its first `READONLY` ends the connection.
//! - A command that failed because the connection was dead, or because the server was not the
//!   primary, is sent once more on a new connection before the error reaches the caller.
//!   That is safe for every command the shop sends: each write is a guarded append (a repeat
//!   conflicts or, with an idempotency key, returns the first answer) or an idempotent
//!   projection step (per-entity versions, message ids), and reads are reads. A command that
//!   timed out is not repeated (it may still run).
//! - After a failed attempt to connect, callers within [`FAIL_FAST`] get the same error at
//!   once instead of queueing up behind connection attempts that cannot succeed.
//! - With Sentinel, the sentinels are watched ([`sentinel`]): when a failover of the primary
//!   begins, the connection leaves it before a replica is promoted, and commands fail at once
//!   (503) until the sentinels name the new primary.
//! - With `REDIS_URL=redis+cluster://...`, it is redis-rs's cluster connection instead (MOVED,
//!   ASK and TRYAGAIN handled, the topology refreshed): every command with a key goes to the
//!   primary of its slot, which for one shop is always the same one (its keys share a hash
//!   tag: [`Namespace`](crate::namespace::Namespace)); a keyless command the shop needs from the shop's node (SCAN,
//!   INFO, FUNCTION LIST) is sent there with [`RedisConnection::query_shop_node`]. FUNCTION
//!   LOAD goes to every primary.

mod sentinel;

use crate::config::RedisConfig;
use crate::url::Target;
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{Cmd, Pipeline, RedisError, RedisFuture, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How long a failed connection attempt is reported to later callers without trying again.
pub const FAIL_FAST: Duration = Duration::from_millis(100);

/// A self-healing handle on the primary (see the module docs). Clones share the connection.
#[derive(Clone)]
pub struct RedisConnection {
    shared: Arc<Shared>,
}

struct Shared {
    source: Source,
    timeouts: redis::AsyncConnectionConfig,
    /// Bounds resolving the primary through the sentinels, and connecting to it.
    connect_within: Duration,
    db: i64,
    state: Mutex<State>,
    /// Held while connecting, so that one task connects and the others wait for its result.
    connecting: tokio::sync::Mutex<()>,
    /// Whether the sentinels' watchers were started (at the first use, inside the runtime).
    watching: AtomicBool,
    /// The server connected to last (`host:port`), for those who follow the primary.
    primary: tokio::sync::watch::Sender<Option<String>>,
}

#[derive(Default)]
struct State {
    current: Option<Current>,
    generation: u64,
    failed: Option<(Instant, RedisError)>,
    /// The address of the last server connected to, to log a change of primary.
    last_server: Option<String>,
    /// While a failover is under way: until when commands are kept from Redis, and why.
    fenced: Option<(Instant, String)>,
}

#[derive(Clone)]
struct Current {
    generation: u64,
    conn: Link,
}

/// A connection to one server, or to a cluster.
#[derive(Clone)]
enum Link {
    One(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl Link {
    async fn command(&mut self, cmd: &Cmd) -> Result<Value, RedisError> {
        match self {
            Link::One(conn) => conn.req_packed_command(cmd).await,
            Link::Cluster(conn) => conn.req_packed_command(cmd).await,
        }
    }

    async fn pipeline(
        &mut self,
        pipeline: &Pipeline,
        offset: usize,
        count: usize,
    ) -> Result<Vec<Value>, RedisError> {
        match self {
            Link::One(conn) => conn.req_packed_commands(pipeline, offset, count).await,
            Link::Cluster(conn) => conn.req_packed_commands(pipeline, offset, count).await,
        }
    }
}

enum Source {
    Direct(redis::Client),
    Sentinel {
        /// A client per sentinel, for its events and questions.
        sentinels: Vec<redis::Client>,
        /// Connections to the sentinels, for resolving the primary.
        asking: tokio::sync::Mutex<Vec<Option<MultiplexedConnection>>>,
        master: String,
        /// The handshake with the primary (its credentials).
        handshake: redis::RedisConnectionInfo,
        tls: bool,
        certificates: Option<redis::TlsCertificates>,
    },
    Cluster {
        client: Box<redis::cluster::ClusterClient>,
        /// A client per seed node, for Pub/Sub (see `pubsub`).
        seeds: Vec<redis::Client>,
    },
}

/// What a failed command says about the connection it was sent on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// The connection is fine; the error is the command's own.
    Keep,
    /// Drop the connection; the command did not run, so it may be sent again.
    DropAndRetry,
    /// Drop the connection; the command may have run, so the error goes to the caller.
    Drop,
}

fn verdict(e: &RedisError) -> Verdict {
    match e.code() {
        Some("READONLY") => return Verdict::DropAndRetry,
        Some("LOADING" | "MASTERDOWN") => return Verdict::Drop,
        _ => {}
    }
    if e.is_timeout() {
        Verdict::Drop
    } else if e.is_connection_dropped() || e.is_connection_refusal() {
        Verdict::DropAndRetry
    } else if e.is_io_error() || e.is_unrecoverable_error() {
        Verdict::Drop
    } else {
        Verdict::Keep
    }
}

impl RedisConnection {
    /// A handle that connects on first use: it does not touch the network.
    pub fn new(config: &RedisConfig) -> Result<Self, RedisError> {
        let source = match config.target() {
            Target::Direct => Source::Direct(config.client()?),
            Target::Cluster(cluster) => {
                let seeds = cluster.seed_infos()?;
                let mut builder = redis::cluster::ClusterClient::builder(seeds.clone())
                    .connection_timeout(config.connection_timeout)
                    .response_timeout(config.response_timeout);
                if let Some(certificates) = config.tls_certificates() {
                    builder = builder.certs(certificates.clone());
                }
                let seeds = seeds
                    .into_iter()
                    .map(|info| match config.tls_certificates() {
                        Some(certificates) => {
                            redis::Client::build_with_tls(info, certificates.clone())
                        }
                        None => redis::Client::open(info),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Source::Cluster {
                    client: Box::new(builder.build()?),
                    seeds,
                }
            }
            Target::Sentinel(sentinel) => {
                let mut handshake = redis::RedisConnectionInfo::default().set_skip_set_lib_name();
                if let Some(user) = &sentinel.username {
                    handshake = handshake.set_username(user);
                }
                if let Some(password) = &sentinel.password {
                    handshake = handshake.set_password(password);
                }
                let sentinels = sentinel
                    .addresses()
                    .into_iter()
                    .map(|addr| {
                        let info = redis::IntoConnectionInfo::into_connection_info(addr)?;
                        match config.tls_certificates() {
                            Some(certificates) => {
                                redis::Client::build_with_tls(info, certificates.clone())
                            }
                            None => redis::Client::open(info),
                        }
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Source::Sentinel {
                    asking: tokio::sync::Mutex::new(vec![None; sentinels.len()]),
                    sentinels,
                    master: sentinel.master.clone(),
                    handshake,
                    tls: sentinel.tls,
                    certificates: config.tls_certificates().cloned(),
                }
            }
        };
        let timeouts = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(config.connection_timeout))
            .set_response_timeout(Some(config.response_timeout));
        Ok(Self {
            shared: Arc::new(Shared {
                source,
                timeouts,
                connect_within: config.connection_timeout * 2,
                db: config.db(),
                state: Mutex::new(State::default()),
                connecting: tokio::sync::Mutex::new(()),
                watching: AtomicBool::new(false),
                primary: tokio::sync::watch::channel(None).0,
            }),
        })
    }

    /// A handle, connected now (the error says why it could not be).
    pub async fn connect(config: &RedisConfig) -> Result<Self, RedisError> {
        let conn = Self::new(config)?;
        conn.current().await?;
        Ok(conn)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.shared.state()
    }

    /// Starts watching the sentinels, once per connection (needs the tokio runtime).
    fn watch_sentinels(&self) {
        let Source::Sentinel {
            sentinels, master, ..
        } = &self.shared.source
        else {
            return;
        };
        if self.shared.watching.swap(true, Ordering::SeqCst) {
            return;
        }
        let weak = Arc::downgrade(&self.shared);
        for client in sentinels {
            tokio::spawn(sentinel::follow(
                weak.clone(),
                client.clone(),
                master.clone(),
            ));
        }
        tokio::spawn(sentinel::poll(weak, sentinels.clone(), master.clone()));
    }

    /// The live connection, making one if there is none.
    async fn current(&self) -> Result<Current, RedisError> {
        self.watch_sentinels();
        self.shared.check_fence()?;
        if let Some(current) = self.state().current.clone() {
            return Ok(current);
        }
        let _connecting = self.shared.connecting.lock().await;
        self.shared.check_fence()?;
        {
            let state = self.state();
            if let Some(current) = state.current.clone() {
                return Ok(current);
            }
            if let Some((at, e)) = &state.failed {
                if at.elapsed() < FAIL_FAST {
                    return Err(e.clone());
                }
            }
        }
        let made = tokio::time::timeout(self.shared.connect_within, self.open()).await;
        let made = made.unwrap_or_else(|_| {
            Err(RedisError::from(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "no connection to Redis within {:?}",
                    self.shared.connect_within
                ),
            )))
        });
        let mut state = self.state();
        match made {
            Ok((conn, server)) => {
                state.generation += 1;
                state.failed = None;
                if state.last_server.as_deref() != Some(server.as_str()) {
                    if let Some(previous) = state.last_server.replace(server.clone()) {
                        tracing::warn!(%previous, %server, "the Redis primary changed");
                    } else {
                        tracing::debug!(%server, "connected to Redis");
                    }
                    self.shared.primary.send_replace(Some(server.clone()));
                }
                let current = Current {
                    generation: state.generation,
                    conn,
                };
                state.current = Some(current.clone());
                Ok(current)
            }
            Err(e) => {
                state.failed = Some((Instant::now(), e.clone()));
                Err(e)
            }
        }
    }

    /// A client for the server the source names now (with Sentinel, the sentinels' answer).
    async fn client(&self) -> Result<redis::Client, RedisError> {
        Ok(match &self.shared.source {
            Source::Direct(client) => client.clone(),
            Source::Cluster { .. } => {
                return Err(RedisError::from((
                    redis::ErrorKind::InvalidClientConfig,
                    "a cluster names no single server",
                )))
            }
            Source::Sentinel {
                sentinels,
                asking,
                master,
                handshake,
                tls,
                certificates,
            } => {
                let answer = sentinel::ask(
                    &mut asking.lock().await,
                    sentinels,
                    master,
                    &self.shared.timeouts,
                    self.shared.connect_within,
                )
                .await?;
                let addr = if *tls {
                    redis::ConnectionAddr::TcpTls {
                        host: answer.host,
                        port: answer.port,
                        insecure: false,
                        tls_params: None,
                    }
                } else {
                    redis::ConnectionAddr::Tcp(answer.host, answer.port)
                };
                let info = redis::IntoConnectionInfo::into_connection_info(addr)?
                    .set_redis_settings(handshake.clone());
                match certificates {
                    Some(certificates) => {
                        redis::Client::build_with_tls(info, certificates.clone())?
                    }
                    None => redis::Client::open(info)?,
                }
            }
        })
    }

    /// Changes of the server this handle is connected to (`host:port`): a subscriber made with
    /// [`pubsub`](Self::pubsub) subscribes again when it changes (after a failover, a
    /// subscription left on the old primary hears nothing the new one publishes).
    pub fn primary_changes(&self) -> tokio::sync::watch::Receiver<Option<String>> {
        self.shared.primary.subscribe()
    }

    /// A Pub/Sub connection to the server the source names now, for a subscriber (a message
    /// published on the primary reaches its replicas' subscribers too). Not kept: the caller
    /// subscribes again through this after losing it.
    pub async fn pubsub(&self) -> Result<redis::aio::PubSub, RedisError> {
        self.watch_sentinels();
        self.shared.check_fence()?;
        let connect = async {
            let Source::Cluster { seeds, .. } = &self.shared.source else {
                return self.client().await?.get_async_pubsub().await;
            };
            // A PUBLISH reaches every node of a cluster: the first seed that answers will do.
            let mut last = None;
            for seed in seeds {
                match seed.get_async_pubsub().await {
                    Ok(pubsub) => return Ok(pubsub),
                    Err(e) => last = Some(e),
                }
            }
            Err(last.unwrap_or_else(|| {
                RedisError::from((redis::ErrorKind::InvalidClientConfig, "no cluster node"))
            }))
        };
        tokio::time::timeout(self.shared.connect_within, connect)
            .await
            .unwrap_or_else(|_| {
                Err(RedisError::from(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "no Pub/Sub connection to Redis within {:?}",
                        self.shared.connect_within
                    ),
                )))
            })
    }

    /// Connects to the server the source names: `(connection, its address)`. With Sentinel,
    /// the server must also say it is the primary (`ROLE`).
    async fn open(&self) -> Result<(Link, String), RedisError> {
        if let Source::Cluster { client, seeds } = &self.shared.source {
            let conn = client.get_async_connection().await?;
            let nodes: Vec<String> = seeds
                .iter()
                .map(|seed| seed.get_connection_info().addr().to_string())
                .collect();
            return Ok((Link::Cluster(conn), format!("cluster {}", nodes.join(","))));
        }
        let client = self.client().await?;
        let server = client.get_connection_info().addr().to_string();
        let mut conn = client
            .get_multiplexed_async_connection_with_config(&self.shared.timeouts)
            .await?;
        if matches!(self.shared.source, Source::Sentinel { .. }) {
            let role: redis::Value = redis::cmd("ROLE").query_async(&mut conn).await?;
            let is_primary = matches!(&role, redis::Value::Array(items)
                if matches!(items.first(), Some(redis::Value::BulkString(r)) if r == b"master"));
            if !is_primary {
                return Err(RedisError::from(std::io::Error::new(
                    std::io::ErrorKind::ConnectionAborted,
                    format!("{server}, named by the sentinels, is not a primary (yet)"),
                )));
            }
        }
        Ok((Link::One(conn), server))
    }

    /// Sends a command that names no key to the server that holds the shop's keys: with a
    /// cluster, the primary of the namespace's slot (SCAN, INFO and FUNCTION LIST would
    /// otherwise go to any node, or to all); otherwise the one server.
    pub async fn query_shop_node<T: redis::FromRedisValue>(
        &self,
        cmd: &Cmd,
    ) -> Result<T, RedisError> {
        let value = match self.current().await?.conn {
            Link::Cluster(mut cluster) => {
                let route =
                    Route::with_key(crate::namespace::namespace().prefix(), SlotAddr::Master);
                cluster
                    .route_command(
                        cmd.clone(),
                        RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route)),
                    )
                    .await?
            }
            // The one server: the usual path (with its reconnect and retry).
            Link::One(_) => self.clone().req_packed_command(cmd).await?,
        };
        redis::from_redis_value(value).map_err(RedisError::from)
    }

    /// Forgets `generation`'s connection (if it is still the current one).
    fn drop_connection(&self, generation: u64, e: &RedisError) {
        let mut state = self.state();
        if state.current.as_ref().map(|c| c.generation) == Some(generation) {
            tracing::debug!(error = %e, "dropping the Redis connection");
            state.current = None;
        }
    }

    /// Sends `request`, once more on a new connection if the first attempt failed on a dead
    /// connection or on a server that is no longer the primary.
    async fn send(&self, request: Request<'_>) -> Result<Reply, RedisError> {
        let mut retried = false;
        loop {
            let Current {
                generation,
                mut conn,
            } = self.current().await?;
            let result = match request {
                Request::One(cmd) => conn.command(cmd).await.map(Reply::One),
                Request::Pipeline(pipeline, offset, count) => conn
                    .pipeline(pipeline, offset, count)
                    .await
                    .map(Reply::Many),
            };
            let Err(e) = result else {
                return result;
            };
            match verdict(&e) {
                Verdict::Keep => return Err(e),
                Verdict::Drop => {
                    self.drop_connection(generation, &e);
                    return Err(e);
                }
                Verdict::DropAndRetry => {
                    self.drop_connection(generation, &e);
                    if retried {
                        return Err(e);
                    }
                    retried = true;
                }
            }
        }
    }
}

impl Shared {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Refuses commands while a failover is under way.
    fn check_fence(&self) -> Result<(), RedisError> {
        let mut state = self.state();
        match &state.fenced {
            Some((until, why)) if Instant::now() < *until => {
                Err(RedisError::from(std::io::Error::new(
                    std::io::ErrorKind::ConnectionAborted,
                    format!("a failover of the Redis primary is under way ({why}); retry shortly"),
                )))
            }
            Some(_) => {
                state.fenced = None;
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// A failover of the primary at `primary` began: if that is the server in use, leave it
    /// now and send nothing until the failover is over. (A late event about a primary that was
    /// already replaced changes nothing.)
    fn fence(&self, event: &str, primary: &str) {
        let mut state = self.state();
        if state.last_server.as_deref() != Some(primary) {
            return;
        }
        if state.fenced.is_none() {
            tracing::warn!(
                event,
                primary,
                "a failover of the Redis primary began; holding commands"
            );
        }
        state.fenced = Some((Instant::now() + sentinel::MAX_FENCE, event.to_owned()));
        state.current = None;
    }

    /// The failover is over: ask the sentinels for the primary at the next command.
    fn unfence(&self, event: &str) {
        let mut state = self.state();
        if state.fenced.take().is_some() {
            tracing::info!(event, "the failover of the Redis primary is over");
        }
        state.current = None;
    }

    /// The sentinels name `server` as the primary: a connection to another one is dropped.
    fn primary_is(&self, server: &str) {
        let mut state = self.state();
        if state.current.is_some() && state.last_server.as_deref() != Some(server) {
            tracing::warn!(
                primary = server,
                "the sentinels name another primary; reconnecting"
            );
            state.current = None;
        }
    }
}

#[derive(Clone, Copy)]
enum Request<'a> {
    One(&'a Cmd),
    Pipeline(&'a Pipeline, usize, usize),
}

enum Reply {
    One(Value),
    Many(Vec<Value>),
}

fn unexpected_reply() -> RedisError {
    RedisError::from((
        redis::ErrorKind::Client,
        "a reply of the wrong shape: one reply for a pipeline, or several for a command",
    ))
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            match self.send(Request::One(cmd)).await? {
                Reply::One(value) => Ok(value),
                Reply::Many(_) => Err(unexpected_reply()),
            }
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            match self
                .send(Request::Pipeline(pipeline, offset, count))
                .await?
            {
                Reply::Many(values) => Ok(values),
                Reply::One(_) => Err(unexpected_reply()),
            }
        })
    }

    fn get_db(&self) -> i64 {
        self.shared.db
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_demoted_primary_or_a_dead_socket_means_a_new_connection() {
        let readonly = redis::RedisError::from((
            redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly),
            "You can't write against a read only replica.",
        ));
        assert_eq!(verdict(&readonly), Verdict::DropAndRetry);
        let reset = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert_eq!(verdict(&reset), Verdict::DropAndRetry);
        let timeout = RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut));
        assert_eq!(verdict(&timeout), Verdict::Drop);
        let refused = redis::RedisError::from((
            redis::ErrorKind::Server(redis::ServerErrorKind::ResponseError),
            "wrong number of arguments",
        ));
        assert_eq!(verdict(&refused), Verdict::Keep);
    }
}
