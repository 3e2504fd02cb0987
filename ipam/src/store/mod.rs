//! The datastore: an etcd-shaped key-value interface that every podnet part talks to.
//!
//! Keys are strings, values JSON text. Every write bumps a store-wide revision; each key keeps
//! the revision it was created and last modified at. Writes are transactions guarded by
//! compares (key absent, key at a given revision), reads are point gets and prefix lists, and
//! changes can be watched from a revision on. This is exactly what etcd v3 offers, so an etcd
//! backend fits behind the same trait; the embedded backend is one SQLite file ([`sqlite`]).
//!
//! Callers rarely build transactions by hand: [`update`] runs a plan (a closure that reads and
//! returns the writes it wants) as a compare-and-swap with retry, recording every read as a
//! compare. Backends that can serialise cheaply (SQLite's write lock) run the plan under the
//! lock instead, so concurrent writers never conflict there.

mod busy;
pub mod config;
#[cfg(feature = "etcd")]
pub mod etcd;
pub mod etcd_member;
pub mod sqlite;
mod update;

pub use config::DatastoreConfig;
pub use update::{update, Optimistic};

use std::time::Duration;
use thiserror::Error;

/// A store-wide (or per-key) revision number; 0 means "nothing yet".
pub type Revision = i64;

/// One key with its value and revisions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
    pub create_revision: Revision,
    pub mod_revision: Revision,
}

/// A guard of a transaction. All must hold for its writes to apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compare {
    /// The key does not exist.
    Absent(String),
    /// The key exists and was last modified at this revision.
    ModRevision(String, Revision),
}

/// A write in a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Put { key: String, value: String },
    Delete(String),
}

/// Compares plus the writes to apply if they all hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Txn {
    pub compares: Vec<Compare>,
    pub ops: Vec<Op>,
}

impl Txn {
    pub fn put(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.ops.push(Op::Put {
            key: key.into(),
            value: value.into(),
        });
    }

    pub fn delete(&mut self, key: impl Into<String>) {
        self.ops.push(Op::Delete(key.into()));
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// What became of a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnOutcome {
    /// Applied; the store is now at this revision.
    Committed(Revision),
    /// A compare failed; nothing was written.
    Conflict,
}

/// A prefix listing and the store revision it was read at.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    pub revision: Revision,
    pub kvs: Vec<KeyValue>,
}

/// A change seen by a watch. `value` is `None` for a deletion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub revision: Revision,
    pub key: String,
    pub value: Option<String>,
}

/// What a watch delivers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchBatch {
    /// Changes in revision order; empty when the wait timed out.
    Events(Vec<Event>),
    /// The history asked for is gone: list again and watch from the listing's revision.
    Compacted,
}

/// Reads inside a plan (see [`update`]).
pub trait Reader {
    fn get(&mut self, key: &str) -> Result<Option<KeyValue>, StoreError>;
    fn list(&mut self, prefix: &str) -> Result<Vec<KeyValue>, StoreError>;
}

/// Plain reads straight from a store, for looking without writing.
pub struct Direct<'a>(pub &'a dyn Datastore);

impl Reader for Direct<'_> {
    fn get(&mut self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        self.0.get(key)
    }
    fn list(&mut self, prefix: &str) -> Result<Vec<KeyValue>, StoreError> {
        Ok(self.0.list(prefix)?.kvs)
    }
}

/// A transaction that holds the backend's write lock: reads see the latest state and nothing
/// can change before `commit`. Dropping it without committing rolls back.
pub trait LockedTxn: Reader {
    fn commit(self: Box<Self>, txn: &Txn) -> Result<TxnOutcome, StoreError>;
}

/// A stream of changes under a prefix.
pub trait Watcher: Send {
    /// Waits up to `timeout` for changes after the last delivered revision.
    fn next(&mut self, timeout: Duration) -> Result<WatchBatch, StoreError>;
}

/// The datastore interface. Implementations are safe to share between threads and, for the
/// backends podnet ships, between processes.
pub trait Datastore: Send + Sync {
    fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError>;
    fn list(&self, prefix: &str) -> Result<Listing, StoreError>;
    fn txn(&self, txn: &Txn) -> Result<TxnOutcome, StoreError>;
    /// Changes under `prefix` with a revision greater than `after`.
    fn watch(&self, prefix: &str, after: Revision) -> Result<Box<dyn Watcher>, StoreError>;
    /// The current store revision.
    fn revision(&self) -> Result<Revision, StoreError>;
    /// A locked transaction, if this backend serialises writers cheaply; `None` means callers
    /// use optimistic compare-and-swap.
    fn lock(&self) -> Result<Option<Box<dyn LockedTxn + '_>>, StoreError> {
        Ok(None)
    }
    /// Where the store lives, for messages.
    fn describe(&self) -> String;
}

/// Datastore failures. `Busy`, `Contention`, `Unavailable` and `Missing` are worth retrying
/// later; the rest are not.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("refuse to open datastore {path}: {reason}")]
    Refused { path: String, reason: String },
    /// Only the agent (and the tools that set a node up) create a store; a plugin finding
    /// none is early (its agent has not started) or misconfigured.
    #[error(
        "datastore {path} does not exist; podnet-agent creates it: has it started on this \
         node, with this datastore?"
    )]
    Missing { path: String },
    #[error("{action} datastore {path}")]
    Io {
        action: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{action} datastore {path}")]
    Sqlite {
        action: &'static str,
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("datastore {store} is unavailable: {why}")]
    Unavailable { store: String, why: String },
    #[error("datastore {path} stayed locked by other writers for {waited:?}")]
    Busy { path: String, waited: Duration },
    #[error("gave up after {attempts} conflicting attempts to write datastore {path}")]
    Contention { path: String, attempts: u32 },
    #[error("datastore {path} holds a bad record at {key}")]
    Corrupt {
        path: String,
        key: String,
        #[source]
        source: serde_json::Error,
    },
}

impl StoreError {
    /// True when trying again later may succeed (CNI code 11): a missing store may be one
    /// the agent has not made yet.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            StoreError::Busy { .. }
                | StoreError::Contention { .. }
                | StoreError::Unavailable { .. }
                | StoreError::Missing { .. }
        )
    }
}

/// The smallest key greater than every key starting with `prefix` (etcd's range end). UTF-8
/// orders like code points, so bumping the last character is enough.
pub fn prefix_end(prefix: &str) -> String {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        if let Some(next) = char::from_u32(last as u32 + 1) {
            chars.push(next);
            return chars.into_iter().collect();
        }
    }
    char::MAX.to_string()
}

#[cfg(test)]
mod tests {
    use super::prefix_end;

    #[test]
    fn prefix_end_bounds_the_prefix() {
        assert_eq!(prefix_end("/a/"), "/a0");
        assert!("/a/zzz" < prefix_end("/a/").as_str());
        assert!("/a0" >= prefix_end("/a/").as_str());
    }
}
