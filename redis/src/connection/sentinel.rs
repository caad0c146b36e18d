//! Watching the sentinels, so that a planned failover loses no acknowledged write.
//!
//! A failover ordered with `SENTINEL FAILOVER` leaves the old primary up, still a primary in
//! its own eyes, until the sentinels turn it into a replica (seconds later); whatever is
//! written to it meanwhile is thrown away when it resynchronises. So a connection must leave
//! the old primary *before* the replica is promoted, not after.
//!
//! Every sentinel publishes its progress on pub/sub. The leader announces the replica it
//! selected (`+selected-slave`, `+failover-state-send-slaveof-noone`) one step of its state
//! machine (about 100 ms) before it sends `REPLICAOF NO ONE`; on the first such event for our
//! primary, the connection is dropped and *fenced*: commands fail at once (503, retry later)
//! instead of going to the old primary. The fence lifts when the sentinels announce the new
//! primary (`+switch-master`), the end or abort of the failover, or after [`MAX_FENCE`].
//! Besides the events, the sentinels are asked every [`POLL`] which server is the primary, so a
//! lost subscription costs at most that long.

use super::Shared;
use redis::aio::MultiplexedConnection;
use std::collections::HashMap;
use std::sync::Weak;
use std::time::Duration;

/// The longest a failover in progress keeps commands away from Redis.
pub const MAX_FENCE: Duration = Duration::from_secs(10);
/// How often the sentinels are asked which server is the primary.
pub const POLL: Duration = Duration::from_secs(1);
/// The pause before subscribing again to a sentinel that went away.
const RESUBSCRIBE: Duration = Duration::from_millis(500);

/// Events that announce a failover of a primary, before any replica is promoted.
const STARTS: [&str; 4] = [
    "+try-failover",
    "+selected-slave",
    "+failover-state-send-slaveof-noone",
    "+promoted-slave",
];
/// Events after which the sentinels name the primary to use.
const ENDS: [&str; 2] = ["+switch-master", "+failover-end"];
/// A failover that was given up (`-failover-abort-not-elected`, ...).
const ABORTS: &str = "-failover-abort*";

/// What an event says about the primary named `master`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Event {
    /// A failover of the primary at this `host:port` began: stop writing to it.
    Starts { primary: String },
    /// The failover ended or was given up: ask the sentinels again.
    Ends,
}

/// Reads a sentinel event: its channel and payload (`master <name> <ip> <port>`, or
/// `<type> <instance> <ip> <port> @ <name> <ip> <port>`, or for `+switch-master`
/// `<name> <old ip> <old port> <new ip> <new port>`).
pub(crate) fn parse_event(channel: &str, payload: &str, master: &str) -> Option<Event> {
    let words: Vec<&str> = payload.split_whitespace().collect();
    // Where the primary's name is, and its address after it.
    let name_at = match words.iter().position(|w| *w == "@") {
        Some(at) => at + 1,
        None if channel == "+switch-master" => 0,
        None if words.first() == Some(&"master") => 1,
        None => return None,
    };
    if words.get(name_at) != Some(&master) {
        return None;
    }
    if STARTS.contains(&channel) {
        let (host, port) = (words.get(name_at + 1)?, words.get(name_at + 2)?);
        Some(Event::Starts {
            primary: format!("{host}:{port}"),
        })
    } else if ENDS.contains(&channel) || channel.starts_with("-failover-abort") {
        Some(Event::Ends)
    } else {
        None
    }
}

/// Subscribes to one sentinel's events for as long as the connection lives.
pub(crate) async fn follow(shared: Weak<Shared>, sentinel: redis::Client, master: String) {
    loop {
        let Some(alive) = shared.upgrade() else {
            return;
        };
        let subscribed = async {
            let mut pubsub = sentinel.get_async_pubsub().await?;
            pubsub.subscribe(&STARTS[..]).await?;
            pubsub.subscribe(&ENDS[..]).await?;
            pubsub.psubscribe(ABORTS).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        let subscribed = tokio::time::timeout(alive.connect_within, subscribed).await;
        drop(alive);
        if let Ok(Ok(pubsub)) = subscribed {
            let mut messages = pubsub.into_on_message();
            let mut alive_check = tokio::time::interval(POLL);
            loop {
                // Wakes every `POLL` too, so a subscription whose connection handle is gone
                // ends even when its sentinel stays quiet.
                let message = tokio::select! {
                    message = futures::StreamExt::next(&mut messages) => message,
                    _ = alive_check.tick() => {
                        if shared.strong_count() == 0 {
                            return;
                        }
                        continue;
                    }
                };
                let Some(message) = message else { break };
                let Some(shared) = shared.upgrade() else {
                    return;
                };
                let payload: String = message.get_payload().unwrap_or_default();
                match parse_event(message.get_channel_name(), &payload, &master) {
                    Some(Event::Starts { primary }) => {
                        shared.fence(message.get_channel_name(), &primary)
                    }
                    Some(Event::Ends) => shared.unfence(message.get_channel_name()),
                    None => {}
                }
            }
        }
        tokio::time::sleep(RESUBSCRIBE).await;
    }
}

/// What one sentinel says about the primary: its address and the configuration epoch of that
/// answer (each failover raises the epoch, so the highest answer is the newest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Answer {
    pub host: String,
    pub port: u16,
    pub epoch: u64,
    /// The sentinel is carrying out a failover of it (its answer is about to change).
    pub failing_over: bool,
}

/// `SENTINEL MASTER <name>` on one sentinel.
async fn ask_one(
    conn: &mut MultiplexedConnection,
    master: &str,
) -> Result<Answer, redis::RedisError> {
    let fields: HashMap<String, String> = match redis::cmd("SENTINEL")
        .arg("MASTER")
        .arg(master)
        .query_async::<redis::Value>(conn)
        .await?
    {
        redis::Value::Map(pairs) => pairs
            .into_iter()
            .filter_map(|(k, v)| {
                Some((
                    redis::from_redis_value(k).ok()?,
                    redis::from_redis_value(v).ok()?,
                ))
            })
            .collect(),
        other => {
            let flat: Vec<String> = redis::from_redis_value(other)?;
            flat.chunks(2)
                .filter_map(|pair| Some((pair.first()?.clone(), pair.get(1)?.clone())))
                .collect()
        }
    };
    let missing = |field: &str| {
        redis::RedisError::from((
            redis::ErrorKind::UnexpectedReturnType,
            "SENTINEL MASTER lacks a field",
            field.to_owned(),
        ))
    };
    Ok(Answer {
        host: fields.get("ip").cloned().ok_or_else(|| missing("ip"))?,
        port: fields
            .get("port")
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| missing("port"))?,
        epoch: fields
            .get("config-epoch")
            .and_then(|e| e.parse().ok())
            .unwrap_or(0),
        failing_over: fields
            .get("flags")
            .is_some_and(|flags| flags.split(',').any(|f| f == "failover_in_progress")),
    })
}

/// Asks every sentinel at once and takes the answer of the highest epoch: right after a
/// failover, a sentinel that has not heard of it yet still names the old primary (which, up
/// and not yet demoted, would even say it is one).
pub(crate) async fn ask(
    conns: &mut [Option<MultiplexedConnection>],
    sentinels: &[redis::Client],
    master: &str,
    timeouts: &redis::AsyncConnectionConfig,
    within: Duration,
) -> Result<Answer, redis::RedisError> {
    let asks = sentinels
        .iter()
        .zip(conns.iter_mut())
        .map(|(client, slot)| async move {
            let asked = async {
                if slot.is_none() {
                    *slot = Some(
                        client
                            .get_multiplexed_async_connection_with_config(timeouts)
                            .await?,
                    );
                }
                match slot.as_mut() {
                    Some(conn) => ask_one(conn, master).await,
                    None => Err(redis::RedisError::from((
                        redis::ErrorKind::Client,
                        "no connection",
                    ))),
                }
            };
            let answer = tokio::time::timeout(within, asked)
                .await
                .unwrap_or_else(|_| {
                    Err(redis::RedisError::from(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!(
                            "sentinel {:?} did not answer within {within:?}",
                            client.get_connection_info().addr()
                        ),
                    )))
                });
            if answer.is_err() {
                *slot = None;
            }
            answer
        });
    let answers = futures::future::join_all(asks).await;
    let mut last_error = None;
    let mut found = Vec::new();
    for answer in answers {
        match answer {
            Ok(answer) => found.push(answer),
            Err(e) => last_error = Some(e),
        }
    }
    choose(&found).ok_or_else(|| {
        last_error.unwrap_or_else(|| {
            redis::RedisError::from(std::io::Error::new(
                std::io::ErrorKind::ConnectionAborted,
                "the sentinels are carrying out a failover; no primary to use yet",
            ))
        })
    })
}

/// The primary to use from the sentinels' answers: of those not in the middle of a failover
/// (the leader names the old primary until its very end), the ones of the highest epoch, and
/// of those the address most of them name.
pub(crate) fn choose(answers: &[Answer]) -> Option<Answer> {
    let settled: Vec<&Answer> = answers.iter().filter(|a| !a.failing_over).collect();
    let epoch = settled.iter().map(|a| a.epoch).max()?;
    let newest: Vec<&&Answer> = settled.iter().filter(|a| a.epoch == epoch).collect();
    newest
        .iter()
        .max_by_key(|a| {
            newest
                .iter()
                .filter(|b| (&b.host, b.port) == (&a.host, a.port))
                .count()
        })
        .map(|a| (***a).clone())
}

/// Asks the sentinels every [`POLL`] which server is the primary, and leaves a connection to
/// any other one.
pub(crate) async fn poll(shared: Weak<Shared>, sentinels: Vec<redis::Client>, master: String) {
    let mut conns: Vec<Option<MultiplexedConnection>> = vec![None; sentinels.len()];
    loop {
        tokio::time::sleep(POLL).await;
        let Some(alive) = shared.upgrade() else {
            return;
        };
        if let Ok(answer) = ask(
            &mut conns,
            &sentinels,
            &master,
            &alive.timeouts,
            alive.connect_within,
        )
        .await
        {
            alive.primary_is(&format!("{}:{}", answer.host, answer.port));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_settled_answer_of_most_sentinels_names_the_primary() {
        let answer = |port, epoch, failing_over| Answer {
            host: "127.0.0.1".into(),
            port,
            epoch,
            failing_over,
        };
        // The leader still names the old primary while it finishes the failover.
        let chosen = choose(&[answer(1, 1, true), answer(2, 1, false), answer(2, 1, false)]);
        assert_eq!(chosen.map(|a| a.port), Some(2));
        // A sentinel that has not heard of the failover yet is outvoted by the epoch.
        let chosen = choose(&[
            answer(1, 0, false),
            answer(2, 1, false),
            answer(1, 0, false),
        ]);
        assert_eq!(chosen.map(|a| a.port), Some(2));
        // Same epoch: most sentinels win.
        let chosen = choose(&[
            answer(3, 2, false),
            answer(4, 2, false),
            answer(4, 2, false),
        ]);
        assert_eq!(chosen.map(|a| a.port), Some(4));
        assert_eq!(
            choose(&[answer(1, 1, true)]),
            None,
            "only a failover in progress"
        );
    }

    #[test]
    fn events_about_our_primary_start_and_end_a_failover() {
        let m = "shop-primary";
        let starts = Some(Event::Starts {
            primary: "127.0.0.1:6379".into(),
        });
        assert_eq!(
            parse_event("+try-failover", "master shop-primary 127.0.0.1 6379", m),
            starts
        );
        assert_eq!(
            parse_event(
                "+selected-slave",
                "slave 127.0.0.1:6380 127.0.0.1 6380 @ shop-primary 127.0.0.1 6379",
                m
            ),
            starts
        );
        assert_eq!(
            parse_event(
                "+switch-master",
                "shop-primary 127.0.0.1 6379 127.0.0.1 6380",
                m
            ),
            Some(Event::Ends)
        );
        assert_eq!(
            parse_event(
                "-failover-abort-not-elected",
                "master shop-primary 127.0.0.1 6379",
                m
            ),
            Some(Event::Ends)
        );
        assert_eq!(
            parse_event("+try-failover", "master other 127.0.0.1 6379", m),
            None,
            "another primary's failover"
        );
        assert_eq!(
            parse_event("+switch-master", "other 127.0.0.1 1 127.0.0.1 2", m),
            None
        );
    }
}
