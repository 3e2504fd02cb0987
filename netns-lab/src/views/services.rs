//! `get svc` and `get endpoints`, as kubectl prints them, from the Services in the lab's
//! datastore (what the proxies program).

use super::get::{age, table};
use crate::state::LabState;
use anyhow::Result;
use podnet_ipam::services::{self, ServiceRecord};

fn stored(lab: &LabState) -> Result<Vec<ServiceRecord>> {
    Ok(lab.with_store(|s| services::list(s))??)
}

/// NAME TYPE CLUSTER-IP EXTERNAL-IP PORT(S) AGE (and SELECTOR with -o wide).
pub fn get_services(lab: &LabState, wide: bool) -> Result<String> {
    let mut rows = vec![[
        "NAME",
        "TYPE",
        "CLUSTER-IP",
        "EXTERNAL-IP",
        "PORT(S)",
        "AGE",
    ]
    .map(String::from)
    .to_vec()];
    if wide {
        rows[0].push("SELECTOR".into());
    }
    for s in stored(lab)? {
        let ports: Vec<String> = s
            .ports
            .iter()
            .map(|p| format!("{}/{}", p.port, p.protocol))
            .collect();
        let mut row = vec![
            s.name.clone(),
            "ClusterIP".into(),
            s.cluster_ip.map_or("None".into(), |ip| ip.to_string()),
            "<none>".into(),
            ports.join(","),
            age(s.created),
        ];
        if wide {
            let sel: Vec<String> = s.selector.iter().map(|(k, v)| format!("{k}={v}")).collect();
            row.push(if sel.is_empty() {
                "<none>".into()
            } else {
                sel.join(",")
            });
        }
        rows.push(row);
    }
    Ok(table(&rows))
}

/// NAME ENDPOINTS AGE: each endpoint with its target port, three shown, then "+ N more...".
pub fn get_endpoints(lab: &LabState) -> Result<String> {
    let mut rows = vec![["NAME", "ENDPOINTS", "AGE"].map(String::from).to_vec()];
    for s in stored(lab)? {
        let all: Vec<String> = s
            .endpoints
            .iter()
            .flat_map(|ip| {
                s.ports
                    .iter()
                    .map(move |p| format!("{ip}:{}", p.target_port_of(*ip)))
            })
            .collect();
        let shown = match all.len() {
            0 => "<none>".to_string(),
            n if n <= 3 => all.join(","),
            n => format!("{} + {} more...", all[..3].join(","), n - 3),
        };
        rows.push(vec![s.name.clone(), shown, age(s.created)]);
    }
    Ok(table(&rows))
}
