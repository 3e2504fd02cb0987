//! Read-modify-write as one atomic step: the plan reads, returns the writes it wants, and the
//! store applies them only if nothing it read has changed since (compare-and-swap, retried).

use super::{
    Compare, Datastore, KeyValue, Listing, Reader, Revision, StoreError, Txn, TxnOutcome, Watcher,
};
use std::collections::BTreeMap;
use std::time::Duration;

/// How often a conflicting plan is tried again before giving up with `Contention`.
const MAX_ATTEMPTS: u32 = 200;

/// Runs `plan` and commits the transaction it returns, atomically with respect to its reads.
///
/// On a backend with a lock (SQLite) the plan runs under the write lock, so it cannot conflict.
/// Otherwise every key the plan read becomes a compare (`ModRevision` or `Absent`), and the
/// plan is run again from scratch after a conflict, with a short randomised backoff. The plan
/// must therefore be free of side effects other than its reads. An error from the plan aborts
/// with nothing written; on the optimistic path only once its reads are confirmed current, since
/// separate reads are not one snapshot and a refusal made on a torn view may be wrong. An empty transaction commits nothing and returns the store revision 0.
pub fn update<E, F>(store: &dyn Datastore, mut plan: F) -> Result<Revision, E>
where
    E: From<StoreError>,
    F: FnMut(&mut dyn Reader) -> Result<Txn, E>,
{
    for attempt in 0..MAX_ATTEMPTS {
        let outcome = match store.lock()? {
            Some(mut locked) => {
                let txn = plan(&mut *locked)?;
                locked.commit(&txn)?
            }
            None => {
                let mut recorder = Recorder {
                    store,
                    seen: BTreeMap::new(),
                    lists: Vec::new(),
                };
                let mut txn = match plan(&mut recorder) {
                    Ok(txn) => txn,
                    // A refusal decided on reads that have changed since may be wrong: the
                    // reads were not one snapshot. Run the plan again on fresh reads.
                    Err(_) if !recorder.still_current()? => {
                        backoff(attempt);
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                if txn.is_empty() {
                    return Ok(0);
                }
                txn.compares.extend(recorder.compares());
                store.txn(&txn)?
            }
        };
        match outcome {
            TxnOutcome::Committed(rev) => return Ok(rev),
            TxnOutcome::Conflict => backoff(attempt),
        }
    }
    Err(StoreError::Contention {
        path: store.describe(),
        attempts: MAX_ATTEMPTS,
    }
    .into())
}

/// Sleeps a random time that grows with `attempt` (at most ~20 ms), so that racing writers
/// spread out instead of colliding again in lockstep.
fn backoff(attempt: u32) {
    let cap_us = 200u64 << attempt.min(7);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0);
    let seed = nanos ^ (std::process::id() as u64).rotate_left(17);
    std::thread::sleep(Duration::from_micros(seed % cap_us.min(20_000)));
}

/// A reader that remembers the revision of every key it saw (0 for absent), and every listing.
struct Recorder<'a> {
    store: &'a dyn Datastore,
    seen: BTreeMap<String, Revision>,
    lists: Vec<(String, Vec<(String, Revision)>)>,
}

impl Recorder<'_> {
    /// True if every key read still has the revision seen and every prefix still lists the
    /// same keys at the same revisions (so no key appeared under it either).
    fn still_current(&self) -> Result<bool, StoreError> {
        for (key, rev) in &self.seen {
            if self.store.get(key)?.map_or(0, |kv| kv.mod_revision) != *rev {
                return Ok(false);
            }
        }
        for (prefix, listed) in &self.lists {
            if self
                .store
                .list(prefix)?
                .kvs
                .iter()
                .map(|kv| (kv.key.clone(), kv.mod_revision))
                .ne(listed.iter().cloned())
            {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn compares(self) -> impl Iterator<Item = Compare> {
        self.seen.into_iter().map(|(key, rev)| match rev {
            0 => Compare::Absent(key),
            rev => Compare::ModRevision(key, rev),
        })
    }
}

impl Reader for Recorder<'_> {
    fn get(&mut self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        let kv = self.store.get(key)?;
        self.seen
            .entry(key.to_string())
            .or_insert(kv.as_ref().map_or(0, |kv| kv.mod_revision));
        Ok(kv)
    }

    /// Listed keys are recorded too. A key created under the prefix after the listing is not
    /// detected; plans must guard creations with their own `Absent` reads.
    fn list(&mut self, prefix: &str) -> Result<Vec<KeyValue>, StoreError> {
        let listing = self.store.list(prefix)?;
        for kv in &listing.kvs {
            self.seen.entry(kv.key.clone()).or_insert(kv.mod_revision);
        }
        let listed = listing
            .kvs
            .iter()
            .map(|kv| (kv.key.clone(), kv.mod_revision))
            .collect();
        self.lists.push((prefix.to_string(), listed));
        Ok(listing.kvs)
    }
}

/// Hides a backend's lock so that [`update`] takes the compare-and-swap path, as it does on
/// etcd. Tests use it to exercise conflicts and retries on the embedded store.
pub struct Optimistic<S>(pub S);

impl<S: Datastore> Datastore for Optimistic<S> {
    fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        self.0.get(key)
    }
    fn list(&self, prefix: &str) -> Result<Listing, StoreError> {
        self.0.list(prefix)
    }
    fn txn(&self, txn: &Txn) -> Result<TxnOutcome, StoreError> {
        self.0.txn(txn)
    }
    fn watch(&self, prefix: &str, after: Revision) -> Result<Box<dyn Watcher>, StoreError> {
        self.0.watch(prefix, after)
    }
    fn revision(&self) -> Result<Revision, StoreError> {
        self.0.revision()
    }
    fn describe(&self) -> String {
        self.0.describe()
    }
}
