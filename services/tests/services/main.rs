//! The HTTP roles against a real, private redis-server: every server runs in-process on a free
//! loopback port, driven by a real HTTP client. And the command layer alone, on the in-memory
//! store, without a server (`commands_in_memory`).

mod bad_input;
mod commands_in_memory;
mod concurrency;
mod domain_services;
mod gateway;
mod health;
mod helpers;
mod msg;
