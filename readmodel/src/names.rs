//! The projections' names. Each is also the name of the projection's consumer group and the
//! prefix of its bookkeeping keys (`<name>:versions:<type>`, `<name>:dead`, `<name>:paused`),
//! so a reader that waits on a projection (the gateway's read-your-writes) and the projection
//! itself must spell it the same way: here, once.

/// The entity cache's projector.
pub const ENTITY_CACHE: &str = "entity-cache";
/// The CRM view.
pub const CRM: &str = "crm";
/// The CRM's mailer: the customer messages, written to the outbox.
pub const CRM_MAILER: &str = "crm-mailer";
/// The message service's delivery of the outbox.
pub const MSG_SERVICE: &str = "msg-service";
