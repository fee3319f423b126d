//! Key-value stores behind `fermyon:spin/key-value@2.0.0` and
//! `wasi:keyvalue/{store,atomics,batch}@0.2.0-draft2`.
//!
//! * `type = "spin"`: SQLite, same schema as Spin's `key-value-spin`
//!   (`spin_key_value(store, key, value)`, primary key `(store, key)`);
//!   increments are little-endian `i64` values, as in Spin.
//! * `type = "redis"`: Spin's `key-value-redis` semantics (the label is not a
//!   namespace; `get-keys` is `KEYS *`; increment is `INCRBY`; CAS uses
//!   `WATCH`/`MULTI`/`EXEC` on a dedicated connection).
//!
//! Increments are atomic across concurrent instances (SQLite: `BEGIN IMMEDIATE`
//! transactions on one shared connection per database file; Redis: `INCRBY`).
//! Compare-and-swap behaves exactly as Spin's, weaknesses included, so that
//! components are tested against what they will meet:
//! * Redis: every swap reports `cas-failed`, whether it wrote or not (Spin ends it
//!   with `UNWATCH <key>`, which Redis refuses, and maps that error to a CAS
//!   failure); a swap whose `EXEC` the `WATCH` aborted writes nothing;
//! * SQLite: a swap of a key that was present fails if the value changed; a
//!   swap of a key that was absent is an upsert and always succeeds.
//!
//! A component that needs a real compare-and-swap reads the key back after a
//! swap, whatever the swap reported (see docs/architecture.md, "Compare-and-swap
//! on Spin").
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use redis::AsyncCommands;
use rusqlite::OptionalExtension;

use crate::manifest::KvStoreConfig;

/// Errors shared by both KV interfaces (mapped to each WIT variant).
#[derive(Debug, Clone)]
pub enum KvError {
    NoSuchStore,
    AccessDenied,
    Other(String),
    /// Where Spin's host panics (the guest's request ends in a 500): the host traps.
    Trap(String),
}

/// How long a Redis command may take before the store reports an error: redis-rs defaults
/// to 500 ms, which a loaded test machine exceeds, turning slow answers into errors.
const REDIS_RESPONSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

fn redis_connection_config() -> redis::AsyncConnectionConfig {
    redis::AsyncConnectionConfig::new()
        .set_response_timeout(Some(REDIS_RESPONSE_TIMEOUT))
        .set_connection_timeout(Some(REDIS_RESPONSE_TIMEOUT))
}

fn other<E: std::fmt::Display>(e: E) -> KvError {
    KvError::Other(e.to_string())
}

/// A Redis error as Spin's key-value-redis words it: its redis crate (0.32) prints an error
/// reply of the server as `An error was signalled by the server - <Kind>: <detail>`, where
/// this host's (1.x) prints `<Kind>: <detail>`.
fn redis_other(e: redis::RedisError) -> KvError {
    use std::error::Error as _;
    let server_reply = e
        .source()
        .and_then(|s| s.downcast_ref::<redis::ServerError>())
        .is_some_and(|s| s.kind().is_some());
    if server_reply {
        KvError::Other(format!("An error was signalled by the server - {e}"))
    } else {
        other(e)
    }
}

/// A configured store (one per runtime-config label).
#[derive(Clone)]
pub enum StoreManager {
    Sqlite(Arc<Mutex<rusqlite::Connection>>),
    Redis(redis::Client, RedisSlot),
}

/// The shared connection of one Redis label. A connection error empties it, so the next open
/// connects again: a Redis server that restarts is used again once it is back (as Spin's
/// Redis store does), instead of every later call failing on the dead connection.
pub type RedisSlot = Arc<Mutex<Option<redis::aio::MultiplexedConnection>>>;

/// All configured labels.
#[derive(Clone, Default)]
pub struct KvManagers {
    managers: HashMap<String, StoreManager>,
    summaries: HashMap<String, String>,
}

impl KvManagers {
    /// Builds the stores from runtime config (`default` defaults to
    /// `<manifest dir>/.spin/sqlite_key_value.db`).
    pub fn new(config: &HashMap<String, KvStoreConfig>, manifest_dir: &Path) -> Result<Self> {
        let mut configs = config.clone();
        configs.entry("default".to_string()).or_insert_with(|| {
            KvStoreConfig::Sqlite(Some(manifest_dir.join(".spin").join("sqlite_key_value.db")))
        });
        let mut sqlite_conns: HashMap<Option<PathBuf>, Arc<Mutex<rusqlite::Connection>>> =
            HashMap::new();
        let mut managers = HashMap::new();
        let mut summaries = HashMap::new();
        for (label, cfg) in configs {
            let mgr = match cfg {
                KvStoreConfig::Sqlite(path) => {
                    let conn = match path
                        .clone()
                        .and_then(|p| sqlite_conns.get(&Some(p)).cloned())
                    {
                        Some(c) => c,
                        None => {
                            let c = Arc::new(Mutex::new(
                                open_sqlite(path.as_deref()).with_context(|| {
                                    format!(
                                        "could not configure key-value store with label '{label}'"
                                    )
                                })?,
                            ));
                            if path.is_some() {
                                sqlite_conns.insert(path.clone(), c.clone());
                            }
                            c
                        }
                    };
                    summaries.insert(
                        label.clone(),
                        match &path {
                            Some(p) => format!("{:?}", p.display().to_string()),
                            None => "a temporary in-memory store".into(),
                        },
                    );
                    StoreManager::Sqlite(conn)
                }
                KvStoreConfig::Redis(url) => {
                    let client = redis::Client::open(url.as_str()).with_context(|| {
                        format!("could not configure key-value store with label '{label}': Invalid Redis URL")
                    })?;
                    summaries.insert(label.clone(), format!("Redis at {url}"));
                    StoreManager::Redis(client, Arc::new(Mutex::new(None)))
                }
            };
            managers.insert(label, mgr);
        }
        Ok(Self {
            managers,
            summaries,
        })
    }

    /// Whether `label` is configured.
    pub fn is_defined(&self, label: &str) -> bool {
        self.managers.contains_key(label)
    }

    /// `(label, description)` of every configured store, sorted by label.
    pub fn summaries(&self) -> Vec<(String, String)> {
        let mut v: Vec<_> = self
            .summaries
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        v.sort();
        v
    }

    /// Opens the store for `label`.
    pub async fn open(&self, label: &str) -> Result<Store, KvError> {
        let mgr = self.managers.get(label).ok_or(KvError::NoSuchStore)?;
        Ok(match mgr {
            StoreManager::Sqlite(conn) => Store::Sqlite {
                name: label.to_string(),
                conn: conn.clone(),
            },
            StoreManager::Redis(client, slot) => {
                let cached = slot.lock().unwrap_or_else(|p| p.into_inner()).clone();
                let conn = match cached {
                    Some(conn) => conn,
                    None => {
                        let conn =
                            client
                                .get_multiplexed_async_connection_with_config(
                                    &redis_connection_config(),
                                )
                                .await
                                .map_err(other)?;
                        *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(conn.clone());
                        conn
                    }
                };
                Store::Redis {
                    client: client.clone(),
                    conn,
                    slot: slot.clone(),
                }
            }
        })
    }
}

fn open_sqlite(path: Option<&Path>) -> Result<rusqlite::Connection> {
    let conn = match path {
        Some(p) => {
            if let Some(dir) = p.parent() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
            }
            rusqlite::Connection::open(p)?
        }
        None => rusqlite::Connection::open_in_memory()?,
    };
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.execute(
        "CREATE TABLE IF NOT EXISTS spin_key_value (
                   store TEXT NOT NULL,
                   key   TEXT NOT NULL,
                   value BLOB NOT NULL,

                   PRIMARY KEY (store, key)
                )",
        [],
    )?;
    Ok(conn)
}

/// An open store (the host value behind both `store` and `bucket`).
#[derive(Clone)]
pub enum Store {
    Sqlite {
        name: String,
        conn: Arc<Mutex<rusqlite::Connection>>,
    },
    Redis {
        client: redis::Client,
        conn: redis::aio::MultiplexedConnection,
        slot: RedisSlot,
    },
}

/// Resource type of `fermyon:spin/key-value.store`.
pub struct SpinStore(pub Store);
/// Resource type of `wasi:keyvalue/store.bucket`.
pub struct Bucket(pub Store);

/// Resource type of `wasi:keyvalue/atomics.cas`.
pub struct CasHandle {
    pub(crate) store: Store,
    pub(crate) key: String,
    /// SQLite: value seen by `current` (`None` = key absent).
    seen: Option<Vec<u8>>,
    /// Redis: dedicated connection carrying the `WATCH`.
    redis: Option<redis::aio::MultiplexedConnection>,
}

async fn sqlite<T, F>(conn: &Arc<Mutex<rusqlite::Connection>>, f: F) -> Result<T, KvError>
where
    T: Send + 'static,
    F: FnOnce(&mut rusqlite::Connection) -> Result<T, KvError> + Send + 'static,
{
    let conn = conn.clone();
    tokio::task::spawn_blocking(move || {
        let mut guard = conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    })
    .await
    .map_err(other)?
}

const UPSERT: &str = "INSERT INTO spin_key_value (store, key, value) VALUES ($1, $2, $3)
                     ON CONFLICT(store, key) DO UPDATE SET value=$3";

impl Store {
    /// A Redis error; a broken connection is dropped from its label's slot (reconnect next open).
    fn redis_error(&self, e: redis::RedisError) -> KvError {
        if let Store::Redis { slot, .. } = self
            && (e.is_io_error() || e.is_connection_dropped() || e.is_unrecoverable_error())
        {
            *slot.lock().unwrap_or_else(|p| p.into_inner()) = None;
        }
        redis_other(e)
    }

    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        match self {
            Store::Sqlite { name, conn } => {
                let (name, key) = (name.clone(), key.to_string());
                sqlite(conn, move |c| {
                    c.prepare_cached("SELECT value FROM spin_key_value WHERE store=$1 AND key=$2")
                        .map_err(other)?
                        .query_row([&name, &key], |r| r.get::<_, Vec<u8>>(0))
                        .optional()
                        .map_err(other)
                })
                .await
            }
            Store::Redis { conn, .. } => {
                conn.clone().get(key).await.map_err(|e| self.redis_error(e))
            }
        }
    }

    pub async fn set(&self, key: &str, value: &[u8]) -> Result<(), KvError> {
        match self {
            Store::Sqlite { name, conn } => {
                let (name, key, value) = (name.clone(), key.to_string(), value.to_vec());
                sqlite(conn, move |c| {
                    c.prepare_cached(UPSERT)
                        .map_err(other)?
                        .execute(rusqlite::params![name, key, value])
                        .map_err(other)
                        .map(drop)
                })
                .await
            }
            Store::Redis { conn, .. } => conn
                .clone()
                .set(key, value)
                .await
                .map_err(|e| self.redis_error(e)),
        }
    }

    pub async fn delete(&self, key: &str) -> Result<(), KvError> {
        match self {
            Store::Sqlite { name, conn } => {
                let (name, key) = (name.clone(), key.to_string());
                sqlite(conn, move |c| {
                    c.prepare_cached("DELETE FROM spin_key_value WHERE store=$1 AND key=$2")
                        .map_err(other)?
                        .execute([&name, &key])
                        .map_err(other)
                        .map(drop)
                })
                .await
            }
            Store::Redis { conn, .. } => {
                conn.clone().del(key).await.map_err(|e| self.redis_error(e))
            }
        }
    }

    pub async fn exists(&self, key: &str) -> Result<bool, KvError> {
        match self {
            Store::Sqlite { name, conn } => {
                let (name, key) = (name.clone(), key.to_string());
                sqlite(conn, move |c| {
                    c.prepare_cached(
                        "SELECT 1 FROM spin_key_value WHERE store=$1 AND key=$2 LIMIT 1",
                    )
                    .map_err(other)?
                    .exists([&name, &key])
                    .map_err(other)
                })
                .await
            }
            Store::Redis { conn, .. } => conn
                .clone()
                .exists(key)
                .await
                .map_err(|e| self.redis_error(e)),
        }
    }

    pub async fn get_keys(&self) -> Result<Vec<String>, KvError> {
        match self {
            Store::Sqlite { name, conn } => {
                let name = name.clone();
                sqlite(conn, move |c| {
                    let mut stmt = c
                        .prepare_cached("SELECT key FROM spin_key_value WHERE store=$1")
                        .map_err(other)?;
                    let rows = stmt
                        .query_map([&name], |r| r.get::<_, String>(0))
                        .map_err(other)?;
                    rows.collect::<Result<Vec<_>, _>>().map_err(other)
                })
                .await
            }
            Store::Redis { conn, .. } => conn
                .clone()
                .keys("*")
                .await
                .map_err(|e| self.redis_error(e)),
        }
    }

    pub async fn get_many(
        &self,
        keys: Vec<String>,
    ) -> Result<Vec<(String, Option<Vec<u8>>)>, KvError> {
        if keys.is_empty() {
            return Ok(vec![]);
        }
        match self {
            Store::Sqlite { name, conn } => {
                let name = name.clone();
                sqlite(conn, move |c| {
                    // Like Spin: only keys that exist are returned.
                    let mut out = Vec::new();
                    let mut stmt = c
                        .prepare_cached(
                            "SELECT value FROM spin_key_value WHERE store=$1 AND key=$2",
                        )
                        .map_err(other)?;
                    for k in keys {
                        if let Some(v) = stmt
                            .query_row([&name, &k], |r| r.get::<_, Vec<u8>>(0))
                            .optional()
                            .map_err(other)?
                        {
                            out.push((k, Some(v)));
                        }
                    }
                    Ok(out)
                })
                .await
            }
            // As Spin's key-value-redis, which sends `KEYS <key> <key> …` here (not `MGET`):
            // Redis refuses it, so `get-many` on a Redis label is an error, and components
            // that must run on Spin read keys one by one. With one key, `KEYS <key>` is a
            // pattern match whose reply (the matching names) Spin reads as key/value pairs:
            // no match is an empty result, one match panics Spin's redis crate (0.32,
            // `unreachable` in its tuple parser) and the request ends in a 500.
            Store::Redis { conn, .. } => {
                let reply = redis::cmd("KEYS")
                    .arg(&keys)
                    .query_async::<redis::Value>(&mut conn.clone())
                    .await
                    .map_err(|e| self.redis_error(e))?;
                if let redis::Value::Array(items) = &reply
                    && items.len() % 2 == 1
                {
                    return Err(KvError::Trap(format!(
                        "get-many: Spin's Redis store panics reading a {}-name KEYS reply as \
                         key/value pairs",
                        items.len()
                    )));
                }
                redis::from_redis_value::<Vec<(String, Option<Vec<u8>>)>>(reply)
                    .map_err(|e| self.redis_error(e.into()))
            }
        }
    }

    pub async fn set_many(&self, kvs: Vec<(String, Vec<u8>)>) -> Result<(), KvError> {
        if kvs.is_empty() {
            return Ok(());
        }
        match self {
            Store::Sqlite { name, conn } => {
                let name = name.clone();
                sqlite(conn, move |c| {
                    let tx = c.transaction().map_err(other)?;
                    for (k, v) in kvs {
                        tx.prepare_cached(UPSERT)
                            .map_err(other)?
                            .execute(rusqlite::params![name, k, v])
                            .map_err(other)?;
                    }
                    tx.commit().map_err(other)
                })
                .await
            }
            Store::Redis { conn, .. } => conn
                .clone()
                .mset(&kvs)
                .await
                .map_err(|e| self.redis_error(e)),
        }
    }

    pub async fn delete_many(&self, keys: Vec<String>) -> Result<(), KvError> {
        if keys.is_empty() {
            return Ok(());
        }
        match self {
            Store::Sqlite { name, conn } => {
                let name = name.clone();
                sqlite(conn, move |c| {
                    let tx = c.transaction().map_err(other)?;
                    for k in keys {
                        tx.prepare_cached("DELETE FROM spin_key_value WHERE store=$1 AND key=$2")
                            .map_err(other)?
                            .execute([&name, &k])
                            .map_err(other)?;
                    }
                    tx.commit().map_err(other)
                })
                .await
            }
            Store::Redis { conn, .. } => conn
                .clone()
                .del(keys)
                .await
                .map_err(|e| self.redis_error(e)),
        }
    }

    /// Atomic increment (a missing key counts as 0).
    pub async fn increment(&self, key: String, delta: i64) -> Result<i64, KvError> {
        match self {
            Store::Sqlite { name, conn } => {
                let name = name.clone();
                sqlite(conn, move |c| {
                    let tx = c
                        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                        .map_err(other)?;
                    let value: Option<Vec<u8>> = tx
                        .prepare_cached(
                            "SELECT value FROM spin_key_value WHERE store=$1 AND key=$2",
                        )
                        .map_err(other)?
                        .query_row([&name, &key], |r| r.get(0))
                        .optional()
                        .map_err(other)?;
                    let current = match value {
                        Some(v) => i64::from_le_bytes(v.try_into().map_err(|_| {
                            KvError::Other(format!(
                                "value of key {key:?} is not an 8-byte little-endian integer"
                            ))
                        })?),
                        None => 0,
                    };
                    let new_value = current + delta;
                    tx.prepare_cached(UPSERT)
                        .map_err(other)?
                        .execute(rusqlite::params![name, key, new_value.to_le_bytes()])
                        .map_err(other)?;
                    tx.commit().map_err(other)?;
                    Ok(new_value)
                })
                .await
            }
            Store::Redis { conn, .. } => conn
                .clone()
                .incr(key, delta)
                .await
                .map_err(|e| self.redis_error(e)),
        }
    }

    /// `cas::new`.
    pub async fn new_cas(&self, key: &str) -> Result<CasHandle, KvError> {
        let redis = match self {
            Store::Redis { client, .. } => Some(
                client
                    .get_multiplexed_async_connection_with_config(&redis_connection_config())
                    .await
                    .map_err(other)?,
            ),
            Store::Sqlite { .. } => None,
        };
        Ok(CasHandle {
            store: self.clone(),
            key: key.to_string(),
            seen: None,
            redis,
        })
    }
}

/// Why a swap failed.
pub enum SwapError {
    CasFailed,
    Other(String),
}

impl CasHandle {
    /// `cas.current`: reads (and, on Redis, `WATCH`es) the key.
    pub async fn current(&mut self) -> Result<Option<Vec<u8>>, KvError> {
        match &mut self.redis {
            Some(conn) => {
                redis::cmd("WATCH")
                    .arg(&self.key)
                    .exec_async(conn)
                    .await
                    .map_err(redis_other)?;
                conn.get(&self.key).await.map_err(redis_other)
            }
            None => {
                let v = self.store.get(&self.key).await?;
                self.seen.clone_from(&v);
                Ok(v)
            }
        }
    }

    /// `atomics.swap`: writes only if the key still has the value `current`
    /// returned (absent key: only if it is still absent).
    pub async fn swap(mut self, value: Vec<u8>) -> Result<(), SwapError> {
        match (&self.store, self.redis.as_mut()) {
            (Store::Redis { .. }, Some(conn)) => {
                let res: redis::RedisResult<Option<()>> = redis::pipe()
                    .atomic()
                    .set(&self.key, value)
                    .ignore()
                    .query_async(conn)
                    .await;
                // As Spin's key-value-redis, which sends `UNWATCH <key>`: Redis refuses it
                // (UNWATCH takes no arguments), and Spin turns that error into a CAS failure.
                // So on Redis every swap reports `cas-failed`, after writing or not.
                redis::cmd("UNWATCH")
                    .arg(&self.key)
                    .exec_async(conn)
                    .await
                    .map_err(|_| SwapError::CasFailed)?;
                match res {
                    Ok(Some(())) => Ok(()),
                    // As Spin's key-value-redis: it reads the reply as `()`, so an `EXEC`
                    // aborted by the `WATCH` (nothing written) still reports success.
                    Ok(None) => Ok(()),
                    // (and, as there, a Redis error is a CAS failure)
                    Err(_) => Err(SwapError::CasFailed),
                }
            }
            (Store::Sqlite { name, conn }, _) => {
                let (name, key, seen) = (name.clone(), self.key.clone(), self.seen.take());
                let rows = sqlite(conn, move |c| {
                    let tx = c
                        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                        .map_err(other)?;
                    let rows = match seen {
                        Some(old) => tx
                            .prepare_cached(
                                "UPDATE spin_key_value SET value=$1 WHERE store=$2 AND key=$3 AND value=$4",
                            )
                            .map_err(other)?
                            .execute(rusqlite::params![value, name, key, old])
                            .map_err(other)?,
                        // As Spin's key-value-spin: a swap of a key that was absent (or
                        // never read) is an upsert, so it never fails.
                        None => tx
                            .prepare_cached(
                                "INSERT INTO spin_key_value (store, key, value) VALUES ($1, $2, $3)
                                 ON CONFLICT(store, key) DO UPDATE SET value=$3",
                            )
                            .map_err(other)?
                            .execute(rusqlite::params![name, key, value])
                            .map_err(other)?,
                    };
                    tx.commit().map_err(other)?;
                    Ok(rows)
                })
                .await
                .map_err(|e| match e {
                    KvError::Other(m) => SwapError::Other(m),
                    _ => SwapError::Other("store error".into()),
                })?;
                if rows == 1 {
                    Ok(())
                } else {
                    Err(SwapError::CasFailed)
                }
            }
            (Store::Redis { .. }, None) => Err(SwapError::Other("no redis connection".into())),
        }
    }
}
