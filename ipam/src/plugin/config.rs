//! The network config as the IPAM plugin reads it: the `ipam` object, plus the top-level keys
//! that matter to IPAM (`cniVersion`, `prevResult`, `cni.dev/valid-attachments`).

use crate::pool::{PoolSpec, DEFAULT_BLOCK_SIZE};
use crate::store::DatastoreConfig;
use ipnet::Ipv4Net;
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
    pub pool: Ipv4Net,
    #[serde(default = "default_block_size")]
    pub block_size: u8,
    #[serde(default)]
    pub strict_affinity: bool,
    #[serde(default)]
    pub nodename: Option<String>,
    #[serde(default)]
    pub datastore: DatastoreConfig,
    #[serde(default)]
    pub node_blocks: BTreeMap<String, Vec<Ipv4Net>>,
}

fn default_block_size() -> u8 {
    DEFAULT_BLOCK_SIZE
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
        let bad = |msg: String| CniError::new(code::INVALID_NETWORK_CONFIG, msg);
        let ipam = raw
            .get("ipam")
            .ok_or_else(|| bad("network config has no \"ipam\" object".into()))?;
        let ipam = IpamConf::deserialize(ipam)
            .map_err(|e| bad(format!("invalid \"ipam\" config: {e}")))?;
        let pool = PoolSpec::new(
            ipam.pool,
            ipam.block_size,
            ipam.strict_affinity,
            ipam.node_blocks.clone(),
        )
        .map_err(|e| bad(format!("invalid \"ipam\" config: {e}")))?;
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

    #[test]
    fn bad_fields_are_code_7() {
        for ipam in [
            r#"{"type":"podnet-ipam"}"#,
            r#"{"type":"podnet-ipam","pool":"10.0.0.0/33"}"#,
            r#"{"type":"podnet-ipam","pool":"banana"}"#,
            r#"{"type":"podnet-ipam","pool":"10.0.0.0/16","blockSize":19}"#,
            r#"{"type":"podnet-ipam","pool":"10.0.0.0/16","blockSize":"24"}"#,
            r#"{"type":"podnet-ipam","pool":"10.0.0.1/16"}"#,
            r#"{"type":"podnet-ipam","pool":"10.0.0.0/16","blocksize":24}"#,
            r#"{"type":"podnet-ipam","pool":"10.0.0.0/16","datastore":{"type":"zookeeper"}}"#,
        ] {
            let conf = format!(r#"{{"cniVersion":"1.0.0","ipam":{ipam}}}"#);
            let e = NetConf::parse(conf.as_bytes()).unwrap_err();
            assert_eq!(e.code, code::INVALID_NETWORK_CONFIG, "{ipam}: {e}");
        }
        assert_eq!(
            NetConf::parse(br#"{"cniVersion":"1.0.0"}"#)
                .unwrap_err()
                .code,
            7
        );
    }
}
