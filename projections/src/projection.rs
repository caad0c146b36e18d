//! The small traits a projection implements so that one runner (and one rebuilder) serves them
//! all: a stable name, the streams it reads, its Function library, how an entry decodes, the
//! one Function call that applies a batch atomically, and what its work means to the metrics.
//! Each projection says these things about itself here and nowhere else; a
//! [`ProjectionName`](crate::ProjectionName) reaches them through `with_projection!`.

use crate::error::ProjectionError;
use ordershop_eventstore::codec::RawEntry;
use ordershop_eventstore::{EntryId, StoredEvent, Stream};
use ordershop_redis::RedisConnection;
use ordershop_telemetry::Metrics;
use redis::Value;
use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

/// A stream entry handed to a projection.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The stream's key.
    pub stream: String,
    pub id: EntryId,
    pub fields: HashMap<String, Value>,
}

impl Entry {
    /// A field as UTF-8 text, if present.
    pub fn text(&self, name: &str) -> Option<&str> {
        match self.fields.get(name)? {
            Value::BulkString(bytes) => std::str::from_utf8(bytes).ok(),
            Value::SimpleString(s) => Some(s),
            _ => None,
        }
    }

    /// The fields as (name, bytes) pairs, e.g. to copy the entry to a dead-letter stream.
    pub fn field_bytes(&self) -> Vec<(String, Vec<u8>)> {
        let mut fields: Vec<(String, Vec<u8>)> = self
            .fields
            .iter()
            .map(|(name, value)| {
                let bytes = match value {
                    Value::BulkString(bytes) => bytes.clone(),
                    Value::SimpleString(s) => s.clone().into_bytes(),
                    Value::Int(i) => i.to_string().into_bytes(),
                    other => format!("{other:?}").into_bytes(),
                };
                (name.clone(), bytes)
            })
            .collect();
        fields.sort();
        fields
    }

    /// Decodes an event-stream entry with the store's codec.
    pub fn decode_event(&self) -> Result<StoredEvent, String> {
        let stream: Stream = self.stream.parse()?;
        RawEntry {
            stream,
            id: self.id,
            fields: self.fields.clone(),
        }
        .decode()
        .map_err(|e| e.reason)
    }
}

impl From<RawEntry> for Entry {
    fn from(raw: RawEntry) -> Self {
        Entry {
            stream: raw.stream.key(),
            id: raw.id,
            fields: raw.fields,
        }
    }
}

/// Who is applying: the live consumers, or a rebuild holding the pause lease with its token.
/// Every projection Function first checks it: live batches are refused while a rebuild holds
/// the lease, and a rebuild's batches are refused once it has lost the lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode<'a> {
    Live,
    Rebuild { token: &'a str, lease: Duration },
}

impl Mode<'_> {
    /// The Functions' common leading arguments: mode, token, lease in ms.
    pub fn header(&self) -> [String; 3] {
        match self {
            Mode::Live => ["live".into(), String::new(), "0".into()],
            Mode::Rebuild { token, lease } => [
                "rebuild".into(),
                (*token).to_owned(),
                lease.as_millis().max(1).to_string(),
            ],
        }
    }
}

/// One event's plan as the JSON its Function reads, with every key the plan names. The call
/// declares those keys (after its fixed ones): on a Redis Cluster that is what keeps a call
/// from running on a node that has only part of the shop's keys while its slot migrates (a
/// call whose declared keys are partly moved is refused with TRYAGAIN and retried). Keys the
/// Function derives from what it reads (an earlier link, a record's earlier contribution, an
/// order's customer) are not known here: the Function finds them before writing anything and
/// answers `{-3, key...}`, and [`call_function`] calls again declaring them
/// (docs/adr/0006-one-slot-per-shop.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedPlan {
    pub json: String,
    pub keys: Vec<String>,
}

impl EncodedPlan {
    pub fn new(plan: &impl serde::Serialize, keys: Vec<String>) -> Result<Self, String> {
        let json =
            serde_json::to_string(plan).map_err(|e| format!("cannot encode the plan: {e}"))?;
        Ok(Self { json, keys })
    }
}

/// `FCALL <function>` with the fixed keys, then every key the plans name and `more_keys` (once
/// each, in order), then `args` and the plans.
pub fn plan_call(
    function: &str,
    fixed_keys: &[String],
    args: &[String],
    plans: &[&EncodedPlan],
    more_keys: &[String],
) -> redis::Cmd {
    let mut declared: Vec<&str> = fixed_keys.iter().map(String::as_str).collect();
    let mut named: Vec<&str> = plans
        .iter()
        .flat_map(|p| p.keys.iter().map(String::as_str))
        .chain(more_keys.iter().map(String::as_str))
        .filter(|k| !fixed_keys.iter().any(|f| f == k))
        .collect();
    named.sort_unstable();
    named.dedup();
    declared.extend(named);
    let mut cmd = redis::cmd("FCALL");
    cmd.arg(function)
        .arg(declared.len())
        .arg(&declared[..])
        .arg(args);
    for plan in plans {
        cmd.arg(plan.json.as_str());
    }
    cmd
}

/// What a projection Function answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallOutcome {
    /// The batch is applied: `applied` events changed the state, `skipped` were already in it.
    Done { applied: u64, skipped: u64 },
    /// A rebuild holds the pause lease: nothing was applied, retry later.
    Paused,
    /// (Rebuild only) the lease is no longer this rebuild's: nothing was applied.
    LeaseLost,
}

/// How many times one batch is sent again with the keys its Function found it would touch
/// undeclared (each round can only find keys named by what the previous round declared).
const MAX_KEY_ROUNDS: usize = 4;

/// Why a projection's Function call did not give an outcome.
#[derive(Debug)]
pub enum CallFailed {
    /// Redis refused or failed the call (the Function's own error included).
    Redis(redis::RedisError),
    /// It answered something else than [`CallOutcome`] expects.
    Reply(ProjectionError),
}

impl From<CallFailed> for ProjectionError {
    fn from(e: CallFailed) -> Self {
        match e {
            CallFailed::Redis(e) => ProjectionError::Redis(e),
            CallFailed::Reply(e) => e,
        }
    }
}

/// Applies `events` with the projection's Function: when it answers that the batch would touch
/// keys the call did not declare (`{-3, key...}`, written nothing), calls again declaring them.
/// The runner calls it live; the operator's rebuild (under its lease) and dead-letter retry
/// (live) call it from `ordershop-operations`.
pub async fn call_function<P: Projection>(
    conn: &mut RedisConnection,
    projection: &P,
    mode: Mode<'_>,
    events: &[&P::Event],
) -> Result<CallOutcome, CallFailed> {
    let mut more_keys: Vec<String> = Vec::new();
    for _ in 0..MAX_KEY_ROUNDS {
        let reply: Value = projection
            .apply_call(mode, events, &more_keys)
            .query_async(conn)
            .await
            .map_err(CallFailed::Redis)?;
        match undeclared_keys(&reply) {
            Some(keys) => more_keys.extend(keys),
            None => {
                return CallOutcome::parse(projection.name(), &reply).map_err(CallFailed::Reply)
            }
        }
    }
    Err(CallFailed::Reply(ProjectionError::protocol(
        projection.name(),
        format!(
            "the batch still named undeclared keys after {MAX_KEY_ROUNDS} calls: {more_keys:?}"
        ),
    )))
}

/// The keys of a `{-3, key...}` answer.
fn undeclared_keys(reply: &Value) -> Option<Vec<String>> {
    let Value::Array(items) = reply else {
        return None;
    };
    if !matches!(items.first(), Some(Value::Int(-3))) {
        return None;
    }
    Some(
        items[1..]
            .iter()
            .filter_map(|k| redis::from_redis_value_ref::<String>(k).ok())
            .collect(),
    )
}

impl CallOutcome {
    pub(crate) fn parse(function: &str, reply: &Value) -> Result<Self, ProjectionError> {
        let bad = || ProjectionError::protocol(function, format!("{reply:?}"));
        let Value::Array(items) = reply else {
            return Err(bad());
        };
        let int = |i: usize| match items.get(i) {
            Some(Value::Int(n)) => Some(*n),
            _ => None,
        };
        match int(0).ok_or_else(bad)? {
            0 => Ok(CallOutcome::Done {
                applied: int(1).and_then(|n| u64::try_from(n).ok()).ok_or_else(bad)?,
                skipped: int(2).and_then(|n| u64::try_from(n).ok()).ok_or_else(bad)?,
            }),
            -1 => Ok(CallOutcome::Paused),
            -2 => Ok(CallOutcome::LeaseLost),
            _ => Err(bad()),
        }
    }
}

/// A projection the runner can drive. `name()` is its consumer group and must never change.
pub trait Projection: Clone + Send + Sync + 'static {
    /// An entry decoded into what the Function call needs.
    type Event: Send + Sync;

    /// The consumer group's name (also the prefix of the projection's bookkeeping keys).
    fn name(&self) -> &'static str;

    /// The stream keys its group reads.
    fn streams(&self) -> Vec<String>;

    /// The source of its Function library, loaded with `FUNCTION LOAD REPLACE`.
    fn library(&self) -> &'static str;

    /// The name that library registers (what a health check looks for).
    fn library_name(&self) -> &'static str;

    /// Decodes one entry, or says why it is poison (it will be retried, then dead-lettered).
    fn decode(&self, entry: &Entry) -> Result<Self::Event, String>;

    /// The one Function call that applies `events` (in this order) atomically, together with
    /// the record of what was applied, after checking the pause lease for `mode`. It must
    /// answer as [`CallOutcome`] parses.
    ///
    /// `more_keys` are keys to declare besides those the call names itself: what an earlier
    /// call of the same batch answered it would touch undeclared (`{-3, key...}`, see
    /// [`EncodedPlan`]); only the CRM's and the mailer's Functions answer that.
    fn apply_call(
        &self,
        mode: Mode<'_>,
        events: &[&Self::Event],
        more_keys: &[String],
    ) -> redis::Cmd;

    /// Counts `applied` events a live consumer applied. A projection whose applying is itself
    /// an effect the operator watches (a delivery) counts that too.
    fn record_applied(&self, metrics: &Metrics, applied: u64) {
        metrics.events_applied(self.name(), applied);
    }
}

/// A projection that is a pure view of the log, so it can be wiped and rebuilt by a replay.
/// (The message sink is not one: re-running it would mean re-sending.)
pub trait Replayable: Projection {
    /// The event streams it is derived from (replayed merged in ID order).
    fn event_streams(&self) -> Vec<Stream>;

    /// SCAN MATCH patterns (or exact key names) covering every key of its state: what a rebuild
    /// wipes, and what its tests compare.
    fn state_patterns(&self) -> Vec<String>;

    /// Work after the log was replayed, still under the pause lease.
    fn after_replay(
        &self,
        conn: &mut RedisConnection,
    ) -> impl Future<Output = Result<(), ProjectionError>> + Send {
        let _ = conn;
        async { Ok(()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_naming_undeclared_keys_is_told_from_an_outcome() {
        let keys = |k: &str| Value::BulkString(k.as_bytes().to_vec());
        let reply = Value::Array(vec![Value::Int(-3), keys("{a}:crm:order:1"), keys("{a}:x")]);
        assert_eq!(
            undeclared_keys(&reply),
            Some(vec!["{a}:crm:order:1".to_owned(), "{a}:x".to_owned()])
        );
        let done = Value::Array(vec![Value::Int(0), Value::Int(2), Value::Int(0)]);
        assert_eq!(undeclared_keys(&done), None);
        assert_eq!(
            CallOutcome::parse("crm", &done).ok(),
            Some(CallOutcome::Done {
                applied: 2,
                skipped: 0
            })
        );
    }
}
