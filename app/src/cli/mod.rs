//! The operator CLI: every admin-API action as a subcommand, a client of a running
//! node, with `--json` for the raw response. Lists follow `next_cursor` to the end
//! unless `--limit` asks for one page.

mod client;
mod database;
mod device;
mod identity;
mod job;
mod key;
mod schema;
mod tenant;

use anyhow::{Context, Result};
use serde_json::{json, Value};

pub use client::{check_health, ClientArgs};
pub use database::{database, DatabaseCmd};
pub use device::{device, DeviceCmd};
pub use identity::{identity, IdentityCmd};
pub use job::{job, JobCmd};
pub use key::{key, KeyCmd};
pub use schema::{schema, SchemaCmd};
pub use tenant::{tenant, TenantCmd};

/// `cloudsync translate-ddl [FILE] [--json]`: the PostgreSQL DDL for a SQLite schema,
/// on standard output; notes about tables on standard error; every refused construct
/// in the error.
pub fn translate_ddl(file: Option<&std::path::Path>, as_json: bool, omit: Vec<cloudsync_ddl::Omit>) -> Result<()> {
    let sql = match file {
        Some(path) => std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
        None => std::io::read_to_string(std::io::stdin()).context("reading standard input")?,
    };
    let target = cloudsync_ddl::Target { omit, ..cloudsync_ddl::Target::default() };
    let t = cloudsync_ddl::translate_into(&sql, &cloudsync_ddl::Existing::new(), &target)?;
    if as_json {
        let tables: Vec<Value> = t
            .tables
            .iter()
            .map(|x| json!({"table": x.name, "key": x.key, "rowid_key": x.rowid_key, "unsynced": x.unsynced}))
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({"statements": t.statements, "tables": tables, "notes": t.notes}))?
        );
        return Ok(());
    }
    for note in &t.notes {
        eprintln!("note: {note}");
    }
    for x in &t.tables {
        if let Some(why) = &x.unsynced {
            eprintln!("note: table \"{}\" cannot be synced: {why}", x.name);
        } else if x.rowid_key {
            eprintln!(
                "note: table \"{}\" is keyed by SQLite's rowid: devices assign its ids, which must then be unique \
                 across devices (cloudsync_init flag 1)",
                x.name
            );
        }
    }
    print!("{}", t.script());
    Ok(())
}
