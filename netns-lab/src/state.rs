//! What a lab made, on disk under `/run/podnet-lab/<lab>/`, written before each thing is made
//! so that `down` can undo a lab that was killed half-way.
//!
//! ```text
//! /run/podnet-lab/<lab>/state.json   this file: namespaces, processes, pods, CNI results
//! /run/podnet-lab/<lab>/store.db     the lab's datastore (all agents and CNI calls share it)
//! /run/podnet-lab/<lab>/nodes/<n>/   each agent's state folder (the published MTU)
//! /run/podnet-lab/<lab>/logs/        agent, container and CNI logs
//! ```

use crate::scenario::Scenario;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const ROOT: &str = "/run/podnet-lab";

/// A process the lab started, identified by pid and start time (so a recycled pid is never
/// mistaken for ours).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proc {
    pub pid: u32,
    pub start: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeState {
    pub name: String,
    pub agent: Option<Proc>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerState {
    pub name: String,
    pub image: String,
    pub process: Option<Proc>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PodState {
    pub name: String,
    pub namespace: String,
    pub node: String,
    pub container_id: String,
    /// The CNI ADD result, kept for CHECK and DEL as a runtime keeps it.
    pub result: Option<serde_json::Value>,
    pub containers: Vec<ContainerState>,
    pub created: u64,
}

impl PodState {
    pub fn ip(&self) -> Option<String> {
        let a = self.result.as_ref()?["ips"][0]["address"].as_str()?;
        Some(a.split('/').next()?.to_string())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabState {
    pub name: String,
    pub scenario: Scenario,
    /// The encapsulation in use (auto resolved).
    pub encapsulation: String,
    pub created: u64,
    /// Every namespace path made (or about to be), in order.
    pub namespaces: Vec<String>,
    pub nodes: Vec<NodeState>,
    pub pods: Vec<PodState>,
    /// Set once `up` finished.
    pub complete: bool,
    /// `sqlite` (the file store.db) or `etcd` (an etcd in the fabric namespace).
    #[serde(default = "sqlite")]
    pub datastore: String,
    /// Addresses of nodes that left the running lab: never given to a new node (see
    /// `nodes::add`).
    #[serde(default)]
    pub retired_ips: Vec<std::net::Ipv4Addr>,
    /// The lab's etcd members, when it runs on etcd.
    #[serde(default)]
    pub etcd_members: Vec<Proc>,
    /// How many members the lab's etcd has (`up --etcd-members`).
    #[serde(default = "one")]
    pub etcd_size: usize,
    /// Who makes the routes to other nodes' blocks: `bgp` (BIRD on every node, the seed's way)
    /// or `datastore` (the agents themselves).
    #[serde(default = "datastore_routing")]
    pub routing: String,
    /// The BIRDs of the scenario's routers.
    #[serde(default)]
    pub routers: Vec<Proc>,
    /// The outside world's servers (HTTP on its hosts).
    #[serde(default)]
    pub outside: Vec<Proc>,
    /// The Services' processes: each node's service proxy, the API server stand-ins.
    #[serde(default)]
    pub service_procs: Vec<Proc>,
    /// The process holding the mount namespace pods' own are copied from
    /// ([`crate::procs::spawn_mount_template`]); without one, pods copy the host's.
    #[serde(default)]
    pub mount_template: Option<Proc>,
    /// The agents run from this container image under podman (`up --agent-image`).
    #[serde(default)]
    pub agent_image: Option<String>,
}

fn datastore_routing() -> String {
    "datastore".into()
}

fn one() -> usize {
    1
}

fn sqlite() -> String {
    "sqlite".into()
}

pub fn dir(lab: &str) -> PathBuf {
    Path::new(ROOT).join(lab)
}

impl LabState {
    pub fn dir(&self) -> PathBuf {
        dir(&self.name)
    }

    pub fn store(&self) -> PathBuf {
        self.dir().join("store.db")
    }

    /// The client URL of etcd member `m` (in the fabric, on the gateway address).
    pub fn etcd_url(&self, m: usize) -> String {
        format!("http://{}:{}", self.scenario.gateway, 2379 + 10000 * m)
    }

    /// Every member's client URL: what the nodes use, when the lab runs on etcd.
    pub fn etcd_urls(&self) -> Vec<String> {
        (0..self.etcd_size.max(1))
            .map(|m| self.etcd_url(m))
            .collect()
    }

    /// The datastore config every agent and CNI call uses.
    pub fn datastore_config(&self) -> podnet_ipam::DatastoreConfig {
        match self.datastore.as_str() {
            "etcd" => podnet_ipam::DatastoreConfig::Etcd {
                endpoints: self.etcd_urls(),
                prefix: None,
                tls: None,
                timeout_ms: None,
            },
            _ => podnet_ipam::DatastoreConfig::sqlite(self.store()),
        }
    }

    /// The fabric namespace's name.
    pub fn fabric(&self) -> String {
        format!("{}-fabric", self.name)
    }

    /// The provider's router between the fabric's gateway and the internet.
    pub fn upstream(&self) -> String {
        format!("{}-upstream", self.name)
    }

    /// The namespace playing the internet, behind the upstream router.
    pub fn internet(&self) -> String {
        format!("{}-internet", self.name)
    }

    /// Runs `f` on the lab's datastore, creating the SQLite file if it is missing (`up` writes
    /// the pool through here before any agent or CNI call, which need it there). etcd serves
    /// the fabric, so it is reached from a thread inside the fabric namespace (where every
    /// connection of the call is made).
    pub fn with_store<T: Send>(
        &self,
        f: impl FnOnce(&dyn podnet_ipam::Datastore) -> T + Send,
    ) -> Result<T> {
        let conf = self.datastore_config();
        let run = move || -> Result<T> {
            let s = conf.open_or_create()?;
            Ok(f(&*s))
        };
        if self.datastore == "etcd" {
            podnet_netlink::Netns::open(LabState::netns_path(&self.fabric()))?.run(run)?
        } else {
            run()
        }
    }

    pub fn logs(&self) -> PathBuf {
        self.dir().join("logs")
    }

    /// Where a pod's own files live (its resolv.conf and hosts).
    pub fn pod_dir(&self, pod: &str) -> PathBuf {
        self.dir().join("pods").join(pod)
    }

    pub fn node_dir(&self, node: &str) -> PathBuf {
        self.dir().join("nodes").join(node)
    }

    pub fn bgp(&self) -> bool {
        self.routing == "bgp"
    }

    /// The protocol number of the routes to blocks: BIRD's in BGP mode, else the agent's.
    pub fn block_route_protocol(&self) -> u8 {
        if self.bgp() {
            podnet_netlink::BIRD_ROUTE_PROTOCOL
        } else {
            podnet_netlink::AGENT_ROUTE_PROTOCOL
        }
    }

    /// Writes state.json atomically.
    pub fn save(&self) -> Result<()> {
        let dir = self.dir();
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        let tmp = dir.join(".state.json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self)?)
            .with_context(|| format!("write {}", tmp.display()))?;
        std::fs::rename(&tmp, dir.join("state.json")).context("save the lab state")
    }

    pub fn load(lab: &str) -> Result<LabState> {
        let path = dir(lab).join("state.json");
        let text = std::fs::read(&path)
            .with_context(|| format!("no lab {lab} is up (read {})", path.display()))?;
        serde_json::from_slice(&text).with_context(|| format!("read {}", path.display()))
    }

    /// The labs with a state folder.
    pub fn all() -> Vec<String> {
        std::fs::read_dir(ROOT)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter(|e| e.path().is_dir())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The one lab that is up, when no name is given.
    pub fn current(name: Option<&str>) -> Result<LabState> {
        match name {
            Some(n) => LabState::load(n),
            None => match LabState::all().as_slice() {
                [one] => LabState::load(one),
                [] => anyhow::bail!("no lab is up: run `podnet-lab up`"),
                many => anyhow::bail!("several labs are up ({}): pass --lab", many.join(", ")),
            },
        }
    }

    pub fn pod(&self, name: &str) -> Result<&PodState> {
        self.pods
            .iter()
            .find(|p| p.name == name)
            .with_context(|| format!("no pod {name} in lab {}", self.name))
    }

    pub fn netns_path(name: &str) -> String {
        format!("{}/{name}", podnet_netlink::netns::NETNS_DIR)
    }
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
