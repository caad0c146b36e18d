//! The message service's delivery (the msg-service role): its own consumer group on the outbox
//! delivers each message exactly once, whoever wrote it (the CRM's mailer, or `POST /email` with kind
//! `direct`) and however often it is delivered to the group, by deduplicating on the message id
//! in the same atomic step that records the delivery (`lua/msg.lua`).
//!
//! "Delivering" here means appending to the mail sink that `GET /emails` lists; a real mail
//! gateway would sit behind the same dedupe.

use crate::message_text::CustomerMessage;
use crate::projection::{Entry, Mode, Projection};
use ordershop_readmodel::{keys, names};
use ordershop_telemetry::Metrics;

const NAME: &str = names::MSG_SERVICE;
const LIBRARY: &str = concat!(
    "#!lua name=ordershop_msg\n",
    include_str!("lua/lease.lua"),
    include_str!("lua/msg.lua")
);

/// An outbox entry: `msg_id`, `to` (required), `kind` (`direct` when absent), the text — `msg`
/// for a direct message, else rendered from the mailer's facts ([`crate::message_text`]) — and the
/// `event_id` and `request_id` that caused it, if known (copied to the delivered message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxMessage {
    pub msg_id: String,
    pub to: String,
    pub msg: String,
    pub kind: String,
    pub event_id: String,
    pub request_id: String,
}

/// The message-delivery projection: a sink, so it has no rebuild.
#[derive(Debug, Clone, Copy, Default)]
pub struct MsgDelivery;

impl Projection for MsgDelivery {
    type Event = OutboxMessage;

    fn name(&self) -> &'static str {
        NAME
    }

    fn streams(&self) -> Vec<String> {
        vec![keys::outbox()]
    }

    fn library(&self) -> &'static str {
        LIBRARY
    }

    fn library_name(&self) -> &'static str {
        keys::MSG_LIBRARY
    }

    fn decode(&self, entry: &Entry) -> Result<OutboxMessage, String> {
        let required = |name: &str| {
            entry
                .text(name)
                .filter(|v| !v.trim().is_empty())
                .map(str::to_owned)
                .ok_or_else(|| format!("outbox entry has no `{name}`"))
        };
        let kind = entry
            .text("kind")
            .filter(|k| !k.is_empty())
            .unwrap_or("direct")
            .to_owned();
        let msg = match entry.text("msg").filter(|m| !m.trim().is_empty()) {
            Some(text) => text.to_owned(),
            None if kind == "direct" => return Err("outbox entry has no `msg`".into()),
            None => CustomerMessage::from_facts(&kind, |name| entry.text(name))?.text(),
        };
        Ok(OutboxMessage {
            msg_id: required("msg_id")?,
            to: required("to")?,
            msg,
            kind,
            event_id: entry.text("event_id").unwrap_or_default().to_owned(),
            request_id: entry.text("request_id").unwrap_or_default().to_owned(),
        })
    }

    fn apply_call(
        &self,
        mode: Mode<'_>,
        messages: &[&OutboxMessage],
        _more_keys: &[String],
    ) -> redis::Cmd {
        let mut cmd = redis::cmd("FCALL");
        cmd.arg("msg_deliver")
            .arg(3)
            .arg(keys::projection_paused(NAME))
            .arg(keys::delivered_ids())
            .arg(keys::delivered())
            .arg(&mode.header()[..]);
        for m in messages {
            cmd.arg(&m.msg_id)
                .arg(&m.to)
                .arg(&m.msg)
                .arg(&m.kind)
                .arg(&m.event_id)
                .arg(&m.request_id);
        }
        cmd
    }

    /// Each message applied is one delivered: the count the operator watches.
    fn record_applied(&self, metrics: &Metrics, applied: u64) {
        metrics.events_applied(NAME, applied);
        metrics.messages_delivered(applied);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ordershop_eventstore::EntryId;
    use redis::Value;

    fn entry(fields: &[(&str, &str)]) -> Entry {
        Entry {
            stream: keys::outbox(),
            id: EntryId::new(1, 0),
            fields: fields
                .iter()
                .map(|(k, v)| ((*k).to_owned(), Value::BulkString(v.as_bytes().to_vec())))
                .collect(),
        }
    }

    #[test]
    fn a_message_needs_an_id_an_address_and_a_text() {
        let ok = MsgDelivery
            .decode(&entry(&[("msg_id", "m1"), ("to", "a@b.co"), ("msg", "hi")]))
            .unwrap();
        assert_eq!(ok.kind, "direct");
        let err = MsgDelivery
            .decode(&entry(&[("to", "a@b.co"), ("msg", "hi")]))
            .unwrap_err();
        assert!(err.contains("msg_id"), "{err}");
    }

    #[test]
    fn a_crm_message_is_rendered_from_its_facts() {
        let receipt = MsgDelivery
            .decode(&entry(&[
                ("msg_id", "e1:receipt"),
                ("to", "ada@example.com"),
                ("kind", "receipt"),
                ("name", "Ada"),
                ("order_id", "o1"),
                ("total", "1250"),
            ]))
            .unwrap();
        assert_eq!(
            receipt.msg,
            "Hello Ada, we received your payment of 12.50 for order o1. Thank you!"
        );
        let err = MsgDelivery
            .decode(&entry(&[
                ("msg_id", "m"),
                ("to", "a@b.co"),
                ("kind", "receipt"),
            ]))
            .unwrap_err();
        assert!(err.contains("`name`"), "{err}");
    }

    #[test]
    fn the_library_is_named_as_the_key_scheme_says() {
        assert!(LIBRARY.starts_with(&format!("#!lua name={}\n", keys::MSG_LIBRARY)));
    }
}
