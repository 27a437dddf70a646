"""Loads libcloudsync.so into Python's own sqlite3 module (Debian's /usr/bin/python3,
SQLite 3.40) and runs the shared scenario."""

import sqlite3
import sys

import scenario

SO = sys.argv[1]


def connect(path):
    conn = sqlite3.connect(path, isolation_level=None)
    conn.enable_load_extension(True)
    conn.load_extension(SO)
    conn.enable_load_extension(False)
    return conn


if __name__ == "__main__":
    n = scenario.run(connect, "python-sqlite3")
    print(f"python sqlite3 (SQLite {sqlite3.sqlite_version}): {n} scenario checks passed")
