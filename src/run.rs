//! Starting roles: `serve <role>` runs one role in this process (one container in
//! docker-compose), `up` runs every role in one process for a developer's machine. Both stop
//! gracefully on Ctrl-C or SIGTERM: HTTP servers drain, workers finish their batch.

use crate::local_redis::LocalRedis;
use crate::local_shop::ShopFolder;
use anyhow::Context;
use ordershop_projections::{run_until_stopped, RunnerOptions};
use ordershop_redis::{Reachability, RedisConfig};
use ordershop_services::config::{Config, ProcessSettings, Role, REDIS_URL};
use ordershop_telemetry::Metrics;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// The worker's consumer-group options, from the role's configuration: the consumer name
/// defaults to `<hostname>-<role>-<port>`, stable across restarts of the same instance, so
/// that it first finishes its own pending entries.
fn runner_options(config: &Config, listen: SocketAddr) -> RunnerOptions {
    let defaults = RunnerOptions::default();
    let settings = &config.worker;
    let consumer = settings.consumer.clone().unwrap_or_else(|| {
        let host = ordershop_projections::runner::default_consumer_name();
        let host = host.rsplit_once('-').map_or(host.as_str(), |(h, _pid)| h);
        format!("{host}-{}-{}", config.role, listen.port())
    });
    RunnerOptions {
        consumer,
        claim_idle: settings.claim_idle.unwrap_or(defaults.claim_idle),
        max_deliveries: settings.max_deliveries.unwrap_or(defaults.max_deliveries),
        batch: settings.batch.unwrap_or(defaults.batch),
        ..defaults
    }
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

/// Binds a role's address; the error names what to change when the port is taken.
fn bind(role: Role, addr: SocketAddr, change: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::AddrInUse {
            format!(" (the port is taken: {change})")
        } else {
            String::new()
        };
        anyhow::anyhow!("{role} cannot listen on {addr}: {e}{hint}")
    })
}

/// The domain services among `roles`: a gateway run in the same process runs their commands
/// in-process (`Config::in_process_commands`) instead of calling them over loopback HTTP.
pub fn local_commands(roles: impl IntoIterator<Item = Role>) -> Vec<Role> {
    roles
        .into_iter()
        .filter(|role| role.commands().is_some())
        .collect()
}

/// Starts one role's HTTP server and worker on `tasks` (also used by the bench to run the shop
/// in-process on free ports), with metrics of their own. Roles of one process should share one
/// registry: see [`start_role_with_metrics`].
pub fn start_role(
    tasks: &mut JoinSet<anyhow::Result<()>>,
    role: Role,
    config: &Config,
    listener: TcpListener,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::new());
    start_role_with_metrics(tasks, role, config, listener, shutdown, &metrics)?;
    start_gauges(tasks, &config.redis, &[role], &metrics, shutdown);
    Ok(())
}

/// Keeps the projection gauges (pending, lag, dead letters, down) of the workers these roles
/// run current in the process's `metrics`: one reader for the whole process, whatever number of
/// roles it runs, and none when it runs no worker.
fn start_gauges(
    tasks: &mut JoinSet<anyhow::Result<()>>,
    redis: &RedisConfig,
    roles: &[Role],
    metrics: &Arc<Metrics>,
    shutdown: &CancellationToken,
) {
    let workers: Vec<_> = roles
        .iter()
        .flat_map(|role| role.workers())
        .copied()
        .collect();
    if workers.is_empty() {
        return;
    }
    let gauges = ordershop_operations::gauges::refresh_until_stopped(
        redis.clone(),
        workers,
        metrics.clone(),
        shutdown.clone(),
    );
    tasks.spawn(async move {
        gauges.await;
        Ok(())
    });
}

/// Starts one role's HTTP server and worker on `tasks`, both recording into the process's
/// `metrics`. A role with a worker reports healthy once the worker's Functions are loaded.
/// The process's projection gauges are started once for all its roles: [`start_gauges`].
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
    let workers = role.workers();
    http_config.worker_libraries = workers.iter().flat_map(|p| p.libraries()).collect();
    http_config.worker_libraries.sort_unstable();
    http_config.worker_libraries.dedup();
    let token = shutdown.clone();
    let http_metrics = metrics.clone();
    tasks.spawn(async move {
        ordershop_services::serve(role, http_config, listener, token, http_metrics)
            .await
            .with_context(|| format!("{role} HTTP server"))
    });
    for &projection in workers {
        let redis = config.redis.clone();
        let token = shutdown.clone();
        let options = runner_options(config, listen);
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

/// Fails fast when Redis refuses the credentials or its certificate, or is a server the shop
/// does not support (retrying cannot fix those). A Redis that is merely unreachable is an error
/// too when `must_answer` (`up`); otherwise (`serve`, e.g. a container started before Redis) it is
/// tolerated: the role starts and answers 503 until Redis is up.
async fn check_redis(redis: &RedisConfig, must_answer: bool) -> anyhow::Result<()> {
    match redis.check_access().await? {
        Reachability::Answered(server) => {
            tracing::info!(redis = %redis.redacted_url(), %server, "Redis answers");
        }
        Reachability::Unreachable(reason) if must_answer => anyhow::bail!(
            "Redis at {} does not answer ({reason}): start it, or unset REDIS_URL to let \
             `ordershop up` start a private one",
            redis.redacted_url()
        ),
        Reachability::Unreachable(reason) => {
            tracing::warn!(redis = %redis.redacted_url(), %reason, "Redis is not reachable yet; starting anyway");
        }
    }
    Ok(())
}

pub async fn serve_role(role: Role) -> anyhow::Result<ExitCode> {
    let config = Config::from_env(role)?;
    let shutdown = CancellationToken::new();
    stop_on_signal(shutdown.clone());
    let listener = bind(
        role,
        config.listen,
        "set ORDERSHOP_LISTEN to another address",
    )?;
    tracing::info!(%role, listen = %config.listen, redis = %config.redis.redacted_url(), "starting");
    check_redis(&config.redis, false).await?;
    let mut tasks = JoinSet::new();
    let metrics = Arc::new(Metrics::new());
    start_role_with_metrics(&mut tasks, role, &config, listener, &shutdown, &metrics)?;
    start_gauges(&mut tasks, &config.redis, &[role], &metrics, &shutdown);
    join_all(tasks, &shutdown).await?;
    Ok(ExitCode::SUCCESS)
}

/// Runs every role but those in `except` in this process (those can run elsewhere, e.g. as
/// `ordershop serve <role>`, to be stopped and started on their own). Without `REDIS_URL` it
/// takes the data folder ([`ShopFolder`]) and starts a private redis-server there, which dies
/// with this process. `port` moves the whole shop: the gateway there, the other roles after it.
///
/// Order matters for what a failed start leaves behind: every port is bound and Redis checked
/// before `redis.url` is written, so a failed start never points operator commands anywhere.
pub async fn up(
    data_dir: Option<&Path>,
    except: &[Role],
    port: Option<u16>,
) -> anyhow::Result<ExitCode> {
    let external_redis = std::env::var_os(REDIS_URL).is_some_and(|v| !v.is_empty());
    // The folder first: a second `up` there is told so, not that the first one's ports are taken.
    let folder = if external_redis {
        None
    } else {
        let dir = match data_dir {
            Some(dir) => dir.to_path_buf(),
            None => {
                // Not asked for a folder: a shop running above this one would be hidden.
                let cwd = std::env::current_dir().context("cannot read the current folder")?;
                if let Some(above) = crate::local_shop::running_above(&cwd) {
                    return Err(crate::local_shop::ShopError::RunningAbove(above).into());
                }
                Path::new(crate::local_shop::DEFAULT_DIR).to_path_buf()
            }
        };
        Some(ShopFolder::take(&dir)?)
    };
    let roles: Vec<Role> = Role::ALL
        .into_iter()
        .filter(|r| !except.contains(r))
        .collect();
    let mut started = Vec::with_capacity(roles.len());
    for role in roles {
        let mut config = Config::from_env(role)?;
        if let Some(base) = port {
            move_shop(&mut config, base);
        }
        let addr = config.address_of(role);
        let change = match (port, role.url_var()) {
            (Some(_), _) => "choose another --port".to_owned(),
            (None, Some(var)) => {
                format!("set {var}, or move the whole shop with `ordershop up --port <port>`")
            }
            (None, None) => "set ORDERSHOP_LISTEN, or move the whole shop with \
                             `ordershop up --port <port>`"
                .to_owned(),
        };
        let listener = bind(role, addr, &change)?;
        started.push((role, config, listener));
    }
    let Some((_, first, _)) = started.first() else {
        anyhow::bail!("--except leaves no role to run");
    };
    let gateway = first.address_of(Role::Gateway);

    let mut local = None;
    let redis = if let Some(folder) = folder {
        let fsync = if ProcessSettings::from_env().strict_durability {
            "always"
        } else {
            "everysec"
        };
        let server = LocalRedis::start(folder.dir(), fsync, Some(folder.lock())).await?;
        tracing::info!(url = %server.url(), data = %server.dir().display(), appendfsync = fsync, "private redis-server started");
        let redis = RedisConfig::new(server.url())?;
        local = Some((folder, server));
        redis
    } else {
        first.redis.clone()
    };

    let shutdown = CancellationToken::new();
    let result = async {
        check_redis(&redis, true).await?;
        match &mut local {
            Some((folder, server)) => {
                folder.publish_url(&server.url())?;
                folder.publish_gateway(gateway)?;
                let (ran, supervised) = tokio::join!(
                    run_everything(started, &redis, gateway, shutdown.clone()),
                    supervise(server, &shutdown)
                );
                supervised.and(ran)
            }
            None => run_everything(started, &redis, gateway, shutdown.clone()).await,
        }
    }
    .await;

    if let Some((mut folder, server)) = local {
        folder.withdraw_url();
        server
            .stop()
            .await
            .context("stopping the private redis-server")?;
        tracing::info!("private redis-server stopped");
    }
    result
}

/// Puts the gateway on `base` (on `ORDERSHOP_LISTEN`'s host) and every other role on
/// 127.0.0.1:`base + (its default port - 5000)`.
fn move_shop(config: &mut Config, base: u16) {
    let offset = |role: Role| role.default_port() - Role::Gateway.default_port();
    for role in Role::ALL {
        if role == Role::Gateway {
            if config.role == Role::Gateway {
                config.listen.set_port(base);
            }
        } else {
            config.set_peer_url(role, format!("http://127.0.0.1:{}", base + offset(role)));
        }
    }
    if config.role != Role::Gateway {
        config.listen = config.address_of(config.role);
    }
}

/// How many times `up` starts its private server again after it died, at most; the next death
/// stops the shop.
const REDIS_RESTARTS: u32 = 3;

/// Watches `up`'s private redis-server until `shutdown`: when it dies (killed, out of memory),
/// says so and starts it again on the same folder and port, where the roles reconnect by
/// themselves; when it cannot, or it keeps dying, stops the shop with an error that says what
/// happened — never a shop that answers 503 for ever.
async fn supervise(server: &mut LocalRedis, shutdown: &CancellationToken) -> anyhow::Result<()> {
    let mut restarts = 0;
    loop {
        let pid = server.pid().unwrap_or(0);
        let status = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            status = server.exited() => status,
        };
        let log = server.dir().join("redis.log");
        if restarts == REDIS_RESTARTS {
            shutdown.cancel();
            anyhow::bail!(
                "the private redis-server (pid {pid}, {}) exited with {status}, after {restarts} \
                 restarts; stopping the shop. See {}",
                server.url(),
                log.display()
            );
        }
        restarts += 1;
        tracing::error!(pid, url = %server.url(), %status, log = %log.display(),
            "the private redis-server died; starting it again on the same folder");
        if let Err(e) = server.restart().await {
            shutdown.cancel();
            return Err(e.context(format!(
                "the private redis-server (pid {pid}) exited with {status} and could not be \
                 started again; stopping the shop. See {}",
                log.display()
            )));
        }
        tracing::warn!(pid = server.pid().unwrap_or(0), url = %server.url(), restarts,
            "the private redis-server is running again with its data; the roles reconnect");
    }
}

async fn run_everything(
    roles: Vec<(Role, Config, TcpListener)>,
    redis: &RedisConfig,
    gateway: SocketAddr,
    shutdown: CancellationToken,
) -> anyhow::Result<ExitCode> {
    stop_on_signal(shutdown.clone());
    let mut tasks = JoinSet::new();
    // One registry for the process: every role's `/metrics` shows all of them.
    let metrics = Arc::new(Metrics::new());
    let local = local_commands(roles.iter().map(|(role, _, _)| *role));
    let running: Vec<Role> = roles.iter().map(|(role, _, _)| *role).collect();
    start_gauges(&mut tasks, redis, &running, &metrics, &shutdown);
    for (role, mut config, listener) in roles {
        config.redis = redis.clone();
        if role == Role::Gateway {
            config.in_process_commands = local.clone();
        }
        tracing::info!(%role, listen = %listener.local_addr()?, "starting");
        start_role_with_metrics(&mut tasks, role, &config, listener, &shutdown, &metrics)?;
    }
    tracing::info!("the shop is up: gateway on http://{gateway}");
    join_all(tasks, &shutdown).await?;
    Ok(ExitCode::SUCCESS)
}
