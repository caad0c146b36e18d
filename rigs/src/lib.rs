//! The test rigs of OrderShop, kept out of the product: the `ordershop` binary serves the shop;
//! `ordershop-rigs` loads it, measures it and breaks it.
//!
//! [`load`] drives a running shop over HTTP like real clients; [`bench`] measures each path of
//! the shop next to its bare Redis / actix-web baseline; [`chaos`] runs a shop of one process
//! per role, kills and restarts roles under load and checks the invariants. They reach the shop
//! only through its public paths: HTTP, the `ordershop` library's role starters and commands,
//! the event store's guarded append and replay, the domain's decide functions and the entity
//! cache's reader. [`cli`] turns the command line into calls; [`shop`] starts the shop's own
//! commands as processes.

pub mod bench;
pub mod chaos;
pub mod cli;
pub mod load;
pub mod shop;
