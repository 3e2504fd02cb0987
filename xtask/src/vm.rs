//! `cargo xtask vm`: run a command under a Debian kernel with IPIP, in qemu, on any host.
//!
//! The kernel is Debian's own (the package `linux-image-amd64` depends on), fetched with
//! `apt-get download` and unpacked with `dpkg -x` into `target/vm/`. A small initramfs (static
//! busybox, the modules for 9p, IPIP, veth, bridge, VXLAN and nftables NAT, and `/init`) mounts the host's
//! root read-only over virtio-9p and the repository read-write at the same path, chroots, runs
//! the command and prints its exit code on the serial console. Host-built binaries therefore
//! run as they are. Software emulation (TCG) unless a probe shows KVM really boots.

use crate::deps::{self, Package};
use crate::sh::{self, execute, output};
use anyhow::{bail, Context, Result};
use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const QEMU: Package = Package {
    name: "qemu-system-x86",
    provides: "/usr/bin/qemu-system-x86_64",
};
const BUSYBOX: Package = Package {
    name: "busybox-static",
    provides: "/bin/busybox",
};
/// Modules the VM loads (with their dependencies): root over 9p, then what podnet uses.
const MODULES: &[&str] = &[
    "virtio_pci",
    "9pnet_virtio",
    "9p",
    "ipip",
    "veth",
    "bridge",
    "vxlan",
    // The agent's egress table (natOutgoing): nf_tables with NAT, masquerade and fib.
    // libcrc32c needs a crc32c implementation first (a soft dependency modules.dep omits).
    "crc32c_generic",
    "nf_tables",
    "nft_chain_nat",
    "nft_masq",
    "nf_nat",
    "nft_fib_ipv4",
    // The lab's service proxies (table ip podnet-proxy): DNAT, numgen, reject.
    "nft_nat",
    "nft_numgen",
    "nft_reject_ipv4",
];
const EXIT_MARK: &str = "PODNET-VM-EXIT=";

#[derive(clap::Args)]
pub struct Args {
    /// Memory in MiB.
    #[arg(long, default_value_t = 1024)]
    mem: u32,
    /// Kill the VM after this many seconds (a timeout is a failure).
    #[arg(long, default_value_t = 600)]
    timeout: u64,
    /// An interactive shell in the VM instead of a command.
    #[arg(long)]
    shell: bool,
    /// The command (after `--`), run from the repository root.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

pub fn run(args: Args) -> Result<()> {
    if !args.shell && args.command.is_empty() {
        bail!("give a command after `--`, or --shell");
    }
    let vm = Vm::prepare()?;
    if args.shell {
        return vm.shell(args.mem);
    }
    let code = vm.run(
        &command_line(&args.command),
        args.mem,
        Duration::from_secs(args.timeout),
        true,
    )?;
    std::process::exit(code);
}

/// The argument vector as one line for the VM's `sh`, each word single-quoted so that spaces,
/// quotes, `$`, `;` and newlines inside an argument stay inside it.
pub fn command_line(argv: &[String]) -> String {
    argv.iter()
        .map(|a| format!("'{}'", a.replace('\'', r"'\''")))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A prepared kernel and initramfs.
pub struct Vm {
    kernel: PathBuf,
    initrd: PathBuf,
    accel: &'static str,
}

impl Vm {
    /// Fetches and unpacks the kernel (cached under `target/vm`), builds the initramfs, and
    /// picks the accelerator.
    pub fn prepare() -> Result<Vm> {
        deps::ensure(&[&QEMU, &BUSYBOX])?;
        let dir = sh::root().join("target/vm");
        std::fs::create_dir_all(&dir)?;
        let version = kernel_version()?;
        let tree = dir.join(format!("kernel-{version}"));
        let vmlinuz = tree.join(format!("boot/vmlinuz-{version}"));
        if !vmlinuz.exists() {
            fetch_kernel(&version, &dir, &tree)?;
        }
        let initrd = dir.join(format!("initrd-{version}.cpio"));
        build_initramfs(&tree, &version, &initrd)?;
        let mut vm = Vm {
            kernel: vmlinuz,
            initrd,
            accel: "tcg",
        };
        // The probe's verdict is kept for this machine's later runs.
        let verdict = dir.join("accel");
        match std::fs::read_to_string(&verdict)
            .ok()
            .as_deref()
            .map(str::trim)
        {
            Some("kvm") => vm.accel = "kvm",
            Some(_) => {}
            None if Path::new("/dev/kvm").exists() => {
                vm.accel = "kvm";
                if !matches!(vm.run("true", 512, Duration::from_secs(15), false), Ok(0)) {
                    eprintln!("vm: KVM did not boot a kernel here; using software emulation (TCG)");
                    vm.accel = "tcg";
                }
                std::fs::write(&verdict, vm.accel)?;
            }
            None => std::fs::write(&verdict, "tcg")?,
        }
        Ok(vm)
    }

    fn qemu(&self, mem: u32, append: &str) -> Command {
        let repo = sh::root();
        let mut c = Command::new("qemu-system-x86_64");
        c.args([
            "-accel",
            self.accel,
            "-cpu",
            if self.accel == "kvm" { "host" } else { "max" },
        ])
        .args([
            "-m",
            &mem.to_string(),
            "-smp",
            "2",
            "-nodefaults",
            "-no-reboot",
            "-display",
            "none",
            "-serial",
            "stdio",
        ])
        .arg("-kernel")
        .arg(&self.kernel)
        .arg("-initrd")
        .arg(&self.initrd)
        .args(["-append", append])
        .args([
            "-fsdev",
            "local,id=hostroot,path=/,security_model=none,readonly=on,multidevs=remap",
        ])
        .args(["-device", "virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot"])
        .arg("-fsdev")
        .arg(format!(
            "local,id=work,path={},security_model=none,multidevs=remap",
            repo.display()
        ))
        .args(["-device", "virtio-9p-pci,fsdev=work,mount_tag=work"]);
        c
    }

    /// Runs `command` (a shell command line) in the VM from the repository root; its exit
    /// code. A VM that does not finish within `timeout` is killed and reported as a failure.
    pub fn run(&self, command: &str, mem: u32, timeout: Duration, echo: bool) -> Result<i32> {
        let repo = sh::root();
        let script = repo.join("target/vm/run.sh");
        std::fs::write(&script, format!("export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/tmp TMPDIR=/tmp PODNET_VM=1\n{command}\n"))?;
        let append = format!(
            "console=ttyS0 quiet panic=-1 rdinit=/init podnet.repo={} podnet.run=target/vm/run.sh",
            repo.display()
        );
        let mut child = self
            .qemu(mem, &append)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("start qemu-system-x86_64")?;
        let stdout = child.stdout.take().expect("piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let start = Instant::now();
        let mut code = None;
        loop {
            let left = timeout.saturating_sub(start.elapsed());
            match rx.recv_timeout(left.min(Duration::from_millis(500))) {
                Ok(line) => {
                    let line = line.trim_end_matches('\r').to_string();
                    if let Some(c) = line.strip_prefix(EXIT_MARK) {
                        code = c.trim().parse().ok();
                    } else if echo {
                        println!("{line}");
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
            if start.elapsed() >= timeout {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "the VM did not finish in {} s: killed (counted as a failure)",
                    timeout.as_secs()
                );
            }
        }
        let status = child.wait()?;
        match code {
            Some(c) => Ok(c),
            None => bail!("the VM stopped ({status}) without reporting the command's exit code"),
        }
    }

    /// An interactive shell on this terminal.
    fn shell(&self, mem: u32) -> Result<()> {
        let repo = sh::root();
        let append = format!(
            "console=ttyS0 quiet panic=-1 rdinit=/init podnet.repo={} podnet.shell=1",
            repo.display()
        );
        eprintln!(
            "vm: starting a shell (exit it to power off; podnet-lab is at target/debug/podnet-lab)"
        );
        let status = self.qemu(mem, &append).status()?;
        if !status.success() {
            bail!("qemu exited with {status}");
        }
        Ok(())
    }
}

/// The kernel version `linux-image-amd64` depends on (e.g. `6.1.0-56-amd64`).
fn kernel_version() -> Result<String> {
    let find = || -> Result<Option<String>> {
        let out = output(Command::new("apt-cache").args(["depends", "linux-image-amd64"]))?;
        Ok(out
            .lines()
            .filter_map(|l| l.trim().strip_prefix("Depends: linux-image-"))
            .map(str::to_string)
            .next())
    };
    if let Some(v) = find()? {
        return Ok(v);
    }
    execute(sh::as_root("apt-get")?.args(["update", "-q"]))?;
    find()?.context(
        "apt-cache knows no linux-image-amd64 (is this Debian or Ubuntu with Debian's archive?)",
    )
}

fn fetch_kernel(version: &str, dir: &Path, tree: &Path) -> Result<()> {
    let pkg = format!("linux-image-{version}");
    eprintln!("vm: fetching {pkg}");
    execute(
        Command::new("apt-get")
            .args(["download", "-q", &pkg])
            .current_dir(dir),
    )?;
    let deb = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name().is_some_and(|n| {
                n.to_string_lossy().starts_with(&pkg) && n.to_string_lossy().ends_with(".deb")
            })
        })
        .context("apt-get download left no .deb")?;
    let tmp = dir.join(format!("kernel-{version}.partial"));
    let _ = std::fs::remove_dir_all(&tmp);
    execute(Command::new("dpkg").arg("-x").arg(&deb).arg(&tmp))?;
    execute(
        Command::new("busybox")
            .args(["depmod", "-b"])
            .arg(&tmp)
            .arg(version),
    )?;
    std::fs::rename(&tmp, tree)?;
    let _ = std::fs::remove_file(&deb);
    Ok(())
}

/// `modules.dep`: module name -> (path, dependency paths).
fn read_deps(tree: &Path, version: &str) -> Result<HashMap<String, (String, Vec<String>)>> {
    let text = std::fs::read_to_string(tree.join(format!("lib/modules/{version}/modules.dep")))?;
    let mut map = HashMap::new();
    for line in text.lines() {
        let Some((path, deps)) = line.split_once(':') else {
            continue;
        };
        let name = Path::new(path)
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .trim_end_matches(".ko")
            .replace('-', "_");
        map.insert(
            name,
            (
                path.to_string(),
                deps.split_whitespace().map(str::to_string).collect(),
            ),
        );
    }
    Ok(map)
}

/// Module paths to load, dependencies first.
fn load_order(
    deps: &HashMap<String, (String, Vec<String>)>,
    wanted: &[&str],
) -> Result<Vec<String>> {
    let by_path: HashMap<&str, &Vec<String>> =
        deps.values().map(|(p, d)| (p.as_str(), d)).collect();
    let mut order = Vec::new();
    let mut seen = BTreeSet::new();
    fn visit(
        p: &str,
        by_path: &HashMap<&str, &Vec<String>>,
        seen: &mut BTreeSet<String>,
        order: &mut Vec<String>,
    ) {
        if !seen.insert(p.to_string()) {
            return;
        }
        for d in by_path.get(p).map(|v| v.as_slice()).unwrap_or(&[]) {
            visit(d, by_path, seen, order);
        }
        order.push(p.to_string());
    }
    for w in wanted {
        let (path, _) = deps
            .get(*w)
            .with_context(|| format!("module {w} is not in this kernel"))?;
        visit(path, &by_path, &mut seen, &mut order);
    }
    Ok(order)
}

fn build_initramfs(tree: &Path, version: &str, out: &Path) -> Result<()> {
    let deps = read_deps(tree, version)?;
    let order = load_order(&deps, MODULES)?;
    let mut cpio = Cpio::default();
    for d in [
        "bin",
        "dev",
        "proc",
        "sys",
        "mnt",
        "tmp",
        "lib",
        "lib/modules",
        &format!("lib/modules/{version}"),
    ] {
        cpio.dir(d);
    }
    cpio.file(
        "bin/busybox",
        &std::fs::read("/bin/busybox").context("read /bin/busybox")?,
        0o755,
    );
    let mut inserts = String::new();
    for (i, rel) in order.iter().enumerate() {
        let data = std::fs::read(tree.join(format!("lib/modules/{version}/{rel}")))
            .with_context(|| format!("read module {rel}"))?;
        let name = format!("lib/m{i:02}.ko");
        cpio.file(&name, &data, 0o644);
        inserts.push_str(&format!(
            "insmod /{name} || echo \"vm: insmod {rel} failed\"\n"
        ));
    }
    let init = INIT.replace("@INSMOD@", &inserts);
    cpio.file("init", init.as_bytes(), 0o755);
    let mut f = std::fs::File::create(out)?;
    f.write_all(&cpio.finish())?;
    Ok(())
}

/// The VM's /init (busybox sh). `@INSMOD@` becomes the module loads.
const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
hostname podnet-vm
@INSMOD@
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    podnet.repo=*) REPO="${arg#podnet.repo=}" ;;
    podnet.run=*) RUN="${arg#podnet.run=}" ;;
    podnet.shell=*) SHELL_MODE=1 ;;
  esac
done
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144,cache=loose hostroot /mnt || { echo "vm: mounting the host root failed"; poweroff -f; }
mount -t proc proc /mnt/proc
mount -t sysfs sys /mnt/sys
mount -o bind /dev /mnt/dev
mount -t tmpfs tmpfs /mnt/tmp
mount -t tmpfs tmpfs /mnt/run
# The repository may live under /tmp or /run, now tmpfs in the VM: make its mount point there.
mkdir -p "/mnt$REPO" 2>/dev/null
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 work "/mnt$REPO" || { echo "vm: mounting the repository failed"; poweroff -f; }
# New namespaces get no fallback tunl0 (the lab and agents create tunl0 themselves, after
# ens3, so the node's own address answers traceroutes as in the seed).
echo 1 > /proc/sys/net/core/fb_tunnels_only_for_init_net
if [ -n "$SHELL_MODE" ]; then
  setsid cttyhack chroot /mnt /bin/sh -c "cd '$REPO' && export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/tmp && exec /bin/bash -i"
else
  chroot /mnt /bin/sh -c "cd '$REPO' && sh '$RUN'"
  echo "PODNET-VM-EXIT=$?"
fi
poweroff -f
"#;

/// A `newc` cpio archive, as the kernel reads an initramfs.
#[derive(Default)]
struct Cpio {
    data: Vec<u8>,
    ino: u32,
}

impl Cpio {
    fn entry(&mut self, name: &str, mode: u32, body: &[u8]) {
        self.ino += 1;
        let header = format!(
            "070701{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            self.ino,
            mode,
            0,
            0,
            1,
            0,
            body.len(),
            0,
            0,
            0,
            0,
            name.len() + 1,
            0
        );
        self.data.extend(header.as_bytes());
        self.data.extend(name.as_bytes());
        self.data.push(0);
        self.pad();
        self.data.extend(body);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.data.len().is_multiple_of(4) {
            self.data.push(0);
        }
    }

    fn dir(&mut self, name: &str) {
        self.entry(name, 0o040755, &[]);
    }

    fn file(&mut self, name: &str, body: &[u8], perm: u32) {
        self.entry(name, 0o100000 | perm, body);
    }

    fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, &[]);
        self.data
    }
}

#[cfg(test)]
mod tests {
    use super::command_line;
    use std::process::Command;

    fn argv(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    /// What `sh` makes of the line, as the VM's run script runs it.
    fn through_sh(line: &str) -> std::process::Output {
        Command::new("sh").arg("-c").arg(line).output().unwrap()
    }

    #[test]
    fn a_quoted_script_keeps_its_words_and_its_exit_status() {
        let out = through_sh(&command_line(&argv(&["sh", "-c", "echo a b; exit 3"])));
        assert_eq!(String::from_utf8_lossy(&out.stdout), "a b\n");
        assert_eq!(out.status.code(), Some(3));
    }

    #[test]
    fn every_argument_arrives_as_one_argument() {
        let tricky = [
            "two words",
            "it's",
            "$HOME",
            "a;b",
            "line\nbreak",
            "\"double\"",
            "",
            "back\\slash",
        ];
        let mut words = vec!["printf", "[%s]\\n"];
        words.extend(tricky);
        let out = through_sh(&command_line(&argv(&words)));
        let want: String = tricky.iter().map(|t| format!("[{t}]\n")).collect();
        assert_eq!(String::from_utf8_lossy(&out.stdout), want);
        assert!(out.status.success());
    }

    #[test]
    fn plain_commands_read_as_before() {
        let line = command_line(&argv(&["target/debug/podnet-lab", "up", "--encap", "ipip"]));
        assert_eq!(line, "'target/debug/podnet-lab' 'up' '--encap' 'ipip'");
    }
}
