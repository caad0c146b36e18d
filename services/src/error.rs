//! How failures become HTTP answers: one JSON shape, `{"error": <short code>, "detail": <what
//! was wrong>}`, for every error any role returns, with the status that tells the client what
//! to do (fix the request, retry, or wait for the infrastructure).
//!
//! Two worlds, never mixed: rejections of the request (bad JSON, failed validation, unknown ids,
//! out of stock) say exactly what was wrong; infrastructure failures are logged here with their
//! whole cause chain and reach the client only as an opaque 503/500.

use crate::commands::CommandError;
use crate::config::Role;
use actix_web::http::{header, StatusCode};
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use ordershop_domain::DomainError;
use ordershop_eventstore::{AppendError, StoreError};
use ordershop_readmodel::ReadError;
use ordershop_telemetry::error_chain;
use serde::Serialize;
use std::fmt;

/// An error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub detail: String,
}

/// The JSON body of every error answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody<'a> {
    /// A short code: bad_request, not_found, method_not_allowed, payload_too_large, invalid,
    /// unknown_reference, out_of_stock, already_billed, order_billed, inventory_exists,
    /// already_exists, conflict, unauthorized, request_timeout, unavailable, not_replicated,
    /// storage_full, internal.
    pub error: &'a str,
    /// What was wrong, for a human.
    pub detail: &'a str,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            code,
            detail: detail.into(),
        }
    }

    /// Malformed JSON, wrong types, missing fields, unparsable path or query.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", detail)
    }

    /// A mutating request without the API token, or with a wrong one.
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", detail)
    }

    pub fn method_not_allowed(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", detail)
    }

    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the request body is larger than the limit of {limit} bytes"),
        )
    }

    /// The request did not arrive in time (a client sending its body too slowly).
    pub fn request_timeout(timeout: std::time::Duration) -> Self {
        Self::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            format!(
                "the request body did not arrive within {} ms; nothing was done",
                timeout.as_millis()
            ),
        )
    }

    /// A well-formed request that failed validation.
    pub fn invalid(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", detail)
    }

    /// A dependency (Redis, a peer service) cannot be reached; the detail names which, never
    /// how it failed.
    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", detail)
    }

    /// A command carried out on the primary whose append the replicas did not confirm in time.
    pub fn not_replicated(e: &AppendError) -> Self {
        tracing::warn!(error = %e, "a command's append is not confirmed by the replicas");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_replicated",
            format!(
                "the command was carried out on the Redis primary, but {e}: it may or may not \
                 survive a failover. Retrying with the same Idempotency-Key is safe (it is not \
                 carried out twice)"
            ),
        )
    }

    /// Logs an infrastructure failure with its whole cause chain and returns the opaque answer.
    pub fn infrastructure(context: &str, err: &(dyn std::error::Error + 'static)) -> Self {
        tracing::error!(error = %error_chain(err), "{context}");
        if let Some(refusal) = out_of_memory(err) {
            return Self::new(
                StatusCode::INSUFFICIENT_STORAGE,
                "storage_full",
                format!(
                    "Redis is out of memory and refuses writes ({refusal}); nothing was appended"
                ),
            );
        }
        if is_unavailable(err) {
            Self::unavailable("Redis is unavailable; retry later")
        } else {
            Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal error; it has been logged",
            )
        }
    }

    /// Prefixes the detail, e.g. with the position of the item of a list that failed.
    pub fn context(mut self, context: impl fmt::Display) -> Self {
        self.detail = format!("{context}: {}", self.detail);
        self
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.code, self.detail)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response.insert_header((header::RETRY_AFTER, "1"));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
        }
        response.json(ErrorBody {
            error: self.code,
            detail: &self.detail,
        })
    }
}

impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> Self {
        let detail = e.to_string();
        match e {
            DomainError::Invalid { .. } => Self::invalid(detail),
            DomainError::NotFound { .. } => Self::not_found(detail),
            DomainError::UnknownReference { .. } => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "unknown_reference",
                detail,
            ),
            DomainError::OutOfStock { .. } => {
                Self::new(StatusCode::CONFLICT, "out_of_stock", detail)
            }
            DomainError::AlreadyBilled { .. } => {
                Self::new(StatusCode::CONFLICT, "already_billed", detail)
            }
            DomainError::OrderBilled { .. } => {
                Self::new(StatusCode::CONFLICT, "order_billed", detail)
            }
            DomainError::InventoryExists { .. } => {
                Self::new(StatusCode::CONFLICT, "inventory_exists", detail)
            }
        }
    }
}

impl From<CommandError> for ApiError {
    fn from(e: CommandError) -> Self {
        match e {
            CommandError::Domain(e) => e.into(),
            CommandError::Contended { attempts, last } => Self::new(
                StatusCode::CONFLICT,
                "conflict",
                format!(
                    "gave up after {attempts} attempts on concurrently changing data ({last}); \
                     retry the request"
                ),
            ),
            CommandError::IdempotencyKeyReused => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                "this Idempotency-Key was already used for a different request; use a new key",
            ),
            CommandError::Store(StoreError::NotReplicated(e))
            | CommandError::Append(e @ AppendError::NotReplicated { .. }) => {
                Self::not_replicated(&e)
            }
            e @ CommandError::PreconditionFailed { .. } => Self::new(
                StatusCode::PRECONDITION_FAILED,
                "precondition_failed",
                e.to_string(),
            ),
            CommandError::Append(e @ AppendError::Blocked { .. }) => {
                // Not a passing outage: retrying cannot help until an operator acts.
                tracing::error!(error = %e, "an append is refused by an entry written by hand");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "log_blocked",
                    e.to_string(),
                )
            }
            CommandError::Store(e) => Self::infrastructure("command failed", &e),
            CommandError::Append(e) => Self::infrastructure("command failed", &e),
        }
    }
}

impl From<ReadError> for ApiError {
    fn from(e: ReadError) -> Self {
        Self::infrastructure("query failed", &e)
    }
}

impl From<ordershop_operations::OperationError> for ApiError {
    fn from(e: ordershop_operations::OperationError) -> Self {
        Self::infrastructure("reading the projections failed", &e)
    }
}

impl From<ordershop_eventstore::StoreError> for ApiError {
    fn from(e: ordershop_eventstore::StoreError) -> Self {
        Self::infrastructure("reading the log failed", &e)
    }
}

/// The service that owns a command could not be reached, or broke off its answer.
#[derive(Debug, thiserror::Error)]
#[error("{role} unreachable")]
pub struct Unreachable {
    pub role: Role,
    #[source]
    pub source: reqwest::Error,
}

impl From<Unreachable> for ApiError {
    fn from(e: Unreachable) -> Self {
        tracing::warn!(error = %error_chain(&e), "cannot forward a command");
        Self::unavailable(e.to_string())
    }
}

/// Redis's own words when it refused a write for lack of memory (`OOM`, at `maxmemory` with
/// `noeviction`): a full store, not an unreachable one.
fn out_of_memory(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    redis_errors(err)
        .find(|e| e.code() == Some("OOM"))
        .map(|e| e.detail().unwrap_or("OOM").trim().to_owned())
}

/// True when the failure is Redis being unreachable or failing (somewhere in the chain), as
/// opposed to a bug or corrupt data.
fn is_unavailable(err: &(dyn std::error::Error + 'static)) -> bool {
    redis_errors(err).next().is_some()
}

/// The Redis errors in an error's chain, outermost first.
fn redis_errors<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a redis::RedisError> {
    std::iter::successors(Some(err), |e| e.source())
        .filter_map(|e| e.downcast_ref::<redis::RedisError>())
}

/// The app's answer to a path no route matches.
pub async fn unknown_route(req: HttpRequest) -> HttpResponse {
    ApiError::not_found(format!("no route for {} {}", req.method(), req.path())).error_response()
}

/// The answer to a known path called with a method it does not serve.
pub fn wrong_method(req: &HttpRequest, allow: &str) -> HttpResponse {
    let mut response = ApiError::method_not_allowed(format!(
        "{} is not allowed on {}; allowed: {allow}",
        req.method(),
        req.path()
    ))
    .error_response();
    if let Ok(value) = header::HeaderValue::from_str(allow) {
        response.headers_mut().insert(header::ALLOW, value);
    }
    response
}

/// `web::Path` failures (e.g. an id that is not a UUID) as 400 JSON.
pub fn path_config() -> actix_web::web::PathConfig {
    actix_web::web::PathConfig::default().error_handler(|err, req| {
        let segments: Vec<String> = req
            .match_info()
            .iter()
            .map(|(name, value)| format!("{name} `{value}`"))
            .collect();
        ApiError::bad_request(format!(
            "invalid path parameter {} ({err}); ids are UUIDs",
            segments.join(", ")
        ))
        .into()
    })
}

/// `web::Query` failures as 400 JSON.
pub fn query_config() -> actix_web::web::QueryConfig {
    actix_web::web::QueryConfig::default().error_handler(|err, _req| {
        ApiError::bad_request(format!("invalid query string: {err}")).into()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    #[test]
    fn domain_rejections_map_to_the_statuses_clients_act_on() {
        let id = Uuid::nil();
        let cases = [
            (DomainError::invalid("name", "must not be empty"), 422),
            (
                DomainError::NotFound {
                    kind: ordershop_domain::EntityKind::Order,
                    id,
                },
                404,
            ),
            (
                DomainError::UnknownReference {
                    kind: ordershop_domain::EntityKind::Product,
                    id,
                },
                422,
            ),
            (
                DomainError::OutOfStock {
                    product_id: id,
                    requested: 1,
                    available: 0,
                },
                409,
            ),
            (DomainError::AlreadyBilled { order_id: id }, 409),
        ];
        for (e, status) in cases {
            let detail = e.to_string();
            let api = ApiError::from(e);
            assert_eq!(api.status.as_u16(), status, "{detail}");
            assert_eq!(api.detail, detail);
        }
    }

    #[test]
    fn the_chain_lists_every_cause_once() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let redis = redis::RedisError::from(io);
        let store = ordershop_eventstore::StoreError::from(redis);
        let chain = error_chain(&store);
        assert!(chain.starts_with("event store unavailable: "), "{chain}");
        assert!(chain.contains("refused"), "{chain}");
        assert_eq!(
            ApiError::infrastructure("test", &store).status,
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
}
