//! Network namespaces by path, and running code inside one.
//!
//! `setns` moves only the calling thread, so [`Netns::run`] does it on a new scoped thread that
//! ends with the closure: nothing else ever runs in the wrong namespace, and there is no
//! "switch back" step that could fail. Open netlink sockets inside and use them from anywhere:
//! a socket stays bound to the namespace it was born in.

use crate::{Error, Result};
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::Path;

/// `ioctl(NS_GET_NSTYPE)`: `_IO(0xb7, 0x3)`.
const NS_GET_NSTYPE: libc::c_ulong = 0xb703;

/// An open handle on a network namespace.
#[derive(Debug)]
pub struct Netns {
    file: File,
    path: String,
}

impl Netns {
    /// Opens `path` (e.g. `/run/netns/x` or `/proc/<pid>/ns/net`) and checks that it is a
    /// network namespace. A missing path is [`Error::NetnsMissing`], so DEL can treat it as
    /// gone; anything else that is not a netns is [`Error::NotNetns`].
    pub fn open(path: impl AsRef<Path>) -> Result<Netns> {
        let path = path.as_ref();
        let shown = path.display().to_string();
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NetnsMissing(shown))
            }
            Err(e) => return Err(Error::io(format!("open network namespace {shown}"))(e)),
        };
        // SAFETY: the fd is valid for the life of `file`; the ioctl takes no argument.
        let kind = unsafe { libc::ioctl(file.as_raw_fd(), NS_GET_NSTYPE as _) };
        if kind != libc::CLONE_NEWNET {
            return Err(Error::NotNetns(shown));
        }
        Ok(Netns { file, path: shown })
    }

    /// The namespace of the calling thread.
    pub fn current() -> Result<Netns> {
        Netns::open("/proc/thread-self/ns/net")
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    /// Runs `f` on a new thread inside this namespace and returns its result. A panic in `f`
    /// is passed on to the caller.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T> {
        std::thread::scope(|s| {
            let worker = s.spawn(|| {
                nix::sched::setns(self.file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
                    .map_err(|e| Error::Kernel {
                        action: format!("enter network namespace {}", self.path),
                        errno: e as i32,
                    })?;
                Ok(f())
            });
            match worker.join() {
                Ok(r) => r,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }

    /// Makes the process `cmd` spawns join this namespace between fork and exec, with no
    /// helper process and the parent left where it is. `cmd` keeps its own handle on the
    /// namespace, so this one may be dropped before the spawn.
    pub fn enter_on_exec(&self, cmd: &mut std::process::Command) -> Result<()> {
        use std::os::unix::process::CommandExt;
        let ns = self.file.try_clone().map_err(Error::io(format!(
            "duplicate the handle on network namespace {}",
            self.path
        )))?;
        // SAFETY: setns is async-signal-safe, and `ns` lives as long as `cmd`.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
        Ok(())
    }

    /// True if both handles name the same namespace.
    pub fn same_as(&self, other: &Netns) -> Result<bool> {
        use std::os::unix::fs::MetadataExt;
        let a = self
            .file
            .metadata()
            .map_err(Error::io("inspect a network namespace"))?;
        let b = other
            .file
            .metadata()
            .map_err(Error::io("inspect a network namespace"))?;
        Ok(a.dev() == b.dev() && a.ino() == b.ino())
    }
}

/// Where `ip netns` keeps named namespaces; podnet's named namespaces live here too, so
/// `ip netns exec NAME ...` works on them.
pub const NETNS_DIR: &str = "/run/netns";

/// Creates a new, empty network namespace pinned at `path` (a bind mount of the namespace
/// onto a file), like `ip netns add`. Fails with EEXIST if `path` exists.
pub fn create(path: impl AsRef<Path>) -> Result<Netns> {
    use nix::mount::{mount, MsFlags};
    let path = path.as_ref();
    let shown = path.display().to_string();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(Error::io(format!("create {}", dir.display())))?;
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(Error::io(format!("create the namespace file {shown}")))?;
    let made = std::thread::scope(|s| {
        s.spawn(|| -> Result<()> {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| {
                Error::Kernel {
                    action: format!("create network namespace {shown}"),
                    errno: e as i32,
                }
            })?;
            mount(
                Some("/proc/thread-self/ns/net"),
                path,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(|e| Error::Kernel {
                action: format!("pin network namespace at {shown}"),
                errno: e as i32,
            })
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    });
    if let Err(e) = made {
        let _ = std::fs::remove_file(path);
        return Err(e);
    }
    Netns::open(path)
}

/// Unpins and removes a namespace made by [`create`] (or `ip netns add`). The namespace
/// itself goes away once no process and no open handle holds it. A missing path is fine.
pub fn remove(path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    if !path.exists() {
        return Ok(());
    }
    match nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
        Err(e) => {
            return Err(Error::Kernel {
                action: format!("unpin network namespace {}", path.display()),
                errno: e as i32,
            })
        }
    }
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(format!("remove {}", path.display()))(e)),
    }
}

/// A namespace made by [`create`] that is removed when this is dropped (also on panic).
#[derive(Debug)]
pub struct OwnedNetns {
    netns: Netns,
    path: std::path::PathBuf,
}

impl OwnedNetns {
    pub fn create(path: impl AsRef<Path>) -> Result<OwnedNetns> {
        let path = path.as_ref().to_path_buf();
        Ok(OwnedNetns {
            netns: create(&path)?,
            path,
        })
    }

    /// `/run/netns/<name>`.
    pub fn named(name: &str) -> Result<OwnedNetns> {
        OwnedNetns::create(Path::new(NETNS_DIR).join(name))
    }
}

impl std::ops::Deref for OwnedNetns {
    type Target = Netns;
    fn deref(&self) -> &Netns {
        &self.netns
    }
}

impl Drop for OwnedNetns {
    fn drop(&mut self) {
        if let Err(e) = remove(&self.path) {
            eprintln!("warning: {e}");
        }
    }
}
