//! The CNI success result, held version-neutral and written out in the version a call asked for
//! (0.3.x and 0.4.0 results carry `ips[].version`; 1.x results do not).

use crate::version::CniVersion;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// A result (or a `prevResult`) of any supported version.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CniResult {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<Interface>,
    #[serde(default)]
    pub ips: Vec<IpConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
    #[serde(default, skip_serializing_if = "Dns::is_empty")]
    pub dns: Dns,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpConfig {
    pub address: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    /// Index into `interfaces`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub dst: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<IpAddr>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dns {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

impl Dns {
    pub fn is_empty(&self) -> bool {
        *self == Dns::default()
    }
}

impl CniResult {
    /// The result as JSON for `version`, with `cniVersion` set.
    pub fn to_json(&self, version: CniVersion) -> serde_json::Value {
        let mut v = serde_json::to_value(self).expect("a CNI result always serializes");
        let obj = v.as_object_mut().expect("a CNI result is an object");
        obj.insert("cniVersion".into(), version.as_str().into());
        if version.is_legacy() {
            if let Some(ips) = obj.get_mut("ips").and_then(|i| i.as_array_mut()) {
                for ip in ips {
                    let family = match ip["address"].as_str() {
                        Some(a) if a.contains(':') => "6",
                        _ => "4",
                    };
                    ip.as_object_mut()
                        .expect("an ip entry is an object")
                        .insert("version".into(), family.into());
                }
            }
        }
        if version < CniVersion::V1_1_0 {
            if let Some(ifs) = obj.get_mut("interfaces").and_then(|i| i.as_array_mut()) {
                for i in ifs {
                    i.as_object_mut()
                        .expect("an interface is an object")
                        .remove("mtu");
                }
            }
        }
        v
    }

    /// Reads a result of any supported version (`ips[].version` and unknown fields ignored).
    pub fn from_json(v: &serde_json::Value) -> Result<CniResult, serde_json::Error> {
        CniResult::deserialize(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> CniResult {
        CniResult {
            interfaces: vec![Interface {
                name: "eth0".into(),
                mac: "aa:bb:cc:dd:ee:ff".into(),
                mtu: Some(1480),
                sandbox: Some("/run/netns/x".into()),
            }],
            ips: vec![IpConfig {
                address: "10.233.99.1/32".parse().unwrap(),
                gateway: None,
                interface: Some(0),
            }],
            ..Default::default()
        }
    }

    #[test]
    fn legacy_results_carry_the_ip_version() {
        for v in [CniVersion::V0_3_0, CniVersion::V0_3_1, CniVersion::V0_4_0] {
            let j = sample().to_json(v);
            assert_eq!(j["cniVersion"], v.as_str());
            assert_eq!(j["ips"][0]["version"], "4");
            assert!(j["interfaces"][0].get("mtu").is_none());
        }
        let j = sample().to_json(CniVersion::V1_0_0);
        assert!(j["ips"][0].get("version").is_none());
        assert!(j["interfaces"][0].get("mtu").is_none());
        assert_eq!(
            sample().to_json(CniVersion::V1_1_0)["interfaces"][0]["mtu"],
            1480
        );
    }

    #[test]
    fn round_trips_through_every_version() {
        for v in CniVersion::ALL {
            let back = CniResult::from_json(&sample().to_json(v)).unwrap();
            assert_eq!(back.ips, sample().ips, "{v}");
        }
    }

    #[test]
    fn ipam_result_has_no_interfaces_key() {
        let r = CniResult {
            ips: vec![IpConfig {
                address: "10.0.0.1/32".parse().unwrap(),
                gateway: None,
                interface: None,
            }],
            ..Default::default()
        };
        assert_eq!(
            r.to_json(CniVersion::V1_0_0),
            json!({"cniVersion":"1.0.0","ips":[{"address":"10.0.0.1/32"}]})
        );
    }
}
