//! The `X-Ordershop-Versions` header: how a domain service tells the gateway which entity
//! versions its append produced, so the gateway can wait until the entity cache has applied
//! them before answering (read-your-writes). Written by the services, read by the gateway; this
//! module is the one place its format lives.

use ordershop_domain::EntityKind;
use ordershop_eventstore::Appended;
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

/// One entity version an append produced: `<kind>:<id>:<version>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VersionStamp {
    pub kind: EntityKind,
    pub id: Uuid,
    pub version: u64,
}

impl From<&Appended> for VersionStamp {
    fn from(a: &Appended) -> Self {
        Self {
            kind: a.stream.kind,
            id: a.entity_id,
            version: a.version,
        }
    }
}

impl fmt::Display for VersionStamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.kind, self.id, self.version)
    }
}

impl FromStr for VersionStamp {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = s.trim().splitn(3, ':');
        let (Some(kind), Some(id), Some(version)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(format!("`{s}` is not <kind>:<id>:<version>"));
        };
        Ok(Self {
            kind: kind.parse()?,
            id: Uuid::parse_str(id).map_err(|e| format!("`{s}`: bad id: {e}"))?,
            version: version
                .parse()
                .map_err(|_| format!("`{s}`: bad version `{version}`"))?,
        })
    }
}

/// The header value for a list of versions: comma-separated stamps.
pub fn header_value(versions: &[VersionStamp]) -> String {
    versions
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Parses a header value; an empty value is an empty list.
pub fn parse_header(value: &str) -> Result<Vec<VersionStamp>, String> {
    value
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(str::parse)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_round_trip_through_the_header() {
        let stamps = vec![
            VersionStamp {
                kind: EntityKind::Order,
                id: Uuid::new_v4(),
                version: 1,
            },
            VersionStamp {
                kind: EntityKind::Inventory,
                id: Uuid::new_v4(),
                version: 12,
            },
        ];
        assert_eq!(parse_header(&header_value(&stamps)), Ok(stamps));
        assert_eq!(parse_header(""), Ok(vec![]));
        assert!(parse_header("order:x:1").is_err());
        assert!(parse_header("orders:00000000-0000-0000-0000-000000000000:1").is_err());
    }
}
