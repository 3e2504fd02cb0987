//! Where each IPAM record lives in the datastore (the same layout on every backend).
//!
//! ```text
//! /podnet/v1/pools/<cidr>               pool settings
//! /podnet/v1/blocks/<cidr>              a block and its allocation table
//! /podnet/v1/affinities/<node>/<cidr>   "this block belongs to this node"
//! /podnet/v1/handles/<id>               what one attachment holds
//! /podnet/v1/nodes/<name>               a node's address and tunnel endpoint (crate::nodes)
//! ```
//! CIDRs are written with dashes (`10-233-99-0-24`) so a key never has an extra `/`.

use ipnet::Ipv4Net;

pub const ROOT: &str = "/podnet/v1/";
pub const POOLS: &str = "/podnet/v1/pools/";
pub const BLOCKS: &str = "/podnet/v1/blocks/";
pub const AFFINITIES: &str = "/podnet/v1/affinities/";
pub const HANDLES: &str = "/podnet/v1/handles/";
pub const NODES: &str = "/podnet/v1/nodes/";

/// `10.233.99.0/24` as `10-233-99-0-24`.
pub fn cidr_name(net: &Ipv4Net) -> String {
    format!("{}-{}", net.addr(), net.prefix_len()).replace('.', "-")
}

pub fn pool(cidr: &Ipv4Net) -> String {
    format!("{POOLS}{}", cidr_name(cidr))
}

pub fn block(cidr: &Ipv4Net) -> String {
    format!("{BLOCKS}{}", cidr_name(cidr))
}

pub fn node_affinities(node: &str) -> String {
    format!("{AFFINITIES}{node}/")
}

pub fn affinity(node: &str, block: &Ipv4Net) -> String {
    format!("{AFFINITIES}{node}/{}", cidr_name(block))
}

pub fn handle(id: &str) -> String {
    format!("{HANDLES}{id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_have_no_stray_slashes() {
        let b: Ipv4Net = "10.233.99.0/24".parse().unwrap();
        assert_eq!(block(&b), "/podnet/v1/blocks/10-233-99-0-24");
        assert_eq!(
            affinity("sung-ubuntu04", &b),
            "/podnet/v1/affinities/sung-ubuntu04/10-233-99-0-24"
        );
        assert!(affinity("n", &b).starts_with(&node_affinities("n")));
    }
}
