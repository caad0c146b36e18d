//! Dead letters an operator can act on. An entry a projection could not apply after
//! `max_deliveries` deliveries is parked in `<group>:dead` with its original fields and why
//! (`source_stream`, `source_id`, `reason`, `deliveries`, `consumer`; see the runner). From
//! here an operator can:
//!
//! - [`list`] them, per group;
//! - [`retry`] one: decode it and apply it through the projection's own Function, as a live
//!   consumer would. The Functions are idempotent (version checks, message ids), so an entry
//!   retried twice, or whose effect is already in, changes nothing more and sends no message
//!   twice. If it fails again it is parked again, with the new reason and one more retry
//!   counted, and is not tried again until asked: no loop;
//! - [`discard`] one: remove it from the dead-letter stream.
//!
//! What was done is counted per group in `<group>:dead:actions` (fields `retried`, `discarded`)
//! so that any host's `status` and `/metrics` can show it.

use crate::error::OperationError;
use ordershop_eventstore::function::{is_missing_function, load_library};
use ordershop_eventstore::EntryId;
use ordershop_projections::projection::{
    call_function, CallFailed, CallOutcome, Entry, Mode, Projection,
};
use ordershop_projections::read::{pairs, text};
use ordershop_projections::runner::RUNNER_LIBRARY_SOURCE;
use ordershop_projections::{with_projection, ProjectionName};
use ordershop_readmodel::keys;
use ordershop_redis::RedisConnection;
use redis::Value;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

/// The fields the runner adds to a parked entry; the rest are the entry's own.
const META: [&str; 6] = [
    "source_stream",
    "source_id",
    "reason",
    "deliveries",
    "consumer",
    "retries",
];

/// One parked entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeadLetter {
    pub projection: ProjectionName,
    /// Its ID in `<group>:dead` (what `retry` and `discard` take).
    #[serde(serialize_with = "as_text")]
    pub id: EntryId,
    pub source_stream: String,
    pub source_id: String,
    /// Why it was parked (the last failure).
    pub reason: String,
    /// Deliveries before it was parked.
    pub deliveries: u64,
    pub consumer: String,
    /// Times an operator retried it and it failed again.
    pub retries: u64,
    /// The entry's own fields.
    pub fields: BTreeMap<String, String>,
}

fn as_text<S: serde::Serializer>(id: &EntryId, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&id.to_string())
}

impl DeadLetter {
    fn from_entry(projection: ProjectionName, id: EntryId, all: BTreeMap<String, String>) -> Self {
        let get = |name: &str| all.get(name).cloned().unwrap_or_default();
        let number = |name: &str| all.get(name).and_then(|v| v.parse().ok()).unwrap_or(0);
        DeadLetter {
            projection,
            id,
            source_stream: get("source_stream"),
            source_id: get("source_id"),
            reason: get("reason"),
            deliveries: number("deliveries"),
            consumer: get("consumer"),
            retries: number("retries"),
            fields: all
                .iter()
                .filter(|(name, _)| !META.contains(&name.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }
    }

    /// The entry as it was in its source stream.
    fn original(&self) -> Result<Entry, String> {
        let id: EntryId = self
            .source_id
            .parse()
            .map_err(|e| format!("its source_id `{}` is not an entry ID: {e}", self.source_id))?;
        Ok(Entry {
            stream: self.source_stream.clone(),
            id,
            fields: self
                .fields
                .iter()
                .map(|(k, v)| (k.clone(), Value::BulkString(v.clone().into_bytes())))
                .collect::<HashMap<_, _>>(),
        })
    }
}

/// What a retry did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum RetryOutcome {
    /// Applied (or already in: `skipped`), and removed from the dead letters.
    Applied { applied: u64, skipped: u64 },
    /// It failed again: parked again under a new ID, with this reason.
    ParkedAgain {
        #[serde(serialize_with = "as_text")]
        id: EntryId,
        reason: String,
    },
    /// A rebuild holds the projection's pause lease: nothing was done; retry later.
    Paused,
}

/// Reads every `<group>:dead` entry of these projections, oldest first per group.
pub async fn list(
    conn: &mut RedisConnection,
    projections: &[ProjectionName],
) -> Result<Vec<DeadLetter>, OperationError> {
    let mut out = Vec::new();
    for &projection in projections {
        let key = keys::dead_letters(projection.name());
        let reply: Value = redis::cmd("XRANGE")
            .arg(&key)
            .arg("-")
            .arg("+")
            .query_async(conn)
            .await?;
        out.extend(parse_entries(projection, &key, &reply)?);
    }
    Ok(out)
}

fn parse_entries(
    projection: ProjectionName,
    key: &str,
    reply: &Value,
) -> Result<Vec<DeadLetter>, OperationError> {
    let bad = || OperationError::protocol(key, format!("{reply:?}"));
    let Value::Array(entries) = reply else {
        return Err(bad());
    };
    let mut out = Vec::with_capacity(entries.len());
    for entry in entries {
        let Value::Array(parts) = entry else {
            return Err(bad());
        };
        let id: EntryId = parts
            .first()
            .and_then(text)
            .and_then(|id| id.parse().ok())
            .ok_or_else(bad)?;
        let fields: BTreeMap<String, String> = parts
            .get(1)
            .and_then(pairs)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(k, v)| Some((text(k)?, text(v)?)))
            .collect();
        out.push(DeadLetter::from_entry(projection, id, fields));
    }
    Ok(out)
}

/// Reads one parked entry; `None` when it is not (or no longer) there.
pub async fn get(
    conn: &mut RedisConnection,
    projection: ProjectionName,
    id: EntryId,
) -> Result<Option<DeadLetter>, OperationError> {
    let key = keys::dead_letters(projection.name());
    let reply: Value = redis::cmd("XRANGE")
        .arg(&key)
        .arg(id.to_string())
        .arg(id.to_string())
        .query_async(conn)
        .await?;
    Ok(parse_entries(projection, &key, &reply)?.pop())
}

/// Removes a parked entry; returns whether it was there (and so whether this call removed it).
pub async fn discard(
    conn: &mut RedisConnection,
    projection: ProjectionName,
    id: EntryId,
) -> Result<bool, OperationError> {
    settle(conn, projection, id, "discarded").await
}

/// Removes a parked entry and counts `action` for it, in one step, if it is still parked.
async fn settle(
    conn: &mut RedisConnection,
    projection: ProjectionName,
    id: EntryId,
    action: &str,
) -> Result<bool, OperationError> {
    let group = projection.name();
    let mut cmd = redis::cmd("FCALL");
    cmd.arg("dead_letter_settle")
        .arg(2)
        .arg(keys::dead_letters(group))
        .arg(keys::dead_letter_actions(group))
        .arg(id.to_string())
        .arg(action);
    let removed: i64 = call_runner(conn, &cmd).await?;
    Ok(removed == 1)
}

/// Runs one of the runner library's Functions, loading the library first if this Redis lacks
/// it (a gateway may act on dead letters before any consumer ran there).
async fn call_runner<T: redis::FromRedisValue>(
    conn: &mut RedisConnection,
    cmd: &redis::Cmd,
) -> Result<T, OperationError> {
    match cmd.query_async(conn).await {
        Err(e) if is_missing_function(&e) => {
            load_library(conn, RUNNER_LIBRARY_SOURCE).await?;
            Ok(cmd.query_async(conn).await?)
        }
        other => Ok(other?),
    }
}

/// Applies a parked entry through its projection's Function, as a live consumer would; see the
/// module's notes. `Ok(None)` when the entry is not (or no longer) parked.
pub async fn retry(
    conn: &mut RedisConnection,
    projection: ProjectionName,
    id: EntryId,
) -> Result<Option<RetryOutcome>, OperationError> {
    let Some(letter) = get(conn, projection, id).await? else {
        return Ok(None);
    };
    let outcome = with_projection!(projection, p => apply(conn, &p, &letter).await?);
    let group = projection.name();
    match &outcome {
        Ok(CallOutcome::Done { applied, skipped }) => {
            // Applying twice is harmless (the Function's versions), counting twice is not: only
            // the retry that removes the entry counts; one that finds it gone was too late.
            if !settle(conn, projection, id, "retried").await? {
                return Ok(None);
            }
            Ok(Some(RetryOutcome::Applied {
                applied: *applied,
                skipped: *skipped,
            }))
        }
        Ok(CallOutcome::Paused) => Ok(Some(RetryOutcome::Paused)),
        Ok(CallOutcome::LeaseLost) => Err(OperationError::protocol(
            group,
            "a live call was answered as a rebuild's",
        )),
        Err(reason) => match park_again(conn, &letter, reason).await? {
            Some(new_id) => Ok(Some(RetryOutcome::ParkedAgain {
                id: new_id,
                reason: reason.clone(),
            })),
            // Discarded or retried by someone else meanwhile: nothing is brought back.
            None => Ok(None),
        },
    }
}

/// Decodes and applies one parked entry; `Err(reason)` when it fails again (decoding, or the
/// Function's error reply), `Ok(outcome)` otherwise. A missing Function library is loaded first.
async fn apply<P: Projection>(
    conn: &mut RedisConnection,
    projection: &P,
    letter: &DeadLetter,
) -> Result<Result<CallOutcome, String>, OperationError> {
    let event = match letter.original().and_then(|e| projection.decode(&e)) {
        Ok(event) => event,
        Err(reason) => return Ok(Err(reason)),
    };
    let outcome = match call_function(conn, projection, Mode::Live, &[&event]).await {
        Err(CallFailed::Redis(e)) if is_missing_function(&e) => {
            load_library(conn, projection.library()).await?;
            call_function(conn, projection, Mode::Live, &[&event]).await
        }
        other => other,
    };
    match outcome {
        Ok(outcome) => Ok(Ok(outcome)),
        Err(CallFailed::Reply(e)) => Err(e.into()),
        Err(CallFailed::Redis(e))
            if matches!(
                e.kind(),
                redis::ErrorKind::Server(_) | redis::ErrorKind::Extension
            ) =>
        {
            Ok(Err(e.to_string()))
        }
        Err(e) => Err(e.into()),
    }
}

/// Moves a parked entry to a new ID with its new reason and one more retry, in one step, if it
/// is still parked; `None` when another action took it first.
async fn park_again(
    conn: &mut RedisConnection,
    letter: &DeadLetter,
    reason: &str,
) -> Result<Option<EntryId>, OperationError> {
    let key = keys::dead_letters(letter.projection.name());
    let mut cmd = redis::cmd("FCALL");
    cmd.arg("dead_letter_repark")
        .arg(1)
        .arg(&key)
        .arg(letter.id.to_string())
        .arg("source_stream")
        .arg(&letter.source_stream)
        .arg("source_id")
        .arg(&letter.source_id)
        .arg("reason")
        .arg(reason)
        .arg("deliveries")
        .arg(letter.deliveries)
        .arg("consumer")
        .arg(&letter.consumer)
        .arg("retries")
        .arg(letter.retries + 1);
    for (name, value) in &letter.fields {
        cmd.arg(name).arg(value);
    }
    let new_id: Option<String> = call_runner(conn, &cmd).await?;
    new_id
        .map(|id| {
            id.parse()
                .map_err(|e| OperationError::protocol(&key, format!("XADD answered `{id}`: {e}")))
        })
        .transpose()
}

/// What operators did to a group's dead letters: (retried and applied, discarded).
pub async fn actions(
    conn: &mut RedisConnection,
    projection: ProjectionName,
) -> Result<(u64, u64), OperationError> {
    let counts: HashMap<String, u64> = redis::cmd("HGETALL")
        .arg(keys::dead_letter_actions(projection.name()))
        .query_async(conn)
        .await?;
    let get = |name: &str| counts.get(name).copied().unwrap_or(0);
    Ok((get("retried"), get("discarded")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_parked_entry_keeps_its_own_fields_apart_from_why_it_was_parked() {
        let fields: BTreeMap<String, String> = [
            ("source_stream", "events:customer_created"),
            ("source_id", "5-1"),
            ("reason", "bad entity"),
            ("deliveries", "3"),
            ("consumer", "c1"),
            ("event_id", "e"),
            ("entity", "{}"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let letter = DeadLetter::from_entry(ProjectionName::Crm, EntryId::new(9, 0), fields);
        assert_eq!(letter.deliveries, 3);
        assert_eq!(letter.retries, 0);
        assert_eq!(
            letter.fields.keys().collect::<Vec<_>>(),
            ["entity", "event_id"]
        );
        let original = letter.original().unwrap();
        assert_eq!(original.id, EntryId::new(5, 1));
        assert_eq!(original.text("entity"), Some("{}"));
        let broken = DeadLetter {
            source_id: "x".into(),
            ..letter
        };
        assert!(broken.original().unwrap_err().contains("source_id"));
    }
}
