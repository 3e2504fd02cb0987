//! The network config as the IPAM plugin reads it: the `ipam` object, plus the top-level keys
//! that matter to IPAM (`cniVersion`, `prevResult`, `cni.dev/valid-attachments`).

use crate::pool::{PoolSetting, PoolSpec, DEFAULT_BLOCK_SIZE};
use crate::store::DatastoreConfig;
use crate::Error;
use ipnet::Ipv4Net;
use podnet_cni_types::conf::{field, refused};
use podnet_cni_types::{code, Attachment, CniError, CniResult, CniVersion};
use serde::Deserialize;
use std::collections::BTreeMap;

/// The `ipam` object:
/// `{"type":"podnet-ipam","pool":"10.233.64.0/18","blockSize":24,"strictAffinity":false,
///   "nodename":"sung-ubuntu04","datastore":{"type":"sqlite","path":"..."},
///   "nodeBlocks":{"sung-ubuntu04":["10.233.99.0/24"]}}`
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IpamConf {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(deserialize_with = "crate::cidr::de")]
    pub pool: Ipv4Net,
    #[serde(default = "default_block_size")]
    pub block_size: u8,
    #[serde(default)]
    pub strict_affinity: bool,
    #[serde(default)]
    pub nodename: Option<String>,
    #[serde(default)]
    pub datastore: DatastoreConfig,
    #[serde(default, deserialize_with = "crate::cidr::de_by_node")]
    pub node_blocks: BTreeMap<String, Vec<Ipv4Net>>,
}

fn default_block_size() -> u8 {
    DEFAULT_BLOCK_SIZE
}

/// Where in a CNI config a pool setting is written.
pub fn setting_path(s: &PoolSetting) -> String {
    match s {
        PoolSetting::Cidr => "ipam.pool".into(),
        PoolSetting::BlockSize => "ipam.blockSize".into(),
        PoolSetting::NodeName(node) => format!("ipam.nodeBlocks.{node}"),
        PoolSetting::NodeBlock { node, index } => format!("ipam.nodeBlocks.{node}[{index}]"),
    }
}

/// The parts of a network config IPAM uses.
#[derive(Debug, Clone)]
pub struct NetConf {
    pub version: CniVersion,
    pub ipam: IpamConf,
    pub pool: PoolSpec,
    pub prev_result: Option<CniResult>,
    pub valid_attachments: Vec<Attachment>,
}

impl NetConf {
    /// Parses stdin. Malformed JSON is code 6, an unsupported version code 1, anything wrong
    /// in the fields code 7.
    pub fn parse(stdin: &[u8]) -> Result<NetConf, CniError> {
        let version = CniVersion::from_config(stdin)?;
        let raw: serde_json::Value =
            serde_json::from_slice(stdin).expect("from_config checked the JSON");
        let ipam = raw.get("ipam").ok_or_else(|| {
            CniError::new(
                code::INVALID_NETWORK_CONFIG,
                "network config has no \"ipam\" object",
            )
        })?;
        let ipam: IpamConf = field(ipam, "ipam")?;
        if let Some(n) = ipam.nodename.as_ref().filter(|n| !n.is_empty()) {
            if let Err(Error::InvalidName { why, .. }) = crate::validate_node_name(n) {
                return Err(refused("ipam.nodename", format!("{n:?}"), why));
            }
        }
        let pool = PoolSpec::new(
            ipam.pool,
            ipam.block_size,
            ipam.strict_affinity,
            ipam.node_blocks.clone(),
        )
        .map_err(|e| match e {
            Error::BadSetting {
                setting,
                value,
                why,
            } => refused(&setting_path(&setting), value, why),
            other => CniError::new(code::INVALID_NETWORK_CONFIG, format!("ipam: {other}")),
        })?;
        let prev_result = podnet_cni_types::conf::prev_result(&raw)?;
        let valid_attachments = podnet_cni_types::conf::valid_attachments(&raw)?;
        Ok(NetConf {
            version,
            ipam,
            pool,
            prev_result,
            valid_attachments,
        })
    }

    /// The node this call runs for: `nodename` in the config, else `$NODENAME`, else the
    /// hostname.
    pub fn node(&self) -> Result<String, CniError> {
        if let Some(n) = self.ipam.nodename.as_ref().filter(|n| !n.is_empty()) {
            return Ok(n.clone());
        }
        if let Some(n) = std::env::var("NODENAME").ok().filter(|n| !n.is_empty()) {
            return Ok(n);
        }
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .ok()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| {
                CniError::new(
                    code::INVALID_NETWORK_CONFIG,
                    "no node name: set \"nodename\" in the ipam config or NODENAME",
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &str = r#"{"cniVersion":"1.0.0","name":"k8s-pod-network","type":"podnet",
      "ipam":{"type":"podnet-ipam","pool":"10.233.64.0/18","blockSize":24,"strictAffinity":false,
        "nodename":"sung-ubuntu04","datastore":{"type":"sqlite","path":"/tmp/x.db"},
        "nodeBlocks":{"sung-ubuntu04":["10.233.99.0/24"]}}}"#;

    #[test]
    fn reads_the_documented_config() {
        let c = NetConf::parse(SEED.as_bytes()).unwrap();
        assert_eq!(c.version, CniVersion::V1_0_0);
        assert_eq!(c.pool.block_size(), 24);
        assert_eq!(c.node().unwrap(), "sung-ubuntu04");
        assert_eq!(c.ipam.datastore, DatastoreConfig::sqlite("/tmp/x.db"));
        assert_eq!(c.pool.pinned_to("sung-ubuntu04").len(), 1);
    }

    #[test]
    fn defaults() {
        let c = NetConf::parse(
            br#"{"cniVersion":"0.3.1","ipam":{"type":"podnet-ipam","pool":"10.0.0.0/16"}}"#,
        )
        .unwrap();
        assert_eq!(c.pool.block_size(), 26);
        assert_eq!(c.ipam.datastore, DatastoreConfig::default());
        assert!(!c.pool.strict_affinity());
    }

    /// Each field with a bad value: the error is code 7 and names the path and the value.
    #[test]
    fn each_bad_field_is_code_7_naming_its_path_and_value() {
        let pool = r#""pool":"10.0.0.0/16""#;
        for (ipam, want) in [
            (r#"{"type":7}"#.to_string(), "ipam.type: 7: invalid type"),
            (
                r#"{"type":"podnet-ipam"}"#.into(),
                "ipam: missing field `pool`",
            ),
            (
                r#"{"type":"podnet-ipam","pool":"10.233.64.0/33"}"#.into(),
                r#"ipam.pool: "10.233.64.0/33": prefix length 33 is longer than 32"#,
            ),
            (
                r#"{"type":"podnet-ipam","pool":"banana"}"#.into(),
                r#"ipam.pool: "banana": no prefix length"#,
            ),
            (
                r#"{"type":"podnet-ipam","pool":"10.0.0.1/16"}"#.into(),
                r#"ipam.pool: "10.0.0.1/16": host bits are set"#,
            ),
            (
                format!(r#"{{"type":"podnet-ipam",{pool},"blockSize":19}}"#),
                "ipam.blockSize: 19: out of range",
            ),
            (
                r#"{"type":"podnet-ipam","pool":"10.0.0.0/24","blockSize":20}"#.to_string(),
                "ipam.blockSize: 20: a /20 block is larger than pool 10.0.0.0/24",
            ),
            (
                format!(r#"{{"type":"podnet-ipam",{pool},"blockSize":"24"}}"#),
                r#"ipam.blockSize: "24": invalid type"#,
            ),
            (
                format!(r#"{{"type":"podnet-ipam",{pool},"strictAffinity":"yes"}}"#),
                r#"ipam.strictAffinity: "yes": invalid type"#,
            ),
            (
                format!(r#"{{"type":"podnet-ipam",{pool},"nodename":"a b"}}"#),
                r#"ipam.nodename: "a b": it contains"#,
            ),
            (
                format!(r#"{{"type":"podnet-ipam",{pool},"blocksize":24}}"#),
                "ipam.blocksize: 24: unknown field `blocksize`",
            ),
            (
                format!(r#"{{"type":"podnet-ipam",{pool},"nodeBlocks":{{"n1":["10.0.0.0/99"]}}}}"#),
                r#"ipam.nodeBlocks.n1[0]: "10.0.0.0/99": prefix length 99"#,
            ),
            (
                format!(r#"{{"type":"podnet-ipam",{pool},"nodeBlocks":{{"n1":["10.1.0.0/26"]}}}}"#),
                r#"ipam.nodeBlocks.n1[0]: "10.1.0.0/26": not a /26 block of pool 10.0.0.0/16"#,
            ),
            (
                format!(
                    r#"{{"type":"podnet-ipam",{pool},"nodeBlocks":{{"a/b":["10.0.0.0/26"]}}}}"#
                ),
                r#"ipam.nodeBlocks.a/b: "a/b": not a node name"#,
            ),
            (
                format!(
                    r#"{{"type":"podnet-ipam",{pool},"nodeBlocks":{{"n1":["10.0.0.0/26"],"n2":["10.0.0.0/26"]}}}}"#
                ),
                r#"ipam.nodeBlocks.n2[0]: "10.0.0.0/26": also pinned to n1"#,
            ),
            (
                format!(r#"{{"type":"podnet-ipam",{pool},"datastore":{{"type":"zookeeper"}}}}"#),
                r#"ipam.datastore.type: "zookeeper": unknown variant `zookeeper`"#,
            ),
            (
                format!(
                    r#"{{"type":"podnet-ipam",{pool},"datastore":{{"type":"sqlite","busyTimeoutMs":-1}}}}"#
                ),
                "ipam.datastore",
            ),
            (
                format!(
                    r#"{{"type":"podnet-ipam",{pool},"datastore":{{"type":"etcd","endpoints":"x"}}}}"#
                ),
                "ipam.datastore",
            ),
        ] {
            let conf = format!(r#"{{"cniVersion":"1.0.0","ipam":{ipam}}}"#);
            let e = NetConf::parse(conf.as_bytes()).unwrap_err();
            assert_eq!(e.code, code::INVALID_NETWORK_CONFIG, "{ipam}: {e}");
            assert!(
                e.msg.starts_with(want),
                "{ipam}:\n  got  {}\n  want {want}",
                e.msg
            );
        }
        assert_eq!(
            NetConf::parse(br#"{"cniVersion":"1.0.0"}"#)
                .unwrap_err()
                .code,
            7
        );
    }
}
