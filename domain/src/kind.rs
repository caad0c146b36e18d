//! The closed sets of entity kinds and actions: every stream, key and route is derived from these,
//! so a misspelt kind is a compile error rather than a silently empty stream.

use std::fmt;
use std::str::FromStr;

/// The five entity types of the shop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EntityKind {
    Customer,
    Product,
    Inventory,
    Order,
    Billing,
}

impl EntityKind {
    pub const ALL: [EntityKind; 5] = [
        EntityKind::Customer,
        EntityKind::Product,
        EntityKind::Inventory,
        EntityKind::Order,
        EntityKind::Billing,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            EntityKind::Customer => "customer",
            EntityKind::Product => "product",
            EntityKind::Inventory => "inventory",
            EntityKind::Order => "order",
            EntityKind::Billing => "billing",
        }
    }
}

impl fmt::Display for EntityKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EntityKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EntityKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown entity type `{s}` (expected one of customer, product, inventory, order, billing)"))
    }
}

/// What happened to an entity. The log keeps the original sample's three actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    Created,
    Updated,
    Deleted,
}

impl Action {
    pub const ALL: [Action; 3] = [Action::Created, Action::Updated, Action::Deleted];

    pub const fn as_str(self) -> &'static str {
        match self {
            Action::Created => "created",
            Action::Updated => "updated",
            Action::Deleted => "deleted",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Action {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Action::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| format!("unknown action `{s}` (expected created, updated or deleted)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_actions_round_trip_through_their_names() {
        for kind in EntityKind::ALL {
            assert_eq!(kind.as_str().parse::<EntityKind>(), Ok(kind));
        }
        for action in Action::ALL {
            assert_eq!(action.as_str().parse::<Action>(), Ok(action));
        }
        assert!("orders".parse::<EntityKind>().is_err());
        assert!("removed".parse::<Action>().is_err());
    }
}
