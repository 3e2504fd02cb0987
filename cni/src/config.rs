//! The network config of the `podnet` plugin (one conflist entry), and what it inherits down
//! to an in-process `podnet-ipam`.

use podnet_cni_types::{code, Attachment, CniError, CniResult, CniVersion};
use podnet_ipam::DatastoreConfig;
use serde::Deserialize;
use std::path::PathBuf;

/// The node's podnet state folder (the agent publishes `mtu` there).
pub const DEFAULT_STATE_DIR: &str = "/var/lib/podnet";
/// Where the plugin logs unless told otherwise.
pub const DEFAULT_LOG_FILE: &str = "/var/log/podnet/podnet.log";

/// How pods' packets leave the node; decides the automatic MTU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encapsulation {
    #[default]
    Ipip,
    Vxlan,
    None,
}

impl Encapsulation {
    /// Bytes the tunnel header takes from the uplink MTU.
    pub fn overhead(self) -> u32 {
        match self {
            Encapsulation::Ipip => 20,
            Encapsulation::Vxlan => 50,
            Encapsulation::None => 0,
        }
    }
}

/// `"log": {"level": "info", "file": "/var/log/podnet/podnet.log"}`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConf {
    #[serde(default = "default_level")]
    pub level: String,
    #[serde(default = "default_log_file")]
    pub file: PathBuf,
}

impl Default for LogConf {
    fn default() -> Self {
        LogConf {
            level: default_level(),
            file: default_log_file(),
        }
    }
}

fn default_level() -> String {
    "info".into()
}

fn default_log_file() -> PathBuf {
    PathBuf::from(DEFAULT_LOG_FILE)
}

/// The fields of the plugin's own config entry. Unknown top-level keys are allowed: runtimes
/// add `runtimeConfig`, `args`, `prevResult`, `cni.dev/...`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    #[serde(default)]
    name: String,
    #[serde(default)]
    mtu: u32,
    #[serde(default)]
    nodename: Option<String>,
    #[serde(default)]
    encapsulation: Encapsulation,
    #[serde(default)]
    state_dir: Option<PathBuf>,
    #[serde(default)]
    datastore: Option<DatastoreConfig>,
    #[serde(default)]
    log: LogConf,
    ipam: Option<serde_json::Value>,
}

/// The parsed config, with the raw document kept for delegating to IPAM.
#[derive(Debug, Clone)]
pub struct NetConf {
    pub version: CniVersion,
    pub name: String,
    pub mtu: u32,
    pub nodename: Option<String>,
    pub encapsulation: Encapsulation,
    pub state_dir: PathBuf,
    pub datastore: Option<DatastoreConfig>,
    pub log: LogConf,
    pub ipam_type: String,
    pub prev_result: Option<CniResult>,
    pub valid_attachments: Vec<Attachment>,
    /// The whole document as received.
    pub raw: serde_json::Value,
}

fn bad(msg: impl Into<String>) -> CniError {
    CniError::new(code::INVALID_NETWORK_CONFIG, msg)
}

impl NetConf {
    /// Parses stdin: malformed JSON is code 6, an unsupported version 1, bad fields 7.
    pub fn parse(stdin: &[u8]) -> Result<NetConf, CniError> {
        let version = CniVersion::from_config(stdin)?;
        let raw: serde_json::Value =
            serde_json::from_slice(stdin).expect("from_config checked the JSON");
        let r = Raw::deserialize(&raw).map_err(|e| bad(format!("invalid podnet config: {e}")))?;
        let ipam = r
            .ipam
            .ok_or_else(|| bad("network config has no \"ipam\" object"))?;
        let ipam_type = ipam
            .get("type")
            .and_then(|t| t.as_str())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| bad("\"ipam\" has no \"type\""))?
            .to_string();
        if ipam_type.contains('/') {
            return Err(bad(format!(
                "ipam type {ipam_type:?} must be a plugin name, not a path"
            )));
        }
        let prev_result = podnet_cni_types::conf::prev_result(&raw)?;
        let valid_attachments = podnet_cni_types::conf::valid_attachments(&raw)?;
        Ok(NetConf {
            version,
            name: r.name,
            mtu: r.mtu,
            nodename: r.nodename.filter(|n| !n.is_empty()),
            encapsulation: r.encapsulation,
            state_dir: r
                .state_dir
                .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR)),
            datastore: r.datastore,
            log: r.log,
            ipam_type,
            prev_result,
            valid_attachments,
            raw,
        })
    }

    /// True when IPAM is podnet's own, run in-process.
    pub fn ipam_in_process(&self) -> bool {
        self.ipam_type == "podnet-ipam"
    }

    /// The document for an in-process `podnet-ipam`: `ipam.nodename` and `ipam.datastore`
    /// default to the plugin's own.
    pub fn ipam_document(&self) -> Vec<u8> {
        let mut doc = self.raw.clone();
        if let Some(ipam) = doc.get_mut("ipam").and_then(|i| i.as_object_mut()) {
            if let Some(n) = &self.nodename {
                ipam.entry("nodename").or_insert_with(|| n.clone().into());
            }
            if let Some(d) = &self.datastore {
                ipam.entry("datastore").or_insert_with(|| {
                    serde_json::to_value(d).expect("a datastore config serializes")
                });
            }
        }
        serde_json::to_vec(&doc).expect("a JSON value serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_conflist_entry_and_fills_ipam_defaults() {
        let c = NetConf::parse(
            br#"{"cniVersion":"1.0.0","name":"k8s-pod-network","type":"podnet","mtu":0,
                 "nodename":"sung-ubuntu04","encapsulation":"vxlan",
                 "datastore":{"type":"sqlite","path":"/tmp/s.db"},
                 "runtimeConfig":{"x":1},
                 "ipam":{"type":"podnet-ipam","pool":"10.233.64.0/18"}}"#,
        )
        .unwrap();
        assert_eq!(
            (c.encapsulation, c.mtu, c.ipam_type.as_str()),
            (Encapsulation::Vxlan, 0, "podnet-ipam")
        );
        assert!(c.ipam_in_process());
        let doc: serde_json::Value = serde_json::from_slice(&c.ipam_document()).unwrap();
        assert_eq!(doc["ipam"]["nodename"], "sung-ubuntu04");
        assert_eq!(doc["ipam"]["datastore"]["path"], "/tmp/s.db");
        assert_eq!(c.state_dir, PathBuf::from(DEFAULT_STATE_DIR));
    }

    #[test]
    fn bad_configs_are_code_7() {
        for conf in [
            r#"{"cniVersion":"1.0.0","type":"podnet"}"#,
            r#"{"cniVersion":"1.0.0","type":"podnet","ipam":{}}"#,
            r#"{"cniVersion":"1.0.0","type":"podnet","ipam":{"type":"../../bin/sh"}}"#,
            r#"{"cniVersion":"1.0.0","type":"podnet","encapsulation":"gre","ipam":{"type":"host-local"}}"#,
            r#"{"cniVersion":"1.0.0","type":"podnet","mtu":"big","ipam":{"type":"host-local"}}"#,
            r#"{"cniVersion":"1.0.0","type":"podnet","log":{"lvl":"x"},"ipam":{"type":"host-local"}}"#,
        ] {
            assert_eq!(
                NetConf::parse(conf.as_bytes()).unwrap_err().code,
                code::INVALID_NETWORK_CONFIG,
                "{conf}"
            );
        }
    }

    #[test]
    fn overheads() {
        assert_eq!(Encapsulation::Ipip.overhead(), 20);
        assert_eq!(Encapsulation::Vxlan.overhead(), 50);
        assert_eq!(Encapsulation::None.overhead(), 0);
    }
}
