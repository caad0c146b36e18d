//! Smoke tests of the speed tools: `ordershop-rigs load` against a real shop and
//! `ordershop-rigs bench --quick`. They check that the output is well-formed and that nothing
//! failed — never a speed.

use crate::helpers::{rigs, run_rigs, Shop};
use ordershop_services::config::Role;
use serde_json::Value;

#[tokio::test]
async fn load_drives_a_shop_without_errors_and_reports_latencies() {
    let shop = Shop::start().await;
    let gateway = shop.url(Role::Gateway);
    let (output, stdout, stderr) = run_rigs(&mut rigs(&[
        "load",
        "--url",
        &gateway,
        "--requests",
        "300",
        "--connections",
        "8",
        "--customers",
        "20",
        "--products",
        "10",
        "--json",
    ]));
    assert!(
        output.status.success(),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    let report: Value = serde_json::from_str(&stdout).expect("load prints JSON");
    assert_eq!(report["requests"], 300, "{report}");
    assert_eq!(report["successes"], 300, "{report}");
    assert_eq!(report["errors"], serde_json::json!({}), "{report}");
    let latency = &report["latency"];
    for field in ["p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms"] {
        assert!(latency[field].as_f64().is_some_and(|v| v > 0.0), "{report}");
    }
    assert!(latency["p50_ms"].as_f64() <= latency["max_ms"].as_f64());
    assert!(report["operations"]["create_order"].as_u64() > Some(0));
    let orders: Value = reqwest::get(format!("{gateway}/orders"))
        .await
        .expect("GET /orders")
        .json()
        .await
        .expect("a JSON answer");
    assert!(!orders.as_array().expect("a list").is_empty());
}

#[test]
fn a_quick_bench_measures_every_path_next_to_its_baseline() {
    // The bench starts its own redis-server and shop: no environment needed.
    let (output, stdout, stderr) = run_rigs(&mut rigs(&[
        "bench", "--quick", "--events", "5000", "--runs", "1", "--json",
    ]));
    assert!(
        output.status.success(),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    let report: Value = serde_json::from_str(&stdout).expect("bench prints JSON");
    let rows = report["measurements"].as_array().expect("measurements");
    let paths: Vec<&str> = rows.iter().filter_map(|r| r["path"].as_str()).collect();
    for expected in [
        "append: 1 event, 16 tasks",
        "gateway: POST /orders, 32 conn",
        "one client, POST /orders vs GET /health: p99.9 latency",
        "flash sale, 32 conn, 2 products: orders/s",
        "flash sale: p99 latency",
        "GET /orders, 1000 orders",
        "Redis bytes per event",
        "entity-cache rebuild",
        "CRM catch-up",
        "projector peak RSS",
    ] {
        assert!(
            paths.iter().any(|p| p.starts_with(expected)),
            "no `{expected}` in {paths:?}"
        );
    }
    for row in rows {
        assert!(row["ours"].as_f64().is_some_and(f64::is_finite), "{row}");
        if row["bare"].is_number() {
            assert!(row["ratio"].as_f64().is_some_and(|r| r > 0.0), "{row}");
        }
    }
    for path in ["gateway: errors", "one client: errors"] {
        let errors = rows
            .iter()
            .find(|r| r["path"].as_str().is_some_and(|p| p.starts_with(path)))
            .unwrap_or_else(|| panic!("a `{path}` row"));
        assert_eq!(errors["ours"], 0.0, "{errors}");
    }
}
