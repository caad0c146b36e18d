//! Running one role: build its application once (connections, clients, services), then serve
//! it with actix on the listener the caller bound, until the shutdown token is cancelled.

use crate::commands::CommandService;
use crate::config::{Config, Role};
use crate::connection::{lazy_connection, load_functions_when_ready, Health};
use crate::error;
use crate::gateway::Gateway;
use crate::http::{RoleApp, RoleState};
use crate::messages::MessageService;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::{self, Next};
use actix_web::{web, App, HttpServer};
use anyhow::Context;
use ordershop_eventstore::EventStore;
use std::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// How long in-flight requests may take to finish after shutdown was asked for.
const SHUTDOWN_TIMEOUT_SECS: u64 = 10;

/// Serves `role` on `listener` until `shutdown` is cancelled, then finishes the requests in
/// flight and returns. Redis is connected lazily: the role starts while Redis is down, answers
/// `/health` with 503 and commands with 503 until it is back.
pub async fn serve(
    role: Role,
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let app = build_app(role, &config, &shutdown)?;
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let server = HttpServer::new(move || {
        let app = app.clone();
        App::new()
            .wrap(middleware::Compress::default())
            .wrap(middleware::from_fn(trace_request))
            .configure(move |cfg| app.configure(cfg))
            .default_service(web::to(error::unknown_route))
    })
    .workers(config.http_workers)
    .shutdown_signal(shutdown.clone().cancelled_owned())
    .shutdown_timeout(SHUTDOWN_TIMEOUT_SECS)
    .listen(listener)
    .with_context(|| format!("{role} cannot listen on {addr}"))?
    .run();
    tracing::info!(%role, %addr, workers = config.http_workers, "serving HTTP");
    server
        .await
        .with_context(|| format!("{role}'s HTTP server failed"))?;
    tracing::info!(%role, "HTTP server stopped");
    Ok(())
}

/// Builds what `role` serves. Must run inside the tokio runtime that will drive the Redis
/// connection (the one `serve` runs on).
pub fn build_app(
    role: Role,
    config: &Config,
    shutdown: &CancellationToken,
) -> anyhow::Result<RoleApp> {
    let conn = lazy_connection(&config.redis).with_context(|| {
        format!(
            "cannot set up the Redis connection to {}",
            config.redis.redacted_url()
        )
    })?;
    let mut store = None;
    let state = match role {
        Role::CustomerService
        | Role::ProductService
        | Role::InventoryService
        | Role::OrderService
        | Role::BillingService => {
            let event_store = EventStore::from_connection(conn.clone());
            tokio::spawn(load_functions_when_ready(
                event_store.clone(),
                role,
                shutdown.clone(),
            ));
            store = Some(event_store.clone());
            RoleState::Commands(CommandService::new(event_store))
        }
        Role::Gateway => RoleState::Gateway(
            Gateway::new(config, conn.clone()).context("cannot build the gateway's HTTP client")?,
        ),
        Role::MsgService => RoleState::Messages(MessageService::new(conn.clone())),
        Role::CrmService | Role::EntityCache => RoleState::HealthOnly,
    };
    Ok(RoleApp {
        role,
        body_limit: config.body_limit,
        health: Health::new(role, conn, store),
        state,
    })
}

/// One trace line per request: method, path, status and duration (debug level; server errors
/// at warn, their cause is logged where they happen).
async fn trace_request(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = std::time::Instant::now();
    let method = req.method().clone();
    let path = req.path().to_owned();
    let response = next.call(req).await?;
    let status = response.status().as_u16();
    let micros = started.elapsed().as_micros() as u64;
    if status >= 500 {
        tracing::warn!(%method, %path, status, micros, "request failed");
    } else {
        tracing::debug!(%method, %path, status, micros, "request");
    }
    Ok(response)
}
