//! GC (CNI 1.1): forget attachments the runtime no longer has. IPAM releases their addresses;
//! host-side `cali*` veths labelled for an attachment not in `cni.dev/valid-attachments` are
//! removed. Carries on past failures and reports them all.

use super::node_side;
use crate::config::NetConf;
use crate::error::Error;
use crate::ipam::Ipam;
use crate::naming::podnet_attachment;
use podnet_cni_types::{code, CniEnv, CniError};
use std::collections::HashSet;

pub fn gc(env: &CniEnv, conf: &NetConf) -> Result<(), Error> {
    let mut failures: Vec<String> = Vec::new();
    if let Err(e) = Ipam::for_conf(env, conf).and_then(|i| i.gc()) {
        failures.push(e.to_string());
    }
    let valid: HashSet<(&str, &str)> = conf
        .valid_attachments
        .iter()
        .map(|a| (a.container_id.as_str(), a.ifname.as_str()))
        .collect();
    let mut host = node_side()?;
    match host.links() {
        Ok(links) => {
            for l in links {
                match podnet_attachment(&l) {
                    Some(attachment) if !valid.contains(&attachment) => {}
                    _ => continue,
                }
                match host.delete_link(l.index) {
                    Ok(()) => tracing::info!(link = %l.name, "GC removed a stray veth"),
                    Err(e) if e.is_not_found() => {}
                    Err(e) => failures.push(format!("delete {}: {e}", l.name)),
                }
            }
        }
        Err(e) => failures.push(format!("list links: {e}")),
    }
    if failures.is_empty() {
        return Ok(());
    }
    Err(Error::Cni(
        CniError::new(
            code::IO_FAILURE,
            format!("GC finished with {} failure(s)", failures.len()),
        )
        .with_details(failures.join("; ")),
    ))
}
