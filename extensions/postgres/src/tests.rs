//! `#[pg_test]`s: each runs inside a transaction of a real PostgreSQL (started by
//! `cargo pgrx test`) with the extension installed, and is rolled back afterwards.
//! Scenarios between replicas are in `extensions/postgres/interop`.

use pgrx::prelude::*;

#[pg_schema]
mod tests {
    use pgrx::prelude::*;

    fn one<T: pgrx::IntoDatum + pgrx::FromDatum>(sql: &str) -> Option<T> {
        Spi::get_one::<T>(sql).expect(sql)
    }

    fn run(sql: &str) {
        Spi::run(sql).expect(sql);
    }

    fn todo() {
        run("CREATE TABLE todo (id text PRIMARY KEY, title text, done bool NOT NULL DEFAULT false)");
        run("SELECT cloudsync_init('todo')");
    }

    #[pg_test]
    fn version_site_id_and_uuid() {
        assert_eq!(one::<String>("SELECT cloudsync_version()").as_deref(), Some(cloudsync_core::VERSION));
        assert_eq!(one::<Vec<u8>>("SELECT cloudsync_siteid()").map(|s| s.len()), Some(16));
        // UUID v7: version nibble 7, RFC 4122 variant.
        let u = one::<String>("SELECT cloudsync_uuid()::text").unwrap();
        assert_eq!(&u[14..15], "7");
        assert!(matches!(&u[19..20], "8" | "9" | "a" | "b"), "{u}");
        assert_ne!(u, one::<String>("SELECT cloudsync_uuid()::text").unwrap());
    }

    #[pg_test]
    fn writes_become_changes_in_feed_order() {
        todo();
        let v0 = one::<i64>("SELECT cloudsync_db_version()").unwrap();
        run("INSERT INTO todo VALUES ('a', 'one', false), ('b', 'two', true)");
        run("UPDATE todo SET title = 'uno' WHERE id = 'a'");
        run("DELETE FROM todo WHERE id = 'b'");
        // One fold: one new db_version for everything written since the last read.
        assert_eq!(one::<i64>("SELECT cloudsync_db_version()"), Some(v0 + 1));
        // a: its two columns; b: a delete event (col_name NULL).
        assert_eq!(
            one::<String>(
                "SELECT string_agg(coalesce(col_name, '<row>') || '=' || coalesce(cloudsync_value_text(col_value), 'NULL') \
                 || '@' || cl, ', ' ORDER BY db_version, seq, col_name) FROM cloudsync_changes"
            )
            .as_deref(),
            Some("done=0@1, title=uno@1, <row>=NULL@2")
        );
        // Nothing new: the same version, no new changes.
        assert_eq!(one::<i64>("SELECT cloudsync_db_version()"), Some(v0 + 1));
        assert_eq!(
            one::<i64>(&format!("SELECT count(*) FROM cloudsync_changes WHERE db_version > {}", v0 + 1)),
            Some(0)
        );
    }

    /// A fold whose log entries change no clock takes no `db_version` (the same rule as
    /// SQLite's, both from the core's `Fold`). The entry is what a trigger logs for an
    /// update of a column that is no longer synced.
    #[pg_test]
    fn a_fold_that_changes_nothing_keeps_the_db_version() {
        todo();
        run("INSERT INTO todo VALUES ('a', 'one', false)");
        let v = one::<i64>("SELECT cloudsync_db_version()").unwrap();
        let id = one::<i32>("SELECT id FROM cloudsync.tables WHERE name = 'todo'").unwrap();
        run(&format!("INSERT INTO cloudsync.t{id}_log (op, m0, k0) VALUES (2, 1::int8 << 40, 'a')"));
        assert_eq!(one::<i64>("SELECT count(*) FROM cloudsync_changes"), Some(2));
        assert_eq!(one::<i64>("SELECT cloudsync_db_version()"), Some(v));
        assert_eq!(one::<i64>(&format!("SELECT count(*) FROM cloudsync.t{id}_log")), Some(0));
        // A key-only table's log has one mask word too, and folds like any other.
        run("CREATE TABLE tags (post text, tag text, PRIMARY KEY (post, tag))");
        run("SELECT cloudsync_init('tags')");
        run("INSERT INTO tags VALUES ('p', 'x')");
        assert_eq!(one::<i64>("SELECT count(*) FROM cloudsync_changes WHERE tbl = 'tags'"), Some(1));
        assert_eq!(one::<i64>("SELECT cloudsync_db_version()"), Some(v + 1));
    }

    #[pg_test]
    fn the_aggregate_and_the_function_encode_the_same_payload() {
        todo();
        run("INSERT INTO todo SELECT 'k' || g, 'title ' || g, g % 2 = 0 FROM generate_series(1, 300) g");
        let aggregate = one::<Vec<u8>>(
            "SELECT cloudsync_payload_encode(tbl, pk, col_name, col_value, col_version, db_version, site_id, cl, seq) \
             FROM cloudsync_changes",
        )
        .unwrap();
        let function = one::<Vec<u8>>("SELECT cloudsync_payload_encode_since(0)").unwrap();
        assert_eq!(aggregate, function);
        assert_eq!(&aggregate[..4], b"CSYN");
        // Nothing to send: NULL from both.
        let v = one::<i64>("SELECT cloudsync_db_version()").unwrap();
        assert_eq!(one::<Vec<u8>>(&format!("SELECT cloudsync_payload_encode_since({v})")), None);
        assert_eq!(
            one::<Vec<u8>>(&format!(
                "SELECT cloudsync_payload_encode(tbl, pk, col_name, col_value, col_version, db_version, site_id, cl, seq) \
                 FROM cloudsync_changes WHERE db_version > {v}"
            )),
            None
        );
        // Applying our own payload back changes nothing.
        assert_eq!(one::<i64>(&format!("SELECT cloudsync_payload_apply('\\x{}'::bytea)", hex(&function))), Some(0));
    }

    #[pg_test]
    fn encode_next_says_where_to_resume() {
        todo();
        run("INSERT INTO todo VALUES ('a', 'one', false)");
        let (changes, upto) =
            Spi::get_two::<i64, i64>("SELECT changes, db_version FROM cloudsync_payload_encode_next(0)")
                .expect("encode_next");
        assert_eq!(changes, Some(2));
        assert_eq!(upto, one::<i64>("SELECT cloudsync_db_version()"));
        // Resuming from there: nothing, and the same position.
        let (payload, again) = Spi::get_two::<Vec<u8>, i64>(&format!(
            "SELECT payload, db_version FROM cloudsync_payload_encode_next({})",
            upto.unwrap()
        ))
        .expect("encode_next");
        assert_eq!((payload, again), (None, upto));
        run("UPDATE todo SET title = 'two'");
        let changes = one::<i64>(&format!("SELECT changes FROM cloudsync_payload_encode_next({})", upto.unwrap()));
        assert_eq!(changes, Some(1));
    }

    /// One `cloudsync_payload_encode_chunk` call: payload length, changes, next, more.
    fn chunk(after: &str, max_bytes: i64) -> (i64, i64, String, bool) {
        let sql = format!(
            "SELECT coalesce(length(payload), 0)::int8, changes, next, more \
             FROM cloudsync_payload_encode_chunk('{after}', NULL, NULL, {max_bytes})"
        );
        Spi::connect(|c| {
            let r = c.select(&sql, None, &[])?.first();
            Ok::<_, pgrx::spi::Error>((
                r.get::<i64>(1)?.unwrap_or(0),
                r.get::<i64>(2)?.unwrap_or(0),
                r.get::<String>(3)?.unwrap_or_default(),
                r.get::<bool>(4)?.unwrap_or(false),
            ))
        })
        .expect(&sql)
    }

    #[pg_test]
    fn encode_chunk_streams_the_feed_in_bounded_chunks_and_misses_no_write() {
        todo();
        run("CREATE TABLE note (id text PRIMARY KEY, body text)");
        run("SELECT cloudsync_init('note')");
        run("INSERT INTO todo SELECT 't' || g, repeat('x', 200), false FROM generate_series(1, 300) g");
        run("INSERT INTO note SELECT g::text, repeat('y', 200) FROM generate_series(1, 300) g");
        let whole = one::<i64>("SELECT changes FROM cloudsync_payload_encode_next(0)").unwrap();
        let (mut after, mut total, mut chunks) = ("0".to_string(), 0, 0);
        loop {
            let (len, changes, next, more) = chunk(&after, 4096);
            assert!(len <= 8192, "a chunk of {len} bytes for a budget of 4096");
            assert_ne!(next, after, "a chunk that does not move");
            total += changes;
            chunks += 1;
            if chunks == 1 {
                // A write between two chunks reaches a later one.
                run("INSERT INTO todo VALUES ('late', 'between chunks', true)");
            }
            after = next;
            if !more {
                break;
            }
        }
        assert!(chunks > 5, "{chunks} chunks");
        assert_eq!(total, whole + 2, "every change, once: the rows read first and the one written between chunks");
        // From the end: nothing more, the same position.
        let (len, changes, next, more) = chunk(&after, 4096);
        assert_eq!((len, changes, more), (0, 0, false));
        assert_eq!(next, after);
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    /// A payload from `site` inserting `item` rows `(id, qty)`.
    fn items_from(site: cloudsync_core::SiteId, rows: &[(&str, i64)]) -> Vec<u8> {
        use cloudsync_core::payload::{EncodeOptions, PayloadEncoder};
        use cloudsync_core::{Algo, Change, Cursor, Value};
        let mut encoder = PayloadEncoder::new(EncodeOptions::default());
        for (i, (id, qty)) in rows.iter().enumerate() {
            let change = Change {
                table: "item".into(),
                pk: cloudsync_core::value::encode_key(&[Value::text(*id)]),
                column: Some("qty".into()),
                value: Value::Integer(*qty),
                col_version: 1,
                at: Cursor::new(u64::try_from(i).unwrap() + 1, 0),
                site,
                cl: 1,
            };
            encoder.push(change, |_| (Algo::Cls, 0)).unwrap();
        }
        encoder.finish()
    }

    fn items() {
        run("CREATE TABLE item (id text PRIMARY KEY, qty int NOT NULL DEFAULT 0 CHECK (qty >= 0))");
        run("SELECT cloudsync_init('item')");
    }

    #[pg_test]
    fn a_refused_row_is_left_out_and_the_payload_decoded_once() {
        items();
        let site = cloudsync_core::SiteId([7; 16]);
        let payload = items_from(site, &[("a", 5), ("b", -1), ("c", 9)]);
        let decodes = cloudsync_core::payload::decode_count();
        let (applied, refused) = Spi::get_two::<i64, pgrx::JsonB>(&format!(
            "SELECT applied, refused FROM cloudsync_payload_apply_rows('\\x{}'::bytea, NULL, '\\x{}'::bytea)",
            hex(&payload),
            hex(&site.0)
        ))
        .expect("apply_rows");
        assert_eq!(
            cloudsync_core::payload::decode_count() - decodes,
            1,
            "the payload is decoded once, though its rows were applied one by one after the refusal"
        );
        let refused = refused.unwrap().0;
        assert_eq!(
            one::<String>("SELECT string_agg(id || '=' || qty, ',' ORDER BY id) FROM item").as_deref(),
            Some("a=5,c=9"),
            "{refused}"
        );
        assert_eq!(applied, Some(2), "{refused}");
        assert_eq!(refused.as_array().map(Vec::len), Some(1), "{refused}");
        assert_eq!(refused[0]["table"], "item");
        assert_eq!(refused[0]["key"], "'b'");
        assert_eq!(refused[0]["sqlstate"], "23514", "{refused}");
        assert_eq!(
            one::<String>("SELECT string_agg(id || '=' || qty, ',' ORDER BY id) FROM item").as_deref(),
            Some("a=5,c=9")
        );
        // The refused row left nothing behind: no clock, nothing to send.
        assert_eq!(one::<i64>("SELECT count(DISTINCT pk) FROM cloudsync_changes"), Some(2));
        // Each row merged alone still got a feed position of its own: every step reads
        // what the earlier ones wrote (the db_version they moved to, the site interned).
        assert_eq!(one::<i64>("SELECT count(DISTINCT (db_version, seq)) - count(*) FROM cloudsync_changes"), Some(0));
        // Nothing refused: the whole payload in one step, and the same answer shape.
        let more = items_from(site, &[("d", 1)]);
        let (applied, refused) = Spi::get_two::<i64, pgrx::JsonB>(&format!(
            "SELECT applied, refused FROM cloudsync_payload_apply_rows('\\x{}'::bytea)",
            hex(&more)
        ))
        .expect("apply_rows");
        assert_eq!((applied, refused.map(|j| j.0)), (Some(1), Some(serde_json::json!([]))));
    }

    #[pg_test(
        error = "payload contains changes attributed to site 08080808080808080808080808080808, but was uploaded by 07070707070707070707070707070707"
    )]
    fn a_payload_holding_another_sites_changes_is_refused_whole() {
        items();
        let payload = items_from(cloudsync_core::SiteId([8; 16]), &[("a", 5)]);
        run(&format!(
            "SELECT * FROM cloudsync_payload_apply_rows('\\x{}'::bytea, NULL, '\\x{}'::bytea)",
            hex(&payload),
            hex(&[7; 16])
        ));
    }

    #[pg_test]
    fn disabled_tables_and_filters_limit_what_is_tracked() {
        todo();
        run("SELECT cloudsync_disable('todo')");
        assert_eq!(one::<bool>("SELECT cloudsync_is_enabled('todo')"), Some(false));
        run("INSERT INTO todo VALUES ('untracked', 'x', false)");
        run("SELECT cloudsync_enable('todo')");
        assert_eq!(one::<i64>("SELECT count(*) FROM cloudsync_changes"), Some(0));
        run("SELECT cloudsync_set_filter('todo', 'done')");
        run("INSERT INTO todo VALUES ('open', 'o', false), ('closed', 'c', true)");
        assert_eq!(
            one::<String>("SELECT string_agg(DISTINCT tbl || ':' || length(pk), ',') FROM cloudsync_changes")
                .as_deref(),
            Some("todo:8")
        );
        run("SELECT cloudsync_clear_filter('todo')");
        // Clearing the filter backfills the rows that were never tracked.
        assert_eq!(one::<i64>("SELECT count(DISTINCT pk) FROM cloudsync_changes"), Some(3));
    }

    #[pg_test]
    fn settings_are_validated() {
        todo();
        run("SELECT cloudsync_set('payload_compression', '0')");
        run("SELECT cloudsync_set('app.owner', 'me')");
        assert_eq!(
            one::<String>("SELECT value FROM cloudsync.settings WHERE key = 'app.owner'").as_deref(),
            Some("me")
        );
        run("SELECT cloudsync_set('app.owner', NULL)");
        assert_eq!(one::<i64>("SELECT count(*) FROM cloudsync.settings WHERE key = 'app.owner'"), Some(0));
        run("SELECT cloudsync_set_column('todo', 'title', 'label', 'Title')");
        assert_eq!(one::<i64>("SELECT count(*) FROM cloudsync.table_settings"), Some(1));
        run("SELECT cloudsync_cleanup('todo')");
        assert_eq!(one::<i64>("SELECT count(*) FROM cloudsync.table_settings"), Some(0));
        assert_eq!(one::<i64>("SELECT count(*) FROM cloudsync_tables"), Some(0));
    }

    #[pg_test(error = "'payload_compression' must be an integer in 0..=19")]
    fn out_of_range_settings_are_refused() {
        run("SELECT cloudsync_set('payload_compression', '42')");
    }

    #[pg_test(
        error = "table public.floaty cannot be synced: primary key column \"id\" has type double precision; key columns must be integer, text, varchar, uuid or bytea (their values are identical on every replica)"
    )]
    fn inexact_keys_are_refused() {
        run("CREATE TABLE floaty (id float8 PRIMARY KEY)");
        run("SELECT cloudsync_init('floaty')");
    }

    #[pg_test(
        error = "table public.counters_b cannot be synced: its primary key \"id\" is a single integer column. Integer keys assigned on each replica collide when replicas sync; use a uuid or text key, or pass flag 1 to cloudsync_init if keys are globally unique"
    )]
    fn single_integer_keys_need_a_flag() {
        // Allowed with flag 1…
        run("CREATE TABLE counters (id bigint PRIMARY KEY, n int)");
        run("SELECT cloudsync_init('counters', 'cls', 1)");
        // …refused without.
        run("CREATE TABLE counters_b (id bigint PRIMARY KEY, n int)");
        run("SELECT cloudsync_init('counters_b')");
    }

    #[pg_test(error = "table does_not_exist does not exist")]
    fn missing_tables_are_named() {
        run("SELECT cloudsync_init('does_not_exist')");
    }

    #[pg_test(error = "unknown table algorithm 'lww' (expected one of: cls, gos, aws, dws)")]
    fn unknown_algorithms_are_named() {
        todo();
        run("CREATE TABLE other (id text PRIMARY KEY)");
        run("SELECT cloudsync_init('other', 'lww')");
    }
}
