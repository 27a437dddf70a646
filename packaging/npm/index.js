"use strict";
// The CloudSync SQLite extension, bundled for Node.
//
// path(): absolute path of the bundled lib/libcloudsync.so, for any host that loads
//         SQLite extensions.
// load(db): loads it into a better-sqlite3 Database and returns the extension's version.
//
// SQLite derives the entry point from the file name (libcloudsync.so ->
// sqlite3_cloudsync_init), so loading by full path needs no entry point argument.

const fs = require("node:fs");
const nodePath = require("node:path");

/** Version of this package, the same as the extension's cloudsync_version(). */
const version = "@VERSION@";

const LIBRARY = nodePath.join(__dirname, "lib", "libcloudsync.so");

// The binding this process loaded the library into: its loadExtension function,
// standing for its SQLite library. A loadable extension keeps one table of SQLite's
// functions per process, set by the library it was loaded into last: loading it
// through another binding that carries its own SQLite (node:sqlite, a second copy of
// better-sqlite3) would leave the first binding's databases calling into the wrong
// library, a crash rather than an error.
let loadedInto = null;

/**
 * Absolute path of the bundled extension library.
 * @returns {string}
 */
function path() {
  if (!fs.existsSync(LIBRARY)) {
    const why =
      process.platform === "linux" && process.arch === "x64"
        ? "the installation is broken; reinstall the package"
        : `this package is built for Linux x64, not ${process.platform} ${process.arch}`;
    throw new Error(`cloudsync-sqlite: expected the extension library at ${LIBRARY}, but it is missing: ${why}`);
  }
  return LIBRARY;
}

/**
 * Loads the extension into a better-sqlite3 Database and returns its version
 * (SELECT cloudsync_version()). The functions are registered on that connection only.
 * One process can load it through one SQLite binding only: a database of another
 * binding (another class, or another copy of better-sqlite3) is refused with an Error.
 * @param {import("./index").LoadableDatabase} db
 * @returns {string}
 */
function load(db) {
  if (db === null || typeof db !== "object" || typeof db.loadExtension !== "function") {
    const what = db === null ? "null" : typeof db === "object" ? (db.constructor && db.constructor.name) || "object" : typeof db;
    throw new TypeError(
      `cloudsync-sqlite: load() takes a better-sqlite3 Database (an object with a loadExtension method), ` +
        `not ${what}; for another SQLite host, load the library at require("cloudsync-sqlite").path() ` +
        `with that host's own extension loading`,
    );
  }
  // Databases of one binding share its loadExtension function (subclasses too); another
  // binding or another copy of better-sqlite3 has its own.
  const binding = db.loadExtension;
  if (loadedInto !== null && loadedInto !== binding) {
    throw new Error(
      "cloudsync-sqlite: this process already loaded the extension through another SQLite binding " +
        "(another database class, or another copy of better-sqlite3), so it cannot load it into this database " +
        "too: an extension binds to one SQLite library per process, and the first binding's databases would " +
        "then crash. Use one SQLite binding per process.",
    );
  }
  db.loadExtension(path());
  loadedInto = binding;
  return String(db.prepare("SELECT cloudsync_version() AS v").get().v);
}

module.exports = { path, load, version };
