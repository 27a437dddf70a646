/** Version of this package, the same as the extension's `cloudsync_version()`. */
export declare const version: string;

/** What `load` needs of a database: the part of better-sqlite3's `Database` it uses. */
export interface LoadableDatabase {
  loadExtension(path: string, entryPoint?: string): unknown;
  prepare(sql: string): { get(...params: unknown[]): unknown };
}

/**
 * Absolute path of the bundled `lib/libcloudsync.so`.
 * @throws Error when the library is missing (another platform, or a broken install).
 */
export declare function path(): string;

/**
 * Loads the extension into a better-sqlite3 `Database` and returns its version
 * (`SELECT cloudsync_version()`).
 * @throws TypeError when `db` has no `loadExtension` method.
 * @throws Error when this process already loaded the extension through another
 *   database class (another SQLite library): one binding per process.
 */
export declare function load(db: LoadableDatabase): string;
