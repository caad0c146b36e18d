//! The CRM's mailer (the crm-service role's second worker): the customer messages of the original
//! sample — welcome, goodbye, order confirmation, payment request, receipt — written to the
//! outbox once each, for the message service to deliver.
//!
//! It is a side effect, not a view: it has its own consumer group on the CRM's streams, is never
//! rebuilt (re-running it would mean re-sending), and keeps only what its messages need — a
//! directory of the customers' addresses, the orders' customers and totals and the products'
//! names (the latest version of each, kept after deletes), the messages waiting for one of
//! those, and the ids of the messages it wrote.
//!
//! The rules are here, in Rust: [`plan`] says, for one event, which directory record it
//! updates and which messages it triggers with the facts the event itself gives. The Function
//! (`lua/mailer.lua`) does only what must be atomic with the outbox write: update the directory
//! iff the version is newer, fill in what a message lacks from the directory (the customer's
//! address and name, an order's customer and total, product names), park a message until that is
//! known, and write each message id at most once.

use crate::projection::{plan_call, EncodedPlan, Entry, Mode, Projection};
use ordershop_domain::{Action, Entity, EntityKind};
use ordershop_eventstore::{StoredEvent, Stream};
use ordershop_readmodel::{keys, names};
use serde::Serialize;
use uuid::Uuid;

const NAME: &str = names::CRM_MAILER;
const LIBRARY: &str = concat!(
    "#!lua name=ordershop_crm_mailer\n",
    include_str!("lua/lease.lua"),
    include_str!("lua/mailer.lua")
);

/// The kinds whose events the mailer reads.
pub const KINDS: [EntityKind; 4] = [
    EntityKind::Customer,
    EntityKind::Product,
    EntityKind::Order,
    EntityKind::Billing,
];

/// The kinds of message the mailer writes to the outbox (`direct` ones come from `POST /email`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    Welcome,
    Goodbye,
    OrderConfirmation,
    PaymentRequest,
    Receipt,
}

impl MessageKind {
    pub const ALL: [MessageKind; 5] = [
        MessageKind::Welcome,
        MessageKind::Goodbye,
        MessageKind::OrderConfirmation,
        MessageKind::PaymentRequest,
        MessageKind::Receipt,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            MessageKind::Welcome => "welcome",
            MessageKind::Goodbye => "goodbye",
            MessageKind::OrderConfirmation => "order_confirmation",
            MessageKind::PaymentRequest => "payment_request",
            MessageKind::Receipt => "receipt",
        }
    }
}

/// What the mailer remembers of an entity: the latest version's facts its messages need.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "dir", rename_all = "snake_case")]
pub enum DirectoryRecord {
    Customer {
        id: Uuid,
        v: u64,
        name: String,
        email: String,
    },
    /// `total` in minor units, as text (Lua's numbers would print large ones as `1e+12`).
    Order {
        id: Uuid,
        v: u64,
        customer_id: Uuid,
        total: String,
    },
    Product {
        id: Uuid,
        v: u64,
        name: String,
    },
}

/// A message an event triggers, with the facts the event gives. What it lacks the Function
/// fills in from the directory: with no `customer_id`, the order's customer and total; with no
/// `to`, the customer's address and name; `items` (product ids, one per unit) become names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Draft {
    /// `<event id>:<kind>`: the same message whoever decides it, however often.
    pub id: String,
    pub kind: MessageKind,
    pub event_id: Uuid,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Minor units, as text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub items: Option<Vec<Uuid>>,
}

/// What one event means to the mailer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MailPlan {
    /// The directory record the event brings (applied iff its version is newer).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record: Option<DirectoryRecord>,
    /// Messages waiting for this record, to route again once it is in (the waiting Hash's key).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flush: Option<String>,
    pub messages: Vec<Draft>,
}

impl MailPlan {
    /// Every key the plan names: the waiting Hash it flushes, and where its messages would wait
    /// for what they lack (a message may also wait for a customer the Function reads from the
    /// directory: it answers such keys before writing, and is called again with them).
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.flush.iter().cloned().collect();
        // Receipts that waited for this order wait next for its customer, if unknown yet.
        if let Some(DirectoryRecord::Order { customer_id, .. }) = &self.record {
            keys.push(keys::crm_waiting_for_customer(*customer_id));
        }
        for m in &self.messages {
            if let Some(order) = m.order_id {
                keys.push(keys::crm_waiting_for_order(order));
            }
            if let Some(customer) = m.customer_id {
                keys.push(keys::crm_waiting_for_customer(customer));
            }
        }
        keys.sort_unstable();
        keys.dedup();
        keys
    }
}

/// The mailer's rules: which record an event updates and which messages it triggers. Messages
/// follow events, not versions: a `created` event read after a later version of its entity still
/// sends its message.
pub fn plan(event: &StoredEvent) -> MailPlan {
    let draft = |kind: MessageKind| Draft {
        id: format!("{}:{}", event.event_id, kind.as_str()),
        kind,
        event_id: event.event_id,
        request_id: event.request_id.clone(),
        customer_id: None,
        order_id: None,
        to: None,
        name: None,
        total: None,
        items: None,
    };
    let action = event.change.action;
    let v = event.version;
    match &event.change.entity {
        Entity::Customer(c) => {
            let id = c.id.0;
            let greeting = match action {
                Action::Created => Some(MessageKind::Welcome),
                Action::Deleted => Some(MessageKind::Goodbye),
                Action::Updated => None,
            };
            MailPlan {
                record: Some(DirectoryRecord::Customer {
                    id,
                    v,
                    name: c.name.to_string(),
                    email: c.email.to_string(),
                }),
                flush: Some(keys::crm_waiting_for_customer(id)),
                messages: greeting
                    .map(|kind| Draft {
                        customer_id: Some(id),
                        to: Some(c.email.to_string()),
                        name: Some(c.name.to_string()),
                        ..draft(kind)
                    })
                    .into_iter()
                    .collect(),
            }
        }
        Entity::Product(p) => MailPlan {
            record: Some(DirectoryRecord::Product {
                id: p.id.0,
                v,
                name: p.name.to_string(),
            }),
            flush: None,
            messages: Vec::new(),
        },
        Entity::Order(o) => {
            let about_order = |kind| Draft {
                customer_id: Some(o.customer_id.0),
                order_id: Some(o.id.0),
                ..draft(kind)
            };
            let messages = if action == Action::Created {
                vec![
                    Draft {
                        items: Some(o.product_ids.iter().map(|p| p.0).collect()),
                        ..about_order(MessageKind::OrderConfirmation)
                    },
                    Draft {
                        total: Some(o.total.minor().to_string()),
                        ..about_order(MessageKind::PaymentRequest)
                    },
                ]
            } else {
                Vec::new()
            };
            MailPlan {
                record: Some(DirectoryRecord::Order {
                    id: o.id.0,
                    v,
                    customer_id: o.customer_id.0,
                    total: o.total.minor().to_string(),
                }),
                flush: Some(keys::crm_waiting_for_order(o.id.0)),
                messages,
            }
        }
        Entity::Billing(b) => MailPlan {
            record: None,
            flush: None,
            messages: if action == Action::Created {
                vec![Draft {
                    order_id: Some(b.order_id.0),
                    ..draft(MessageKind::Receipt)
                }]
            } else {
                Vec::new()
            },
        },
        Entity::Inventory(_) => MailPlan {
            record: None,
            flush: None,
            messages: Vec::new(),
        },
    }
}

/// The CRM's mailer projection: a sink of the log, so it has no rebuild.
#[derive(Debug, Clone, Copy, Default)]
pub struct CrmMailer;

impl Projection for CrmMailer {
    /// The event's plan, as the JSON the Function reads, and the keys it names.
    type Event = EncodedPlan;

    fn name(&self) -> &'static str {
        NAME
    }

    fn streams(&self) -> Vec<String> {
        KINDS
            .into_iter()
            .flat_map(Stream::of_kind)
            .map(|s| s.key())
            .collect()
    }

    fn library(&self) -> &'static str {
        LIBRARY
    }

    fn library_name(&self) -> &'static str {
        keys::CRM_MAILER_LIBRARY
    }

    fn decode(&self, entry: &Entry) -> Result<EncodedPlan, String> {
        let event = entry.decode_event()?;
        if !KINDS.contains(&event.kind()) {
            return Err(format!(
                "the CRM's mailer does not read {} events",
                event.kind()
            ));
        }
        let plan = plan(&event);
        EncodedPlan::new(&plan, plan.keys())
    }

    fn apply_call(
        &self,
        mode: Mode<'_>,
        plans: &[&EncodedPlan],
        more_keys: &[String],
    ) -> redis::Cmd {
        let fixed = [
            keys::projection_paused(NAME),
            keys::crm_sent_ids(),
            keys::outbox(),
            keys::crm_messages_sent(),
            keys::crm_mail_directory(),
        ];
        let mut args = mode.header().to_vec();
        args.push(keys::crm_waiting_customer_prefix());
        args.push(keys::crm_waiting_order_prefix());
        plan_call("crm_mail", &fixed, &args, plans, more_keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ordershop_domain::{
        Billing, BillingId, Change, Customer, CustomerId, Email, Money, Name, Order, OrderId,
        Product, ProductId,
    };
    use ordershop_eventstore::EntryId;

    fn event(entity: Entity, action: Action, version: u64) -> StoredEvent {
        StoredEvent {
            stream: Stream::new(entity.kind(), action),
            id: EntryId::new(1, 0),
            event_id: Uuid::from_u128(7),
            version,
            change: Change { entity, action },
            request_id: Some("r-1".into()),
        }
    }

    fn ada() -> Customer {
        Customer {
            id: CustomerId(Uuid::from_u128(1)),
            name: Name::parse("name", "Ada").unwrap(),
            email: Email::parse("ada@example.com").unwrap(),
        }
    }

    fn order() -> Order {
        Order {
            id: OrderId(Uuid::from_u128(2)),
            product_ids: vec![ProductId(Uuid::from_u128(3)); 2],
            customer_id: ada().id,
            total: Money::from_minor(500).unwrap(),
        }
    }

    fn kinds(plan: &MailPlan) -> Vec<MessageKind> {
        plan.messages.iter().map(|m| m.kind).collect()
    }

    #[test]
    fn given_a_new_customer_when_planned_then_a_welcome_goes_to_the_address_the_event_gives() {
        let plan = plan(&event(Entity::Customer(ada()), Action::Created, 1));
        assert_eq!(kinds(&plan), [MessageKind::Welcome]);
        let welcome = &plan.messages[0];
        assert_eq!(welcome.id, format!("{}:welcome", Uuid::from_u128(7)));
        assert_eq!(welcome.to.as_deref(), Some("ada@example.com"));
        assert_eq!(welcome.name.as_deref(), Some("Ada"));
        assert_eq!(welcome.request_id.as_deref(), Some("r-1"));
        assert_eq!(
            plan.flush,
            Some(keys::crm_waiting_for_customer(Uuid::from_u128(1)))
        );
        assert!(matches!(
            plan.record,
            Some(DirectoryRecord::Customer { v: 1, .. })
        ));
    }

    #[test]
    fn given_a_customer_change_when_planned_then_only_a_delete_says_goodbye() {
        let updated = plan(&event(Entity::Customer(ada()), Action::Updated, 2));
        assert!(updated.messages.is_empty());
        assert!(updated.record.is_some(), "the address may have changed");
        let deleted = plan(&event(Entity::Customer(ada()), Action::Deleted, 3));
        assert_eq!(kinds(&deleted), [MessageKind::Goodbye]);
    }

    #[test]
    fn given_a_new_order_when_planned_then_a_confirmation_and_a_payment_request_are_due() {
        let plan = plan(&event(Entity::Order(order()), Action::Created, 1));
        assert_eq!(
            kinds(&plan),
            [MessageKind::OrderConfirmation, MessageKind::PaymentRequest]
        );
        let [confirmation, request] = &plan.messages[..] else {
            unreachable!()
        };
        assert_eq!(confirmation.items.as_ref().map(Vec::len), Some(2));
        assert_eq!(
            confirmation.to, None,
            "the address comes from the directory"
        );
        assert_eq!(request.total.as_deref(), Some("500"));
        assert_eq!(request.customer_id, Some(Uuid::from_u128(1)));
        assert_eq!(
            plan.record,
            Some(DirectoryRecord::Order {
                id: Uuid::from_u128(2),
                v: 1,
                customer_id: Uuid::from_u128(1),
                total: "500".into()
            })
        );
    }

    #[test]
    fn given_an_order_change_when_planned_then_no_message_is_due() {
        for action in [Action::Updated, Action::Deleted] {
            let plan = plan(&event(Entity::Order(order()), action, 2));
            assert!(plan.messages.is_empty(), "{action:?}");
            assert!(plan.record.is_some(), "{action:?}");
        }
    }

    #[test]
    fn given_a_new_billing_when_planned_then_a_receipt_waits_on_its_order_for_the_rest() {
        let billing = Billing {
            id: BillingId(Uuid::from_u128(4)),
            order_id: order().id,
            done: false,
        };
        let plan = plan(&event(Entity::Billing(billing.clone()), Action::Created, 1));
        assert_eq!(kinds(&plan), [MessageKind::Receipt]);
        let receipt = &plan.messages[0];
        assert_eq!(receipt.order_id, Some(Uuid::from_u128(2)));
        assert_eq!(receipt.customer_id, None, "taken from the order");
        assert_eq!(receipt.total, None, "taken from the order");
        assert_eq!(plan.record, None);
        let deleted = super::plan(&event(Entity::Billing(billing), Action::Deleted, 2));
        assert!(deleted.messages.is_empty());
    }

    #[test]
    fn given_a_product_when_planned_then_only_its_name_is_kept() {
        let product = Product {
            id: ProductId(Uuid::from_u128(3)),
            name: Name::parse("name", "Widget").unwrap(),
            price: Money::from_minor(250).unwrap(),
        };
        let plan = plan(&event(Entity::Product(product), Action::Deleted, 2));
        assert!(plan.messages.is_empty());
        assert!(
            matches!(plan.record, Some(DirectoryRecord::Product { ref name, .. }) if name == "Widget"),
            "kept after a delete: old orders still name it"
        );
    }

    #[test]
    fn a_plan_is_the_json_the_function_reads() {
        let json = serde_json::to_value(plan(&event(Entity::Customer(ada()), Action::Created, 1)))
            .unwrap();
        assert_eq!(json["record"]["dir"], "customer");
        assert_eq!(json["record"]["v"], 1);
        assert_eq!(json["messages"][0]["kind"], "welcome");
        assert!(json["messages"][0].get("total").is_none());
    }

    #[test]
    fn the_library_is_named_as_the_key_scheme_says() {
        assert!(LIBRARY.starts_with(&format!("#!lua name={}\n", keys::CRM_MAILER_LIBRARY)));
    }
}
