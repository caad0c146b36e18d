//! The entry codec: how a change becomes stream entry fields and back.
//!
//! Fields, as in the original sample: `event_id` (UUID) and `entity` (JSON of the whole entity
//! after the change), plus `version` (the entity's version after this event), and optionally
//! `request_id` (the HTTP request that caused it, to follow it through the logs). Readers ignore
//! fields they do not know, so fields can be added without breaking them.

use crate::entry_id::EntryId;
use crate::keys::Stream;
use ordershop_domain::{Billing, Change, Customer, Entity, EntityKind, Inventory, Order, Product};
use redis::Value;
use std::collections::HashMap;
use uuid::Uuid;

pub const FIELD_EVENT_ID: &str = "event_id";
pub const FIELD_ENTITY: &str = "entity";
pub const FIELD_VERSION: &str = "version";
pub const FIELD_REQUEST_ID: &str = "request_id";
/// The fields the codec itself writes; an append's metadata cannot replace them.
pub const RESERVED_FIELDS: [&str; 3] = [FIELD_EVENT_ID, FIELD_ENTITY, FIELD_VERSION];

/// An entry as read from a stream, before decoding.
#[derive(Debug, Clone, PartialEq)]
pub struct RawEntry {
    pub stream: Stream,
    pub id: EntryId,
    pub fields: HashMap<String, Value>,
}

/// A decoded event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    pub stream: Stream,
    pub id: EntryId,
    pub event_id: Uuid,
    /// The entity's version after this event (1 for its first event).
    pub version: u64,
    pub change: Change,
    /// The request that caused the event, when the writer recorded it.
    pub request_id: Option<String>,
}

impl StoredEvent {
    pub fn kind(&self) -> EntityKind {
        self.stream.kind
    }

    pub fn entity_id(&self) -> Uuid {
        self.change.entity.id()
    }
}

/// A stream entry that is not a valid event; names the entry so an operator can find it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad entry {id} in {stream}: {reason}")]
pub struct DecodeError {
    pub stream: String,
    pub id: String,
    pub reason: String,
}

/// The JSON the log stores for an entity.
pub fn encode_entity(entity: &Entity) -> String {
    let json = match entity {
        Entity::Customer(e) => serde_json::to_string(e),
        Entity::Product(e) => serde_json::to_string(e),
        Entity::Inventory(e) => serde_json::to_string(e),
        Entity::Order(e) => serde_json::to_string(e),
        Entity::Billing(e) => serde_json::to_string(e),
    };
    // Serialising these plain structs cannot fail: no maps with non-string keys, no floats.
    json.unwrap_or_default()
}

/// Parses an entity of the given kind from its stored JSON.
pub fn decode_entity(kind: EntityKind, json: &[u8]) -> Result<Entity, serde_json::Error> {
    Ok(match kind {
        EntityKind::Customer => Entity::Customer(serde_json::from_slice::<Customer>(json)?),
        EntityKind::Product => Entity::Product(serde_json::from_slice::<Product>(json)?),
        EntityKind::Inventory => Entity::Inventory(serde_json::from_slice::<Inventory>(json)?),
        EntityKind::Order => Entity::Order(serde_json::from_slice::<Order>(json)?),
        EntityKind::Billing => Entity::Billing(serde_json::from_slice::<Billing>(json)?),
    })
}

fn field_bytes<'a>(fields: &'a HashMap<String, Value>, name: &str) -> Option<&'a [u8]> {
    match fields.get(name)? {
        Value::BulkString(bytes) => Some(bytes),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

impl RawEntry {
    /// Whether the entry's entity JSON contains `text` (a cheap test before decoding).
    pub fn mentions(&self, text: &str) -> bool {
        field_bytes(&self.fields, FIELD_ENTITY).is_some_and(|json| {
            json.windows(text.len().max(1))
                .any(|window| window == text.as_bytes())
        })
    }

    pub fn decode(&self) -> Result<StoredEvent, DecodeError> {
        let fail = |reason: String| DecodeError {
            stream: self.stream.key(),
            id: self.id.to_string(),
            reason,
        };
        let text = |name: &str| -> Result<&str, DecodeError> {
            let bytes = field_bytes(&self.fields, name)
                .ok_or_else(|| fail(format!("missing field `{name}`")))?;
            std::str::from_utf8(bytes).map_err(|_| fail(format!("field `{name}` is not UTF-8")))
        };
        let event_id = text(FIELD_EVENT_ID)?;
        let event_id = Uuid::parse_str(event_id)
            .map_err(|e| fail(format!("field `event_id` is not a UUID ({e})")))?;
        let version = text(FIELD_VERSION)?;
        let version: u64 = version
            .parse()
            .map_err(|_| fail(format!("field `version` is not a number: `{version}`")))?;
        let entity = text(FIELD_ENTITY)?;
        let entity = decode_entity(self.stream.kind, entity.as_bytes()).map_err(|e| {
            fail(format!(
                "field `entity` is not a valid {} JSON ({e})",
                self.stream.kind
            ))
        })?;
        Ok(StoredEvent {
            stream: self.stream,
            id: self.id,
            event_id,
            version,
            change: Change {
                action: self.stream.action,
                entity,
            },
            request_id: field_bytes(&self.fields, FIELD_REQUEST_ID)
                .and_then(|b| std::str::from_utf8(b).ok())
                .map(str::to_owned),
        })
    }
}
