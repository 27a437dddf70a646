//! `Affinity::converts` (the core's rule for which values a column would store as
//! something else, used to refuse such changes before an apply) checked against SQLite
//! itself: a value is stored unchanged exactly when the rule says so, for every
//! affinity, on tricky numbers and numeric-looking text.

use cloudsync_core::schema::Affinity;
use cloudsync_core::Value;
use proptest::prelude::*;
use rusqlite::types::{Value as Sql, ValueRef};
use rusqlite::Connection;

/// Declared types of each affinity, and STRICT's `ANY` (which converts nothing).
const COLUMNS: [(&str, Affinity); 6] = [
    ("INTEGER", Affinity::Integer),
    ("TEXT", Affinity::Text),
    ("", Affinity::Blob),
    ("REAL", Affinity::Real),
    ("NUMERIC", Affinity::Numeric),
    ("DECIMAL(10,2)", Affinity::Numeric),
];

fn db() -> Connection {
    let c = Connection::open_in_memory().unwrap();
    for (i, (decl, _)) in COLUMNS.iter().enumerate() {
        c.execute_batch(&format!("CREATE TABLE t{i} (v {decl})")).unwrap();
    }
    c.execute_batch("CREATE TABLE strict_any (v ANY) STRICT").unwrap();
    c
}

fn to_sql(v: &Value) -> Sql {
    match v {
        Value::Null => Sql::Null,
        Value::Integer(i) => Sql::Integer(*i),
        Value::Real(r) => Sql::Real(*r),
        Value::Text(t) => Sql::Text(String::from_utf8(t.clone()).unwrap()),
        Value::Blob(b) => Sql::Blob(b.clone()),
    }
}

/// Stores `v` in `table` and reads it back; whether it came back identical (type and
/// bits).
fn unchanged(c: &Connection, table: &str, v: &Value) -> bool {
    c.execute(&format!("DELETE FROM {table}"), []).unwrap();
    c.execute(&format!("INSERT INTO {table} (v) VALUES (?1)"), [to_sql(v)]).unwrap();
    c.query_row(&format!("SELECT v FROM {table}"), [], |r| {
        Ok(match (r.get_ref(0)?, v) {
            (ValueRef::Null, Value::Null) => true,
            (ValueRef::Integer(a), Value::Integer(b)) => a == *b,
            (ValueRef::Real(a), Value::Real(b)) => a.to_bits() == b.to_bits(),
            (ValueRef::Text(a), Value::Text(b)) => a == b.as_slice(),
            (ValueRef::Blob(a), Value::Blob(b)) => a == b.as_slice(),
            _ => false,
        })
    })
    .unwrap()
}

fn check(c: &Connection, v: &Value) {
    for (i, (decl, affinity)) in COLUMNS.iter().enumerate() {
        assert_eq!(Affinity::of(decl), *affinity);
        assert_eq!(
            affinity.converts(v).is_none(),
            unchanged(c, &format!("t{i}"), v),
            "{v:?} in a column declared {decl:?}: converts says {:?}",
            affinity.converts(v)
        );
    }
    // STRICT ANY: the adapter gives it Blob affinity.
    assert_eq!(Affinity::Blob.converts(v).is_none(), unchanged(c, "strict_any", v), "{v:?} in a STRICT ANY column");
}

const TRICKY_TEXT: &[&str] = &[
    "0",
    "-0",
    "+0",
    "12",
    " 12",
    "12 ",
    "\t12\n",
    "0012",
    "1.",
    ".5",
    "+.5",
    "-.5e-3",
    "1e5",
    "1E5",
    "1e+5",
    "1e",
    "e5",
    ".",
    "+",
    "-",
    "",
    " ",
    "1.5.",
    "1e5.5",
    "0x10",
    "0X1F",
    "inf",
    "-inf",
    "NaN",
    "infinity",
    "1_000",
    "1,5",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775808",
    "-9223372036854775809",
    "1e400",
    "3.0e+5",
    "12abc",
    "abc",
    "1 2",
    "١٢",
    "12\u{a0}",
    "--1",
    "+-1",
    "1e-400",
    "0.1",
    "00.5",
    "5e-324",
];

fn value() -> impl Strategy<Value = Value> {
    const SPECIALS: [f64; 15] = [
        0.0,
        -0.0,
        1.0,
        -1.5,
        0.1,
        1e300,
        -1e-300,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NAN,
        9_223_372_036_854_775_808.0,
        -9_223_372_036_854_775_808.0,
        9_223_372_036_854_774_784.0,
        4_503_599_627_370_496.5,
        f64::MIN_POSITIVE,
    ];
    let specials: &'static [f64] = &SPECIALS;
    prop_oneof![
        Just(Value::Null),
        any::<i64>().prop_map(Value::Integer),
        prop::sample::select(&[0i64, -1, 1, i64::MAX, i64::MIN][..]).prop_map(Value::Integer),
        any::<f64>().prop_map(Value::Real),
        prop::sample::select(specials).prop_map(Value::Real),
        (-1e6f64..1e6).prop_map(|r| Value::Real(r.trunc())),
        prop::sample::select(TRICKY_TEXT).prop_map(|t| Value::Text(t.as_bytes().to_vec())),
        "[ \t0-9+.eExa-f-]{0,10}".prop_map(|t| Value::Text(t.into_bytes())),
        ".{0,8}".prop_map(|t| Value::Text(t.into_bytes())),
        prop::collection::vec(any::<u8>(), 0..6).prop_map(Value::Blob),
    ]
}

#[test]
fn tricky_values_are_converted_exactly_when_the_rule_says() {
    let c = db();
    for t in TRICKY_TEXT {
        check(&c, &Value::Text(t.as_bytes().to_vec()));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn the_rule_agrees_with_sqlite(v in value()) {
        thread_local!(static DB: Connection = db());
        DB.with(|c| check(c, &v));
    }
}
