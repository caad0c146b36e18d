//! In-process queues for hot entities: when commands of this process collide on an entity (a
//! product everybody buys in a flash sale), they take turns on it instead of racing again.
//!
//! A command that lost a race on an entity (a version conflict) waits for that entity's turn
//! before it reads and decides again; a command whose first decision touches an entity whose
//! turn is taken re-decides in the queue too. Within a process, commands on one hot entity then
//! follow each other without conflicts; across processes the guarded append still decides.
//! Turns are striped (a few entities may share one); a command holds at most one at a time,
//! so commands never wait on each other in a cycle.

use ordershop_domain::EntityKind;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use tokio::sync::{Mutex, OwnedMutexGuard};
use uuid::Uuid;

/// One process's turns, shared by its command handlers.
#[derive(Clone)]
pub struct HotEntities {
    stripes: Arc<Vec<Arc<Mutex<()>>>>,
}

impl Default for HotEntities {
    fn default() -> Self {
        Self {
            stripes: Arc::new(
                (0..Self::STRIPES)
                    .map(|_| Arc::new(Mutex::new(())))
                    .collect(),
            ),
        }
    }
}

/// A command's turn on an entity (and the others of its stripe), until dropped.
pub struct Turn {
    stripe: usize,
    _guard: OwnedMutexGuard<()>,
}

impl HotEntities {
    /// How many turns there are (entities share them by hash).
    pub const STRIPES: usize = 256;

    /// The stripe whose turn covers `(kind, id)`.
    pub fn stripe(kind: EntityKind, id: Uuid) -> usize {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (kind, id).hash(&mut hasher);
        (hasher.finish() as usize) % Self::STRIPES
    }

    /// Waits for the turn on `(kind, id)`.
    pub async fn turn(&self, kind: EntityKind, id: Uuid) -> Turn {
        let stripe = Self::stripe(kind, id);
        let guard = Arc::clone(&self.stripes[stripe]).lock_owned().await;
        Turn {
            stripe,
            _guard: guard,
        }
    }

    /// Whether a command holds the turn on `(kind, id)` now.
    pub fn is_taken(&self, kind: EntityKind, id: Uuid) -> bool {
        self.stripes[Self::stripe(kind, id)].try_lock().is_err()
    }

    /// Whether `turn` covers `(kind, id)`.
    pub fn covers(turn: &Turn, kind: EntityKind, id: Uuid) -> bool {
        turn.stripe == Self::stripe(kind, id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_turn_is_taken_until_dropped() {
        let hot = HotEntities::default();
        let id = Uuid::from_u128(1);
        assert!(!hot.is_taken(EntityKind::Inventory, id));
        let turn = hot.turn(EntityKind::Inventory, id).await;
        assert!(hot.is_taken(EntityKind::Inventory, id));
        assert!(HotEntities::covers(&turn, EntityKind::Inventory, id));
        drop(turn);
        assert!(!hot.is_taken(EntityKind::Inventory, id));
    }
}
