//! Row-level security through Postgres Sync: payloads applied as an impersonated role
//! (`cloudsync_payload_apply(payload, as_role)`) and feeds read for one
//! (`cloudsync_payload_encode_next(…, visible_to)`), with Supabase-style policies that
//! read the JWT claims from `request.jwt.claims`. SQLite replicas play the devices.

use cloudsync_pg_interop::{error_parts, Cell, PgReplica, Replica, SqliteReplica};

const SETUP: &str = r#"
DO $$ BEGIN CREATE ROLE authenticated NOLOGIN; EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$;
CREATE SCHEMA auth;
CREATE FUNCTION auth.uid() RETURNS text LANGUAGE sql STABLE
    AS $f$ SELECT nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub' $f$;
GRANT USAGE ON SCHEMA auth TO authenticated;
CREATE TABLE todos (id text PRIMARY KEY, owner_id text NOT NULL, title text, shared boolean NOT NULL DEFAULT false);
ALTER TABLE todos ENABLE ROW LEVEL SECURITY;
CREATE POLICY todos_read ON todos FOR SELECT TO authenticated USING (owner_id = auth.uid() OR shared);
CREATE POLICY todos_insert ON todos FOR INSERT TO authenticated WITH CHECK (owner_id = auth.uid());
CREATE POLICY todos_update ON todos FOR UPDATE TO authenticated
    USING (owner_id = auth.uid() OR shared) WITH CHECK (owner_id = auth.uid() OR shared);
CREATE POLICY todos_delete ON todos FOR DELETE TO authenticated USING (owner_id = auth.uid());
GRANT SELECT, INSERT, UPDATE, DELETE ON todos TO authenticated;
SELECT cloudsync_init('todos', 'cls', 2);
"#;

const DEVICE: &str = "CREATE TABLE todos (id TEXT PRIMARY KEY NOT NULL, owner_id TEXT NOT NULL DEFAULT '', title TEXT,
                      shared INTEGER NOT NULL DEFAULT 0); SELECT cloudsync_init('todos');";

fn claims(user: &str) -> String {
    format!(r#"{{"sub": "{user}", "role": "authenticated"}}"#)
}

/// Applies `payload` as `user` (role `authenticated`, the user's claims).
fn apply_as(pg: &mut PgReplica, payload: &[u8], user: &str) -> Result<i64, (String, String)> {
    let mut tx = pg.client.transaction().unwrap();
    tx.execute("SELECT set_config('request.jwt.claims', $1, true)", &[&claims(user)]).unwrap();
    let n = tx
        .query_one("SELECT cloudsync_payload_apply($1, 'authenticated')", &[&payload])
        .map(|r| r.get::<_, i64>(0))
        .map_err(|e| error_parts(&e))?;
    tx.commit().unwrap();
    Ok(n)
}

/// What `user` may download after `since`: (payload, db_version to resume from).
fn download_as(pg: &mut PgReplica, since: i64, user: &str, except: &[u8]) -> (Option<Vec<u8>>, i64) {
    let mut tx = pg.client.transaction().unwrap();
    tx.execute("SELECT set_config('request.jwt.claims', $1, true)", &[&claims(user)]).unwrap();
    let row = tx
        .query_one(
            "SELECT payload, db_version FROM cloudsync_payload_encode_next($1, $2, 'authenticated')",
            &[&since, &except],
        )
        .unwrap();
    tx.commit().unwrap();
    (row.get(0), row.get(1))
}

struct Device {
    lite: SqliteReplica,
    user: &'static str,
    sent: i64,
    received: i64,
}

impl Device {
    fn new(user: &'static str) -> Device {
        let lite = SqliteReplica::new();
        lite.exec(DEVICE);
        Device { lite, user, sent: 0, received: 0 }
    }

    fn site(&self) -> Vec<u8> {
        self.lite.conn.query_row("SELECT cloudsync_siteid()", [], |r| r.get(0)).unwrap()
    }

    /// Uploads what changed since the last upload.
    fn upload(&mut self, pg: &mut PgReplica) -> Result<i64, (String, String)> {
        let Some(p) = self.lite.payload(self.sent) else { return Ok(0) };
        let n = apply_as(pg, &p, self.user)?;
        self.sent = self.lite.db_version();
        Ok(n)
    }

    fn download(&mut self, pg: &mut PgReplica) {
        let (payload, upto) = download_as(pg, self.received, self.user, &self.site());
        if let Some(p) = payload {
            self.lite.apply(&p).unwrap();
        }
        self.received = upto;
        // What was just merged is not this device's to send back.
        self.sent = self.lite.db_version();
    }

    fn rows(&self) -> Vec<Vec<Cell>> {
        self.lite.rows("SELECT id, owner_id, title, shared FROM todos ORDER BY id")
    }
}

fn t(s: &str) -> Cell {
    Cell::Text(s.into())
}

#[test]
#[ignore = "needs the cloudsync extension installed in PostgreSQL: run `cargo xtask pg test`"]
fn policies_decide_what_each_user_writes_and_reads() {
    let mut pg = PgReplica::new();
    pg.exec(SETUP);
    let mut alice = Device::new("alice");
    let mut bob = Device::new("bob");

    // Each user writes their own rows: accepted.
    alice.lite.exec("INSERT INTO todos (id, owner_id, title) VALUES ('a1', 'alice', 'milk'), ('a2', 'alice', 'eggs')");
    bob.lite.exec("INSERT INTO todos (id, owner_id, title) VALUES ('b1', 'bob', 'bread')");
    assert!(alice.upload(&mut pg).unwrap() > 0);
    assert!(bob.upload(&mut pg).unwrap() > 0);
    assert_eq!(pg.one("SELECT count(*) FROM todos"), Cell::Int(3));

    // A row for someone else is refused by the INSERT policy, with its SQLSTATE and
    // the row named; nothing of the payload is applied.
    let before = pg.one("SELECT cloudsync_db_version()");
    alice.lite.exec("INSERT INTO todos (id, owner_id, title) VALUES ('x1', 'bob', 'forged')");
    let (code, message) = alice.upload(&mut pg).unwrap_err();
    assert_eq!(code, "42501", "{message}");
    assert!(message.contains("('x1')") && message.contains("row-level security"), "{message}");
    assert_eq!(pg.one("SELECT count(*) FROM todos WHERE id = 'x1'"), Cell::Int(0));
    assert_eq!(pg.one("SELECT cloudsync_db_version()"), before);
    alice.lite.exec("DELETE FROM todos WHERE id = 'x1'");
    alice.sent = alice.lite.db_version();

    // Downloads carry only visible rows.
    alice.download(&mut pg);
    bob.download(&mut pg);
    assert_eq!(alice.rows().len(), 2);
    assert_eq!(bob.rows(), [vec![t("b1"), t("bob"), t("bread"), Cell::Int(0)]]);

    // A change to a row bob cannot see (he made up its key) is refused, not skipped:
    // PostgreSQL's UPDATE would silently touch nothing.
    bob.lite.exec("INSERT INTO todos (id, owner_id, title) VALUES ('a1', 'bob', 'mine now')");
    let (code, message) = bob.upload(&mut pg).unwrap_err();
    assert_eq!(code, "42501");
    assert!(message.contains("not visible to role authenticated"), "{message}");
    assert_eq!(pg.one("SELECT title FROM todos WHERE id = 'a1'"), t("milk"));
    bob.lite.exec("DELETE FROM todos WHERE id = 'a1'");
    bob.sent = bob.lite.db_version();

    // A shared row written directly in PostgreSQL reaches both; bob may edit it.
    pg.exec("INSERT INTO todos (id, owner_id, title, shared) VALUES ('s1', 'alice', 'party', true)");
    alice.download(&mut pg);
    bob.download(&mut pg);
    assert!(bob.rows().iter().any(|r| r[0] == t("s1")), "{:?}", bob.rows());
    bob.lite.exec("UPDATE todos SET title = 'party at 8' WHERE id = 's1'");
    bob.upload(&mut pg).unwrap();
    alice.download(&mut pg);
    assert!(alice.rows().iter().any(|r| r[0] == t("s1") && r[2] == t("party at 8")), "{:?}", alice.rows());

    // A direct change in PostgreSQL reaches only those who can see the row.
    pg.exec("UPDATE todos SET title = 'oat milk' WHERE id = 'a1'");
    let bob_before = bob.rows();
    alice.download(&mut pg);
    bob.download(&mut pg);
    assert!(alice.rows().iter().any(|r| r[0] == t("a1") && r[2] == t("oat milk")));
    assert_eq!(bob.rows(), bob_before);

    // Ownership moves a2 to bob: it reaches him whole on his next download, although
    // only owner_id changed after his cursor.
    pg.exec("UPDATE todos SET owner_id = 'bob' WHERE id = 'a2'");
    bob.download(&mut pg);
    assert!(bob.rows().contains(&vec![t("a2"), t("bob"), t("eggs"), Cell::Int(0)]), "{:?}", bob.rows());

    // A deletion reaches everyone (by key).
    pg.exec("DELETE FROM todos WHERE id = 's1'");
    alice.download(&mut pg);
    bob.download(&mut pg);
    assert!(!alice.rows().iter().any(|r| r[0] == t("s1")) && !bob.rows().iter().any(|r| r[0] == t("s1")));

    // The caller's own role (here a superuser, BYPASSRLS) sees and writes everything.
    let everything = pg
        .client
        .query_one("SELECT changes FROM cloudsync_payload_encode_next(0, NULL, NULL)", &[])
        .unwrap()
        .get::<_, i64>(0);
    let as_bob = pg
        .client
        .query_one(
            "SELECT (SELECT changes FROM cloudsync_payload_encode_next(0, NULL, 'authenticated')) \
             FROM (SELECT set_config('request.jwt.claims', $1, true)) s",
            &[&claims("bob")],
        )
        .unwrap()
        .get::<_, i64>(0);
    assert!(everything > as_bob, "{everything} vs {as_bob}");
}

#[test]
#[ignore = "needs the cloudsync extension installed in PostgreSQL: run `cargo xtask pg test`"]
fn impersonation_needs_membership_and_table_privileges() {
    let mut pg = PgReplica::new();
    pg.exec(SETUP);
    pg.exec(
        "DO $$ BEGIN CREATE ROLE cs_test_noprivs NOLOGIN; EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$;",
    );
    let mut alice = Device::new("alice");
    alice.lite.exec("INSERT INTO todos (id, owner_id, title) VALUES ('a1', 'alice', 'milk')");
    let p = alice.lite.payload(0).unwrap();
    // A role without privileges on the table: 42501 from PostgreSQL's privilege check.
    let mut tx = pg.client.transaction().unwrap();
    let e = tx.query_one("SELECT cloudsync_payload_apply($1, 'cs_test_noprivs')", &[&p]).unwrap_err();
    assert_eq!(error_parts(&e).0, "42501", "{}", error_parts(&e).1);
    drop(tx);
    // A caller that is not a member of the target role cannot switch to it.
    // A login that is not a member of the target role cannot switch to it (PostgreSQL
    // checks the session user's membership).
    pg.exec(
        "DO $$ BEGIN CREATE ROLE cs_test_login LOGIN; EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$;
         GRANT USAGE ON SCHEMA cloudsync TO cs_test_login; GRANT ALL ON ALL TABLES IN SCHEMA cloudsync TO cs_test_login;",
    );
    let url = cloudsync_pg_interop::url_for(&pg.name).replacen("postgres@", "cs_test_login@", 1);
    let mut login = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let mut tx = login.transaction().unwrap();
    let e = tx.query_one("SELECT cloudsync_payload_apply($1, 'authenticated')", &[&p]).unwrap_err();
    let (code, message) = error_parts(&e);
    assert_eq!(code, "42501", "{message}");
    assert!(message.contains("permission denied to set role"), "{message}");
    drop(tx);
    assert_eq!(pg.one("SELECT count(*) FROM todos"), Cell::Int(0));
}
