//! A pool as configured: its CIDR, block size, affinity mode and pinned blocks, validated, plus
//! the block arithmetic (which blocks it has, how many).

use crate::model::PoolRecord;
use crate::Error;
use ipnet::Ipv4Net;
use std::collections::BTreeMap;

/// Calico's (and kubespray's) default block size.
pub const DEFAULT_BLOCK_SIZE: u8 = 26;
/// The block sizes podnet accepts (a /20 holds 4,096 addresses, a /32 one).
pub const BLOCK_SIZES: std::ops::RangeInclusive<u8> = 20..=32;

/// The setting of a pool that [`PoolSpec::new`] refused, for each config to name in its own
/// words (`ipam.blockSize` in a CNI config, `block-size` in the agent's file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PoolSetting {
    Cidr,
    BlockSize,
    /// A node blocks are pinned to, by name.
    NodeName(String),
    /// Block `index` of those pinned to `node`.
    NodeBlock {
        node: String,
        index: usize,
    },
}

impl std::fmt::Display for PoolSetting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PoolSetting::Cidr => write!(f, "pool"),
            PoolSetting::BlockSize => write!(f, "block size"),
            PoolSetting::NodeName(_) => write!(f, "node of pinned blocks"),
            PoolSetting::NodeBlock { node, index } => {
                write!(f, "block {index} pinned to {node}")
            }
        }
    }
}

/// A validated pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolSpec {
    record: PoolRecord,
}

impl PoolSpec {
    /// Checks that the CIDR has no host bits, the block size is in range and fits the pool, and
    /// every pinned block is a block of this pool pinned to one node only.
    pub fn new(
        cidr: Ipv4Net,
        block_size: u8,
        strict_affinity: bool,
        node_blocks: BTreeMap<String, Vec<Ipv4Net>>,
    ) -> Result<PoolSpec, Error> {
        let bad = |setting, value: String, why: String| {
            Err(Error::BadSetting {
                setting,
                value,
                why,
            })
        };
        if cidr.trunc() != cidr {
            return bad(
                PoolSetting::Cidr,
                format!("\"{cidr}\""),
                format!("host bits are set (did you mean {}?)", cidr.trunc()),
            );
        }
        if !BLOCK_SIZES.contains(&block_size) {
            return bad(
                PoolSetting::BlockSize,
                block_size.to_string(),
                format!(
                    "out of range ({}..={})",
                    BLOCK_SIZES.start(),
                    BLOCK_SIZES.end()
                ),
            );
        }
        if block_size < cidr.prefix_len() {
            return bad(
                PoolSetting::BlockSize,
                block_size.to_string(),
                format!("a /{block_size} block is larger than pool {cidr}"),
            );
        }
        let mut owner: BTreeMap<Ipv4Net, &str> = BTreeMap::new();
        for (node, blocks) in &node_blocks {
            if let Err(Error::InvalidName { why, .. }) = crate::validate_node_name(node) {
                return bad(
                    PoolSetting::NodeName(node.clone()),
                    format!("{node:?}"),
                    format!("not a node name: {why}"),
                );
            }
            for (index, b) in blocks.iter().enumerate() {
                let setting = || PoolSetting::NodeBlock {
                    node: node.clone(),
                    index,
                };
                if b.prefix_len() != block_size || b.trunc() != *b || !cidr.contains(b) {
                    return bad(
                        setting(),
                        format!("\"{b}\""),
                        format!("not a /{block_size} block of pool {cidr}"),
                    );
                }
                if let Some(other) = owner.insert(*b, node) {
                    if other != node {
                        return bad(
                            setting(),
                            format!("\"{b}\""),
                            format!("also pinned to {other}"),
                        );
                    }
                }
            }
        }
        Ok(PoolSpec {
            record: PoolRecord {
                cidr,
                block_size,
                strict_affinity,
                node_blocks,
                nat_outgoing: true,
            },
        })
    }

    /// A pool from its stored record (validated again: the store may be edited by hand).
    pub fn from_record(r: PoolRecord) -> Result<PoolSpec, Error> {
        Ok(
            PoolSpec::new(r.cidr, r.block_size, r.strict_affinity, r.node_blocks)?
                .with_nat_outgoing(r.nat_outgoing),
        )
    }

    /// The same pool with `natOutgoing` set.
    pub fn with_nat_outgoing(mut self, on: bool) -> PoolSpec {
        self.record.nat_outgoing = on;
        self
    }

    /// Whether traffic from the pool to the outside is masqueraded.
    pub fn nat_outgoing(&self) -> bool {
        self.record.nat_outgoing
    }

    pub fn record(&self) -> &PoolRecord {
        &self.record
    }

    pub fn cidr(&self) -> Ipv4Net {
        self.record.cidr
    }

    pub fn block_size(&self) -> u8 {
        self.record.block_size
    }

    pub fn strict_affinity(&self) -> bool {
        self.record.strict_affinity
    }

    /// How many blocks the pool holds: 10.233.64.0/18 in /24 blocks holds 64.
    pub fn capacity_blocks(&self) -> u64 {
        1u64 << (self.block_size() - self.cidr().prefix_len())
    }

    /// Every block of the pool, lowest first.
    pub fn blocks(&self) -> impl Iterator<Item = Ipv4Net> {
        self.cidr()
            .subnets(self.block_size())
            .expect("block size was checked against the pool")
    }

    /// The blocks pinned to `node`.
    pub fn pinned_to(&self, node: &str) -> &[Ipv4Net] {
        self.record
            .node_blocks
            .get(node)
            .map_or(&[], |v| v.as_slice())
    }

    /// The node `block` is pinned to, if any.
    pub fn pinned_owner(&self, block: &Ipv4Net) -> Option<&str> {
        self.record
            .node_blocks
            .iter()
            .find(|(_, bs)| bs.contains(block))
            .map(|(n, _)| n.as_str())
    }

    /// This pool's settings merged into a stored record: block size must agree; pins add up;
    /// the affinity mode follows the newest config; `natOutgoing` stays as stored (it is set
    /// with `podnet-ipam pool set`, never by a CNI config).
    pub fn merged_with(&self, stored: &PoolRecord) -> Result<PoolSpec, Error> {
        if stored.block_size != self.block_size() {
            return Err(Error::PoolMismatch {
                pool: self.cidr(),
                stored: stored.block_size,
                wanted: self.block_size(),
            });
        }
        let mut pins = stored.node_blocks.clone();
        for (node, blocks) in &self.record.node_blocks {
            let entry = pins.entry(node.clone()).or_default();
            for b in blocks {
                if !entry.contains(b) {
                    entry.push(*b);
                }
            }
        }
        Ok(
            PoolSpec::new(self.cidr(), self.block_size(), self.strict_affinity(), pins)?
                .with_nat_outgoing(stored.nat_outgoing),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn the_seed_pool_holds_64_blocks_not_156() {
        let p = PoolSpec::new(net("10.233.64.0/18"), 24, false, BTreeMap::new()).unwrap();
        assert_eq!(p.capacity_blocks(), 64);
        let blocks: Vec<_> = p.blocks().collect();
        assert_eq!(blocks.first(), Some(&net("10.233.64.0/24")));
        assert_eq!(blocks.last(), Some(&net("10.233.127.0/24")));
    }

    #[test]
    fn rejects_bad_pools() {
        let none = BTreeMap::new;
        for (cidr, bs) in [
            ("10.233.64.1/18", 24),
            ("10.0.0.0/16", 19),
            ("10.0.0.0/16", 33),
            ("10.0.0.0/24", 22),
        ] {
            assert!(
                PoolSpec::new(net(cidr), bs, false, none()).is_err(),
                "{cidr} /{bs}"
            );
        }
        let pin = |node: &str, b: &str| BTreeMap::from([(node.to_string(), vec![net(b)])]);
        assert!(
            PoolSpec::new(net("10.233.64.0/18"), 24, false, pin("a", "10.233.99.0/24")).is_ok()
        );
        for bad in ["10.233.99.0/25", "10.233.99.1/24", "10.1.0.0/24"] {
            assert!(
                PoolSpec::new(net("10.233.64.0/18"), 24, false, pin("a", bad)).is_err(),
                "{bad}"
            );
        }
        let twice = BTreeMap::from([
            ("a".to_string(), vec![net("10.233.99.0/24")]),
            ("b".to_string(), vec![net("10.233.99.0/24")]),
        ]);
        assert!(PoolSpec::new(net("10.233.64.0/18"), 24, false, twice).is_err());
    }

    #[test]
    fn a_record_from_before_nat_outgoing_reads_as_on() {
        let old = r#"{"cidr":"10.233.64.0/18","blockSize":24,"strictAffinity":false}"#;
        let r: PoolRecord = serde_json::from_str(old).unwrap();
        assert!(r.nat_outgoing);
        let off: PoolRecord = serde_json::from_str(
            r#"{"cidr":"10.233.64.0/18","blockSize":24,"strictAffinity":false,"natOutgoing":false}"#,
        )
        .unwrap();
        assert!(!PoolSpec::from_record(off).unwrap().nat_outgoing());
    }

    #[test]
    fn merging_keeps_pins_and_refuses_another_block_size() {
        let a = PoolSpec::new(
            net("10.233.64.0/18"),
            24,
            false,
            BTreeMap::from([("a".to_string(), vec![net("10.233.99.0/24")])]),
        )
        .unwrap();
        let b = PoolSpec::new(
            net("10.233.64.0/18"),
            24,
            true,
            BTreeMap::from([("b".to_string(), vec![net("10.233.78.0/24")])]),
        )
        .unwrap();
        let m = b.merged_with(a.record()).unwrap();
        assert_eq!(m.pinned_owner(&net("10.233.99.0/24")), Some("a"));
        assert_eq!(m.pinned_owner(&net("10.233.78.0/24")), Some("b"));
        assert!(m.strict_affinity());
        // natOutgoing is the stored one's, whatever the config says.
        let off = a.clone().with_nat_outgoing(false);
        assert!(!b.merged_with(off.record()).unwrap().nat_outgoing());
        let other = PoolSpec::new(net("10.233.64.0/18"), 26, false, BTreeMap::new()).unwrap();
        assert!(matches!(
            other.merged_with(a.record()),
            Err(Error::PoolMismatch { .. })
        ));
    }
}
