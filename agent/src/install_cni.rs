//! `podnet-agent install-cni`, what calico-node's install container does: puts the `podnet`
//! and `podnet-ipam` binaries into the CNI bin dir and writes `10-podnet.conflist` into the
//! CNI conf dir from the agent's settings. Every file is written beside its target and renamed
//! over it, so a runtime never executes a half-written binary nor reads a half-written config;
//! a file already as it should be is left alone (running it again changes nothing). Other
//! conflists are never touched, and a `10-podnet.conflist` that this command did not write is
//! refused unless `--force`. Without `--source-dir` the plugins are taken from beside
//! `podnet-agent` (the container image), else from [`PACKAGE_PLUGIN_DIR`] (the Debian package).

use crate::settings::{Encapsulation, RunArgs};
use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The plugin binaries installed, in the order they are put in place.
pub const BINARIES: [&str; 2] = ["podnet-ipam", "podnet"];
/// The conflist's file name: `10-` sorts it before most others, as Calico's `10-calico`.
pub const CONFLIST: &str = "10-podnet.conflist";
/// The key that marks a conflist as written by this command.
pub const MARK: &str = "podnet.io/written-by";

/// `install-cni` flags (the agent's settings come from `run`'s flags and the config file).
#[derive(Debug, Clone, clap::Args)]
pub struct InstallArgs {
    /// Where the runtime looks for plugin binaries.
    #[arg(long, default_value = "/opt/cni/bin")]
    pub cni_bin_dir: PathBuf,
    /// Where the runtime looks for network configs.
    #[arg(long, default_value = "/etc/cni/net.d")]
    pub cni_conf_dir: PathBuf,
    /// Where `podnet` and `podnet-ipam` are taken from [default: beside podnet-agent if they
    /// are there, else /usr/lib/podnet/cni].
    #[arg(long)]
    pub source_dir: Option<PathBuf>,
    /// Replace a 10-podnet.conflist that install-cni did not write.
    #[arg(long)]
    pub force: bool,
    /// The CNI log file the plugins write.
    #[arg(long, default_value = "/var/log/podnet/cni.log")]
    pub cni_log: PathBuf,
    /// The CNI conf dir as the host (and so the plugin) sees it, when this runs in a container
    /// with the host's dir mounted elsewhere [default: --cni-conf-dir].
    #[arg(long)]
    pub host_cni_conf_dir: Option<PathBuf>,
}

/// Where the etcd TLS files are copied, under the CNI conf dir (the plugin runs on the host,
/// where the agent's container paths do not exist).
pub const TLS_DIR: &str = "podnet-tls";

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    // The cause is the error's source: callers print the chain, so it is not repeated here.
    #[error("{action}")]
    Io {
        action: String,
        source: std::io::Error,
    },
    #[error(
        "refusing to overwrite {0}: install-cni did not write it (it has no \"{MARK}\"); \
         move it away or pass --force"
    )]
    Foreign(PathBuf),
    #[error("install-cni needs the pod pool: set pool in the config file or pass --pool")]
    NoPool,
    #[error(
        "the CNI plugins ({}) are not all in any of {}; pass --source-dir",
        BINARIES.join(", "),
        places(.0)
    )]
    NoPlugins(Vec<PathBuf>),
}

fn places(dirs: &[PathBuf]) -> String {
    let shown: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    shown.join(", ")
}

fn io(action: impl Into<String>) -> impl FnOnce(std::io::Error) -> InstallError {
    let action = action.into();
    move |source| InstallError::Io { action, source }
}

/// What happened to one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Written(PathBuf),
    Unchanged(PathBuf),
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Written(p) => write!(f, "wrote {}", p.display()),
            Outcome::Unchanged(p) => write!(f, "{} unchanged", p.display()),
        }
    }
}

/// The conflist for these settings: one plugin, `podnet`, with podnet's IPAM in-process. Its
/// etcd TLS files, if any, are the copies under `tls_dir` (as the host sees it).
pub fn conflist(args: &RunArgs, cni_log: &Path, tls_dir: &Path) -> Result<Value, InstallError> {
    let pool = args.pool.ok_or(InstallError::NoPool)?;
    let mut datastore = args.store.config();
    if let podnet_ipam::DatastoreConfig::Etcd { tls: Some(tls), .. } = &mut datastore {
        for (file, name) in [
            (&mut tls.ca, "ca.pem"),
            (&mut tls.cert, "cert.pem"),
            (&mut tls.key, "key.pem"),
        ] {
            if file.is_some() {
                *file = Some(tls_dir.join(name));
            }
        }
    }
    let mut plugin = json!({
        "type": "podnet",
        "stateDir": args.state_dir,
        "log": {"file": cni_log, "level": "info"},
        "datastore": datastore,
        "ipam": {"type": "podnet-ipam", "pool": pool, "blockSize": args.block_size},
    });
    let encapsulation = match args.encapsulation {
        Encapsulation::Ipip => Some("ipip"),
        Encapsulation::Vxlan => Some("vxlan"),
        Encapsulation::None => Some("none"),
        // The agent settles it on the node and publishes the MTU in stateDir.
        Encapsulation::Auto => None,
    };
    if let Some(e) = encapsulation {
        plugin["encapsulation"] = e.into();
    }
    if let Some(n) = &args.node_name {
        plugin["nodename"] = n.clone().into();
    }
    Ok(json!({
        "cniVersion": "1.0.0",
        "name": "k8s-pod-network",
        MARK: "podnet-agent install-cni",
        "plugins": [plugin],
    }))
}

/// Installs the binaries, then the conflist (a runtime that finds the config finds the
/// plugins it names). Everything is checked and read first (the plugins found, the TLS files
/// read, a foreign conflist refused), so a refusal changes nothing. Returns what it did to each
/// file.
pub fn install(args: &RunArgs, how: &InstallArgs) -> Result<Vec<Outcome>, InstallError> {
    let places = match &how.source_dir {
        Some(d) => vec![d.clone()],
        None => default_places()?,
    };
    install_from(args, how, &places)
}

/// [`install`] taking the plugins from the first of `places` that holds them all (in place of
/// `--source-dir` and the default places).
pub fn install_from(
    args: &RunArgs,
    how: &InstallArgs,
    places: &[PathBuf],
) -> Result<Vec<Outcome>, InstallError> {
    let files = plan(args, how, &find_plugins(places)?)?;
    let mut done = Vec::new();
    for f in files {
        if let Some(dir) = f.target.parent() {
            std::fs::create_dir_all(dir).map_err(io(format!("create {}", dir.display())))?;
        }
        done.push(put(&f.target, &f.bytes, f.mode)?);
    }
    Ok(done)
}

/// Where the Debian package puts the plugins (`cargo xtask dist deb`; the agent is in
/// `/usr/sbin`), looked in when they are not beside `podnet-agent`.
pub const PACKAGE_PLUGIN_DIR: &str = "/usr/lib/podnet/cni";

/// Where the plugins are looked for without `--source-dir`: the folder of the running
/// `podnet-agent` (the container image has them there), then [`PACKAGE_PLUGIN_DIR`].
pub fn default_places() -> Result<Vec<PathBuf>, InstallError> {
    let exe = std::env::current_exe().map_err(io("find podnet-agent's own path"))?;
    let own = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    Ok(vec![own, PathBuf::from(PACKAGE_PLUGIN_DIR)])
}

/// The first of `places` holding every one of [`BINARIES`].
pub fn find_plugins(places: &[PathBuf]) -> Result<PathBuf, InstallError> {
    places
        .iter()
        .find(|dir| BINARIES.iter().all(|b| dir.join(b).is_file()))
        .cloned()
        .ok_or_else(|| InstallError::NoPlugins(places.to_vec()))
}

/// One file to put in place.
struct File {
    target: PathBuf,
    bytes: Vec<u8>,
    mode: u32,
}

/// Every file to write, in order (binaries, TLS files, the conflist), read and checked without
/// changing anything.
fn plan(args: &RunArgs, how: &InstallArgs, source: &Path) -> Result<Vec<File>, InstallError> {
    let host_conf = how.host_cni_conf_dir.as_ref().unwrap_or(&how.cni_conf_dir);
    let doc = conflist(args, &how.cni_log, &host_conf.join(TLS_DIR))?;
    let mut files = Vec::new();
    for b in BINARIES {
        files.push(File {
            target: how.cni_bin_dir.join(b),
            bytes: read(&source.join(b))?,
            mode: 0o755,
        });
    }
    files.extend(tls_files(args, &how.cni_conf_dir.join(TLS_DIR))?);
    let target = how.cni_conf_dir.join(CONFLIST);
    if let Ok(old) = std::fs::read(&target) {
        let ours = serde_json::from_slice::<Value>(&old).is_ok_and(|v| v.get(MARK).is_some());
        if !ours && !how.force {
            return Err(InstallError::Foreign(target));
        }
    }
    let mut text = serde_json::to_vec_pretty(&doc).expect("a conflist serializes");
    text.push(b'\n');
    files.push(File {
        target,
        bytes: text,
        mode: 0o644,
    });
    Ok(files)
}

fn read(path: &Path) -> Result<Vec<u8>, InstallError> {
    std::fs::read(path).map_err(io(format!("read {}", path.display())))
}

/// The etcd TLS files the settings name, as copies for the plugin in `dir` (the key readable
/// by root only).
fn tls_files(args: &RunArgs, dir: &Path) -> Result<Vec<File>, InstallError> {
    let s = &args.store;
    if s.etcd_endpoints.is_empty() {
        return Ok(Vec::new());
    }
    let files = [
        (&s.etcd_ca, "ca.pem", 0o644),
        (&s.etcd_cert, "cert.pem", 0o644),
        (&s.etcd_key, "key.pem", 0o600),
    ];
    let mut out = Vec::new();
    for (from, name, mode) in files {
        let Some(from) = from else { continue };
        out.push(File {
            target: dir.join(name),
            bytes: read(from)?,
            mode,
        });
    }
    Ok(out)
}

/// Writes `bytes` to `target` by a temporary file in the same folder, synced, then renamed
/// over it; nothing is written if `target` already holds exactly `bytes` with `mode`.
fn put(target: &Path, bytes: &[u8], mode: u32) -> Result<Outcome, InstallError> {
    use std::os::unix::fs::PermissionsExt;
    let same = std::fs::read(target).is_ok_and(|old| old == bytes)
        && std::fs::metadata(target).is_ok_and(|m| m.permissions().mode() & 0o7777 == mode);
    if same {
        return Ok(Outcome::Unchanged(target.to_path_buf()));
    }
    let dir = target.parent().unwrap_or(Path::new("."));
    let name = target.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.podnet-{}", std::process::id()));
    let shown = target.display().to_string();
    let written = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        f.sync_all()?;
        std::fs::rename(&tmp, target)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(io(format!("write {shown}"))(e));
    }
    Ok(Outcome::Written(target.to_path_buf()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (tempfile::TempDir, RunArgs, InstallArgs) {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("src");
        std::fs::create_dir(&src).unwrap();
        for b in BINARIES {
            std::fs::write(src.join(b), format!("#!/bin/sh\n# {b} v1\n")).unwrap();
        }
        let args =
            RunArgs::from_flags(&["--pool", "10.233.64.0/18", "--block-size", "24"]).unwrap();
        let how = InstallArgs {
            cni_bin_dir: t.path().join("bin"),
            cni_conf_dir: t.path().join("net.d"),
            source_dir: Some(src),
            force: false,
            cni_log: "/var/log/podnet/cni.log".into(),
            host_cni_conf_dir: None,
        };
        (t, args, how)
    }

    fn written(o: &[Outcome]) -> usize {
        o.iter()
            .filter(|o| matches!(o, Outcome::Written(_)))
            .count()
    }

    #[test]
    fn installs_once_then_changes_nothing() {
        let (_t, args, how) = setup();
        assert_eq!(written(&install(&args, &how).unwrap()), 3);
        let conf: Value =
            serde_json::from_slice(&std::fs::read(how.cni_conf_dir.join(CONFLIST)).unwrap())
                .unwrap();
        assert_eq!(conf["plugins"][0]["type"], "podnet");
        assert_eq!(conf["plugins"][0]["ipam"]["pool"], "10.233.64.0/18");
        assert_eq!(conf["plugins"][0]["datastore"]["type"], "sqlite");
        // The conflist is one the main plugin accepts, with its IPAM in-process.
        let mut entry = conf["plugins"][0].clone();
        entry["cniVersion"] = conf["cniVersion"].clone();
        let parsed = podnet_cni::config::NetConf::parse(entry.to_string().as_bytes())
            .unwrap_or_else(|e| panic!("the plugin refuses its conflist: {e:?}"));
        assert!(parsed.ipam_in_process());
        assert_eq!(written(&install(&args, &how).unwrap()), 0);
        let leftovers: Vec<_> = std::fs::read_dir(&how.cni_bin_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers.len(), 2, "{leftovers:?}");
    }

    #[test]
    fn a_conflist_it_did_not_write_is_refused_unless_forced_and_others_are_left_alone() {
        let (_t, args, mut how) = setup();
        std::fs::create_dir_all(&how.cni_conf_dir).unwrap();
        let foreign = how.cni_conf_dir.join(CONFLIST);
        std::fs::write(
            &foreign,
            "{\"cniVersion\":\"1.0.0\",\"name\":\"mine\",\"plugins\":[]}",
        )
        .unwrap();
        let other = how.cni_conf_dir.join("05-other.conflist");
        std::fs::write(&other, "keep me").unwrap();
        let e = install(&args, &how).unwrap_err();
        assert!(matches!(e, InstallError::Foreign(_)), "{e}");
        assert!(std::fs::read_to_string(&foreign).unwrap().contains("mine"));
        assert!(
            !how.cni_bin_dir.exists(),
            "the plugins were copied before the conflist was refused"
        );
        how.force = true;
        install(&args, &how).unwrap();
        assert!(std::fs::read_to_string(&foreign).unwrap().contains(MARK));
        assert_eq!(std::fs::read_to_string(&other).unwrap(), "keep me");
    }

    #[test]
    fn a_runtime_never_sees_a_half_written_binary() {
        let (_t, args, how) = setup();
        install(&args, &how).unwrap();
        let target = how.cni_bin_dir.join("podnet");
        let v1 = std::fs::read(&target).unwrap();
        let v2 = vec![b'x'; 4 << 20];
        std::fs::write(how.source_dir.as_ref().unwrap().join("podnet"), &v2).unwrap();
        let stop = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            let reader = s.spawn(|| {
                let mut seen = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let now = std::fs::read(&target).unwrap();
                    assert!(
                        now == v1 || now == v2,
                        "read {} bytes of neither version",
                        now.len()
                    );
                    seen += 1;
                }
                seen
            });
            install(&args, &how).unwrap();
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            assert!(reader.join().unwrap() > 0);
        });
        assert_eq!(std::fs::read(&target).unwrap(), v2);
    }

    /// The error as `podnet-agent` prints it (`{:#}`: each cause after a colon).
    fn chain(e: &dyn std::error::Error) -> String {
        let mut text = e.to_string();
        let mut cur = e.source();
        while let Some(s) = cur {
            text += &format!(": {s}");
            cur = s.source();
        }
        text
    }

    #[test]
    fn without_source_dir_the_plugins_beside_the_agent_win_else_the_package_folder() {
        let (t, args, mut how) = setup();
        how.source_dir = None;
        let beside = t.path().join("sbin");
        let package = t.path().join("lib-podnet-cni");
        for (dir, what) in [(&beside, "beside"), (&package, "package")] {
            std::fs::create_dir(dir).unwrap();
            for b in BINARIES {
                std::fs::write(dir.join(b), format!("{b} from {what}\n")).unwrap();
            }
        }
        let podnet = || std::fs::read_to_string(how.cni_bin_dir.join("podnet")).unwrap();
        let places = [beside.clone(), package.clone()];
        install_from(&args, &how, &places).unwrap();
        assert_eq!(podnet(), "podnet from beside\n");
        // As packaged: the agent in /usr/sbin, the plugins only in /usr/lib/podnet/cni (one of
        // them beside the agent is not enough).
        std::fs::remove_file(beside.join("podnet-ipam")).unwrap();
        install_from(&args, &how, &places).unwrap();
        assert_eq!(podnet(), "podnet from package\n");
    }

    #[test]
    fn no_plugins_anywhere_names_every_place_and_changes_nothing() {
        let (t, args, mut how) = setup();
        how.source_dir = None;
        let places = [t.path().join("sbin"), t.path().join("lib-podnet-cni")];
        let e = install_from(&args, &how, &places).unwrap_err();
        let text = chain(&e);
        for p in &places {
            assert!(text.contains(&p.display().to_string()), "{text}");
        }
        assert!(text.contains("--source-dir"), "{text}");
        assert!(!how.cni_bin_dir.exists() && !how.cni_conf_dir.exists());
    }

    #[test]
    fn the_default_places_are_the_agents_folder_then_the_packages() {
        let exe = std::env::current_exe().unwrap();
        assert_eq!(
            default_places().unwrap(),
            [exe.parent().unwrap(), Path::new(PACKAGE_PLUGIN_DIR)]
        );
    }

    #[test]
    fn a_file_that_cannot_be_read_is_said_once_and_nothing_is_written() {
        let (t, _, how) = setup();
        let missing = t.path().join("no-such-ca.pem").display().to_string();
        let args = RunArgs::from_flags(&[
            "--pool",
            "10.233.64.0/18",
            "--etcd-endpoints",
            "https://192.168.110.100:2379",
            "--etcd-ca",
            &missing,
        ])
        .unwrap();
        let text = chain(&install(&args, &how).unwrap_err());
        assert_eq!(text.matches(&missing).count(), 1, "{text}");
        assert_eq!(text.matches("No such file").count(), 1, "{text}");
        assert!(
            !how.cni_bin_dir.exists(),
            "binaries copied before the check"
        );
    }

    #[test]
    fn no_pool_no_conflist() {
        let (_t, _, how) = setup();
        let args = RunArgs::from_flags(&[]).unwrap();
        assert!(matches!(install(&args, &how), Err(InstallError::NoPool)));
    }

    #[test]
    fn etcd_tls_files_are_copied_for_the_plugin_and_named_as_the_host_sees_them() {
        let (t, _, mut how) = setup();
        let certs = t.path().join("certs");
        std::fs::create_dir(&certs).unwrap();
        for f in ["ca.pem", "cert.pem", "key.pem"] {
            std::fs::write(certs.join(f), format!("-----{f}-----\n")).unwrap();
        }
        let c = |f: &str| certs.join(f).display().to_string();
        let (ca, cert, key) = (c("ca.pem"), c("cert.pem"), c("key.pem"));
        let args = RunArgs::from_flags(&[
            "--pool",
            "10.233.64.0/18",
            "--etcd-endpoints",
            "https://192.168.110.100:2379",
            "--etcd-ca",
            &ca,
            "--etcd-cert",
            &cert,
            "--etcd-key",
            &key,
        ])
        .unwrap();
        how.host_cni_conf_dir = Some("/etc/cni/net.d".into());
        install(&args, &how).unwrap();
        let doc: Value =
            serde_json::from_slice(&std::fs::read(how.cni_conf_dir.join(CONFLIST)).unwrap())
                .unwrap();
        let tls = &doc["plugins"][0]["datastore"]["tls"];
        assert_eq!(tls["key"], "/etc/cni/net.d/podnet-tls/key.pem");
        let copied = how.cni_conf_dir.join("podnet-tls/key.pem");
        assert_eq!(
            std::fs::read_to_string(&copied).unwrap(),
            "-----key.pem-----\n"
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&copied).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
