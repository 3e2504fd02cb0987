//! `podnet-proxy`: ClusterIP Services the way kube-proxy's nftables mode programs them (KEP
//! 3866, kubernetes `pkg/proxy/nftables`), for the lab's nodes. What the node's table should
//! be is a pure function of the Services and their endpoints ([`rules::desired`]); making the
//! kernel match is [`sync::Proxy`], on the same nftables netlink layer as the agent's egress
//! table (`podnet_netlink::nft`). The proxy owns one table, `ip podnet-proxy`, and nothing else.
//!
//! The seed's nodes run kube-proxy in IPVS mode (`kube-ipvs0` holds every ClusterIP on a dummy
//! device); this host has neither IPVS nor dummy devices, and the nftables mode is the same idea
//! without them: a verdict map by address, protocol and port instead of IPVS virtual servers.

pub mod model;
pub mod rules;
pub mod sync;

pub use model::{Endpoint, Protocol, Service, ServicePort};
