//! The web console (`GET /`) and what it reads: the shop's state (`/overview`, as `ordershop
//! report --json`), the projections (`/projections`, as `ordershop status --json`), the parked
//! entries and the actions on them (`/dead-letters`), and an entity's history
//! (`/<item>/{id}/events`). The page, its script and its style are compiled into the binary: no
//! CDN, no build step, works offline. Reads are open like every GET; the dead-letter actions are
//! POSTs, so the API token guards them when one is set.

use crate::error::ApiError;
use crate::gateway::Gateway;
use crate::wire::event_json;
use actix_web::http::header;
use actix_web::{web, HttpResponse};
use ordershop_domain::EntityKind;
use ordershop_eventstore::{EntryId, EventStore};
use ordershop_operations::dead_letters::{self, RetryOutcome};
use ordershop_operations::{statuses, ProjectionName};
use uuid::Uuid;

const PAGE: &str = include_str!("../../console/index.html");
const SCRIPT: &str = include_str!("../../console/console.js");
const STYLE: &str = include_str!("../../console/console.css");

/// Where the page says whether the feed and the actions need the API token.
const TOKEN_REQUIRED: &str = "{{TOKEN_REQUIRED}}";

/// The page runs only its own script and style, talks only to its own origin, and cannot be
/// framed (its Discard buttons must not be clickable under another site's page).
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

/// The headers every console file is sent with.
fn hardened(mut response: actix_web::HttpResponseBuilder) -> actix_web::HttpResponseBuilder {
    response
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"));
    response
}

/// `GET /`: the console page.
pub async fn page(gateway: web::Data<Gateway>) -> HttpResponse {
    let required = if gateway.token().is_some() {
        "true"
    } else {
        "false"
    };
    hardened(HttpResponse::Ok())
        .content_type("text/html; charset=utf-8")
        .body(PAGE.replace(TOKEN_REQUIRED, required))
}

/// `GET /console/{file}`: the page's script and style.
pub async fn file(file: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let (body, content_type) = match file.as_str() {
        "console.js" => (SCRIPT, "text/javascript; charset=utf-8"),
        "console.css" => (STYLE, "text/css; charset=utf-8"),
        other => return Err(ApiError::not_found(format!("no console file `{other}`"))),
    };
    Ok(hardened(HttpResponse::Ok())
        .content_type(content_type)
        .body(body))
}

/// The query of `GET /overview`.
#[derive(Debug, serde::Deserialize)]
pub struct OverviewQuery {
    rows: Option<usize>,
}

/// The longest list `GET /overview?rows=` gives.
const MAX_ROWS: usize = 10_000;

/// `GET /overview[?rows=N]`: what the shop holds, as `ordershop report --json` prints it; with
/// `rows`, each list is cut to N rows (the first customers and products, the latest orders and
/// billings) and `counts` says how many there are in all.
pub async fn overview(
    gateway: web::Data<Gateway>,
    query: web::Query<OverviewQuery>,
) -> Result<HttpResponse, ApiError> {
    let report = gateway.heavy_reads().overview().await?;
    let Some(rows) = query.rows else {
        return Ok(HttpResponse::Ok().json(&*report));
    };
    if !(1..=MAX_ROWS).contains(&rows) {
        return Err(ApiError::bad_request(format!(
            "rows: `{rows}` is not a count from 1 to {MAX_ROWS}"
        )));
    }
    let last = |len: usize| len.saturating_sub(rows);
    let body = serde_json::json!({
        "customers": report.customers[..rows.min(report.customers.len())],
        "products": report.products[..rows.min(report.products.len())],
        "orders": report.orders[last(report.orders.len())..],
        "billings": report.billings[last(report.billings.len())..],
        "segments": report.segments,
        "totals": report.totals,
        "projections": report.projections,
        "counts": {
            "customers": report.customers.len(),
            "products": report.products.len(),
            "orders": report.orders.len(),
            "billings": report.billings.len(),
        },
    });
    Ok(HttpResponse::Ok().json(body))
}

/// `GET /projections`: every projection's group, as `ordershop status --json` prints it.
pub async fn projections(gateway: web::Data<Gateway>) -> Result<HttpResponse, ApiError> {
    let heavy = gateway.heavy_reads();
    let _turn = heavy.turn().await?;
    let groups = statuses(&mut heavy.connection()).await?;
    Ok(HttpResponse::Ok().json(groups))
}

/// The query of `GET /dead-letters`.
#[derive(Debug, serde::Deserialize)]
pub struct DeadLetterQuery {
    projection: Option<String>,
}

fn projection(name: &str) -> Result<ProjectionName, ApiError> {
    name.parse()
        .map_err(|e: ordershop_operations::UnknownProjection| ApiError::not_found(e.to_string()))
}

/// `GET /dead-letters[?projection=]`: what the projections parked, oldest first per group.
pub async fn dead_letter_list(
    gateway: web::Data<Gateway>,
    query: web::Query<DeadLetterQuery>,
) -> Result<HttpResponse, ApiError> {
    let groups = match &query.projection {
        Some(name) => {
            vec![name
                .parse()
                .map_err(|e: ordershop_operations::UnknownProjection| {
                    ApiError::bad_request(format!("projection: {e}"))
                })?]
        }
        None => ProjectionName::ALL.to_vec(),
    };
    let heavy = gateway.heavy_reads();
    let _turn = heavy.turn().await?;
    let letters = dead_letters::list(&mut heavy.connection(), &groups).await?;
    Ok(HttpResponse::Ok().json(letters))
}

/// The path of a dead-letter action: the projection and the parked entry's ID.
fn parked(path: &(String, String)) -> Result<(ProjectionName, EntryId), ApiError> {
    let projection = projection(&path.0)?;
    let id = path.1.parse::<EntryId>().map_err(|e| {
        ApiError::bad_request(format!("`{}` is not a dead letter's entry ID: {e}", path.1))
    })?;
    Ok((projection, id))
}

fn not_parked(projection: ProjectionName, id: EntryId) -> ApiError {
    ApiError::not_found(format!(
        "no dead letter {id} in {projection} (it may have been retried or discarded already)"
    ))
}

/// `POST /dead-letters/{projection}/{id}/retry`: applies the parked entry as a live consumer
/// would; 200 with what happened (applied, or parked again with the new reason), 409 while a
/// rebuild pauses the projection.
pub async fn dead_letter_retry(
    gateway: web::Data<Gateway>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (projection, id) = parked(&path)?;
    match dead_letters::retry(&mut gateway.connection(), projection, id).await? {
        None => Err(not_parked(projection, id)),
        Some(RetryOutcome::Paused) => Err(ApiError::new(
            actix_web::http::StatusCode::CONFLICT,
            "paused",
            format!("a rebuild of {projection} is running: nothing was done; retry afterwards"),
        )),
        Some(outcome) => Ok(HttpResponse::Ok().json(outcome)),
    }
}

/// `POST /dead-letters/{projection}/{id}/discard`: removes the parked entry.
pub async fn dead_letter_discard(
    gateway: web::Data<Gateway>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (projection, id) = parked(&path)?;
    if dead_letters::discard(&mut gateway.connection(), projection, id).await? {
        Ok(HttpResponse::Ok().json(serde_json::json!({ "discarded": true })))
    } else {
        Err(not_parked(projection, id))
    }
}

/// `GET /<item>/{id}/events`: every event of the entity, oldest first (an empty list for an
/// id the log does not know).
pub async fn history(
    gateway: web::Data<Gateway>,
    kind: EntityKind,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let heavy = gateway.heavy_reads();
    let _turn = heavy.turn().await?;
    let store = EventStore::from_connection(heavy.connection());
    let events = store.history(kind, id.into_inner()).await?;
    let body: Vec<serde_json::Value> = events.iter().map(event_json).collect();
    Ok(HttpResponse::Ok().json(body))
}
