//! The gateway's routes: every route of the original. Queries are answered from the entity
//! cache; commands are forwarded to the owning service and relayed once the cache shows them.

use super::{resource, RawBody};
use crate::config::Role;
use crate::error::ApiError;
use crate::gateway::forward::{Outgoing, Relayed};
use crate::gateway::Gateway;
use crate::routes::{EntityPaths, ENTITY_PATHS, REPORT, UNBILLED_ORDERS};
use crate::wire::entity_json;
use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use ordershop_domain::{Entity, EntityKind};
use uuid::Uuid;

/// Registers every gateway route.
pub fn configure(gateway: Gateway, cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::Data::new(gateway));
    cfg.service(resource(UNBILLED_ORDERS).route(web::get().to(unbilled_orders)));
    cfg.service(resource(REPORT).route(web::get().to(report)));
    for paths in ENTITY_PATHS {
        entity_routes(paths, cfg);
    }
}

fn entity_routes(paths: EntityPaths, cfg: &mut web::ServiceConfig) {
    let kind = paths.kind;
    let owner = Role::owner_of(kind);
    let forward = move |gateway: web::Data<Gateway>, req: HttpRequest, body: RawBody| {
        forward(gateway, owner, req, body)
    };
    cfg.service(
        resource(paths.collection)
            .route(web::get().to(move |gateway: web::Data<Gateway>| list(gateway, kind)))
            .route(web::post().to(forward)),
    );
    if let Some(item) = paths.separate_item() {
        cfg.service(resource(item).route(web::post().to(forward)));
    }
    cfg.service(
        resource(&paths.with_id())
            .route(
                web::get().to(move |gateway: web::Data<Gateway>, id: web::Path<Uuid>| {
                    get_one(gateway, kind, id)
                }),
            )
            .route(web::put().to(forward))
            .route(web::delete().to(forward)),
    );
}

fn entities_json(entities: &[Entity]) -> HttpResponse {
    HttpResponse::Ok().json(entities.iter().map(entity_json).collect::<Vec<_>>())
}

/// `GET /<collection>`: every live entity, sorted by id.
async fn list(gateway: web::Data<Gateway>, kind: EntityKind) -> Result<HttpResponse, ApiError> {
    Ok(entities_json(&gateway.cache().list(kind).await?))
}

/// `GET /<item>/{id}`: the entity, or `null` when unknown or deleted (as the original).
async fn get_one(
    gateway: web::Data<Gateway>,
    kind: EntityKind,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let entity = gateway.cache().get(kind, id.into_inner()).await?;
    Ok(HttpResponse::Ok().json(entity.as_ref().map(entity_json)))
}

/// `GET /orders/unbilled`
async fn unbilled_orders(gateway: web::Data<Gateway>) -> Result<HttpResponse, ApiError> {
    Ok(entities_json(&gateway.cache().unbilled_orders().await?))
}

/// `GET /report`
async fn report(gateway: web::Data<Gateway>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(gateway.cache().report().await?))
}

/// A command: forwarded verbatim to `owner`, its answer relayed.
async fn forward(
    gateway: web::Data<Gateway>,
    owner: Role,
    req: HttpRequest,
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
        body: body.0,
    };
    Ok(relay(gateway.command(owner, outgoing).await?))
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
