//! The gateway's route table: every route it serves, each with what the OpenAPI document says
//! about it ([`RouteDoc`]), so that a route and its documentation are written in one place.

use super::doc::{Answer, Body, RouteDoc, Shape, Value, BAD_REQUEST, UNAUTHORIZED, UNAVAILABLE};
use super::*;

/// What a gateway route does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GatewayOp {
    List(EntityKind),
    Get(EntityKind),
    /// Forwarded to the owning service.
    Create(EntityKind),
    Update(EntityKind),
    Delete(EntityKind),
    UnbilledOrders,
    Report,
    Health,
    Metrics,
    OpenApi,
    Docs,
    DocsFiles,
    /// The live event feed (Server-Sent Events).
    EventStream,
    /// Every event of one entity (`/<item>/{id}/events`).
    History(EntityKind),
    Console,
    ConsoleFiles,
    Overview,
    Projections,
    DeadLetters,
    DeadLetterRetry,
    DeadLetterDiscard,
}

/// One route of the gateway: method, path template (OpenAPI syntax, `{id}`), operation, and
/// its documentation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayRoute {
    pub method: Method,
    pub path: String,
    pub op: GatewayOp,
    pub doc: RouteDoc,
}

fn route(method: Method, path: &str, op: GatewayOp, doc: RouteDoc) -> GatewayRoute {
    GatewayRoute {
        method,
        path: path.to_owned(),
        op,
        doc: doc.completed_for(path),
    }
}

/// Every route the gateway serves, in registration order.
pub fn gateway_routes() -> Vec<GatewayRoute> {
    let mut routes = vec![
        route(
            Method::Get,
            UNBILLED_ORDERS,
            GatewayOp::UnbilledOrders,
            RouteDoc::new(EntityKind::Order.as_str(), "Orders without a billing")
                .ok("the unbilled orders", Shape::Entities(EntityKind::Order))
                .error(503, UNAVAILABLE),
        ),
        route(
            Method::Get,
            REPORT,
            GatewayOp::Report,
            RouteDoc::new("report", "Every entity of every type")
                .ok("the report", Shape::Report)
                .error(503, UNAVAILABLE),
        ),
        route(
            Method::Get,
            EVENT_STREAM,
            GatewayOp::EventStream,
            RouteDoc::new(
                "events",
                "Every appended event as it happens (Server-Sent Events), resumable",
            )
            .description(
                "One SSE event per appended event, in ID order across all streams: `id:` the \
                 entry ID, `event:` `<type>_<action>`, `data:` JSON `{id, stream, event_id, \
                 entity, version, request_id?}`. A client that reconnects with `Last-Event-ID` \
                 (or `?since=`) gets exactly the events after it. A viewer that falls behind \
                 reads the log until it has caught up; one that leaves what it was sent untaken \
                 is disconnected (and can resume). Viewers are capped in all and per client (503 \
                 with Retry-After beyond). With an API token set, the feed needs it too.",
            )
            .query("type", "only events of this entity type", Value::EntityKind)
            .query("action", "only events of this action", Value::Action)
            .query("entity", "only the events of this entity", Value::Uuid)
            .query(
                "since",
                "resume after this entry ID (Last-Event-ID wins when both are given)",
                Value::EntryId,
            )
            .query(
                "last",
                "start with the last N events of the streams the filter reads, then live \
                 (Last-Event-ID and since win)",
                Value::Count(1_000),
            )
            .header(
                "Last-Event-ID",
                "resume after this entry ID",
                Value::EntryId,
            )
            .answer(
                200,
                Answer::Text {
                    description: "an endless stream of events",
                    media_type: "text/event-stream",
                },
            )
            .error(400, BAD_REQUEST)
            .error(401, UNAUTHORIZED)
            .error(503, UNAVAILABLE),
        ),
    ];
    for paths in ENTITY_PATHS {
        let kind = paths.kind;
        let tag = kind.as_str();
        let create = RouteDoc::new(tag, format!("Create one {kind}, or several (all or none)"))
            .body(Body::OneOrMany(kind))
            .ok("the new ids, in the order of the body's items", Shape::Ids)
            .command();
        let with_id = paths.with_id();
        routes.push(route(
            Method::Get,
            paths.collection,
            GatewayOp::List(kind),
            RouteDoc::new(tag, format!("Every {kind}, sorted by id"))
                .ok(format!("every live {kind}"), Shape::Entities(kind))
                .error(503, UNAVAILABLE),
        ));
        routes.push(route(
            Method::Post,
            paths.collection,
            GatewayOp::Create(kind),
            create.clone(),
        ));
        if let Some(item) = paths.separate_item() {
            routes.push(route(Method::Post, item, GatewayOp::Create(kind), create));
        }
        routes.push(route(
            Method::Get,
            &with_id,
            GatewayOp::Get(kind),
            RouteDoc::new(tag, format!("One {kind}"))
                .answer(
                    200,
                    Answer::versioned(
                        format!(
                            "the {kind}, or null when unknown or deleted; `ETag` is its version \
                             (for `If-Match` on a later PUT or DELETE)"
                        ),
                        Shape::EntityOrNull(kind),
                    ),
                )
                .error(400, BAD_REQUEST)
                .error(503, UNAVAILABLE),
        ));
        routes.push(route(
            Method::Put,
            &with_id,
            GatewayOp::Update(kind),
            RouteDoc::new(
                tag,
                format!("Replace a {kind} (an `id` in the body must match the path)"),
            )
            .body(Body::One(kind))
            .answer(
                200,
                Answer::versioned("done; `ETag` is the new version", Shape::Done),
            )
            .command()
            .of_existing_entity(),
        ));
        routes.push(route(
            Method::Delete,
            &with_id,
            GatewayOp::Delete(kind),
            RouteDoc::new(tag, format!("Delete a {kind}"))
                .ok("done", Shape::Done)
                .command()
                .of_existing_entity(),
        ));
        routes.push(route(
            Method::Get,
            &paths.history(),
            GatewayOp::History(kind),
            RouteDoc::new(tag, format!("Every event of one {kind}, oldest first"))
                .description(
                    "Each event as `ordershop events --json` prints it: `{id, time, stream, \
                     type, action, entity_id, version, event_id, entity}`; an empty list for an \
                     id the log does not know. Reads the type's streams whole (the log has no \
                     per-entity index).",
                )
                .ok("the events", Shape::Objects)
                .error(400, BAD_REQUEST)
                .error(503, UNAVAILABLE),
        ));
    }
    let dead_letter_errors = |doc: RouteDoc| {
        doc.guarded()
            .error(400, "the entry ID is malformed")
            .error(404, "no such projection, or no such parked entry")
            .error(503, UNAVAILABLE)
    };
    routes.extend([
        route(
            Method::Get,
            HEALTH,
            GatewayOp::Health,
            RouteDoc::new(
                "operations",
                "Ready when Redis (and the role's Functions) are",
            )
            .ok("ready", Shape::Health)
            .error(503, "not ready"),
        ),
        route(
            Method::Get,
            METRICS,
            GatewayOp::Metrics,
            RouteDoc::new("operations", "Prometheus metrics of the process").answer(
                200,
                Answer::Text {
                    description: "the metrics, OpenMetrics text format",
                    media_type: ordershop_telemetry::metrics::CONTENT_TYPE,
                },
            ),
        ),
        route(
            Method::Get,
            OPENAPI,
            GatewayOp::OpenApi,
            RouteDoc::new("operations", "This document").ok("the OpenAPI document", Shape::Object),
        ),
        route(
            Method::Get,
            DOCS,
            GatewayOp::Docs,
            RouteDoc::new("operations", "The API docs page")
                .answer(308, Answer::Page("redirects to /docs/")),
        ),
        route(
            Method::Get,
            DOCS_FILES,
            GatewayOp::DocsFiles,
            RouteDoc::new(
                "operations",
                "The API docs page and its files (Swagger UI, served offline)",
            )
            .answer(
                200,
                Answer::Page("the page (HTML) or one of its scripts and styles"),
            )
            .error(404, "no such file"),
        ),
        route(
            Method::Get,
            CONSOLE,
            GatewayOp::Console,
            RouteDoc::new(
                "console",
                "The web console: live events, the shop's state, the projections",
            )
            .answer(200, Answer::Page("the page")),
        ),
        route(
            Method::Get,
            CONSOLE_FILES,
            GatewayOp::ConsoleFiles,
            RouteDoc::new("console", "The console's script and style")
                .answer(200, Answer::Page("the file"))
                .error(404, "no such file"),
        ),
        route(
            Method::Get,
            OVERVIEW,
            GatewayOp::Overview,
            RouteDoc::new(
                "console",
                "What the shop holds (as `ordershop report --json`)",
            )
            .description(
                "Customers (from the CRM view, with their segment status and amounts), \
                     products with stock, orders, billings, segment sizes, totals, and how far \
                     each projection is behind. Amounts are minor units. Computed at most once \
                     a second for all callers; with `rows`, each list is cut to that many rows \
                     (the first customers and products, the latest orders and billings) and \
                     `counts` gives their full lengths.",
            )
            .query(
                "rows",
                "at most this many rows per list",
                Value::Count(10_000),
            )
            .ok("the overview", Shape::Object)
            .error(400, "rows is not a count from 1 to 10,000")
            .error(503, UNAVAILABLE),
        ),
        route(
            Method::Get,
            PROJECTIONS,
            GatewayOp::Projections,
            RouteDoc::new(
                "console",
                "Every projection's group (as `ordershop status --json`)",
            )
            .description(
                "Per projection: consumers with pending entries and heartbeat age, pending, \
                 lag, last delivered ID, dead letters (parked, retried, discarded), paused, \
                 last error.",
            )
            .ok("the groups", Shape::Objects)
            .error(503, UNAVAILABLE),
        ),
        route(
            Method::Get,
            DEAD_LETTERS,
            GatewayOp::DeadLetters,
            RouteDoc::new(
                "console",
                "What the projections parked (as `ordershop dead-letters list --json`)",
            )
            .query("projection", "only this projection's", Value::Projection)
            .ok("the parked entries", Shape::Objects)
            .error(400, BAD_REQUEST)
            .error(503, UNAVAILABLE),
        ),
        route(
            Method::Post,
            DEAD_LETTER_RETRY,
            GatewayOp::DeadLetterRetry,
            dead_letter_errors(
                RouteDoc::new("console", "Apply a parked entry again")
                    .description(
                        "Applied as a live consumer would (at most once in effect, no message \
                         sent twice): `{outcome: \"applied\", applied, skipped}`, or, when it \
                         fails again, parked again under a new ID: `{outcome: \
                         \"parked_again\", id, reason}`.",
                    )
                    .ok("what the retry did", Shape::Object)
                    .error(409, "a rebuild pauses the projection; nothing was done"),
            ),
        ),
        route(
            Method::Post,
            DEAD_LETTER_DISCARD,
            GatewayOp::DeadLetterDiscard,
            dead_letter_errors(
                RouteDoc::new("console", "Remove a parked entry")
                    .ok("removed: `{discarded: true}`", Shape::Object),
            ),
        ),
    ]);
    routes
}
