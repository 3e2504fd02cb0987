//! The cluster datastore: etcd v3 through the `etcd-client` crate, with the same semantics as
//! the embedded store. Compare-and-swap is an etcd transaction on mod/create revisions, lists
//! are prefix ranges, watches are etcd watches from a revision (a compacted start revision is
//! reported as [`WatchBatch::Compacted`], so callers relist instead of looping on an error).
//!
//! The trait is synchronous (the CNI plugin lives milliseconds and runs no async runtime), so
//! each store owns a small current-thread tokio runtime and blocks on it. Every call has a
//! deadline: an unreachable etcd fails with `Unavailable` (CNI code 11) instead of hanging.

use super::{
    Datastore, Event, KeyValue, Listing, Revision, StoreError, Txn, TxnOutcome, WatchBatch, Watcher,
};
use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, Identity,
    TlsOptions, TxnOp, WatchOptions,
};
use std::sync::Mutex;
use std::time::Duration;
use tokio::runtime::Runtime;

/// Where podnet's keys live when no prefix is configured.
pub const DEFAULT_PREFIX: &str = "/podnet";
/// How long any etcd call may take.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Client certificates and the CA that signed etcd's, as PEM files.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Tls {
    pub ca: Option<std::path::PathBuf>,
    pub cert: Option<std::path::PathBuf>,
    pub key: Option<std::path::PathBuf>,
}

/// Connection settings.
#[derive(Debug, Clone)]
pub struct EtcdOptions {
    pub endpoints: Vec<String>,
    /// Replaces the leading `/podnet` of podnet's keys (several clusters can share one etcd).
    pub prefix: String,
    pub timeout: Duration,
    pub tls: Option<Tls>,
}

pub struct EtcdStore {
    rt: Runtime,
    /// The endpoint in use (its index) and a client connected to it alone.
    client: Mutex<(usize, Client)>,
    options: EtcdOptions,
}

fn runtime(what: &str) -> Result<Runtime, StoreError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| StoreError::Io {
            action: "start a runtime for",
            path: what.to_string(),
            source,
        })
}

impl EtcdStore {
    /// Connects (within the timeout) to the first endpoint that answers.
    pub fn connect(options: EtcdOptions) -> Result<EtcdStore, StoreError> {
        let rt = runtime(&options.endpoints.join(","))?;
        let client = connect_on(&rt, &options, 0)?;
        Ok(EtcdStore {
            rt,
            client: Mutex::new(client),
            options,
        })
    }

    fn desc(&self) -> String {
        self.options.endpoints.join(",")
    }

    /// podnet key -> etcd key.
    fn outer(&self, key: &str) -> String {
        format!(
            "{}{}",
            self.options.prefix,
            key.strip_prefix(DEFAULT_PREFIX).unwrap_or(key)
        )
    }

    /// etcd key -> podnet key.
    fn inner(&self, key: &[u8]) -> String {
        let k = String::from_utf8_lossy(key);
        format!(
            "{DEFAULT_PREFIX}{}",
            k.strip_prefix(&self.options.prefix).unwrap_or(&k)
        )
    }

    /// Runs an etcd call within the deadline. If the endpoint in use fails, the next ones are
    /// tried (a cluster member may be down) until the deadline; then `Unavailable` (try again
    /// later). A write whose answer was lost may thus be sent twice: its compares then fail and
    /// the caller's plan runs again on what is stored.
    fn call<T, F>(&self, what: &str, f: impl Fn(Client) -> F) -> Result<T, StoreError>
    where
        F: std::future::Future<Output = Result<T, etcd_client::Error>>,
    {
        let deadline = tokio::time::Instant::now() + self.options.timeout;
        loop {
            let (idx, client) = self
                .client
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            let err = match self
                .rt
                .block_on(async { tokio::time::timeout_at(deadline, f(client)).await })
            {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(e)) => format!("{what}: {e}"),
                Err(_) => format!("{what}: no answer in {:?}", self.options.timeout),
            };
            if tokio::time::Instant::now() >= deadline || self.options.endpoints.len() < 2 {
                return Err(unavailable(&self.desc(), &err));
            }
            tracing::warn!(endpoint = %self.options.endpoints[idx], "{err}; trying another etcd endpoint");
            match connect_on(&self.rt, &self.options, idx + 1) {
                Ok(next) => *self.client.lock().unwrap_or_else(|p| p.into_inner()) = next,
                Err(e) => return Err(e),
            }
        }
    }

    fn kv(&self, kv: &etcd_client::KeyValue) -> KeyValue {
        KeyValue {
            key: self.inner(kv.key()),
            value: String::from_utf8_lossy(kv.value()).into_owned(),
            create_revision: kv.create_revision(),
            mod_revision: kv.mod_revision(),
        }
    }
}

/// A client whose connection runs on `rt`, to the first endpoint (from `start` on, in turn)
/// that answers a request.
fn connect_on(
    rt: &Runtime,
    options: &EtcdOptions,
    start: usize,
) -> Result<(usize, Client), StoreError> {
    let desc = options.endpoints.join(",");
    let n = options.endpoints.len();
    // Leave time for the other endpoints when one hangs.
    let each = options.timeout / n.max(1) as u32;
    let mut errors = Vec::new();
    for k in 0..n {
        let idx = (start + k) % n;
        let endpoint = &options.endpoints[idx];
        let mut connect = ConnectOptions::new()
            .with_connect_timeout(each)
            .with_timeout(each);
        if let Some(tls) = &options.tls {
            connect = connect.with_tls(tls_options(tls, &desc)?);
        }
        let attempt = rt.block_on(async {
            let mut client = Client::connect([endpoint.as_str()], Some(connect)).await?;
            // Connecting is lazy in gRPC: one round trip proves the endpoint answers.
            client
                .get("/", Some(GetOptions::new().with_count_only()))
                .await?;
            Ok::<Client, etcd_client::Error>(client)
        });
        match attempt {
            Ok(client) => return Ok((idx, client)),
            Err(e) => errors.push(format!("{endpoint}: {e}")),
        }
    }
    Err(unavailable(&desc, &errors.join("; ")))
}

fn unavailable(store: &str, why: &str) -> StoreError {
    StoreError::Unavailable {
        store: store.to_string(),
        why: why.to_string(),
    }
}

fn tls_options(tls: &Tls, desc: &str) -> Result<TlsOptions, StoreError> {
    let read = |p: &std::path::Path| {
        std::fs::read(p).map_err(|source| StoreError::Io {
            action: "read TLS file for",
            path: format!("{} ({desc})", p.display()),
            source,
        })
    };
    let mut t = TlsOptions::new();
    if let Some(ca) = &tls.ca {
        t = t.ca_certificate(Certificate::from_pem(read(ca)?));
    }
    match (&tls.cert, &tls.key) {
        (Some(c), Some(k)) => t = t.identity(Identity::from_pem(read(c)?, read(k)?)),
        (None, None) => {}
        _ => {
            return Err(StoreError::Refused {
                path: desc.into(),
                reason: "TLS needs both cert and key, or neither".into(),
            })
        }
    }
    Ok(t)
}

impl Datastore for EtcdStore {
    fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        let k = self.outer(key);
        let resp = self.call("get", |mut c| {
            let k = k.clone();
            async move { c.get(k, None).await }
        })?;
        Ok(resp.kvs().first().map(|kv| self.kv(kv)))
    }

    fn list(&self, prefix: &str) -> Result<Listing, StoreError> {
        let k = self.outer(prefix);
        let resp = self.call("list", |mut c| {
            let k = k.clone();
            async move { c.get(k, Some(GetOptions::new().with_prefix())).await }
        })?;
        let mut kvs: Vec<KeyValue> = resp.kvs().iter().map(|kv| self.kv(kv)).collect();
        kvs.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Listing {
            revision: resp.header().map_or(0, |h| h.revision()),
            kvs,
        })
    }

    fn txn(&self, txn: &Txn) -> Result<TxnOutcome, StoreError> {
        let compares: Vec<Compare> = txn
            .compares
            .iter()
            .map(|c| match c {
                super::Compare::Absent(k) => {
                    Compare::create_revision(self.outer(k), CompareOp::Equal, 0)
                }
                super::Compare::ModRevision(k, rev) => {
                    Compare::mod_revision(self.outer(k), CompareOp::Equal, *rev)
                }
            })
            .collect();
        let ops: Vec<TxnOp> = txn
            .ops
            .iter()
            .map(|op| match op {
                super::Op::Put { key, value } => TxnOp::put(self.outer(key), value.clone(), None),
                super::Op::Delete(key) => TxnOp::delete(self.outer(key), None),
            })
            .collect();
        let t = etcd_client::Txn::new().when(compares).and_then(ops);
        let resp = self.call("write", |mut c| {
            let t = t.clone();
            async move { c.txn(t).await }
        })?;
        let rev = resp.header().map_or(0, |h| h.revision());
        Ok(if resp.succeeded() {
            TxnOutcome::Committed(rev)
        } else {
            TxnOutcome::Conflict
        })
    }

    fn watch(&self, prefix: &str, after: Revision) -> Result<Box<dyn Watcher>, StoreError> {
        // A client's connection is driven by the runtime it was made on: the watcher gets its
        // own runtime and its own connection.
        let rt = runtime(&self.desc())?;
        let (_, client) = connect_on(&rt, &self.options, 0)?;
        let mut w = EtcdWatcher {
            rt,
            client,
            outer_prefix: self.outer(prefix),
            options: self.options.clone(),
            after,
            stream: None,
        };
        w.open()?;
        Ok(Box::new(w))
    }

    fn revision(&self) -> Result<Revision, StoreError> {
        let k = self.outer("/");
        let resp = self.call("read the revision", |mut c| {
            let k = k.clone();
            async move { c.get(k, Some(GetOptions::new().with_count_only())).await }
        })?;
        Ok(resp.header().map_or(0, |h| h.revision()))
    }

    fn describe(&self) -> String {
        format!("etcd {}", self.desc())
    }
}

struct EtcdWatcher {
    rt: Runtime,
    client: Client,
    outer_prefix: String,
    options: EtcdOptions,
    after: Revision,
    stream: Option<etcd_client::WatchStream>,
}

impl EtcdWatcher {
    fn open(&mut self) -> Result<(), StoreError> {
        let mut client = self.client.clone();
        let key = self.outer_prefix.clone();
        let opts = WatchOptions::new()
            .with_prefix()
            .with_start_revision(self.after + 1);
        let desc = self.options.endpoints.join(",");
        let stream = self
            .rt
            .block_on(async {
                tokio::time::timeout(self.options.timeout, client.watch(key, Some(opts))).await
            })
            .map_err(|_| unavailable(&desc, "watch: no answer in time"))?
            .map_err(|e| unavailable(&desc, &format!("watch: {e}")))?;
        self.stream = Some(stream);
        Ok(())
    }

    fn inner(&self, key: &[u8]) -> String {
        let k = String::from_utf8_lossy(key);
        format!(
            "{DEFAULT_PREFIX}{}",
            k.strip_prefix(&self.options.prefix).unwrap_or(&k)
        )
    }
}

impl Watcher for EtcdWatcher {
    fn next(&mut self, timeout: Duration) -> Result<WatchBatch, StoreError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.stream.is_none() {
                self.open()?;
            }
            let desc = self.options.endpoints.join(",");
            let stream = self.stream.as_mut().expect("opened above");
            let got = self
                .rt
                .block_on(async { tokio::time::timeout_at(deadline, stream.message()).await });
            let resp = match got {
                Err(_) => return Ok(WatchBatch::Events(Vec::new())),
                Ok(Err(e)) => {
                    self.stream = None;
                    return Err(unavailable(&desc, &format!("watch: {e}")));
                }
                Ok(Ok(None)) => {
                    self.stream = None;
                    return Err(unavailable(&desc, "watch: the stream ended"));
                }
                Ok(Ok(Some(r))) => r,
            };
            if resp.compact_revision() > 0 {
                // The history asked for is gone: the caller relists, then watches on.
                self.stream = None;
                self.after = resp.compact_revision() - 1;
                return Ok(WatchBatch::Compacted);
            }
            if resp.canceled() {
                self.stream = None;
                return Err(unavailable(
                    &desc,
                    &format!("watch cancelled: {}", resp.cancel_reason()),
                ));
            }
            let mut events = Vec::new();
            for e in resp.events() {
                let Some(kv) = e.kv() else { continue };
                self.after = self.after.max(kv.mod_revision());
                events.push(Event {
                    revision: kv.mod_revision(),
                    key: self.inner(kv.key()),
                    value: match e.event_type() {
                        EventType::Put => Some(String::from_utf8_lossy(kv.value()).into_owned()),
                        EventType::Delete => None,
                    },
                });
            }
            // A response without events (the watch being created, progress) is not news.
            if !events.is_empty() {
                return Ok(WatchBatch::Events(events));
            }
        }
    }
}
