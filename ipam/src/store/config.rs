//! Where the datastore is, as written in every podnet config (`"datastore": {...}`).

#[cfg(feature = "etcd")]
use super::etcd::{EtcdOptions, EtcdStore, Tls, DEFAULT_PREFIX, DEFAULT_TIMEOUT};
use super::sqlite::{Options, SqliteStore, Sync};
use super::{Datastore, StoreError};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// The default embedded store of a node.
pub const DEFAULT_SQLITE_PATH: &str = "/var/lib/podnet/store.db";

/// A datastore configuration, tagged by `type`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum DatastoreConfig {
    /// `{"type":"sqlite","path":"/var/lib/podnet/store.db","sync":"normal","busyTimeoutMs":30000}`
    Sqlite {
        #[serde(default = "default_path")]
        path: PathBuf,
        #[serde(default)]
        sync: Sync,
        #[serde(
            default,
            rename = "busyTimeoutMs",
            skip_serializing_if = "Option::is_none"
        )]
        busy_timeout_ms: Option<u64>,
    },
    /// `{"type":"etcd","endpoints":["https://10.0.0.1:2379"],"prefix":"/podnet",
    ///   "tls":{"ca":"...","cert":"...","key":"..."},"timeoutMs":10000}`
    Etcd {
        endpoints: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        prefix: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tls: Option<TlsConfig>,
        #[serde(default, rename = "timeoutMs", skip_serializing_if = "Option::is_none")]
        timeout_ms: Option<u64>,
    },
}

/// PEM files for etcd's TLS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
}

fn default_path() -> PathBuf {
    PathBuf::from(DEFAULT_SQLITE_PATH)
}

impl Default for DatastoreConfig {
    fn default() -> Self {
        DatastoreConfig::sqlite(DEFAULT_SQLITE_PATH)
    }
}

impl DatastoreConfig {
    /// The embedded store at `path` with default settings.
    pub fn sqlite(path: impl Into<PathBuf>) -> Self {
        DatastoreConfig::Sqlite {
            path: path.into(),
            sync: Sync::default(),
            busy_timeout_ms: None,
        }
    }

    /// Opens the configured store, which must exist: what the CNI plugins and the read commands
    /// use (a missing SQLite file is [`StoreError::Missing`], CNI code 11).
    pub fn open(&self) -> Result<Box<dyn Datastore>, StoreError> {
        self.open_with(false)
    }

    /// Opens the configured store, creating a missing SQLite file: for the agent and the tools
    /// that set a node or a lab up (an etcd prefix needs no creating).
    pub fn open_or_create(&self) -> Result<Box<dyn Datastore>, StoreError> {
        self.open_with(true)
    }

    fn open_with(&self, create: bool) -> Result<Box<dyn Datastore>, StoreError> {
        match self {
            DatastoreConfig::Sqlite {
                path,
                sync,
                busy_timeout_ms,
            } => {
                let mut options = Options {
                    sync: *sync,
                    ..Options::default()
                };
                if let Some(ms) = busy_timeout_ms {
                    options.busy_timeout = Duration::from_millis(*ms);
                }
                let store = if create {
                    SqliteStore::open_or_create(path, options)
                } else {
                    SqliteStore::open(path, options)
                };
                Ok(Box::new(store?))
            }
            #[cfg(not(feature = "etcd"))]
            DatastoreConfig::Etcd { endpoints, .. } => Err(StoreError::Refused {
                path: endpoints.join(","),
                reason: "this build of podnet has no etcd support (feature `etcd`)".into(),
            }),
            #[cfg(feature = "etcd")]
            DatastoreConfig::Etcd {
                endpoints,
                prefix,
                tls,
                timeout_ms,
            } => {
                if endpoints.is_empty() {
                    return Err(StoreError::Refused {
                        path: "etcd".into(),
                        reason: "no endpoints configured".into(),
                    });
                }
                let prefix = prefix.clone().unwrap_or_else(|| DEFAULT_PREFIX.into());
                if !prefix.starts_with('/') || prefix.ends_with('/') {
                    return Err(StoreError::Refused {
                        path: endpoints.join(","),
                        reason: format!(
                            "prefix {prefix:?} must start with '/' and not end with one"
                        ),
                    });
                }
                Ok(Box::new(EtcdStore::connect(EtcdOptions {
                    endpoints: endpoints.clone(),
                    prefix,
                    timeout: timeout_ms.map_or(DEFAULT_TIMEOUT, Duration::from_millis),
                    tls: tls.as_ref().map(|t| Tls {
                        ca: t.ca.clone(),
                        cert: t.cert.clone(),
                        key: t.key.clone(),
                    }),
                })?))
            }
        }
    }
}
