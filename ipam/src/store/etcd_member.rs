//! The command line of one local etcd member, as the lab, the benchmarks and the test suites
//! start it (`etcd` is Debian's etcd-server; podnet itself is only ever its client).

use std::ffi::OsString;
use std::path::Path;

/// One member of a local etcd cluster.
#[derive(Debug, Clone, Copy)]
pub struct EtcdMember<'a> {
    pub name: &'a str,
    pub data_dir: &'a Path,
    /// Where clients reach it, e.g. `http://192.168.0.1:2379`.
    pub client_url: &'a str,
    /// Where the other members reach it, e.g. `http://127.0.0.1:2380`.
    pub peer_url: &'a str,
    /// `name=peer-url,...` of every member; `None` for a cluster of this member alone.
    pub cluster: Option<&'a str>,
}

impl EtcdMember<'_> {
    /// The arguments that follow `etcd`.
    pub fn args(&self) -> Vec<OsString> {
        let alone = format!("{}={}", self.name, self.peer_url);
        let mut args: Vec<OsString> = vec!["--data-dir".into(), self.data_dir.into()];
        args.extend(
            [
                "--name",
                self.name,
                "--listen-client-urls",
                self.client_url,
                "--advertise-client-urls",
                self.client_url,
                "--listen-peer-urls",
                self.peer_url,
                "--initial-advertise-peer-urls",
                self.peer_url,
                "--initial-cluster",
                self.cluster.unwrap_or(&alone),
                "--initial-cluster-state",
                "new",
            ]
            .map(OsString::from),
        );
        args
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value_of<'a>(args: &'a [OsString], flag: &str) -> &'a str {
        let i = args.iter().position(|a| a == flag).expect(flag);
        args[i + 1].to_str().unwrap()
    }

    #[test]
    fn a_lone_member_is_its_own_cluster_and_a_member_joins_the_one_given() {
        let mut m = EtcdMember {
            name: "m0",
            data_dir: Path::new("/tmp/d"),
            client_url: "http://10.0.0.1:2379",
            peer_url: "http://127.0.0.1:2380",
            cluster: None,
        };
        let args = m.args();
        assert_eq!(value_of(&args, "--data-dir"), "/tmp/d");
        assert_eq!(
            value_of(&args, "--advertise-client-urls"),
            "http://10.0.0.1:2379"
        );
        assert_eq!(
            value_of(&args, "--initial-cluster"),
            "m0=http://127.0.0.1:2380"
        );
        m.cluster = Some("m0=http://127.0.0.1:2380,m1=http://127.0.0.1:22380");
        assert_eq!(
            value_of(&m.args(), "--initial-cluster"),
            "m0=http://127.0.0.1:2380,m1=http://127.0.0.1:22380"
        );
    }
}
