//! etcd as clusters run it: three members with one killed, and TLS with client certificates
//! (made here with rcgen), including a wrong CA being refused.
#![cfg(feature = "etcd")]

mod common;

use common::{free_port, pool};
use podnet_ipam::store::config::TlsConfig;
use podnet_ipam::store::etcd_member::EtcdMember;
use podnet_ipam::{pod_handle, DatastoreConfig, Ipam};
use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Member {
    child: Child,
}

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_port(addr: &str) {
    let start = Instant::now();
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{addr} never answered"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn allocations_go_on_when_one_of_three_members_dies() {
    let dir = tempfile::tempdir().unwrap();
    let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
    let cluster: Vec<String> = ports
        .iter()
        .enumerate()
        .map(|(i, (_, p))| format!("m{i}=http://127.0.0.1:{p}"))
        .collect();
    let mut members: Vec<Option<Member>> = ports
        .iter()
        .enumerate()
        .map(|(i, (c, p))| {
            let client = format!("http://127.0.0.1:{c}");
            let peer = format!("http://127.0.0.1:{p}");
            let child = Command::new("etcd")
                .args(
                    EtcdMember {
                        name: &format!("m{i}"),
                        data_dir: &dir.path().join(format!("m{i}")),
                        client_url: &client,
                        peer_url: &peer,
                        cluster: Some(&cluster.join(",")),
                    }
                    .args(),
                )
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start etcd");
            Some(Member { child })
        })
        .collect();
    for (c, _) in &ports {
        wait_port(&format!("127.0.0.1:{c}"));
    }
    let endpoints: Vec<String> = ports
        .iter()
        .map(|(c, _)| format!("http://127.0.0.1:{c}"))
        .collect();
    let conf = DatastoreConfig::Etcd {
        endpoints,
        prefix: None,
        tls: None,
        timeout_ms: Some(5000),
    };
    let start = Instant::now();
    let store = loop {
        match conf.open() {
            Ok(s) => break s,
            Err(e) if start.elapsed() < Duration::from_secs(20) => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => panic!("{e}"),
        }
    };
    let ipam = Ipam::new(&*store, pool("10.0.0.0/16", 26));
    let mut got = HashSet::new();
    for i in 0..20 {
        got.insert(
            ipam.allocate("n1", &pod_handle(&format!("before{i}"), "eth0"))
                .unwrap(),
        );
    }
    members[0] = None; // killed
                       // The client moves to the members still up; a call caught on the dead one may fail once.
    for i in 0..20 {
        let h = pod_handle(&format!("after{i}"), "eth0");
        let ip = (0..5)
            .find_map(|_| {
                ipam.allocate("n1", &h)
                    .ok()
                    .or_else(|| ipam.lookup(&h).ok().flatten().map(|r| r.address))
            })
            .expect("allocation with one member down");
        got.insert(ip);
    }
    assert_eq!(got.len(), 40);
    drop(members);
}

struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    /// A CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files.
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        for (name, sans) in [
            (
                "server",
                vec!["127.0.0.1".to_string(), "localhost".to_string()],
            ),
            ("client", vec!["podnet".to_string()]),
        ] {
            let key = rcgen::KeyPair::generate().unwrap();
            let cert = rcgen::CertificateParams::new(sans)
                .unwrap()
                .signed_by(&key, &issuer)
                .unwrap();
            std::fs::write(dir.path().join(format!("{name}.pem")), cert.pem()).unwrap();
            std::fs::write(
                dir.path().join(format!("{name}-key.pem")),
                key.serialize_pem(),
            )
            .unwrap();
        }
        Pki { dir }
    }

    fn path(&self, f: &str) -> std::path::PathBuf {
        self.dir.path().join(f)
    }
}

#[test]
fn tls_with_client_certificates_works_and_a_wrong_ca_is_refused() {
    let pki = Pki::new();
    let data = tempfile::tempdir().unwrap();
    let (c, p) = (free_port(), free_port());
    let client = format!("https://127.0.0.1:{c}");
    let peer = format!("http://127.0.0.1:{p}");
    let _etcd = Member {
        child: Command::new("etcd")
            .args(
                EtcdMember {
                    name: "tls",
                    data_dir: data.path(),
                    client_url: &client,
                    peer_url: &peer,
                    cluster: None,
                }
                .args(),
            )
            .arg("--cert-file")
            .arg(pki.path("server.pem"))
            .arg("--key-file")
            .arg(pki.path("server-key.pem"))
            .arg("--trusted-ca-file")
            .arg(pki.path("ca.pem"))
            .arg("--client-cert-auth")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    };
    wait_port(&format!("127.0.0.1:{c}"));
    let conf = |ca: std::path::PathBuf| DatastoreConfig::Etcd {
        endpoints: vec![client.clone()],
        prefix: None,
        tls: Some(TlsConfig {
            ca: Some(ca),
            cert: Some(pki.path("client.pem")),
            key: Some(pki.path("client-key.pem")),
        }),
        timeout_ms: Some(3000),
    };
    let start = Instant::now();
    let store = loop {
        match conf(pki.path("ca.pem")).open() {
            Ok(s) => break s,
            Err(e) if start.elapsed() < Duration::from_secs(15) => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => panic!("TLS connection: {e}"),
        }
    };
    let ipam = Ipam::new(&*store, pool("10.0.0.0/16", 26));
    assert_eq!(
        ipam.allocate("n1", "over-tls").unwrap().to_string(),
        "10.0.0.0"
    );

    let other = Pki::new();
    let e = conf(other.path("ca.pem"))
        .open()
        .err()
        .expect("a wrong CA must be refused");
    let msg = format!("{e}");
    assert!(msg.contains("unavailable"), "{msg}");
    assert!(e.is_transient(), "refused as unreachable (code 11): {msg}");
    // Without a client certificate the server refuses us too.
    let no_cert = DatastoreConfig::Etcd {
        endpoints: vec![client.clone()],
        prefix: None,
        tls: Some(TlsConfig {
            ca: Some(pki.path("ca.pem")),
            cert: None,
            key: None,
        }),
        timeout_ms: Some(3000),
    };
    assert!(no_cert.open().is_err());
}
