//! The HTTP roles against a real, private redis-server: every server runs in-process on a free
//! loopback port, driven by a real HTTP client.

mod bad_input;
mod concurrency;
mod domain_services;
mod gateway;
mod health;
mod helpers;
mod msg;
