//! The gateway's OpenAPI document (`GET /openapi.json`) and its docs page (`GET /docs/`).
//!
//! The document is generated, not written: its paths come from [`gateway_routes`] — the same
//! table the gateway registers its routes from — and its schemas are derived (`utoipa`) from the
//! wire types the handlers parse ([`crate::wire`]) and the error body every error answer has
//! ([`ErrorBody`]). The entity schemas describe the JSON the log stores; a test checks them
//! against what the domain types serialise to.
//!
//! The docs page is Swagger UI compiled into the binary (`utoipa-swagger-ui` with its
//! `vendored` feature): nothing is fetched from the internet at build or run time, and the
//! page's online validator badge is turned off.

use crate::error::{ApiError, ErrorBody};
use crate::field_schemas;
use crate::idempotency::MAX_KEY_LEN;
use crate::routes::{gateway_routes, GatewayOp, GatewayRoute, Method};
use crate::wire::{BillingBody, CustomerBody, InventoryBody, OrderBody, ProductBody};
use actix_web::http::header;
use actix_web::{web, HttpResponse};
use ordershop_domain::EntityKind;
use std::sync::Arc;
use utoipa::openapi::path::{
    HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn, PathItem, PathsBuilder,
};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, SchemaType, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, InfoBuilder, OpenApi, OpenApiBuilder, Ref, RefOr, Required,
    ResponseBuilder, Schema,
};
use utoipa::{PartialSchema, ToSchema};

/// The JSON the log stores (and the gateway returns) for each entity type.
pub mod entities {
    use utoipa::ToSchema;
    use uuid::Uuid;

    /// A customer.
    #[derive(ToSchema)]
    #[allow(dead_code)]
    pub struct Customer {
        pub id: Uuid,
        #[schema(schema_with = crate::field_schemas::name)]
        pub name: String,
        #[schema(schema_with = crate::field_schemas::email)]
        pub email: String,
    }

    /// A product; the price in minor units (`1250` is 12.50).
    #[derive(ToSchema)]
    #[allow(dead_code)]
    pub struct Product {
        pub id: Uuid,
        #[schema(schema_with = crate::field_schemas::name)]
        pub name: String,
        #[schema(schema_with = crate::field_schemas::price)]
        pub price: i64,
    }

    /// The stock of one product.
    #[derive(ToSchema)]
    #[allow(dead_code)]
    pub struct Inventory {
        pub id: Uuid,
        pub product_id: Uuid,
        #[schema(schema_with = crate::field_schemas::amount)]
        pub amount: i64,
    }

    /// An order: one product id per unit, and its total in minor units.
    #[derive(ToSchema)]
    #[allow(dead_code)]
    pub struct Order {
        pub id: Uuid,
        #[schema(schema_with = crate::field_schemas::product_ids)]
        pub product_ids: Vec<Uuid>,
        pub customer_id: Uuid,
        #[schema(schema_with = crate::field_schemas::total)]
        pub total: i64,
    }

    /// The billing of one order.
    #[derive(ToSchema)]
    #[allow(dead_code)]
    pub struct Billing {
        pub id: Uuid,
        pub order_id: Uuid,
        pub done: bool,
    }

    /// Every entity of every type.
    #[derive(ToSchema)]
    #[allow(dead_code)]
    pub struct Report {
        pub products: Vec<Product>,
        pub inventory: Vec<Inventory>,
        pub customers: Vec<Customer>,
        pub orders: Vec<Order>,
        pub billings: Vec<Billing>,
    }
}

/// `/health`'s answer when the role is ready.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct HealthStatus {
    /// `ok`
    pub status: String,
    pub role: String,
}

fn entity_schema(kind: EntityKind) -> &'static str {
    match kind {
        EntityKind::Customer => "Customer",
        EntityKind::Product => "Product",
        EntityKind::Inventory => "Inventory",
        EntityKind::Order => "Order",
        EntityKind::Billing => "Billing",
    }
}

fn body_schema(kind: EntityKind) -> &'static str {
    match kind {
        EntityKind::Customer => "CustomerBody",
        EntityKind::Product => "ProductBody",
        EntityKind::Inventory => "InventoryBody",
        EntityKind::Order => "OrderBody",
        EntityKind::Billing => "BillingBody",
    }
}

/// Turns a built `oneOf` into a schema.
trait IntoSchema {
    fn into_schema(self) -> RefOr<Schema>;
}

impl IntoSchema for utoipa::openapi::OneOf {
    fn into_schema(self) -> RefOr<Schema> {
        RefOr::T(Schema::OneOf(self))
    }
}

fn schema_ref(name: &str) -> RefOr<Schema> {
    RefOr::Ref(Ref::from_schema_name(name))
}

/// A projection's name (its consumer group).
fn projection_schema() -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(SchemaType::Type(Type::String))
        .enum_values(Some(
            ordershop_projections::ProjectionName::ALL
                .map(|p| p.name())
                .to_vec(),
        ))
        .build()
        .into()
}

/// A stream entry ID, `<ms>-<seq>`: each part up to 19 digits, so that every ID the pattern
/// admits is one the server parses (a part is a u64; 20 digits can exceed it).
fn entry_id_schema() -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(SchemaType::Type(Type::String))
        .pattern(Some("^[0-9]{1,19}-[0-9]{1,19}$"))
        .build()
        .into()
}

fn array_of(item: RefOr<Schema>) -> RefOr<Schema> {
    ArrayBuilder::new().items(item).build().into()
}

fn json(schema: RefOr<Schema>) -> utoipa::openapi::Content {
    ContentBuilder::new().schema(Some(schema)).build()
}

/// Any JSON object (the console's reads are documented by their CLI twins' `--json`).
fn any_object() -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(SchemaType::Type(Type::Object))
        .build()
        .into()
}

/// A page or one of its files, not JSON.
fn html(description: &str) -> utoipa::openapi::Response {
    ResponseBuilder::new().description(description).build()
}

fn ok(description: &str, schema: RefOr<Schema>) -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description(description)
        .content("application/json", json(schema))
        .build()
}

/// A response that carries the entity's version as its `ETag`.
fn with_etag(mut response: utoipa::openapi::Response) -> utoipa::openapi::Response {
    response.headers.insert(
        "ETag".to_owned(),
        utoipa::openapi::HeaderBuilder::new()
            .schema(
                ObjectBuilder::new()
                    .schema_type(SchemaType::Type(Type::String))
                    .pattern(Some("^\"[0-9]+\"$")),
            )
            .description(Some("the entity's version, quoted: `\"3\"`"))
            .build(),
    );
    response
}

/// `If-Match` on a PUT or DELETE, and its 412.
fn precondition(op: OperationBuilder) -> OperationBuilder {
    op.parameter(
        ParameterBuilder::new()
            .name("If-Match")
            .parameter_in(ParameterIn::Header)
            .required(Required::False)
            .description(Some(
                "carry the change out only if the entity is still at one of these versions \
                 (the `ETag` a GET answered, e.g. `\"3\"`), or exists (`*`)",
            ))
            .schema(Some(
                ObjectBuilder::new()
                    .schema_type(SchemaType::Type(Type::String))
                    .pattern(Some(
                        "^(\\*|(W/)?\"[0-9]{1,19}\"(, *(W/)?\"[0-9]{1,19}\")*)$",
                    ))
                    .build(),
            )),
    )
    .response(
        "412",
        error("If-Match names other versions than the entity's; nothing was appended"),
    )
}

/// An optional query parameter.
fn query(name: &str, description: &str, schema: RefOr<Schema>) -> ParameterBuilder {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Query)
        .required(Required::False)
        .description(Some(description))
        .schema(Some(schema))
}

fn error(description: &str) -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            json(schema_ref(ErrorBody::name().as_ref())),
        )
        .build()
}

/// The security scheme of the commands: needed when ORDERSHOP_API_TOKEN is set.
const BEARER: &str = "bearer";

const BAD_REQUEST: &str = "malformed JSON, wrong types, missing fields or an id that is not a UUID";
const UNAUTHORIZED: &str = "ORDERSHOP_API_TOKEN is set and `Authorization: Bearer <token>` is \
                            missing or wrong (answered with `WWW-Authenticate: Bearer`)";
const UNAVAILABLE: &str = "Redis or the owning service is unreachable; retry later";
const FORBIDDEN: &str = "sent from a browser origin other than the shop's own (and not in \
                         ORDERSHOP_ALLOWED_ORIGINS), or, to a shop on a loopback address, \
                         addressed to a host name that is not a loopback one";
const UNSUPPORTED_MEDIA_TYPE: &str =
    "a body that is not sent as `Content-Type: application/json` (UTF-8); nothing was appended";

fn method(method: Method) -> HttpMethod {
    match method {
        Method::Get => HttpMethod::Get,
        Method::Post => HttpMethod::Post,
        Method::Put => HttpMethod::Put,
        Method::Delete => HttpMethod::Delete,
    }
}

/// A unique, stable operation id: `get_/order/{id}` -> `get_order_id`.
fn operation_id(route: &GatewayRoute) -> String {
    let path: String = route
        .path
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let path: Vec<&str> = path.split('_').filter(|p| !p.is_empty()).collect();
    format!(
        "{}_{}",
        route.method.as_str().to_lowercase(),
        path.join("_")
    )
}

fn operation(route: &GatewayRoute) -> utoipa::openapi::path::Operation {
    let mut op = OperationBuilder::new()
        .operation_id(Some(operation_id(route)))
        .parameter(
            ParameterBuilder::new()
                .name("X-Request-Id")
                .parameter_in(ParameterIn::Header)
                .required(Required::False)
                .description(Some(
                    "the request's id (1-128 of A-Z a-z 0-9 - _ . :), echoed in the answer and \
                     recorded on the events it appends; a new UUID when absent or invalid",
                ))
                .schema(Some(String::schema())),
        );
    if route.path.contains("{id}") {
        op = op.parameter(
            ParameterBuilder::new()
                .name("id")
                .parameter_in(ParameterIn::Path)
                .required(Required::True)
                .schema(Some(field_schemas::uuid())),
        );
    }
    if route.path.contains("{file}") {
        op = op.parameter(
            ParameterBuilder::new()
                .name("file")
                .parameter_in(ParameterIn::Path)
                .required(Required::True)
                .description(Some("a file of the page; empty for the docs page itself"))
                .schema(Some(String::schema())),
        );
    }
    if route.path.contains("{projection}") {
        op = op.parameter(
            ParameterBuilder::new()
                .name("projection")
                .parameter_in(ParameterIn::Path)
                .required(Required::True)
                .description(Some(
                    "the projection (consumer group) that parked the entry",
                ))
                .schema(Some(projection_schema())),
        );
    }
    if route.path.contains("{entry}") {
        op = op.parameter(
            ParameterBuilder::new()
                .name("entry")
                .parameter_in(ParameterIn::Path)
                .required(Required::True)
                .description(Some("the parked entry's ID in `<projection>:dead`"))
                .schema(Some(entry_id_schema())),
        );
    }
    let ids = array_of(field_schemas::uuid());
    let command_errors = |op: OperationBuilder, with_body: bool, by_id: bool| {
        let mut op = op
            .response("400", error(BAD_REQUEST))
            .response(
                "409",
                error(
                    "out of stock, already billed, order billed (delete its billing first), \
                     inventory exists, or the data kept changing (retry)",
                ),
            )
            .response("503", error(UNAVAILABLE))
            .response(
                "507",
                error("Redis is out of memory and refuses writes (`storage_full`); nothing was appended"),
            )
            .response("401", error(UNAUTHORIZED))
            .response("403", error(FORBIDDEN))
            .response("415", error(UNSUPPORTED_MEDIA_TYPE))
            .response(
                "422",
                error(
                    "failed validation, a reference to an unknown entity, or an \
                     Idempotency-Key used before for a different request",
                ),
            )
            .parameter(
                ParameterBuilder::new()
                    .name(crate::headers::IDEMPOTENCY_KEY)
                    .parameter_in(ParameterIn::Header)
                    .required(Required::False)
                    .description(Some(format!(
                        "makes a retry safe: the same key and request within a day get the \
                         first answer again (with `Idempotent-Replayed: true`) and append \
                         nothing; 1-{MAX_KEY_LEN} of A-Z a-z 0-9 - _ . :"
                    )))
                    .schema(Some(
                        ObjectBuilder::new()
                            .schema_type(SchemaType::Type(Type::String))
                            .pattern(Some(format!("^[A-Za-z0-9_.:-]{{1,{MAX_KEY_LEN}}}$")))
                            .build(),
                    )),
            )
            .security(SecurityRequirement::new(BEARER, Vec::<String>::new()));
        if by_id {
            op = op.response("404", error("no such entity"));
        }
        if with_body {
            op = op
                .response(
                    "413",
                    error(&format!(
                        "the body is larger than ORDERSHOP_BODY_LIMIT, or lists more than {} items",
                        crate::wire::MAX_BATCH
                    )),
                )
                .response(
                    "408",
                    error("the body did not arrive within ORDERSHOP_REQUEST_TIMEOUT_MS"),
                );
        }
        op
    };
    let body = |required: bool, schema: RefOr<Schema>| {
        Some(
            RequestBodyBuilder::new()
                .required(Some(if required {
                    Required::True
                } else {
                    Required::False
                }))
                .content("application/json", json(schema))
                .build(),
        )
    };
    let op = match route.op {
        GatewayOp::List(kind) => op
            .tag(kind.as_str())
            .summary(Some(format!("Every {kind}, sorted by id")))
            .response(
                "200",
                ok(
                    &format!("every live {kind}"),
                    array_of(schema_ref(entity_schema(kind))),
                ),
            )
            .response("503", error(UNAVAILABLE)),
        GatewayOp::Get(kind) => op
            .tag(kind.as_str())
            .summary(Some(format!("One {kind}")))
            .response(
                "200",
                with_etag(ok(
                    &format!(
                        "the {kind}, or null when unknown or deleted; `ETag` is its version \
                         (for `If-Match` on a later PUT or DELETE)"
                    ),
                    OneOfBuilder::new()
                        .item(schema_ref(entity_schema(kind)))
                        .item(ObjectBuilder::new().schema_type(SchemaType::Type(Type::Null)))
                        .build()
                        .into_schema(),
                )),
            )
            .response("400", error(BAD_REQUEST))
            .response("503", error(UNAVAILABLE)),
        GatewayOp::Create(kind) => {
            let one = schema_ref(body_schema(kind));
            let op = op
                .tag(kind.as_str())
                .summary(Some(format!("Create one {kind}, or several (all or none)")))
                .request_body(body(
                    true,
                    OneOfBuilder::new()
                        .item(one.clone())
                        .item(
                            ArrayBuilder::new()
                                .items(one)
                                .max_items(Some(crate::wire::MAX_BATCH))
                                .description(Some(format!(
                                    "at most {} items, appended all or none (an empty list \
                                     creates nothing)",
                                    crate::wire::MAX_BATCH
                                ))),
                        )
                        .build()
                        .into_schema(),
                ))
                .response(
                    "200",
                    ok("the new ids, in the order of the body's items", ids),
                );
            command_errors(op, true, false)
        }
        GatewayOp::Update(kind) => {
            let op = op
                .tag(kind.as_str())
                .summary(Some(format!(
                    "Replace a {kind} (an `id` in the body must match the path)"
                )))
                .request_body(body(true, schema_ref(body_schema(kind))))
                .response(
                    "200",
                    with_etag(ok("done; `ETag` is the new version", bool::schema())),
                );
            precondition(command_errors(op, true, true))
        }
        GatewayOp::Delete(kind) => {
            let op = op
                .tag(kind.as_str())
                .summary(Some(format!("Delete a {kind}")))
                .response("200", ok("done", bool::schema()));
            precondition(command_errors(op, false, true))
        }
        GatewayOp::UnbilledOrders => op
            .tag(EntityKind::Order.as_str())
            .summary(Some("Orders without a billing"))
            .response(
                "200",
                ok("the unbilled orders", array_of(schema_ref("Order"))),
            )
            .response("503", error(UNAVAILABLE)),
        GatewayOp::Report => op
            .tag("report")
            .summary(Some("Every entity of every type"))
            .response("200", ok("the report", schema_ref("Report")))
            .response("503", error(UNAVAILABLE)),
        GatewayOp::EventStream => {
            let one_of = |values: Vec<&'static str>| -> RefOr<Schema> {
                ObjectBuilder::new()
                    .schema_type(SchemaType::Type(Type::String))
                    .enum_values(Some(values))
                    .build()
                    .into()
            };
            let entry_id = entry_id_schema();
            op.tag("events")
                .summary(Some(
                    "Every appended event as it happens (Server-Sent Events), resumable",
                ))
                .description(Some(
                    "One SSE event per appended event, in ID order across all streams: `id:` \
                     the entry ID, `event:` `<type>_<action>`, `data:` JSON `{id, stream, \
                     event_id, entity, version, request_id?}`. A client that reconnects with \
                     `Last-Event-ID` (or `?since=`) gets exactly the events after it. A viewer \
                     that falls behind reads the log until it has caught up; one that leaves \
                     what it was sent untaken is disconnected (and can resume). Viewers are \
                     capped in all and per client (503 with Retry-After beyond). With an API \
                     token set, the feed needs it too.",
                ))
                .parameter(query(
                    "type",
                    "only events of this entity type",
                    one_of(EntityKind::ALL.map(EntityKind::as_str).to_vec()),
                ))
                .parameter(query(
                    "action",
                    "only events of this action",
                    one_of(ordershop_domain::Action::ALL.map(|a| a.as_str()).to_vec()),
                ))
                .parameter(query(
                    "entity",
                    "only the events of this entity",
                    field_schemas::uuid(),
                ))
                .parameter(query(
                    "since",
                    "resume after this entry ID (Last-Event-ID wins when both are given)",
                    entry_id.clone(),
                ))
                .parameter(query(
                    "last",
                    "start with the last N events of the streams the filter reads, then live \
                     (Last-Event-ID and since win)",
                    ObjectBuilder::new()
                        .schema_type(SchemaType::Type(Type::Integer))
                        .minimum(Some(1))
                        .maximum(Some(1_000))
                        .build()
                        .into(),
                ))
                .parameter(
                    ParameterBuilder::new()
                        .name("Last-Event-ID")
                        .parameter_in(ParameterIn::Header)
                        .required(Required::False)
                        .description(Some("resume after this entry ID"))
                        .schema(Some(entry_id)),
                )
                .response(
                    "200",
                    ResponseBuilder::new()
                        .description("an endless stream of events")
                        .content("text/event-stream", json(String::schema()))
                        .build(),
                )
                .response("400", error(BAD_REQUEST))
                .response("401", error(UNAUTHORIZED))
                .response("503", error(UNAVAILABLE))
        }
        GatewayOp::History(kind) => op
            .tag(kind.as_str())
            .summary(Some(format!("Every event of one {kind}, oldest first")))
            .description(Some(
                "Each event as `ordershop events --json` prints it: `{id, time, stream, type, \
                 action, entity_id, version, event_id, entity}`; an empty list for an id the log \
                 does not know. Reads the type's streams whole (the log has no per-entity index).",
            ))
            .response("200", ok("the events", array_of(any_object())))
            .response("400", error(BAD_REQUEST))
            .response("503", error(UNAVAILABLE)),
        GatewayOp::Console => op
            .tag("console")
            .summary(Some(
                "The web console: live events, the shop's state, the projections",
            ))
            .response("200", html("the page")),
        GatewayOp::ConsoleFiles => op
            .tag("console")
            .summary(Some("The console's script and style"))
            .response("200", html("the file"))
            .response("404", error("no such file")),
        GatewayOp::Overview => op
            .tag("console")
            .summary(Some("What the shop holds (as `ordershop report --json`)"))
            .description(Some(
                "Customers (from the CRM view, with their segment status and amounts), products \
                 with stock, orders, billings, segment sizes, totals, and how far each \
                 projection is behind. Amounts are minor units. Computed at most once a second \
                 for all callers; with `rows`, each list is cut to that many rows (the first \
                 customers and products, the latest orders and billings) and `counts` gives \
                 their full lengths.",
            ))
            .parameter(query(
                "rows",
                "at most this many rows per list",
                ObjectBuilder::new()
                    .schema_type(SchemaType::Type(Type::Integer))
                    .minimum(Some(1))
                    .maximum(Some(10_000))
                    .build()
                    .into(),
            ))
            .response("200", ok("the overview", any_object()))
            .response("400", error("rows is not a count from 1 to 10,000"))
            .response("503", error(UNAVAILABLE)),
        GatewayOp::Projections => op
            .tag("console")
            .summary(Some(
                "Every projection's group (as `ordershop status --json`)",
            ))
            .description(Some(
                "Per projection: consumers with pending entries and heartbeat age, pending, lag, \
                 last delivered ID, dead letters (parked, retried, discarded), paused, last \
                 error.",
            ))
            .response("200", ok("the groups", array_of(any_object())))
            .response("503", error(UNAVAILABLE)),
        GatewayOp::DeadLetters => op
            .tag("console")
            .summary(Some(
                "What the projections parked (as `ordershop dead-letters list --json`)",
            ))
            .parameter(
                ParameterBuilder::new()
                    .name("projection")
                    .parameter_in(ParameterIn::Query)
                    .required(Required::False)
                    .description(Some("only this projection's"))
                    .schema(Some(projection_schema())),
            )
            .response("200", ok("the parked entries", array_of(any_object())))
            .response("400", error(BAD_REQUEST))
            .response("503", error(UNAVAILABLE)),
        GatewayOp::DeadLetterRetry => op
            .tag("console")
            .summary(Some("Apply a parked entry again"))
            .description(Some(
                "Applied as a live consumer would (at most once in effect, no message sent \
                 twice): `{outcome: \"applied\", applied, skipped}`, or, when it fails again, \
                 parked again under a new ID: `{outcome: \"parked_again\", id, reason}`.",
            ))
            .response("200", ok("what the retry did", any_object()))
            .response("400", error("the entry ID is malformed"))
            .response("401", error(UNAUTHORIZED))
            .response("403", error(FORBIDDEN))
            .response("415", error(UNSUPPORTED_MEDIA_TYPE))
            .response("404", error("no such projection, or no such parked entry"))
            .response(
                "409",
                error("a rebuild pauses the projection; nothing was done"),
            )
            .response("503", error(UNAVAILABLE))
            .security(SecurityRequirement::new(BEARER, Vec::<String>::new())),
        GatewayOp::DeadLetterDiscard => op
            .tag("console")
            .summary(Some("Remove a parked entry"))
            .response("200", ok("removed: `{discarded: true}`", any_object()))
            .response("400", error("the entry ID is malformed"))
            .response("401", error(UNAUTHORIZED))
            .response("403", error(FORBIDDEN))
            .response("415", error(UNSUPPORTED_MEDIA_TYPE))
            .response("404", error("no such projection, or no such parked entry"))
            .response("503", error(UNAVAILABLE))
            .security(SecurityRequirement::new(BEARER, Vec::<String>::new())),
        GatewayOp::Health => op
            .tag("operations")
            .summary(Some("Ready when Redis (and the role's Functions) are"))
            .response("200", ok("ready", schema_ref("HealthStatus")))
            .response("503", error("not ready")),
        GatewayOp::Metrics => op
            .tag("operations")
            .summary(Some("Prometheus metrics of the process"))
            .response(
                "200",
                ResponseBuilder::new()
                    .description("the metrics, OpenMetrics text format")
                    .content(
                        ordershop_telemetry::metrics::CONTENT_TYPE,
                        json(String::schema()),
                    )
                    .build(),
            ),
        GatewayOp::OpenApi => op
            .tag("operations")
            .summary(Some("This document"))
            .response(
                "200",
                ok(
                    "the OpenAPI document",
                    ObjectBuilder::new()
                        .schema_type(SchemaType::Type(Type::Object))
                        .build()
                        .into(),
                ),
            ),
        GatewayOp::Docs => op
            .tag("operations")
            .summary(Some("The API docs page"))
            .response(
                "308",
                ResponseBuilder::new()
                    .description("redirects to /docs/")
                    .build(),
            ),
        GatewayOp::DocsFiles => op
            .tag("operations")
            .summary(Some(
                "The API docs page and its files (Swagger UI, served offline)",
            ))
            .response(
                "200",
                ResponseBuilder::new()
                    .description("the page (HTML) or one of its scripts and styles")
                    .build(),
            )
            .response("404", error("no such file")),
    };
    op.response(
        "405",
        error("the path exists but does not serve this method"),
    )
    .build()
}

/// The gateway's OpenAPI document, generated from its route table and wire types.
pub fn document() -> OpenApi {
    let mut paths = PathsBuilder::new();
    for route in gateway_routes() {
        paths = paths.path(
            route.path.clone(),
            PathItem::new(method(route.method), operation(&route)),
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
    use crate::wire::entity_json;
    use ordershop_domain::{Entity, Money};
    use serde_json::Value;
    use std::collections::BTreeSet;

    fn properties(schema: RefOr<Schema>) -> BTreeSet<String> {
        let value = serde_json::to_value(schema).unwrap();
        value["properties"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect()
    }

    fn keys(entity: &Entity) -> BTreeSet<String> {
        entity_json(entity)
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect()
    }

    #[test]
    fn the_entity_schemas_have_the_fields_the_entities_serialise_to() {
        let id = uuid::Uuid::new_v4();
        let customer = Entity::Customer(ordershop_domain::Customer {
            id: id.into(),
            name: ordershop_domain::Name::parse("name", "Ada").unwrap(),
            email: ordershop_domain::Email::parse("ada@example.com").unwrap(),
        });
        assert_eq!(keys(&customer), properties(entities::Customer::schema()));
        let product = Entity::Product(ordershop_domain::Product {
            id: id.into(),
            name: ordershop_domain::Name::parse("name", "Tea").unwrap(),
            price: Money::price(100).unwrap(),
        });
        assert_eq!(keys(&product), properties(entities::Product::schema()));
        let order = Entity::Order(ordershop_domain::Order {
            id: id.into(),
            product_ids: vec![id.into()],
            customer_id: id.into(),
            total: Money::price(100).unwrap(),
        });
        assert_eq!(keys(&order), properties(entities::Order::schema()));
        let billing = Entity::Billing(ordershop_domain::Billing {
            id: id.into(),
            order_id: id.into(),
            done: false,
        });
        assert_eq!(keys(&billing), properties(entities::Billing::schema()));
    }

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
