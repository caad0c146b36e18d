//! Operator commands: rebuild a projection, show the consumer groups' state. They talk to Redis
//! directly (`REDIS_URL`, or the private server a local `ordershop up` started).

use anyhow::Context;
use comfy_table::{presets::UTF8_FULL_CONDENSED, Cell, CellAlignment, Table};
use indicatif::{ProgressBar, ProgressStyle};
use ordershop_eventstore::RedisConfig;
use ordershop_projections::{group_status, rebuild_projection, ProjectionName};
use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;

/// Where `ordershop up` records the URL of its private redis-server.
pub const LOCAL_URL_FILE: &str = "redis.url";

/// `REDIS_URL`, else the private server of a local `ordershop up`, else the default.
pub fn redis_config() -> anyhow::Result<RedisConfig> {
    if let Ok(url) = std::env::var("REDIS_URL") {
        return Ok(RedisConfig::new(url)?.with_tls_from(|name| std::env::var(name).ok())?);
    }
    let data_dir = std::env::var("ORDERSHOP_DATA_DIR").unwrap_or_else(|_| ".ordershop".into());
    let file = Path::new(&data_dir).join(LOCAL_URL_FILE);
    if let Ok(url) = std::fs::read_to_string(&file) {
        return Ok(RedisConfig::new(url.trim().to_owned())?);
    }
    Ok(RedisConfig::new(
        ordershop_eventstore::connect::DEFAULT_REDIS_URL,
    )?)
}

pub async fn rebuild(projection: ProjectionName) -> anyhow::Result<ExitCode> {
    let redis = redis_config()?;
    let bar = if std::io::stderr().is_terminal() {
        ProgressBar::new(0)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} events ({per_sec}, eta {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(format!("rebuilding {}", projection.name()));
    let mut progress = |done: u64, total: u64| {
        bar.set_length(total);
        bar.set_position(done);
    };
    let report = rebuild_projection(&redis, projection, &mut progress)
        .await
        .with_context(|| format!("rebuilding {}", projection.name()))?;
    bar.finish_and_clear();
    println!("{report}");
    Ok(ExitCode::SUCCESS)
}

pub async fn status(max_lag: Option<u64>, json: bool) -> anyhow::Result<ExitCode> {
    let redis = redis_config()?;
    let groups = group_status(&redis)
        .await
        .with_context(|| format!("reading consumer groups from {}", redis.redacted_url()))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&groups)?);
    } else {
        let mut table = Table::new();
        table.load_preset(UTF8_FULL_CONDENSED).set_header(vec![
            "group",
            "consumers",
            "pending",
            "lag",
            "dead-lettered",
            "last delivered",
        ]);
        for g in &groups {
            let consumers = if g.consumers.is_empty() {
                "-".to_owned()
            } else {
                g.consumers
                    .iter()
                    .map(|c| format!("{} ({} pending, idle {} ms)", c.name, c.pending, c.idle_ms))
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            table.add_row(vec![
                Cell::new(g.group),
                Cell::new(consumers),
                Cell::new(g.pending).set_alignment(CellAlignment::Right),
                Cell::new(g.lag).set_alignment(CellAlignment::Right),
                Cell::new(g.dead_lettered).set_alignment(CellAlignment::Right),
                Cell::new(
                    g.last_delivered
                        .map_or_else(|| "-".to_owned(), |id| id.to_string()),
                ),
            ]);
        }
        println!("{table}");
    }
    if let Some(max) = max_lag {
        let behind: Vec<String> = groups
            .iter()
            .filter(|g| g.lag > max)
            .map(|g| format!("{} is {} entries behind", g.group, g.lag))
            .collect();
        if !behind.is_empty() {
            eprintln!("behind by more than {max}: {}", behind.join(", "));
            return Ok(ExitCode::from(1));
        }
    }
    Ok(ExitCode::SUCCESS)
}
