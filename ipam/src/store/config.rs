//! Where the datastore is, as written in every podnet config (`"datastore": {...}`).

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

    /// Opens the configured store.
    pub fn open(&self) -> Result<Box<dyn Datastore>, StoreError> {
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
                Ok(Box::new(SqliteStore::open(path, options)?))
            }
        }
    }
}
