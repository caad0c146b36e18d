//! The names of the HTTP headers the shop reads and writes besides the standard ones: one list,
//! so that the middleware that sets them, the handlers that read them and the gateway that
//! forwards them spell them alike. What each carries is documented where its value is made.

/// A request's id, both ways ([`crate::request_id`]).
pub const REQUEST_ID: &str = "x-request-id";
/// A client's key for carrying a command out at most once ([`crate::idempotency`]).
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// On an answer replayed from an earlier request with the same idempotency key.
pub const IDEMPOTENT_REPLAYED: &str = "idempotent-replayed";
/// Internal, service to gateway: the entity versions an append produced ([`crate::versions`]).
pub const VERSIONS: &str = "x-ordershop-versions";
/// `If-Match`, forwarded by the gateway with `PUT` and `DELETE` ([`crate::precondition`]).
pub const IF_MATCH: &str = "if-match";
