//! Pods added to a running lab and taken away, as kubelet and the runtime do it: the pod's
//! network namespace, CNI ADD, its containers; and back: containers stopped, CNI DEL, the
//! namespace removed. A pod that cannot be made completely is taken away again, so `apply`
//! never leaves half a pod (no address held, no veth, no namespace).

use crate::runtime::{self, Binaries};
use crate::scenario::{Pod, PodEntry, PodManifest, Scenario};
use crate::state::{self, ContainerState, LabState, PodState};
use anyhow::{bail, Context, Result};
use podnet_netlink::netns;

/// Where the lab's scheduler puts a pod without `spec.nodeName`: the node with the fewest
/// pods, control-plane nodes only when there is no other (kubespray taints them).
pub fn schedule(s: &Scenario) -> Option<String> {
    let workers: Vec<_> = s
        .nodes
        .iter()
        .filter(|n| !n.roles.iter().any(|r| r == "control-plane"))
        .collect();
    let candidates = if workers.is_empty() {
        s.nodes.iter().collect()
    } else {
        workers
    };
    candidates
        .into_iter()
        .min_by_key(|n| s.pods.iter().filter(|p| p.node == n.name).count())
        .map(|n| n.name.clone())
}

/// The manifest without what the lab fills in, to compare a re-applied pod with its own.
fn as_written(m: &PodManifest) -> serde_yaml::Value {
    let mut m = m.clone();
    m.spec.node_name = None;
    serde_yaml::to_value(m).unwrap_or_default()
}

/// Adds `manifests` to the lab, all checked with the lab's pods first; what each became
/// (`pod/NAME created` or `unchanged`). On a failure the pods made by this call are removed.
pub fn add(lab: &mut LabState, bins: &Binaries, manifests: &[PodManifest]) -> Result<Vec<String>> {
    let mut scenario = lab.scenario.clone();
    let mut said = Vec::new();
    let mut new = Vec::new();
    for m in manifests {
        let name = &m.metadata.name;
        if let Some(old) = scenario
            .pods
            .iter()
            .find_map(|p| p.manifest.as_ref().filter(|o| o.metadata.name == *name))
        {
            if as_written(old) != as_written(m) {
                bail!("pod {name} exists and a pod's spec cannot change once it runs (Kubernetes refuses too): `delete pod {name}` first");
            }
            said.push(format!("pod/{name} unchanged"));
            continue;
        }
        let node = match &m.spec.node_name {
            Some(n) => n.clone(),
            None => schedule(&scenario).context("the lab has no nodes")?,
        };
        scenario.pods.push(PodEntry {
            node,
            manifest: Some(m.clone()),
            manifest_file: None,
        });
        new.push(name.clone());
        said.push(format!("pod/{name} created"));
    }
    scenario.validate().context("the pods do not fit the lab")?;
    let before = lab.scenario.clone();
    lab.scenario = scenario;
    let mut made = Vec::new();
    for name in &new {
        let made_one = make(lab, bins, name);
        if let Err(e) = made_one {
            for m in made.iter().chain(std::iter::once(name)) {
                if let Err(undo) = remove(lab, bins, m) {
                    eprintln!("warning: removing pod {m} again: {undo:#}");
                }
            }
            lab.scenario = before;
            lab.save()?;
            return Err(e);
        }
        made.push(name.clone());
    }
    lab.save()?;
    Ok(said)
}

/// What the lab records of a pod before any of it is made.
pub fn state_of(lab: &str, p: &Pod) -> PodState {
    let m = &p.manifest;
    PodState {
        name: m.metadata.name.clone(),
        namespace: m.metadata.namespace.clone(),
        node: p.node.clone(),
        container_id: runtime::container_id(lab, &m.metadata.namespace, &m.metadata.name),
        result: None,
        containers: m
            .spec
            .containers
            .iter()
            .map(|c| ContainerState {
                name: c.name.clone(),
                image: c.image.clone(),
                process: None,
            })
            .collect(),
        created: state::now(),
    }
}

/// Makes the scenario's pod `name` (already in `lab.scenario`): recorded first, so `down`
/// removes it however far this gets.
fn make(lab: &mut LabState, bins: &Binaries, name: &str) -> Result<()> {
    let entry = lab
        .scenario
        .pods()
        .into_iter()
        .find(|p| p.manifest.metadata.name == name)
        .context("the pod is in the scenario")?;
    let m = &entry.manifest;
    let path = LabState::netns_path(name);
    lab.namespaces.push(path.clone());
    lab.pods.push(state_of(&lab.name, &entry));
    lab.save()?;
    netns::create(&path).with_context(|| format!("create the namespace of pod {name}"))?;
    let i = lab.pods.len() - 1;
    let result = runtime::cni(bins, lab, &lab.pods[i], "ADD")?;
    lab.pods[i].result = Some(result);
    lab.save()?;
    let procs = runtime::start_containers(lab, &lab.pods[i], &m.spec)?;
    for (c, p) in lab.pods[i].containers.iter_mut().zip(procs) {
        c.process = Some(p);
    }
    lab.save()
}

/// Takes pod `name` away: its containers stopped, its address released by the CNI plugin
/// (DEL, when ADD gave it one), its namespace and files removed, the lab's record of it
/// dropped (its scenario entry too).
pub fn remove(lab: &mut LabState, bins: &Binaries, name: &str) -> Result<()> {
    if let Some(i) = lab.pods.iter().position(|p| p.name == name) {
        let pod = lab.pods[i].clone();
        for c in pod.containers.iter().filter_map(|c| c.process.as_ref()) {
            crate::procs::kill(c);
        }
        let path = LabState::netns_path(&pod.name);
        if std::path::Path::new(&path).exists() {
            runtime::cni(bins, lab, &pod, "DEL")
                .with_context(|| format!("CNI DEL for pod {name}"))?;
            netns::remove(&path)?;
        }
        lab.pods.remove(i);
        lab.namespaces.retain(|n| *n != path);
    }
    let _ = std::fs::remove_dir_all(lab.pod_dir(name));
    lab.scenario
        .pods
        .retain(|p| p.manifest.as_ref().is_none_or(|m| m.metadata.name != name));
    lab.save()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_go_to_the_least_busy_worker() {
        let mut s = Scenario::seed();
        // The seed: two pods on node04, three on node05; the control plane takes none.
        assert_eq!(schedule(&s).as_deref(), Some("sung-ubuntu04"));
        let extra = s.pods[0].clone();
        s.pods.push(PodEntry {
            node: "sung-ubuntu04".into(),
            ..extra
        });
        s.pods.push(s.pods[0].clone());
        assert_eq!(schedule(&s).as_deref(), Some("sung-ubuntu05"));
        for n in &mut s.nodes {
            n.roles = vec!["control-plane".into()];
        }
        assert!(schedule(&s).is_some(), "all control-plane: any node");
    }
}
