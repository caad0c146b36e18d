//! OrderShop's projections: everything that is derived from the event log.
//!
//! - [`runner`]: one consumer-group runner for every projection (create the group, re-process
//!   own pending entries, read new ones with BLOCK, apply, ack, reclaim a dead consumer's
//!   entries, dead-letter a poison entry, stop on shutdown).
//! - [`entity_cache`]: the entity cache the gateway answers queries from.
//! - [`crm`]: the customer-relationship view.
//! - [`mailer`]: the CRM's customer messages, written to an outbox once each (a side effect, with
//!   a consumer group of its own, never rebuilt).
//! - [`msg`]: the message service's delivery of the outbox, exactly once per message id;
//!   [`message_text`]: the wording of the CRM's messages, rendered from the facts the mailer
//!   writes.
//!
//! What an operator does with them (rebuild a projection, show each group's status, list, retry
//! or discard what a projection parked, report what the shop holds) is `ordershop-operations`,
//! which drives these projections through the small public surface this crate keeps for it:
//! [`with_projection!`] (a name to its projection's type), [`projection::call_function`] (one
//! batch through a projection's Function, live or under a rebuild's lease), the runner's
//! Function library ([`runner::RUNNER_LIBRARY_SOURCE`]: leases, parking and settling dead
//! letters), its bookkeeping readers ([`runner::health`], [`runner::consumers`]) and the reply
//! parsers in [`read`]. The runner itself needs none of the operator's code.
//!
//! Each projection applies a batch in one Redis Function call that checks each entity's version,
//! writes its keys and records the version applied, atomically; the runner acks afterwards. So
//! delivery is at-least-once and the effect exactly-once. docs/projections.md documents the keys
//! and the delivery semantics.

pub mod crm;
pub mod entity_cache;
pub mod error;
pub mod mailer;
pub mod message_text;
pub mod msg;
pub mod projection;
pub mod read;
pub mod runner;

pub use crm::Crm;
pub use entity_cache::EntityCache;
pub use error::{ProjectionError, UnknownProjection};
pub use mailer::CrmMailer;
pub use msg::MsgDelivery;
pub use projection::{Mode, Projection, Replayable};
pub use runner::{run_until_stopped, Runner, RunnerOptions, Source, StepReport};

use ordershop_eventstore::Stream;
use ordershop_readmodel::keys;
use std::fmt;
use std::str::FromStr;

/// The projections the shop runs, by name: how the command line, the roles and the operator
/// commands pick one. What a projection is (its group, streams and Functions) is said once, by
/// its type's [`Projection`] implementation; these methods ask it through `with_projection!`.
/// `name()` is also the consumer group's name, and the prefix of the projection's bookkeeping
/// keys, so it must never change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProjectionName {
    EntityCache,
    Crm,
    CrmMailer,
    MsgDelivery,
}

/// Evaluates a body with the projection a [`ProjectionName`] names bound to a variable of its
/// type, so that generic code (the runner here; the rebuild and the dead-letter retry in
/// `ordershop-operations`) is reached from a name in one place. With one body every projection
/// takes it; with two, views of the log (which implement [`Replayable`]) take the first and
/// sinks the second, so that code needing a replay cannot be handed a sink.
#[macro_export]
macro_rules! with_projection {
    ($name:expr, $p:ident => $body:expr) => {
        $crate::with_projection!($name, $p => $body, $p => $body)
    };
    ($name:expr, $view:ident => $if_view:expr, $sink:ident => $if_sink:expr) => {
        match $name {
            $crate::ProjectionName::EntityCache => {
                let $view = $crate::EntityCache;
                $if_view
            }
            $crate::ProjectionName::Crm => {
                let $view = $crate::Crm;
                $if_view
            }
            $crate::ProjectionName::CrmMailer => {
                let $sink = $crate::CrmMailer;
                $if_sink
            }
            $crate::ProjectionName::MsgDelivery => {
                let $sink = $crate::MsgDelivery;
                $if_sink
            }
        }
    };
}

impl ProjectionName {
    pub const ALL: [ProjectionName; 4] = [
        ProjectionName::EntityCache,
        ProjectionName::Crm,
        ProjectionName::CrmMailer,
        ProjectionName::MsgDelivery,
    ];

    pub fn name(self) -> &'static str {
        with_projection!(self, p => p.name())
    }

    /// The streams this projection's group reads.
    pub fn streams(self) -> Vec<String> {
        with_projection!(self, p => p.streams())
    }

    /// The event streams this projection derives its state from (none for a sink).
    pub fn event_streams(self) -> Vec<Stream> {
        with_projection!(self, view => view.event_streams(), _sink => Vec::new())
    }

    /// The Function libraries a consumer of this projection loads (its readiness).
    pub fn libraries(self) -> [&'static str; 2] {
        [
            keys::RUNNER_LIBRARY,
            with_projection!(self, p => p.library_name()),
        ]
    }

    /// Whether `rebuild` applies: a sink (the mailer, the message service) is not a view. Builds
    /// no key: the command line asks it while parsing, before the process's namespace is set.
    pub fn is_rebuildable(self) -> bool {
        with_projection!(self, _view => true, _sink => false)
    }
}

impl fmt::Display for ProjectionName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl serde::Serialize for ProjectionName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl FromStr for ProjectionName {
    type Err = UnknownProjection;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ProjectionName::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| UnknownProjection(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn projection_names_are_the_group_names_and_parse_back() {
        let names: Vec<&str> = ProjectionName::ALL.iter().map(|p| p.name()).collect();
        assert_eq!(names, ["entity-cache", "crm", "crm-mailer", "msg-service"]);
        for p in ProjectionName::ALL {
            assert_eq!(p.name().parse::<ProjectionName>(), Ok(p));
        }
        assert!("cache".parse::<ProjectionName>().is_err());
    }

    #[test]
    fn each_projection_reads_the_streams_it_needs() {
        assert_eq!(ProjectionName::EntityCache.streams().len(), 15);
        assert_eq!(ProjectionName::Crm.streams().len(), 9);
        assert_eq!(ProjectionName::CrmMailer.streams().len(), 12);
        for p in [ProjectionName::Crm, ProjectionName::CrmMailer] {
            assert!(!p.streams().iter().any(|s| s.contains("inventory")));
        }
        assert!(!ProjectionName::CrmMailer.is_rebuildable());
        assert_eq!(ProjectionName::MsgDelivery.streams(), [keys::outbox()]);
    }
}
