//! The projections' infrastructure failures. A bad entry is not an error here: it is a value the
//! runner acts on (retry, then dead-letter), so these are only what an operator must look at.

use ordershop_eventstore::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error("Redis unavailable")]
    Redis(#[from] redis::RedisError),
    #[error("event store unavailable")]
    Store(#[from] StoreError),
    #[error("read model unavailable")]
    Read(#[from] ordershop_readmodel::ReadError),
    #[error("unexpected reply from {what}: {detail}")]
    Protocol { what: String, detail: String },
}

impl ProjectionError {
    /// Redis answered `what` with something this code does not understand (`detail`).
    pub fn protocol(what: impl Into<String>, detail: impl Into<String>) -> Self {
        ProjectionError::Protocol {
            what: what.into(),
            detail: detail.into(),
        }
    }
}

/// `unknown projection` for [`ProjectionName`](crate::ProjectionName)'s `FromStr`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown projection `{0}` (expected entity-cache, crm, crm-mailer or msg-service)")]
pub struct UnknownProjection(pub String);
