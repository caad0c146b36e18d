//! `ordershop events`: browse the log. All selected streams merged in ID order (the true order
//! of events), filtered by type, action, entity and time, optionally following new events.

use crate::admin::shop_redis;
use anstream::println;
use anstyle::{AnsiColor, Style};
use anyhow::Context;
use chrono::DateTime;
use ordershop_domain::{Action, Entity, EntityKind};
use ordershop_eventstore::{EntryId, EventStore, Follow, RawEntry, StoredEvent, Stream};
use ordershop_redis::{Backoff, RedisConnection};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use uuid::Uuid;

/// What to show.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub kinds: Vec<EntityKind>,
    pub actions: Vec<Action>,
    pub entity: Option<Uuid>,
    /// Only events at or after this unix time in ms.
    pub since_ms: Option<u64>,
    /// Only events before this unix time in ms.
    pub until_ms: Option<u64>,
}

impl EventFilter {
    fn streams(&self) -> Vec<Stream> {
        Stream::selected(&self.kinds, &self.actions)
    }

    fn start(&self) -> EntryId {
        self.since_ms.map_or(EntryId::ZERO, |ms| {
            EntryId::new(ms.saturating_sub(1), u64::MAX)
        })
    }

    fn accepts(&self, event: &StoredEvent) -> bool {
        self.entity.is_none_or(|id| id == event.entity_id())
            && self.until_ms.is_none_or(|until| event.id.ms < until)
    }
}

/// Parses `--since`/`--until`: a duration back from now (`90s`, `10m`, `2h`, `7d`) or an
/// RFC 3339 time (`2026-11-21T16:00:00Z`). Returns unix ms.
pub fn parse_time(s: &str) -> Result<u64, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return u64::try_from(t.timestamp_millis()).map_err(|_| format!("`{s}` is before 1970"));
    }
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("`{s}` is neither a duration like 10m nor an RFC 3339 time"))?;
    let seconds = match unit {
        "s" => n,
        "m" | "" => n * 60,
        "h" => n * 3_600,
        "d" => n * 86_400,
        _ => return Err(format!("`{s}`: unknown unit `{unit}` (use s, m, h or d)")),
    };
    Ok(now_ms().saturating_sub(seconds * 1_000))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn short(id: impl ToString) -> String {
    id.to_string().chars().take(8).collect()
}

/// A one-line summary of an entity.
pub fn summary(entity: &Entity) -> String {
    match entity {
        Entity::Customer(c) => format!("{} <{}>", c.name, c.email),
        Entity::Product(p) => format!("{} at {}", p.name, p.price),
        Entity::Inventory(i) => format!("product {} amount {}", short(i.product_id), i.amount),
        Entity::Order(o) => format!(
            "customer {}, {} item(s), total {}",
            short(o.customer_id),
            o.product_ids.len(),
            o.total
        ),
        Entity::Billing(b) => format!(
            "order {}, {}",
            short(b.order_id),
            if b.done { "done" } else { "open" }
        ),
    }
}

fn print_event(event: &StoredEvent, json: bool) {
    if json {
        let line = ordershop_services::wire::event_json(event);
        println!("{line}");
        return;
    }
    let dim = Style::new().dimmed();
    let colour = match event.stream.action {
        Action::Created => AnsiColor::Green,
        Action::Updated => AnsiColor::Yellow,
        Action::Deleted => AnsiColor::Red,
    };
    let action = Style::new().fg_color(Some(colour.into()));
    println!(
        "{dim}{}{dim:#}  {action}{:<18}{action:#} {}  v{:<3} {}",
        event.id.time().format("%Y-%m-%d %H:%M:%S%.6f UTC"),
        format!("{}_{}", event.kind(), event.stream.action),
        event.entity_id(),
        event.version,
        summary(&event.change.entity),
    );
}

fn print_entry(entry: &RawEntry, filter: &EventFilter, json: bool) -> bool {
    match entry.decode() {
        Ok(event) if filter.accepts(&event) => {
            print_event(&event, json);
            true
        }
        Ok(_) => false,
        Err(e) => {
            tracing::warn!("{e}");
            false
        }
    }
}

pub async fn browse(
    filter: EventFilter,
    follow: bool,
    json: bool,
    limit: Option<u64>,
) -> anyhow::Result<ExitCode> {
    let redis = shop_redis()?;
    let store = EventStore::connect(&redis)
        .await
        .with_context(|| format!("cannot reach Redis at {}", redis.redacted_url()))?;
    let streams = filter.streams();
    let mut shown = 0u64;
    // Prints one entry; true when the limit or the end of the time window is reached.
    let mut show = |entry: &RawEntry| -> bool {
        if filter.until_ms.is_some_and(|until| entry.id.ms >= until) {
            return true;
        }
        if print_entry(entry, &filter, json) {
            shown += 1;
        }
        limit.is_some_and(|l| shown >= l)
    };
    if !follow {
        let mut replay = store.replay(streams, filter.start()).await?;
        while let Some(batch) = replay.next_batch().await? {
            if batch.iter().any(&mut show) {
                return Ok(ExitCode::SUCCESS);
            }
        }
        if shown == 0 && !json {
            eprintln!("no events match");
        }
        return Ok(ExitCode::SUCCESS);
    }
    // Following: a stopped or restarting shop is waited for, not a reason to quit.
    let wake = RedisConnection::new(&redis)
        .with_context(|| format!("cannot connect to Redis at {}", redis.redacted_url()))?;
    let mut follow = Follow::new(store, wake, streams, filter.start());
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    let mut away = false;
    loop {
        let batch = tokio::select! {
            batch = follow.next_batch() => batch,
            _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
        };
        match batch {
            Ok(batch) => {
                if away {
                    eprintln!("Redis at {} is back; following", redis.redacted_url());
                    away = false;
                }
                backoff.reset();
                if batch.iter().any(&mut show) {
                    return Ok(ExitCode::SUCCESS);
                }
            }
            Err(e) => {
                let pause = backoff.next_pause();
                if !away {
                    eprintln!(
                        "cannot read the log from Redis at {}: {e}; retrying until it is back (Ctrl-C to stop)",
                        redis.redacted_url()
                    );
                    away = true;
                }
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_as_durations_or_rfc3339() {
        // Bracketed by the clock read before and after: parse_time reads it in between.
        let before = now_ms();
        let ten_minutes_ago = parse_time("10m").unwrap();
        let after = now_ms();
        assert!(
            (before - 600_000..=after - 600_000).contains(&ten_minutes_ago),
            "{before} {ten_minutes_ago} {after}"
        );
        assert_eq!(parse_time("1970-01-01T00:00:01Z"), Ok(1_000));
        assert!(parse_time("10 parsecs").is_err());
        assert!(parse_time("yesterday").is_err());
    }

    #[test]
    fn an_id_is_shown_as_its_microsecond() {
        let t = EntryId::new(1_700_000_000_123, 456).time();
        assert_eq!(t.format("%H:%M:%S%.6f").to_string(), "22:13:20.123456");
    }
}
