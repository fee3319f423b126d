//! `spin:postgres/postgres@4.0.0`, following Spin's `factor-outbound-pg`
//! (`client.rs`, `types.rs`, `allowed_hosts.rs`).
//!
//! * The address is parsed as a tokio-postgres connection string; TLS is
//!   negotiated (rustls + webpki roots, so self-signed server certificates fail
//!   verification) unless `sslmode=disable`.
//! * Connections are pooled per address across requests with deadpool
//!   (64 per address, `RecyclingMethod::Clean`); at most 16 address pools are
//!   kept (least recently used evicted).
//! * A `connection` resource holds one pooled connection for its whole
//!   lifetime and gives it back to the pool as it is when dropped (or when the
//!   guest traps), as Spin does: a transaction a component leaves open stays
//!   open on the pooled connection, and the next request that gets it runs
//!   inside it (the pool's `Clean` recycling does not end transactions). So
//!   components must always `COMMIT` or `ROLLBACK`, and the tests run against
//!   exactly that.
#![allow(clippy::result_large_err)] // `v4::Error` is the WIT error type, as in Spin.

use std::error::Error as StdError;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use bytes::BufMut;
use futures::TryStreamExt as _;
use tokio_postgres::types::{FromSql, IsNull, ToSql, Type, to_sql_checked};
use tokio_postgres::{NoTls, Row, config::SslMode};

use crate::bindings::spin::postgres::postgres as v4;
use v4::{Column, DbDataType, DbValue, ParameterValue, RowSet};

const CONNECTION_POOL_SIZE: usize = 64;
const CONNECTION_POOL_CACHE_CAPACITY: usize = 16;

/// Pools per address (LRU, 16 entries).
#[derive(Default)]
pub struct PgPools {
    pools: Mutex<Vec<(String, deadpool_postgres::Pool)>>,
}

impl PgPools {
    fn pool(&self, address: &str) -> Result<deadpool_postgres::Pool> {
        let mut pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(pos) = pools.iter().position(|(a, _)| a == address) {
            let entry = pools.remove(pos);
            let pool = entry.1.clone();
            pools.push(entry);
            return Ok(pool);
        }
        let pool =
            create_connection_pool(address).context("establishing PostgreSQL connection pool")?;
        if pools.len() >= CONNECTION_POOL_CACHE_CAPACITY {
            let (evicted, _) = pools.remove(0);
            tracing::debug!("evicting PostgreSQL pool for {evicted}");
        }
        pools.push((address.to_string(), pool.clone()));
        Ok(pool)
    }

    /// Gets a pooled connection for `address`.
    pub async fn get(&self, address: &str) -> Result<deadpool_postgres::Object> {
        let pool = self.pool(address)?;
        Ok(pool.get().await?)
    }

    /// Number of address pools currently kept (for tests).
    pub fn pool_count(&self) -> usize {
        self.pools.lock().map(|p| p.len()).unwrap_or(0)
    }
}

fn tls_connector() -> tokio_postgres_rustls::MakeRustlsConnect {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("rustls protocol versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    tokio_postgres_rustls::MakeRustlsConnect::new(config)
}

fn create_connection_pool(address: &str) -> Result<deadpool_postgres::Pool> {
    let config = address
        .parse::<tokio_postgres::Config>()
        .context("parsing Postgres connection string")?;
    let mgr_config = deadpool_postgres::ManagerConfig {
        recycling_method: deadpool_postgres::RecyclingMethod::Clean,
    };
    let mgr = if config.get_ssl_mode() == SslMode::Disable {
        deadpool_postgres::Manager::from_config(config, NoTls, mgr_config)
    } else {
        deadpool_postgres::Manager::from_config(config, tls_connector(), mgr_config)
    };
    deadpool_postgres::Pool::builder(mgr)
        .max_size(CONNECTION_POOL_SIZE)
        .build()
        .context("building Postgres connection pool")
}

/// Resource type of `spin:postgres/postgres.connection`. Dropping it gives the connection
/// back to its pool as it is (see the module documentation).
pub struct Connection {
    client: deadpool_postgres::Object,
}

impl Connection {
    pub(crate) fn new(client: deadpool_postgres::Object) -> Self {
        Self { client }
    }

    pub(crate) async fn execute(
        &mut self,
        statement: String,
        params: Vec<ParameterValue>,
    ) -> Result<u64, v4::Error> {
        let params = params
            .iter()
            .map(to_sql_parameter)
            .collect::<Result<Vec<_>>>()
            .map_err(|e| v4::Error::ValueConversionFailed(format!("{e:?}")))?;
        let refs: Vec<&(dyn ToSql + Sync)> = params
            .iter()
            .map(|b| b.as_ref() as &(dyn ToSql + Sync))
            .collect();
        self.client
            .execute(statement.as_str(), refs.as_slice())
            .await
            .map_err(query_failed)
    }

    pub(crate) async fn query(
        &mut self,
        statement: String,
        params: Vec<ParameterValue>,
    ) -> Result<RowSet, v4::Error> {
        let params = params
            .iter()
            .map(to_sql_parameter)
            .collect::<Result<Vec<_>>>()
            .map_err(|e| v4::Error::BadParameter(format!("{e:?}")))?;
        let refs: Vec<&(dyn ToSql + Sync)> = params
            .iter()
            .map(|b| b.as_ref() as &(dyn ToSql + Sync))
            .collect();
        // As Spin's `query`: statement errors before the first row (parse, bind) come back
        // structured, but an error the server reports while rows stream (a constraint
        // violation of `INSERT … RETURNING`, a division by zero in a row, a cancelled
        // statement) is wrapped in `anyhow` and flattened into `query-failed(text(…))`
        // holding the structured error's debug form.
        let stream = self
            .client
            .query_raw(statement.as_str(), refs)
            .await
            .map_err(query_failed)?;
        let results: Vec<Row> = stream.try_collect().await.map_err(|e| {
            v4::Error::QueryFailed(v4::QueryError::Text(format!("{:?}", query_failed(e))))
        })?;
        if results.is_empty() {
            return Ok(RowSet {
                columns: vec![],
                rows: vec![],
            });
        }
        let columns = results[0]
            .columns()
            .iter()
            .map(|c| Column {
                name: c.name().to_owned(),
                data_type: convert_data_type(c.type_()),
            })
            .collect();
        let rows = results
            .iter()
            .map(convert_row)
            .collect::<Result<Vec<_>>>()
            // Spin: `query_failed_anyhow` per row, then flattened again by `query`.
            .map_err(|e| {
                let inner = v4::Error::QueryFailed(v4::QueryError::Text(format!("{e:?}")));
                v4::Error::QueryFailed(v4::QueryError::Text(format!("{inner:?}")))
            })?;
        Ok(RowSet { columns, rows })
    }
}

/// `open`'s address check (`allowed_outbound_hosts` with scheme `postgres`).
pub fn ensure_address_allowed(
    allowed: &crate::allowed_hosts::AllowedHosts,
    address: &str,
) -> Result<(), v4::Error> {
    let config = address
        .parse::<tokio_postgres::Config>()
        .map_err(|e| v4::Error::ConnectionFailed(e.to_string()))?;
    for (i, host) in config.get_hosts().iter().enumerate() {
        match host {
            tokio_postgres::config::Host::Tcp(h) => {
                let ports = config.get_ports();
                let port = ports
                    .get(i)
                    .or_else(|| {
                        if ports.len() == 1 {
                            ports.first()
                        } else {
                            None
                        }
                    })
                    .copied();
                if !allowed.allows("postgres", h, port) {
                    let port_str = port.map(|p| format!(":{p}")).unwrap_or_default();
                    return Err(v4::Error::ConnectionFailed(format!(
                        "address postgres://{h}{port_str} is not permitted"
                    )));
                }
            }
            #[cfg(unix)]
            tokio_postgres::config::Host::Unix(_) => {
                return Err(v4::Error::ConnectionFailed(
                    "Unix sockets are not supported on WebAssembly".into(),
                ));
            }
        }
    }
    Ok(())
}

fn pg_extras(dbe: &tokio_postgres::error::DbError) -> Vec<(String, String)> {
    let mut extras = vec![];
    macro_rules! pg_extra {
        ( $n:ident ) => {
            if let Some(value) = dbe.$n() {
                extras.push((stringify!($n).to_owned(), value.to_string()));
            }
        };
    }
    pg_extra!(column);
    pg_extra!(constraint);
    pg_extra!(routine);
    pg_extra!(hint);
    pg_extra!(table);
    pg_extra!(datatype);
    pg_extra!(schema);
    pg_extra!(file);
    pg_extra!(line);
    pg_extra!(where_);
    extras
}

fn query_failed(e: tokio_postgres::error::Error) -> v4::Error {
    let flattened = format!("{e:?}");
    let query_error = match e.as_db_error() {
        None => v4::QueryError::Text(flattened),
        Some(dbe) => v4::QueryError::DbError(v4::DbError {
            as_text: flattened,
            severity: dbe.severity().to_owned(),
            code: dbe.code().code().to_owned(),
            message: dbe.message().to_owned(),
            detail: dbe.detail().map(|s| s.to_owned()),
            extras: pg_extras(dbe),
        }),
    };
    v4::Error::QueryFailed(query_error)
}

fn convert_data_type(pg_type: &Type) -> DbDataType {
    match *pg_type {
        Type::BOOL => DbDataType::Boolean,
        Type::BYTEA => DbDataType::Binary,
        Type::FLOAT4 => DbDataType::Floating32,
        Type::FLOAT8 => DbDataType::Floating64,
        Type::INT2 => DbDataType::Int16,
        Type::INT4 => DbDataType::Int32,
        Type::INT8 => DbDataType::Int64,
        Type::TEXT | Type::VARCHAR | Type::BPCHAR => DbDataType::Str,
        Type::TIMESTAMP | Type::TIMESTAMPTZ => DbDataType::Datetime,
        Type::DATE => DbDataType::Date,
        Type::TIME => DbDataType::Time,
        Type::UUID => DbDataType::Uuid,
        Type::JSONB => DbDataType::Jsonb,
        Type::NUMERIC => DbDataType::Decimal,
        Type::INT4_RANGE => DbDataType::RangeInt32,
        Type::INT8_RANGE => DbDataType::RangeInt64,
        Type::NUM_RANGE => DbDataType::RangeDecimal,
        Type::INT4_ARRAY => DbDataType::ArrayInt32,
        Type::INT8_ARRAY => DbDataType::ArrayInt64,
        Type::NUMERIC_ARRAY => DbDataType::ArrayDecimal,
        Type::TEXT_ARRAY | Type::VARCHAR_ARRAY | Type::BPCHAR_ARRAY => DbDataType::ArrayStr,
        Type::INTERVAL => DbDataType::Interval,
        _ => DbDataType::Other(pg_type.name().to_owned()),
    }
}

fn convert_row(row: &Row) -> Result<Vec<DbValue>> {
    (0..row.len()).map(|i| convert_entry(row, i)).collect()
}

fn opt<'a, T: FromSql<'a>>(row: &'a Row, i: usize, f: impl Fn(T) -> DbValue) -> Result<DbValue> {
    let v: Option<T> = row.try_get(i)?;
    Ok(v.map(f).unwrap_or(DbValue::DbNull))
}

fn try_opt<'a, T: FromSql<'a>>(
    row: &'a Row,
    i: usize,
    f: impl Fn(T) -> Result<DbValue>,
) -> Result<DbValue> {
    let v: Option<T> = row.try_get(i)?;
    match v {
        Some(v) => f(v),
        None => Ok(DbValue::DbNull),
    }
}

type WitRange<T> = (
    Option<(T, v4::RangeBoundKind)>,
    Option<(T, v4::RangeBoundKind)>,
);

fn bound_kind(b: postgres_range::BoundType) -> v4::RangeBoundKind {
    match b {
        postgres_range::BoundType::Inclusive => v4::RangeBoundKind::Inclusive,
        postgres_range::BoundType::Exclusive => v4::RangeBoundKind::Exclusive,
    }
}

fn pg_bound_kind(b: v4::RangeBoundKind) -> postgres_range::BoundType {
    match b {
        v4::RangeBoundKind::Inclusive => postgres_range::BoundType::Inclusive,
        v4::RangeBoundKind::Exclusive => postgres_range::BoundType::Exclusive,
    }
}

fn range_pg_to_wit<T: Copy + postgres_range::Normalizable + PartialOrd>(
    r: postgres_range::Range<T>,
) -> WitRange<T> {
    (
        r.lower().map(|b| (b.value, bound_kind(b.type_))),
        r.upper().map(|b| (b.value, bound_kind(b.type_))),
    )
}

fn range_wit_to_pg<T: postgres_range::Normalizable + PartialOrd>(
    (lower, upper): WitRange<T>,
) -> postgres_range::Range<T> {
    postgres_range::Range::new(
        lower.map(|(v, k)| postgres_range::RangeBound::new(v, pg_bound_kind(k))),
        upper.map(|(v, k)| postgres_range::RangeBound::new(v, pg_bound_kind(k))),
    )
}

fn convert_entry(row: &Row, i: usize) -> Result<DbValue> {
    use chrono::{Datelike, Timelike};
    let column = &row.columns()[i];
    match column.type_() {
        &Type::BOOL => opt(row, i, DbValue::Boolean),
        &Type::BYTEA => opt(row, i, DbValue::Binary),
        &Type::FLOAT4 => opt(row, i, DbValue::Floating32),
        &Type::FLOAT8 => opt(row, i, DbValue::Floating64),
        &Type::INT2 => opt(row, i, DbValue::Int16),
        &Type::INT4 => opt(row, i, DbValue::Int32),
        &Type::INT8 => opt(row, i, DbValue::Int64),
        &Type::TEXT | &Type::VARCHAR | &Type::BPCHAR => opt(row, i, DbValue::Str),
        // Spin decodes both as `chrono::NaiveDateTime`, whose `FromSql`
        // accepts only TIMESTAMP: a TIMESTAMPTZ column therefore fails with a
        // `WrongType` query error in Spin, and here too.
        &Type::TIMESTAMP | &Type::TIMESTAMPTZ => try_opt(row, i, |v: chrono::NaiveDateTime| {
            Ok(DbValue::Datetime((
                v.year(),
                v.month().try_into()?,
                v.day().try_into()?,
                v.hour().try_into()?,
                v.minute().try_into()?,
                v.second().try_into()?,
                v.nanosecond(),
            )))
        }),
        &Type::DATE => try_opt(row, i, |v: chrono::NaiveDate| {
            Ok(DbValue::Date((
                v.year(),
                v.month().try_into()?,
                v.day().try_into()?,
            )))
        }),
        &Type::TIME => try_opt(row, i, |v: chrono::NaiveTime| {
            Ok(DbValue::Time((
                v.hour().try_into()?,
                v.minute().try_into()?,
                v.second().try_into()?,
                v.nanosecond(),
            )))
        }),
        &Type::UUID => opt(row, i, |v: uuid::Uuid| DbValue::Uuid(v.to_string())),
        &Type::JSONB => try_opt(row, i, |v: serde_json::Value| {
            Ok(DbValue::Jsonb(
                serde_json::to_vec(&v).context("invalid JSON from database")?,
            ))
        }),
        &Type::NUMERIC => opt(row, i, |v: rust_decimal::Decimal| {
            DbValue::Decimal(v.to_string())
        }),
        &Type::INT4_RANGE => opt(row, i, |v| DbValue::RangeInt32(range_pg_to_wit(v))),
        &Type::INT8_RANGE => opt(row, i, |v| DbValue::RangeInt64(range_pg_to_wit(v))),
        &Type::NUM_RANGE => opt(row, i, |v: postgres_range::Range<RangeableDecimal>| {
            DbValue::RangeDecimal((
                v.lower()
                    .map(|b| (b.value.0.to_string(), bound_kind(b.type_))),
                v.upper()
                    .map(|b| (b.value.0.to_string(), bound_kind(b.type_))),
            ))
        }),
        &Type::INT4_ARRAY => opt(row, i, DbValue::ArrayInt32),
        &Type::INT8_ARRAY => opt(row, i, DbValue::ArrayInt64),
        &Type::NUMERIC_ARRAY => opt(row, i, |v: Vec<Option<rust_decimal::Decimal>>| {
            DbValue::ArrayDecimal(v.iter().map(|d| d.map(|d| d.to_string())).collect())
        }),
        &Type::TEXT_ARRAY | &Type::VARCHAR_ARRAY | &Type::BPCHAR_ARRAY => {
            opt(row, i, DbValue::ArrayStr)
        }
        &Type::INTERVAL => opt(row, i, |v: Interval| DbValue::Interval(v.0)),
        _ => opt(row, i, |v: Other| DbValue::Unsupported(v.0)),
    }
}

fn decimal(v: &str) -> Result<rust_decimal::Decimal> {
    rust_decimal::Decimal::from_str_exact(v).with_context(|| format!("invalid decimal {v}"))
}

fn datetime_wit_to_pg(
    (y, mon, d, h, min, s, ns): &(i32, u8, u8, u8, u8, u8, u32),
) -> Result<chrono::NaiveDateTime> {
    let date = chrono::NaiveDate::from_ymd_opt(*y, (*mon).into(), (*d).into())
        .with_context(|| format!("invalid date y={y}, m={mon}, d={d}"))?;
    let time = chrono::NaiveTime::from_hms_nano_opt((*h).into(), (*min).into(), (*s).into(), *ns)
        .with_context(|| format!("invalid time {h}:{min}:{s}:{ns}"))?;
    Ok(chrono::NaiveDateTime::new(date, time))
}

type BoxedSql = Box<dyn ToSql + Send + Sync>;

fn to_sql_parameter(value: &ParameterValue) -> Result<BoxedSql> {
    Ok(match value {
        ParameterValue::Boolean(v) => Box::new(*v),
        ParameterValue::Int32(v) => Box::new(*v),
        ParameterValue::Int64(v) => Box::new(*v),
        ParameterValue::Int8(v) => Box::new(*v),
        ParameterValue::Int16(v) => Box::new(*v),
        ParameterValue::Floating32(v) => Box::new(*v),
        ParameterValue::Floating64(v) => Box::new(*v),
        ParameterValue::Str(v) => Box::new(v.clone()),
        ParameterValue::Binary(v) => Box::new(v.clone()),
        ParameterValue::Date((y, mon, d)) => Box::new(
            chrono::NaiveDate::from_ymd_opt(*y, (*mon).into(), (*d).into())
                .with_context(|| format!("invalid date y={y}, m={mon}, d={d}"))?,
        ),
        ParameterValue::Time((h, min, s, ns)) => Box::new(
            chrono::NaiveTime::from_hms_nano_opt((*h).into(), (*min).into(), (*s).into(), *ns)
                .with_context(|| format!("invalid time {h}:{min}:{s}:{ns}"))?,
        ),
        ParameterValue::Datetime(v) => Box::new(datetime_wit_to_pg(v)?),
        ParameterValue::Timestamp(v) => Box::new(
            chrono::DateTime::<chrono::Utc>::from_timestamp(*v, 0)
                .with_context(|| format!("invalid epoch timestamp {v}"))?,
        ),
        ParameterValue::Uuid(v) => {
            Box::new(uuid::Uuid::parse_str(v).with_context(|| format!("invalid UUID {v}"))?)
        }
        ParameterValue::Jsonb(v) => Box::new(
            serde_json::from_slice::<serde_json::Value>(v)
                .with_context(|| format!("invalid JSON {}", String::from_utf8_lossy(v)))?,
        ),
        ParameterValue::Decimal(v) => Box::new(decimal(v)?),
        ParameterValue::RangeInt32(v) => Box::new(range_wit_to_pg(*v)),
        ParameterValue::RangeInt64(v) => Box::new(range_wit_to_pg(*v)),
        ParameterValue::RangeDecimal((lower, upper)) => {
            let b = |x: &Option<(String, v4::RangeBoundKind)>| -> Result<_> {
                x.as_ref()
                    .map(|(v, k)| Ok((RangeableDecimal(decimal(v)?), *k)))
                    .transpose()
            };
            Box::new(range_wit_to_pg((b(lower)?, b(upper)?)))
        }
        ParameterValue::ArrayInt32(v) => Box::new(v.clone()),
        ParameterValue::ArrayInt64(v) => Box::new(v.clone()),
        ParameterValue::ArrayDecimal(v) => Box::new(
            v.iter()
                .map(|d| d.as_deref().map(decimal).transpose())
                .collect::<Result<Vec<_>>>()?,
        ),
        ParameterValue::ArrayStr(v) => Box::new(v.clone()),
        ParameterValue::Interval(v) => Box::new(Interval(*v)),
        ParameterValue::DbNull => Box::new(PgNull),
    })
}

type SqlResult<T> = std::result::Result<T, Box<dyn StdError + Sync + Send>>;

/// `NULL` of any type.
#[derive(Debug)]
struct PgNull;

impl ToSql for PgNull {
    fn to_sql(&self, _: &Type, _: &mut bytes::BytesMut) -> SqlResult<IsNull> {
        Ok(IsNull::Yes)
    }
    fn accepts(_: &Type) -> bool {
        true
    }
    to_sql_checked!();
}

/// Raw bytes of a type Spin does not convert (`db-value::unsupported`).
struct Other(Vec<u8>);

impl FromSql<'_> for Other {
    fn from_sql(_: &Type, raw: &[u8]) -> SqlResult<Self> {
        Ok(Self(raw.to_vec()))
    }
    fn accepts(_: &Type) -> bool {
        true
    }
}

#[derive(Debug)]
struct Interval(v4::Interval);

impl ToSql for Interval {
    fn to_sql(&self, _: &Type, out: &mut bytes::BytesMut) -> SqlResult<IsNull> {
        out.put_i64(self.0.micros);
        out.put_i32(self.0.days);
        out.put_i32(self.0.months);
        Ok(IsNull::No)
    }
    fn accepts(ty: &Type) -> bool {
        matches!(ty, &Type::INTERVAL)
    }
    to_sql_checked!();
}

impl FromSql<'_> for Interval {
    fn from_sql(_: &Type, raw: &[u8]) -> SqlResult<Self> {
        if raw.len() != 16 {
            return Err("unexpected binary format for Postgres INTERVAL".into());
        }
        Ok(Self(v4::Interval {
            micros: i64::from_be_bytes(raw[0..8].try_into()?),
            days: i32::from_be_bytes(raw[8..12].try_into()?),
            months: i32::from_be_bytes(raw[12..16].try_into()?),
        }))
    }
    fn accepts(ty: &Type) -> bool {
        matches!(ty, &Type::INTERVAL)
    }
}

/// `rust_decimal::Decimal` usable in `postgres_range` ranges.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
struct RangeableDecimal(rust_decimal::Decimal);

impl ToSql for RangeableDecimal {
    fn to_sql(&self, ty: &Type, out: &mut bytes::BytesMut) -> SqlResult<IsNull> {
        self.0.to_sql(ty, out)
    }
    fn accepts(ty: &Type) -> bool {
        <rust_decimal::Decimal as ToSql>::accepts(ty)
    }
    to_sql_checked!();
}

impl FromSql<'_> for RangeableDecimal {
    fn from_sql(ty: &Type, raw: &[u8]) -> SqlResult<Self> {
        Ok(Self(rust_decimal::Decimal::from_sql(ty, raw)?))
    }
    fn accepts(ty: &Type) -> bool {
        <rust_decimal::Decimal as FromSql>::accepts(ty)
    }
}

impl postgres_range::Normalizable for RangeableDecimal {
    fn normalize<S>(
        bound: postgres_range::RangeBound<S, Self>,
    ) -> postgres_range::RangeBound<S, Self>
    where
        S: postgres_range::BoundSided,
    {
        bound
    }
}
