//! The DDL parser against the real-world schemas of `../shared/ddl-corpus` (read in
//! place, never copied): every file parses, and what it finds — tables, their
//! columns in order, their primary keys, the indexes — is exactly what SQLite itself
//! reports after executing the same file.

use std::path::PathBuf;

use cloudsync_core::schema::Affinity;
use cloudsync_ddl::{parse, Statement};
use rusqlite::Connection;

fn corpus_dir() -> PathBuf {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let candidates = [
        std::env::var("CLOUDSYNC_DDL_CORPUS").map(PathBuf::from).ok(),
        Some(repo.join("../shared/ddl-corpus")),
        Some(PathBuf::from("/work/shared/ddl-corpus")),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|p| p.join("README.md").exists())
        .expect("the DDL corpus (../shared/ddl-corpus next to the repository, or CLOUDSYNC_DDL_CORPUS)")
}

/// What the parser found of a table: name, columns, primary key, and per column its
/// affinity and whether NULL is refused.
type Seen = (String, Vec<String>, Vec<String>, Vec<(Affinity, bool)>);

#[test]
fn every_corpus_schema_parses_as_sqlite_sees_it() {
    let dir = corpus_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .collect();
    files.sort();
    assert!(files.len() >= 30, "expected the 30 corpus files in {}", dir.display());
    for file in files {
        let sql = std::fs::read_to_string(&file).unwrap();
        let shown = file.file_name().unwrap().to_string_lossy().to_string();
        let stmts = parse(&sql).unwrap_or_else(|e| panic!("{shown}: {e}"));

        let db = Connection::open_in_memory().unwrap();
        db.execute_batch(&sql).unwrap_or_else(|e| panic!("{shown} in SQLite: {e}"));
        // Tables, as SQLite has them (a repeated IF NOT EXISTS definition is a no-op).
        let mut ours: Vec<Seen> = Vec::new();
        for s in &stmts {
            if let Statement::Table(t) = s {
                if ours.iter().any(|(n, _, _, _)| n.eq_ignore_ascii_case(&t.name)) {
                    assert!(t.if_not_exists, "{shown}: {} defined twice", t.name);
                    continue;
                }
                let cols = t.columns.iter().map(|c| c.name.clone()).collect();
                let facts = t.columns.iter().map(|c| (Affinity::of(&c.decl_type), t.not_null(c))).collect();
                ours.push((t.name.clone(), cols, t.primary_key(), facts));
            }
        }
        for (name, cols, pk, facts) in &ours {
            let schema = if db
                .query_row("SELECT count(*) FROM temp.sqlite_master WHERE name = ?1", [name], |r| r.get::<_, i64>(0))
                .unwrap()
                > 0
            {
                "temp"
            } else {
                "main"
            };
            let mut stmt = db
                .prepare(&format!(
                    "SELECT name, pk, type, \"notnull\" FROM {schema}.pragma_table_xinfo(?1) ORDER BY cid"
                ))
                .unwrap();
            let full: Vec<(String, i64, String, bool)> = stmt
                .query_map([name], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            let their_facts: Vec<(Affinity, bool)> = full.iter().map(|(_, _, t, nn)| (Affinity::of(t), *nn)).collect();
            assert_eq!(facts, &their_facts, "{shown}: column affinities and NOT NULL of {name}");
            let rows: Vec<(String, i64)> = full.iter().map(|(n, k, _, _)| (n.clone(), *k)).collect();
            let theirs: Vec<String> = rows.iter().map(|(n, _)| n.clone()).collect();
            assert_eq!(cols, &theirs, "{shown}: columns of {name}");
            let mut keyed: Vec<(i64, String)> =
                rows.iter().filter(|(_, k)| *k > 0).map(|(n, k)| (*k, n.clone())).collect();
            keyed.sort();
            let their_pk: Vec<String> = keyed.into_iter().map(|(_, n)| n).collect();
            let our_pk: Vec<String> = pk.clone();
            assert_eq!(
                our_pk.iter().map(|s| s.to_lowercase()).collect::<Vec<_>>(),
                their_pk.iter().map(|s| s.to_lowercase()).collect::<Vec<_>>(),
                "{shown}: primary key of {name}"
            );
        }
        let their_tables: i64 = db
            .query_row(
                "SELECT (SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%') + \
                 (SELECT count(*) FROM temp.sqlite_master WHERE type = 'table')",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(
            ours.len(),
            usize::try_from(their_tables).unwrap(),
            "{shown}: number of tables: {:?}",
            ours.iter().map(|(n, _, _, _)| n).collect::<Vec<_>>()
        );
        let mut index_names: Vec<String> = stmts
            .iter()
            .filter_map(|s| match s {
                Statement::Index(i) => Some(i.name.to_lowercase()),
                Statement::Table(_) | Statement::AddColumn { .. } => None,
            })
            .collect();
        index_names.sort();
        index_names.dedup();
        let their_indexes: i64 = db
            .query_row("SELECT count(*) FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL", [], |r| r.get(0))
            .unwrap();
        assert_eq!(index_names.len(), usize::try_from(their_indexes).unwrap(), "{shown}: number of indexes");
    }
}
