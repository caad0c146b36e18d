//! The HTTP edge: thin handlers that parse requests into validated types, call the application
//! layer and map its answer. Shared here: body extraction with a size limit, `/health`,
//! `/metrics`, and assembling each role's routes.

pub mod commands;
pub mod console;
pub mod gateway;
pub mod msg;

use crate::config::Role;
use crate::connection::Health;
use crate::error::{self, ApiError};
use crate::routes::{Method, HEALTH, METRICS};
use actix_web::dev::Payload;
use actix_web::guard;
use actix_web::web::{self, Bytes};
use actix_web::ResponseError;
use actix_web::{FromRequest, HttpRequest, HttpResponse};
use ordershop_telemetry::error_chain;
use ordershop_telemetry::Metrics;
use serde_json::json;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// The descriptor of a connection's socket, recorded when the connection is accepted, so that
/// the feed's stall watchdog can shut down the connection of a viewer that does not read.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionSocket(std::os::fd::RawFd);

/// `HttpServer::on_connect`: records each plain TCP connection's [`ConnectionSocket`].
pub fn remember_socket(conn: &dyn std::any::Any, data: &mut actix_web::dev::Extensions) {
    if let Some(stream) = conn.downcast_ref::<actix_web::rt::net::TcpStream>() {
        use std::os::fd::AsRawFd;
        data.insert(ConnectionSocket(stream.as_raw_fd()));
    }
}

impl ConnectionSocket {
    /// A duplicate of the socket on a descriptor of its own (shutting it down ends the
    /// connection; closing it does not). Call it only while the connection's request is being
    /// handled.
    pub fn duplicate(&self) -> Option<std::net::TcpStream> {
        // SAFETY: the request being handled keeps its connection, so this descriptor is that
        // connection's open socket for the duration of the borrow, which ends with the clone.
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(self.0) };
        fd.try_clone_to_owned().ok().map(std::net::TcpStream::from)
    }
}

/// The largest request body accepted, in bytes.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

/// How long the body of a request may take to arrive once its head has (`RawBody`).
#[derive(Debug, Clone, Copy)]
pub struct BodyTimeout(pub std::time::Duration);

/// The raw request body, decompressed, refused with 413 beyond the [`BodyLimit`] and with 408
/// when it does not arrive within the [`BodyTimeout`] (a client trickling its body is not
/// waited for: the answer closes the connection, whose body was not read to its end).
pub struct RawBody(pub Bytes);

impl FromRequest for RawBody {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let limit = req
            .app_data::<BodyLimit>()
            .map_or(crate::config::DEFAULT_BODY_LIMIT, |l| l.0);
        let timeout = req
            .app_data::<BodyTimeout>()
            .map_or(crate::config::DEFAULT_REQUEST_TIMEOUT, |t| t.0);
        // `Bytes` reads with the limit of the `PayloadConfig` registered next to `BodyLimit`.
        let body = Bytes::from_request(req, payload);
        Box::pin(async move {
            let Ok(body) = tokio::time::timeout(timeout, body).await else {
                return Err(ApiError::request_timeout(timeout));
            };
            body.map(RawBody).map_err(|e| {
                if e.as_response_error().status_code()
                    == actix_web::http::StatusCode::PAYLOAD_TOO_LARGE
                {
                    ApiError::payload_too_large(limit)
                } else {
                    ApiError::bad_request(format!("cannot read the request body: {e}"))
                }
            })
        })
    }
}

/// The request body parsed as JSON; 400 when it is not JSON. (That a body is sent as
/// `application/json` at all is checked before any handler runs: [`crate::cross_site`].)
pub struct JsonBody(pub serde_json::Value);

impl FromRequest for JsonBody {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let body = RawBody::from_request(req, payload);
        Box::pin(async move {
            let RawBody(bytes) = body.await?;
            crate::wire::parse_json(&bytes).map(JsonBody)
        })
    }
}

/// `GET /health`: 200 when the role's dependencies answer, else 503.
async fn health(health: web::Data<Health>) -> HttpResponse {
    let role = health.role.as_str();
    match health.check().await {
        Ok(()) => HttpResponse::Ok().json(json!({"status": "ok", "role": role})),
        Err(e) => {
            tracing::warn!(role, error = %error_chain(&e), "health check failed");
            HttpResponse::ServiceUnavailable().json(json!({
                "status": "unavailable",
                "role": role,
                "error": "unavailable",
                "detail": e.to_string(),
            }))
        }
    }
}

/// `GET /metrics`: the process's metrics in the OpenMetrics text format.
async fn metrics(metrics: web::Data<Arc<Metrics>>) -> HttpResponse {
    match metrics.encode() {
        Ok(text) => HttpResponse::Ok()
            .content_type(ordershop_telemetry::metrics::CONTENT_TYPE)
            .body(text),
        Err(e) => {
            tracing::error!(error = %e, "cannot encode the metrics");
            ApiError::new(
                actix_web::http::StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "cannot encode the metrics",
            )
            .error_response()
        }
    }
}

/// One path and the methods it serves. A path served with GET answers HEAD too (the same
/// status and headers; the HTTP layer sends no body for HEAD); any other method is answered 405
/// with an `Allow` header naming the served ones.
pub(crate) struct Endpoint {
    resource: actix_web::Resource,
    allow: Vec<&'static str>,
}

impl Endpoint {
    pub(crate) fn new(path: &str) -> Self {
        Self {
            resource: web::resource(path),
            allow: Vec::new(),
        }
    }

    /// Serves `method` with `route` (a route without a method guard, e.g. `web::to(handler)`).
    pub(crate) fn on(mut self, method: Method, route: actix_web::Route) -> Self {
        let route = match method {
            Method::Get => {
                self.allow.extend(["GET", "HEAD"]);
                route.guard(guard::Any(guard::Get()).or(guard::Head()))
            }
            Method::Post => route.guard(guard::Post()),
            Method::Put => route.guard(guard::Put()),
            Method::Delete => route.guard(guard::Delete()),
        };
        if method != Method::Get {
            self.allow.push(method.as_str());
        }
        self.resource = self.resource.route(route);
        self
    }

    /// A path that serves one method.
    pub(crate) fn only(path: &str, method: Method, route: actix_web::Route) -> actix_web::Resource {
        Self::new(path).on(method, route).finish()
    }

    /// Whether any method is served.
    pub(crate) fn serves_any(&self) -> bool {
        !self.allow.is_empty()
    }

    /// The resource, answering 405 with `Allow` for the methods it does not serve.
    pub(crate) fn finish(self) -> actix_web::Resource {
        let allow = self.allow.join(", ");
        self.resource
            .default_service(web::to(move |req: HttpRequest| {
                let allow = allow.clone();
                async move { error::wrong_method(&req, &allow) }
            }))
    }
}

/// What the application layer of a role is.
#[derive(Clone)]
pub enum RoleState {
    /// A domain service: the command routes of its entity type.
    Commands(crate::commands::CommandService),
    Gateway(crate::gateway::Gateway),
    Messages(crate::messages::MessageService),
    /// crm-service and entity-cache: their workers run elsewhere; HTTP is only for `/health`.
    HealthOnly,
}

/// Everything a role's app needs, built once per process and shared by the HTTP workers.
#[derive(Clone)]
pub struct RoleApp {
    pub role: Role,
    pub body_limit: usize,
    pub body_timeout: std::time::Duration,
    pub health: Health,
    pub state: RoleState,
    /// The process's metrics (shared with every other role and worker it runs).
    pub metrics: Arc<Metrics>,
}

impl RoleApp {
    /// Registers the role's extractor settings and routes.
    pub fn configure(&self, cfg: &mut web::ServiceConfig) {
        cfg.app_data(web::PayloadConfig::new(self.body_limit))
            .app_data(BodyLimit(self.body_limit))
            .app_data(BodyTimeout(self.body_timeout))
            .app_data(error::path_config())
            .app_data(error::query_config())
            .app_data(web::Data::new(self.health.clone()))
            .app_data(web::Data::new(self.metrics.clone()))
            .service(Endpoint::only(HEALTH, Method::Get, web::to(health)))
            .service(Endpoint::only(METRICS, Method::Get, web::to(metrics)));
        match &self.state {
            RoleState::Commands(service) => {
                if let Some(kind) = self.role.commands() {
                    commands::configure(kind, service.clone(), cfg);
                }
            }
            RoleState::Gateway(gateway) => gateway::configure(gateway.clone(), cfg),
            RoleState::Messages(messages) => msg::configure(messages.clone(), cfg),
            RoleState::HealthOnly => {}
        }
    }
}
