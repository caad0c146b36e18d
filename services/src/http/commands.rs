//! The command routes of a domain service (POST/PUT/DELETE on its entity type's paths), generic
//! over the entity type. A success carries `X-Ordershop-Versions` with every entity version the
//! append produced.

use super::{Endpoint, JsonBody};
use crate::commands::{CommandService, EntityCommands, Written};
use crate::error::ApiError;
use crate::headers;
use crate::idempotency;
use crate::request_id::RequestId;
use crate::routes::{EntityPaths, Method};
use crate::versions::header_value;
use crate::wire::{self, WireBody};
use actix_web::{web, HttpRequest, HttpResponse, HttpResponseBuilder};
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
    cfg.service(
        Endpoint::new(paths.collection)
            .on(Method::Post, web::to(create::<T>))
            .finish(),
    );
    if let Some(item) = paths.separate_item() {
        cfg.service(
            Endpoint::new(item)
                .on(Method::Post, web::to(create::<T>))
                .finish(),
        );
    }
    cfg.service(
        Endpoint::new(&paths.with_id())
            .on(Method::Put, web::to(update::<T>))
            .on(Method::Delete, web::to(delete::<T>))
            .finish(),
    );
}

/// The service, tagging what it appends with the request's id.
fn for_request(
    service: &CommandService,
    request_id: Option<web::ReqData<RequestId>>,
) -> CommandService {
    service.for_request(request_id.as_deref().map(RequestId::as_str))
}

/// `POST`: one object or a list; answers the list of new ids.
async fn create<T: HttpCommands>(
    service: web::Data<CommandService>,
    request_id: Option<web::ReqData<RequestId>>,
    req: HttpRequest,
    body: JsonBody,
) -> Result<HttpResponse, ApiError> {
    let key = idempotency::key_of(&req)?;
    let once = idempotency::scoped(T::KIND, key, &req, Some(&body.0));
    let drafts = wire::create_drafts::<T::Body>(body.0)?;
    let written = for_request(&service, request_id)
        .with_idempotency(once)
        .create::<T>(drafts)
        .await?;
    Ok(success(&written).json(&written.ids))
}

/// `PUT /<item>/{id}`: answers `true`.
async fn update<T: HttpCommands>(
    service: web::Data<CommandService>,
    request_id: Option<web::ReqData<RequestId>>,
    req: HttpRequest,
    id: web::Path<Uuid>,
    body: JsonBody,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let key = idempotency::key_of(&req)?;
    let once = idempotency::scoped(T::KIND, key, &req, Some(&body.0));
    let draft = wire::update_draft::<T::Body>(id, body.0)?;
    let written = for_request(&service, request_id)
        .with_idempotency(once)
        .update::<T>(id, draft)
        .await?;
    Ok(success(&written).json(true))
}

/// `DELETE /<item>/{id}`: answers `true`.
async fn delete<T: HttpCommands>(
    service: web::Data<CommandService>,
    request_id: Option<web::ReqData<RequestId>>,
    req: HttpRequest,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let key = idempotency::key_of(&req)?;
    let once = idempotency::scoped(T::KIND, key, &req, None);
    let written = for_request(&service, request_id)
        .with_idempotency(once)
        .delete::<T>(id.into_inner())
        .await?;
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
