//! Stream entry IDs: `<unix_ms>-<µs within that ms>`.
//!
//! The first part is wall-clock milliseconds, so XRANGE by time works as Redis intends; the
//! second is the microsecond within that millisecond, bumped past 999 only when two appends
//! land on the same microsecond. IDs come from one clock kept inside Redis (see `lua/store.lua`)
//! and are strictly increasing across every stream of the store.

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct EntryId {
    pub ms: u64,
    pub seq: u64,
}

impl EntryId {
    pub const ZERO: EntryId = EntryId { ms: 0, seq: 0 };

    pub const fn new(ms: u64, seq: u64) -> Self {
        Self { ms, seq }
    }

    /// The microseconds since the epoch this ID stands for (exact while `seq` < 1000).
    pub fn micros(&self) -> u64 {
        self.ms
            .saturating_mul(1000)
            .saturating_add(self.seq.min(999))
    }

    /// The wall-clock time this ID stands for, to the microsecond.
    pub fn time(&self) -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::from_timestamp_micros(i64::try_from(self.micros()).unwrap_or(i64::MAX))
            .unwrap_or_default()
    }
}

impl fmt::Display for EntryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// An ID that is not `<digits>-<digits>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a stream entry ID (expected <ms>-<seq>)")]
pub struct ParseEntryIdError(pub String);

impl FromStr for EntryId {
    type Err = ParseEntryIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseEntryIdError(s.to_owned());
        let (ms, seq) = s.split_once('-').ok_or_else(err)?;
        Ok(Self {
            ms: ms.parse().map_err(|_| err())?,
            seq: seq.parse().map_err(|_| err())?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_order_numerically() {
        let a: EntryId = "1700000000000-999".parse().unwrap();
        let b: EntryId = "1700000000001-0".parse().unwrap();
        let c: EntryId = "1700000000001-10".parse().unwrap();
        let d: EntryId = "1700000000001-9".parse().unwrap();
        assert!(a < b && b < d && d < c);
        assert_eq!(a.to_string(), "1700000000000-999");
        assert_eq!(a.micros(), 1_700_000_000_000_999);
        for bad in ["", "12", "a-1", "1-b", "1-2-3", "-1"] {
            assert!(bad.parse::<EntryId>().is_err(), "{bad}");
        }
    }
}
