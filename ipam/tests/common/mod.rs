//! Helpers shared by the IPAM integration tests.
#![allow(dead_code)]

use ipnet::Ipv4Net;
use podnet_ipam::store::etcd_member::EtcdMember;
use podnet_ipam::store::sqlite::{Options, SqliteStore};
use podnet_ipam::PoolSpec;
use std::collections::BTreeMap;

pub fn net(s: &str) -> Ipv4Net {
    s.parse().unwrap()
}

pub fn store(dir: &tempfile::TempDir) -> SqliteStore {
    SqliteStore::open_or_create(dir.path().join("store.db"), Options::default()).unwrap()
}

/// `dir`'s `store.db`, created as the agent creates a node's store: the plugin never makes
/// one, and answers code 11 until it is there.
pub fn new_store(dir: &tempfile::TempDir) -> std::path::PathBuf {
    drop(store(dir));
    dir.path().join("store.db")
}

pub fn pool(cidr: &str, block: u8) -> PoolSpec {
    PoolSpec::new(net(cidr), block, false, BTreeMap::new()).unwrap()
}

/// The seed's pool with every node's block pinned as in the seed.
pub fn seed_pool() -> PoolSpec {
    let pins = [
        ("sung-ubuntu01", "10.233.95.0/24"),
        ("sung-ubuntu02", "10.233.91.0/24"),
        ("sung-ubuntu03", "10.233.112.0/24"),
        ("sung-ubuntu04", "10.233.99.0/24"),
        ("sung-ubuntu05", "10.233.78.0/24"),
    ];
    let node_blocks: BTreeMap<String, Vec<Ipv4Net>> = pins
        .iter()
        .map(|(n, b)| (n.to_string(), vec![net(b)]))
        .collect();
    PoolSpec::new(net("10.233.64.0/18"), 24, false, node_blocks).unwrap()
}

/// One exec of the `podnet-ipam` binary, as a runtime does it.
pub struct Call {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Call {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}): {:?} / {}",
                self.stdout, self.stderr
            )
        })
    }

    /// The CNI error code, asserting this is an error reply.
    pub fn error_code(&self) -> u64 {
        assert_ne!(self.code, 0, "expected an error: {}", self.stdout);
        self.json()["code"]
            .as_u64()
            .expect("error replies have a code")
    }

    pub fn address(&self) -> String {
        assert_eq!(self.code, 0, "{} {}", self.stdout, self.stderr);
        self.json()["ips"][0]["address"]
            .as_str()
            .unwrap()
            .to_string()
    }
}

pub const BIN: &str = env!("CARGO_BIN_EXE_podnet-ipam");

/// Builds the environment of a call: `CNI_COMMAND`, a container ID, `eth0`, plus `extra`
/// (an empty value removes the variable).
pub fn command(verb: &str, container: &str, extra: &[(&str, &str)]) -> std::process::Command {
    let mut c = std::process::Command::new(BIN);
    c.env_clear()
        .env("CNI_COMMAND", verb)
        .env("CNI_CONTAINERID", container)
        .env("CNI_NETNS", "/var/run/netns/test")
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", "/opt/cni/bin")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    for (k, v) in extra {
        if v.is_empty() {
            c.env_remove(k);
        } else {
            c.env(k, v);
        }
    }
    c
}

pub fn cni(verb: &str, container: &str, extra: &[(&str, &str)], stdin: &str) -> Call {
    use std::io::Write;
    let mut child = command(verb, container, extra)
        .spawn()
        .expect("start podnet-ipam");
    // A plugin that rejects its environment exits without reading stdin (as skel does).
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    let out = child.wait_with_output().unwrap();
    Call {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

/// A network config whose ipam object is `ipam` merged over a default for `store`.
pub fn config(version: &str, store: &std::path::Path, ipam: serde_json::Value) -> String {
    let mut base = serde_json::json!({
        "type": "podnet-ipam",
        "pool": "10.100.0.0/16",
        "blockSize": 26,
        "nodename": "node1",
        "datastore": {"type": "sqlite", "path": store},
    });
    for (k, v) in ipam.as_object().unwrap() {
        base[k] = v.clone();
    }
    serde_json::json!({"cniVersion": version, "name": "test", "type": "podnet", "ipam": base})
        .to_string()
}

/// The pod handles in the store at `path` (none if it was never created).
pub fn pod_handles(path: &std::path::Path) -> Vec<String> {
    if !path.exists() {
        return Vec::new();
    }
    podnet_ipam::pod_handles(&SqliteStore::open(path, Options::default()).unwrap()).unwrap()
}

/// A real etcd (Debian's `etcd-server`) on loopback with free ports and a temporary data
/// folder, stopped when dropped.
pub struct Etcd {
    pub endpoint: String,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Etcd {
    pub fn start() -> Etcd {
        let dir = tempfile::tempdir().unwrap();
        let (client, peer) = (free_port(), free_port());
        let endpoint = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let mut cmd = std::process::Command::new("etcd");
        // Dies with the thread that started it, even if that is never dropped (a static).
        // SAFETY: prctl is async-signal-safe.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd
            .args(
                EtcdMember {
                    name: "test",
                    data_dir: dir.path(),
                    client_url: &endpoint,
                    peer_url: &peer_url,
                    cluster: None,
                }
                .args(),
            )
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start etcd (Debian package etcd-server)");
        let etcd = Etcd {
            endpoint,
            child,
            _dir: dir,
        };
        let start = std::time::Instant::now();
        while std::net::TcpStream::connect(etcd.endpoint.trim_start_matches("http://")).is_err() {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(20),
                "etcd did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        etcd
    }

    pub fn config(&self, prefix: &str) -> podnet_ipam::DatastoreConfig {
        podnet_ipam::DatastoreConfig::Etcd {
            endpoints: vec![self.endpoint.clone()],
            prefix: Some(prefix.to_string()),
            tls: None,
            timeout_ms: Some(5000),
        }
    }

    /// Connects, retrying while etcd finishes starting.
    pub fn store(&self, prefix: &str) -> Box<dyn podnet_ipam::Datastore> {
        let start = std::time::Instant::now();
        loop {
            match self.config(prefix).open() {
                Ok(s) => return s,
                Err(e) if start.elapsed() < std::time::Duration::from_secs(20) => {
                    let _ = e;
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                Err(e) => panic!("connect to etcd: {e}"),
            }
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
