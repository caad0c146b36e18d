//! The one retry policy of the command layer. A single command's loop and a group of orders
//! ([`super::batch`]) both go through it: it says when the next attempt starts (at once, then
//! after a jittered, growing pause), which refusals of the store are worth deciding again on
//! (conflicts: what the command read has moved on; anything else ends the command), and when
//! to give up. It also counts and logs both.

use super::CommandError;
use ordershop_eventstore::AppendError;
use ordershop_redis::Backoff;
use ordershop_telemetry::Metrics;
use rand::Rng;
use std::time::Duration;

/// How often, and how patiently, a command re-reads and decides again after a conflict.
///
/// A conflict means another command committed in between: the data moved on, so the command
/// reads again and decides again at once (a hot product in a flash sale is bought by one
/// command per round, never held back by a pause). Only after `immediate` conflicts in a row
/// does it pause (jittered, growing) between attempts.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub attempts: u32,
    /// Retries made at once, before any pause.
    pub immediate: u32,
    /// The first pause; each later one may be twice as long, up to `max_backoff`.
    pub first_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 64,
            immediate: 16,
            first_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(20),
        }
    }
}

impl RetryPolicy {
    /// The attempts of one command (or one group of orders), counted in `metrics`.
    pub(super) fn start(self, metrics: Option<&Metrics>) -> Retries<'_> {
        Retries {
            policy: self,
            backoff: Backoff::new(self.first_backoff, self.max_backoff),
            started: 0,
            last: String::new(),
            metrics,
        }
    }
}

/// One command's way through a [`RetryPolicy`]:
/// `while let Some(attempt) = retries.next().await { read, decide, append }`, telling it of
/// every refusal ([`Retries::retry_after`]) and, when the attempts run out, giving up with
/// [`Retries::gave_up`].
pub(super) struct Retries<'m> {
    policy: RetryPolicy,
    backoff: Backoff,
    /// Attempts started so far.
    started: u32,
    /// The last conflict, for the error when giving up.
    last: String,
    metrics: Option<&'m Metrics>,
}

impl Retries<'_> {
    /// Starts the next attempt (numbered from 0): the first and the next `immediate` at once,
    /// the later ones after a jittered pause. `None` once every attempt was made.
    pub(super) async fn next(&mut self) -> Option<u32> {
        if self.started >= self.policy.attempts {
            return None;
        }
        if self.started > self.policy.immediate {
            tokio::time::sleep(full_jitter(self.backoff.next_pause())).await;
        }
        self.started += 1;
        Some(self.started - 1)
    }

    /// How many attempts were started, the current one included.
    pub(super) fn attempts(&self) -> u32 {
        self.started
    }

    /// Whether the store's refusal `e` is one to read and decide again after: a conflict (an
    /// entity moved on, or a unique value was taken), counted and logged. Any other refusal
    /// ends the command.
    pub(super) fn retry_after(&mut self, e: &AppendError) -> bool {
        let kind = match e {
            AppendError::VersionConflict { .. } => "version",
            AppendError::UniqueConflict { .. } => "unique",
            _ => return false,
        };
        if let Some(metrics) = self.metrics {
            metrics.append_conflict(kind);
        }
        tracing::debug!(attempt = self.started.saturating_sub(1), conflict = %e,
            "append refused; deciding again");
        self.last = e.to_string();
        true
    }

    /// Counts and logs a command (or a group of orders) that ran out of attempts.
    pub(super) fn gave_up(self) -> CommandError {
        let attempts = self.policy.attempts;
        if let Some(metrics) = self.metrics {
            metrics.command_attempts(attempts);
        }
        tracing::warn!(attempts, last = %self.last, "command gave up on contended data");
        CommandError::Contended {
            attempts,
            last: self.last,
        }
    }
}

/// A random pause up to `ceiling`: full jitter, so that writers that collided spread out instead
/// of colliding again.
fn full_jitter(ceiling: Duration) -> Duration {
    let micros = u64::try_from(ceiling.as_micros()).unwrap_or(u64::MAX);
    Duration::from_micros(rand::rng().random_range(0..=micros))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_stays_within_the_ceiling() {
        let policy = RetryPolicy::default();
        let mut backoff = Backoff::new(policy.first_backoff, policy.max_backoff);
        assert!(full_jitter(backoff.next_pause()) <= policy.first_backoff);
        for _retry in 2..40 {
            assert!(full_jitter(backoff.next_pause()) <= policy.max_backoff);
        }
    }

    #[tokio::test]
    async fn every_attempt_is_made_once_then_none() {
        let policy = RetryPolicy {
            attempts: 5,
            immediate: 2,
            first_backoff: Duration::from_micros(100),
            max_backoff: Duration::from_micros(100),
        };
        let mut retries = policy.start(None);
        let mut started = Vec::new();
        while let Some(attempt) = retries.next().await {
            started.push(attempt);
        }
        assert_eq!(started, [0, 1, 2, 3, 4]);
        assert_eq!(retries.attempts(), 5);
        assert_eq!(retries.next().await, None);
    }

    #[test]
    fn conflicts_are_retried_other_refusals_are_not() {
        let mut retries = RetryPolicy::default().start(None);
        let conflict = AppendError::VersionConflict {
            kind: ordershop_domain::EntityKind::Order,
            id: uuid::Uuid::nil(),
            expected: 1,
            actual: 2,
        };
        assert!(retries.retry_after(&conflict));
        assert!(!retries.retry_after(&AppendError::KeyReused));
        assert!(!retries.retry_after(&AppendError::Protocol("odd".into())));
        match retries.gave_up() {
            CommandError::Contended { attempts, last } => {
                assert_eq!(attempts, RetryPolicy::default().attempts);
                assert_eq!(last, conflict.to_string());
            }
            other => panic!("not a give-up: {other}"),
        }
    }
}
