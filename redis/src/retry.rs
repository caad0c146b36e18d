//! The pause between attempts at something that may work a moment later: Redis coming back, a
//! projection catching up, a contended append. Every such loop in the shop waits the same way,
//! doubling from a first pause up to a ceiling, so the arithmetic lives here once; what differs
//! between them (how many attempts, a deadline, jitter) stays with each loop.

use std::time::Duration;

/// Pauses that double from `first` up to `max`; [`reset`](Self::reset) after a success.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub const fn new(first: Duration, max: Duration) -> Self {
        Self {
            first,
            max,
            next: first,
        }
    }

    /// The pause to take now; the one after is twice as long, up to the ceiling.
    pub fn next_pause(&mut self) -> Duration {
        let now = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        now
    }

    /// Starts again from the first pause.
    pub fn reset(&mut self) {
        self.next = self.first;
    }

    pub fn first(&self) -> Duration {
        self.first
    }

    pub fn max(&self) -> Duration {
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_double_up_to_the_ceiling_and_start_over_on_reset() {
        let mut backoff = Backoff::new(Duration::from_millis(10), Duration::from_millis(50));
        let pauses: Vec<u64> = (0..5)
            .map(|_| backoff.next_pause().as_millis() as u64)
            .collect();
        assert_eq!(pauses, [10, 20, 40, 50, 50]);
        backoff.reset();
        assert_eq!(backoff.next_pause(), backoff.first());
    }
}
