//! The wording of the customer messages the CRM sends. The CRM's mailer decides which messages
//! go out (`crate::mailer`) and writes their facts to the outbox (kind, the customer's name, the order, its total,
//! the names of the units ordered); this module, pure Rust, turns those facts into the text the
//! message service delivers. So the wording and the money format live where a unit test reaches
//! them, and once.

use ordershop_domain::format_minor;
use std::collections::BTreeMap;

/// A customer message, from the facts its outbox entry carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CustomerMessage {
    Welcome {
        name: String,
    },
    Goodbye {
        name: String,
    },
    /// `items`: one product name per unit, in the order's order.
    OrderConfirmation {
        name: String,
        order_id: String,
        items: Vec<String>,
    },
    /// `total` in minor units.
    PaymentRequest {
        name: String,
        order_id: String,
        total: u64,
    },
    PaymentReceipt {
        name: String,
        order_id: String,
        total: u64,
    },
}

impl CustomerMessage {
    /// Reads a message of `kind` from its facts (`fact(name)` gives a field of the outbox entry).
    /// The error names what is missing or wrong.
    pub fn from_facts<'a>(
        kind: &str,
        fact: impl Fn(&str) -> Option<&'a str>,
    ) -> Result<Self, String> {
        let text = |name: &str| {
            fact(name)
                .map(str::to_owned)
                .ok_or_else(|| format!("a `{kind}` message has no `{name}`"))
        };
        let total = || {
            text("total")?
                .trim()
                .parse::<u64>()
                .map_err(|e| format!("a `{kind}` message's total is not an amount: {e}"))
        };
        match kind {
            "welcome" => Ok(Self::Welcome {
                name: text("name")?,
            }),
            "goodbye" => Ok(Self::Goodbye {
                name: text("name")?,
            }),
            "order_confirmation" => {
                let items = text("items")?;
                // An empty Lua table encodes as `{}`.
                let items = if items.trim() == "{}" {
                    Vec::new()
                } else {
                    serde_json::from_str(&items)
                        .map_err(|e| format!("a `{kind}` message's items are not a list: {e}"))?
                };
                Ok(Self::OrderConfirmation {
                    name: text("name")?,
                    order_id: text("order_id")?,
                    items,
                })
            }
            "payment_request" => Ok(Self::PaymentRequest {
                name: text("name")?,
                order_id: text("order_id")?,
                total: total()?,
            }),
            "receipt" => Ok(Self::PaymentReceipt {
                name: text("name")?,
                order_id: text("order_id")?,
                total: total()?,
            }),
            other => Err(format!("unknown message kind `{other}`")),
        }
    }

    /// The text the customer reads.
    pub fn text(&self) -> String {
        match self {
            Self::Welcome { name } => format!("Hello {name}, welcome to OrderShop!"),
            Self::Goodbye { name } => {
                format!("Goodbye {name}, we hope to see you again at OrderShop!")
            }
            Self::OrderConfirmation {
                name,
                order_id,
                items,
            } => format!(
                "Hello {name}, thank you for your order {order_id}: {}.",
                units_by_product(items)
            ),
            Self::PaymentRequest {
                name,
                order_id,
                total,
            } => format!(
                "Hello {name}, please pay {} for your order {order_id}.",
                format_minor(*total)
            ),
            Self::PaymentReceipt {
                name,
                order_id,
                total,
            } => format!(
                "Hello {name}, we received your payment of {} for order {order_id}. Thank you!",
                format_minor(*total)
            ),
        }
    }
}

/// `2 x Widget, 1 x Gadget`: units counted per product, products in the order they first
/// appear.
fn units_by_product(items: &[String]) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    let mut order: Vec<&str> = Vec::new();
    for item in items {
        let count = counts.entry(item).or_insert(0);
        if *count == 0 {
            order.push(item);
        }
        *count += 1;
    }
    order
        .iter()
        .map(|item| format!("{} x {item}", counts[item]))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<&'a str> {
        move |name| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| *v)
    }

    fn render(kind: &str, pairs: &[(&str, &str)]) -> Result<String, String> {
        CustomerMessage::from_facts(kind, facts(pairs)).map(|m| m.text())
    }

    #[test]
    fn a_new_customer_is_welcomed_and_a_leaving_one_said_goodbye_to() {
        assert_eq!(
            render("welcome", &[("name", "Ada")]),
            Ok("Hello Ada, welcome to OrderShop!".into())
        );
        assert_eq!(
            render("goodbye", &[("name", "Bob")]),
            Ok("Goodbye Bob, we hope to see you again at OrderShop!".into())
        );
    }

    #[test]
    fn an_order_confirmation_counts_the_units_of_each_product_in_order_of_appearance() {
        let text = render(
            "order_confirmation",
            &[
                ("name", "Ada"),
                ("order_id", "o1"),
                ("items", r#"["Widget","Gadget","Widget"]"#),
            ],
        );
        assert_eq!(
            text,
            Ok("Hello Ada, thank you for your order o1: 2 x Widget, 1 x Gadget.".into())
        );
    }

    #[test]
    fn amounts_are_written_in_major_units_with_two_decimals() {
        let request = render(
            "payment_request",
            &[("name", "Ada"), ("order_id", "o1"), ("total", "1000")],
        );
        assert_eq!(
            request,
            Ok("Hello Ada, please pay 10.00 for your order o1.".into())
        );
        let receipt = render(
            "receipt",
            &[("name", "Ada"), ("order_id", "o1"), ("total", "505")],
        );
        assert_eq!(
            receipt,
            Ok("Hello Ada, we received your payment of 5.05 for order o1. Thank you!".into())
        );
    }

    #[test]
    fn missing_or_wrong_facts_are_errors_that_name_them() {
        let err = render("payment_request", &[("name", "Ada"), ("order_id", "o1")]).unwrap_err();
        assert!(err.contains("`total`"), "{err}");
        let err = render(
            "receipt",
            &[("name", "Ada"), ("order_id", "o1"), ("total", "ten")],
        )
        .unwrap_err();
        assert!(err.contains("not an amount"), "{err}");
        assert!(render("postcard", &[("name", "Ada")]).is_err());
    }
}
