"""Loads libcloudsync.so into apsw (its own, current SQLite) and runs the shared scenario."""

import sys

import apsw

import scenario

SO = sys.argv[1]


class Conn:
    """The small subset of the DB-API the scenario uses."""

    def __init__(self, path):
        self.c = apsw.Connection(path)
        self.c.enable_load_extension(True)
        self.c.load_extension(SO)

    def execute(self, sql, params=()):
        return self.c.cursor().execute(sql, params)


if __name__ == "__main__":
    n = scenario.run(Conn, "apsw")
    print(f"apsw (SQLite {apsw.sqlite_lib_version()}): {n} scenario checks passed")
