//! `podnet-lab up --agent-image IMAGE`: every node's agent runs from a container image under
//! podman, as a DaemonSet's pod would: in the node's network namespace (podman's "host"
//! network is the namespace podman was started in), privileged, with the lab's folder (the
//! datastore file, the node's state dir and BIRD's socket) bound at the same path. The
//! recorded process is `podman run`; SIGTERM to it reaches the agent (podman proxies it, an
//! init process forwards it), and `down` removes the lab's containers by label.

use crate::state::LabState;
use anyhow::{bail, Context, Result};
use std::ffi::OsString;
use std::process::Command;

/// Where podman looks for the init of `podman run --init` by default.
const PODMAN_INIT: &str = "/usr/libexec/podman/catatonit";

/// The label that marks a lab's containers.
const LABEL: &str = "io.podnet.lab";

/// podman is there and has the image.
pub fn check(image: &str) -> Result<()> {
    let exists = Command::new("podman")
        .args(["image", "exists", image])
        .status()
        .context("run podman (Debian package podman) for --agent-image")?;
    if !exists.success() {
        bail!("podman has no image {image}: build it with `cargo xtask dist image`, or `podman images` to list them");
    }
    // `podman run --init` mounts podman's init into the container; Debian's podman only
    // recommends it, and without it every container fails to start.
    if !std::path::Path::new(PODMAN_INIT).exists() && !crate::runtime::on_path("catatonit") {
        bail!("podman has no init ({PODMAN_INIT}), which the agents' containers run under: install it (`apt-get install catatonit`)");
    }
    runtime().map(|_| ())
}

/// crun, podman's default runtime, refuses hosts whose cgroups are mounted in hybrid mode
/// (v1 controllers with a v2 `unified` beside them); runc takes them.
fn runtime() -> Result<Option<&'static str>> {
    let hybrid = std::path::Path::new("/sys/fs/cgroup/unified").exists()
        && !std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    if !hybrid {
        return Ok(None);
    }
    if !crate::runtime::on_path("runc") {
        bail!("this host mounts cgroups in hybrid mode, which crun (podman's default runtime) refuses: install runc (`apt-get install runc`)");
    }
    Ok(Some("runc"))
}

/// The container's name for node `node` of lab `lab`.
pub fn container_name(lab: &str, node: &str) -> String {
    format!("podnet-lab-{lab}-{node}")
}

/// `podman run ... IMAGE AGENT_ARGS`: the agent of `node` from `image`.
pub fn command(
    lab: &LabState,
    node: &str,
    image: &str,
    agent_args: &[OsString],
) -> Result<Command> {
    let mut cmd = Command::new("podman");
    if let Some(r) = runtime()? {
        cmd.args(["--runtime", r]);
    }
    let dir = lab.dir();
    let bind = format!("{0}:{0}", dir.display());
    cmd.args(["run", "--rm", "--replace", "--init", "--privileged"])
        .args(["--name", &container_name(&lab.name, node)])
        .args(["--label", &format!("{LABEL}={}", lab.name)])
        .args(["--network", "host", "--uts", "host"])
        .args(["--volume", &bind])
        .args(["--env", &format!("PODNET_LAB={}", lab.name)])
        .args(ulimits())
        .arg(image)
        .args(agent_args);
    Ok(cmd)
}

/// This process's own limits: podman's defaults (a million open files, four million
/// processes) are above this host's hard limits, and a container may not raise them. The
/// process count is capped at the kernel's pid_max, above which runc refuses it here.
fn ulimits() -> Vec<String> {
    let pid_max: libc::rlim_t = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(libc::RLIM_INFINITY);
    let mut flags = Vec::new();
    for (name, resource) in [
        ("nofile", libc::RLIMIT_NOFILE),
        ("nproc", libc::RLIMIT_NPROC),
    ] {
        let mut l = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes the struct it is given.
        if unsafe { libc::getrlimit(resource, &mut l) } == 0 {
            if resource == libc::RLIMIT_NPROC {
                l.rlim_cur = l.rlim_cur.min(pid_max);
                l.rlim_max = l.rlim_max.min(pid_max);
            }
            let show = |v: libc::rlim_t| {
                if v == libc::RLIM_INFINITY {
                    "-1".to_string()
                } else {
                    v.to_string()
                }
            };
            flags.push("--ulimit".into());
            flags.push(format!("{name}={}:{}", show(l.rlim_cur), show(l.rlim_max)));
        }
    }
    flags
}

/// Waits until `podman run` (process `p`, its output in `log`) has the container of `node`
/// running, so that a stop right after a start finds a container to stop.
pub fn wait_running(
    lab: &str,
    node: &str,
    p: &crate::state::Proc,
    log: &std::path::Path,
) -> Result<()> {
    let name = container_name(lab, node);
    let start = std::time::Instant::now();
    loop {
        let out = Command::new("podman")
            .args([
                "container",
                "inspect",
                "--format",
                "{{.State.Running}}",
                &name,
            ])
            .output()
            .context("run podman container inspect")?;
        if String::from_utf8_lossy(&out.stdout).trim() == "true" {
            return Ok(());
        }
        if !crate::procs::alive(p) {
            let said = std::fs::read_to_string(log).unwrap_or_default();
            bail!(
                "podman run for {name} exited before the container ran:\n{}",
                said.trim()
            );
        }
        if start.elapsed() > std::time::Duration::from_secs(30) {
            bail!("container {name} did not start within 30 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Removes lab `name`'s containers (stopped or not); errors are the caller's to report.
pub fn remove_all(name: &str) -> Result<()> {
    let ids = Command::new("podman")
        .args(["ps", "-aq", "--filter", &format!("label={LABEL}={name}")])
        .output()
        .context("run podman ps")?;
    let ids: Vec<String> = String::from_utf8_lossy(&ids.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect();
    if ids.is_empty() {
        return Ok(());
    }
    let out = Command::new("podman")
        .args(["rm", "-f", "-t", "2"])
        .args(&ids)
        .output()
        .context("run podman rm")?;
    if !out.status.success() {
        bail!(
            "podman rm -f {}: {}",
            ids.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}
