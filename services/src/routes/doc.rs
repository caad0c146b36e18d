//! What the OpenAPI document says about a gateway route — its tag, summary, parameters, body
//! and answers — as plain data that the route table ([`super::gateway_routes`]) carries beside
//! each route. [`crate::openapi`] writes it out in OpenAPI's terms; nothing here knows them, so
//! a route's documentation reads as what the route does and answers.

use crate::idempotency::MAX_KEY_LEN;
use crate::wire::MAX_BATCH;
use ordershop_domain::EntityKind;

pub const BAD_REQUEST: &str =
    "malformed JSON, wrong types, missing fields or an id that is not a UUID";
pub const UNAUTHORIZED: &str = "ORDERSHOP_API_TOKEN is set and `Authorization: Bearer <token>` is \
                                missing or wrong (answered with `WWW-Authenticate: Bearer`)";
pub const UNAVAILABLE: &str = "Redis or the owning service is unreachable; retry later";
const FORBIDDEN: &str = "sent from a browser origin other than the shop's own (and not in \
                             ORDERSHOP_ALLOWED_ORIGINS), or, to a shop on a loopback address, \
                             addressed to a host name that is not a loopback one";
const UNSUPPORTED_MEDIA_TYPE: &str =
    "a body that is not sent as `Content-Type: application/json` (UTF-8); nothing was appended";

/// The documentation of one route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteDoc {
    /// The group the route is listed under (an entity type, `console`, `operations`, …).
    pub tag: &'static str,
    pub summary: String,
    pub description: Option<&'static str>,
    pub parameters: Vec<Parameter>,
    pub body: Option<Body>,
    /// By HTTP status.
    pub answers: Vec<(u16, Answer)>,
    /// Needs the API token when one is set.
    pub token: bool,
}

/// A parameter of a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parameter {
    pub name: &'static str,
    /// Path parameters are required, the others optional.
    pub location: Location,
    pub description: Option<String>,
    pub value: Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    Path,
    Query,
    Header,
}

/// What a parameter's value may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value {
    /// Any string.
    Text,
    Uuid,
    /// A stream entry ID, `<ms>-<seq>`.
    EntryId,
    /// A projection's name (its consumer group).
    Projection,
    /// An entity type's name.
    EntityKind,
    /// An event's action (`created`, …).
    Action,
    /// A whole number from 1 to this.
    Count(u32),
    /// An `Idempotency-Key`.
    IdempotencyKey,
    /// An `If-Match` list of versions, or `*`.
    IfMatch,
}

/// A request body: the wire body of an entity type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    One(EntityKind),
    /// One body, or a list of them (appended all or none).
    OneOrMany(EntityKind),
}

/// One answer of a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// JSON of this shape; with `etag`, the entity's version as the `ETag` header.
    Json {
        description: String,
        shape: Shape,
        etag: bool,
    },
    /// The error body every error answer has.
    Error(String),
    /// A string of another media type (the event stream, the metrics).
    Text {
        description: &'static str,
        media_type: &'static str,
    },
    /// A page, a file or a redirect: no body described.
    Page(&'static str),
}

/// The shape of a JSON answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// A list of entities of this type.
    Entities(EntityKind),
    /// One entity of this type, or null.
    EntityOrNull(EntityKind),
    /// A list of new ids.
    Ids,
    /// `true`.
    Done,
    /// Every entity of every type.
    Report,
    /// `/health`'s answer.
    Health,
    /// Any JSON object.
    Object,
    /// A list of JSON objects.
    Objects,
}

impl Parameter {
    fn new(
        name: &'static str,
        location: Location,
        description: Option<String>,
        value: Value,
    ) -> Self {
        Self {
            name,
            location,
            description,
            value,
        }
    }
}

impl Answer {
    pub fn json(description: impl Into<String>, shape: Shape) -> Self {
        Answer::Json {
            description: description.into(),
            shape,
            etag: false,
        }
    }

    /// JSON of this shape, with the entity's version as the `ETag` header.
    pub fn versioned(description: impl Into<String>, shape: Shape) -> Self {
        Answer::Json {
            description: description.into(),
            shape,
            etag: true,
        }
    }
}

/// The parameters a path template names (`{id}`, `{file}`, …).
fn path_parameters(path: &str) -> impl Iterator<Item = Parameter> + '_ {
    [
        ("id", None, Value::Uuid),
        (
            "file",
            Some("a file of the page; empty for the docs page itself"),
            Value::Text,
        ),
        (
            "projection",
            Some("the projection (consumer group) that parked the entry"),
            Value::Projection,
        ),
        (
            "entry",
            Some("the parked entry's ID in `<projection>:dead`"),
            Value::EntryId,
        ),
    ]
    .into_iter()
    .filter(move |(name, ..)| path.contains(&format!("{{{name}}}")))
    .map(|(name, description, value)| {
        Parameter::new(name, Location::Path, description.map(str::to_owned), value)
    })
}

impl RouteDoc {
    pub fn new(tag: &'static str, summary: impl Into<String>) -> Self {
        Self {
            tag,
            summary: summary.into(),
            description: None,
            parameters: Vec::new(),
            body: None,
            answers: Vec::new(),
            token: false,
        }
    }

    /// Adds what every route has: `X-Request-Id`, the parameters of its path template (both
    /// before its own), and the 405 of a method the path does not serve.
    pub fn completed_for(mut self, path: &str) -> Self {
        let request_id = Parameter::new(
            "X-Request-Id",
            Location::Header,
            Some(
                "the request's id (1-128 of A-Z a-z 0-9 - _ . :), echoed in the answer and \
                 recorded on the events it appends; a new UUID when absent or invalid"
                    .to_owned(),
            ),
            Value::Text,
        );
        let own = std::mem::take(&mut self.parameters);
        self.parameters = std::iter::once(request_id)
            .chain(path_parameters(path))
            .chain(own)
            .collect();
        self.error(405, "the path exists but does not serve this method")
    }

    pub fn description(mut self, description: &'static str) -> Self {
        self.description = Some(description);
        self
    }

    /// An optional query parameter.
    pub fn query(mut self, name: &'static str, description: &str, value: Value) -> Self {
        let description = Some(description.to_owned());
        self.parameters
            .push(Parameter::new(name, Location::Query, description, value));
        self
    }

    /// An optional header.
    pub fn header(mut self, name: &'static str, description: &str, value: Value) -> Self {
        let description = Some(description.to_owned());
        self.parameters
            .push(Parameter::new(name, Location::Header, description, value));
        self
    }

    /// A required JSON body, and the answers of one too large or too slow.
    pub fn body(mut self, body: Body) -> Self {
        self.body = Some(body);
        self.error(
            413,
            format!(
                "the body is larger than ORDERSHOP_BODY_LIMIT, or lists more than {MAX_BATCH} items"
            ),
        )
        .error(
            408,
            "the body did not arrive within ORDERSHOP_REQUEST_TIMEOUT_MS",
        )
    }

    pub fn answer(mut self, status: u16, answer: Answer) -> Self {
        self.answers.push((status, answer));
        self
    }

    /// A 200 with JSON of this shape.
    pub fn ok(self, description: impl Into<String>, shape: Shape) -> Self {
        self.answer(200, Answer::json(description, shape))
    }

    pub fn error(self, status: u16, description: impl Into<String>) -> Self {
        self.answer(status, Answer::Error(description.into()))
    }

    /// A request that changes the shop: it needs the API token (when one is set), a request from
    /// the shop's own origin, and a body (if any) sent as JSON.
    pub fn guarded(mut self) -> Self {
        self.token = true;
        self.error(401, UNAUTHORIZED)
            .error(403, FORBIDDEN)
            .error(415, UNSUPPORTED_MEDIA_TYPE)
    }

    /// A command: guarded, refused for the domain's reasons, and made safe to retry by an
    /// `Idempotency-Key`.
    pub fn command(self) -> Self {
        self.guarded()
            .error(400, BAD_REQUEST)
            .error(
                409,
                "out of stock, already billed, order billed (delete its billing first), \
                 inventory exists, or the data kept changing (retry)",
            )
            .error(503, UNAVAILABLE)
            .error(
                507,
                "Redis is out of memory and refuses writes (`storage_full`); nothing was appended",
            )
            .error(
                422,
                "failed validation, a reference to an unknown entity, or an Idempotency-Key used \
                 before for a different request",
            )
            .header(
                crate::headers::IDEMPOTENCY_KEY,
                &format!(
                    "makes a retry safe: the same key and request within a day get the first \
                     answer again (with `Idempotent-Replayed: true`) and append nothing; \
                     1-{MAX_KEY_LEN} of A-Z a-z 0-9 - _ . :"
                ),
                Value::IdempotencyKey,
            )
    }

    /// A change to one existing entity: 404 when it is unknown, and `If-Match` with its 412.
    pub fn of_existing_entity(self) -> Self {
        self.error(404, "no such entity")
            .header(
                "If-Match",
                "carry the change out only if the entity is still at one of these versions (the \
                 `ETag` a GET answered, e.g. `\"3\"`), or exists (`*`)",
                Value::IfMatch,
            )
            .error(
                412,
                "If-Match names other versions than the entity's; nothing was appended",
            )
    }
}
