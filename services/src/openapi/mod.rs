//! The gateway's OpenAPI document (`GET /openapi.json`) and its docs page (`GET /docs/`).
//!
//! The document is generated, not written: its paths come from [`gateway_routes`] — the same
//! table the gateway registers its routes from, where each route carries what the document says
//! about it ([`crate::routes::doc`]; [`operation`] writes that out) — and its schemas are derived
//! (`utoipa`) from the wire types the handlers parse ([`crate::wire`]) and the error body every
//! error answer has ([`ErrorBody`]). The entity schemas ([`entities`]) describe the JSON the log
//! stores; a test checks them against what the domain types serialise to.
//!
//! The docs page is Swagger UI compiled into the binary (`utoipa-swagger-ui` with its
//! `vendored` feature): nothing is fetched from the internet at build or run time, and the
//! page's online validator badge is turned off.

mod entities;
mod operation;

use crate::error::{ApiError, ErrorBody};
use crate::routes::{gateway_routes, Method};
use crate::wire::{BillingBody, CustomerBody, InventoryBody, OrderBody, ProductBody};
use actix_web::http::header;
use actix_web::{web, HttpResponse};
use entities::HealthStatus;
use std::sync::Arc;
use utoipa::openapi::path::{HttpMethod, PathItem, PathsBuilder};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ComponentsBuilder, InfoBuilder, OpenApi, OpenApiBuilder};

/// The security scheme of the commands: needed when ORDERSHOP_API_TOKEN is set.
const BEARER: &str = "bearer";

fn method(method: Method) -> HttpMethod {
    match method {
        Method::Get => HttpMethod::Get,
        Method::Post => HttpMethod::Post,
        Method::Put => HttpMethod::Put,
        Method::Delete => HttpMethod::Delete,
    }
}

/// The gateway's OpenAPI document, generated from its route table and wire types.
pub fn document() -> OpenApi {
    let mut paths = PathsBuilder::new();
    for route in gateway_routes() {
        paths = paths.path(
            route.path.clone(),
            PathItem::new(method(route.method), operation::operation(&route)),
        );
    }
    let components = ComponentsBuilder::new()
        .schema_from::<ErrorBody<'static>>()
        .schema_from::<HealthStatus>()
        .schema_from::<CustomerBody>()
        .schema_from::<ProductBody>()
        .schema_from::<InventoryBody>()
        .schema_from::<OrderBody>()
        .schema_from::<BillingBody>()
        .schema_from::<entities::Customer>()
        .schema_from::<entities::Product>()
        .schema_from::<entities::Inventory>()
        .schema_from::<entities::Order>()
        .schema_from::<entities::Billing>()
        .schema_from::<entities::Report>()
        .security_scheme(
            BEARER,
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        )
        .build();
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("OrderShop gateway")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "The HTTP API of OrderShop, an event-sourced shop on Redis Streams. A command \
                     that answered 2xx is visible to the next GET. Errors are JSON \
                     `{error, detail}`.",
                ))
                .build(),
        )
        .paths(paths.build())
        .components(Some(components))
        .build()
}

/// The document, serialised once, and the docs page's settings.
pub struct ApiDocument {
    json: String,
    swagger: Arc<utoipa_swagger_ui::Config<'static>>,
}

impl ApiDocument {
    pub fn new() -> Self {
        let json = document().to_json().unwrap_or_else(|e| {
            tracing::error!(error = %e, "cannot serialise the OpenAPI document");
            "{}".to_owned()
        });
        let swagger = utoipa_swagger_ui::Config::new([crate::routes::OPENAPI])
            // The badge would ask validator.swagger.io: the page must work offline.
            .validator_url("none");
        Self {
            json,
            swagger: Arc::new(swagger),
        }
    }
}

impl Default for ApiDocument {
    fn default() -> Self {
        Self::new()
    }
}

/// `GET /openapi.json`
pub async fn serve_document(document: web::Data<ApiDocument>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(document.json.clone())
}

/// `GET /docs`: the page lives at `/docs/` (its files are relative to it).
pub async fn docs_redirect() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header((header::LOCATION, "/docs/"))
        .finish()
}

/// `GET /docs/{file}`: Swagger UI's files, from the binary.
pub async fn docs_file(
    file: web::Path<String>,
    document: web::Data<ApiDocument>,
) -> Result<HttpResponse, ApiError> {
    match utoipa_swagger_ui::serve(&file, document.swagger.clone()) {
        Ok(Some(found)) => Ok(HttpResponse::Ok()
            .content_type(found.content_type)
            .body(found.bytes.into_owned())),
        Ok(None) => Err(ApiError::not_found(format!("no docs file `{file}`"))),
        Err(e) => {
            tracing::error!(error = %e, "cannot serve the docs page");
            Err(ApiError::new(
                actix_web::http::StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "cannot serve the docs page",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use std::collections::BTreeSet;

    #[test]
    fn every_gateway_route_is_documented_once_with_a_unique_operation_id() {
        let document: Value = serde_json::from_str(&document().to_json().unwrap()).unwrap();
        let mut ids = BTreeSet::new();
        for route in gateway_routes() {
            let op = &document["paths"][&route.path][route.method.as_str().to_lowercase()];
            assert!(
                op.is_object(),
                "{} {} missing",
                route.method.as_str(),
                route.path
            );
            assert!(ids.insert(op["operationId"].as_str().unwrap().to_owned()));
        }
    }
}
