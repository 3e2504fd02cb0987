//! `get nodes` and `get pods`, kubectl's columns.

use crate::inventory::Inventory;
use crate::procs;
use crate::state::{self, LabState};
use anyhow::Result;

pub fn age(since: u64) -> String {
    let s = state::now().saturating_sub(since);
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        _ => format!("{}h", s / 3600),
    }
}

pub fn get_nodes(lab: &LabState, wide: bool) -> Result<String> {
    let inv = Inventory::read(lab);
    let mut rows = vec![vec!["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>()];
    if wide {
        rows[0].extend(["INTERNAL-IP", "POD-BLOCK", "TUNNEL", "ENCAPSULATION"].map(String::from));
    }
    for (node, spec) in lab.nodes.iter().zip(&lab.scenario.nodes) {
        let record = inv.records.iter().find(|r| r.name == node.name);
        let ready = node.agent.as_ref().is_some_and(procs::alive) && record.is_some();
        let roles = if spec.roles.is_empty() {
            "<none>".to_string()
        } else {
            spec.roles.join(",")
        };
        let mut row = vec![
            node.name.clone(),
            if ready { "Ready" } else { "NotReady" }.into(),
            roles,
            age(lab.created),
            "podnet".into(),
        ];
        if wide {
            let block = spec
                .block
                .map(|b| b.to_string())
                .unwrap_or_else(|| "-".into());
            let tunnel = record
                .and_then(|r| r.tunnel_ip)
                .map(|t| t.to_string())
                .unwrap_or_else(|| "-".into());
            row.extend([
                spec.ip.to_string(),
                block,
                tunnel,
                lab.encapsulation.clone(),
            ]);
        }
        rows.push(row);
    }
    Ok(table(&rows))
}

pub fn get_pods(lab: &LabState, wide: bool) -> String {
    let mut rows = vec![["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
        .map(String::from)
        .to_vec()];
    if wide {
        rows[0].extend(["IP", "NODE"].map(String::from));
    }
    for p in &lab.pods {
        let up = p
            .containers
            .iter()
            .filter(|c| c.process.as_ref().is_some_and(procs::alive))
            .count();
        let status = if up == p.containers.len() {
            "Running"
        } else if p.result.is_none() {
            "ContainerCreating"
        } else {
            "Error"
        };
        let mut row = vec![
            p.name.clone(),
            format!("{up}/{}", p.containers.len()),
            status.into(),
            "0".into(),
            age(p.created),
        ];
        if wide {
            row.extend([p.ip().unwrap_or_else(|| "<none>".into()), p.node.clone()]);
        }
        rows.push(row);
    }
    table(&rows)
}

/// Left-aligned columns, three spaces apart (kubectl's look).
pub fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(|r| r.len()).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.len())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, s)| format!("{s:<w$}", w = widths[i]))
            .collect();
        out.push_str(line.join("   ").trim_end());
        out.push('\n');
    }
    out
}
