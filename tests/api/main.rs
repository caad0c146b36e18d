//! The integration suite: one test binary that drives the real `ordershop` binary as a client
//! would, against a private redis-server per test.

mod compose;
mod helpers;
mod projections;
mod scenario;
