//! The one place IPAM errors become CNI error codes.

use crate::Error;
use podnet_cni_types::{code, CniError};

/// Maps `err`, which happened while doing `action`, to a CNI error: the datastore being busy
/// is "try again later" (11), other datastore trouble is I/O (5), a full pool and a duplicate
/// handle have podnet's own codes (100, 101), and configuration problems are code 7.
pub fn to_cni(action: &str, err: Error) -> CniError {
    let code = match &err {
        Error::Store(s) if s.is_transient() => code::TRY_AGAIN_LATER,
        Error::Store(_) => code::IO_FAILURE,
        Error::PoolExhausted { .. } => code::POOL_EXHAUSTED,
        Error::AlreadyAllocated(_) => code::ALREADY_ALLOCATED,
        // A bad Service record is not the plugin's doing, but it reads the datastore too.
        Error::InvalidService(_) => code::IO_FAILURE,
        Error::InvalidPool(_)
        | Error::BadSetting { .. }
        | Error::PoolMismatch { .. }
        | Error::PoolOverlap { .. }
        | Error::InvalidName { .. } => code::INVALID_NETWORK_CONFIG,
    };
    let msg = format!("{action}: {err}");
    match std::error::Error::source(&err) {
        Some(source) => CniError::new(code, msg).with_source(source),
        None => CniError::new(code, msg),
    }
}
