//! The embedded datastore: one SQLite file in WAL mode, shared safely by many processes.
//!
//! Every write is one `BEGIN IMMEDIATE` transaction, so writers queue on SQLite's lock (with a
//! busy timeout) and a process killed mid-transaction leaves no trace: WAL rolls it back. The
//! file holds `kv` (the keys), `events` (recent history, for watches) and `meta` (schema
//! version, store revision, compaction point). Watches poll the store revision, which costs one
//! indexed read per poll.
//!
//! rusqlite with the bundled SQLite was chosen so the store behaves the same on every machine
//! and can still be inspected with the `sqlite3` shell.

use super::busy::Conn;
use super::{
    prefix_end, Compare, Datastore, Event, KeyValue, Listing, LockedTxn, Op, Reader, Revision,
    StoreError, Txn, TxnOutcome, WatchBatch, Watcher,
};
use rusqlite::config::DbConfig;
use rusqlite::{params, Connection, ErrorCode, OpenFlags, OptionalExtension};
use std::fs::{DirBuilder, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Schema migrations; entry `n` takes a store from version `n` to `n + 1`. Never edit an entry
/// once released: add a new one.
const MIGRATIONS: &[&str] = &[
    // 1: keys, and the store revision.
    "CREATE TABLE meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
     INSERT INTO meta (name, value) VALUES ('revision', 0);
     CREATE TABLE kv (key TEXT PRIMARY KEY, value TEXT NOT NULL,
                      create_rev INTEGER NOT NULL, mod_rev INTEGER NOT NULL) WITHOUT ROWID;",
    // 2: change history for watches, compacted to the last EVENTS_KEPT revisions.
    "CREATE TABLE events (rev INTEGER NOT NULL, key TEXT NOT NULL, value TEXT,
                          PRIMARY KEY (rev, key)) WITHOUT ROWID;
     INSERT INTO meta (name, value) VALUES ('compacted', (SELECT value FROM meta WHERE name = 'revision'));",
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Revisions of history kept for watches; older watches get `Compacted` and relist.
const EVENTS_KEPT: Revision = 10_000;
/// How often (in revisions) old history is dropped.
const COMPACT_EVERY: Revision = 1_000;
/// How often a watch looks for a change. A look is a `stat` of the database and its WAL; the
/// store is only queried when either changed (or every [`WATCH_QUERY_AT_LEAST`]), so a hundred
/// idle watchers cost next to nothing.
const WATCH_POLL: Duration = Duration::from_millis(40);
const WATCH_QUERY_AT_LEAST: Duration = Duration::from_secs(1);

/// How hard a commit is made to stick.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Sync {
    /// fsync the WAL at every commit: survives power loss.
    Full,
    /// fsync at checkpoints only: survives any process crash, may lose the last commits on
    /// power loss (SQLite's recommended setting for WAL).
    #[default]
    Normal,
}

/// Options for [`SqliteStore::open`].
#[derive(Debug, Clone)]
pub struct Options {
    pub busy_timeout: Duration,
    pub sync: Sync,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            busy_timeout: Duration::from_secs(30),
            sync: Sync::Normal,
        }
    }
}

/// A datastore in one SQLite file.
pub struct SqliteStore {
    path: PathBuf,
    options: Options,
    conn: Mutex<Conn>,
}

impl SqliteStore {
    /// Opens the store at `path`, which must exist ([`StoreError::Missing`] if not: the CNI
    /// plugins and the read commands never make a store, so a wrong path in one node's config
    /// cannot become a second, empty IPAM). Migrates an older schema and refuses a newer one, a
    /// symlink, or anything that is not a regular file.
    pub fn open(path: impl AsRef<Path>, options: Options) -> Result<SqliteStore, StoreError> {
        Self::open_with(path.as_ref(), options, false)
    }

    /// [`SqliteStore::open`], creating a missing store (owner-only, in an owner-only folder):
    /// for the agent and the tools that set a node up.
    pub fn open_or_create(
        path: impl AsRef<Path>,
        options: Options,
    ) -> Result<SqliteStore, StoreError> {
        Self::open_with(path.as_ref(), options, true)
    }

    fn open_with(path: &Path, options: Options, create: bool) -> Result<SqliteStore, StoreError> {
        let path = path.to_path_buf();
        prepare_file(&path, create)?;
        // Switching a new file to WAL and first-opener WAL recovery can answer SQLITE_BUSY at
        // once, without SQLite's busy handler, while other processes open the same store.
        let deadline = Instant::now() + options.busy_timeout;
        let conn = loop {
            match connect(&path, &options).and_then(|c| migrate(&c, &path).map(|()| c)) {
                Err(StoreError::Busy { .. }) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(2));
                }
                other => break other?,
            }
        };
        Ok(SqliteStore {
            path,
            options,
            conn: Mutex::new(conn),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn conn(&self) -> MutexGuard<'_, Conn> {
        // A panic while holding the lock cannot leave SQLite half-written (transactions roll
        // back on drop), so a poisoned lock is still safe to use.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn err(&self, action: &'static str) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        move |e| sql_error(&self.path, &self.options, action, e)
    }

    fn begin(&self, conn: &Connection) -> Result<(), StoreError> {
        conn.execute_batch("BEGIN IMMEDIATE")
            .map_err(self.err("begin a write on"))
    }
}

/// Refuses symlinks and non-files; creates a missing file 0600 in a 0700 folder if `create`,
/// else answers [`StoreError::Missing`].
fn prepare_file(path: &Path, create: bool) -> Result<(), StoreError> {
    let refuse = |reason: &str| StoreError::Refused {
        path: path.display().to_string(),
        reason: reason.to_string(),
    };
    let io = |action: &'static str| {
        move |source| StoreError::Io {
            action,
            path: path.display().to_string(),
            source,
        }
    };
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => return Err(refuse("it is a symbolic link")),
        Ok(m) if !m.file_type().is_file() => return Err(refuse("it is not a regular file")),
        Ok(_) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !create => {
            return Err(StoreError::Missing {
                path: path.display().to_string(),
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io("inspect")(e)),
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io("create the folder of"))?;
    }
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
    {
        Ok(_) => Ok(()),
        // Another process created it first: check what it made.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => prepare_file(path, false),
        Err(e) => Err(io("create")(e)),
    }
}

fn connect(path: &Path, options: &Options) -> Result<Conn, StoreError> {
    let err = |action| move |e| sql_error(path, options, action, e);
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Conn::new(
        Connection::open_with_flags(path, flags).map_err(err("open"))?,
        options.busy_timeout,
    );
    // Each CNI call is a short-lived process and usually the store's last connection; a
    // checkpoint at every close would fsync the database and delete the WAL each time. Closing
    // truncates the WAL only once it has grown (see `Drop`).
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)
        .map_err(err("configure"))?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(err("switch to WAL"))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Refused {
            path: path.display().to_string(),
            reason: format!("it cannot use WAL journaling (journal mode stays {mode})"),
        });
    }
    let sync = match options.sync {
        Sync::Full => "PRAGMA synchronous = FULL",
        Sync::Normal => "PRAGMA synchronous = NORMAL",
    };
    conn.execute_batch(sync).map_err(err("configure"))?;
    Ok(conn)
}

fn schema_version(conn: &Connection) -> rusqlite::Result<i64> {
    let has_meta: bool = conn.query_row(
        "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'meta'",
        [],
        |r| r.get(0),
    )?;
    if !has_meta {
        return Ok(0);
    }
    Ok(conn
        .query_row(
            "SELECT value FROM meta WHERE name = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .optional()?
        .unwrap_or(1))
}

/// Brings the schema to [`SCHEMA_VERSION`], under the write lock so concurrent openers agree.
fn migrate(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    migrate_to(conn, path, SCHEMA_VERSION)
}

/// Migrates up to `target` (tests make older stores with a smaller target).
pub(crate) fn migrate_to(conn: &Connection, path: &Path, target: i64) -> Result<(), StoreError> {
    let err = |action| move |e| sql_error(path, &Options::default(), action, e);
    let newer = |v: i64| {
        StoreError::Refused {
        path: path.display().to_string(),
        reason: format!(
            "it was written by a newer podnet (schema version {v}; this podnet reads up to {SCHEMA_VERSION}); upgrade podnet"
        ),
    }
    };
    let current = schema_version(conn).map_err(err("read the schema version of"))?;
    if current > SCHEMA_VERSION {
        return Err(newer(current));
    }
    if current >= target {
        return Ok(());
    }
    conn.execute_batch("BEGIN IMMEDIATE")
        .map_err(err("lock for migration"))?;
    let result = (|| {
        let current = schema_version(conn).map_err(err("read the schema version of"))?;
        if current > SCHEMA_VERSION {
            return Err(newer(current));
        }
        for (v, sql) in MIGRATIONS
            .iter()
            .enumerate()
            .take(target as usize)
            .skip(current as usize)
        {
            conn.execute_batch(sql).map_err(err("migrate"))?;
            conn.execute(
                "INSERT INTO meta (name, value) VALUES ('schema_version', ?1)
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                [v as i64 + 1],
            )
            .map_err(err("migrate"))?;
        }
        Ok(())
    })();
    let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
    conn.execute_batch(end).map_err(err("finish migrating"))?;
    result
}

fn sql_error(
    path: &Path,
    options: &Options,
    action: &'static str,
    e: rusqlite::Error,
) -> StoreError {
    match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy) | Some(ErrorCode::DatabaseLocked) => StoreError::Busy {
            path: path.display().to_string(),
            waited: options.busy_timeout,
        },
        _ => StoreError::Sqlite {
            action,
            path: path.display().to_string(),
            source: e,
        },
    }
}

fn row_to_kv(r: &rusqlite::Row<'_>) -> rusqlite::Result<KeyValue> {
    Ok(KeyValue {
        key: r.get(0)?,
        value: r.get(1)?,
        create_revision: r.get(2)?,
        mod_revision: r.get(3)?,
    })
}

fn get_kv(conn: &Connection, key: &str) -> rusqlite::Result<Option<KeyValue>> {
    conn.prepare_cached("SELECT key, value, create_rev, mod_rev FROM kv WHERE key = ?1")?
        .query_row([key], row_to_kv)
        .optional()
}

fn list_kv(conn: &Connection, prefix: &str) -> rusqlite::Result<Vec<KeyValue>> {
    conn.prepare_cached(
        "SELECT key, value, create_rev, mod_rev FROM kv WHERE key >= ?1 AND key < ?2 ORDER BY key",
    )?
    .query_map(params![prefix, prefix_end(prefix)], row_to_kv)?
    .collect()
}

fn current_revision(conn: &Connection) -> rusqlite::Result<Revision> {
    conn.prepare_cached("SELECT value FROM meta WHERE name = 'revision'")?
        .query_row([], |r| r.get(0))
}

/// Checks the compares and applies the ops inside an open write transaction.
fn apply(conn: &Connection, txn: &Txn) -> rusqlite::Result<TxnOutcome> {
    for c in &txn.compares {
        let holds = match c {
            Compare::Absent(k) => get_kv(conn, k)?.is_none(),
            Compare::ModRevision(k, rev) => {
                get_kv(conn, k)?.is_some_and(|kv| kv.mod_revision == *rev)
            }
        };
        if !holds {
            return Ok(TxnOutcome::Conflict);
        }
    }
    let before = current_revision(conn)?;
    if txn.ops.is_empty() {
        return Ok(TxnOutcome::Committed(before));
    }
    let rev = before + 1;
    let mut put = conn.prepare_cached(
        "INSERT INTO kv (key, value, create_rev, mod_rev) VALUES (?1, ?2, ?3, ?3)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value, mod_rev = excluded.mod_rev",
    )?;
    let mut del = conn.prepare_cached("DELETE FROM kv WHERE key = ?1")?;
    let mut event =
        conn.prepare_cached("INSERT OR REPLACE INTO events (rev, key, value) VALUES (?1, ?2, ?3)")?;
    for op in &txn.ops {
        match op {
            Op::Put { key, value } => {
                put.execute(params![key, value, rev])?;
                event.execute(params![rev, key, value])?;
            }
            Op::Delete(key) => {
                if del.execute([key])? > 0 {
                    event.execute(params![rev, key, None::<String>])?;
                }
            }
        }
    }
    conn.prepare_cached("UPDATE meta SET value = ?1 WHERE name = 'revision'")?
        .execute([rev])?;
    if rev % COMPACT_EVERY == 0 && rev > EVENTS_KEPT {
        let upto = rev - EVENTS_KEPT;
        conn.execute("DELETE FROM events WHERE rev <= ?1", [upto])?;
        conn.execute(
            "UPDATE meta SET value = ?1 WHERE name = 'compacted'",
            [upto],
        )?;
    }
    Ok(TxnOutcome::Committed(rev))
}

impl Datastore for SqliteStore {
    fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        get_kv(&self.conn(), key).map_err(self.err("read"))
    }

    fn list(&self, prefix: &str) -> Result<Listing, StoreError> {
        let conn = self.conn();
        // One read transaction so the revision and the keys agree.
        conn.execute_batch("BEGIN").map_err(self.err("read"))?;
        let result = (|| {
            Ok(Listing {
                revision: current_revision(&conn)?,
                kvs: list_kv(&conn, prefix)?,
            })
        })();
        let _ = conn.execute_batch("COMMIT");
        result.map_err(self.err("list"))
    }

    fn txn(&self, txn: &Txn) -> Result<TxnOutcome, StoreError> {
        let conn = self.conn();
        self.begin(&conn)?;
        let outcome = apply(&conn, txn);
        let end = match outcome {
            Ok(TxnOutcome::Committed(_)) => "COMMIT",
            _ => "ROLLBACK",
        };
        let ended = conn.execute_batch(end);
        let outcome = outcome.map_err(self.err("write"))?;
        ended.map_err(self.err("commit to"))?;
        Ok(outcome)
    }

    fn watch(&self, prefix: &str, after: Revision) -> Result<Box<dyn Watcher>, StoreError> {
        Ok(Box::new(SqliteWatcher {
            conn: connect(&self.path, &self.options)?,
            path: self.path.clone(),
            options: self.options.clone(),
            prefix: prefix.to_string(),
            after,
            seen: None,
            queried: Instant::now(),
        }))
    }

    fn revision(&self) -> Result<Revision, StoreError> {
        current_revision(&self.conn()).map_err(self.err("read"))
    }

    fn lock(&self) -> Result<Option<Box<dyn LockedTxn + '_>>, StoreError> {
        let conn = self.conn();
        self.begin(&conn)?;
        Ok(Some(Box::new(Locked {
            store: self,
            conn: Some(conn),
        })))
    }

    fn describe(&self) -> String {
        self.path.display().to_string()
    }
}

/// Past this WAL size, closing the store checkpoints and truncates the WAL. The first
/// connection to open a store must read the whole WAL to rebuild its index, and SQLite forgets
/// what was checkpointed when the last connection closes, so without this a store used only by
/// short-lived processes (CNI calls) would grow its WAL, and every call's open cost, forever.
const WAL_TRUNCATE_AT: u64 = 256 * 1024;

impl Drop for SqliteStore {
    fn drop(&mut self) {
        let mut wal = self.path.clone().into_os_string();
        wal.push("-wal");
        let big = std::fs::metadata(&wal).is_ok_and(|m| m.len() > WAL_TRUNCATE_AT);
        if big {
            let conn = self.conn();
            // Never wait here: if others are busy, one of them truncates later.
            let _ = conn.busy_timeout(Duration::ZERO);
            let _ = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)");
        }
    }
}

/// A write transaction holding SQLite's lock (see [`Datastore::lock`]).
struct Locked<'a> {
    store: &'a SqliteStore,
    conn: Option<MutexGuard<'a, Conn>>,
}

impl Locked<'_> {
    fn conn(&self) -> &Connection {
        self.conn.as_ref().expect("connection held until commit")
    }
}

impl Reader for Locked<'_> {
    fn get(&mut self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        get_kv(self.conn(), key).map_err(self.store.err("read"))
    }
    fn list(&mut self, prefix: &str) -> Result<Vec<KeyValue>, StoreError> {
        list_kv(self.conn(), prefix).map_err(self.store.err("list"))
    }
}

impl LockedTxn for Locked<'_> {
    fn commit(mut self: Box<Self>, txn: &Txn) -> Result<TxnOutcome, StoreError> {
        let conn = self.conn.take().expect("commit once");
        let outcome = apply(&conn, txn);
        let end = match outcome {
            Ok(TxnOutcome::Committed(_)) => "COMMIT",
            _ => "ROLLBACK",
        };
        let ended = conn.execute_batch(end);
        let outcome = outcome.map_err(self.store.err("write"))?;
        ended.map_err(self.store.err("commit to"))?;
        Ok(outcome)
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            let _ = conn.execute_batch("ROLLBACK");
        }
    }
}

struct SqliteWatcher {
    conn: Conn,
    path: PathBuf,
    options: Options,
    prefix: String,
    after: Revision,
    /// Sizes and modification times of the database and WAL at the last query.
    seen: Option<[(u64, i64, i64); 2]>,
    queried: Instant,
}

impl SqliteWatcher {
    /// True if the files changed since the last query (or it is time to query anyway).
    fn maybe_changed(&mut self) -> bool {
        use std::os::unix::fs::MetadataExt;
        let stamp = |p: &Path| {
            std::fs::metadata(p).map_or((0, 0, 0), |m| (m.len(), m.mtime(), m.mtime_nsec()))
        };
        let mut wal = self.path.clone().into_os_string();
        wal.push("-wal");
        let now = Some([stamp(&self.path), stamp(Path::new(&wal))]);
        if now != self.seen || self.queried.elapsed() >= WATCH_QUERY_AT_LEAST {
            self.seen = now;
            self.queried = Instant::now();
            return true;
        }
        false
    }

    fn poll(&mut self) -> rusqlite::Result<Option<WatchBatch>> {
        let conn = &self.conn;
        conn.execute_batch("BEGIN")?;
        let result = (|| {
            let rev = current_revision(conn)?;
            if rev <= self.after {
                return Ok(None);
            }
            let compacted: Revision = conn
                .prepare_cached("SELECT value FROM meta WHERE name = 'compacted'")?
                .query_row([], |r| r.get(0))?;
            if self.after < compacted {
                self.after = rev;
                return Ok(Some(WatchBatch::Compacted));
            }
            let events: Vec<Event> = conn
                .prepare_cached(
                    "SELECT rev, key, value FROM events
                     WHERE rev > ?1 AND rev <= ?2 AND key >= ?3 AND key < ?4 ORDER BY rev, key",
                )?
                .query_map(
                    params![self.after, rev, self.prefix, prefix_end(&self.prefix)],
                    |r| {
                        Ok(Event {
                            revision: r.get(0)?,
                            key: r.get(1)?,
                            value: r.get(2)?,
                        })
                    },
                )?
                .collect::<rusqlite::Result<_>>()?;
            self.after = rev;
            Ok((!events.is_empty()).then_some(WatchBatch::Events(events)))
        })();
        let _ = conn.execute_batch("COMMIT");
        result
    }
}

impl Watcher for SqliteWatcher {
    fn next(&mut self, timeout: Duration) -> Result<WatchBatch, StoreError> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.maybe_changed() {
                match self.poll() {
                    Ok(Some(batch)) => return Ok(batch),
                    Ok(None) => {}
                    Err(e) => return Err(sql_error(&self.path, &self.options, "watch", e)),
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(WatchBatch::Events(Vec::new()));
            }
            std::thread::sleep(WATCH_POLL.min(deadline - now));
        }
    }
}

#[cfg(test)]
#[path = "sqlite_tests.rs"]
mod tests;
