//! `podnet-lab down`: kill what the lab started, unpin its namespaces, delete its files. Works
//! from whatever the state file recorded, so a lab killed half-way is removed too.

use crate::procs;
use crate::state::{self, LabState};
use anyhow::Result;

/// Removes lab `name`. Errors are reported and the rest is still removed.
pub fn down(name: &str) -> Result<()> {
    let dir = state::dir(name);
    let lab = match LabState::load(name) {
        Ok(l) => Some(l),
        Err(e) if dir.exists() => {
            eprintln!("warning: {e:#}; removing what is left of {}", dir.display());
            None
        }
        Err(e) => return Err(e),
    };
    let mut failures = Vec::new();
    if let Some(lab) = &lab {
        // Agents from an image: podman stops them and forgets their containers (again once
        // every process is gone: a `podman run` still starting may have made one since).
        if lab.agent_image.is_some() {
            let _ = crate::agent_image::remove_all(&lab.name);
        }
        let procs: Vec<_> = lab
            .nodes
            .iter()
            .filter_map(|n| n.agent.clone())
            .chain(lab.routers.iter().cloned())
            .chain(lab.outside.iter().cloned())
            .chain(lab.service_procs.iter().cloned())
            .chain(lab.mount_template.iter().cloned())
            .chain(
                lab.pods
                    .iter()
                    .flat_map(|p| p.containers.iter().filter_map(|c| c.process.clone())),
            )
            .collect();
        for p in &procs {
            procs::kill(p);
        }
        // Anything else living in the lab's namespaces (a process started just before a crash,
        // before it could be recorded) goes too.
        for pid in procs::in_namespaces(&lab.namespaces) {
            procs::signal_pid(pid, libc::SIGKILL);
        }
        // Wait (briefly) until they are gone, so nothing of the lab outlives `down`.
        let start = std::time::Instant::now();
        while procs.iter().any(procs::alive) && start.elapsed() < std::time::Duration::from_secs(5)
        {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        if lab.agent_image.is_some() {
            if let Err(e) = crate::agent_image::remove_all(&lab.name) {
                failures.push(format!("{e:#}"));
            }
        }
        for path in lab.namespaces.iter().rev() {
            if let Err(e) = podnet_netlink::netns::remove(path) {
                failures.push(e.to_string());
            }
        }
    }
    if let Err(e) = std::fs::remove_dir_all(&dir) {
        if e.kind() != std::io::ErrorKind::NotFound {
            failures.push(format!("remove {}: {e}", dir.display()));
        }
    }
    // The last lab down takes the labs' folder too (it stays while another lab has state).
    let _ = std::fs::remove_dir(state::ROOT);
    if failures.is_empty() {
        eprintln!("lab {name} is down");
        Ok(())
    } else {
        anyhow::bail!(
            "lab {name} is down, with problems:\n{}",
            failures.join("\n")
        )
    }
}

/// Removes every lab with a state folder.
pub fn down_all() -> Result<()> {
    let labs = LabState::all();
    if labs.is_empty() {
        eprintln!("no lab to remove");
    }
    let mut failed = false;
    for l in labs {
        if let Err(e) = down(&l) {
            eprintln!("{e:#}");
            failed = true;
        }
    }
    if failed {
        anyhow::bail!("some labs could not be removed completely");
    }
    Ok(())
}
