//! The command routes of a domain service (POST/PUT/DELETE on its entity type's paths), generic
//! over the entity type: thin handlers over [`crate::dispatch`], and [`respond`], the one place a
//! command's answer becomes an HTTP response (the gateway's in-process answers too:
//! [`respond_to_client`]).

use super::{Endpoint, JsonBody};
use crate::commands::CommandService;
use crate::dispatch::{self, Answer, ApiCommands, Meta, Op};
use crate::error::ApiError;
use crate::headers;
use crate::precondition::etag;
use crate::request_id::RequestId;
use crate::routes::{EntityPaths, Method};
use crate::versions::header_value;
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

fn routes<T: ApiCommands + 'static>(cfg: &mut web::ServiceConfig) {
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

/// What came with the request besides its body.
fn meta<'a>(req: &'a HttpRequest, request_id: Option<&'a RequestId>) -> Meta<'a> {
    Meta {
        path: req.path(),
        request_id: request_id.map(RequestId::as_str),
        idempotency_key: req
            .headers()
            .get(headers::IDEMPOTENCY_KEY)
            .map(|v| v.as_bytes()),
        if_match: req.headers().get(headers::IF_MATCH).map(|v| v.as_bytes()),
    }
}

async fn create_http<T: ApiCommands>(
    service: web::Data<CommandService>,
    request_id: Option<web::ReqData<RequestId>>,
    req: HttpRequest,
    body: JsonBody,
) -> Result<HttpResponse, ApiError> {
    let meta = meta(&req, request_id.as_deref());
    let answer = dispatch::run::<T>(&service, Op::Create, Some(body.0), meta).await?;
    Ok(respond(&answer))
}

async fn update_http<T: ApiCommands>(
    service: web::Data<CommandService>,
    request_id: Option<web::ReqData<RequestId>>,
    req: HttpRequest,
    id: web::Path<Uuid>,
    body: JsonBody,
) -> Result<HttpResponse, ApiError> {
    let meta = meta(&req, request_id.as_deref());
    let op = Op::Update(id.into_inner());
    let answer = dispatch::run::<T>(&service, op, Some(body.0), meta).await?;
    Ok(respond(&answer))
}

async fn delete_http<T: ApiCommands>(
    service: web::Data<CommandService>,
    request_id: Option<web::ReqData<RequestId>>,
    req: HttpRequest,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let meta = meta(&req, request_id.as_deref());
    let answer = dispatch::run::<T>(&service, Op::Delete(id.into_inner()), None, meta).await?;
    Ok(respond(&answer))
}

/// A command's answer from its owning service: the client's answer ([`respond_to_client`]) and
/// `X-Ordershop-Versions` with every version the append produced, for the gateway (which reads
/// it and never passes it on).
pub fn respond(answer: &Answer) -> HttpResponse {
    let mut response = client_response(answer);
    response.insert_header((headers::VERSIONS, header_value(&answer.written.versions)));
    json_body(response, answer)
}

/// A command's answer as the client gets it: the new ids for a `POST`, `true` otherwise, with
/// the entity's new version as its `ETag` after a `PUT`, and `Idempotent-Replayed` for a
/// replayed answer.
pub fn respond_to_client(answer: &Answer) -> HttpResponse {
    json_body(client_response(answer), answer)
}

fn client_response(answer: &Answer) -> HttpResponseBuilder {
    let mut response = HttpResponse::Ok();
    if answer.written.replayed {
        response.insert_header((headers::IDEMPOTENT_REPLAYED, "true"));
    }
    if let Some(version) = answer.new_version() {
        response.insert_header((actix_web::http::header::ETAG, etag(version)));
    }
    response
}

fn json_body(mut response: HttpResponseBuilder, answer: &Answer) -> HttpResponse {
    match answer.op {
        Op::Create => response.json(&answer.written.ids),
        Op::Update(_) | Op::Delete(_) => response.json(true),
    }
}
