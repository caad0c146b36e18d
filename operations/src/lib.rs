//! What an operator asks of the shop and does to it, as opposed to what runs it: the
//! projections (`ordershop-projections`) derive the read models from the log; this crate reads
//! how they are doing and acts on them. The command line (`ordershop report`, `status`,
//! `dead-letters`, `rebuild`) and the gateway (its console and `GET /overview`) both call it.
//!
//! - [`report`]: what the shop holds, read from the read models, and how far each projection
//!   is behind.
//! - [`status`]: each projection's consumer group (consumers, pending, lag, dead letters, last
//!   error, whether it is paused or down), and whether there is a shop at all.
//! - [`gauges`]: the same reading kept current in a process's metrics while it runs projections.
//! - [`dead_letters`]: list, retry or discard what a projection parked (the runner parks; the
//!   runner's Function library settles and re-parks atomically).
//! - [`rebuild`]: wipe one projection's state and replay the log into it under a pause lease,
//!   through the projection's own Function in rebuild mode.
//!
//! It depends on `ordershop-projections` (their names, Functions and the runner's bookkeeping),
//! never the other way round.

pub mod dead_letters;
pub mod error;
pub mod gauges;
pub mod rebuild;
pub mod report;
pub mod status;

pub use error::OperationError;
/// The names operators pick projections by (re-exported: they are this crate's vocabulary).
pub use ordershop_projections::{ProjectionName, UnknownProjection};
pub use rebuild::{rebuild_projection, wiped_key_patterns, RebuildReport};
pub use status::{group_status, shop_exists, statuses, ConsumerStatus, GroupStatus, DOWN_AFTER};
