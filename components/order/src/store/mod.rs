//! PostgreSQL storage of one order database (`spin_sdk::pg4`), typed in and out: orders and
//! their history (`orders`), idempotency keys (`keys`), the outbox (`outbox`), a seller's
//! sales (`sales`). Rows come back through `pg::query` (docs/conventions.md).

mod keys;
mod orders;
mod outbox;
mod sales;

use marketplace_shared::{OrderStatus, pg};
use serde::Serialize;
use serde::de::DeserializeOwned;
use spin_sdk::pg4::{Connection, DbValue, Decode, ParameterValue, PgError, RowSet};

use crate::config::Config;
use crate::domain::shard::{OrderId, VShard};
use crate::error::Error;

pub use orders::{Done, Shipped};
pub use outbox::{Job, OutboxRow};

/// Part of a locking statement's select list (no `set local` statement of its own): its wait
/// for a row another request holds ends after 20 s. Evaluated as the row is read, so before
/// the row lock is taken (checked on PostgreSQL 15).
const LOCK_TIMEOUT: &str = "set_config('lock_timeout', '20s', true)";

/// One open connection to one physical order database.
pub struct Db {
    pub index: usize,
    conn: Connection,
}

/// A failure inside `pg::transaction`: the statement's own, or the work's.
enum TxError {
    Pg(Box<PgError>),
    Work(Error),
}

impl From<PgError> for TxError {
    fn from(e: PgError) -> Self {
        TxError::Pg(Box::new(e))
    }
}

impl Db {
    pub fn open(cfg: &Config, index: usize) -> Result<Self, Error> {
        let url = cfg
            .db_urls
            .get(index)
            .ok_or_else(|| Error::Internal(format!("no database {index}")))?;
        let conn = Connection::open(url).map_err(|e| Error::db(index, e))?;
        Ok(Self { index, conn })
    }

    /// Opens the database that holds `vshard` (and only that one).
    pub fn for_vshard(cfg: &Config, vshard: VShard) -> Result<Self, Error> {
        Self::open(cfg, cfg.shards.database_of(vshard))
    }

    fn query(&self, sql: &str, params: &[ParameterValue]) -> Result<RowSet, Error> {
        pg::query(&self.conn, sql, params).map_err(|e| Error::db(self.index, e))
    }

    /// Only for statements that return a row whatever the data (`insert … returning`).
    fn query_always(&self, sql: &str, params: &[ParameterValue]) -> Result<RowSet, Error> {
        pg::query_always(&self.conn, sql, params).map_err(|e| Error::db(self.index, e))
    }

    /// A statement that waits for row locks (with [`LOCK_TIMEOUT`]): a wait that timed out
    /// (55P03) is `busy`, the holder still working.
    fn query_locking(
        &self,
        sql: &str,
        params: &[ParameterValue],
        busy: Error,
    ) -> Result<RowSet, Error> {
        pg::query(&self.conn, sql, params).map_err(|e| match pg::sqlstate(&e).as_deref() {
            Some("55P03") => busy,
            _ => Error::db(self.index, e),
        })
    }

    fn execute(&self, sql: &str, params: &[ParameterValue]) -> Result<(), Error> {
        self.affected(sql, params).map(|_| ())
    }

    /// How many rows the statement changed.
    fn affected(&self, sql: &str, params: &[ParameterValue]) -> Result<u64, Error> {
        self.conn
            .execute(sql, params)
            .map_err(|e| Error::db(self.index, e))
    }

    pub fn ping(&self) -> Result<(), Error> {
        self.execute("select 1", &[])
    }

    /// Runs `work` (which may await other services holding its row locks) in one transaction:
    /// committed when it succeeds, rolled back when it fails (`pg::transaction_async`).
    pub async fn transaction<T>(
        &self,
        work: impl AsyncFnOnce(&Db) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let tx_work = async || work(self).await.map_err(TxError::Work);
        match pg::transaction_async(&self.conn, tx_work).await {
            Ok(value) => Ok(value),
            Err(TxError::Pg(e)) => Err(Error::db(self.index, *e)),
            Err(TxError::Work(e)) => Err(e),
        }
    }
}

fn get<T: Decode>(row: &[DbValue], i: usize) -> Result<T, Error> {
    let v = row
        .get(i)
        .ok_or_else(|| Error::Internal(format!("missing column {i}")))?;
    T::decode(v).map_err(|e| Error::Internal(format!("column {i}: {e}")))
}

/// A `jsonb` column decoded straight into its type; `None` for NULL.
fn get_json<T: DeserializeOwned>(row: &[DbValue], i: usize) -> Result<Option<T>, Error> {
    match row.get(i) {
        Some(DbValue::Jsonb(bytes)) => serde_json::from_slice(bytes)
            .map(Some)
            .map_err(|e| Error::Internal(format!("column {i}: {e}"))),
        Some(DbValue::DbNull) => Ok(None),
        _ => Err(Error::Internal(format!("column {i} is not jsonb"))),
    }
}

fn get_order_id(row: &[DbValue], i: usize) -> Result<OrderId, Error> {
    let text: String = get(row, i)?;
    OrderId::parse(&text).ok_or_else(|| Error::Internal(format!("stored order id {text}")))
}

fn get_status(row: &[DbValue], i: usize) -> Result<OrderStatus, Error> {
    let text: String = get(row, i)?;
    OrderStatus::parse(&text).ok_or_else(|| Error::Internal(format!("stored status {text}")))
}

fn text(s: &str) -> ParameterValue {
    ParameterValue::Str(s.to_string())
}

fn id(order: &OrderId) -> ParameterValue {
    ParameterValue::Str(order.to_string())
}

fn vshard(order: &OrderId) -> ParameterValue {
    ParameterValue::Int16(order.vshard().get() as i16)
}

fn json<T: Serialize>(v: &T) -> Result<ParameterValue, Error> {
    spin_sdk::pg4::jsonb(v).map_err(|e| Error::Internal(format!("jsonb: {e}")))
}

/// A UTC instant for a `$n::timestamp at time zone 'utc'` parameter.
fn at(t: chrono::DateTime<chrono::Utc>) -> ParameterValue {
    t.naive_utc().into()
}
