// Loads libcloudsync.so into Node's better-sqlite3@12 and checks a two-replica sync.
const Database = require("better-sqlite3");
const assert = require("node:assert/strict");

const so = process.argv[2];

function replica() {
  const db = new Database(":memory:");
  db.loadExtension(so);
  db.exec("CREATE TABLE t (id TEXT PRIMARY KEY NOT NULL, v TEXT, n INTEGER)");
  db.prepare("SELECT cloudsync_init('t')").get();
  return db;
}

const encode =
  "SELECT cloudsync_payload_encode(tbl, pk, col_name, col_value, col_version, db_version, site_id, cl, seq) AS p FROM cloudsync_changes";
const a = replica();
const b = replica();
a.exec("INSERT INTO t VALUES ('x', 'from a', 1)");
b.exec("INSERT INTO t VALUES ('y', 'from b', 2)");
b.prepare("SELECT cloudsync_payload_apply(?) AS n").get(a.prepare(encode).get().p);
a.prepare("SELECT cloudsync_payload_apply(?) AS n").get(b.prepare(encode).get().p);
const dump = (db) => db.prepare("SELECT * FROM t ORDER BY id").all();
assert.deepEqual(dump(a), dump(b));
assert.equal(dump(a).length, 2);
assert.throws(() => a.prepare("SELECT cloudsync_payload_apply(x'01')").get(), /not a cloudsync payload/);
console.log(`node better-sqlite3 (SQLite ${a.prepare("SELECT sqlite_version() AS v").get().v}): two-replica sync passed`);
