//! OrderShop's HTTP roles: the five domain services (customer, product, inventory, order,
//! billing), the gateway, the message service, and the `/health` endpoints of the roles whose
//! work happens elsewhere (crm-service, entity-cache).
//!
//! Layers, outside in:
//! - [`http`]: thin handlers — parse into validated types ([`wire`]), call the application
//!   layer, map the result ([`error`]);
//! - the application layer: [`commands`] (read heads, decide, guarded append, retry),
//!   [`gateway`] (forward commands, wait for the entity cache, answer queries from it through
//!   `ordershop-readmodel`'s reader), [`messages`] (outbox and delivered mail);
//! - the event store (`ordershop-eventstore`), the read models (`ordershop-readmodel`), the
//!   operator's queries and actions the gateway serves (`ordershop-operations`: the overview,
//!   the projections' status, the dead letters) and the pure domain (`ordershop-domain`).
//!
//! A binary runs a role with [`serve`], given a [`Config`], a bound listener and the process's
//! metrics. Every role serves `/health` and `/metrics`; the gateway also serves its OpenAPI
//! document ([`openapi`]) and a docs page; [`request_id`] follows a request through the logs;
//! [`auth`] checks the optional API token on mutating requests.

pub mod auth;
pub mod commands;
pub mod config;
pub mod connection;
pub mod cross_site;
pub mod dispatch;
pub mod error;
pub mod field_schemas;
pub mod gateway;
pub mod headers;
pub mod http;
pub mod idempotency;
pub mod messages;
pub mod openapi;
pub mod precondition;
pub mod rate_limit;
pub mod request_id;
pub mod role;
pub mod routes;
pub mod server;
pub mod versions;
pub mod wire;

pub use config::{Config, ConfigError};
pub use role::Role;
pub use server::serve;
