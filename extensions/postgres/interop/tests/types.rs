//! The type mapping, end to end: every mapped PostgreSQL type goes to a SQLite device
//! as the documented value, comes back from the device, and reaches a second
//! PostgreSQL database unchanged; values a column cannot hold exactly are refused
//! with the table, column and value, and nothing of the payload is applied.

use cloudsync_pg_interop::{sync, Cell, PgReplica, Replica, SqliteReplica};

const PG_TYPED: &str = "
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TABLE typed (
    id uuid PRIMARY KEY,
    i2 smallint, i4 integer, i8 bigint,
    f4 real, f8 double precision,
    num numeric(10, 2),
    flag boolean,
    t text, vc varchar(5), ch char(3),
    u uuid,
    ts timestamptz, tsn timestamp, d date, tm time,
    j json, jb jsonb,
    arr integer[], tarr text[],
    m mood,
    bin bytea
);
SELECT cloudsync_init('typed');";

const LITE_TYPED: &str = "
CREATE TABLE typed (
    id TEXT PRIMARY KEY NOT NULL,
    i2 INTEGER, i4 INTEGER, i8 INTEGER, f4 REAL, f8 REAL, num TEXT, flag INTEGER,
    t TEXT, vc TEXT, ch TEXT, u TEXT, ts TEXT, tsn TEXT, d TEXT, tm TEXT, j TEXT, jb TEXT,
    arr TEXT, tarr TEXT, m TEXT, bin BLOB
);
SELECT cloudsync_init('typed');";

const ID: &str = "0190c3c4-8f2e-7b6a-9a1b-123456789abc";

const COLUMNS: &str = "id, i2, i4, i8, f4, f8, num, flag, t, vc, ch, u, ts, tsn, d, tm, j, jb, arr, tarr, m, bin";

/// The PostgreSQL row, each column cast the way the mapping documents it.
const PG_AS_DOCUMENTED: &str =
    "SELECT id::text, i2, i4, i8, f4::float8, f8, num::text, flag, t, vc::text, ch::text, u::text,
    to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), to_char(tsn, 'YYYY-MM-DD\"T\"HH24:MI:SS.US'),
    to_char(d, 'YYYY-MM-DD'), tm::text, j::text, jb::text, to_jsonb(arr)::text, to_jsonb(tarr)::text, m::text, bin
    FROM typed ORDER BY id";

fn t(s: &str) -> Cell {
    Cell::Text(s.into())
}

#[test]
#[ignore = "needs the cloudsync extension installed in PostgreSQL: run `cargo xtask pg test`"]
fn every_mapped_type_round_trips_through_a_sqlite_device() {
    let mut p = PgReplica::new();
    p.exec(PG_TYPED);
    p.exec(&format!(
        "SET TimeZone = 'America/New_York';
         INSERT INTO typed ({COLUMNS}) VALUES ('{ID}', -32768, 2147483647, -9223372036854775807, 1.5, 0.1,
            12.50, true, 'l''été ☃', 'abcde', 'ab', '6F9619FF-8B86-D011-B42D-00C04FC964FF',
            '2024-05-06 07:08:09.123456+02', '2024-05-06 07:08:09', '2024-02-29', '23:59:58.5',
            '{{\"b\": 1,  \"a\": [true, null]}}', '{{\"b\": 1,  \"a\": 2}}', '{{1,NULL,3}}', '{{\"x\",\"y z\"}}',
            'happy', '\\x00ff10')"
    ));
    let mut l = SqliteReplica::new();
    l.exec(LITE_TYPED);
    sync(&mut p, &mut l);
    let expected = vec![
        t(ID),
        Cell::Int(-32768),
        Cell::Int(2_147_483_647),
        Cell::Int(-9_223_372_036_854_775_807),
        Cell::Real(1.5),
        Cell::Real(0.1),
        t("12.50"),
        Cell::Int(1),
        t("l'été ☃"),
        t("abcde"),
        t("ab"),
        t("6f9619ff-8b86-d011-b42d-00c04fc964ff"),
        t("2024-05-06T05:08:09.123456Z"),
        t("2024-05-06T07:08:09.000000"),
        t("2024-02-29"),
        t("23:59:58.5"),
        t("{\"b\": 1,  \"a\": [true, null]}"),
        t("{\"a\": 2, \"b\": 1}"),
        t("[1, null, 3]"),
        t("[\"x\", \"y z\"]"),
        t("happy"),
        Cell::Blob(vec![0x00, 0xff, 0x10]),
    ];
    assert_eq!(l.rows(&format!("SELECT {COLUMNS} FROM typed")), vec![expected.clone()]);
    assert_eq!(p.rows(PG_AS_DOCUMENTED), vec![expected]);

    // The device edits every column in its own representation.
    l.exec(
        "UPDATE typed SET i2 = 7, i4 = -1, i8 = 9007199254740993, f4 = 0.25, f8 = -2.5e-300, num = '-0.05', flag = 0,
            t = '', vc = 'é', ch = 'xyz', u = '00000000-0000-0000-0000-000000000001',
            ts = '2001-02-03 04:05:06', tsn = '1999-12-31T23:59:59.999999', d = '1970-01-01', tm = '00:00:01',
            j = '[1, 2]', jb = '{\"k\": \"v\"}', arr = '[]', tarr = '[\"only\", null]', m = 'sad', bin = X''",
    );
    sync(&mut l, &mut p);
    let edited = vec![
        t(ID),
        Cell::Int(7),
        Cell::Int(-1),
        Cell::Int(9_007_199_254_740_993),
        Cell::Real(0.25),
        Cell::Real(-2.5e-300),
        t("-0.05"),
        Cell::Int(0),
        t(""),
        t("é"),
        t("xyz"),
        t("00000000-0000-0000-0000-000000000001"),
        t("2001-02-03T04:05:06.000000Z"),
        t("1999-12-31T23:59:59.999999"),
        t("1970-01-01"),
        t("00:00:01"),
        t("[1, 2]"),
        t("{\"k\": \"v\"}"),
        t("[]"),
        t("[\"only\", null]"),
        t("sad"),
        Cell::Blob(vec![]),
    ];
    assert_eq!(p.rows(PG_AS_DOCUMENTED), vec![edited.clone()]);

    // A second PostgreSQL replica receiving from the first holds the same values.
    let mut q = PgReplica::new();
    q.exec(PG_TYPED);
    sync(&mut p, &mut q);
    assert_eq!(q.rows(PG_AS_DOCUMENTED), vec![edited]);
    // Booleans, integers and NULLs come back to the device as they left it.
    sync(&mut p, &mut l);
    assert_eq!(
        l.rows("SELECT flag, i8, arr FROM typed"),
        vec![vec![Cell::Int(0), Cell::Int(9_007_199_254_740_993), t("[]")]]
    );
}

#[test]
#[ignore = "needs the cloudsync extension installed in PostgreSQL: run `cargo xtask pg test`"]
fn values_a_column_cannot_hold_are_refused_with_table_column_and_value() {
    let mut p = PgReplica::new();
    p.exec(PG_TYPED);
    let cases: [(&str, &str, &str, &str); 12] = [
        ("i2", "40000", "22003", "40000"),
        ("i4", "'twelve'", "22P02", "'twelve'"),
        ("f4", "1e300", "22003", "1e300"),
        ("num", "'1.234'", "22003", "'1.234'"),
        ("flag", "2", "42804", "2"),
        ("vc", "'toolong'", "22001", "'toolong'"),
        ("u", "'nope'", "22P02", "'nope'"),
        ("ts", "'yesterday'", "22P02", "'yesterday'"),
        ("d", "'29/02/2024'", "22P02", "'29/02/2024'"),
        ("jb", "'{bad json'", "22P02", "'{bad json'"),
        ("arr", "'[[1]]'", "22P02", "'[[1]]'"),
        ("m", "'meh'", "22P02", "'meh'"),
    ];
    for (col, value, code, shown) in cases {
        let mut l = SqliteReplica::new();
        l.exec(LITE_TYPED);
        l.exec(&format!("INSERT INTO typed (id, t) VALUES ('{ID}', 'kept?'); UPDATE typed SET {col} = {value}"));
        let version = p.db_version();
        let err = p.apply(&l.payload(0).unwrap()).unwrap_err();
        assert!(err.starts_with(code), "{col} = {value}: {err}");
        assert!(
            err.contains(&format!("column \"{col}\"")) && err.contains("public.typed") && err.contains(shown),
            "{col} = {value}: {err}"
        );
        // Nothing of the payload was applied.
        assert_eq!(p.one("SELECT count(*) FROM typed"), Cell::Int(0));
        assert_eq!(p.db_version(), version);
    }
    // A constraint of the user's schema: reported with its SQLSTATE, the table and key.
    p.exec("ALTER TABLE typed ADD CONSTRAINT small CHECK (i4 < 100)");
    let mut l = SqliteReplica::new();
    l.exec(LITE_TYPED);
    l.exec(&format!("INSERT INTO typed (id, i4) VALUES ('{ID}', 1000)"));
    let err = p.apply(&l.payload(0).unwrap()).unwrap_err();
    assert!(err.starts_with("23514") && err.contains("public.typed") && err.contains(ID), "{err}");
}

/// A SQLite column without a type holds any class of value; translated, it becomes the
/// `cloudsync_any` domain, and every value comes back to another device as the class
/// and value it was written with: integers (to the 64-bit limits), reals (whole ones,
/// huge and tiny ones, infinities), text (numeric-looking too), blobs, NULL. Values
/// written directly in PostgreSQL in the documented JSON forms reach devices as their
/// class; any other JSON is refused by the domain.
#[test]
#[ignore = "needs the cloudsync extension installed in PostgreSQL: run `cargo xtask pg test`"]
fn a_column_without_a_type_round_trips_every_class() {
    const LITE: &str = "CREATE TABLE kv (id TEXT PRIMARY KEY NOT NULL, v); SELECT cloudsync_init('kv');";
    let translation = cloudsync_ddl::translate("CREATE TABLE kv (id TEXT PRIMARY KEY NOT NULL, v)").unwrap();
    let mut pg = PgReplica::new();
    pg.exec(&translation.script());
    pg.exec("SELECT cloudsync_init('kv')");
    let mut a = SqliteReplica::new();
    a.exec(LITE);
    a.exec(
        "INSERT INTO kv VALUES ('i1', 42), ('i2', -7), ('i3', 9223372036854775807), ('i4', -9223372036854775808),
            ('r1', 1.5), ('r2', 3.0), ('r3', 1e300), ('r4', -2.5e-300), ('r5', 1e999), ('r6', -1e999), ('r7', 1e18),
            ('t1', 'text'), ('t2', '42'), ('t3', '1.5'), ('t4', 'é \"quoted\" \\ back'), ('t5', ''),
            ('b1', X'00ff10'), ('b2', X''), ('n1', NULL)",
    );
    assert!(sync(&mut a, &mut pg) > 0);
    // PostgreSQL holds the documented JSON forms.
    assert_eq!(pg.one("SELECT v::text FROM kv WHERE id = 'i1'"), Cell::Text("42".into()));
    assert_eq!(pg.one("SELECT v::text FROM kv WHERE id = 'r2'"), Cell::Text("3.0".into()));
    assert_eq!(pg.one("SELECT v::text FROM kv WHERE id = 't2'"), Cell::Text("\"42\"".into()));
    assert_eq!(pg.one("SELECT v::text FROM kv WHERE id = 'b1'"), Cell::Text(r#"{"blob": "00ff10"}"#.into()));
    assert_eq!(pg.one("SELECT v::text FROM kv WHERE id = 'r5'"), Cell::Text(r#"{"real": "Infinity"}"#.into()));
    assert_eq!(pg.one("SELECT jsonb_typeof(v) FROM kv WHERE id = 'n1'"), Cell::Null);

    // Written directly in PostgreSQL, in the documented forms.
    pg.exec(
        r#"INSERT INTO kv VALUES ('p1', '5'), ('p2', '"five"'), ('p3', '{"blob": "0A0b"}'), ('p4', '2.50'),
            ('p5', '1e3'), ('p6', '{"real": "-Infinity"}')"#,
    );
    for bad in [r#"'{"x": 1}'"#, "'true'", "'[1]'", r#"'{"blob": 1}'"#, r#"'{"blob": "00", "real": "1"}'"#] {
        let (code, _) = pg.fails(&format!("INSERT INTO kv VALUES ('bad', {bad})"));
        assert_eq!(code, "23514", "{bad} must be refused by the domain");
    }
    let mut b = SqliteReplica::new();
    b.exec(LITE);
    assert!(sync(&mut pg, &mut b) > 0);
    let shown = "SELECT id, typeof(v), quote(v) FROM kv ORDER BY id";
    let on_b = b.rows(shown);
    let expected_direct = [
        ("p1", "integer", "5"),
        ("p2", "text", "'five'"),
        ("p3", "blob", "X'0A0B'"),
        ("p4", "real", "2.5"),
        // jsonb keeps no exponent: 1e3 reads back as the integer it prints, 1000.
        ("p5", "integer", "1000"),
    ];
    let minus_infinity = match &b.rows("SELECT quote(-1e999)")[0][0] {
        Cell::Text(s) => s.clone(),
        other => panic!("{other:?}"),
    };
    for (id, class, quoted) in expected_direct.into_iter().chain([("p6", "real", minus_infinity.as_str())]) {
        let row = on_b.iter().find(|r| r[0] == t(id)).unwrap_or_else(|| panic!("{id} missing: {on_b:?}"));
        assert_eq!((&row[1], &row[2]), (&t(class), &t(quoted)), "{id}");
    }
    // Everything device A wrote is on device B exactly: class and value.
    let on_a = a.rows(shown);
    let b_of_a: Vec<Vec<Cell>> =
        on_b.into_iter().filter(|r| !matches!(&r[0], Cell::Text(id) if id.starts_with('p'))).collect();
    assert_eq!(b_of_a, on_a);
}
