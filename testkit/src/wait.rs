//! Waiting for a condition in an async test: re-check with a growing pause until it holds or a
//! deadline passes. The one way the suites synchronise with workers they do not drive step by
//! step, instead of sleeping a guessed time.

use std::future::Future;
use std::time::{Duration, Instant};

/// First pause between two checks; it doubles up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(5);
/// Longest pause between two checks.
const MAX_PAUSE: Duration = Duration::from_millis(100);

/// Waits until `check` holds, or panics naming `what` after `deadline`.
pub async fn eventually<F, Fut>(what: &str, deadline: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let end = Instant::now() + deadline;
    let mut pause = FIRST_PAUSE;
    while !check().await {
        assert!(
            Instant::now() < end,
            "timed out after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(MAX_PAUSE);
    }
}
