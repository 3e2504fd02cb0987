//! The plugin's failures, and the one place they become CNI error codes.

use podnet_cni_types::{code, CniError};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    /// Already a CNI error (bad config, IPAM's answer): passed on as it is.
    #[error("{0}")]
    Cni(CniError),
    #[error("open the pod's network namespace")]
    Netns(#[source] podnet_netlink::Error),
    #[error("{action}")]
    Netlink {
        action: String,
        #[source]
        source: podnet_netlink::Error,
    },
    #[error("{0}")]
    InterfaceExists(String),
    #[error("{0}")]
    AlreadySetUp(String),
    #[error("{0} vanished right after it was created")]
    Vanished(String),
    #[error("CHECK: {0}")]
    Check(String),
}

impl From<CniError> for Error {
    fn from(e: CniError) -> Self {
        Error::Cni(e)
    }
}

/// Wraps a netlink failure with what the plugin was doing.
pub fn nl(action: impl Into<String>) -> impl FnOnce(podnet_netlink::Error) -> Error {
    let action = action.into();
    move |source| Error::Netlink { action, source }
}

impl Error {
    /// The CNI error for this failure: a missing or wrong netns is a bad CNI_NETNS (4), a
    /// taken name 103, a repeated ADD 101, a CHECK difference 102, kernel trouble I/O (5).
    pub fn to_cni(&self) -> CniError {
        let (c, msg) = match self {
            Error::Cni(e) => return e.clone(),
            Error::Netns(
                e @ (podnet_netlink::Error::NetnsMissing(_) | podnet_netlink::Error::NotNetns(_)),
            ) => (code::INVALID_ENV, format!("CNI_NETNS: {e}")),
            Error::Netns(e) => (
                code::IO_FAILURE,
                format!("open the pod's network namespace: {e}"),
            ),
            Error::Netlink { action, source } => (code::IO_FAILURE, format!("{action}: {source}")),
            Error::Vanished(_) => (code::IO_FAILURE, self.to_string()),
            Error::InterfaceExists(m) => (code::INTERFACE_EXISTS, m.clone()),
            Error::AlreadySetUp(m) => (code::ALREADY_ALLOCATED, m.clone()),
            Error::Check(m) => (code::CHECK_FAILED, m.clone()),
        };
        CniError::new(c, msg)
    }
}
