//! The lab's container runtime: CNI calls made the way libcni makes them (the `podnet` binary,
//! `CNI_*` environment, the network config on stdin, run inside the node's namespace, the ADD
//! result kept for CHECK and DEL), and containers started as processes in the pod.

use crate::cluster_dns::{DOMAIN, NODE_LOCAL_DNS};
use crate::pod_files::{self, ClusterDns};
use crate::procs::{self, Placement, PodNs};
use crate::scenario::{Container, PodSpec};
use crate::state::{LabState, PodState, Proc};
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use sha1::{Digest, Sha1};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// The podnet binaries the lab drives: next to `podnet-lab` itself (one cargo target dir).
pub struct Binaries {
    pub dir: PathBuf,
    /// Run each node's agent from this container image under podman instead of from `dir`.
    pub agent_image: Option<String>,
}

/// True if `name` is an executable on PATH.
pub fn on_path(name: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
}

impl Binaries {
    pub fn find() -> Result<Binaries> {
        let exe = std::env::current_exe().context("find podnet-lab's own path")?;
        let dir = exe
            .parent()
            .context("podnet-lab has no folder")?
            .to_path_buf();
        for b in ["podnet", "podnet-ipam", "podnet-agent"] {
            if !dir.join(b).is_file() {
                bail!("{} is missing next to podnet-lab: build the workspace (cargo build --workspace) or use `cargo xtask lab`", dir.join(b).display());
            }
        }
        Ok(Binaries {
            dir,
            agent_image: None,
        })
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// A runtime-style container ID for a pod.
pub fn container_id(lab: &str, namespace: &str, pod: &str) -> String {
    let d = Sha1::digest(format!("{lab}/{namespace}/{pod}").as_bytes());
    d.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// The podnet conflist entry for a node (a conflist of one plugin).
pub fn network_config(lab: &LabState, node: &str) -> Value {
    json!({
        "cniVersion": "1.1.0",
        "name": "k8s-pod-network",
        "type": "podnet",
        "nodename": node,
        "encapsulation": lab.encapsulation,
        "stateDir": lab.node_dir(node),
        "log": {"file": lab.logs().join("cni.log"), "level": "info"},
        "datastore": lab.datastore_config(),
        "ipam": {"type": "podnet-ipam", "pool": lab.scenario.pool.cidr, "blockSize": lab.scenario.pool.block_size},
    })
}

/// Runs one CNI verb for `pod` as a runtime would; the reply (or the CNI error) as JSON.
pub fn cni(bins: &Binaries, lab: &LabState, pod: &PodState, verb: &str) -> Result<Value> {
    match cni_call(bins, lab, pod, &pod.name, verb, None)? {
        Call::Done(reply) => Ok(reply),
        Call::Failed { code, msg, details } => {
            bail!(
                "CNI {verb} for pod {}: error {code}: {msg} {details}",
                pod.name
            )
        }
        Call::Killed => bail!("CNI {verb} for pod {} was killed", pod.name),
    }
}

/// How a plugin call ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    Done(Value),
    /// The plugin's error reply.
    Failed {
        code: u64,
        msg: String,
        details: String,
    },
    /// SIGKILLed by the caller (a runtime's timeout).
    Killed,
}

/// One CNI verb for `pod` in the network namespace `sandbox` (a lab pod's is named for the
/// pod; a recreated pod has a second one), the plugin SIGKILLed after `kill_after` if it is
/// still running (a runtime giving up on a slow call). An exit without exactly one JSON reply
/// is an error.
pub fn cni_call(
    bins: &Binaries,
    lab: &LabState,
    pod: &PodState,
    sandbox: &str,
    verb: &str,
    kill_after: Option<std::time::Duration>,
) -> Result<Call> {
    let mut conf = network_config(lab, &pod.node);
    if verb != "ADD" {
        if let Some(r) = &pod.result {
            conf["prevResult"] = r.clone();
        }
    }
    let args = format!(
        "IgnoreUnknown=1;K8S_POD_NAMESPACE={};K8S_POD_NAME={};K8S_POD_INFRA_CONTAINER_ID={}",
        pod.namespace, pod.name, pod.container_id
    );
    let env = [
        ("CNI_COMMAND", verb.to_string()),
        ("CNI_CONTAINERID", pod.container_id.clone()),
        ("CNI_NETNS", LabState::netns_path(sandbox)),
        ("CNI_IFNAME", "eth0".into()),
        ("CNI_ARGS", args),
    ];
    run_plugin(bins, &pod.node, &env, &conf, kill_after)
}

/// CNI GC on `node`: every attachment not in `valid` (container IDs, interface eth0) is
/// forgotten: its address released, its host-side veth removed.
pub fn cni_gc(bins: &Binaries, lab: &LabState, node: &str, valid: &[String]) -> Result<Call> {
    let mut conf = network_config(lab, node);
    conf["cni.dev/valid-attachments"] = valid
        .iter()
        .map(|id| json!({"containerID": id, "ifname": "eth0"}))
        .collect();
    run_plugin(bins, node, &[("CNI_COMMAND", "GC".into())], &conf, None)
}

/// The `podnet` plugin run in `node`'s namespace with `env` and `conf` on stdin.
fn run_plugin(
    bins: &Binaries,
    node: &str,
    env: &[(&str, String)],
    conf: &Value,
    kill_after: Option<std::time::Duration>,
) -> Result<Call> {
    let mut cmd = Command::new(bins.path("podnet"));
    cmd.env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("CNI_PATH", &bins.dir)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let node_ns = LabState::netns_path(node);
    procs::place(
        &mut cmd,
        &Placement {
            netns: &node_ns,
            pod: PodNs::NONE,
            detach: false,
        },
    )?;
    let mut child = cmd.spawn().context("start the podnet CNI plugin")?;
    let _ = child
        .stdin
        .take()
        .expect("piped")
        .write_all(conf.to_string().as_bytes());
    let killed = match kill_after {
        Some(after) => {
            let start = std::time::Instant::now();
            loop {
                if child.try_wait()?.is_some() {
                    break false;
                }
                if start.elapsed() >= after {
                    let _ = child.kill();
                    break true;
                }
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
        None => false,
    };
    let out = child.wait_with_output()?;
    use std::os::unix::process::ExitStatusExt;
    if killed && out.status.signal() == Some(libc::SIGKILL) {
        return Ok(Call::Killed);
    }
    let what = env.first().map_or("", |(_, v)| v.as_str());
    let reply: Value = if out.stdout.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&out.stdout).with_context(|| {
            format!(
                "CNI {what}: the plugin's reply is not one JSON document: {:?}",
                String::from_utf8_lossy(&out.stdout)
            )
        })?
    };
    if out.status.success() {
        return Ok(Call::Done(reply));
    }
    if reply["code"].as_u64().is_none() {
        bail!(
            "CNI {what}: the plugin failed ({}) without a CNI error reply; stderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(Call::Failed {
        code: reply["code"].as_u64().unwrap_or(0),
        msg: reply["msg"].as_str().unwrap_or("").to_string(),
        details: reply["details"].as_str().unwrap_or("").to_string(),
    })
}

/// The command line a container runs: its `command` + `args`, else the image's built-in
/// behaviour (nginx serves HTTP on its containerPort; anything else sleeps).
pub fn argv(c: &Container) -> Vec<String> {
    if !c.command.is_empty() {
        return c.command.iter().chain(&c.args).cloned().collect();
    }
    let image = c.image.split([':', '@']).next().unwrap_or("");
    let image = image.rsplit('/').next().unwrap_or(image);
    if image == "nginx" {
        let port = c.ports.first().map_or(80, |p| p.container_port);
        let me = std::env::current_exe()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| "podnet-lab".into());
        return vec![me, "serve-http".into(), "--port".into(), port.to_string()];
    }
    let mut v = vec!["sleep".to_string(), "infinity".to_string()];
    v.extend(c.args.iter().cloned());
    v
}

/// The pod's `/etc/resolv.conf` and `/etc/hosts`, as kubelet would write them on its node.
pub fn pod_files(lab: &LabState, pod: &PodState, spec: &PodSpec) -> (String, String) {
    let cluster = ClusterDns {
        server: NODE_LOCAL_DNS,
        domain: DOMAIN,
        node_resolver: lab.scenario.outside.as_ref().and_then(|o| o.resolver),
    };
    let resolv = pod_files::resolv_conf(
        &pod.namespace,
        spec.dns_policy,
        spec.dns_config.as_ref(),
        &cluster,
    );
    let hosts = pod_files::hosts(&pod.name, pod.ip().as_deref(), &spec.host_aliases);
    (resolv, hosts)
}

/// Starts a pod's containers: the first makes the pod's UTS and mount namespaces (its
/// hostname, its `/etc/resolv.conf` and `/etc/hosts` from `spec`), the others join them.
pub fn start_containers(lab: &LabState, pod: &PodState, spec: &PodSpec) -> Result<Vec<Proc>> {
    let (resolv, hosts) = pod_files(lab, pod, spec);
    let files = pod_files::write(&lab.pod_dir(&pod.name), &resolv, &hosts)?;
    let mut procs: Vec<Proc> = Vec::new();
    for c in &spec.containers {
        let argv = argv(c);
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .env("HOSTNAME", &pod.name)
            .env("PODNET_LAB", &lab.name);
        let netns = LabState::netns_path(&pod.name);
        let placement = Placement {
            netns: &netns,
            pod: match procs.first() {
                Some(first) => PodNs::Join(first.pid),
                None => PodNs::New {
                    hostname: &pod.name,
                    files: &files,
                    template: lab
                        .mount_template
                        .as_ref()
                        .filter(|t| procs::alive(t))
                        .map(|t| t.pid),
                },
            },
            detach: true,
        };
        let p = procs::spawn_daemon(
            cmd,
            &placement,
            &lab.logs().join(format!("{}-{}.log", pod.name, c.name)),
        )
        .with_context(|| format!("start container {} of pod {}", c.name, pod.name))?;
        procs.push(p);
    }
    Ok(procs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Port;

    fn container(image: &str, command: &[&str]) -> Container {
        Container {
            name: "c".into(),
            image: image.into(),
            command: command.iter().map(|s| s.to_string()).collect(),
            args: vec![],
            ports: vec![Port {
                container_port: 8080,
                name: None,
            }],
        }
    }

    #[test]
    fn commands_run_as_given_and_known_images_get_a_behaviour() {
        assert_eq!(
            argv(&container("ubuntu:20.04", &["/bin/sleep", "3650d"])),
            ["/bin/sleep", "3650d"]
        );
        let nginx = argv(&container("docker.io/library/nginx:1.25", &[]));
        assert_eq!(&nginx[1..], ["serve-http", "--port", "8080"]);
        assert_eq!(argv(&container("ubuntu", &[])), ["sleep", "infinity"]);
    }

    #[test]
    fn container_ids_are_stable_and_distinct() {
        assert_eq!(
            container_id("seed", "default", "a"),
            container_id("seed", "default", "a")
        );
        assert_ne!(
            container_id("seed", "default", "a"),
            container_id("seed", "default", "b")
        );
        assert_eq!(container_id("seed", "default", "a").len(), 32);
    }
}
