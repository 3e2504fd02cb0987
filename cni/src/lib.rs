//! `podnet`, the CNI main plugin: Calico's pod dataplane. Each pod gets a veth pair: the pod
//! end (`eth0`) holds the pod's /32 and a default route via 169.254.1.1; the host end
//! (`cali` + 11 hex digits) answers for 169.254.1.1 by proxy ARP and carries the node's route
//! to the /32. Addresses come from `podnet-ipam` in-process or from a delegated IPAM plugin.
//!
//! [`run`] is the whole plugin given the environment and stdin; `main` adds logging and the
//! reply. Netlink goes through `podnet-netlink` (synchronous: the plugin lives milliseconds).

pub mod config;
pub mod dataplane;
pub mod error;
pub mod ipam;
pub mod mtu;
pub mod naming;
pub mod verbs;

use config::{LogConf, NetConf};
use podnet_cni_types::{reply::config_or_early, CniEnv, CniError, CniVersion, Command};

/// The whole plugin after the environment and stdin are read: VERSION answered, the config
/// parsed (then `start_logging` is handed its `log` section), the verb run. Returns the version
/// to reply in and the reply body; the binary and the fuzz target both go through here.
pub fn call(
    env: &CniEnv,
    stdin: &[u8],
    start_logging: impl FnOnce(&LogConf),
) -> (CniVersion, Result<serde_json::Value, CniError>) {
    let conf = match config_or_early(env.command, stdin, NetConf::parse) {
        Ok(c) => c,
        Err(early) => return early,
    };
    start_logging(&conf.log);
    let span = tracing::info_span!(
        "cni",
        command = ?env.command,
        container = %env.container_id,
        ifname = %env.ifname,
        netns = env.netns.as_deref().unwrap_or("-"),
    );
    let _entered = span.enter();
    let outcome = run(env, &conf);
    match &outcome {
        Ok(_) => tracing::info!("done"),
        Err(e) => tracing::error!("{e}"),
    }
    (conf.version, outcome)
}

/// Runs one CNI call: the version to answer in, and the reply body or error.
pub fn run(env: &CniEnv, conf: &NetConf) -> Result<serde_json::Value, CniError> {
    let v = conf.version;
    let outcome = match env.command {
        Command::Add => verbs::add::add(env, conf).map(|r| r.to_json(v)),
        Command::Del => verbs::del::del(env, conf).map(|()| serde_json::Value::Null),
        Command::Check => {
            v.require(CniVersion::V0_4_0, "CHECK")?;
            verbs::check::check(env, conf).map(|()| serde_json::Value::Null)
        }
        Command::Gc => {
            v.require(CniVersion::V1_1_0, "GC")?;
            verbs::gc::gc(env, conf).map(|()| serde_json::Value::Null)
        }
        Command::Status => {
            v.require(CniVersion::V1_1_0, "STATUS")?;
            verbs::status::status(env, conf).map(|()| serde_json::Value::Null)
        }
        Command::Version => return Ok(CniVersion::version_reply(v.as_str())),
    };
    outcome.map_err(|e| e.to_cni())
}
