//! The message service's application layer: `POST /email` hands a message to the outbox (the
//! same stream the CRM writes its customer messages to, delivered once each by the delivery
//! consumer), and `GET /emails` lists what was delivered, in delivery order.

use ordershop_domain::{DomainError, Email};
use ordershop_readmodel::keys;
use ordershop_redis::RedisConnection;
use redis::streams::StreamRangeReply;
use serde::Serialize;
use uuid::Uuid;

/// The `kind` of a message sent through `POST /email` (the CRM's are e.g. `welcome`).
pub const KIND_DIRECT: &str = "direct";
/// Longest message accepted, in characters.
pub const MAX_MESSAGE_CHARS: usize = 10_000;
/// Delivered messages read per round trip.
const PAGE: usize = 1_000;

/// A non-empty message text without control characters but line breaks and tabs (the rule
/// names follow, so no NUL or terminal escape reaches a reader through a message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageText(String);

impl MessageText {
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        if raw.trim().is_empty() {
            return Err(DomainError::invalid("msg", "must not be empty"));
        }
        if raw.chars().count() > MAX_MESSAGE_CHARS {
            return Err(DomainError::invalid(
                "msg",
                format!("must be at most {MAX_MESSAGE_CHARS} characters"),
            ));
        }
        if raw
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\t')
        {
            return Err(DomainError::invalid(
                "msg",
                "must not contain control characters (line breaks and tabs are fine)",
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A validated message to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingMessage {
    pub to: Email,
    pub msg: MessageText,
}

/// A delivered message, as `GET /emails` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeliveredMessage {
    pub msg_id: Option<String>,
    pub to: Option<String>,
    pub msg: Option<String>,
    pub kind: Option<String>,
    pub delivered_at: Option<String>,
}

/// Sends and lists messages.
#[derive(Clone)]
pub struct MessageService {
    conn: RedisConnection,
}

impl MessageService {
    pub fn new(conn: RedisConnection) -> Self {
        Self { conn }
    }

    /// Appends the message to the outbox; returns its id.
    pub async fn send(&self, message: &OutgoingMessage) -> Result<Uuid, redis::RedisError> {
        let msg_id = Uuid::new_v4();
        let _: String = redis::cmd("XADD")
            .arg(keys::outbox())
            .arg("*")
            .arg("msg_id")
            .arg(msg_id.to_string())
            .arg("to")
            .arg(message.to.as_str())
            .arg("msg")
            .arg(message.msg.as_str())
            .arg("kind")
            .arg(KIND_DIRECT)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(msg_id)
    }

    /// The delivered messages, oldest first; only those to `to` (case-insensitive) when given.
    pub async fn delivered(
        &self,
        to: Option<&str>,
    ) -> Result<Vec<DeliveredMessage>, redis::RedisError> {
        let to = to.map(str::trim);
        let mut messages = Vec::new();
        let mut start = "-".to_owned();
        loop {
            let page: StreamRangeReply = redis::cmd("XRANGE")
                .arg(keys::delivered())
                .arg(&start)
                .arg("+")
                .arg("COUNT")
                .arg(PAGE)
                .query_async(&mut self.conn.clone())
                .await?;
            let full = page.ids.len() == PAGE;
            for entry in &page.ids {
                let field = |name: &str| entry.get::<String>(name);
                let message = DeliveredMessage {
                    msg_id: field("msg_id"),
                    to: field("to"),
                    msg: field("msg"),
                    kind: field("kind"),
                    delivered_at: field("delivered_at"),
                };
                let wanted = match (to, &message.to) {
                    (None, _) => true,
                    (Some(want), Some(have)) => want.eq_ignore_ascii_case(have),
                    (Some(_), None) => false,
                };
                if wanted {
                    messages.push(message);
                }
            }
            match page.ids.last() {
                Some(last) if full => start = format!("({}", last.id),
                _ => return Ok(messages),
            }
        }
    }
}
