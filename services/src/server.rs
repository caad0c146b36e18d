//! Running one role: build its application once (connections, clients, services), then serve
//! it with actix on the listener the caller bound, until the shutdown token is cancelled.

use crate::commands::CommandService;
use crate::config::{Config, Role};
use crate::connection::{lazy_connection, load_functions_when_ready, Health};
use crate::error;
use crate::gateway::Gateway;
use crate::headers;
use crate::http::{RoleApp, RoleState};
use crate::messages::MessageService;
use crate::request_id::RequestId;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::{self, Next};
use actix_web::{web, App, HttpMessage, HttpServer};
use anyhow::Context;
use ordershop_eventstore::EventStore;
use ordershop_telemetry::Metrics;
use std::net::TcpListener;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// How long in-flight requests may take to finish after shutdown was asked for.
const SHUTDOWN_TIMEOUT_SECS: u64 = 10;

/// Serves `role` on `listener` until `shutdown` is cancelled, then finishes the requests in
/// flight and returns. Redis is connected lazily: the role starts while Redis is down, answers
/// `/health` with 503 and commands with 503 until it is back. Requests are recorded in
/// `metrics`, which `/metrics` serves (the whole process's registry).
pub async fn serve(
    role: Role,
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
    metrics: Arc<Metrics>,
) -> anyhow::Result<()> {
    let app = build_app(role, &config, &shutdown, metrics)?;
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let token = config.api_token.clone();
    let cross_site = Arc::new(crate::cross_site::CrossSite {
        allowed_origins: config.allowed_origins.clone(),
        allowed_hosts: config.allowed_hosts.clone(),
        loopback_only: listener.local_addr().is_ok_and(|a| a.ip().is_loopback()),
    });
    // Clients reach the shop through the gateway; the services behind it see only the gateway's
    // address, so limiting them would limit the whole shop.
    let rate = config
        .rate_limit
        .filter(|_| role == Role::Gateway)
        .map(|per_second| Arc::new(crate::rate_limit::RateLimit::new(per_second)));
    let server = HttpServer::new(move || {
        let app = app.clone();
        let observed = (role, app.metrics.clone());
        let token = token.clone();
        let cross_site = cross_site.clone();
        let rate = rate.clone();
        App::new()
            // Innermost: a refused request is still logged, counted and given its request id.
            .wrap(middleware::from_fn(move |req, next| {
                crate::auth::require_token(token.clone(), req, next)
            }))
            .wrap(middleware::from_fn(move |req, next| {
                crate::cross_site::guard(cross_site.clone(), req, next)
            }))
            .wrap(middleware::from_fn(move |req, next| {
                crate::rate_limit::limit(rate.clone(), req, next)
            }))
            .wrap(middleware::Compress::default())
            .wrap(middleware::from_fn(move |req, next| {
                observe_request(observed.clone(), req, next)
            }))
            .configure(move |cfg| app.configure(cfg))
            .default_service(web::to(error::unknown_route))
    })
    // The feed's stall watchdog shuts down the socket of a viewer that does not read.
    .on_connect(crate::http::remember_socket)
    .workers(config.http_workers)
    .client_request_timeout(config.request_timeout)
    .max_connections((config.max_connections / config.http_workers).max(1))
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
    metrics: Arc<Metrics>,
) -> anyhow::Result<RoleApp> {
    let conn = lazy_connection(&config.redis).with_context(|| {
        format!(
            "cannot set up the Redis connection to {}",
            config.redis.redacted_url()
        )
    })?;
    // The store a command service appends through (waiting for replicas, if asked to).
    let command_store = || {
        EventStore::from_connection(conn.clone())
            .with_ack_replicas(&config.redis, config.ack_replicas)
            .context("cannot set up the connection that waits for replicas")
    };
    let mut store = None;
    let state = match role {
        Role::CustomerService
        | Role::ProductService
        | Role::InventoryService
        | Role::OrderService
        | Role::BillingService => {
            let event_store = command_store()?;
            tokio::spawn(load_functions_when_ready(
                event_store.clone(),
                role,
                shutdown.clone(),
            ));
            store = Some(event_store.clone());
            RoleState::Commands(CommandService::new(event_store).with_metrics(metrics.clone()))
        }
        Role::Gateway => {
            let mut gateway = Gateway::new(config, conn.clone(), shutdown.clone())?;
            // The domain services this process also runs: their commands run here, not over
            // loopback HTTP (through the same handler code, on the gateway's connection).
            if !config.in_process_commands.is_empty() {
                gateway = gateway.with_local_commands(
                    CommandService::new(command_store()?).with_metrics(metrics.clone()),
                    config.in_process_commands.clone(),
                );
            }
            RoleState::Gateway(gateway)
        }
        Role::MsgService => RoleState::Messages(MessageService::new(conn.clone())),
        Role::CrmService | Role::EntityCache => RoleState::HealthOnly,
    };
    Ok(RoleApp {
        role,
        body_limit: config.body_limit,
        body_timeout: config.request_timeout,
        health: Health::new(role, conn, store).requiring(config.worker_libraries.clone()),
        state,
        metrics,
    })
}

/// Gives the request its id (the client's `X-Request-Id` if sane, else a new one), runs it in a
/// span that carries the id, echoes the id in the response, records the request in the metrics
/// by route template, and logs one line when it is answered (server errors at warn; their cause
/// is logged where they happen).
async fn observe_request(
    (role, metrics): (Role, Arc<Metrics>),
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = std::time::Instant::now();
    let request_id = RequestId::from_header(
        req.headers()
            .get(headers::REQUEST_ID)
            .map(HeaderValue::as_bytes),
    );
    req.extensions_mut().insert(request_id.clone());
    let method = req.method().clone();
    let path = req.path().to_owned();
    let route = req.match_pattern();
    let span = tracing::info_span!("request", request_id = %request_id, role = role.as_str());
    let result = next.call(req).instrument(span.clone()).await;
    let status = match &result {
        Ok(response) => response.status(),
        Err(e) => e.as_response_error().status_code(),
    };
    let elapsed = started.elapsed();
    metrics.http_request(
        role.as_str(),
        route.clone(),
        method.as_str(),
        status.as_u16(),
        elapsed,
    );
    let _entered = span.enter();
    let route = route.as_deref().unwrap_or("unmatched");
    let micros = elapsed.as_micros() as u64;
    let status = status.as_u16();
    if status >= 500 {
        tracing::warn!(%method, %path, route, status, micros, "request failed");
    } else {
        tracing::info!(%method, %path, route, status, micros, "request");
    }
    let mut response = result?;
    if let Ok(value) = HeaderValue::from_str(request_id.as_str()) {
        response
            .headers_mut()
            .insert(HeaderName::from_static(headers::REQUEST_ID), value);
    }
    Ok(response)
}
