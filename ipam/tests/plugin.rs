//! The `podnet-ipam` binary as a runtime runs it: every verb, every version, every bad input
//! with its CNI error code and nothing left allocated.

mod common;

use common::{cni, config, pod_handles, seed_pool};
use podnet_ipam::store::sqlite::{Options, SqliteStore};
use podnet_ipam::Ipam;
use serde_json::json;

#[test]
fn add_answers_in_every_version() {
    let dir = tempfile::tempdir().unwrap();
    let db = common::new_store(&dir);
    for (i, v) in ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]
        .iter()
        .enumerate()
    {
        let r = cni("ADD", &format!("c{i}"), &[], &config(v, &db, json!({})));
        assert_eq!(r.code, 0, "{v}: {} {}", r.stdout, r.stderr);
        let j = r.json();
        assert_eq!(j["cniVersion"], *v);
        assert_eq!(j["ips"][0]["address"], format!("10.100.0.{i}/32"));
        assert!(
            j.get("interfaces").is_none(),
            "an IPAM result has no interfaces"
        );
        let legacy = v.starts_with('0');
        assert_eq!(j["ips"][0].get("version").is_some(), legacy, "{v}: {j}");
        if legacy {
            assert_eq!(j["ips"][0]["version"], "4");
        }
    }
}

#[test]
fn seed_layout_through_the_plugin() {
    let dir = tempfile::tempdir().unwrap();
    let db = common::new_store(&dir);
    let store = SqliteStore::open(&db, Options::default()).unwrap();
    assert_eq!(
        Ipam::new(&store, seed_pool())
            .allocate_tunnel("sung-ubuntu04")
            .unwrap()
            .to_string(),
        "10.233.99.0"
    );
    let conf = config(
        "1.0.0",
        &db,
        json!({"pool": "10.233.64.0/18", "blockSize": 24, "nodename": "sung-ubuntu04",
               "nodeBlocks": {"sung-ubuntu04": ["10.233.99.0/24"], "sung-ubuntu05": ["10.233.78.0/24"]}}),
    );
    assert_eq!(
        cni("ADD", "ubuntu-test", &[], &conf).address(),
        "10.233.99.1/32"
    );
    assert_eq!(cni("ADD", "second", &[], &conf).address(), "10.233.99.2/32");
}

#[test]
fn del_is_idempotent_and_silent() {
    let dir = tempfile::tempdir().unwrap();
    let db = common::new_store(&dir);
    let conf = config("1.0.0", &db, json!({}));
    cni("ADD", "c1", &[], &conf).address();
    for _ in 0..2 {
        let r = cni("DEL", "c1", &[("CNI_NETNS", "")], &conf);
        assert_eq!((r.code, r.stdout.as_str()), (0, ""), "{}", r.stderr);
    }
    assert!(pod_handles(&db).is_empty());
    let r = cni("DEL", "never-added", &[], &conf);
    assert_eq!(r.code, 0);
    // The freed address is given again.
    assert_eq!(cni("ADD", "c2", &[], &conf).address(), "10.100.0.0/32");
}

#[test]
fn check_compares_the_store_with_prev_result() {
    let dir = tempfile::tempdir().unwrap();
    let db = common::new_store(&dir);
    let conf = config("1.0.0", &db, json!({}));
    let added = cni("ADD", "c1", &[], &conf).json();
    let with_prev = |prev: serde_json::Value| {
        let mut c: serde_json::Value = serde_json::from_str(&conf).unwrap();
        c["prevResult"] = prev;
        c.to_string()
    };
    let ok = cni("CHECK", "c1", &[], &with_prev(added.clone()));
    assert_eq!(ok.code, 0, "{}", ok.stdout);
    let wrong = cni(
        "CHECK",
        "c1",
        &[],
        &with_prev(json!({"cniVersion":"1.0.0","ips":[{"address":"10.100.9.9/32"}]})),
    );
    assert_eq!(wrong.error_code(), 102);
    assert!(
        wrong.json()["msg"].as_str().unwrap().contains("10.100.0.0"),
        "{}",
        wrong.stdout
    );
    assert_eq!(
        cni("CHECK", "unknown", &[], &with_prev(added.clone())).error_code(),
        102
    );
    let old = config("0.3.1", &db, json!({}));
    assert_eq!(
        cni("CHECK", "c1", &[], &old).error_code(),
        1,
        "CHECK needs 0.4.0"
    );
}

#[test]
fn gc_releases_attachments_the_runtime_no_longer_has() {
    let dir = tempfile::tempdir().unwrap();
    let db = common::new_store(&dir);
    let conf = config("1.1.0", &db, json!({}));
    for c in ["keep", "stale1", "stale2"] {
        cni("ADD", c, &[], &conf).address();
    }
    let mut gc: serde_json::Value = serde_json::from_str(&conf).unwrap();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "keep", "ifname": "eth0"}]);
    let r = cni(
        "GC",
        "",
        &[
            ("CNI_CONTAINERID", ""),
            ("CNI_IFNAME", ""),
            ("CNI_NETNS", ""),
        ],
        &gc.to_string(),
    );
    assert_eq!(r.code, 0, "{} {}", r.stdout, r.stderr);
    assert_eq!(pod_handles(&db), ["podnet.keep.eth0"]);
    let old = config("1.0.0", &db, json!({}));
    assert_eq!(cni("GC", "", &[], &old).error_code(), 1, "GC needs 1.1.0");
}

#[test]
fn status_reports_whether_add_could_work() {
    let dir = tempfile::tempdir().unwrap();
    let db = common::new_store(&dir);
    let conf = config(
        "1.1.0",
        &db,
        json!({"pool": "10.7.0.0/30", "blockSize": 30}),
    );
    assert_eq!(cni("STATUS", "", &[], &conf).code, 0);
    for i in 0..4 {
        cni("ADD", &format!("c{i}"), &[], &conf).address();
    }
    let full = cni("STATUS", "", &[], &conf);
    assert_eq!(full.error_code(), 50);
    assert!(full.json()["msg"].as_str().unwrap().contains("10.7.0.0/30"));
    let broken = config("1.1.0", dir.path(), json!({}));
    assert_eq!(
        cni("STATUS", "", &[], &broken).error_code(),
        50,
        "a datastore that is a folder"
    );
}

#[test]
fn version_works_with_a_dummy_netns() {
    let r = cni(
        "VERSION",
        "",
        &[("CNI_NETNS", "dummy"), ("CNI_CONTAINERID", "")],
        r#"{"cniVersion":"1.0.0"}"#,
    );
    assert_eq!(r.code, 0);
    assert_eq!(
        r.json(),
        json!({"cniVersion":"1.0.0","supportedVersions":["0.3.0","0.3.1","0.4.0","1.0.0","1.1.0"]})
    );
}

/// Only the agent makes the store: without it ADD and CHECK are "try again later" naming its
/// path, STATUS is code 50, DEL and GC succeed (nothing can be held there), and no call makes
/// the file or its folder.
#[test]
fn a_missing_datastore_is_never_created() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("typo/store.db");
    let conf = config("1.1.0", &db, json!({}));
    let add = cni("ADD", "c1", &[], &conf);
    assert_eq!(add.error_code(), 11, "{}", add.stdout);
    let msg = add.json()["msg"].as_str().unwrap().to_string();
    assert!(msg.contains(&db.display().to_string()), "{msg}");
    assert_eq!(cni("CHECK", "c1", &[], &conf).error_code(), 11);
    assert_eq!(cni("STATUS", "", &[], &conf).error_code(), 50);
    for verb in ["DEL", "GC"] {
        let r = cni(verb, "c1", &[], &conf);
        assert_eq!((r.code, r.stdout.as_str()), (0, ""), "{verb}: {}", r.stderr);
    }
    assert!(
        !dir.path().join("typo").exists(),
        "a plugin call made the datastore (or its folder)"
    );
    // The admin commands read an existing store only, too.
    for args in [&["show"][..], &["check"], &["pool", "list"], &["egress"]] {
        let out = std::process::Command::new(common::BIN)
            .arg("--datastore")
            .arg(&db)
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(err.contains("does not exist"), "{args:?}: {err}");
    }
    assert!(
        !dir.path().join("typo").exists(),
        "an admin command made it"
    );
}

#[test]
fn version_and_help_name_the_cni_versions_and_exit_0() {
    let versions = "CNI protocol versions supported: 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0";
    for flag in ["--version", "-V", "--help", "-h"] {
        let out = std::process::Command::new(common::BIN)
            .arg(flag)
            .env_clear()
            .output()
            .unwrap();
        let stdout = String::from_utf8(out.stdout).unwrap();
        assert_eq!(out.status.code(), Some(0), "{flag}: {stdout}");
        let mut lines = stdout.lines();
        assert_eq!(
            lines.next(),
            Some(concat!("podnet-ipam ", env!("CARGO_PKG_VERSION"))),
            "{flag}"
        );
        assert_eq!(lines.next(), Some(versions), "{flag}: {stdout}");
        assert_eq!(stdout.contains("Usage:"), flag.contains('h'), "{flag}");
    }
    // No flag and no CNI_COMMAND: the CNI error, code 4.
    let bare = std::process::Command::new(common::BIN)
        .env_clear()
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(bare.status.code(), Some(1));
    let reply: serde_json::Value = serde_json::from_slice(&bare.stdout).unwrap();
    assert_eq!(reply["code"], 4, "{reply}");
}

/// Every bad input gets its code, a message, and leaves no address allocated.
#[test]
fn bad_input_gets_the_right_code_and_allocates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = common::new_store(&dir);
    let good = config("1.0.0", &db, json!({}));
    let with = |ipam: serde_json::Value| config("1.0.0", &db, ipam);
    type Case<'a> = (&'a str, String, Vec<(&'a str, &'a str)>, u64);
    let cases: Vec<Case> = vec![
        ("malformed JSON", "{\"cniVersion\":".into(), vec![], 6),
        (
            "no ipam",
            r#"{"cniVersion":"1.0.0","name":"x","type":"podnet"}"#.into(),
            vec![],
            7,
        ),
        (
            "bad CIDR",
            with(json!({"pool": "10.100.0.0/40"})),
            vec![],
            7,
        ),
        (
            "host bits",
            with(json!({"pool": "10.100.0.1/16"})),
            vec![],
            7,
        ),
        ("block size", with(json!({"blockSize": 19})), vec![], 7),
        (
            "block size type",
            with(json!({"blockSize": "26"})),
            vec![],
            7,
        ),
        ("unknown field", with(json!({"blocksize": 24})), vec![], 7),
        (
            "bad pin",
            with(json!({"nodeBlocks": {"node1": ["10.200.0.0/26"]}})),
            vec![],
            7,
        ),
        (
            "unknown datastore",
            with(json!({"datastore": {"type": "zookeeper"}})),
            vec![],
            7,
        ),
        ("old version", good.replace("1.0.0", "0.2.0"), vec![], 1),
        (
            "no version",
            r#"{"ipam":{"type":"podnet-ipam","pool":"10.0.0.0/16"}}"#.into(),
            vec![],
            1,
        ),
        ("no CNI_COMMAND", good.clone(), vec![("CNI_COMMAND", "")], 4),
        (
            "unknown CNI_COMMAND",
            good.clone(),
            vec![("CNI_COMMAND", "ATTACH")],
            4,
        ),
        (
            "no CNI_CONTAINERID",
            good.clone(),
            vec![("CNI_CONTAINERID", "")],
            4,
        ),
        ("no CNI_NETNS", good.clone(), vec![("CNI_NETNS", "")], 4),
        ("no CNI_IFNAME", good.clone(), vec![("CNI_IFNAME", "")], 4),
        ("no CNI_PATH", good.clone(), vec![("CNI_PATH", "")], 4),
        (
            "bad container ID",
            good.clone(),
            vec![("CNI_CONTAINERID", "../etc")],
            4,
        ),
        (
            "bad ifname",
            good.clone(),
            vec![("CNI_IFNAME", "eth0:1")],
            4,
        ),
        (
            "long ifname",
            good.clone(),
            vec![("CNI_IFNAME", "a-very-long-name0")],
            4,
        ),
        (
            "bad CNI_ARGS",
            good.clone(),
            vec![("CNI_ARGS", "K8S_POD_NAME")],
            4,
        ),
    ];
    for (what, stdin, env, want) in cases {
        let r = cni("ADD", "c1", &env, &stdin);
        assert_eq!(r.error_code(), want, "{what}: {}", r.stdout);
        let j = r.json();
        assert!(
            !j["msg"].as_str().unwrap_or("").is_empty(),
            "{what}: no msg"
        );
        assert!(j["cniVersion"].is_string(), "{what}: no cniVersion");
        assert!(
            pod_handles(&db).is_empty(),
            "{what}: something was allocated"
        );
    }
}

#[test]
fn exhausted_pool_is_code_100_naming_the_pool() {
    let dir = tempfile::tempdir().unwrap();
    let db = common::new_store(&dir);
    let conf = config(
        "1.0.0",
        &db,
        json!({"pool": "10.7.0.0/30", "blockSize": 30}),
    );
    for i in 0..4 {
        cni("ADD", &format!("c{i}"), &[], &conf).address();
    }
    let r = cni("ADD", "c4", &[], &conf);
    assert_eq!(r.error_code(), 100);
    assert!(
        r.json()["msg"].as_str().unwrap().contains("10.7.0.0/30"),
        "{}",
        r.stdout
    );
    assert_eq!(pod_handles(&db).len(), 4);
}

#[test]
fn second_add_for_the_same_attachment_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = common::new_store(&dir);
    let conf = config("1.0.0", &db, json!({}));
    cni("ADD", "c1", &[], &conf).address();
    assert_eq!(cni("ADD", "c1", &[], &conf).error_code(), 101);
    assert_eq!(pod_handles(&db), ["podnet.c1.eth0"]);
    // Another interface of the same container is another attachment.
    cni("ADD", "c1", &[("CNI_IFNAME", "net1")], &conf).address();
}

#[test]
fn unusable_datastores_are_io_errors() {
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("real.db");
    std::fs::write(&real, b"").unwrap();
    let link = dir.path().join("link.db");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let garbage = dir.path().join("garbage.db");
    std::fs::write(&garbage, vec![0x42u8; 8192]).unwrap();
    for (what, path) in [
        ("a folder", dir.path().to_path_buf()),
        ("a symlink", link),
        ("not SQLite", garbage),
    ] {
        let r = cni("ADD", "c1", &[], &config("1.0.0", &path, json!({})));
        assert_eq!(r.error_code(), 5, "{what}: {}", r.stdout);
    }
}

#[test]
fn a_locked_datastore_is_try_again_later() {
    let dir = tempfile::tempdir().unwrap();
    let db = common::new_store(&dir);
    let quick = json!({"datastore": {"type": "sqlite", "path": db, "busyTimeoutMs": 200}});
    let conf = config("1.0.0", &db, quick);
    cni("ADD", "warm", &[], &conf).address();
    let holder = rusqlite::Connection::open(&db).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    let r = cni("ADD", "c1", &[], &conf);
    assert_eq!(r.error_code(), 11, "{}", r.stdout);
    holder.execute_batch("ROLLBACK").unwrap();
    assert_eq!(pod_handles(&db), ["podnet.warm.eth0"]);
}
