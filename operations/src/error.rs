//! What can go wrong in an operator's query or action: what goes wrong reading or applying a
//! projection (Redis, the log, the read models, an answer not understood), and what only a
//! rebuild can run into.

use ordershop_projections::ProjectionError;

#[derive(Debug, thiserror::Error)]
pub enum OperationError {
    /// Redis, the log or the read models failed, or answered what this code cannot read.
    #[error(transparent)]
    Projection(#[from] ProjectionError),
    #[error(
        "projection `{0}` cannot be rebuilt: it is a sink of side effects, not a view of the log"
    )]
    NotRebuildable(&'static str),
    #[error("a rebuild of `{0}` is already running (its pause lease is held)")]
    RebuildRunning(&'static str),
    #[error("the rebuild of `{0}` lost its pause lease (it was stalled longer than the lease)")]
    LeaseLost(&'static str),
}

impl OperationError {
    pub(crate) fn protocol(what: impl Into<String>, detail: impl Into<String>) -> Self {
        ProjectionError::protocol(what, detail).into()
    }
}

impl From<redis::RedisError> for OperationError {
    fn from(e: redis::RedisError) -> Self {
        ProjectionError::from(e).into()
    }
}

impl From<ordershop_eventstore::StoreError> for OperationError {
    fn from(e: ordershop_eventstore::StoreError) -> Self {
        ProjectionError::from(e).into()
    }
}

impl From<ordershop_readmodel::ReadError> for OperationError {
    fn from(e: ordershop_readmodel::ReadError) -> Self {
        ProjectionError::from(e).into()
    }
}

impl From<ordershop_projections::projection::CallFailed> for OperationError {
    fn from(e: ordershop_projections::projection::CallFailed) -> Self {
        ProjectionError::from(e).into()
    }
}
