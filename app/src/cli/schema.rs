//! `cloudsync schema …`: schema SQL (provisioning).

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Subcommand;
use cloudsync_protocol::{Provisioning, Tables};
use serde_json::json;

use super::client::ClientArgs;

/// `cloudsync schema …`
#[derive(Subcommand, Debug)]
pub enum SchemaCmd {
    /// Run SQLite CREATE TABLE statements in a database and enable sync on the tables.
    Apply {
        /// Tenant, by name or id.
        /// Tenant, by name or id.
        #[arg(long)]
        tenant: String,
        /// Database, by name or id.
        /// Database, by name or id.
        #[arg(long)]
        database: String,
        /// File with the SQL (`-` for standard input).
        #[arg(long)]
        file: PathBuf,
        /// Table algorithm, as table=algo (repeatable; default cls).
        #[arg(long = "algo")]
        algos: Vec<String>,
        /// Show what would be run and synced, and keep nothing.
        #[arg(long)]
        dry_run: bool,
        /// Leave out a construct PostgreSQL cannot express instead of refusing, as a
        /// refusal names it: table.column:check, :default, :collate or :on-conflict
        /// (repeatable; PostgreSQL backends).
        #[arg(long)]
        omit: Vec<cloudsync_ddl::Omit>,
    },
    /// List a database's synced tables.
    Tables {
        /// Tenant, by name or id.
        /// Tenant, by name or id.
        #[arg(long)]
        tenant: String,
        /// Database, by name or id.
        /// Database, by name or id.
        #[arg(long)]
        database: String,
    },
}

pub fn schema(cmd: SchemaCmd, c: &ClientArgs) -> Result<()> {
    match cmd {
        SchemaCmd::Apply { tenant, database, file, algos, dry_run, omit } => {
            let sql = if file.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin())?
            } else {
                std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?
            };
            let mut algo = serde_json::Map::new();
            for a in algos {
                let (t, al) = a.split_once('=').with_context(|| format!("--algo expects table=algo, got '{a}'"))?;
                algo.insert(t.to_string(), json!(al));
            }
            let v = c.call(
                "POST",
                &format!("{}/schema?dry_run={dry_run}", c.database_path(&tenant, &database)?),
                Some(json!({ "sql": sql, "algo": algo, "omit": omit.iter().map(ToString::to_string).collect::<Vec<_>>() })),
            )?;
            let verb = if dry_run { "would sync" } else { "synced" };
            c.show_as(&v, |p: Provisioning| {
                let mut lines: Vec<String> = Vec::new();
                if dry_run {
                    lines.extend(p.statements.iter().map(|s| format!("{s};")));
                }
                lines.extend(p.tables.iter().map(|t| format!("{verb} {} ({})", t.table, t.algo)));
                lines.extend(p.notes.iter().map(|n| format!("note: {n}")));
                lines.join("\n")
            })?;
        }
        SchemaCmd::Tables { tenant, database } => {
            let v = c.call("GET", &format!("{}/tables", c.database_path(&tenant, &database)?), None)?;
            c.show_as(&v, |t: Tables| {
                t.tables
                    .iter()
                    .map(|t| {
                        format!(
                            "{}\t{}\t{} rows\tkey ({})\t{}",
                            t.table,
                            t.algo,
                            t.rows,
                            t.key.join(", "),
                            if t.enabled { "enabled" } else { "disabled" },
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            })?;
        }
    }
    Ok(())
}
