//! The entity cache's notices of what it applied, for read-your-writes without polling.
//!
//! After each live batch, the cache's Function publishes on [`channel`] one message,
//! `<kind>:<id>:<version>,...`, with the version now applied for every entity of the batch
//! (`<kind>` numbered as [`kind_number`] says). A gateway process holds one subscription and
//! wakes the requests waiting for those versions; the applied-versions Hashes stay the truth,
//! read once by each waiter and again whenever the subscription was lost.

use crate::names;
use ordershop_domain::EntityKind;
use uuid::Uuid;

/// `entity-cache:applied`.
pub fn channel() -> String {
    ordershop_redis::namespace::named(&format!("{}:applied", names::ENTITY_CACHE))
}

/// 1-based number of a kind (the order of `EntityKind::ALL`), as the cache's Function and its
/// notices number kinds.
pub fn kind_number(kind: EntityKind) -> usize {
    EntityKind::ALL
        .iter()
        .position(|k| *k == kind)
        .map_or(0, |i| i + 1)
}

/// The entities and versions of one notice; malformed parts are skipped.
pub fn parse_notice(text: &str) -> impl Iterator<Item = (EntityKind, Uuid, u64)> + '_ {
    text.split(',').filter_map(|part| {
        let mut fields = part.splitn(3, ':');
        let kind = fields.next()?.parse::<usize>().ok()?;
        let kind = *EntityKind::ALL.get(kind.checked_sub(1)?)?;
        let id = fields.next()?.parse().ok()?;
        let version = fields.next()?.parse().ok()?;
        Some((kind, id, version))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_name_kind_id_and_version() {
        let id = Uuid::from_u128(7);
        let order = kind_number(EntityKind::Order);
        let text = format!(
            "{order}:{id}:3,9:{id}:1,{}:{id}:x,1:{id}:2",
            kind_number(EntityKind::Customer)
        );
        let parsed: Vec<_> = parse_notice(&text).collect();
        assert_eq!(
            parsed,
            [(EntityKind::Order, id, 3), (EntityKind::Customer, id, 2)]
        );
        assert_eq!(channel(), "entity-cache:applied");
        assert_eq!(kind_number(EntityKind::Customer), 1);
    }
}
