//! A role's connection to Redis and its health.
//!
//! The connection is made lazily, so a role starts (and answers `/health` with 503) while Redis
//! is still down, and re-made by itself once Redis is back. Command roles also need the store's
//! Function library; it is loaded in the background at start-up and again by the health check
//! if Redis lost it (the append reloads it too).

use crate::config::Role;
use ordershop_eventstore::keys::FUNCTION_LIBRARY;
use ordershop_eventstore::{EventStore, StoreError};
use ordershop_redis::RedisConnection;
use ordershop_redis::{Backoff, RedisConfig};
use ordershop_telemetry::error_chain;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long a health check may take before it counts as a failure.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

/// A self-reconnecting connection that connects on first use. Must be called inside a tokio
/// runtime, which then drives reconnections; it does not touch the network.
pub fn lazy_connection(config: &RedisConfig) -> Result<RedisConnection, redis::RedisError> {
    ordershop_redis::RedisConnection::new(config)
}

#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    #[error("Redis does not answer")]
    Redis(#[from] redis::RedisError),
    #[error("the event store's Function library cannot be loaded")]
    Store(#[from] StoreError),
    #[error("Redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the worker's Function library {0} is not loaded yet")]
    WorkerNotReady(&'static str),
}

/// What `/health` checks for a role.
#[derive(Clone)]
pub struct Health {
    pub role: Role,
    conn: RedisConnection,
    /// Set for the roles that append: their store's Function must be loaded.
    store: Option<EventStore>,
    /// Function libraries a worker of this process loads; ready only once they are there.
    libraries: Vec<&'static str>,
}

impl Health {
    pub fn new(role: Role, conn: RedisConnection, store: Option<EventStore>) -> Self {
        Self {
            role,
            conn,
            store,
            libraries: Vec::new(),
        }
    }

    /// Also requires these Function libraries (a projection worker's, which it loads itself).
    pub fn requiring(mut self, libraries: Vec<&'static str>) -> Self {
        self.libraries = libraries;
        self
    }

    /// Redis answers PING, and (for command roles) the store's Function is loaded — loading it
    /// if Redis lost it.
    pub async fn check(&self) -> Result<(), HealthError> {
        tokio::time::timeout(HEALTH_TIMEOUT, self.check_now())
            .await
            .map_err(|_| HealthError::Timeout(HEALTH_TIMEOUT))?
    }

    async fn check_now(&self) -> Result<(), HealthError> {
        let mut conn = self.conn.clone();
        let _: String = redis::cmd("PING").query_async(&mut conn).await?;
        if let Some(store) = &self.store {
            if !is_loaded(&mut conn, FUNCTION_LIBRARY).await? {
                tracing::warn!(role = %self.role, "the store's Function library is missing; loading it");
                store.load_functions().await?;
            }
        }
        for library in &self.libraries {
            if !is_loaded(&mut conn, library).await? {
                return Err(HealthError::WorkerNotReady(library));
            }
        }
        Ok(())
    }
}

async fn is_loaded(conn: &mut RedisConnection, library: &str) -> Result<bool, redis::RedisError> {
    let libraries: redis::Value = conn
        .query_shop_node(
            redis::cmd("FUNCTION")
                .arg("LIST")
                .arg("LIBRARYNAME")
                .arg(library),
        )
        .await?;
    Ok(matches!(&libraries, redis::Value::Array(l) if !l.is_empty()))
}

/// Loads the store's Function library as soon as Redis answers, retrying with a growing pause
/// until it succeeds or `shutdown` is cancelled.
pub async fn load_functions_when_ready(store: EventStore, role: Role, shutdown: CancellationToken) {
    let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(2));
    let mut attempts = 0u32;
    loop {
        match store.load_functions().await {
            Ok(()) => {
                tracing::debug!(%role, "store Function library loaded");
                return;
            }
            Err(e) => {
                attempts += 1;
                if attempts == 1 || attempts.is_multiple_of(20) {
                    tracing::warn!(%role, attempts, error = %error_chain(&e), "cannot load the store's Function library yet");
                }
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(backoff.next_pause()) => {}
        }
    }
}
