//! The wire shapes of the HTTP API and their conversion into validated domain drafts.
//!
//! The shapes are the original sample's: `{name, email}`, `{name, price}`, `{product_id,
//! amount}`, `{product_ids, customer_id}`, `{order_id, done}`. Parsing happens in two steps so
//! the client learns which kind of mistake it made: a body that is not JSON, or has missing
//! fields or wrong types, is a 400; a well-formed body that fails validation (empty name, bad
//! email, price <= 0, negative amount, no products) is a 422. Unknown fields are ignored (the
//! original client sends whole entities back, `id` and `total` included).

use crate::error::ApiError;
use crate::messages::{MessageText, OutgoingMessage};
use ordershop_domain::decide::{
    BillingDraft, CustomerDraft, InventoryDraft, OrderDraft, ProductDraft,
};
use ordershop_domain::{
    CustomerId, DomainError, Email, Entity, Money, Name, OrderId, ProductId, Quantity,
};
use ordershop_eventstore::StoredEvent;
use ordershop_readmodel::CacheReport;
use serde::de::{DeserializeOwned, Deserializer, Error as _};
use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

/// A command body of one entity type.
pub trait WireBody: DeserializeOwned {
    type Draft: Clone;

    /// The entity's own id, when the body carries one.
    fn id(&self) -> Option<Uuid>;

    /// Validates the body into a draft.
    fn into_draft(self) -> Result<Self::Draft, DomainError>;
}

/// Parses a request body as JSON (400 when it is not).
pub fn parse_json(bytes: &[u8]) -> Result<Value, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "the request body is empty; expected JSON",
        ));
    }
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("the request body is not valid JSON: {e}")))
}

/// Deserialises one JSON object (400 for anything else, or a wrong shape).
fn parse_object<B: DeserializeOwned>(value: Value) -> Result<B, ApiError> {
    if !value.is_object() {
        return Err(ApiError::bad_request(format!(
            "expected a JSON object, got {}",
            json_type(&value)
        )));
    }
    B::deserialize(value).map_err(|e| ApiError::bad_request(e.to_string()))
}

/// Most items one POST may create: every answer stays small, and the service's internal
/// versions header (about 48 bytes per entity) stays well within what HTTP clients accept.
pub const MAX_BATCH: usize = 1_000;

/// A create body: one object or a list of them. Every item is checked before any is accepted,
/// so a list is taken whole or not at all. The error names the failing item (`[2]: ...`).
pub fn create_drafts<B: WireBody>(value: Value) -> Result<Vec<B::Draft>, ApiError> {
    match value {
        Value::Array(items) if items.len() > MAX_BATCH => Err(ApiError::new(
            actix_web::http::StatusCode::PAYLOAD_TOO_LARGE,
            "batch_too_large",
            format!(
                "a request creates at most {MAX_BATCH} items; this one lists {}: send them in \
                 smaller batches",
                items.len()
            ),
        )),
        Value::Array(items) => {
            let bodies = items
                .into_iter()
                .enumerate()
                .map(|(i, item)| parse_object::<B>(item).map_err(|e| e.context(format!("[{i}]"))))
                .collect::<Result<Vec<B>, ApiError>>()?;
            bodies
                .into_iter()
                .enumerate()
                .map(|(i, body)| {
                    body.into_draft()
                        .map_err(|e| ApiError::from(e).context(format!("[{i}]")))
                })
                .collect()
        }
        value => {
            let body = parse_object::<B>(value)?;
            Ok(vec![body.into_draft()?])
        }
    }
}

/// An update body for the entity `path_id`. A body that names its own id must name that one.
pub fn update_draft<B: WireBody>(path_id: Uuid, value: Value) -> Result<B::Draft, ApiError> {
    let body = parse_object::<B>(value)?;
    if let Some(id) = body.id() {
        if id != path_id {
            return Err(ApiError::from(DomainError::invalid(
                "id",
                format!("the body is for {id} but the path names {path_id}"),
            )));
        }
    }
    Ok(body.into_draft()?)
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A whole number. JSON has one number type, and JSON Schema's `integer` (what the API document
/// says) admits any number without a fraction, so `250.0` and `2.5e2` are read as 250; `2.5` is
/// refused. A number too large for the type saturates, and the domain's range check refuses it.
#[derive(Debug, Clone, Copy)]
pub struct Integer(pub i128);

impl<'de> Deserialize<'de> for Integer {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let number = serde_json::Number::deserialize(d)?;
        if let Some(n) = number.as_i64() {
            return Ok(Self(n.into()));
        }
        if let Some(n) = number.as_u64() {
            return Ok(Self(n.into()));
        }
        match number.as_f64() {
            // Saturating: beyond i128 the range check refuses it anyway.
            Some(f) if f.is_finite() && f.fract() == 0.0 => Ok(Self(f as i128)),
            _ => Err(D::Error::custom(format_args!(
                "`{number}` is not a whole number"
            ))),
        }
    }
}

/// Deserialisers that name the field in their error (serde's own say only what was wrong, not
/// where): `field `price`: `1.5` is not a whole number`.
mod field {
    use super::*;

    macro_rules! named {
        ($($name:ident: $ty:ty),* $(,)?) => {$(
            pub fn $name<'de, D: Deserializer<'de>>(d: D) -> Result<$ty, D::Error> {
                <$ty>::deserialize(d)
                    .map_err(|e| D::Error::custom(format_args!("field `{}`: {e}", stringify!($name))))
            }
        )*};
    }

    named!(
        id: Option<Uuid>,
        name: String,
        email: String,
        price: Integer,
        product_id: ProductId,
        amount: Integer,
        product_ids: Vec<ProductId>,
        customer_id: CustomerId,
        order_id: OrderId,
        done: bool,
        to: String,
        msg: String,
    );
}

/// `{name, email}`
#[derive(Debug, Deserialize, ToSchema)]
pub struct CustomerBody {
    #[serde(default, deserialize_with = "field::id")]
    #[schema(schema_with = crate::field_schemas::optional_uuid)]
    pub id: Option<Uuid>,
    #[serde(deserialize_with = "field::name")]
    #[schema(schema_with = crate::field_schemas::name)]
    pub name: String,
    #[serde(deserialize_with = "field::email")]
    #[schema(schema_with = crate::field_schemas::email)]
    pub email: String,
}

impl WireBody for CustomerBody {
    type Draft = CustomerDraft;
    fn id(&self) -> Option<Uuid> {
        self.id
    }
    fn into_draft(self) -> Result<CustomerDraft, DomainError> {
        Ok(CustomerDraft {
            name: Name::parse("name", &self.name)?,
            email: Email::parse(&self.email)?,
        })
    }
}

/// `{name, price}`, the price an integer in minor units.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ProductBody {
    #[serde(default, deserialize_with = "field::id")]
    #[schema(schema_with = crate::field_schemas::optional_uuid)]
    pub id: Option<Uuid>,
    #[serde(deserialize_with = "field::name")]
    #[schema(schema_with = crate::field_schemas::name)]
    pub name: String,
    #[serde(deserialize_with = "field::price")]
    #[schema(schema_with = crate::field_schemas::price)]
    pub price: Integer,
}

impl WireBody for ProductBody {
    type Draft = ProductDraft;
    fn id(&self) -> Option<Uuid> {
        self.id
    }
    fn into_draft(self) -> Result<ProductDraft, DomainError> {
        Ok(ProductDraft {
            name: Name::parse("name", &self.name)?,
            price: Money::price(self.price.0)?,
        })
    }
}

/// `{product_id, amount}`
#[derive(Debug, Deserialize, ToSchema)]
pub struct InventoryBody {
    #[serde(default, deserialize_with = "field::id")]
    #[schema(schema_with = crate::field_schemas::optional_uuid)]
    pub id: Option<Uuid>,
    #[serde(deserialize_with = "field::product_id")]
    #[schema(schema_with = crate::field_schemas::uuid)]
    pub product_id: ProductId,
    #[serde(deserialize_with = "field::amount")]
    #[schema(schema_with = crate::field_schemas::amount)]
    pub amount: Integer,
}

impl WireBody for InventoryBody {
    type Draft = InventoryDraft;
    fn id(&self) -> Option<Uuid> {
        self.id
    }
    fn into_draft(self) -> Result<InventoryDraft, DomainError> {
        Ok(InventoryDraft {
            product_id: self.product_id,
            amount: Quantity::parse("amount", self.amount.0)?,
        })
    }
}

/// `{product_ids, customer_id}`: one product id per unit.
#[derive(Debug, Deserialize, ToSchema)]
pub struct OrderBody {
    #[serde(default, deserialize_with = "field::id")]
    #[schema(schema_with = crate::field_schemas::optional_uuid)]
    pub id: Option<Uuid>,
    #[serde(deserialize_with = "field::product_ids")]
    #[schema(schema_with = crate::field_schemas::product_ids)]
    pub product_ids: Vec<ProductId>,
    #[serde(deserialize_with = "field::customer_id")]
    #[schema(schema_with = crate::field_schemas::uuid)]
    pub customer_id: CustomerId,
}

impl WireBody for OrderBody {
    type Draft = OrderDraft;
    fn id(&self) -> Option<Uuid> {
        self.id
    }
    fn into_draft(self) -> Result<OrderDraft, DomainError> {
        OrderDraft::new(self.customer_id, self.product_ids)
    }
}

/// `{order_id, done?=false}`
#[derive(Debug, Deserialize, ToSchema)]
pub struct BillingBody {
    #[serde(default, deserialize_with = "field::id")]
    #[schema(schema_with = crate::field_schemas::optional_uuid)]
    pub id: Option<Uuid>,
    #[serde(deserialize_with = "field::order_id")]
    #[schema(schema_with = crate::field_schemas::uuid)]
    pub order_id: OrderId,
    #[serde(default, deserialize_with = "field::done")]
    pub done: bool,
}

impl WireBody for BillingBody {
    type Draft = BillingDraft;
    fn id(&self) -> Option<Uuid> {
        self.id
    }
    fn into_draft(self) -> Result<BillingDraft, DomainError> {
        Ok(BillingDraft {
            order_id: self.order_id,
            done: self.done,
        })
    }
}

/// `POST /email`: `{to, msg}`.
#[derive(Debug, Deserialize)]
pub struct EmailBody {
    #[serde(deserialize_with = "field::to")]
    pub to: String,
    #[serde(deserialize_with = "field::msg")]
    pub msg: String,
}

impl TryFrom<EmailBody> for OutgoingMessage {
    type Error = DomainError;
    fn try_from(body: EmailBody) -> Result<Self, DomainError> {
        Ok(OutgoingMessage {
            to: Email::parse(&body.to)?,
            msg: MessageText::parse(&body.msg)?,
        })
    }
}

/// Parses a `POST /email` body: 400 for a wrong shape, 422 for a bad address or empty text.
pub fn outgoing_message(value: Value) -> Result<OutgoingMessage, ApiError> {
    Ok(OutgoingMessage::try_from(parse_object::<EmailBody>(
        value,
    )?)?)
}

/// `GET /report`: every entity of every type, as the API returns them.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ReportBody {
    pub products: Vec<Value>,
    pub inventory: Vec<Value>,
    pub customers: Vec<Value>,
    pub orders: Vec<Value>,
    pub billings: Vec<Value>,
}

impl From<&CacheReport> for ReportBody {
    fn from(report: &CacheReport) -> Self {
        let json = |list: &[Entity]| list.iter().map(entity_json).collect();
        Self {
            products: json(&report.products),
            inventory: json(&report.inventory),
            customers: json(&report.customers),
            orders: json(&report.orders),
            billings: json(&report.billings),
        }
    }
}

/// An entity as the API returns it: the same JSON the log stores (`id` and the original's
/// fields, plus `total` on orders).
pub fn entity_json(entity: &Entity) -> Value {
    ordershop_readmodel::cache::entity_json(entity)
}

/// One event of the log as JSON (`ordershop events --json` and `GET /<item>/{id}/events`).
pub fn event_json(event: &StoredEvent) -> Value {
    serde_json::json!({
        "id": event.id.to_string(),
        "time": event.id.time().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "stream": event.stream.key(),
        "type": event.kind().as_str(),
        "action": event.stream.action.as_str(),
        "entity_id": event.entity_id().to_string(),
        "version": event.version,
        "event_id": event.event_id.to_string(),
        "entity": entity_json(&event.change.entity),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn status<T: std::fmt::Debug>(r: Result<T, ApiError>) -> u16 {
        r.unwrap_err().status.as_u16()
    }

    #[test]
    fn one_object_or_a_list_is_accepted() {
        let one = json!({"name": "Ada", "email": "ada@example.com"});
        assert_eq!(create_drafts::<CustomerBody>(one.clone()).unwrap().len(), 1);
        let two = json!([one.clone(), {"name": "Bob", "email": "bob@example.com", "x": 1}]);
        assert_eq!(create_drafts::<CustomerBody>(two).unwrap().len(), 2);
    }

    #[test]
    fn shape_errors_are_400_and_validation_errors_422() {
        assert_eq!(status(parse_json(b"{\"name\":")), 400);
        assert_eq!(status(parse_json(b"  ")), 400);
        assert_eq!(
            status(create_drafts::<CustomerBody>(json!({"name": "Ada"}))),
            400
        );
        assert_eq!(status(create_drafts::<CustomerBody>(json!("Ada"))), 400);
        assert_eq!(
            status(create_drafts::<ProductBody>(
                json!({"name": "x", "price": 1.5})
            )),
            400
        );
        assert_eq!(
            status(create_drafts::<ProductBody>(
                json!({"name": "x", "price": "10"})
            )),
            400
        );
        assert_eq!(
            status(create_drafts::<ProductBody>(
                json!({"name": "x", "price": 0})
            )),
            422
        );
        assert_eq!(
            status(create_drafts::<ProductBody>(
                json!({"name": " ", "price": 10})
            )),
            422
        );
        assert_eq!(
            status(create_drafts::<InventoryBody>(
                json!({"product_id": Uuid::nil(), "amount": -1})
            )),
            422
        );
        assert_eq!(
            status(create_drafts::<OrderBody>(
                json!({"product_ids": [], "customer_id": Uuid::nil()})
            )),
            422
        );
        assert_eq!(
            status(create_drafts::<OrderBody>(
                json!({"product_ids": ["nope"], "customer_id": Uuid::nil()})
            )),
            400
        );
    }

    #[test]
    fn a_list_error_names_the_item() {
        let err = create_drafts::<CustomerBody>(json!([
            {"name": "Ada", "email": "ada@example.com"},
            {"name": "Bob", "email": "bob"}
        ]))
        .unwrap_err();
        assert_eq!(err.status.as_u16(), 422);
        assert!(
            err.detail.starts_with("[1]: invalid email"),
            "{}",
            err.detail
        );
    }

    #[test]
    fn an_update_body_may_carry_its_own_id_only() {
        let id = Uuid::new_v4();
        let body = json!({"id": id, "name": "x", "price": 5, "total": 3});
        assert!(update_draft::<ProductBody>(id, body.clone()).is_ok());
        assert_eq!(
            status(update_draft::<ProductBody>(Uuid::new_v4(), body)),
            422
        );
    }
}
