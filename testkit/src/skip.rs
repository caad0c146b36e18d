//! Tests that cannot run here (a tool or a server feature missing) say so where it shows. A
//! skipped test passes in the harness's count, so it must not hide: the line goes straight to
//! the terminal (past the harness's capture of a passing test's output), beside the summary.
//! Under `CI` a skip is a failure, because CI installs everything the tests need — unless the
//! capability is named in `ORDERSHOP_TESTS_WITHOUT` (comma-separated), which CI sets for a
//! server known to lack it (the Valkey build from PyPI has no TLS).

use std::io::Write;

/// The variable that lists capabilities a CI run knows it lacks.
pub const WITHOUT_VAR: &str = "ORDERSHOP_TESTS_WITHOUT";

/// Reports that `test` does not run because `capability` is missing (`reason` says how to get
/// it). Panics under `CI`, unless `capability` is listed in [`WITHOUT_VAR`].
pub fn skip(capability: &str, test: &str, reason: &str) {
    let known_gap = std::env::var(WITHOUT_VAR)
        .unwrap_or_default()
        .split(',')
        .any(|c| c.trim() == capability);
    if std::env::var_os("CI").is_some() && !known_gap {
        panic!(
            "{test} cannot run under CI: {reason} (CI installs what the tests need; name \
             `{capability}` in {WITHOUT_VAR} only for a server known to lack it)"
        );
    }
    // Straight to the process's stderr: not captured by the test harness.
    let _ = writeln!(
        std::io::stderr().lock(),
        "SKIPPED {test} (no {capability}): {reason}"
    );
}
