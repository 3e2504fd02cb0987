//! A world of its own for fuzzing the plugins' real verbs as root: a PID, mount and network
//! namespace made by `cargo xtask fuzz` (`unshare --pid --fork --mount-proc --mount --net`),
//! in which [`enter`] makes every mount read-only except the fuzzer's own directory, `/proc`
//! (the sandbox's: its sysctls are the sandbox network's) and empty tmpfs over `/run`,
//! `/var/lib` and `/var/log`, then pins two pod namespaces. A hostile config can name any
//! path or namespace it likes: the host's files, processes and network are out of reach.

use podnet_netlink::{netns, Netlink, Netns};
use std::ffi::CString;
use std::path::Path;

/// The pod namespaces inputs can name (`CNI_NETNS`).
pub const POD_NETNS: [&str; 2] = ["/run/netns/fuzz-pod", "/run/netns/fuzz-pod-2"];
/// The only `CNI_PATH`: empty, so a delegated IPAM plugin is never found and nothing is run.
pub const CNI_PATH: &str = "/run/podnet-fuzz/bin";

/// What every input must leave as it found it.
#[derive(Debug, PartialEq, Eq)]
pub struct World {
    pub node_links: Vec<String>,
    pub node_routes: Vec<String>,
    pub pod_links: Vec<Vec<String>>,
    /// Every process but the fuzzer (zombies reaped first: the fuzzer is the sandbox's init).
    pub processes: Vec<String>,
    /// The mounts made in the sandbox (a bind mount left behind by a pod would show here).
    pub mounts: Vec<String>,
    /// What is in `/run` (namespace pins, the lab's state), two levels deep.
    pub run: Vec<String>,
}

/// Sets the sandbox up; panics (ending the fuzzer before any input) if it is not in one.
pub fn enter() {
    assert_eq!(
        std::process::id(),
        1,
        "this fuzz target runs the plugin's verbs for real: run it with `cargo xtask fuzz \
         plugin_call`, which starts it in namespaces of its own"
    );
    let writable = std::env::var("PODNET_FUZZ_WRITABLE")
        .expect("PODNET_FUZZ_WRITABLE names the fuzzer's own directory");
    set_attr("/", true, MOUNT_ATTR_RDONLY, 0);
    set_attr("/proc", false, 0, MOUNT_ATTR_RDONLY);
    bind_writable(&writable);
    // The host's mounts as the sandbox sees them (read-only now); what follows is its own.
    INHERITED
        .set(mount_table().into_iter().collect())
        .expect("the sandbox is entered once");
    for dir in ["/run", "/var/lib", "/var/log"] {
        nix::mount::mount(
            Some("tmpfs"),
            dir,
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            Some("size=256m"),
        )
        .unwrap_or_else(|e| panic!("mount a tmpfs on {dir}: {e}"));
    }
    std::fs::create_dir_all(CNI_PATH).expect("create the empty CNI_PATH");
    for path in POD_NETNS {
        netns::create(path).unwrap_or_else(|e| panic!("create pod namespace {path}: {e}"));
    }
    let mut lo = Netlink::open().expect("netlink in the sandbox");
    let index = lo.link("lo").expect("list lo").expect("lo").index;
    lo.set_up(index).expect("set lo up");
}

/// The sandbox now: its namespace and each pod namespace, its processes, mounts and `/run`.
pub fn world() -> World {
    let mut node = Netlink::open().expect("netlink in the sandbox");
    let pod_links = POD_NETNS
        .iter()
        .map(|p| {
            let ns = Netns::open(p).expect("a pod namespace of the sandbox");
            let links = ns
                .run(|| Netlink::open()?.links())
                .expect("enter a pod namespace");
            names(links.expect("list a pod namespace's links"))
        })
        .collect();
    let mut node_routes: Vec<String> = node
        .routes()
        .expect("list the sandbox's routes")
        .iter()
        .map(|r| format!("{r:?}"))
        .collect();
    node_routes.sort();
    World {
        node_links: names(node.links().expect("list the sandbox's links")),
        node_routes,
        pod_links,
        processes: processes(),
        mounts: mounts(),
        run: tree(Path::new("/run"), 2),
    }
}

/// Every process of the sandbox but the fuzzer, as `pid command`, after reaping the zombies
/// that were reparented to it.
fn processes() -> Vec<String> {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    while let Ok(s) = waitpid(None, Some(WaitPidFlag::WNOHANG)) {
        if s == WaitStatus::StillAlive {
            break;
        }
    }
    let mut v: Vec<String> = std::fs::read_dir("/proc")
        .expect("read /proc")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != 1)
        .map(|pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            format!("{pid} {}", String::from_utf8_lossy(&cmd).replace('\0', " "))
        })
        .collect();
    v.sort();
    v
}

/// The mounts copied from the host when the sandbox was made. They are not the sandbox's: the
/// host's come and go (a lab up on the host while this runs), and those under `/run` are
/// hidden by the sandbox's tmpfs anyway.
static INHERITED: std::sync::OnceLock<std::collections::BTreeSet<String>> =
    std::sync::OnceLock::new();

/// The mounts the sandbox made (inherited ones left out).
fn mounts() -> Vec<String> {
    let inherited = INHERITED.get().expect("entered first");
    let mut v: Vec<String> = mount_table()
        .into_iter()
        .filter(|m| !inherited.contains(m))
        .collect();
    v.sort();
    v
}

fn mount_table() -> Vec<String> {
    let table = std::fs::read_to_string("/proc/self/mountinfo").expect("read the mount table");
    // Fields 5 and on: mount point, options, source; the ids change with every mount.
    table
        .lines()
        .map(|l| l.split(' ').skip(4).collect::<Vec<_>>().join(" "))
        .collect()
}

fn tree(dir: &Path, depth: usize) -> Vec<String> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = e.path();
        v.push(path.display().to_string());
        if depth > 1 && path.is_dir() {
            v.extend(tree(&path, depth - 1));
        }
    }
    v.sort();
    v
}

fn names(links: Vec<podnet_netlink::Link>) -> Vec<String> {
    let mut v: Vec<String> = links.into_iter().map(|l| l.name).collect();
    v.sort();
    v
}

// mount_setattr(2), which nix does not wrap (kernel 5.12+).
const MOUNT_ATTR_RDONLY: u64 = 0x1;
const AT_RECURSIVE: libc::c_uint = 0x8000;

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

fn set_attr(path: &str, recursive: bool, set: u64, clear: u64) {
    let c = CString::new(path).expect("a path without NUL");
    let attr = MountAttr {
        attr_set: set,
        attr_clr: clear,
        propagation: 0,
        userns_fd: 0,
    };
    let flags = if recursive { AT_RECURSIVE } else { 0 };
    // SAFETY: a valid C string and a mount_attr of the size passed; the kernel only reads them.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            c.as_ptr(),
            flags,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    assert_eq!(
        rc,
        0,
        "mount_setattr {path}: {}",
        std::io::Error::last_os_error()
    );
}

/// The fuzzer's directory (corpus, artifacts, temp files) stays writable: a bind mount of
/// it onto itself, with the read-only flag cleared on that mount alone.
fn bind_writable(dir: &str) {
    assert!(Path::new(dir).is_dir(), "{dir} is not a directory");
    nix::mount::mount(
        Some(dir),
        dir,
        None::<&str>,
        nix::mount::MsFlags::MS_BIND | nix::mount::MsFlags::MS_REC,
        None::<&str>,
    )
    .unwrap_or_else(|e| panic!("bind {dir} onto itself: {e}"));
    set_attr(dir, true, 0, MOUNT_ATTR_RDONLY);
}
