//! The CRM view as readers see it: per customer a Hash `crm:customer:<id>` (written by the CRM's
//! Function, projections/src/lua/crm.lua, with the field names below), the segment Sets, and the
//! number of messages the CRM's mailer wrote to each customer (`crm:mail:sent_per_customer`).
//! [`CrmReader`] turns them into typed values, so no reader spells a field name.

use crate::cache_reader::ReadError;
use crate::keys::{self, CrmSegment};
use ordershop_redis::RedisConnection;
use std::collections::{BTreeMap, HashMap};
use uuid::Uuid;

/// The fields of `crm:customer:<id>` readers use.
pub mod field {
    pub const NAME: &str = "name";
    pub const EMAIL: &str = "email";
    /// `active` or `deleted`.
    pub const STATUS: &str = "status";
    /// Live orders.
    pub const ORDERS: &str = "orders";
    /// Minor units.
    pub const AMOUNT_ORDERED: &str = "amount_ordered";
    /// Minor units.
    pub const AMOUNT_BILLED: &str = "amount_billed";
}

/// One customer as the CRM sees it. Amounts are minor units.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrmCustomer {
    pub id: Uuid,
    pub name: String,
    pub email: String,
    pub status: String,
    pub orders: u64,
    pub amount_ordered: u64,
    pub amount_billed: u64,
    /// Messages the mailer wrote to the outbox for this customer.
    pub messages_sent: u64,
}

impl CrmCustomer {
    pub fn is_active(&self) -> bool {
        self.status == "active"
    }

    fn from_fields(id: Uuid, fields: &HashMap<String, String>, messages_sent: u64) -> Self {
        let text = |name: &str| fields.get(name).cloned().unwrap_or_default();
        let number = |name: &str| fields.get(name).and_then(|v| v.parse().ok()).unwrap_or(0);
        Self {
            id,
            name: text(field::NAME),
            email: text(field::EMAIL),
            status: text(field::STATUS),
            orders: number(field::ORDERS),
            amount_ordered: number(field::AMOUNT_ORDERED),
            amount_billed: number(field::AMOUNT_BILLED),
            messages_sent,
        }
    }
}

/// Reads the CRM view.
#[derive(Clone)]
pub struct CrmReader {
    conn: RedisConnection,
}

impl CrmReader {
    pub fn new(conn: RedisConnection) -> Self {
        Self { conn }
    }

    /// Every customer the CRM has a profile of (deleted ones too), sorted by id; three round trips.
    pub async fn customers(&self) -> Result<Vec<CrmCustomer>, ReadError> {
        let members: Vec<String> = redis::cmd("SMEMBERS")
            .arg(CrmSegment::All.key())
            .query_async(&mut self.conn.clone())
            .await?;
        let mut ids: Vec<Uuid> = members
            .iter()
            .map(|m| {
                m.parse().map_err(|e| {
                    ReadError::Reply(format!(
                        "{}: `{m}` is not an id: {e}",
                        CrmSegment::All.key()
                    ))
                })
            })
            .collect::<Result<_, _>>()?;
        ids.sort();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.cmd("HGETALL").arg(keys::crm_customer(*id));
        }
        let hashes: Vec<HashMap<String, String>> = pipe.query_async(&mut self.conn.clone()).await?;
        let sent: Vec<Option<u64>> = redis::cmd("HMGET")
            .arg(keys::crm_messages_sent())
            .arg(ids.iter().map(ToString::to_string).collect::<Vec<_>>())
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(ids
            .iter()
            .zip(&hashes)
            .zip(sent)
            .map(|((id, fields), sent)| CrmCustomer::from_fields(*id, fields, sent.unwrap_or(0)))
            .collect())
    }

    /// How many customers each segment holds, in one round trip.
    pub async fn segment_sizes(&self) -> Result<BTreeMap<CrmSegment, u64>, ReadError> {
        let mut pipe = redis::pipe();
        for segment in CrmSegment::ALL {
            pipe.cmd("SCARD").arg(segment.key());
        }
        let sizes: Vec<u64> = pipe.query_async(&mut self.conn.clone()).await?;
        Ok(CrmSegment::ALL.into_iter().zip(sizes).collect())
    }
}
