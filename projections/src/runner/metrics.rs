//! What a running consumer records in the process's metrics: what each step applied and
//! dead-lettered (a projection's [`record_applied`](Projection::record_applied) says what its
//! applying means). The group's pending, lag, dead-letter and down gauges are read as `status`
//! reads them, beside the runner (`ordershop-operations`' `gauges`), so that there is one
//! reading of a group's state and the runner does not depend on the operator's code.

use super::StepReport;
use crate::projection::Projection;
use ordershop_telemetry::Metrics;
use std::sync::Arc;

/// Where a running consumer records what it did.
pub(super) struct Observed {
    metrics: Arc<Metrics>,
}

impl Observed {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self { metrics }
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
}
