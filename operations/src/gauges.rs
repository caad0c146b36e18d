//! A process's projection gauges, read as `status` reads them: for each projection it runs, the
//! group's pending and lag, when it last failed and its dead letters (parked, retried,
//! discarded); and for every projection of the shop whether it is down (a stopped projection
//! cannot say so itself). Refreshed every [`REFRESH`], so a scrape of `/metrics` never touches
//! Redis. The runner counts what it applies itself; this is the part that needs the group's
//! status, one reader per process that runs workers (started by whoever starts the roles), so
//! that the runner does not depend on the operator's code.

use crate::status::{is_down, status_of};
use ordershop_projections::ProjectionName;
use ordershop_redis::{RedisConfig, RedisConnection};
use ordershop_telemetry::{error_chain, Metrics};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::debug;

/// How often the gauges are read again.
pub const REFRESH: Duration = Duration::from_secs(5);

/// Keeps the gauges of `projections` (those this process runs) current in `metrics` until
/// `shutdown` is cancelled: at once, then every [`REFRESH`]. Redis not answering only leaves
/// the gauges as they were until it does.
pub async fn refresh_until_stopped(
    redis: RedisConfig,
    projections: Vec<ProjectionName>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let mut conn = None;
    loop {
        if conn.is_none() {
            match RedisConnection::connect(&redis).await {
                Ok(connected) => conn = Some(connected),
                Err(e) => debug!(error = %error_chain(&e), "cannot read the projection gauges yet"),
            }
        }
        if let Some(conn) = &mut conn {
            refresh(conn, &projections, &metrics).await;
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(REFRESH) => {}
        }
    }
}

/// Reads the gauges once; a group that cannot be read keeps its gauges as they were.
async fn refresh(conn: &mut RedisConnection, projections: &[ProjectionName], metrics: &Metrics) {
    for &projection in projections {
        let name = projection.name();
        match status_of(conn, projection).await {
            Ok(status) => {
                metrics.projection_backlog(name, status.pending, status.lag);
                metrics.projection_last_error(
                    name,
                    status.last_error.as_ref().map_or(0, |e| e.at_ms / 1000),
                );
                metrics.projection_dead_letters(
                    name,
                    [
                        status.dead_lettered,
                        status.dead_letters_retried,
                        status.dead_letters_discarded,
                    ],
                );
            }
            Err(e) => debug!(group = name, error = %error_chain(&e),
                             "cannot refresh the backlog gauges"),
        }
    }
    for projection in ProjectionName::ALL {
        if let Ok(down) = is_down(conn, projection).await {
            metrics.projection_down(projection.name(), down);
        }
    }
}
