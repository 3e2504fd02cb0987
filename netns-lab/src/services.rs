//! Services in a scenario: `kind: Service` manifests as Kubernetes writes them (ClusterIP with
//! a selector and ports, `clusterIP` given or allocated from the service range, headless with
//! `clusterIP: None`), settled and checked as the API server would ([`settle`]), and their
//! endpoints found among the running pods as the EndpointSlice controller would
//! ([`record`]). The `kubernetes` Service (default namespace, no selector) gets the
//! control-plane nodes, where the lab runs a stand-in API server.

use crate::scenario::{Metadata, PodManifest};
use anyhow::{bail, Result};
use ipnet::Ipv4Net;
use podnet_ipam::services::{ServicePortRecord, ServiceRecord};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceManifest {
    #[serde(rename = "apiVersion", default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    pub metadata: Metadata,
    pub spec: ServiceSpec,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub selector: BTreeMap<String, String>,
    #[serde(default)]
    pub ports: Vec<ServicePortSpec>,
    /// An address of the service range, `None` for headless, or absent to allocate one.
    #[serde(rename = "clusterIP", default, skip_serializing_if = "Option::is_none")]
    pub cluster_ip: Option<String>,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServicePortSpec {
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_port: Option<TargetPort>,
}

/// A number, or the name of a container port of the selected pods.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TargetPort {
    Number(u16),
    Name(String),
}

/// One port, checked: protocol `TCP` or `UDP`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettledPort {
    pub name: String,
    pub protocol: String,
    pub port: u16,
    pub target: TargetPort,
}

/// A Service as the API server would store it: its ClusterIP settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settled {
    pub namespace: String,
    pub name: String,
    /// `None`: headless.
    pub cluster_ip: Option<Ipv4Addr>,
    pub selector: BTreeMap<String, String>,
    pub ports: Vec<SettledPort>,
}

impl Settled {
    pub fn id(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// Checks every manifest and gives each its ClusterIP: the one it asks for (inside `range`,
/// not taken), or the lowest free address from the range's 10th on. Nothing is half-settled:
/// any refusal is an error naming the Service.
pub fn settle(manifests: &[ServiceManifest], range: Ipv4Net) -> Result<Vec<Settled>> {
    let mut taken: BTreeMap<Ipv4Addr, String> = BTreeMap::new();
    let mut out = Vec::new();
    for m in manifests {
        let id = format!("{}/{}", m.metadata.namespace, m.metadata.name);
        if !m.kind.is_empty() && m.kind != "Service" {
            bail!("Service {id}: kind is {:?}, not Service", m.kind);
        }
        if let Some(t) = m.spec.kind.as_deref().filter(|t| *t != "ClusterIP") {
            bail!("Service {id}: type {t} is not supported (ClusterIP and headless only)");
        }
        if out.iter().any(|s: &Settled| s.id() == id) {
            bail!("Service {id} appears twice");
        }
        let mut ports = Vec::new();
        for (i, p) in m.spec.ports.iter().enumerate() {
            let label = if p.name.is_empty() {
                format!("#{}", i + 1)
            } else {
                p.name.clone()
            };
            let Some(port) = p.port.filter(|n| *n != 0) else {
                bail!("Service {id}: port {label} has no number (ports[{i}].port)");
            };
            let protocol = p.protocol.clone().unwrap_or_else(|| "TCP".into());
            if protocol != "TCP" && protocol != "UDP" {
                bail!(
                    "Service {id}: port {label}: protocol {protocol} is not supported (TCP, UDP)"
                );
            }
            if ports
                .iter()
                .any(|q: &SettledPort| q.port == port && q.protocol == protocol)
            {
                bail!("Service {id}: port {port}/{protocol} appears twice");
            }
            ports.push(SettledPort {
                name: p.name.clone(),
                protocol,
                port,
                target: p.target_port.clone().unwrap_or(TargetPort::Number(port)),
            });
        }
        let cluster_ip = match m.spec.cluster_ip.as_deref() {
            Some("None") => None,
            Some(ip) => {
                let ip: Ipv4Addr = ip.parse().map_err(|_| {
                    anyhow::anyhow!("Service {id}: clusterIP {ip:?} is not an IPv4 address")
                })?;
                if !range.contains(&ip) || ip == range.network() || ip == range.broadcast() {
                    bail!("Service {id}: clusterIP {ip} is outside the service range {range}");
                }
                Some(ip)
            }
            None => None,
        };
        if let Some(ip) = cluster_ip {
            if let Some(other) = taken.insert(ip, id.clone()) {
                bail!("Service {id}: clusterIP {ip} is taken by Service {other}");
            }
        }
        out.push(Settled {
            namespace: m.metadata.namespace.clone(),
            name: m.metadata.name.clone(),
            cluster_ip,
            selector: m.spec.selector.clone(),
            ports,
        });
    }
    // Allocate only after every asked-for address is known, so order in the file is no matter.
    for (m, s) in manifests.iter().zip(out.iter_mut()) {
        if m.spec.cluster_ip.is_none() {
            let free = range
                .hosts()
                .skip(9)
                .find(|ip| !taken.contains_key(ip))
                .ok_or_else(|| {
                    anyhow::anyhow!("Service {}: the service range {range} is full", s.id())
                })?;
            taken.insert(free, s.id());
            s.cluster_ip = Some(free);
        }
    }
    Ok(out)
}

/// A running pod, as the endpoint search sees it.
pub struct RunningPod<'a> {
    pub manifest: &'a PodManifest,
    pub ip: Ipv4Addr,
}

/// The Service with its ready endpoints: pods of its namespace whose labels hold the
/// selector (a selector matching nothing is allowed: no endpoints); for `default/kubernetes`
/// without a selector, the control-plane nodes. A named target port takes each pod's
/// container port of that name, and a pod without one is no endpoint of that port (as in
/// Kubernetes). Each pod resolves the name itself: the record keeps the first pod's port and,
/// for the pods whose port of that name differs, theirs (as EndpointSlices do).
pub fn record(s: &Settled, pods: &[RunningPod], control_plane: &[Ipv4Addr]) -> ServiceRecord {
    let selected: Vec<&RunningPod> = if s.selector.is_empty() {
        Vec::new()
    } else {
        pods.iter()
            .filter(|p| p.manifest.metadata.namespace == s.namespace)
            .filter(|p| {
                s.selector
                    .iter()
                    .all(|(k, v)| p.manifest.metadata.labels.get(k) == Some(v))
            })
            .collect()
    };
    let api_server = s.selector.is_empty() && s.namespace == "default" && s.name == "kubernetes";
    let mut endpoints: Vec<Ipv4Addr> = if api_server {
        control_plane.to_vec()
    } else {
        selected.iter().map(|p| p.ip).collect()
    };
    let mut ports = Vec::new();
    for p in &s.ports {
        let mut endpoint_ports = BTreeMap::new();
        let target = match &p.target {
            TargetPort::Number(n) => Some(*n),
            TargetPort::Name(name) => {
                let each: Vec<(Ipv4Addr, u16)> = selected
                    .iter()
                    .filter_map(|pod| Some((pod.ip, named_port(pod.manifest, name)?)))
                    .collect();
                let first = each.first().map(|&(_, port)| port);
                endpoint_ports.extend(each.into_iter().filter(|&(_, port)| Some(port) != first));
                first
            }
        };
        if let TargetPort::Name(name) = &p.target {
            endpoints.retain(|ip| {
                selected
                    .iter()
                    .any(|pod| pod.ip == *ip && named_port(pod.manifest, name).is_some())
            });
        }
        ports.push(ServicePortRecord {
            name: p.name.clone(),
            protocol: p.protocol.clone(),
            port: p.port,
            target_port: target.unwrap_or(p.port),
            endpoint_ports,
        });
    }
    endpoints.sort();
    endpoints.dedup();
    ServiceRecord {
        namespace: s.namespace.clone(),
        name: s.name.clone(),
        cluster_ip: s.cluster_ip,
        ports,
        endpoints,
        selector: s.selector.clone(),
        created: crate::state::now(),
    }
}

fn named_port(m: &PodManifest, name: &str) -> Option<u16> {
    m.spec
        .containers
        .iter()
        .flat_map(|c| &c.ports)
        .find(|p| p.name.as_deref() == Some(name))
        .map(|p| p.container_port)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifests(yaml: &str) -> Vec<ServiceManifest> {
        serde_yaml::from_str(yaml).unwrap()
    }

    const RANGE: &str = "10.233.0.0/18";

    #[test]
    fn cluster_ips_are_kept_or_allocated_and_headless_has_none() {
        let s = settle(
            &manifests(
                "- {kind: Service, metadata: {name: web}, spec: {selector: {app: web}, ports: [{port: 80}]}}\n\
                 - {kind: Service, metadata: {name: kubernetes}, spec: {clusterIP: 10.233.0.10, ports: [{name: https, port: 443, targetPort: 6443}]}}\n\
                 - {kind: Service, metadata: {name: db}, spec: {clusterIP: None, selector: {app: db}, ports: [{port: 5432}]}}\n",
            ),
            RANGE.parse().unwrap(),
        )
        .unwrap();
        let ips: Vec<_> = s
            .iter()
            .map(|s| s.cluster_ip.map(|i| i.to_string()))
            .collect();
        assert_eq!(
            ips,
            [Some("10.233.0.11".into()), Some("10.233.0.10".into()), None],
            "the asked-for address is kept and skipped by allocation"
        );
        assert_eq!(
            s[0].ports[0].target,
            TargetPort::Number(80),
            "targetPort defaults to port"
        );
        assert_eq!(s[0].ports[0].protocol, "TCP");
    }

    #[test]
    fn bad_services_are_refused_with_a_reason() {
        for (yaml, why) in [
            ("- {metadata: {name: a}, spec: {clusterIP: 10.0.0.1, ports: [{port: 80}]}}", "outside the service range 10.233.0.0/18"),
            ("- {metadata: {name: a}, spec: {clusterIP: 10.233.0.5, ports: [{port: 80}]}}\n- {metadata: {name: b}, spec: {clusterIP: 10.233.0.5, ports: [{port: 80}]}}", "taken by Service default/a"),
            ("- {metadata: {name: a}, spec: {ports: [{name: http}]}}", "port http has no number"),
            ("- {metadata: {name: a}, spec: {ports: [{port: 80, protocol: SCTP}]}}", "protocol SCTP is not supported"),
            ("- {metadata: {name: a}, spec: {type: NodePort, ports: [{port: 80}]}}", "type NodePort is not supported"),
            ("- {metadata: {name: a}, spec: {ports: [{port: 80}]}}\n- {metadata: {name: a}, spec: {ports: [{port: 81}]}}", "appears twice"),
            ("- {metadata: {name: a}, spec: {clusterIP: nope, ports: [{port: 80}]}}", "not an IPv4 address"),
        ] {
            let e = settle(&manifests(yaml), RANGE.parse().unwrap()).unwrap_err();
            assert!(e.to_string().contains(why), "{why}: {e}");
        }
    }

    #[test]
    fn a_named_target_port_resolves_per_pod() {
        let pod = |name: &str, port: u16| -> PodManifest {
            serde_yaml::from_str(&format!(
                "metadata: {{name: {name}, labels: {{app: alt}}}}\nspec: {{containers: [{{name: c, ports: [{{containerPort: {port}, name: http-alt}}]}}]}}"
            ))
            .unwrap()
        };
        let (a, b, c) = (pod("a", 8080), pod("b", 9090), pod("c", 8080));
        let ip = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        let running = [
            RunningPod {
                manifest: &a,
                ip: ip("10.233.99.2"),
            },
            RunningPod {
                manifest: &b,
                ip: ip("10.233.78.1"),
            },
            RunningPod {
                manifest: &c,
                ip: ip("10.233.78.2"),
            },
        ];
        let s = settle(
            &manifests("- {metadata: {name: alt}, spec: {selector: {app: alt}, ports: [{port: 80, targetPort: http-alt}]}}"),
            RANGE.parse().unwrap(),
        )
        .unwrap();
        let r = record(&s[0], &running, &[]);
        let port = &r.ports[0];
        assert_eq!(port.target_port_of(ip("10.233.99.2")), 8080);
        assert_eq!(
            port.target_port_of(ip("10.233.78.1")),
            9090,
            "b names http-alt 9090"
        );
        assert_eq!(port.target_port_of(ip("10.233.78.2")), 8080);
        assert_eq!(
            port.endpoint_ports.len(),
            1,
            "only the pod that differs is listed"
        );
    }

    #[test]
    fn endpoints_are_the_running_pods_the_selector_matches() {
        let pod = |name: &str, app: &str, port: Option<&str>| -> PodManifest {
            serde_yaml::from_str(&format!(
                "metadata: {{name: {name}, labels: {{app: {app}}}}}\nspec: {{containers: [{{name: c, ports: [{{containerPort: 8080{}}}]}}]}}",
                port.map(|p| format!(", name: {p}")).unwrap_or_default()
            ))
            .unwrap()
        };
        let (a, b, c) = (
            pod("a", "web", Some("http")),
            pod("b", "web", None),
            pod("c", "db", Some("http")),
        );
        let running = [
            RunningPod {
                manifest: &a,
                ip: "10.233.99.2".parse().unwrap(),
            },
            RunningPod {
                manifest: &b,
                ip: "10.233.78.1".parse().unwrap(),
            },
            RunningPod {
                manifest: &c,
                ip: "10.233.78.2".parse().unwrap(),
            },
        ];
        let s = settle(
            &manifests("- {metadata: {name: web}, spec: {selector: {app: web}, ports: [{name: http, port: 80, targetPort: http}]}}\n- {metadata: {name: none}, spec: {selector: {app: nothing}, ports: [{port: 80}]}}\n- {metadata: {name: kubernetes}, spec: {ports: [{port: 443, targetPort: 6443}]}}"),
            RANGE.parse().unwrap(),
        )
        .unwrap();
        let cp = ["192.168.110.100".parse().unwrap()];
        let web = record(&s[0], &running, &cp);
        assert_eq!(
            web.endpoints,
            ["10.233.99.2".parse::<Ipv4Addr>().unwrap()],
            "b has no port named http"
        );
        assert_eq!(web.ports[0].target_port, 8080);
        assert!(
            record(&s[1], &running, &cp).endpoints.is_empty(),
            "a selector matching nothing: no endpoints"
        );
        assert_eq!(
            record(&s[2], &running, &cp).endpoints,
            cp,
            "the API server's Service: the control plane"
        );
    }
}
