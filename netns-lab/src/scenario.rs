//! Scenarios: the cluster a lab builds (nodes, fabric, pool, encapsulation, pods as Kubernetes
//! Pod manifests). YAML, read with `serde_yaml`; the seed's cluster is built in, and
//! `generated` makes N nodes with M pods each.

use crate::pod_files::{DnsConfig, DnsPolicy, HostAlias};
use anyhow::{bail, Context, Result};
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::net::Ipv4Addr;
use std::path::Path;

/// The built-in seed scenario and the manifests it names, as shipped in `scenarios/`.
const SEED: &str = include_str!("../scenarios/seed.yaml");
const SEED_FILES: &[(&str, &str)] = &[
    (
        "seed/ubuntu.yaml",
        include_str!("../scenarios/seed/ubuntu.yaml"),
    ),
    (
        "seed/multi-con.yaml",
        include_str!("../scenarios/seed/multi-con.yaml"),
    ),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Encap {
    Auto,
    Ipip,
    Vxlan,
    None,
}

impl Encap {
    pub fn as_str(self) -> &'static str {
        match self {
            Encap::Auto => "auto",
            Encap::Ipip => "ipip",
            Encap::Vxlan => "vxlan",
            Encap::None => "none",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Pool {
    pub cidr: Ipv4Net,
    #[serde(default = "default_block_size")]
    pub block_size: u8,
    /// Masquerade the pool's traffic to the outside (Calico's `natOutgoing`, on by default).
    #[serde(default = "yes")]
    pub nat_outgoing: bool,
}

fn yes() -> bool {
    true
}

/// The lab's stand-in for the internet: an `upstream` router namespace behind the fabric's
/// gateway (the provider's router, with no route to the pod pool), and an `internet`
/// namespace behind it holding hosts that answer ping and HTTP, and a resolver that answers
/// their names. Documentation addresses only (RFC 5737).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Outside {
    /// The upstream router's address on the outside link, with the link's prefix.
    pub router: Ipv4Net,
    /// The link between the fabric's gateway (first address) and the upstream router
    /// (second address).
    #[serde(default = "default_transit")]
    pub transit: Ipv4Net,
    /// A DNS server on the outside link answering the hosts' names (none if not given).
    #[serde(default)]
    pub resolver: Option<Ipv4Addr>,
    pub hosts: Vec<OutsideHost>,
}

impl Outside {
    /// The fabric's address on the transit link, and the upstream router's.
    pub fn transit_ends(&self) -> (Ipv4Addr, Ipv4Addr) {
        let mut hosts = self.transit.hosts();
        let first = hosts.next().expect("validated: room for two");
        (first, hosts.next().expect("validated: room for two"))
    }
}

fn default_transit() -> Ipv4Net {
    "192.0.2.0/30".parse().expect("literal")
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutsideHost {
    pub name: String,
    pub ip: Ipv4Addr,
}

/// The RFC 5737 documentation networks: the only addresses the lab's outside world may use.
pub const DOCUMENTATION_NETS: [&str; 3] = ["192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24"];

/// Unless a scenario says otherwise: 203.0.113.1 routes to www.example.com at 203.0.113.10,
/// and the resolver at 203.0.113.53 knows its name.
pub fn default_outside() -> Option<Outside> {
    Some(Outside {
        router: "203.0.113.1/24".parse().expect("literal"),
        transit: default_transit(),
        resolver: Some("203.0.113.53".parse().expect("literal")),
        hosts: vec![OutsideHost {
            name: "www.example.com".into(),
            ip: "203.0.113.10".parse().expect("literal"),
        }],
    })
}

fn default_block_size() -> u8 {
    26
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Node {
    pub name: String,
    pub ip: Ipv4Addr,
    /// The block pinned to this node (like a podCIDR); optional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block: Option<Ipv4Net>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// The segment (a rack's L2 network) the node is cabled to; the fabric when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment: Option<String>,
    /// The node's own BGP AS (BGP routing); the cluster's when absent.
    #[serde(rename = "as", default, skip_serializing_if = "Option::is_none")]
    pub as_number: Option<u32>,
}

/// Another L2 network beside the fabric (a rack): a bridge of its own, joined to the others only
/// by routers.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Segment {
    pub name: String,
    pub subnet: Ipv4Net,
}

/// A router namespace running BIRD (a rack's top-of-rack router): one interface per network
/// it is on (`fabric` or a segment's name), forwarding on. It peers by eBGP with the nodes on
/// its segments and with the routers it shares a network with, keeping BGP next hops.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Router {
    pub name: String,
    #[serde(rename = "as")]
    pub as_number: u32,
    /// Network name -> the router's address there.
    pub interfaces: BTreeMap<String, Ipv4Addr>,
}

/// The cluster's BGP settings the lab writes before the agents start.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BgpScenario {
    #[serde(default = "default_true")]
    pub node_to_node_mesh: bool,
    /// Nodes that are route reflectors (one cluster id); with the mesh off, every other node
    /// peers with them only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub route_reflectors: Vec<String>,
}

/// Generated labs of more nodes than this route through two route reflectors (node1, node2)
/// unless `--mesh`: a full mesh has n(n-1)/2 sessions (4,950 at 100 nodes, every BIRD keeping
/// n-1), and on one small machine their start-up is what `up` waits for. Calico's own advice
/// is reflectors from about 100 nodes; at 50 a mesh is still 1,225 sessions.
pub const REFLECTORS_ABOVE: usize = 50;

/// The cluster id the lab gives its route reflectors.
pub const REFLECTOR_CLUSTER_ID: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 1);

fn default_true() -> bool {
    true
}

/// The name routers use for the fabric in `interfaces`.
pub const FABRIC: &str = "fabric";

/// A Kubernetes Pod manifest: the fields the lab uses; everything else (volumes,
/// imagePullPolicy...) is accepted and ignored, so real manifests load as they are.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PodManifest {
    #[serde(rename = "apiVersion", default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    pub metadata: Metadata,
    pub spec: PodSpec,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Metadata {
    pub name: String,
    #[serde(default = "default_namespace")]
    pub namespace: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

fn default_namespace() -> String {
    "default".into()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PodSpec {
    pub containers: Vec<Container>,
    /// The node it runs on (for `apply -f`; a scenario's pod entries say `node`).
    #[serde(rename = "nodeName", default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    #[serde(rename = "dnsPolicy", default)]
    pub dns_policy: DnsPolicy,
    #[serde(rename = "dnsConfig", default, skip_serializing_if = "Option::is_none")]
    pub dns_config: Option<DnsConfig>,
    #[serde(rename = "hostAliases", default, skip_serializing_if = "Vec::is_empty")]
    pub host_aliases: Vec<HostAlias>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Container {
    pub name: String,
    #[serde(default)]
    pub image: String,
    #[serde(default)]
    pub command: Vec<String>,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub ports: Vec<Port>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Port {
    #[serde(rename = "containerPort")]
    pub container_port: u16,
    /// What a Service's named `targetPort` refers to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// A pod of the scenario: its manifest (inline or from a file) and its node.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodEntry {
    pub node: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<PodManifest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest_file: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    pub fabric: Ipv4Net,
    /// The fabric's gateway (an address on the fabric bridge), every node's default route.
    pub gateway: Ipv4Addr,
    #[serde(default = "default_encap")]
    pub encapsulation: Encap,
    pub pool: Pool,
    pub nodes: Vec<Node>,
    #[serde(default)]
    pub pods: Vec<PodEntry>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub segments: Vec<Segment>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routers: Vec<Router>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bgp: Option<BgpScenario>,
    /// No encapsulation between nodes of one subnet (`--cross-subnet` of the agents).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cross_subnet: bool,
    /// The outside world behind the gateway (`outside: null` for none).
    #[serde(default = "default_outside")]
    pub outside: Option<Outside>,
    /// Where ClusterIPs come from (kubespray's `kube_service_addresses`).
    #[serde(rename = "serviceCidr", default = "default_service_cidr")]
    pub service_cidr: Ipv4Net,
    /// Kubernetes Service manifests, as written.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<crate::services::ServiceManifest>,
}

fn default_service_cidr() -> Ipv4Net {
    "10.233.0.0/18".parse().expect("literal")
}

fn default_encap() -> Encap {
    Encap::Auto
}

/// A pod ready to build: manifest resolved.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pod {
    pub node: String,
    pub manifest: PodManifest,
}

impl Scenario {
    /// The seed's cluster.
    pub fn seed() -> Scenario {
        Scenario::parse(SEED, |f| {
            SEED_FILES
                .iter()
                .find(|(name, _)| *name == f)
                .map(|(_, text)| text.to_string())
                .with_context(|| format!("no built-in manifest {f}"))
        })
        .expect("the built-in seed scenario is valid")
    }

    /// Reads a scenario file; `manifestFile`s are relative to its folder.
    pub fn load(path: &Path) -> Result<Scenario> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("read scenario {}", path.display()))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        Scenario::parse(&text, |f| {
            let p = dir.join(f);
            std::fs::read_to_string(&p).with_context(|| format!("read manifest {}", p.display()))
        })
        .with_context(|| format!("scenario {}", path.display()))
    }

    /// Parses and validates; `read` fetches `manifestFile`s (which are resolved inline).
    pub fn parse(text: &str, read: impl Fn(&str) -> Result<String>) -> Result<Scenario> {
        let mut s: Scenario = serde_yaml::from_str(text).context("parse the scenario YAML")?;
        for p in &mut s.pods {
            if let Some(f) = p.manifest_file.take() {
                if p.manifest.is_some() {
                    bail!("a pod on {} has both manifest and manifestFile", p.node);
                }
                let m: PodManifest = serde_yaml::from_str(&read(&f)?)
                    .with_context(|| format!("parse manifest {f}"))?;
                p.manifest = Some(m);
            }
        }
        s.validate()?;
        Ok(s)
    }

    /// `n` nodes `node1..` on 10.0.0.0/16 (fabric) with `m` pods each, VXLAN unless told.
    pub fn generated(n: usize, m: usize) -> Result<Scenario> {
        if n == 0 || n > 4000 {
            bail!("--nodes must be 1..=4000");
        }
        let nodes = (0..n)
            .map(|i| Node {
                name: format!("node{}", i + 1),
                ip: Ipv4Addr::new(10, 0, (1 + i / 250) as u8, (i % 250 + 1) as u8),
                block: None,
                roles: Vec::new(),
                segment: None,
                as_number: None,
            })
            .collect();
        let pods = (0..n)
            .flat_map(|i| {
                (0..m).map(move |j| PodEntry {
                    node: format!("node{}", i + 1),
                    manifest: Some(PodManifest {
                        api_version: "v1".into(),
                        kind: "Pod".into(),
                        metadata: Metadata {
                            name: format!("pod-{}-{}", i + 1, j + 1),
                            namespace: default_namespace(),
                            labels: BTreeMap::new(),
                        },
                        spec: PodSpec {
                            containers: vec![Container {
                                name: "app".into(),
                                image: "busybox".into(),
                                command: vec!["/bin/sleep".into(), "infinity".into()],
                                args: vec![],
                                ports: vec![],
                            }],
                            node_name: None,
                            dns_policy: DnsPolicy::default(),
                            dns_config: None,
                            host_aliases: vec![],
                        },
                    }),
                    manifest_file: None,
                })
            })
            .collect();
        let s = Scenario {
            name: format!("gen{n}x{m}"),
            fabric: "10.0.0.0/16".parse()?,
            gateway: "10.0.0.254".parse()?,
            encapsulation: Encap::Auto,
            pool: Pool {
                cidr: "10.64.0.0/12".parse()?,
                block_size: 26,
                nat_outgoing: true,
            },
            nodes,
            pods,
            segments: Vec::new(),
            routers: Vec::new(),
            bgp: (n > REFLECTORS_ABOVE).then(|| BgpScenario {
                node_to_node_mesh: false,
                route_reflectors: vec!["node1".into(), "node2".into()],
            }),
            cross_subnet: false,
            outside: None,
            service_cidr: default_service_cidr(),
            services: Vec::new(),
        };
        s.validate()?;
        Ok(s)
    }

    /// The subnet of a network (`fabric` or a segment).
    pub fn subnet(&self, network: &str) -> Option<Ipv4Net> {
        if network == FABRIC {
            return Some(self.fabric);
        }
        self.segments
            .iter()
            .find(|s| s.name == network)
            .map(|s| s.subnet)
    }

    /// The network a node is on.
    pub fn network_of<'a>(&'a self, node: &'a Node) -> &'a str {
        node.segment.as_deref().unwrap_or(FABRIC)
    }

    /// A node's subnet and default gateway: the fabric's gateway, or its segment's router.
    pub fn uplink_of(&self, node: &Node) -> (Ipv4Net, Ipv4Addr) {
        let net = self.network_of(node);
        let subnet = self.subnet(net).expect("validated");
        let gateway = match node.segment {
            None => self.gateway,
            Some(_) => self
                .routers
                .iter()
                .find_map(|r| r.interfaces.get(net).copied())
                .expect("validated: every segment has a router"),
        };
        (subnet, gateway)
    }

    /// The routers a node peers with: those on its segment (none on the fabric).
    pub fn routers_of<'a>(
        &'a self,
        node: &'a Node,
    ) -> impl Iterator<Item = (&'a Router, Ipv4Addr)> {
        let net = node.segment.as_deref();
        self.routers
            .iter()
            .filter_map(move |r| net.and_then(|n| r.interfaces.get(n).map(|ip| (r, *ip))))
    }

    pub fn pods(&self) -> Vec<Pod> {
        self.pods
            .iter()
            .map(|p| Pod {
                node: p.node.clone(),
                manifest: p.manifest.clone().expect("resolved at parse"),
            })
            .collect()
    }

    /// Every rule a scenario (or a running lab after `apply`) keeps.
    pub fn validate(&self) -> Result<()> {
        valid_name("lab name", &self.name)?;
        if let Some(o) = &self.outside {
            let doc: Vec<Ipv4Net> = DOCUMENTATION_NETS
                .iter()
                .map(|n| n.parse().expect("literal"))
                .collect();
            let documented = |ip: &Ipv4Addr| doc.iter().any(|n| n.contains(ip));
            if o.transit.prefix_len() > 30
                || o.transit.contains(&o.router.addr())
                || o.router.contains(&o.transit.network())
            {
                bail!("outside transit {}: needs two addresses (/30 or wider) apart from the outside link {}", o.transit, o.router.trunc());
            }
            let (near, far) = o.transit_ends();
            for (what, ip) in [("transit link", near), ("transit link", far)] {
                if !documented(&ip) {
                    bail!("{what} {ip} is not a documentation address (RFC 5737: {}): the lab never uses real public addresses", DOCUMENTATION_NETS.join(", "));
                }
            }
            let mut taken = HashSet::from([o.router.addr()]);
            for (what, ip) in o
                .hosts
                .iter()
                .map(|h| ("outside host", h.ip))
                .chain(o.resolver.map(|r| ("outside resolver", r)))
            {
                if !taken.insert(ip) {
                    bail!("{what} {ip}: the address is taken on the outside link");
                }
            }
            for (what, ip) in std::iter::once(("outside router", o.router.addr()))
                .chain(o.hosts.iter().map(|h| ("outside host", h.ip)))
                .chain(o.resolver.map(|r| ("outside resolver", r)))
            {
                if !documented(&ip) {
                    bail!("{what} {ip} is not a documentation address (RFC 5737: {}): the lab never uses real public addresses", DOCUMENTATION_NETS.join(", "));
                }
                if !o.router.contains(&ip) {
                    bail!(
                        "{what} {ip} is outside the outside link {}",
                        o.router.trunc()
                    );
                }
            }
            if o.hosts.is_empty() {
                bail!("outside: give at least one host (or `outside: null`)");
            }
            let inside = std::iter::once(("fabric", self.fabric.trunc()))
                .chain(std::iter::once(("pool", self.pool.cidr)))
                .chain(self.segments.iter().map(|s| ("segment", s.subnet.trunc())));
            for (what, net) in inside {
                for outside in [o.router.trunc(), o.transit] {
                    if net.contains(&outside.network()) || outside.contains(&net.network()) {
                        bail!("outside network {outside} overlaps the {what} {net}");
                    }
                }
            }
        }
        crate::services::settle(&self.services, self.service_cidr)?;
        if !self.fabric.contains(&self.gateway) {
            bail!("gateway {} is not in fabric {}", self.gateway, self.fabric);
        }
        let mut names = HashSet::new();
        let mut ips = HashSet::from([self.gateway]);
        let mut blocks: BTreeMap<Ipv4Net, &str> = BTreeMap::new();
        for n in &self.nodes {
            valid_name("node name", &n.name)?;
            if !names.insert(n.name.as_str()) {
                bail!("node {} appears twice", n.name);
            }
            let net = self.network_of(n);
            let subnet = self
                .subnet(net)
                .with_context(|| format!("node {}: no segment {net}", n.name))?;
            if !subnet.contains(&n.ip) || !ips.insert(n.ip) {
                bail!(
                    "node {}: address {} is outside {} {subnet} or taken",
                    n.name,
                    n.ip,
                    if n.segment.is_some() {
                        "segment"
                    } else {
                        "fabric"
                    },
                );
            }
            if n.as_number == Some(0) {
                bail!("node {}: AS 0 is reserved", n.name);
            }
            if let Some(b) = n.block {
                if !self.pool.cidr.contains(&b)
                    || b.prefix_len() != self.pool.block_size
                    || blocks.insert(b, &n.name).is_some()
                {
                    bail!(
                        "node {}: block {b} is not a free /{} block of pool {}",
                        n.name,
                        self.pool.block_size,
                        self.pool.cidr
                    );
                }
            }
        }
        if self.nodes.is_empty() {
            bail!("a scenario needs at least one node");
        }
        self.validate_networks(&mut names, &mut ips)?;
        for rr in self.bgp.iter().flat_map(|b| &b.route_reflectors) {
            if !self.nodes.iter().any(|n| &n.name == rr) {
                bail!("route reflector {rr} is not a node of the scenario");
            }
        }
        let mut pods = HashSet::new();
        for p in &self.pods {
            let m = p
                .manifest
                .as_ref()
                .context("a pod has neither manifest nor manifestFile")?;
            if !names.contains(p.node.as_str()) {
                bail!(
                    "pod {} is placed on unknown node {}",
                    m.metadata.name,
                    p.node
                );
            }
            if !m.kind.is_empty() && m.kind != "Pod" {
                bail!("{}: kind {} is not Pod", m.metadata.name, m.kind);
            }
            valid_name("pod name", &m.metadata.name)?;
            if names.contains(m.metadata.name.as_str()) || !pods.insert(m.metadata.name.as_str()) {
                bail!(
                    "pod name {} is used twice (pods and nodes share the namespace names)",
                    m.metadata.name
                );
            }
            if m.spec.containers.is_empty() {
                bail!("pod {} has no containers", m.metadata.name);
            }
            if m.spec.node_name.as_ref().is_some_and(|n| *n != p.node) {
                bail!(
                    "pod {}: spec.nodeName {} but the scenario places it on {}",
                    m.metadata.name,
                    m.spec.node_name.as_deref().unwrap_or(""),
                    p.node
                );
            }
            crate::pod_files::validate(m.spec.dns_policy, m.spec.dns_config.as_ref())
                .with_context(|| format!("pod {}", m.metadata.name))?;
        }
        Ok(())
    }
}

impl Scenario {
    /// Segments apart from the fabric and each other, each with a router; routers on known
    /// networks with addresses inside them; names not taken by nodes.
    fn validate_networks<'a>(
        &'a self,
        names: &mut HashSet<&'a str>,
        ips: &mut HashSet<Ipv4Addr>,
    ) -> Result<()> {
        let mut nets = vec![(FABRIC, self.fabric)];
        for seg in &self.segments {
            valid_name("segment name", &seg.name)?;
            if seg.name.len() > 12 {
                bail!(
                    "segment name {:?} is longer than 12 characters (it names a bridge)",
                    seg.name
                );
            }
            if let Some((other, _)) = nets.iter().find(|(n, net)| {
                *n == seg.name
                    || net.contains(&seg.subnet.network())
                    || seg.subnet.contains(&net.network())
            }) {
                bail!(
                    "segment {} overlaps {other} (names and subnets must be distinct)",
                    seg.name
                );
            }
            nets.push((seg.name.as_str(), seg.subnet));
        }
        for r in &self.routers {
            valid_name("router name", &r.name)?;
            if !names.insert(r.name.as_str()) {
                bail!(
                    "router name {} is taken by a node or another router",
                    r.name
                );
            }
            if r.as_number == 0 {
                bail!("router {}: AS 0 is reserved", r.name);
            }
            if r.interfaces.is_empty() {
                bail!("router {} has no interfaces", r.name);
            }
            for (net, ip) in &r.interfaces {
                let subnet = self
                    .subnet(net)
                    .with_context(|| format!("router {}: no network {net}", r.name))?;
                if !subnet.contains(ip) || !ips.insert(*ip) {
                    bail!(
                        "router {}: address {ip} is outside {net} {subnet} or taken",
                        r.name
                    );
                }
            }
        }
        for seg in &self.segments {
            if !self
                .routers
                .iter()
                .any(|r| r.interfaces.contains_key(&seg.name))
            {
                bail!(
                    "segment {} has no router: its nodes could reach nothing",
                    seg.name
                );
            }
        }
        Ok(())
    }
}

/// Names become namespace names under /run/netns: DNS-label-like, at most 40 characters.
fn valid_name(what: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 40
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && !name.starts_with(['-', '.']);
    if !ok {
        bail!("{what} {name:?} must be 1-40 characters of a-z, 0-9, '-' and '.'");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_loads_with_its_manifests_as_they_are() {
        let s = Scenario::seed();
        assert_eq!(s.nodes.len(), 5);
        assert_eq!(s.pool.cidr.to_string(), "10.233.64.0/18");
        let pods = s.pods();
        let multi = pods
            .iter()
            .find(|p| p.manifest.metadata.name == "multi-container")
            .unwrap();
        assert_eq!(multi.node, "sung-ubuntu05");
        let names: Vec<_> = multi
            .manifest
            .spec
            .containers
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(names, ["ubuntu", "nginx"]);
        assert_eq!(
            multi.manifest.spec.containers[1].ports[0].container_port,
            80
        );
        let ubuntu = pods
            .iter()
            .find(|p| p.manifest.metadata.name == "ubuntu-test")
            .unwrap();
        assert_eq!(
            ubuntu.manifest.spec.containers[0].command,
            ["/bin/sleep", "3650d"]
        );
        assert_eq!(ubuntu.manifest.metadata.namespace, "default");
    }

    #[test]
    fn the_shipped_file_is_the_built_in_one() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/seed.yaml");
        let s = Scenario::load(&dir).unwrap();
        assert_eq!(
            serde_json::to_value(&s).unwrap(),
            serde_json::to_value(Scenario::seed()).unwrap()
        );
    }

    #[test]
    fn racks_need_routers_and_addresses_inside_their_networks() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/two-racks.yaml");
        let base = std::fs::read_to_string(&path).unwrap();
        let good = Scenario::parse(&base, |_| unreachable!()).unwrap();
        let a = good.nodes.iter().find(|n| n.name == "rack2-a").unwrap();
        assert_eq!(
            good.uplink_of(a),
            (
                "10.10.2.0/24".parse().unwrap(),
                "10.10.2.1".parse().unwrap()
            )
        );
        assert_eq!(
            good.routers_of(a)
                .map(|(r, _)| r.name.as_str())
                .collect::<Vec<_>>(),
            ["tor2"]
        );
        for (bad, why) in [
            (
                base.replace(
                    "ip: 10.10.2.11, segment: rack2",
                    "ip: 10.10.1.99, segment: rack2",
                ),
                "outside segment",
            ),
            (
                base.replace("segment: rack2, as: 65121", "segment: rack9, as: 65121"),
                "no segment rack9",
            ),
            (
                base.replace(", rack2: 10.10.2.1}", "}"),
                "segment rack2 has no router",
            ),
            (
                base.replace("rack1: 10.10.1.1}", "rack1: 10.10.2.77}"),
                "outside rack1",
            ),
            (
                base.replace("subnet: 10.10.2.0/24", "subnet: 10.10.0.0/16"),
                "overlaps",
            ),
            (base.replace("name: tor2", "name: rack2-b"), "taken"),
        ] {
            let e = Scenario::parse(&bad, |_| unreachable!()).unwrap_err();
            assert!(format!("{e:#}").contains(why), "{why}: {e:#}");
        }
    }

    #[test]
    fn generated_scenarios() {
        let s = Scenario::generated(100, 10).unwrap();
        assert_eq!((s.nodes.len(), s.pods.len()), (100, 1000));
        let bgp = s.bgp.as_ref().expect("100 nodes: reflectors");
        assert!(!bgp.node_to_node_mesh);
        assert_eq!(bgp.route_reflectors, ["node1", "node2"]);
        s.validate()
            .expect("a generated lab with reflectors is valid");
        assert!(Scenario::generated(REFLECTORS_ABOVE, 1)
            .unwrap()
            .bgp
            .is_none());
        assert!(Scenario::generated(0, 1).is_err());
    }

    #[test]
    fn bad_scenarios_are_refused_with_a_reason() {
        let base = SEED.to_string();
        let read = |_: &str| Ok(include_str!("../scenarios/seed/ubuntu.yaml").to_string());
        for (bad, why) in [
            (
                base.replace(
                    "node: sung-ubuntu05\n    manifestFile",
                    "node: nowhere\n    manifestFile",
                ),
                "unknown node",
            ),
            (base.replace("192.168.110.101", "192.168.110.100"), "taken"),
            (base.replace("10.233.91.0/24", "10.233.99.0/24"), "free"),
            (
                base.replace("gateway: 192.168.0.1", "gateway: 10.0.0.1"),
                "gateway",
            ),
            (base.replace("name: seed", "name: Seed!"), "lab name"),
        ] {
            let e = Scenario::parse(&bad, read).unwrap_err();
            assert!(format!("{e:#}").contains(why), "{why}: {e:#}");
        }
    }

    #[test]
    fn the_outside_world_uses_documentation_addresses_apart_from_the_cluster() {
        let read = |f: &str| {
            SEED_FILES
                .iter()
                .find(|(name, _)| *name == f)
                .map(|(_, text)| text.to_string())
                .context("no such manifest")
        };
        let with = |outside: &str| format!("{SEED}\noutside: {outside}\n");
        let good = with("{router: 198.51.100.1/24, resolver: 198.51.100.53, hosts: [{name: a.example, ip: 198.51.100.9}]}");
        let s = Scenario::parse(&good, read).unwrap();
        let o = s.outside.unwrap();
        assert_eq!(
            o.transit_ends(),
            ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap())
        );
        assert_eq!(o.resolver, Some("198.51.100.53".parse().unwrap()));
        for (bad, why) in [
            ("{router: 198.51.100.1/24, transit: 10.1.0.0/30, hosts: [{name: a, ip: 198.51.100.9}]}", "not a documentation address"),
            ("{router: 198.51.100.1/24, transit: 192.0.2.0/31, hosts: [{name: a, ip: 198.51.100.9}]}", "needs two addresses"),
            ("{router: 198.51.100.1/24, transit: 198.51.100.0/30, hosts: [{name: a, ip: 198.51.100.9}]}", "apart from the outside link"),
            ("{router: 198.51.100.1/24, resolver: 198.51.100.9, hosts: [{name: a, ip: 198.51.100.9}]}", "taken"),
            ("{router: 198.51.100.1/24, resolver: 8.8.8.8, hosts: [{name: a, ip: 198.51.100.9}]}", "not a documentation address"),
        ] {
            let e = Scenario::parse(&with(bad), read).unwrap_err();
            assert!(format!("{e:#}").contains(why), "{why}: {e:#}");
        }
        let overlapping = with("{router: 198.51.100.1/24, hosts: [{name: a, ip: 198.51.100.9}]}")
            .replace("192.168.110.", "198.51.100.")
            .replace("192.168.0.0/16", "198.51.0.0/16")
            .replace("192.168.0.1", "198.51.0.1");
        let e = Scenario::parse(&overlapping, read).unwrap_err();
        assert!(format!("{e:#}").contains("overlaps"), "{e:#}");
    }
}
