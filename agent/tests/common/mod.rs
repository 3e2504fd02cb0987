//! A small cluster for agent tests: a fabric namespace with a bridge, node namespaces wired to
//! it with `ens3` (192.168.110.10N/16, default route), one shared datastore, and agent
//! processes started and killed per node.
#![allow(dead_code)]

use podnet_ipam::store::etcd_member::EtcdMember;
use podnet_netlink::netns::OwnedNetns;
use podnet_netlink::{Netlink, Route, Uplink, AGENT_ROUTE_PROTOCOL};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const AGENT: &str = env!("CARGO_BIN_EXE_podnet-agent");
pub const POOL: &str = "10.233.64.0/18";

/// A binary of another crate in this workspace (built by `cargo build --workspace`).
pub fn sibling_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap(); // target/debug/deps -> target/debug
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} is not built: run `cargo build --workspace` first",
        p.display()
    );
    p
}

pub struct Node {
    pub name: String,
    pub ip: String,
    pub block: String,
    pub ns: OwnedNetns,
    pub agent: Option<Child>,
    pub state: PathBuf,
    pub log: PathBuf,
}

pub struct Cluster {
    pub tag: String,
    pub fabric: OwnedNetns,
    pub nodes: Vec<Node>,
    pub dir: tempfile::TempDir,
    /// An etcd serving the cluster from the fabric namespace, when the backend is etcd.
    pub etcd: Option<Child>,
    /// The members of a three-member etcd (`None` once killed).
    pub members: Vec<Option<Child>>,
    /// Flags every agent gets (e.g. `--routing bgp`).
    pub agent_flags: Vec<String>,
}

/// The datastore the agents share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    /// etcd in the fabric namespace on 192.168.0.1:2379, reached by the nodes over ens3.
    Etcd,
    /// Three etcd members in the fabric namespace (192.168.0.1:2379, :22379, :32379).
    Etcd3,
}

/// The client URLs of the three-member cluster.
pub const ETCD3_URLS: [&str; 3] = [
    "http://192.168.0.1:2379",
    "http://192.168.0.1:22379",
    "http://192.168.0.1:32379",
];

pub const ETCD_URL: &str = "http://192.168.0.1:2379";

impl Cluster {
    /// `n` nodes named node1..; node i has 192.168.110.10i and block 10.233.(90+i).0/24.
    pub fn new(tag: &str, n: usize) -> Cluster {
        Cluster::with_backend(tag, n, Backend::Sqlite)
    }

    pub fn with_backend(tag: &str, n: usize, backend: Backend) -> Cluster {
        let tag = format!("pnag{}-{tag}", std::process::id());
        let fabric = OwnedNetns::named(&format!("{tag}-fabric")).unwrap();
        let mut f = fabric.run(Netlink::open).unwrap().unwrap();
        f.add_bridge("br0").unwrap();
        let br = f.link("br0").unwrap().unwrap();
        f.set_up(br.index).unwrap();
        let dir = tempfile::tempdir().unwrap();
        if backend != Backend::Sqlite {
            f.add_address(br.index, "192.168.0.1/16".parse().unwrap())
                .unwrap();
            let lo = f.link("lo").unwrap().unwrap();
            f.set_up(lo.index).unwrap();
        }
        let etcd =
            (backend == Backend::Etcd).then(|| spawn_etcd(&fabric, &dir.path().join("etcd")));
        let members = if backend == Backend::Etcd3 {
            spawn_members(&fabric, dir.path())
        } else {
            Vec::new()
        };
        let mut nodes = Vec::new();
        for i in 1..=n {
            let name = format!("node{i}");
            let ns = OwnedNetns::named(&format!("{tag}-{name}")).unwrap();
            let ip = format!("192.168.110.{}", 100 + i);
            f.plug_node(
                br.index,
                &ns,
                &Uplink {
                    port: &format!("p{i}"),
                    addr: format!("{ip}/16").parse().unwrap(),
                    gateway: "192.168.0.1".parse().unwrap(),
                    onlink: true,
                },
            )
            .unwrap();
            let state = dir.path().join(&name);
            nodes.push(Node {
                log: dir.path().join(format!("{name}.log")),
                name,
                ip,
                block: format!("10.233.{}.0/24", 90 + i),
                ns,
                agent: None,
                state,
            });
        }
        Cluster {
            tag,
            fabric,
            nodes,
            dir,
            etcd,
            members,
            agent_flags: Vec::new(),
        }
    }

    /// The datastore flags of the agent.
    pub fn store_args(&self) -> Vec<String> {
        match (&self.etcd, self.members.is_empty()) {
            (Some(_), _) => vec!["--etcd-endpoints".into(), ETCD_URL.into()],
            (None, false) => vec!["--etcd-endpoints".into(), ETCD3_URLS.join(",")],
            (None, true) => vec!["--datastore".into(), self.store().display().to_string()],
        }
    }

    /// The datastore config for CNI calls.
    pub fn store_config(&self) -> serde_json::Value {
        match (&self.etcd, self.members.is_empty()) {
            (Some(_), _) => serde_json::json!({"type": "etcd", "endpoints": [ETCD_URL]}),
            (None, false) => {
                serde_json::json!({"type": "etcd", "endpoints": ETCD3_URLS, "timeoutMs": 5000})
            }
            (None, true) => serde_json::json!({"type": "sqlite", "path": self.store()}),
        }
    }

    /// Kills member `i` of the three-member etcd.
    pub fn kill_member(&mut self, i: usize) {
        if let Some(mut m) = self.members[i].take() {
            let _ = m.kill();
            let _ = m.wait();
        }
    }

    /// Runs `f` with the cluster's datastore, opened (and used) from inside the fabric
    /// namespace, where etcd is reachable.
    pub fn with_store<T: Send>(
        &self,
        f: impl FnOnce(&dyn podnet_ipam::Datastore) -> T + Send,
    ) -> T {
        let conf: podnet_ipam::DatastoreConfig =
            serde_json::from_value(self.store_config()).unwrap();
        self.fabric
            .run(move || f(&*conf.open_or_create().unwrap()))
            .unwrap()
    }

    /// Whether the datastore answers now (opens and reports its revision).
    pub fn store_answers(&self) -> bool {
        let conf: podnet_ipam::DatastoreConfig =
            serde_json::from_value(self.store_config()).unwrap();
        self.fabric
            .run(move || conf.open().and_then(|s| s.revision()).is_ok())
            .unwrap()
    }

    pub fn store(&self) -> PathBuf {
        self.dir.path().join("store.db")
    }

    /// The command line of node `i`'s agent, with `extra` flags.
    pub fn agent_command(&self, i: usize, encap: &str, extra: &[&str]) -> Command {
        let n = &self.nodes[i];
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", n.ns.path()))
            .arg(AGENT)
            .args([
                "run",
                "--no-config",
                "--node-name",
                &n.name,
                "--node-ip",
                &n.ip,
                "--encapsulation",
                encap,
            ])
            .args([
                "--pool",
                POOL,
                "--block-size",
                "24",
                "--node-block",
                &n.block,
                "--resync-seconds",
                "30",
            ])
            .args(self.store_args())
            .arg("--state-dir")
            .arg(&n.state)
            .args(&self.agent_flags)
            .args(extra)
            .stdout(Stdio::null());
        c
    }

    /// Starts node `i`'s agent, logging to its log file.
    pub fn start(&mut self, i: usize, encap: &str) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.nodes[i].log)
            .unwrap();
        let child = self
            .agent_command(i, encap, &[])
            .stderr(log)
            .spawn()
            .unwrap();
        self.nodes[i].agent = Some(child);
    }

    pub fn start_all(&mut self, encap: &str) {
        for i in 0..self.nodes.len() {
            self.start(i, encap);
        }
    }

    /// SIGTERM, as systemd's stop or kubelet does: the agent's exit status, and how long it
    /// took to exit.
    pub fn terminate(&mut self, i: usize) -> (std::process::ExitStatus, Duration) {
        let mut c = self.nodes[i].agent.take().expect("the agent runs");
        let start = std::time::Instant::now();
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        let status = c.wait().unwrap();
        (status, start.elapsed())
    }

    /// SIGTERM to node `i`'s BIRD, as stopping the node's service does; waits until it is gone.
    pub fn terminate_bird(&self, i: usize) {
        if let Some(pid) = self.bird_pid(i) {
            unsafe { libc::kill(pid, libc::SIGTERM) };
            assert!(
                wait_for_quietly(Duration::from_secs(5), || self.bird_pid(i) != Some(pid)),
                "BIRD stops on SIGTERM"
            );
        }
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].agent.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn netlink(&self, i: usize) -> Netlink {
        self.nodes[i].ns.run(Netlink::open).unwrap().unwrap()
    }

    /// The agent-owned routes of node `i`.
    pub fn owned_routes(&self, i: usize) -> Vec<Route> {
        self.netlink(i)
            .routes()
            .unwrap()
            .into_iter()
            .filter(|r| r.protocol == AGENT_ROUTE_PROTOCOL)
            .collect()
    }

    /// Waits until every node owns a route to every block (remote ones and its blackhole).
    pub fn wait_converged(&self, timeout: Duration) {
        let blocks: Vec<String> = self.nodes.iter().map(|n| n.block.clone()).collect();
        wait_for(timeout, "every node routes every block", || {
            (0..self.nodes.len()).all(|i| {
                let have: Vec<String> = self
                    .owned_routes(i)
                    .iter()
                    .map(|r| r.dst.to_string())
                    .collect();
                blocks.iter().all(|b| have.contains(b))
            })
        });
    }

    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(&self.nodes[i].log).unwrap_or_default()
    }

    /// The pid of node `i`'s BIRD (BGP mode), from its pid file, if it is alive.
    pub fn bird_pid(&self, i: usize) -> Option<i32> {
        let pid: i32 = std::fs::read_to_string(self.nodes[i].state.join("bird/bird.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let state = stat
            .rsplit_once(')')?
            .1
            .split_whitespace()
            .next()?
            .to_string();
        (state != "Z").then_some(pid)
    }

    /// SIGKILL to node `i`'s BIRD; waits until it is gone.
    pub fn kill_bird(&self, i: usize) {
        if let Some(pid) = self.bird_pid(i) {
            unsafe { libc::kill(pid, libc::SIGKILL) };
            let _ = wait_for_quietly(Duration::from_secs(5), || self.bird_pid(i) != Some(pid));
        }
    }

    /// The routes BIRD installed on node `i` (`proto bird`).
    pub fn bird_routes(&self, i: usize) -> Vec<Route> {
        self.netlink(i)
            .routes()
            .unwrap()
            .into_iter()
            .filter(|r| r.protocol == BIRD_ROUTE_PROTOCOL)
            .collect()
    }

    /// `podnet-agent ARGS` (with the cluster's datastore flags when `store` is set) in node
    /// `i`'s namespace: exit status and stdout.
    /// GET `path` from node `i`'s agent on its loopback (`None` if it does not answer).
    pub fn http_get(&self, i: usize, path: &str) -> Option<String> {
        use std::io::{Read, Write};
        let path = path.to_string();
        self.nodes[i]
            .ns
            .run(move || {
                let mut s = std::net::TcpStream::connect("127.0.0.1:9099").ok()?;
                write!(
                    s,
                    "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                )
                .ok()?;
                let mut out = String::new();
                s.read_to_string(&mut out).ok()?;
                Some(out)
            })
            .unwrap()
    }

    pub fn agent_cli(&self, i: usize, args: &[&str], store: bool) -> (bool, String, String) {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", self.nodes[i].ns.path()))
            .arg(AGENT)
            .args(args);
        if store {
            c.args(self.store_args());
        }
        let out = c.output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

pub use podnet_netlink::BIRD_ROUTE_PROTOCOL;

/// Like [`wait_for`], but says whether it happened instead of panicking.
pub fn wait_for_quietly(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

/// Starts `member` inside the fabric namespace.
fn etcd_in(fabric: &OwnedNetns, member: &EtcdMember<'_>) -> Child {
    Command::new("nsenter")
        .arg(format!("--net={}", fabric.path()))
        .arg("etcd")
        .args(member.args())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start etcd (Debian package etcd-server)")
}

/// etcd inside the fabric namespace on 192.168.0.1:2379, data in `data`; waits until it answers.
fn spawn_etcd(fabric: &OwnedNetns, data: &std::path::Path) -> Child {
    let child = etcd_in(
        fabric,
        &EtcdMember {
            name: "lab",
            data_dir: data,
            client_url: ETCD_URL,
            peer_url: "http://127.0.0.1:2380",
            cluster: None,
        },
    );
    let ns: &podnet_netlink::Netns = fabric;
    wait_for(Duration::from_secs(20), "etcd answers", || {
        ns.run(|| std::net::TcpStream::connect("192.168.0.1:2379").is_ok())
            .unwrap()
    });
    child
}

/// Three etcd members in the fabric namespace; waits until each answers.
fn spawn_members(fabric: &OwnedNetns, dir: &std::path::Path) -> Vec<Option<Child>> {
    let peers = [
        "http://127.0.0.1:2380",
        "http://127.0.0.1:22380",
        "http://127.0.0.1:32380",
    ];
    let cluster: Vec<String> = peers
        .iter()
        .enumerate()
        .map(|(i, p)| format!("m{i}={p}"))
        .collect();
    let members = (0..3)
        .map(|i| {
            Some(etcd_in(
                fabric,
                &EtcdMember {
                    name: &format!("m{i}"),
                    data_dir: &dir.join(format!("m{i}")),
                    client_url: ETCD3_URLS[i],
                    peer_url: peers[i],
                    cluster: Some(&cluster.join(",")),
                },
            ))
        })
        .collect();
    let ns: &podnet_netlink::Netns = fabric;
    for url in ETCD3_URLS {
        let addr = url.trim_start_matches("http://").to_string();
        wait_for(Duration::from_secs(20), "an etcd member answers", || {
            ns.run(|| std::net::TcpStream::connect(&addr).is_ok())
                .unwrap()
        });
    }
    members
}

impl Cluster {
    /// Stops the cluster's etcd (SIGKILL), as an outage would.
    pub fn stop_etcd(&mut self) {
        if let Some(mut e) = self.etcd.take() {
            let _ = e.kill();
            let _ = e.wait();
        }
    }

    /// Starts it again on the same data.
    pub fn restart_etcd(&mut self) {
        assert!(self.etcd.is_none(), "etcd is running");
        self.etcd = Some(spawn_etcd(&self.fabric, &self.dir.path().join("etcd")));
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
            self.kill_bird(i);
        }
        if let Some(mut e) = self.etcd.take() {
            let _ = e.kill();
            let _ = e.wait();
        }
        for i in 0..self.members.len() {
            self.kill_member(i);
        }
    }
}

/// Polls `check` every 10 ms until true; panics after `timeout`. Returns the time it took.
pub fn wait_for(timeout: Duration, what: &str, mut check: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if check() {
            return start.elapsed();
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("timed out after {timeout:?} waiting until {what}");
}

/// `ping -c1` from inside a namespace.
pub fn ping(ns: &OwnedNetns, to: &str) -> bool {
    Command::new("nsenter")
        .arg(format!("--net={}", ns.path()))
        .args(["ping", "-c", "1", "-W", "2", to])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
}

/// Makes a pod on node `i` with the real `podnet` plugin; returns its namespace and address.
pub fn add_pod(c: &Cluster, i: usize, name: &str) -> (OwnedNetns, String) {
    let pod = OwnedNetns::named(&format!("{}-{name}", c.tag)).unwrap();
    let n = &c.nodes[i];
    let conf = serde_json::json!({
        "cniVersion": "1.0.0", "name": "k8s-pod-network", "type": "podnet",
        "nodename": n.name, "stateDir": n.state,
        "log": {"file": c.dir.path().join("cni.log")},
        "datastore": c.store_config(),
        "ipam": {"type": "podnet-ipam", "pool": POOL, "blockSize": 24},
    });
    let mut cmd = Command::new("nsenter");
    cmd.arg(format!("--net={}", n.ns.path()))
        .arg(sibling_binary("podnet"))
        .env("CNI_COMMAND", "ADD")
        .env("CNI_CONTAINERID", name)
        .env("CNI_NETNS", pod.path())
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", "/usr/lib/cni")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(conf.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "ADD {name}: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ip = v["ips"][0]["address"]
        .as_str()
        .unwrap()
        .trim_end_matches("/32")
        .to_string();
    (pod, ip)
}

/// Runs each case (a `fn(Backend)`) with the agents on the SQLite file and on etcd.
#[macro_export]
macro_rules! backends {
    ($($case:ident),* $(,)?) => {
        mod on_sqlite {
            $(
                #[test]
                #[ignore = "needs root"]
                fn $case() {
                    super::$case(super::common::Backend::Sqlite);
                }
            )*
        }
        mod on_etcd {
            $(
                #[test]
                #[ignore = "needs root"]
                fn $case() {
                    super::$case(super::common::Backend::Etcd);
                }
            )*
        }
    };
}
