//! One entry point for a command as the API receives it, however it came: over a domain
//! service's HTTP route, or from the gateway running the owning service in the same process.
//! Both call [`dispatch`], so they validate, decide, append and answer alike. The answer is
//! typed ([`Answer`]: what was written, the versions it produced): the HTTP layer alone turns it
//! into a response (`http::commands::respond`), and the gateway reads the versions it waits for
//! from it, not from header text.

use crate::commands::{CommandService, EntityCommands, Written};
use crate::error::ApiError;
use crate::idempotency;
use crate::precondition::IfMatch;
use crate::wire::{self, WireBody};
use ordershop_domain::{Billing, Customer, EntityKind, Inventory, Order, Product};
use serde_json::Value;
use uuid::Uuid;

/// What a command does to an entity type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `POST`: one entity or a list of them.
    Create,
    /// `PUT /<item>/{id}`.
    Update(Uuid),
    /// `DELETE /<item>/{id}`.
    Delete(Uuid),
}

impl Op {
    /// The command a method names on a collection (`id` none) or an item's path.
    pub fn of(method: &str, id: Option<Uuid>, path: &str) -> Result<Op, ApiError> {
        match (method, id) {
            ("POST", None) => Ok(Op::Create),
            ("PUT", Some(id)) => Ok(Op::Update(id)),
            ("DELETE", Some(id)) => Ok(Op::Delete(id)),
            (method, _) => Err(ApiError::method_not_allowed(format!(
                "{method} is not a command on {path}"
            ))),
        }
    }

    fn method(self) -> &'static str {
        match self {
            Op::Create => "POST",
            Op::Update(_) => "PUT",
            Op::Delete(_) => "DELETE",
        }
    }
}

/// What came with a command besides its body.
#[derive(Debug, Clone, Copy)]
pub struct Meta<'a> {
    /// The request's path, without its query (it binds an idempotency key to the request).
    pub path: &'a str,
    pub request_id: Option<&'a str>,
    /// The `Idempotency-Key` header's value, as sent.
    pub idempotency_key: Option<&'a [u8]>,
    /// The `If-Match` header's value, as sent (`PUT` and `DELETE` honour it).
    pub if_match: Option<&'a [u8]>,
}

/// A command's typed answer.
#[derive(Debug, Clone)]
pub struct Answer {
    pub kind: EntityKind,
    pub op: Op,
    /// What the command wrote: the ids it answers with, every version it produced, and
    /// whether it was an earlier request's answer replayed.
    pub written: Written,
}

impl Answer {
    /// The version an update gave its entity: the entity tag the answer carries.
    pub fn new_version(&self) -> Option<u64> {
        let Op::Update(id) = self.op else {
            return None;
        };
        self.written
            .versions
            .iter()
            .find(|v| v.kind == self.kind && v.id == id)
            .map(|v| v.version)
    }
}

/// An entity type's commands as the API carries them: the wire body a create or an update
/// sends, which validates into the application layer's draft.
pub trait ApiCommands: EntityCommands {
    type Body: WireBody<Draft = Self::Draft>;
}

impl ApiCommands for Customer {
    type Body = wire::CustomerBody;
}
impl ApiCommands for Product {
    type Body = wire::ProductBody;
}
impl ApiCommands for Inventory {
    type Body = wire::InventoryBody;
}
impl ApiCommands for Order {
    type Body = wire::OrderBody;
}
impl ApiCommands for Billing {
    type Body = wire::BillingBody;
}

/// Runs `op` on `kind` with `body` (the parsed JSON of a `POST` or `PUT`; none for a
/// `DELETE`), as the domain service owning `kind` does.
pub async fn dispatch(
    service: &CommandService,
    kind: EntityKind,
    op: Op,
    body: Option<Value>,
    meta: Meta<'_>,
) -> Result<Answer, ApiError> {
    match kind {
        EntityKind::Customer => run::<Customer>(service, op, body, meta).await,
        EntityKind::Product => run::<Product>(service, op, body, meta).await,
        EntityKind::Inventory => run::<Inventory>(service, op, body, meta).await,
        EntityKind::Order => run::<Order>(service, op, body, meta).await,
        EntityKind::Billing => run::<Billing>(service, op, body, meta).await,
    }
}

/// [`dispatch`] for one entity type.
pub async fn run<T: ApiCommands>(
    service: &CommandService,
    op: Op,
    body: Option<Value>,
    meta: Meta<'_>,
) -> Result<Answer, ApiError> {
    let key = idempotency::key_of(meta.idempotency_key)?;
    let once = idempotency::scoped(T::KIND, key, op.method(), meta.path, body.as_ref());
    let service = service
        .for_request(meta.request_id)
        .with_idempotency(once)
        .with_precondition(meta.if_match.map(IfMatch::parse));
    let body = body.unwrap_or(Value::Null);
    let written = match op {
        Op::Create => T::create_through(&service, wire::create_drafts::<T::Body>(body)?).await?,
        Op::Update(id) => {
            let draft = wire::update_draft::<T::Body>(id, body)?;
            service.update::<T>(id, draft).await?
        }
        Op::Delete(id) => service.delete::<T>(id).await?,
    };
    Ok(Answer {
        kind: T::KIND,
        op,
        written,
    })
}
