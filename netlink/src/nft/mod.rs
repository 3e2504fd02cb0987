//! nftables over netlink: one table per owner, described as plain data ([`Table`]) and
//! replaced whole in one atomic batch ([`Nftables::replace`]), read back for comparing
//! ([`Nftables::read`]), checked without committing ([`Nftables::check`]), and watched for
//! changes made behind the owner's back ([`NftMonitor`]).
//!
//! Built on the rust-netlink org's `netlink-packet-netfilter` (its nftables messages, with raw
//! attributes for the few expressions it has no type for), so no `nft` binary and no libnftnl.
//! The agent's egress rules use it; the lab's service proxy is meant to as well.

mod expr_wire;
mod model;
mod monitor;
mod socket;
mod wire;

pub use model::{
    BaseChain, Chain, ChainKind, Expr, Field, HookPoint, Rule, Set, Table, Verdict, RTN_LOCAL,
};
pub use monitor::{NftEvent, NftMonitor};
pub use socket::Nftables;
