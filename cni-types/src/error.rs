//! The CNI error reply (`{cniVersion, code, msg, details}`) and the spec's well-known codes.

use serde::Serialize;
use std::fmt;

/// Error codes from the CNI spec (0-99) and podnet's own (100+).
pub mod code {
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    pub const UNSUPPORTED_FIELD: u32 = 2;
    pub const UNKNOWN_CONTAINER: u32 = 3;
    pub const INVALID_ENV: u32 = 4;
    pub const IO_FAILURE: u32 = 5;
    pub const DECODING_FAILURE: u32 = 6;
    pub const INVALID_NETWORK_CONFIG: u32 = 7;
    pub const TRY_AGAIN_LATER: u32 = 11;
    pub const PLUGIN_NOT_AVAILABLE: u32 = 50;
    pub const PLUGIN_NOT_AVAILABLE_LIMITED: u32 = 51;
    /// podnet: the pool has no free address for this node.
    pub const POOL_EXHAUSTED: u32 = 100;
    /// podnet: this container and interface already hold an address.
    pub const ALREADY_ALLOCATED: u32 = 101;
    /// podnet: CHECK found the state differs from prevResult.
    pub const CHECK_FAILED: u32 = 102;
    /// podnet: an interface name the attachment needs is already taken.
    pub const INTERFACE_EXISTS: u32 = 103;
    /// podnet: any other internal failure.
    pub const INTERNAL: u32 = 110;
}

/// A CNI error as it goes on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CniError {
    pub code: u32,
    pub msg: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub details: String,
}

impl CniError {
    pub fn new(code: u32, msg: impl Into<String>) -> Self {
        CniError {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    pub fn with_details(mut self, details: impl Into<String>) -> Self {
        self.details = details.into();
        self
    }

    /// The whole error chain of `err`, outermost first, as `details`.
    pub fn with_source(self, err: &dyn std::error::Error) -> Self {
        let mut chain = err.to_string();
        let mut cur = err.source();
        while let Some(e) = cur {
            chain.push_str(": ");
            chain.push_str(&e.to_string());
            cur = e.source();
        }
        self.with_details(chain)
    }
}

impl fmt::Display for CniError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CNI error {}: {}", self.code, self.msg)?;
        if !self.details.is_empty() {
            write!(f, " ({})", self.details)?;
        }
        Ok(())
    }
}

impl std::error::Error for CniError {}
