//! The plugins' whole front door, run for real in a sandbox (`podnet_fuzz::sandbox`): the input
//! is a runtime's environment (`NAME=value` lines), a NUL byte, then stdin. It goes to the
//! `podnet` main plugin's [`podnet_cni::call`] (or, when the first line is `plugin=ipam`, to
//! `podnet-ipam`'s) exactly as the binaries run it, ADD creating veths, routes and addresses.
//! The rules, checked after every input:
//! - the reply is exactly one JSON document (or nothing for a success without a result): an
//!   error with an integer `code` and a `msg`, an ADD result with an address;
//! - an ADD that succeeded is undone by a DEL of the same call, which must succeed;
//! - then the sandbox is as before the input (no veth, no route, nothing in a pod namespace,
//!   no process, no mount, nothing in `/run`) and the datastore the config names holds no address (nothing half-made, nothing leaked).
#![no_main]
use libfuzzer_sys::fuzz_target;
use podnet_cni_types::{reply::render, CniEnv, CniError, CniVersion, Command};
use podnet_fuzz::sandbox;
use std::collections::HashMap;
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
        let after = sandbox::world();
        assert_eq!(BEFORE.get(), Some(&after), "the input left something behind");
        no_address_held(ipam, stdin);
    }
);

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

/// The SQLite store the call used (the IPAM config, as the main plugin hands it on) holds no
/// allocation once the input is done.
fn no_address_held(ipam: bool, stdin: &[u8]) {
    let doc = if ipam {
        stdin.to_vec()
    } else {
        match podnet_cni::config::NetConf::parse(stdin) {
            Ok(c) if c.ipam_in_process() => c.ipam_document(),
            _ => return,
        }
    };
    let Ok(conf) = podnet_ipam::plugin::NetConf::parse(&doc) else {
        return;
    };
    if !matches!(
        conf.ipam.datastore,
        podnet_ipam::DatastoreConfig::Sqlite { .. }
    ) {
        return;
    }
    let Ok(store) = conf.ipam.datastore.open() else {
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
