//! The command line: `ordershop <command>`. Each subcommand parses its arguments here and calls
//! the function that does the work; nothing else happens in this module.

use crate::events::{self, EventFilter};
use crate::{admin, dead_letters, report, run};
use clap::{Parser, Subcommand};
use ordershop_domain::{Action, EntityKind};
use ordershop_eventstore::entry_id::ParseEntryIdError;
use ordershop_eventstore::EntryId;
use ordershop_projections::ProjectionName;
use ordershop_redis::namespace::Namespace;
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
                  <ROLE>_URL, ORDERSHOP_NAMESPACE (see the README)."
)]
pub struct Cli {
    /// The shop's key namespace: every key starts with `{<name>}:` (1-64 of letters, digits,
    /// `-`, `_`). Needed on a Redis Cluster; lets several shops share one Redis. Operator
    /// commands must name the namespace of the shop they act on.
    #[arg(long, global = true, env = ordershop_redis::namespace::NAMESPACE_VAR, value_name = "NAME", value_parser = parse_namespace)]
    pub namespace: Option<Namespace>,
    #[command(subcommand)]
    pub command: Command,
}

fn parse_namespace(s: &str) -> Result<Namespace, String> {
    Namespace::parse(s.trim())
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
        /// Folder for the private redis-server's data (AOF on); one shop at a time uses it.
        /// [default: .ordershop, refused below a folder whose shop runs]
        #[arg(long, env = ordershop_services::config::DATA_DIR)]
        data_dir: Option<std::path::PathBuf>,
        /// Move the whole shop: the gateway on this port and the other roles on the next eight
        /// (customer-service +1 ... entity-cache +8), instead of 5000-5008 and the <ROLE>_URL
        /// variables.
        #[arg(long, env = ordershop_services::config::PORT, value_parser = clap::value_parser!(u16).range(1..=65527))]
        port: Option<u16>,
        /// Leave this role out (repeatable), e.g. to run it with `ordershop serve <role>` and
        /// stop and start it on its own.
        #[arg(long, value_name = "ROLE", value_parser = parse_role)]
        except: Vec<Role>,
    },
    /// Wipe one projection and rebuild it from the log while the shop keeps running.
    Rebuild {
        /// The projection to rebuild (the message service's delivered log is a sink, not a
        /// view: it cannot be rebuilt).
        #[arg(value_parser = rebuildable_projection())]
        projection: ProjectionName,
        /// Do not ask for confirmation (needed without a terminal).
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// Check that this container's role answers: GET /health on ORDERSHOP_LISTEN's port (for
    /// docker-compose healthchecks). Exits 0 when healthy, 1 otherwise.
    Health {
        /// The role's address (default: ORDERSHOP_LISTEN, else the gateway's 127.0.0.1:5000).
        #[arg(long, env = ordershop_services::config::LISTEN)]
        listen: Option<String>,
    },
    /// Print what the shop holds: customers, products and stock, orders, billing, CRM segments,
    /// and how far each projection is behind the log.
    Report {
        /// Print one JSON object instead of tables.
        #[arg(long)]
        json: bool,
        /// Rows shown per table (the totals always cover every row).
        #[arg(long, default_value_t = 25)]
        limit: usize,
    },
    /// Browse the event log: every stream merged in ID order, filtered, optionally followed.
    Events {
        /// Only these entity types (customer, product, inventory, order, billing); repeatable.
        #[arg(long = "type", value_name = "TYPE", value_parser = parse_kind)]
        kinds: Vec<EntityKind>,
        /// Only these actions (created, updated, deleted); repeatable.
        #[arg(long = "action", value_name = "ACTION", value_parser = parse_action)]
        actions: Vec<Action>,
        /// Only the events of this entity (its id, a UUID).
        #[arg(long, value_parser = parse_entity_id)]
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
    /// What the projections parked after too many failed deliveries: list, retry, discard.
    #[command(name = "dead-letters", subcommand)]
    DeadLetters(DeadLetterCommand),
    /// Show each projection's consumer group: consumers, pending entries, lag, last delivered ID.
    Status {
        /// Exit with status 1 when a group has more than this many entries to finish: not yet
        /// delivered to it (lag) plus delivered and not acknowledged (pending).
        #[arg(long)]
        max_lag: Option<u64>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum DeadLetterCommand {
    /// The parked entries, oldest first per group, with why each was parked.
    List {
        /// Only this projection's.
        #[arg(long, value_parser = projection_name())]
        group: Option<ProjectionName>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Apply parked entries again through their projection (idempotent: nothing is applied or
    /// sent twice). One that fails again is parked again with the new reason; exits 1 then.
    Retry(PickedDeadLetters),
    /// Remove parked entries without applying them.
    Discard(PickedDeadLetters),
}

/// The parked entries a dead-letter action takes.
#[derive(Debug, clap::Args)]
pub struct PickedDeadLetters {
    #[command(flatten)]
    which: WhichDeadLetters,
    /// Only this projection's (needed when the same ID is parked in two groups).
    #[arg(long, value_parser = projection_name())]
    group: Option<ProjectionName>,
}

#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
struct WhichDeadLetters {
    /// The parked entry's ID, as `list` shows it.
    #[arg(value_parser = parse_entry_id)]
    id: Option<EntryId>,
    /// Every parked entry (of --group, if given).
    #[arg(long)]
    all: bool,
}

impl PickedDeadLetters {
    fn which(&self) -> dead_letters::Which {
        self.which
            .id
            .map_or(dead_letters::Which::All, dead_letters::Which::One)
    }
}

fn parse_entry_id(s: &str) -> Result<EntryId, String> {
    s.parse().map_err(|e: ParseEntryIdError| e.to_string())
}

/// Any projection's group; `--help` lists them.
fn projection_name() -> impl clap::builder::TypedValueParser<Value = ProjectionName> {
    let names: Vec<&'static str> = ProjectionName::ALL.map(ProjectionName::name).to_vec();
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(names).try_map(|s| s.parse::<ProjectionName>())
}

fn parse_entity_id(s: &str) -> Result<Uuid, String> {
    Uuid::parse_str(s.trim()).map_err(|e| {
        format!("an entity id is a UUID (e.g. 0b5c3f9e-6d0a-4c52-9f1e-2a7d8c4b1e07): {e}")
    })
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

/// The projections `rebuild` accepts; `--help` lists them.
fn rebuildable_projection() -> impl clap::builder::TypedValueParser<Value = ProjectionName> {
    let names: Vec<&'static str> = ProjectionName::ALL
        .into_iter()
        .filter(|p| p.is_rebuildable())
        .map(ProjectionName::name)
        .collect();
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(names).try_map(|s| s.parse::<ProjectionName>())
}

impl Cli {
    /// The log level when `RUST_LOG` is unset.
    /// The roles log what they do; operator commands print their results and log only
    /// problems (so a result is not said twice).
    pub fn default_log_level(&self) -> &'static str {
        match self.command {
            Command::Serve { .. } | Command::Up { .. } => "info",
            _ => "warn",
        }
    }
}

pub fn parse() -> Cli {
    Cli::parse()
}

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    // Before any key is built: every key of this process is in the shop's namespace.
    if let Some(namespace) = cli.namespace {
        ordershop_redis::namespace::use_namespace(namespace).map_err(anyhow::Error::msg)?;
    }
    match cli.command {
        Command::Serve { role } => run::serve_role(role).await,
        Command::Up {
            data_dir,
            except,
            port,
        } => run::up(data_dir.as_deref(), &except, port).await,
        Command::Rebuild { projection, yes } => admin::rebuild(projection, yes).await,
        Command::Health { listen } => admin::health(listen.as_deref()).await,
        Command::Status { max_lag, json } => admin::status(max_lag, json).await,
        Command::DeadLetters(command) => match command {
            DeadLetterCommand::List { group, json } => dead_letters::list(group, json).await,
            DeadLetterCommand::Retry(picked) => {
                dead_letters::retry(picked.group, picked.which()).await
            }
            DeadLetterCommand::Discard(picked) => {
                dead_letters::discard(picked.group, picked.which()).await
            }
        },
        Command::Report { json, limit } => report::run(json, limit).await,
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
