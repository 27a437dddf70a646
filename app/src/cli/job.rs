//! `cloudsync job …`: apply jobs.

use anyhow::Result;
use clap::Subcommand;

use super::client::{ClientArgs, Paging};

/// `cloudsync job …`
#[derive(Subcommand, Debug)]
pub enum JobCmd {
    /// List a database's apply jobs, newest first.
    List {
        /// Tenant, by name or id.
        #[arg(long)]
        tenant: String,
        /// Database, by name or id.
        #[arg(long)]
        database: String,
        /// Only jobs in this state (pending, running, done, dead, discarded).
        #[arg(long)]
        state: Option<String>,
        #[command(flatten)]
        paging: Paging,
    },
    /// Show a job.
    Get {
        /// Tenant, by name or id.
        #[arg(long)]
        tenant: String,
        /// Database, by name or id.
        #[arg(long)]
        database: String,
        id: i64,
    },
    /// Retry a failed job now.
    Retry {
        /// Tenant, by name or id.
        #[arg(long)]
        tenant: String,
        /// Database, by name or id.
        #[arg(long)]
        database: String,
        id: i64,
    },
    /// Discard a waiting or dead job.
    Discard {
        /// Tenant, by name or id.
        #[arg(long)]
        tenant: String,
        /// Database, by name or id.
        #[arg(long)]
        database: String,
        id: i64,
    },
}

pub fn job(cmd: JobCmd, c: &ClientArgs) -> Result<()> {
    let base = |t: &str, d: &str| -> Result<String> { Ok(format!("{}/jobs", c.database_path(t, d)?)) };
    match cmd {
        JobCmd::List { tenant, database, state, paging } => {
            let query: Vec<(&str, String)> = state.map(|s| ("state", s)).into_iter().collect();
            c.table(
                &c.list(&base(&tenant, &database)?, &query, paging.limit)?,
                &["id", "state", "site_id", "attempts", "error_code", "created_at"],
            );
        }
        JobCmd::Get { tenant, database, id } => {
            c.object(&c.call("GET", &format!("{}/{id}", base(&tenant, &database)?), None)?);
        }
        JobCmd::Retry { tenant, database, id } => {
            c.object(&c.call("POST", &format!("{}/{id}/retry", base(&tenant, &database)?), None)?);
        }
        JobCmd::Discard { tenant, database, id } => {
            c.object(&c.call("POST", &format!("{}/{id}/discard", base(&tenant, &database)?), None)?);
        }
    }
    Ok(())
}
