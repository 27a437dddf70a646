//! `cloudsync`: the service (`cloudsync serve`) and the operator CLI.
//!
//! `serve` runs a node on embedded defaults (SQLite control plane, SQLite tenant
//! databases and a payload folder in one data directory); every setting comes from a
//! flag, a `CLOUDSYNC_*` environment variable or a TOML config file, in that order
//! (`docs/configuration.md`). The other subcommands are clients of a running node's
//! admin API.
#![forbid(unsafe_code)]

mod cli;
mod config;
mod http;
mod local;
mod serve;

use clap::{Parser, Subcommand};

/// cloudsync: offline-first sync for SQLite and PostgreSQL.
#[derive(Parser)]
#[command(name = "cloudsync", version, about)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a service node.
    Serve(Box<config::ServeArgs>),
    /// Tenants (admin API of a running node).
    Tenant {
        #[command(subcommand)]
        cmd: cli::TenantCmd,
        #[command(flatten)]
        client: cli::ClientArgs,
    },
    /// Databases (admin API of a running node).
    Database {
        #[command(subcommand)]
        cmd: cli::DatabaseCmd,
        #[command(flatten)]
        client: cli::ClientArgs,
    },
    /// Schema provisioning (admin API of a running node).
    Schema {
        #[command(subcommand)]
        cmd: cli::SchemaCmd,
        #[command(flatten)]
        client: cli::ClientArgs,
    },
    /// Exit 0 if a node answers its readiness check (for container health checks).
    CheckHealth {
        /// Readiness URL [default: /readyz of the node of --data-dir, as it recorded
        /// in <data-dir>/server.json; otherwise http://127.0.0.1:8080/readyz].
        #[arg(long)]
        url: Option<String>,
        /// Data directory of a node on this machine.
        #[arg(long, env = "CLOUDSYNC_DATA_DIR", default_value = "cloudsync-data")]
        data_dir: std::path::PathBuf,
        /// Keep asking for up to this many seconds until the node is ready (for scripts
        /// that start one).
        #[arg(long, value_name = "SECONDS", default_value_t = 0)]
        wait: u64,
    },
    /// API keys (admin API of a running node).
    Key {
        #[command(subcommand)]
        cmd: cli::KeyCmd,
        #[command(flatten)]
        client: cli::ClientArgs,
    },
    /// A tenant's identity provider for device JWTs (admin API of a running node).
    Identity {
        #[command(subcommand)]
        cmd: cli::IdentityCmd,
        #[command(flatten)]
        client: cli::ClientArgs,
    },
    /// Devices of a database (admin API of a running node).
    Device {
        #[command(subcommand)]
        cmd: cli::DeviceCmd,
        #[command(flatten)]
        client: cli::ClientArgs,
    },
    /// Apply jobs of a database (admin API of a running node).
    Job {
        #[command(subcommand)]
        cmd: cli::JobCmd,
        #[command(flatten)]
        client: cli::ClientArgs,
    },
    /// Translate SQLite CREATE TABLE/INDEX statements to PostgreSQL (offline; prints
    /// the DDL; docs/translate-ddl.md).
    TranslateDdl {
        /// File with the SQLite schema (default: standard input).
        file: Option<std::path::PathBuf>,
        /// Print the statements, tables and notes as JSON.
        #[arg(long)]
        json: bool,
        /// Leave out a construct PostgreSQL cannot express instead of refusing, as a
        /// refusal names it: table.column:check, :default, :collate or :on-conflict
        /// (repeatable).
        #[arg(long)]
        omit: Vec<cloudsync_ddl::Omit>,
    },
    /// Apply pending control-plane migrations (also done by `serve` at start-up).
    Migrate {
        /// Control-plane store (default: the SQLite file in --data-dir).
        #[arg(long, env = "CLOUDSYNC_CONTROL_PLANE_URL", hide_env_values = true)]
        control_plane_url: Option<String>,
        /// Data directory.
        #[arg(long, env = "CLOUDSYNC_DATA_DIR", default_value = "cloudsync-data")]
        data_dir: std::path::PathBuf,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    match args.command {
        Command::Serve(serve_args) => {
            let settings = config::Settings::resolve(*serve_args)?;
            serve::init_logging(&settings);
            tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(serve::run(settings))
        }
        Command::Tenant { cmd, client } => cli::tenant(cmd, &client),
        Command::Database { cmd, client } => cli::database(cmd, &client),
        Command::Schema { cmd, client } => cli::schema(cmd, &client),
        Command::Key { cmd, client } => cli::key(cmd, &client),
        Command::Identity { cmd, client } => cli::identity(cmd, &client),
        Command::Device { cmd, client } => cli::device(cmd, &client),
        Command::Job { cmd, client } => cli::job(cmd, &client),
        Command::Migrate { control_plane_url, data_dir, json } => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
            .block_on(serve::migrate(control_plane_url, data_dir, json)),
        Command::CheckHealth { url, data_dir, wait } => cli::check_health(url.as_deref(), &data_dir, wait),
        Command::TranslateDdl { file, json, omit } => cli::translate_ddl(file.as_deref(), json, omit),
    }
}
