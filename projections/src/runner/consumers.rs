//! A group's consumers as Redis lists them (`XINFO CONSUMERS`), read in one place for the two
//! that need them: the operator's `status` (`ordershop-operations`) reports them, and the runner
//! forgets the ones that are gone, so that `status` lists live instances only.

use crate::error::ProjectionError;
use crate::read::{pairs, text};
use ordershop_redis::RedisConnection;
use redis::Value;
use std::time::Duration;
use tracing::info;

/// A consumer with nothing pending that has not read for this long is removed from its group.
pub const FORGET_AFTER: Duration = Duration::from_secs(24 * 3600);
/// How often a runner looks for such consumers.
pub(super) const CLEANUP_EVERY: Duration = Duration::from_secs(600);

/// One consumer of a group on one stream. A field Redis did not report is `None`, so that
/// nothing is decided on a guess.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consumer {
    pub name: String,
    /// Entries delivered to it and not acknowledged yet.
    pub pending: Option<u64>,
    /// Milliseconds since it last read.
    pub idle_ms: Option<u64>,
}

impl Consumer {
    /// Holds nothing and has not read for longer than `after`.
    fn is_gone(&self, after: Duration) -> bool {
        self.pending == Some(0)
            && self
                .idle_ms
                .is_some_and(|idle| idle > after.as_millis() as u64)
    }
}

/// The consumers of `group` on `stream`.
pub async fn list(
    conn: &mut RedisConnection,
    stream: &str,
    group: &str,
) -> Result<Vec<Consumer>, ProjectionError> {
    let listed: Value = redis::cmd("XINFO")
        .arg("CONSUMERS")
        .arg(stream)
        .arg(group)
        .query_async(conn)
        .await?;
    let Value::Array(listed) = listed else {
        return Err(ProjectionError::protocol(
            "XINFO CONSUMERS",
            format!("{listed:?}"),
        ));
    };
    Ok(listed.iter().filter_map(parse_consumer).collect())
}

/// One consumer's fields (a RESP2 array or a RESP3 map); `None` without a name.
fn parse_consumer(value: &Value) -> Option<Consumer> {
    let fields = pairs(value)?;
    let field = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| text(k).as_deref() == Some(name))
            .map(|(_, v)| *v)
    };
    let number = |name: &str| match field(name)? {
        Value::Int(n) => u64::try_from(*n).ok(),
        other => text(other)?.parse().ok(),
    };
    Some(Consumer {
        name: field("name").and_then(text)?,
        pending: number("pending"),
        idle_ms: number("idle"),
    })
}

/// Removes from `group` on `stream` the consumers that hold nothing and have not read for
/// [`FORGET_AFTER`] (instances that stopped for good), never `me`. Harmless to a consumer that
/// was only quiet: Redis re-creates it at its next read.
pub(super) async fn forget_gone(
    conn: &mut RedisConnection,
    stream: &str,
    group: &str,
    me: &str,
) -> Result<(), ProjectionError> {
    for consumer in list(conn, stream, group).await? {
        if consumer.is_gone(FORGET_AFTER) && consumer.name != me {
            let _: i64 = redis::cmd("XGROUP")
                .arg("DELCONSUMER")
                .arg(stream)
                .arg(group)
                .arg(&consumer.name)
                .query_async(conn)
                .await?;
            super::health::forget(conn, group, &consumer.name).await?;
            info!(
                group,
                stream,
                consumer = consumer.name,
                "forgot a gone consumer"
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn a_consumer_is_read_from_either_protocol() {
        let resp2 = Value::Array(vec![
            bulk("name"),
            bulk("cache-a"),
            bulk("pending"),
            Value::Int(0),
            bulk("idle"),
            Value::Int(7),
        ]);
        let resp3 = Value::Map(vec![
            (bulk("name"), bulk("cache-a")),
            (bulk("pending"), Value::Int(0)),
            (bulk("idle"), Value::Int(7)),
        ]);
        let expected = Consumer {
            name: "cache-a".to_owned(),
            pending: Some(0),
            idle_ms: Some(7),
        };
        assert_eq!(parse_consumer(&resp2), Some(expected.clone()));
        assert_eq!(parse_consumer(&resp3), Some(expected));
        assert_eq!(parse_consumer(&Value::Array(vec![bulk("pending")])), None);
    }

    #[test]
    fn only_a_long_idle_consumer_holding_nothing_is_gone() {
        let day = FORGET_AFTER.as_millis() as u64;
        let consumer = |pending, idle_ms| Consumer {
            name: "c".to_owned(),
            pending,
            idle_ms,
        };
        assert!(consumer(Some(0), Some(day + 1)).is_gone(FORGET_AFTER));
        assert!(!consumer(Some(1), Some(day + 1)).is_gone(FORGET_AFTER));
        assert!(!consumer(Some(0), Some(day)).is_gone(FORGET_AFTER));
        assert!(!consumer(None, Some(day + 1)).is_gone(FORGET_AFTER));
        assert!(!consumer(Some(0), None).is_gone(FORGET_AFTER));
    }
}
