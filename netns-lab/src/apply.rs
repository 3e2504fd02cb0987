//! Changing a running lab as kubectl changes a cluster: `apply -f FILE` (Services created or
//! configured, Pods created), `delete svc NAME` and `delete pod NAME`. Each change is checked as
//! a whole first (nothing half-applied), then stored; the nodes' proxies and DNS follow the
//! datastore within a second.

use crate::pods;
use crate::runtime::Binaries;
use crate::scenario::PodManifest;
use crate::services::{settle, ServiceManifest};
use crate::state::LabState;
use anyhow::{bail, Context, Result};
use podnet_ipam::services::{self, ServiceRecord};
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
        let stored = services::list(st)?;
        for r in &stored {
            if !records
                .iter()
                .any(|w| w.namespace == r.namespace && w.name == r.name)
            {
                services::delete(st, &r.namespace, &r.name)?;
            }
        }
        for r in changed(&stored, records) {
            services::put(st, &r)?;
        }
        Ok(())
    })??;
    lab.save()
}

/// The records to write over `stored`: a Service keeps the age it was made with however often
/// it is rewritten, and one that did not change is not written again (its proxies have
/// nothing to do).
fn changed(stored: &[ServiceRecord], records: Vec<ServiceRecord>) -> Vec<ServiceRecord> {
    records
        .into_iter()
        .filter_map(|mut r| {
            let old = stored
                .iter()
                .find(|o| o.namespace == r.namespace && o.name == r.name);
            if let Some(old) = old {
                r.created = old.created;
                if *old == r {
                    return None;
                }
            }
            Some(r)
        })
        .collect()
}

/// `apply -f FILE`: Services (created or configured) and Pods (created; scheduled unless
/// `spec.nodeName` says where). Everything is checked together with the lab's others before
/// anything changes; pods that cannot be made are taken away again.
pub fn apply(lab: &mut LabState, bins: &Binaries, text: &str) -> Result<Vec<String>> {
    let mut docs = Vec::new();
    let mut pods = Vec::new();
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let v = serde_yaml::Value::deserialize(doc)
            .with_context(|| format!("document {}: not YAML", i + 1))?;
        if v.is_null() {
            continue;
        }
        match v.get("kind").and_then(|k| k.as_str()).unwrap_or("") {
            "Service" => docs.push(
                serde_yaml::from_value::<ServiceManifest>(v)
                    .with_context(|| format!("document {}: not a Service", i + 1))?,
            ),
            "Pod" => pods.push(
                serde_yaml::from_value::<PodManifest>(v)
                    .with_context(|| format!("document {}: not a Pod", i + 1))?,
            ),
            kind => bail!(
                "document {}: kind {kind:?}: apply takes Pods and Services",
                i + 1
            ),
        }
    }
    if docs.is_empty() && pods.is_empty() {
        bail!("nothing to apply");
    }
    let mut services = lab.scenario.services.clone();
    let mut said = Vec::new();
    for m in docs {
        let same = |o: &ServiceManifest| {
            o.metadata.name == m.metadata.name && o.metadata.namespace == m.metadata.namespace
        };
        let word = match services.iter().position(same) {
            // The lab writes the allocated ClusterIP in: compare with it.
            Some(i) if same_service(&services[i], &m) => "unchanged",
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
    said.extend(pods::add(lab, bins, &pods)?);
    lab.scenario.services = services;
    store_services(lab)?;
    Ok(said)
}

/// True if `new` asks for what `old` (as the lab keeps it) already is.
fn same_service(old: &ServiceManifest, new: &ServiceManifest) -> bool {
    let mut new = new.clone();
    if new.spec.cluster_ip.is_none() {
        new.spec.cluster_ip = old.spec.cluster_ip.clone();
    }
    serde_yaml::to_value(old).ok() == serde_yaml::to_value(&new).ok()
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

/// `delete pod NAME`: the pod taken away ([`pods::remove`]); the Services it backed lose it
/// as an endpoint.
pub fn delete_pod(lab: &mut LabState, bins: &Binaries, name: &str) -> Result<String> {
    lab.pod(name)
        .map_err(|_| anyhow::anyhow!("pods \"{name}\" not found"))?;
    pods::remove(lab, bins, name)?;
    store_services(lab)?;
    Ok(format!("pod \"{name}\" deleted"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(name: &str, endpoints: &[&str], created: u64) -> ServiceRecord {
        ServiceRecord {
            namespace: "default".into(),
            name: name.into(),
            cluster_ip: Some("10.233.0.20".parse().unwrap()),
            ports: vec![],
            endpoints: endpoints.iter().map(|e| e.parse().unwrap()).collect(),
            selector: Default::default(),
            created,
        }
    }

    #[test]
    fn a_rewritten_service_keeps_its_age_and_an_unchanged_one_is_not_written() {
        let stored = [svc("web", &["10.233.78.2"], 100), svc("db", &[], 200)];
        let rebuilt = vec![
            svc("web", &["10.233.78.2", "10.233.99.2"], 900),
            svc("db", &[], 900),
            svc("new", &[], 900),
        ];
        let written = changed(&stored, rebuilt);
        let ages: Vec<(&str, u64)> = written
            .iter()
            .map(|r| (r.name.as_str(), r.created))
            .collect();
        assert_eq!(ages, [("web", 100), ("new", 900)]);
    }
}
