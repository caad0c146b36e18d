//! [`MemStore`]: the command layer's store ([`CommandStore`]) in memory, so command logic
//! (reads, decisions, guarded appends and their retries) runs in a test without a
//! redis-server, as cqrs-es tests aggregates on its `MemStore`.
//!
//! It keeps the same bookkeeping as the `append_guarded` Function (`lua/store.lua` in
//! `ordershop-eventstore`) and refuses what it refuses, with the same errors:
//! - an idempotency key already used answers the recorded response for the same fingerprint
//!   ([`AppendError::Duplicate`]), else [`AppendError::KeyReused`]; nothing is written;
//! - every expectation is checked in order against the entity's head version (0: none yet); the
//!   first that differs refuses the whole append ([`AppendError::VersionConflict`]);
//! - then every claim against the index as it was before this append; a value held by another
//!   owner refuses the whole append ([`AppendError::UniqueConflict`]);
//! - otherwise each event gets an entry ID greater than any issued before (the wall clock's
//!   `<ms>-<µs within the ms>`, or one past the last ID), its head becomes its version and
//!   entity (no entity once deleted), claims are taken, releases give a value back only if
//!   the releasing owner held it, and the idempotency answer is recorded.
//!
//! What it does not model: the streams themselves (an append is kept only as the list of
//! [`Appended`] it answered: no entry fields, no reading, replay or consumer groups), waits
//! for replicas (never [`AppendError::NotReplicated`]), entries written by hand
//! (never [`AppendError::Blocked`]), the expiry of idempotency answers, and Redis failing.
//! Everything happens under one lock, so each call is atomic, as a Function is.

use ordershop_domain::entity::EntityState;
use ordershop_domain::{Action, Entity, EntityKind, Head};
use ordershop_eventstore::{
    Append, AppendError, Appended, CommandStore, EntryId, HeadsByUnique, StoreError, Stream,
    UniqueIndex,
};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};
use uuid::Uuid;

/// A store in memory; clones share it.
#[derive(Clone, Default)]
pub struct MemStore {
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    /// `(kind, id)` -> version and the entity after it (`None` once deleted).
    heads: HashMap<(EntityKind, Uuid), (u64, Option<Entity>)>,
    /// `(index, value)` -> owner.
    unique: HashMap<(UniqueIndex, Uuid), Uuid>,
    /// Idempotency key -> `(fingerprint, response)`.
    answers: HashMap<String, (String, String)>,
    /// The last entry ID issued.
    clock: EntryId,
    appended: Vec<Appended>,
    refused: usize,
    /// Other writers' appends, made just before the next `append_guarded` call.
    interlopers: Vec<Append>,
}

impl MemStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every event appended so far, in the order of their entry IDs.
    pub fn appended(&self) -> Vec<Appended> {
        self.state().appended.clone()
    }

    /// How many appends were refused (conflicts and idempotency refusals alike).
    pub fn refused(&self) -> usize {
        self.state().refused
    }

    /// Makes `append` land just before the next call of
    /// [`append_guarded`](CommandStore::append_guarded), as another writer's append would when
    /// it wins the race between a command's read and its append. Its own outcome is counted as
    /// any append's.
    pub fn before_next_append(&self, append: Append) {
        self.state().interlopers.push(append);
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock but a failing test: the state is still whole.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl State {
    fn head<T: EntityState>(&self, id: Uuid) -> Head<T> {
        match self.heads.get(&(T::KIND, id)) {
            None => Head::default(),
            Some((version, entity)) => {
                Head::new(*version, entity.clone().and_then(|e| T::from_entity(e)))
            }
        }
    }

    fn version(&self, kind: EntityKind, id: Uuid) -> u64 {
        self.heads.get(&(kind, id)).map_or(0, |(v, _)| *v)
    }

    /// The next entry ID: the wall clock's, or one past the last issued when the clock has not
    /// moved on (as `next_id` in `lua/store.lua`).
    fn next_id(&mut self) -> EntryId {
        let micros = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        let now = EntryId::new(micros / 1000, micros % 1000);
        self.clock = if now > self.clock {
            now
        } else {
            EntryId::new(self.clock.ms, self.clock.seq + 1)
        };
        self.clock
    }

    fn append_guarded(&mut self, append: &Append) -> Result<Vec<Appended>, AppendError> {
        let outcome = self.check(append);
        match outcome {
            Ok(()) => Ok(self.write(append)),
            Err(e) => {
                self.refused += 1;
                Err(e)
            }
        }
    }

    /// Every check of the append, before anything is written.
    fn check(&self, append: &Append) -> Result<(), AppendError> {
        if let Some(record) = &append.idempotency {
            if let Some((fingerprint, response)) = self.answers.get(&record.key) {
                return Err(if *fingerprint == record.fingerprint {
                    AppendError::Duplicate {
                        response: response.clone(),
                    }
                } else {
                    AppendError::KeyReused
                });
            }
        }
        for e in &append.expectations {
            let actual = self.version(e.kind, e.id);
            if actual != e.version {
                return Err(AppendError::VersionConflict {
                    kind: e.kind,
                    id: e.id,
                    expected: e.version,
                    actual,
                });
            }
        }
        for c in append.claims.iter().filter(|c| !c.release) {
            if let Some(holder) = self.unique.get(&(c.index, c.value)) {
                if *holder != c.owner {
                    return Err(AppendError::UniqueConflict {
                        index: c.index,
                        value: c.value,
                        holder: holder.to_string(),
                    });
                }
            }
        }
        Ok(())
    }

    fn write(&mut self, append: &Append) -> Vec<Appended> {
        let mut written = Vec::with_capacity(append.events.len());
        for event in &append.events {
            let entity = &event.change.entity;
            let entry_id = self.next_id();
            let kept = (event.change.action != Action::Deleted).then(|| entity.clone());
            self.heads
                .insert((entity.kind(), entity.id()), (event.version, kept));
            written.push(Appended {
                stream: Stream::new(entity.kind(), event.change.action),
                entry_id,
                event_id: event.event_id,
                entity_id: entity.id(),
                version: event.version,
            });
        }
        // Releases look at the holder from before this append's claims, as the Function does.
        let holders: Vec<Option<Uuid>> = append
            .claims
            .iter()
            .map(|c| self.unique.get(&(c.index, c.value)).copied())
            .collect();
        for (c, holder) in append.claims.iter().zip(holders) {
            if !c.release {
                self.unique.insert((c.index, c.value), c.owner);
            } else if holder == Some(c.owner) {
                self.unique.remove(&(c.index, c.value));
            }
        }
        if let Some(record) = &append.idempotency {
            self.answers.insert(
                record.key.clone(),
                (record.fingerprint.clone(), record.response.clone()),
            );
        }
        self.appended.extend(written.iter().cloned());
        written
    }
}

impl CommandStore for MemStore {
    async fn heads<T: EntityState>(&self, ids: &[Uuid]) -> Result<Vec<Head<T>>, StoreError> {
        let state = self.state();
        Ok(ids.iter().map(|id| state.head::<T>(*id)).collect())
    }

    async fn unique_owners(
        &self,
        index: UniqueIndex,
        values: &[Uuid],
    ) -> Result<Vec<Option<Uuid>>, StoreError> {
        let state = self.state();
        Ok(values
            .iter()
            .map(|value| state.unique.get(&(index, *value)).copied())
            .collect())
    }

    async fn heads_by_unique<T: EntityState>(
        &self,
        index: UniqueIndex,
        values: &[Uuid],
    ) -> Result<HeadsByUnique<T>, StoreError> {
        let state = self.state();
        Ok(values
            .iter()
            .map(|value| {
                let owner = *state.unique.get(&(index, *value))?;
                Some((owner, state.head::<T>(owner)))
            })
            .collect())
    }

    async fn idempotent_answer(&self, key: &str) -> Result<Option<(String, String)>, StoreError> {
        Ok(self.state().answers.get(key).cloned())
    }

    async fn append_guarded(&self, append: &Append) -> Result<Vec<Appended>, AppendError> {
        let mut state = self.state();
        for interloper in std::mem::take(&mut state.interlopers) {
            // Another writer's append: its outcome is only counted.
            let _ = state.append_guarded(&interloper);
        }
        state.append_guarded(append)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ordershop_domain::{Change, Customer, CustomerId, Email, Name};

    fn customer(id: Uuid) -> Customer {
        Customer {
            id: CustomerId(id),
            name: Name::parse("name", "Ada").expect("a name"),
            email: Email::parse("ada@example.com").expect("an email"),
        }
    }

    #[tokio::test]
    async fn a_stale_expectation_refuses_the_whole_append() {
        let store = MemStore::new();
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        store
            .append_guarded(&Append::new().change(Change::created(customer(a))))
            .await
            .expect("the first create");
        // `b` is new, but `a` is expected not to exist: nothing of the append is written.
        let refused = store
            .append_guarded(
                &Append::new()
                    .change(Change::created(customer(b)))
                    .change(Change::created(customer(a))),
            )
            .await;
        assert!(matches!(
            refused,
            Err(AppendError::VersionConflict {
                expected: 0,
                actual: 1,
                ..
            })
        ));
        let heads = store.heads::<Customer>(&[a, b]).await.expect("heads");
        assert_eq!((heads[0].version, heads[1].version), (1, 0));
        assert_eq!((store.appended().len(), store.refused()), (1, 1));
    }

    #[tokio::test]
    async fn entry_ids_increase_across_appends() {
        let store = MemStore::new();
        let mut append = Append::new();
        for n in 0..50 {
            append = append.change(Change::created(customer(Uuid::from_u128(n))));
        }
        store.append_guarded(&append).await.expect("the append");
        let ids: Vec<EntryId> = store.appended().iter().map(|a| a.entry_id).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    }

    #[tokio::test]
    async fn a_claim_held_by_another_refuses_and_a_release_frees_only_its_own() {
        let store = MemStore::new();
        let index = UniqueIndex::InventoryByProduct;
        let (value, first, second) = (Uuid::from_u128(7), Uuid::from_u128(1), Uuid::from_u128(2));
        store
            .append_guarded(&Append::new().claim(index, value, first))
            .await
            .expect("the first claim");
        let taken = store
            .append_guarded(&Append::new().claim(index, value, second))
            .await;
        assert!(
            matches!(taken, Err(AppendError::UniqueConflict { holder, .. })
            if holder == first.to_string())
        );
        store
            .append_guarded(&Append::new().release(index, value, second))
            .await
            .expect("a release of someone else's value is no refusal");
        assert_eq!(
            store.unique_owners(index, &[value]).await.expect("owners"),
            [Some(first)]
        );
        store
            .append_guarded(&Append::new().release(index, value, first))
            .await
            .expect("the release");
        assert_eq!(
            store.unique_owners(index, &[value]).await.expect("owners"),
            [None]
        );
    }
}
