//! The wire protocol of the `ordershop_store` Function library (`lua/store.lua`): how an
//! [`Append`] is flattened into its KEYS and ARGV, how the Function's answer is read back, and
//! how a call finds the library missing (a server restarted without persistence) and loads it.

use crate::append::{Append, AppendError, Appended};
use crate::codec::encode_entity;
use crate::keys::{self, Stream};
use ordershop_domain::Action;
use ordershop_redis::RedisConnection;
use redis::Value;
use std::collections::HashMap;

/// The Function library, loaded at start-up.
pub const STORE_LIBRARY: &str = include_str!("lua/store.lua");

/// `FUNCTION LOAD REPLACE` of a library's source.
pub async fn load_library(
    conn: &mut RedisConnection,
    source: &str,
) -> Result<(), redis::RedisError> {
    let _: String = redis::cmd("FUNCTION")
        .arg("LOAD")
        .arg("REPLACE")
        .arg(source)
        .query_async(conn)
        .await?;
    Ok(())
}

/// Sends one call to a store Function; when the server lost its Functions (e.g. restarted
/// without persistence), loads the library and sends it again.
pub(crate) async fn call_loading_functions<T: redis::FromRedisValue>(
    conn: &mut RedisConnection,
    cmd: &redis::Cmd,
) -> Result<T, redis::RedisError> {
    match cmd.query_async(conn).await {
        Err(e) if is_missing_function(&e) => {
            load_library(conn, STORE_LIBRARY).await?;
            cmd.query_async(conn).await
        }
        other => other,
    }
}

/// Sends a pipeline of store calls (their errors kept one by one). A server without the
/// Function fails every call alike, so none ran: then the library is loaded and the pipeline
/// sent again.
pub(crate) async fn query_loading_functions(
    conn: &mut RedisConnection,
    pipe: &redis::Pipeline,
) -> Result<Vec<redis::RedisResult<Value>>, redis::RedisError> {
    let replies: Vec<redis::RedisResult<Value>> = pipe.query_async(conn).await?;
    if replies
        .first()
        .is_some_and(|r| r.as_ref().is_err_and(is_missing_function))
    {
        load_library(conn, STORE_LIBRARY).await?;
        return pipe.query_async(conn).await;
    }
    Ok(replies)
}

pub fn is_missing_function(e: &redis::RedisError) -> bool {
    e.to_string().contains("Function not found")
}

/// The flat KEYS/ARGV encoding of an [`Append`] (see `lua/store.lua`).
pub(crate) struct FcallArgs {
    keys: Vec<String>,
    args: Vec<String>,
}

impl FcallArgs {
    pub(crate) fn build(append: &Append) -> Self {
        let mut keys = vec![keys::clock()];
        let mut index: HashMap<String, usize> = HashMap::new();
        let mut key_index = |key: String, keys: &mut Vec<String>| -> String {
            let i = *index.entry(key.clone()).or_insert_with(|| {
                keys.push(key);
                keys.len()
            });
            i.to_string()
        };
        let mut args = Vec::with_capacity(
            4 + append.metadata.len() * 2
                + append.expectations.len() * 3
                + append.claims.len() * 4
                + append.events.len() * 8
                + 1,
        );
        match &append.idempotency {
            Some(record) => {
                args.push("1".to_owned());
                args.push(key_index(record.key.clone(), &mut keys));
                args.push(record.fingerprint.clone());
                args.push(record.response.clone());
                args.push(record.ttl_ms.max(1).to_string());
            }
            None => args.push("0".to_owned()),
        }
        args.push(append.metadata.len().to_string());
        for (name, value) in &append.metadata {
            args.push((*name).to_owned());
            args.push(value.clone());
        }
        args.push(append.expectations.len().to_string());
        for e in &append.expectations {
            args.push(key_index(keys::heads(e.kind), &mut keys));
            args.push(e.id.to_string());
            args.push(e.version.to_string());
        }
        args.push(append.claims.len().to_string());
        for c in &append.claims {
            args.push(key_index(c.index.key(), &mut keys));
            args.push(c.value.to_string());
            args.push(c.owner.to_string());
            args.push(if c.release { "release" } else { "claim" }.to_owned());
        }
        args.push(append.events.len().to_string());
        for e in &append.events {
            let kind = e.change.entity.kind();
            let stream = Stream::new(kind, e.change.action);
            args.push(key_index(stream.key(), &mut keys));
            args.push(key_index(keys::heads(kind), &mut keys));
            args.push(e.change.entity.id().to_string());
            args.push(e.event_id.to_string());
            args.push(e.version.to_string());
            args.push(encode_entity(&e.change.entity));
            args.push(
                if e.change.action == Action::Deleted {
                    "1"
                } else {
                    "0"
                }
                .to_owned(),
            );
        }
        // Each event's own request id, last (see store.lua): only when some event has one.
        if append.events.iter().any(|e| e.request_id.is_some()) {
            args.push(append.events.len().to_string());
            for e in &append.events {
                args.push(e.request_id.clone().unwrap_or_default());
            }
        }
        Self { keys, args }
    }

    pub(crate) fn command(&self) -> redis::Cmd {
        let mut cmd = redis::cmd("FCALL");
        cmd.arg("append_guarded")
            .arg(self.keys.len())
            .arg(&self.keys)
            .arg(&self.args);
        cmd
    }
}

fn as_i64(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        Value::SimpleString(s) => s.parse().ok(),
        _ => None,
    }
}

/// Whether the store cannot append after `id` (the rule of `xadd` in `lua/store.lua`): either
/// part too long for Lua's numbers to hold exactly, or more than a day ahead of `now_ms`.
pub(crate) fn id_out_of_reach(id: &str, now_ms: u64) -> bool {
    const MAX_AHEAD_MS: u64 = 24 * 3600 * 1000;
    const MAX_EXACT: u64 = 9_007_199_254_740_991;
    let Some((ms, seq)) = id.split_once('-') else {
        return false;
    };
    if ms.len() > 15 || seq.len() > 15 {
        return true;
    }
    match (ms.parse::<u64>(), seq.parse::<u64>()) {
        (Ok(ms), Ok(seq)) => seq >= MAX_EXACT || ms > now_ms + MAX_AHEAD_MS,
        _ => false,
    }
}

pub(crate) fn as_string(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

pub(crate) fn interpret_reply(append: &Append, reply: Value) -> Result<Vec<Appended>, AppendError> {
    let protocol = |what: &str| AppendError::Protocol(format!("{what}: {reply:?}"));
    let Value::Array(items) = &reply else {
        return Err(protocol("not an array"));
    };
    let status = items
        .first()
        .and_then(as_i64)
        .ok_or_else(|| protocol("no status"))?;
    let position = || {
        items
            .get(1)
            .and_then(as_i64)
            .and_then(|i| usize::try_from(i - 1).ok())
            .ok_or_else(|| protocol("no position"))
    };
    match status {
        2 => Err(AppendError::Duplicate {
            response: items.get(1).and_then(as_string).unwrap_or_default(),
        }),
        -2 => Err(AppendError::KeyReused),
        -3 => Err(AppendError::Blocked {
            stream: items.get(1).and_then(as_string).unwrap_or_default(),
            entry: items.get(2).and_then(as_string).unwrap_or_default(),
        }),
        1 => {
            if items.len() != append.events.len() + 1 {
                return Err(protocol("wrong number of IDs"));
            }
            append
                .events
                .iter()
                .zip(&items[1..])
                .map(|(event, id)| {
                    let entry_id = as_string(id)
                        .and_then(|s| s.parse().ok())
                        .ok_or_else(|| protocol("bad entry ID"))?;
                    Ok(Appended {
                        stream: Stream::new(event.change.entity.kind(), event.change.action),
                        entry_id,
                        event_id: event.event_id,
                        entity_id: event.change.entity.id(),
                        version: event.version,
                    })
                })
                .collect()
        }
        0 => {
            let e = append
                .expectations
                .get(position()?)
                .ok_or_else(|| protocol("bad expectation index"))?;
            let actual = items.get(2).and_then(as_i64).unwrap_or_default();
            Err(AppendError::VersionConflict {
                kind: e.kind,
                id: e.id,
                expected: e.version,
                actual: actual.max(0) as u64,
            })
        }
        -1 => {
            let c = append
                .claims
                .get(position()?)
                .ok_or_else(|| protocol("bad claim index"))?;
            Err(AppendError::UniqueConflict {
                index: c.index,
                value: c.value,
                holder: items.get(2).and_then(as_string).unwrap_or_default(),
            })
        }
        _ => Err(protocol("unknown status")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_out_of_reach_at_the_end_of_the_id_space_or_a_day_ahead() {
        let now = 1_800_000_000_000;
        assert!(id_out_of_reach(
            "18446744073709551615-18446744073709551615",
            now
        ));
        assert!(id_out_of_reach(&format!("{}-0", now + 25 * 3_600_000), now));
        assert!(!id_out_of_reach(&format!("{}-0", now + 3_600_000), now));
        assert!(!id_out_of_reach(&format!("{now}-999"), now));
        assert!(!id_out_of_reach("0-0", now));
    }
}
