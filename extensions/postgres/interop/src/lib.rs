//! Replicas for the Postgres Sync tests: PostgreSQL databases with the `cloudsync`
//! extension (on the machine's server, `CLOUDSYNC_TEST_PG_URL`), and SQLite databases
//! with SQLite Sync registered, behind one small interface so tests can exchange
//! payloads between any two of them and compare their rows value by value.
//!
//! The tests are `#[ignore]`d in a plain `cargo test` because they need the extension
//! installed in the server; `cargo xtask pg test` installs it and runs them.

use std::fmt;

use postgres::types::Type;
use postgres::{Client, NoTls};
use rand::Rng;

/// A value as both engines can show it: SQLite's storage classes.
#[derive(Clone, PartialEq, PartialOrd)]
pub enum Cell {
    /// NULL.
    Null,
    /// INTEGER (PostgreSQL integers and booleans).
    Int(i64),
    /// REAL (compared bit for bit).
    Real(f64),
    /// TEXT.
    Text(String),
    /// BLOB.
    Blob(Vec<u8>),
}

impl fmt::Debug for Cell {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cell::Null => write!(f, "NULL"),
            Cell::Int(i) => write!(f, "{i}"),
            Cell::Real(r) => write!(f, "{r:?}"),
            Cell::Text(t) => write!(f, "{t:?}"),
            Cell::Blob(b) => write!(f, "x'{}'", b.iter().map(|b| format!("{b:02x}")).collect::<String>()),
        }
    }
}

/// The base URL of the test server.
pub fn server_url() -> String {
    std::env::var("CLOUDSYNC_TEST_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// The URL of database `db` on the test server.
pub fn url_for(db: &str) -> String {
    let base = server_url();
    match base.rsplit_once('/') {
        Some((server, _)) => format!("{server}/{db}"),
        None => format!("{base}/{db}"),
    }
}

/// A throw-away PostgreSQL database with the extension created; dropped on drop.
pub struct PgReplica {
    /// The database's name.
    pub name: String,
    /// A connection to it.
    pub client: Client,
}

impl PgReplica {
    /// Creates the database and the extension.
    // Not `Default`: each call creates a database on the server.
    #[allow(clippy::new_without_default)]
    pub fn new() -> PgReplica {
        let name = format!("cs_test_pg_{:016x}", rand::rng().random::<u64>());
        let mut admin = Client::connect(&server_url(), NoTls).expect("connect to the test PostgreSQL");
        admin.batch_execute(&format!("CREATE DATABASE {name}")).expect("create database");
        let mut client = Client::connect(&url_for(&name), NoTls).expect("connect to the new database");
        client
            .batch_execute("CREATE EXTENSION cloudsync")
            .expect("CREATE EXTENSION cloudsync (is the extension installed? `cargo xtask pg install`)");
        PgReplica { name, client }
    }

    /// Another connection to the same database.
    pub fn connect(&self) -> Client {
        Client::connect(&url_for(&self.name), NoTls).expect("connect")
    }

    /// Runs SQL, panicking with the statement on error.
    pub fn exec(&mut self, sql: &str) {
        if let Err(e) = self.client.batch_execute(sql) {
            panic!("{sql}: {}", describe(&e));
        }
    }

    /// Runs SQL expected to fail; returns `(SQLSTATE, message)`.
    pub fn fails(&mut self, sql: &str) -> (String, String) {
        match self.client.batch_execute(sql) {
            Ok(()) => panic!("expected an error from: {sql}"),
            Err(e) => error_parts(&e),
        }
    }

    /// Rows of a query, as cells.
    pub fn rows(&mut self, sql: &str) -> Vec<Vec<Cell>> {
        pg_rows(&mut self.client, sql)
    }

    /// One value.
    pub fn one(&mut self, sql: &str) -> Cell {
        self.rows(sql).into_iter().next().and_then(|r| r.into_iter().next()).unwrap_or(Cell::Null)
    }
}

impl Drop for PgReplica {
    fn drop(&mut self) {
        if let Ok(mut admin) = Client::connect(&server_url(), NoTls) {
            let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
        }
    }
}

/// `(SQLSTATE, message)` of a PostgreSQL error.
pub fn error_parts(e: &postgres::Error) -> (String, String) {
    match e.as_db_error() {
        Some(db) => (db.code().code().to_string(), db.message().to_string()),
        None => (String::new(), e.to_string()),
    }
}

/// A PostgreSQL error with its SQLSTATE, for panics.
pub fn describe(e: &postgres::Error) -> String {
    let (code, msg) = error_parts(e);
    format!("{code} {msg}")
}

/// Reads every row of `sql` as cells (integers, floats, text, bytea, bool).
pub fn pg_rows(client: &mut Client, sql: &str) -> Vec<Vec<Cell>> {
    let rows = client.query(sql, &[]).unwrap_or_else(|e| panic!("{sql}: {}", describe(&e)));
    rows.iter()
        .map(|row| {
            (0..row.len())
                .map(|i| {
                    let t = row.columns()[i].type_().clone();
                    let v = if t == Type::INT8 {
                        row.get::<_, Option<i64>>(i).map(Cell::Int)
                    } else if t == Type::INT4 {
                        row.get::<_, Option<i32>>(i).map(|v| Cell::Int(v.into()))
                    } else if t == Type::INT2 {
                        row.get::<_, Option<i16>>(i).map(|v| Cell::Int(v.into()))
                    } else if t == Type::BOOL {
                        row.get::<_, Option<bool>>(i).map(|v| Cell::Int(v.into()))
                    } else if t == Type::FLOAT8 {
                        row.get::<_, Option<f64>>(i).map(Cell::Real)
                    } else if t == Type::FLOAT4 {
                        row.get::<_, Option<f32>>(i).map(|v| Cell::Real(v.into()))
                    } else if t == Type::BYTEA {
                        row.get::<_, Option<Vec<u8>>>(i).map(Cell::Blob)
                    } else if t == Type::TEXT || t == Type::VARCHAR || t == Type::BPCHAR || t == Type::NAME {
                        row.get::<_, Option<String>>(i).map(Cell::Text)
                    } else {
                        panic!("{sql}: column {i} has type {t}; cast it to text, bigint, float8, bytea or bool")
                    };
                    v.unwrap_or(Cell::Null)
                })
                .collect()
        })
        .collect()
}

/// An in-memory SQLite database with SQLite Sync registered.
pub struct SqliteReplica {
    /// The connection.
    pub conn: rusqlite::Connection,
}

impl Default for SqliteReplica {
    fn default() -> Self {
        SqliteReplica::new()
    }
}

impl SqliteReplica {
    /// A fresh replica.
    pub fn new() -> SqliteReplica {
        let conn = rusqlite::Connection::open_in_memory().expect("open SQLite");
        cloudsync_sqlite::register(&conn).expect("register SQLite Sync");
        SqliteReplica { conn }
    }

    /// Runs SQL, panicking with the statement on error.
    pub fn exec(&self, sql: &str) {
        if let Err(e) = self.conn.execute_batch(sql) {
            panic!("{sql}: {e}");
        }
    }

    /// Rows of a query, as cells.
    pub fn rows(&self, sql: &str) -> Vec<Vec<Cell>> {
        let mut stmt = self.conn.prepare(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
        let n = stmt.column_count();
        stmt.query_map([], |r| {
            (0..n)
                .map(|i| {
                    Ok(match r.get_ref(i)? {
                        rusqlite::types::ValueRef::Null => Cell::Null,
                        rusqlite::types::ValueRef::Integer(v) => Cell::Int(v),
                        rusqlite::types::ValueRef::Real(v) => Cell::Real(v),
                        rusqlite::types::ValueRef::Text(t) => Cell::Text(String::from_utf8_lossy(t).into_owned()),
                        rusqlite::types::ValueRef::Blob(b) => Cell::Blob(b.to_vec()),
                    })
                })
                .collect()
        })
        .and_then(|rows| rows.collect())
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }
}

/// A replica of either engine.
pub trait Replica {
    /// Every change after `since` (a db_version), as one payload; None when empty.
    fn payload(&mut self, since: i64) -> Option<Vec<u8>>;
    /// Applies a payload; the number of changes applied, or the error.
    fn apply(&mut self, payload: &[u8]) -> Result<i64, String>;
    /// The current db_version.
    fn db_version(&mut self) -> i64;
    /// Rows of a query.
    fn select(&mut self, sql: &str) -> Vec<Vec<Cell>>;
    /// Runs statements.
    fn run(&mut self, sql: &str);
}

impl Replica for PgReplica {
    fn payload(&mut self, since: i64) -> Option<Vec<u8>> {
        self.client
            .query_one("SELECT cloudsync_payload_encode_since($1)", &[&since])
            .unwrap_or_else(|e| panic!("encode: {}", describe(&e)))
            .get(0)
    }

    fn apply(&mut self, payload: &[u8]) -> Result<i64, String> {
        self.client
            .query_one("SELECT cloudsync_payload_apply($1)", &[&payload])
            .map(|r| r.get(0))
            .map_err(|e| describe(&e))
    }

    fn db_version(&mut self) -> i64 {
        self.client.query_one("SELECT cloudsync_db_version()", &[]).map(|r| r.get(0)).expect("db_version")
    }

    fn select(&mut self, sql: &str) -> Vec<Vec<Cell>> {
        self.rows(sql)
    }

    fn run(&mut self, sql: &str) {
        self.exec(sql);
    }
}

impl Replica for SqliteReplica {
    fn payload(&mut self, since: i64) -> Option<Vec<u8>> {
        self.conn
            .query_row(
                "SELECT cloudsync_payload_encode(tbl, pk, col_name, col_value, col_version, db_version, site_id, cl, seq) \
                 FROM cloudsync_changes WHERE db_version > ?1",
                [since],
                |r| r.get(0),
            )
            .expect("encode")
    }

    fn apply(&mut self, payload: &[u8]) -> Result<i64, String> {
        self.conn.query_row("SELECT cloudsync_payload_apply(?1)", [payload], |r| r.get(0)).map_err(|e| e.to_string())
    }

    fn db_version(&mut self) -> i64 {
        self.conn.query_row("SELECT cloudsync_db_version()", [], |r| r.get(0)).expect("db_version")
    }

    fn select(&mut self, sql: &str) -> Vec<Vec<Cell>> {
        self.rows(sql)
    }

    fn run(&mut self, sql: &str) {
        self.exec(sql);
    }
}

/// Sends everything `from` has to `to`; returns the number of changes applied.
pub fn sync(from: &mut dyn Replica, to: &mut dyn Replica) -> i64 {
    match from.payload(0) {
        Some(p) => to.apply(&p).unwrap_or_else(|e| panic!("apply: {e}")),
        None => 0,
    }
}
