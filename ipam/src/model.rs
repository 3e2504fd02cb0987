//! The IPAM records as stored (JSON): pools, blocks with their allocation tables, affinities and
//! handles. Field names follow Kubernetes/Calico style (camelCase).

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// A pool's settings as stored, shared by every node that uses it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolRecord {
    pub cidr: Ipv4Net,
    pub block_size: u8,
    pub strict_affinity: bool,
    /// Blocks pinned to nodes (like a Kubernetes node's podCIDR).
    #[serde(default)]
    pub node_blocks: BTreeMap<String, Vec<Ipv4Net>>,
    /// Masquerade traffic from this pool to destinations outside every pool (Calico's
    /// `natOutgoing`); on unless turned off, as in Calico. Records from before it existed read
    /// as on.
    #[serde(default = "yes")]
    pub nat_outgoing: bool,
}

fn yes() -> bool {
    true
}

/// One address in use: by which handle, at which block sequence number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allocation {
    pub handle: String,
    pub seq: u64,
}

/// A block of a pool: its node and which ordinals are taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Block {
    pub cidr: Ipv4Net,
    pub pool: Ipv4Net,
    /// The node this block is affine to; `None` once released.
    pub affinity: Option<String>,
    /// Bumped at every allocation, so a stale release can't free an address given out again.
    pub seq: u64,
    /// Ordinal (offset from the block's first address) to its holder.
    #[serde(default)]
    pub allocations: BTreeMap<u32, Allocation>,
}

impl Block {
    pub fn new(cidr: Ipv4Net, pool: Ipv4Net, node: &str) -> Block {
        Block {
            cidr,
            pool,
            affinity: Some(node.to_string()),
            seq: 0,
            allocations: BTreeMap::new(),
        }
    }

    /// How many addresses the block holds.
    pub fn size(&self) -> u32 {
        1u32 << (32 - self.cidr.prefix_len())
    }

    /// The lowest free ordinal.
    pub fn first_free(&self) -> Option<u32> {
        let mut expect = 0;
        for &ord in self.allocations.keys() {
            if ord != expect {
                return Some(expect);
            }
            expect += 1;
        }
        (expect < self.size()).then_some(expect)
    }

    pub fn free(&self) -> u32 {
        self.size() - self.allocations.len() as u32
    }

    pub fn address(&self, ordinal: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.cidr.network()) + ordinal)
    }

    /// Takes `ordinal` for `handle`; returns the allocation's sequence number.
    pub fn take(&mut self, ordinal: u32, handle: &str) -> u64 {
        self.seq += 1;
        self.allocations.insert(
            ordinal,
            Allocation {
                handle: handle.to_string(),
                seq: self.seq,
            },
        );
        self.seq
    }
}

/// "This block belongs to this node."
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Affinity {
    pub node: String,
    pub block: Ipv4Net,
    pub pool: Ipv4Net,
}

/// What one attachment (or a node's tunnel) holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandleRecord {
    pub id: String,
    pub node: String,
    pub pool: Ipv4Net,
    pub block: Ipv4Net,
    pub ordinal: u32,
    pub seq: u64,
    pub address: Ipv4Addr,
}

impl HandleRecord {
    /// The allocation in its block that this handle owns.
    pub fn allocation(&self) -> Allocation {
        Allocation {
            handle: self.id.clone(),
            seq: self.seq,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_free_fills_holes_lowest_first() {
        let mut b = Block::new(
            "10.0.0.0/30".parse().unwrap(),
            "10.0.0.0/24".parse().unwrap(),
            "n",
        );
        assert_eq!(b.first_free(), Some(0));
        for (i, h) in ["a", "b", "c", "d"].iter().enumerate() {
            assert_eq!(b.first_free(), Some(i as u32));
            b.take(i as u32, h);
        }
        assert_eq!(b.first_free(), None);
        b.allocations.remove(&1);
        assert_eq!(b.first_free(), Some(1));
        assert_eq!(b.address(3), Ipv4Addr::new(10, 0, 0, 3));
        assert_eq!(b.seq, 4);
    }

    #[test]
    fn allocation_table_survives_json() {
        let mut b = Block::new(
            "10.0.0.0/24".parse().unwrap(),
            "10.0.0.0/16".parse().unwrap(),
            "n",
        );
        b.take(7, "podnet.x.eth0");
        let back: Block = serde_json::from_str(&serde_json::to_string(&b).unwrap()).unwrap();
        assert_eq!(back, b);
    }
}
