//! How OrderShop talks to Redis, whatever it stores there: the configuration from `REDIS_URL`
//! and its TLS files ([`config`], [`url`]), the one connection type that follows a Sentinel's
//! primary or a cluster's slots ([`connection`]), the start-up check of credentials and server
//! ([`access`], [`server`]), the shop's key namespace and hash slot ([`namespace`]), and the
//! back-off between retries ([`retry`]). The log (`ordershop-eventstore`) and the read models
//! (`ordershop-readmodel`) are built on it; nothing here knows an event.

pub mod access;
pub mod config;
pub mod connection;
pub mod namespace;
pub mod retry;
pub mod server;
pub mod url;

pub use access::{AccessDenied, Reachability, Refusal};
pub use config::{RedisConfig, RedisConfigError};
pub use connection::RedisConnection;
pub use namespace::{named, Namespace};
pub use retry::Backoff;
pub use server::{ServerKind, ServerVersion};
