//! The gateway's application layer: commands go to the service that owns their entity type
//! and come back only once the entity cache shows their effect (read-your-writes, woken by the
//! cache's notices: [`consistency`]); queries are answered from the entity cache
//! (`ordershop_readmodel::CacheReader`).

pub mod consistency;
pub mod feed;
pub mod forward;
pub mod reads;

use crate::config::{Config, Role};
use crate::error::Unreachable;
use crate::headers;
use consistency::{AppliedWatch, Consistency};
use forward::{Forwarded, Forwarder, Outgoing};
use ordershop_readmodel::CacheReader;
use ordershop_redis::RedisConnection;
use ordershop_telemetry::error_chain;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The gateway: a forwarder for commands, a reader for queries.
#[derive(Clone)]
pub struct Gateway {
    forwarder: Forwarder,
    cache: CacheReader,
    conn: RedisConnection,
    applied: AppliedWatch,
    consistency_timeout: Duration,
    feed: Arc<feed::Feed>,
    heavy: Arc<reads::HeavyReads>,
    token: Option<crate::config::ApiToken>,
}

impl Gateway {
    /// Must be called inside the tokio runtime: it starts the subscription to the entity
    /// cache's notices. `shutdown` also ends the live feed's viewers.
    pub fn new(
        config: &Config,
        conn: RedisConnection,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Self> {
        use anyhow::Context;
        Ok(Self {
            forwarder: Forwarder::new(config).context("cannot build the gateway's HTTP client")?,
            cache: CacheReader::new(conn.clone()),
            applied: if config.consistency_notices {
                AppliedWatch::start(conn.clone())
            } else {
                AppliedWatch::without_subscription()
            },
            feed: Arc::new(
                feed::Feed::new(config.redis.clone(), config.feed, shutdown)
                    .context("cannot set up the event feed's Redis connections")?,
            ),
            heavy: Arc::new(
                reads::HeavyReads::new(&config.redis)
                    .context("cannot set up the Redis connection for expensive reads")?,
            ),
            conn,
            consistency_timeout: config.consistency_timeout,
            token: config.api_token.clone(),
        })
    }

    /// Runs the commands of these domain services with `service`, in this process (they run
    /// here too, as in `ordershop up`), instead of calling them over HTTP.
    pub fn with_local_commands(
        mut self,
        service: crate::commands::CommandService,
        roles: Vec<Role>,
    ) -> Self {
        self.forwarder = self.forwarder.with_local(service, roles);
        self
    }

    pub fn cache(&self) -> &CacheReader {
        &self.cache
    }

    /// A connection to the shop's Redis (for the console's reads and dead-letter actions).
    pub fn connection(&self) -> RedisConnection {
        self.conn.clone()
    }

    /// The budget of expensive reads.
    pub fn heavy_reads(&self) -> &reads::HeavyReads {
        &self.heavy
    }

    /// The live event feed.
    pub fn feed(&self) -> &feed::Feed {
        &self.feed
    }

    /// The API token, when one is set (the feed carries customer data, so it needs it).
    pub fn token(&self) -> Option<&crate::config::ApiToken> {
        self.token.as_ref()
    }

    /// Forwards a command to `owner`; when it succeeded, waits until the entity cache has
    /// applied every version it produced (or the consistency timeout passed) before returning
    /// the service's answer.
    pub async fn command(
        &self,
        owner: Role,
        request: Outgoing<'_>,
    ) -> Result<Forwarded, Unreachable> {
        let forwarded = self.forwarder.forward(owner, request).await?;
        if forwarded.is_success() {
            self.wait_for_cache(owner, &forwarded).await;
        }
        Ok(forwarded)
    }

    /// A command already succeeded: whatever happens here, the client gets the answer; a
    /// cache that lags or cannot be read is logged.
    async fn wait_for_cache(&self, owner: Role, forwarded: &Forwarded) {
        let versions = match forwarded.versions() {
            Ok(versions) if versions.is_empty() => return,
            Ok(versions) => versions,
            Err(e) => {
                tracing::warn!(%owner, error = %e, header = headers::VERSIONS, "unreadable versions header; not waiting for the entity cache");
                return;
            }
        };
        match self
            .applied
            .wait_until_applied(&self.conn, &versions, self.consistency_timeout)
            .await
        {
            Ok(Consistency::Applied) => {}
            Ok(Consistency::TimedOut { behind }) => tracing::warn!(
                %owner,
                behind,
                timeout = ?self.consistency_timeout,
                "the entity cache has not applied the command yet; answering anyway"
            ),
            Err(e) => tracing::warn!(
                %owner,
                error = %error_chain(&e),
                "cannot read the entity cache's progress; answering without waiting"
            ),
        }
    }
}
