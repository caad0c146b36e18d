//! The guarded append: what a command hands the store, and how the store answers.

use crate::entry_id::EntryId;
use crate::keys::{Stream, UniqueIndex};
use crate::replication::WaitCommand;
use ordershop_domain::{Change, EntityKind};
use uuid::Uuid;

/// The version a command expects an entity to be at; 0 means "must not exist yet".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expectation {
    pub kind: EntityKind,
    pub id: Uuid,
    pub version: u64,
}

/// Take (or give up) a unique value for an entity, e.g. "product P has inventory record I".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UniqueClaim {
    pub index: UniqueIndex,
    pub value: Uuid,
    pub owner: Uuid,
    /// Release the value instead of claiming it (only if `owner` still holds it).
    pub release: bool,
}

/// One event to append, with the entity's version after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingEvent {
    pub change: Change,
    pub version: u64,
    pub event_id: Uuid,
    /// The id of the request this event is for, when the append carries events of several
    /// requests (see [`Append::changes_for_request`]); else the append's own `metadata` says.
    pub request_id: Option<String>,
}

/// Makes an append happen at most once per client key: the store keeps `response` under `key`
/// (for `ttl_ms`), written in the same atomic step as the events. An append carrying a key that
/// is already there appends nothing and answers the stored response, if it was recorded for the
/// same request (`fingerprint`), or refuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRecord {
    /// The Redis key (see `keys::idempotency`).
    pub key: String,
    /// What identifies the request (method, path, body), so a key reused for another request is
    /// caught instead of answered with someone else's response.
    pub fingerprint: String,
    /// What to answer a repeat with.
    pub response: String,
    pub ttl_ms: u64,
}

/// A command's whole write: every expectation, claim and event, appended all or nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Append {
    pub expectations: Vec<Expectation>,
    pub claims: Vec<UniqueClaim>,
    pub events: Vec<PendingEvent>,
    /// Extra entry fields written on every event of the append (e.g. `request_id`), after the
    /// codec's own; readers that do not know them ignore them.
    pub metadata: Vec<(&'static str, String)>,
    /// Appends at most once per client key.
    pub idempotency: Option<IdempotencyRecord>,
}

impl Append {
    pub fn new() -> Self {
        Self::default()
    }

    /// Requires the entity to be at `version` (0: must not exist yet) when the append runs.
    pub fn expect(mut self, kind: EntityKind, id: Uuid, version: u64) -> Self {
        if let Some(existing) = self
            .expectations
            .iter_mut()
            .find(|e| e.kind == kind && e.id == id)
        {
            existing.version = version;
        } else {
            self.expectations.push(Expectation { kind, id, version });
        }
        self
    }

    pub fn claim(mut self, index: UniqueIndex, value: Uuid, owner: Uuid) -> Self {
        self.claims.push(UniqueClaim {
            index,
            value,
            owner,
            release: false,
        });
        self
    }

    pub fn release(mut self, index: UniqueIndex, value: Uuid, owner: Uuid) -> Self {
        self.claims.push(UniqueClaim {
            index,
            value,
            owner,
            release: true,
        });
        self
    }

    /// Adds a change. Its version follows the entity's expectation (one more per earlier event
    /// for the same entity in this append); an entity without an expectation is expected not to
    /// exist yet.
    pub fn change(mut self, change: Change) -> Self {
        let kind = change.entity.kind();
        let id = change.entity.id();
        let base = match self
            .expectations
            .iter()
            .find(|e| e.kind == kind && e.id == id)
        {
            Some(e) => e.version,
            None => {
                self.expectations.push(Expectation {
                    kind,
                    id,
                    version: 0,
                });
                0
            }
        };
        let earlier = self
            .events
            .iter()
            .filter(|e| e.change.entity.kind() == kind && e.change.entity.id() == id)
            .count() as u64;
        self.events.push(PendingEvent {
            change,
            version: base + earlier + 1,
            event_id: Uuid::new_v4(),
            request_id: None,
        });
        self
    }

    pub fn changes(self, changes: impl IntoIterator<Item = Change>) -> Self {
        changes.into_iter().fold(self, Append::change)
    }

    /// Adds the changes of one request among several in this append: their entries carry that
    /// request's id (field `request_id`). Returns the range of `events` they took.
    pub fn changes_for_request(
        &mut self,
        changes: impl IntoIterator<Item = Change>,
        request_id: Option<&str>,
    ) -> std::ops::Range<usize> {
        let start = self.events.len();
        let mut append = std::mem::take(self).changes(changes);
        for event in &mut append.events[start..] {
            event.request_id = request_id.map(str::to_owned);
        }
        *self = append;
        start..self.events.len()
    }

    /// Adds an extra field to every entry of the append. The codec's own fields (`event_id`,
    /// `entity`, `version`) cannot be overridden: such a name is ignored.
    pub fn annotate(mut self, name: &'static str, value: impl Into<String>) -> Self {
        if !crate::codec::RESERVED_FIELDS.contains(&name) {
            self.metadata.retain(|(n, _)| *n != name);
            self.metadata.push((name, value.into()));
        }
        self
    }

    /// Appends at most once for this record's key (see [`IdempotencyRecord`]).
    pub fn idempotent(mut self, record: IdempotencyRecord) -> Self {
        self.idempotency = Some(record);
        self
    }

    /// Tags every entry with the id of the request that caused it (field `request_id`).
    pub fn request_id(self, request_id: Option<&str>) -> Self {
        match request_id {
            Some(id) => self.annotate(crate::codec::FIELD_REQUEST_ID, id),
            None => self,
        }
    }
}

/// One event the store appended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    pub stream: Stream,
    pub entry_id: EntryId,
    pub event_id: Uuid,
    pub entity_id: Uuid,
    pub version: u64,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum AppendError {
    /// An entity was not at the version the command expected; nothing was appended.
    #[error("version conflict on {kind} {id}: expected version {expected}, found {actual}")]
    VersionConflict {
        kind: EntityKind,
        id: Uuid,
        expected: u64,
        actual: u64,
    },
    /// A unique value is held by another entity; nothing was appended.
    #[error("{} {value} is already held by {holder}", .index.name())]
    UniqueConflict {
        index: UniqueIndex,
        value: Uuid,
        holder: String,
    },
    /// The idempotency key was used before by the same request: nothing was appended; this is
    /// the response recorded the first time.
    #[error("already done under this idempotency key")]
    Duplicate { response: String },
    /// The idempotency key was used before by a different request; nothing was appended.
    #[error("the idempotency key was already used for a different request")]
    KeyReused,
    /// The append was made on the primary, but fewer replicas than asked confirmed it in time:
    /// it may or may not survive a failover.
    #[error(
        "{confirmed} of the {wanted} replicas asked for confirmed the append with {command} \
         in time"
    )]
    NotReplicated {
        wanted: u32,
        confirmed: u32,
        command: WaitCommand,
    },
    /// A stream's highest entry is one the store cannot append after: at the top of the ID
    /// space, or far in the future (written by hand). Nothing was appended; it stays so until
    /// an operator removes that entry.
    #[error(
        "the stream {stream} has reached the ID {entry}, which the store cannot append after (at \
         the end of the ID space, or more than a day ahead of the server's clock: an entry \
         written without the store); nothing was appended. An operator must remove that entry \
         and bring the stream's last ID back: see \"A stream blocked by an entry written by \
         hand\" in docs/projections.md"
    )]
    Blocked { stream: String, entry: String },
    #[error("event store unavailable")]
    Redis(#[from] redis::RedisError),
    #[error("unexpected reply from the append function: {0}")]
    Protocol(String),
}
