//! The SQLite backend against the datastore contract: revisions, compares, lists, watches,
//! file safety and schema versions.

use super::*;
use crate::store::{update, Direct, Optimistic};
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

fn open(dir: &tempfile::TempDir) -> SqliteStore {
    SqliteStore::open_or_create(dir.path().join("s/store.db"), Options::default()).unwrap()
}

fn put(k: &str, v: &str) -> Txn {
    let mut t = Txn::default();
    t.put(k, v);
    t
}

#[test]
fn revisions_and_compares_behave_like_etcd() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    assert_eq!(s.revision().unwrap(), 0);
    assert_eq!(s.txn(&put("/a", "1")).unwrap(), TxnOutcome::Committed(1));
    assert_eq!(s.txn(&put("/b", "2")).unwrap(), TxnOutcome::Committed(2));
    assert_eq!(s.txn(&put("/a", "3")).unwrap(), TxnOutcome::Committed(3));
    let a = s.get("/a").unwrap().unwrap();
    assert_eq!(
        (a.value.as_str(), a.create_revision, a.mod_revision),
        ("3", 1, 3)
    );

    // Create-if-absent fails on an existing key, update-if-revision on a stale one.
    let mut t = put("/a", "4");
    t.compares.push(Compare::Absent("/a".into()));
    assert_eq!(s.txn(&t).unwrap(), TxnOutcome::Conflict);
    let mut t = put("/a", "4");
    t.compares.push(Compare::ModRevision("/a".into(), 1));
    assert_eq!(s.txn(&t).unwrap(), TxnOutcome::Conflict);
    assert_eq!(
        s.get("/a").unwrap().unwrap().value,
        "3",
        "a failed txn writes nothing"
    );
    assert_eq!(s.revision().unwrap(), 3);
    let mut t = Txn::default();
    t.compares.push(Compare::ModRevision("/a".into(), 3));
    t.delete("/a");
    t.put("/c", "5");
    assert_eq!(s.txn(&t).unwrap(), TxnOutcome::Committed(4));
    assert!(s.get("/a").unwrap().is_none());
    let mut t = Txn::default();
    t.compares.push(Compare::ModRevision("/gone".into(), 4));
    assert_eq!(
        s.txn(&t).unwrap(),
        TxnOutcome::Conflict,
        "a missing key has no revision"
    );
}

#[test]
fn list_is_by_prefix_and_in_key_order() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    for k in ["/p/b", "/p/a", "/q/a", "/p0", "/p/a/deep"] {
        s.txn(&put(k, "x")).unwrap();
    }
    let l = s.list("/p/").unwrap();
    let keys: Vec<_> = l.kvs.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(keys, ["/p/a", "/p/a/deep", "/p/b"]);
    assert_eq!(l.revision, 5);
}

#[test]
fn watch_delivers_changes_after_a_revision() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    s.txn(&put("/w/a", "1")).unwrap();
    let mut w = s.watch("/w/", 1).unwrap();
    assert_eq!(
        w.next(Duration::from_millis(20)).unwrap(),
        WatchBatch::Events(vec![]),
        "nothing after revision 1 yet"
    );
    s.txn(&put("/other", "x")).unwrap();
    let mut t = put("/w/b", "2");
    t.delete("/w/a");
    s.txn(&t).unwrap();
    let got = w.next(Duration::from_secs(2)).unwrap();
    assert_eq!(
        got,
        WatchBatch::Events(vec![
            Event {
                revision: 3,
                key: "/w/a".into(),
                value: None
            },
            Event {
                revision: 3,
                key: "/w/b".into(),
                value: Some("2".into())
            },
        ])
    );
    // A watch from the start sees history too.
    let mut w0 = s.watch("/w/", 0).unwrap();
    match w0.next(Duration::from_secs(1)).unwrap() {
        WatchBatch::Events(e) => assert_eq!(e.len(), 3),
        other => panic!("{other:?}"),
    }
}

#[test]
fn watch_sees_writes_from_another_handle_and_thread() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s/store.db");
    let s = SqliteStore::open_or_create(&path, Options::default()).unwrap();
    let mut w = s.watch("/n/", 0).unwrap();
    let writer = std::thread::spawn(move || {
        let other = SqliteStore::open(&path, Options::default()).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        other.txn(&put("/n/x", "1")).unwrap();
    });
    let got = w.next(Duration::from_secs(5)).unwrap();
    writer.join().unwrap();
    assert!(matches!(got, WatchBatch::Events(e) if e.len() == 1 && e[0].key == "/n/x"));
}

#[test]
fn old_history_is_compacted_and_watchers_are_told() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    let mut w = s.watch("/c/", 0).unwrap();
    for i in 0..(EVENTS_KEPT + COMPACT_EVERY) {
        s.txn(&put("/c/k", &i.to_string())).unwrap();
    }
    assert_eq!(
        w.next(Duration::from_secs(1)).unwrap(),
        WatchBatch::Compacted
    );
    // After a relist the watch goes on from the listing's revision.
    let rev = s.list("/c/").unwrap().revision;
    let mut w = s.watch("/c/", rev).unwrap();
    s.txn(&put("/c/k", "new")).unwrap();
    assert!(
        matches!(w.next(Duration::from_secs(1)).unwrap(), WatchBatch::Events(e) if e.len() == 1)
    );
}

#[test]
fn file_and_folder_are_owner_only() {
    let dir = tempfile::tempdir().unwrap();
    let s =
        SqliteStore::open_or_create(dir.path().join("a/b/store.db"), Options::default()).unwrap();
    s.txn(&put("/x", "1")).unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir.path().join("a/b/store.db")), 0o600);
    assert_eq!(mode(&dir.path().join("a/b")), 0o700);
    assert_eq!(mode(&dir.path().join("a")), 0o700);
}

#[test]
fn a_missing_store_is_opened_only_by_the_creating_call() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("var/lib/podnet/store.db");
    let e = SqliteStore::open(&path, Options::default()).err().unwrap();
    assert!(
        matches!(&e, StoreError::Missing { path: p } if *p == path.display().to_string()),
        "{e:?}"
    );
    assert!(e.is_transient(), "the agent may not have made it yet");
    assert!(e.to_string().contains(&path.display().to_string()), "{e}");
    assert!(
        !dir.path().join("var").exists(),
        "opening made a folder for a store that is not there"
    );
    SqliteStore::open_or_create(&path, Options::default())
        .unwrap()
        .txn(&put("/x", "1"))
        .unwrap();
    let s = SqliteStore::open(&path, Options::default()).unwrap();
    assert_eq!(s.get("/x").unwrap().unwrap().value, "1");
}

#[test]
fn refuses_symlinks_and_non_files() {
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("real.db");
    SqliteStore::open_or_create(&real, Options::default()).unwrap();
    let link = dir.path().join("link.db");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let e = SqliteStore::open_or_create(&link, Options::default())
        .err()
        .unwrap();
    assert!(e.to_string().contains("symbolic link"), "{e}");
    let e = SqliteStore::open_or_create(dir.path(), Options::default())
        .err()
        .unwrap();
    assert!(e.to_string().contains("not a regular file"), "{e}");
    let dangling = dir.path().join("dangling.db");
    std::os::unix::fs::symlink(dir.path().join("nowhere"), &dangling).unwrap();
    assert!(SqliteStore::open_or_create(&dangling, Options::default()).is_err());
    assert!(
        !dir.path().join("nowhere").exists(),
        "a dangling link is not followed"
    );
}

#[test]
fn a_store_from_a_newer_podnet_is_refused_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    drop(SqliteStore::open_or_create(&path, Options::default()).unwrap());
    let conn = Connection::open(&path).unwrap();
    conn.execute(
        "UPDATE meta SET value = 99 WHERE name = 'schema_version'",
        [],
    )
    .unwrap();
    drop(conn);
    let e = SqliteStore::open(&path, Options::default()).err().unwrap();
    let msg = e.to_string();
    assert!(msg.contains("newer podnet") && msg.contains("99"), "{msg}");
}

#[test]
fn a_store_from_an_older_podnet_is_migrated_and_keeps_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    prepare_file(&path, true).unwrap();
    let conn = connect(&path, &Options::default()).unwrap();
    migrate_to(&conn, &path, 1).unwrap();
    conn.execute(
        "INSERT INTO kv (key, value, create_rev, mod_rev) VALUES ('/old', '\"v1\"', 1, 1)",
        [],
    )
    .unwrap();
    conn.execute("UPDATE meta SET value = 1 WHERE name = 'revision'", [])
        .unwrap();
    assert_eq!(schema_version(&conn).unwrap(), 1);
    drop(conn);
    let s = SqliteStore::open(&path, Options::default()).unwrap();
    assert_eq!(schema_version(&s.conn()).unwrap(), SCHEMA_VERSION);
    assert_eq!(s.get("/old").unwrap().unwrap().value, "\"v1\"");
    assert_eq!(s.txn(&put("/new", "1")).unwrap(), TxnOutcome::Committed(2));
    let mut w = s.watch("/", 1).unwrap();
    assert!(
        matches!(w.next(Duration::from_millis(100)).unwrap(), WatchBatch::Events(e) if e.len() == 1)
    );
}

#[test]
fn a_held_write_lock_makes_writers_busy_not_stuck() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let quick = Options {
        busy_timeout: Duration::from_millis(100),
        ..Options::default()
    };
    let s = SqliteStore::open_or_create(&path, quick.clone()).unwrap();
    let holder = Connection::open(&path).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    let e = s.txn(&put("/x", "1")).unwrap_err();
    assert!(matches!(e, StoreError::Busy { .. }), "{e:?}");
    assert!(e.is_transient());
    // Readers are not blocked by a writer in WAL mode.
    assert!(s.get("/x").unwrap().is_none());
    holder.execute_batch("ROLLBACK").unwrap();
    assert!(s.txn(&put("/x", "1")).is_ok());
}

/// Many threads increment one counter through `update`: with the lock, and with optimistic
/// compare-and-swap (the etcd path), no increment is lost.
#[test]
fn concurrent_updates_lose_nothing_locked_or_optimistic() {
    for optimistic in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let path = path.clone();
                std::thread::spawn(move || {
                    let s = SqliteStore::open_or_create(&path, Options::default()).unwrap();
                    let store: Box<dyn Datastore> = if optimistic {
                        Box::new(Optimistic(s))
                    } else {
                        Box::new(s)
                    };
                    for _ in 0..50 {
                        update::<StoreError, _>(&*store, |r| {
                            let n: u64 =
                                r.get("/counter")?.map_or(0, |kv| kv.value.parse().unwrap());
                            Ok(put("/counter", &(n + 1).to_string()))
                        })
                        .unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let s = SqliteStore::open(&path, Options::default()).unwrap();
        assert_eq!(
            s.get("/counter").unwrap().unwrap().value,
            "400",
            "optimistic={optimistic}"
        );
        assert_eq!(s.revision().unwrap(), 400);
    }
}

#[test]
fn a_failed_plan_writes_nothing_and_releases_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(open(&dir));
    let r: Result<i64, StoreError> = update(&*s, |r| {
        r.get("/x")?;
        Err(StoreError::Refused {
            path: "test".into(),
            reason: "plan failed".into(),
        })
    });
    assert!(r.is_err());
    assert_eq!(s.revision().unwrap(), 0);
    assert_eq!(s.txn(&put("/x", "1")).unwrap(), TxnOutcome::Committed(1));
    assert!(Direct(&*s).get("/x").unwrap().is_some());
}
