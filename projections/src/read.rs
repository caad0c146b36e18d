//! Parsing XREADGROUP and XAUTOCLAIM replies by hand, because a consumer's history may hold
//! entries deleted from the stream since (returned with nil fields), which the generic stream
//! reply types reject, and because both RESP2 arrays and RESP3 maps must be understood. The
//! value helpers ([`text`], [`pairs`]) are public for the operator's readers of the runner's
//! bookkeeping (XINFO, the dead-letter streams) in `ordershop-operations`.

use crate::error::ProjectionError;
use crate::projection::Entry;
use ordershop_eventstore::EntryId;
use redis::Value;
use std::collections::HashMap;

/// Entries read, plus the IDs of pending entries deleted from their stream since delivery
/// (nothing left to apply: they are simply acknowledged).
#[derive(Debug, Default)]
pub(crate) struct Read {
    pub entries: Vec<Entry>,
    pub gone: Vec<(String, EntryId)>,
}

impl Read {
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.gone.is_empty()
    }

    pub fn len(&self) -> usize {
        self.entries.len() + self.gone.len()
    }
}

fn bad(what: &str, value: &Value) -> ProjectionError {
    ProjectionError::protocol(what, format!("{value:?}"))
}

/// A reply value as text (bulk, simple or verbatim string, or an integer's digits).
pub fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

/// Key/value pairs of a RESP2 flat array or a RESP3 map.
pub fn pairs(value: &Value) -> Option<Vec<(&Value, &Value)>> {
    match value {
        Value::Map(map) => Some(map.iter().map(|(k, v)| (k, v)).collect()),
        Value::Array(items) if items.len() % 2 == 0 => {
            Some(items.chunks(2).map(|kv| (&kv[0], &kv[1])).collect())
        }
        _ => None,
    }
}

/// One `[id, [field, value, ...] | nil]` entry.
fn push_entry(stream: &str, raw: &Value, read: &mut Read) -> Result<(), ProjectionError> {
    let Value::Array(parts) = raw else {
        return Err(bad("stream entry", raw));
    };
    let id: EntryId = parts
        .first()
        .and_then(text)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("stream entry ID", raw))?;
    match parts.get(1) {
        None | Some(Value::Nil) => read.gone.push((stream.to_owned(), id)),
        Some(fields) => {
            let fields = pairs(fields)
                .ok_or_else(|| bad("stream entry fields", raw))?
                .into_iter()
                .filter_map(|(k, v)| Some((text(k)?, v.clone())))
                .collect::<HashMap<String, Value>>();
            read.entries.push(Entry {
                stream: stream.to_owned(),
                id,
                fields,
            });
        }
    }
    Ok(())
}

fn push_entries(stream: &str, list: &Value, read: &mut Read) -> Result<(), ProjectionError> {
    match list {
        Value::Nil => Ok(()),
        Value::Array(items) => items
            .iter()
            .try_for_each(|item| push_entry(stream, item, read)),
        other => Err(bad("stream entries", other)),
    }
}

/// An XREADGROUP reply: nil (timeout), or per stream its entries.
pub(crate) fn parse_xreadgroup(reply: &Value) -> Result<Read, ProjectionError> {
    let mut read = Read::default();
    let per_stream: Vec<(&Value, &Value)> = match reply {
        Value::Nil => return Ok(read),
        Value::Map(map) => map.iter().map(|(k, v)| (k, v)).collect(),
        Value::Array(items) => items
            .iter()
            .map(|item| match item {
                Value::Array(kv) if kv.len() == 2 => Ok((&kv[0], &kv[1])),
                other => Err(bad("XREADGROUP stream", other)),
            })
            .collect::<Result<_, _>>()?,
        other => return Err(bad("XREADGROUP", other)),
    };
    for (stream, list) in per_stream {
        let stream = text(stream).ok_or_else(|| bad("XREADGROUP stream name", stream))?;
        push_entries(&stream, list, &mut read)?;
    }
    Ok(read)
}

/// An XAUTOCLAIM reply: `[next cursor, entries, deleted IDs]`. Redis already removed the
/// deleted IDs from the pending list, so they are dropped here.
pub(crate) fn parse_xautoclaim(
    stream: &str,
    reply: &Value,
) -> Result<(String, Read), ProjectionError> {
    let Value::Array(parts) = reply else {
        return Err(bad("XAUTOCLAIM", reply));
    };
    let cursor = parts
        .first()
        .and_then(text)
        .ok_or_else(|| bad("XAUTOCLAIM cursor", reply))?;
    let mut read = Read::default();
    if let Some(list) = parts.get(1) {
        push_entries(stream, list, &mut read)?;
    }
    read.gone.clear();
    // Redis took these off the pending list itself: they were never applied.
    if let Some(Value::Array(deleted)) = parts.get(2) {
        for id in deleted.iter().filter_map(text) {
            tracing::warn!(
                stream,
                id,
                "a pending entry was no longer in its stream; Redis dropped it unapplied"
            );
        }
    }
    Ok((cursor, read))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn history_entries_deleted_from_the_stream_are_reported_as_gone() {
        let reply = Value::Array(vec![Value::Array(vec![
            bulk("events:customer_created"),
            Value::Array(vec![
                Value::Array(vec![
                    bulk("5-1"),
                    Value::Array(vec![bulk("event_id"), bulk("x")]),
                ]),
                Value::Array(vec![bulk("6-0"), Value::Nil]),
            ]),
        ])]);
        let read = parse_xreadgroup(&reply).unwrap();
        assert_eq!(read.entries.len(), 1);
        assert_eq!(read.entries[0].id, EntryId::new(5, 1));
        assert_eq!(read.entries[0].text("event_id"), Some("x"));
        assert_eq!(
            read.gone,
            vec![("events:customer_created".to_owned(), EntryId::new(6, 0))]
        );
        assert!(parse_xreadgroup(&Value::Nil).unwrap().is_empty());
    }

    #[test]
    fn resp3_maps_are_understood() {
        let reply = Value::Map(vec![(
            bulk("crm:outbox"),
            Value::Array(vec![Value::Array(vec![
                bulk("7-0"),
                Value::Map(vec![(bulk("msg_id"), bulk("m"))]),
            ])]),
        )]);
        let read = parse_xreadgroup(&reply).unwrap();
        assert_eq!(read.entries[0].text("msg_id"), Some("m"));
    }
}
