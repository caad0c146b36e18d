//! The schemas of the fields whose values the domain limits, built from the domain's own
//! constants so the document states exactly what the server enforces. Strings are trimmed
//! before they are checked, so the patterns allow surrounding whitespace and count only what
//! lies between it; JSON Schema's `maxLength` cannot say that, the pattern does.
//!
//! Both the wire bodies ([`crate::wire`]) and the entity schemas of the OpenAPI document
//! ([`crate::openapi`]) describe their fields with these.

use ordershop_domain::value::{
    MAX_AMOUNT_MINOR, MAX_EMAIL_CHARS, MAX_NAME_CHARS, MAX_ORDER_ITEMS, MAX_PRICE_MINOR,
    MAX_QUANTITY,
};
use utoipa::openapi::schema::{
    ArrayBuilder, KnownFormat, ObjectBuilder, SchemaFormat, SchemaType, Type,
};
use utoipa::openapi::{RefOr, Schema};

/// What `str::trim` removes (Unicode's White_Space), as a regex class body.
const SPACE: &str = r"\t\n\x0B\x0C\r \x85\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000";
/// What the domain refuses in names and emails besides spaces: `char::is_control`
/// (Unicode's Cc) and the invisible and direction-changing characters of
/// [`ordershop_domain::value::INVISIBLE`], as a regex class body.
fn refused() -> String {
    let mut class = String::from(r"\x00-\x1F\x7F-\x9F");
    for &(low, high) in ordershop_domain::value::INVISIBLE {
        class.push_str(&format!("\\u{:04X}", low as u32));
        if high != low {
            class.push_str(&format!("-\\u{:04X}", high as u32));
        }
    }
    class
}

/// A name: 1 to `MAX_NAME_CHARS` characters once trimmed, none of them a control character.
pub fn name_pattern() -> String {
    let control = refused();
    format!(
        "^[{SPACE}]*[^{SPACE}{control}](?:[^{control}]{{0,{inner}}}[^{SPACE}{control}])?[{SPACE}]*$",
        inner = MAX_NAME_CHARS - 2
    )
}

/// An email: at most `MAX_EMAIL_CHARS` characters once trimmed, no space or control
/// character, one `@` after a non-empty local part, and a domain of two or more non-empty
/// dot-separated labels.
pub fn email_pattern() -> String {
    let control = refused();
    let part = format!("[^@.{SPACE}{control}]+");
    format!(
        "^[{SPACE}]*(?=[^{SPACE}]{{1,{MAX_EMAIL_CHARS}}}[{SPACE}]*$)[^@{SPACE}{control}]+@{part}(?:\\.{part})+[{SPACE}]*$"
    )
}

/// The spellings of a UUID the server reads (those of `Uuid::parse_str`): hyphenated,
/// 32 hex digits, braced, or as a URN; hex digits in either case.
pub fn uuid_pattern() -> String {
    let hyphenated = "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}";
    format!(
        "^(?:{hyphenated}|[0-9a-fA-F]{{32}}|\\{{{hyphenated}\\}}|[uU][rR][nN]:[uU][uU][iI][dD]:{hyphenated})$"
    )
}

fn uuid_builder() -> ObjectBuilder {
    ObjectBuilder::new()
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid)))
        .pattern(Some(uuid_pattern()))
}

/// A UUID.
pub fn uuid() -> RefOr<Schema> {
    uuid_builder()
        .schema_type(SchemaType::Type(Type::String))
        .build()
        .into()
}

/// A body's own id: a UUID, or null (the same as leaving it out).
pub fn optional_uuid() -> RefOr<Schema> {
    uuid_builder()
        .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
        .description(Some(
            "the entity's own id: ignored on create, must be the path's id on update",
        ))
        .build()
        .into()
}

fn string(pattern: String, description: String) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(SchemaType::Type(Type::String))
        .pattern(Some(pattern))
        .description(Some(description))
        .build()
        .into()
}

fn integer(minimum: u64, maximum: u64, description: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(SchemaType::Type(Type::Integer))
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
        .minimum(Some(minimum as f64))
        .maximum(Some(maximum as f64))
        .description(Some(format!(
            "{description}; a whole number (`250.0` is read as 250, `2.5` is refused)"
        )))
        .build()
        .into()
}

pub fn name() -> RefOr<Schema> {
    string(
        name_pattern(),
        format!(
            "1 to {MAX_NAME_CHARS} characters once surrounding whitespace is trimmed, no \
             control characters"
        ),
    )
}

pub fn email() -> RefOr<Schema> {
    string(
        email_pattern(),
        format!(
            "an address like name@example.com: at most {MAX_EMAIL_CHARS} characters once \
             trimmed, no spaces"
        ),
    )
}

pub fn price() -> RefOr<Schema> {
    integer(1, MAX_PRICE_MINOR, "minor units (`1250` is 12.50)")
}

pub fn amount() -> RefOr<Schema> {
    integer(0, u64::from(MAX_QUANTITY), "units in stock")
}

pub fn total() -> RefOr<Schema> {
    integer(
        0,
        MAX_AMOUNT_MINOR,
        "minor units: the sum of the ordered units' prices",
    )
}

pub fn product_ids() -> RefOr<Schema> {
    ArrayBuilder::new()
        .items(uuid())
        .min_items(Some(1))
        .max_items(Some(MAX_ORDER_ITEMS))
        .description(Some(format!(
            "one product id per unit (a product may repeat): 1 to {MAX_ORDER_ITEMS}"
        )))
        .build()
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use fancy_regex::Regex;
    use ordershop_domain::{Email, Name};

    /// Inputs on each side of every rule (trim, length, control characters, `@`, labels).
    fn samples() -> Vec<String> {
        let mut samples: Vec<String> = [
            "Ada",
            " Ada ",
            "\tAda\n",
            "A",
            "",
            " ",
            "\u{3000}",
            "A\u{0}B",
            "A\u{7f}",
            "A\u{85}",
            "\u{85}A\u{85}",
            "Ada Lovelace",
            "A\u{2028}B",
            "Ada\tL",
            "ada@example.com",
            " ada@example.com\n",
            "ada@example",
            "ada@.com",
            "ada@example.",
            "@example.com",
            "ada@@example.com",
            "a@b@example.com",
            "ada @example.com",
            "a.b+c@x.y.z",
            "ada@exa\u{85}mple.com",
            "ada@ex\u{a0}ample.com",
            "é@例え.jp",
        ]
        .into_iter()
        .map(str::to_owned)
        .collect();
        for n in [MAX_NAME_CHARS - 1, MAX_NAME_CHARS, MAX_NAME_CHARS + 1] {
            samples.push("é".repeat(n));
            samples.push(format!("  {}  ", "x".repeat(n)));
        }
        for n in [MAX_EMAIL_CHARS - 1, MAX_EMAIL_CHARS, MAX_EMAIL_CHARS + 1] {
            let local = "a".repeat(n - "@example.com".len());
            samples.push(format!("{local}@example.com"));
            samples.push(format!(" {local}@example.com\t"));
        }
        samples
    }

    #[test]
    fn the_name_pattern_accepts_exactly_what_the_domain_accepts() {
        let pattern = Regex::new(&name_pattern()).unwrap();
        for sample in samples() {
            assert_eq!(
                pattern.is_match(&sample).unwrap(),
                Name::parse("name", &sample).is_ok(),
                "{sample:?}"
            );
        }
    }

    #[test]
    fn the_uuid_pattern_accepts_exactly_what_the_server_parses() {
        let pattern = Regex::new(&uuid_pattern()).unwrap();
        let id = "67e55044-10b1-426f-9247-bb680e5fe0c8";
        let samples = [
            id.to_owned(),
            id.to_uppercase(),
            id.replace('-', ""),
            format!("{{{id}}}"),
            format!("urn:uuid:{id}"),
            format!("URN:Uuid:{id}"),
            String::new(),
            id[1..].to_owned(),
            format!("{id}0"),
            format!(" {id}"),
            id.replace('-', "_"),
            format!("{{{id}"),
            format!("uri:uuid:{id}"),
            id.replacen('6', "g", 1),
            format!("{{{}}}", id.replace('-', "")),
        ];
        for sample in samples {
            assert_eq!(
                pattern.is_match(&sample).unwrap(),
                uuid::Uuid::parse_str(&sample).is_ok(),
                "{sample:?}"
            );
        }
    }

    #[test]
    fn the_email_pattern_accepts_exactly_what_the_domain_accepts() {
        let pattern = Regex::new(&email_pattern()).unwrap();
        for sample in samples() {
            assert_eq!(
                pattern.is_match(&sample).unwrap(),
                Email::parse(&sample).is_ok(),
                "{sample:?}"
            );
        }
    }
}
