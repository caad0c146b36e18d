//! Validated value types. Each constructor is the one place its rule lives; a value of one of
//! these types is valid by construction, so the rest of the domain never re-checks it.

use crate::error::DomainError;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Longest name accepted, in characters.
pub const MAX_NAME_CHARS: usize = 200;
/// Longest email accepted (RFC 5321's path limit).
pub const MAX_EMAIL_CHARS: usize = 254;
/// Largest price accepted, in minor units (ten million in major units).
pub const MAX_PRICE_MINOR: u64 = 1_000_000_000;
/// Largest stock a single inventory record may hold.
pub const MAX_QUANTITY: u32 = 1_000_000_000;
/// Largest amount of money the shop holds, in minor units: an order of the most units at the
/// highest price (prices and totals are checked against it wherever they are read).
pub const MAX_AMOUNT_MINOR: u64 = MAX_PRICE_MINOR * MAX_ORDER_ITEMS as u64;
/// Most units one order may list.
pub const MAX_ORDER_ITEMS: usize = 1_000;

/// Characters that show as nothing, or that reorder the text around them (bidirectional
/// controls such as U+202E, which makes `Bob\u{202E}gnp.exe` display as `Bobexe.png`): a name
/// made of them looks empty, an address with them looks like another. Refused in names and
/// emails like control characters. Inclusive ranges, all in the Basic Multilingual Plane so
/// that the API document's patterns can state them.
pub const INVISIBLE: &[(char, char)] = &[
    ('\u{00AD}', '\u{00AD}'), // soft hyphen
    ('\u{034F}', '\u{034F}'), // combining grapheme joiner
    ('\u{061C}', '\u{061C}'), // Arabic letter mark
    ('\u{115F}', '\u{1160}'), // Hangul fillers
    ('\u{17B4}', '\u{17B5}'), // Khmer inherent vowels
    ('\u{180B}', '\u{180F}'), // Mongolian variation selectors and vowel separator
    ('\u{200B}', '\u{200F}'), // zero-width space, non-joiner, joiner; LRM, RLM
    ('\u{202A}', '\u{202E}'), // bidirectional embeddings and overrides
    ('\u{2060}', '\u{206F}'), // word joiner, invisible operators, bidirectional isolates
    ('\u{2800}', '\u{2800}'), // braille pattern blank
    ('\u{3164}', '\u{3164}'), // Hangul filler
    ('\u{FEFF}', '\u{FEFF}'), // zero-width no-break space (byte order mark)
    ('\u{FFA0}', '\u{FFA0}'), // halfwidth Hangul filler
    ('\u{FFF9}', '\u{FFFB}'), // interlinear annotation controls
];

/// Whether `c` is one of the [`INVISIBLE`] characters.
pub fn is_invisible(c: char) -> bool {
    INVISIBLE
        .iter()
        .any(|&(low, high)| (low..=high).contains(&c))
}

/// A non-empty, trimmed display name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Name(String);

impl Name {
    pub fn parse(field: &'static str, raw: &str) -> Result<Self, DomainError> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(DomainError::invalid(field, "must not be empty"));
        }
        if trimmed.chars().count() > MAX_NAME_CHARS {
            return Err(DomainError::invalid(
                field,
                format!("must be at most {MAX_NAME_CHARS} characters"),
            ));
        }
        if trimmed.chars().any(char::is_control) {
            return Err(DomainError::invalid(
                field,
                "must not contain control characters",
            ));
        }
        if let Some(c) = trimmed.chars().find(|&c| is_invisible(c)) {
            return Err(DomainError::invalid(
                field,
                format!(
                    "must not contain invisible or direction-changing characters (found U+{:04X})",
                    c as u32
                ),
            ));
        }
        Ok(Self(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A plausible email address: one `@`, a non-empty local part, a dotted domain, no spaces.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        let email = raw.trim();
        let invalid = |why: &str| DomainError::invalid("email", format!("`{email}` {why}"));
        if email.chars().count() > MAX_EMAIL_CHARS {
            return Err(DomainError::invalid(
                "email",
                format!("must be at most {MAX_EMAIL_CHARS} characters"),
            ));
        }
        if email.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid("must not contain spaces"));
        }
        if let Some(c) = email.chars().find(|&c| is_invisible(c)) {
            return Err(DomainError::invalid(
                "email",
                format!(
                    "must not contain invisible or direction-changing characters (found U+{:04X})",
                    c as u32
                ),
            ));
        }
        let Some((local, domain)) = email.split_once('@') else {
            return Err(invalid("is not an email address (no `@`)"));
        };
        if local.is_empty() || domain.contains('@') {
            return Err(invalid("is not an email address"));
        }
        let labels: Vec<&str> = domain.split('.').collect();
        if labels.len() < 2 || labels.iter().any(|l| l.is_empty()) {
            return Err(invalid(
                "has no valid domain (expected e.g. name@example.com)",
            ));
        }
        Ok(Self(email.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An amount of money in minor units (cents). Never a float, never above
/// [`MAX_AMOUNT_MINOR`]: the field is private and deserialising checks the bound, so no path
/// (a request, an entry of the log, a cache Hash) makes one that the rules would refuse.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Money(u64);

impl<'de> Deserialize<'de> for Money {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let minor = u64::deserialize(deserializer)?;
        Money::from_minor(minor).map_err(serde::de::Error::custom)
    }
}

impl Money {
    pub const ZERO: Money = Money(0);

    /// An amount (a total, a stored price): at most [`MAX_AMOUNT_MINOR`].
    pub fn from_minor(minor: u64) -> Result<Self, DomainError> {
        if minor > MAX_AMOUNT_MINOR {
            return Err(DomainError::invalid(
                "amount",
                format!("must be at most {MAX_AMOUNT_MINOR} (minor units), got {minor}"),
            ));
        }
        Ok(Self(minor))
    }

    /// A product price: strictly positive and below [`MAX_PRICE_MINOR`].
    pub fn price(raw: i128) -> Result<Self, DomainError> {
        if raw <= 0 {
            return Err(DomainError::invalid(
                "price",
                format!("must be greater than 0 (minor units), got {raw}"),
            ));
        }
        if raw > i128::from(MAX_PRICE_MINOR) {
            return Err(DomainError::invalid(
                "price",
                format!("must be at most {MAX_PRICE_MINOR} (minor units), got {raw}"),
            ));
        }
        Ok(Self(raw as u64))
    }

    pub fn minor(self) -> u64 {
        self.0
    }
}

impl std::ops::Add for Money {
    type Output = Money;
    fn add(self, rhs: Money) -> Money {
        Money(self.0.saturating_add(rhs.0).min(MAX_AMOUNT_MINOR))
    }
}

impl std::iter::Sum for Money {
    fn sum<I: Iterator<Item = Money>>(iter: I) -> Money {
        iter.fold(Money::ZERO, |a, b| a + b)
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_minor(self.0))
    }
}

/// Minor units as `12.50`; also for sums larger than one [`Money`] may hold (report totals).
pub fn format_minor(minor: u64) -> String {
    format!("{}.{:02}", minor / 100, minor % 100)
}

/// A stock quantity: never negative, never above [`MAX_QUANTITY`] (the field is private and
/// deserialising checks the bound).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Quantity(u32);

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = u32::deserialize(deserializer)?;
        Quantity::parse("amount", i128::from(raw)).map_err(serde::de::Error::custom)
    }
}

impl Quantity {
    pub fn parse(field: &'static str, raw: i128) -> Result<Self, DomainError> {
        if raw < 0 {
            return Err(DomainError::invalid(
                field,
                format!("must be 0 or more, got {raw}"),
            ));
        }
        if raw > i128::from(MAX_QUANTITY) {
            return Err(DomainError::invalid(
                field,
                format!("must be at most {MAX_QUANTITY}, got {raw}"),
            ));
        }
        Ok(Self(raw as u32))
    }

    /// A quantity of stock units: at most [`MAX_QUANTITY`].
    pub fn new(units: u32) -> Result<Self, DomainError> {
        Self::parse("amount", i128::from(units))
    }

    pub fn get(self) -> u32 {
        self.0
    }

    /// `raw` brought into 0..=[`MAX_QUANTITY`] (stock given back to a record at the ceiling stays
    /// there).
    pub(crate) fn clamped(raw: i64) -> Self {
        Self(raw.clamp(0, i64::from(MAX_QUANTITY)) as u32)
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_and_quantities_read_from_json_keep_their_bounds() {
        let quantity = |json: &str| serde_json::from_str::<Quantity>(json);
        assert_eq!(quantity("7").map(Quantity::get).ok(), Some(7));
        assert!(quantity(&(MAX_QUANTITY + 1).to_string()).is_err());
        assert!(quantity("-1").is_err());
        let money = |json: &str| serde_json::from_str::<Money>(json);
        assert_eq!(money("1250").map(Money::minor).ok(), Some(1250));
        let err = money(&(MAX_AMOUNT_MINOR + 1).to_string()).unwrap_err();
        assert!(err.to_string().contains("must be at most"), "{err}");
        assert!(money("12.5").is_err());
        assert_eq!(
            (Money::from_minor(MAX_AMOUNT_MINOR).unwrap() + Money::from_minor(1).unwrap()).minor(),
            MAX_AMOUNT_MINOR,
            "sums saturate at the bound"
        );
    }

    #[test]
    fn names_are_trimmed_and_must_not_be_empty() {
        assert_eq!(Name::parse("name", "  Ada ").map(|n| n.0), Ok("Ada".into()));
        assert!(Name::parse("name", "   ").is_err());
        assert!(Name::parse("name", "").is_err());
        assert!(Name::parse("name", &"x".repeat(MAX_NAME_CHARS + 1)).is_err());
        assert!(Name::parse("name", "bell\u{7}").is_err());
    }

    #[test]
    fn emails_must_be_plausible() {
        assert!(Email::parse("ada@example.com").is_ok());
        assert!(Email::parse("a.b+c@mail.example.org").is_ok());
        for bad in [
            "",
            "ada",
            "@example.com",
            "ada@",
            "ada@example",
            "ada@@example.com",
            "a da@example.com",
            "ada@example..com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn prices_must_be_positive_and_bounded() {
        assert_eq!(Money::price(1), Ok(Money(1)));
        assert!(Money::price(0).is_err());
        assert!(Money::price(-5).is_err());
        assert!(Money::price(i128::from(MAX_PRICE_MINOR) + 1).is_err());
        assert_eq!(Money(1234).to_string(), "12.34");
    }

    #[test]
    fn quantities_are_never_negative() {
        assert_eq!(Quantity::parse("amount", 0), Ok(Quantity(0)));
        assert!(Quantity::parse("amount", -1).is_err());
        assert!(Quantity::parse("amount", i128::from(MAX_QUANTITY) + 1).is_err());
    }
}
