//! The Kubernetes manifests under `deploy/kubernetes/` against the real binary: the
//! ConfigMap's `agent.toml` passes `config check`, and the DaemonSet's install-cni init
//! container, its command line run as written (host paths moved to a temporary folder),
//! installs the plugins and a conflist the plugin accepts, and changes nothing the second time.
//! (Schema validation of the manifests is `cargo xtask test`'s, with kubernetes-validate.)

use std::path::{Path, PathBuf};
use std::process::Command;

const AGENT: &str = env!("CARGO_BIN_EXE_podnet-agent");

fn manifest(name: &str) -> serde_yaml::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/kubernetes")
        .join(name);
    serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// The ConfigMap's agent.toml, written to `dir`.
fn agent_toml(dir: &Path) -> PathBuf {
    let cm = manifest("configmap.yaml");
    let text = cm["data"]["agent.toml"]
        .as_str()
        .expect("the ConfigMap holds agent.toml");
    let path = dir.join("agent.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn the_configmap_passes_config_check() {
    let t = tempfile::tempdir().unwrap();
    let out = Command::new(AGENT)
        .args(["config", "check"])
        .arg(agent_toml(t.path()))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("routing = \"bgp\""), "{stdout}");
    assert!(
        stdout.contains("etcd-ca = \"/etc/podnet-tls/ca.pem\""),
        "{stdout}"
    );
}

/// `podnet-agent config check FILE`.
fn config_check(file: &Path) -> std::process::Output {
    Command::new(AGENT)
        .args(["config", "check"])
        .arg(file)
        .output()
        .unwrap()
}

#[test]
fn config_check_refuses_an_unknown_key_by_name() {
    let t = tempfile::tempdir().unwrap();
    let path = t.path().join("agent.toml");
    std::fs::write(&path, "pool = \"10.233.64.0/18\"\nblok-size = 24\n").unwrap();
    let out = config_check(&path);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("blok-size") && stderr.contains("line 2"),
        "{stderr}"
    );
}

/// `config check` names, for each key refused, its path and the value as written, whether
/// toml refused it or the checks after (the pool's, the node name's, the log level's).
#[test]
fn config_check_names_each_refused_key_and_its_value() {
    let t = tempfile::tempdir().unwrap();
    let path = t.path().join("agent.toml");
    for (file, want) in [
        (
            "pool = \"10.233.64.0/33\"\n",
            "pool: \"10.233.64.0/33\": prefix length 33 is longer than 32 (line 1)",
        ),
        (
            "pool = \"10.233.64.1/18\"\n",
            "pool: \"10.233.64.1/18\": host bits are set",
        ),
        (
            "pool = \"10.233.64.0/18\"\nblock-size = 19\n",
            "block-size: 19: out of range",
        ),
        (
            "pool = \"10.233.64.0/24\"\nblock-size = 20\n",
            "block-size: 20: a /20 block is larger than pool",
        ),
        (
            "pool = \"10.233.64.0/18\"\nblock-size = 24\nnode-block = [\"10.233.64.0/24\", \"10.1.0.0/24\"]\n",
            "node-block[1]: \"10.1.0.0/24\": not a /24 block of pool 10.233.64.0/18",
        ),
        ("node-name = \"a b\"\n", "node-name: \"a b\": it contains"),
        ("log-level = \"loud\"\n", "log-level: \"loud\": one of"),
        ("etcd-ca = \"/ca.pem\"\n", "etcd-ca: set, but etcd-endpoints is not"),
    ] {
        std::fs::write(&path, file).unwrap();
        let out = config_check(&path);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{file:?} passed");
        assert!(
            stderr.contains(&format!("{}: {want}", path.display())),
            "{file:?}:\n  got  {stderr}\n  want {want}"
        );
    }
}

#[test]
fn the_daemonsets_install_cni_command_installs_the_plugins() {
    let t = tempfile::tempdir().unwrap();
    let host = t.path().join("host");
    let config = agent_toml(t.path());
    // The Secret's files, where the container would see them.
    let tls = t.path().join("podnet-tls");
    std::fs::create_dir(&tls).unwrap();
    for f in ["ca.pem", "cert.pem", "key.pem"] {
        std::fs::write(tls.join(f), f).unwrap();
    }
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("/etc/podnet-tls/", &format!("{}/", tls.display())),
    )
    .unwrap();
    let source = t.path().join("image");
    std::fs::create_dir(&source).unwrap();
    for b in ["podnet", "podnet-ipam"] {
        std::fs::write(source.join(b), format!("#!/bin/sh\n# {b}\n")).unwrap();
    }
    let ds = manifest("daemonset.yaml");
    let init = &ds["spec"]["template"]["spec"]["initContainers"][0];
    assert_eq!(init["name"], "install-cni");
    let command: Vec<String> = init["command"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(command[..2], ["/podnet-agent", "install-cni"]);
    let args: Vec<String> = command[1..]
        .iter()
        .map(|a| {
            a.replace("$(NODE_NAME)", "sung-ubuntu04")
                .replace("/host/", &format!("{}/", host.display()))
                .replace("/etc/podnet/agent.toml", &config.display().to_string())
        })
        .collect();
    let run = || {
        let out = Command::new(AGENT)
            .args(&args)
            .arg("--source-dir")
            .arg(&source)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let first = run();
    assert_eq!(first.matches("wrote").count(), 6, "{first}");
    let conflist = host.join("etc/cni/net.d/10-podnet.conflist");
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&conflist).unwrap()).unwrap();
    let plugin = &doc["plugins"][0];
    assert_eq!(plugin["nodename"], "sung-ubuntu04");
    assert_eq!(plugin["encapsulation"], "ipip");
    assert_eq!(plugin["datastore"]["type"], "etcd");
    assert_eq!(plugin["ipam"]["blockSize"], 24);
    assert_eq!(
        plugin["datastore"]["tls"]["ca"],
        "/etc/cni/net.d/podnet-tls/ca.pem"
    );
    assert!(host.join("etc/cni/net.d/podnet-tls/key.pem").is_file());
    let mut entry = plugin.clone();
    entry["cniVersion"] = doc["cniVersion"].clone();
    podnet_cni::config::NetConf::parse(entry.to_string().as_bytes()).expect("podnet accepts it");
    assert!(host.join("opt/cni/bin/podnet").is_file());
    let second = run();
    assert_eq!(second.matches("unchanged").count(), 6, "{second}");
}
