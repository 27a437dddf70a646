//! `#[pg_test]`s: each runs inside a transaction of a real PostgreSQL (started by
//! `cargo pgrx test`) with the extension installed, and is rolled back afterwards.
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

    #[pg_test]
    fn version_and_site_id() {
        assert_eq!(one::<String>("SELECT cloudsync_version()").as_deref(), Some(cloudsync_core::VERSION));
        assert_eq!(one::<Vec<u8>>("SELECT cloudsync_siteid()").map(|s| s.len()), Some(16));
    }

    #[pg_test]
    fn local_writes_are_tracked_and_round_trip() {
        run("CREATE TABLE todo (id text PRIMARY KEY, title text, done bool NOT NULL DEFAULT false)");
        run("SELECT cloudsync_init('todo')");
        run("INSERT INTO todo VALUES ('a', 'one', false), ('b', 'two', true)");
        run("UPDATE todo SET title = 'uno' WHERE id = 'a'");
        run("DELETE FROM todo WHERE id = 'b'");
        let n = one::<i64>("SELECT count(*) FROM cloudsync_changes").unwrap();
        // a: title and done cells; b: a delete event.
        assert_eq!(n, 3);
    }
}
