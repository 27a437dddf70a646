//! `libcloudsync.so`: the SQLite loadable extension.
//!
//! Load it with `.load ./libcloudsync` (sqlite3 CLI), `conn.load_extension(...)`
//! (Python), `db.loadExtension(...)` (Node) or `SELECT load_extension(...)`; SQLite
//! derives the entry point `sqlite3_cloudsync_init` from the file name. All the
//! functionality lives in the `cloudsync-sqlite` crate; this crate is only the C
//! entry point, which is why it is allowed one `unsafe` function.
#![deny(unsafe_code)]

use std::os::raw::{c_char, c_int};

use rusqlite::{ffi, Connection};

/// The entry point SQLite calls when the library is loaded.
///
/// # Safety
///
/// Must only be called by SQLite's extension loader, which passes a valid database
/// handle, error-message slot and API routine table.
#[allow(unsafe_code)]
#[no_mangle]
pub unsafe extern "C" fn sqlite3_cloudsync_init(
    db: *mut ffi::sqlite3,
    pz_err_msg: *mut *mut c_char,
    p_api: *mut ffi::sqlite3_api_routines,
) -> c_int {
    // SAFETY: the three pointers come straight from SQLite's loader (see above);
    // `extension_init2` stores the API table before any other SQLite call and wraps
    // `db` in a non-owning connection for the duration of `init`.
    unsafe { Connection::extension_init2(db, pz_err_msg, p_api, init) }
}

fn init(conn: Connection) -> rusqlite::Result<bool> {
    cloudsync_sqlite::register(&conn).map_err(cloudsync_sqlite::error::to_sql)?;
    // Not permanent: each connection that loads the library gets its own registration.
    Ok(false)
}
