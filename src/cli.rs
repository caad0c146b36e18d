//! The command line: `ordershop <command>`. Each subcommand parses its arguments here and calls
//! the function that does the work; nothing else happens in this module.

use crate::events::{self, EventFilter};
use crate::{admin, run};
use clap::{Parser, Subcommand};
use ordershop_domain::{Action, EntityKind};
use ordershop_projections::ProjectionName;
use ordershop_services::config::Role;
use std::process::ExitCode;
use uuid::Uuid;

#[derive(Debug, Parser)]
#[command(
    name = "ordershop",
    version,
    about = "Event-sourced e-commerce back end on Redis Streams",
    long_about = "Event-sourced e-commerce back end on Redis Streams.\n\n\
                  Configuration comes from the environment: REDIS_URL, ORDERSHOP_LISTEN, \
                  <ROLE>_URL (see the README)."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one role in this process (as docker-compose does).
    Serve {
        /// gateway, customer-service, product-service, inventory-service, order-service,
        /// billing-service, crm-service, msg-service or entity-cache
        #[arg(value_parser = parse_role)]
        role: Role,
    },
    /// Run the whole shop in this process; starts a private redis-server when REDIS_URL is unset.
    Up {
        /// Folder for the private redis-server's data (AOF on).
        #[arg(long, env = "ORDERSHOP_DATA_DIR", default_value = ".ordershop")]
        data_dir: std::path::PathBuf,
    },
    /// Wipe one projection and rebuild it from the log while the shop keeps running.
    Rebuild {
        /// entity-cache or crm
        #[arg(value_parser = parse_projection)]
        projection: ProjectionName,
    },
    /// Browse the event log: every stream merged in ID order, filtered, optionally followed.
    Events {
        /// Only these entity types (customer, product, inventory, order, billing); repeatable.
        #[arg(long = "type", value_name = "TYPE", value_parser = parse_kind)]
        kinds: Vec<EntityKind>,
        /// Only these actions (created, updated, deleted); repeatable.
        #[arg(long = "action", value_name = "ACTION", value_parser = parse_action)]
        actions: Vec<Action>,
        /// Only the events of this entity.
        #[arg(long)]
        id: Option<Uuid>,
        /// Only events since this time: a duration back from now (90s, 10m, 2h, 7d) or an
        /// RFC 3339 time.
        #[arg(long, value_parser = events::parse_time)]
        since: Option<u64>,
        /// Only events before this time (same forms as --since).
        #[arg(long, value_parser = events::parse_time)]
        until: Option<u64>,
        /// Keep printing new events as they are appended (Ctrl-C to stop).
        #[arg(long, short)]
        follow: bool,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
        /// Stop after this many events.
        #[arg(long)]
        limit: Option<u64>,
    },
    /// Show each projection's consumer group: consumers, pending entries, lag, last delivered ID.
    Status {
        /// Exit with status 1 when a group is behind the log by more than this many entries.
        #[arg(long)]
        max_lag: Option<u64>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

fn parse_kind(s: &str) -> Result<EntityKind, String> {
    s.parse()
}

fn parse_action(s: &str) -> Result<Action, String> {
    s.parse()
}

fn parse_role(s: &str) -> Result<Role, String> {
    s.parse::<Role>().map_err(|e| e.to_string())
}

fn parse_projection(s: &str) -> Result<ProjectionName, String> {
    s.parse::<ProjectionName>().map_err(|e| e.to_string())
}

pub fn parse() -> Cli {
    Cli::parse()
}

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve { role } => run::serve_role(role).await,
        Command::Up { data_dir } => run::up(&data_dir).await,
        Command::Rebuild { projection } => admin::rebuild(projection).await,
        Command::Status { max_lag, json } => admin::status(max_lag, json).await,
        Command::Events {
            kinds,
            actions,
            id,
            since,
            until,
            follow,
            json,
            limit,
        } => {
            let filter = EventFilter {
                kinds,
                actions,
                entity: id,
                since_ms: since,
                until_ms: until,
            };
            events::browse(filter, follow, json, limit).await
        }
    }
}
