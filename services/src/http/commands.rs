//! The command routes of a domain service (POST/PUT/DELETE on its entity type's paths), generic
//! over the entity type. A success carries `X-Ordershop-Versions` with every entity version the
//! append produced.

use super::{Endpoint, JsonBody};
use crate::commands::{CommandService, EntityCommands, Written};
use crate::error::ApiError;
use crate::headers;
use crate::idempotency;
use crate::precondition::{etag, IfMatch};
use crate::request_id::RequestId;
use crate::routes::{EntityPaths, Method};
use crate::versions::header_value;
use crate::wire::{self, WireBody};
use actix_web::{web, HttpRequest, HttpResponse, HttpResponseBuilder, ResponseError};
use ordershop_domain::{Billing, Customer, EntityKind, Inventory, Order, Product};
use uuid::Uuid;

/// Registers the command routes of `kind`.
pub fn configure(kind: EntityKind, service: CommandService, cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::Data::new(service));
    match kind {
        EntityKind::Customer => routes::<Customer>(cfg),
        EntityKind::Product => routes::<Product>(cfg),
        EntityKind::Inventory => routes::<Inventory>(cfg),
        EntityKind::Order => routes::<Order>(cfg),
        EntityKind::Billing => routes::<Billing>(cfg),
    }
}

/// An entity type's commands as HTTP carries them: the wire body a create or an update sends,
/// which validates into the application layer's draft.
pub trait HttpCommands: EntityCommands {
    type Body: WireBody<Draft = Self::Draft>;
}

impl HttpCommands for Customer {
    type Body = wire::CustomerBody;
}
impl HttpCommands for Product {
    type Body = wire::ProductBody;
}
impl HttpCommands for Inventory {
    type Body = wire::InventoryBody;
}
impl HttpCommands for Order {
    type Body = wire::OrderBody;
}
impl HttpCommands for Billing {
    type Body = wire::BillingBody;
}

fn routes<T: HttpCommands + 'static>(cfg: &mut web::ServiceConfig) {
    let paths = EntityPaths::of(T::KIND);
    for path in std::iter::once(paths.collection).chain(paths.separate_item()) {
        cfg.service(Endpoint::only(
            path,
            Method::Post,
            web::to(create_http::<T>),
        ));
    }
    cfg.service(
        Endpoint::new(&paths.with_id())
            .on(Method::Put, web::to(update_http::<T>))
            .on(Method::Delete, web::to(delete_http::<T>))
            .finish(),
    );
}

/// A command as a domain service receives it, however it came: over HTTP, or from the gateway
/// running in the same process ([`run_in_process`]). Both take the same path through
/// [`create`], [`update`] and [`delete`], so they answer alike.
#[derive(Debug, Clone, Copy)]
pub struct CommandCall<'a> {
    /// `POST`, `PUT` or `DELETE`.
    pub method: &'a str,
    /// The request's path, without its query (it binds an idempotency key to the request).
    pub path: &'a str,
    pub request_id: Option<&'a str>,
    /// The `Idempotency-Key` header's value, as sent.
    pub idempotency_key: Option<&'a [u8]>,
    /// The `If-Match` header's value, as sent (`PUT` and `DELETE` honour it).
    pub if_match: Option<&'a [u8]>,
}

impl<'a> CommandCall<'a> {
    fn of(req: &'a HttpRequest, request_id: Option<&'a RequestId>) -> Self {
        Self {
            method: req.method().as_str(),
            path: req.path(),
            request_id: request_id.map(RequestId::as_str),
            idempotency_key: req
                .headers()
                .get(headers::IDEMPOTENCY_KEY)
                .map(|v| v.as_bytes()),
            if_match: req.headers().get(headers::IF_MATCH).map(|v| v.as_bytes()),
        }
    }

    /// The service, tagging what it appends with the request's id, and the request's
    /// idempotency key bound to it.
    fn service(
        &self,
        service: &CommandService,
        kind: EntityKind,
        body: Option<&serde_json::Value>,
    ) -> Result<CommandService, ApiError> {
        let key = idempotency::key_of(self.idempotency_key)?;
        let once = idempotency::scoped(kind, key, self.method, self.path, body);
        let if_match = self.if_match.map(IfMatch::parse);
        Ok(service
            .for_request(self.request_id)
            .with_idempotency(once)
            .with_precondition(if_match))
    }
}

/// Runs a command in this process exactly as the domain service owning `kind` would over HTTP,
/// and gives its answer (status, headers, body; errors as their JSON answers). `id` is the
/// path's id for `PUT` and `DELETE`; `body` is the request's raw body.
pub async fn run_in_process(
    service: &CommandService,
    kind: EntityKind,
    call: CommandCall<'_>,
    id: Option<Uuid>,
    body: &[u8],
) -> HttpResponse {
    let answer = match kind {
        EntityKind::Customer => dispatch::<Customer>(service, call, id, body).await,
        EntityKind::Product => dispatch::<Product>(service, call, id, body).await,
        EntityKind::Inventory => dispatch::<Inventory>(service, call, id, body).await,
        EntityKind::Order => dispatch::<Order>(service, call, id, body).await,
        EntityKind::Billing => dispatch::<Billing>(service, call, id, body).await,
    };
    answer.unwrap_or_else(|e| e.error_response())
}

async fn dispatch<T: HttpCommands>(
    service: &CommandService,
    call: CommandCall<'_>,
    id: Option<Uuid>,
    body: &[u8],
) -> Result<HttpResponse, ApiError> {
    match (call.method, id) {
        ("POST", None) => create::<T>(service, call, wire::parse_json(body)?).await,
        ("PUT", Some(id)) => update::<T>(service, call, id, wire::parse_json(body)?).await,
        ("DELETE", Some(id)) => delete::<T>(service, call, id).await,
        (method, _) => Err(ApiError::method_not_allowed(format!(
            "{method} is not a command on {}",
            call.path
        ))),
    }
}

async fn create_http<T: HttpCommands>(
    service: web::Data<CommandService>,
    request_id: Option<web::ReqData<RequestId>>,
    req: HttpRequest,
    body: JsonBody,
) -> Result<HttpResponse, ApiError> {
    create::<T>(
        &service,
        CommandCall::of(&req, request_id.as_deref()),
        body.0,
    )
    .await
}

async fn update_http<T: HttpCommands>(
    service: web::Data<CommandService>,
    request_id: Option<web::ReqData<RequestId>>,
    req: HttpRequest,
    id: web::Path<Uuid>,
    body: JsonBody,
) -> Result<HttpResponse, ApiError> {
    let call = CommandCall::of(&req, request_id.as_deref());
    update::<T>(&service, call, id.into_inner(), body.0).await
}

async fn delete_http<T: HttpCommands>(
    service: web::Data<CommandService>,
    request_id: Option<web::ReqData<RequestId>>,
    req: HttpRequest,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let call = CommandCall::of(&req, request_id.as_deref());
    delete::<T>(&service, call, id.into_inner()).await
}

/// `POST`: one object or a list; answers the list of new ids.
async fn create<T: HttpCommands>(
    service: &CommandService,
    call: CommandCall<'_>,
    body: serde_json::Value,
) -> Result<HttpResponse, ApiError> {
    let service = call.service(service, T::KIND, Some(&body))?;
    let drafts = wire::create_drafts::<T::Body>(body)?;
    let written = T::create_through(&service, drafts).await?;
    Ok(success(&written).json(&written.ids))
}

/// `PUT /<item>/{id}`: answers `true`.
async fn update<T: HttpCommands>(
    service: &CommandService,
    call: CommandCall<'_>,
    id: Uuid,
    body: serde_json::Value,
) -> Result<HttpResponse, ApiError> {
    let service = call.service(service, T::KIND, Some(&body))?;
    let draft = wire::update_draft::<T::Body>(id, body)?;
    let written = service.update::<T>(id, draft).await?;
    let mut response = success(&written);
    // The entity's new version is its new entity tag.
    if let Some(stamp) = written
        .versions
        .iter()
        .find(|v| v.kind == T::KIND && v.id == id)
    {
        response.insert_header((actix_web::http::header::ETAG, etag(stamp.version)));
    }
    Ok(response.json(true))
}

/// `DELETE /<item>/{id}`: answers `true`.
async fn delete<T: HttpCommands>(
    service: &CommandService,
    call: CommandCall<'_>,
    id: Uuid,
) -> Result<HttpResponse, ApiError> {
    let service = call.service(service, T::KIND, None)?;
    let written = service.delete::<T>(id).await?;
    Ok(success(&written).json(true))
}

fn success(written: &Written) -> HttpResponseBuilder {
    let mut response = HttpResponse::Ok();
    response.insert_header((headers::VERSIONS, header_value(&written.versions)));
    if written.replayed {
        response.insert_header((headers::IDEMPOTENT_REPLAYED, "true"));
    }
    response
}
