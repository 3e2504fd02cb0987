//! The agent's config file, `/etc/podnet/agent.toml`: every flag of `podnet-agent run` as a
//! key of the same name (`node-name = "sung-ubuntu04"`, `etcd-endpoints = ["https://..."]`,
//! `node-block = ["10.233.99.0/24"]`), plus `log-level`. A flag given on the command line wins
//! over the file; the file wins over the defaults. Unknown keys and wrong types are errors that
//! name the key's path, the value as written and the line
//! ([`crate::config_errors`]). TOML (the `toml` crate) because operators write it by hand and
//! systemd and Kubernetes ConfigMaps carry it as plain text.

use crate::settings::{Encapsulation, Routing, RunArgs, StoreArgs};
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

/// Where the agent looks for its file when `--config` is not given (read only if it exists).
pub const DEFAULT_PATH: &str = "/etc/podnet/agent.toml";

/// The file's contents: every key optional (absent means "the flag's default").
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AgentFile {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_level: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_ip: Option<Ipv4Addr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_ip_interface: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_ip_reaches: Option<Ipv4Addr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub datastore: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub etcd_endpoints: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub etcd_prefix: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub etcd_ca: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub etcd_cert: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub etcd_key: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub etcd_timeout_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encapsulation: Option<Encapsulation>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cross_subnet: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_addr: Option<SocketAddr>,
    #[serde(
        default,
        deserialize_with = "podnet_ipam::cidr::de_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub pool: Option<Ipv4Net>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub block_size: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strict_affinity: Option<bool>,
    #[serde(
        default,
        deserialize_with = "podnet_ipam::cidr::de_opt_vec",
        skip_serializing_if = "Option::is_none"
    )]
    pub node_block: Option<Vec<Ipv4Net>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resync_seconds: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub routing: Option<Routing>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bird: Option<String>,
}

/// Why a config file was refused.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: String, message: String },
    #[error("config file {path}: {message}")]
    Invalid { path: String, message: String },
}

impl AgentFile {
    /// Reads and parses `path`; an unknown key or a wrong type is an error naming it.
    pub fn read(path: &Path) -> Result<AgentFile, FileError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| FileError::Read {
            path: shown.clone(),
            source,
        })?;
        let file = AgentFile::parse(&text).map_err(|message| FileError::Parse {
            path: shown.clone(),
            message,
        })?;
        file.check().map_err(|message| FileError::Invalid {
            path: shown,
            message,
        })?;
        Ok(file)
    }

    /// Parses `text`; a refusal names the key's path, the value as written and the line.
    pub fn parse(text: &str) -> Result<AgentFile, String> {
        let de =
            toml::Deserializer::parse(text).map_err(|e| e.to_string().trim_end().to_string())?;
        serde_path_to_error::deserialize(de).map_err(|e| crate::config_errors::parse_error(text, e))
    }

    /// What clap would refuse on a command line, refused in the file too.
    fn check(&self) -> Result<(), String> {
        let ways = [
            self.node_ip.is_some(),
            self.node_ip_interface.is_some(),
            self.node_ip_reaches.is_some(),
        ];
        if ways.iter().filter(|w| **w).count() > 1 {
            return Err(
                "node-ip, node-ip-interface and node-ip-reaches are three ways to find one address: set at most one"
                    .into(),
            );
        }
        let etcd_only = [
            ("etcd-prefix", self.etcd_prefix.is_some()),
            ("etcd-ca", self.etcd_ca.is_some()),
            ("etcd-cert", self.etcd_cert.is_some()),
            ("etcd-key", self.etcd_key.is_some()),
            ("etcd-timeout-ms", self.etcd_timeout_ms.is_some()),
        ];
        let no_etcd = self.etcd_endpoints.as_ref().is_none_or(Vec::is_empty);
        if let Some((key, _)) = etcd_only.iter().find(|(_, set)| *set).filter(|_| no_etcd) {
            return Err(format!("{key}: set, but etcd-endpoints is not"));
        }
        if let Some(level) = &self.log_level {
            level.parse::<tracing::Level>().map_err(|_| {
                format!("log-level: {level:?}: one of error, warn, info, debug, trace")
            })?;
        }
        Ok(())
    }

    /// Every setting `args` ends up with, as a file would say it (what `config check` prints).
    pub fn effective(args: &RunArgs, log_level: tracing::Level) -> AgentFile {
        let s = &args.store;
        AgentFile {
            log_level: Some(log_level.to_string().to_lowercase()),
            node_name: args.node_name.clone(),
            node_ip: args.node_ip,
            node_ip_interface: args.node_ip_interface.clone(),
            node_ip_reaches: args.node_ip_reaches,
            datastore: Some(s.datastore.clone()),
            etcd_endpoints: (!s.etcd_endpoints.is_empty()).then(|| s.etcd_endpoints.clone()),
            etcd_prefix: s.etcd_prefix.clone(),
            etcd_ca: s.etcd_ca.clone(),
            etcd_cert: s.etcd_cert.clone(),
            etcd_key: s.etcd_key.clone(),
            etcd_timeout_ms: s.etcd_timeout_ms,
            encapsulation: Some(args.encapsulation),
            cross_subnet: Some(args.cross_subnet),
            state_dir: Some(args.state_dir.clone()),
            metrics_addr: Some(args.metrics_addr),
            pool: args.pool,
            block_size: Some(args.block_size),
            strict_affinity: Some(args.strict_affinity),
            node_block: Some(args.node_blocks.clone()),
            resync_seconds: Some(args.resync_seconds),
            routing: Some(args.routing),
            bird: Some(args.bird.clone()),
        }
    }

    pub fn render(&self) -> String {
        toml::to_string(self).expect("settings always serialize")
    }

    /// Puts the file's values into `args` wherever the command line did not set the flag
    /// (`given` says, by clap's argument id, which flags were on the command line).
    pub fn apply(&self, args: &mut RunArgs, given: &dyn Fn(&str) -> bool) {
        macro_rules! set {
            ($id:literal, $dst:expr, $src:expr) => {
                if !given($id) {
                    if let Some(v) = $src.clone() {
                        $dst = v;
                    }
                }
            };
        }
        macro_rules! set_some {
            ($id:literal, $dst:expr, $src:expr) => {
                if !given($id) && $src.is_some() {
                    $dst = $src.clone();
                }
            };
        }
        // The three ways to find the node address are one choice: a flag for any of them
        // overrides the file's choice.
        if !(given("node_ip") || given("node_ip_interface") || given("node_ip_reaches")) {
            set_some!("node_ip", args.node_ip, self.node_ip);
            set_some!(
                "node_ip_interface",
                args.node_ip_interface,
                self.node_ip_interface
            );
            set_some!(
                "node_ip_reaches",
                args.node_ip_reaches,
                self.node_ip_reaches
            );
        }
        set_some!("node_name", args.node_name, self.node_name);
        self.apply_store(&mut args.store, given);
        set!("encapsulation", args.encapsulation, self.encapsulation);
        set!("cross_subnet", args.cross_subnet, self.cross_subnet);
        set!("state_dir", args.state_dir, self.state_dir);
        set!("metrics_addr", args.metrics_addr, self.metrics_addr);
        set_some!("pool", args.pool, self.pool);
        set!("block_size", args.block_size, self.block_size);
        set!(
            "strict_affinity",
            args.strict_affinity,
            self.strict_affinity
        );
        set!("node_blocks", args.node_blocks, self.node_block);
        set!("resync_seconds", args.resync_seconds, self.resync_seconds);
        set!("routing", args.routing, self.routing);
        set!("bird", args.bird, self.bird);
    }

    /// The datastore keys alone (what the admin commands use).
    pub fn apply_store(&self, s: &mut StoreArgs, given: &dyn Fn(&str) -> bool) {
        let etcd_on_command_line = given("etcd_endpoints");
        if !etcd_on_command_line {
            if let Some(e) = &self.etcd_endpoints {
                s.etcd_endpoints = e.clone();
            }
        }
        if given("datastore") && !etcd_on_command_line {
            // `--datastore FILE` on the command line means SQLite, whatever the file says.
            s.etcd_endpoints.clear();
        } else if let Some(d) = &self.datastore {
            s.datastore = d.clone();
        }
        let opt = |id: &str, dst: &mut Option<PathBuf>, src: &Option<PathBuf>| {
            if !given(id) && src.is_some() {
                *dst = src.clone();
            }
        };
        opt("etcd_ca", &mut s.etcd_ca, &self.etcd_ca);
        opt("etcd_cert", &mut s.etcd_cert, &self.etcd_cert);
        opt("etcd_key", &mut s.etcd_key, &self.etcd_key);
        if !given("etcd_prefix") && self.etcd_prefix.is_some() {
            s.etcd_prefix = self.etcd_prefix.clone();
        }
        if !given("etcd_timeout_ms") && self.etcd_timeout_ms.is_some() {
            s.etcd_timeout_ms = self.etcd_timeout_ms;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args_with(file: &str, flags: &[&str]) -> RunArgs {
        let mut args = RunArgs::from_flags(flags).unwrap();
        let given: Vec<String> = flags
            .iter()
            .filter_map(|f| f.strip_prefix("--"))
            .map(|f| f.replace('-', "_").replace("node_block", "node_blocks"))
            .collect();
        AgentFile::parse(file)
            .unwrap()
            .apply(&mut args, &|id| given.iter().any(|g| g == id));
        args
    }

    #[test]
    fn the_file_sets_what_the_flags_leave_and_flags_win() {
        let file = r#"
            node-name = "sung-ubuntu04"
            node-ip-interface = "ens*"
            etcd-endpoints = ["https://192.168.110.100:2379"]
            etcd-ca = "/etc/podnet/tls/ca.pem"
            routing = "bgp"
            encapsulation = "ipip"
            pool = "10.233.64.0/18"
            block-size = 24
            node-block = ["10.233.99.0/24"]
        "#;
        let a = args_with(file, &[]);
        assert_eq!(a.node_name.as_deref(), Some("sung-ubuntu04"));
        assert_eq!(a.routing, Routing::Bgp);
        assert_eq!(a.encapsulation, Encapsulation::Ipip);
        assert_eq!(a.block_size, 24);
        assert_eq!(
            a.node_blocks,
            vec!["10.233.99.0/24".parse::<Ipv4Net>().unwrap()]
        );
        assert!(matches!(
            a.store.config(),
            podnet_ipam::DatastoreConfig::Etcd { ref endpoints, tls: Some(_), .. }
                if endpoints == &["https://192.168.110.100:2379"]
        ));
        let a = args_with(
            file,
            &[
                "--node-name",
                "n1",
                "--node-ip",
                "10.0.0.1",
                "--routing",
                "datastore",
                "--datastore",
                "/tmp/s.db",
            ],
        );
        assert_eq!(a.node_name.as_deref(), Some("n1"));
        // One choice of how to find the address: the flag's, not the file's as well.
        assert_eq!(
            (a.node_ip, a.node_ip_interface),
            ("10.0.0.1".parse().ok(), None)
        );
        assert_eq!(a.routing, Routing::Datastore);
        assert_eq!(
            a.store.config(),
            podnet_ipam::DatastoreConfig::sqlite("/tmp/s.db")
        );
        assert_eq!(
            a.block_size, 24,
            "what the flags leave still comes from the file"
        );
    }

    #[test]
    fn unknown_keys_and_wrong_types_are_errors_naming_them() {
        let e = AgentFile::parse("node-name = \"a\"\nnode-nmae = \"b\"\n").unwrap_err();
        assert!(e.contains("node-nmae") && e.contains("line 2"), "{e}");
        let e = AgentFile::parse("block-size = \"twenty-four\"\n").unwrap_err();
        assert!(e.contains("block-size") || e.contains("line 1"), "{e}");
        let e = AgentFile::parse("routing = \"ospf\"\n").unwrap_err();
        assert!(e.contains("ospf"), "{e}");
    }

    #[test]
    fn contradictions_are_refused() {
        let both =
            AgentFile::parse("node-ip = \"10.0.0.1\"\nnode-ip-interface = \"eth0\"\n").unwrap();
        assert!(both.check().unwrap_err().contains("at most one"));
        let tls = AgentFile::parse("etcd-ca = \"/ca.pem\"\n").unwrap();
        assert!(tls.check().unwrap_err().contains("etcd-ca"));
        let level = AgentFile::parse("log-level = \"loud\"\n").unwrap();
        assert!(level
            .check()
            .unwrap_err()
            .starts_with("log-level: \"loud\": one of"));
    }

    #[test]
    fn the_effective_settings_read_back_as_the_same_settings() {
        let args = args_with("pool = \"10.233.64.0/18\"\nrouting = \"bgp\"\n", &[]);
        let text = AgentFile::effective(&args, tracing::Level::INFO).render();
        assert!(
            text.contains("block-size = 26") || text.contains("block-size ="),
            "{text}"
        );
        let again = args_with(&text, &[]);
        assert_eq!(
            AgentFile::effective(&again, tracing::Level::INFO),
            AgentFile::effective(&args, tracing::Level::INFO)
        );
    }
}
