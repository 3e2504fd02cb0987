//! Making the kernel match: the node's table `ip podnet-proxy`, read back and replaced whole
//! in one batch when it differs from [`crate::rules::desired`]. No other table is touched.

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

/// The node's nftables socket, for the proxy's table.
pub struct Proxy {
    nft: Nftables,
}

impl Proxy {
    /// Opens the nftables socket of the calling thread's network namespace.
    pub fn open() -> Result<Proxy, Error> {
        let nft = Nftables::open().map_err(|source| Error::Netlink {
            action: "open an nftables socket",
            source,
        })?;
        Ok(Proxy { nft })
    }

    /// Brings table `ip podnet-proxy` in line with `services`.
    pub fn sync(&mut self, services: &[Service]) -> Result<Synced, Error> {
        self.nft
            .sync(TABLE, Some(&desired(services)))
            .map_err(|source| Error::Netlink {
                action: "sync nftables table ip podnet-proxy",
                source,
            })
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
        self.nft.sync(TABLE, None).map_err(|source| Error::Netlink {
            action: "remove nftables table ip podnet-proxy",
            source,
        })
    }
}
