//! `exec POD [-c CONTAINER] -- CMD` and `node NODE -- CMD`.

use crate::procs::{self, Placement, PodNs};
use crate::state::LabState;
use anyhow::{bail, Context, Result};
use std::process::Command;

/// Runs `command` in a container's network and UTS namespaces (the pod's eth0, the pod's
/// hostname); the container's exit code.
pub fn exec(lab: &LabState, pod: &str, container: Option<&str>, command: &[String]) -> Result<i32> {
    let p = lab.pod(pod)?;
    let c = match container {
        Some(name) => p
            .containers
            .iter()
            .find(|c| c.name == name)
            .with_context(|| {
                let names: Vec<&str> = p.containers.iter().map(|c| c.name.as_str()).collect();
                format!(
                    "pod {pod} has no container {name} (it has {})",
                    names.join(", ")
                )
            })?,
        None => p.containers.first().context("the pod has no containers")?,
    };
    let proc_ = c.process.as_ref().filter(|pr| procs::alive(pr));
    let Some(pr) = proc_ else {
        bail!("container {} of pod {pod} is not running", c.name)
    };
    let netns = LabState::netns_path(&p.name);
    procs::run_in(
        command_for(command),
        &Placement {
            netns: &netns,
            pod: PodNs::Join(pr.pid),
            detach: false,
        },
    )
}

/// Runs `command` in a node's network namespace.
pub fn node_exec(lab: &LabState, node: &str, command: &[String]) -> Result<i32> {
    if !lab.nodes.iter().any(|n| n.name == node) {
        bail!("no node {node} in lab {}", lab.name);
    }
    let netns = LabState::netns_path(node);
    procs::run_in(
        command_for(command),
        &Placement {
            netns: &netns,
            pod: PodNs::NONE,
            detach: false,
        },
    )
}

fn command_for(argv: &[String]) -> Command {
    let mut c = Command::new(&argv[0]);
    c.args(&argv[1..]);
    c
}
