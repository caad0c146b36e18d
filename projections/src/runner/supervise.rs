//! Keeping one consumer running until shutdown: connecting until Redis answers, stepping, and
//! pausing after an error (with back-off), while paused by a rebuild, or when idle without a
//! blocking read. A configuration Redis refuses ends the consumer instead, because retrying
//! cannot fix it.

use super::health;
use super::metrics::Observed;
use super::{Runner, RunnerOptions};
use crate::error::ProjectionError;
use crate::projection::Projection;
use ordershop_redis::{Backoff, RedisConfig};
use ordershop_telemetry::error_chain;
use redis::ErrorKind;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// The pauses between retries after errors: short enough to notice Redis coming back soon,
/// long enough not to flood the log while it stays away.
fn retry_backoff() -> Backoff {
    Backoff::new(Duration::from_millis(100), Duration::from_secs(5))
}

/// How often a paused runner retries its held batch.
const PAUSE_POLL: Duration = Duration::from_millis(200);
/// Pause after an empty step when `block` is zero, so an idle runner does not spin.
const IDLE_POLL: Duration = Duration::from_millis(100);

/// Sleeps unless shutdown comes first; true when shutting down.
async fn sleep_or_stop(pause: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        () = shutdown.cancelled() => true,
        () = tokio::time::sleep(pause) => false,
    }
}

/// Runs one consumer of `projection` until `shutdown` is cancelled (see
/// [`run_until_stopped`](super::run_until_stopped)).
pub(super) async fn run<P: Projection>(
    redis: RedisConfig,
    projection: P,
    options: RunnerOptions,
    shutdown: CancellationToken,
    observed: Observed,
) -> Result<(), ProjectionError> {
    let group = projection.name();
    let consumer = options.consumer.clone();
    let mut backoff = retry_backoff();
    let mut runner = loop {
        if shutdown.is_cancelled() {
            return Ok(());
        }
        match Runner::connect(&redis, projection.clone(), options.clone()).await {
            Ok(runner) => break runner,
            Err(ProjectionError::Redis(e)) if e.kind() == ErrorKind::InvalidClientConfig => {
                return Err(e.into());
            }
            Err(e) => {
                let pause = backoff.next_pause();
                warn!(group, consumer, url = %redis.redacted_url(), error = %error_chain(&e),
                      retry_in = ?pause, "cannot start the projection; retrying");
                if sleep_or_stop(pause, &shutdown).await {
                    return Ok(());
                }
            }
        }
    };
    info!(group, consumer, "projection consumer started");
    backoff.reset();
    let mut next_checkpoint = Instant::now() + super::CHECKPOINT_EVERY;
    let mut next_beat = Instant::now();
    while !shutdown.is_cancelled() {
        if Instant::now() >= next_beat {
            health::beat(&mut runner.conn, group, &consumer).await;
            next_beat = Instant::now() + health::BEAT_EVERY;
        }
        if Instant::now() >= next_checkpoint {
            checkpoint(&mut runner).await;
            next_checkpoint = Instant::now() + super::CHECKPOINT_EVERY;
        }
        match runner.step().await {
            Ok(report) => {
                observed.step(&runner.projection, &report);
                backoff.reset();
                let pause = if report.paused {
                    Some(PAUSE_POLL)
                } else if report.is_idle() && runner.options.block.is_zero() {
                    Some(IDLE_POLL)
                } else {
                    None
                };
                if let Some(pause) = pause {
                    if sleep_or_stop(pause, &shutdown).await {
                        break;
                    }
                }
            }
            Err(e) => {
                let pause = backoff.next_pause();
                let message = error_chain(&e);
                warn!(group, consumer, error = %message, retry_in = ?pause,
                      "projection step failed; retrying");
                health::record_error(&mut runner.conn, group, &consumer, "step", &message, None)
                    .await;
                if sleep_or_stop(pause, &shutdown).await {
                    break;
                }
            }
        }
    }
    checkpoint(&mut runner).await;
    info!(group, consumer, "projection consumer stopped");
    Ok(())
}

/// Records the group's checkpoint; a failure is only logged (the next one will do).
async fn checkpoint<P: Projection>(runner: &mut Runner<P>) {
    if let Err(e) = runner.record_checkpoint().await {
        debug!(group = runner.projection.name(), error = %error_chain(&e),
               "cannot record the group's checkpoint");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_a_ceiling_and_resets() {
        let mut backoff = retry_backoff();
        assert_eq!(backoff.next_pause(), Duration::from_millis(100));
        assert_eq!(backoff.next_pause(), Duration::from_millis(200));
        for _ in 0..10 {
            backoff.next_pause();
        }
        assert_eq!(backoff.next_pause(), backoff.max());
        backoff.reset();
        assert_eq!(backoff.next_pause(), backoff.first());
    }
}
