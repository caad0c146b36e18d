//! The gateway's routes: every route of the original. Queries are answered from the entity
//! cache; commands are forwarded to the owning service and relayed once the cache shows them.

use super::{console, Endpoint, RawBody};
use crate::config::Role;
use crate::error::ApiError;
use crate::gateway::feed::{FeedFilter, FeedRefusal};
use crate::gateway::forward::{Forwarded, Outgoing, Relayed};
use crate::gateway::Gateway;
use crate::openapi::{self, ApiDocument};
use crate::request_id::RequestId;
use crate::routes::{gateway_routes, GatewayOp, GatewayRoute, DOCS_FILES};
use crate::wire::{entity_json, ReportBody};
use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use ordershop_domain::EntityKind;
use ordershop_eventstore::EntryId;
use uuid::Uuid;

/// Registers every gateway route of [`gateway_routes`] (but `/health` and `/metrics`, which
/// every role serves), one resource per path.
pub fn configure(gateway: Gateway, cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::Data::new(gateway));
    cfg.app_data(web::Data::new(ApiDocument::new()));
    let routes = gateway_routes();
    let mut paths: Vec<&str> = Vec::new();
    for route in &routes {
        if !paths.contains(&route.path.as_str()) {
            paths.push(&route.path);
        }
    }
    for path in paths {
        let pattern = if path == DOCS_FILES {
            // Any file below `/docs/`, the empty name (the page itself) included.
            "/docs/{file:.*}"
        } else {
            path
        };
        let mut endpoint = Endpoint::new(pattern);
        for route in routes.iter().filter(|r| r.path == path) {
            if let Some(handler) = handler(route) {
                endpoint = endpoint.on(route.method, handler);
            }
        }
        if endpoint.serves_any() {
            cfg.service(endpoint.finish());
        }
    }
}

/// The handler of one route; `None` for the routes every role registers itself.
fn handler(route: &GatewayRoute) -> Option<actix_web::Route> {
    let on = web::route();
    let forward_to = |kind: EntityKind| {
        let owner = Role::owner_of(kind);
        move |gateway: web::Data<Gateway>, req: HttpRequest, body: RawBody| {
            forward(gateway, owner, req, None, body)
        }
    };
    // The id is parsed here, as the service's route would (the same 400 for a bad one).
    let forward_with_id = |kind: EntityKind| {
        let owner = Role::owner_of(kind);
        move |gateway: web::Data<Gateway>, req: HttpRequest, id: web::Path<Uuid>, body: RawBody| {
            forward(gateway, owner, req, Some(id.into_inner()), body)
        }
    };
    Some(match route.op {
        GatewayOp::List(kind) => on.to(move |gateway: web::Data<Gateway>| list(gateway, kind)),
        GatewayOp::Get(kind) => on
            .to(move |gateway: web::Data<Gateway>, id: web::Path<Uuid>| get_one(gateway, kind, id)),
        GatewayOp::Create(kind) => on.to(forward_to(kind)),
        GatewayOp::Update(kind) | GatewayOp::Delete(kind) => on.to(forward_with_id(kind)),
        GatewayOp::UnbilledOrders => on.to(unbilled_orders),
        GatewayOp::Report => on.to(report),
        GatewayOp::EventStream => on.to(event_stream),
        GatewayOp::OpenApi => on.to(openapi::serve_document),
        GatewayOp::Docs => on.to(openapi::docs_redirect),
        GatewayOp::DocsFiles => on.to(openapi::docs_file),
        GatewayOp::History(kind) => {
            on.to(move |gateway: web::Data<Gateway>, id: web::Path<Uuid>| {
                console::history(gateway, kind, id)
            })
        }
        GatewayOp::Console => on.to(console::page),
        GatewayOp::ConsoleFiles => on.to(console::file),
        GatewayOp::Overview => on.to(console::overview),
        GatewayOp::Projections => on.to(console::projections),
        GatewayOp::DeadLetters => on.to(console::dead_letter_list),
        GatewayOp::DeadLetterRetry => on.to(console::dead_letter_retry),
        GatewayOp::DeadLetterDiscard => on.to(console::dead_letter_discard),
        GatewayOp::Health | GatewayOp::Metrics => return None,
    })
}

fn json_body(body: String) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(actix_web::http::header::ContentType::json())
        .body(body)
}

/// `GET /<collection>`: every live entity, sorted by id (the cached documents, joined).
async fn list(gateway: web::Data<Gateway>, kind: EntityKind) -> Result<HttpResponse, ApiError> {
    Ok(json_body(gateway.cache().list_json(kind).await?))
}

/// `GET /<item>/{id}`: the entity, or `null` when unknown or deleted (as the original).
async fn get_one(
    gateway: web::Data<Gateway>,
    kind: EntityKind,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    // With its version as its entity tag, for `If-Match` on a later PUT or DELETE.
    match gateway.cache().get_versioned(kind, id.into_inner()).await? {
        Some((entity, version)) => Ok(HttpResponse::Ok()
            .insert_header((header::ETAG, crate::precondition::etag(version)))
            .json(entity_json(&entity))),
        None => Ok(HttpResponse::Ok().json(serde_json::Value::Null)),
    }
}

/// `GET /orders/unbilled`
async fn unbilled_orders(gateway: web::Data<Gateway>) -> Result<HttpResponse, ApiError> {
    Ok(json_body(gateway.cache().unbilled_orders_json().await?))
}

/// The query of `GET /events/stream`.
#[derive(Debug, serde::Deserialize)]
struct FeedQuery {
    #[serde(rename = "type")]
    kind: Option<String>,
    action: Option<String>,
    entity: Option<String>,
    since: Option<String>,
    last: Option<String>,
}

/// The most events `?last=` asks for.
const MAX_LAST: usize = 1_000;

/// `GET /events/stream`: the live event feed (see `gateway::feed`).
async fn event_stream(
    gateway: web::Data<Gateway>,
    req: HttpRequest,
    query: web::Query<FeedQuery>,
) -> Result<HttpResponse, ApiError> {
    if let Some(token) = gateway.token() {
        crate::auth::authorizes(
            token,
            req.headers()
                .get(header::AUTHORIZATION)
                .map(|v| v.as_bytes()),
        )?;
    }
    let query = query.into_inner();
    let mut filter = FeedFilter::default();
    if let Some(kind) = &query.kind {
        filter.kinds.push(
            kind.parse()
                .map_err(|e: String| ApiError::bad_request(format!("type: {e}")))?,
        );
    }
    if let Some(action) = &query.action {
        filter.actions.push(
            action
                .parse()
                .map_err(|e: String| ApiError::bad_request(format!("action: {e}")))?,
        );
    }
    if let Some(entity) = &query.entity {
        filter.entity =
            Some(Uuid::parse_str(entity).map_err(|e| {
                ApiError::bad_request(format!("entity: `{entity}` is not an id: {e}"))
            })?);
    }
    let resume = match req.headers().get("last-event-id") {
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse::<EntryId>().ok())
                .ok_or_else(|| {
                    ApiError::bad_request("Last-Event-ID: not an entry ID (<ms>-<seq>)")
                })?,
        ),
        None => match &query.since {
            Some(since) => Some(
                since
                    .trim()
                    .parse::<EntryId>()
                    .map_err(|e| ApiError::bad_request(format!("since: {e}")))?,
            ),
            None => match &query.last {
                Some(last) => {
                    let n = last
                        .trim()
                        .parse::<usize>()
                        .ok()
                        .filter(|n| (1..=MAX_LAST).contains(n))
                        .ok_or_else(|| {
                            ApiError::bad_request(format!(
                                "last: `{last}` is not a count of events from 1 to {MAX_LAST}"
                            ))
                        })?;
                    Some(
                        gateway
                            .feed()
                            .start_of_last(&filter, n)
                            .await
                            .map_err(ApiError::unavailable)?,
                    )
                }
                None => None,
            },
        },
    };
    let feed = gateway.feed();
    let admission = match feed.admit(req.peer_addr().map(|a| a.ip())) {
        Ok(admission) => admission,
        Err(refusal) => return Ok(feed_refused(&refusal)),
    };
    if let Some(socket) = req
        .conn_data::<super::ConnectionSocket>()
        .and_then(super::ConnectionSocket::duplicate)
    {
        admission.closable_by(socket);
    }
    let viewer = match feed.open(admission, filter, resume).await {
        Ok(viewer) => viewer,
        Err(refusal) => return Ok(feed_refused(&refusal)),
    };
    let hello = futures::stream::once(async {
        Ok::<_, actix_web::Error>(web::Bytes::from_static(b": ordershop event feed\n\n"))
    });
    let events = futures::stream::unfold(viewer, |mut viewer| async move {
        let frame = viewer.next_frame().await?;
        Some((Ok::<_, actix_web::Error>(frame), viewer))
    });
    use futures::StreamExt;
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(hello.chain(events)))
}

/// 503 for a viewer the feed cannot take now: it says why, when to try again, and closes the
/// connection so that a refused viewer does not keep one.
fn feed_refused(refusal: &FeedRefusal) -> HttpResponse {
    use actix_web::ResponseError;
    let mut response = ApiError::unavailable(refusal.to_string()).error_response();
    let headers = response.headers_mut();
    headers.insert(
        header::RETRY_AFTER,
        header::HeaderValue::from(crate::gateway::feed::RETRY_AFTER_SECS),
    );
    headers.insert(
        header::CONNECTION,
        header::HeaderValue::from_static("close"),
    );
    response
}

/// `GET /report`
async fn report(gateway: web::Data<Gateway>) -> Result<HttpResponse, ApiError> {
    let report = gateway.cache().report().await?;
    Ok(HttpResponse::Ok().json(ReportBody::from(&report)))
}

/// A command: forwarded verbatim to `owner`, its answer relayed.
async fn forward(
    gateway: web::Data<Gateway>,
    owner: Role,
    req: HttpRequest,
    id: Option<Uuid>,
    body: RawBody,
) -> Result<HttpResponse, ApiError> {
    let outgoing = Outgoing {
        method: req.method().as_str(),
        path_and_query: req
            .uri()
            .path_and_query()
            .map_or_else(|| req.path(), |p| p.as_str()),
        content_type: req
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.as_bytes()),
        idempotency_key: req
            .headers()
            .get(crate::headers::IDEMPOTENCY_KEY)
            .map(|v| v.as_bytes()),
        if_match: req
            .headers()
            .get(crate::headers::IF_MATCH)
            .map(|v| v.as_bytes()),
        body: body.0,
        request_id: req.extensions().get::<RequestId>().cloned(),
        id,
    };
    Ok(match gateway.command(owner, outgoing).await? {
        Forwarded::Relayed(relayed) => relay(relayed),
        Forwarded::InProcess(Ok(answer)) => super::commands::respond_to_client(&answer),
        Forwarded::InProcess(Err(e)) => actix_web::ResponseError::error_response(&e),
    })
}

fn relay(relayed: Relayed) -> HttpResponse {
    let status = StatusCode::from_u16(relayed.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut response = HttpResponse::build(status);
    for (name, value) in &relayed.headers {
        if let Ok(value) = header::HeaderValue::from_bytes(value) {
            response.insert_header((*name, value));
        }
    }
    response.body(relayed.body)
}
