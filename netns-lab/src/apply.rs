//! Changing a running lab as kubectl changes a cluster: `apply -f FILE` (Service manifests,
//! created or configured), `delete svc NAME` and `delete pod NAME`. Each change is checked as
//! a whole first (nothing half-applied), then stored; the nodes' proxies and DNS follow the
//! datastore within a second.

use crate::runtime::{self, Binaries};
use crate::services::{settle, ServiceManifest};
use crate::state::LabState;
use anyhow::{bail, Context, Result};
use podnet_ipam::services;
use serde::Deserialize;

/// Settles the lab's Services, writes each one's ClusterIP into its manifest (so a later
/// change never moves it), and stores every Service with its endpoints; Services no longer
/// in the lab are removed from the datastore.
pub fn store_services(lab: &mut LabState) -> Result<()> {
    let settled = settle(&lab.scenario.services, lab.scenario.service_cidr)?;
    for (m, s) in lab.scenario.services.iter_mut().zip(&settled) {
        m.spec.cluster_ip = Some(s.cluster_ip.map_or("None".into(), |ip| ip.to_string()));
    }
    let records = crate::services_up::records(lab)?;
    lab.with_store(move |st| -> Result<()> {
        for r in services::list(st)? {
            if !records
                .iter()
                .any(|w| w.namespace == r.namespace && w.name == r.name)
            {
                services::delete(st, &r.namespace, &r.name)?;
            }
        }
        for r in &records {
            services::put(st, r)?;
        }
        Ok(())
    })??;
    lab.save()
}

/// `apply -f FILE`: every document must be a Service; all are checked together with the
/// lab's others before anything is stored.
pub fn apply(lab: &mut LabState, text: &str) -> Result<Vec<String>> {
    let mut docs = Vec::new();
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let v = serde_yaml::Value::deserialize(doc)
            .with_context(|| format!("document {}: not YAML", i + 1))?;
        if v.is_null() {
            continue;
        }
        let kind = v.get("kind").and_then(|k| k.as_str()).unwrap_or("");
        if kind != "Service" {
            bail!("document {}: kind {kind:?}: apply takes Services (pods are placed by the scenario file)", i + 1);
        }
        let m: ServiceManifest = serde_yaml::from_value(v)
            .with_context(|| format!("document {}: not a Service", i + 1))?;
        docs.push(m);
    }
    if docs.is_empty() {
        bail!("nothing to apply");
    }
    let mut services = lab.scenario.services.clone();
    let mut said = Vec::new();
    for m in docs {
        let same = |o: &ServiceManifest| {
            o.metadata.name == m.metadata.name && o.metadata.namespace == m.metadata.namespace
        };
        let word = match services.iter().position(same) {
            Some(i) => {
                services[i] = m.clone();
                "configured"
            }
            None => {
                services.push(m.clone());
                "created"
            }
        };
        said.push(format!("service/{} {word}", m.metadata.name));
    }
    // Checked whole (range, taken addresses, ports) before the lab changes.
    settle(&services, lab.scenario.service_cidr)?;
    lab.scenario.services = services;
    store_services(lab)?;
    Ok(said)
}

/// `delete svc NAME`.
pub fn delete_service(lab: &mut LabState, namespace: &str, name: &str) -> Result<String> {
    let before = lab.scenario.services.len();
    lab.scenario
        .services
        .retain(|m| !(m.metadata.name == name && m.metadata.namespace == namespace));
    if lab.scenario.services.len() == before {
        bail!("services \"{name}\" not found in namespace {namespace}");
    }
    store_services(lab)?;
    Ok(format!("service \"{name}\" deleted"))
}

/// `delete pod NAME`: its containers stopped, its address released by the CNI plugin (DEL),
/// its namespace removed; the Services it backed lose it as an endpoint.
pub fn delete_pod(lab: &mut LabState, bins: &Binaries, name: &str) -> Result<String> {
    let i = lab
        .pods
        .iter()
        .position(|p| p.name == name)
        .with_context(|| format!("pods \"{name}\" not found"))?;
    let pod = lab.pods[i].clone();
    for c in pod.containers.iter().filter_map(|c| c.process.as_ref()) {
        crate::procs::kill(c);
    }
    runtime::cni(bins, lab, &pod, "DEL").with_context(|| format!("CNI DEL for pod {name}"))?;
    podnet_netlink::netns::remove(LabState::netns_path(&pod.name))?;
    let _ = std::fs::remove_dir_all(lab.pod_dir(&pod.name));
    lab.pods.remove(i);
    lab.namespaces
        .retain(|n| *n != LabState::netns_path(&pod.name));
    lab.save()?;
    store_services(lab)?;
    Ok(format!("pod \"{name}\" deleted"))
}
