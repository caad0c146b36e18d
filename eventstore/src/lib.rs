//! The event store: OrderShop's one layer over Redis Streams.
//!
//! It owns everything both sides of the shop must agree on: the key scheme ([`keys`]), the
//! entry ID format ([`EntryId`]), the entry codec ([`codec`]), the store-wide clock and the
//! atomic guarded append (the `ordershop_store` Redis Function in `lua/store.lua`), and the
//! readers that replay streams in global ID order ([`replay`]). Services append through it;
//! projections read through it; neither formats a key or parses an entry by itself. It also holds the process's
//! [`metrics`], which both sides record into.

pub mod append;
pub mod cache;
pub mod codec;
pub mod connect;
pub mod entry_id;
pub mod keys;
pub mod metrics;
pub mod replay;
pub mod retry;
pub mod store;

pub use append::{Append, AppendError, Appended, Expectation, UniqueClaim};
pub use codec::{DecodeError, RawEntry, StoredEvent};
pub use connect::{
    AccessDenied, Reachability, RedisConfig, RedisConfigError, ServerKind, ServerVersion,
};
pub use entry_id::EntryId;
pub use keys::{Stream, UniqueIndex};
pub use metrics::Metrics;
pub use replay::Replay;
pub use retry::Backoff;
pub use store::{EventStore, StoreError};
