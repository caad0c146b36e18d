//! `ordershop dead-letters list|retry|discard`: what the projections parked, and acting on it
//! (the rules are in `ordershop_operations::dead_letters`).

use crate::admin::shop_redis;
use anstream::println;
use anyhow::{bail, Context};
use comfy_table::{presets::UTF8_FULL_CONDENSED, Cell, CellAlignment, Table};
use ordershop_eventstore::EntryId;
use ordershop_operations::dead_letters::{self, DeadLetter, RetryOutcome};
use ordershop_operations::ProjectionName;
use ordershop_redis::RedisConnection;
use std::process::ExitCode;

/// Which parked entries an action takes.
#[derive(Debug, Clone, Copy)]
pub enum Which {
    One(EntryId),
    All,
}

fn groups(group: Option<ProjectionName>) -> Vec<ProjectionName> {
    group.map_or_else(|| ProjectionName::ALL.to_vec(), |g| vec![g])
}

async fn connect() -> anyhow::Result<RedisConnection> {
    let redis = shop_redis()?;
    RedisConnection::connect(&redis)
        .await
        .with_context(|| format!("connecting to Redis at {}", redis.redacted_url()))
}

pub async fn list(group: Option<ProjectionName>, json: bool) -> anyhow::Result<ExitCode> {
    let mut conn = connect().await?;
    let letters = dead_letters::list(&mut conn, &groups(group)).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&letters)?);
        return Ok(ExitCode::SUCCESS);
    }
    if letters.is_empty() {
        println!("no dead letters");
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED).set_header(vec![
        "group",
        "id",
        "source",
        "reason",
        "deliveries",
        "retries",
    ]);
    for l in &letters {
        table.add_row(vec![
            Cell::new(l.projection),
            Cell::new(l.id),
            Cell::new(format!("{} {}", l.source_stream, l.source_id)),
            Cell::new(&l.reason),
            Cell::new(l.deliveries).set_alignment(CellAlignment::Right),
            Cell::new(l.retries).set_alignment(CellAlignment::Right),
        ]);
    }
    println!("{table}");
    Ok(ExitCode::SUCCESS)
}

/// The parked entries an action names: one ID (in the one group that has it), or all of the
/// groups'. An ID found in no group, or in more than one without `--group`, is an error.
async fn targets(
    conn: &mut RedisConnection,
    group: Option<ProjectionName>,
    which: Which,
) -> anyhow::Result<Vec<DeadLetter>> {
    let letters = dead_letters::list(conn, &groups(group)).await?;
    let Which::One(id) = which else {
        return Ok(letters);
    };
    let found: Vec<DeadLetter> = letters.into_iter().filter(|l| l.id == id).collect();
    match found.len() {
        0 => bail!(
            "no dead letter {id}{}: `ordershop dead-letters list` shows them",
            group.map_or_else(String::new, |g| format!(" in {g}"))
        ),
        1 => Ok(found),
        _ => bail!(
            "dead letter {id} is in several groups ({}): name one with --group",
            found
                .iter()
                .map(|l| l.projection.name())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

pub async fn retry(group: Option<ProjectionName>, which: Which) -> anyhow::Result<ExitCode> {
    let mut conn = connect().await?;
    let mut failed = 0;
    for letter in targets(&mut conn, group, which).await? {
        let what = format!("{} {}", letter.projection, letter.id);
        match dead_letters::retry(&mut conn, letter.projection, letter.id).await? {
            None => println!("{what}: no longer parked (handled meanwhile)"),
            Some(RetryOutcome::Applied { applied, skipped }) => {
                let effect = if applied > 0 {
                    "applied"
                } else if skipped > 0 {
                    "already in the projection (skipped)"
                } else {
                    "done"
                };
                println!("{what}: {effect}; removed from the dead letters");
            }
            Some(RetryOutcome::ParkedAgain { id, reason }) => {
                failed += 1;
                println!("{what}: failed again, parked again as {id}: {reason}");
            }
            Some(RetryOutcome::Paused) => {
                failed += 1;
                println!(
                    "{what}: a rebuild pauses {}; nothing done, retry later",
                    letter.projection
                );
            }
        }
    }
    Ok(if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

pub async fn discard(group: Option<ProjectionName>, which: Which) -> anyhow::Result<ExitCode> {
    let mut conn = connect().await?;
    for letter in targets(&mut conn, group, which).await? {
        let removed = dead_letters::discard(&mut conn, letter.projection, letter.id).await?;
        let what = format!("{} {}", letter.projection, letter.id);
        if removed {
            println!("{what}: discarded");
        } else {
            println!("{what}: no longer parked (handled meanwhile)");
        }
    }
    Ok(ExitCode::SUCCESS)
}
