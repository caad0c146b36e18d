//! The projections against a real, private redis-server: one test binary, one module per
//! concern. Events are decided by the domain and appended guarded, as the services do.

mod checkpoint;
mod concurrency;
mod crash;
mod crm;
mod exactly_once;
mod order;
mod poison;
mod rebuild;
mod reconnect;
mod status;
mod support;
