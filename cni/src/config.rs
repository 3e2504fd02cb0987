//! The network config of the `podnet` plugin (one conflist entry), and what it inherits down
//! to an in-process `podnet-ipam`. Read through `podnet_cni_types::conf::field`, so every
//! refusal names the field's path and the value (`mtu: "big": invalid type ...`); the `ipam`
//! section is `podnet-ipam`'s to judge, in its own words (`ipam.pool: ...`).

use podnet_cni_types::conf::{field, refused};
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
        let r: Raw = field(&raw, "")?;
        let ipam = r
            .ipam
            .ok_or_else(|| bad("ipam: missing (the network config needs an \"ipam\" object)"))?;
        if !ipam.is_object() {
            return Err(refused("ipam", &ipam, "not an object"));
        }
        let ipam_type = match ipam.get("type") {
            Some(serde_json::Value::String(t)) if t.contains('/') => {
                return Err(refused(
                    "ipam.type",
                    &ipam["type"],
                    "a plugin name, not a path",
                ))
            }
            Some(serde_json::Value::String(t)) if !t.is_empty() => t.clone(),
            Some(other) => return Err(refused("ipam.type", other, "the name of an IPAM plugin")),
            None => return Err(bad("ipam.type: missing (the IPAM plugin to run)")),
        };
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

    /// Each field with a bad value: code 7, naming the path and the value.
    #[test]
    fn each_bad_field_is_code_7_naming_its_path_and_value() {
        let ipam = r#""ipam":{"type":"host-local"}"#;
        for (fields, want) in [
            (String::new(), "ipam: missing"),
            (r#""ipam":{}"#.into(), "ipam.type: missing"),
            (r#""ipam":{"type":""}"#.into(), r#"ipam.type: "": the name"#),
            (r#""ipam":{"type":3}"#.into(), "ipam.type: 3: the name"),
            (
                r#""ipam":{"type":"../../bin/sh"}"#.into(),
                r#"ipam.type: "../../bin/sh": a plugin name, not a path"#,
            ),
            (r#""ipam":"x""#.into(), r#"ipam: "x": not an object"#),
            (format!(r#""name":5,{ipam}"#), "name: 5: invalid type"),
            (
                format!(r#""encapsulation":"gre",{ipam}"#),
                r#"encapsulation: "gre": unknown variant `gre`"#,
            ),
            (
                format!(r#""mtu":"big",{ipam}"#),
                r#"mtu: "big": invalid type"#,
            ),
            (format!(r#""mtu":-1,{ipam}"#), "mtu: -1: invalid value"),
            (
                format!(r#""nodename":[1],{ipam}"#),
                "nodename: [1]: invalid type",
            ),
            (
                format!(r#""stateDir":false,{ipam}"#),
                "stateDir: false: invalid type",
            ),
            (
                format!(r#""datastore":{{"type":"zookeeper"}},{ipam}"#),
                r#"datastore.type: "zookeeper": unknown variant"#,
            ),
            (
                format!(r#""log":{{"lvl":"x"}},{ipam}"#),
                r#"log.lvl: "x": unknown field `lvl`"#,
            ),
            (
                format!(r#""log":{{"level":7}},{ipam}"#),
                "log.level: 7: invalid type",
            ),
            (
                format!(r#""log":{{"file":7}},{ipam}"#),
                "log.file: 7: invalid type",
            ),
        ] {
            let sep = if fields.is_empty() { "" } else { "," };
            let conf = format!(r#"{{"cniVersion":"1.0.0","type":"podnet"{sep}{fields}}}"#);
            let e = NetConf::parse(conf.as_bytes()).unwrap_err();
            assert_eq!(e.code, code::INVALID_NETWORK_CONFIG, "{conf}");
            assert!(
                e.msg.starts_with(want),
                "{conf}:\n  got  {}\n  want {want}",
                e.msg
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
