//! Reads that cost far more than a command — the whole-shop overview, an entity's history (a
//! pass over its type's streams), the projections' status, the dead letters — must never
//! starve commands. They go through [`HeavyReads`]: a Redis connection of their own (a long
//! reply never queues in front of a command's round trip), a small number at a time (more
//! wait up to [`QUEUE_WAIT`], then get 503 with `Retry-After`), and the overview is computed at
//! most once per [`OVERVIEW_FRESH`] however many consoles ask (single flight, shared result) —
//! and, on a shop so large that computing it takes long, at most once per [`OVERVIEW_DUTY`]
//! times as long as it took, so that overviews never take more than a tenth of the gateway's
//! and Redis's time whatever the number of consoles.

use crate::error::ApiError;
use ordershop_operations::report::{self, Report};
use ordershop_redis::{RedisConfig, RedisConnection};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, Semaphore, SemaphorePermit};

/// Heavy reads served at the same time.
pub const CONCURRENT: usize = 2;
/// How long a heavy read waits for its turn before it is answered 503.
pub const QUEUE_WAIT: Duration = Duration::from_secs(2);
/// How long one computed overview is served to every console that asks, at least.
pub const OVERVIEW_FRESH: Duration = Duration::from_secs(1);
/// An overview that took `t` to compute is served for `OVERVIEW_DUTY × t` at least.
pub const OVERVIEW_DUTY: u32 = 10;

pub struct HeavyReads {
    conn: RedisConnection,
    permits: Semaphore,
    /// The last overview: when it was computed, how long it stays fresh, and the report.
    overview: Mutex<Option<(Instant, Duration, Arc<Report>)>>,
}

impl HeavyReads {
    pub fn new(redis: &RedisConfig) -> Result<Self, redis::RedisError> {
        Ok(HeavyReads {
            conn: RedisConnection::new(redis)?,
            permits: Semaphore::new(CONCURRENT),
            overview: Mutex::new(None),
        })
    }

    /// The connection heavy reads use.
    pub fn connection(&self) -> RedisConnection {
        self.conn.clone()
    }

    /// A turn to run a heavy read, or 503 when none came free within [`QUEUE_WAIT`].
    pub async fn turn(&self) -> Result<SemaphorePermit<'_>, ApiError> {
        match tokio::time::timeout(QUEUE_WAIT, self.permits.acquire()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(ApiError::unavailable(format!(
                "{CONCURRENT} expensive reads (overview, history, status, dead letters) are \
                 running; retry shortly"
            ))),
        }
    }

    /// The overview, computed at most once per [`OVERVIEW_FRESH`]: callers that come while it
    /// is computed wait for that result instead of computing their own.
    pub async fn overview(&self) -> Result<Arc<Report>, ApiError> {
        let mut cached = self.overview.lock().await;
        if let Some((at, fresh, report)) = cached.as_ref() {
            if at.elapsed() < *fresh {
                return Ok(report.clone());
            }
        }
        let _turn = self.turn().await?;
        let started = Instant::now();
        let report = Arc::new(report::load(&self.conn).await?);
        let fresh = OVERVIEW_FRESH.max(started.elapsed() * OVERVIEW_DUTY);
        *cached = Some((Instant::now(), fresh, report.clone()));
        Ok(report)
    }
}
