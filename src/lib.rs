//! The `ordershop` application: one binary, one role per process.
//!
//! `cli` turns the command line into calls; `run` starts roles (`serve <role>`) or the whole
//! shop in one process (`up`); `local_redis` runs a private redis-server for `up` in the
//! folder `local_shop` locks (and where operator commands find it); `admin` holds the operator
//! commands. The logic of each role lives in the workspace crates: `ordershop-services` (HTTP
//! roles) and `ordershop-projections` (consumer-group workers). The test rigs (load generator,
//! benchmark, fault injection) are not part of this binary: they live in `ordershop-rigs`.

pub mod admin;
pub mod cli;
pub mod dead_letters;
pub mod events;
pub mod local_redis;
pub mod local_shop;
pub mod report;
pub mod run;
pub mod telemetry;
