//! Starting processes inside the lab's namespaces and stopping them again.
//!
//! Between fork and exec a child joins its network namespace (`Netns::enter_on_exec`), for
//! containers also a UTS namespace (the pod's first container's, or a new one with the pod's
//! hostname), and starts its own session, so it outlives `podnet-lab up`. Processes are remembered by pid and start time.

use crate::state::Proc;
use anyhow::{Context, Result};
use podnet_netlink::Netns;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

/// How to place a process.
pub struct Placement<'a> {
    /// The network namespace to join.
    pub netns: &'a str,
    /// Join this UTS namespace (another container of the same pod) ...
    pub uts_of: Option<u32>,
    /// ... or make a new one with this hostname.
    pub hostname: Option<&'a str>,
    /// Detach into a new session (daemons).
    pub detach: bool,
}

/// Prepares `cmd` to run as placed. The namespace files are opened now, in the parent.
pub fn place(cmd: &mut Command, p: &Placement<'_>) -> Result<()> {
    Netns::open(p.netns)
        .and_then(|ns| ns.enter_on_exec(cmd))
        .with_context(|| format!("enter network namespace {}", p.netns))?;
    let uts = match p.uts_of {
        Some(pid) => Some(
            File::open(format!("/proc/{pid}/ns/uts"))
                .with_context(|| format!("open the UTS namespace of {pid}"))?,
        ),
        None => None,
    };
    let hostname = p.hostname.map(|h| h.to_string());
    let detach = p.detach;
    // SAFETY: only async-signal-safe calls (setns, unshare, sethostname, setsid) between fork
    // and exec; the UTS namespace file was opened before fork and lives as long as `cmd`.
    unsafe {
        cmd.pre_exec(move || {
            if let Some(f) = &uts {
                if libc::setns(f.as_raw_fd(), libc::CLONE_NEWUTS) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            } else if let Some(h) = &hostname {
                if libc::unshare(libc::CLONE_NEWUTS) != 0
                    || libc::sethostname(h.as_ptr().cast(), h.len()) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
            }
            if detach && libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok(())
}

/// Starts a daemon placed as asked, output appended to `log`; returns its identity.
pub fn spawn_daemon(mut cmd: Command, p: &Placement<'_>, log: &Path) -> Result<Proc> {
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("open {}", log.display()))?;
    cmd.stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out);
    place(&mut cmd, p)?;
    let child = cmd
        .spawn()
        .with_context(|| format!("start {:?}", cmd.get_program()))?;
    let pid = child.id();
    // Not waited for: it belongs to its own session and is reaped by init when we exit.
    std::mem::forget(child);
    let start = start_time(pid)
        .with_context(|| format!("process {pid} exited at once; see {}", log.display()))?;
    Ok(Proc { pid, start })
}

/// `/proc/<pid>/stat` field 22: start time in clock ticks since boot.
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    after.split_whitespace().nth(19)?.parse().ok()
}

/// True if the process is still the one we started (and not a zombie).
pub fn alive(p: &Proc) -> bool {
    let state = std::fs::read_to_string(format!("/proc/{}/stat", p.pid))
        .ok()
        .and_then(|s| s[s.rfind(')')? + 2..].chars().next());
    start_time(p.pid) == Some(p.start) && state != Some('Z')
}

/// SIGKILL, if it is still ours.
pub fn kill(p: &Proc) {
    if start_time(p.pid) == Some(p.start) {
        // SAFETY: plain kill(2) on a pid we verified.
        unsafe {
            libc::kill(p.pid as i32, libc::SIGKILL);
        }
    }
}

/// Runs `cmd` placed in a namespace and waits, with inherited stdio; returns its exit code
/// (128 + signal if it was killed).
pub fn run_in(mut cmd: Command, p: &Placement<'_>) -> Result<i32> {
    use std::os::unix::process::ExitStatusExt;
    place(&mut cmd, p)?;
    let status = cmd
        .status()
        .with_context(|| format!("run {:?}", cmd.get_program()))?;
    Ok(status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(9)))
}

/// Processes whose network namespace is one of `paths` (compared by namespace inode).
pub fn in_namespaces(paths: &[String]) -> Vec<u32> {
    use std::os::unix::fs::MetadataExt;
    let wanted: std::collections::HashSet<(u64, u64)> = paths
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| (m.dev(), m.ino()))
        .collect();
    if wanted.is_empty() {
        return Vec::new();
    }
    let me = std::process::id();
    std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
                .filter(|pid| *pid != me)
                .filter(|pid| {
                    std::fs::metadata(format!("/proc/{pid}/ns/net"))
                        .is_ok_and(|m| wanted.contains(&(m.dev(), m.ino())))
                })
                .collect()
        })
        .unwrap_or_default()
}
