#!/usr/bin/env bash
# Drives the sqlite3 command-line shell (Debian's, SQLite 3.40) with the extension:
# two database files exchange changes through payload files.
set -euo pipefail
so="$1"
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
lib="${so%.so}"

sqlite3 "$dir/a.db" >/dev/null <<SQL
.load $lib
CREATE TABLE t (id TEXT PRIMARY KEY NOT NULL, v TEXT);
SELECT cloudsync_init('t') IS NOT NULL;
INSERT INTO t VALUES ('1', 'one'), ('2', 'two');
SELECT cloudsync_payload_save('$dir/a.bin') > 0;
SQL

sqlite3 "$dir/b.db" >/dev/null <<SQL
.load $lib
CREATE TABLE t (id TEXT PRIMARY KEY NOT NULL, v TEXT);
SELECT cloudsync_init('t') IS NOT NULL;
SELECT cloudsync_payload_load('$dir/a.bin');
UPDATE t SET v = 'TWO' WHERE id = '2';
SELECT cloudsync_payload_save('$dir/b.bin');
SQL

sqlite3 "$dir/a.db" ".load $lib" "SELECT cloudsync_payload_load('$dir/b.bin');" >/dev/null
got=$(sqlite3 "$dir/a.db" "SELECT group_concat(id || '=' || v, ',') FROM (SELECT * FROM t ORDER BY id);")
want="1=one,2=TWO"
if [ "$got" != "$want" ]; then
  echo "sqlite3 CLI: expected $want, got $got" >&2
  exit 1
fi
# An error reaches the shell as an error, not a crash.
if out=$(sqlite3 "$dir/a.db" ".load $lib" "SELECT cloudsync_payload_apply(x'00');" 2>&1); then
  echo "sqlite3 CLI: a bad payload was accepted: $out" >&2
  exit 1
fi
case "$out" in *"not a cloudsync payload"*) ;; *) echo "sqlite3 CLI: unexpected error text: $out" >&2; exit 1 ;; esac
echo "sqlite3 CLI ($(sqlite3 --version | cut -d' ' -f1)): payload file exchange and error path passed"
