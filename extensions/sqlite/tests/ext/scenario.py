"""The extension scenario shared by every Python host (sqlite3 module, apsw).

Each host module supplies `connect(path) -> connection-like` with `execute(sql,
params)` returning a cursor, and this module drives three replicas through offline
edits, payload exchange and error cases. Only behaviour is asserted.
"""

import os
import tempfile
import uuid


def one(conn, sql, params=()):
    row = conn.execute(sql, params).fetchone()
    return row[0] if row else None


def rows(conn, table="notes"):
    return list(conn.execute(f'SELECT * FROM "{table}" ORDER BY id').fetchall())


def payload(conn, since=0):
    return one(
        conn,
        "SELECT cloudsync_payload_encode(tbl, pk, col_name, col_value, col_version, db_version, site_id, cl, seq) "
        "FROM cloudsync_changes WHERE db_version > ?",
        (since,),
    )


def apply(conn, blob):
    return one(conn, "SELECT cloudsync_payload_apply(?)", (blob,))


def expect_error(conn, sql, needle, params=()):
    try:
        conn.execute(sql, params).fetchall()
    except Exception as e:  # each host has its own exception class
        assert needle in str(e), f"expected {needle!r} in {e!r}"
        return str(e)
    raise AssertionError(f"expected an error from {sql}")


SCHEMA = """CREATE TABLE notes (
    id TEXT PRIMARY KEY NOT NULL,
    title TEXT NOT NULL DEFAULT '',
    body TEXT,
    stars INTEGER DEFAULT 0,
    pic BLOB
)"""


def replica(connect, path):
    c = connect(path)
    c.execute(SCHEMA)
    site = one(c, "SELECT cloudsync_init('notes')")
    assert len(site) == 32 and int(site, 16) >= 0
    return c


def run(connect, label):
    d = tempfile.mkdtemp(prefix=f"cloudsync-{label}-")
    a, b, c = (replica(connect, os.path.join(d, f"{n}.db")) for n in "abc")
    checks = 0

    # Identity and clocks.
    assert one(a, "SELECT cloudsync_version()")
    assert len(one(a, "SELECT cloudsync_siteid()")) == 16
    assert uuid.UUID(one(a, "SELECT cloudsync_uuid()")).version == 7
    v0 = one(a, "SELECT cloudsync_db_version()")
    a.execute("INSERT INTO notes (id, title, body, stars, pic) VALUES ('n1', 'first', 'hello', 1, x'00ff')")
    assert one(a, "SELECT cloudsync_db_version()") == v0 + 1
    checks += 1

    # Offline edits on three replicas: same column, different columns, delete and re-insert.
    for src in (a,):
        for dst in (b, c):
            apply(dst, payload(src))
    b.execute("UPDATE notes SET title = 'from b' WHERE id = 'n1'")
    c.execute("UPDATE notes SET body = 'from c' WHERE id = 'n1'")
    a.execute("UPDATE notes SET stars = 5 WHERE id = 'n1'")
    c.execute("INSERT INTO notes (id, title) VALUES ('n2', 'second')")
    b.execute("INSERT INTO notes (id, title) VALUES ('n3', 'third')")
    a.execute("INSERT INTO notes (id, title) VALUES ('n4', 'doomed')")
    for x, y in [(a, b), (b, c), (c, a), (a, b), (b, c), (c, a)]:
        p = payload(x)
        if p is not None:
            apply(y, p)
    b.execute("DELETE FROM notes WHERE id = 'n4'")
    c.execute("UPDATE notes SET stars = 9 WHERE id = 'n4'")  # concurrent with the delete
    for x, y in [(b, a), (c, a), (a, b), (a, c), (b, c), (c, b)]:
        p = payload(x)
        if p is not None:
            apply(y, p)
    assert rows(a) == rows(b) == rows(c), (rows(a), rows(b), rows(c))
    got = {r[0]: r for r in rows(a)}
    assert set(got) == {"n1", "n2", "n3"}, got
    assert got["n1"][1:4] == ("from b", "from c", 5), got["n1"]
    checks += 1

    # Re-insert after delete resurrects the row everywhere.
    a.execute("INSERT INTO notes (id, title) VALUES ('n4', 'back')")
    for y in (b, c):
        apply(y, payload(a))
    assert rows(a) == rows(b) == rows(c)
    assert one(b, "SELECT title FROM notes WHERE id = 'n4'") == "back"
    checks += 1

    # Applying the same payload again changes nothing.
    assert apply(b, payload(a)) == 0
    checks += 1

    # Bad input: clear errors, nothing written.
    before = rows(b)
    good = payload(a)
    expect_error(b, "SELECT cloudsync_payload_apply(?)", "not a cloudsync payload", (b"junk",))
    expect_error(b, "SELECT cloudsync_payload_apply(?)", "checksum", (good[:-5] + bytes(5),))
    expect_error(b, "SELECT cloudsync_init('nope')", "no such table")
    expect_error(b, "SELECT cloudsync_payload_apply(?)", "must be a blob", ("text",))
    assert rows(b) == before
    checks += 1

    # File exchange.
    f = os.path.join(d, "changes.bin")
    n = one(a, "SELECT cloudsync_payload_save(?)", (f,))
    assert n > 0 and os.path.getsize(f) > 0
    fresh = replica(connect, os.path.join(d, "fresh.db"))
    assert one(fresh, "SELECT cloudsync_payload_load(?)", (f,)) > 0
    assert rows(fresh) == rows(a)
    checks += 1
    return checks
