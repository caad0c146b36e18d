//! The message service's routes: `POST /email` and `GET /emails`.

use super::{Endpoint, JsonBody};
use crate::error::ApiError;
use crate::messages::MessageService;
use crate::routes::{Method, EMAIL, EMAILS};
use crate::wire;
use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::json;

pub fn configure(messages: MessageService, cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::Data::new(messages))
        .service(Endpoint::only(EMAIL, Method::Post, web::to(send)))
        .service(Endpoint::only(EMAILS, Method::Get, web::to(delivered)));
}

/// `POST /email {to, msg}`: answers `{"msg_id": ...}`.
async fn send(
    messages: web::Data<MessageService>,
    body: JsonBody,
) -> Result<HttpResponse, ApiError> {
    let message = wire::outgoing_message(body.0)?;
    let msg_id = messages
        .send(&message)
        .await
        .map_err(|e| ApiError::infrastructure("cannot queue a message", &e))?;
    Ok(HttpResponse::Ok().json(json!({ "msg_id": msg_id })))
}

#[derive(Debug, Deserialize)]
struct DeliveredQuery {
    to: Option<String>,
}

/// `GET /emails[?to=<address>]`: delivered messages, in delivery order.
async fn delivered(
    messages: web::Data<MessageService>,
    query: web::Query<DeliveredQuery>,
) -> Result<HttpResponse, ApiError> {
    let delivered = messages
        .delivered(query.to.as_deref())
        .await
        .map_err(|e| ApiError::infrastructure("cannot list delivered messages", &e))?;
    Ok(HttpResponse::Ok().json(delivered))
}
