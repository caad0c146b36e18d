//! [`CommandStore`]: what the command layer needs of the log, and nothing more: the heads it
//! decides on (by id, or through a unique index), who holds a unique value, the answer kept
//! under an idempotency key, and the guarded append.
//!
//! It lives here, beside [`EventStore`], because its whole vocabulary does ([`Append`],
//! [`AppendError`], [`Head`], [`UniqueIndex`]) and because its semantics are the store's: an
//! implementation must refuse a whole append when one expectation or claim fails, with the
//! same error as `lua/store.lua`. [`EventStore`] is the implementation on Redis; the one in
//! memory (`ordershop_testkit::MemStore`) lets command logic run without a redis-server.
//!
//! Its methods are generic over the entity type, so the command layer is generic over the store
//! (no boxing on the order path), not a `dyn` object.

use crate::append::{Append, AppendError, Appended};
use crate::keys::UniqueIndex;
use crate::store::{EventStore, StoreError};
use ordershop_domain::entity::EntityState;
use ordershop_domain::Head;
use std::future::Future;
use uuid::Uuid;

/// Per value of a unique index, in order: who holds it and that entity's head (`None`: nobody).
pub type HeadsByUnique<T> = Vec<Option<(Uuid, Head<T>)>>;

/// The log as a command reads and appends to it.
pub trait CommandStore: Clone + Send + Sync + 'static {
    /// The head (latest version and state) of each entity, in the order of `ids`; an entity
    /// never written has the default head (version 0, no state).
    fn heads<T: EntityState>(
        &self,
        ids: &[Uuid],
    ) -> impl Future<Output = Result<Vec<Head<T>>, StoreError>> + Send;

    /// Who holds each value of a unique index, in the order of `values`.
    fn unique_owners(
        &self,
        index: UniqueIndex,
        values: &[Uuid],
    ) -> impl Future<Output = Result<Vec<Option<Uuid>>, StoreError>> + Send;

    /// For each value of a unique index, in order: who holds it, and that entity's head.
    fn heads_by_unique<T: EntityState>(
        &self,
        index: UniqueIndex,
        values: &[Uuid],
    ) -> impl Future<Output = Result<HeadsByUnique<T>, StoreError>> + Send;

    /// What was recorded under an idempotency key: `(fingerprint, response)`, if anything.
    fn idempotent_answer(
        &self,
        key: &str,
    ) -> impl Future<Output = Result<Option<(String, String)>, StoreError>> + Send;

    /// Appends every event of `append` if, and only if, every expectation and claim holds (and
    /// its idempotency key, if any, is unused); each event gets a new entry ID, greater than
    /// any issued before.
    fn append_guarded(
        &self,
        append: &Append,
    ) -> impl Future<Output = Result<Vec<Appended>, AppendError>> + Send;
}

impl CommandStore for EventStore {
    fn heads<T: EntityState>(
        &self,
        ids: &[Uuid],
    ) -> impl Future<Output = Result<Vec<Head<T>>, StoreError>> + Send {
        EventStore::heads(self, ids)
    }

    fn unique_owners(
        &self,
        index: UniqueIndex,
        values: &[Uuid],
    ) -> impl Future<Output = Result<Vec<Option<Uuid>>, StoreError>> + Send {
        EventStore::unique_owners(self, index, values)
    }

    fn heads_by_unique<T: EntityState>(
        &self,
        index: UniqueIndex,
        values: &[Uuid],
    ) -> impl Future<Output = Result<HeadsByUnique<T>, StoreError>> + Send {
        EventStore::heads_by_unique(self, index, values)
    }

    fn idempotent_answer(
        &self,
        key: &str,
    ) -> impl Future<Output = Result<Option<(String, String)>, StoreError>> + Send {
        EventStore::idempotent_answer(self, key)
    }

    fn append_guarded(
        &self,
        append: &Append,
    ) -> impl Future<Output = Result<Vec<Appended>, AppendError>> + Send {
        EventStore::append_guarded(self, append)
    }
}
