//! Starting processes inside the lab's namespaces and stopping them again.
//!
//! Between fork and exec a child joins its network namespace (`Netns::enter_on_exec`), for
//! containers also the pod's UTS and mount namespaces (the pod's first container makes them:
//! the pod's hostname, and the pod's own `/etc/resolv.conf` and `/etc/hosts` bound over the
//! host's, as kubelet mounts them), and starts its own session, so it outlives
//! `podnet-lab up`. Processes are remembered by pid and start time.

use crate::state::Proc;
use anyhow::{bail, Context, Result};
use podnet_netlink::Netns;
use std::ffi::CString;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// How to place a process.
pub struct Placement<'a> {
    /// The network namespace to join.
    pub netns: &'a str,
    /// A process of a pod, or not.
    pub pod: PodNs<'a>,
    /// Detach into a new session (daemons).
    pub detach: bool,
}

/// The namespaces besides the network one.
pub enum PodNs<'a> {
    /// None of its own: the host's mounts; a new UTS namespace if a hostname is given (nodes,
    /// routers), else the host's.
    Host { hostname: Option<&'a str> },
    /// Another process of a pod: join the UTS and mount namespaces of this pid.
    Join(u32),
    /// A pod's first container: new UTS (this hostname) and mount namespaces, each
    /// `(file, over)` bound over the host's `over` in it. The mount namespace is a copy of
    /// `template`'s (a pid of [`spawn_mount_template`]) when given, else of the host's.
    New {
        hostname: &'a str,
        files: &'a [(PathBuf, &'a str)],
        template: Option<u32>,
    },
    /// The lab's mount template: a mount namespace of its own, the host's mounts but those of
    /// network namespaces (`/run/netns/...`).
    Template,
}

impl PodNs<'_> {
    /// No namespaces besides the network one.
    pub const NONE: PodNs<'static> = PodNs::Host { hostname: None };
}

/// What the child does between fork and exec, prepared in the parent.
enum Prepared {
    Host(Option<String>),
    Join {
        uts: File,
        mnt: File,
        root: File,
        cwd: Option<CString>,
    },
    New {
        hostname: String,
        binds: Vec<(CString, CString)>,
        /// The template's mount namespace and root, and where to come back to.
        from: Option<(File, File, Option<CString>)>,
    },
    /// Mount points to detach, deepest first.
    Template(Vec<CString>),
}

fn cstring(p: &Path) -> Result<CString> {
    CString::new(p.as_os_str().as_bytes()).with_context(|| format!("{} holds a NUL", p.display()))
}

fn prepare(p: &PodNs<'_>) -> Result<Prepared> {
    Ok(match p {
        PodNs::Host { hostname } => Prepared::Host(hostname.map(str::to_string)),
        PodNs::Join(pid) => {
            let open = |ns: &str| {
                File::open(format!("/proc/{pid}/ns/{ns}"))
                    .with_context(|| format!("open the {ns} namespace of process {pid}"))
            };
            Prepared::Join {
                uts: open("uts")?,
                mnt: open("mnt")?,
                // Joining a mount namespace also moves to its root, which under a chroot (the
                // VM's) is not the pod's: take the pod's own root, as `nsenter --root` does.
                root: File::open(format!("/proc/{pid}/root"))
                    .with_context(|| format!("open the root of process {pid}"))?,
                // Joining a mount namespace moves to its root; come back where we were.
                cwd: std::env::current_dir().ok().and_then(|d| cstring(&d).ok()),
            }
        }
        PodNs::New {
            hostname,
            files,
            template,
        } => {
            let mut binds = Vec::new();
            for (file, over) in files.iter() {
                if !Path::new(over).exists() {
                    bail!("this host has no {over} for a pod's own to be mounted over");
                }
                binds.push((cstring(file)?, cstring(Path::new(over))?));
            }
            // A template gone (killed) since is no error: the pod copies the host's mounts.
            let from = template.and_then(|pid| {
                let mnt = File::open(format!("/proc/{pid}/ns/mnt")).ok()?;
                let root = File::open(format!("/proc/{pid}/root")).ok()?;
                let cwd = std::env::current_dir().ok().and_then(|d| cstring(&d).ok());
                Some((mnt, root, cwd))
            });
            Prepared::New {
                hostname: hostname.to_string(),
                binds,
                from,
            }
        }
        PodNs::Template => Prepared::Template(netns_mounts()?),
    })
}

/// The mount points of network namespaces (`/run/netns` and what is under it), deepest first.
fn netns_mounts() -> Result<Vec<CString>> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").context("read mountinfo")?;
    let dir = podnet_netlink::netns::NETNS_DIR;
    let mut points: Vec<&str> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| *p == dir || p.strip_prefix(dir).is_some_and(|r| r.starts_with('/')))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    points.dedup();
    points.into_iter().map(|p| cstring(Path::new(p))).collect()
}

/// In the child, between fork and exec: only async-signal-safe system calls.
fn enter(p: &Prepared) -> std::io::Result<()> {
    let check = |rc: libc::c_int| {
        if rc < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(())
        }
    };
    let sethostname = |h: &str| check(unsafe { libc::sethostname(h.as_ptr().cast(), h.len()) });
    // SAFETY: plain system calls on file descriptors and C strings made before fork.
    unsafe {
        match p {
            Prepared::Host(None) => {}
            Prepared::Host(Some(h)) => {
                check(libc::unshare(libc::CLONE_NEWUTS))?;
                sethostname(h)?;
            }
            Prepared::Join {
                uts,
                mnt,
                root,
                cwd,
            } => {
                check(libc::setns(uts.as_raw_fd(), libc::CLONE_NEWUTS))?;
                check(libc::setns(mnt.as_raw_fd(), libc::CLONE_NEWNS))?;
                check(libc::fchdir(root.as_raw_fd()))?;
                check(libc::chroot(c".".as_ptr()))?;
                if let Some(d) = cwd {
                    libc::chdir(d.as_ptr());
                }
            }
            Prepared::New {
                hostname,
                binds,
                from,
            } => {
                if let Some((mnt, root, cwd)) = from {
                    check(libc::setns(mnt.as_raw_fd(), libc::CLONE_NEWNS))?;
                    check(libc::fchdir(root.as_raw_fd()))?;
                    check(libc::chroot(c".".as_ptr()))?;
                    if let Some(d) = cwd {
                        libc::chdir(d.as_ptr());
                    }
                }
                check(libc::unshare(libc::CLONE_NEWUTS | libc::CLONE_NEWNS))?;
                sethostname(hostname)?;
                // Nothing mounted here may reach the host's mount namespace.
                check(mount_private())?;
                for (file, over) in binds {
                    check(libc::mount(
                        file.as_ptr(),
                        over.as_ptr(),
                        std::ptr::null(),
                        libc::MS_BIND,
                        std::ptr::null(),
                    ))?;
                }
            }
            Prepared::Template(points) => {
                check(libc::unshare(libc::CLONE_NEWNS))?;
                check(mount_private())?;
                for p in points {
                    // One may have gone with another (a bind under it) or since: no matter.
                    libc::umount2(p.as_ptr(), libc::MNT_DETACH);
                }
            }
        }
    }
    Ok(())
}

/// Makes every mount of the calling process's (new) mount namespace private, so nothing
/// mounted in it reaches the namespace it was copied from. Async-signal-safe.
///
/// # Safety
/// Only a plain mount(2) call; safe between fork and exec.
unsafe fn mount_private() -> libc::c_int {
    libc::mount(
        std::ptr::null(),
        c"/".as_ptr(),
        std::ptr::null(),
        libc::MS_REC | libc::MS_PRIVATE,
        std::ptr::null(),
    )
}

/// Starts the lab's mount template (`sleep infinity` in namespace `netns`, output to `log`):
/// a mount namespace that holds the host's mounts but those of network namespaces. A pod's
/// mount namespace starts as a copy of another, and the kernel copies every mount: copied from
/// the host's, each pod would copy one mount per namespace of the lab (1,100 with 1,000 pods),
/// and hold every other pod's network namespace besides.
pub fn spawn_mount_template(netns: &str, log: &Path) -> Result<Proc> {
    let mut cmd = Command::new("sleep");
    cmd.arg("infinity");
    spawn_daemon(
        cmd,
        &Placement {
            netns,
            pod: PodNs::Template,
            detach: true,
        },
        log,
    )
    .context("start the lab's mount template")
}

/// Prepares `cmd` to run as placed. The namespace files are opened now, in the parent.
pub fn place(cmd: &mut Command, p: &Placement<'_>) -> Result<()> {
    Netns::open(p.netns)
        .and_then(|ns| ns.enter_on_exec(cmd))
        .with_context(|| format!("enter network namespace {}", p.netns))?;
    let prepared = prepare(&p.pod)?;
    let detach = p.detach;
    // SAFETY: `enter` and setsid make only async-signal-safe calls; what they use was made
    // before fork and lives as long as `cmd`.
    unsafe {
        cmd.pre_exec(move || {
            enter(&prepared)?;
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

/// kill(2): `signal` to `pid`, a process the caller found in the lab's own namespaces.
pub fn signal_pid(pid: u32, signal: i32) {
    // SAFETY: plain kill(2); it has no memory effects, and a pid gone meanwhile only fails.
    unsafe {
        libc::kill(pid as i32, signal);
    }
}

/// SIGKILL, if it is still ours.
pub fn kill(p: &Proc) {
    if start_time(p.pid) == Some(p.start) {
        signal_pid(p.pid, libc::SIGKILL);
    }
}

/// SIGTERM, as systemd's stop does, then SIGKILL if it has not exited within `grace`. True if
/// it stopped on the SIGTERM.
pub fn terminate(p: &Proc, grace: std::time::Duration) -> bool {
    if !alive(p) {
        return true;
    }
    signal_pid(p.pid, libc::SIGTERM);
    let start = std::time::Instant::now();
    while start.elapsed() < grace {
        if !alive(p) {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    kill(p);
    false
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
