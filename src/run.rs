//! Starting roles: `serve <role>` runs one role in this process (one container in
//! docker-compose), `up` runs every role in one process for a developer's machine. Both stop
//! gracefully on Ctrl-C or SIGTERM: HTTP servers drain, workers finish their batch.

use crate::local_redis::LocalRedis;
use anyhow::Context;
use ordershop_eventstore::{Metrics, Reachability, RedisConfig};
use ordershop_projections::{run_until_stopped, ProjectionName, RunnerOptions};
use ordershop_services::config::{Config, Role};
use std::net::TcpListener;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// The consumer-group worker a role runs besides its HTTP server, if any.
fn worker_of(role: Role) -> Option<ProjectionName> {
    match role {
        Role::EntityCache => Some(ProjectionName::EntityCache),
        Role::CrmService => Some(ProjectionName::Crm),
        Role::MsgService => Some(ProjectionName::MsgDelivery),
        _ => None,
    }
}

/// The worker's consumer-group options: `ORDERSHOP_CONSUMER` (default
/// `<hostname>-<role>-<port>`, stable across restarts of the same instance so that it first
/// finishes its own pending entries), `ORDERSHOP_CLAIM_IDLE_MS`, `ORDERSHOP_MAX_DELIVERIES`,
/// `ORDERSHOP_BATCH`.
fn runner_options(role: Role, listen: std::net::SocketAddr) -> anyhow::Result<RunnerOptions> {
    let defaults = RunnerOptions::default();
    let number = |name: &str, default: u64| -> anyhow::Result<u64> {
        match std::env::var(name) {
            Ok(v) => v
                .trim()
                .parse::<u64>()
                .with_context(|| format!("{name} must be a whole number, got `{v}`")),
            Err(_) => Ok(default),
        }
    };
    let consumer = match std::env::var("ORDERSHOP_CONSUMER") {
        Ok(name) if !name.trim().is_empty() => name.trim().to_owned(),
        _ => {
            let host = ordershop_projections::runner::default_consumer_name();
            let host = host.rsplit_once('-').map_or(host.as_str(), |(h, _pid)| h);
            format!("{host}-{role}-{}", listen.port())
        }
    };
    Ok(RunnerOptions {
        consumer,
        claim_idle: std::time::Duration::from_millis(number(
            "ORDERSHOP_CLAIM_IDLE_MS",
            defaults.claim_idle.as_millis() as u64,
        )?),
        max_deliveries: number("ORDERSHOP_MAX_DELIVERIES", defaults.max_deliveries)?.max(1),
        batch: number("ORDERSHOP_BATCH", defaults.batch as u64)?.clamp(1, 10_000) as usize,
        ..defaults
    })
}

/// Cancels the token on Ctrl-C or SIGTERM.
fn stop_on_signal(shutdown: CancellationToken) {
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            match signal(SignalKind::terminate()) {
                Ok(mut term) => {
                    tokio::select! {
                        _ = ctrl_c => {}
                        _ = term.recv() => {}
                    }
                }
                Err(_) => {
                    let _ = ctrl_c.await;
                }
            }
        }
        #[cfg(not(unix))]
        {
            let _ = ctrl_c.await;
        }
        tracing::info!("stopping");
        shutdown.cancel();
    });
}

fn bind(role: Role, addr: std::net::SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).with_context(|| format!("{role} cannot listen on {addr}"))
}

/// Starts one role's HTTP server and worker on `tasks` (also used by the bench to run the shop
/// in-process on free ports), with metrics of their own. Roles of one process should share one
/// registry: see [`start_role_with_metrics`].
pub(crate) fn start_role(
    tasks: &mut JoinSet<anyhow::Result<()>>,
    role: Role,
    config: &Config,
    listener: TcpListener,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::new());
    start_role_with_metrics(tasks, role, config, listener, shutdown, &metrics)
}

/// Starts one role's HTTP server and worker on `tasks`, both recording into the process's
/// `metrics`. A role with a worker reports healthy once the worker's Functions are loaded.
pub(crate) fn start_role_with_metrics(
    tasks: &mut JoinSet<anyhow::Result<()>>,
    role: Role,
    config: &Config,
    listener: TcpListener,
    shutdown: &CancellationToken,
    metrics: &Arc<Metrics>,
) -> anyhow::Result<()> {
    let listen = listener.local_addr()?;
    let mut http_config = config.clone();
    if let Some(projection) = worker_of(role) {
        http_config.worker_libraries = projection.libraries().to_vec();
    }
    let token = shutdown.clone();
    let http_metrics = metrics.clone();
    tasks.spawn(async move {
        ordershop_services::serve(role, http_config, listener, token, http_metrics)
            .await
            .with_context(|| format!("{role} HTTP server"))
    });
    if let Some(projection) = worker_of(role) {
        let redis = config.redis.clone();
        let token = shutdown.clone();
        let options = runner_options(role, listen)?;
        let metrics = metrics.clone();
        tracing::info!(%role, consumer = %options.consumer, "starting the {projection} worker");
        tasks.spawn(async move {
            run_until_stopped(redis, projection, options, token, metrics)
                .await
                .with_context(|| format!("{role} worker"))
        });
    }
    Ok(())
}

/// Waits for every task; the first failure stops the others.
async fn join_all(
    mut tasks: JoinSet<anyhow::Result<()>>,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let mut first_error = None;
    while let Some(result) = tasks.join_next().await {
        let result = result.map_err(anyhow::Error::from).and_then(|r| r);
        if let Err(e) = result {
            tracing::error!(error = format!("{e:#}"), "a role stopped with an error");
            shutdown.cancel();
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Fails fast when Redis refuses the credentials or its certificate (retrying cannot fix that);
/// a Redis that is merely unreachable is tolerated: the roles start and answer 503 until it is up.
async fn check_redis_access(redis: &RedisConfig) -> anyhow::Result<()> {
    if let Reachability::Unreachable(reason) = redis.check_access().await? {
        tracing::warn!(redis = %redis.redacted_url(), %reason, "Redis is not reachable yet; starting anyway");
    }
    Ok(())
}

pub async fn serve_role(role: Role) -> anyhow::Result<ExitCode> {
    let config = Config::from_env(role)?;
    let shutdown = CancellationToken::new();
    stop_on_signal(shutdown.clone());
    let listener = bind(role, config.listen)?;
    tracing::info!(%role, listen = %config.listen, redis = %config.redis.redacted_url(), "starting");
    check_redis_access(&config.redis).await?;
    let mut tasks = JoinSet::new();
    let metrics = Arc::new(Metrics::new());
    start_role_with_metrics(&mut tasks, role, &config, listener, &shutdown, &metrics)?;
    join_all(tasks, &shutdown).await?;
    Ok(ExitCode::SUCCESS)
}

/// Runs every role but those in `except` in this process (those can run elsewhere, e.g. as
/// `ordershop serve <role>`, to be stopped and started on their own).
pub async fn up(data_dir: &Path, except: &[Role]) -> anyhow::Result<ExitCode> {
    let local = if std::env::var_os("REDIS_URL").is_none() {
        let fsync = if std::env::var("ORDERSHOP_STRICT_DURABILITY").is_ok_and(|v| v == "1") {
            "always"
        } else {
            "everysec"
        };
        let redis = LocalRedis::start(data_dir, fsync).await?;
        let url_file = data_dir.join(crate::admin::LOCAL_URL_FILE);
        std::fs::write(&url_file, redis.url())
            .with_context(|| format!("cannot write {}", url_file.display()))?;
        tracing::info!(url = %redis.url(), data = %redis.dir().display(), appendfsync = fsync, "private redis-server started");
        Some(redis)
    } else {
        None
    };
    let result = run_everything(local.as_ref().map(LocalRedis::url), except).await;
    if let Some(redis) = local {
        redis
            .stop()
            .await
            .context("stopping the private redis-server")?;
        tracing::info!("private redis-server stopped");
    }
    result
}

async fn run_everything(redis_url: Option<String>, except: &[Role]) -> anyhow::Result<ExitCode> {
    let shutdown = CancellationToken::new();
    stop_on_signal(shutdown.clone());
    let mut tasks = JoinSet::new();
    // One registry for the process: every role's `/metrics` shows all of them.
    let metrics = Arc::new(Metrics::new());
    for role in Role::ALL.into_iter().filter(|r| !except.contains(r)) {
        let mut config = Config::from_env(role)?;
        if let Some(url) = &redis_url {
            config.redis = RedisConfig::new(url.clone())?;
        }
        if tasks.is_empty() {
            check_redis_access(&config.redis).await?;
        }
        let addr = config.address_of(role);
        let listener = bind(role, addr)?;
        tracing::info!(%role, listen = %addr, "starting");
        start_role_with_metrics(&mut tasks, role, &config, listener, &shutdown, &metrics)?;
    }
    tracing::info!(
        "the shop is up: gateway on http://{}",
        Config::from_env(Role::Gateway)?.address_of(Role::Gateway)
    );
    join_all(tasks, &shutdown).await?;
    Ok(ExitCode::SUCCESS)
}
