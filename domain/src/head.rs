//! The state of one entity as of a version: what `apply` folds events into.

use crate::decide::Change;
use crate::entity::EntityState;
use crate::kind::Action;

/// An entity's latest state and version. Version 0 means the entity never existed; a positive
/// version with no entity means it was deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head<T> {
    pub version: u64,
    pub entity: Option<T>,
}

impl<T> Default for Head<T> {
    fn default() -> Self {
        Self {
            version: 0,
            entity: None,
        }
    }
}

impl<T: EntityState> Head<T> {
    pub fn new(version: u64, entity: Option<T>) -> Self {
        Self { version, entity }
    }

    /// True when the entity existed at some point and was deleted since.
    pub fn is_deleted(&self) -> bool {
        self.version > 0 && self.entity.is_none()
    }

    /// Folds one persisted change, carrying the given version, into this head. A change for
    /// another kind or an older version than the head's is ignored, so replays are idempotent.
    pub fn apply(self, version: u64, change: &Change) -> Self {
        if version <= self.version {
            return self;
        }
        let Some(entity) = T::from_entity(change.entity.clone()) else {
            return self;
        };
        match change.action {
            Action::Created | Action::Updated => Head::new(version, Some(entity)),
            Action::Deleted => Head::new(version, None),
        }
    }
}
