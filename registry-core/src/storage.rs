//! The node's single redb file, `<data_dir>/registry.redb`: the Raft log, Raft's durable
//! pointers (vote, committed, purged) and the state-machine snapshot.
//!
//! This module owns opening the file, checking its format version and running short
//! transactions; it knows nothing about Raft. Values are JSON so a file stays inspectable and
//! old records stay decodable when types gain optional fields. Only `consistency/` imports it.
//!
//! redb calls are synchronous and fsync on commit; callers keep transactions short and never
//! hold one across an `.await`.

pub(crate) mod tables;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use redb::{Database, Durability, ReadTransaction, ReadableDatabase, ReadableTable, WriteTransaction};
use serde::Serialize;
use serde::de::DeserializeOwned;

use tables::{META, RAFT_LOG, RAFT_STATE, SCHEMA_VERSION, SCHEMA_VERSION_KEY, SNAPSHOT};

/// Name of the database file inside the data directory.
pub(crate) const DB_FILE_NAME: &str = "registry.redb";

/// Why the store could not be opened, read or written.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The data directory could not be created.
    #[error("cannot create data directory {path}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// redb refused to open the file (already open by another process or handle, corrupt,
    /// unsupported file format).
    #[error("cannot open database {path}")]
    Open {
        /// The database file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: redb::DatabaseError,
    },
    /// The file was written by a newer version of this program.
    #[error(
        "database {path} has format version {found}, this binary supports up to {supported}; \
         refusing to open it (upgrade the binary or restore a backup)"
    )]
    NewerFormat {
        /// The database file.
        path: PathBuf,
        /// Version found in the file.
        found: u64,
        /// Highest version this binary understands.
        supported: u64,
    },
    /// A transaction, table or commit failed inside redb.
    #[error("database operation failed")]
    Redb(#[from] redb::Error),
    /// A value could not be encoded.
    #[error("cannot encode {what}")]
    Encode {
        /// What was being encoded.
        what: String,
        /// Cause.
        #[source]
        source: serde_json::Error,
    },
    /// A stored value could not be decoded (corrupt or incompatible data).
    #[error("cannot decode {what}")]
    Decode {
        /// What was being decoded (table and key).
        what: String,
        /// Cause.
        #[source]
        source: serde_json::Error,
    },
}

// redb has one error type per operation; all of them fold into `redb::Error`.
macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StorageError {
            fn from(e: $t) -> Self {
                Self::Redb(e.into())
            }
        }
    )*};
}
from_redb!(redb::TransactionError, redb::TableError, redb::CommitError, redb::StorageError, redb::SetDurabilityError);

/// The open database. Dropping it closes the file (and releases redb's lock on it).
#[derive(Debug)]
pub(crate) struct Db {
    db: Database,
    path: PathBuf,
    /// Dropped after `db` (fields drop in declaration order), so its receivers learn that the
    /// file is closed. The last `Arc<Db>` going away is not enough: redb still commits and
    /// unlocks the file inside its drop, on whichever thread let go last.
    closed: tokio::sync::watch::Sender<()>,
}

impl Db {
    /// Opens (or creates) `<data_dir>/registry.redb`, creating `data_dir` if missing, checks
    /// the format version and makes sure every table exists so readers never miss one.
    pub(crate) fn open(data_dir: &Path) -> Result<Self, StorageError> {
        std::fs::create_dir_all(data_dir)
            .map_err(|source| StorageError::CreateDir { path: data_dir.to_path_buf(), source })?;
        let path = data_dir.join(DB_FILE_NAME);
        let db = Database::create(&path).map_err(|source| StorageError::Open { path: path.clone(), source })?;
        let this = Self { db, path, closed: tokio::sync::watch::Sender::new(()) };
        this.write(|txn| {
            let mut meta = txn.open_table(META)?;
            let found = meta.get(SCHEMA_VERSION_KEY)?.map(|v| v.value());
            match found {
                Some(found) if found > SCHEMA_VERSION => {
                    return Err(StorageError::NewerFormat {
                        path: this.path.clone(),
                        found,
                        supported: SCHEMA_VERSION,
                    });
                }
                // Version 1 is the only format so far: nothing to migrate.
                Some(_) => {}
                None => {
                    meta.insert(SCHEMA_VERSION_KEY, SCHEMA_VERSION)?;
                }
            }
            txn.open_table(RAFT_LOG)?;
            txn.open_table(RAFT_STATE)?;
            txn.open_table(SNAPSHOT)?;
            Ok(())
        })?;
        Ok(this)
    }

    /// Path of the database file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// A receiver whose `changed()` fails once this database is dropped and its file closed.
    pub(crate) fn closed(&self) -> tokio::sync::watch::Receiver<()> {
        self.closed.subscribe()
    }

    /// Runs `f` in a read transaction (a consistent view of the last commit).
    pub(crate) fn read<R>(
        &self,
        f: impl FnOnce(&ReadTransaction) -> Result<R, StorageError>,
    ) -> Result<R, StorageError> {
        let txn = self.db.begin_read()?;
        f(&txn)
    }

    /// Runs `f` in a write transaction and commits it durably: when this returns `Ok`, the
    /// changes are on disk. If `f` fails, nothing is written.
    pub(crate) fn write<R>(
        &self,
        f: impl FnOnce(&WriteTransaction) -> Result<R, StorageError>,
    ) -> Result<R, StorageError> {
        let mut txn = self.db.begin_write()?;
        // Immediate is redb's default; set it anyway because Raft's correctness depends on it.
        txn.set_durability(Durability::Immediate)?;
        let out = f(&txn)?;
        txn.commit()?;
        Ok(out)
    }
}

impl Db {
    /// Runs `f` in a write transaction and commits it, durably (like [`Db::write`]) when `f`
    /// answers `true`; otherwise the changes become durable with the next durable commit. For
    /// the Raft log writer, which learns only inside the transaction (after draining its queue)
    /// whether the commit carries log entries (durable) or only hints that may be lost without
    /// harm (Raft's committed index: after a crash the leader re-establishes it).
    pub(crate) fn write_with<R>(
        &self,
        f: impl FnOnce(&WriteTransaction) -> Result<(R, bool), StorageError>,
    ) -> Result<R, StorageError> {
        let mut txn = self.db.begin_write()?;
        let (out, durable) = f(&txn)?;
        txn.set_durability(if durable { Durability::Immediate } else { Durability::None })?;
        txn.commit()?;
        Ok(out)
    }
}

/// Encodes `value` as JSON; `what` names it in the error.
pub(crate) fn encode<T: Serialize>(what: impl FnOnce() -> String, value: &T) -> Result<Vec<u8>, StorageError> {
    serde_json::to_vec(value).map_err(|source| StorageError::Encode { what: what(), source })
}

/// Decodes JSON `bytes`; `what` names the value in the error.
pub(crate) fn decode<T: DeserializeOwned>(what: impl FnOnce() -> String, bytes: &[u8]) -> Result<T, StorageError> {
    serde_json::from_slice(bytes).map_err(|source| StorageError::Decode { what: what(), source })
}

/// Reads and decodes the JSON value under `key` of a `&str → bytes` table.
pub(crate) fn get_json<T: DeserializeOwned>(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &str,
) -> Result<Option<T>, StorageError> {
    match table.get(key)? {
        Some(bytes) => decode(|| format!("key {key:?}"), bytes.value()).map(Some),
        None => Ok(None),
    }
}
