//! The plugins' whole front door, run for real in a sandbox (`podnet_fuzz::sandbox`): the input
//! is a runtime's environment (`NAME=value` lines), a NUL byte, then stdin. It goes to the
//! `podnet` main plugin's [`podnet_cni::call`] (or, when the first line is `plugin=ipam`, to
//! `podnet-ipam`'s) exactly as the binaries run it, ADD creating veths, routes and addresses.
//! The rules, checked after every input:
//! - the reply is exactly one JSON document (or nothing for a success without a result): an
//!   error with an integer `code` and a `msg`, an ADD result with an address;
//! - an ADD that succeeded is undone by a DEL of the same call, which must succeed;
//! - then the sandbox is as before the input (no veth, no route, nothing in a pod namespace,
//!   no process, no mount, nothing in `/run`) and the datastore the config names holds no
//!   address (nothing half-made, nothing leaked).
//!
//! The plugins never create a datastore (a node's agent does): before the call the target
//! makes the SQLite file the config names, as the agent would, and removes it after the check
//! so that each input starts from the same sandbox. An input with a line `store=missing` runs
//! without it, and the plugins must not make it.
#![no_main]
use libfuzzer_sys::fuzz_target;
use podnet_cni_types::{reply::render, CniEnv, CniError, CniVersion, Command};
use podnet_fuzz::sandbox;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

static BEFORE: OnceLock<sandbox::World> = OnceLock::new();

fuzz_target!(
    init: {
        sandbox::enter();
        BEFORE.set(sandbox::world()).expect("set up once");
    },
    |data: &[u8]| {
        let (env_text, stdin) = match data.iter().position(|b| *b == 0) {
            Some(i) => (&data[..i], &data[i + 1..]),
            None => (data, &data[data.len()..]),
        };
        let text = String::from_utf8_lossy(env_text);
        let vars: HashMap<&str, &str> = text.lines().filter_map(|l| l.split_once('=')).collect();
        let ipam = vars.get("plugin") == Some(&"ipam");
        let env = CniEnv::from_lookup(|k| vars.get(k).map(|v| v.to_string()));
        let Ok(mut env) = env else {
            return;
        };
        env.path = vec![sandbox::CNI_PATH.into()];
        let missing = vars.get("store") == Some(&"missing");
        let named = sqlite_store(ipam, stdin);
        if let (Some((conf, _)), false) = (&named, missing) {
            // Where the sandbox refuses a file, the plugins find none (code 11).
            let _ = conf.open_or_create();
        }
        let (version, outcome) = call(ipam, &env, stdin);
        let added = env.command == Command::Add && outcome.is_ok();
        check_reply(&env, version, outcome);
        if added {
            let mut del = env.clone();
            del.command = Command::Del;
            let (_, undone) = call(ipam, &del, stdin);
            if let Err(e) = undone {
                panic!("ADD succeeded, DEL of the same call failed: {e:?}");
            }
        }
        // The datastore made for the input is checked for what it holds, then removed for the
        // next input; without one, none may have appeared.
        let store = named.and_then(|(conf, path)| Some((conf, real(&path)?)));
        if missing {
            if let Some((_, path)) = &store {
                assert!(!path.exists(), "a plugin made the datastore {}", path.display());
            }
        }
        let mut after = sandbox::world();
        if let Some((_, path)) = &store {
            let before = &BEFORE.get().expect("set at init").run;
            after
                .run
                .retain(|p| before.contains(p) || !is_store_or_its_folder(p, path));
        }
        assert_eq!(BEFORE.get(), Some(&after), "the input left something behind");
        if let Some((conf, path)) = store {
            if path.exists() {
                no_address_held(&conf);
                remove_store(&path);
            }
        }
    }
);

/// Where `path` really is (`/var//run/x.db` is `/run/x.db`), if its folder exists.
fn real(path: &Path) -> Option<PathBuf> {
    Some(
        std::fs::canonicalize(path.parent()?)
            .ok()?
            .join(path.file_name()?),
    )
}

/// `p` is the store file, its WAL or shared memory, or a folder on the way to it (the caller
/// keeps the folders that were there before).
fn is_store_or_its_folder(p: &str, store: &Path) -> bool {
    let p = Path::new(p);
    store.starts_with(p)
        || ["", "-wal", "-shm", "-journal"]
            .iter()
            .any(|s| p.as_os_str() == format!("{}{s}", store.display()).as_str())
}

/// Removes the store's files and the folders made for it (each only if empty), down to `/`.
fn remove_store(store: &Path) {
    for s in ["", "-wal", "-shm", "-journal"] {
        let _ = std::fs::remove_file(format!("{}{s}", store.display()));
    }
    let before = &BEFORE.get().expect("set at init").run;
    for dir in store.ancestors().skip(1) {
        if before.iter().any(|b| Path::new(b) == dir) || std::fs::remove_dir(dir).is_err() {
            break;
        }
    }
}

fn call(
    ipam: bool,
    env: &CniEnv,
    stdin: &[u8],
) -> (CniVersion, Result<serde_json::Value, CniError>) {
    if ipam {
        podnet_ipam::plugin::run(env, stdin)
    } else {
        podnet_cni::call(env, stdin, |_| {})
    }
}

fn check_reply(env: &CniEnv, version: CniVersion, outcome: Result<serde_json::Value, CniError>) {
    let ok = outcome.is_ok();
    let (body, success) = render(version, outcome);
    assert_eq!(ok, success);
    if body.is_empty() {
        assert!(success, "an error always has a body");
        assert!(
            !matches!(env.command, Command::Add | Command::Version),
            "{:?} succeeded without a result",
            env.command
        );
        return;
    }
    let doc: serde_json::Value = serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("the reply is not one JSON document ({e}): {body:?}"));
    if !success {
        assert!(
            doc["code"].as_u64().is_some(),
            "an error without a code: {doc}"
        );
        assert!(
            doc["msg"].as_str().is_some(),
            "an error without a msg: {doc}"
        );
    } else if env.command == Command::Add {
        let ips = doc["ips"].as_array();
        assert!(
            ips.is_some_and(|a| !a.is_empty()),
            "ADD without an address: {doc}"
        );
    }
}

/// The SQLite store the call used (the IPAM config, as the main plugin hands it on) and its
/// path, if the call got that far that it could have opened one.
fn sqlite_store(ipam: bool, stdin: &[u8]) -> Option<(podnet_ipam::DatastoreConfig, PathBuf)> {
    let doc = if ipam {
        stdin.to_vec()
    } else {
        match podnet_cni::config::NetConf::parse(stdin) {
            Ok(c) if c.ipam_in_process() => c.ipam_document(),
            _ => return None,
        }
    };
    let conf = podnet_ipam::plugin::NetConf::parse(&doc).ok()?;
    match &conf.ipam.datastore {
        podnet_ipam::DatastoreConfig::Sqlite { path, .. } => {
            let path = path.clone();
            Some((conf.ipam.datastore, path))
        }
        _ => None,
    }
}

/// The store holds no allocation once the input is done, and agrees with itself.
fn no_address_held(datastore: &podnet_ipam::DatastoreConfig) {
    let Ok(store) = datastore.open() else {
        return;
    };
    let summary = podnet_ipam::inspect::summary(&*store).expect("read the store back");
    let held: usize = summary.blocks.iter().map(|b| b.used as usize).sum();
    assert_eq!(held, 0, "addresses left allocated: {:?}", summary.blocks);
    let problems = podnet_ipam::inspect::verify(&*store).expect("check the store");
    assert!(
        problems.is_empty(),
        "the store disagrees with itself: {problems:?}"
    );
}
