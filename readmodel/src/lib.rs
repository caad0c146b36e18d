//! The read models: what the projections build from the log and what the gateway and the
//! operator commands read back. Writers (the projections) and readers (the gateway's queries,
//! `ordershop report`) go through this crate, so a key name, a Hash field or a projection's
//! name has one home.
//!
//! - [`keys`]: every key outside the log (entity cache, CRM view, messages, projection
//!   bookkeeping).
//! - [`cache`]: the entity cache's Hash codec; [`CacheReader`] reads entities back.
//! - [`crm`]: the CRM view's per-customer Hash fields; [`CrmReader`] reads the view.
//! - [`names`]: the projections' names, which are also their consumer groups' names.
//! - [`applied`]: the entity cache's notices of applied versions (read-your-writes).

pub mod applied;
pub mod cache;
pub mod cache_reader;
pub mod crm;
pub mod keys;
pub mod names;

pub use cache_reader::{CacheReader, CacheReport, ReadError};
pub use crm::{CrmCustomer, CrmReader};
pub use keys::CrmSegment;
