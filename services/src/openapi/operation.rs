//! A route's documentation, as the route table carries it ([`RouteDoc`]), written out as an
//! OpenAPI operation: its parameters, request body and answers in OpenAPI's terms, with the
//! schemas they refer to.

use super::{entities, BEARER};
use crate::error::ErrorBody;
use crate::field_schemas;
use crate::routes::doc::{Answer, Body, Location, Parameter, RouteDoc, Shape, Value};
use crate::routes::GatewayRoute;
use crate::wire::MAX_BATCH;
use ordershop_domain::EntityKind;
use utoipa::openapi::path::{Operation, OperationBuilder, ParameterBuilder, ParameterIn};
use utoipa::openapi::request_body::{RequestBody, RequestBodyBuilder};
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, SchemaType, Type};
use utoipa::openapi::security::SecurityRequirement;
use utoipa::openapi::{
    Content, ContentBuilder, HeaderBuilder, Ref, RefOr, Required, Response, ResponseBuilder, Schema,
};
use utoipa::{PartialSchema, ToSchema};

/// The operation of one route.
pub(super) fn operation(route: &GatewayRoute) -> Operation {
    let doc: &RouteDoc = &route.doc;
    let mut op = OperationBuilder::new()
        .operation_id(Some(operation_id(route)))
        .tag(doc.tag)
        .summary(Some(doc.summary.clone()))
        .description(doc.description);
    for parameter in &doc.parameters {
        op = op.parameter(parameter_of(parameter));
    }
    if let Some(body) = doc.body {
        op = op.request_body(Some(request_body(body)));
    }
    for (status, answer) in &doc.answers {
        op = op.response(status.to_string(), response(answer));
    }
    if doc.token {
        op = op.security(SecurityRequirement::new(BEARER, Vec::<String>::new()));
    }
    op.build()
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

fn parameter_of(parameter: &Parameter) -> ParameterBuilder {
    let (location, required) = match parameter.location {
        Location::Path => (ParameterIn::Path, Required::True),
        Location::Query => (ParameterIn::Query, Required::False),
        Location::Header => (ParameterIn::Header, Required::False),
    };
    ParameterBuilder::new()
        .name(parameter.name)
        .parameter_in(location)
        .required(required)
        .description(parameter.description.clone())
        .schema(Some(value_schema(parameter.value)))
}

fn value_schema(value: Value) -> RefOr<Schema> {
    let string = || ObjectBuilder::new().schema_type(SchemaType::Type(Type::String));
    match value {
        Value::Text => String::schema(),
        Value::Uuid => field_schemas::uuid(),
        // Each part up to 19 digits, so that every ID the pattern admits is one the server
        // parses (a part is a u64; 20 digits can exceed it).
        Value::EntryId => string()
            .pattern(Some("^[0-9]{1,19}-[0-9]{1,19}$"))
            .build()
            .into(),
        Value::Projection => string()
            .enum_values(Some(
                ordershop_operations::ProjectionName::ALL
                    .map(|p| p.name())
                    .to_vec(),
            ))
            .build()
            .into(),
        Value::EntityKind => string()
            .enum_values(Some(EntityKind::ALL.map(EntityKind::as_str).to_vec()))
            .build()
            .into(),
        Value::Action => string()
            .enum_values(Some(
                ordershop_domain::Action::ALL.map(|a| a.as_str()).to_vec(),
            ))
            .build()
            .into(),
        Value::Count(max) => ObjectBuilder::new()
            .schema_type(SchemaType::Type(Type::Integer))
            .minimum(Some(1))
            .maximum(Some(max))
            .build()
            .into(),
        Value::IdempotencyKey => string()
            .pattern(Some(format!(
                "^[A-Za-z0-9_.:-]{{1,{}}}$",
                crate::idempotency::MAX_KEY_LEN
            )))
            .build()
            .into(),
        Value::IfMatch => string()
            .pattern(Some(
                "^(\\*|(W/)?\"[0-9]{1,19}\"(, *(W/)?\"[0-9]{1,19}\")*)$",
            ))
            .build()
            .into(),
    }
}

/// The wire body of an entity type.
fn body_schema(kind: EntityKind) -> RefOr<Schema> {
    schema_ref(match kind {
        EntityKind::Customer => "CustomerBody",
        EntityKind::Product => "ProductBody",
        EntityKind::Inventory => "InventoryBody",
        EntityKind::Order => "OrderBody",
        EntityKind::Billing => "BillingBody",
    })
}

fn request_body(body: Body) -> RequestBody {
    let schema = match body {
        Body::One(kind) => body_schema(kind),
        Body::OneOrMany(kind) => one_of(
            body_schema(kind),
            ArrayBuilder::new()
                .items(body_schema(kind))
                .max_items(Some(MAX_BATCH))
                .description(Some(format!(
                    "at most {MAX_BATCH} items, appended all or none (an empty list creates \
                     nothing)"
                ))),
        ),
    };
    RequestBodyBuilder::new()
        .required(Some(Required::True))
        .content("application/json", json(schema))
        .build()
}

fn response(answer: &Answer) -> Response {
    match answer {
        Answer::Json {
            description,
            shape,
            etag,
        } => {
            let response = ResponseBuilder::new()
                .description(description)
                .content("application/json", json(shape_schema(*shape)));
            if *etag {
                response.header("ETag", etag_header()).build()
            } else {
                response.build()
            }
        }
        Answer::Error(description) => ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                json(schema_ref(ErrorBody::name().as_ref())),
            )
            .build(),
        Answer::Text {
            description,
            media_type,
        } => ResponseBuilder::new()
            .description(*description)
            .content(*media_type, json(String::schema()))
            .build(),
        Answer::Page(description) => ResponseBuilder::new().description(*description).build(),
    }
}

/// The entity's version, as the `ETag` of an answer.
fn etag_header() -> utoipa::openapi::Header {
    HeaderBuilder::new()
        .schema(
            ObjectBuilder::new()
                .schema_type(SchemaType::Type(Type::String))
                .pattern(Some("^\"[0-9]+\"$")),
        )
        .description(Some("the entity's version, quoted: `\"3\"`"))
        .build()
}

fn shape_schema(shape: Shape) -> RefOr<Schema> {
    let any_object = || {
        ObjectBuilder::new()
            .schema_type(SchemaType::Type(Type::Object))
            .build()
            .into()
    };
    let entity = |kind| schema_ref(entities::schema_name(kind));
    match shape {
        Shape::Entities(kind) => array_of(entity(kind)),
        Shape::EntityOrNull(kind) => one_of(
            entity(kind),
            ObjectBuilder::new().schema_type(SchemaType::Type(Type::Null)),
        ),
        Shape::Ids => array_of(field_schemas::uuid()),
        Shape::Done => bool::schema(),
        Shape::Report => schema_ref("Report"),
        Shape::Health => schema_ref("HealthStatus"),
        Shape::Object => any_object(),
        Shape::Objects => array_of(any_object()),
    }
}

fn schema_ref(name: &str) -> RefOr<Schema> {
    RefOr::Ref(Ref::from_schema_name(name))
}

fn array_of(item: RefOr<Schema>) -> RefOr<Schema> {
    ArrayBuilder::new().items(item).build().into()
}

fn one_of(first: impl Into<RefOr<Schema>>, second: impl Into<RefOr<Schema>>) -> RefOr<Schema> {
    OneOfBuilder::new().item(first).item(second).into()
}

fn json(schema: RefOr<Schema>) -> Content {
    ContentBuilder::new().schema(Some(schema)).build()
}
