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

/// The schemas of the fields whose values the domain limits, built from the domain's own
/// constants so the document states exactly what the server enforces. Strings are trimmed
/// before they are checked, so the patterns allow surrounding whitespace and count only what
/// lies between it; JSON Schema's `maxLength` cannot say that, the pattern does.
pub mod fields {
    use ordershop_domain::value::{
        MAX_AMOUNT_MINOR, MAX_EMAIL_CHARS, MAX_NAME_CHARS, MAX_ORDER_ITEMS, MAX_PRICE_MINOR,
        MAX_QUANTITY,
    };
    use utoipa::openapi::schema::{
        ArrayBuilder, KnownFormat, ObjectBuilder, SchemaFormat, SchemaType, Type,
    };
    use utoipa::openapi::{RefOr, Schema};

    /// What `str::trim` removes (Unicode's White_Space), as a regex class body.
    const SPACE: &str = r"\t\n\x0B\x0C\r \x85\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000";
    /// What the domain refuses in names and emails besides spaces: `char::is_control`
    /// (Unicode's Cc) and the invisible and direction-changing characters of
    /// [`ordershop_domain::value::INVISIBLE`], as a regex class body.
    fn refused() -> String {
        let mut class = String::from(r"\x00-\x1F\x7F-\x9F");
        for &(low, high) in ordershop_domain::value::INVISIBLE {
            class.push_str(&format!("\\u{:04X}", low as u32));
            if high != low {
                class.push_str(&format!("-\\u{:04X}", high as u32));
            }
        }
        class
    }

    /// A name: 1 to `MAX_NAME_CHARS` characters once trimmed, none of them a control character.
    pub fn name_pattern() -> String {
        let control = refused();
        format!(
            "^[{SPACE}]*[^{SPACE}{control}](?:[^{control}]{{0,{inner}}}[^{SPACE}{control}])?[{SPACE}]*$",
            inner = MAX_NAME_CHARS - 2
        )
    }

    /// An email: at most `MAX_EMAIL_CHARS` characters once trimmed, no space or control
    /// character, one `@` after a non-empty local part, and a domain of two or more non-empty
    /// dot-separated labels.
    pub fn email_pattern() -> String {
        let control = refused();
        let part = format!("[^@.{SPACE}{control}]+");
        format!(
            "^[{SPACE}]*(?=[^{SPACE}]{{1,{MAX_EMAIL_CHARS}}}[{SPACE}]*$)[^@{SPACE}{control}]+@{part}(?:\\.{part})+[{SPACE}]*$"
        )
    }

    /// The spellings of a UUID the server reads (those of `Uuid::parse_str`): hyphenated,
    /// 32 hex digits, braced, or as a URN; hex digits in either case.
    pub fn uuid_pattern() -> String {
        let hyphenated =
            "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}";
        format!(
            "^(?:{hyphenated}|[0-9a-fA-F]{{32}}|\\{{{hyphenated}\\}}|[uU][rR][nN]:[uU][uU][iI][dD]:{hyphenated})$"
        )
    }

    fn uuid_builder() -> ObjectBuilder {
        ObjectBuilder::new()
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid)))
            .pattern(Some(uuid_pattern()))
    }

    /// A UUID.
    pub fn uuid() -> RefOr<Schema> {
        uuid_builder()
            .schema_type(SchemaType::Type(Type::String))
            .build()
            .into()
    }

    /// A body's own id: a UUID, or null (the same as leaving it out).
    pub fn optional_uuid() -> RefOr<Schema> {
        uuid_builder()
            .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
            .description(Some(
                "the entity's own id: ignored on create, must be the path's id on update",
            ))
            .build()
            .into()
    }

    fn string(pattern: String, description: String) -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(SchemaType::Type(Type::String))
            .pattern(Some(pattern))
            .description(Some(description))
            .build()
            .into()
    }

    fn integer(minimum: u64, maximum: u64, description: &str) -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(SchemaType::Type(Type::Integer))
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
            .minimum(Some(minimum as f64))
            .maximum(Some(maximum as f64))
            .description(Some(format!(
                "{description}; a whole number (`250.0` is read as 250, `2.5` is refused)"
            )))
            .build()
            .into()
    }

    pub fn name() -> RefOr<Schema> {
        string(
            name_pattern(),
            format!(
                "1 to {MAX_NAME_CHARS} characters once surrounding whitespace is trimmed, no \
                 control characters"
            ),
        )
    }

    pub fn email() -> RefOr<Schema> {
        string(
            email_pattern(),
            format!(
                "an address like name@example.com: at most {MAX_EMAIL_CHARS} characters once \
                 trimmed, no spaces"
            ),
        )
    }

    pub fn price() -> RefOr<Schema> {
        integer(1, MAX_PRICE_MINOR, "minor units (`1250` is 12.50)")
    }

    pub fn amount() -> RefOr<Schema> {
        integer(0, u64::from(MAX_QUANTITY), "units in stock")
    }

    pub fn total() -> RefOr<Schema> {
        integer(
            0,
            MAX_AMOUNT_MINOR,
            "minor units: the sum of the ordered units' prices",
        )
    }

    pub fn product_ids() -> RefOr<Schema> {
        ArrayBuilder::new()
            .items(uuid())
            .min_items(Some(1))
            .max_items(Some(MAX_ORDER_ITEMS))
            .description(Some(format!(
                "one product id per unit (a product may repeat): 1 to {MAX_ORDER_ITEMS}"
            )))
            .build()
            .into()
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use fancy_regex::Regex;
        use ordershop_domain::{Email, Name};

        /// Inputs on each side of every rule (trim, length, control characters, `@`, labels).
        fn samples() -> Vec<String> {
            let mut samples: Vec<String> = [
                "Ada",
                " Ada ",
                "\tAda\n",
                "A",
                "",
                " ",
                "\u{3000}",
                "A\u{0}B",
                "A\u{7f}",
                "A\u{85}",
                "\u{85}A\u{85}",
                "Ada Lovelace",
                "A\u{2028}B",
                "Ada\tL",
                "ada@example.com",
                " ada@example.com\n",
                "ada@example",
                "ada@.com",
                "ada@example.",
                "@example.com",
                "ada@@example.com",
                "a@b@example.com",
                "ada @example.com",
                "a.b+c@x.y.z",
                "ada@exa\u{85}mple.com",
                "ada@ex\u{a0}ample.com",
                "é@例え.jp",
            ]
            .into_iter()
            .map(str::to_owned)
            .collect();
            for n in [MAX_NAME_CHARS - 1, MAX_NAME_CHARS, MAX_NAME_CHARS + 1] {
                samples.push("é".repeat(n));
                samples.push(format!("  {}  ", "x".repeat(n)));
            }
            for n in [MAX_EMAIL_CHARS - 1, MAX_EMAIL_CHARS, MAX_EMAIL_CHARS + 1] {
                let local = "a".repeat(n - "@example.com".len());
                samples.push(format!("{local}@example.com"));
                samples.push(format!(" {local}@example.com\t"));
            }
            samples
        }

        #[test]
        fn the_name_pattern_accepts_exactly_what_the_domain_accepts() {
            let pattern = Regex::new(&name_pattern()).unwrap();
            for sample in samples() {
                assert_eq!(
                    pattern.is_match(&sample).unwrap(),
                    Name::parse("name", &sample).is_ok(),
                    "{sample:?}"
                );
            }
        }

        #[test]
        fn the_uuid_pattern_accepts_exactly_what_the_server_parses() {
            let pattern = Regex::new(&uuid_pattern()).unwrap();
            let id = "67e55044-10b1-426f-9247-bb680e5fe0c8";
            let samples = [
                id.to_owned(),
                id.to_uppercase(),
                id.replace('-', ""),
                format!("{{{id}}}"),
                format!("urn:uuid:{id}"),
                format!("URN:Uuid:{id}"),
                String::new(),
                id[1..].to_owned(),
                format!("{id}0"),
                format!(" {id}"),
                id.replace('-', "_"),
                format!("{{{id}"),
                format!("uri:uuid:{id}"),
                id.replacen('6', "g", 1),
                format!("{{{}}}", id.replace('-', "")),
            ];
            for sample in samples {
                assert_eq!(
                    pattern.is_match(&sample).unwrap(),
                    uuid::Uuid::parse_str(&sample).is_ok(),
                    "{sample:?}"
                );
            }
        }

        #[test]
        fn the_email_pattern_accepts_exactly_what_the_domain_accepts() {
            let pattern = Regex::new(&email_pattern()).unwrap();
            for sample in samples() {
                assert_eq!(
                    pattern.is_match(&sample).unwrap(),
                    Email::parse(&sample).is_ok(),
                    "{sample:?}"
                );
            }
        }
    }
}

/// The JSON the log stores (and the gateway returns) for each entity type.
pub mod entities {
    use utoipa::ToSchema;
    use uuid::Uuid;

    /// A customer.
    #[derive(ToSchema)]
    #[allow(dead_code)]
    pub struct Customer {
        pub id: Uuid,
        #[schema(schema_with = super::fields::name)]
        pub name: String,
        #[schema(schema_with = super::fields::email)]
        pub email: String,
    }

    /// A product; the price in minor units (`1250` is 12.50).
    #[derive(ToSchema)]
    #[allow(dead_code)]
    pub struct Product {
        pub id: Uuid,
        #[schema(schema_with = super::fields::name)]
        pub name: String,
        #[schema(schema_with = super::fields::price)]
        pub price: i64,
    }

    /// The stock of one product.
    #[derive(ToSchema)]
    #[allow(dead_code)]
    pub struct Inventory {
        pub id: Uuid,
        pub product_id: Uuid,
        #[schema(schema_with = super::fields::amount)]
        pub amount: i64,
    }

    /// An order: one product id per unit, and its total in minor units.
    #[derive(ToSchema)]
    #[allow(dead_code)]
    pub struct Order {
        pub id: Uuid,
        #[schema(schema_with = super::fields::product_ids)]
        pub product_ids: Vec<Uuid>,
        pub customer_id: Uuid,
        #[schema(schema_with = super::fields::total)]
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

fn uuid_schema() -> RefOr<Schema> {
    fields::uuid()
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
                .schema(Some(uuid_schema())),
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
    let ids = array_of(uuid_schema());
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
                    uuid_schema(),
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
