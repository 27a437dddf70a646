// Packaging test: two better-sqlite3 databases synced through a CloudSync server with
// the installed cloudsync-sqlite package.
//
//   node sync_node.cjs <sync_url> <api_key> <work_dir>
//
// Uses only the installed package (require("cloudsync-sqlite")), never the build tree;
// better-sqlite3 must be installed next to it (or be on NODE_PATH). Each database
// inserts one row into notes (id TEXT PRIMARY KEY NOT NULL, title TEXT) (the server
// must have that schema), then both sync in turn until each has both rows. Prints
// "OK node <rows>", <rows> being the number of rows in the first database at the end
// (earlier runs against the same server database add theirs), and exits 0; on any
// failure prints the reason and exits 1.
"use strict";

const crypto = require("node:crypto");
const fs = require("node:fs");
const path = require("node:path");

const ROUNDS = 20;
const WAIT_MS = 2000;

function die(msg) {
  process.stderr.write(`sync_node: FAILED: ${msg}\n`);
  process.exit(1);
}

let Database;
let cloudsync;
try {
  Database = require("better-sqlite3");
} catch (e) {
  die(`cannot load better-sqlite3 (npm install better-sqlite3@12): ${e.message}`);
}
try {
  cloudsync = require("cloudsync-sqlite");
} catch (e) {
  die(`cannot load the cloudsync-sqlite package: ${e.message}`);
}

function fresh(file) {
  for (const suffix of ["", "-wal", "-shm", "-journal"]) fs.rmSync(file + suffix, { force: true });
  return file;
}

function open(name, file) {
  const db = new Database(fresh(file));
  const version = cloudsync.load(db);
  const sqlite = db.prepare("SELECT sqlite_version() AS v").get().v;
  return { db, name, file, version, host: `better-sqlite3 ${name} (SQLite ${sqlite})`, lastSync: null };
}

const value = (r, sql, ...params) => r.db.prepare(sql).pluck().get(...params);
const titles = (r) => Object.fromEntries(r.db.prepare("SELECT id, title FROM notes ORDER BY id").raw().all());

function fail(msg, replicas) {
  const lines = [`sync_node: FAILED: ${msg}`];
  for (const r of replicas) {
    let have;
    try {
      have = titles(r);
    } catch (e) {
      have = { "<cannot read notes>": e.message };
    }
    lines.push(`  ${r.host} (${r.file}): ${Object.keys(have).length} rows: ${JSON.stringify(have)}`);
    lines.push(`    last cloudsync_network_sync: ${JSON.stringify(r.lastSync)}`);
  }
  process.stderr.write(lines.join("\n") + "\n");
  process.exit(1);
}

function main() {
  const args = process.argv.slice(2);
  if (args.length !== 3) die("usage: node sync_node.cjs <sync_url> <api_key> <work_dir>");
  const [url, key, work] = args;
  fs.mkdirSync(work, { recursive: true });

  const replicas = [open("a", path.join(work, "node-a.db")), open("b", path.join(work, "node-b.db"))];
  for (const r of replicas) {
    if (r.version !== cloudsync.version) {
      fail(`${r.host}: extension version ${JSON.stringify(r.version)} != package version ${JSON.stringify(cloudsync.version)}`, replicas);
    }
  }

  const token = crypto.randomBytes(6).toString("hex");
  const ids = [];
  for (const r of replicas) {
    r.db.exec("CREATE TABLE notes (id TEXT PRIMARY KEY NOT NULL, title TEXT)");
    value(r, "SELECT cloudsync_init('notes')");
    value(r, "SELECT cloudsync_network_init(?)", url);
    value(r, "SELECT cloudsync_network_set_apikey(?)", key);
    const id = value(r, "SELECT cloudsync_uuid()");
    r.db.prepare("INSERT INTO notes (id, title) VALUES (?, ?)").run(id, `node ${r.host} ${token}`);
    ids.push(id);
  }

  let round = 0;
  let done = false;
  while (!done && round < ROUNDS) {
    round += 1;
    for (const r of replicas) {
      // A literal: better-sqlite3 binds JS numbers as REAL, and wait_ms must be an integer.
      let text;
      try {
        text = value(r, `SELECT cloudsync_network_sync(${WAIT_MS})`);
      } catch (e) {
        fail(`${r.host}: cloudsync_network_sync failed in round ${round}: ${e.message}`, replicas);
      }
      try {
        r.lastSync = JSON.parse(text);
      } catch {
        fail(`${r.host}: cloudsync_network_sync returned ${JSON.stringify(text)}, not JSON`, replicas);
      }
      const status = r.lastSync && r.lastSync.send && r.lastSync.send.status;
      if (status === "held" || status === "failed") fail(`${r.host}: upload ${status} in round ${round}`, replicas);
    }
    done = replicas.every((r) => ids.every((id) => id in titles(r)));
  }
  if (!done) fail(`after ${ROUNDS} rounds, not every database has both rows ${JSON.stringify(ids)}`, replicas);

  for (const r of replicas) {
    const unsent = value(r, "SELECT cloudsync_network_has_unsent_changes()");
    if (unsent !== 0) fail(`${r.host}: cloudsync_network_has_unsent_changes() is ${unsent} at the end, not 0`, replicas);
  }

  process.stderr.write(`sync_node: ${replicas.map((r) => r.host).join(" + ")}, extension ${replicas[0].version}, ${round} round(s)\n`);
  const rows = Object.keys(titles(replicas[0])).length;
  for (const r of replicas) r.db.close();
  console.log(`OK node ${rows}`);
}

try {
  main();
} catch (e) {
  process.stderr.write(`sync_node: FAILED with an exception:\n${e && e.stack ? e.stack : e}\n`);
  process.exit(1);
}
