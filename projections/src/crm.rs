//! The CRM (the crm-service role): the customer-relationship view.
//!
//! The view (per customer: profile, status, live orders, units and products bought, amounts
//! ordered and billed in minor units, unbilled orders, last order; segment Sets) is a pure
//! function of the log, so it converges whatever order its consumers see events in and can be
//! rebuilt. Its rules are here: [`plan`] turns one event into the upserts it makes, as data,
//! and the Function (`lua/crm.lua`) only checks versions and applies them atomically. The
//! customer messages are a side effect with a consumer group of their own: see
//! [`crate::mailer`]. docs/projections.md lists the keys.

use crate::projection::{plan_call, EncodedPlan, Entry, Mode, Projection, Replayable};
use ordershop_domain::{Action, Entity, EntityKind, Order};
use ordershop_eventstore::{EntryId, StoredEvent, Stream};
use ordershop_readmodel::keys::{self, CrmSegment};
use serde::Serialize;
use std::collections::BTreeMap;
use uuid::Uuid;

const NAME: &str = ordershop_readmodel::names::CRM;
const LIBRARY: &str = concat!(
    "#!lua name=ordershop_crm\n",
    include_str!("lua/lease.lua"),
    include_str!("lua/crm.lua")
);

/// The kinds whose events the view is made of (product names matter only to the mailer).
pub const KINDS: [EntityKind; 3] = [EntityKind::Customer, EntityKind::Order, EntityKind::Billing];

/// The CRM projection.
#[derive(Debug, Clone, Copy, Default)]
pub struct Crm;

/// One counter change: `HINCRBY key field n`; with `follow` (a Set and a member), the member is
/// in the Set iff the field is non-zero afterwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delta {
    pub key: String,
    pub field: String,
    pub n: i64,
    pub follow: Option<(String, String)>,
}

impl Serialize for Delta {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = s.serialize_seq(None)?;
        seq.serialize_element(&self.key)?;
        seq.serialize_element(&self.field)?;
        seq.serialize_element(&self.n)?;
        if let Some((set, member)) = &self.follow {
            seq.serialize_element(set)?;
            seq.serialize_element(member)?;
        }
        seq.end()
    }
}

/// What an order counts for its customer: `always`, plus `linked` while it has a live billing,
/// else `unlinked`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Contribution {
    pub always: Vec<Delta>,
    pub linked: Vec<Delta>,
    pub unlinked: Vec<Delta>,
}

/// The CRM's rule for orders: a live order counts once in `orders`, its total in
/// `amount_ordered`, its units in `units` and per product; while it has no live billing it is
/// one of the customer's `unbilled_orders` (and the customer in the unbilled segment); while it
/// has one, its total is in `amount_billed` (a deleted order's too: it was billed).
pub fn contribution(order: &Order, live: bool) -> Contribution {
    let customer = order.customer_id.0;
    let counter = |field: &str, n: i64| Delta {
        key: keys::crm_customer(customer),
        field: field.to_owned(),
        n,
        follow: None,
    };
    let total = i64::try_from(order.total.minor()).unwrap_or(i64::MAX);
    let mut c = Contribution {
        linked: vec![counter("amount_billed", total)],
        ..Contribution::default()
    };
    if live {
        let units = i64::try_from(order.product_ids.len()).unwrap_or(i64::MAX);
        c.always = vec![
            counter("orders", 1),
            counter("amount_ordered", total),
            counter("units", units),
        ];
        let mut per_product: BTreeMap<Uuid, i64> = BTreeMap::new();
        for p in &order.product_ids {
            *per_product.entry(p.0).or_default() += 1;
        }
        c.always.extend(per_product.into_iter().map(|(p, n)| Delta {
            key: keys::crm_customer_products(customer),
            field: p.to_string(),
            n,
            follow: None,
        }));
        c.unlinked = vec![Delta {
            follow: Some((CrmSegment::Unbilled.key(), customer.to_string())),
            ..counter("unbilled_orders", 1)
        }];
    }
    c
}

/// An entry ID as fixed-width text, so that later IDs compare greater as strings.
fn rank(id: EntryId) -> String {
    format!("{:020}-{:020}", id.ms, id.seq)
}

/// One upsert of a plan (see `lua/crm.lua` for what each does).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Upsert {
    Hset {
        key: String,
        fields: BTreeMap<&'static str, String>,
    },
    Sadd {
        key: String,
        member: String,
    },
    Srem {
        key: String,
        member: String,
    },
    /// Replaces a record's contribution; each list travels as JSON text, kept verbatim in the
    /// record.
    Count {
        record: String,
        #[serde(serialize_with = "as_json_text")]
        always: Vec<Delta>,
        #[serde(serialize_with = "as_json_text")]
        linked: Vec<Delta>,
        #[serde(serialize_with = "as_json_text")]
        unlinked: Vec<Delta>,
    },
    Link {
        links: String,
        id: Uuid,
        #[serde(skip_serializing_if = "Option::is_none")]
        to: Option<Uuid>,
        record_prefix: String,
    },
    Max {
        ranks: String,
        slot: Uuid,
        rank: String,
        key: String,
        fields: BTreeMap<&'static str, String>,
    },
}

/// The version check an event's upserts depend on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Guard {
    pub key: String,
    pub id: Uuid,
    pub v: u64,
}

/// What one event does to the view: `ops` iff it is newer than the entity's applied version,
/// `always` whatever the version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ViewPlan {
    pub guard: Guard,
    pub ops: Vec<Upsert>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub always: Vec<Upsert>,
}

impl ViewPlan {
    /// Every key the plan names (the Function may also touch keys a record or a link names:
    /// it answers those before writing, and is called again with them declared).
    pub fn keys(&self) -> Vec<String> {
        let mut keys = vec![self.guard.key.clone()];
        let deltas = |keys: &mut Vec<String>, deltas: &[Delta]| {
            for d in deltas {
                keys.push(d.key.clone());
                if let Some((set, _)) = &d.follow {
                    keys.push(set.clone());
                }
            }
        };
        for op in self.ops.iter().chain(&self.always) {
            match op {
                Upsert::Hset { key, .. } | Upsert::Sadd { key, .. } | Upsert::Srem { key, .. } => {
                    keys.push(key.clone());
                }
                Upsert::Count {
                    record,
                    always,
                    linked,
                    unlinked,
                } => {
                    keys.push(record.clone());
                    deltas(&mut keys, always);
                    deltas(&mut keys, linked);
                    deltas(&mut keys, unlinked);
                }
                Upsert::Link {
                    links,
                    to,
                    record_prefix,
                    ..
                } => {
                    keys.push(links.clone());
                    if let Some(to) = to {
                        keys.push(format!("{record_prefix}{to}"));
                    }
                }
                Upsert::Max { ranks, key, .. } => {
                    keys.push(ranks.clone());
                    keys.push(key.clone());
                }
            }
        }
        keys.sort_unstable();
        keys.dedup();
        keys
    }
}

fn as_json_text<S: serde::Serializer>(deltas: &[Delta], s: S) -> Result<S::Ok, S::Error> {
    let text = serde_json::to_string(deltas).map_err(serde::ser::Error::custom)?;
    s.serialize_str(&text)
}

/// The CRM's rules: the upserts one event makes to the view.
pub fn plan(event: &StoredEvent) -> ViewPlan {
    let entity = &event.change.entity;
    let deleted = event.change.action == Action::Deleted;
    let guard = Guard {
        key: keys::applied_versions(NAME, entity.kind()),
        id: entity.id(),
        v: event.version,
    };
    let mut ops = Vec::new();
    let mut always = Vec::new();
    match entity {
        Entity::Customer(c) => {
            let id = c.id.0.to_string();
            let status = if deleted { "deleted" } else { "active" };
            ops.push(Upsert::Hset {
                key: keys::crm_customer(c.id.0),
                fields: BTreeMap::from([
                    ("id", id.clone()),
                    ("name", c.name.to_string()),
                    ("email", c.email.to_string()),
                    ("status", status.to_owned()),
                ]),
            });
            let member = |segment: CrmSegment, is_in: bool| {
                let (key, member) = (segment.key(), id.clone());
                if is_in {
                    Upsert::Sadd { key, member }
                } else {
                    Upsert::Srem { key, member }
                }
            };
            ops.push(member(CrmSegment::All, true));
            ops.push(member(CrmSegment::Active, !deleted));
            ops.push(member(CrmSegment::Deleted, deleted));
        }
        Entity::Order(o) => {
            let c = contribution(o, !deleted);
            ops.push(Upsert::Count {
                record: keys::crm_order(o.id.0),
                always: c.always,
                linked: c.linked,
                unlinked: c.unlinked,
            });
            if event.change.action == Action::Created {
                // The last order placed: a maximum over created events, so their order does
                // not matter.
                always.push(Upsert::Max {
                    ranks: keys::crm_last_order_ranks(),
                    slot: o.customer_id.0,
                    rank: rank(event.id),
                    key: keys::crm_customer(o.customer_id.0),
                    fields: BTreeMap::from([
                        ("last_order_entry", event.id.to_string()),
                        ("last_order_id", o.id.0.to_string()),
                        ("last_order_at", event.id.ms.to_string()),
                    ]),
                });
            }
        }
        Entity::Billing(b) => ops.push(Upsert::Link {
            links: keys::crm_billing_orders(),
            id: b.id.0,
            to: (!deleted).then_some(b.order_id.0),
            record_prefix: keys::crm_order_prefix(),
        }),
        Entity::Product(_) | Entity::Inventory(_) => {}
    }
    ViewPlan { guard, ops, always }
}

impl Projection for Crm {
    /// The event's plan, as the JSON the Function reads, and the keys it names.
    type Event = EncodedPlan;

    fn name(&self) -> &'static str {
        NAME
    }

    fn streams(&self) -> Vec<String> {
        self.event_streams().iter().map(Stream::key).collect()
    }

    fn library(&self) -> &'static str {
        LIBRARY
    }

    fn library_name(&self) -> &'static str {
        keys::CRM_LIBRARY
    }

    fn decode(&self, entry: &Entry) -> Result<EncodedPlan, String> {
        let event = entry.decode_event()?;
        if !KINDS.contains(&event.kind()) {
            return Err(format!("the CRM does not read {} events", event.kind()));
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
        plan_call(
            "crm_apply",
            &[keys::projection_paused(NAME)],
            &mode.header(),
            plans,
            more_keys,
        )
    }
}

impl Replayable for Crm {
    fn event_streams(&self) -> Vec<Stream> {
        KINDS.into_iter().flat_map(Stream::of_kind).collect()
    }

    /// The view only: the mailer's state (`crm:mail:*`, the outbox) is not the CRM's.
    fn state_patterns(&self) -> Vec<String> {
        let mut patterns = vec![
            keys::prefix_pattern(&keys::crm_customer_prefix()),
            keys::prefix_pattern(&keys::crm_customer_products_prefix()),
            keys::prefix_pattern(&keys::crm_order_prefix()),
            keys::crm_billing_orders(),
            keys::crm_last_order_ranks(),
        ];
        patterns.extend(CrmSegment::ALL.iter().map(|s| s.key()));
        patterns.extend(KINDS.iter().map(|k| keys::applied_versions(NAME, *k)));
        patterns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use ordershop_domain::{
        Billing, BillingId, Change, Customer, CustomerId, Email, Money, Name, OrderId, ProductId,
    };

    fn event(entity: Entity, action: Action, version: u64) -> StoredEvent {
        StoredEvent {
            stream: Stream::new(entity.kind(), action),
            id: EntryId::new(1_700_000_000_123, 4),
            event_id: Uuid::from_u128(7),
            version,
            change: Change { entity, action },
            request_id: None,
        }
    }

    fn ada() -> CustomerId {
        CustomerId(Uuid::from_u128(1))
    }

    fn order(units: &[u128], total: u64) -> Order {
        Order {
            id: OrderId(Uuid::from_u128(2)),
            product_ids: units
                .iter()
                .map(|u| ProductId(Uuid::from_u128(*u)))
                .collect(),
            customer_id: ada(),
            total: Money::from_minor(total).unwrap(),
        }
    }

    fn counters(deltas: &[Delta]) -> BTreeMap<(String, String), i64> {
        deltas
            .iter()
            .map(|d| ((d.key.clone(), d.field.clone()), d.n))
            .collect()
    }

    #[test]
    fn given_a_live_order_then_it_counts_its_units_per_product_and_is_unbilled_until_billed() {
        let c = contribution(&order(&[3, 3, 4], 750), true);
        let customer = keys::crm_customer(ada().0);
        let products = keys::crm_customer_products(ada().0);
        let expected = BTreeMap::from([
            ((customer.clone(), "orders".to_owned()), 1),
            ((customer.clone(), "amount_ordered".to_owned()), 750),
            ((customer.clone(), "units".to_owned()), 3),
            ((products.clone(), Uuid::from_u128(3).to_string()), 2),
            ((products, Uuid::from_u128(4).to_string()), 1),
        ]);
        assert_eq!(counters(&c.always), expected);
        assert_eq!(
            c.unlinked,
            [Delta {
                key: customer.clone(),
                field: "unbilled_orders".into(),
                n: 1,
                follow: Some((CrmSegment::Unbilled.key(), ada().0.to_string())),
            }]
        );
        assert_eq!(
            counters(&c.linked),
            BTreeMap::from([((customer, "amount_billed".to_owned()), 750)])
        );
    }

    #[test]
    fn given_a_deleted_order_then_only_a_billing_of_it_still_counts() {
        let c = contribution(&order(&[3], 250), false);
        assert!(c.always.is_empty());
        assert!(c.unlinked.is_empty());
        assert_eq!(c.linked.len(), 1);
        assert_eq!(c.linked[0].field, "amount_billed");
    }

    #[test]
    fn given_a_customer_event_then_its_profile_and_segments_are_set_iff_newer() {
        let customer = Customer {
            id: ada(),
            name: Name::parse("name", "Ada").unwrap(),
            email: Email::parse("ada@example.com").unwrap(),
        };
        let plan = plan(&event(Entity::Customer(customer), Action::Deleted, 3));
        assert_eq!(plan.guard.v, 3);
        assert_eq!(
            plan.guard.key,
            keys::applied_versions(NAME, EntityKind::Customer)
        );
        assert!(plan.always.is_empty());
        let Upsert::Hset { fields, .. } = &plan.ops[0] else {
            panic!("{:?}", plan.ops)
        };
        assert_eq!(fields["status"], "deleted");
        let member = ada().0.to_string();
        assert_eq!(
            plan.ops[1..],
            [
                Upsert::Sadd {
                    key: CrmSegment::All.key(),
                    member: member.clone()
                },
                Upsert::Srem {
                    key: CrmSegment::Active.key(),
                    member: member.clone()
                },
                Upsert::Sadd {
                    key: CrmSegment::Deleted.key(),
                    member
                },
            ]
        );
    }

    #[test]
    fn given_a_created_order_then_the_last_order_is_a_maximum_by_entry_id_whatever_the_version() {
        let created = plan(&event(Entity::Order(order(&[3], 250)), Action::Created, 1));
        let [Upsert::Max { rank, fields, .. }] = &created.always[..] else {
            panic!("{:?}", created.always)
        };
        assert_eq!(fields["last_order_entry"], "1700000000123-4");
        assert_eq!(fields["last_order_at"], "1700000000123");
        assert!(rank.as_str() > super::rank(EntryId::new(1_700_000_000_123, 3)).as_str());
        assert!(rank.as_str() < super::rank(EntryId::new(1_700_000_000_124, 0)).as_str());
        assert!(rank.as_str() > super::rank(EntryId::new(999, u64::MAX)).as_str());
        let updated = plan(&event(Entity::Order(order(&[3], 250)), Action::Updated, 2));
        assert!(updated.always.is_empty());
    }

    #[test]
    fn given_a_billing_then_it_links_to_its_order_until_deleted() {
        let billing = Billing {
            id: BillingId(Uuid::from_u128(5)),
            order_id: OrderId(Uuid::from_u128(2)),
            done: false,
        };
        let linked = plan(&event(Entity::Billing(billing.clone()), Action::Created, 1));
        assert!(matches!(
            &linked.ops[..],
            [Upsert::Link { to: Some(o), .. }] if *o == Uuid::from_u128(2)
        ));
        let unlinked = plan(&event(Entity::Billing(billing), Action::Deleted, 2));
        assert!(matches!(&unlinked.ops[..], [Upsert::Link { to: None, .. }]));
    }

    #[test]
    fn a_delta_is_the_json_list_the_function_reads() {
        let c = contribution(&order(&[3], 250), true);
        let op = Upsert::Count {
            record: keys::crm_order(Uuid::from_u128(2)),
            always: c.always,
            linked: c.linked,
            unlinked: c.unlinked,
        };
        let op = serde_json::to_value(op).unwrap();
        let parse = |field: &str| -> serde_json::Value {
            serde_json::from_str(op[field].as_str().expect("JSON text")).unwrap()
        };
        let unlinked = parse("unlinked");
        assert_eq!(unlinked[0][1], "unbilled_orders");
        assert_eq!(unlinked[0][2], 1);
        assert_eq!(unlinked[0][3], CrmSegment::Unbilled.key());
        assert_eq!(parse("linked")[0].as_array().map(Vec::len), Some(3));
    }

    #[test]
    fn the_library_is_named_as_the_key_scheme_says() {
        assert!(LIBRARY.starts_with(&format!("#!lua name={}\n", keys::CRM_LIBRARY)));
    }
}
