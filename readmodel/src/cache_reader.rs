//! Reads the entity cache the projector maintains (`<type>_ids` Sets, `<type>_entity:<id>`
//! Hashes, `order_product_ids:<id>` Lists and the `orders_unbilled`/`orders_billed` indexes):
//! what the gateway answers queries from, and what `ordershop report` shows.
//!
//! A list costs two round trips whatever its length: one for the ids, one pipeline for all the
//! entities. An id whose Hash is gone (deleted between the two) is skipped. Lists are sorted by
//! id, so answers are deterministic.

use crate::cache::{entity_from_fields, CacheDecodeError};
use crate::keys;
use ordershop_domain::{Entity, EntityKind};
use ordershop_redis::RedisConnection;
use redis::Value;
use std::collections::HashMap;
use uuid::Uuid;

/// Why a read model could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("read model unavailable")]
    Redis(#[from] redis::RedisError),
    #[error(transparent)]
    Corrupt(#[from] CacheDecodeError),
    #[error("unexpected reply from the read model: {0}")]
    Reply(String),
}

/// Every live entity of every type, each list sorted by id.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CacheReport {
    pub products: Vec<Entity>,
    pub inventory: Vec<Entity>,
    pub customers: Vec<Entity>,
    pub orders: Vec<Entity>,
    pub billings: Vec<Entity>,
}

/// Reads entities from the entity cache.
#[derive(Clone)]
pub struct CacheReader {
    conn: RedisConnection,
}

impl CacheReader {
    pub fn new(conn: RedisConnection) -> Self {
        Self { conn }
    }

    /// One entity, or `None` when the cache does not hold it (unknown or deleted).
    pub async fn get(&self, kind: EntityKind, id: Uuid) -> Result<Option<Entity>, ReadError> {
        Ok(self.load(&[(kind, id)]).await?.pop())
    }

    /// The entity and the version the cache holds it at (read in one round trip; the cache
    /// writes both in one atomic step), or `None` when unknown or deleted.
    pub async fn get_versioned(
        &self,
        kind: EntityKind,
        id: Uuid,
    ) -> Result<Option<(Entity, u64)>, ReadError> {
        let mut pipe = redis::pipe();
        pipe.cmd("HGETALL").arg(keys::entity(kind, id));
        pipe.cmd("LRANGE")
            .arg(keys::order_product_ids(id))
            .arg(0)
            .arg(-1);
        pipe.cmd("HGET")
            .arg(keys::applied_versions(crate::names::ENTITY_CACHE, kind))
            .arg(id.to_string());
        let (fields, product_ids, version): (HashMap<String, String>, Vec<String>, Option<u64>) =
            pipe.query_async(&mut self.conn.clone()).await?;
        if fields.is_empty() {
            return Ok(None);
        }
        let product_ids = if kind == EntityKind::Order {
            product_ids
        } else {
            Vec::new()
        };
        let entity = entity_from_fields(kind, &fields, &product_ids)?;
        Ok(Some((entity, version.unwrap_or(0))))
    }

    /// Every live entity of a type, sorted by id.
    pub async fn list(&self, kind: EntityKind) -> Result<Vec<Entity>, ReadError> {
        let ids: Vec<String> = redis::cmd("SMEMBERS")
            .arg(keys::entity_ids(kind))
            .query_async(&mut self.conn.clone())
            .await?;
        self.load(&with_kind(kind, &ids)?).await
    }

    /// Every live entity of a type as the JSON array the API serves, sorted by id: the cached
    /// documents (`entity-cache:documents:<type>`) joined, in one round trip and with nothing
    /// decoded. A cache that does not hold a document for every live entity (one built before
    /// the documents existed, or caught between two writes) is read entity by entity instead.
    pub async fn list_json(&self, kind: EntityKind) -> Result<String, ReadError> {
        let (live, documents): (u64, Vec<(String, String)>) = redis::pipe()
            .cmd("SCARD")
            .arg(keys::entity_ids(kind))
            .cmd("HGETALL")
            .arg(keys::entity_documents(kind))
            .query_async(&mut self.conn.clone())
            .await?;
        if documents.len() as u64 != live {
            return Ok(json_array(self.list(kind).await?.iter().map(document)));
        }
        Ok(sorted_documents(documents))
    }

    /// The orders that have no billing, as [`list_json`](Self::list_json) serves a list.
    pub async fn unbilled_orders_json(&self) -> Result<String, ReadError> {
        let ids: Vec<String> = redis::cmd("SMEMBERS")
            .arg(keys::orders_unbilled())
            .query_async(&mut self.conn.clone())
            .await?;
        if ids.is_empty() {
            return Ok("[]".to_owned());
        }
        let found: Vec<Option<String>> = redis::cmd("HMGET")
            .arg(keys::entity_documents(EntityKind::Order))
            .arg(&ids)
            .query_async(&mut self.conn.clone())
            .await?;
        let documents: Option<Vec<(String, String)>> = ids
            .into_iter()
            .zip(found)
            .map(|(id, doc)| doc.map(|doc| (id, doc)))
            .collect();
        match documents {
            Some(documents) => Ok(sorted_documents(documents)),
            None => Ok(json_array(
                self.unbilled_orders().await?.iter().map(document),
            )),
        }
    }

    /// The orders that have no billing, sorted by id.
    pub async fn unbilled_orders(&self) -> Result<Vec<Entity>, ReadError> {
        let ids: Vec<String> = redis::cmd("SMEMBERS")
            .arg(keys::orders_unbilled())
            .query_async(&mut self.conn.clone())
            .await?;
        self.load(&with_kind(EntityKind::Order, &ids)?).await
    }

    /// The ids of the orders that have a billing.
    pub async fn billed_order_ids(&self) -> Result<Vec<Uuid>, ReadError> {
        let ids: Vec<String> = redis::cmd("SMEMBERS")
            .arg(keys::orders_billed())
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(with_kind(EntityKind::Order, &ids)?
            .into_iter()
            .map(|(_, id)| id)
            .collect())
    }

    /// All five lists, in two round trips.
    pub async fn report(&self) -> Result<CacheReport, ReadError> {
        let mut pipe = redis::pipe();
        for kind in EntityKind::ALL {
            pipe.cmd("SMEMBERS").arg(keys::entity_ids(kind));
        }
        let id_sets: Vec<Vec<String>> = pipe.query_async(&mut self.conn.clone()).await?;
        let mut wanted = Vec::new();
        for (kind, ids) in EntityKind::ALL.into_iter().zip(&id_sets) {
            wanted.extend(with_kind(kind, ids)?);
        }
        let mut report = CacheReport::default();
        for entity in self.load(&wanted).await? {
            let list = match entity.kind() {
                EntityKind::Customer => &mut report.customers,
                EntityKind::Product => &mut report.products,
                EntityKind::Inventory => &mut report.inventory,
                EntityKind::Order => &mut report.orders,
                EntityKind::Billing => &mut report.billings,
            };
            list.push(entity);
        }
        Ok(report)
    }

    /// Loads these entities in one pipeline, skipping those the cache no longer holds; sorted
    /// by kind, then id.
    async fn load(&self, wanted: &[(EntityKind, Uuid)]) -> Result<Vec<Entity>, ReadError> {
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for &(kind, id) in wanted {
            pipe.cmd("HGETALL").arg(keys::entity(kind, id));
            if kind == EntityKind::Order {
                pipe.cmd("LRANGE")
                    .arg(keys::order_product_ids(id))
                    .arg(0)
                    .arg(-1);
            }
        }
        let replies: Vec<Value> = pipe.query_async(&mut self.conn.clone()).await?;
        let mut replies = replies.into_iter();
        let mut entities = Vec::with_capacity(wanted.len());
        for &(kind, _) in wanted {
            let fields: HashMap<String, String> = parse(replies.next())?;
            let product_ids: Vec<String> = if kind == EntityKind::Order {
                parse(replies.next())?
            } else {
                Vec::new()
            };
            if fields.is_empty() {
                continue;
            }
            entities.push(entity_from_fields(kind, &fields, &product_ids)?);
        }
        entities.sort_by_key(|e| (e.kind(), e.id()));
        Ok(entities)
    }
}

fn document(entity: &Entity) -> String {
    crate::cache::entity_document(entity)
}

fn json_array(documents: impl Iterator<Item = String>) -> String {
    let mut out = String::from("[");
    for (i, doc) in documents.enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&doc);
    }
    out.push(']');
    out
}

/// (id, document) pairs as a JSON array sorted by id (ids are lowercase hyphenated UUIDs, so
/// their text sorts as the ids do).
fn sorted_documents(mut documents: Vec<(String, String)>) -> String {
    documents.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    json_array(documents.into_iter().map(|(_, doc)| doc))
}

fn parse<T: redis::FromRedisValue>(reply: Option<Value>) -> Result<T, ReadError> {
    let reply = reply.ok_or_else(|| ReadError::Reply("too few replies".into()))?;
    redis::from_redis_value(reply).map_err(|e| ReadError::Reply(e.to_string()))
}

fn with_kind(kind: EntityKind, ids: &[String]) -> Result<Vec<(EntityKind, Uuid)>, ReadError> {
    ids.iter()
        .map(|id| {
            Uuid::parse_str(id).map(|id| (kind, id)).map_err(|e| {
                ReadError::Reply(format!(
                    "{}: `{id}` is not an id: {e}",
                    keys::entity_ids(kind)
                ))
            })
        })
        .collect()
}
