//! A node namespace to run the `podnet` binary in, pods to attach, and ways to look at the
//! result through netlink (not through the plugin's own answer).
#![allow(dead_code)]

use podnet_ipam::store::etcd_member::EtcdMember;
use podnet_netlink::netns::OwnedNetns;
use podnet_netlink::{Link, Netlink, Netns, Route, RouteSpec, VethSpec};
use serde_json::{json, Value};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

pub const BIN: &str = env!("CARGO_BIN_EXE_podnet");
pub const NODE_IP: &str = "192.168.110.103";

/// The answer of one plugin run.
pub struct Call {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Call {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not one JSON document ({e}): {:?} / {}",
                self.stdout, self.stderr
            )
        })
    }
    pub fn ok(&self) -> Value {
        assert_eq!(
            self.code, 0,
            "plugin failed: {} {}",
            self.stdout, self.stderr
        );
        if self.stdout.is_empty() {
            Value::Null
        } else {
            self.json()
        }
    }
    pub fn error_code(&self) -> u64 {
        assert_ne!(self.code, 0, "expected an error, got {}", self.stdout);
        self.json()["code"]
            .as_u64()
            .expect("error replies carry a code")
    }
    pub fn address(&self) -> String {
        self.ok()["ips"][0]["address"]
            .as_str()
            .unwrap()
            .trim_end_matches("/32")
            .to_string()
    }
}

/// A node: a namespace with `ens3` (mtu 1500, 192.168.110.103/16, default route), a state
/// folder with the datastore (created, as the node's agent would) and logs.
pub struct Node {
    pub ns: OwnedNetns,
    pub name: String,
    pub dir: tempfile::TempDir,
    /// An etcd inside the node's namespace (127.0.0.1:2379 there), when the datastore is etcd.
    pub etcd: Option<std::process::Child>,
}

/// Where an etcd-backed node's datastore is, from inside the node.
pub const ETCD_URL: &str = "http://127.0.0.1:2379";

/// A unique name for this process and tag.
pub fn unique(tag: &str) -> String {
    format!("pncni{}-{tag}", std::process::id())
}

impl Node {
    pub fn new(tag: &str) -> Node {
        let name = unique(tag);
        let ns = OwnedNetns::named(&name).unwrap();
        let mut nl = ns.run(Netlink::open).unwrap().unwrap();
        nl.add_veth(&VethSpec {
            name: "ens3",
            mac: None,
            mtu: 1500,
            alias: None,
            peer_name: "fabric0",
            peer_netns: None,
        })
        .unwrap();
        for l in ["lo", "ens3", "fabric0"] {
            let link = nl.link(l).unwrap().unwrap();
            nl.set_up(link.index).unwrap();
        }
        let ens3 = nl.link("ens3").unwrap().unwrap();
        nl.add_address(ens3.index, format!("{NODE_IP}/16").parse().unwrap())
            .unwrap();
        nl.add_route(
            &RouteSpec::default_via("192.168.0.1".parse().unwrap(), ens3.index, true),
            false,
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        // The node's agent makes the store; the plugin only ever opens one.
        podnet_ipam::DatastoreConfig::sqlite(dir.path().join("store.db"))
            .open_or_create()
            .unwrap();
        Node {
            ns,
            name,
            dir,
            etcd: None,
        }
    }

    /// The same node with its datastore in an etcd running inside the node's namespace.
    pub fn with_etcd(tag: &str) -> Node {
        let mut n = Node::new(tag);
        n.start_etcd();
        n
    }

    pub fn start_etcd(&mut self) {
        let child = Command::new("nsenter")
            .arg(format!("--net={}", self.path()))
            .arg("etcd")
            .args(
                EtcdMember {
                    name: "node",
                    data_dir: &self.dir.path().join("etcd"),
                    client_url: ETCD_URL,
                    peer_url: "http://127.0.0.1:2380",
                    cluster: None,
                }
                .args(),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start etcd (Debian package etcd-server)");
        self.etcd = Some(child);
        let start = std::time::Instant::now();
        while !self
            .ns
            .run(|| std::net::TcpStream::connect("127.0.0.1:2379").is_ok())
            .unwrap()
        {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(20),
                "etcd did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// SIGKILL to the node's etcd, as an outage would.
    pub fn stop_etcd(&mut self) {
        if let Some(mut e) = self.etcd.take() {
            let _ = e.kill();
            let _ = e.wait();
        }
    }

    pub fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }

    pub fn store(&self) -> PathBuf {
        self.dir.path().join("store.db")
    }

    pub fn log(&self) -> PathBuf {
        self.dir.path().join("podnet.log")
    }

    /// A pod namespace, removed when dropped.
    pub fn pod(&self, tag: &str) -> OwnedNetns {
        OwnedNetns::named(&format!("{}-{tag}", self.name)).unwrap()
    }

    /// The network config: podnet with in-process podnet-ipam on the seed's pool, with
    /// `extra` merged over the top level.
    pub fn conf(&self, version: &str, extra: Value) -> String {
        let mut c = json!({
            "cniVersion": version,
            "name": "k8s-pod-network",
            "type": "podnet",
            "nodename": "sung-ubuntu04",
            "stateDir": self.dir.path().join("state"),
            "log": {"file": self.log(), "level": "debug"},
            "datastore": self.datastore(),
            "ipam": {"type": "podnet-ipam", "pool": "10.233.64.0/18", "blockSize": 24,
                     "nodeBlocks": {"sung-ubuntu04": ["10.233.99.0/24"]}},
        });
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        c.to_string()
    }

    /// Runs `podnet` inside the node namespace as a runtime does. `env` overrides (an empty
    /// value removes the variable).
    pub fn cni(
        &self,
        verb: &str,
        container: &str,
        pod: Option<&Netns>,
        env: &[(&str, &str)],
        stdin: &str,
    ) -> Call {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", self.path()))
            .arg(BIN)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("CNI_COMMAND", verb)
            .env("CNI_CONTAINERID", container)
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", "/usr/lib/cni")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(p) = pod {
            c.env("CNI_NETNS", p.path());
        }
        for (k, v) in env {
            if v.is_empty() {
                c.env_remove(k);
            } else {
                c.env(k, v);
            }
        }
        let mut child = c.spawn().expect("start podnet");
        let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
        let out = child.wait_with_output().unwrap();
        Call {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8(out.stdout).unwrap(),
            stderr: String::from_utf8(out.stderr).unwrap(),
        }
    }

    pub fn netlink(&self) -> Netlink {
        self.ns.run(Netlink::open).unwrap().unwrap()
    }

    /// The node's `cali*` links.
    pub fn cali_links(&self) -> Vec<Link> {
        self.netlink()
            .links()
            .unwrap()
            .into_iter()
            .filter(|l| l.name.starts_with("cali"))
            .collect()
    }

    /// The node's routes to single addresses in the pod pool.
    pub fn pod_routes(&self) -> Vec<Route> {
        let pool: ipnet::Ipv4Net = "10.233.64.0/18".parse().unwrap();
        self.netlink()
            .routes()
            .unwrap()
            .into_iter()
            .filter(|r| r.dst.prefix_len() == 32 && pool.contains(&r.dst))
            .collect()
    }

    /// The datastore config of this node's CNI calls.
    pub fn datastore(&self) -> Value {
        match self.etcd {
            Some(_) => json!({"type": "etcd", "endpoints": [ETCD_URL], "timeoutMs": 2000}),
            None => json!({"type": "sqlite", "path": self.store()}),
        }
    }

    /// Runs `f` on the node's datastore (etcd is reached from inside the node).
    pub fn with_store<T: Send>(
        &self,
        f: impl FnOnce(&dyn podnet_ipam::Datastore) -> T + Send,
    ) -> T {
        let conf: podnet_ipam::DatastoreConfig = serde_json::from_value(self.datastore()).unwrap();
        self.ns.run(move || f(&*conf.open().unwrap())).unwrap()
    }

    /// Pod handles in the datastore (etcd is read from inside the node).
    pub fn handles(&self) -> Vec<String> {
        self.with_store(|s| podnet_ipam::pod_handles(s).unwrap())
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop_etcd();
    }
}

/// `ping -c1` from inside `netns`; true if answered.
pub fn ping(netns: &Netns, to: &str) -> bool {
    Command::new("nsenter")
        .arg(format!("--net={}", netns.path()))
        .args(["ping", "-c", "1", "-W", "2", to])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
}

pub fn k8s(ns: &str, pod: &str) -> String {
    format!(
        "IgnoreUnknown=1;K8S_POD_NAMESPACE={ns};K8S_POD_NAME={pod};K8S_POD_INFRA_CONTAINER_ID=x"
    )
}

/// Runs each case (a `fn(Node)`) on a node whose datastore is the SQLite file and on one whose
/// datastore is an etcd inside the node's namespace.
#[macro_export]
macro_rules! backends {
    ($($case:ident),* $(,)?) => {
        mod on_sqlite {
            $(
                #[test]
                #[ignore = "needs root"]
                fn $case() {
                    super::$case(super::common::Node::new(concat!("s-", stringify!($case))));
                }
            )*
        }
        mod on_etcd {
            $(
                #[test]
                #[ignore = "needs root"]
                fn $case() {
                    super::$case(super::common::Node::with_etcd(concat!("e-", stringify!($case))));
                }
            )*
        }
    };
}
