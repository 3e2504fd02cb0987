//! Making the kernel match: the node's table `ip podnet-proxy` kept equal to
//! [`crate::rules::desired`], by the differences from what was last written, or read back and
//! replaced whole. No other table is touched.

use crate::model::Service;
use crate::rules::{desired, TABLE};
use podnet_netlink::nft::{Nftables, Synced, Table};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{action}: {source}")]
    Netlink {
        action: &'static str,
        source: podnet_netlink::Error,
    },
}

/// The node's nftables socket, for the proxy's table, and what it last wrote there.
pub struct Proxy {
    nft: Nftables,
    last: Option<Table>,
}

impl Proxy {
    /// Opens the nftables socket of the calling thread's network namespace.
    pub fn open() -> Result<Proxy, Error> {
        let nft = Nftables::open().map_err(|source| Error::Netlink {
            action: "open an nftables socket",
            source,
        })?;
        Ok(Proxy { nft, last: None })
    }

    /// Brings table `ip podnet-proxy` in line with `services`: only the differences from what
    /// it last wrote (one Service changed among thousands is a small batch, as kube-proxy
    /// does it); the first time, or when the kernel's table is not what it wrote, by reading
    /// it back and replacing it whole.
    pub fn sync(&mut self, services: &[Service]) -> Result<Synced, Error> {
        let want = desired(services);
        let done = match self.last.take() {
            Some(last) if last == want => Ok(Synced::Unchanged),
            Some(last) => self
                .nft
                .update(&last, &want)
                .or_else(|_| self.nft.sync(TABLE, Some(&want))),
            None => self.nft.sync(TABLE, Some(&want)),
        };
        let done = done.map_err(|source| Error::Netlink {
            action: "sync nftables table ip podnet-proxy",
            source,
        })?;
        self.last = Some(want);
        Ok(done)
    }

    /// Reads the kernel's table back and replaces it whole if it is not `services`' (undoing
    /// changes made by hand).
    pub fn verify(&mut self, services: &[Service]) -> Result<Synced, Error> {
        self.last = None;
        self.sync(services)
    }

    /// The kernel's copy of the table.
    pub fn read(&mut self) -> Result<Option<Table>, Error> {
        self.nft.read(TABLE).map_err(|source| Error::Netlink {
            action: "read nftables table ip podnet-proxy",
            source,
        })
    }

    /// Removes the table (the node stops serving ClusterIPs).
    pub fn remove(&mut self) -> Result<Synced, Error> {
        self.last = None;
        self.nft.sync(TABLE, None).map_err(|source| Error::Netlink {
            action: "remove nftables table ip podnet-proxy",
            source,
        })
    }
}
