//! The CNI protocol as data: versions, the runtime's environment, results, errors, and the one
//! place that writes a reply to stdout. Shared by the `podnet` main plugin and the
//! `podnet-ipam` IPAM plugin so both speak the spec (1.1.0, down to 0.3.0) the same way.
//!
//! Plain `serde`/`serde_json` types, no I/O besides [`reply`]: everything here is unit-testable.

pub mod conf;
pub mod env;
pub mod error;
pub mod reply;
pub mod result;
pub mod version;

pub use env::{Attachment, CniArgs, CniEnv, Command};
pub use error::{code, CniError};
pub use result::{CniResult, Dns, Interface, IpConfig, Route};
pub use version::CniVersion;
