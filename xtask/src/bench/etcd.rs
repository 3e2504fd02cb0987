//! A throwaway etcd for benchmarks: on loopback, or inside a namespace on a given address.

use anyhow::{bail, Context, Result};
use podnet_ipam::store::etcd_member::EtcdMember;
use podnet_netlink::Netns;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Etcd {
    child: Child,
    pub url: String,
    _dir: tempfile::TempDir,
}

impl Etcd {
    /// Starts etcd listening on `ip:port` (in `netns` when given) and waits until it answers.
    pub fn start(netns: Option<&Netns>, ip: &str, port: u16) -> Result<Etcd> {
        let dir = tempfile::tempdir()?;
        let url = format!("http://{ip}:{port}");
        let peer = format!("http://127.0.0.1:{}", port + 1);
        let member = EtcdMember {
            name: "bench",
            data_dir: dir.path(),
            client_url: &url,
            peer_url: &peer,
            cluster: None,
        };
        let mut cmd = Command::new("etcd");
        cmd.args(member.args())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(ns) = netns {
            ns.enter_on_exec(&mut cmd)?;
        }
        let child = cmd
            .spawn()
            .context("start etcd (Debian package etcd-server)")?;
        let etcd = Etcd {
            child,
            url,
            _dir: dir,
        };
        let addr = format!("{ip}:{port}");
        let start = Instant::now();
        loop {
            let up = match netns {
                Some(ns) => ns.run(|| std::net::TcpStream::connect(&addr).is_ok())?,
                None => std::net::TcpStream::connect(&addr).is_ok(),
            };
            if up {
                return Ok(etcd);
            }
            if start.elapsed() > Duration::from_secs(20) {
                bail!("etcd did not start on {addr}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
