//! A short fault-injection run: `ordershop-rigs chaos` kills and restarts roles under load and
//! must verify every invariant.

use crate::helpers::{rigs, run_rigs};

#[test]
fn a_short_chaos_run_verifies_every_invariant() {
    let (output, stdout, stderr) = run_rigs(
        rigs(&[
            "chaos",
            "--seconds",
            "10",
            "--clients",
            "4",
            "--kill-every-ms",
            "1000",
        ])
        .env("RUST_LOG", "warn"),
    );
    assert!(output.status.success(), "chaos failed:\n{stdout}\n{stderr}");
    assert_eq!(stdout.matches("[ok]").count(), 5, "{stdout}");
    assert!(!stdout.contains("FAILED"), "{stdout}");
    for role in ["entity-cache", "crm-service", "order-service"] {
        assert!(
            stdout.contains(&format!("restarted {role}")),
            "{role} was killed: {stdout}"
        );
    }
}
