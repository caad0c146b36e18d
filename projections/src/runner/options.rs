//! How a consumer consumes, apart from the runner's mechanics: the knobs a role reads from its
//! environment, and the default consumer name, which must stay stable across restarts of one
//! instance so that it finishes its own pending entries first.

use std::time::Duration;

/// How a runner consumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunnerOptions {
    /// The consumer's name within the group. Keep it stable across restarts of the same
    /// instance so that it re-processes its own pending entries first.
    pub consumer: String,
    /// How long a read waits for new entries. Zero: do not block (for step-driven tests).
    pub block: Duration,
    /// Entries read per stream per step.
    pub batch: usize,
    /// How long an entry must have been pending before another consumer takes it over.
    pub claim_idle: Duration,
    /// Deliveries after which an entry that still fails goes to the dead-letter stream.
    pub max_deliveries: u64,
}

impl Default for RunnerOptions {
    fn default() -> Self {
        Self {
            consumer: default_consumer_name(),
            block: Duration::from_secs(2),
            batch: 100,
            claim_idle: Duration::from_secs(30),
            max_deliveries: 5,
        }
    }
}

/// `<hostname>-<pid>`: stable across restarts of a container (same hostname, pid 1), distinct
/// between hosts and processes.
pub fn default_consumer_name() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "ordershop".to_owned());
    format!("{host}-{}", std::process::id())
}
