//! The command line: `ordershop-rigs <command>`. Each subcommand parses its arguments here and
//! calls the function that does the work; nothing else happens in this module.

use crate::{bench, chaos, load};
use clap::{Parser, Subcommand};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "ordershop-rigs",
    version,
    about = "Test rigs of OrderShop: load generator, benchmark, fault injection"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Drive a running shop over HTTP like real clients: fake customers, products and stock,
    /// then orders (with some updates, deletes and billings) from concurrent connections.
    Load {
        /// The gateway's URL.
        #[arg(long, default_value = "http://127.0.0.1:5000")]
        url: String,
        /// Concurrent connections (clients).
        #[arg(long, short = 'c', default_value_t = 32)]
        connections: usize,
        /// Stop after this many requests (default 1000 when --duration is not given).
        #[arg(long, short = 'n')]
        requests: Option<u64>,
        /// Stop after this many seconds.
        #[arg(long, short = 's')]
        duration: Option<u64>,
        /// Customers to create first.
        #[arg(long, default_value_t = 100)]
        customers: usize,
        /// Products (each with stock) to create first.
        #[arg(long, default_value_t = 50)]
        products: usize,
        /// orders: only POST /orders; mixed: also order updates, deletes and billings.
        #[arg(long, value_enum, default_value = "mixed")]
        workload: load::Workload,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Measure each path of the shop next to its bare Redis / actix-web baseline, in the same
    /// run, on a private redis-server; print both, the ratio and the target.
    Bench {
        /// Events in the log the rebuild and the CRM catch-up replay.
        #[arg(long, default_value_t = 1_000_000)]
        events: u64,
        /// Small sizes everywhere (a smoke run: seconds, not minutes).
        #[arg(long)]
        quick: bool,
        /// Runs per figure; the median is reported.
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Only these paths (repeatable).
        #[arg(long, value_enum)]
        only: Vec<bench::BenchPath>,
        /// Measure the append path on a private 3-primary Redis Cluster instead, every key in
        /// the namespace `bench` (so one primary takes it all): what one shard sustains.
        #[arg(long)]
        cluster: bool,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Fault injection: start a private shop (one process per role), drive a mixed load while
    /// killing and restarting the projector, the CRM and the order service, then check the
    /// invariants. Exits 1 if one fails.
    Chaos {
        /// How long the load runs.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// Concurrent clients.
        #[arg(long, default_value_t = 8)]
        clients: usize,
        /// Milliseconds between two kills.
        #[arg(long, default_value_t = 3000)]
        kill_every_ms: u64,
        /// Seed of the clients' random choices.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Run `ordershop <ARGS>` in this process, through the `ordershop` library: how `chaos`
    /// starts each role as a process of its own and `bench` a child rebuild, without needing
    /// the `ordershop` binary beside this one.
    #[command(hide = true)]
    Shop {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

impl Cli {
    /// The log level when `RUST_LOG` is unset: `warn` for the measuring commands (their output
    /// is the point, and logging would cost the shop they measure), `info` otherwise.
    pub fn default_log_level(&self) -> &'static str {
        match self.command {
            Command::Load { .. } | Command::Bench { .. } => "warn",
            _ => "info",
        }
    }
}

pub fn parse() -> Cli {
    Cli::parse()
}

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Load {
            url,
            connections,
            requests,
            duration,
            customers,
            products,
            workload,
            json,
        } => {
            let options = load::LoadOptions {
                base_url: url,
                connections,
                requests,
                duration: duration.map(Duration::from_secs),
                customers,
                products,
                workload,
                ..load::LoadOptions::default()
            };
            load::load(options, json).await
        }
        Command::Bench {
            events,
            quick,
            runs,
            only,
            cluster,
            json,
        } => {
            if cluster {
                if only.iter().any(|p| *p != bench::BenchPath::Append) {
                    anyhow::bail!("--cluster measures the append path only (--only append)");
                }
                ordershop_redis::namespace::use_namespace(
                    ordershop_redis::namespace::Namespace::parse(bench::CLUSTER_NAMESPACE)
                        .map_err(anyhow::Error::msg)?,
                )
                .map_err(anyhow::Error::msg)?;
            }
            let options = bench::BenchOptions {
                events: if quick { events.min(20_000) } else { events },
                quick,
                runs,
                only: if cluster {
                    vec![bench::BenchPath::Append]
                } else {
                    only
                },
                cluster,
                progress: true,
            };
            bench::bench(options, json).await
        }
        Command::Chaos {
            seconds,
            clients,
            kill_every_ms,
            seed,
        } => {
            chaos::run(chaos::ChaosOptions {
                seconds,
                clients: clients.max(1),
                kill_every: Duration::from_millis(kill_every_ms.max(100)),
                seed,
            })
            .await
        }
        Command::Shop { args } => {
            let shop = ordershop::cli::Cli::try_parse_from(
                std::iter::once("ordershop".to_owned()).chain(args),
            )?;
            ordershop::cli::run(shop).await
        }
    }
}
