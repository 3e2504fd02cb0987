//! Egress: the node's one nftables table, `ip podnet`, which masquerades pod traffic leaving
//! the pools (Calico's `natOutgoing`, felix `rules/nat.go`) and fixes the source of the node's
//! own traffic into the tunnel (felix `rules/static.go`). [`desired`] computes the table from
//! the pools and nodes as plain data; [`Egress::sync`] reads the kernel's copy back and
//! replaces it whole, in one batch, when it differs. No other table is ever touched.

use crate::Error;
use podnet_ipam::nodes::NodeRecord;
use podnet_ipam::pools::NatExclusions;
use podnet_ipam::PoolSpec;
use podnet_netlink::nft::{
    BaseChain, Chain, ChainKind, Expr, Field, HookPoint, Nftables, Rule, Set, Table,
};
use std::net::Ipv4Addr;

pub const TABLE: &str = "podnet";
pub const ALL_POOLS: &str = "all-pools";
pub const NAT_POOLS: &str = "nat-pools";
pub const NODE_ADDRESSES: &str = "node-addresses";
pub const CHAIN: &str = "nat";
/// nft's `srcnat` priority.
const SRCNAT: i32 = 100;

/// What the table is computed from.
pub struct Inputs<'a> {
    pub pools: &'a [PoolSpec],
    pub exclusions: NatExclusions,
    pub nodes: &'a [NodeRecord],
    /// The tunnel device and this node's tunnel address, in ipip or vxlan mode.
    pub tunnel: Option<(&'a str, Ipv4Addr)>,
}

/// The table `ip podnet` should be:
/// - set `all-pools` (every pool), set `nat-pools` (the natOutgoing ones), and with
///   `IPPoolsAndHostIPs` set `node-addresses` (every node's address);
/// - chain `nat` (nat, postrouting, srcnat), first the tunnel source fix: traffic this node
///   sends into the tunnel from an address of its own that is not the tunnel's leaves from the
///   tunnel's; then, if a pool has natOutgoing, masquerade (fully-random) from those pools to
///   anything outside all pools (and outside every node).
///
/// `None` when there is nothing to do (no tunnel, no natOutgoing pool).
pub fn desired(i: &Inputs) -> Option<Table> {
    let nat: Vec<_> = i
        .pools
        .iter()
        .filter(|p| p.nat_outgoing())
        .map(|p| p.cidr())
        .collect();
    if nat.is_empty() && i.tunnel.is_none() {
        return None;
    }
    let mut sets = vec![
        Set::new(ALL_POOLS, i.pools.iter().map(|p| p.cidr())),
        Set::new(NAT_POOLS, nat.iter().copied()),
    ];
    let host_ips = i.exclusions == NatExclusions::IPPoolsAndHostIPs;
    if host_ips {
        sets.push(Set::new(
            NODE_ADDRESSES,
            i.nodes.iter().map(|n| ipnet::Ipv4Net::from(n.ip)),
        ));
    }
    let mut rules = Vec::new();
    if let Some((dev, ip)) = i.tunnel {
        let mut exprs = Vec::new();
        exprs.extend(Expr::oifname_is(dev));
        exprs.extend(Expr::saddr_is_local());
        exprs.extend(Expr::addr_is(Field::IpSaddr, ip, false));
        exprs.push(Expr::counter());
        exprs.push(Expr::Masquerade {
            fully_random: false,
        });
        rules.push(Rule { exprs });
    }
    if !nat.is_empty() {
        let mut exprs = Vec::new();
        exprs.extend(Expr::in_set(Field::IpSaddr, NAT_POOLS, true));
        exprs.extend(Expr::in_set(Field::IpDaddr, ALL_POOLS, false));
        if host_ips {
            exprs.extend(Expr::in_set(Field::IpDaddr, NODE_ADDRESSES, false));
        }
        exprs.push(Expr::counter());
        exprs.push(Expr::Masquerade { fully_random: true });
        rules.push(Rule { exprs });
    }
    Some(Table {
        name: TABLE.into(),
        sets,
        maps: Vec::new(),
        chains: vec![Chain {
            name: CHAIN.into(),
            base: Some(BaseChain {
                kind: ChainKind::Nat,
                hook: HookPoint::Postrouting,
                priority: SRCNAT,
            }),
            rules,
        }],
    })
}

/// True if some pool wants its traffic masqueraded.
pub fn any_nat_outgoing(pools: &[PoolSpec]) -> bool {
    pools.iter().any(|p| p.nat_outgoing())
}

pub use podnet_netlink::nft::Synced;

/// The node's nftables socket.
pub struct Egress {
    nft: Nftables,
}

impl Egress {
    pub fn open() -> Result<Egress, Error> {
        Ok(Egress {
            nft: Nftables::open().map_err(Error::netlink("open an nftables socket"))?,
        })
    }

    /// Start-up: has the kernel check `want` without applying it. A kernel that cannot NAT
    /// is an error naming the missing pieces.
    pub fn check(&mut self, want: &Table) -> Result<(), Error> {
        self.nft.check(want).map_err(|e| {
            Error::Settings(format!(
                "this kernel cannot masquerade pod traffic: {e}. natOutgoing needs nf_tables with \
                 NAT (modules nf_tables, nft_chain_nat, nft_masq, nf_nat, nft_fib_ipv4); load \
                 them, or turn natOutgoing off for every pool (`podnet-ipam pool set CIDR \
                 --nat-outgoing off`)"
            ))
        })
    }

    /// Makes the kernel's table equal `want` (deleting it when `want` is `None`).
    pub fn sync(&mut self, want: &Option<Table>) -> Result<Synced, Error> {
        self.nft
            .sync(TABLE, want.as_ref())
            .map_err(Error::netlink("sync nftables table ip podnet"))
    }

    /// The kernel's copy of the table.
    pub fn read(&mut self) -> Result<Option<Table>, Error> {
        self.nft
            .read(TABLE)
            .map_err(Error::netlink("read nftables table ip podnet"))
    }
}

/// One line per rule of the table, in words, then the rule as nft writes it.
pub fn explain(t: &Table) -> Vec<String> {
    let mut out = Vec::new();
    let set = |name: &str| {
        t.set(name)
            .map(|s| {
                let v: Vec<String> = s.elements().iter().map(|e| e.to_string()).collect();
                if v.is_empty() {
                    "nothing".to_string()
                } else {
                    v.join(", ")
                }
            })
            .unwrap_or_else(|| "?".into())
    };
    for c in &t.chains {
        for r in &c.rules {
            let counted = r.exprs.iter().find_map(|e| match e {
                Expr::Counter { packets, .. } => Some(*packets),
                _ => None,
            });
            let words = if r
                .exprs
                .iter()
                .any(|e| matches!(e, Expr::Lookup { set, .. } if set == NAT_POOLS))
            {
                let hosts = if r
                    .exprs
                    .iter()
                    .any(|e| matches!(e, Expr::Lookup { set, .. } if set == NODE_ADDRESSES))
                {
                    " and every node"
                } else {
                    ""
                };
                format!(
                    "masquerade traffic from pods of {} to anything outside the pools ({}){hosts}, to this node's address on the way out (fully-random ports)",
                    set(NAT_POOLS),
                    set(ALL_POOLS)
                )
            } else if r
                .exprs
                .iter()
                .any(|e| matches!(e, Expr::Load(Field::OifName)))
            {
                "this node's own traffic into the tunnel from another of its addresses leaves from the tunnel's address".to_string()
            } else {
                "a rule podnet did not write".to_string()
            };
            let count = counted
                .map(|p| format!(" [{p} packets so far]"))
                .unwrap_or_default();
            out.push(format!("{words}{count}\n    {r}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn pool(cidr: &str, nat: bool) -> PoolSpec {
        PoolSpec::new(cidr.parse().unwrap(), 24, false, BTreeMap::new())
            .unwrap()
            .with_nat_outgoing(nat)
    }

    fn node(name: &str, ip: &str) -> NodeRecord {
        NodeRecord {
            name: name.into(),
            ip: ip.parse().unwrap(),
            prefix_len: 24,
            tunnel_ip: None,
            tunnel_mac: None,
            encapsulation: "ipip".into(),
            routing: "bgp".into(),
        }
    }

    #[test]
    fn seed_pool_masquerades_to_outside_the_pools_and_fixes_the_tunnel_source() {
        let pools = [pool("10.233.64.0/18", true)];
        let nodes = [node("a", "192.168.0.10"), node("b", "192.168.0.11")];
        let t = desired(&Inputs {
            pools: &pools,
            exclusions: NatExclusions::IPPoolsOnly,
            nodes: &nodes,
            tunnel: Some(("tunl0", "10.233.90.0".parse().unwrap())),
        })
        .unwrap();
        assert_eq!(t.name, "podnet");
        assert_eq!(
            t.set(ALL_POOLS).unwrap().elements(),
            &["10.233.64.0/18".parse().unwrap()]
        );
        assert_eq!(
            t.set(NAT_POOLS).unwrap().elements(),
            &["10.233.64.0/18".parse().unwrap()]
        );
        assert!(t.set(NODE_ADDRESSES).is_none());
        let rules: Vec<String> = t.chains[0].rules.iter().map(|r| r.to_string()).collect();
        assert_eq!(
            rules,
            [
                "oifname \"tunl0\" fib saddr type local ip saddr != 10.233.90.0 counter packets 0 bytes 0 masquerade",
                "ip saddr @nat-pools ip daddr != @all-pools counter packets 0 bytes 0 masquerade fully-random",
            ]
        );
        assert_eq!(t.chains[0].base.unwrap().hook, HookPoint::Postrouting);
        assert!(any_nat_outgoing(&pools));
    }

    #[test]
    fn only_nat_outgoing_pools_are_masqueraded_but_all_pools_are_excluded() {
        let pools = [pool("10.233.64.0/18", true), pool("172.16.0.0/16", false)];
        let t = desired(&Inputs {
            pools: &pools,
            exclusions: NatExclusions::IPPoolsOnly,
            nodes: &[],
            tunnel: None,
        })
        .unwrap();
        assert_eq!(t.set(NAT_POOLS).unwrap().elements().len(), 1);
        assert_eq!(t.set(ALL_POOLS).unwrap().elements().len(), 2);
        assert_eq!(t.chains[0].rules.len(), 1, "no tunnel, no tunnel rule");
    }

    #[test]
    fn host_ips_exclusion_adds_every_node() {
        let pools = [pool("10.233.64.0/18", true)];
        let nodes = [node("a", "192.168.0.10"), node("b", "192.168.0.11")];
        let t = desired(&Inputs {
            pools: &pools,
            exclusions: NatExclusions::IPPoolsAndHostIPs,
            nodes: &nodes,
            tunnel: None,
        })
        .unwrap();
        assert_eq!(
            t.set(NODE_ADDRESSES).unwrap().elements(),
            &["192.168.0.10/31".parse().unwrap()],
            "two neighbours merge into one prefix"
        );
        assert!(t.chains[0].rules[0]
            .to_string()
            .contains("ip daddr != @node-addresses"));
        let words = explain(&t);
        assert!(words[0].contains("and every node"), "{words:?}");
    }

    #[test]
    fn nothing_to_do_means_no_table() {
        let pools = [pool("10.233.64.0/18", false)];
        let none = desired(&Inputs {
            pools: &pools,
            exclusions: NatExclusions::IPPoolsOnly,
            nodes: &[],
            tunnel: None,
        });
        assert_eq!(none, None);
        assert!(!any_nat_outgoing(&pools));
        // natOutgoing off with a tunnel: the table keeps the tunnel rule only.
        let t = desired(&Inputs {
            pools: &pools,
            exclusions: NatExclusions::IPPoolsOnly,
            nodes: &[],
            tunnel: Some(("vxlan.calico", "10.233.90.1".parse().unwrap())),
        })
        .unwrap();
        assert_eq!(t.chains[0].rules.len(), 1);
        assert!(t.chains[0].rules[0]
            .to_string()
            .starts_with("oifname \"vxlan.calico\""));
    }
}
