//! nf_tables change events (the `NFNLGRP_NFTABLES` multicast group): which tables a change
//! touched, so an owner can put its table back when someone edits it by hand.

use super::socket::{open_socket, parse_all};
use crate::{Error, Result};
use netlink_packet_core::NetlinkPayload;
use netlink_packet_netfilter::nftables::{
    ChainAttribute, NfTablesMessage, RuleAttribute, SetAttribute, SetElementList, TableAttribute,
};
use netlink_packet_netfilter::NetfilterMessageInner;
use netlink_sys::Socket;

const NFNLGRP_NFTABLES: u32 = 7;

/// A subscription to nf_tables changes in the namespace of the thread that opened it.
pub struct NftMonitor {
    socket: Socket,
    buf: Vec<u8>,
}

/// What one wait saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NftEvent {
    /// A change to (or the deletion of) the named table, or something in it.
    Table(String),
    /// Events were lost (the socket's buffer overflowed): anything may have changed.
    Lost,
}

impl NftMonitor {
    pub fn open() -> Result<NftMonitor> {
        let socket = open_socket()?;
        socket
            .add_membership(NFNLGRP_NFTABLES)
            .map_err(Error::io("subscribe to nftables changes"))?;
        Ok(NftMonitor {
            socket,
            buf: vec![0; 256 * 1024],
        })
    }

    /// Blocks until changes to tables arrive; returns the tables they touched.
    pub fn wait(&mut self) -> Result<Vec<NftEvent>> {
        loop {
            let events = self.next()?;
            if !events.is_empty() {
                return Ok(events);
            }
        }
    }

    /// The table events of one datagram (none for a generation message alone).
    fn next(&mut self) -> Result<Vec<NftEvent>> {
        let n = match self.socket.recv(&mut &mut self.buf[..], 0) {
            Ok(n) => n,
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => return Ok(vec![NftEvent::Lost]),
            Err(e) => return Err(Error::io("read nftables changes")(e)),
        };
        let mut out = Vec::new();
        let msgs = parse_all(&self.buf[..n], "read nftables changes");
        for m in msgs.unwrap_or_default() {
            let NetlinkPayload::InnerMessage(m) = m.payload else {
                continue;
            };
            let NetfilterMessageInner::NfTables(m) = m.inner else {
                continue;
            };
            if let Some(t) = table_of(&m) {
                let e = NftEvent::Table(t);
                if !out.contains(&e) {
                    out.push(e);
                }
            }
        }
        Ok(out)
    }
}

/// The table a change message is about.
fn table_of(m: &NfTablesMessage) -> Option<String> {
    use NfTablesMessage as M;
    match m {
        M::NewTable(t) | M::DeleteTable(t) => t.attributes.iter().find_map(|a| match a {
            TableAttribute::Name(n) => Some(n.clone()),
            _ => None,
        }),
        M::NewChain(c) | M::DeleteChain(c) => c.attributes.iter().find_map(|a| match a {
            ChainAttribute::Table(n) => Some(n.clone()),
            _ => None,
        }),
        M::NewRule(r) | M::DeleteRule(r) => r.attributes.iter().find_map(|a| match a {
            RuleAttribute::Table(n) => Some(n.clone()),
            _ => None,
        }),
        M::NewSet(s) | M::DeleteSet(s) => s.attributes.iter().find_map(|a| match a {
            SetAttribute::Table(n) => Some(n.clone()),
            _ => None,
        }),
        M::NewSetElement(e) | M::DeleteSetElement(e) => e.attributes.iter().find_map(|a| match a {
            SetElementList::Table(n) => Some(n.clone()),
            _ => None,
        }),
        _ => None,
    }
}
