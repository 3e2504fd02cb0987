//! `/proc/sys` writes. Network sysctls apply to the network namespace of the calling thread,
//! so call these inside [`crate::Netns::run`] for another namespace.

use crate::{Error, Result};

/// Writes `value` to `/proc/sys/<key with dots as slashes>`, e.g.
/// `net.ipv4.conf.cali1234.proxy_arp`.
pub fn write(key: &str, value: &str) -> Result<()> {
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    std::fs::write(&path, value).map_err(Error::io(format!("set sysctl {key}={value}")))
}

/// Reads a sysctl, trimmed.
pub fn read(key: &str) -> Result<String> {
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    std::fs::read_to_string(&path)
        .map(|s| s.trim().to_string())
        .map_err(Error::io(format!("read sysctl {key}")))
}

/// Interface sysctls: interface names may contain dots, which the key syntax can't express.
pub fn write_conf(family: &str, ifname: &str, setting: &str, value: &str) -> Result<()> {
    let path = format!("/proc/sys/net/{family}/conf/{ifname}/{setting}");
    std::fs::write(&path, value).map_err(Error::io(format!(
        "set sysctl net.{family}.conf.{ifname}.{setting}={value}"
    )))
}

/// Reads an interface sysctl, trimmed.
pub fn read_conf(family: &str, ifname: &str, setting: &str) -> Result<String> {
    let path = format!("/proc/sys/net/{family}/conf/{ifname}/{setting}");
    std::fs::read_to_string(&path)
        .map(|s| s.trim().to_string())
        .map_err(Error::io(format!(
            "read sysctl net.{family}.conf.{ifname}.{setting}"
        )))
}
