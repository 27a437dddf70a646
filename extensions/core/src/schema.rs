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
