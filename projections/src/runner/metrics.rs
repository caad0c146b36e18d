//! What a running consumer records in the process's metrics: what each step applied and
//! dead-lettered (a projection's [`record_applied`](Projection::record_applied) says what its
//! applying means), and, every [`BACKLOG_REFRESH`], the group's pending and lag read as
//! `status` reads them, so the gauges stay current without a scrape touching Redis.

use super::StepReport;
use crate::projection::Projection;
use crate::ProjectionName;
use ordershop_redis::RedisConnection;
use ordershop_telemetry::error_chain;
use ordershop_telemetry::Metrics;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::debug;

/// How often a running consumer refreshes its group's pending and lag gauges.
pub const BACKLOG_REFRESH: Duration = Duration::from_secs(5);

/// Where a running consumer records what it did.
pub(super) struct Observed {
    projection: ProjectionName,
    metrics: Arc<Metrics>,
    next_refresh: Instant,
}

impl Observed {
    pub fn new(projection: ProjectionName, metrics: Arc<Metrics>) -> Self {
        Self {
            projection,
            metrics,
            next_refresh: Instant::now(),
        }
    }

    pub fn step<P: Projection>(&self, projection: &P, report: &StepReport) {
        if report.applied > 0 {
            projection.record_applied(&self.metrics, report.applied);
        }
        if report.dead_lettered > 0 {
            self.metrics
                .dead_lettered(projection.name(), report.dead_lettered as u64);
        }
    }

    /// Reads the group's pending and lag once [`BACKLOG_REFRESH`] has passed since the last
    /// time (at once the first time); a failure only leaves the gauges as they were.
    pub async fn refresh_backlog_if_due(&mut self, conn: &mut RedisConnection) {
        if Instant::now() < self.next_refresh {
            return;
        }
        match crate::status::status_of(conn, self.projection).await {
            Ok(status) => {
                let name = self.projection.name();
                self.metrics
                    .projection_backlog(name, status.pending, status.lag);
                self.metrics.projection_last_error(
                    name,
                    status.last_error.as_ref().map_or(0, |e| e.at_ms / 1000),
                );
                self.metrics.projection_dead_letters(
                    name,
                    [
                        status.dead_lettered,
                        status.dead_letters_retried,
                        status.dead_letters_discarded,
                    ],
                );
            }
            Err(e) => debug!(group = self.projection.name(), error = %error_chain(&e),
                             "cannot refresh the backlog gauges"),
        }
        // Every projection's, not only this one's: a stopped projection cannot say so itself.
        for projection in ProjectionName::ALL {
            if let Ok(down) = crate::status::is_down(conn, projection).await {
                self.metrics.projection_down(projection.name(), down);
            }
        }
        self.next_refresh = Instant::now() + BACKLOG_REFRESH;
    }
}
