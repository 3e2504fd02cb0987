//! What kubelet writes into every pod and the lab writes too: `/etc/resolv.conf` from the
//! pod's `dnsPolicy` and `dnsConfig` (merged as kubelet merges them), and `/etc/hosts` with
//! the pod's own name and its `hostAliases`. Pure text here; [`write`] puts the files in the
//! lab's folder and the pod's first container mounts them (`procs::PodNs::New`).

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

/// kubelet's limits (`validation.MaxDNSNameservers`, `MaxDNSSearchPaths`,
/// `MaxDNSSearchListChars`): more nameservers than resolvers read are dropped.
const MAX_NAMESERVERS: usize = 3;
const MAX_SEARCHES: usize = 32;
const MAX_SEARCH_CHARS: usize = 2048;

/// `spec.dnsPolicy`. The lab's pods never share the node's network, so
/// `ClusterFirstWithHostNet` is `ClusterFirst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum DnsPolicy {
    #[default]
    ClusterFirst,
    ClusterFirstWithHostNet,
    /// The node's own resolver: in the lab, the outside resolver when it has one.
    Default,
    /// Only what `dnsConfig` says.
    None,
}

/// `spec.dnsConfig`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsConfig {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<IpAddr>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub searches: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<DnsOption>,
}

/// One of `dnsConfig.options`: `ndots` with value `"2"`, or `edns0` alone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsOption {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// One of `spec.hostAliases`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostAlias {
    pub ip: IpAddr,
    pub hostnames: Vec<String>,
}

/// What the cluster around a pod gives its resolver.
pub struct ClusterDns<'a> {
    /// kubelet's `--cluster-dns` (the node-local DNS).
    pub server: Ipv4Addr,
    /// kubelet's `--cluster-domain`.
    pub domain: &'a str,
    /// The node's own resolver (for `dnsPolicy: Default`).
    pub node_resolver: Option<Ipv4Addr>,
}

/// Refuses what the API server refuses (`validatePodDNSConfig`).
pub fn validate(policy: DnsPolicy, config: Option<&DnsConfig>) -> Result<()> {
    let empty = DnsConfig::default();
    let c = config.unwrap_or(&empty);
    if policy == DnsPolicy::None && c.nameservers.is_empty() {
        bail!("dnsPolicy None needs at least one dnsConfig nameserver");
    }
    if c.nameservers.len() > MAX_NAMESERVERS {
        bail!(
            "dnsConfig has {} nameservers: at most {MAX_NAMESERVERS}",
            c.nameservers.len()
        );
    }
    if c.searches.len() > MAX_SEARCHES {
        bail!(
            "dnsConfig has {} searches: at most {MAX_SEARCHES}",
            c.searches.len()
        );
    }
    for s in &c.searches {
        let ok = !s.is_empty()
            && s.len() <= 253
            && s.trim_end_matches('.').split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            });
        if !ok {
            bail!("dnsConfig search {s:?} is not a DNS name");
        }
    }
    if let Some(o) = c.options.iter().find(|o| o.name.is_empty()) {
        bail!("dnsConfig option {o:?} has no name");
    }
    Ok(())
}

/// The pod's `/etc/resolv.conf`, as kubelet hands it to the runtime and containerd writes it
/// (`search`, `nameserver` lines, `options`).
pub fn resolv_conf(
    namespace: &str,
    policy: DnsPolicy,
    config: Option<&DnsConfig>,
    cluster: &ClusterDns<'_>,
) -> String {
    let (mut servers, mut searches, mut options): (Vec<String>, Vec<String>, Vec<String>) =
        match policy {
            DnsPolicy::ClusterFirst | DnsPolicy::ClusterFirstWithHostNet => (
                vec![cluster.server.to_string()],
                vec![
                    format!("{namespace}.svc.{}", cluster.domain),
                    format!("svc.{}", cluster.domain),
                    cluster.domain.to_string(),
                ],
                vec!["ndots:5".into()],
            ),
            DnsPolicy::Default => (
                cluster
                    .node_resolver
                    .iter()
                    .map(|r| r.to_string())
                    .collect(),
                vec![],
                vec![],
            ),
            DnsPolicy::None => (vec![], vec![], vec![]),
        };
    if let Some(c) = config {
        servers.extend(c.nameservers.iter().map(|n| n.to_string()));
        searches.extend(
            c.searches
                .iter()
                .map(|s| s.trim_end_matches('.').to_string()),
        );
        for o in &c.options {
            let text = match &o.value {
                Some(v) if !v.is_empty() => format!("{}:{v}", o.name),
                _ => o.name.clone(),
            };
            // An option named again replaces the earlier one.
            match options
                .iter()
                .position(|x| x.split(':').next() == Some(&o.name))
            {
                Some(i) => options[i] = text,
                None => options.push(text),
            }
        }
    }
    dedup(&mut servers);
    servers.truncate(MAX_NAMESERVERS);
    dedup(&mut searches);
    searches.truncate(MAX_SEARCHES);
    while searches.iter().map(|s| s.len() + 1).sum::<usize>() > MAX_SEARCH_CHARS {
        searches.pop();
    }
    let mut out = String::new();
    if !searches.is_empty() {
        out += &format!("search {}\n", searches.join(" "));
    }
    for s in &servers {
        out += &format!("nameserver {s}\n");
    }
    if !options.is_empty() {
        out += &format!("options {}\n", options.join(" "));
    }
    out
}

fn dedup(v: &mut Vec<String>) {
    let mut seen = std::collections::HashSet::new();
    v.retain(|x| seen.insert(x.clone()));
}

/// The pod's `/etc/hosts`, kubelet's managed file.
pub fn hosts(pod: &str, ip: Option<&str>, aliases: &[HostAlias]) -> String {
    let mut out = String::from(
        "# Kubernetes-managed hosts file.\n\
         127.0.0.1\tlocalhost\n\
         ::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\n\
         fe00::0\tip6-mcastprefix\n\
         fe00::1\tip6-allnodes\n\
         fe00::2\tip6-allrouters\n",
    );
    if let Some(ip) = ip {
        out += &format!("{ip}\t{pod}\n");
    }
    if !aliases.is_empty() {
        out += "\n# Entries added by HostAliases.\n";
        for a in aliases {
            out += &format!("{}\t{}\n", a.ip, a.hostnames.join("\t"));
        }
    }
    out
}

/// Writes the pod's files into `dir`; what the first container binds over the host's.
pub fn write(dir: &Path, resolv_conf: &str, hosts: &str) -> Result<Vec<(PathBuf, &'static str)>> {
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let mut files = Vec::new();
    for (name, text, over) in [
        ("resolv.conf", resolv_conf, "/etc/resolv.conf"),
        ("hosts", hosts, "/etc/hosts"),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("write {}", path.display()))?;
        files.push((path, over));
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLUSTER: ClusterDns<'static> = ClusterDns {
        server: Ipv4Addr::new(169, 254, 25, 10),
        domain: "cluster.local",
        node_resolver: Some(Ipv4Addr::new(203, 0, 113, 53)),
    };

    fn config(yaml: &str) -> DnsConfig {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn the_seed_pod_gets_the_cluster_dns_first_and_its_own_nameserver_after() {
        let c = config("nameservers: [8.8.8.8]");
        assert_eq!(
            resolv_conf("default", DnsPolicy::ClusterFirst, Some(&c), &CLUSTER),
            "search default.svc.cluster.local svc.cluster.local cluster.local\n\
             nameserver 169.254.25.10\n\
             nameserver 8.8.8.8\n\
             options ndots:5\n"
        );
    }

    #[test]
    fn dns_config_merges_as_kubelet_merges_it() {
        let c = config(
            "nameservers: [169.254.25.10, 192.0.2.1, 192.0.2.2, 192.0.2.3]\n\
             searches: [corp.example., svc.cluster.local]\n\
             options: [{name: ndots, value: \"2\"}, {name: edns0}]",
        );
        assert_eq!(
            resolv_conf("shop", DnsPolicy::ClusterFirst, Some(&c), &CLUSTER),
            "search shop.svc.cluster.local svc.cluster.local cluster.local corp.example\n\
             nameserver 169.254.25.10\n\
             nameserver 192.0.2.1\n\
             nameserver 192.0.2.2\n\
             options ndots:2 edns0\n"
        );
    }

    #[test]
    fn policies_none_and_default() {
        let c = config("nameservers: [192.0.2.9]\nsearches: [example.org]");
        assert_eq!(
            resolv_conf("default", DnsPolicy::None, Some(&c), &CLUSTER),
            "search example.org\nnameserver 192.0.2.9\n"
        );
        assert_eq!(
            resolv_conf("default", DnsPolicy::Default, None, &CLUSTER),
            "nameserver 203.0.113.53\n"
        );
    }

    #[test]
    fn what_the_api_server_refuses_is_refused() {
        assert!(validate(DnsPolicy::None, None)
            .unwrap_err()
            .to_string()
            .contains("at least one"));
        let four = config("nameservers: [192.0.2.1, 192.0.2.2, 192.0.2.3, 192.0.2.4]");
        assert!(validate(DnsPolicy::ClusterFirst, Some(&four)).is_err());
        let bad = config("searches: [\"bad name\"]");
        assert!(validate(DnsPolicy::ClusterFirst, Some(&bad)).is_err());
        assert!(serde_yaml::from_str::<DnsConfig>("nameservers: [not-an-ip]").is_err());
        assert!(serde_yaml::from_str::<DnsPolicy>("Sometimes").is_err());
        validate(
            DnsPolicy::ClusterFirst,
            Some(&config("nameservers: [8.8.8.8]")),
        )
        .unwrap();
    }

    #[test]
    fn hosts_names_the_pod_and_its_aliases() {
        let a: Vec<HostAlias> =
            serde_yaml::from_str("[{ip: 192.0.2.7, hostnames: [db, db.example]}]").unwrap();
        let h = hosts("ubuntu-test", Some("10.233.99.1"), &a);
        assert!(h.starts_with("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n"));
        assert!(h.contains("\n10.233.99.1\tubuntu-test\n"));
        assert!(h.ends_with("# Entries added by HostAliases.\n192.0.2.7\tdb\tdb.example\n"));
    }
}
