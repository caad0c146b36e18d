//! The integration suite: one test binary that drives the real `ordershop` binary as a client
//! would, against a private redis-server per test.

mod compose;
mod console;
mod contention;
mod contract;
mod failover;
mod feed;
mod fuzz;
mod helpers;
mod limits;
mod local_shop;
mod msrv;
mod namespaces;
mod observability;
mod power_loss;
mod projections;
mod reliability;
mod report;
mod scenario;
mod security;
mod webdriver;
