//! nftables over netlink: one table per owner, described as plain data ([`Table`]) and
//! replaced whole in one atomic batch ([`Nftables::replace`]), read back for comparing
//! ([`Nftables::read`]), checked without committing ([`Nftables::check`]), and watched for
//! changes made behind the owner's back ([`NftMonitor`]).
//!
//! Built on the rust-netlink org's `netlink-packet-netfilter` (its nftables messages, with raw
//! attributes for the few expressions it has no type for), so no `nft` binary and no libnftnl.
//! The agent's egress rules use it, and Services' rules (kube-proxy's nftables layout: a
//! `services` verdict map by address, protocol and port, `numgen` to pick an endpoint, DNAT,
//! marks for hairpin masquerade) are built from the same parts.

mod expr_wire;
mod map;
mod model;
mod monitor;
mod socket;
mod wire;

pub use map::{Map, MapKey};
pub use model::{
    BaseChain, Chain, ChainKind, Expr, Field, HookPoint, Rule, Set, Table, Verdict, RTN_LOCAL,
};
pub use monitor::{NftEvent, NftMonitor};
pub use socket::{Nftables, Synced};
