//! Operator commands: rebuild a projection, show the consumer groups' state. They talk to Redis
//! directly: `REDIS_URL`, or the private server of a running local `ordershop up`
//! ([`crate::local_shop`]).

use crate::local_shop::{self, LocatedShop};
use anstream::println;
use anyhow::{bail, Context};
use comfy_table::{presets::UTF8_FULL_CONDENSED, Cell, CellAlignment, ContentArrangement, Table};
use indicatif::{ProgressBar, ProgressStyle};
use ordershop_operations::{
    rebuild_projection, shop_exists, statuses, wiped_key_patterns, ProjectionName, DOWN_AFTER,
};
use ordershop_redis::RedisConfig;
use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

/// The Redis of the shop an operator command acts on ([`local_shop::locate`]), announced on
/// stderr in one line. No shop found is an error: a command never falls back to some Redis.
pub fn shop_redis() -> anyhow::Result<RedisConfig> {
    let cwd = std::env::current_dir().context("cannot read the current folder")?;
    let LocatedShop { redis, source } = local_shop::locate(&cwd, |name| std::env::var(name).ok())?;
    let namespace = match ordershop_redis::namespace::namespace().name() {
        Some(name) => format!(", namespace {name}"),
        None => String::new(),
    };
    eprintln!(
        "using Redis at {} ({source}{namespace})",
        redis.redacted_url()
    );
    Ok(redis)
}

/// `rebuild <projection>`. It wipes keys, so it names the Redis and the keys and asks first;
/// `yes` skips the question, and without a terminal to ask on it refuses.
pub async fn rebuild(projection: ProjectionName, yes: bool) -> anyhow::Result<ExitCode> {
    let redis = shop_redis()?;
    let patterns = wiped_key_patterns(projection)?;
    if !yes {
        let question = format!(
            "rebuild {} on Redis at {}: this deletes the keys {} and replays the log into them.",
            projection.name(),
            redis.redacted_url(),
            patterns.join(" ")
        );
        if !std::io::stdin().is_terminal() {
            bail!("{question} Not asking without a terminal: pass --yes to go ahead");
        }
        eprint!("{question}\nGo ahead? [y/N] ");
        std::io::stderr().flush()?;
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes") {
            eprintln!("nothing done");
            return Ok(ExitCode::from(1));
        }
    }
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

/// `status`: exit 0 when every projection is running (and, with `max_lag`, no more than that
/// behind); 1 when one is behind or down; 2 when there is no shop where it looked (an empty
/// Redis, a wrong namespace), so that a check pointed at the wrong place never passes.
pub async fn status(max_lag: Option<u64>, json: bool) -> anyhow::Result<ExitCode> {
    let redis = shop_redis()?;
    let reading = || format!("reading consumer groups from {}", redis.redacted_url());
    let mut conn = ordershop_redis::RedisConnection::connect(&redis)
        .await
        .with_context(reading)?;
    if !shop_exists(&mut conn).await.with_context(reading)? {
        let namespace = ordershop_redis::namespace::namespace().name().map_or_else(
            || "without a namespace".to_owned(),
            |n| format!("in namespace {n}"),
        );
        eprintln!(
            "no shop here: Redis at {} holds no event log {namespace} (is this the shop's Redis, and its namespace?)",
            redis.redacted_url()
        );
        return Ok(ExitCode::from(2));
    }
    let groups = statuses(&mut conn).await.with_context(reading)?;
    let blocked = ordershop_eventstore::EventStore::from_connection(conn.clone())
        .blocked_streams()
        .await
        .with_context(reading)?;
    for (stream, id) in &blocked {
        eprintln!(
            "blocked: appends to {} are refused: it has reached the ID {id}, written without the \
             store (see \"A stream blocked by an entry written by hand\" in docs/projections.md)",
            stream.key()
        );
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&groups)?);
    } else {
        let mut table = Table::new();
        // Wrapped to the terminal's width (a pipe gets whole lines).
        table
            .load_preset(UTF8_FULL_CONDENSED)
            .set_content_arrangement(ContentArrangement::Dynamic);
        table.set_header(vec![
            "group",
            "consumers",
            "pending",
            "lag",
            "dead-lettered",
            "last delivered",
            "last error",
        ]);
        for g in &groups {
            let mut consumers = if g.consumers.is_empty() {
                "-".to_owned()
            } else {
                g.consumers
                    .iter()
                    .map(|c| {
                        let beat = c
                            .heartbeat_age_ms
                            .map_or_else(String::new, |ms| format!(", alive {ms} ms ago"));
                        format!(
                            "{} ({} pending, idle {} ms{beat})",
                            c.name, c.pending, c.idle_ms
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            if g.down {
                consumers = format!(
                    "DOWN: no heartbeat for over {} s\n{consumers}",
                    DOWN_AFTER.as_secs()
                );
            }
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
                Cell::new(g.last_error.as_ref().map_or_else(
                    || "-".to_owned(),
                    |e| {
                        let when = ordershop_eventstore::EntryId::new(e.at_ms, 0)
                            .time()
                            .format("%Y-%m-%d %H:%M:%S UTC");
                        let entry = e
                            .entry
                            .as_ref()
                            .map_or_else(String::new, |entry| format!(" ({entry})"));
                        let mut message = e.message.clone();
                        if message.chars().count() > 80 {
                            message = message.chars().take(79).collect::<String>() + "…";
                        }
                        format!("{when} {}{entry}: {message}", e.kind)
                    },
                )),
            ]);
        }
        println!("{table}");
    }
    if let Some(max) = max_lag {
        if !blocked.is_empty() {
            return Ok(ExitCode::from(1));
        }
        let down: Vec<&str> = groups.iter().filter(|g| g.down).map(|g| g.group).collect();
        if !down.is_empty() {
            eprintln!(
                "down (no consumer alive for over {} s): {}",
                DOWN_AFTER.as_secs(),
                down.join(", ")
            );
            return Ok(ExitCode::from(1));
        }
        let behind: Vec<String> = groups
            .iter()
            .filter(|g| g.is_behind(max))
            .map(|g| {
                let n = g.behind();
                let entries = if n == 1 { "entry" } else { "entries" };
                format!(
                    "{} has {n} {entries} to finish ({} not delivered, {} pending)",
                    g.group, g.lag, g.pending
                )
            })
            .collect();
        if !behind.is_empty() {
            eprintln!("behind by more than {max}: {}", behind.join(", "));
            return Ok(ExitCode::from(1));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `health`: GET /health of the role listening on `listen` (an `ORDERSHOP_LISTEN` address; an
/// unspecified host means this machine), else of the gateway of the local shop running from
/// this folder (`up --port` included), else of :5000. Exit 0 when it answers 200, 1 otherwise.
pub async fn health(listen: Option<&str>) -> anyhow::Result<ExitCode> {
    // Not told where: the gateway of the local shop running from here, else the default port.
    let running = match listen {
        Some(_) => None,
        None => std::env::current_dir()
            .ok()
            .and_then(|cwd| local_shop::running_gateway(&cwd, |name| std::env::var(name).ok())),
    };
    let listen = listen
        .or(running.as_deref())
        .unwrap_or("127.0.0.1:5000")
        .trim();
    let mut addr: std::net::SocketAddr = listen.parse().with_context(|| {
        format!("ORDERSHOP_LISTEN=`{listen}` is not an address like 0.0.0.0:5000")
    })?;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let url = format!("http://{addr}/health");
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(3))
        .build()?;
    match client.get(&url).send().await {
        Ok(answer) if answer.status().is_success() => {
            println!("healthy: {url}");
            Ok(ExitCode::SUCCESS)
        }
        Ok(answer) => {
            println!("unhealthy: {url} answered {}", answer.status());
            Ok(ExitCode::from(1))
        }
        Err(e) => {
            println!("unhealthy: {url} did not answer ({e})");
            Ok(ExitCode::from(1))
        }
    }
}
