"""A device for the end-to-end tests: a SQLite database with libcloudsync loaded into
Python's own sqlite3 module, driven by JSON lines on stdin.

Each request is {"sql": "...", "params": [...]}; each reply is {"ok": true, "rows":
[[...], ...]} or {"ok": false, "error": "..."}. Blobs travel as {"blob": "<hex>"}.
Usage: python3 device.py <libcloudsync.so> <database file>
"""

import json
import sqlite3
import sys


def encode(v):
    if isinstance(v, (bytes, bytearray)):
        return {"blob": bytes(v).hex()}
    return v


def main():
    so, path = sys.argv[1], sys.argv[2]
    conn = sqlite3.connect(path, isolation_level=None, timeout=30)
    conn.enable_load_extension(True)
    conn.load_extension(so)
    conn.enable_load_extension(False)
    print(json.dumps({"ok": True, "sqlite": sqlite3.sqlite_version}), flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        try:
            rows = conn.execute(req["sql"], req.get("params", [])).fetchall()
            print(json.dumps({"ok": True, "rows": [[encode(v) for v in r] for r in rows]}), flush=True)
        except Exception as e:  # the test asserts on the message
            print(json.dumps({"ok": False, "error": str(e)}), flush=True)


if __name__ == "__main__":
    main()
