//! A private Redis Cluster for tests: N primaries (no replicas) on loopback, each a
//! [`RedisServer`] with `--cluster-enabled yes`, the 16,384 slots split evenly between them and
//! joined with `CLUSTER MEET` (what `redis-cli --cluster create` does, without needing the CLI,
//! so it works the same for Valkey). Also moves a slot between primaries, as a reshard does.

use crate::replicated::{query, try_query};
use crate::{free_ports, wait_until, RedisOptions, RedisServer};
use std::time::Duration;

/// The number of hash slots of a cluster.
pub const SLOTS: u16 = 16_384;

/// How long the cluster may take to agree on its layout.
const SETTLE: Duration = Duration::from_secs(30);

pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts `primaries` nodes and forms a cluster of them; returns once every node says
    /// `cluster_state:ok` and knows every other.
    pub fn start(primaries: usize) -> RedisCluster {
        Self::start_with_empty(primaries, 0)
    }

    /// [`RedisCluster::start`], plus `empty` primaries that serve no slot yet (the nodes after
    /// the first `primaries`): a node a reshard can move a slot to, that clients have not met.
    pub fn start_with_empty(primaries: usize, empty: usize) -> RedisCluster {
        let bus_ports = free_ports(primaries + empty);
        let nodes: Vec<RedisServer> = bus_ports
            .iter()
            .map(|bus| {
                RedisServer::start_with(RedisOptions {
                    extra: vec![
                        "--cluster-enabled".into(),
                        "yes".into(),
                        "--cluster-port".into(),
                        bus.to_string(),
                        "--cluster-node-timeout".into(),
                        "5000".into(),
                    ],
                    ..RedisOptions::default()
                })
            })
            .collect();
        let cluster = RedisCluster { nodes };
        // Distinct config epochs before the nodes meet, as `redis-cli --cluster create` sets
        // them: otherwise all start at 0 and settle their collisions by gossip for a while, and
        // a slot moved meanwhile can be claimed back by its old owner with an equal epoch.
        for (i, node) in cluster.nodes.iter().enumerate() {
            let epoch = (i + 1).to_string();
            query(
                node.port(),
                &["CLUSTER", "SET-CONFIG-EPOCH", epoch.as_str()],
            )
            .unwrap_or_else(|| panic!("CLUSTER SET-CONFIG-EPOCH on {}", node.port()));
        }
        let per_node = SLOTS / primaries as u16;
        for (i, node) in cluster.nodes.iter().take(primaries).enumerate() {
            let first = per_node * i as u16;
            let last = if i + 1 == primaries {
                SLOTS - 1
            } else {
                first + per_node - 1
            };
            let (first, last) = (first.to_string(), last.to_string());
            query(
                node.port(),
                &["CLUSTER", "ADDSLOTSRANGE", first.as_str(), last.as_str()],
            )
            .unwrap_or_else(|| panic!("CLUSTER ADDSLOTSRANGE on {}", node.port()));
        }
        let first = cluster.nodes[0].port();
        // The bus port is not the default (port + 10000): MEET is told it.
        for (node, bus) in cluster.nodes.iter().zip(&bus_ports).skip(1) {
            let (port, bus) = (node.port().to_string(), bus.to_string());
            query(
                first,
                &["CLUSTER", "MEET", "127.0.0.1", port.as_str(), bus.as_str()],
            )
            .unwrap_or_else(|| panic!("CLUSTER MEET {port} {bus}"));
        }
        wait_until("the cluster to form", SETTLE, || cluster.settled());
        cluster
    }

    /// Every node says the cluster is fine and lists every node.
    fn settled(&self) -> bool {
        self.nodes.iter().all(|node| {
            let info: Option<String> = query(node.port(), &["CLUSTER", "INFO"])
                .and_then(|v| redis::from_redis_value(v).ok());
            info.is_some_and(|i| {
                i.contains("cluster_state:ok")
                    && i.contains(&format!("cluster_known_nodes:{}", self.nodes.len()))
            })
        })
    }

    /// `redis+cluster://` with every node as a seed.
    pub fn url(&self) -> String {
        let nodes: Vec<String> = self
            .nodes
            .iter()
            .map(|node| format!("127.0.0.1:{}", node.port()))
            .collect();
        format!("redis+cluster://{}", nodes.join(","))
    }

    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// The slot of a key (as the server computes it).
    pub fn slot_of(&self, key: &str) -> u16 {
        query(self.nodes[0].port(), &["CLUSTER", "KEYSLOT", key])
            .and_then(|v| redis::from_redis_value::<u16>(v).ok())
            .unwrap_or_else(|| panic!("CLUSTER KEYSLOT {key}"))
    }

    /// The index of the node that serves `slot` (as the first node sees the cluster).
    pub fn owner_of(&self, slot: u16) -> usize {
        let owner = self.node_id_of_slot(self.nodes[0].port(), slot);
        self.nodes
            .iter()
            .position(|node| self.node_id(node.port()) == owner)
            .unwrap_or_else(|| panic!("no node serves slot {slot}"))
    }

    fn node_id(&self, port: u16) -> String {
        query(port, &["CLUSTER", "MYID"])
            .and_then(|v| redis::from_redis_value(v).ok())
            .unwrap_or_else(|| panic!("CLUSTER MYID on {port}"))
    }

    /// Which node id `port` says owns `slot` (its CLUSTER SLOTS).
    fn node_id_of_slot(&self, port: u16, slot: u16) -> String {
        let slots = query(port, &["CLUSTER", "SLOTS"]).unwrap_or(redis::Value::Nil);
        let redis::Value::Array(ranges) = slots else {
            return String::new();
        };
        for range in ranges {
            let redis::Value::Array(parts) = range else {
                continue;
            };
            let bound = |i: usize| match parts.get(i) {
                Some(redis::Value::Int(n)) => *n as u16,
                _ => 0,
            };
            if (bound(0)..=bound(1)).contains(&slot) {
                if let Some(redis::Value::Array(primary)) = parts.get(2) {
                    if let Some(id) = primary
                        .get(2)
                        .and_then(|v| redis::from_redis_value::<String>(v.clone()).ok())
                    {
                        return id;
                    }
                }
            }
        }
        String::new()
    }

    /// Moves `slot` from node `from` to node `to` with its keys, as `redis-cli --cluster
    /// reshard` does by default: IMPORTING on the target, MIGRATING on the source, MIGRATE the
    /// keys in batches of 10, then the new owner announced to every node.
    pub fn move_slot(&self, slot: u16, from: usize, to: usize) {
        self.move_slot_in_batches(slot, from, to, 10);
    }

    /// [`move_slot`](Self::move_slot) with `batch` keys per MIGRATE (`redis-cli --cluster
    /// reshard --cluster-pipeline <batch>`); the new owner is told first, then the old one,
    /// then the others, as redis-cli does.
    pub fn move_slot_in_batches(&self, slot: u16, from: usize, to: usize, batch: usize) {
        let (source, target) = (self.nodes[from].port(), self.nodes[to].port());
        let (source_id, target_id) = (self.node_id(source), self.node_id(target));
        let s = slot.to_string();
        let must = |port: u16, args: &[&str]| {
            try_query(port, args).unwrap_or_else(|e| panic!("{args:?} on {port}: {e}"));
        };
        must(
            target,
            &["CLUSTER", "SETSLOT", &s, "IMPORTING", source_id.as_str()],
        );
        must(
            source,
            &["CLUSTER", "SETSLOT", &s, "MIGRATING", target_id.as_str()],
        );
        let target_port = target.to_string();
        loop {
            let keys: Vec<String> = query(
                source,
                &["CLUSTER", "GETKEYSINSLOT", &s, &batch.to_string()],
            )
            .and_then(|v| redis::from_redis_value(v).ok())
            .unwrap_or_default();
            if keys.is_empty() {
                break;
            }
            let mut args = vec![
                "MIGRATE",
                "127.0.0.1",
                target_port.as_str(),
                "",
                "0",
                "60000",
                "KEYS",
            ];
            args.extend(keys.iter().map(String::as_str));
            must(source, &args);
        }
        let mut order: Vec<u16> = vec![target, source];
        order.extend(
            self.nodes
                .iter()
                .map(RedisServer::port)
                .filter(|p| *p != target && *p != source),
        );
        for port in order {
            must(
                port,
                &["CLUSTER", "SETSLOT", &s, "NODE", target_id.as_str()],
            );
        }
        wait_until("every node to agree on the slot's owner", SETTLE, || {
            self.nodes
                .iter()
                .all(|node| self.node_id_of_slot(node.port(), slot) == target_id)
        });
    }

    /// Every key on every node (SCAN), with the node's index.
    pub fn all_keys(&self) -> Vec<(usize, String)> {
        let mut all = Vec::new();
        for (i, node) in self.nodes.iter().enumerate() {
            let mut cursor = "0".to_owned();
            loop {
                let reply = query(node.port(), &["SCAN", &cursor, "COUNT", "1000"])
                    .unwrap_or_else(|| panic!("SCAN on {}", node.port()));
                let (next, keys): (String, Vec<String>) =
                    redis::from_redis_value(reply).unwrap_or_default();
                all.extend(keys.into_iter().map(|k| (i, k)));
                if next == "0" {
                    break;
                }
                cursor = next;
            }
        }
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_forms_and_a_slot_moves_with_its_keys() {
        let cluster = RedisCluster::start(3);
        let slot = cluster.slot_of("{acme}:x");
        let home = cluster.owner_of(slot);
        let port = cluster.nodes()[home].port();
        query(port, &["SET", "{acme}:x", "1"]).expect("SET on the slot's owner");
        let target = (home + 1) % 3;
        cluster.move_slot(slot, home, target);
        assert_eq!(cluster.owner_of(slot), target);
        let moved = query(cluster.nodes()[target].port(), &["GET", "{acme}:x"])
            .and_then(|v| redis::from_redis_value::<String>(v).ok());
        assert_eq!(moved.as_deref(), Some("1"));
        assert_eq!(cluster.all_keys(), [(target, "{acme}:x".to_owned())]);
    }
}
