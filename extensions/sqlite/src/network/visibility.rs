//! The visibility check: which of this database's rows its user may no longer read
//! centrally.

use super::*;

/// Keys per visibility request.
pub(super) const VISIBILITY_BATCH: usize = 500;

/// `cloudsync_network_check_visibility()`: asks the server which of this database's
/// rows (live, in synced tables) its user may not read centrally (row-level security or
/// row policies, or no such row there), and records them in `cloudsync_hidden(tbl, pk)`
/// — replacing what an earlier check recorded. Rows with local changes the server has
/// not yet applied (unsent, or waiting in its queue) are not asked about: their central
/// copy is not yet theirs. A row the server refused is flagged. The server only answers
/// about the keys sent, and a hidden row and a missing one alike, so nothing about
/// other users' rows is learned.
pub fn check_visibility(conn: &Connection, state: &ConnState) -> Result<Value> {
    let client = Client::new(conn, state, Duration::ZERO)?;
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS cloudsync_hidden (tbl TEXT NOT NULL, pk BLOB NOT NULL, PRIMARY KEY (tbl, pk)) WITHOUT ROWID",
    )?;
    // Clocks are read below: local writes not yet folded would make new rows missing
    // from the check and deleted ones still in it.
    fold::fold_all(conn)?;
    let pending = unconfirmed_keys(conn, &client)?;
    let (mut checked, mut hidden, mut unconfirmed) = (0u64, 0u64, 0u64);
    let mut tables = serde_json::Map::new();
    for name in SyncTable::names(conn)? {
        let Some(t) = SyncTable::load(conn, &name)? else { continue };
        let mut waiting = 0u64;
        let keys: Vec<Vec<u8>> = {
            let cols = t.meta_keys().join(", ");
            let mut stmt = conn.prepare(&format!("SELECT {cols} FROM {} WHERE cl % 2 = 1", t.meta()))?;
            let n = t.meta_keys().len();
            let rows = stmt.query_map([], |r| {
                let key =
                    (0..n).map(|i| r.get_ref(i).map(crate::sql::value_of)).collect::<rusqlite::Result<Vec<_>>>()?;
                Ok(cloudsync_core::value::encode_key(&key))
            })?;
            let all: Vec<Vec<u8>> = rows.collect::<rusqlite::Result<_>>()?;
            let mine = pending.get(&t.name);
            all.into_iter()
                .filter(|pk| {
                    let unconfirmed = mine.is_some_and(|m| m.contains(pk));
                    waiting += u64::from(unconfirmed);
                    !unconfirmed
                })
                .collect()
        };
        let mut found = Vec::new();
        for batch in keys.chunks(VISIBILITY_BATCH) {
            found.extend(client.invisible(&t.name, batch)?);
        }
        in_savepoint(conn, "cloudsync_visibility", || {
            conn.execute("DELETE FROM cloudsync_hidden WHERE tbl = ?1", [&t.name])?;
            let mut insert = conn.prepare_cached("INSERT OR IGNORE INTO cloudsync_hidden (tbl, pk) VALUES (?1, ?2)")?;
            for pk in &found {
                insert.execute(rusqlite::params![t.name, pk])?;
            }
            Ok(())
        })?;
        checked += keys.len() as u64;
        hidden += found.len() as u64;
        unconfirmed += waiting;
        tables.insert(t.name.clone(), json!({ "checked": keys.len(), "hidden": found.len(), "unconfirmed": waiting }));
    }
    Ok(json!({ "checked": checked, "hidden": hidden, "unconfirmed": unconfirmed, "tables": tables }))
}

/// The rows (encoded keys, by table) this device changed after the last position the
/// server confirmed applying (its own uploads, every earlier one finished).
pub(super) fn unconfirmed_keys(conn: &Connection, client: &Client) -> Result<HashMap<String, HashSet<Vec<u8>>>> {
    let confirmed = client.status()?.device.confirmed.as_deref().map(parse_checkpoint).transpose()?;
    let query = FeedQuery {
        from: confirmed.unwrap_or(Checkpoint::ZERO),
        sites: SiteFilter::Only(client.site),
        ..FeedQuery::default()
    };
    let mut reader = FeedReader::new(conn, query)?;
    let mut keys: HashMap<String, HashSet<Vec<u8>>> = HashMap::new();
    while let Some(c) = reader.next(conn)? {
        keys.entry(c.table).or_default().insert(c.pk);
    }
    Ok(keys)
}
