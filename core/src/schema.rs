//! Table schemas as the engine sees them, and their fingerprint.

use crate::algo::Algo;

/// SQLite column affinity, derived from the declared type by SQLite's own rules
/// (section 3.1 of the datatype documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Affinity {
    /// `INT` anywhere in the type.
    Integer,
    /// `CHAR`, `CLOB` or `TEXT`.
    Text,
    /// `BLOB` or no type.
    Blob,
    /// `REAL`, `FLOA` or `DOUB`.
    Real,
    /// Anything else.
    Numeric,
}

impl Affinity {
    /// The affinity of a declared column type.
    pub fn of(decl_type: &str) -> Affinity {
        let t = decl_type.to_ascii_uppercase();
        if t.contains("INT") {
            Affinity::Integer
        } else if t.contains("CHAR") || t.contains("CLOB") || t.contains("TEXT") {
            Affinity::Text
        } else if t.contains("BLOB") || t.trim().is_empty() {
            Affinity::Blob
        } else if t.contains("REAL") || t.contains("FLOA") || t.contains("DOUB") {
            Affinity::Real
        } else {
            Affinity::Numeric
        }
    }

    /// What SQLite would store instead of `v` in a column of this affinity (the name
    /// of the storage class it converts to), or `None` when it stores `v` unchanged.
    ///
    /// A change whose value a column would convert cannot be applied faithfully: the
    /// table would hold one value while the clock and every payload carry another, and
    /// replicas would disagree on the row (section 3 of SQLite's datatype
    /// documentation; checked against SQLite itself in the SQLite adapter's tests).
    pub fn converts(self, v: &crate::value::Value) -> Option<&'static str> {
        use crate::value::Value;
        match (self, v) {
            // NaN is stored as NULL whatever the column.
            (_, Value::Real(r)) if r.is_nan() => Some("null"),
            (_, Value::Null | Value::Blob(_)) | (Affinity::Blob, _) => None,
            (Affinity::Text, Value::Integer(_) | Value::Real(_)) => Some("text"),
            (Affinity::Text, Value::Text(_)) => None,
            (Affinity::Real, Value::Integer(_)) => Some("real"),
            // A whole float is stored as an integer in a REAL column (and read back as
            // a float, losing the sign of -0.0).
            (Affinity::Real, Value::Real(r)) => (*r == 0.0 && r.is_sign_negative()).then_some("real 0.0"),
            (Affinity::Integer | Affinity::Numeric, Value::Real(r)) => exact_integer(*r).then_some("integer"),
            (Affinity::Integer | Affinity::Numeric, Value::Integer(_)) => None,
            (Affinity::Integer | Affinity::Numeric | Affinity::Real, Value::Text(t)) => {
                numeric_literal(t).then_some(if self == Affinity::Real { "real" } else { "a number" })
            }
        }
    }

    /// Lowercase name.
    pub fn name(self) -> &'static str {
        match self {
            Affinity::Integer => "integer",
            Affinity::Text => "text",
            Affinity::Blob => "blob",
            Affinity::Real => "real",
            Affinity::Numeric => "numeric",
        }
    }
}

/// Whether SQLite converts the float `r` to an integer in a NUMERIC or INTEGER column:
/// a whole value strictly inside the 64-bit range.
fn exact_integer(r: f64) -> bool {
    // 2^63 as a float; the bounds are exclusive, as in SQLite.
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    r.fract() == 0.0 && r > -LIMIT && r < LIMIT
}

/// Whether text is a well-formed integer or real literal (surrounded by any spaces), which
/// SQLite converts to a number in a NUMERIC, INTEGER or REAL column. Hexadecimal,
/// `inf` and `nan` are not literals there.
fn numeric_literal(t: &[u8]) -> bool {
    let space = |b: &u8| matches!(b, b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r');
    let start = t.iter().position(|b| !space(b)).unwrap_or(t.len());
    let end = t.iter().rposition(|b| !space(b)).map_or(start, |e| e + 1);
    let body = &t[start..end];
    if body.is_empty() || !body.iter().all(|b| b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.' | b'e' | b'E')) {
        return false;
    }
    // Only digits, signs, '.' and exponents remain, so Rust's float grammar (which
    // also reads "inf" and "nan") agrees with SQLite's here.
    std::str::from_utf8(body).is_ok_and(|s| s.parse::<f64>().is_ok())
}

/// One column of a synced table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ColumnDef {
    /// Column name as declared.
    pub name: String,
    /// Declared type (may be empty).
    pub decl_type: String,
    /// 1-based position in the primary key, or 0 when not a key column.
    pub pk: u32,
    /// Declared NOT NULL.
    pub not_null: bool,
    /// Has a DEFAULT clause.
    pub has_default: bool,
}

/// A table's shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableSchema {
    /// Table name.
    pub name: String,
    /// Columns in declaration order.
    pub columns: Vec<ColumnDef>,
}

impl TableSchema {
    /// Key columns in primary-key order.
    pub fn pk_columns(&self) -> Vec<&ColumnDef> {
        let mut pk: Vec<&ColumnDef> = self.columns.iter().filter(|c| c.pk > 0).collect();
        pk.sort_by_key(|c| c.pk);
        pk
    }

    /// Non-key columns in declaration order.
    pub fn value_columns(&self) -> impl Iterator<Item = &ColumnDef> {
        self.columns.iter().filter(|c| c.pk == 0)
    }

    /// A 64-bit fingerprint of what matters for merging: the table name, the
    /// algorithm, the key columns (in key order, with affinity) and the set of other
    /// columns (sorted by name, with affinity). Case-insensitive, independent of column
    /// order and of formatting of the `CREATE TABLE` text.
    ///
    /// Hash: FNV-1a 64 over the canonical text
    /// `table|algo|k:name:affinity,…|c:name:affinity,…` (all lowercase).
    pub fn fingerprint(&self, algo: Algo) -> u64 {
        let mut canon = format!("{}|{}|", self.name.to_lowercase(), algo.name());
        for c in self.pk_columns() {
            canon.push_str(&format!("k:{}:{},", c.name.to_lowercase(), Affinity::of(&c.decl_type).name()));
        }
        canon.push('|');
        let mut others: Vec<String> = self
            .value_columns()
            .map(|c| format!("c:{}:{},", c.name.to_lowercase(), Affinity::of(&c.decl_type).name()))
            .collect();
        others.sort();
        canon.push_str(&others.concat());
        fnv1a64(canon.as_bytes())
    }
}

/// FNV-1a, 64-bit.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str, ty: &str, pk: u32) -> ColumnDef {
        ColumnDef { name: name.into(), decl_type: ty.into(), pk, not_null: false, has_default: false }
    }

    #[test]
    fn affinity_rules() {
        assert_eq!(Affinity::of("BIGINT"), Affinity::Integer);
        assert_eq!(Affinity::of("varchar(20)"), Affinity::Text);
        assert_eq!(Affinity::of(""), Affinity::Blob);
        assert_eq!(Affinity::of("DOUBLE PRECISION"), Affinity::Real);
        assert_eq!(Affinity::of("DECIMAL(10,2)"), Affinity::Numeric);
        // SQLite's famous quirk: "POINT" contains "INT".
        assert_eq!(Affinity::of("FLOATING POINT"), Affinity::Integer);
    }

    #[test]
    fn fingerprint_ignores_order_and_case_but_not_shape() {
        let a = TableSchema {
            name: "T".into(),
            columns: vec![col("id", "TEXT", 1), col("a", "INT", 0), col("b", "TEXT", 0)],
        };
        let b = TableSchema {
            name: "t".into(),
            columns: vec![col("B", "varchar", 0), col("ID", "text", 1), col("a", "integer", 0)],
        };
        assert_eq!(a.fingerprint(Algo::Cls), b.fingerprint(Algo::Cls));
        assert_ne!(a.fingerprint(Algo::Cls), a.fingerprint(Algo::Gos));
        let c = TableSchema {
            name: "t".into(),
            columns: vec![col("id", "TEXT", 1), col("a", "REAL", 0), col("b", "TEXT", 0)],
        };
        assert_ne!(a.fingerprint(Algo::Cls), c.fingerprint(Algo::Cls));
        // Pinned so that an accidental change of the rule is a visible diff.
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
