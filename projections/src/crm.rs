//! The CRM (the crm-service role): the customer-relationship view, and the customer messages of
//! the original sample handed to the message service through an outbox.
//!
//! The view (per customer: profile, status, live orders, units and products bought, amounts
//! ordered and billed in minor units, unbilled orders, last order, messages sent; segment Sets)
//! is a pure function of the log, so it converges whatever order its consumers see events in and
//! can be rebuilt. The messages (welcome, goodbye, order confirmation, payment request, receipt)
//! are side effects: the same Function call that updates the view writes each message to the
//! outbox at most once, keyed by a deterministic message id, and a rebuild never writes any.
//! `lua/crm.lua` holds the rules; docs/projections.md lists the keys.

use crate::error::ProjectionError;
use crate::projection::{Entry, Mode, Projection, Replayable};
use crate::read::{pairs, text};
use ordershop_domain::{Entity, EntityKind};
use ordershop_eventstore::RedisConnection;
use ordershop_eventstore::{StoredEvent, Stream};
use ordershop_readmodel::keys::{self, CrmSegment};
use redis::Value;
use std::collections::BTreeMap;
use uuid::Uuid;

const NAME: &str = ordershop_readmodel::names::CRM;
const LIBRARY: &str = concat!(
    "#!lua name=ordershop_crm\n",
    include_str!("lua/lease.lua"),
    include_str!("lua/crm.lua")
);

/// The kinds whose events the CRM reads.
pub const KINDS: [EntityKind; 4] = [
    EntityKind::Customer,
    EntityKind::Product,
    EntityKind::Order,
    EntityKind::Billing,
];

/// The kinds of message the CRM writes to the outbox (`direct` ones come from `POST /email`).
pub const MESSAGE_KINDS: [&str; 5] = [
    "welcome",
    "goodbye",
    "order_confirmation",
    "payment_request",
    "receipt",
];

/// The CRM projection.
#[derive(Debug, Clone, Copy, Default)]
pub struct Crm;

/// The event's kind-specific values, as `lua/crm.lua` reads them (a, b, c).
fn kind_values(entity: &Entity) -> [String; 3] {
    match entity {
        Entity::Customer(c) => [c.name.to_string(), c.email.to_string(), String::new()],
        Entity::Product(p) => [p.name.to_string(), String::new(), String::new()],
        Entity::Order(o) => [
            o.customer_id.to_string(),
            o.total.minor().to_string(),
            o.product_ids
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" "),
        ],
        Entity::Billing(b) => [b.order_id.to_string(), String::new(), String::new()],
        Entity::Inventory(_) => [String::new(), String::new(), String::new()],
    }
}

impl Projection for Crm {
    type Event = StoredEvent;

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

    fn decode(&self, entry: &Entry) -> Result<StoredEvent, String> {
        let event = entry.decode_event()?;
        if !KINDS.contains(&event.kind()) {
            return Err(format!("the CRM does not read {} events", event.kind()));
        }
        Ok(event)
    }

    fn apply_call(&self, mode: Mode<'_>, events: &[&StoredEvent]) -> redis::Cmd {
        let mut keys_table = vec![
            keys::projection_paused(NAME),
            keys::crm_sent_ids(),
            keys::outbox(),
        ];
        keys_table.extend(CrmSegment::ALL.iter().map(|s| s.key()));
        keys_table.extend(KINDS.iter().map(|k| keys::applied_versions(NAME, *k)));
        keys_table.push(keys::crm_product_names());
        keys_table.push(keys::crm_billing_orders());

        let mut args: Vec<String> = Vec::with_capacity(8 + events.len() * 10);
        args.extend(mode.header());
        args.extend(
            [
                keys::CRM_CUSTOMER_PREFIX,
                keys::CRM_CUSTOMER_PRODUCTS_PREFIX,
                keys::CRM_ORDER_PREFIX,
                keys::CRM_WAITING_CUSTOMER_PREFIX,
                keys::CRM_WAITING_ORDER_PREFIX,
            ]
            .map(str::to_owned),
        );
        for event in events {
            let entity = &event.change.entity;
            args.push(entity.kind().as_str().to_owned());
            args.push(event.change.action.as_str().to_owned());
            args.push(event.id.to_string());
            args.push(event.event_id.to_string());
            args.push(event.version.to_string());
            args.push(entity.id().to_string());
            args.extend(kind_values(entity));
            args.push(event.request_id.clone().unwrap_or_default());
        }
        let mut cmd = redis::cmd("FCALL");
        cmd.arg("crm_apply")
            .arg(keys_table.len())
            .arg(keys_table)
            .arg(args);
        cmd
    }
}

/// Outbox entries read per round trip when recounting messages.
const OUTBOX_CHUNK: usize = 1_000;

impl Replayable for Crm {
    fn event_streams(&self) -> Vec<Stream> {
        KINDS.into_iter().flat_map(Stream::of_kind).collect()
    }

    /// The view only: the outbox and the mailer's bookkeeping (`crm:mail:*`) are not wiped, so
    /// that a rebuild never writes a message again.
    fn state_patterns(&self) -> Vec<String> {
        let mut patterns = vec![
            keys::prefix_pattern(keys::CRM_CUSTOMER_PREFIX),
            keys::prefix_pattern(keys::CRM_CUSTOMER_PRODUCTS_PREFIX),
            keys::prefix_pattern(keys::CRM_ORDER_PREFIX),
            keys::crm_billing_orders(),
            keys::crm_product_names(),
        ];
        patterns.extend(CrmSegment::ALL.iter().map(|s| s.key()));
        patterns.extend(KINDS.iter().map(|k| keys::applied_versions(NAME, *k)));
        patterns
    }

    /// `messages_sent` counts what the mailer wrote to the outbox, which a replay does not
    /// re-do: recount it from the outbox itself (the CRM's messages carry `customer_id`).
    async fn after_replay(&self, conn: &mut RedisConnection) -> Result<(), ProjectionError> {
        let mut sent: BTreeMap<Uuid, u64> = BTreeMap::new();
        let mut start = "-".to_owned();
        loop {
            let reply: Value = redis::cmd("XRANGE")
                .arg(keys::outbox())
                .arg(&start)
                .arg("+")
                .arg("COUNT")
                .arg(OUTBOX_CHUNK)
                .query_async(conn)
                .await?;
            let Value::Array(entries) = reply else {
                return Err(ProjectionError::protocol(
                    "XRANGE outbox",
                    format!("{reply:?}"),
                ));
            };
            let count = entries.len();
            for entry in &entries {
                let Value::Array(parts) = entry else { continue };
                let (Some(id), Some(fields)) = (parts.first().and_then(text), parts.get(1)) else {
                    continue;
                };
                start = format!("({id}");
                let fields: BTreeMap<String, String> = pairs(fields)
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|(k, v)| Some((text(k)?, text(v)?)))
                    .collect();
                let from_crm = fields
                    .get("kind")
                    .is_some_and(|k| MESSAGE_KINDS.contains(&k.as_str()));
                let customer = fields
                    .get("customer_id")
                    .and_then(|c| Uuid::parse_str(c).ok());
                if let (true, Some(customer)) = (from_crm, customer) {
                    *sent.entry(customer).or_default() += 1;
                }
            }
            if count < OUTBOX_CHUNK {
                break;
            }
        }
        for chunk in sent.into_iter().collect::<Vec<_>>().chunks(500) {
            let mut pipe = redis::pipe();
            for (customer, count) in chunk {
                pipe.cmd("HSET")
                    .arg(keys::crm_customer(*customer))
                    .arg("messages_sent")
                    .arg(*count)
                    .ignore();
            }
            pipe.query_async::<()>(conn).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_library_is_named_as_the_key_scheme_says() {
        assert!(LIBRARY.starts_with(&format!("#!lua name={}\n", keys::CRM_LIBRARY)));
    }
}
