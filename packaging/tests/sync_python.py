"""Packaging test: two databases synced through a CloudSync server with the installed
cloudsync_sqlite package.

    python sync_python.py <sync_url> <api_key> <work_dir>

Uses only the installed package (``import cloudsync_sqlite``), never the build tree,
and needs apsw importable. It covers both Python hosts: this interpreter's ``sqlite3``
when it supports extension loading, and apsw. A process can use the extension from one
SQLite library only (sqlite3 and apsw each bring their own; see cloudsync_sqlite.load),
so each host runs in a child process of its own (``--host sqlite3|apsw``), which opens
two database files in <work_dir> with that host, inserts one row in each into
``notes (id TEXT PRIMARY KEY NOT NULL, title TEXT)`` (the server must have that
schema), then syncs both in turn until each has both rows. Prints
``OK python <rows>``, where <rows> is the number of rows in the last host's first
database at the end (earlier runs against the same server database add theirs), and
exits 0; on any failure prints the reason and exits 1.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import subprocess
import sys
import traceback
from typing import Any, Callable, List, Optional, Sequence

try:
    import apsw
except ImportError:
    sys.exit("sync_python: apsw is not importable (pip install apsw): this test needs it")

import cloudsync_sqlite

ROUNDS = 20
WAIT_MS = 2000


class Db:
    """One database file and the little of each driver's API the test needs."""

    def __init__(self, host: str, file: str, version: str, query: Callable[[str, Sequence[Any]], List[tuple]]):
        self.host = host
        self.file = file
        self.version = version
        self._query = query
        self.last_sync: Optional[dict] = None

    def rows(self, sql: str, params: Sequence[Any] = ()) -> List[tuple]:
        return self._query(sql, params)

    def value(self, sql: str, params: Sequence[Any] = ()) -> Any:
        rows = self.rows(sql, params)
        return rows[0][0] if rows else None


def fresh(path: str) -> str:
    for suffix in ("", "-wal", "-shm", "-journal"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)
    return path


def open_sqlite3(file: str) -> Db:
    conn = sqlite3.connect(file, isolation_level=None)
    version = cloudsync_sqlite.load(conn)
    return Db(f"sqlite3 (SQLite {sqlite3.sqlite_version})", file, version, lambda s, p: conn.execute(s, p).fetchall())


def open_apsw(file: str) -> Db:
    conn = apsw.Connection(file)
    version = cloudsync_sqlite.load(conn)
    return Db(f"apsw (SQLite {apsw.sqlite_lib_version()})", file, version, lambda s, p: list(conn.cursor().execute(s, p)))


def titles(db: Db) -> dict:
    return {row[0]: row[1] for row in db.rows("SELECT id, title FROM notes ORDER BY id")}


def fail(msg: str, dbs: Sequence[Db]) -> None:
    lines = [f"sync_python: FAILED: {msg}"]
    for db in dbs:
        try:
            have = titles(db)
        except Exception as e:  # the database itself may be the problem
            have = {"<cannot read notes>": str(e)}
        lines.append(f"  {db.host} ({db.file}): {len(have)} rows: {json.dumps(have)}")
        lines.append(f"    last cloudsync_network_sync: {json.dumps(db.last_sync)}")
    sys.stderr.write("\n".join(lines) + "\n")
    sys.exit(1)


def run_host(host: str, url: str, key: str, work: str) -> int:
    """Two databases of one host synced through the server; returns the first one's rows."""
    opener = open_sqlite3 if host == "sqlite3" else open_apsw
    a = opener(fresh(os.path.join(work, f"python-{host}-a.db")))
    b = opener(fresh(os.path.join(work, f"python-{host}-b.db")))
    dbs = [a, b]
    for db in dbs:
        if db.version != cloudsync_sqlite.__version__:
            fail(f"{db.host}: extension version {db.version!r} != package version {cloudsync_sqlite.__version__!r}", dbs)

    token = secrets.token_hex(6)
    ids = []
    for name, db in zip("ab", dbs):
        db.rows("CREATE TABLE notes (id TEXT PRIMARY KEY NOT NULL, title TEXT)")
        db.rows("SELECT cloudsync_init('notes')")
        db.rows("SELECT cloudsync_network_init(?)", (url,))
        db.rows("SELECT cloudsync_network_set_apikey(?)", (key,))
        row_id = db.value("SELECT cloudsync_uuid()")
        db.rows("INSERT INTO notes (id, title) VALUES (?, ?)", (row_id, f"python {db.host} {name} {token}"))
        ids.append(row_id)

    for round_no in range(1, ROUNDS + 1):
        for db in dbs:
            try:
                text = db.value("SELECT cloudsync_network_sync(?)", (WAIT_MS,))
            except Exception as e:  # the driver's error class: sqlite3.Error or apsw.Error
                fail(f"{db.host}: cloudsync_network_sync failed in round {round_no}: {e}", dbs)
            try:
                db.last_sync = json.loads(text)
            except (TypeError, ValueError):
                fail(f"{db.host}: cloudsync_network_sync returned {text!r}, not JSON", dbs)
            status = (db.last_sync.get("send") or {}).get("status")
            if status in ("held", "failed"):
                fail(f"{db.host}: upload {status} in round {round_no}", dbs)
        if all(set(ids) <= set(titles(db)) for db in dbs):
            break
    else:
        fail(f"after {ROUNDS} rounds, not every database has both rows {ids}", dbs)

    for db in dbs:
        unsent = db.value("SELECT cloudsync_network_has_unsent_changes()")
        if unsent != 0:
            fail(f"{db.host}: cloudsync_network_has_unsent_changes() is {unsent!r} at the end, not 0", dbs)

    sys.stderr.write(f"sync_python: {a.host}: two databases synced, extension {a.version}, {round_no} round(s)\n")
    return len(titles(a))


def main(argv: List[str]) -> None:
    if len(argv) == 6 and argv[1] == "--host" and argv[2] in ("sqlite3", "apsw"):
        host, (url, key, work) = argv[2], argv[3:6]
        print(f"OK python-{host} {run_host(host, url, key, work)}")
        return
    if len(argv) != 4:
        sys.exit("usage: sync_python.py <sync_url> <api_key> <work_dir>")
    url, key, work = argv[1], argv[2], argv[3]
    os.makedirs(work, exist_ok=True)

    hosts = ["apsw"]
    if hasattr(sqlite3.Connection, "enable_load_extension"):
        hosts.insert(0, "sqlite3")
    else:
        sys.stderr.write("sync_python: this Python's sqlite3 cannot load extensions: testing apsw only\n")
    rows = None
    for host in hosts:
        # stderr goes straight through; stdout carries the child's one OK line.
        child = subprocess.run(
            [sys.executable, os.path.abspath(__file__), "--host", host, url, key, work],
            stdout=subprocess.PIPE,
            text=True,
        )
        words = child.stdout.split()
        if child.returncode != 0 or len(words) != 3 or words[0] != "OK":
            sys.exit(f"sync_python: FAILED: the {host} run exited with {child.returncode}, printing {child.stdout!r}")
        rows = int(words[2])
    print(f"OK python {rows}")


if __name__ == "__main__":
    try:
        main(sys.argv)
    except SystemExit:
        raise
    except Exception:
        sys.stderr.write("sync_python: FAILED with an exception:\n" + traceback.format_exc())
        sys.exit(1)
