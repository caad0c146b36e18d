//! Logging: `tracing` with a human format by default and JSON when `ORDERSHOP_LOG_FORMAT=json`;
//! the level comes from `RUST_LOG` (default `info`). Colours only on a terminal: a log file or a
//! pipe gets plain text.

use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

/// Sets up logging at `level` when `RUST_LOG` is unset (the measuring commands use `warn`: the
/// shop they run in-process must not spend the machine on logging while it is measured).
pub fn init_with_default(level: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let json = ordershop_services::config::ProcessSettings::from_env().json_logs;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    let result = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
    // A subscriber already set (e.g. by a test harness) is fine.
    let _ = result;
}
