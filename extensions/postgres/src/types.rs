//! The mapping between SQLite storage classes (the core's [`Value`]) and PostgreSQL
//! column types.
//!
//! Every synced column falls in one [`Kind`]. A kind decides how a column is read into
//! a [`Value`] (a SQL expression with a fixed result type: `int8`, `float8`, `text` or
//! `bytea`) and how an incoming value is checked and bound when a merge writes it. A
//! value that the column cannot hold exactly is refused with an error naming the
//! table, the column and the value: nothing is truncated or rounded silently. The
//! table in `docs/postgres.md` is the user-facing version of this module.
//!
//! One file, over 500 lines: one concern — the type mapping, a `Kind` per column with
//! its read, write and exactness checks.

use cloudsync_core::Value;

use crate::error::{Error, ValueProblem};

/// How a PostgreSQL type maps to the core's values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `smallint`, `integer`, `bigint`: INTEGER. The payload's integer must fit.
    Int {
        /// Width in bits (16, 32 or 64).
        bits: u32,
    },
    /// `real` (single) or `double precision`: REAL.
    Float {
        /// `real` (float4).
        single: bool,
    },
    /// `boolean`: INTEGER 0 or 1.
    Bool,
    /// `bytea`: BLOB.
    Bytea,
    /// `text`, `varchar(n)`, `char(n)`, `citext`, `name`: TEXT.
    Text {
        /// Declared maximum length in characters.
        max_chars: Option<usize>,
    },
    /// `numeric(p, s)`: TEXT holding the exact decimal (never a lossy REAL).
    Numeric {
        /// Declared scale: more fractional digits than this are refused, not rounded.
        scale: Option<usize>,
    },
    /// `uuid`: TEXT, lowercase hyphenated (a 16-byte BLOB is accepted on input).
    Uuid,
    /// `json`: TEXT, exactly as stored; `jsonb`: TEXT, PostgreSQL's canonical form.
    Json {
        /// `jsonb` rather than `json`.
        binary: bool,
    },
    /// `timestamp with time zone`: TEXT `YYYY-MM-DDTHH:MM:SS.ffffffZ` (UTC).
    TimestampTz,
    /// `timestamp`: TEXT `YYYY-MM-DDTHH:MM:SS.ffffff`.
    Timestamp,
    /// `date`: TEXT `YYYY-MM-DD`.
    Date,
    /// An enum type: TEXT, one of its labels.
    Enum {
        /// The labels, in sort order.
        labels: Vec<String>,
    },
    /// One-dimensional arrays of a mappable element type: TEXT holding a JSON array.
    Array {
        /// The element type as SQL (`integer`, `text`, …).
        element: String,
    },
    /// The `cloudsync_any` domain (over `jsonb`) the translator gives a SQLite column
    /// without a type: every class, each in its own JSON form ([`any_to_json`],
    /// [`any_from_json`]).
    Any,
    /// Any other type with a text form (`time`, `interval`, enums, `inet`, domains over
    /// text…): TEXT in PostgreSQL's output format, parsed by the type's input function.
    Other,
}

/// Catalog facts about a column's type.
#[derive(Clone, Debug)]
pub struct TypeFacts {
    /// `pg_type.typname` of the base type (domains resolved).
    pub typname: String,
    /// `format_type(atttypid, atttypmod)`: the SQL spelling with modifiers.
    pub sql: String,
    /// `atttypmod`.
    pub typmod: i32,
    /// `pg_type.typcategory`.
    pub category: String,
    /// For arrays: `format_type` of the element type.
    pub element: Option<String>,
    /// For arrays: `pg_type.typname` of the element type.
    pub element_name: Option<String>,
    /// Declared array dimensions (`attndims`); 0 when not declared.
    pub ndims: i32,
    /// For enums: the labels.
    pub labels: Option<Vec<String>>,
    /// For a domain: its own name (`typname` is then its base type's).
    pub domain: Option<String>,
}

impl Kind {
    /// The kind of a column type, or why it cannot be synced.
    pub fn of(t: &TypeFacts) -> Result<Kind, String> {
        let varlen = || usize::try_from(t.typmod - 4).ok().filter(|_| t.typmod >= 4);
        Ok(match t.typname.as_str() {
            "int2" => Kind::Int { bits: 16 },
            "int4" => Kind::Int { bits: 32 },
            "int8" => Kind::Int { bits: 64 },
            "float4" => Kind::Float { single: true },
            "float8" => Kind::Float { single: false },
            "bool" => Kind::Bool,
            "bytea" => Kind::Bytea,
            "text" | "citext" | "name" => Kind::Text { max_chars: None },
            "varchar" | "bpchar" => Kind::Text { max_chars: varlen() },
            "numeric" => {
                // typmod = ((precision << 16) | scale) + 4
                let scale = (t.typmod >= 4).then(|| usize::try_from((t.typmod - 4) & 0xffff).unwrap_or(0));
                Kind::Numeric { scale }
            }
            "uuid" => Kind::Uuid,
            "json" => Kind::Json { binary: false },
            "jsonb" if t.domain.as_deref() == Some(cloudsync_ddl::ANY_DOMAIN) => Kind::Any,
            "jsonb" => Kind::Json { binary: true },
            "timestamptz" => Kind::TimestampTz,
            "timestamp" => Kind::Timestamp,
            "date" => Kind::Date,
            _ if t.category == "A" => {
                let element = t.element.clone().ok_or("array without element type")?;
                let elem_facts = TypeFacts {
                    typname: t.element_name.clone().unwrap_or_default(),
                    sql: element.clone(),
                    typmod: -1,
                    category: String::new(),
                    element: None,
                    element_name: None,
                    ndims: 0,
                    labels: None,
                    domain: None,
                };
                match Kind::of(&elem_facts)? {
                    Kind::Array { .. } => return Err("arrays of arrays cannot be synced".into()),
                    Kind::Bytea => return Err("arrays of bytea cannot be synced".into()),
                    _ => {}
                }
                if t.ndims > 1 {
                    return Err(format!("{}-dimensional arrays cannot be synced (only one dimension)", t.ndims));
                }
                Kind::Array { element }
            }
            "xml" | "tsvector" | "tsquery" | "pg_lsn" | "txid_snapshot" | "pg_snapshot" | "oid" | "regclass"
            | "regtype" | "regproc" | "regprocedure" | "regoper" | "regoperator" | "regconfig" | "regdictionary"
            | "regnamespace" | "regrole" | "regcollation" => {
                return Err(format!("type {} cannot be synced", t.sql));
            }
            _ if t.category == "C" => return Err(format!("composite type {} cannot be synced", t.sql)),
            _ if t.labels.is_some() => Kind::Enum { labels: t.labels.clone().unwrap_or_default() },
            _ => Kind::Other,
        })
    }

    /// Whether a primary-key column may have this kind: keys must compare and encode
    /// identically on every replica, so only types whose text or integer form is
    /// canonical are allowed.
    pub fn allowed_in_key(&self) -> bool {
        matches!(self, Kind::Int { .. } | Kind::Text { .. } | Kind::Uuid | Kind::Bytea)
    }

    /// SQL reading column `col` (already qualified and quoted) as a value with a fixed
    /// type (see [`Read`]).
    pub fn read_expr(&self, col: &str) -> (String, Read) {
        match self {
            Kind::Int { .. } => (format!("{col}::int8"), Read::Int),
            Kind::Bool => (format!("{col}::int4::int8"), Read::Int),
            Kind::Float { .. } => (format!("{col}::float8"), Read::Float),
            Kind::Bytea => (col.to_string(), Read::Bytes),
            Kind::TimestampTz => (
                format!(
                    "CASE WHEN pg_catalog.isfinite({col}) THEN pg_catalog.to_char({col} AT TIME ZONE 'UTC', \
                     'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') ELSE {col}::text END"
                ),
                Read::Text,
            ),
            Kind::Timestamp => (
                format!(
                    "CASE WHEN pg_catalog.isfinite({col}) THEN pg_catalog.to_char({col}, \
                     'YYYY-MM-DD\"T\"HH24:MI:SS.US') ELSE {col}::text END"
                ),
                Read::Text,
            ),
            Kind::Date => (
                format!(
                    "CASE WHEN pg_catalog.isfinite({col}) THEN pg_catalog.to_char({col}, 'YYYY-MM-DD') ELSE {col}::text END"
                ),
                Read::Text,
            ),
            Kind::Array { .. } => (format!("pg_catalog.to_jsonb({col})::text"), Read::Text),
            Kind::Any => (format!("{col}::text"), Read::Any),
            Kind::Text { .. } | Kind::Numeric { .. } | Kind::Uuid | Kind::Json { .. } | Kind::Enum { .. } | Kind::Other => {
                (format!("{col}::text"), Read::Text)
            }
        }
    }

    /// The parameter type a write of this kind binds.
    pub fn bind(&self) -> Bind {
        match self {
            Kind::Int { .. } => Bind::Int,
            Kind::Float { .. } => Bind::Float,
            Kind::Bool => Bind::Bool,
            Kind::Bytea => Bind::Bytes,
            Kind::Text { .. }
            | Kind::Array { .. }
            | Kind::Numeric { .. }
            | Kind::Uuid
            | Kind::Json { .. }
            | Kind::TimestampTz
            | Kind::Timestamp
            | Kind::Date
            | Kind::Enum { .. }
            | Kind::Any
            | Kind::Other => Bind::Text,
        }
    }

    /// The parameter type a write binds ([`Kind::bind`]), and the SQL turning
    /// parameter `$n` into the column's type.
    pub fn write_expr(&self, n: usize, sql_type: &str) -> (Bind, String) {
        let sql = match self {
            Kind::Int { .. } | Kind::Float { .. } => format!("${n}::{sql_type}"),
            // No explicit cast for text: an explicit cast to varchar(n) would truncate,
            // while assignment refuses. Lengths are checked before binding anyway.
            Kind::Bool | Kind::Bytea | Kind::Text { .. } => format!("${n}"),
            Kind::Array { element } => format!(
                "(SELECT CASE WHEN ${n} IS NULL THEN NULL \
                 ELSE COALESCE(pg_catalog.array_agg(e.v::{element} ORDER BY e.i), '{{}}') END \
                 FROM pg_catalog.jsonb_array_elements_text(${n}::jsonb) WITH ORDINALITY AS e(v, i))"
            ),
            Kind::Numeric { .. }
            | Kind::Uuid
            | Kind::Json { .. }
            | Kind::TimestampTz
            | Kind::Timestamp
            | Kind::Date
            | Kind::Enum { .. }
            | Kind::Any
            | Kind::Other => format!("${n}::text::{sql_type}"),
        };
        (self.bind(), sql)
    }

    /// Checks and converts an incoming primary-key value. Keys identify rows on every
    /// replica by their exact encoding, so the value must already be in the form this
    /// column reads back as: a key that would be converted (`'12'` for an integer,
    /// an upper-case UUID) would name a different row elsewhere, and is refused.
    pub fn to_key_param(&self, v: &Value) -> Result<Param, ValueProblem> {
        use ValueProblem as P;
        let exact = match (self, v) {
            (Kind::Int { .. }, Value::Integer(_))
            | (Kind::Text { .. }, Value::Text(_))
            | (Kind::Bytea, Value::Blob(_)) => true,
            (Kind::Uuid, Value::Text(t)) => {
                let canonical = std::str::from_utf8(t)
                    .ok()
                    .and_then(|s| uuid::Uuid::parse_str(s).ok())
                    .is_some_and(|u| u.hyphenated().to_string().as_bytes() == t.as_slice());
                if !canonical {
                    return Err(P::Syntax(
                        "a lowercase hyphenated UUID (a key must be spelled the same on every replica)",
                    ));
                }
                true
            }
            (_, Value::Null) => return Err(P::Class("a non-NULL key")),
            _ => false,
        };
        if !exact {
            return Err(P::Class(match self {
                Kind::Int { .. } => "an integer key",
                Kind::Bytea => "a blob key",
                _ => "a text key",
            }));
        }
        self.to_param(v)
    }

    /// Checks and converts an incoming value for a column of this kind.
    pub fn to_param(&self, v: &Value) -> Result<Param, ValueProblem> {
        use ValueProblem as P;
        if matches!(v, Value::Null) {
            return Ok(Param::Null);
        }
        match self {
            Kind::Int { bits } => {
                let i = match v {
                    Value::Integer(i) => *i,
                    Value::Real(r)
                        if r.fract() == 0.0 && *r >= -9.223_372_036_854_776e18 && *r < 9.223_372_036_854_776e18 =>
                    {
                        // Exact: the range check above keeps the cast in range.
                        #[allow(clippy::cast_possible_truncation)]
                        let i = *r as i64;
                        i
                    }
                    Value::Text(t) => std::str::from_utf8(t)
                        .ok()
                        .and_then(|s| s.trim().parse::<i64>().ok())
                        .ok_or(P::Syntax("an integer"))?,
                    _ => return Err(P::Class("an integer")),
                };
                let fits = match bits {
                    16 => i16::try_from(i).is_ok(),
                    32 => i32::try_from(i).is_ok(),
                    _ => true,
                };
                if !fits {
                    return Err(P::OutOfRange);
                }
                Ok(Param::Int(i))
            }
            Kind::Float { single } => {
                let f = match v {
                    Value::Real(r) => *r,
                    // i64 → f64 may round beyond 2^53: that is what a REAL column does in SQLite too.
                    #[allow(clippy::cast_precision_loss)]
                    Value::Integer(i) => *i as f64,
                    Value::Text(t) => std::str::from_utf8(t)
                        .ok()
                        .and_then(|s| s.trim().parse::<f64>().ok())
                        .ok_or(P::Syntax("a number"))?,
                    _ => return Err(P::Class("a number")),
                };
                if *single && f.is_finite() && f.abs() > f64::from(f32::MAX) {
                    return Err(P::OutOfRange);
                }
                Ok(Param::Float(f))
            }
            Kind::Bool => match v {
                Value::Integer(0) => Ok(Param::Bool(false)),
                Value::Integer(1) => Ok(Param::Bool(true)),
                Value::Text(t) => match std::str::from_utf8(t).map(|s| s.trim().to_ascii_lowercase()).as_deref() {
                    Ok("true" | "t" | "1") => Ok(Param::Bool(true)),
                    Ok("false" | "f" | "0") => Ok(Param::Bool(false)),
                    _ => Err(P::Syntax("a boolean (0, 1, true or false)")),
                },
                _ => Err(P::Class("a boolean (0 or 1)")),
            },
            Kind::Bytea => match v {
                Value::Blob(b) | Value::Text(b) => Ok(Param::Bytes(b.clone())),
                _ => Err(P::Class("a blob")),
            },
            Kind::Text { max_chars } => {
                let s = text_of(v)?;
                if let Some(max) = max_chars {
                    if s.chars().count() > *max {
                        return Err(P::TooLong(*max));
                    }
                }
                Ok(Param::Text(s))
            }
            Kind::Numeric { scale } => {
                let s = match v {
                    Value::Integer(i) => i.to_string(),
                    Value::Real(r) if r.is_finite() => format!("{r:?}"),
                    Value::Text(_) => text_of(v)?.trim().to_string(),
                    _ => return Err(P::Class("a decimal number")),
                };
                let digits = s.trim_start_matches(['-', '+']);
                let valid = digits.eq_ignore_ascii_case("nan")
                    || (!digits.is_empty()
                        && digits.chars().filter(|c| *c == '.').count() <= 1
                        && digits.chars().all(|c| c.is_ascii_digit() || c == '.'));
                if !valid {
                    return Err(P::Syntax("a decimal number"));
                }
                if let (Some(scale), Some((_, frac))) = (scale, digits.split_once('.')) {
                    if frac.trim_end_matches('0').len() > *scale {
                        return Err(P::Scale(*scale));
                    }
                }
                Ok(Param::Text(s))
            }
            Kind::Uuid => {
                let parsed = match v {
                    Value::Blob(b) => uuid::Uuid::from_slice(b).map_err(|_| P::Syntax("a UUID"))?,
                    Value::Text(_) => uuid::Uuid::parse_str(text_of(v)?.trim()).map_err(|_| P::Syntax("a UUID"))?,
                    _ => return Err(P::Class("a UUID")),
                };
                Ok(Param::Text(parsed.hyphenated().to_string()))
            }
            Kind::Json { .. } => {
                let s = match v {
                    Value::Integer(i) => i.to_string(),
                    Value::Real(r) if r.is_finite() => format!("{r:?}"),
                    _ => text_of(v)?,
                };
                serde_json::from_str::<serde_json::Value>(&s).map_err(|_| P::Syntax("JSON"))?;
                Ok(Param::Text(s))
            }
            Kind::Array { .. } => {
                let s = text_of(v)?;
                let parsed: serde_json::Value = serde_json::from_str(&s).map_err(|_| P::Syntax("a JSON array"))?;
                let Some(items) = parsed.as_array() else { return Err(P::Syntax("a JSON array")) };
                if items.iter().any(|i| i.is_array() || i.is_object()) {
                    return Err(P::Syntax("a JSON array of scalars (one dimension)"));
                }
                Ok(Param::Text(s))
            }
            Kind::Any => Ok(any_to_json(v)?.map_or(Param::Null, Param::Text)),
            Kind::Enum { labels } => {
                let s = text_of(v)?;
                if !labels.contains(&s) {
                    return Err(P::Syntax("one of the enum's labels"));
                }
                Ok(Param::Text(s))
            }
            Kind::Date => {
                let s = text_of(v)?;
                iso_date(&s).ok_or(P::Syntax("an ISO 8601 date (YYYY-MM-DD)"))?;
                Ok(Param::Text(s))
            }
            Kind::Timestamp => {
                let s = text_of(v)?;
                match iso_datetime(&s) {
                    Some((_, false)) => Ok(Param::Text(s)),
                    _ => Err(P::Syntax("an ISO 8601 timestamp without offset (YYYY-MM-DD HH:MM:SS[.ffffff])")),
                }
            }
            Kind::TimestampTz => {
                let s = text_of(v)?;
                match iso_datetime(&s) {
                    // Without an offset the time is UTC, whatever the server's TimeZone.
                    Some((_, false)) => Ok(Param::Text(format!("{s}Z"))),
                    Some((_, true)) => Ok(Param::Text(s)),
                    None => Err(P::Syntax("an ISO 8601 timestamp (YYYY-MM-DDTHH:MM:SS[.ffffff][Z|±HH:MM])")),
                }
            }
            Kind::Other => match v {
                Value::Integer(i) => Ok(Param::Text(i.to_string())),
                Value::Real(r) => Ok(Param::Text(format!("{r:?}"))),
                _ => Ok(Param::Text(text_of(v)?)),
            },
        }
    }
}

/// `YYYY-MM-DD` (or ±infinity, which PostgreSQL's date/time types hold).
fn iso_date(s: &str) -> Option<()> {
    if s == "infinity" || s == "-infinity" {
        return Some(());
    }
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    (b.len() == 10 && digits(0..4) && b[4] == b'-' && digits(5..7) && b[7] == b'-' && digits(8..10)).then_some(())
}

/// `YYYY-MM-DD[T ]HH:MM[:SS[.f…f]]` with at most 6 fractional digits (PostgreSQL
/// keeps microseconds and would round more), then an optional offset (`Z`, `±HH`,
/// `±HH:MM`, `±HHMM`). Returns the input and whether it has an offset.
fn iso_datetime(s: &str) -> Option<(&str, bool)> {
    if s == "infinity" || s == "-infinity" {
        return Some((s, true));
    }
    let b = s.as_bytes();
    iso_date(s.get(..10)?)?;
    if !matches!(b.get(10), Some(b'T' | b't' | b' ')) {
        return None;
    }
    let digits = |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    if !(digits(11..13) && b.get(13) == Some(&b':') && digits(14..16)) {
        return None;
    }
    let mut i = 16;
    if b.get(i) == Some(&b':') {
        if !digits(i + 1..i + 3) {
            return None;
        }
        i += 3;
        if b.get(i) == Some(&b'.') {
            let frac = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
            if frac == 0 || frac > 6 {
                return None;
            }
            i += 1 + frac;
        }
    }
    let zone = &s[i..];
    let zb = zone.as_bytes();
    let offset = match zb {
        [] => false,
        [b'Z' | b'z'] => true,
        [b'+' | b'-', rest @ ..] => {
            let ok = match rest {
                [h1, h2] => h1.is_ascii_digit() && h2.is_ascii_digit(),
                [h1, h2, b':', m1, m2] | [h1, h2, m1, m2] => [h1, h2, m1, m2].iter().all(|c| c.is_ascii_digit()),
                _ => false,
            };
            if !ok {
                return None;
            }
            true
        }
        _ => return None,
    };
    Some((s, offset))
}

fn text_of(v: &Value) -> Result<String, ValueProblem> {
    match v {
        Value::Text(t) => String::from_utf8(t.clone()).map_err(|_| ValueProblem::Utf8),
        Value::Integer(i) => Ok(i.to_string()),
        Value::Real(r) => Ok(format!("{r:?}")),
        Value::Blob(_) => Err(ValueProblem::Class("text")),
        Value::Null => Ok(String::new()),
    }
}

/// A value as `cloudsync_any` holds it: an integer as a JSON number without a fraction,
/// a finite real as one with a fraction (`1.0`, never an exponent: `jsonb` would print
/// it without one), an infinity as `{"real": "Infinity"}`, text as a JSON string, a
/// blob as `{"blob": "<hex>"}`. None for NULL (and NaN, which SQLite stores as NULL).
pub fn any_to_json(v: &Value) -> Result<Option<String>, ValueProblem> {
    Ok(Some(match v {
        Value::Null => return Ok(None),
        Value::Integer(i) => i.to_string(),
        Value::Real(r) if r.is_nan() => return Ok(None),
        Value::Real(r) if r.is_infinite() => {
            format!(r#"{{"real": "{}"}}"#, if *r > 0.0 { "Infinity" } else { "-Infinity" })
        }
        Value::Real(r) => {
            let mut s = format!("{r}");
            if !s.contains('.') {
                s.push_str(".0");
            }
            s
        }
        Value::Text(t) => {
            let s = std::str::from_utf8(t).map_err(|_| ValueProblem::Utf8)?;
            serde_json::to_string(s).map_err(|_| ValueProblem::Utf8)?
        }
        Value::Blob(b) => format!(r#"{{"blob": "{}"}}"#, b.iter().map(|x| format!("{x:02x}")).collect::<String>()),
    }))
}

/// The value `cloudsync_any`'s text form holds ([`any_to_json`]'s inverse). A number
/// written directly in PostgreSQL reads as SQLite would store it: an integer when it
/// has no fraction or exponent and fits 64 bits, a real otherwise.
pub fn any_from_json(text: &str) -> Result<Value, String> {
    let raw = text.trim();
    // Numbers are read here, not by serde_json (which refuses the longest exact decimals).
    if raw.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
        return Ok(match raw.parse::<i64>() {
            Ok(i) if !raw.contains(['.', 'e', 'E']) => Value::Integer(i),
            _ => Value::Real(raw.parse::<f64>().map_err(|e| format!("cloudsync_any number {raw}: {e}"))?),
        });
    }
    let v: serde_json::Value =
        serde_json::from_str(raw).map_err(|e| format!("cloudsync_any value that is not JSON: {e}"))?;
    Ok(match &v {
        serde_json::Value::String(s) => Value::Text(s.clone().into_bytes()),
        serde_json::Value::Object(o) => match (o.get("blob"), o.get("real"), o.len()) {
            (Some(serde_json::Value::String(h)), None, 1) => {
                Value::Blob(unhex(h).ok_or("cloudsync_any blob that is not hex")?)
            }
            (None, Some(serde_json::Value::String(r)), 1) => {
                Value::Real(r.parse::<f64>().map_err(|e| format!("cloudsync_any real {r}: {e}"))?)
            }
            _ => return Err("cloudsync_any object other than {\"blob\": …} or {\"real\": …}".into()),
        },
        serde_json::Value::Null => Value::Null,
        _ => return Err(format!("cloudsync_any holds {}: only numbers, strings, blobs", shown_json(&v))),
    })
}

/// Hex digits (either case) as bytes.
fn unhex(h: &str) -> Option<Vec<u8>> {
    if !h.len().is_multiple_of(2) {
        return None;
    }
    (0..h.len()).step_by(2).map(|i| u8::from_str_radix(h.get(i..i + 2)?, 16).ok()).collect()
}

fn shown_json(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Array(_) => "an array",
        _ => "something else",
    }
}

/// The SQL type a read expression produces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Read {
    /// `int8` → INTEGER.
    Int,
    /// `float8` → REAL.
    Float,
    /// `text` → TEXT.
    Text,
    /// `bytea` → BLOB.
    Bytes,
    /// `cloudsync_any` as text → the class its JSON form says ([`any_from_json`]).
    Any,
}

/// The parameter type a write binds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bind {
    /// `int8`.
    Int,
    /// `float8`.
    Float,
    /// `bool`.
    Bool,
    /// `text`.
    Text,
    /// `bytea`.
    Bytes,
}

/// A checked value, ready to bind.
#[derive(Clone, Debug, PartialEq)]
pub enum Param {
    /// NULL.
    Null,
    /// `int8`.
    Int(i64),
    /// `float8`.
    Float(f64),
    /// `bool`.
    Bool(bool),
    /// `text`.
    Text(String),
    /// `bytea`.
    Bytes(Vec<u8>),
}

/// Shortens a value for an error message.
pub fn show(v: &Value) -> String {
    let s = match v {
        Value::Null => "NULL".to_string(),
        Value::Integer(i) => i.to_string(),
        Value::Real(r) => format!("{r:?}"),
        Value::Text(t) => format!("'{}'", String::from_utf8_lossy(t)),
        Value::Blob(b) => format!("x'{}'", b.iter().take(32).map(|b| format!("{b:02x}")).collect::<String>()),
    };
    if s.chars().count() > 80 {
        format!("{}…", s.chars().take(80).collect::<String>())
    } else {
        s
    }
}

/// Attaches table, column and value to a conversion problem.
pub fn convert(kind: &Kind, v: &Value, table: &str, column: &str, sql_type: &str) -> Result<Param, Error> {
    attach(kind.to_param(v), v, table, column, sql_type)
}

/// Like [`convert`], for a primary-key value ([`Kind::to_key_param`]).
pub fn convert_key(kind: &Kind, v: &Value, table: &str, column: &str, sql_type: &str) -> Result<Param, Error> {
    attach(kind.to_key_param(v), v, table, column, sql_type)
}

fn attach(
    r: Result<Param, ValueProblem>,
    v: &Value,
    table: &str,
    column: &str,
    sql_type: &str,
) -> Result<Param, Error> {
    r.map_err(|problem| Error::Value {
        table: table.to_string(),
        column: column.to_string(),
        sql_type: sql_type.to_string(),
        value: show(v),
        problem,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(typname: &str, typmod: i32) -> TypeFacts {
        TypeFacts {
            typname: typname.into(),
            sql: typname.into(),
            typmod,
            category: String::new(),
            element: None,
            element_name: None,
            ndims: 0,
            labels: None,
            domain: None,
        }
    }

    #[test]
    fn the_any_domain_keeps_every_class() {
        let mut f = facts("jsonb", -1);
        assert!(matches!(Kind::of(&f), Ok(Kind::Json { binary: true })));
        f.domain = Some("cloudsync_any".into());
        assert!(matches!(Kind::of(&f), Ok(Kind::Any)));
        for (v, json) in [
            (Value::Integer(42), "42"),
            (Value::Integer(i64::MIN), "-9223372036854775808"),
            (Value::Real(3.0), "3.0"),
            (Value::Real(-0.5), "-0.5"),
            (Value::Real(1e20), "100000000000000000000.0"),
            (Value::Real(f64::INFINITY), r#"{"real": "Infinity"}"#),
            (Value::Real(f64::NEG_INFINITY), r#"{"real": "-Infinity"}"#),
            (Value::Text(b"42".to_vec()), r#""42""#),
            (Value::Text("é \"q\" \\".as_bytes().to_vec()), r#""é \"q\" \\""#),
            (Value::Blob(vec![0, 0xff]), r#"{"blob": "00ff"}"#),
        ] {
            assert_eq!(any_to_json(&v).unwrap().as_deref(), Some(json), "{v:?}");
            assert_eq!(any_from_json(json).unwrap(), v, "{json}");
        }
        assert_eq!(any_to_json(&Value::Null).unwrap(), None);
        assert_eq!(any_to_json(&Value::Real(f64::NAN)).unwrap(), None);
        // Tiny and huge reals come back exactly.
        for r in [1e300, -2.5e-300, f64::MAX, f64::MIN_POSITIVE] {
            let json = any_to_json(&Value::Real(r)).unwrap().unwrap();
            assert!(!json.contains('e'), "{json}");
            assert_eq!(any_from_json(&json).unwrap(), Value::Real(r));
        }
        // As jsonb prints what PostgreSQL users write.
        assert_eq!(any_from_json("1000").unwrap(), Value::Integer(1000));
        assert_eq!(any_from_json("99999999999999999999").unwrap(), Value::Real(1e20));
        assert_eq!(any_from_json(r#"{"blob": "0A0b"}"#).unwrap(), Value::Blob(vec![10, 11]));
        for bad in ["true", "[1]", r#"{"x": 1}"#, r#"{"blob": "0"}"#, r#"{"blob": "00", "real": "1"}"#, "nope"] {
            assert!(any_from_json(bad).is_err(), "{bad}");
        }
        assert!(any_to_json(&Value::Text(vec![0xff])).is_err());
    }

    #[test]
    fn integers_must_fit_their_column() {
        let k = Kind::of(&facts("int2", -1)).unwrap();
        assert_eq!(k.to_param(&Value::Integer(7)), Ok(Param::Int(7)));
        assert_eq!(k.to_param(&Value::Integer(40_000)), Err(ValueProblem::OutOfRange));
        assert_eq!(k.to_param(&Value::Real(3.0)), Ok(Param::Int(3)));
        assert_eq!(k.to_param(&Value::Real(3.5)), Err(ValueProblem::Class("an integer")));
        assert_eq!(k.to_param(&Value::text("12")), Ok(Param::Int(12)));
        assert_eq!(k.to_param(&Value::text("x")), Err(ValueProblem::Syntax("an integer")));
    }

    #[test]
    fn text_lengths_and_numeric_scales_are_refused_not_truncated() {
        let k = Kind::of(&facts("varchar", 3 + 4)).unwrap();
        assert_eq!(k.to_param(&Value::text("abc")), Ok(Param::Text("abc".into())));
        assert_eq!(k.to_param(&Value::text("abcd")), Err(ValueProblem::TooLong(3)));
        assert_eq!(k.to_param(&Value::text("éèà")), Ok(Param::Text("éèà".into())));
        let n = Kind::of(&facts("numeric", ((10 << 16) | 2) + 4)).unwrap();
        assert_eq!(n.to_param(&Value::text("12.50")), Ok(Param::Text("12.50".into())));
        assert_eq!(n.to_param(&Value::text("12.505")), Err(ValueProblem::Scale(2)));
        assert_eq!(n.to_param(&Value::text("1e5")), Err(ValueProblem::Syntax("a decimal number")));
        assert_eq!(Kind::Text { max_chars: None }.to_param(&Value::Text(vec![0xff])), Err(ValueProblem::Utf8));
    }

    #[test]
    fn uuids_are_canonicalised_and_checked() {
        let k = Kind::Uuid;
        let s = "6F9619FF-8B86-D011-B42D-00C04FC964FF";
        assert_eq!(k.to_param(&Value::text(s)), Ok(Param::Text(s.to_lowercase())));
        let bytes = uuid::Uuid::parse_str(s).unwrap().as_bytes().to_vec();
        assert_eq!(k.to_param(&Value::Blob(bytes)), Ok(Param::Text(s.to_lowercase())));
        assert_eq!(k.to_param(&Value::text("nope")), Err(ValueProblem::Syntax("a UUID")));
    }

    #[test]
    fn arrays_are_json_arrays_of_scalars() {
        let k = Kind::Array { element: "integer".into() };
        assert!(k.to_param(&Value::text("[1, 2, null]")).is_ok());
        assert!(k.to_param(&Value::text("[[1]]")).is_err());
        assert!(k.to_param(&Value::text("{1,2}")).is_err());
        let two_dims = TypeFacts {
            category: "A".into(),
            element: Some("integer".into()),
            element_name: Some("int4".into()),
            ndims: 2,
            ..facts("_int4", -1)
        };
        assert!(Kind::of(&two_dims).is_err());
        let bytea_array =
            TypeFacts { ndims: 1, element: Some("bytea".into()), element_name: Some("bytea".into()), ..two_dims };
        assert!(Kind::of(&bytea_array).is_err());
    }

    #[test]
    fn dates_and_times_must_be_iso_8601() {
        assert!(iso_date("2024-02-29").is_some());
        assert!(iso_date("29/02/2024").is_none());
        assert_eq!(iso_datetime("2024-05-06T07:08:09.123456Z"), Some(("2024-05-06T07:08:09.123456Z", true)));
        assert_eq!(iso_datetime("2024-05-06 07:08:09"), Some(("2024-05-06 07:08:09", false)));
        assert_eq!(iso_datetime("2024-05-06 07:08+02:00"), Some(("2024-05-06 07:08+02:00", true)));
        assert!(iso_datetime("2024-05-06T07:08:09.1234567Z").is_none(), "would be rounded");
        assert!(iso_datetime("yesterday").is_none());
        assert!(iso_datetime("2024-05-06T07:08:09+2").is_none());
        let tz = Kind::TimestampTz;
        assert_eq!(tz.to_param(&Value::text("2024-05-06 07:08:09")), Ok(Param::Text("2024-05-06 07:08:09Z".into())));
        let e = Kind::Enum { labels: vec!["sad".into(), "happy".into()] };
        assert!(e.to_param(&Value::text("happy")).is_ok());
        assert!(e.to_param(&Value::text("meh")).is_err());
    }

    #[test]
    fn only_canonical_types_make_keys() {
        assert!(Kind::Uuid.allowed_in_key());
        assert!(!Kind::TimestampTz.allowed_in_key());
        assert!(!Kind::Float { single: false }.allowed_in_key());
    }
}
