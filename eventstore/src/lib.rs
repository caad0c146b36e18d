//! The event store: OrderShop's log on Redis Streams, and nothing else.
//!
//! It owns the log's key scheme ([`keys`]), the entry ID format ([`EntryId`]), the entry codec
//! ([`codec`]), the store-wide clock and the atomic guarded append (the `ordershop_store` Redis
//! Function in `lua/store.lua`), the readers that replay streams in global ID order
//! ([`replay`]), on the connection of `ordershop-redis`. Services append through it;
//! projections read through it; neither formats a log key or parses an entry by itself. What
//! a command needs of it is the [`CommandStore`] trait, so the command layer also runs on a
//! store in memory. What is built from the log (the entity cache, the CRM view) lives in
//! `ordershop-readmodel`.

pub mod append;
pub mod codec;
pub mod command_store;
pub mod entry_id;
pub mod function;
pub mod keys;
pub mod replay;
pub mod replication;
pub mod store;

pub use append::{Append, AppendError, Appended, Expectation, UniqueClaim};
pub use codec::{DecodeError, RawEntry, StoredEvent};
pub use command_store::{CommandStore, HeadsByUnique};
pub use entry_id::EntryId;
pub use keys::{Stream, UniqueIndex};
pub use replay::{Follow, Replay};
pub use replication::{AckReplicas, AckWait, WaitCommand};
pub use store::{EventStore, StoreError};
