//! Small helpers over SPI: quoting, binding checked values, reading values back.

use cloudsync_core::Value;
use pgrx::datum::DatumWithOid;
use pgrx::pg_sys::PgOid;
use pgrx::spi::{SpiClient, SpiHeapTupleData};
use pgrx::IntoDatum;

use crate::error::{Error, Result};
use crate::types::{Bind, Param, Read};

/// A quoted SQL identifier.
pub fn ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// A quoted SQL string literal (standard-conforming strings).
pub fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The type of a parameter, for preparing statements.
pub fn oid_of(b: Bind) -> PgOid {
    PgOid::from(match b {
        Bind::Int => i64::type_oid(),
        Bind::Float => f64::type_oid(),
        Bind::Bool => bool::type_oid(),
        Bind::Text => String::type_oid(),
        Bind::Bytes => Vec::<u8>::type_oid(),
    })
}

/// A checked value as an SPI argument of type `b`.
pub fn datum(p: Param, b: Bind) -> DatumWithOid<'static> {
    match p {
        Param::Null => match b {
            Bind::Int => DatumWithOid::null::<i64>(),
            Bind::Float => DatumWithOid::null::<f64>(),
            Bind::Bool => DatumWithOid::null::<bool>(),
            Bind::Text => DatumWithOid::null::<String>(),
            Bind::Bytes => DatumWithOid::null::<Vec<u8>>(),
        },
        Param::Int(i) => i.into(),
        Param::Float(f) => f.into(),
        Param::Bool(v) => v.into(),
        Param::Text(s) => s.into(),
        Param::Bytes(v) => v.into(),
    }
}

/// Reads column `i` (1-based) of a row as a value, given what its expression yields.
pub fn read_value(row: &SpiHeapTupleData<'_>, i: usize, r: Read) -> Result<Value> {
    Ok(match r {
        Read::Int => row.get::<i64>(i)?.map_or(Value::Null, Value::Integer),
        Read::Float => row.get::<f64>(i)?.map_or(Value::Null, Value::Real),
        Read::Text => row.get::<String>(i)?.map_or(Value::Null, |s| Value::Text(s.into_bytes())),
        Read::Bytes => row.get::<Vec<u8>>(i)?.map_or(Value::Null, Value::Blob),
        Read::Any => match row.get::<String>(i)? {
            None => Value::Null,
            Some(s) => crate::types::any_from_json(&s).map_err(Error::Corrupt)?,
        },
    })
}

/// A required non-NULL column of a row.
pub fn get<T: pgrx::FromDatum + IntoDatum>(row: &SpiHeapTupleData<'_>, i: usize, what: &str) -> Result<T> {
    row.get::<T>(i)?.ok_or_else(|| Error::Corrupt(format!("{what} is NULL")))
}

/// A non-negative `int8` read back as `u64`.
pub fn u64_of(v: i64, what: &str) -> Result<u64> {
    u64::try_from(v).map_err(|_| Error::Corrupt(format!("negative {what}")))
}

/// A `u64` stored as `int8`.
pub fn i64_of(v: u64) -> Result<i64> {
    i64::try_from(v).map_err(|_| Error::Invalid(format!("{v} does not fit a bigint")))
}

/// Runs a statement that writes.
pub fn exec(c: &mut SpiClient<'_>, sql: &str, args: &[DatumWithOid<'_>]) -> Result<usize> {
    Ok(c.update(sql, None, args)?.len())
}

/// Runs a query and maps each row.
pub fn query<T>(
    c: &SpiClient<'_>,
    sql: &str,
    args: &[DatumWithOid<'_>],
    mut f: impl FnMut(&SpiHeapTupleData<'_>) -> Result<T>,
) -> Result<Vec<T>> {
    let mut out = Vec::new();
    for row in c.select(sql, None, args)? {
        out.push(f(&row)?);
    }
    Ok(out)
}

/// Runs a query expected to return at most one row.
pub fn query_opt<T>(
    c: &SpiClient<'_>,
    sql: &str,
    args: &[DatumWithOid<'_>],
    f: impl FnMut(&SpiHeapTupleData<'_>) -> Result<T>,
) -> Result<Option<T>> {
    Ok(query(c, sql, args, f)?.into_iter().next())
}
