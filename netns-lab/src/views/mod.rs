//! The commands that look at a lab: tables, routes, interfaces, traceroute, checks.

pub mod bgp;
mod bgp_wire;
pub mod capture;
mod checks;
mod exec;
mod explain;
mod explain_service;
mod get;
mod graph;
mod ifconfig;
pub mod perf;
mod pod_file_checks;
mod routes;
mod service_checks;
mod services;
pub mod tour;
mod trace;
mod trace_service;

pub use checks::test;
pub use exec::{exec, node_exec};
pub use explain::explain;
pub use get::{get_nodes, get_pods};
pub use graph::dot;
pub use ifconfig::ifconfig;
pub use routes::routes;
pub use services::{get_endpoints, get_services};
pub use trace::{render_trace, trace};
pub use trace_service::{render as render_service_trace, service_target, trace_service};

use crate::state::LabState;

/// What `up` prints last: the few commands to try first.
pub fn next_steps(lab: &LabState) {
    let pods: Vec<&str> = lab.pods.iter().map(|p| p.name.as_str()).collect();
    let (a, b) = match (
        pods.iter().find(|p| **p == "ubuntu-test"),
        pods.iter().find(|p| **p == "multi-container"),
    ) {
        (Some(a), Some(b)) => (a.to_string(), b.to_string()),
        _ => (
            pods.first().map_or("POD".into(), |p| p.to_string()),
            pods.last().map_or("POD".into(), |p| p.to_string()),
        ),
    };
    let node = lab
        .pods
        .iter()
        .find(|p| p.name == a)
        .map_or(lab.nodes[0].name.clone(), |p| p.node.clone());
    println!("\nTry:");
    println!("  podnet-lab get pods -o wide");
    println!("  podnet-lab ifconfig {a}");
    println!("  podnet-lab routes {node}");
    println!("  podnet-lab trace {a} {b}");
    println!("  podnet-lab explain {a} {b}");
    println!("  podnet-lab exec {a} -- ping -c 2 <IP of {b}>");
    println!("  podnet-lab tour            (--lang ko: 한국어)");
    println!("  podnet-lab test");
    println!("  podnet-lab down");
}
