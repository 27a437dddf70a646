use super::*;

fn ok(sql: &str) -> Translation {
    translate(sql).unwrap_or_else(|e| panic!("{sql}: {e}"))
}

fn refused(sql: &str) -> Vec<Refusal> {
    match translate(sql) {
        Err(TranslateError::Refused(r)) => r,
        other => panic!("{sql}: expected a refusal, got {other:?}"),
    }
}

#[test]
fn types_follow_sqlite_affinity() {
    let t = ok("CREATE TABLE t (id TEXT PRIMARY KEY NOT NULL, a INT, b VARCHAR(10), c REAL, d BLOB, e BOOLEAN, \
                f DECIMAL(5,2), g DATETIME, h UUID, i DOUBLE PRECISION, j NVARCHAR, k FLOATING POINT, l BIGINT)");
    let create = &t.statements[0];
    for line in [
        "\"a\" bigint",
        "\"b\" text",
        "\"c\" double precision",
        "\"d\" bytea",
        "\"e\" boolean",
        "\"f\" numeric",
        "\"g\" text",
        "\"h\" text",
        "\"i\" double precision",
        "\"j\" text",
        // "FLOATING POINT" has INT in it: INTEGER affinity, as SQLite decides.
        "\"k\" bigint",
        "\"l\" bigint",
    ] {
        assert!(create.contains(line), "{line} in\n{create}");
    }
    let strict = ok("CREATE TABLE s (id INTEGER PRIMARY KEY, n INT, r REAL, x TEXT, b BLOB) STRICT");
    assert!(strict.statements[0].contains("\"n\" bigint") && strict.statements[0].contains("\"b\" bytea"));
}

#[test]
fn identifiers_are_always_quoted_as_declared() {
    let t = ok(r#"CREATE TABLE "order" ([user] TEXT PRIMARY KEY NOT NULL, `group` INTEGER, "we""ird name" TEXT);
                  CREATE TABLE [Order Details] (id TEXT PRIMARY KEY NOT NULL, o TEXT REFERENCES "ORDER"(USER));"#);
    assert!(t.statements[0].starts_with("CREATE TABLE \"order\" (\n    \"user\" text NOT NULL,\n    \"group\" bigint,\n    \"we\"\"ird name\" text,\n    PRIMARY KEY (\"user\")\n)"), "{}", t.statements[0]);
    assert!(t.statements[1].starts_with("CREATE TABLE \"Order Details\""));
    // References resolve (case-insensitively) to the declared spelling.
    assert_eq!(
        t.statements[2],
        "ALTER TABLE \"Order Details\" ADD FOREIGN KEY (\"o\") REFERENCES \"order\" (\"user\") DEFERRABLE INITIALLY DEFERRED"
    );
}

#[test]
fn rowid_keys_are_flagged_and_get_no_sequence() {
    let t = ok("CREATE TABLE a (id INTEGER PRIMARY KEY AUTOINCREMENT, x TEXT);
                CREATE TABLE b (id INT PRIMARY KEY, x TEXT);
                CREATE TABLE c (id INTEGER, PRIMARY KEY (id));
                CREATE TABLE d (id INTEGER PRIMARY KEY, x TEXT) WITHOUT ROWID;
                CREATE TABLE e (id INTEGER PRIMARY KEY DESC, x TEXT);
                CREATE TABLE f (x TEXT);");
    let flags: Vec<(bool, bool)> = t.tables.iter().map(|x| (x.rowid_key, x.unsynced.is_some())).collect();
    assert_eq!(flags, [(true, false), (false, false), (true, false), (false, false), (false, false), (false, true)]);
    assert!(!t.script().contains("serial") && !t.script().contains("IDENTITY") && !t.script().contains("nextval"));
}

#[test]
fn defaults_translate_or_are_refused() {
    let t = ok("CREATE TABLE t (id TEXT PRIMARY KEY NOT NULL,
                  a INTEGER DEFAULT -5, b INTEGER DEFAULT FALSE, c BOOLEAN DEFAULT 1, d BOOLEAN DEFAULT TRUE,
                  e TEXT DEFAULT 'it''s', f TEXT DEFAULT \"dq\", g TEXT DEFAULT 7, h BLOB DEFAULT X'00FF',
                  i TEXT DEFAULT CURRENT_TIMESTAMP, j TEXT DEFAULT (datetime('now')), k INTEGER DEFAULT (strftime('%s', 'now')),
                  l INTEGER NOT NULL DEFAULT (cast(strftime('%s', 'now') as int)), m REAL DEFAULT (unixepoch('subsec')),
                  n TEXT DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')), o REAL DEFAULT 1.5e3, p TEXT DEFAULT NULL,
                  q DATE DEFAULT CURRENT_DATE)");
    let s = &t.statements[0];
    for want in [
        "\"a\" bigint DEFAULT -5",
        "\"b\" bigint DEFAULT 0",
        "\"c\" boolean DEFAULT true",
        "\"d\" boolean DEFAULT true",
        "\"e\" text DEFAULT 'it''s'",
        "\"f\" text DEFAULT 'dq'",
        "\"g\" text DEFAULT '7'",
        "\"h\" bytea DEFAULT '\\x00FF'::bytea",
        "\"i\" text DEFAULT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS')",
        "\"j\" text DEFAULT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS')",
        "\"k\" bigint DEFAULT (extract(epoch FROM now()))::bigint",
        "\"l\" bigint NOT NULL DEFAULT (extract(epoch FROM now()))::bigint",
        "\"m\" double precision DEFAULT (extract(epoch FROM now()))::double precision",
        "\"n\" text DEFAULT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')",
        "\"o\" double precision DEFAULT 1.5e3",
        "\"p\" text DEFAULT NULL",
        "\"q\" text DEFAULT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
    ] {
        assert!(s.contains(want), "{want} in\n{s}");
    }
    let r = refused(
        "CREATE TABLE t (id TEXT PRIMARY KEY NOT NULL, a INTEGER DEFAULT (datetime('now', 'localtime')),
                       b INTEGER DEFAULT CURRENT_TIMESTAMP, c INTEGER DEFAULT 'x', d TEXT DEFAULT (random()))",
    );
    let cols: Vec<(Reason, Option<&str>)> = r.iter().map(|x| (x.reason, x.column.as_deref())).collect();
    assert_eq!(
        cols,
        [
            (Reason::Default, Some("a")),
            (Reason::Default, Some("b")),
            (Reason::Default, Some("c")),
            (Reason::Default, Some("d"))
        ]
    );
    assert!(r[0].construct.contains("localtime"), "{}", r[0]);
}

#[test]
fn constraints_and_expressions() {
    let t = ok("CREATE TABLE p (id TEXT PRIMARY KEY NOT NULL ON CONFLICT ABORT, name TEXT COLLATE NOCASE UNIQUE,
                  flag BOOL NOT NULL DEFAULT 0 CHECK (flag IN (0, 1)), n INTEGER CHECK (n >= 0 AND n == abs(n)),
                  s TEXT CHECK (s IS NOT 'x' AND s LIKE 'a%' AND ifnull(s, '') <> ''), m TEXT COLLATE BINARY,
                  u TEXT GENERATED ALWAYS AS (upper(s)) VIRTUAL, CHECK (length(name) < 100 OR name IS NULL));
                CREATE TABLE c (id TEXT PRIMARY KEY NOT NULL, p TEXT NOT NULL REFERENCES p ON DELETE CASCADE,
                  x INTEGER, UNIQUE (p, x));
                CREATE UNIQUE INDEX c_x ON c (x DESC, p COLLATE NOCASE) WHERE x IS NOT NULL;");
    let s = t.script();
    for want in [
        "CREATE COLLATION IF NOT EXISTS \"cloudsync_nocase\" (provider = icu, locale = 'und-u-ks-level2', deterministic = false);\n",
        "\"id\" text NOT NULL,",
        "\"name\" text COLLATE \"cloudsync_nocase\" UNIQUE",
        "\"flag\" boolean NOT NULL DEFAULT false CHECK (\"flag\" IN (false, true))",
        "\"n\" bigint CHECK (\"n\" >= 0 AND \"n\" = abs(\"n\"))",
        "CHECK (\"s\" IS DISTINCT FROM 'x' AND \"s\" ILIKE 'a%' AND coalesce(\"s\", '') <> '')",
        "\"m\" text,",
        "\"u\" text GENERATED ALWAYS AS (upper(\"s\")) STORED",
        "CHECK (length(\"name\") < 100 OR \"name\" IS NULL)",
        "UNIQUE (\"p\", \"x\")",
        "ALTER TABLE \"c\" ADD FOREIGN KEY (\"p\") REFERENCES \"p\" (\"id\") ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED;",
        "CREATE UNIQUE INDEX IF NOT EXISTS \"c_x\" ON \"c\" (\"x\" DESC, \"p\" COLLATE \"cloudsync_nocase\") WHERE \"x\" IS NOT NULL;",
    ] {
        assert!(s.contains(want), "{want} in\n{s}");
    }
    // Foreign keys come after every table: a forward reference works.
    let fwd = ok("CREATE TABLE a (id TEXT PRIMARY KEY NOT NULL, b TEXT REFERENCES b(id));
                  CREATE TABLE b (id TEXT PRIMARY KEY NOT NULL);");
    assert!(fwd.statements[2].starts_with("ALTER TABLE \"a\" ADD FOREIGN KEY"));
}

#[test]
fn every_refusal_is_listed_with_table_column_and_construct() {
    let r = refused(
        "CREATE TEMP TABLE tmp (id TEXT PRIMARY KEY);
         CREATE TABLE t (id TEXT PRIMARY KEY ON CONFLICT REPLACE, a CHECK (a > 0), b TEXT COLLATE RTRIM, c TEXT CHECK (c GLOB b),
           d TEXT CHECK (json_valid(d)), e TEXT REFERENCES nowhere(id), f TEXT REFERENCES t(b), g INTEGER CHECK (g & 1));
         CREATE TABLE s (id INTEGER PRIMARY KEY, v ANY CHECK (v <> 0)) STRICT;
         CREATE TABLE a_name_that_is_far_too_long_for_postgresql_which_truncates_at_63_bytes (id TEXT PRIMARY KEY);",
    );
    let got: Vec<(Reason, &str, Option<&str>)> =
        r.iter().map(|x| (x.reason, x.table.as_str(), x.column.as_deref())).collect();
    assert_eq!(
        got,
        [
            (Reason::OnConflict, "t", Some("id")),
            (Reason::TypelessColumn, "t", Some("a")),
            (Reason::Collation, "t", Some("b")),
            (Reason::Operator, "t", Some("c")),
            (Reason::Function, "t", Some("d")),
            (Reason::ForeignKeyTarget, "t", Some("f")),
            (Reason::Operator, "t", Some("g")),
            (Reason::TypelessColumn, "s", Some("v")),
            (Reason::LongIdentifier, "a_name_that_is_far_too_long_for_postgresql_which_truncates_at_63_bytes", None),
        ]
    );
    assert!(r[4].construct == "json_valid()", "{}", r[4]);
    let shown = TranslateError::Refused(r).to_string();
    assert!(shown.starts_with("9 construct(s) cannot be translated faithfully:\n[on-conflict] table \"t\""), "{shown}");
    assert!(matches!(translate("CREATE VIEW v AS SELECT 1"), Err(TranslateError::Syntax(_))));
    assert!(matches!(translate("CREATE INDEX i ON t (x)"),
        Err(TranslateError::Refused(r)) if r[0].reason == Reason::UnknownTable));
    assert!(matches!(translate("  -- nothing\n"), Err(TranslateError::Empty)));
}

#[test]
fn tables_go_to_their_target_schema() {
    let mut target = Target { schema: Some("app".into()), ..Target::default() };
    target.tables.insert("Audit".into(), "private".into());
    let t = translate_into(
        "CREATE TABLE notes (id TEXT PRIMARY KEY NOT NULL, title TEXT COLLATE NOCASE);
         CREATE TABLE audit (id TEXT PRIMARY KEY NOT NULL, note TEXT REFERENCES notes(id));
         CREATE INDEX notes_title ON notes (title);",
        &Existing::new(),
        &target,
    )
    .unwrap();
    let s = t.script();
    for want in [
        "CREATE COLLATION IF NOT EXISTS \"app\".\"cloudsync_nocase\"",
        "CREATE TABLE \"app\".\"notes\" (",
        "\"title\" text COLLATE \"app\".\"cloudsync_nocase\"",
        "CREATE TABLE \"private\".\"audit\" (",
        "ALTER TABLE \"private\".\"audit\" ADD FOREIGN KEY (\"note\") REFERENCES \"app\".\"notes\" (\"id\")",
        "CREATE INDEX IF NOT EXISTS \"notes_title\" ON \"app\".\"notes\" (\"title\")",
    ] {
        assert!(s.contains(want), "{want} in\n{s}");
    }
}

#[test]
fn schema_changes_add_columns_only() {
    let mut have = Existing::new();
    have.insert("notes".into(), vec!["id".into(), "body".into()]);
    let t = translate_against(
        "CREATE TABLE notes (id TEXT PRIMARY KEY NOT NULL, body TEXT, pinned BOOLEAN NOT NULL DEFAULT 0);
         CREATE TABLE tags (id TEXT PRIMARY KEY NOT NULL, note TEXT REFERENCES notes(id));
         CREATE INDEX notes_pinned ON notes (pinned);",
        &have,
    )
    .unwrap();
    assert_eq!(
        t.statements,
        [
            "ALTER TABLE \"notes\" ADD COLUMN \"pinned\" boolean NOT NULL DEFAULT false",
            "CREATE TABLE \"tags\" (\n    \"id\" text NOT NULL,\n    \"note\" text,\n    PRIMARY KEY (\"id\")\n)",
            "CREATE INDEX IF NOT EXISTS \"notes_pinned\" ON \"notes\" (\"pinned\")",
            "ALTER TABLE \"tags\" ADD FOREIGN KEY (\"note\") REFERENCES \"notes\" (\"id\") DEFERRABLE INITIALLY DEFERRED",
        ]
    );
    assert!(t.tables[0].existing && t.tables[0].added_columns == ["pinned"] && !t.tables[1].existing);
    let r = match translate_against("CREATE TABLE notes (id TEXT PRIMARY KEY NOT NULL, extra TEXT UNIQUE)", &have) {
        Err(TranslateError::Refused(r)) => r,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        r.iter().map(|x| (x.reason, x.column.as_deref())).collect::<Vec<_>>(),
        [(Reason::SchemaChange, Some("body")), (Reason::SchemaChange, Some("extra"))]
    );
}

#[test]
fn columns_without_a_type_become_the_any_domain() {
    let t = translate(
        "CREATE TABLE settings (setting TEXT PRIMARY KEY NOT NULL, value, n DEFAULT 7, r DEFAULT -2.5, s DEFAULT 'a\"b',
             at DEFAULT CURRENT_TIMESTAMP);
         CREATE TABLE s (id INTEGER PRIMARY KEY, v ANY, w INT) STRICT;
         CREATE INDEX settings_value ON settings (value);",
    )
    .unwrap();
    let script = t.script();
    assert!(script.starts_with("DO $cloudsync$ BEGIN CREATE DOMAIN \"cloudsync_any\" AS jsonb CHECK"), "{script}");
    assert_eq!(script.matches("CREATE DOMAIN").count(), 1, "{script}");
    for want in [
        "\"value\" \"cloudsync_any\",",
        "\"n\" \"cloudsync_any\" DEFAULT '7'",
        "\"r\" \"cloudsync_any\" DEFAULT '-2.5'",
        "\"s\" \"cloudsync_any\" DEFAULT '\"a\\\"b\"'",
        "\"v\" \"cloudsync_any\"",
        "\"at\" \"cloudsync_any\" DEFAULT pg_catalog.to_jsonb(to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'))",
        "\"w\" bigint",
        "CREATE INDEX IF NOT EXISTS \"settings_value\" ON \"settings\" (\"value\")",
    ] {
        assert!(script.contains(want), "{want} in {script}");
    }
    // In a target schema, the domain goes there too.
    let t = translate_into(
        "CREATE TABLE k (id TEXT PRIMARY KEY, v)",
        &Existing::new(),
        &Target { schema: Some("app".into()), ..Target::default() },
    )
    .unwrap();
    assert!(t.script().contains("CREATE DOMAIN \"app\".\"cloudsync_any\""), "{}", t.script());
    assert!(t.script().contains("\"v\" \"app\".\"cloudsync_any\""), "{}", t.script());
    // A column without a type referencing a typed key takes the key's type.
    let t = translate(
        "CREATE TABLE vals (valueID INTEGER PRIMARY KEY, value UNIQUE);
         CREATE TABLE data (id INT PRIMARY KEY, valueID, FOREIGN KEY (valueID) REFERENCES vals(valueID));",
    )
    .unwrap();
    assert!(t.script().contains("\"valueID\" bigint,\n    PRIMARY KEY"), "{}", t.script());
    assert!(t.script().contains("\"value\" \"cloudsync_any\" UNIQUE"), "{}", t.script());
    // NOCASE cannot compare its JSON.
    let r = refused("CREATE TABLE c (id TEXT PRIMARY KEY, v COLLATE NOCASE)");
    assert_eq!(r[0].reason, Reason::Collation);
}

#[test]
fn what_sqlite_itself_cannot_enforce_or_keep_is_left_out_with_a_note() {
    let t = translate(
        "CREATE TEMP TABLE scratch (id TEXT PRIMARY KEY);
         CREATE INDEX scratch_id ON scratch (id);
         CREATE TABLE people (id INTEGER PRIMARY KEY, handle TEXT NOT NULL);
         CREATE UNIQUE INDEX people_handle ON people (handle);
         CREATE TABLE posts (id TEXT PRIMARY KEY NOT NULL, author TEXT REFERENCES people (handle),
             format INTEGER REFERENCES formats (id), at TEXT DEFAULT (datetime('now', 'localtime')));
         CREATE INDEX an_index_name_that_is_far_too_long_for_postgresql_which_truncates_it_at_63_bytes ON posts (at);",
    )
    .unwrap();
    let script = t.script();
    assert!(!script.contains("scratch"), "{script}");
    // The UNIQUE index is the parent key, created before the foreign key that needs it.
    let index = script.find("CREATE UNIQUE INDEX IF NOT EXISTS \"people_handle\"").unwrap();
    let fk = script.find("ADD FOREIGN KEY (\"author\") REFERENCES \"people\" (\"handle\")").unwrap();
    assert!(index < fk, "{script}");
    assert!(!script.contains("formats"), "{script}");
    assert!(script.contains("DEFAULT to_char(now(), 'YYYY-MM-DD HH24:MI:SS')"), "{script}");
    // Cut to 54 bytes, then `_` and eight hex digits: 63 in all.
    let short = "an_index_name_that_is_far_too_long_for_postgresql_whic";
    assert!(script.contains(&format!("\"{short}_")), "{script}");
    let notes = t.notes.join("\n");
    for want in [
        "\"scratch\": CREATE TEMP TABLE is left out",
        "index \"scratch_id\"",
        "REFERENCES formats (format)",
        "localtime",
        &format!("renamed \"{short}_"),
    ] {
        assert!(notes.contains(want), "{want} in {notes}");
    }
}

#[test]
fn glob_json_extract_and_blobs_read_as_text_translate() {
    let t = translate(
        "CREATE TABLE places (id TEXT PRIMARY KEY NOT NULL, url TEXT, data BLOB, doc TEXT, k TEXT CHECK (k NOT NULL OR NOT NULL IS NULL),
             CHECK (url GLOB 'http*' OR url NOT GLOB '[^a-z]?x.[*]'),
             CHECK (doc IS NULL OR json_extract(CAST(data AS TEXT), '$.a.\"b c\"[2]') = doc));
         CREATE INDEX places_doc ON places ((json_extract(doc, '$.name')));
         CREATE INDEX places_data ON places ((json_extract(data, '$.kind')));",
    )
    .unwrap();
    let script = t.script();
    for want in [
        "\"url\" ~ '^http.*$'",
        "CHECK (\"k\" IS NOT NULL OR NOT NULL IS NULL)",
        "\"url\" !~ '^[^a-z].x\\.[*]$'",
        "pg_catalog.jsonb_extract_path_text((\"cloudsync_utf8\"(\"data\"))::jsonb, 'a', 'b c', '2')",
        "pg_catalog.jsonb_extract_path_text((\"doc\")::jsonb, 'name')",
        "pg_catalog.jsonb_extract_path_text((\"cloudsync_utf8\"(\"data\"))::jsonb, 'kind')",
        "CREATE OR REPLACE FUNCTION \"cloudsync_utf8\"(bytea) RETURNS text LANGUAGE sql IMMUTABLE",
    ] {
        assert!(script.contains(want), "{want} in {script}");
    }
    assert!(script.find("CREATE OR REPLACE FUNCTION").unwrap() < script.find("CREATE TABLE").unwrap(), "{script}");
    for (sql, why) in [
        ("CREATE TABLE g (id TEXT PRIMARY KEY, u TEXT CHECK (u GLOB upper(u)))", "literal pattern"),
        ("CREATE TABLE j (id TEXT PRIMARY KEY, u TEXT CHECK (json_extract(u, '$.a[*]') IS NULL))", "paths"),
        ("CREATE TABLE j (id TEXT PRIMARY KEY, u TEXT CHECK (json_extract(u, '$.a', '$.b') IS NULL))", "one literal"),
    ] {
        let r = refused(sql);
        assert!(r.iter().any(|x| x.detail.contains(why)), "{sql}: {r:?}");
    }
}

/// What has no faithful translation names the choice that proceeds without it; given
/// that choice, the table is created without the construct and a note says so, and
/// nothing else changes. Choices that are not about an omittable construct, or that
/// name nothing, leave the refusals as they were.
#[test]
fn a_refused_construct_can_be_left_out_knowingly() {
    const SQL: &str = "CREATE TABLE t (id TEXT PRIMARY KEY ON CONFLICT REPLACE, a CHECK (a > 0), \
                       b TEXT COLLATE RTRIM DEFAULT (hex('a')), d TEXT CHECK (json_valid(d)) CHECK (d <> ''), \
                       UNIQUE (a, b) ON CONFLICT IGNORE, CHECK (b GLOB d))";
    let r = refused(SQL);
    let choices: Vec<String> = r.iter().map(|x| x.omit.as_ref().map(ToString::to_string).unwrap_or_default()).collect();
    assert_eq!(
        choices,
        ["t.id:on-conflict", "t.a:check", "t.b:collate", "t.b:default", "t.d:check", "t:on-conflict", "t:check"]
    );
    assert!(r[0].to_string().ends_with("(or create it without this: omit \"t.id:on-conflict\")"), "{}", r[0]);

    let omit: Vec<Omit> = choices.iter().map(|c| c.parse().unwrap()).collect();
    let target = Target { omit, ..Target::default() };
    let t = translate_into(SQL, &Existing::new(), &target).unwrap();
    let s = t.script();
    assert!(s.contains("\"id\" text,\n    \"a\" \"cloudsync_any\",\n    \"b\" text,\n"), "{s}");
    // The CHECK that translates stays; the one that does not is left out.
    assert!(s.contains("\"d\" text CHECK (\"d\" <> ''),\n"), "{s}");
    assert!(!s.contains("json_valid") && !s.contains("hex"), "{s}");
    assert!(s.contains("UNIQUE (\"a\", \"b\")") && s.contains("PRIMARY KEY (\"id\")"), "{s}");
    assert_eq!(t.notes.len(), 7, "{:?}", t.notes);
    assert!(t.notes[0].starts_with("omit \"t.id:on-conflict\": PRIMARY KEY ON CONFLICT REPLACE left out, as asked"));

    // Case-insensitive names; a choice that matches nothing is noted, not silent.
    let target =
        Target { omit: vec!["T.A:check".parse().unwrap(), "other.x:check".parse().unwrap()], ..Target::default() };
    let t = translate_into("CREATE TABLE t (id TEXT PRIMARY KEY, a CHECK (a > 0))", &Existing::new(), &target).unwrap();
    assert_eq!(t.notes.len(), 2, "{:?}", t.notes);
    assert!(t.notes[1].contains("omit \"other.x:check\": nothing of it needed leaving out"), "{:?}", t.notes);

    // A choice for one column leaves the others refused; a column's choice is not the
    // table's.
    let target = Target { omit: vec!["t.a:check".parse().unwrap()], ..Target::default() };
    match translate_into(SQL, &Existing::new(), &target) {
        Err(TranslateError::Refused(r)) => assert_eq!(r.len(), 6),
        other => panic!("{other:?}"),
    }
    let target = Target { omit: vec!["t:check".parse().unwrap()], ..Target::default() };
    match translate_into("CREATE TABLE t (id TEXT PRIMARY KEY, a CHECK (a > 0))", &Existing::new(), &target) {
        Err(TranslateError::Refused(r)) => assert_eq!(r[0].omit.as_ref().unwrap().to_string(), "t.a:check"),
        other => panic!("{other:?}"),
    }

    // What no choice can lift: a subquery is still refused by the guard.
    let target = Target { omit: vec!["t.a:check".parse().unwrap()], ..Target::default() };
    assert!(matches!(
        translate_into("CREATE TABLE t (id TEXT PRIMARY KEY, a INTEGER CHECK (a IN (SELECT 1)))", &Existing::new(), &target),
        Err(TranslateError::Refused(r)) if r.iter().any(|x| x.reason == Reason::Subquery)
    ));

    // The written form.
    for bad in ["t.a", "t.a:drop", ":check", "t.:check", ""] {
        assert!(bad.parse::<Omit>().is_err(), "{bad}");
    }
    let o: Omit = "notes.title:collate".parse().unwrap();
    assert_eq!((o.table.as_str(), o.column.as_deref(), o.kind), ("notes", Some("title"), OmitKind::Collate));
}
